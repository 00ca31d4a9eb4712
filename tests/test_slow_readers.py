"""Clients that stop reading a large response hold a socket and a bounded buffer,
never the worker: ordinary requests on new connections are answered meanwhile
(issue 15). Stalled readers use a 4 KiB receive buffer and never read."""
import os
import socket
import time

import pytest

from fgwtest import proc_status_kib, raw_request, wait_until

STATIC_SIZE = 64 << 20


def stalled(port, target):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    # a worker held by an earlier stalled reader would never answer: fail, do not hang
    sock.settimeout(10)
    return sock


def quick_answers(port, count=5):
    """Ordinary requests on new connections while the stalled readers hang; the
    slowest time taken (the bound is generous: it is a liveness check, not a timer)."""
    worst = 0.0
    for _ in range(count):
        t0 = time.monotonic()
        resp = raw_request(port, "GET", "/small")
        worst = max(worst, time.monotonic() - t0)
        assert resp.status == 200
    return worst


@pytest.fixture
def big_file(tmp_path):
    root = tmp_path / "static"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        f.truncate(STATIC_SIZE)
    (root / "small.txt").write_bytes(b"abc")
    return root


@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize("target,count", [("/static/big.bin", 50), ("/list", 20), ("/gen", 5)])
def test_stalled_readers_do_not_block_others(start_server, big_file, target, count, threads):
    server = start_server("slowreaders:application", "--static", f"/static={big_file}",
                          "--threads", threads)
    socks = [stalled(server.port, target) for _ in range(count)]
    try:
        # each stalled reader has been served as far as its socket takes
        for sock in socks:
            assert sock.recv(1, socket.MSG_PEEK) == b"H"
        assert quick_answers(server.port) < 2.0
        resp = raw_request(server.port, "GET", "/static/small.txt")
        assert resp.status == 200 and resp.body == b"abc"
    finally:
        for sock in socks:
            sock.close()


def test_eight_stalled_generators_with_four_threads(start_server):
    server = start_server("slowreaders:application", "--threads", "4")
    socks = [stalled(server.port, f"/gen?t{i}") for i in range(8)]
    try:
        for sock in socks:
            assert sock.recv(1, socket.MSG_PEEK) == b"H"
        assert quick_answers(server.port) < 2.0
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("threads", ["1", "4"])
def test_stalled_readers_dropped_after_io_timeout(start_server, test_dir, threads):
    """Dropped after --io-timeout; close() of each generator called; same worker; its
    memory back near where it started; the access log marks the cut responses."""
    log_path = os.path.join(test_dir, f"access-{threads}.log")
    server = start_server("slowreaders:application", "--io-timeout", "2", "--threads", threads,
                          "--access-log", log_path, "--access-log-format", "json")
    pid = int(raw_request(server.port, "GET", "/pid").body)
    rss0 = proc_status_kib(pid, "VmRSS")
    tags = [f"drop{threads}-{i}" for i in range(5)]
    socks = [stalled(server.port, f"/gen?{tag}") for tag in tags]
    socks += [stalled(server.port, "/list") for _ in range(5)]
    try:
        for tag in tags:
            wait_until(lambda tag=tag: os.path.exists(os.path.join(test_dir, "closed-" + tag)),
                       timeout=20, message=f"close() of the generator {tag}")
        for sock in socks:
            sock.settimeout(20)
            with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
                while sock.recv(1 << 20):
                    pass
    finally:
        for sock in socks:
            sock.close()
    assert int(raw_request(server.port, "GET", "/pid").body) == pid
    assert proc_status_kib(pid, "VmRSS") - rss0 < 64 * 1024
    wait_until(lambda: os.path.exists(log_path) and open(log_path).read().count('"cut"') >= 10,
               timeout=10, message="cut responses in the access log")
    assert any("accepted nothing" in line for line in server.stderr.snapshot())


def test_trickling_after_408_is_bounded(start_server):
    """A client that times out and then sends a byte a second loses its socket within
    a few seconds of its 408 (lingering has a total cap)."""
    server = start_server("slowreaders:application", "--header-timeout", "1")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET / HTTP/1.1\r\n")
    sock.settimeout(10)
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 408")
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 15:
        try:
            sock.sendall(b"x")
            data = sock.recv(4096, socket.MSG_DONTWAIT)
            if data == b"":
                closed = True
                break
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.3)  # the attacker's pace, not a synchronisation
    sock.close()
    assert closed, "the lingering close after a 408 was not capped"
    assert time.monotonic() - t0 < 8
