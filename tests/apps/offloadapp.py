"""A plain WSGI application answering with X-Accel-Redirect (tests/test_offload.py).

/accel?to=URL       200 with X-Accel-Redirect: URL and a body that must not be sent
/lazy?to=URL        the same from a generator that calls start_response on its first step
/write?to=URL       the same, the body given to start_response's write() callable
/again              X-Accel-Redirect: /again, forever (the server gives up)
/whoami             "PID"
"""
import os
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ["PATH_INFO"]
    to = parse_qs(environ.get("QUERY_STRING", "")).get("to", ["/"])[0]
    headers = [("Content-Type", "text/plain"), ("Content-Disposition", "attachment"),
               ("X-Accel-Redirect", to)]
    if path == "/accel":
        start_response("200 OK", headers)
        return [b"the application's own body"]
    if path == "/lazy":
        def body():
            start_response("200 OK", headers)
            yield b"the application's "
            yield b"own body"
        return body()
    if path == "/write":
        write = start_response("200 OK", headers)
        write(b"the application's own body")
        return []
    if path == "/again":
        start_response("200 OK", [("X-Accel-Redirect", "/again")])
        return [b""]
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
