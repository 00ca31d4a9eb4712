"""Signals to the master and the files it manages: SIGTERM (graceful, a second one
immediate), SIGINT, SIGQUIT, SIGUSR1 (reopen the access log), SIGTTIN/SIGTTOU (one
worker more/less), --pid, --user/--group.

Slow requests are /gate requests of tests/apps/procapp.py: they block until the
test creates a release file.
"""
import grp
import os
import pwd
import re
import signal
import subprocess
import threading

import pytest

from fgwtest import (RawConnection, fastgw_command, http_request, pid_alive, read_lines, request,
                     subprocess_env, wait_for_line, wait_until)
from procapp_helpers import APP, events_path, new_id, release

# For --user nobody: imports nothing beyond what fastgw loaded (root's Python
# installation may not be readable by nobody).
WHOAMI = "whoami:application"


class Background:
    """One request in a thread (raw socket, so a cut connection is visible)."""

    def __init__(self, port, target, timeout=90):
        self.response = None
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(port, target, timeout), daemon=True)
        self.thread.start()

    def _run(self, port, target, timeout):
        try:
            with RawConnection(port, timeout=timeout) as conn:
                self.response = conn.roundtrip(request("GET", target))
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()

    def result(self, timeout=60):
        assert self.done.wait(timeout), "request still running after %ds" % timeout
        assert self.error is None, "request failed: %r" % (self.error,)
        return self.response


def start_gated(srv, test_dir, ident):
    req = Background(srv.port, "/gate?id=" + ident)
    wait_for_line(events_path(test_dir), "start " + ident)
    return req


def serve_pid(port):
    resp = http_request(port, "GET", "/pid")
    assert resp.status == 200
    return int(resp.body)


def wait_imported(srv, pids):
    """Each worker in ``pids`` finished importing the app (recorded by procapp)."""
    events = events_path(srv.test_dir)
    for pid in pids:
        wait_until(lambda: any(line.startswith("imported %d " % pid) for line in read_lines(events)),
                   15, message="worker %d to import the application" % pid)


# --------------------------------------------------------------------------
# SIGTERM / SIGINT / SIGQUIT


@pytest.mark.parametrize("workers, threads", [("1", "4"), ("3", "1")],
                         ids=["1-worker-4-threads", "3-workers-1-thread"])
def test_sigterm_lets_requests_in_flight_complete(start_server, test_dir, workers, threads):
    srv = start_server(APP, "--workers", workers, "--threads", threads, "--graceful-timeout", "60")
    pids = srv.wait_for_workers(int(workers))
    wait_imported(srv, pids)
    ids = [new_id("term%d" % i) for i in range(3)]
    reqs = [start_gated(srv, test_dir, ident) for ident in ids]
    probe = None
    if threads != "1":
        # An idle keep-alive connection to the same worker: it is closed once the
        # worker has taken the SIGTERM, which tells the test the stop has begun.
        probe = RawConnection(srv.port)
        assert probe.roundtrip(request("GET", "/pid")).status == 200
    srv.send_signal(signal.SIGTERM)
    srv.wait_for_log(r"SIGTERM: stopping gracefully")
    if probe is not None:
        assert probe.wait_closed(20), "the worker did not start stopping"
        probe.close()
    assert srv.proc.poll() is None  # still waiting for the requests
    for ident in ids:
        assert "end " + ident not in read_lines(events_path(test_dir))
        release(test_dir, ident)
    for ident, req in zip(ids, reqs):
        resp = req.result()
        assert resp.status == 200
        assert resp.body == ("released " + ident).encode()
        # A response sent while stopping closes the connection.
        assert "close" in resp.connection_tokens()
    assert srv.wait_exit(40) == 0
    srv.assert_no_workers_left()
    assert "graceful timeout" not in srv.log_text()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_stop_signal_stops_at_once(start_server, test_dir, second):
    srv = start_server(APP, "--threads", "2", "--graceful-timeout", "300")
    pids = srv.wait_for_workers(1)
    stuck = start_gated(srv, test_dir, new_id("never-released"))
    srv.send_signal(signal.SIGTERM)
    srv.wait_for_log(r"SIGTERM: stopping gracefully")
    srv.send_signal(second)
    # Far less than the 300 s graceful timeout.
    code = srv.wait_exit(30)
    assert code is not None, "master still running after a second stop signal"
    srv.wait_for_log(r"second %s: stopping at once" % signal.Signals(second).name)
    srv.assert_no_workers_left()
    assert not pid_alive(pids[0])
    assert stuck.done.wait(30)
    assert stuck.response is None, "the stuck request cannot have been answered"


def test_sigquit_stops_at_once(start_server, test_dir):
    srv = start_server(APP, "--threads", "2", "--graceful-timeout", "300")
    pids = srv.wait_for_workers(1)
    stuck = start_gated(srv, test_dir, new_id("quit"))
    srv.send_signal(signal.SIGQUIT)
    assert srv.wait_exit(30) is not None, "master still running after SIGQUIT"
    srv.wait_for_log(r"SIGQUIT: stopping at once")
    srv.assert_no_workers_left()
    assert not pid_alive(pids[0])
    assert stuck.done.wait(30) and stuck.response is None


def test_sigint_is_graceful_first(start_server, test_dir):
    srv = start_server(APP, "--threads", "2", "--graceful-timeout", "60")
    srv.wait_for_workers(1)
    ident = new_id("int")
    req = start_gated(srv, test_dir, ident)
    srv.send_signal(signal.SIGINT)
    srv.wait_for_log(r"SIGINT: stopping gracefully")
    release(test_dir, ident)
    assert req.result().body == ("released " + ident).encode()
    assert srv.wait_exit(40) == 0
    srv.assert_no_workers_left()


# --------------------------------------------------------------------------
# SIGUSR1: reopen the access log


def wait_for_marker(path, marker, timeout=15):
    wait_until(lambda: any(marker in line for line in read_lines(path)), timeout,
               message="%r in %s" % (marker, path))


def open_files(pid):
    """Paths of the files process ``pid`` has open."""
    paths = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            paths.add(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    return paths


@pytest.mark.parametrize("threads", ["1", "4"])
def test_sigusr1_reopens_access_log(start_server, tmp_path, threads):
    log_path = str(tmp_path / "access.log")
    rotated = log_path + ".1"
    srv = start_server(APP, "--workers", "2", "--threads", threads, "--access-log", log_path)
    pids = srv.wait_for_workers(2)
    for pid in pids:
        wait_until(lambda: log_path in open_files(pid), 15,
                   message="worker %d to open %s" % (pid, log_path))
    before = ["before-%d" % i for i in range(6)]
    for marker in before:
        assert http_request(srv.port, "GET", "/pid?m=" + marker).status == 200
    for marker in before:
        wait_for_marker(log_path, marker)
    os.rename(log_path, rotated)  # what logrotate does
    mark = srv.log_mark()
    srv.send_signal(signal.SIGUSR1)
    srv.wait_for_log(r"SIGUSR1: reopening log files", start=mark)
    # Every worker (not only the one that happens to get the requests) now has
    # the new file at the original path open, and no longer the moved one.
    for pid in pids:
        wait_until(lambda: log_path in open_files(pid) and rotated not in open_files(pid), 15,
                   message="worker %d to reopen %s (has %r)" % (pid, log_path, open_files(pid)))
    after = ["after-%d" % i for i in range(10)]
    for marker in after:
        assert http_request(srv.port, "GET", "/pid?m=" + marker).status == 200
    for marker in after:
        wait_for_marker(log_path, marker)
    old_lines = "\n".join(read_lines(rotated))
    assert all(marker in old_lines for marker in before)
    assert not any(marker in old_lines for marker in after)
    assert srv.proc.poll() is None
    assert srv.live_worker_pids() == pids  # reopening restarts nothing
    assert srv.stop() == 0


def test_sigusr1_under_threaded_load_loses_no_line(start_server, tmp_path):
    """Reopening while application threads write access-log lines: no request fails
    and every request has exactly one line in one of the files."""
    log_path = str(tmp_path / "access.log")
    srv = start_server(APP, "--workers", "1", "--threads", "4", "--access-log", log_path)
    wait_imported(srv, srv.wait_for_workers(1))
    stop = threading.Event()
    lock = threading.Lock()
    served, failures = [], []

    def client(n):
        i = 0
        while not stop.is_set():
            i += 1
            marker = "load-%d-%d" % (n, i)
            try:
                resp = http_request(srv.port, "GET", "/pid?m=" + marker, timeout=30)
                assert resp.status == 200
                with lock:
                    served.append(marker)
            except Exception as exc:
                with lock:
                    failures.append("%s: %r" % (marker, exc))

    clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
    for t in clients:
        t.start()
    try:
        for rotation in range(1, 9):
            wait_until(lambda: len(served) >= 40 * rotation, 20, message="load progress")
            os.rename(log_path, "%s.%d" % (log_path, rotation))
            mark = srv.log_mark()
            srv.send_signal(signal.SIGUSR1)
            srv.wait_for_log(r"SIGUSR1: reopening log files", start=mark)
            # the worker has reopened once it writes to the original path again
            wait_until(lambda: os.path.exists(log_path), 20, message="a new %s" % log_path)
    finally:
        stop.set()
        for t in clients:
            t.join(40)
    assert failures == [], failures[:10]
    lines = []
    for name in os.listdir(str(tmp_path)):
        if name.startswith("access.log"):
            lines += read_lines(str(tmp_path / name))
    logged = [re.search(r"m=(load-\d+-\d+)", line).group(1) for line in lines
              if "m=load-" in line]
    assert sorted(logged) == sorted(served)
    assert "internal error" not in srv.log_text()
    assert srv.stop() == 0


# --------------------------------------------------------------------------
# SIGTTIN / SIGTTOU


def wait_live_count(srv, count, timeout=15):
    return wait_until(lambda: len(srv.live_worker_pids()) == count and srv.live_worker_pids(),
                      timeout, message="%d live workers (have %r)" % (count, srv.live_worker_pids()))


def test_sigttin_sigttou_change_worker_count(start_server):
    srv = start_server(APP, "--workers", "1")
    (first,) = srv.wait_for_workers(1)
    serve_pid(srv.port)  # the first worker is up, boot is over
    srv.send_signal(signal.SIGTTIN)
    srv.wait_for_log(r"workers: 1 -> 2")
    srv.wait_for_workers(2)
    srv.send_signal(signal.SIGTTIN)
    srv.wait_for_log(r"workers: 2 -> 3")
    booted = srv.wait_for_workers(3)
    live = wait_live_count(srv, 3)
    assert sorted(live) == sorted(booted)
    for _ in range(10):
        assert serve_pid(srv.port) in live
    srv.send_signal(signal.SIGTTOU)
    srv.wait_for_log(r"workers: 3 -> 2")
    live = wait_live_count(srv, 2)
    assert first not in live  # the oldest worker is the one retired
    srv.send_signal(signal.SIGTTOU)
    srv.wait_for_log(r"workers: 2 -> 1")
    live = wait_live_count(srv, 1)
    # Never fewer than one worker.
    srv.send_signal(signal.SIGTTOU)
    srv.wait_for_log(r"workers: 1 -> 1")
    assert srv.live_worker_pids() == live
    assert serve_pid(srv.port) == live[0]
    # Retired workers exited gracefully: nothing was respawned for them.
    assert len(srv.worker_pids()) == 3
    assert "starting another" not in srv.log_text()
    assert srv.stop() == 0


def test_sigttou_lets_retired_worker_finish_its_request(start_server, test_dir):
    srv = start_server(APP, "--workers", "1")
    (old,) = srv.wait_for_workers(1)
    ident = new_id("ttou")
    req = start_gated(srv, test_dir, ident)  # the only worker is busy with it
    srv.send_signal(signal.SIGTTIN)
    srv.wait_for_log(r"workers: 1 -> 2")
    new = srv.wait_for_workers(2)[-1]
    assert serve_pid(srv.port) == new
    srv.send_signal(signal.SIGTTOU)  # retires the oldest: the busy one
    srv.wait_for_log(r"workers: 2 -> 1")
    assert pid_alive(old)
    assert "end " + ident not in read_lines(events_path(test_dir))
    release(test_dir, ident)
    assert req.result().body == ("released " + ident).encode()
    wait_until(lambda: not pid_alive(old), 15, message="retired worker %d to exit" % old)
    assert srv.live_worker_pids() == [new]
    assert srv.stop() == 0


# --------------------------------------------------------------------------
# --pid


def test_pid_file_written_and_removed(start_server, tmp_path):
    pid_file = tmp_path / "run" / "fastgw.pid"
    pid_file.parent.mkdir()
    srv = start_server(APP, "--pid", str(pid_file))
    serve_pid(srv.port)
    assert pid_file.read_text() == "%d\n" % srv.pid
    # A reload keeps it.
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"reload done", start=mark)
    assert pid_file.read_text() == "%d\n" % srv.pid
    assert srv.stop() == 0
    assert not pid_file.exists()


def test_pid_file_removed_after_boot_failure(start_server, tmp_path):
    pid_file = tmp_path / "fastgw.pid"
    srv = start_server("broken_import:application", "--pid", str(pid_file), wait=False)
    assert srv.wait_exit(30) == 1
    assert not pid_file.exists()


def test_pid_file_unwritable_is_a_clear_error(tmp_path):
    pid_file = tmp_path / "no-such-dir" / "fastgw.pid"
    proc = subprocess.run(fastgw_command() + ["serve", APP, "--bind", "127.0.0.1:0", "--workers",
                                              "1", "--chdir", os.path.dirname(__file__) + "/apps",
                                              "--pid", str(pid_file)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=subprocess_env(), timeout=30)
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "fastgw: error:" in err and "--pid" in err and str(pid_file) in err
    assert "Booting worker" not in err


# --------------------------------------------------------------------------
# --user / --group


def _uid_gid(pid):
    uid = gid = None
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("Gid:"):
                gid = int(line.split()[1])
    return uid, gid


def _nobody():
    """The 'nobody' user. The workers never execute a program as it: they switch after
    the fork, with Python and fastgw's handlers already loaded, and the apps these tests
    use import nothing more, so an interpreter it could not run is no obstacle."""
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.fail("no 'nobody' user on this machine: the --user tests need one")


@pytest.mark.skipif(os.geteuid() != 0, reason="--user/--group need root")
def test_user_group_drop_privileges(start_server):
    user = _nobody()
    group = grp.getgrgid(user.pw_gid).gr_name
    srv = start_server(WHOAMI, "--user", "nobody", "--group", group, "--workers", "2",
                       test_dir=None, default_workers=False)
    workers = srv.wait_for_workers(2)
    assert serve_pid(srv.port) in workers
    for pid in workers:
        # The switch comes right after the fork, the "Booting" line may come first.
        wait_until(lambda: _uid_gid(pid) == (user.pw_uid, user.pw_gid), 15,
                   message="worker %d to run as nobody" % pid)
        with open("/proc/%d/status" % pid) as fh:
            groups = [line for line in fh if line.startswith("Groups:")][0].split()[1:]
        assert "0" not in groups
    # The master stays root (it removes the pid file and sockets at exit, rereads the
    # configuration on SIGHUP); only the workers switch, as the README says.
    assert _uid_gid(srv.pid) == (0, 0)
    srv.wait_for_log(r"Workers run as uid %d, gid %d" % (user.pw_uid, user.pw_gid))
    # A worker forked later (a reload) switches too.
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"reload done")
    for pid in srv.worker_pids()[2:]:
        assert _uid_gid(pid) == (user.pw_uid, user.pw_gid)
    assert len(srv.worker_pids()) == 4
    assert srv.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="--user/--group need root")
def test_group_only_drops_group_and_supplementary_groups(start_server):
    """--group without --user: the gid changes, root's supplementary groups go, the
    uid stays (runs even where 'nobody' cannot read the Python installation)."""
    try:
        group = grp.getgrnam("nogroup")
    except KeyError:
        try:
            group = grp.getgrnam("nobody")
        except KeyError:
            pytest.skip("no 'nogroup' or 'nobody' group")
    srv = start_server(WHOAMI, "--group", group.gr_name, test_dir=None)
    pid = serve_pid(srv.port)
    assert _uid_gid(pid) == (0, group.gr_gid)
    with open("/proc/%d/status" % pid) as fh:
        groups = [line for line in fh if line.startswith("Groups:")][0].split()[1:]
    assert groups == []
    srv.wait_for_log(r"Workers run as uid 0, gid %d" % group.gr_gid)
    assert srv.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="--user/--group need root")
def test_user_with_pid_file_removed_at_exit(start_server, tmp_path):
    """The pid file is written as root before privileges are dropped; it must still
    be removed when the server stops."""
    _nobody()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chmod(str(tmp_path), 0o755)
    pid_file = run_dir / "fastgw.pid"
    srv = start_server(WHOAMI, "--user", "nobody", "--pid", str(pid_file), test_dir=None)
    serve_pid(srv.port)
    assert pid_file.exists()
    assert srv.stop() == 0
    assert not pid_file.exists(), "pid file left behind after a server that switched user stopped"


@pytest.mark.parametrize("flag, value, message", [
    ("--user", "fastgw-no-such-user", "no such user"),
    ("--group", "fastgw-no-such-group", "no such group"),
])
def test_unknown_user_or_group_is_a_clear_error(flag, value, message):
    proc = subprocess.run(fastgw_command() + ["serve", APP, "--bind", "127.0.0.1:0", "--workers",
                                              "1", "--chdir", os.path.dirname(__file__) + "/apps",
                                              flag, value],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=subprocess_env(), timeout=30)
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "fastgw: error:" in err and flag in err and value in err
    if os.geteuid() == 0:
        assert message in err
    assert "Booting worker" not in err
