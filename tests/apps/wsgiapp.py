"""Multi-purpose WSGI application for the fastgw end-to-end tests.

Behaviour is chosen by PATH_INFO, parameters come from QUERY_STRING, so one
server process can serve many tests.

Most routes are wrapped in ``wsgiref.validate.validator`` so that every request
they serve also checks the server's side of PEP 3333 (environ types, no
HTTP_CONTENT_LENGTH, start_response/write/close protocol ...).  Routes in
``RAW_ROUTES`` are deliberately *not* wrapped because the validator would
forbid the behaviour under test (``read()`` without a size, an application
that sends a body on 204) or hide it from the server (the validator replaces
the response iterable with its own wrapper, so ``wsgi.file_wrapper`` objects
and one-element lists would not be recognised any more).

Side effects that tests observe (``close()`` calls, request start/end) are
appended as lines to files in the directory named by the FASTGW_TEST_DIR
environment variable, which the tests pass with ``--env``.
"""
import hashlib
import io
import json
import os
import sys
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

from fgw_pattern import BLOCK, pattern_chunks

# Snapshot taken at import time: --env values must already be set by then.
IMPORT_ENV = {k: v for k, v in os.environ.items() if k.startswith("FASTGW_TEST_")}

TEXT = [("Content-Type", "text/plain")]


# --------------------------------------------------------------------------
# helpers


def _query(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _record(filename, line):
    directory = os.environ.get("FASTGW_TEST_DIR")
    if not directory:
        return
    with open(os.path.join(directory, filename), "a") as fh:
        fh.write(line + "\n")
        fh.flush()


def _text(start_response, body, status="200 OK", extra=()):
    if isinstance(body, str):
        body = body.encode("latin-1")
    start_response(status, TEXT + [("Content-Length", str(len(body)))] + list(extra))
    return [body]


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode("ascii")
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _jsonable(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return {"__type__": type(value).__name__}


class RecordedIterable:
    """Response iterable whose close() leaves a line in closed.log."""

    def __init__(self, ident, chunks):
        self._ident = ident
        self._it = iter(chunks)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self):
        _record("closed.log", self._ident)


class RecordingFile(io.FileIO):
    """A real file (so sendfile applies) whose close() is recorded.

    A close() coming from garbage collection is recorded differently, so a
    server that forgets to call close() cannot pass by accident.
    """

    def __init__(self, path, ident):
        super().__init__(path, "rb")
        self._ident = ident
        self._in_del = False
        self._read_recorded = False

    def _note_read(self):
        # Reading through Python means the zero-copy path was not used.
        if not self._read_recorded:
            self._read_recorded = True
            _record("closed.log", "python-read %s" % self._ident)

    def read(self, *args):
        self._note_read()
        return super().read(*args)

    def readinto(self, buf):
        self._note_read()
        return super().readinto(buf)

    def readall(self):
        self._note_read()
        return super().readall()

    def close(self):
        if not self.closed:
            how = "gc" if self._in_del else "closed"
            _record("closed.log", "%s %s" % (how, self._ident))
        super().close()

    def __del__(self):
        self._in_del = True
        super().__del__()


class ReadOnlyFileLike:
    """Minimal file-like object: read() and close() only, no fileno()."""

    def __init__(self, data, ident=None):
        self._buf = io.BytesIO(data)
        self._ident = ident

    def read(self, size=-1):
        return self._buf.read(size)

    def close(self):
        if self._ident:
            _record("closed.log", "closed %s" % self._ident)


# A worker that got this far has finished the fork/boot steps; tests that
# must not race a worker's start-up wait for this line.
_record("boot.log", "imported %d" % os.getpid())


# --------------------------------------------------------------------------
# routes


def r_hello(environ, start_response):
    return _text(start_response, b"Hello, world!\n")


def r_pid(environ, start_response):
    return _text(start_response, str(os.getpid()))


def r_uri(environ, start_response):
    # REQUEST_URI carried as latin-1 str; echo it back byte for byte.
    return _text(start_response, environ.get("REQUEST_URI", "").encode("latin-1"))


def r_environ(environ, start_response):
    inp = environ["wsgi.input"]
    errors = environ["wsgi.errors"]
    data = {
        "environ": {k: _jsonable(v) for k, v in environ.items()},
        "types": {k: type(v).__name__ for k, v in environ.items()},
        "input_methods": {m: callable(getattr(inp, m, None))
                          for m in ("read", "readline", "readlines", "__iter__")},
        "errors_methods": {m: callable(getattr(errors, m, None))
                           for m in ("write", "writelines", "flush")},
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "pid": os.getpid(),
    }
    return _json(start_response, data)


def r_import_env(environ, start_response):
    return _json(start_response, {
        "import_time": IMPORT_ENV,
        "now": {k: v for k, v in os.environ.items() if k.startswith("FASTGW_TEST_")},
    })


def r_headers(environ, start_response):
    body = b"custom headers"
    start_response("200 OK", TEXT + [
        ("Content-Length", str(len(body))),
        ("X-Custom", "custom-value"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Path=/"),
    ])
    return [body]


def _body_result(start_response, chunks, inp, extra=None):
    after = inp.read(16)  # must be b"" once the body is exhausted
    result = {
        "chunks": [c.decode("latin-1") for c in chunks],
        "types": sorted({type(c).__name__ for c in chunks}),
        "after_eof": after.decode("latin-1"),
    }
    if extra:
        result.update(extra)
    return _json(start_response, result)


def r_body(environ, start_response):
    """/body/<mode>: read the request body in the given way and report."""
    mode = environ["PATH_INFO"][len("/body/"):]
    inp = environ["wsgi.input"]
    q = _query(environ)
    size = int(q.get("size", "7"))
    chunks = []
    if mode == "read":
        chunks.append(inp.read())
        second = inp.read()
        return _body_result(start_response, chunks, inp, {"second_read": second.decode("latin-1")})
    if mode == "read-n":
        while True:
            c = inp.read(size)
            if not c:
                break
            chunks.append(c)
    elif mode == "readline":
        while True:
            c = inp.readline()
            if not c:
                break
            chunks.append(c)
    elif mode == "readline-n":
        while True:
            c = inp.readline(size)
            if not c:
                break
            chunks.append(c)
    elif mode == "readlines":
        chunks = inp.readlines()
    elif mode == "iter":
        chunks = [line for line in inp]
    elif mode == "partial":
        # read only a prefix (the body has no newline early on, so this is
        # `size` bytes); the server has to deal with the rest
        chunks.append(inp.readline(size))
        return _json(start_response, {"chunks": [c.decode("latin-1") for c in chunks]})
    elif mode == "ignore":
        return _json(start_response, {"chunks": []})
    else:
        return _text(start_response, b"unknown body mode", "404 Not Found")
    return _body_result(start_response, chunks, inp)


def r_sha256(environ, start_response):
    inp = environ["wsgi.input"]
    size = int(_query(environ).get("size", "65536"))
    digest = hashlib.sha256()
    total = 0
    while True:
        chunk = inp.read(size)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    return _json(start_response, {"sha256": digest.hexdigest(), "length": total,
                                  "pid": os.getpid()})


def r_stream(environ, start_response):
    """n bytes of the deterministic pattern from a generator, no Content-Length."""
    q = _query(environ)
    total = int(q.get("n", "0"))
    chunk = int(q.get("chunk", str(BLOCK)))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return pattern_chunks(total, chunk)


def r_write(environ, start_response):
    q = _query(environ)
    parts = int(q.get("parts", "3"))
    mode = q.get("mode", "write")
    write = start_response("200 OK", TEXT)
    for i in range(parts):
        write(b"part-%d;" % i)
    if mode == "mixed":
        return [b"tail-a;", b"tail-b"]
    return []


def r_exc_info(environ, start_response):
    when = _query(environ).get("when", "before")
    write = start_response("200 OK", TEXT)
    if when == "after":
        write(b"head-already-sent;")
    try:
        raise ValueError("fastgw-test-exc-info-" + when)
    except ValueError:
        # Before the head is sent this replaces status and headers; after it
        # has been sent, start_response must re-raise the exception.
        body = b"handled: exc_info " + when.encode()
        start_response("503 Service Unavailable",
                       TEXT + [("Content-Length", str(len(body)))], sys.exc_info())
        return [body]


def r_raise(environ, start_response):
    q = _query(environ)
    when = q.get("when", "before")
    if when == "before":
        raise RuntimeError("fastgw-test-boom-before")
    headers = list(TEXT)
    if "length" in q:
        headers.append(("Content-Length", q["length"]))
    start_response("200 OK", headers)
    if when == "after-start":
        raise RuntimeError("fastgw-test-boom-after-start")

    def body():
        yield b"first-chunk;"
        raise RuntimeError("fastgw-test-boom-mid")

    return body()


def r_sleep(environ, start_response):
    q = _query(environ)
    ident = q.get("id", "-")
    _record("events.log", "start " + ident)
    time.sleep(float(q.get("s", "1")))
    _record("events.log", "end " + ident)
    return _text(start_response, "slept " + ident)


# ---- routes that must not be wrapped by the validator --------------------


def r_exit(environ, start_response):
    os._exit(1)


def r_len(environ, start_response):
    """Framing chosen by the server from the shape of the iterable."""
    mode = _query(environ).get("mode", "single")
    start_response("200 OK", TEXT)
    if mode == "single":
        return [b"single-body"]
    if mode == "empty":
        return []
    if mode == "oneempty":
        return [b""]
    if mode == "tuple":
        return (b"tuple-body",)
    if mode == "multi":
        return [b"part1-", b"part2-", b"part3"]
    if mode == "gen":
        return (c for c in [b"gen1-", b"gen2-", b"gen3"])
    raise ValueError(mode)


def r_status(environ, start_response):
    q = _query(environ)
    code = int(q.get("code", "204"))
    reason = {204: "No Content", 304: "Not Modified"}.get(code, "Whatever")
    start_response("%d %s" % (code, reason), [("X-Status-Test", str(code))])
    if q.get("body"):
        return [b"this body must never be sent"]
    return []


def r_start_twice(environ, start_response):
    start_response("200 OK", TEXT)
    try:
        start_response("201 Created", TEXT)
    except Exception:
        return [b"raised"]
    return [b"not raised"]


def r_close(environ, start_response):
    q = _query(environ)
    ident = q["id"]
    mode = q.get("mode", "normal")
    start_response("200 OK", TEXT)
    if mode == "normal":
        return RecordedIterable(ident, [b"close-a;", b"close-b"])
    if mode == "infinite":
        def endless():
            while True:
                yield from pattern_chunks(BLOCK * 1024)
        return RecordedIterable(ident, endless())
    if mode == "raise":
        def failing():
            yield b"before-failure;"
            raise RuntimeError("fastgw-test-boom-close-" + ident)
        return RecordedIterable(ident, failing())
    raise ValueError(mode)


def r_file(environ, start_response):
    q = _query(environ)
    path = os.path.join(os.environ["FASTGW_TEST_DIR"], q["name"])
    fh = RecordingFile(path, q["record"]) if "record" in q else open(path, "rb")
    offset = int(q.get("offset", "0"))
    if offset:
        fh.seek(offset)
    size = os.fstat(fh.fileno()).st_size - offset
    headers = [("Content-Type", "application/octet-stream")]
    length = q.get("length", "auto")
    if length == "auto":
        headers.append(("Content-Length", str(size)))
    elif length != "none":
        headers.append(("Content-Length", length))
    start_response("200 OK", headers)
    wrapper = environ["wsgi.file_wrapper"]
    if "blksize" in q:
        return wrapper(fh, int(q["blksize"]))
    return wrapper(fh)


def r_filelike(environ, start_response):
    q = _query(environ)
    total = int(q.get("n", "100000"))
    data = b"".join(pattern_chunks(total))
    if q.get("kind", "bytesio") == "bytesio":
        obj = io.BytesIO(data)  # has fileno(), but it raises UnsupportedOperation
    else:
        obj = ReadOnlyFileLike(data, q.get("record"))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(total))])
    wrapper = environ["wsgi.file_wrapper"]
    if "blksize" in q:
        return wrapper(obj, int(q["blksize"]))
    return wrapper(obj)


VALIDATED_ROUTES = {
    "/hello": r_hello,
    "/pid": r_pid,
    "/uri": r_uri,
    "/environ": r_environ,
    "/import-env": r_import_env,
    "/headers": r_headers,
    "/sha256": r_sha256,
    "/stream": r_stream,
    "/write": r_write,
    "/exc-info": r_exc_info,
    "/raise": r_raise,
    "/sleep": r_sleep,
}

RAW_ROUTES = {
    "/environ-raw": r_environ,
    "/exit": r_exit,
    "/len": r_len,
    "/status": r_status,
    "/start-twice": r_start_twice,
    "/close": r_close,
    "/file": r_file,
    "/filelike": r_filelike,
}

# readline/readlines/read(n) go through the validator's input wrapper, which
# forwards to the server's methods; read() without a size and iteration are
# forbidden/reimplemented by the validator, so they run raw.
RAW_BODY_MODES = {"read", "iter"}

_VALIDATED = {path: validator(func) for path, func in VALIDATED_ROUTES.items()}
_VALIDATED_BODY = validator(r_body)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path in _VALIDATED:
        return _VALIDATED[path](environ, start_response)
    if path in RAW_ROUTES:
        return RAW_ROUTES[path](environ, start_response)
    if path.startswith("/environ-raw/"):
        return r_environ(environ, start_response)
    if path.startswith("/body/"):
        if path[len("/body/"):] in RAW_BODY_MODES:
            return r_body(environ, start_response)
        return _VALIDATED_BODY(environ, start_response)
    body = b"no such route: " + path.encode("latin-1")
    start_response("404 Not Found", TEXT + [("Content-Length", str(len(body)))])
    return [body]
