"""Malformed-request corpus against the real server over raw sockets.

Each entry of REJECTED is raw request bytes and the status the server must answer
with (RFC 9112 / RFC 9110); then the connection must close, with nothing else on it,
and the application must not have seen the request.  Each entry of ACCEPTED is an edge
case that is valid and must be served, with its body delivered exactly, and the
connection must stay in step (a second request on it is answered).

How "the application never saw it" is checked: the request-target of most entries is
``/sleep?s=0&id=corpus-NAME``; wsgiapp's /sleep writes ``start corpus-NAME`` to
events.log in FASTGW_TEST_DIR when it runs, so that line must never appear.  Entries
about the target itself cannot carry the marker; for them the status (which the app
never answers with) is the evidence.  Chunked-body entries post to /body/read (no
marker): the loop gathers the body and finds the error before the app is called.

One server for the module: ``--limit-request-body 1000`` (for 413 entries) and
``--header-timeout 2`` (for the 408 entry).
"""
import os

import pytest

from fgwtest import RawConnection, get_pid, read_lines

BODY_LIMIT = 1000
HEADER_TIMEOUT = "2"


@pytest.fixture(scope="module")
def srv(start_module_server, test_dir):
    s = start_module_server("wsgiapp:application", "--limit-request-body", str(BODY_LIMIT),
                            "--header-timeout", HEADER_TIMEOUT)
    s.first_pid = get_pid(s.port)
    s.events = os.path.join(test_dir, "events.log")
    return s


class Reject:
    """Bytes the server must refuse: ``statuses`` are the responses expected in order
    (the last one is the refusal; each item an int or a tuple of acceptable ints)."""

    def __init__(self, name, data, *statuses, app_runs=False, rule=""):
        self.name = name
        self.data = data.replace(b"{T}", b"/sleep?s=0&id=corpus-" + name.encode())
        self.statuses = statuses or (400,)
        self.app_runs = app_runs
        self.rule = rule


class Accept:
    """Valid bytes the server must serve: the app (/body/read) must get ``body``."""

    def __init__(self, name, data, body=b""):
        self.name = name
        self.data = data.replace(b"{T}", b"/body/read")
        self.body = body


def req(*lines, body=b"", eol=b"\r\n"):
    """A request from its lines (request line first); ``eol`` ends every line."""
    return eol.join(lines) + eol + eol + body


GET = b"GET {T} HTTP/1.1"
POST = b"POST {T} HTTP/1.1"
HOST = b"Host: example.com"
TE = b"Transfer-Encoding: chunked"


def chunked_post(body, *extra):
    """A chunked POST to /body/read: the app reads the body, so errors in it surface."""
    return req(b"POST /body/read HTTP/1.1", HOST, TE, *extra, body=body)


def field(value, name=b"X-Test"):
    """A GET whose only unusual part is one header field line."""
    return req(GET, HOST, name + b": " + value if name is not None else value)


def cl(value, body=b"abc"):
    return req(POST, HOST, b"Content-Length: " + value, body=body)


def te(*values, version=b"HTTP/1.1", body=b"3\r\nabc\r\n0\r\n\r\n"):
    line = b"POST {T} " + version
    return req(line, HOST, *[b"Transfer-Encoding: " + v for v in values], body=body)


VALID = req(b"GET /uri?first HTTP/1.1", HOST)

REJECTED = [
    # -- Content-Length and Transfer-Encoding together (RFC 9112 6.1, 6.3) --
    Reject("cl-and-te", req(POST, HOST, b"Content-Length: 5", TE,
                            body=b"5\r\nhello\r\n0\r\n\r\n")),
    Reject("te-and-cl", req(POST, HOST, TE, b"Content-Length: 5",
                            body=b"5\r\nhello\r\n0\r\n\r\n")),
    Reject("te-and-cl-zero", req(POST, HOST, TE, b"Content-Length: 0",
                                 body=b"5\r\nhello\r\n0\r\n\r\n")),
    Reject("cl-and-te-gzip", req(POST, HOST, b"Content-Length: 3",
                                 b"Transfer-Encoding: gzip", body=b"abc")),
    Reject("cl-and-te-smuggled-request", req(
        POST, HOST, b"Content-Length: 4", TE,
        body=b"0\r\n\r\nGET /sleep?s=0&id=corpus-smuggled HTTP/1.1\r\nHost: x\r\n\r\n")),
    # -- Content-Length values (RFC 9110 8.6, RFC 9112 6.3 item 5) --
    Reject("cl-two-different", req(POST, HOST, b"Content-Length: 3", b"Content-Length: 4",
                                   body=b"abcd")),
    Reject("cl-list-different", cl(b"3, 4", b"abcd")),
    Reject("cl-plus-sign", cl(b"+3")),
    Reject("cl-minus-sign", cl(b"-3")),
    Reject("cl-space-inside", cl(b"1 0", b"0123456789")),
    Reject("cl-hex-0x", cl(b"0x3")),
    Reject("cl-hex-letter", cl(b"a", b"0123456789")),
    Reject("cl-decimal-point", cl(b"3.0")),
    Reject("cl-exponent", cl(b"3e0")),
    Reject("cl-empty", cl(b"")),
    Reject("cl-trailing-garbage", cl(b"3x")),
    Reject("cl-superscript-digit", cl(b"\xb3")),
    Reject("cl-overflow-2-63", cl(b"9223372036854775808")),
    Reject("cl-overflow-2-64", cl(b"18446744073709551616")),
    Reject("cl-overflow-30-digits", cl(b"1" + b"0" * 29)),
    Reject("cl-nul", cl(b"3\x00")),
    # -- Transfer-Encoding (RFC 9112 6.1, 6.3 item 4) --
    Reject("te-gzip-only", te(b"gzip", body=b"abc")),
    Reject("te-identity", te(b"identity", body=b"abc")),
    Reject("te-chunked-then-gzip", te(b"chunked, gzip")),
    Reject("te-chunked-chunked", te(b"chunked, chunked")),
    Reject("te-two-chunked-headers", te(b"chunked", b"chunked")),
    Reject("te-chunked-trailing-comma", te(b"chunked,")),
    Reject("te-chunked-with-parameter", te(b"chunked;q=1")),
    Reject("te-xchunked", te(b"xchunked")),
    Reject("te-chunked-prefix", te(b"chunkedx")),
    Reject("te-empty", te(b"")),
    Reject("te-vertical-tab", te(b"chunked\x0b")),
    Reject("te-on-http10", te(b"chunked", version=b"HTTP/1.0")),
    Reject("te-on-http10-with-cl", req(b"POST {T} HTTP/1.0", b"Content-Length: 3",
                                       b"Transfer-Encoding: chunked", body=b"abc")),
    # gzip is not supported: 501 (RFC 9112 6.1) or 400 both refuse it
    Reject("te-gzip-then-chunked", te(b"gzip, chunked"), (400, 501)),
    # two field lines are one list (RFC 9110 5.3): judged as "gzip, chunked" is
    Reject("te-gzip-header-then-chunked-header", te(b"gzip", b"chunked"), 501),
    # -- chunk-size lines (RFC 9112 7.1) --
    # BWS is only allowed before ";": a blank after the size and nothing else is invalid
    Reject("chunk-size-trailing-blank", chunked_post(b"5 \r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-last-trailing-blank", chunked_post(b"5\r\nhello\r\n0 \r\n\r\n"),
           app_runs=True),
    Reject("chunk-ext-trailing-tab", chunked_post(b"5;a\t\r\nhello\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-size-not-hex", chunked_post(b"zz\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-empty", chunked_post(b"\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-negative", chunked_post(b"-5\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-plus", chunked_post(b"+5\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-0x", chunked_post(b"0x5\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-overflow-17-digits",
           chunked_post(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-overflow-2-64",
           chunked_post(b"10000000000000000\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-space-inside", chunked_post(b"1 0\r\n0123456789\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-size-junk-after-space", chunked_post(b"5 junk\r\nhello\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-size-junk-after", chunked_post(b"5x\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-bare-cr", chunked_post(b"5\r\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-size-nul", chunked_post(b"5\x00\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-data-missing-crlf", chunked_post(b"5\r\nhelloXX0\r\n\r\n"), app_runs=True),
    Reject("chunk-data-longer-than-size", chunked_post(b"3\r\nhello\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-data-then-bare-cr", chunked_post(b"5\r\nhello\r0\r\n\r\n"), app_runs=True),
    Reject("chunk-ext-without-name", chunked_post(b"5;\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-ext-empty-value", chunked_post(b"5;a=\r\nhello\r\n0\r\n\r\n"), app_runs=True),
    Reject("chunk-ext-space-in-name", chunked_post(b"5;a b\r\nhello\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-ext-bad-char", chunked_post(b"5;a=b(c)\r\nhello\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-ext-unterminated-quote", chunked_post(b"5;a=\"b\r\nhello\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-ext-ctl-in-quote", chunked_post(b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n"),
           app_runs=True),
    Reject("chunk-last-bad-ext", chunked_post(b"5\r\nhello\r\n0;=x\r\n\r\n"), app_runs=True),
    # -- trailer section: field lines like the header section (RFC 9112 7.1.2) --
    Reject("trailer-without-colon", chunked_post(b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n"),
           app_runs=True),
    Reject("trailer-nul", chunked_post(b"5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n"), app_runs=True),
    Reject("trailer-bare-cr", chunked_post(b"5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n"),
           app_runs=True),
    Reject("trailer-ctl", chunked_post(b"5\r\nhello\r\n0\r\nX: a\x01b\r\n\r\n"), app_runs=True),
    Reject("trailer-obs-fold", chunked_post(b"5\r\nhello\r\n0\r\nX: a\r\n b: c\r\n\r\n"),
           app_runs=True),
    Reject("trailer-space-before-colon", chunked_post(b"5\r\nhello\r\n0\r\nX : a\r\n\r\n"),
           app_runs=True),
    Reject("trailer-empty-name", chunked_post(b"5\r\nhello\r\n0\r\n: a\r\n\r\n"), app_runs=True),
    # -- singleton fields twice (RFC 9110 5.3): joined with ", " they mean nothing --
    Reject("two-content-types", req(POST, HOST, b"Content-Type: text/plain",
                                    b"Content-Type: application/json", b"Content-Length: 3",
                                    body=b"abc")),
    Reject("two-authorizations", req(GET, HOST, b"Authorization: Basic YTpi",
                                     b"Authorization: Basic Yzpk")),
    Reject("two-ranges", req(GET, HOST, b"Range: bytes=0-1", b"range: bytes=2-3")),
    Reject("two-if-modified-since", req(GET, HOST,
                                        b"If-Modified-Since: Thu, 03 Dec 2026 10:00:00 GMT",
                                        b"If-Modified-Since: Thu, 03 Dec 2026 11:00:00 GMT")),
    Reject("two-referers", req(GET, HOST, b"Referer: /a", b"Referer: /b")),
    # -- the request target (RFC 9112 3.2) --
    Reject("fragment-in-target", req(b"GET {T}#posts-17408 HTTP/1.1", HOST)),
    Reject("fragment-in-path", req(b"GET /sleep#x HTTP/1.1", HOST)),
    # authority-form is valid syntax for CONNECT, which a gateway does not do: 501
    Reject("connect-authority-form", req(b"CONNECT example.com:443 HTTP/1.1",
                                         b"Host: example.com:443"), 501),
    # -- obs-fold (RFC 9112 5.2) --
    Reject("obs-fold-space", req(GET, HOST, b"X-A: a", b" b")),
    Reject("obs-fold-tab", req(GET, HOST, b"X-A: a", b"\tb")),
    Reject("obs-fold-first-field", req(GET, b" Host: example.com")),
    Reject("obs-fold-host", req(GET, b"Host: example.com", b" .evil")),
    # -- field names (RFC 9112 5.1, RFC 9110 5.1 token) --
    Reject("name-space-before-colon", req(GET, b"Host : example.com")),
    Reject("name-tab-before-colon", field(b"X-A\t: b", None)),
    Reject("name-space-inside", field(b"X A: b", None)),
    Reject("name-empty", field(b": b", None)),
    Reject("name-without-colon", field(b"NoColonHere", None)),
    Reject("name-paren", field(b"X(A): b", None)),
    Reject("name-slash", field(b"X/A: b", None)),
    Reject("name-quote", field(b"X\"A: b", None)),
    Reject("name-brace", field(b"X{A}: b", None)),
    Reject("name-at", field(b"X@A: b", None)),
    Reject("name-high-byte", field(b"X\xe9: b", None)),
    Reject("name-nul", field(b"X\x00A: b", None)),
    Reject("name-del", field(b"X\x7fA: b", None)),
    # -- field values: NUL, bare CR, CTLs (RFC 9110 5.5, RFC 9112 2.2) --
    Reject("value-nul", field(b"a\x00b")),
    Reject("value-bare-cr-inside", field(b"a\rb")),
    Reject("value-bare-cr-at-end", field(b"a\r")),
    Reject("value-bare-cr-as-line-end", req(GET, HOST, b"X-A: a\rX-B: b")),
    Reject("value-ctl-01", field(b"a\x01b")),
    Reject("value-ctl-1f", field(b"a\x1fb")),
    Reject("value-vertical-tab", field(b"a\x0bb")),
    Reject("value-form-feed", field(b"a\x0cb")),
    Reject("value-escape", field(b"\x1b[31mred")),
    Reject("value-del", field(b"a\x7fb")),
    # -- methods (RFC 9110 9.1: token) --
    Reject("method-paren", req(b"G(T {T} HTTP/1.1", HOST)),
    Reject("method-at", req(b"GE@T {T} HTTP/1.1", HOST)),
    Reject("method-nul", req(b"G\x00T {T} HTTP/1.1", HOST)),
    Reject("method-high-byte", req(b"G\xc9T {T} HTTP/1.1", HOST)),
    Reject("method-slash", req(b"GET/1 {T} HTTP/1.1", HOST)),
    Reject("method-empty", req(b" {T} HTTP/1.1", HOST)),
    Reject("method-tab-separator", req(b"GET\t{T} HTTP/1.1", HOST)),
    # -- request line and request-target (RFC 9112 3, 3.2) --
    Reject("line-two-spaces", req(b"GET  {T} HTTP/1.1", HOST)),
    Reject("line-trailing-space", req(b"GET {T} HTTP/1.1 ", HOST)),
    Reject("line-extra-token", req(b"GET {T} HTTP/1.1 extra", HOST)),
    Reject("line-bare-cr-at-end", req(b"GET {T} HTTP/1.1\r", HOST)),
    Reject("line-bare-cr-as-line-end", b"GET {T} HTTP/1.1\rHost: example.com\r\n\r\n"),
    Reject("line-method-only", req(b"GET", HOST)),
    Reject("line-garbage", b"GARBAGE\r\n\r\n"),
    Reject("line-tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40))
           + b"\r\n\r\n"),
    Reject("target-missing", req(b"GET HTTP/1.1", HOST)),
    Reject("target-empty", req(b"GET  HTTP/1.1", HOST)),
    Reject("target-no-slash", req(b"GET hello HTTP/1.1", HOST)),
    Reject("target-authority-form-on-get", req(b"GET example.com:80 HTTP/1.1", HOST)),
    Reject("target-unknown-scheme", req(b"GET ftp://example.com/x HTTP/1.1", HOST)),
    Reject("target-absolute-empty-host", req(b"GET http:///x HTTP/1.1", HOST),
           rule="RFC 9110 4.2.1: an http URI with an empty host MUST be rejected"),
    Reject("target-asterisk-on-get", req(b"GET * HTTP/1.1", HOST),
           rule="RFC 9112 3.2.4: asterisk-form is only for OPTIONS"),
    Reject("target-nul", req(b"GET /sleep?s=0&id=corpus-target-nul\x00 HTTP/1.1", HOST)),
    Reject("target-del", req(b"GET /sleep?s=0&id=corpus-target-del\x7f HTTP/1.1", HOST)),
    Reject("target-tab", req(b"GET /sleep?s=0&id=corpus-target-tab\tx HTTP/1.1", HOST)),
    Reject("target-bare-cr", req(b"GET /sleep?s=0&id=corpus-target-bare-cr\rx HTTP/1.1", HOST)),
    # -- bare CR anywhere (RFC 9112 2.2) --
    Reject("bare-cr-before-request-line", b"\r" + req(GET, HOST),
           rule="RFC 9112 2.2: a bare CR is invalid; only CRLF/LF empty lines may precede"),
    Reject("bare-cr-between-requests", VALID + b"\r" + req(GET, HOST), 200, 400),
    Reject("bare-cr-line-in-head", b"GET {T} HTTP/1.1\r\nHost: example.com\r\n\r\r\nX: y\r\n\r\n"),
    # the head never ends (no empty line): refused at the latest by the header timeout
    Reject("bare-cr-instead-of-empty-line", b"GET {T} HTTP/1.1\r\nHost: example.com\r\n\r\r\n",
           (400, 408)),
    # -- Host (RFC 9112 3.2) --
    Reject("host-missing", req(GET)),
    Reject("host-missing-with-other-fields", req(GET, b"Accept: */*")),
    Reject("host-two", req(GET, HOST, b"Host: other.example")),
    Reject("host-two-identical", req(GET, HOST, HOST)),
    Reject("host-two-different-case", req(GET, b"HOST: a.example", b"host: a.example")),
    Reject("host-two-on-http10", req(b"GET {T} HTTP/1.0", HOST, HOST)),
    Reject("host-invalid-space", req(GET, b"Host: a b")),
    Reject("host-invalid-slash", req(GET, b"Host: a/b")),
    Reject("host-invalid-userinfo", req(GET, b"Host: user@a.example")),
    Reject("host-invalid-port", req(GET, b"Host: a.example:80x")),
    # -- versions (RFC 9112 2.3, RFC 9110 15.6.6) --
    Reject("version-2-0", req(b"GET {T} HTTP/2.0", HOST), 505),
    Reject("version-2", req(b"GET {T} HTTP/2", HOST), 505),
    Reject("version-3", req(b"GET {T} HTTP/3", HOST), 505),
    Reject("version-3-0", req(b"GET {T} HTTP/3.0", HOST), 505),
    Reject("version-9-9", req(b"GET {T} HTTP/9.9", HOST), 505),
    Reject("version-0-9", req(b"GET {T} HTTP/0.9", HOST), (400, 505)),
    Reject("version-lowercase", req(b"GET {T} http/1.1", HOST)),
    Reject("version-no-minor", req(b"GET {T} HTTP/1", HOST)),
    Reject("version-no-dot", req(b"GET {T} HTTP/11", HOST)),
    Reject("version-two-digit-minor", req(b"GET {T} HTTP/1.10", HOST)),
    Reject("version-letters", req(b"GET {T} HTTP/1.x", HOST)),
    Reject("version-other-protocol", req(b"GET {T} FOO/1.1", HOST)),
    Reject("version-missing", req(b"GET {T}", HOST)),
    # -- Expect (RFC 9110 10.1.1) --
    Reject("expect-unknown", req(POST, HOST, b"Expect: something-else", b"Content-Length: 0"),
           417),
    # -- limits (this server: --limit-request-body 1000, other limits at their defaults) --
    Reject("limit-body-content-length", cl(b"1001", b"x" * 1001), 413),
    Reject("limit-body-content-length-huge", cl(b"999999999999999999", b""), 413),
    Reject("limit-body-chunked", chunked_post(b"3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n"), 413,
           app_runs=True),
    Reject("limit-body-chunked-many-chunks",
           chunked_post(b"".join(b"64\r\n" + b"y" * 100 + b"\r\n" for _ in range(11))
                        + b"0\r\n\r\n"), 413, app_runs=True),
    Reject("limit-request-line", req(b"GET /" + b"a" * 8200 + b" HTTP/1.1", HOST), 414),
    Reject("limit-field-size", field(b"v" * 8200), 431),
    Reject("limit-fields", req(GET, HOST, *[b"X-F%d: v" % i for i in range(120)]), 431),
    Reject("limit-head", req(GET, HOST, *[b"X-F%d: " % i + b"v" * 8000 for i in range(9)]),
           431),
    # -- a head that never completes (--header-timeout 2) --
    Reject("head-never-completes", b"GET {T} HTTP/1.1\r\nHost: example.com\r\n", 408),
]


def _body_of(resp):
    data = resp.json()
    return "".join(data["chunks"]).encode("latin-1")


ACCEPTED = [
    Accept("plain-get", req(GET, HOST)),
    Accept("bare-lf-everywhere", req(GET, HOST, b"Accept: */*", eol=b"\n")),
    Accept("bare-lf-mixed", b"GET {T} HTTP/1.1\nHost: example.com\r\nAccept: */*\n\r\n"),
    Accept("bare-lf-post", req(POST, HOST, b"Content-Length: 5", body=b"hello", eol=b"\n"),
           b"hello"),
    Accept("bare-lf-chunked", req(POST, HOST, TE, body=b"5\nhello\n0\n\n", eol=b"\n"),
           b"hello"),
    Accept("empty-lines-before-request", b"\r\n\r\n" + req(GET, HOST)),
    Accept("lf-lines-before-request", b"\n\n" + req(GET, HOST)),
    Accept("cl-identical-repeat", req(POST, HOST, b"Content-Length: 3", b"Content-Length: 3",
                                      body=b"abc"), b"abc"),
    Accept("cl-leading-zeros", cl(b"003"), b"abc"),
    Accept("cl-surrounding-whitespace", cl(b" \t3 \t"), b"abc"),
    Accept("cl-zero", cl(b"0", b""), b""),
    Accept("te-uppercase", te(b"CHUNKED"), b"abc"),
    Accept("te-mixed-case", te(b"Chunked"), b"abc"),
    Accept("chunk-hex-upper", chunked_post(b"A\r\n0123456789\r\n0\r\n\r\n"), b"0123456789"),
    Accept("chunk-hex-lower", chunked_post(b"a\r\n0123456789\r\n0\r\n\r\n"), b"0123456789"),
    Accept("chunk-size-leading-zeros", chunked_post(b"005\r\nhello\r\n0000\r\n\r\n"), b"hello"),
    Accept("chunk-many", chunked_post(b"1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n0\r\n\r\n"), b"abcdef"),
    Accept("chunk-ext-name-only", chunked_post(b"5;name\r\nhello\r\n0\r\n\r\n"), b"hello"),
    Accept("chunk-ext-token-value", chunked_post(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
           b"hello"),
    Accept("chunk-ext-quoted-value",
           chunked_post(b"5;name=\"a \\\" b;c\"\r\nhello\r\n0\r\n\r\n"), b"hello"),
    Accept("chunk-ext-several", chunked_post(b"5;a;b=c;d=\"e\"\r\nhello\r\n0;last\r\n\r\n"),
           b"hello"),
    Accept("chunk-ext-bws", chunked_post(b"5 ; a = b\r\nhello\r\n0\r\n\r\n"), b"hello"),
    Accept("chunk-trailers", chunked_post(b"5\r\nhello\r\n0\r\nChecksum: abc\r\nX-T: 1\r\n\r\n"),
           b"hello"),
    Accept("chunk-empty-body", chunked_post(b"0\r\n\r\n"), b""),
    Accept("http10-without-host", req(b"GET {T} HTTP/1.0", b"Connection: keep-alive")),
    Accept("http10-content-length", req(b"POST {T} HTTP/1.0", b"Content-Length: 2",
                                        b"Connection: keep-alive", body=b"ok"), b"ok"),
    Accept("http11-minor-2", req(b"GET {T} HTTP/1.2", HOST)),
    Accept("host-empty", req(GET, b"Host:")),
    Accept("host-ipv6", req(GET, b"Host: [::1]:8080")),
    Accept("host-port", req(GET, b"Host: example.com:8080")),
    Accept("absolute-form", req(b"GET http://example.com/body/read HTTP/1.1", HOST)),
    Accept("absolute-form-https-query", req(b"GET https://example.com/body/read?x=1 HTTP/1.1",
                                            HOST)),
    Accept("value-htab-inside", field(b"a\tb")),
    Accept("value-obs-text", field(b"caf\xe9 \xff")),
    Accept("value-empty", field(b"")),
    Accept("value-only-whitespace", field(b" \t ")),
    Accept("name-all-tchars", field(b"v", b"!#$%&'*+-.^_`|~09azAZ")),
    Accept("method-extension", req(b"PROPFIND {T} HTTP/1.1", HOST)),
    Accept("expect-100-continue", req(POST, HOST, b"Expect: 100-continue", b"Content-Length: 2",
                                      body=b"ok"), b"ok"),
    Accept("body-at-limit", cl(b"1000", b"z" * 1000), b"z" * 1000),
    Accept("field-many-small", req(GET, HOST, *[b"X-F%d: v" % i for i in range(90)])),
]


CASES = {c.name: c for c in REJECTED + ACCEPTED}


def test_corpus_size_and_names():
    assert len(REJECTED) + len(ACCEPTED) == len(CASES), "duplicate case names"
    assert len(REJECTED) >= 80
    assert len(ACCEPTED) >= 20


def _expect_status(resp, expected, case):
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert resp.status in allowed, "%s: expected %s, got %r\nsent: %r" % (
        case.name, allowed, resp, case.data[:300])


@pytest.mark.parametrize("name", [c.name for c in REJECTED])
def test_rejected(srv, name):
    case = CASES[name]
    mark = srv.log_mark()
    with RawConnection(srv.port, timeout=20) as conn:
        conn.send(case.data)
        for expected in case.statuses:
            resp = conn.read_response()
            _expect_status(resp, expected, case)
        assert resp.version == "HTTP/1.1"
        assert "close" in resp.connection_tokens(), resp
        assert resp.header("Content-Type", "").startswith("text/plain"), resp
        assert conn.wait_closed(10), "%s: connection left open after %d" % (name, resp.status)
    if not case.app_runs:
        assert "start corpus-" + name not in read_lines(srv.events), (
            "the application saw %s" % name)
    assert "start corpus-smuggled" not in read_lines(srv.events)
    # logged, without a traceback
    srv.wait_for_log(r"\b%d\b" % resp.status, start=mark)
    assert not any("Traceback" in line for line in srv.log_lines()[mark:]), srv.log_text()


@pytest.mark.parametrize("name", [c.name for c in ACCEPTED])
def test_accepted(srv, name):
    case = CASES[name]
    with RawConnection(srv.port, timeout=20) as conn:
        conn.send(case.data)
        resp = conn.read_response()
        assert resp.status == 200, "%s refused: %r\nsent: %r" % (name, resp, case.data[:300])
        assert _body_of(resp) == case.body
        # still in step: the next request on the connection is answered
        conn.send(b"GET /uri?after-" + name.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        after = conn.read_response()
        assert after.status == 200 and after.body == b"/uri?after-" + name.encode(), after


def test_marker_reaches_the_app(srv):
    """The events.log marker the rejected cases rely on does appear for a served request."""
    with RawConnection(srv.port) as conn:
        resp = conn.roundtrip(b"GET /sleep?s=0&id=corpus-control HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 200
    assert "start corpus-control" in read_lines(srv.events)


def test_value_whitespace_and_obs_text_reach_the_app(srv):
    data = req(b"GET /environ-raw HTTP/1.1", HOST, b"X-A:  \tcaf\xe9\tau lait \t",
               b"X-B:", b"X-C: a\tb")
    with RawConnection(srv.port) as conn:
        env = conn.roundtrip(data).json()["environ"]
    assert env["HTTP_X_A"] == "caf\xe9\tau lait"
    assert env["HTTP_X_B"] == ""
    assert env["HTTP_X_C"] == "a\tb"


def test_pipelined_rejects_stop_the_connection(srv):
    """Valid, valid, bad, valid: two answers, one refusal, then the connection closes and
    the request after the bad one never reaches the app."""
    data = (req(b"GET /uri?p1 HTTP/1.1", HOST) + req(b"GET /uri?p2 HTTP/1.1", HOST)
            + req(b"GET /uri?p3 HTTP/1.1", b"Host : bad")
            + req(b"GET /sleep?s=0&id=corpus-after-bad HTTP/1.1", HOST))
    with RawConnection(srv.port) as conn:
        conn.send(data)
        assert conn.read_response().body == b"/uri?p1"
        assert conn.read_response().body == b"/uri?p2"
        assert conn.read_response().status == 400
        assert conn.wait_closed(10)
    assert "start corpus-after-bad" not in read_lines(srv.events)


def test_worker_survived_the_corpus(srv):
    for case in REJECTED:
        if case.statuses[-1] == 408:
            continue
        with RawConnection(srv.port, timeout=20) as conn:
            conn.send(case.data)
            for _ in case.statuses:
                conn.read_response()
    assert get_pid(srv.port) == srv.first_pid
    assert srv.worker_pids() == [srv.first_pid]
    assert not any("Traceback" in line for line in srv.log_lines()), srv.log_text()
