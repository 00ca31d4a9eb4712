"""The benchmark scenarios: one function each, selected by name on the command line.

A scenario says which rows it compares (each row a way to build a Stack, or the
reason it cannot run), the request wrk sends, and how to check one answer
before measuring, so a server that answers wrongly is reported, not timed.
The application scenarios (django, blocking_io, mixed) also say the load's
shape: a fraction of the measured maximum to repeat at a fixed rate
(pace.lua, latency without coordinated omission), or fixed-rate loads alone.
"""
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import servers
from measure import http_exchange
from servers import HOST, HTTP_SERVERS, App, Stack, Tuning

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
HELLO = b"Hello, World!"
# the threaded servers, each with the threads its documentation suggests for a
# blocking app (gunicorn's sync worker and the single-threaded event loops would
# serve one request at a time)
THREADED = ["fastgw", "gunicorn-gthread", "uwsgi", "granian", "mod_wsgi", "waitress"]
ONE_PROCESS = {"bjoern", "meinheld", "fastwsgi", "waitress"}    # no worker-count option
BOTH_CPUS = "0,1"


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
    connections: int = 50
    paths: List[str] = field(default_factory=list)   # sent in turn (paths.lua)
    paced: float = 0.0                # then a fixed-rate run at this fraction of the max
    paced_connections: int = 16
    fixed: List["Paced"] = field(default_factory=list)  # instead of the closed loop
    cpus: str = servers.SERVER_CPU    # where the server runs; wrk runs on CPU 1 or here


@dataclass
class Paced:
    """A fixed-rate load of pace.lua, run beside the scenario's others."""
    label: str
    paths: List[str]
    rate: float
    connections: int


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


def _http_rows(ctx, peers, app, tuning=Tuning(), only=None, missing=None):
    """One row per HTTP server (those in `only`; by default all but mod_wsgi, which
    is a peer of the application scenarios), alone on CPU 0, or on both CPUs
    when it has more than one worker. missing: why the app itself cannot run."""
    rows = []
    for name, (factory, dist) in HTTP_SERVERS.items():
        if name not in peers or name not in (only or [n for n in HTTP_SERVERS
                                                      if n != "mod_wsgi"]):
            continue
        reason = peers[name] or missing
        if not reason and tuning.workers > 1 and name in ONE_PROCESS:
            reason = "one process only: it has no worker-count option"
        if reason:
            rows.append(Row(name, unavailable=reason))
            continue
        cpus = BOTH_CPUS if tuning.workers > 1 else servers.SERVER_CPU
        rows.append(Row(name, build=lambda tmp, f=factory: Stack([f(ctx, app, tuning)], tmp,
                                                                 cpus=cpus)))
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


def hello_2w(ctx, peers, features):
    return Scenario("hello_2w", "Hello world, keep-alive, 50 connections, two worker "
                    "processes", _http_rows(ctx, peers, "hello", Tuning(workers=2)),
                    check=check_body(HELLO), cpus=BOTH_CPUS, notes=[TWO_WORKERS])


TWO_WORKERS = ("Two worker processes on a machine with two CPUs: the server's processes "
               "and wrk share both CPUs (nothing is pinned), so wrk takes CPU from the "
               "server and the req/s are not twice the one-worker figures. CPU µs per "
               "request is the per-core figure to compare; req/s ÷ the one-worker row "
               "of the same server is in the headline.")


def _django(ctx, peers, workers):
    site = ctx.django_site
    app = missing = None
    if site is None:
        missing = ctx.django_unavailable or "the Django project could not be made"
    else:
        app = App(site.module, "application", site.root, static_dir=site.static_root)
    rows = _http_rows(ctx, peers, app, Tuning(threads=4, workers=workers), only=THREADED,
                      missing=missing)
    name, title = "django", "Django page (20 rows from SQLite, a template) and its CSS"
    if workers > 1:
        name, title = "django_2w", title + ", two worker processes"
    paths = (site.page_paths(4) + [site.css]) if site else ["/"]
    return Scenario(name, title + ", 4 threads, 50 connections", rows, path=paths[0],
                    paths=paths, check=_check_django(site), paced=PACED_FRACTION,
                    cpus=BOTH_CPUS if workers > 1 else servers.SERVER_CPU,
                    notes=[DJANGO_NOTE, PACED_NOTE] + ([TWO_WORKERS] if workers > 1 else []))


PACED_FRACTION = 0.7
PACED_NOTE = ("**At a fixed rate**: after its closed-loop run, each server gets a second "
              f"run at {PACED_FRACTION:.0%} of the req/s it just reached, from `wrk` with "
              "`bench/pace.lua`: every connection (one per wrk thread) sends on its own "
              "schedule, and a request's latency counts from when it was due, so a "
              "stall is charged for every request it held back (no coordinated "
              "omission; the model of wrk2, which no registry here packages).")
DJANGO_NOTE = ("The project is made by the bench (`bench/django_site.py`: startproject, "
               "a model with 300 rows in SQLite, a view that queries 20 and renders a "
               "template linking one CSS file). wrk asks for the page at four offsets and "
               "the CSS in turn (4:1). The CSS comes from each server's own static "
               "files (fastgw `--static`, uWSGI `--static-map`, granian "
               "`--static-path-mount`, mod_wsgi `--url-alias`), or from WhiteNoise in "
               "Django for gunicorn and waitress, which serve no files.")


def _check_django(site):
    def check(host, port, path):
        if site is None:
            return "no Django project"
        import django_site
        status, headers, body = http_exchange(host, port, "GET", site.page_paths(4)[-1])
        if status != 200:
            return f"GET {site.page} answered {status}"
        problem = django_site.check_page(body)
        if problem:
            return problem
        return check_body(site.css_body)(host, port, site.css)
    return check


def django(ctx, peers, features):
    return _django(ctx, peers, workers=1)


def django_2w(ctx, peers, features):
    return _django(ctx, peers, workers=2)


def blocking_io(ctx, peers, features):
    return Scenario("blocking_io", "The app waits 20 ms (a database call), 16 threads, "
                    "100 connections", _http_rows(ctx, peers, "wait20ms", Tuning(threads=16),
                                                  only=THREADED),
                    check=check_body(HELLO), connections=100, paced=PACED_FRACTION,
                    paced_connections=32,
                    notes=["With 16 threads each holding a request for 20 ms, one worker "
                           "can answer at most 800 req/s; the ceiling column is how close "
                           "each server gets. With 100 connections against 16 threads the "
                           "closed-loop latency is queueing (about 100 ÷ 800 s); the p99 "
                           "to compare is the one at the fixed rate.", PACED_NOTE])


MIXED_FAST = Paced("fast", ["/"], 380.0, 16)
MIXED_SLOW = Paced("slow", ["/slow"], 20.0, 8)


def mixed(ctx, peers, features):
    return Scenario("mixed", "95 % of requests answered at once, 5 % after 200 ms, "
                    "8 threads, at a fixed 400 req/s",
                    _http_rows(ctx, peers, "mixed", Tuning(threads=8), only=THREADED),
                    check=check_body(HELLO), fixed=[MIXED_FAST, MIXED_SLOW],
                    notes=["Two `wrk -s bench/pace.lua` at once: 380 req/s of fast "
                           "requests on 16 connections and 20 req/s of `/slow` ones on 8 "
                           "(about four in flight at any time, of 8 threads). The figure "
                           "is the p99 of the fast requests, from their due time: does a "
                           "slow request delay fast ones? p50/p99 in the table are the "
                           "fast requests'."])


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
                                     slow_readers_static, django, blocking_io, mixed,
                                     hello_2w, django_2w)}
DEFAULT_SCENARIOS = list(SCENARIOS)
