"""The benchmark scenarios: one function each, selected by name on the command line.

A scenario says which rows it compares (each row a way to build a Stack, or the
reason it cannot run), the request wrk sends, and how to check one answer
before measuring, so a server that answers wrongly is reported, not timed.
"""
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import servers
from measure import http_exchange
from servers import HOST, HTTP_SERVERS, Stack, Tuning

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
HELLO = b"Hello, World!"


@dataclass
class Row:
    server: str                                   # the name in tables and in --servers
    build: Optional[Callable[[str], Stack]] = None  # tmp dir -> Stack (not started)
    unavailable: Optional[str] = None             # why this row has no numbers


@dataclass
class Scenario:
    name: str
    title: str
    rows: List[Row]
    path: str = "/"
    close: bool = False               # wrk sends Connection: close
    script: Optional[str] = None      # a wrk lua script
    check: Callable = None            # (host, port, path) -> None or an error text
    idle: int = 0                     # idle keep-alive connections held during the run
    stalled: int = 0                  # clients that ask for stalled_path and never read
    stalled_path: str = ""
    notes: List[str] = field(default_factory=list)


def check_body(expected, method="GET", body=b""):
    def check(host, port, path):
        status, headers, got = http_exchange(host, port, method, path, body)
        if status != 200:
            return f"{method} {path} answered {status}"
        if got != expected:
            return (f"{method} {path}: body of {len(got)} bytes, expected {len(expected)}"
                    f" ({got[:40]!r}...)")
        return None
    return check


def _http_rows(ctx, peers, app, tuning=Tuning()):
    """One row per HTTP server, the server alone on CPU 0."""
    rows = []
    for name, (factory, dist) in HTTP_SERVERS.items():
        if name not in peers:
            continue
        if peers[name]:
            rows.append(Row(name, unavailable=peers[name]))
            continue
        rows.append(Row(name, build=lambda tmp, f=factory: Stack([f(ctx, app, tuning)], tmp)))
    return rows


def hello(ctx, peers, features):
    rows = _http_rows(ctx, peers, "hello")
    if "nginx" in peers:
        rows.append(_nginx_row("nginx (return 200)", peers,
                               lambda tmp: Stack([servers.nginx_return_hello(tmp)], tmp)))
    return Scenario("hello", "Hello world, keep-alive, 50 connections", rows,
                    check=check_body(HELLO),
                    notes=["nginx answers by itself (`return 200`): a reference for the "
                           "cost of HTTP alone, not a WSGI server."])


def hello_close(ctx, peers, features):
    return Scenario("hello_close", "Hello world, `Connection: close` (a new connection "
                    "per request)", _http_rows(ctx, peers, "hello"), close=True,
                    check=check_body(HELLO))


def resp64k(ctx, peers, features):
    import bench_apps
    return Scenario("resp64k", "64 KiB response, keep-alive, 50 connections",
                    _http_rows(ctx, peers, "big64k"), check=check_body(bench_apps.BIG64K))


def post1m(ctx, peers, features):
    payload = b"x" * (1 << 20)
    return Scenario("post1m", "1 MiB POST echoed back, keep-alive, 50 connections",
                    _http_rows(ctx, peers, "echo"),
                    script=os.path.join(BENCH_DIR, "post1m.lua"),
                    check=check_body(payload, "POST", payload))


def idle1000(ctx, peers, features):
    return Scenario("idle1000", "Hello world, keep-alive, 50 busy connections while 1,000 "
                    "idle keep-alive connections are held open",
                    _http_rows(ctx, peers, "hello", Tuning(idle=True)), idle=1000,
                    check=check_body(HELLO),
                    notes=["Each idle connection made one request and got its answer "
                           "before the run. Servers whose defaults would close or refuse "
                           "them are given a long keep-alive timeout and a higher "
                           "connection limit (see the commands). `idle open` is how many "
                           "the server still held at the end of the run."])


STALLED = 200


def slow_readers(ctx, peers, features):
    return Scenario("slow_readers", f"Hello world, keep-alive, 50 connections, while "
                    f"{STALLED} clients hold a 16 MiB generator response they do not read",
                    _http_rows(ctx, peers, "hello_or_big"), check=check_body(HELLO),
                    stalled=STALLED, stalled_path="/big",
                    notes=["Each stalled client has a 4 KiB receive buffer and reads only "
                           "the first byte. Compare with `hello` in the same run: a server "
                           "that gives a worker or thread to each stalled client answers "
                           "the others slowly or not at all."])


def slow_readers_static(ctx, peers, features):
    scenario = _static("4k.bin", "4k", ctx, peers, features)
    scenario.name = "slow_readers_static"
    scenario.title = (f"Static 4k file, keep-alive, 50 connections, while {STALLED} "
                      f"clients hold a 64 MiB file they do not read")
    scenario.stalled, scenario.stalled_path = STALLED, "/static/64m.bin"
    scenario.notes = ["Compare with `static4k` in the same run."]
    return scenario


def _static(name, size, ctx, peers, features):
    path = f"/static/{name}"
    with open(os.path.join(ctx.static_dir, name), "rb") as f:
        content = f.read()
    rows = []
    if "fastgw" in peers:
        if peers["fastgw"]:
            rows.append(Row("fastgw", unavailable=peers["fastgw"]))
        elif "static" not in features:
            rows.append(Row("fastgw", unavailable="not yet supported (`fastgw serve --help` "
                                                  "has no --static)"))
        else:
            extra = ("--static", f"/static/={ctx.static_dir}")
            rows.append(Row("fastgw", build=lambda tmp: Stack(
                [servers.fastgw(ctx, "hello", Tuning(), extra)], tmp)))
    if "nginx" in peers:
        rows.append(_nginx_row("nginx", peers, lambda tmp: Stack(
            [servers.nginx_static(tmp, ctx.static_dir)], tmp)))
    return Scenario(f"static{size}", f"Static {size} file, keep-alive, 50 connections",
                    rows, path=path, check=check_body(content))


def static4k(ctx, peers, features):
    return _static("4k.bin", "4k", ctx, peers, features)


def static1m(ctx, peers, features):
    return _static("1m.bin", "1m", ctx, peers, features)


def behind_nginx(ctx, peers, features):
    rows = []

    def row(name, label, backend, front, missing=None):
        if name not in peers:
            return
        reason = peers[name] or peers.get("nginx") or missing
        if reason:
            rows.append(Row(label, unavailable=reason))
            return

        def build(tmp):
            sock = os.path.join(tmp, "app.sock")
            return Stack([backend(ctx, "hello", sock), front(tmp, sock)], tmp)
        rows.append(Row(label, build=build))

    missing = (None if "fastcgi" in features else
               "not yet supported (`fastgw serve --help` has no fastcgi:// bind)")
    row("fastgw", "nginx → fastgw (fastcgi_pass, kept connections)",
        servers.fastgw_backend("fastcgi"), servers.nginx_fastcgi_keep_conn, missing)
    row("fastgw", "nginx → fastgw (uwsgi_pass)", servers.fastgw_backend("uwsgi"),
        servers.nginx_uwsgi_pass, missing)
    row("fastgw", "nginx → fastgw (fastcgi_pass)", servers.fastgw_backend("fastcgi"),
        servers.nginx_fastcgi_pass, missing)
    row("uwsgi", "nginx → uWSGI (uwsgi_pass)", servers.uwsgi_backend, servers.nginx_uwsgi_pass)
    row("flup", "nginx → flup (fastcgi_pass)", servers.flup_backend,
        servers.nginx_fastcgi_pass)
    return Scenario("behind_nginx", "Hello world behind nginx over a UNIX socket "
                    "(wrk → nginx keep-alive, nginx → app)", rows, check=check_body(HELLO),
                    notes=["nginx and the application server are both pinned to CPU 0; "
                           "CPU per request counts both, RSS is the application "
                           "server's worker."])


def _nginx_row(label, peers, build):
    if peers.get("nginx"):
        return Row(label, unavailable=peers["nginx"])
    return Row(label, build=build)


SCENARIOS = {f.__name__: f for f in (hello, hello_close, resp64k, post1m, static4k, static1m,
                                     behind_nginx, idle1000, slow_readers,
                                     slow_readers_static)}
DEFAULT_SCENARIOS = list(SCENARIOS)
