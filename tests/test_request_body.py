"""wsgi.input: every read style, Content-Length and chunked request bodies."""
import http.client
import json

import pytest

from fgwtest import RawConnection, chunked, http_request, request, send_in_background

# several short lines, an empty line, a line much longer than any sane buffer,
# bytes outside ASCII, and no newline at the very end
BODY = (
    b"first line\n"
    b"second line\n"
    b"\n"
    + b"L" * 70000 + b"\n"
    + bytes(range(256)).replace(b"\n", b"") + b"\n"
    + b"x\n"
    + b"last line without newline"
)


def _send_body(port, path, body, framing, pieces=5):
    if framing == "length":
        data = request("POST", path, [("Content-Length", str(len(body))),
                                      ("Content-Type", "application/octet-stream")], body)
    else:
        step = max(1, len(body) // pieces)
        parts = [body[i:i + step] for i in range(0, len(body), step)]
        data = request("POST", path, [("Transfer-Encoding", "chunked")], chunked(*parts))
    with RawConnection(port) as conn:
        resp = conn.roundtrip(data)
    assert resp.status == 200, resp
    return resp.json()


def _chunks(result):
    return [c.encode("latin-1") for c in result["chunks"]]


def _split_lines(data, limit=None):
    """Lines as file.readline() sees them: split after b"\n" only."""
    lines = [piece + b"\n" for piece in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    out = []
    for line in lines:
        if limit:
            out.extend(line[i:i + limit] for i in range(0, len(line), limit))
        else:
            out.append(line)
    return out


FRAMINGS = ["length", "chunked"]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_all(server, framing):
    result = _send_body(server.port, "/body/read", BODY, framing)
    assert _chunks(result) == [BODY]
    assert result["second_read"] == ""
    assert result["after_eof"] == ""


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
def test_read_sized(server, framing, size):
    body = BODY if size > 1 else BODY[:3000]
    result = _send_body(server.port, "/body/read-n?size=%d" % size, body, framing)
    chunks = _chunks(result)
    assert b"".join(chunks) == body
    assert all(0 < len(c) <= size for c in chunks), sorted({len(c) for c in chunks})
    assert result["after_eof"] == ""


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readline(server, framing):
    result = _send_body(server.port, "/body/readline", BODY, framing)
    assert _chunks(result) == _split_lines(BODY)
    assert result["after_eof"] == ""


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("size", [1, 5, 100])
def test_readline_with_size(server, framing, size):
    body = BODY if size > 1 else BODY[:2000]
    result = _send_body(server.port, "/body/readline-n?size=%d" % size, body, framing)
    assert _chunks(result) == _split_lines(body, size)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readlines(server, framing):
    result = _send_body(server.port, "/body/readlines", BODY, framing)
    assert _chunks(result) == _split_lines(BODY)
    assert result["types"] == ["bytes"]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_iteration(server, framing):
    result = _send_body(server.port, "/body/iter", BODY, framing)
    assert _chunks(result) == _split_lines(BODY)
    assert result["types"] == ["bytes"]


@pytest.mark.parametrize("mode", ["read", "read-n", "readline", "readlines", "iter"])
def test_no_body_reads_empty_without_hanging(server, mode):
    with RawConnection(server.port, timeout=10) as conn:
        resp = conn.roundtrip(request("GET", "/body/" + mode))
    assert resp.status == 200
    assert b"".join(_chunks(resp.json())) == b""


def test_zero_content_length(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("POST", "/body/read", [("Content-Length", "0")]))
    assert resp.json()["chunks"] == [""]


def test_binary_body_roundtrip(server):
    body = bytes(range(256)) * 64
    resp = http_request(server.port, "POST", "/body/read", body=body,
                        headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    assert _chunks(resp.json()) == [body]


def test_chunked_with_extensions_trailers_and_uppercase_hex(server):
    payload = b"A" * 26 + b"\n" + b"B" * 300
    encoded = (b"1A;name=value\r\n" + payload[:26] + b"\r\n"
               + b"1;ext\r\n" + payload[26:27] + b"\r\n"
               + b"12C\r\n" + payload[27:] + b"\r\n"
               + b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n")
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("POST", "/body/read", [("Transfer-Encoding", "chunked")],
                                      encoded))
        assert resp.status == 200
        assert _chunks(resp.json()) == [payload]
        # the trailers were consumed, not taken for the next request
        again = conn.roundtrip(request("GET", "/uri?after-trailers"))
        assert again.body == b"/uri?after-trailers"


def test_chunked_many_tiny_chunks(server):
    body = bytes(i % 251 for i in range(3000))
    encoded = chunked(*[body[i:i + 1] for i in range(len(body))])
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("POST", "/body/read",
                                      [("Transfer-Encoding", "chunked")], encoded))
    assert b"".join(_chunks(resp.json())) == body


def test_body_trickled_byte_by_byte(server):
    body = b"trickle\nbody\n" * 20
    for framing in ("length", "chunked"):
        if framing == "length":
            data = request("POST", "/body/readline", [("Content-Length", str(len(body)))], body)
        else:
            data = request("POST", "/body/readline", [("Transfer-Encoding", "chunked")],
                           chunked(body[:50], body[50:51], body[51:]))
        with RawConnection(server.port) as conn:
            for i in range(len(data)):
                conn.send(data[i:i + 1])
            resp = conn.read_response()
        assert _chunks(resp.json()) == _split_lines(body), framing


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("mode", ["partial", "ignore"])
@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024])
def test_unread_body_does_not_corrupt_next_request(server, framing, mode, size):
    """The app reads only part (or none) of the body. The server must either
    skip the rest before the next request or close the connection; it must
    never parse body bytes as a request."""
    body = (b"GET /uri?smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * (size // 40 + 1))[:size]
    if framing == "length":
        first = request("POST", "/body/%s?size=5" % mode, [("Content-Length", str(len(body)))], body)
    else:
        first = request("POST", "/body/%s?size=5" % mode, [("Transfer-Encoding", "chunked")],
                        chunked(body[:size // 2], body[size // 2:]))
    with RawConnection(server.port) as conn:
        # send from a thread: the server may answer (and even close) before
        # it has consumed the whole body
        sender = send_in_background(conn, first + request("GET", "/uri?next"))
        resp = conn.read_response()
        sender.join(30)
        assert resp.status == 200
        if mode == "partial":
            assert resp.json()["chunks"] == [body[:5].decode("latin-1")]
        if "close" in resp.connection_tokens():
            return
        try:
            nxt = conn.read_response()
        except EOFError:
            return  # closing the connection is acceptable
        except AssertionError as exc:
            if "no response" in str(exc):
                return
            raise
        assert nxt.status == 200
        assert nxt.body == b"/uri?next", "body bytes were parsed as a request: %r" % nxt


def test_http_client_chunked_upload(server):
    def gen():
        yield b"alpha\n"
        yield b"beta\n"
        yield b"gamma"

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("POST", "/body/readlines", body=gen(), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["chunks"] == ["alpha\n", "beta\n", "gamma"]
    finally:
        conn.close()
