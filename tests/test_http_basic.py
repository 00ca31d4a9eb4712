"""Response basics: status line, Server/Date headers, framing choice, HEAD,
204/304, app headers, write()."""
import email.utils
import time

import pytest

from fgwtest import RawConnection, http_request, request


def test_get_hello_status_line_and_body(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/hello"))
    assert resp.raw_head.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK"
    assert resp.body == b"Hello, world!\n"
    assert resp.framing == "length"
    assert resp.header("Content-Length") == "14"
    assert resp.header("Content-Type") == "text/plain"


def test_server_and_date_headers(server):
    resp = http_request(server.port, "GET", "/hello")
    assert resp.status == 200
    assert resp.headers.get_all("Server") == ["fastgw"]
    dates = resp.headers.get_all("Date")
    assert dates and len(dates) == 1, resp.headers
    assert dates[0].endswith(" GMT"), dates
    parsed = email.utils.parsedate_to_datetime(dates[0])
    assert abs(parsed.timestamp() - time.time()) < 120, dates[0]


def test_http_client_roundtrip_through_validator(server):
    resp = http_request(server.port, "GET", "/environ?via=http.client")
    assert resp.status == 200, resp.body
    assert resp.json()["environ"]["QUERY_STRING"] == "via=http.client"


def test_unknown_route_is_app_404(server):
    resp = http_request(server.port, "GET", "/no/such/route")
    assert resp.status == 404
    assert resp.body == b"no such route: /no/such/route"


def test_app_headers_preserved(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/headers"))
    assert resp.status == 200
    assert resp.header("X-Custom") == "custom-value"
    assert resp.header_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert resp.header_list("Server") == ["fastgw"]


@pytest.mark.parametrize("mode,body", [
    ("single", b"single-body"),
    ("tuple", b"tuple-body"),
    ("empty", b""),
    ("oneempty", b""),
])
def test_content_length_from_single_item_body(server, mode, body):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/len?mode=" + mode))
    assert resp.status == 200
    assert resp.framing == "length", resp
    assert resp.header("Content-Length") == str(len(body))
    assert not resp.has_header("Transfer-Encoding")
    assert resp.body == body


@pytest.mark.parametrize("mode,body", [
    ("multi", b"part1-part2-part3"),
    ("gen", b"gen1-gen2-gen3"),
])
def test_chunked_for_unknown_length_http11(server, mode, body):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/len?mode=" + mode))
        assert resp.status == 200
        assert resp.framing == "chunked", resp
        assert not resp.has_header("Content-Length")
        assert resp.body == body
        # framing was right: the connection is still usable
        resp2 = conn.roundtrip(request("GET", "/hello"))
        assert resp2.body == b"Hello, world!\n"


@pytest.mark.parametrize("mode,body", [
    ("multi", b"part1-part2-part3"),
    ("gen", b"gen1-gen2-gen3"),
])
def test_close_delimited_for_unknown_length_http10(server, mode, body):
    with RawConnection(server.port) as conn:
        conn.send(request("GET", "/len?mode=" + mode, version="HTTP/1.0"))
        resp = conn.read_head()
        assert resp.status == 200
        assert resp.version == "HTTP/1.1"
        assert not resp.has_header("Transfer-Encoding")
        assert not resp.has_header("Content-Length")
        assert "close" in resp.connection_tokens()
        conn.read_body(resp)
        assert resp.framing == "close"
        assert resp.body == body


def test_http10_keepalive_unknown_length_falls_back_to_close(server):
    with RawConnection(server.port) as conn:
        conn.send(request("GET", "/len?mode=multi", [("Connection", "keep-alive")],
                          version="HTTP/1.0"))
        resp = conn.read_head()
        assert not resp.has_header("Transfer-Encoding"), "chunked is not HTTP/1.0"
        conn.read_body(resp)
        assert resp.body == b"part1-part2-part3"
        assert resp.framing == "close"


def test_app_content_length_with_generator_is_not_chunked(server):
    # /stream has no Content-Length -> chunked; the app's own length wins elsewhere
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/environ-raw"))
        assert resp.framing == "length"
        assert int(resp.header("Content-Length")) == len(resp.body)


def test_head_same_headers_no_body(server):
    with RawConnection(server.port) as conn:
        get = conn.roundtrip(request("GET", "/hello"))
        conn.send(request("HEAD", "/hello") + request("GET", "/uri?after-head"))
        head = conn.read_response("HEAD")
        after = conn.read_response("GET")
    assert head.status == 200
    assert head.body == b""
    assert head.header("Content-Length") == get.header("Content-Length") == "14"
    assert head.header("Content-Type") == get.header("Content-Type")
    assert head.header("Server") == "fastgw"
    # had the server sent a body after the HEAD head, this would be garbage
    assert after.status == 200
    assert after.body == b"/uri?after-head"


def test_head_on_streamed_response_sends_no_body(server):
    with RawConnection(server.port) as conn:
        conn.send(request("HEAD", "/stream?n=5000") + request("GET", "/uri?after-stream-head"))
        head = conn.read_response("HEAD")
        after = conn.read_response("GET")
    assert head.status == 200
    assert after.status == 200, after
    assert after.body == b"/uri?after-stream-head"


@pytest.mark.parametrize("code", [204, 304])
@pytest.mark.parametrize("app_body", [False, True])
def test_no_body_statuses(server, code, app_body):
    target = "/status?code=%d%s" % (code, "&body=1" if app_body else "")
    with RawConnection(server.port) as conn:
        conn.send(request("GET", target) + request("GET", "/uri?after-%d" % code))
        resp = conn.read_response()
        assert resp.status == code
        assert resp.header("X-Status-Test") == str(code)
        assert not resp.has_header("Transfer-Encoding"), resp
        assert resp.header("Content-Length") in (None, "0"), resp
        after = conn.read_response()
    assert after.status == 200, after
    assert after.body == ("/uri?after-%d" % code).encode()


@pytest.mark.parametrize("mode,expected", [
    ("write", b"part-0;part-1;part-2;"),
    ("mixed", b"part-0;part-1;part-2;tail-a;tail-b"),
])
def test_write_callable(server, mode, expected):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/write?parts=3&mode=" + mode))
        assert resp.status == 200
        assert resp.body == expected
        again = conn.roundtrip(request("GET", "/hello"))
        assert again.body == b"Hello, world!\n"


def test_request_sent_one_byte_at_a_time(server):
    data = request("POST", "/body/read", [("Content-Length", "11")], b"hello world")
    with RawConnection(server.port) as conn:
        for i in range(len(data)):
            conn.send(data[i:i + 1])
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.json()["chunks"] == ["hello world"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_reach_app(server, method):
    headers = [("Content-Length", "0")] if method in ("POST", "PUT", "PATCH") else []
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request(method, "/environ-raw", headers))
    assert resp.status == 200
    assert resp.json()["environ"]["REQUEST_METHOD"] == method
