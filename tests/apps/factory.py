"""App given as ``factory:create_app()``."""
from wsgiref.validate import validator


def create_app():
    def app(environ, start_response):
        body = b"factory-app"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return validator(app)
