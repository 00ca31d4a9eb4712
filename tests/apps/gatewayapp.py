"""WSGI application for the FastCGI / SCGI / uwsgi tests (raw sockets, cgi-fcgi, nginx).

A few routes only make sense behind a gateway protocol (``wsgi.errors`` that
becomes FastCGI STDERR records, a body that is consumed while the web server
can still abort the request); every other path is answered by the general test
application ``wsgiapp`` (``/hello``, ``/sha256``, ``/stream``, ``/environ-raw``,
``/close``, ``/file`` ...), so the same URLs work over every protocol.

Side effects go to files in FASTGW_TEST_DIR, one line each, as in ``wsgiapp``.
"""
import hashlib
import json
import os
import time
from urllib.parse import parse_qs

import wsgiapp
from fgw_pattern import pattern_chunks


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _note(filename, line):
    directory = os.environ.get("FASTGW_TEST_DIR")
    if directory:
        with open(os.path.join(directory, filename), "a") as fh:
            fh.write(line + "\n")


def _plain(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def errors(environ, start_response):
    """/gw/errors?text=T: T goes to wsgi.errors (write, writelines, flush), the body says 'ok'."""
    text = _query(environ).get("text", "fastgw-errors-marker")
    err = environ["wsgi.errors"]
    err.write(text + "\n")
    err.writelines(["line-a of " + text + "\n", "line-b of " + text + "\n"])
    err.flush()
    return _plain(start_response, b"ok")


class BodyConsumer:
    """Iterable that first announces itself, then reads the request body while it
    is being iterated (so an abort arrives while the application is running), and
    records its close() in gateway.log."""

    def __init__(self, ident, inp):
        self.ident = ident
        self.inp = inp
        self.started = False
        self.total = 0

    def __iter__(self):
        return self

    def __next__(self):
        if not self.started:
            self.started = True
            return b"started\n"
        try:
            data = self.inp.read(65536)
        except Exception as exc:
            _note("gateway.log", "read-failed %s %s" % (self.ident, type(exc).__name__))
            raise
        if not data:
            raise StopIteration
        self.total += len(data)
        return b"read %d\n" % self.total

    def close(self):
        _note("gateway.log", "closed %s" % self.ident)


def consume(environ, start_response):
    """/gw/consume?id=X: streams a line per body read; close() is recorded."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return BodyConsumer(_query(environ)["id"], environ["wsgi.input"])


def echo_first(environ, start_response):
    """/gw/echo-first?n=N: sends the first N body bytes back at once (before the rest
    of the body has been sent), then the sha256 of the rest."""
    n = int(_query(environ).get("n", "5"))
    inp = environ["wsgi.input"]
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    first = b""
    while len(first) < n:
        piece = inp.read(n - len(first))
        if not piece:
            break
        first += piece
    write(b"first=" + first + b"\n")
    digest = hashlib.sha256()
    rest = 0
    while True:
        piece = inp.read(65536)
        if not piece:
            break
        digest.update(piece)
        rest += len(piece)
    return [b"rest=%d %s\n" % (rest, digest.hexdigest().encode())]


def scheme(environ, start_response):
    """/gw/scheme: what a framework would use to build absolute URLs."""
    body = json.dumps({
        "url_scheme": environ["wsgi.url_scheme"],
        "REMOTE_ADDR": environ.get("REMOTE_ADDR"),
        "REMOTE_PORT": environ.get("REMOTE_PORT"),
        "SERVER_NAME": environ.get("SERVER_NAME"),
        "SERVER_PORT": environ.get("SERVER_PORT"),
        "HTTP_HOST": environ.get("HTTP_HOST"),
    }, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def sha256(environ, start_response):
    """/gw/sha256: SHA-256 and length of the body, read in 64 KiB pieces. Unlike
    wsgiapp's /sha256 it is not wrapped in wsgiref's validator, so a transfer test
    does not depend on the environ passing the validator's checks."""
    inp = environ["wsgi.input"]
    digest = hashlib.sha256()
    total = 0
    while True:
        piece = inp.read(65536)
        if not piece:
            break
        digest.update(piece)
        total += len(piece)
    body = json.dumps({"sha256": digest.hexdigest(), "length": total}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def ignore(environ, start_response):
    """/gw/ignore: answers without reading the request body."""
    return _plain(start_response, b"ignored")


def big(environ, start_response):
    """/gw/big?n=N: N bytes of the test pattern as one bytes object in a one-item list."""
    n = int(_query(environ)["n"])
    return _plain(start_response, b"".join(pattern_chunks(n)))


def hold(environ, start_response):
    """/gw/hold?id=X: records 'holding X', then waits (polling, at most 30 s) until the
    test creates FASTGW_TEST_DIR/release-X. Without --threads this holds the worker's
    loop thread, so what the test sends meanwhile is all there when the loop looks."""
    ident = _query(environ)["id"]
    release = os.path.join(os.environ["FASTGW_TEST_DIR"], "release-" + ident)
    _note("gateway.log", "holding " + ident)
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)
    return _plain(start_response, b"released" if os.path.exists(release) else b"timed out")


ROUTES = {
    "/gw/sha256": sha256,
    "/gw/ignore": ignore,
    "/gw/hold": hold,
    "/gw/big": big,
    "/gw/errors": errors,
    "/gw/consume": consume,
    "/gw/echo-first": echo_first,
    "/gw/scheme": scheme,
}


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is not None:
        return route(environ, start_response)
    return wsgiapp.application(environ, start_response)
