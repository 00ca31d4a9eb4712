"""WSGI application for the process-model tests (threads, reload, signals,
timeouts, recycling, crashes).

Import-time behaviour, driven by environment variables the tests pass with
``--env``:

FASTGW_TEST_VERSION_FILE=PATH  the text of PATH (stripped) is the VERSION this
    import serves at /version. A text starting with "broken" makes the import
    raise, so a reload (SIGHUP) of a broken application can be tested; a text
    containing "slow-import" makes the import take 2 s.
FASTGW_TEST_FAIL_FLAG=PATH     if PATH exists, the import raises (a worker that
    is respawned after the file appeared cannot boot).

A slow import records "slow import PID VERSION" before it sleeps; every
import ends by recording "imported PID VERSION" in
FASTGW_TEST_DIR/procapp-events.log.

Routes (PATH_INFO), parameters in QUERY_STRING:

/pid              the worker's pid
/version          "VERSION PID"
/environ          wsgi.multithread / wsgi.multiprocess / wsgi.run_once as JSON
/gate?id=ID       records "start ID" in FASTGW_TEST_DIR/procapp-events.log, then
                  blocks until the file FASTGW_TEST_DIR/gate-ID exists (at most
                  60 s), records "end ID" and answers "released ID"; with it a
                  test decides when a slow request ends, instead of sleeping
/gatestream?id=ID streams "first\n" (so the response head goes out at once), then
                  waits like /gate, then sends "last\n" and ends
/sleep?s=S&id=ID  records "start ID", sleeps S seconds, records "end ID"
/stuck?id=ID      records "start ID", then blocks in
                  fgw_procapp_stuck_in_request() for 300 s (for --timeout)
/segfault         reads address 0 through ctypes: the worker dies of SIGSEGV
/exit?code=N      os._exit(N) in the middle of a request
/tid              "PID THREAD-IDENT main|other": the thread running the application
                  and whether it is the process's main thread (the loop thread)
/echo             reads wsgi.input to the end, answers "LENGTH SHA256-HEX"
/stream?n=N       streams N blocks of 64 KiB from a generator, each block filled
                  with its index modulo 256
/grow?mb=N        keeps N MiB more (touched, so resident) for the life of the
                  worker, as a leak would; answers "PID HELD-MIB"
"""
import ctypes
import hashlib
import json
import os
import threading
import time
from urllib.parse import parse_qs


def _test_dir():
    return os.environ.get("FASTGW_TEST_DIR", "")


def _record(line):
    directory = _test_dir()
    if directory:
        with open(os.path.join(directory, "procapp-events.log"), "a") as fh:
            fh.write(line + "\n")


SLOW_IMPORT_SECONDS = 2.0


def _read_version():
    path = os.environ.get("FASTGW_TEST_VERSION_FILE")
    if not path:
        return "unversioned"
    with open(path) as fh:
        text = fh.read().strip()
    if text.startswith("broken"):
        raise RuntimeError("procapp-broken-on-purpose: version file says %r" % text)
    if "slow-import" in text:
        _record("slow import %d %s" % (os.getpid(), text))
        time.sleep(SLOW_IMPORT_SECONDS)
    return text


VERSION = _read_version()

_FAIL_FLAG = os.environ.get("FASTGW_TEST_FAIL_FLAG")
if _FAIL_FLAG and os.path.exists(_FAIL_FLAG):
    raise RuntimeError("procapp-fail-flag-present: %s exists" % _FAIL_FLAG)

GATE_LIMIT = 60.0
STUCK_SECONDS = 300.0


def _query(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _text(start_response, text, status="200 OK"):
    body = text.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def gate_path(test_dir, ident):
    """The file whose existence releases /gate?id=ident (also used by the tests)."""
    return os.path.join(test_dir, "gate-" + ident)


def r_pid(environ, start_response):
    return _text(start_response, str(os.getpid()))


def r_version(environ, start_response):
    return _text(start_response, "%s %d" % (VERSION, os.getpid()))


def r_environ(environ, start_response):
    body = json.dumps({key: environ[key] for key in
                       ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once")})
    return _text(start_response, body)


def r_gate(environ, start_response):
    ident = _query(environ).get("id", "-")
    _record("start " + ident)
    path = gate_path(_test_dir(), ident)
    deadline = time.monotonic() + GATE_LIMIT
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    _record("end " + ident)
    return _text(start_response, "released " + ident)


def r_gatestream(environ, start_response):
    ident = _query(environ).get("id", "-")
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first\n"
        _record("start " + ident)
        path = gate_path(_test_dir(), ident)
        deadline = time.monotonic() + GATE_LIMIT
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        _record("end " + ident)
        yield b"last\n"

    return body()


def r_sleep(environ, start_response):
    q = _query(environ)
    ident = q.get("id", "-")
    _record("start " + ident)
    time.sleep(float(q.get("s", "1")))
    _record("end " + ident)
    return _text(start_response, "slept " + ident)


def fgw_procapp_stuck_in_request(seconds):
    # The faulthandler dump written before a --timeout kill must name this function.
    time.sleep(seconds)


def r_stuck(environ, start_response):
    ident = _query(environ).get("id", "-")
    _record("start " + ident)
    fgw_procapp_stuck_in_request(STUCK_SECONDS)
    _record("end " + ident)
    return _text(start_response, "unstuck " + ident)


def r_segfault(environ, start_response):
    ctypes.string_at(0)
    return _text(start_response, "survived a segfault?")


def r_exit(environ, start_response):
    os._exit(int(_query(environ).get("code", "1")))


def r_tid(environ, start_response):
    where = "main" if threading.current_thread() is threading.main_thread() else "other"
    return _text(start_response, "%d %d %s" % (os.getpid(), threading.get_ident(), where))


def r_echo(environ, start_response):
    digest = hashlib.sha256()
    length = 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        length += len(piece)
        digest.update(piece)
    return _text(start_response, "%d %s" % (length, digest.hexdigest()))


STREAM_BLOCK = 65536


def r_stream(environ, start_response):
    count = int(_query(environ).get("n", "1"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def blocks():
        for index in range(count):
            yield bytes([index % 256]) * STREAM_BLOCK

    return blocks()


_leak = []


def r_grow(environ, start_response):
    mib = int(_query(environ).get("mb", "1"))
    _leak.append(bytearray(b"x" * (mib * 1024 * 1024)))
    return _text(start_response, "%d %d" % (os.getpid(), sum(len(b) for b in _leak) >> 20))


ROUTES = {
    "/pid": r_pid,
    "/version": r_version,
    "/environ": r_environ,
    "/gate": r_gate,
    "/gatestream": r_gatestream,
    "/sleep": r_sleep,
    "/stuck": r_stuck,
    "/segfault": r_segfault,
    "/exit": r_exit,
    "/tid": r_tid,
    "/echo": r_echo,
    "/stream": r_stream,
    "/grow": r_grow,
}


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is None:
        return _text(start_response, "no such route", "404 Not Found")
    return route(environ, start_response)


# Last step of the import: tests wait for this line before they change what the
# next import would read (the version file, the fail flag).
_record("imported %d %s" % (os.getpid(), VERSION))
