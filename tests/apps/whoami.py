"""A minimal application for the --user/--group tests: it imports nothing that
the worker has not loaded already (the Python installation may not be readable
by the user the worker switches to) and answers with the worker's pid."""
import os


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
