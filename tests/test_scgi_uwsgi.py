"""SCGI and uwsgi (modifier1 0) server side, over raw sockets.

Both carry CGI variables in a header block, then the body; the server answers
with a CGI response (SCGI: ``Status: 200 OK``; uwsgi: an ``HTTP/1.1 200 OK``
line, which is what nginx's uwsgi module expects) and closes the connection.
One server per mode (inline and ``--threads 4``) listens on SCGI and uwsgi over
TCP and UNIX sockets, plus HTTP to ask the worker's pid.
"""
import hashlib
import itertools
import os
import socket
import struct

import pytest

import fcgiclient as fc
from fgwtest import get_pid, pattern_bytes, wait_for_line

HEAD_LIMIT = 8192
_ids = itertools.count(1)


class GatewayServer:
    def __init__(self, server, mode, paths, test_dir):
        self.server = server
        self.mode = mode
        self.paths = paths
        self.test_dir = test_dir
        self.ports = {}
        for listener in server.listeners:
            for proto in ("scgi", "uwsgi"):
                prefix = proto + "://127.0.0.1:"
                if listener.startswith(prefix):
                    self.ports[proto] = int(listener[len(prefix):])
        assert set(self.ports) == {"scgi", "uwsgi"}, server.listeners

    def address(self, proto, unix=False):
        return self.paths[proto] if unix else ("127.0.0.1", self.ports[proto])

    def pid(self):
        return get_pid(self.server.port)


@pytest.fixture(scope="module", params=["inline", "threads"])
def gw(request, start_module_server, tmp_path_factory, test_dir):
    base = tmp_path_factory.mktemp("scgi-" + request.param)
    paths = {"scgi": str(base / "scgi.sock"), "uwsgi": str(base / "uwsgi.sock")}
    args = ["--bind", "scgi://127.0.0.1:0", "--bind", "scgi://unix:" + paths["scgi"],
            "--bind", "uwsgi://127.0.0.1:0", "--bind", "uwsgi://unix:" + paths["uwsgi"],
            "--mount", "/app=mounts:api", "--limit-request-head", str(HEAD_LIMIT)]
    if request.param == "threads":
        args += ["--threads", "4"]
    server = start_module_server("gatewayapp:application", *args)
    return GatewayServer(server, request.param, paths, test_dir)


class RawClient:
    """One request per connection; the response is read until the server closes."""

    def __init__(self, address, timeout=20.0):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        if family == socket.AF_INET:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def read_all(self, sink=None):
        out = []
        while True:
            try:
                data = self.sock.recv(262144)
            except ConnectionResetError:
                data = b""
            if not data:
                return b"".join(out)
            if sink is not None:
                sink(data)
            else:
                out.append(data)

    def closed_without_answer(self, timeout=5.0):
        """True if the server closes within ``timeout`` having sent nothing."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        assert data == b"", "the server answered bad input with %r" % data[:300]
        return True


def params_for(method, uri, body_length=0, **extra):
    params = fc.cgi_params(method, uri, body_length=body_length if body_length else None,
                           extra=extra)
    return params


def scgi_request(method, uri, body=b"", **extra):
    return fc.scgi_netstring(params_for(method, uri, len(body), **extra), len(body)) + body


def uwsgi_request(method, uri, body=b"", **extra):
    params = params_for(method, uri, len(body), **extra)
    if not body:
        params["CONTENT_LENGTH"] = ""
    return fc.uwsgi_packet(params) + body


def roundtrip(gw, proto, data, unix=False, pieces=None):
    with RawClient(gw.address(proto, unix)) as client:
        if pieces:
            for pos in range(0, len(data), pieces):
                client.send(data[pos:pos + pieces])
        else:
            client.send(data)
        raw = client.read_all()
    return fc.parse_cgi_response(raw, status_line=(proto == "uwsgi"))


def build(proto, method, uri, body=b"", **extra):
    return (scgi_request if proto == "scgi" else uwsgi_request)(method, uri, body, **extra)


def assert_still_serving(gw, proto, pid):
    assert gw.pid() == pid
    resp = roundtrip(gw, proto, build(proto, "GET", "/hello"))
    assert (resp.status, resp.body) == (200, b"Hello, world!\n")


PROTOS = ["scgi", "uwsgi"]


# --------------------------------------------------------------------------
# requests and responses (both protocols)


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
@pytest.mark.parametrize("proto", PROTOS)
def test_get(gw, proto, unix):
    resp = roundtrip(gw, proto, build(proto, "GET", "/hello"), unix)
    assert resp.status == 200
    assert resp.header("Content-Length") == "14"
    assert resp.body == b"Hello, world!\n"


@pytest.mark.parametrize("proto", PROTOS)
def test_status_line_format(gw, proto):
    with RawClient(gw.address(proto)) as client:
        client.send(build(proto, "GET", "/status?code=204"))
        raw = client.read_all()
    if proto == "scgi":
        assert raw.startswith(b"Status: 204 No Content\r\n"), raw
    else:
        assert raw.startswith(b"HTTP/1.1 204 No Content\r\n"), raw
    assert raw.endswith(b"\r\n\r\n"), "a 204 with a body: %r" % raw


@pytest.mark.parametrize("proto", PROTOS)
def test_not_found_and_headers(gw, proto):
    resp = roundtrip(gw, proto, build(proto, "GET", "/no-such"))
    assert resp.status == 404
    resp = roundtrip(gw, proto, build(proto, "GET", "/headers"))
    assert resp.header_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


@pytest.mark.parametrize("proto", PROTOS)
def test_head(gw, proto):
    resp = roundtrip(gw, proto, build(proto, "HEAD", "/hello"))
    assert resp.status == 200
    assert resp.header("Content-Length") == "14"
    assert resp.body == b""


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
@pytest.mark.parametrize("proto", PROTOS)
def test_post_body(gw, proto, unix):
    body = pattern_bytes(3 * 1024 * 1024 + 7)
    resp = roundtrip(gw, proto, build(proto, "POST", "/sha256", body), unix)
    assert resp.status == 200
    assert resp.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body),
                           "pid": resp.json()["pid"]}


@pytest.mark.parametrize("proto", PROTOS)
def test_large_response(gw, proto):
    size = 5 * 1024 * 1024 + 3
    digest = hashlib.sha256()
    with RawClient(gw.address(proto)) as client:
        client.send(build(proto, "GET", "/stream?n=%d" % size))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.sock.recv(65536)
            assert chunk, "closed inside the head: %r" % head
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        digest.update(rest)
        total = [len(rest)]

        def sink(data):
            digest.update(data)
            total[0] += len(data)

        client.read_all(sink)
    assert total[0] == size
    assert digest.hexdigest() == hashlib.sha256(pattern_bytes(size)).hexdigest()


@pytest.mark.parametrize("proto", PROTOS)
def test_header_block_byte_by_byte(gw, proto):
    body = b"0123456789"
    resp = roundtrip(gw, proto, build(proto, "POST", "/body/read", body), pieces=1)
    assert resp.json()["chunks"] == ["0123456789"]


@pytest.mark.parametrize("proto", PROTOS)
def test_body_streamed_to_the_application(gw, proto):
    rest = pattern_bytes(100000)
    data = build(proto, "POST", "/gw/echo-first?n=5", b"hello" + rest)
    with RawClient(gw.address(proto)) as client:
        client.send(data[:-len(rest)])
        seen = b""
        while b"first=hello\n" not in seen:
            chunk = client.sock.recv(65536)
            assert chunk, "closed before the first body bytes were echoed: %r" % seen
            seen += chunk
        client.send(rest)
        raw = seen + client.read_all()
    resp = fc.parse_cgi_response(raw, status_line=(proto == "uwsgi"))
    assert resp.body == b"first=hello\nrest=%d %s\n" % (len(rest), hashlib.sha256(rest).hexdigest().encode())


@pytest.mark.parametrize("proto", PROTOS)
def test_environ(gw, proto):
    resp = roundtrip(gw, proto, build(proto, "GET", "/environ-raw?x=%20y", HTTP_USER_AGENT="raw-test",
                                      HTTPS="on"))
    env = resp.json()["environ"]
    assert env["QUERY_STRING"] == "x=%20y"
    assert env["PATH_INFO"] == "/environ-raw"
    assert env["SCRIPT_NAME"] == ""
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["SERVER_NAME"] == "fcgi.example"
    assert env["SERVER_PORT"] == "8080"
    assert env["HTTP_USER_AGENT"] == "raw-test"
    assert env["wsgi.url_scheme"] == "https"
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    if proto == "scgi":
        assert env["SCGI"] == "1"


@pytest.mark.parametrize("proto", PROTOS)
def test_environ_content_headers_as_nginx_sends_them(gw, proto):
    """nginx's scgi/uwsgi modules pass every header as HTTP_*, Content-Length and
    Content-Type included; PEP 3333 wants only CONTENT_LENGTH/CONTENT_TYPE."""
    body = b"a=1&b=2"
    extra = dict(CONTENT_TYPE="text/plain", HTTP_CONTENT_TYPE="text/plain",
                 HTTP_CONTENT_LENGTH=str(len(body)))
    env = roundtrip(gw, proto, build(proto, "POST", "/environ-raw", body, **extra)).json()["environ"]
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_TYPE" not in env
    resp = roundtrip(gw, proto, build(proto, "POST", "/sha256", body, **extra))
    assert resp.status == 200, resp


@pytest.mark.parametrize("proto", PROTOS)
def test_mount_split(gw, proto):
    resp = roundtrip(gw, proto, build(proto, "GET", "/app/a/b?c=d"))
    assert resp.json() == {"app": "api", "SCRIPT_NAME": "/app", "PATH_INFO": "/a/b",
                           "QUERY_STRING": "c=d", "REQUEST_URI": "/app/a/b?c=d"}


@pytest.mark.parametrize("proto", PROTOS)
def test_request_scheme_https(gw, proto):
    resp = roundtrip(gw, proto, build(proto, "GET", "/gw/scheme", REQUEST_SCHEME="https"))
    assert resp.json()["url_scheme"] == "https"
    resp = roundtrip(gw, proto, build(proto, "GET", "/gw/scheme"))
    assert resp.json()["url_scheme"] == "http"


@pytest.mark.parametrize("proto", PROTOS)
def test_disconnect_in_body(gw, proto, test_dir):
    ident = "%s-%s-%d" % (proto, gw.mode, next(_ids))
    pid = gw.pid()
    data = build(proto, "POST", "/gw/consume?id=" + ident, b"x" * 1000000)
    with RawClient(gw.address(proto)) as client:
        client.send(data[:len(data) - 900000])
        seen = b""
        while b"started\n" not in seen:
            chunk = client.sock.recv(65536)
            assert chunk
            seen += chunk
    wait_for_line(os.path.join(test_dir, "gateway.log"), "closed " + ident)
    assert_still_serving(gw, proto, pid)


# --------------------------------------------------------------------------
# SCGI framing


def _scgi_block(items):
    return b"".join(k + b"\0" + v + b"\0" for k, v in items)


GOOD_ITEMS = [(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1"), (b"REQUEST_METHOD", b"GET"),
              (b"REQUEST_URI", b"/hello")]


def test_scgi_netstring_exact(gw):
    block = _scgi_block(GOOD_ITEMS)
    resp = roundtrip(gw, "scgi", b"%d:%s," % (len(block), block))
    assert (resp.status, resp.body) == (200, b"Hello, world!\n")


BAD_SCGI = {
    # the netstring claims more than the block: where it says ',' is, there is body
    "length-too-long": lambda b: b"%d:%s,%s" % (len(b) + 5, b, b"x" * 50),
    # claims less: the ',' is not where the length says
    "length-too-short": lambda b: b"%d:%s," % (len(b) - 3, b),
    "length-not-a-number": lambda b: b"1a2:%s," % b,
    "no-length": lambda b: b":%s," % b,
    "no-colon": lambda b: b"123456789012345678" + b,
    "length-over-limit": lambda b: b"%d:%s," % (HEAD_LIMIT + 1, b),
    "content-length-not-first": lambda b: (lambda blk: b"%d:%s," % (len(blk), blk))(
        _scgi_block([GOOD_ITEMS[2], GOOD_ITEMS[0], GOOD_ITEMS[1], GOOD_ITEMS[3]])),
    "no-scgi-1": lambda b: (lambda blk: b"%d:%s," % (len(blk), blk))(
        _scgi_block([GOOD_ITEMS[0], GOOD_ITEMS[2], GOOD_ITEMS[3]])),
    "scgi-2": lambda b: (lambda blk: b"%d:%s," % (len(blk), blk))(
        _scgi_block([GOOD_ITEMS[0], (b"SCGI", b"2"), GOOD_ITEMS[3]])),
    "odd-number-of-strings": lambda b: (lambda blk: b"%d:%s," % (len(blk), blk))(
        _scgi_block(GOOD_ITEMS) + b"LONELY\0"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCGI))
def test_scgi_bad_netstring_closes(gw, case):
    data = BAD_SCGI[case](_scgi_block(GOOD_ITEMS))
    pid = gw.pid()
    mark = gw.server.log_mark()
    with RawClient(gw.address("scgi")) as client:
        client.send(data)
        assert client.closed_without_answer(), "connection still open after %s" % case
    gw.server.wait_for_log(r"SCGI protocol error", timeout=5, start=mark)
    assert_still_serving(gw, "scgi", pid)


# --------------------------------------------------------------------------
# uwsgi framing


def test_uwsgi_packet_layout(gw):
    """modifier1 0, little-endian size, modifier2 0; u16 little-endian lengths."""
    params = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/uri?layout", "QUERY_STRING": "layout"}
    body = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
                    for k, v in params.items())
    packet = bytes([0]) + struct.pack("<H", len(body)) + bytes([0]) + body
    assert packet == fc.uwsgi_packet(params)
    resp = roundtrip(gw, "uwsgi", packet)
    assert (resp.status, resp.body) == (200, b"/uri?layout")


def test_uwsgi_long_value(gw):
    value = "v" * 3000
    resp = roundtrip(gw, "uwsgi", fc.uwsgi_packet(
        {"REQUEST_METHOD": "GET", "REQUEST_URI": "/environ-raw", "HTTP_X_LONG": value}))
    assert resp.json()["environ"]["HTTP_X_LONG"] == value


def _uwsgi_raw(body):
    return struct.pack("<BHB", 0, len(body), 0) + body


BAD_UWSGI = {
    "modifier1-not-0": fc.uwsgi_packet({"REQUEST_METHOD": "GET"}, modifier1=5),
    "name-longer-than-packet": _uwsgi_raw(struct.pack("<H", 200) + b"REQUEST_METHOD"
                                          + struct.pack("<H", 3) + b"GET"),
    "value-longer-than-packet": _uwsgi_raw(struct.pack("<H", 14) + b"REQUEST_METHOD"
                                           + struct.pack("<H", 300) + b"GET"),
    "truncated-length": _uwsgi_raw(struct.pack("<H", 14) + b"REQUEST_METHOD"
                                   + struct.pack("<H", 3) + b"GET" + b"\x05"),
    "packet-over-limit": struct.pack("<BHB", 0, HEAD_LIMIT + 1, 0) + b"\0" * (HEAD_LIMIT + 1),
}


@pytest.mark.parametrize("case", sorted(BAD_UWSGI))
def test_uwsgi_bad_packet_closes(gw, case):
    pid = gw.pid()
    mark = gw.server.log_mark()
    with RawClient(gw.address("uwsgi")) as client:
        client.send(BAD_UWSGI[case])
        assert client.closed_without_answer(), "connection still open after %s" % case
    gw.server.wait_for_log(r"uwsgi protocol error", timeout=5, start=mark)
    assert_still_serving(gw, "uwsgi", pid)


# --------------------------------------------------------------------------
# numbers in CGI variables (issue 17): a 400 answer, one warning line, no traceback


BAD_NUMBERS = {
    # '\xb2' passes str.isdigit() and then int() refuses it
    "content-length-superscript": {"CONTENT_LENGTH": "1\xb2"},
    "content-length-2**63": {"CONTENT_LENGTH": str(2 ** 63)},
    "content-length-negative": {"CONTENT_LENGTH": "-5"},
    "content-length-not-a-number": {"CONTENT_LENGTH": "12x"},
    "remote-port-superscript": {"REMOTE_PORT": "\xb2"},
    "server-port-2**63": {"SERVER_PORT": str(2 ** 63)},
}


@pytest.mark.parametrize("case", sorted(BAD_NUMBERS))
@pytest.mark.parametrize("proto", PROTOS)
def test_bad_number_gets_400(gw, proto, case):
    params = params_for("POST", "/gw/sha256", 4)
    params.update(BAD_NUMBERS[case])
    if proto == "scgi":
        # CONTENT_LENGTH first, as SCGI wants it, with the value under test
        data = fc.scgi_netstring(params, params["CONTENT_LENGTH"])
    else:
        data = fc.uwsgi_packet(params)
    pid = gw.pid()
    mark = gw.server.log_mark()
    with RawClient(gw.address(proto)) as client:
        client.send(data + b"abcd")
        raw = client.read_all()
    resp = fc.parse_cgi_response(raw, status_line=(proto == "uwsgi"))
    assert resp.status == 400, resp
    if proto == "uwsgi":
        assert raw.startswith(b"HTTP/1.1 400 "), raw[:100]
    gw.server.wait_for_log(r"WARNING.*%s request .* refused: invalid" % ("uwsgi" if proto == "uwsgi" else "SCGI"),
                           timeout=5, start=mark)
    lines = gw.server.log_lines()[mark:]
    assert not [l for l in lines if "Traceback" in l or "ERROR" in l], lines
    assert len([l for l in lines if "refused" in l]) == 1, lines
    assert_still_serving(gw, proto, pid)
