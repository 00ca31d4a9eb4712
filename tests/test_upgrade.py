"""Binary upgrade on SIGUSR2, as nginx and gunicorn do it: the master starts a new master
from the installed fastgw with the listening sockets inherited, the pid file becomes
PIDFILE.oldbin, and SIGTERM to the old master finishes the switch, all under a steady
load from a client thread with no failed request; SIGQUIT to the new master undoes it.
The new master takes over systemd's notify socket (MAINPID=) and the old one stays
silent there.
"""
import os
import signal
import threading

from fgwtest import http_request, pid_alive, wait_until
from procapp_helpers import APP
from test_sdnotify import NotifySocket


def parent_of(pid):
    with open("/proc/%d/stat" % pid) as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def read_pid(path):
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


class SteadyLoad:
    """GET /pid over and over (a new connection each time, over TCP and the UNIX
    socket in turn) in a thread; every answer's worker pid is kept, every failure too."""

    def __init__(self, port, unix_path):
        self.port = port
        self.unix_path = unix_path
        self.served = []
        self.failures = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import http.client
        import socket

        turn = 0
        while not self.stop_event.is_set():
            turn += 1
            try:
                if turn % 2:
                    resp = http_request(self.port, "GET", "/pid", timeout=30)
                    status, body = resp.status, resp.body
                else:
                    conn = http.client.HTTPConnection("localhost", timeout=30)
                    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    conn.sock.settimeout(30)
                    conn.sock.connect(self.unix_path)
                    try:
                        conn.request("GET", "/pid")
                        reply = conn.getresponse()
                        status, body = reply.status, reply.read()
                    finally:
                        conn.close()
                assert status == 200, (status, body)
                self.served.append(int(body))
            except Exception as exc:
                self.failures.append(repr(exc))

    def more(self, count, after):
        """Wait for `count` more answers; return how many there were before."""
        before = len(self.served)
        wait_until(lambda: len(self.served) >= before + count, 30,
                   message="%d more requests after %s" % (count, after))
        return before

    def served_by(self, master):
        return [pid for pid in set(self.served) if pid_alive(pid) and parent_of(pid) == master]

    def stop(self):
        self.stop_event.set()
        self.thread.join(30)


def stop_master(pid, timeout=40):
    """SIGTERM a master that is not the test's child; wait until it is gone."""
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(pid), timeout, message="master %d to exit" % pid)


def test_sigusr2_under_load_then_sigterm_to_the_old_master(start_server, tmp_path):
    pid_file = str(tmp_path / "fastgw.pid")
    unix_path = str(tmp_path / "fastgw.sock")
    notify_path = str(tmp_path / "notify.sock")
    manager = NotifySocket(notify_path)
    srv = start_server(APP, "--workers", "2", "--pid", pid_file, "--bind", "unix:" + unix_path,
                       "--metrics", "127.0.0.1:0", default_workers=False,
                       env={"NOTIFY_SOCKET": notify_path})
    metrics = srv.wait_for_log(r"Metrics, /healthz and /readyz at: (\S+) \(%d\)" % srv.pid)
    old = srv.pid
    new = None
    try:
        ready = manager.wait_for("READY", "1")
        assert manager.snapshot()[ready]["MAINPID"] == str(old)
        assert read_pid(pid_file) == old
        load = SteadyLoad(srv.port, unix_path)
        try:
            wait_until(lambda: len(load.served) >= 20, 20, message="the load to run")
            srv.send_signal(signal.SIGUSR2)
            wait_until(lambda: read_pid(pid_file + ".oldbin") == old, 20,
                       message="the old master's pid file to become PIDFILE.oldbin")
            new = wait_until(lambda: read_pid(pid_file) not in (None, old) and read_pid(pid_file),
                             20, message="the new master to write PIDFILE")
            assert parent_of(new) == old
            # The new master's workers serve beside the old ones, on the same sockets.
            wait_until(lambda: load.served_by(new), 30,
                       message="a worker of the new master to answer")
            srv.wait_for_log(r"\[%d\] \[INFO\] Listening at: unix:%s" % (new, unix_path))
            # --metrics 127.0.0.1:0 too is inherited, not bound anew on another port.
            again_at = srv.wait_for_log(r"Metrics, /healthz and /readyz at: (\S+) \(%d\)" % new)
            assert again_at.group(1) == metrics.group(1)
            again = manager.wait_for("READY", "1", start=ready + 1)
            assert manager.snapshot()[again]["MAINPID"] == str(new)
            mark = len(manager.snapshot())
            # SIGTERM to the old master finishes the switch.
            srv.send_signal(signal.SIGTERM)
            assert srv.wait_exit() == 0
            count = load.more(50, "the old master exited")
        finally:
            load.stop()
        assert load.failures == []
        assert set(load.served[count:]) <= set(load.served_by(new)), "an old worker answered"
        assert pid_alive(new)
        assert not os.path.exists(pid_file + ".oldbin")
        assert read_pid(pid_file) == new
        assert os.path.exists(unix_path), "the old master removed the shared UNIX socket"
        # The old master left the service manager to the new one: no STOPPING=1.
        assert not any("STOPPING" in m for m in manager.snapshot()[mark:])
        stop_master(new)
        new = None
        assert not os.path.exists(pid_file) and not os.path.exists(unix_path)
        wait_until(lambda: not [pid for pid in srv.worker_pids() if pid_alive(pid)], 20,
                   message="every worker to exit")
    finally:
        if new is not None and pid_alive(new):
            os.kill(new, signal.SIGKILL)
        manager.close()


def test_stopping_the_new_master_undoes_the_upgrade(start_server, tmp_path):
    """SIGTERM to the new master (graceful; SIGQUIT would stop it at once, cutting its
    requests in flight) goes back to the old one, which renames its pid file back."""
    pid_file = str(tmp_path / "fastgw.pid")
    unix_path = str(tmp_path / "fastgw.sock")
    srv = start_server(APP, "--pid", pid_file, "--bind", "unix:" + unix_path)
    old = srv.pid
    new = None
    try:
        load = SteadyLoad(srv.port, unix_path)
        try:
            load.more(5, "the start")  # a worker answers: the master has its signal handlers
            srv.send_signal(signal.SIGUSR2)
            new = wait_until(lambda: read_pid(pid_file) not in (None, old) and read_pid(pid_file),
                             20, message="the new master to write PIDFILE")
            wait_until(lambda: load.served_by(new), 30,
                       message="a worker of the new master to answer")
            os.kill(new, signal.SIGTERM)
            srv.wait_for_log(r"the new master %d exited \(exit code 0\); this master \(%d\) goes "
                             r"on serving" % (new, old))
            new = None
            assert read_pid(pid_file) == old
            assert not os.path.exists(pid_file + ".oldbin")
            count = load.more(30, "the undo")
        finally:
            load.stop()
        assert load.failures == []
        assert set(load.served[count:]) <= set(load.served_by(old))
        assert os.path.exists(unix_path)
        # A second upgrade works after an undo.
        srv.send_signal(signal.SIGUSR2)
        new = wait_until(lambda: read_pid(pid_file) not in (None, old) and read_pid(pid_file),
                         20, message="the second new master")
        assert srv.stop(check_workers=False) == 0
    finally:
        if new is not None:
            if pid_alive(new):
                stop_master(new)
            wait_until(lambda: not [pid for pid in srv.worker_pids() if pid_alive(pid)], 20,
                       message="every worker to exit")


def test_a_new_master_that_cannot_start_leaves_the_old_one_serving(start_server, tmp_path):
    """The configuration broke between the start and SIGUSR2: the new master reports
    it and exits, the old one logs that, takes its pid file back and goes on."""
    pid_file = str(tmp_path / "fastgw.pid")
    config = tmp_path / "fastgw.toml"
    config.write_text("[server]\nworkers = 1\n")
    srv = start_server(APP, "--config", str(config), "--pid", pid_file, default_workers=False)
    old = srv.pid
    # Signals are the master's once it boots workers (before, SIGUSR2 would end it).
    assert http_request(srv.port, "GET", "/pid").status == 200
    config.write_text("[server]\nworkers = 0\n")
    srv.send_signal(signal.SIGUSR2)
    srv.wait_for_log(r"fastgw: error: .*workers = 0")
    srv.wait_for_log(r"the new master \d+ exited \(exit code 1\); this master \(%d\) goes on "
                     r"serving" % old)
    assert read_pid(pid_file) == old
    assert not os.path.exists(pid_file + ".oldbin")
    assert http_request(srv.port, "GET", "/pid").status == 200
    assert srv.stop() == 0
