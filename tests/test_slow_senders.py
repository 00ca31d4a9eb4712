"""Clients that send a request body slowly, or stop in the middle, hold a buffer and a
socket, never the worker or a thread: the loop gathers the body (memory, then an
unlinked temporary file in --body-buffer-dir) and calls the application once it is
whole (issue 16). Every test runs with epoll (kqueue) and with FASTGW_POLLER=poll."""
import hashlib
import json
import os
import socket
import textwrap

import pytest

from fgwtest import APPS_DIR, chunked, http_request, proc_status_kib, raw_request, wait_until
from test_metrics import METRICS_RE, scrape
from test_slow_readers import quick_answers, start_server  # noqa: F401 (the poller fixture)

DECLARED = 1000000


def stalled_upload(port, sent=100000, target="/sha256"):
    """POST announcing DECLARED bytes; `sent` of them go out, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}\r\n\r\n"
                 .encode() + b"u" * sent)
    sock.settimeout(10)
    return sock


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return head, body


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("threads,count", [("1", 20), ("4", 8)])
def test_stalled_uploads_do_not_block_others(start_server, threads, count):
    server = start_server("slowsenders:application", "--threads", threads)
    socks = [stalled_upload(server.port) for _ in range(count)]
    try:
        assert quick_answers(server.port) < 2.0
        # the stalled uploads are all still waiting (the app has not run for them)
        for sock in socks:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.setblocking(True)
        # one of them completes its body and gets the whole of it to the application
        socks[0].sendall(b"u" * (DECLARED - 100000))
        head, body = read_response(socks[0])
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(body) == {"sha256": hashlib.sha256(b"u" * DECLARED).hexdigest(),
                                    "length": DECLARED}
    finally:
        for sock in socks:
            sock.close()


def test_stalled_upload_gets_408_and_its_file_is_removed(start_server, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    server = start_server("slowsenders:application", "--io-timeout", "1",
                          "--body-buffer-dir", str(spool))
    # 2 MiB declared, 1.5 MiB sent: past the memory a body may hold, so on disk
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
    sock.sendall(b"d" * (3 << 19))
    sock.settimeout(10)
    head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 408")
    sock.close()
    # O_TMPFILE (or an unlinked mkstemp file): never a name in the directory
    assert listing(spool) == []
    assert quick_answers(server.port) < 2.0


def test_large_upload_on_disk_with_flat_memory(start_server, tmp_path):
    """256 MiB uploaded whole, checked by sha256 in the application; the worker's
    memory does not grow with it; nothing is left in the buffer directory."""
    spool = tmp_path / "spool"
    spool.mkdir()
    server = start_server("slowsenders:application", "--body-buffer-dir", str(spool))
    pid = int(raw_request(server.port, "GET", "/pid").body)
    rss0 = proc_status_kib(pid, "VmRSS")
    size = 256 << 20
    block = bytes(range(256)) * 4096
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(60)
        sock.sendall(f"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
                     .encode())
        peak = 0
        for i in range(size // len(block)):
            sock.sendall(block)
            digest.update(block)
            if i % 64 == 0:
                peak = max(peak, proc_status_kib(pid, "VmRSS"))
        head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == {"sha256": digest.hexdigest(), "length": size}
    assert peak - rss0 < 64 * 1024, f"the worker grew by {peak - rss0} KiB"
    assert listing(spool) == []


def test_chunked_upload_gathered_whole(start_server):
    server = start_server("slowsenders:application")
    pieces = [bytes([65 + i % 26]) * 50000 for i in range(10)]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        wire = chunked(*pieces)
        sock.sendall(wire[:len(wire) // 2])
        # the application has not been called with half a body
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        sock.settimeout(10)
        sock.sendall(wire[len(wire) // 2:])
        head, body = read_response(sock)
    whole = b"".join(pieces)
    assert json.loads(body) == {"sha256": hashlib.sha256(whole).hexdigest(),
                                "length": len(whole)}


def test_over_limit_body_refused_before_it_is_read(start_server):
    server = start_server("slowsenders:application", "--limit-request-body", "100000")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 100001\r\n\r\n")
        head, _ = read_response(sock)
    assert head.startswith(b"HTTP/1.1 413")
    # chunked: refused as soon as the chunk sizes pass the limit
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n" % 100001)
        head, _ = read_response(sock)
    assert head.startswith(b"HTTP/1.1 413")


def test_request_buffering_off_streams_to_the_application(start_server, tmp_path, test_dir):
    """A mount with request_buffering = false: the application reads the first piece
    before the client has sent the last."""
    config = tmp_path / "fastgw.toml"
    config.write_text(textwrap.dedent('''
        [[mount]]
        path = "/"
        app = "slowsenders:application"
        request_buffering = false
        '''))
    server = start_server(None, "--config", str(config), "--chdir", APPS_DIR,
                          test_dir=test_dir)
    tag = f"streamed-{server.port}"
    mark = os.path.join(test_dir, "first-" + tag)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(f"POST /stream?{tag} HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}"
                     f"\r\n\r\n".encode() + b"s" * 200000)
        wait_until(lambda: os.path.exists(mark), timeout=10,
                   message="the application reading the first piece")
        sock.sendall(b"s" * (DECLARED - 200000))
        head, body = read_response(sock)
    assert json.loads(body)["length"] == DECLARED


def test_metrics_show_buffered_bodies(start_server, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    server = start_server("slowsenders:application", "--metrics", "127.0.0.1:0",
                          "--body-buffer-dir", str(spool))
    mport = int(server.wait_for_log(METRICS_RE).group(1))
    wait_until(lambda: http_request(mport, "GET", "/readyz").status == 200, 15,
               message="/readyz 200")
    small = stalled_upload(server.port, sent=300000)
    big = socket.create_connection(("127.0.0.1", server.port))
    big.sendall(b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n"
                + b"b" * 2000000)
    try:
        wait_until(lambda: scrape(mport)["fastgw_request_body_disk_bytes"] == 2000000, 10,
                   message="2 MB of a body on disk")
        assert scrape(mport)["fastgw_request_body_memory_bytes"] == 300000
    finally:
        small.close()
        big.close()
    wait_until(lambda: scrape(mport)["fastgw_request_body_disk_bytes"] == 0, 10,
               message="nothing on disk once the clients are gone")
    assert scrape(mport)["fastgw_request_body_memory_bytes"] == 0
