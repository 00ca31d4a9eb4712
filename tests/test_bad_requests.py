"""Requests the server cannot frame: 400 (or 505) and the connection closes."""
import pytest

from fgwtest import RawConnection, get_pid, request


@pytest.fixture(scope="module")
def srv(start_module_server):
    s = start_module_server("wsgiapp:application")
    s.first_pid = get_pid(s.port)
    return s


def _expect_rejected(port, data, status=400):
    with RawConnection(port, timeout=15) as conn:
        conn.send(data)
        resp = conn.read_response()
        assert resp.status == status, resp
        assert resp.version == "HTTP/1.1"
        assert conn.wait_closed(10), "connection left open after %d" % status
    return resp


BAD_FRAMING = {
    "cl-and-te": request("POST", "/body/read", [("Content-Length", "5"),
                                                ("Transfer-Encoding", "chunked")],
                         b"5\r\nhello\r\n0\r\n\r\n"),
    "te-and-cl": request("POST", "/body/read", [("Transfer-Encoding", "chunked"),
                                                ("Content-Length", "5")],
                         b"5\r\nhello\r\n0\r\n\r\n"),
    "cl-not-a-number": request("POST", "/body/read", [("Content-Length", "abc")], b"abc"),
    "cl-negative": request("POST", "/body/read", [("Content-Length", "-1")], b"x"),
    "cl-trailing-garbage": request("POST", "/body/read", [("Content-Length", "3x")], b"abc"),
    "cl-two-different": request("POST", "/body/read", [("Content-Length", "3"),
                                                       ("Content-Length", "4")], b"abcd"),
    "cl-list-different": request("POST", "/body/read", [("Content-Length", "3, 4")], b"abcd"),
    "te-unknown-coding": request("POST", "/body/read", [("Transfer-Encoding", "gzip")], b"abc"),
    "chunk-size-not-hex": request("POST", "/body/read", [("Transfer-Encoding", "chunked")],
                                  b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-empty": request("POST", "/body/read", [("Transfer-Encoding", "chunked")],
                                b"\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow": request("POST", "/body/read", [("Transfer-Encoding", "chunked")],
                                   b"fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-negative": request("POST", "/body/read", [("Transfer-Encoding", "chunked")],
                                   b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk-data-longer-than-size": request("POST", "/body/read",
                                           [("Transfer-Encoding", "chunked")],
                                           b"3\r\nhello\r\n0\r\n\r\n"),
    "http11-without-host": request("GET", "/hello", host=None),
    "http11-two-hosts": request("GET", "/hello", [("Host", "other.example")]),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMING))
def test_bad_framing_is_400(srv, name):
    _expect_rejected(srv.port, BAD_FRAMING[name])


GARBAGE = {
    "word": b"GARBAGE\r\n\r\n",
    "method-only": b"GET\r\n\r\n",
    "no-version": b"GET /hello\r\nHost: x\r\n\r\n",
    "bad-protocol": b"GET /hello FOO/1.1\r\nHost: x\r\n\r\n",
    "bad-version-digits": b"GET /hello HTTP/1.x\r\nHost: x\r\n\r\n",
    "extra-token": b"GET /hello HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "binary": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)) + b"\r\n\r\n",
    "space-in-method": b"G T /hello HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-without-colon": b"GET /hello HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "space-before-colon": b"GET /hello HTTP/1.1\r\nHost : x\r\n\r\n",
    "nul-in-target": b"GET /hel\x00lo HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_is_400(srv, name):
    _expect_rejected(srv.port, GARBAGE[name])


def test_http2_version_is_505(srv):
    _expect_rejected(srv.port, b"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", status=505)


def test_bad_request_after_good_one_on_same_connection(srv):
    with RawConnection(srv.port) as conn:
        ok = conn.roundtrip(request("GET", "/uri?good"))
        assert ok.body == b"/uri?good"
        conn.send(request("POST", "/body/read", [("Content-Length", "nope")], b"x"))
        resp = conn.read_response()
        assert resp.status == 400
        assert conn.wait_closed(10)


def test_pipelined_request_after_bad_one_is_not_served(srv):
    with RawConnection(srv.port) as conn:
        conn.send(b"GARBAGE\r\n\r\n" + request("GET", "/uri?after-garbage"))
        resp = conn.read_response()
        assert resp.status == 400
        assert conn.wait_closed(10)


def test_bad_chunk_size_in_app_readline(srv):
    """The error surfaces while the app is reading; it is still a 400."""
    data = request("POST", "/body/readline", [("Transfer-Encoding", "chunked")],
                   b"4\r\nab\n\r\nzz\r\n")
    _expect_rejected(srv.port, data)


def test_worker_survives_bad_requests(srv):
    for data in list(BAD_FRAMING.values()) + list(GARBAGE.values()):
        with RawConnection(srv.port) as conn:
            conn.send(data)
            conn.read_response()
    assert get_pid(srv.port) == srv.first_pid
    assert srv.worker_pids() == [srv.first_pid]


def test_good_requests_still_served(srv):
    with RawConnection(srv.port) as conn:
        resp = conn.roundtrip(request("GET", "/hello"))
    assert resp.status == 200
    assert resp.body == b"Hello, world!\n"
