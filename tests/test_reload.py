"""Graceful reload (SIGHUP): a new generation of workers imports the application
again (and the config file is read again), then the old generation finishes what
it is doing and exits; the listeners stay open, so no request fails.

The application (tests/apps/procapp.py) serves "VERSION PID" at /version, where
VERSION is read at import time from a file the test rewrites before each SIGHUP.
"""
import contextlib
import http.client
import os
import re
import signal
import threading
import time
import uuid

import pytest

from fgwtest import (RawConnection, http_request, pid_alive, read_lines, request, wait_for_line,
                     wait_until)
from procapp_helpers import APP

RELOAD_DONE = re.compile(r"reload done: (\d+) new worker\(s\), (\d+) retiring")
BOOTED = re.compile(r"Booting (?:process group '[^']*' )?worker with pid: (\d+)")


def write_version(path, text):
    # Write to a temporary file and rename, so a worker importing the app never
    # reads a half-written version file.
    tmp = "%s.%s.tmp" % (path, uuid.uuid4().hex[:8])
    with open(tmp, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


def versioned_server(start_server, tmp_path, version, *args, **options):
    path = str(tmp_path / "version.txt")
    write_version(path, version)
    srv = start_server(APP, "--env", "FASTGW_TEST_VERSION_FILE=" + path, *args, **options)
    return srv, path


def wait_imported(srv, pids):
    """Wait until each worker in ``pids`` has imported the application, so that
    rewriting the version file cannot affect the import of a running generation."""
    events = os.path.join(srv.test_dir, "procapp-events.log")
    for pid in pids:
        wait_until(lambda: any(line.startswith("imported %d " % pid) for line in read_lines(events)),
                   15, message="worker %d to import the application" % pid)


def wait_slow_import(srv, version):
    """Wait until a worker has read ``version`` and is in its slow import; returns its pid."""
    events = os.path.join(srv.test_dir, "procapp-events.log")
    line = wait_until(lambda: [l for l in read_lines(events)
                               if l.startswith("slow import ") and l.endswith(" " + version)],
                      15, message="a worker importing %r" % version)[-1]
    return int(line.split()[2])


def wait_served(srv, version, mark, what, timeout=12):
    try:
        wait_until(lambda: get_version(srv.port)[0] == version, timeout,
                   message="%s (%r) to be served" % (what, version))
    except AssertionError as exc:
        raise AssertionError("%s; log since the signal:\n%s" % (
            exc, "\n".join(srv.log_lines()[mark:]))) from None


def get_version(port):
    resp = http_request(port, "GET", "/version")
    assert resp.status == 200, resp.body
    version, pid = resp.body.decode().split()
    return version, int(pid)


def wait_gone(pids, timeout=20):
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout,
               message="old workers %r to exit" % (pids,))


def reload_and_wait(srv, timeout=20):
    """SIGHUP, then wait for this reload's 'reload done' line; returns the new
    generation's pids (the workers booted after the signal)."""
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    m = srv.wait_for_log(RELOAD_DONE, timeout, start=mark)
    booted = [int(x) for x in re.findall(BOOTED, "\n".join(srv.log_lines()[mark:]))]
    assert len(booted) >= int(m.group(1)), booted
    return booted[:int(m.group(1))]


class LoadGenerator:
    """Client threads sending GET /version as fast as they can until stopped;
    every failure (exception, reset, wrong status, malformed body) is kept."""

    def __init__(self, port, clients=4, keepalive=False):
        self.port = port
        self.keepalive = keepalive
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.failures = []
        self.versions = {}  # version -> responses seen
        self.total = 0
        self.threads = [threading.Thread(target=self.run, name="load-%d" % i, daemon=True)
                        for i in range(clients)]
        for thread in self.threads:
            thread.start()

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def run(self):
        conn = self.connect()
        try:
            while not self.stopping.is_set():
                if not self.keepalive:
                    conn.close()
                    conn = self.connect()
                try:
                    conn.request("GET", "/version")
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        raise AssertionError("status %d: %r" % (resp.status, body))
                    version, pid = body.decode().split()
                    int(pid)
                except Exception as exc:
                    with self.lock:
                        self.failures.append("%s: %r" % (time.strftime("%H:%M:%S"), exc))
                    conn.close()
                    conn = self.connect()
                    continue
                with self.cond:
                    self.total += 1
                    self.versions[version] = self.versions.get(version, 0) + 1
                    self.cond.notify_all()
        finally:
            conn.close()

    def wait_for_version(self, version, count=20, timeout=20):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.versions.get(version, 0) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("load generator saw %r only %d times: %r" % (
                        version, self.versions.get(version, 0), self.versions))
                self.cond.wait(remaining)

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(40)
        assert not any(t.is_alive() for t in self.threads), "load generator threads stuck"


@pytest.mark.parametrize("keepalive, threads", [(False, "1"), (True, "1"), (True, "4")],
                         ids=["new-connection", "keep-alive", "keep-alive-threads"])
def test_five_reloads_under_load(start_server, tmp_path, keepalive, threads):
    srv, version_file = versioned_server(start_server, tmp_path, "v0", "--workers", "2",
                                         "--threads", threads)
    generation = srv.wait_for_workers(2)
    wait_imported(srv, generation)
    load = LoadGenerator(srv.port, clients=4, keepalive=keepalive)
    try:
        load.wait_for_version("v0")
        for n in range(1, 6):
            version = "v%d" % n
            write_version(version_file, version)
            before = load.total
            new = reload_and_wait(srv)
            assert len(new) == 2 and not set(new) & set(generation)
            wait_gone(generation)
            # Only the new generation is left: every fresh request gets the new code.
            for _ in range(6):
                served, pid = get_version(srv.port)
                assert served == version
                assert pid in new
            load.wait_for_version(version)
            assert load.total > before  # the load really ran across this reload
            generation = new
    finally:
        load.stop()
    assert load.failures == [], "%d of %d requests failed:\n%s" % (
        len(load.failures), load.total + len(load.failures), "\n".join(load.failures[:20]))
    assert set(load.versions) == {"v%d" % n for n in range(6)}
    assert sorted(srv.live_worker_pids()) == sorted(generation)
    assert srv.stop() == 0


@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM"])
def test_keepalive_response_promised_before_stop_then_next_request_answered(
        start_server, tmp_path, test_dir, how):
    """A response whose head went out (keep-alive, no "Connection: close") before its
    worker was told to stop: the client may send its next request on that connection
    as soon as the response ends, and it must get an answer (with "Connection:
    close"), not a closed connection. This is the keep-alive race that makes a
    reload under load lose requests."""
    srv, version_file = versioned_server(start_server, tmp_path, "old", "--workers", "1",
                                         "--threads", "2", "--graceful-timeout", "30")
    (old_pid,) = srv.wait_for_workers(1)
    ident = "promised-%s" % uuid.uuid4().hex[:8]
    with RawConnection(srv.port, timeout=30) as conn, RawConnection(srv.port) as probe:
        conn.send(request("GET", "/gatestream?id=" + ident))
        head = conn.read_head()
        assert head.status == 200
        assert "close" not in head.connection_tokens()  # keep-alive was promised
        wait_for_line(os.path.join(test_dir, "procapp-events.log"), "start " + ident)
        assert probe.roundtrip(request("GET", "/pid")).body.decode() == str(old_pid)
        if how == "SIGHUP":
            write_version(version_file, "new")
            reload_and_wait(srv)
        else:
            srv.send_signal(signal.SIGTERM)
            srv.wait_for_log(r"SIGTERM: stopping gracefully")
        # The old worker closes an idle connection once it is stopping: now it is.
        assert probe.wait_closed(20), "the old worker did not start stopping"
        with open(os.path.join(test_dir, "gate-" + ident), "w"):
            pass
        conn.read_body(head)
        assert head.body == b"first\nlast\n"
        conn.send(request("GET", "/version"))
        try:
            resp = conn.read_response()
        except AssertionError as exc:
            raise AssertionError("the request sent right after a keep-alive response of a "
                                 "stopping worker was dropped: %s" % exc) from None
        assert resp.status == 200
        assert "close" in resp.connection_tokens()


def test_reload_with_broken_app_keeps_old_workers(start_server, tmp_path):
    srv, version_file = versioned_server(start_server, tmp_path, "good-1", "--workers", "2")
    old = srv.wait_for_workers(2)
    wait_imported(srv, old)
    assert get_version(srv.port)[0] == "good-1"
    write_version(version_file, "broken-on-purpose")
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"reload failed", start=mark)
    after = "\n".join(srv.log_lines()[mark:])
    # The log says why: the application's own error.
    assert "procapp-broken-on-purpose" in after
    assert "RuntimeError" in after
    # The old workers were not touched and still serve the old code.
    assert all(pid_alive(p) for p in old)
    for _ in range(10):
        version, pid = get_version(srv.port)
        assert version == "good-1" and pid in old
    # The failed generation leaves no process behind (its workers are killed).
    wait_until(lambda: sorted(srv.live_worker_pids()) == sorted(old), 10,
               message="only the old workers %r left (live: %r)" % (old, srv.live_worker_pids()))
    assert srv.proc.poll() is None
    # Fixing the application and reloading again works.
    write_version(version_file, "good-2")
    new = reload_and_wait(srv)
    wait_gone(old)
    for _ in range(6):
        version, pid = get_version(srv.port)
        assert version == "good-2" and pid in new
    assert srv.stop() == 0


def test_reload_with_bad_config_keeps_old_workers(start_server, tmp_path):
    config = tmp_path / "fastgw.toml"
    config.write_text("[server]\nworkers = 2\n")
    srv, version_file = versioned_server(start_server, tmp_path, "cfg-1", "--config", str(config),
                                         default_workers=False)
    old = srv.wait_for_workers(2)
    wait_imported(srv, old)
    # A config file that no longer parses.
    config.write_text("[server]\nworkers = = 3\n")
    write_version(version_file, "cfg-2")
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    line = srv.wait_for_log(r"reload failed", start=mark).string
    assert "fastgw.toml" in line, line  # names the file at fault
    assert not re.search(r"Booting worker", "\n".join(srv.log_lines()[mark:]))
    for _ in range(6):
        version, pid = get_version(srv.port)
        assert version == "cfg-1" and pid in old
    # A config file with a value that is wrong, not just malformed.
    config.write_text("[server]\nworkers = 0\n")
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"reload failed", start=mark)
    assert sorted(srv.live_worker_pids()) == sorted(old)
    # A good file is read again on reload: three workers now.
    config.write_text("[server]\nworkers = 3\n")
    new = reload_and_wait(srv)
    assert len(new) == 3
    wait_gone(old)
    assert sorted(srv.live_worker_pids()) == sorted(new)
    assert get_version(srv.port)[0] == "cfg-2"
    assert srv.stop() == 0


def test_reload_lets_inflight_request_finish(start_server, tmp_path, test_dir):
    srv, version_file = versioned_server(start_server, tmp_path, "old", "--workers", "1")
    (old_pid,) = srv.wait_for_workers(1)
    ident = "reload-inflight-%s" % uuid.uuid4().hex[:8]
    results = {}

    def slow_request():
        try:
            results["resp"] = http_request(srv.port, "GET", "/gate?id=" + ident, timeout=60)
        except Exception as exc:
            results["error"] = exc

    thread = threading.Thread(target=slow_request, daemon=True)
    thread.start()
    events = os.path.join(test_dir, "procapp-events.log")
    wait_for_line(events, "start " + ident)
    write_version(version_file, "new")
    (new_pid,) = reload_and_wait(srv)
    # The new worker serves while the old one is still busy with its request.
    version, pid = get_version(srv.port)
    assert (version, pid) == ("new", new_pid)
    assert pid_alive(old_pid)
    assert "end " + ident not in read_lines(events)
    with open(os.path.join(test_dir, "gate-" + ident), "w"):
        pass
    thread.join(60)
    assert "error" not in results, results.get("error")
    assert results["resp"].status == 200
    assert results["resp"].body == ("released " + ident).encode()
    wait_gone([old_pid])
    assert srv.stop() == 0


def test_reload_graceful_timeout_kills_stuck_old_worker(start_server, tmp_path, test_dir):
    srv, version_file = versioned_server(start_server, tmp_path, "old", "--workers", "1",
                                         "--graceful-timeout", "1", "--timeout", "0")
    (old_pid,) = srv.wait_for_workers(1)
    ident = "reload-stuck-%s" % uuid.uuid4().hex[:8]
    thread = threading.Thread(
        target=lambda: _ignore_errors(http_request, srv.port, "GET", "/stuck?id=" + ident,
                                      timeout=60), daemon=True)
    thread.start()
    wait_for_line(os.path.join(test_dir, "procapp-events.log"), "start " + ident)
    write_version(version_file, "new")
    (new_pid,) = reload_and_wait(srv)
    srv.wait_for_log(r"worker %d did not finish within the graceful timeout" % old_pid)
    wait_gone([old_pid])
    assert get_version(srv.port) == ("new", new_pid)
    assert srv.stop() == 0


def _ignore_errors(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except Exception:
        pass


def test_sighup_during_a_reload_is_not_lost(start_server, tmp_path):
    """A second SIGHUP that arrives while the new generation is still importing the
    application (the code changed again meanwhile) must lead to the newest code."""
    srv, version_file = versioned_server(start_server, tmp_path, "first", "--workers", "1")
    assert get_version(srv.port)[0] == "first"  # booted: the first worker is serving
    write_version(version_file, "second-slow-import")  # this import takes 2 s
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"Booting worker with pid", start=mark)
    wait_slow_import(srv, "second-slow-import")
    write_version(version_file, "third")
    srv.send_signal(signal.SIGHUP)  # while "second" is still importing
    wait_served(srv, "third", mark, "the code of the second SIGHUP")
    assert srv.stop() == 0


def test_sighup_while_first_worker_boots_is_not_lost(start_server, tmp_path):
    """SIGHUP sent while the first worker is still importing the application (the
    code was changed meanwhile) must not be dropped: the new code gets served."""
    srv, version_file = versioned_server(start_server, tmp_path, "one-slow-import",
                                         "--workers", "1")
    srv.wait_for_workers(1)
    wait_slow_import(srv, "one-slow-import")  # read the version file, importing for 2 s
    write_version(version_file, "two")
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    wait_served(srv, "two", mark, "the code of the SIGHUP sent during boot")
    assert srv.stop() == 0


def test_reload_keeps_listening_socket(start_server, tmp_path):
    """The listening socket is the same one after reloads: same port, and the master
    still holds it (no close/re-bind window)."""
    srv, version_file = versioned_server(start_server, tmp_path, "a", "--workers", "1")
    assert get_version(srv.port)[0] == "a"

    def listening_inodes():
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % srv.pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (srv.pid, fd))
            except OSError:
                continue
            if target.startswith("socket:"):
                inodes.add(target)
        return inodes

    before = listening_inodes()
    old = srv.live_worker_pids()
    write_version(version_file, "b")
    reload_and_wait(srv)
    wait_gone(old)
    assert get_version(srv.port)[0] == "b"
    assert before <= listening_inodes()
    assert srv.stop() == 0


class NewConnectionLoad:
    """Client threads opening a new connection per GET /version; each answer is kept
    as (monotonic time the connection was opened, version)."""

    def __init__(self, port, clients=4, path="/version"):
        self.port = port
        self.path = path
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.answers = []
        self.pids = []
        self.failures = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def run(self):
        while not self.stopping.is_set():
            opened = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise AssertionError("status %d: %r" % (resp.status, body))
                version, pid = body.decode().split()
                with self.lock:
                    self.answers.append((opened, version))
                    self.pids.append((opened, int(pid)))
            except Exception as exc:
                with self.lock:
                    self.failures.append(repr(exc))
            finally:
                conn.close()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(40)


@pytest.mark.parametrize("front,threads", [("http", "1"), ("http", "4"), ("nginx", "1")],
                         ids=["http", "http-threads", "fastcgi-behind-nginx"])
def test_old_workers_take_no_new_connection_once_the_new_are_ready(start_server, tmp_path,
                                                                   front, threads):
    """20 reloads under steady load of new connections: no request fails, and no
    connection opened more than 0.2 s after a reload is done (the new generation is
    ready, the log says) is answered by the old code. Directly over HTTP, and with
    nginx in front speaking FastCGI to fastgw (a new FastCGI connection per request)."""
    extra = ["--bind", "fastcgi://127.0.0.1:0"] if front == "nginx" else []
    srv, version_file = versioned_server(start_server, tmp_path, "v0", "--workers", "2",
                                         "--threads", threads, *extra)
    wait_imported(srv, srv.wait_for_workers(2))
    with contextlib.ExitStack() as stack:
        port = srv.port
        if front == "nginx":
            port = stack.enter_context(fastcgi_nginx(srv, tmp_path))
        reload_twenty_times(srv, port, version_file)
    assert srv.stop() == 0


@contextlib.contextmanager
def fastcgi_nginx(srv, tmp_path):
    """nginx on a free port passing every request to fastgw's FastCGI listener."""
    from test_behind_nginx import _free_port, running_nginx
    fastcgi = next(l for l in srv.listeners if l.startswith("fastcgi://"))
    port = _free_port()
    block = """
    server {
        listen 127.0.0.1:%d;
        location / {
            include fastcgi_params;
            fastcgi_param PATH_INFO $uri;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_pass %s;
        }
    }""" % (port, fastcgi[len("fastcgi://"):])
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    with running_nginx(str(nginx_dir), [block], {"site": port}):
        yield port


def reload_twenty_times(srv, port, version_file, path="/version"):
    load = NewConnectionLoad(port, path=path)
    late = []
    try:
        for n in range(1, 21):
            version = "v%d" % n
            write_version(version_file, version)
            reload_and_wait(srv)
            ready = time.monotonic()
            # give the load a moment past the cut-over, then look at what it got
            wait_until(lambda: any(t > ready + 0.3 and v == version
                                   for t, v in list(load.answers)), 20,
                       message="answers from %s" % version)
            with load.lock:
                late += [(round(t - ready, 3), v) for t, v in load.answers
                         if t > ready + 0.2 and v != version]
    finally:
        load.stop()
    assert load.failures == [], load.failures[:10]
    assert late == [], "old code answered connections opened after the cut-over: %r" % late[:20]


def test_sigttou_retires_a_worker_at_once(start_server, tmp_path):
    """SIGTTOU under steady load of new connections: the worker that retires takes no
    connection opened more than 0.2 s after the master logged it; nothing fails."""
    srv, _ = versioned_server(start_server, tmp_path, "v0", "--workers", "2")
    pids = srv.wait_for_workers(2)
    wait_imported(srv, pids)
    # enough clients that connections usually wait in the listen backlog
    load = NewConnectionLoad(srv.port, clients=16)
    try:
        wait_until(lambda: {p for _, p in list(load.pids)} == set(pids), 20,
                   message="both workers answering")
        mark = srv.log_mark()
        srv.send_signal(signal.SIGTTOU)
        srv.wait_for_log(r"workers: 2 -> 1", start=mark)
        signalled = time.monotonic()
        wait_until(lambda: any(t > signalled + 0.5 for t, _ in list(load.pids)), 20,
                   message="answers after the retirement")
    finally:
        load.stop()
    assert load.failures == [], load.failures[:10]
    survivors = {p for t, p in load.pids if t > signalled + 0.5}
    assert len(survivors) == 1, survivors
    retired = (set(pids) - survivors).pop()
    late = [round(t - signalled, 3) for t, p in load.pids if p == retired and t > signalled + 0.2]
    assert late == [], "the retiring worker took new connections: %r" % late[:20]


def test_process_group_cut_over(start_server, tmp_path):
    """A process group's workers (2 processes, reached through the front worker) under
    steady load of new connections: 20 reloads, none fails, and no connection opened
    more than 0.2 s after a reload is done is answered by the group's old code."""
    config = tmp_path / "fastgw.toml"
    config.write_text('[[mount]]\npath = "/grp"\napp = "procapp:application"\n'
                      'group = "versioned"\n\n[[group]]\nname = "versioned"\n'
                      'processes = 2\n', encoding="utf-8")
    srv, version_file = versioned_server(start_server, tmp_path, "v0", "--config", str(config))
    srv.wait_for_log(r"Booting process group 'versioned' worker with pid: \d+", count=2)
    wait_until(lambda: get_version_at(srv.port, "/grp/version") == "v0", 20,
               message="the group serving")
    reload_twenty_times(srv, srv.port, version_file, path="/grp/version")
    assert srv.stop() == 0


def get_version_at(port, path):
    resp = http_request(port, "GET", path)
    return resp.body.decode().split()[0] if resp.status == 200 else None


RECYCLED_APP = """import os
import time

time.sleep(1.0)  # an import that takes a while, as a real application's does


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"v %d" % os.getpid()]
"""


@pytest.mark.parametrize("how", ["max-requests", "reload"])
def test_recycled_worker_serves_until_its_successor_is_ready(start_server, tmp_path, how):
    """--max-requests and --reload of the only worker, under steady load of new
    connections: the master starts the successor first, the old worker goes on serving while the successor
    imports the application (1 s here), and it is retired once the successor is ready:
    nothing fails, and no connection opened more than 0.2 s after the master logged
    the replacement is answered by the old worker."""
    extra = ["--max-requests", "400"] if how == "max-requests" else ["--reload"]
    asked = (r"\[(\d+)\] \[INFO\] worker \d+ served \d+ requests" if how == "max-requests"
             else r"\[(\d+)\] \[INFO\] \S*recycled\.py changed; reloading")
    app = tmp_path / "recycled.py"
    app.write_text(RECYCLED_APP, encoding="utf-8")
    srv = start_server("recycled:application", *extra, chdir=str(tmp_path))
    srv.wait_for_workers(1)
    load = NewConnectionLoad(srv.port, clients=8)
    recycled = []
    try:
        # the worker serves, so it has noted the modules' times: a change is seen
        wait_until(lambda: load.pids, 20, message="a first answer")
        for n in range(4):
            mark = srv.log_mark()
            if how == "reload":
                # the application's module changes: each worker asks for a successor
                stamp = app.stat().st_mtime + 1
                os.utime(app, (stamp, stamp))
            pid = int(srv.wait_for_log(asked, 30, start=mark).group(1))
            asked_at = time.monotonic()
            srv.wait_for_log(r"worker %d replaced by worker \d+" % pid, 30, start=mark)
            recycled.append((pid, asked_at, time.monotonic()))
        last = recycled[-1][2]
        wait_until(lambda: any(t > last + 0.5 for t, _ in list(load.pids)), 20,
                   message="answers after the last replacement")
    finally:
        load.stop()
    assert load.failures == [], load.failures[:10]
    for pid, asked_at, replaced_at in recycled:
        assert any(p == pid and asked_at + 0.3 < t < replaced_at for t, p in load.pids), \
            "worker %d stopped serving before its successor was ready: %r" % (
                pid, [(round(t - asked_at, 3), p) for t, p in load.pids
                      if asked_at - 0.5 < t < replaced_at + 0.5])
    late = [(pid, round(t - replaced_at, 3)) for pid, _, replaced_at in recycled
            for t, p in load.pids if p == pid and t > replaced_at + 0.2]
    assert late == [], "a replaced worker took new connections: %r" % late[:20]
    assert "starting another" not in srv.log_text()
    assert srv.stop() == 0
