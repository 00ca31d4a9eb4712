"""HTTPS listeners (issue 20): TLS between the socket and the loop's buffers. Real
clients (curl --cacert, Python's ssl) against the real server on port 0: keep-alive,
the environ mod_ssl gives, 64 MiB each way checked by sha256, a stalled TLS reader and
a stalled handshake beside normal clients, plain HTTP and garbage on the TLS port.
Every test runs with the epoll (kqueue) loop and with FASTGW_POLLER=poll."""
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from fgwtest import pattern_bytes, pattern_chunks
from tlscerts import Certs

BIG = 64 << 20


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["epoll", "poll"])
def poller(request):
    return request.param


@pytest.fixture
def https_server(start_server, certs, poller):
    """Start an app with an HTTPS listener (and a plain one) on port 0."""
    def start(*args, app="wsgiapp:application", **options):
        srv = start_server(app, "--bind", "https://127.0.0.1:0", "--bind", "127.0.0.1:0",
                           "--certfile", certs.server_cert, "--keyfile", certs.server_key,
                           *args, default_bind=False, env={"FASTGW_POLLER": poller}, **options)
        srv.tls_port = https_port(srv)
        return srv
    return start


def https_port(srv):
    for address in srv.listeners:
        match = re.fullmatch(r"https://127\.0\.0\.1:(\d+)", address)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no HTTPS listener in {srv.listeners}")


def client_context(certs, **load):
    ctx = ssl.create_default_context(cafile=certs.ca)
    if load:
        ctx.load_cert_chain(**load)
    return ctx


def https_get(srv, certs, target, timeout=20, **load):
    conn = http.client.HTTPSConnection("127.0.0.1", srv.tls_port, timeout=timeout,
                                       context=client_context(certs, **load))
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_keep_alive_and_environ(https_server, certs):
    srv = https_server()
    conn = http.client.HTTPSConnection("127.0.0.1", srv.tls_port, timeout=20,
                                       context=client_context(certs))
    conn.request("GET", "/hello")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"Hello, world!\n")
    first = conn.sock
    version, cipher = first.version(), first.cipher()[0]
    for _ in range(3):
        conn.request("GET", "/environ-raw/x")
        resp = conn.getresponse()
        env = json.loads(resp.read())["environ"]
        assert conn.sock is first  # the same TLS connection each time
    conn.close()
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == version == "TLSv1.3"
    assert env["SSL_CIPHER"] == cipher
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert env["SERVER_PORT"] == str(srv.tls_port)
    # the plain listener beside it is untouched
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
    conn.request("GET", "/environ-raw/x")
    env = json.loads(conn.getresponse().read())["environ"]
    assert env["wsgi.url_scheme"] == "http" and "HTTPS" not in env


def test_curl(https_server, certs, curl_path):
    srv = https_server()
    url = f"https://127.0.0.1:{srv.tls_port}/hello"
    out = subprocess.run([curl_path, "-sS", "--cacert", certs.ca, url, url, "-w", "%{http_code}\n"],
                         capture_output=True, check=True, timeout=30)
    assert out.stdout == b"Hello, world!\n200\nHello, world!\n200\n"
    # ALPN offers h2 and http/1.1: the server picks http/1.1
    out = subprocess.run([curl_path, "-sS", "-v", "--cacert", certs.ca, url],
                         capture_output=True, check=True, timeout=30)
    assert b"ALPN: server accepted http/1.1" in out.stderr or b"ALPN, server accepted to use http/1.1" in out.stderr


@pytest.mark.parametrize("threads", ["1", "4"])
def test_big_download_and_upload(https_server, certs, test_dir, threads):
    """64 MiB from a file (file_wrapper: pread through TLS instead of sendfile), 64 MiB
    from a generator, and 64 MiB uploaded; each checked by sha256."""
    name = f"tls-big-{threads}.bin"
    data = pattern_bytes(BIG)
    expected = hashlib.sha256(data).hexdigest()
    with open(os.path.join(test_dir, name), "wb") as f:
        f.write(data)
    srv = https_server("--threads", threads)
    conn = http.client.HTTPSConnection("127.0.0.1", srv.tls_port, timeout=60,
                                       context=client_context(certs))
    for target in (f"/file?name={name}", f"/stream?n={BIG}"):
        conn.request("GET", target)
        resp = conn.getresponse()
        digest = hashlib.sha256()
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
        assert resp.status == 200
        assert digest.hexdigest() == expected, target
    conn.request("POST", "/sha256", body=pattern_chunks(BIG),
                 headers={"Content-Length": str(BIG)})
    result = json.loads(conn.getresponse().read())
    assert result == {"sha256": expected, "length": BIG, "pid": result["pid"]}
    conn.close()


def tls_socket(port, certs):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    return client_context(certs).wrap_socket(raw, server_hostname="localhost")


def test_stalled_tls_reader_holds_no_worker(https_server, certs):
    """Readers that stop taking a 64 MiB response (one worker, one thread) hold a
    socket and a bounded buffer: new TLS clients are answered meanwhile."""
    srv = https_server()
    stalled = []
    for _ in range(3):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", srv.tls_port))
        sock = client_context(certs).wrap_socket(raw, server_hostname="localhost")
        sock.sendall(f"GET /stream?n={BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        stalled.append(sock)
    for _ in range(5):
        assert https_get(srv, certs, "/hello", timeout=10) == (200, b"Hello, world!\n")
    for sock in stalled:
        sock.close()


def test_plain_http_gets_400(https_server):
    srv = https_server()
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in answer and answer.endswith(b"use an https:// URL.\r\n\r\n")


def wait_closed(sock, timeout):
    """Seconds until the server closed the socket (EOF or reset)."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_stalled_handshake_dropped_after_header_timeout(https_server, certs):
    srv = https_server("--header-timeout", "1")
    silent = socket.create_connection(("127.0.0.1", srv.tls_port))
    partial = socket.create_connection(("127.0.0.1", srv.tls_port))
    partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, no more
    # both hold a socket, not the worker
    assert https_get(srv, certs, "/hello", timeout=10) == (200, b"Hello, world!\n")
    for sock in (silent, partial):
        assert wait_closed(sock, 15) < 15
        sock.close()
    assert "Traceback" not in srv.log_text()


def test_garbage_and_aborted_handshakes_cost_a_line_at_most(https_server, certs):
    srv = https_server()
    mark = srv.log_mark()
    for garbage in (b"\x16\x03\x01\x00\x05hello" + os.urandom(300), b"\x16" + b"\xff" * 64):
        with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=20) as sock:
            sock.sendall(garbage)
            wait_closed(sock, 15)
    for _ in range(3):  # clients that give up during the handshake
        hello = ssl.MemoryBIO()
        obj = client_context(certs).wrap_bio(ssl.MemoryBIO(), hello, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            obj.do_handshake()
        with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=20) as sock:
            sock.sendall(hello.read())  # the ClientHello, then gone
    assert https_get(srv, certs, "/hello") == (200, b"Hello, world!\n")
    lines = srv.log_lines()[mark:]
    assert "Traceback" not in "\n".join(lines)
    assert len([l for l in lines if "TLS" in l]) <= 2, lines
