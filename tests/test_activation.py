"""Listening sockets: systemd socket activation (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES),
inherited descriptors (--bind fd://N), --reuse-port and --unix-socket-mode.

A small launcher stands in for systemd: it moves the test's listening sockets to
descriptors 3, 4, ..., sets LISTEN_FDS and LISTEN_PID to its own pid and execs fastgw
(exec keeps the pid, which is how LISTEN_PID can name the server process).
"""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys

import pytest

from fgwtest import (APPS_DIR, RawConnection, fastgw_command, http_request, request,
                     subprocess_env, wait_until)

LAUNCHER = r"""
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
mode, names = sys.argv[2], sys.argv[3]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
if mode != "plain":
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid()) if mode == "systemd" else "1"
    if names:
        os.environ["LISTEN_FDNAMES"] = names
os.execv(sys.argv[4], sys.argv[4:])
"""

ENV_APP = """
import json, os

def application(environ, start_response):
    body = json.dumps({k: v for k, v in os.environ.items() if k.startswith("LISTEN_")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


class Launched:
    """fastgw started through the launcher; output collected in a file."""

    def __init__(self, tmp_path, sockets, args, mode="systemd", names=""):
        self.log_path = tmp_path / ("server-%d.log" % id(self))
        (tmp_path / "envapp.py").write_text(ENV_APP)
        fds = [s.fileno() for s in sockets]
        cmd = [sys.executable, "-c", LAUNCHER, ",".join(map(str, fds)), mode, names]
        cmd += fastgw_command() + ["serve", "--workers", "1", "--chdir", str(tmp_path)] + args
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         pass_fds=fds, env=subprocess_env())

    def text(self):
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, count):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("fastgw exited (%s):\n%s" % (self.proc.returncode, self.text()))
            found = re.findall(r"Listening at: (.*) \(\d+\)$", self.text(), re.M)
            booted = "Booting worker" in self.text()
            return len(found) >= count and booted and found

        return wait_until(ready, 15, message="%d listener(s)" % count)

    def wait_exit(self):
        return self.proc.wait(30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self.proc.returncode


@pytest.fixture
def launch(tmp_path):
    started = []

    def start(*args, **kwargs):
        server = Launched(tmp_path, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


def tcp_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def unix_listener(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return sock


def get_over_unix(path, target):
    with RawConnection(unix_path=path) as conn:
        return conn.roundtrip(request("GET", target))


def test_systemd_sockets_without_bind(launch, tmp_path):
    web = tcp_listener()
    admin_path = str(tmp_path / "admin.sock")
    admin = unix_listener(admin_path)
    port = web.getsockname()[1]
    server = launch([web, admin], ["envapp:application"], names="web:admin")
    web.close()
    admin.close()  # only the server holds them now
    listening = server.wait_listening(2)
    assert listening == ["http://127.0.0.1:%d (fd 3)" % port, "unix:%s (fd 4)" % admin_path]
    resp = http_request(port, "GET", "/")
    # LISTEN_* are consumed by fastgw: the application does not see them
    assert (resp.status, resp.json()) == (200, {})
    assert get_over_unix(admin_path, "/").status == 200
    assert server.stop() == 0
    # the socket belongs to the launcher (systemd): fastgw does not unlink it
    assert stat.S_ISSOCK(os.stat(admin_path).st_mode)


def test_systemd_socket_picked_by_name(launch, tmp_path):
    web, other = tcp_listener(), tcp_listener()
    port = other.getsockname()[1]
    server = launch([web, other], ["envapp:application", "--bind", "fd://admin"],
                    names="web:admin")
    assert server.wait_listening(1) == ["http://127.0.0.1:%d (fd 4)" % port]
    assert http_request(port, "GET", "/").status == 200
    assert server.stop() == 0


def test_inherited_fd_without_systemd(launch, tmp_path):
    sock = tcp_listener()
    port = sock.getsockname()[1]
    server = launch([sock], ["envapp:application", "--bind", "fd://3"], mode="plain")
    sock.close()
    assert server.wait_listening(1) == ["http://127.0.0.1:%d (fd 3)" % port]
    assert http_request(port, "GET", "/").status == 200
    assert server.stop() == 0


def test_listen_pid_of_another_process_is_ignored(launch, tmp_path):
    sock = tcp_listener()
    server = launch([sock], ["envapp:application", "--bind", "fd://web"], mode="other-pid",
                    names="web")
    assert server.wait_exit() == 1
    assert ("fastgw: error: --bind 'fd://web': no socket named 'web' was passed to fastgw "
            "(no sockets were passed") in server.text()


def test_fd_that_is_not_open(tmp_path):
    proc = subprocess.run(fastgw_command() + ["serve", "wsgiapp:application", "--chdir",
                                              APPS_DIR, "--bind", "fd://250"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=subprocess_env(), timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "cannot listen on fd://250: descriptor 250: it is not open" in err, err


def test_reuse_port(start_server):
    first = start_server("wsgiapp:application", "--reuse-port")
    port = first.port
    second = start_server("wsgiapp:application", "--bind", "127.0.0.1:%d" % port,
                          "--reuse-port", default_bind=False)
    assert second.port == port
    first_pids = set(first.worker_pids())
    assert first.stop() == 0
    # the port stays served, by the second server alone
    for _ in range(5):
        resp = http_request(port, "GET", "/pid")
        assert resp.status == 200 and int(resp.body) not in first_pids
    # without --reuse-port the port is taken
    proc = subprocess.run(fastgw_command() + ["serve", "wsgiapp:application", "--chdir",
                                              APPS_DIR, "--bind", "127.0.0.1:%d" % port],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=subprocess_env(), timeout=30)
    assert proc.returncode == 1 and b"address already in use" in proc.stderr


def test_unix_socket_mode(start_server, tmp_path):
    path = str(tmp_path / "app.sock")
    srv = start_server("wsgiapp:application", "--bind", "unix:" + path, "--unix-socket-mode",
                       "0660", default_bind=False)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert get_over_unix(path, "/hello").status == 200
    assert srv.stop() == 0
    assert not os.path.exists(path)  # fastgw's own socket file is removed at exit


def test_unix_socket_mode_must_be_octal():
    proc = subprocess.run(fastgw_command() + ["check", "wsgiapp:application",
                                              "--unix-socket-mode", "0999"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=subprocess_env(), timeout=30)
    assert proc.returncode == 2 and b"not an octal mode" in proc.stderr


def test_passed_sockets_read_once_and_removed_from_environ():
    from fastgw import activation

    saved = activation._passed
    try:
        activation._passed = None
        env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:"}
        passed = activation.passed_sockets(env)
        assert passed == [(3, "a"), (4, "fd4")] and env == {}
        assert activation.passed_sockets({"LISTEN_FDS": "5"}) is passed
    finally:
        activation._passed = saved
