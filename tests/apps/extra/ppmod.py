"""Only importable when this directory is given with ``--pythonpath``."""
from wsgiref.validate import validator


def _app(environ, start_response):
    body = b"pythonpath-app"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = validator(_app)
