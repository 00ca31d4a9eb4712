"""App given as ``dotted:holder.app`` (attribute path with a dot)."""
import types
from wsgiref.validate import validator


def _app(environ, start_response):
    body = b"dotted-app"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


holder = types.SimpleNamespace(app=validator(_app))
