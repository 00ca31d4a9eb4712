"""systemd's notification protocol as systemd speaks it: the test binds the UNIX datagram
socket systemd would (NOTIFY_SOCKET, a path or an abstract '@name'), starts fastgw with
it and reads what the master sends: READY=1 once every worker serves, RELOADING=1 and
READY=1 around SIGHUP, STOPPING=1 on SIGTERM, STATUS= lines, and WATCHDOG=1 at half of
WATCHDOG_USEC while the workers' heartbeats are fresh (not while a request is stuck).
"""
import signal
import socket
import threading
import time
import uuid

import pytest

from fgwtest import http_request, read_lines, wait_until
from procapp_helpers import APP, events_path, new_id, release


class NotifySocket:
    """The service manager's end: every datagram received, with its arrival order."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.closed:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self.lock:
                self.messages.append(fields)

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, key, value=None, start=0, timeout=20):
        """Index of the first message from `start` on that sets `key` (to `value`)."""

        def find():
            for i, fields in enumerate(self.snapshot()[start:], start):
                if key in fields and (value is None or fields[key] == value):
                    return i + 1  # truthy even for index 0
            return None

        return wait_until(find, timeout, message="%s=%s from fastgw (got %r)" % (
            key, value or "*", self.snapshot()[start:])) - 1

    def count(self, key, start=0):
        return sum(1 for fields in self.snapshot()[start:] if key in fields)

    def close(self):
        self.closed = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def notify_path(tmp_path):
    path = str(tmp_path / "notify.sock")
    listener = NotifySocket(path)
    yield path, listener
    listener.close()


def test_ready_reloading_stopping_and_watchdog_in_order(start_server, test_dir, tmp_path,
                                                        notify_path):
    path, manager = notify_path
    version = tmp_path / "version"
    version.write_text("one-slow-import\n")  # each worker takes 2 s to import the app
    srv = start_server(APP, "--workers", "2", "--env", "FASTGW_TEST_VERSION_FILE=%s" % version,
                       default_workers=False,
                       env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    ready = manager.wait_for("READY", "1")
    # READY=1 only once both workers imported the application and serve.
    workers = srv.worker_pids()
    assert len(workers) == 2
    imported = [line for line in read_lines(events_path(test_dir)) if line.startswith("imported ")]
    for pid in workers:
        assert any(line.startswith("imported %d " % pid) for line in imported), imported
    fields = manager.snapshot()[ready]
    assert fields["MAINPID"] == str(srv.pid)
    assert fields["STATUS"] == "2 worker(s) serving, 0 request(s) served"
    assert not any("READY" in m or "STOPPING" in m for m in manager.snapshot()[:ready])
    # The watchdog: WATCHDOG_USEC=1 s, a ping every half second while all is well.
    first_ping = manager.wait_for("WATCHDOG", "1", start=ready)
    manager.wait_for("WATCHDOG", "1", start=first_ping + 1)
    for _ in range(3):
        assert http_request(srv.port, "GET", "/pid").status == 200
    manager.wait_for("STATUS", "2 worker(s) serving, 3 request(s) served", start=ready)

    mark = len(manager.snapshot())
    srv.send_signal(signal.SIGHUP)
    reloading = manager.wait_for("RELOADING", "1", start=mark)
    assert int(manager.snapshot()[reloading]["MONOTONIC_USEC"]) > 0
    ready_again = manager.wait_for("READY", "1", start=reloading + 1)
    srv.wait_for_log(r"reload done")
    assert len(srv.worker_pids()) == 4
    # RELOADING=1 came before the new workers were ready, READY=1 after.
    assert reloading < ready_again

    mark = len(manager.snapshot())
    srv.send_signal(signal.SIGTERM)
    manager.wait_for("STOPPING", "1", start=mark)
    assert srv.wait_exit() == 0
    kinds = [next(k for k in ("READY", "RELOADING", "STOPPING") if k in m)
             for m in manager.snapshot() if {"READY", "RELOADING", "STOPPING"} & set(m)]
    assert kinds == ["READY", "RELOADING", "READY", "STOPPING"]


def test_watchdog_stops_while_a_request_is_stuck(start_server, test_dir):
    """With --timeout 0 the heartbeats are fresh for one watchdog limit (1 s here): a
    request blocked longer than that stops the pings (systemd would restart the service);
    they resume when it ends. An abstract socket name works like a path."""
    address = "@fastgw-test-%s" % uuid.uuid4().hex
    manager = NotifySocket("\0" + address[1:])
    try:
        srv = start_server(APP, "--threads", "2", "--timeout", "0",
                           env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        ready = manager.wait_for("READY", "1")
        manager.wait_for("WATCHDOG", "1", start=ready)
        ident = new_id("stuck")
        result = {}
        client = threading.Thread(
            target=lambda: result.update(resp=http_request(srv.port, "GET", "/gate?id=" + ident,
                                                           timeout=60)),
            daemon=True)
        client.start()
        wait_until(lambda: "start " + ident in read_lines(events_path(test_dir)), 15,
                   message="the gated request to start")
        before = manager.count("WATCHDOG")
        started = time.monotonic()
        # Hold the request 4 s: healthy, the master would ping 8 times meanwhile; stale
        # after 1 s, it pings at most in that first second (3 times, half a second apart).
        wait_until(lambda: time.monotonic() - started >= 4.0, 10, message="4 s to pass")
        during = manager.count("WATCHDOG") - before
        assert during <= 4, manager.snapshot()
        release(test_dir, ident)
        client.join(30)
        assert result["resp"].status == 200
        after = manager.count("WATCHDOG")
        manager.wait_for("WATCHDOG", "1", start=len(manager.snapshot()))
        assert manager.count("WATCHDOG") > after
        assert srv.stop() == 0
    finally:
        manager.close()


def test_without_notify_socket_nothing_is_sent(start_server, tmp_path):
    """NOTIFY_SOCKET that is not a path nor @name: a warning, and the server serves."""
    srv = start_server(APP, env={"NOTIFY_SOCKET": "relative/notify.sock"})
    srv.wait_for_log(r"NOTIFY_SOCKET='relative/notify.sock' is neither a path nor an abstract")
    assert http_request(srv.port, "GET", "/pid").status == 200
    assert srv.stop() == 0
