"""Property: how a byte stream is cut into pieces never changes what the parser makes of it.

Hypothesis generates streams of several valid requests (methods, targets, header fields,
bodies framed by Content-Length or chunked with extensions and trailers, CRLF or bare LF
line ends, sometimes empty lines before a request line).  ``fastgw._httpbody.parse_pieces``
must return exactly the requests the stream was built from, whether it gets the stream whole, one byte at a time, cut at each single
boundary, or cut at random boundaries.  The real server must likewise answer a stream
sent in random pieces (TCP_NODELAY, so pieces mostly arrive apart) exactly as the
requests demand.
"""
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw._httpbody import parse_pieces as parse_with
from fastgw._limits import ProtocolLimits
from fastgw.config import Config
from fgwtest import RawConnection

# The limits come from a Config, which needs something to serve; the app is never loaded.
ANY_APP = "app:application"
DEFAULTS = ProtocolLimits(Config(app=ANY_APP))


def parse_pieces(pieces, limits=DEFAULTS):
    return parse_with(pieces, limits)

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED_FIELDS = {"host", "content-length", "transfer-encoding", "connection", "expect",
                   "te", "trailer", "upgrade",
                   # fields that hold one value: two lines of one are refused (RFC 9110 5.3)
                   "range", "referer", "if-range", "content-type", "max-forwards",
                   "authorization", "if-modified-since", "if-unmodified-since",
                   "proxy-authorization"}
PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
QUERY_CHARS = PATH_CHARS + "?"
# visible ASCII and obs-text; inner SP/HTAB are added separately
VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F)) + "\xe9\xff\x80"

tokens = st.text(TCHARS, min_size=1, max_size=12)
field_names = tokens.filter(lambda n: n.lower() not in RESERVED_FIELDS)
field_values = st.lists(st.text(VALUE_CHARS, min_size=1, max_size=12), max_size=4).map(
    lambda words: " ".join(words)) | st.builds(
    lambda a, b: a + "\t" + b, st.text(VALUE_CHARS, min_size=1, max_size=5),
    st.text(VALUE_CHARS, min_size=1, max_size=5))
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) | tokens
ext_values = tokens | st.text(VALUE_CHARS.replace('"', "").replace("\\", "") + " \t",
                              max_size=8).map(lambda v: '"' + v + '"')
extensions = st.lists(st.tuples(tokens, st.none() | ext_values), max_size=3).map(
    lambda exts: "".join(";" + n + ("" if v is None else "=" + v) for n, v in exts))


@st.composite
def targets(draw):
    path = "/" + draw(st.text(PATH_CHARS, max_size=20))
    if draw(st.booleans()):
        query = draw(st.text(QUERY_CHARS, max_size=15))
        return path + "?" + query, path, query
    return path, path, ""


@st.composite
def requests(draw):
    """(wire bytes, the tuple parse_pieces must return for it)."""
    method = draw(methods)
    target, path, query = draw(targets())
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    headers = [(draw(field_names), draw(field_values)) for _ in range(draw(st.integers(0, 5)))]
    if version == "HTTP/1.1" or draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))), ("Host", draw(st.sampled_from(
            ["example.com", "127.0.0.1:8080", "[::1]", "a-b.example"]))))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked"] if version == "HTTP/1.1" else ["length"]))
    payload = b""
    if framing == "length" and (body or draw(st.booleans())):
        headers.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        headers.append((draw(st.sampled_from(["Transfer-Encoding", "transfer-encoding"])),
                        draw(st.sampled_from(["chunked", "Chunked", "CHUNKED"]))))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
        pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)]) if b > a]
        for piece in pieces:
            size = "%x" % len(piece)
            if draw(st.booleans()):
                size = size.upper()
            payload += (size + draw(extensions)).encode() + eol + piece + eol
        payload += b"0" + draw(extensions).encode() + eol
        for name, value in draw(st.lists(st.tuples(field_names, field_values), max_size=3)):
            payload += (name + ": " + value).encode("latin-1") + eol
        payload += eol
    else:
        body = b""
    head = ("%s %s %s" % (method, target, version)).encode("latin-1") + eol
    for name, value in headers:
        head += (name + ":" + draw(st.sampled_from(["", " ", "\t", "  "])) + value
                 + draw(st.sampled_from(["", "", " ", "\t "]))).encode("latin-1") + eol
    wire = head + eol + payload
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request line
    wire = draw(st.sampled_from([b"", b"", b"", b"", eol, b"\r\n\r\n"])) + wire
    return wire, (method, target, path, query, version, headers, body)


streams = st.lists(requests(), min_size=1, max_size=4)


def _joined(stream):
    return b"".join(wire for wire, _ in stream), [expected for _, expected in stream]


def _random_cuts(data, draw_cuts):
    cuts = sorted(set(draw_cuts))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(streams)
def test_whole_stream_gives_the_requests(stream):
    data, expected = _joined(stream)
    assert parse_pieces([data]) == (expected, False)


@PROPERTY_SETTINGS
@given(streams)
def test_one_byte_pieces_give_the_same_requests(stream):
    data, expected = _joined(stream)
    assert parse_pieces([data[i:i + 1] for i in range(len(data))]) == (expected, False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_every_single_cut_gives_the_same_requests(stream):
    data, expected = _joined(stream)
    for k in range(len(data) + 1):
        assert parse_pieces([data[:k], data[k:]]) == (expected, False), "cut at %d" % k


@PROPERTY_SETTINGS
@given(st.data())
def test_random_cuts_give_the_same_requests(data):
    wire, expected = _joined(data.draw(streams))
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    assert parse_pieces(_random_cuts(wire, cuts)) == (expected, False)


@PROPERTY_SETTINGS
@given(st.data())
def test_truncated_stream_is_incomplete_not_wrong(data):
    """A stream cut short gives the requests wholly inside it and says whether it ends
    in the middle of one."""
    stream = data.draw(streams)
    wire, expected = _joined(stream)
    ends = [0]  # where each request ends
    idle = {0}  # offsets at which no request is under way (empty lines are skipped)
    for w, _ in stream:
        empty_lines = len(w) - len(w.lstrip(b"\r\n"))
        idle.add(ends[-1])
        idle.update(ends[-1] + j + 1 for j in range(empty_lines) if w[j:j + 1] == b"\n")
        ends.append(ends[-1] + len(w))
    idle.add(ends[-1])
    end = data.draw(st.integers(0, len(wire)))
    whole = sum(1 for b in ends[1:] if b <= end)
    assert parse_pieces([wire[:end]]) == (expected[:whole], end not in idle)


def test_property_can_fail():
    """The comparison is not vacuous: a changed byte changes the parsed requests."""
    data = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\n\r\n"
    expected = [("POST", "/a", "/a", "", "HTTP/1.1",
                 [("Host", "x"), ("Transfer-Encoding", "chunked")], b"abc")]
    assert parse_pieces([data]) == (expected, False)
    assert parse_pieces([data.replace(b"abc", b"abd")]) != (expected, False)


def test_small_limits_do_not_depend_on_cuts():
    """With tight limits the same stream is refused with the same status however it is cut."""
    limits = ProtocolLimits(Config(
        app=ANY_APP, limit_request_line=40, limit_request_field_size=30, limit_request_fields=3,
        limit_request_head=120, limit_request_body=20, limit_chunk_line=10,
        limit_trailer_size=20))
    samples = [
        b"GET /" + b"a" * 60 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 40 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 21\r\n\r\n" + b"b" * 21,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n15\r\n" + b"c" * 21
        + b"\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;aaaaaaaaaaaa\r\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: " + b"t" * 30
        + b"\r\n\r\n",
    ]
    from fastgw.errors import HttpError
    for sample in samples:
        with pytest.raises(HttpError) as whole:
            parse_pieces([sample], limits)
        for k in range(1, len(sample)):
            with pytest.raises(HttpError) as split:
                parse_pieces([sample[:k], sample[k:]], limits)
            assert split.value.status == whole.value.status, (sample, k)


# --------------------------------------------------------------------------
# the real server


@pytest.fixture(scope="module")
def srv(start_module_server):
    return start_module_server("wsgiapp:application")


@st.composite
def server_requests(draw):
    """(wire bytes, expected status and body) against wsgiapp's echo routes."""
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    host = b"Host: example.com" + eol
    empty = draw(st.sampled_from([b"", b"", b"", eol]))
    extra = b"".join((n + ": " + v).encode("latin-1") + eol
                     for n, v in draw(st.lists(st.tuples(field_names, field_values), max_size=3)))
    if draw(st.booleans()):
        target = ("/uri?" + draw(st.text(PATH_CHARS, max_size=20))).encode()
        return (empty + b"GET " + target + b" HTTP/1.1" + eol + host + extra + eol), target
    body = draw(st.binary(max_size=2000))
    method = draw(st.sampled_from([b"POST", b"PUT", b"PATCH"]))
    head = empty + method + b" /body/read HTTP/1.1" + eol + host + extra
    if draw(st.booleans()):
        return head + b"Content-Length: %d" % len(body) + eol + eol + body, body
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    chunks = b""
    for a, b in zip([0] + cuts, cuts + [len(body)]):
        if b > a:
            chunks += b"%x" % (b - a) + draw(extensions).encode() + eol + body[a:b] + eol
    trailer = b"X-Sum: 1" + eol if draw(st.booleans()) else b""
    return head + b"Transfer-Encoding: chunked" + eol + eol + chunks + b"0" + eol + trailer + eol, body


def _check_response(resp, expected):
    assert resp.status == 200, resp
    if resp.header("Content-Type") == "application/json":
        data = json.loads(resp.body)
        assert "".join(data["chunks"]).encode("latin-1") == expected
        assert data["second_read"] == "" and data["after_eof"] == ""
    else:
        assert resp.body == expected


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_server_answers_a_stream_sent_in_random_pieces(srv, data):
    stream = data.draw(st.lists(server_requests(), min_size=1, max_size=5))
    wire = b"".join(w for w, _ in stream)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=20))
    with RawConnection(srv.port, timeout=20) as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in _random_cuts(wire, cuts):
            if piece:
                conn.send(piece)
        for _, expected in stream:
            _check_response(conn.read_response(), expected)
        # nothing more, and the connection is still usable
        resp = conn.roundtrip(b"GET /uri?end HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.body == b"/uri?end"


def test_server_answers_a_stream_sent_one_byte_at_a_time(srv):
    wire = (b"POST /body/read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;a=\"b c\"\r\nabc\r\n2\nde\n0\r\nX-T: 1\r\n\r\n"
            b"GET /uri?q=1 HTTP/1.1\nHost: x\n\n"
            b"PUT /body/read HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwxyz")
    with RawConnection(srv.port, timeout=20) as conn:
        for i in range(len(wire)):
            conn.send(wire[i:i + 1])
        _check_response(conn.read_response(), b"abcde")
        _check_response(conn.read_response(), b"/uri?q=1")
        _check_response(conn.read_response(), b"wxyz")
