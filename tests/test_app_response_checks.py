"""What the application answers is checked before it goes on the wire.

A status line or header field the application builds from bad data (CR, LF or NUL in a
name or value, invalid name characters, a malformed status, hop-by-hop fields, a
Content-Length the body does not match) must never reach the client as it is: while the
head has not been sent the client gets a 500 instead; once it has, the connection is
closed.  The worker goes on serving either way.

The application is written by this module into the test directory and imported with
``--pythonpath``: ``/status?s=<json>`` answers with the status given,
``/header?n=<json>&v=<json>`` with one extra header field, ``/headers?raw=<json>`` with a whole header list, and
``/length?declared=N&actual=M&mode=list|gen`` with a body of M bytes under a
Content-Length of N, from a one-item list (length known before the head) or a generator
(head sent with the first chunk).
"""
import json
import os
import urllib.parse

import pytest

from fgwtest import IncompleteResponse, RawConnection, get_pid

APP_SOURCE = r'''
import json
from urllib.parse import parse_qs


def _q(environ):
    qs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True, encoding="latin-1")
    return {k: v[-1] for k, v in qs.items()}


def _decode(item):
    if isinstance(item, list) and item and item[0] == "int":
        return item[1]
    if isinstance(item, list) and item and item[0] == "bytes":
        return item[1].encode("latin-1")
    if isinstance(item, list) and item and item[0] == "none":
        return None
    return item


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = _q(environ)
    body = b"app body"
    if path == "/status":
        start_response(json.loads(q["s"]), [("Content-Type", "text/plain"),
                                ("Content-Length", str(len(body)))])
        return [body]
    if path == "/header":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  (json.loads(q["n"]), json.loads(q["v"])),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/headers":
        headers = [tuple(_decode(x) for x in pair) for pair in json.loads(q["raw"])]
        start_response("200 OK", headers)
        return [body]
    if path == "/length":
        declared, actual = q["declared"], int(q["actual"])
        data = b"x" * actual
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", declared)])
        if q.get("mode") == "gen":
            def gen():
                half = actual // 2
                yield data[:half]
                yield data[half:]
            return gen()
        return [data]
    if path == "/pid":
        import os
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture(scope="module")
def srv(start_module_server, test_dir):
    app_dir = os.path.join(test_dir, "respcheck-app")
    os.makedirs(app_dir, exist_ok=True)
    with open(os.path.join(app_dir, "fgw_respcheck_app.py"), "w") as fh:
        fh.write(APP_SOURCE)
    s = start_module_server("fgw_respcheck_app:application", "--pythonpath", app_dir)
    s.first_pid = get_pid(s.port)
    return s


def get(srv, target):
    with RawConnection(srv.port, timeout=20) as conn:
        conn.send(b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.read_response()
        # whatever happened, the connection is still in step or closed: never garbage
        try:
            conn.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            after = conn.read_response()
        except (IncompleteResponse, OSError):
            after = None
        if after is not None:
            assert after.status == 200 and int(after.body) == srv.first_pid, after
    return resp


def q(value):
    """A query parameter carrying ``value`` as JSON, so any str (or list) gets through."""
    return urllib.parse.quote(json.dumps(value), safe="")


def assert_replaced_by_500(resp, marker=b"Injected"):
    assert resp.status == 500, resp
    assert marker not in resp.raw_head and marker not in resp.body, resp
    assert resp.body != b"app body"


BAD_STATUSES = {
    "crlf-injection": "200 OK\r\nX-Injected: 1",
    "lf-injection": "200 OK\nX-Injected: 1",
    "cr-injection": "200 OK\rX-Injected: 1",
    "nul": "200 O\x00K Injected",
    "del-in-reason": "200 OK\x7f Injected",
    "ctl-in-reason": "200 OK\x1b[1m Injected",
    "four-digits": "2000 Injected",
    "two-digits": "20 Injected",
    "letters": "abc Injected",
    "no-reason-no-space": "200",
    "empty": "",
    "tab-separator": "200\tInjected",
    "superscript-digit": "\xb200 Injected",
    "below-100": "099 Injected",
    "above-599": "600 Injected",
    "with-protocol": "HTTP/1.1 200 Injected",
    "not-latin-1": "200 Injected \u20ac",
}


@pytest.mark.parametrize("name", sorted(BAD_STATUSES))
def test_bad_status_is_500(srv, name):
    assert_replaced_by_500(get(srv, "/status?s=" + q(BAD_STATUSES[name])))


def test_good_status_passes(srv):
    resp = get(srv, "/status?s=" + q("299 Fine\tWith Tab and obs-text \xe9"))
    assert resp.status == 299 and resp.reason == "Fine\tWith Tab and obs-text \xe9"
    assert resp.body == b"app body"


BAD_HEADERS = {
    "name-crlf": ("X-A\r\nX-Injected", "1"),
    "name-lf": ("X-A\nX-Injected", "1"),
    "name-cr": ("X-A\rX-Injected", "1"),
    "name-nul": ("X-Injected\x00", "1"),
    "name-space": ("X Injected", "1"),
    "name-colon": ("X-Injected:", "1"),
    "name-empty": ("", "Injected"),
    "name-non-token": ("X-Injected\xe9", "1"),
    "name-paren": ("X-(Injected)", "1"),
    "name-not-latin-1": ("X-Injected-\u20ac", "1"),
    "value-crlf": ("X-A", "a\r\nX-Injected: 1"),
    "value-lf": ("X-A", "a\nX-Injected: 1"),
    "value-cr": ("X-A", "a\rX-Injected: 1"),
    "value-nul": ("X-A", "a\x00Injected"),
    "value-ctl": ("X-A", "a\x01Injected"),
    "value-esc": ("X-A", "\x1b[31mInjected"),
    "value-del": ("X-A", "a\x7fInjected"),
    "value-not-latin-1": ("X-A", "Injected \u20ac"),
    "hop-connection": ("Connection", "close, Injected"),
    "hop-keep-alive": ("Keep-Alive", "timeout=5, Injected"),
    "hop-transfer-encoding": ("Transfer-Encoding", "chunked, Injected"),
    "hop-upgrade": ("Upgrade", "Injected/1"),
    "hop-te": ("TE", "Injected"),
    "hop-trailer": ("Trailer", "X-Injected"),
    "hop-proxy-connection": ("Proxy-Connection", "Injected"),
    "content-length-not-digits": ("Content-Length", "8, Injected"),
    "content-length-negative": ("Content-Length", "-8"),
    "content-length-second-different": ("Content-Length", "4"),
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_bad_header_is_500(srv, name):
    n, v = BAD_HEADERS[name]
    assert_replaced_by_500(get(srv, "/header?n=%s&v=%s" % (q(n), q(v))))


@pytest.mark.parametrize("raw", [
    [["X-A", ["int", 1]]],
    [[["int", 1], "x"]],
    [["X-A", ["bytes", "x"]]],
    [["X-A", ["none"]]],
    [["X-A", "1", "extra"]],
    [["X-Injected"]],
], ids=["value-int", "name-int", "value-bytes", "value-none", "three-items", "one-item"])
def test_header_of_wrong_type_is_500(srv, raw):
    assert_replaced_by_500(get(srv, "/headers?raw=" + q(raw)))


def test_good_headers_pass(srv):
    raw = [["Content-Length", "8"], ["X-Tab", "a\tb"], ["X-Obs", "caf\xe9"], ["X-Empty", ""],
           ["!#$%&'*+-.^_`|~", "tchars"]]
    resp = get(srv, "/headers?raw=" + q(raw))
    assert resp.status == 200, resp
    assert resp.header("X-Tab") == "a\tb" and resp.header("X-Obs") == "caf\xe9"
    assert resp.header("!#$%&'*+-.^_`|~") == "tchars"


# --------------------------------------------------------------------------
# Content-Length against the body


def test_length_list_body_shorter_than_declared_is_500(srv):
    """A one-item list: the body is known before the head goes out, so a mismatch is a 500."""
    resp = get(srv, "/length?declared=10&actual=4&mode=list")
    assert resp.status == 500, resp


def test_length_list_body_longer_than_declared_is_500(srv):
    resp = get(srv, "/length?declared=3&actual=10&mode=list")
    assert resp.status == 500, resp


def test_length_generator_body_shorter_than_declared_closes(srv):
    """The head went out with the first chunk: the short body ends in a closed connection."""
    with RawConnection(srv.port, timeout=20) as conn:
        conn.send(b"GET /length?declared=100&actual=10&mode=gen HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(IncompleteResponse) as info:
            conn.read_response()
        assert info.value.response.status == 200
        assert info.value.partial == b"x" * 10
        assert conn.eof


def test_length_generator_body_longer_than_declared_never_on_the_wire(srv):
    """Bytes past the declared length never go out: the client gets exactly the declared
    length, then either the connection closes or the next response comes intact."""
    with RawConnection(srv.port, timeout=20) as conn:
        conn.send(b"GET /length?declared=4&actual=10&mode=gen HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"xxxx"
        try:
            conn.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            after = conn.read_response()
        except (IncompleteResponse, OSError):
            return
        assert after.status == 200 and int(after.body) == srv.first_pid, after


def test_length_matching_passes(srv):
    for mode in ("list", "gen"):
        resp = get(srv, "/length?declared=10&actual=10&mode=" + mode)
        assert resp.status == 200 and resp.body == b"x" * 10


def test_two_different_content_lengths_from_the_app_is_500(srv):
    raw = [["Content-Length", "3"], ["Content-Length", "8"]]
    assert_replaced_by_500(get(srv, "/headers?raw=" + q(raw)), marker=b"Injected")


def test_worker_kept_serving(srv):
    assert get_pid(srv.port) == srv.first_pid
    assert srv.worker_pids() == [srv.first_pid]


def test_replaced_response_is_logged(srv):
    mark = srv.log_mark()
    resp = get(srv, "/header?n=%s&v=%s" % (q("X-A"), q("a\r\nX-Logged: 1")))
    assert resp.status == 500
    srv.wait_for_log(r"(?i)error.*GET /header", start=mark)


def test_short_body_after_head_is_logged(srv):
    mark = srv.log_mark()
    with RawConnection(srv.port, timeout=20) as conn:
        conn.send(b"GET /length?declared=50&actual=6&mode=gen HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(IncompleteResponse):
            conn.read_response()
    srv.wait_for_log(r"(?i)less than its Content-Length", start=mark)
