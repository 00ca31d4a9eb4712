"""Every request limit flag gives its status exactly past the limit (and not at it), and
the timeouts close what they must: an idle keep-alive connection, a body that stalls, a
client that stops reading the response.

One server with small limits:
  --limit-request-line 100  --limit-request-field-size 100  --limit-request-fields 5
  --limit-request-head 400  --limit-request-body 50  --limit-chunk-line 20
  --limit-trailer-size 40   --header-timeout 2  --keepalive 2  --io-timeout 2
"""
import json
import socket

import pytest

from fgwtest import RawConnection, get_pid, request

LIMIT_ARGS = ["--limit-request-line", "100", "--limit-request-field-size", "100",
              "--limit-request-fields", "5", "--limit-request-head", "400",
              "--limit-request-body", "50", "--limit-chunk-line", "20",
              "--limit-trailer-size", "40", "--header-timeout", "2", "--keepalive", "2",
              "--io-timeout", "2"]


@pytest.fixture(scope="module")
def srv(start_module_server):
    s = start_module_server("wsgiapp:application", *LIMIT_ARGS)
    s.first_pid = get_pid(s.port)
    return s


def served(port, data):
    with RawConnection(port, timeout=20) as conn:
        resp = conn.roundtrip(data)
        assert resp.status == 200, resp
        # the connection stays usable
        assert conn.roundtrip(request("GET", "/uri?next")).body == b"/uri?next"
    return resp


def refused(port, data, status):
    with RawConnection(port, timeout=20) as conn:
        conn.send(data)
        resp = conn.read_response()
        assert resp.status == status, resp
        assert "close" in resp.connection_tokens()
        assert conn.wait_closed(10)
    return resp


def line_of(length):
    """A request line of exactly ``length`` bytes (without its CRLF)."""
    prefix, suffix = b"GET /uri?", b" HTTP/1.1"
    return prefix + b"a" * (length - len(prefix) - len(suffix)) + suffix


def test_request_line_at_limit(srv):
    assert len(line_of(100)) == 100
    served(srv.port, line_of(100) + b"\r\nHost: x\r\n\r\n")


def test_request_line_over_limit_is_414(srv):
    refused(srv.port, line_of(101) + b"\r\nHost: x\r\n\r\n", 414)


def test_request_line_over_limit_without_line_end_is_414(srv):
    """Refused as soon as the line is too long, without waiting for its end."""
    refused(srv.port, b"GET /" + b"a" * 300, 414)


def field_of(length):
    line = b"X-F: " + b"v" * (length - 5)
    assert len(line) == length
    return line


def test_field_at_limit(srv):
    served(srv.port, b"GET /hello HTTP/1.1\r\nHost: x\r\n" + field_of(100) + b"\r\n\r\n")


def test_field_over_limit_is_431(srv):
    refused(srv.port, b"GET /hello HTTP/1.1\r\nHost: x\r\n" + field_of(101) + b"\r\n\r\n", 431)


def fields(count):
    return b"GET /hello HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: v\r\n" % i for i in range(count - 1)) + b"\r\n"


def test_fields_at_limit(srv):
    served(srv.port, fields(5))


def test_fields_over_limit_is_431(srv):
    refused(srv.port, fields(6), 431)


def head_of(size):
    start = b"GET /hello HTTP/1.1\r\nHost: x\r\n"
    others = b"".join(b"X-%d: " % i + b"g" * 84 + b"\r\n" for i in range(3))
    fill = size - len(start) - len(others) - len(b"X-Fill: \r\n") - 2
    head = start + b"X-Fill: " + b"f" * fill + b"\r\n" + others + b"\r\n"
    assert len(head) == size, len(head)
    return head


def test_head_at_limit(srv):
    served(srv.port, head_of(400))


def test_head_over_limit_is_431(srv):
    refused(srv.port, head_of(401), 431)


def test_head_over_limit_without_its_end_is_431(srv):
    """Refused once the buffered part of the head passes the limit (no empty line yet)."""
    data = b"GET /hello HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: " % i + b"h" * 90 + b"\r\n" for i in range(4))
    refused(srv.port, data, 431)


def body_request(body, method="POST"):
    return request(method, "/body/read", [("Content-Length", str(len(body)))], body)


def test_body_at_limit(srv):
    resp = served(srv.port, body_request(b"b" * 50))
    assert resp.json()["chunks"] == ["b" * 50]


def test_body_over_limit_is_413(srv):
    refused(srv.port, body_request(b"b" * 51), 413)


def test_body_over_limit_is_413_before_the_body_is_sent(srv):
    refused(srv.port, request("POST", "/body/read", [("Content-Length", "1000000")]), 413)


def chunked(body_bytes):
    return request("POST", "/body/read", [("Transfer-Encoding", "chunked")], body_bytes)


def test_chunked_body_at_limit(srv):
    resp = served(srv.port, chunked(b"19\r\n" + b"c" * 25 + b"\r\n19\r\n" + b"d" * 25
                                    + b"\r\n0\r\n\r\n"))
    assert "".join(resp.json()["chunks"]) == "c" * 25 + "d" * 25


def test_chunked_body_over_limit_is_413(srv):
    refused(srv.port, chunked(b"19\r\n" + b"c" * 25 + b"\r\n1a\r\n" + b"d" * 26
                              + b"\r\n0\r\n\r\n"), 413)


def test_chunked_body_over_limit_is_413_as_the_size_arrives(srv):
    """The chunk-size line alone announces too much: 413 without waiting for the data."""
    refused(srv.port, chunked(b"33\r\n"), 413)


def test_chunk_line_within_limit(srv):
    line = b"5;ext=" + b"e" * 12  # 18 bytes + CRLF
    resp = served(srv.port, chunked(line + b"\r\nhello\r\n0\r\n\r\n"))
    assert resp.json()["chunks"] == ["hello"]


def test_chunk_line_over_limit_is_400(srv):
    line = b"5;ext=" + b"e" * 20
    refused(srv.port, chunked(line + b"\r\nhello\r\n0\r\n\r\n"), 400)


def test_chunk_line_over_limit_without_its_end_is_400(srv):
    refused(srv.port, chunked(b"5;ext=" + b"e" * 60), 400)


def test_trailers_within_limit(srv):
    trailers = b"X-A: 1234567890\r\nX-B: 12345678\r\n\r\n"
    assert len(trailers) == 34
    resp = served(srv.port, chunked(b"5\r\nhello\r\n0\r\n" + trailers))
    assert resp.json()["chunks"] == ["hello"]


def test_trailers_over_limit_is_400(srv):
    trailers = b"X-A: 1234567890\r\nX-B: 1234567890123456789\r\n\r\n"
    refused(srv.port, chunked(b"5\r\nhello\r\n0\r\n" + trailers), 400)


def test_trailers_over_limit_without_their_end_is_400(srv):
    refused(srv.port, chunked(b"5\r\nhello\r\n0\r\nX-A: " + b"t" * 80), 400)


def test_header_timeout_is_408(srv):
    with RawConnection(srv.port, timeout=30) as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        resp = conn.read_response()
        assert resp.status == 408
        assert "close" in resp.connection_tokens()
        assert conn.wait_closed(10)


# --------------------------------------------------------------------------
# keep-alive and io timeouts


def test_idle_keepalive_connection_is_closed(srv):
    with RawConnection(srv.port, timeout=30) as conn:
        assert conn.roundtrip(request("GET", "/hello")).status == 200
        # nothing more is sent: the server closes it, without any response
        assert conn.wait_closed(30), "idle keep-alive connection never closed"


def test_connection_that_never_sends_is_closed(srv):
    with RawConnection(srv.port, timeout=30) as conn:
        assert conn.wait_closed(30)


def test_body_that_stalls_is_cut_off(srv):
    """Content-Length 10, 3 bytes, then nothing: after --io-timeout the connection is
    closed (a 408 may come first); the worker goes on serving."""
    mark = srv.log_mark()
    with RawConnection(srv.port, timeout=30) as conn:
        conn.send(request("POST", "/body/read", [("Content-Length", "10")], b"abc"))
        data = b""
        while True:
            chunk = conn.read_available(30)
            if not chunk:
                break
            data += chunk
        assert conn.eof, "connection still open after the body stalled"
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    srv.wait_for_log(r"(?i)nothing for 2 s|timed? ?out", start=mark)
    assert get_pid(srv.port) == srv.first_pid


def test_chunked_body_that_stalls_is_cut_off(srv):
    with RawConnection(srv.port, timeout=30) as conn:
        conn.send(chunked(b"a\r\nabc"))
        data = b""
        while True:
            chunk = conn.read_available(30)
            if not chunk:
                break
            data += chunk
        assert conn.eof
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert get_pid(srv.port) == srv.first_pid


def test_client_that_stops_reading_is_cut_off(srv):
    """A large streamed response to a client that reads nothing: after --io-timeout the
    server gives up on it and goes on serving others.  (Reading on to the EOF is not
    checked: the kernel may take minutes to deliver a closed socket's queued bytes to a
    window that was closed.)"""
    mark = srv.log_mark()
    with RawConnection(srv.port, timeout=30) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.send(request("GET", "/stream?n=%d" % (256 * 1024 * 1024)))
        srv.wait_for_log(r"went away|nothing for", start=mark, timeout=60)
        with RawConnection(srv.port) as other:
            assert other.roundtrip(request("GET", "/uri?other")).body == b"/uri?other"
    assert get_pid(srv.port) == srv.first_pid


def test_worker_survived_the_limits(srv):
    assert get_pid(srv.port) == srv.first_pid
    assert srv.worker_pids() == [srv.first_pid]
    log = srv.log_text()
    assert "Traceback" not in log, log
    with RawConnection(srv.port) as conn:
        resp = conn.roundtrip(request("GET", "/environ-raw"))
        assert json.loads(resp.body)["pid"] == srv.first_pid
