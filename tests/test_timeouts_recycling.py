"""Worker timeouts (--timeout: stack dump, kill, replacement), recycling
(--max-requests, --max-requests-jitter), crash safety (segfault, os._exit),
boot failures, and the development reloader (--reload).
"""
import http.client
import subprocess
import os
import threading
import time

import pytest

from fgwtest import (RawConnection, fastgw_command, http_request, pid_alive, read_lines, request, wait_for_line,
                     wait_until)
from procapp_helpers import APP, events_path, new_id



def serve_pid(port):
    resp = http_request(port, "GET", "/pid")
    assert resp.status == 200, resp.body
    return int(resp.body)


def wait_imported(srv, pids):
    events = events_path(srv.test_dir)
    for pid in pids:
        wait_until(lambda: any(line.startswith("imported %d " % pid) for line in read_lines(events)),
                   15, message="worker %d to import the application" % pid)


def request_without_answer(port, target):
    """Send a request whose worker dies: the connection must end without a response."""
    with RawConnection(port, timeout=60) as conn:
        conn.send(request("GET", target))
        try:
            resp = conn.read_response()
        except AssertionError:
            return
        raise AssertionError("got a response from a worker that should have died: %r" % resp)


# --------------------------------------------------------------------------
# --timeout


@pytest.mark.parametrize("threads", ["1", "4"])
def test_timeout_kills_stuck_worker_after_dumping_its_stack(start_server, test_dir, threads):
    srv = start_server(APP, "--timeout", "2", "--threads", threads)
    (old,) = srv.wait_for_workers(1)
    ident = new_id("stuck")
    result = {}

    def stuck_request():
        try:
            request_without_answer(srv.port, "/stuck?id=" + ident)
            result["ok"] = True
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=stuck_request, daemon=True)
    thread.start()
    wait_for_line(events_path(test_dir), "start " + ident)
    srv.wait_for_log(r"worker %d: a request has run for more than 2 s \(--timeout\); "
                     r"dumping its stacks" % old, timeout=30)
    # faulthandler's dump names the application function the request is stuck in.
    srv.wait_for_log(r'File ".*procapp\.py", line \d+ in fgw_procapp_stuck_in_request')
    srv.wait_for_log(r'File ".*procapp\.py", line \d+ in r_stuck')
    # ... then the worker is killed and another one takes its place.
    new = srv.wait_for_workers(2)[-1]
    assert new != old
    wait_until(lambda: not pid_alive(old), 15, message="stuck worker %d killed" % old)
    thread.join(30)
    assert result.get("ok"), result.get("error")
    assert serve_pid(srv.port) == new
    assert "end " + ident not in read_lines(events_path(test_dir))
    # The stack dump comes before the replacement worker.
    lines = srv.log_lines()
    dump = next(i for i, l in enumerate(lines) if "in fgw_procapp_stuck_in_request" in l)
    boot = next(i for i, l in enumerate(lines) if "Booting worker with pid: %d" % new in l)
    assert dump < boot
    assert srv.proc.poll() is None
    assert srv.stop() == 0


def test_timeout_spares_requests_shorter_than_it(start_server, test_dir):
    """--timeout limits one application call. Five pipelined requests of 0.8 s on one
    connection (4 s in all, served back to back by --threads 1) are each well within
    --timeout 2, so the worker must not be killed."""
    srv = start_server(APP, "--timeout", "2", "--threads", "1")
    (pid,) = srv.wait_for_workers(1)
    idents = [new_id("short%d" % i) for i in range(5)]
    with RawConnection(srv.port, timeout=60) as conn:
        conn.send(b"".join(request("GET", "/sleep?s=0.8&id=" + i) for i in idents))
        for ident in idents:
            resp = conn.read_response()
            assert resp.status == 200 and resp.body == ("slept " + ident).encode()
    assert "--timeout" not in srv.log_text()
    assert srv.worker_pids() == [pid] and pid_alive(pid)
    assert srv.stop() == 0


def test_timeout_zero_never_kills(start_server, test_dir):
    srv = start_server(APP, "--timeout", "0", "--threads", "2")
    (pid,) = srv.wait_for_workers(1)
    ident = new_id("long")
    resp = http_request(srv.port, "GET", "/sleep?s=3&id=" + ident, timeout=60)
    assert resp.status == 200
    assert srv.worker_pids() == [pid]
    assert "--timeout" not in srv.log_text()
    assert srv.stop() == 0


# --------------------------------------------------------------------------
# --max-requests


def run_until_pids(port, count, keepalive, limit=30.0):
    """GET /pid until ``count`` different workers answered; returns (pids in order
    of the responses, failures)."""
    served, failures = [], []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + limit
    try:
        while len(set(served)) < count and time.monotonic() < deadline:
            if not keepalive:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", "/pid")
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 200, body
                served.append(int(body))
            except Exception as exc:
                failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    finally:
        conn.close()
    return served, failures


@pytest.mark.parametrize("keepalive", [False, True], ids=["new-connection", "keep-alive"])
def test_max_requests_recycles_workers(start_server, keepalive):
    srv = start_server(APP, "--max-requests", "20")
    srv.wait_for_workers(1)
    served, failures = run_until_pids(srv.port, 3, keepalive)
    assert failures == []
    # the workers in the order they first answered (the successor is ready before the
    # old worker stops accepting, so for a moment both may answer: see test_reload's
    # test_recycled_worker_serves_until_its_successor_is_ready for the cut-over)
    order = list(dict.fromkeys(served))
    assert len(order) >= 3, "no recycling seen: %d requests, pids %r" % (len(served), order)
    # Each recycled worker served at least its 20 requests ("about N": the check runs
    # once a second, so it may serve a few more).
    for pid in order[:-1]:
        assert served.count(pid) >= 20, (pid, served.count(pid))
        srv.wait_for_log(r"worker %d served \d+ requests \(--max-requests\); restarting" % pid)
        srv.wait_for_log(r"worker %d replaced by worker \d+" % pid)
    assert order == srv.worker_pids()[:len(order)]
    assert "starting another" not in srv.log_text()  # graceful exits, not crashes
    assert srv.stop() == 0


def test_max_requests_jitter(start_server):
    srv = start_server(APP, "--max-requests", "10", "--max-requests-jitter", "15",
                       "--workers", "1")
    served, failures = run_until_pids(srv.port, 4, keepalive=False)
    assert failures == []
    order = list(dict.fromkeys(served))  # in the order they first answered
    assert len(order) >= 4
    limits = []
    for pid in order[:-1]:
        m = srv.wait_for_log(r"worker %d served (\d+) requests \(--max-requests\)" % pid)
        limits.append(int(m.group(1)))
        assert served.count(pid) >= 10
    assert all(n >= 10 for n in limits), limits
    assert srv.stop() == 0


def test_max_requests_with_threads_and_workers(start_server):
    srv = start_server(APP, "--max-requests", "15", "--threads", "4", "--workers", "2")
    pids = srv.wait_for_workers(2)
    wait_imported(srv, pids)
    failures = []
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                resp = http_request(srv.port, "GET", "/pid", timeout=30)
                assert resp.status == 200
            except Exception as exc:
                with lock:
                    failures.append(repr(exc))

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        srv.wait_for_workers(6, timeout=40)  # each of the first workers was replaced
    finally:
        stop.set()
        for t in clients:
            t.join(40)
    assert failures == []
    wait_until(lambda: len(srv.live_worker_pids()) == 2, 15, message="two live workers")
    assert srv.stop() == 0


# --------------------------------------------------------------------------
# crash safety


@pytest.mark.parametrize("target, how", [
    ("/segfault", r"killed by SIGSEGV"),
    ("/exit?code=1", r"exit code 1"),
    ("/exit?code=7", r"exit code 7"),
])
def test_crashed_worker_is_replaced(start_server, target, how):
    srv = start_server(APP, "--workers", "1")
    old = serve_pid(srv.port)
    request_without_answer(srv.port, target)
    srv.wait_for_log(r"worker %d exited \(%s\); starting another" % (old, how))
    new = srv.wait_for_workers(2)[-1]
    assert new != old
    assert serve_pid(srv.port) == new
    assert srv.proc.poll() is None
    assert srv.stop() == 0


def test_worker_exit_code_3_mid_request_is_a_crash_not_a_boot_failure(start_server):
    """An application that calls os._exit(3) while serving (3 happens to be the code
    a worker uses to report "could not import the app") is a crash like any other:
    the worker is replaced, the server keeps running."""
    srv = start_server(APP, "--workers", "1")
    old = serve_pid(srv.port)
    request_without_answer(srv.port, "/exit?code=3")
    srv.wait_for_log(r"worker %d exited \(exit code 3\); starting another" % old)
    new = srv.wait_for_workers(2)[-1]
    assert serve_pid(srv.port) == new
    assert srv.proc.poll() is None
    assert srv.stop() == 0


def test_worker_exit_zero_mid_request_is_replaced(start_server):
    srv = start_server(APP, "--workers", "1")
    old = serve_pid(srv.port)
    request_without_answer(srv.port, "/exit?code=0")
    new = srv.wait_for_workers(2)[-1]
    assert new != old
    assert serve_pid(srv.port) == new
    assert srv.stop() == 0


def test_crash_of_one_worker_leaves_others_serving(start_server, test_dir):
    srv = start_server(APP, "--workers", "2", "--threads", "2")
    pids = srv.wait_for_workers(2)
    wait_imported(srv, pids)
    # Crash whichever worker takes the request; the other keeps serving meanwhile.
    request_without_answer(srv.port, "/segfault")
    srv.wait_for_log(r"killed by SIGSEGV")
    booted = srv.wait_for_workers(3)
    live = wait_until(lambda: len(srv.live_worker_pids()) == 2 and srv.live_worker_pids(), 15,
                      message="two live workers")
    assert booted[-1] in live
    for _ in range(10):
        assert serve_pid(srv.port) in live
    assert srv.stop() == 0


# --------------------------------------------------------------------------
# boot failures


@pytest.mark.parametrize("workers", ["1", "3"])
def test_boot_failure_exits_1_with_the_app_error(start_server, workers):
    srv = start_server("broken_import:application", "--workers", workers, wait=False)
    code = srv.wait_exit(30)
    assert code == 1, srv.log_text()
    log = srv.log_text()
    assert "fastgw-test-import-explosion" in log
    assert "Traceback" in log and "_explode_during_import" in log
    # Not a respawn loop: one worker was tried.
    assert len(srv.worker_pids()) == 1
    srv.assert_no_workers_left()


def test_respawned_worker_that_cannot_boot_stops_the_server(start_server, tmp_path):
    """The app imported fine at start; a worker started later (after a crash)
    cannot import it any more: the master stops with the app's error and exit 1
    instead of respawning in a loop."""
    flag = tmp_path / "fail-now"
    srv = start_server(APP, "--env", "FASTGW_TEST_FAIL_FLAG=%s" % flag)
    old = serve_pid(srv.port)
    flag.write_text("x")
    request_without_answer(srv.port, "/exit?code=1")
    code = srv.wait_exit(30)
    assert code == 1, srv.log_text()
    assert "procapp-fail-flag-present" in srv.log_text()
    assert len(srv.worker_pids()) == 2
    assert old in srv.worker_pids()
    srv.assert_no_workers_left()


# --------------------------------------------------------------------------
# --reload


def write_module(path, text):
    """Write a module and make sure its mtime differs from the previous version's."""
    try:
        previous = os.stat(path).st_mtime
    except FileNotFoundError:
        previous = None
    with open(path, "w") as fh:
        fh.write(text)
    if previous is not None:
        stamp = max(time.time(), previous + 2)
        os.utime(path, (stamp, stamp))


MODULE = '''from devhelper import HELPER


def application(environ, start_response):
    body = ("%s %s" % ({version!r}, HELPER)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def body_of(port):
    try:
        resp = http_request(port, "GET", "/", timeout=10)
    except (OSError, http.client.HTTPException):
        return None
    return resp.body.decode() if resp.status == 200 else None


def test_reload_picks_up_edited_files(start_server, tmp_path):
    app = tmp_path / "devapp.py"
    helper = tmp_path / "devhelper.py"
    write_module(str(helper), "HELPER = 'h1'\n")
    write_module(str(app), MODULE.format(version="one"))
    srv = start_server("devapp:application", "--reload", chdir=str(tmp_path))
    assert body_of(srv.port) == "one h1"
    # The application module itself.
    write_module(str(app), MODULE.format(version="two"))
    wait_until(lambda: body_of(srv.port) == "two h1", 20, message="the edited devapp.py served")
    srv.wait_for_log(r"devapp\.py changed; reloading \(--reload\)")
    # A module it imports.
    write_module(str(helper), "HELPER = 'h2'\n")
    wait_until(lambda: body_of(srv.port) == "two h2", 20, message="the edited devhelper.py served")
    srv.wait_for_log(r"devhelper\.py changed; reloading \(--reload\)")
    # Every change restarted the worker (gracefully, no crash).
    assert len(srv.worker_pids()) == 3
    assert "starting another" not in srv.log_text()
    assert srv.stop() == 0


def test_reload_survives_a_broken_edit(start_server, tmp_path):
    """With --reload a module that fails to import does not stop the server: it
    keeps trying, and serves again once the file is fixed."""
    app = tmp_path / "devapp.py"
    write_module(str(tmp_path / "devhelper.py"), "HELPER = 'h'\n")
    write_module(str(app), MODULE.format(version="good"))
    srv = start_server("devapp:application", "--reload", chdir=str(tmp_path))
    assert body_of(srv.port) == "good h"
    mark = srv.log_mark()
    write_module(str(app), "def application(:\n    pass\n")  # a syntax error
    srv.wait_for_log(r"SyntaxError", start=mark)
    assert srv.proc.poll() is None
    write_module(str(app), MODULE.format(version="fixed"))
    wait_until(lambda: body_of(srv.port) == "fixed h", 30, message="the fixed module served")
    assert srv.proc.poll() is None
    assert srv.stop() == 0


# --------------------------------------------------------------------------
# --reload-on-rss

RSS_LIMIT_MIB = 120


def rss_group_config(tmp_path):
    """procapp at /grp run by a process group of 1 process with 2 threads."""
    path = tmp_path / "fastgw.toml"
    path.write_text(
        '[[mount]]\npath = "/grp"\napp = "procapp:application"\ngroup = "leaky"\n\n'
        '[[group]]\nname = "leaky"\nprocesses = 1\nthreads = 2\n', encoding="utf-8")
    return ["--config", str(path)]


@pytest.mark.parametrize("mode", ["inline", "threads", "group"])
def test_reload_on_rss_replaces_a_growing_worker(start_server, tmp_path, mode):
    """An application that keeps 150 MiB after a request (a leak) passes --reload-on-rss
    120: its worker is replaced gracefully, with one line naming it and its size, while a
    client thread keeps sending requests, none of which fails."""
    extra = {"inline": [], "threads": ["--threads", "2"], "group": rss_group_config(tmp_path)}
    prefix = "/grp" if mode == "group" else ""
    srv = start_server(APP, "--reload-on-rss", str(RSS_LIMIT_MIB), *extra[mode])
    boot = r"Booting process group 'leaky' worker with pid: (\d+)" if mode == "group" else \
        r"Booting worker with pid: (\d+)"
    first = int(srv.wait_for_log(boot).group(1))
    assert int(http_request(srv.port, "GET", prefix + "/pid").body) == first
    # A worker that did not grow stays: its RSS is below the limit.
    assert int(http_request(srv.port, "GET", prefix + "/grow?mb=1").body.split()[0]) == first
    failures, served, opened = [], [], []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                sent = time.monotonic()
                resp = http_request(srv.port, "GET", prefix + "/pid", timeout=30)
                assert resp.status == 200, resp
                opened.append((sent, int(resp.body)))
                served.append(int(resp.body))
            except Exception as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        wait_until(lambda: first in served, 20, message="the client to be answered")
        resp = http_request(srv.port, "GET", prefix + "/grow?mb=150", timeout=30)
        assert resp.status == 200 and resp.body.split() == [str(first).encode(), b"151"]
        m = srv.wait_for_log(r"worker %d: resident memory (\d+) MiB passed --reload-on-rss "
                             r"%d MiB after \d+ requests; replacing it gracefully"
                             % (first, RSS_LIMIT_MIB))
        assert int(m.group(1)) > RSS_LIMIT_MIB
        srv.wait_for_log(r"worker %d replaced by worker \d+" % first)
        replaced_at = time.monotonic()
        second = int(srv.wait_for_log(boot, count=2).group(1))
        wait_until(lambda: second in served, 20, message="the new worker to answer")
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert served.index(second) > served.index(first)
    # the successor is ready before the old worker stops accepting: for a moment both
    # answer, then only the successor
    late = [round(t - replaced_at, 3) for t, pid in opened
            if pid == first and t > replaced_at + 0.2]
    assert late == [], "the replaced worker took new connections: %r" % late
    assert srv.log_text().count("passed --reload-on-rss") == 1
    assert "starting another" not in srv.log_text()
    assert srv.stop() == 0


def test_reload_on_rss_is_checked():
    proc = subprocess.run(fastgw_command() + ["check", "procapp:application", "--reload-on-rss",
                                              "-5"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 2
    assert b"--reload-on-rss: '-5' must be 0 or more" in proc.stderr
