"""Persistent connections, Connection header handling, pipelining, idle timeout."""
import time

import pytest

from fgwtest import RawConnection, chunked, request


def test_http11_keepalive_by_default(server):
    with RawConnection(server.port) as conn:
        first = conn.roundtrip(request("GET", "/uri?one"))
        assert "close" not in first.connection_tokens()
        second = conn.roundtrip(request("GET", "/uri?two"))
        third = conn.roundtrip(request("GET", "/pid"))
        fourth = conn.roundtrip(request("GET", "/pid"))
    assert (first.body, second.body) == (b"/uri?one", b"/uri?two")
    assert third.body == fourth.body


def test_http11_connection_close_honoured(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/hello", [("Connection", "close")]))
        assert resp.status == 200
        assert resp.body == b"Hello, world!\n"
        assert "close" in resp.connection_tokens()
        assert conn.wait_closed(10), "server kept the connection open after Connection: close"


def test_http11_connection_close_with_chunked_response(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/stream?n=100000&chunk=1000",
                                      [("Connection", "close")]))
        assert resp.status == 200
        assert len(resp.body) == 100000
        assert "close" in resp.connection_tokens()
        assert conn.wait_closed(10)


def test_http10_closes_by_default(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/hello", version="HTTP/1.0"))
        assert resp.status == 200
        assert resp.body == b"Hello, world!\n"
        assert "keep-alive" not in resp.connection_tokens()
        assert conn.wait_closed(10), "HTTP/1.0 connection without keep-alive was not closed"


def test_http10_without_host_is_fine(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/hello", version="HTTP/1.0", host=None))
    assert resp.status == 200
    assert resp.body == b"Hello, world!\n"


def test_http10_keepalive_requested(server):
    with RawConnection(server.port) as conn:
        headers = [("Connection", "keep-alive")]
        first = conn.roundtrip(request("GET", "/uri?ka1", headers, version="HTTP/1.0"))
        assert first.status == 200
        assert "keep-alive" in first.connection_tokens(), first.headers
        assert first.framing == "length"
        second = conn.roundtrip(request("GET", "/uri?ka2", headers, version="HTTP/1.0"))
        assert second.body == b"/uri?ka2"
        assert "keep-alive" in second.connection_tokens()
        # and a plain HTTP/1.0 request on the same connection ends it
        third = conn.roundtrip(request("GET", "/uri?ka3", version="HTTP/1.0"))
        assert third.body == b"/uri?ka3"
        assert conn.wait_closed(10)


def test_pipelined_requests_answered_in_order(server):
    targets = ["/uri?n=%d" % i for i in range(25)]
    with RawConnection(server.port) as conn:
        conn.send(b"".join(request("GET", t) for t in targets))
        bodies = [conn.read_response().body for _ in targets]
    assert bodies == [t.encode() for t in targets]


def test_pipelined_mixed_requests(server):
    body = b"pipelined body\nsecond line\n"
    batch = (
        request("GET", "/uri?first")
        + request("POST", "/body/read", [("Content-Length", str(len(body)))], body)
        + request("GET", "/stream?n=300000&chunk=4096")
        + request("HEAD", "/hello")
        + request("POST", "/body/readline", [("Transfer-Encoding", "chunked")],
                  chunked(b"abc\n", b"de", b"f\n"))
        + request("GET", "/len?mode=single")
        + request("GET", "/uri?last", [("Connection", "close")])
    )
    with RawConnection(server.port) as conn:
        conn.send(batch)
        r1 = conn.read_response()
        r2 = conn.read_response()
        r3 = conn.read_response()
        r4 = conn.read_response("HEAD")
        r5 = conn.read_response()
        r6 = conn.read_response()
        r7 = conn.read_response()
        assert conn.wait_closed(10)
    assert r1.body == b"/uri?first"
    assert "".join(r2.json()["chunks"]).encode() == body
    assert len(r3.body) == 300000 and r3.framing == "chunked"
    assert r4.status == 200 and r4.body == b""
    assert r5.json()["chunks"] == ["abc\n", "def\n"]
    assert r6.body == b"single-body"
    assert r7.body == b"/uri?last"


def test_pipelined_requests_in_one_segment_then_keepalive(server):
    with RawConnection(server.port) as conn:
        conn.send(request("GET", "/uri?a") + request("GET", "/uri?b"))
        assert conn.read_response().body == b"/uri?a"
        assert conn.read_response().body == b"/uri?b"
        assert conn.roundtrip(request("GET", "/uri?c")).body == b"/uri?c"


def test_many_sequential_requests_same_connection(server):
    with RawConnection(server.port) as conn:
        for i in range(200):
            resp = conn.roundtrip(request("GET", "/uri?seq=%d" % i))
            assert resp.body == b"/uri?seq=%d" % i


def test_idle_keepalive_timeout(start_server):
    srv = start_server("wsgiapp:application", "--keepalive", "2")
    with RawConnection(srv.port) as conn:
        resp = conn.roundtrip(request("GET", "/hello"))
        assert resp.status == 200
        t0 = time.monotonic()
        # still open well before the timeout ...
        assert not conn.wait_closed(0.5), "idle connection closed long before --keepalive 2"
        # ... and closed by the server after it
        assert conn.wait_closed(15), "idle connection not closed after --keepalive 2"
        assert time.monotonic() - t0 >= 1.0
    # the worker still serves new connections
    with RawConnection(srv.port) as conn:
        assert conn.roundtrip(request("GET", "/hello")).status == 200


def test_idle_connection_does_not_block_other_clients(server):
    """One worker: a client idling on a keep-alive connection must not stop
    another client from being served (event loop, not one conn at a time)."""
    with RawConnection(server.port) as idle:
        assert idle.roundtrip(request("GET", "/hello")).status == 200
        with RawConnection(server.port, timeout=10) as other:
            assert other.roundtrip(request("GET", "/uri?other")).body == b"/uri?other"
        with RawConnection(server.port, timeout=10) as half:
            # a half-sent request on yet another connection
            half.send(b"GET /uri?half HTTP/1.1\r\nHost: x\r\n")
            with RawConnection(server.port, timeout=10) as third:
                assert third.roundtrip(request("GET", "/uri?third")).body == b"/uri?third"
            half.send(b"\r\n")
            assert half.read_response().body == b"/uri?half"
        assert idle.roundtrip(request("GET", "/uri?idle")).body == b"/uri?idle"


@pytest.mark.parametrize("token", ["close", "Close", "keep-alive, close"])
def test_connection_close_token_case_and_lists(server, token):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/hello", [("Connection", token)]))
        assert resp.status == 200
        assert conn.wait_closed(10)
