"""The WSGI applications every server in the benchmark runs.

Plain PEP 3333 callables with no framework, so the numbers measure the server:
each returns a one-item list with an explicit Content-Length, the framing every
server can send without chunking. The waiting ones stand for a view that waits
on a database: time.sleep releases the GIL as a socket read would.
"""
import time

HELLO = b"Hello, World!"
BIG64K = b"x" * 65536


def hello(environ, start_response):
    """13 bytes of text: the smallest realistic response."""
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def big64k(environ, start_response):
    """A 64 KiB body: more than one socket buffer's worth for most kernels' defaults."""
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BIG64K)))])
    return [BIG64K]


def echo(environ, start_response):
    """Read the whole request body from wsgi.input and send it back."""
    body = read_body(environ)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def wait20ms(environ, start_response):
    """Wait 20 ms (a database call), then answer like hello."""
    time.sleep(0.020)
    return hello(environ, start_response)


def mixed(environ, start_response):
    """/slow waits 200 ms before answering; every other path answers at once."""
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(0.200)
    return hello(environ, start_response)


def read_body(environ):
    """The request body: CONTENT_LENGTH bytes when given, else everything up to EOF.

    Reads with a size argument only, since PEP 3333 lets a server refuse read()
    without one, and loops because a server may return short reads.
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    parts = []
    if length.isdigit():
        remaining = int(length)
        while remaining > 0:
            chunk = stream.read(min(remaining, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
    else:
        while True:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            parts.append(chunk)
    return b"".join(parts)


BLOCK64K = b"z" * 65536


def hello_or_big(environ, start_response):
    """Hello world, except /big: a 16 MiB generator body (64 KiB a step, no
    Content-Length), what the stalled readers of the slow_readers scenario ask for."""
    if environ.get("PATH_INFO") == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (BLOCK64K for _ in range(256))
    return hello(environ, start_response)


# uWSGI's --callable and the launchers look an application up by this name too.
application = hello
