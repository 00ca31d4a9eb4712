"""App given as just ``plainmod``: the server must use ``application``."""
from wsgiref.validate import validator


def _app(environ, start_response):
    body = b"plain-module-application"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = validator(_app)
