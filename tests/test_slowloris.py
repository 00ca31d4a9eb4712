"""Slowloris: 1,000 connections that send part of a head and stall must not stop one
worker from serving a normal client, and must be answered 408 and closed after
``--header-timeout``.  ``--max-connections``: beyond the cap new connections wait in the
listen backlog (they are not refused and nothing crashes) and are served once others
close.
"""
import resource
import selectors
import socket
import time

import pytest

from fgwtest import RawConnection, get_pid, request

STALLED = 1000
HEADER_TIMEOUT = "2"


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip("RLIMIT_NOFILE hard limit %d is below the %d descriptors needed"
                        % (hard, needed))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@pytest.fixture(scope="module")
def srv(start_module_server):
    # the server inherits the raised limit: it holds the 1,000 connections too
    raise_fd_limit(STALLED + 200)
    s = start_module_server("wsgiapp:application", "--header-timeout", HEADER_TIMEOUT,
                            "--keepalive", "30", "--backlog", "4096")
    s.first_pid = get_pid(s.port)
    return s


def open_stalled(port, count, partial):
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(partial)
        socks.append(sock)
    return socks


def collect_until_closed(socks, timeout):
    """Read every socket until EOF; returns {sock: bytes}. Fails if any stays open."""
    received = {s: b"" for s in socks}
    open_ = set(socks)
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while open_:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in sel.select(min(remaining, 1.0)):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if data:
                    received[s] += data
                else:
                    sel.unregister(s)
                    open_.discard(s)
    finally:
        sel.close()
    assert not open_, "%d of %d stalled connections still open after %.0f s" % (
        len(open_), len(socks), timeout)
    return received


def test_thousand_stalled_heads_do_not_block_a_normal_client(srv):
    partial = b"GET /hello HTTP/1.1\r\nHost: example.com\r\nX-Slow: "
    stalled = open_stalled(srv.port, STALLED, partial)
    try:
        # a normal client, several times over, while the 1,000 stall
        for i in range(5):
            with RawConnection(srv.port, timeout=30) as conn:
                resp = conn.roundtrip(request("GET", "/uri?normal-%d" % i))
            assert resp.status == 200 and resp.body == b"/uri?normal-%d" % i
        received = collect_until_closed(stalled, timeout=120)
    finally:
        for s in stalled:
            s.close()
    answers = {data.split(b"\r\n", 1)[0] for data in received.values()}
    assert answers == {b"HTTP/1.1 408 Request Timeout"}, answers
    assert all(b"\r\nConnection: close\r\n" in data for data in received.values())
    # the worker survived and still serves
    assert get_pid(srv.port) == srv.first_pid
    assert srv.worker_pids() == [srv.first_pid]
    with RawConnection(srv.port) as conn:
        assert conn.roundtrip(request("GET", "/hello")).status == 200


def test_stalled_at_every_stage_of_the_head(srv):
    """Partial request line, partial field, a head missing only its empty line, one byte."""
    partials = [b"G", b"GET /hel", b"GET /hello HTTP/1.1\r\n", b"GET /hello HTTP/1.1\r\nHost: x",
                b"GET /hello HTTP/1.1\r\nHost: x\r\n", b"GET /hello HTTP/1.1\r\nHost: x\r\n\r",
                b"\r\nGET / HTTP/1.1\n"]
    socks = []
    for p in partials:
        socks += open_stalled(srv.port, 3, p)
    try:
        received = collect_until_closed(socks, timeout=60)
    finally:
        for s in socks:
            s.close()
    for data in received.values():
        assert data.startswith(b"HTTP/1.1 408 "), data


def test_trickling_head_is_still_cut_off(srv):
    """A client that keeps sending a byte now and then does not extend the head timeout:
    the deadline counts from the first byte of the head."""
    with RawConnection(srv.port, timeout=30) as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        got = b""
        # keep trickling field lines until the server answers; it must answer 408
        while not got:
            try:
                conn.send(b"X: y\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            got = conn.read_available(0.5)
            assert time.monotonic() - start < 60, "never cut off"
        got += conn.read_available(5)
        assert got.startswith(b"HTTP/1.1 408 "), got


def test_trickling_empty_lines_are_cut_off(srv):
    """Empty lines before a request line (RFC 9112 2.2) must not hold a connection open
    forever: sent one at a time, well within the keep-alive timeout, they must still end
    in a refusal (400 or 408) or a close."""
    with RawConnection(srv.port, timeout=30) as conn:
        start = time.monotonic()
        got = b""
        while not conn.eof:
            assert time.monotonic() - start < 90, "empty lines keep the connection open forever"
            try:
                conn.send(b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            got += conn.read_available(0.5)
        got += conn.read_available(5)
        assert got == b"" or got.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 408 ")), got


# --------------------------------------------------------------------------
# --max-connections


def _hold(port, count):
    """``count`` keep-alive connections, each known to be accepted (it was answered)."""
    held = []
    for i in range(count):
        conn = RawConnection(port, timeout=20)
        resp = conn.roundtrip(request("GET", "/uri?held-%d" % i))
        assert resp.status == 200
        held.append(conn)
    return held


@pytest.mark.parametrize("cap", [10, 1])
def test_connections_beyond_the_cap_wait_and_are_served(start_server, cap):
    srv = start_server("wsgiapp:application", "--max-connections", str(cap),
                       "--keepalive", "60", "--header-timeout", "60")
    pid = get_pid(srv.port)
    held = _hold(srv.port, cap)
    try:
        waiting = RawConnection(srv.port, timeout=30)  # connect() itself succeeds (backlog)
        waiting.send(request("GET", "/uri?waiting"))
        # not served while the cap is reached (nothing arrives, it is not reset either)
        assert waiting.read_available(1.0) == b""
        assert not waiting.eof
        srv.wait_for_log(r"max-connections")
        # others close: the waiting connection is accepted and served
        for conn in held[:max(1, cap // 2)]:
            conn.close()
        resp = waiting.read_response()
        assert resp.status == 200 and resp.body == b"/uri?waiting"
        waiting.close()
        for conn in held[max(1, cap // 2):]:
            assert conn.roundtrip(request("GET", "/uri?still")).body == b"/uri?still"
    finally:
        for conn in held:
            conn.close()
    assert get_pid(srv.port) == pid
    assert srv.worker_pids() == [pid]
