"""Clients that stop reading a large response hold a socket and a bounded buffer,
never the worker: ordinary requests on new connections are answered meanwhile
(issue 15). Stalled readers use a 4 KiB receive buffer and never read. Every test runs
with the epoll (kqueue) loop and with FASTGW_POLLER=poll."""
import os
import socket
import time

import pytest

import fcgiclient as fc
from fgwtest import http_request, proc_status_kib, raw_request, wait_until
from test_metrics import METRICS_RE, scrape

STATIC_SIZE = 64 << 20


@pytest.fixture(params=["epoll", "poll"])
def start_server(request, start_server):
    """The conftest fixture, with the poller of this parameter."""
    def start(*args, env=None, **options):
        return start_server(*args, env={"FASTGW_POLLER": request.param, **(env or {})},
                            **options)
    return start


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
def test_stalled_readers_dropped_after_io_timeout(start_server, test_dir, threads, request):
    """Dropped after --io-timeout; close() of each generator called; same worker; its
    memory back near where it started; the access log marks the cut responses."""
    # test_dir is shared by the parametrized runs: names unique to this run
    run = request.node.callspec.id
    log_path = os.path.join(test_dir, f"access-{run}.log")
    server = start_server("slowreaders:application", "--io-timeout", "2", "--threads", threads,
                          "--access-log", log_path, "--access-log-format", "json")
    pid = int(raw_request(server.port, "GET", "/pid").body)
    rss0 = proc_status_kib(pid, "VmRSS")
    tags = [f"drop{run}-{i}" for i in range(5)]
    socks = [stalled(server.port, f"/gen?{tag}") for tag in tags]
    socks += [stalled(server.port, "/list") for _ in range(5)]
    try:
        for tag in tags:
            wait_until(lambda tag=tag: os.path.exists(os.path.join(test_dir, "closed-" + tag)),
                       timeout=20, message=f"close() of the generator {tag}")
        # every response is cut (logged when dropped) before any socket is read: reading
        # one that is not dropped yet would take its response whole
        wait_until(lambda: open(log_path).read().count('"cut"') >= 10,
                   timeout=20, message="cut responses in the access log")
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
    assert any("accepted nothing" in line for line in server.stderr.snapshot())


def test_a_thousand_stalled_generators_cost_bounded_memory(start_server):
    """1,000 clients stalled on a 16 MiB generator (a new 64 KiB block each step): the
    worker holds at most the high-water mark of each, < 256 MiB in all."""
    server = start_server("slowreaders:application", "--max-connections", "1100")
    pid = int(raw_request(server.port, "GET", "/pid").body)
    rss0 = proc_status_kib(pid, "VmRSS")
    socks = []
    try:
        for i in range(1000):
            socks.append(stalled(server.port, "/fresh"))
        for sock in socks:
            assert sock.recv(1, socket.MSG_PEEK) == b"H"
        grown = proc_status_kib(pid, "VmRSS") - rss0
        assert grown < 256 * 1024, f"the worker grew by {grown} KiB"
        assert quick_answers(server.port) < 2.0
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("threads", ["1", "4"])
def test_spool_of_a_stalled_reader_is_capped(start_server, tmp_path, threads):
    """write() past what the client takes spills to a file; past 1 GiB the client
    counts as gone: the response is cut, the file freed, the worker serves on."""
    log_path = tmp_path / "access.log"
    server = start_server("slowreaders:application", "--threads", threads,
                          "--access-log", str(log_path), "--access-log-format", "json",
                          env={"TMPDIR": str(tmp_path)})
    pid = int(raw_request(server.port, "GET", "/pid").body)
    sock = stalled(server.port, "/write?1100")
    try:
        wait_until(lambda: log_path.exists() and "spool limit" in log_path.read_text(),
                   timeout=60, message="the response cut at the spool limit")
        sock.settimeout(20)
        received = 0
        with pytest.raises((ConnectionResetError, ConnectionAbortedError, EOFError)):
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    raise EOFError
                received += len(data)
        assert received < 1100 << 20
    finally:
        sock.close()
    assert int(raw_request(server.port, "GET", "/pid").body) == pid
    # the spool file had no name and is gone with the connection
    assert [p.name for p in tmp_path.iterdir()] == ["access.log"]
    assert quick_answers(server.port) < 2.0


def test_write_callable_spills_and_delivers_everything(start_server, tmp_path):
    """A slow (not stalled) reader of a 64 MiB write() response gets every byte."""
    server = start_server("slowreaders:application", env={"TMPDIR": str(tmp_path)})
    with socket.socket() as sock:
        # before connect(): a receive buffer shrunk on an open connection stalls any
        # sender (the window it advertised stays closed; nginx stalls the same way)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /write?64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = bytearray()
        while True:
            piece = sock.recv(1 << 16)
            if not piece:
                break
            data += piece
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    if b"chunked" in head.lower():
        assert body.endswith(b"0\r\n\r\n")
        body = body.replace(b"\r\n", b"")
    assert body.count(b"w") == 64 << 20


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


def test_metrics_count_connections_waiting_on_clients(start_server):
    server = start_server("slowreaders:application", "--metrics", "127.0.0.1:0")
    mport = int(server.wait_for_log(METRICS_RE).group(1))
    wait_until(lambda: http_request(mport, "GET", "/readyz").status == 200, 15,
               message="/readyz 200")
    socks = [stalled(server.port, "/list") for _ in range(3)]
    try:
        for sock in socks:
            assert sock.recv(1, socket.MSG_PEEK) == b"H"
        # each worker reports once a second
        wait_until(lambda: scrape(mport)["fastgw_connections_waiting_on_client"] == 3, 10,
                   message="3 connections waiting on their clients")
        # most of each 8 MiB body is still queued
        assert scrape(mport)["fastgw_output_queued_bytes"] > 3 * (4 << 20)
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: scrape(mport)["fastgw_connections_waiting_on_client"] == 0, 10,
               message="no connection waiting")
    assert scrape(mport)["fastgw_output_queued_bytes"] == 0


def gateway_request(proto, target):
    params = fc.cgi_params("GET", target)
    if proto == "fastcgi":
        return fc.request_bytes(1, params)
    if proto == "scgi":
        return fc.scgi_netstring(params)
    return fc.uwsgi_packet(params)


def read_until_closed(sock):
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


def gateway_roundtrip(address, proto, target):
    """One request on a new connection, read until the server closes it."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(gateway_request(proto, target))
        return read_until_closed(sock)


@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize("target", ["/list", "/gen"])
def test_gateway_peers_that_stop_reading(start_server, target, threads):
    """A web server (nginx) that stops reading fastgw's FastCGI, SCGI or uwsgi answer
    holds a connection, not the worker: the other listeners' requests are answered."""
    protos = ("fastcgi", "scgi", "uwsgi")
    args = ["--threads", threads]
    for proto in protos:
        args += ["--bind", f"{proto}://127.0.0.1:0"]
    server = start_server("slowreaders:application", "--bind", "127.0.0.1:0", *args)
    address = {}
    for listener in server.listeners:
        proto, _, rest = listener.partition("://")
        host, _, port = rest.rpartition(":")
        address[proto] = (host, int(port))
    socks = []
    for proto in protos:
        for i in range(3):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(address[proto])
            sock.sendall(gateway_request(proto, f"{target}?{proto}{i}"))
            sock.settimeout(10)
            socks.append(sock)
    try:
        for sock in socks:
            assert sock.recv(1, socket.MSG_PEEK)
        with fc.FcgiConnection(address["fastcgi"], timeout=10) as conn:
            ex = conn.exchange(1, gateway_request("fastcgi", "/small"))
            assert ex.response().status == 200
        for proto in ("scgi", "uwsgi"):
            raw = gateway_roundtrip(address[proto], proto, "/small")
            assert fc.parse_cgi_response(raw, status_line=(proto == "uwsgi")).status == 200
        assert quick_answers(server.port) < 2.0
    finally:
        for sock in socks:
            sock.close()
