# HTTP/1.1 (RFC 9112) on a Connection: request heads in, response heads out.
#
# Strategy: a head is parsed only once it is complete (memchr finds the empty
# line, resuming where the last scan stopped), in one pass of C over the bytes,
# and becomes a Request whose strings are made once. Framing decisions are taken
# from a few headers recognised on the way (Content-Length, Transfer-Encoding,
# Connection, Expect, Host); anything that cannot be framed safely is refused with
# HttpError before the application sees it. The body is an HttpBody reading
# straight out of the connection buffer, length-delimited or chunked. The protocol
# object is also the responder the handler writes its response to: send_head(),
# write(), send_file(), finish(); bytes are queued and go out in one sendmsg at
# the end of the batch, so head and body of a small response share a syscall.
# Line endings: CRLF, or a bare LF (RFC 9112 section 2.2 allows it, as nginx and
# h11 do); a CR anywhere else is rejected.
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memcpy, memcmp
from libc.stdio cimport snprintf

from fastgw._loop cimport BodyReader, Connection, Protocol, Request
from fastgw._bodybuf cimport SpooledBody

import logging

from fastgw.errors import REASONS, ClientDisconnected, HttpError

log = logging.getLogger("fastgw.error")

cdef extern from "httpdate.h":
    const char *fastgw_http_date()
    int FASTGW_HTTP_DATE_LEN

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_1BYTE_KIND
    bint PyUnicode_Check(object)
    bint PyTuple_Check(object)


cdef enum:
    MAX_EMPTY_LINES = 8
    BUFFERED_BODY = 65536
    DRAIN_LIMIT = 262144
    FLUSH_THRESHOLD = 65536

# How long a client that let a timeout pass may linger on after its 408, in all.
cdef double LINGER_AFTER_TIMEOUT = 2.0

cdef enum ChunkState:
    CHUNK_SIZE
    CHUNK_DATA
    CHUNK_DATA_END
    CHUNK_TRAILER

cdef class HttpProtocol


cdef unsigned char TCHAR[256]
cdef unsigned char HEXVAL[256]
cdef unsigned char HOSTCHAR[256]


cdef void init_tables():
    cdef int c
    cdef bytes extra = b"!#$%&'*+-.^_`|~"
    for c in range(256):
        TCHAR[c] = 0
        HEXVAL[c] = 255
    for c in range(ord('0'), ord('9') + 1):
        TCHAR[c] = 1
        HEXVAL[c] = c - ord('0')
    for c in range(ord('a'), ord('z') + 1):
        TCHAR[c] = 1
    for c in range(ord('A'), ord('Z') + 1):
        TCHAR[c] = 1
    for c in range(6):
        HEXVAL[ord('a') + c] = 10 + c
        HEXVAL[ord('A') + c] = 10 + c
    for c in extra:
        TCHAR[c] = 1
    for c in range(256):
        HOSTCHAR[c] = 0
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=":
        HOSTCHAR[c] = 1


init_tables()

cdef str HTTP11 = "HTTP/1.1"
cdef str HTTP10 = "HTTP/1.0"
cdef bytes CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes CRLF = b"\r\n"
cdef bytes LAST_CHUNK = b"0\r\n\r\n"
cdef dict METHODS = {m.encode(): m for m in
                     ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


cdef inline bint name_is(const char *p, Py_ssize_t n, const char *lower, Py_ssize_t ln):
    """Case-insensitive match of a token against a lowercase literal (tokens hold no CR)."""
    cdef Py_ssize_t i
    if n != ln:
        return False
    for i in range(n):
        if (<unsigned char>p[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


cdef inline bint is_ows(char c):
    return c == b' ' or c == b'\t'


cdef str decode_path(const char *p, Py_ssize_t n):
    """Percent-decode a path into a latin-1 str (PEP 3333); a stray '%' stays as it is."""
    cdef char *out
    cdef Py_ssize_t i = 0, j = 0
    cdef unsigned char h, l
    if memchr(p, b'%', n) == NULL:
        return PyUnicode_DecodeLatin1(p, n, NULL)
    out = <char *>malloc(n)
    if out == NULL:
        raise MemoryError()
    try:
        while i < n:
            if p[i] == b'%' and i + 2 < n:
                h = HEXVAL[<unsigned char>p[i + 1]]
                l = HEXVAL[<unsigned char>p[i + 2]]
                if h != 255 and l != 255:
                    out[j] = <char>(h * 16 + l)
                    j += 1
                    i += 3
                    continue
            out[j] = p[i]
            j += 1
            i += 1
        return PyUnicode_DecodeLatin1(out, j, NULL)
    finally:
        free(out)


cdef bint valid_host(const char *p, Py_ssize_t n):
    """RFC 9110 7.2 / RFC 3986: uri-host [":" port], where uri-host is an IP-literal in
    brackets or reg-name / IPv4 characters (unreserved, pct-encoded, sub-delims).
    An empty Host is allowed (RFC 9112 3.2)."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    if n == 0:
        return True
    if p[0] == b'[':
        while i < n and p[i] != b']':
            c = <unsigned char>p[i]
            if not (HEXVAL[c] != 255 or c == b':' or c == b'.' or c == b'[' or c == b'v'
                    or c == b'V' or TCHAR[c]):
                return False
            i += 1
        if i == n:
            return False
        i += 1
    else:
        while i < n and p[i] != b':':
            c = <unsigned char>p[i]
            if not (HOSTCHAR[c]):
                return False
            i += 1
        if i == 0:
            return False
    if i == n:
        return True
    if p[i] != b':':
        return False
    i += 1
    while i < n:
        if not c'0' <= p[i] <= c'9':
            return False
        i += 1
    return True


cdef const char *PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


cdef object proxy_v1_peer(str line):
    """'PROXY TCP4 src dst sport dport\r\n' -> (src, sport); None for PROXY UNKNOWN."""
    import ipaddress
    parts = line.rstrip("\r\n").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6") or not line.endswith("\r\n"):
        raise HttpError(400, f"malformed PROXY protocol v1 line: {line!r}")
    try:
        ipaddress.ip_address(parts[2])
        ipaddress.ip_address(parts[3])
        port = int(parts[4])
        if not (0 <= port <= 65535 and parts[4].isdigit() and parts[5].isdigit()):
            raise ValueError
    except ValueError:
        raise HttpError(400, f"malformed PROXY protocol v1 line: {line!r}") from None
    return (parts[2], port)


cdef object proxy_v2_peer(const unsigned char *p, Py_ssize_t size):
    """The v2 binary header: version 2, command LOCAL (keep the socket's peer) or PROXY."""
    import ipaddress
    if p[12] >> 4 != 2:
        raise HttpError(400, f"unsupported PROXY protocol version {p[12] >> 4}")
    if p[12] & 0x0f == 0:
        return None
    if p[12] & 0x0f != 1:
        raise HttpError(400, "unknown PROXY protocol v2 command")
    if p[13] >> 4 == 1 and size >= 16 + 12:
        return (str(ipaddress.IPv4Address(bytes(p[16:20]))), (p[24] << 8) | p[25])
    if p[13] >> 4 == 2 and size >= 16 + 36:
        return (str(ipaddress.IPv6Address(bytes(p[16:32]))), (p[48] << 8) | p[49])
    return None


cdef bint valid_field_line(const char *p, Py_ssize_t n):
    """name ":" OWS value OWS, with a token name and no control characters but HTAB."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    while i < n and TCHAR[<unsigned char>p[i]]:
        i += 1
    if i == 0 or i == n or p[i] != b':':
        return False
    for i in range(i + 1, n):
        c = <unsigned char>p[i]
        if (c < 0x20 and c != 0x09) or c == 0x7f:
            return False
    return True


cdef int singleton_bit(const char *name, Py_ssize_t n):
    """A bit for the request fields that hold one value (RFC 9110 5.3: not a list, so two
    lines cannot be joined into one), 0 for any other name; Host, Content-Length and
    Transfer-Encoding have their own checks."""
    if n == 5:
        return 1 if name_is(name, n, b"range", 5) else 0
    if n == 7:
        return 2 if name_is(name, n, b"referer", 7) else 0
    if n == 8:
        return 4 if name_is(name, n, b"if-range", 8) else 0
    if n == 12:
        if name_is(name, n, b"content-type", 12):
            return 8
        return 16 if name_is(name, n, b"max-forwards", 12) else 0
    if n == 13:
        return 32 if name_is(name, n, b"authorization", 13) else 0
    if n == 17:
        return 64 if name_is(name, n, b"if-modified-since", 17) else 0
    if n == 19:
        if name_is(name, n, b"if-unmodified-since", 19):
            return 128
        return 256 if name_is(name, n, b"proxy-authorization", 19) else 0
    return 0


cdef bint valid_chunk_extensions(const char *p, Py_ssize_t i, Py_ssize_t n):
    """RFC 9112 7.1.1: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )."""
    cdef Py_ssize_t start, j
    cdef unsigned char c
    while True:
        # BWS only before ";" (or "="): "0 " with nothing after the blank is not a size line
        start = i
        while i < n and is_ows(p[i]):
            i += 1
        if i == n:
            return i == start
        if p[i] != b';':
            return False
        i += 1
        while i < n and is_ows(p[i]):
            i += 1
        start = i
        while i < n and TCHAR[<unsigned char>p[i]]:
            i += 1
        if i == start:
            return False
        j = i
        while j < n and is_ows(p[j]):
            j += 1
        if j == n or p[j] != b'=':
            continue
        i = j + 1
        while i < n and is_ows(p[i]):
            i += 1
        if i < n and p[i] == b'"':
            i += 1
            while i < n and p[i] != b'"':
                if p[i] == b'\\':
                    i += 1
                    if i == n:
                        return False
                c = <unsigned char>p[i]
                if (c < 0x20 and c != 0x09) or c == 0x7f:
                    return False
                i += 1
            if i == n:
                return False
            i += 1
        else:
            start = i
            while i < n and TCHAR[<unsigned char>p[i]]:
                i += 1
            if i == start:
                return False


cdef Py_ssize_t str_len(object s, str what, object header=None) except -1:
    """Length of a str that must be latin-1 (one byte per character) on the wire."""
    if not PyUnicode_Check(s) or PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND:
        if header is not None:
            what = f"{what} {header!r}"
        if not PyUnicode_Check(s):
            raise TypeError(f"{what} must be str, not {type(s).__name__}: {s!r}")
        raise ValueError(f"{what} is not latin-1 encodable: {s!r}")
    return PyUnicode_GET_LENGTH(s)


cdef char *put(char *w, const char *src, Py_ssize_t n):
    memcpy(w, src, n)
    return w + n


cdef bytes STATUS_LINE_PREFIX = b"HTTP/1.1 "
cdef bytes CGI_STATUS_PREFIX = b"Status: "
cdef bytes CONNECTION_CLOSE = b"Connection: close\r\n"
cdef bytes CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"


cdef bytes build_head(bytes prefix, str status, list headers, Py_ssize_t length,
                      bint server_and_date, bint chunked, bytes connection):
    """Encode a response head: `prefix` + status line, the app's headers (checked: token
    names, no CR/LF/NUL in values), then Server/Date, Content-Length or chunked, Connection.
    HTTP uses the prefix b"HTTP/1.1 "; CGI-style protocols (FastCGI, SCGI, uwsgi) b"Status: ".
    """
    cdef Py_ssize_t size, status_len, nlen, vlen, k
    cdef bint own_date = not server_and_date, own_server = not server_and_date
    cdef const unsigned char *s
    cdef char lenbuf[32]
    cdef int lenlen = 0
    cdef bytes out
    cdef char *w
    cdef object item
    status_len = str_len(status, "status")
    if status_len < 4 or not (b'1' <= (<const char *>PyUnicode_DATA(status))[0] <= b'5'):
        raise ValueError(f"malformed status line: {status!r}")
    size = len(prefix) + status_len + 2
    for item in headers:
        if not PyTuple_Check(item) or len(item) != 2:
            raise TypeError(f"response header must be a (name, value) tuple: {item!r}")
        nlen = str_len(item[0], "header name")
        vlen = str_len(item[1], "value of header", item[0])
        s = <const unsigned char *>PyUnicode_DATA(item[0])
        if nlen == 4 and name_is(<const char *>s, 4, b"date", 4):
            own_date = True
        elif nlen == 6 and name_is(<const char *>s, 6, b"server", 6):
            own_server = True
        size += nlen + vlen + 4
    if not own_server:
        size += 16
    if not own_date:
        size += 8 + FASTGW_HTTP_DATE_LEN
    if length >= 0:
        lenlen = snprintf(lenbuf, sizeof(lenbuf), b"Content-Length: %zd\r\n", length)
        size += lenlen
    if chunked:
        size += 28
    if connection is not None:
        size += len(connection)
    size += 2
    out = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(out)
    w = put(w, prefix, len(prefix))
    s = <const unsigned char *>PyUnicode_DATA(status)
    for k in range(status_len):
        if (s[k] < 0x20 and s[k] != 0x09) or s[k] == 0x7f:
            raise ValueError(f"control character in status line {status!r}")
    w = put(w, <const char *>s, status_len)
    w = put(w, b"\r\n", 2)
    if not own_server:
        w = put(w, b"Server: fastgw\r\n", 16)
    if not own_date:
        w = put(w, b"Date: ", 6)
        w = put(w, fastgw_http_date(), FASTGW_HTTP_DATE_LEN)
        w = put(w, b"\r\n", 2)
    for item in headers:
        name = item[0]
        value = item[1]
        nlen = PyUnicode_GET_LENGTH(name)
        vlen = PyUnicode_GET_LENGTH(value)
        s = <const unsigned char *>PyUnicode_DATA(name)
        if nlen == 0:
            raise ValueError("empty response header name")
        for k in range(nlen):
            if not TCHAR[s[k]]:
                raise ValueError(f"invalid character in response header name {name!r}")
        w = put(w, <const char *>s, nlen)
        w = put(w, b": ", 2)
        s = <const unsigned char *>PyUnicode_DATA(value)
        for k in range(vlen):
            if (s[k] < 0x20 and s[k] != 0x09) or s[k] == 0x7f:
                raise ValueError(f"control character in the value of response header {name!r}")
        w = put(w, <const char *>s, vlen)
        w = put(w, b"\r\n", 2)
    if lenlen:
        w = put(w, lenbuf, lenlen)
    if chunked:
        w = put(w, b"Transfer-Encoding: chunked\r\n", 28)
    if connection is not None:
        w = put(w, connection, len(connection))
    put(w, b"\r\n", 2)
    return out


def encode_cgi_head(str status, list headers, Py_ssize_t length=-1):
    """The head of a CGI-style response (`Status: ...`), for Python callers."""
    return build_head(CGI_STATUS_PREFIX, status, headers, length, False, False, None)


# What HttpSettings.body_policy(path) answers (router.body_policies makes it).
cpdef enum BodyPolicy:
    BODY_GATHER = 0
    BODY_STREAM = 1
    BODY_UNWANTED = 2


cdef class HttpSettings:
    """Limits and timeouts of the HTTP protocol (the --limit-* and *-timeout flags)."""

    def __init__(self, request_line=8190, field_size=8190, fields=100, head=65536, body=0,
                 chunk_line=4096, trailer=8192, header_timeout=10.0, keepalive_timeout=5.0,
                 proxy_protocol=False, proxy_trusted=None, buffer_dir=None, body_policy=None):
        self.request_line = request_line
        self.field_size = field_size
        self.fields = fields
        self.head = head
        self.body = body
        self.chunk_line = chunk_line
        self.trailer = trailer
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.proxy_protocol = proxy_protocol
        self.proxy_trusted = proxy_trusted
        self.buffer_dir = buffer_dir
        self.body_policy = body_policy


cdef class HttpBody(BodyReader):
    """wsgi.input for HTTP: Content-Length or chunked, with 100-continue on first read."""

    cdef HttpProtocol proto
    cdef bint chunked
    cdef ChunkState cstate
    cdef Py_ssize_t trailer_bytes
    cdef Py_ssize_t received
    cdef Py_ssize_t limit
    cdef Py_ssize_t ready(self) except -2

    cdef Py_ssize_t available(self) except -1:
        """Bytes of body data ready in the buffer (waiting for some if needed); 0 at the end."""
        cdef Connection conn = self.conn
        cdef Py_ssize_t avail
        if not self.started:
            self.started = True
            # RFC 9110 10.1.1: no 100 (Continue) once some of the body is already here.
            if conn.rend == conn.rstart and self.proto is not None:
                self.proto.send_continue()
        while True:
            avail = self.ready()
            if avail >= 0:
                return avail
            conn.fill_blocking()

    cdef Py_ssize_t ready(self) except -2:
        """Body bytes at the buffer start, after any framing; 0 at the end of the body,
        -1 when more must arrive first (never waits: the loop gathers with this)."""
        cdef Connection conn = self.conn
        cdef Py_ssize_t avail
        while not self.done:
            if self.chunked and self.cstate != CHUNK_DATA:
                if not self.parse_framing():
                    return -1
                continue
            if self.remaining == 0:
                if self.chunked:
                    self.cstate = CHUNK_DATA_END
                    continue
                self.done = True
                break
            avail = conn.rend - conn.rstart
            if avail == 0:
                return -1
            return avail if avail < self.remaining else self.remaining
        return 0

    cdef bint parse_framing(self) except -1:
        """Consume chunk framing from the buffer; False if more bytes are needed."""
        cdef Connection conn = self.conn
        cdef const char *p = conn.rbuf + conn.rstart
        cdef Py_ssize_t avail = conn.rend - conn.rstart
        cdef const char *nl
        cdef Py_ssize_t line_len, i, size, digits
        if self.cstate == CHUNK_DATA_END:
            if avail == 0:
                return False
            if p[0] == b'\n':
                conn.rstart += 1
            elif p[0] == b'\r':
                if avail < 2:
                    return False
                if p[1] != b'\n':
                    self.fail(f"chunk data not followed by CRLF: {p[:2]!r}")
                conn.rstart += 2
            else:
                self.fail(f"chunk data longer than its size: {p[:min(avail, 16)]!r}")
            self.cstate = CHUNK_SIZE
            return True
        nl = <const char *>memchr(p, b'\n', avail)
        if nl == NULL:
            if self.cstate == CHUNK_SIZE and avail > self.proto.settings.chunk_line:
                self.fail("chunk size line too long")
            if self.cstate == CHUNK_TRAILER and self.trailer_bytes + avail > self.proto.settings.trailer:
                self.fail("trailer section too long")
            return False
        line_len = nl - p
        if line_len > 0 and p[line_len - 1] == b'\r':
            line_len -= 1
        if self.cstate == CHUNK_SIZE:
            size = 0
            digits = 0
            i = 0
            while i < line_len and HEXVAL[<unsigned char>p[i]] != 255:
                size = size * 16 + HEXVAL[<unsigned char>p[i]]
                digits += 1
                i += 1
            if digits == 0 or digits > 15:
                self.fail(f"invalid chunk size line: {p[:line_len]!r}")
            if not valid_chunk_extensions(p, i, line_len):
                self.fail(f"invalid chunk size line: {p[:line_len]!r}")
            if nl - p > self.proto.settings.chunk_line:
                self.fail("chunk size line too long")
            self.received += size
            if self.limit and self.received > self.limit:
                self.proto.keep_alive = False
                raise HttpError(413, f"request body larger than {self.limit} bytes")
            conn.rstart += (nl - p) + 1
            self.remaining = size
            self.cstate = CHUNK_TRAILER if size == 0 else CHUNK_DATA
            return True
        # CHUNK_TRAILER: field lines up to an empty line; PEP 3333 has no place for them.
        self.trailer_bytes += (nl - p) + 1
        if self.trailer_bytes > self.proto.settings.trailer:
            self.fail("trailer section too long")
        if line_len > 0 and not valid_field_line(p, line_len):
            self.fail(f"invalid trailer line: {p[:line_len]!r}")
        conn.rstart += (nl - p) + 1
        if line_len == 0:
            self.done = True
        return True

    cdef int fail(self, str message) except -1:
        if self.proto is not None:
            self.proto.keep_alive = False
        raise HttpError(400, message)

    cdef bint drain(self, Py_ssize_t limit) except -1:
        if not self.chunked and self.remaining > limit:
            return False
        return BodyReader.drain(self, limit)


cdef class EmptyBody(HttpBody):
    """wsgi.input of a request without a body."""

    def __cinit__(self):
        self.done = True

    cdef Py_ssize_t available(self) except -1:
        return 0


cdef HttpBody EMPTY_BODY = EmptyBody()


cdef class HttpProtocol(Protocol):
    """HTTP/1.1 server side of one connection, and the responder for its requests."""

    cdef object handler
    cdef HttpSettings settings
    cdef Py_ssize_t scan_pos
    cdef double head_started
    cdef bint waiting_body
    # the body the loop is gathering before the application is called (None: none)
    cdef SpooledBody gathering
    cdef int empty_lines
    cdef bint proxied
    cdef bint busy
    cdef Request req
    cdef HttpBody body
    cdef int version
    cdef bint keep_alive
    cdef bint client_closes
    cdef bint expect_continue
    cdef bint continue_sent
    cdef bint chunked
    cdef Py_ssize_t expected

    def __cinit__(self, handler, HttpSettings settings not None):
        self.handler = handler
        self.settings = settings

    cdef bint is_idle(self):
        return (not self.busy and not self.waiting_body and self.gathering is None
                and self.conn.rend == self.conn.rstart)

    cdef double deadline(self):
        if self.busy:
            return 0.0
        if self.waiting_body or self.gathering is not None:
            return self.conn.last_active + self.conn.loop.io_timeout
        if self.conn.rend == self.conn.rstart:
            return self.conn.last_active + self.settings.keepalive_timeout
        return self.head_started + self.settings.header_timeout

    cdef void timed_out(self) except *:
        # A client that let a timeout pass gets its 408 and a short lingering close, so
        # one that trickles bytes after it cannot keep the socket (LINGER_AFTER_TIMEOUT).
        if self.waiting_body or self.gathering is not None:
            self.gathering = None  # its temporary file goes with it
            self.reject(408, f"request body timed out: nothing received for "
                             f"{self.conn.loop.io_timeout:g} s", LINGER_AFTER_TIMEOUT)
        elif self.conn.rend == self.conn.rstart:
            self.conn.close()
        else:
            self.reject(408, f"request head not received within {self.settings.header_timeout:g} s",
                        LINGER_AFTER_TIMEOUT)

    cdef void write_drained(self) except *:
        self.data_received()

    cdef void connection_lost(self) except *:
        # a body being gathered goes now, its temporary file with it
        self.gathering = None
        Protocol.connection_lost(self)

    cdef void eof_received(self) except *:
        self.conn.close()

    cdef void data_received(self) except *:
        cdef Connection conn = self.conn
        cdef int policy
        if self.busy:
            return
        if self.settings.proxy_protocol and not self.proxied:
            try:
                if not self.read_proxy_header():
                    return
            except HttpError as e:
                log.warning("refused connection from %s: %s", conn.peer, e)
                conn.close()
                return
        while not conn.closed and not conn.paused and not conn.want_close:
            if self.gathering is not None:
                try:
                    if not self.gather():
                        break
                except HttpError as e:
                    self.gathering = None
                    self.reject(e.status, str(e))
                    return
            elif self.waiting_body:
                if conn.rend - conn.rstart < self.req.content_length:
                    break
                self.waiting_body = False
            else:
                if self.skip_empty_lines():
                    return
                if conn.rstart == conn.rend:
                    break
                if self.scan_pos == 0:
                    self.head_started = conn.last_active
                try:
                    if not self.parse_head():
                        break
                except HttpError as e:
                    self.reject(e.status, str(e))
                    return
                # The application is called once the body is whole, so a client that
                # sends it slowly holds a buffer, not the worker or a thread (nginx's
                # request buffering): a small one waits in the read buffer, a larger
                # one is gathered into a SpooledBody.
                if self.body is not EMPTY_BODY and not self.body_is_here():
                    policy = self.body_policy()
                    if policy == BODY_GATHER:
                        self.send_continue()
                        if 0 < self.req.content_length <= BUFFERED_BODY:
                            self.waiting_body = True
                            break
                        self.gathering = SpooledBody(self.settings.buffer_dir)
                        continue
                    elif (policy == BODY_STREAM and 0 < self.req.content_length <= BUFFERED_BODY
                            and not self.expect_continue and not conn.loop.threaded):
                        # streamed, but an inline app would block the worker on a small
                        # body that trickles in: that one is still waited for
                        self.waiting_body = True
                        break
            self.run_request()
            if conn.owned:
                return
            if not conn.closed and conn.out_bytes >= FLUSH_THRESHOLD:
                if not self.flush_or_close():
                    return
        if not conn.closed and conn.out_bytes:
            self.flush_or_close()

    cdef bint body_is_here(self):
        """The whole Content-Length body is in the read buffer (the zero-copy case)."""
        return (not self.body.chunked
                and self.conn.rend - self.conn.rstart >= self.req.content_length)

    cdef int body_policy(self) except -1:
        """What the mount of this request does with a body: BODY_GATHER it before the
        call (the default), BODY_STREAM it to the application as it arrives
        (request_buffering = false), or BODY_UNWANTED (static files, no mount): the
        handler answers without it, and no 100 (Continue) invites it."""
        body_policy = self.settings.body_policy
        return BODY_GATHER if body_policy is None else body_policy(self.req.path)

    cdef bint gather(self) except -1:
        """Move the body bytes that arrived into the SpooledBody; True once it is whole,
        and it is then the request's wsgi.input."""
        cdef Connection conn = self.conn
        cdef HttpBody body = self.body
        cdef SpooledBody gathering = self.gathering
        cdef Py_ssize_t n
        while True:
            n = body.ready()
            if n < 0:
                return False
            if n == 0:
                break
            gathering.append(conn.rbuf + conn.rstart, n)
            conn.rstart += n
            body.remaining -= n
        gathering.complete()
        self.req.body = gathering
        self.gathering = None
        return True

    cdef bint read_proxy_header(self) except -1:
        """The PROXY protocol (v1 text or v2 binary) header a load balancer sends first:
        it names the real client, which becomes the connection's peer. False: incomplete."""
        cdef Connection conn = self.conn
        cdef const unsigned char *p = <const unsigned char *>conn.rbuf + conn.rstart
        cdef Py_ssize_t n = conn.rend - conn.rstart, size
        trusted = self.settings.proxy_trusted
        if trusted is not None and not trusted.trusts(conn.peer[0] if conn.peer else None):
            raise HttpError(400, f"PROXY protocol header expected from {conn.peer}, which is "
                                 f"not in --proxy-allow-ips")
        if n >= 12 and memcmp(p, PROXY_V2_SIGNATURE, 12) == 0:
            if n < 16:
                return False
            size = 16 + ((p[14] << 8) | p[15])
            if n < size:
                return False
            peer = proxy_v2_peer(p, size)
        elif n >= 6 and memcmp(p, b"PROXY ", 6) == 0:
            nl = <const unsigned char *>memchr(p, b'\n', n if n < 108 else 108)
            if nl == NULL:
                if n >= 108:
                    raise HttpError(400, "PROXY protocol v1 line longer than 107 bytes")
                return False
            size = nl - p + 1
            peer = proxy_v1_peer((<const char *>p)[:size].decode("latin-1"))
        elif n >= 12 or (memcmp(p, b"PROXY ", n if n < 6 else 6) != 0
                         and memcmp(p, PROXY_V2_SIGNATURE, n) != 0):
            raise HttpError(400, "expected a PROXY protocol header (--proxy-protocol is on)")
        else:
            return False
        conn.rstart += size
        self.proxied = True
        if peer is not None:
            conn.peer = peer
        return True

    cdef bint skip_empty_lines(self) except -1:
        """RFC 9112 2.2: ignore empty lines (CRLF or LF) before a request line, a few only.

        True if the connection was refused for sending too many of them.
        """
        cdef Connection conn = self.conn
        cdef const char *p
        while conn.rstart < conn.rend:
            p = conn.rbuf + conn.rstart
            if p[0] == b'\n':
                conn.rstart += 1
            elif p[0] == b'\r' and conn.rend - conn.rstart >= 2 and p[1] == b'\n':
                conn.rstart += 2
            else:
                break
            self.scan_pos = 0
            self.empty_lines += 1
            if self.empty_lines > MAX_EMPTY_LINES:
                self.reject(400, "too many empty lines before the request line")
                return True
        return False

    cdef bint flush_or_close(self) except -1:
        """Flush; pause reading if the client is not taking the output. False if closed/paused."""
        try:
            if self.conn.flush(0):
                return True
            self.conn.paused = True
        except ClientDisconnected:
            self.conn.close()
        return False

    cdef void reject(self, int status, str message, double cap=0.0) except *:
        cdef str text = f"{status} {REASONS.get(status, 'Error')}: {message}\n"
        cdef bytes body = text.encode("latin-1", "backslashreplace")
        log.info("refused request from %s: %s %s", self.conn.peer, status, message)
        if self.busy and self._head_sent:
            self.conn.close()
            return
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nServer: fastgw\r\n"
                f"Date: {fastgw_http_date()[:FASTGW_HTTP_DATE_LEN].decode()}\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n")
        self.conn.queue(head.encode("latin-1"))
        self.conn.queue(body)
        self.conn.close_after_flush(True, cap)

    cdef int parse_head(self) except -1:
        """Parse one complete request head at the buffer start; 0 if it is not all here yet."""
        cdef Connection conn = self.conn
        cdef const char *buf = conn.rbuf + conn.rstart
        cdef Py_ssize_t n = conn.rend - conn.rstart
        cdef Py_ssize_t end = self.find_head_end(buf, n)
        cdef const char *nl
        cdef Py_ssize_t i, le, m_end, t_start, t_end, v_start, pos, line_end, name_end
        cdef Py_ssize_t val_start, val_end, j, p_start, q, nlen
        cdef Py_ssize_t content_length = -1, cl
        cdef int host_count = 0, nheaders = 0, major, minor
        cdef bint te_seen = False, chunked = False, conn_close = False, conn_keep = False
        cdef bint expect = False, te_plain = False
        cdef int singletons = 0, bit
        cdef str te_value = None
        cdef unsigned char c
        cdef list headers
        cdef Request req
        cdef str name, value
        cdef HttpSettings settings = self.settings
        if end == 0:
            nl = <const char *>memchr(buf, b'\n', n)
            if (nl == NULL and n > settings.request_line + 1) or (nl != NULL and nl - buf > settings.request_line + 1):
                raise HttpError(414, f"request line longer than {settings.request_line} bytes")
            if n > settings.head:
                raise HttpError(431, f"request head longer than {settings.head} bytes")
            return 0
        if end > settings.head:
            raise HttpError(431, f"request head longer than {settings.head} bytes")

        # Request line: method SP request-target SP HTTP-version
        le = <const char *>memchr(buf, b'\n', end) - buf
        line_end = le - 1 if le > 0 and buf[le - 1] == b'\r' else le
        if line_end > settings.request_line:
            raise HttpError(414, f"request line longer than {settings.request_line} bytes")
        i = 0
        while i < line_end and TCHAR[<unsigned char>buf[i]]:
            i += 1
        m_end = i
        if m_end == 0 or i >= line_end or buf[i] != b' ':
            raise HttpError(400, f"invalid request line: {buf[:min(line_end, 100)]!r}")
        i += 1
        t_start = i
        while i < line_end and <unsigned char>buf[i] > 0x20 and <unsigned char>buf[i] != 0x7f:
            i += 1
        t_end = i
        if t_end == t_start or i >= line_end or buf[i] != b' ':
            raise HttpError(400, f"invalid request line: {buf[:min(line_end, 100)]!r}")
        if memchr(buf + t_start, b'#', t_end - t_start) != NULL:
            # the fragment stays with the client (RFC 9112 3.2): never in QUERY_STRING
            raise HttpError(400, f"'#' in the request target: {buf[t_start:t_end][:100]!r}")
        if m_end == 7 and memcmp(buf, b"CONNECT", 7) == 0:
            raise HttpError(501, "CONNECT is not supported: fastgw is not a forward proxy")
        v_start = i + 1
        if (line_end - v_start >= 6 and memcmp(buf + v_start, b"HTTP/", 5) == 0
                and c'2' <= buf[v_start + 5] <= c'9'):
            raise HttpError(505, f"{buf[v_start:line_end][:20]!r} is not supported; use HTTP/1.1")
        if (line_end - v_start != 8 or memcmp(buf + v_start, b"HTTP/", 5) != 0
                or HEXVAL[<unsigned char>buf[v_start + 5]] > 9 or buf[v_start + 6] != b'.'
                or HEXVAL[<unsigned char>buf[v_start + 7]] > 9):
            raise HttpError(400, f"invalid HTTP version: {buf[v_start:line_end][:20]!r}")
        major = buf[v_start + 5] - c'0'
        minor = buf[v_start + 7] - c'0'
        if major != 1:
            raise HttpError(505, f"HTTP/{major}.{minor} is not supported; use HTTP/1.1")
        self.version = 10 if minor == 0 else 11

        # Header fields
        headers = []
        pos = le + 1
        while pos < end:
            le = <const char *>memchr(buf + pos, b'\n', end - pos) - buf
            line_end = le - 1 if le > pos and buf[le - 1] == b'\r' else le
            if line_end == pos:
                break
            if line_end - pos > settings.field_size:
                raise HttpError(431, f"header field longer than {settings.field_size} bytes: "
                                     f"{buf[pos:pos + 40]!r}...")
            if is_ows(buf[pos]):
                raise HttpError(400, f"obsolete line folding in header: {buf[pos:line_end][:100]!r}")
            i = pos
            while i < line_end and TCHAR[<unsigned char>buf[i]]:
                i += 1
            name_end = i
            if name_end == pos or i >= line_end or buf[i] != b':':
                raise HttpError(400, f"invalid header line: {buf[pos:line_end][:100]!r}")
            i += 1
            while i < line_end and is_ows(buf[i]):
                i += 1
            val_start = i
            val_end = line_end
            while val_end > val_start and is_ows(buf[val_end - 1]):
                val_end -= 1
            for j in range(val_start, val_end):
                c = <unsigned char>buf[j]
                if (c < 0x20 and c != 0x09) or c == 0x7f:
                    raise HttpError(400, f"invalid character {bytes([c])!r} in header "
                                         f"{buf[pos:name_end]!r}")
            nheaders += 1
            if nheaders > settings.fields:
                raise HttpError(431, f"more than {settings.fields} header fields")
            name = PyUnicode_DecodeLatin1(buf + pos, name_end - pos, NULL)
            value = PyUnicode_DecodeLatin1(buf + val_start, val_end - val_start, NULL)
            headers.append((name, value))
            nlen = name_end - pos
            if name_is(buf + pos, nlen, b"host", 4):
                host_count += 1
                if not valid_host(buf + val_start, val_end - val_start):
                    raise HttpError(400, f"invalid Host header: {buf[val_start:val_end][:100]!r}")
            elif name_is(buf + pos, nlen, b"content-length", 14):
                cl = 0
                if val_end == val_start or val_end - val_start > 18:
                    raise HttpError(400, f"invalid Content-Length: {buf[val_start:val_end][:40]!r}")
                for j in range(val_start, val_end):
                    if not c'0' <= buf[j] <= c'9':
                        raise HttpError(400, f"invalid Content-Length: {buf[val_start:val_end][:40]!r}")
                    cl = cl * 10 + (buf[j] - c'0')
                if content_length >= 0 and cl != content_length:
                    raise HttpError(400, "several different Content-Length values")
                content_length = cl
            elif name_is(buf + pos, nlen, b"transfer-encoding", 17):
                # several lines make one list (RFC 9110 5.3), judged whole below
                te_plain = not te_seen and name_is(buf + val_start, val_end - val_start,
                                                   b"chunked", 7)
                te_value = value if not te_seen else f"{te_value}, {value}"
                te_seen = True
                chunked = True
            elif name_is(buf + pos, nlen, b"connection", 10):
                for token in value.split(","):
                    token = token.strip().lower()
                    if token == "close":
                        conn_close = True
                    elif token == "keep-alive":
                        conn_keep = True
            elif name_is(buf + pos, nlen, b"expect", 6):
                if name_is(buf + val_start, val_end - val_start, b"100-continue", 12):
                    expect = True
                elif self.version == 11:
                    raise HttpError(417, f"unsupported expectation: {value!r}")
            else:
                bit = singleton_bit(buf + pos, nlen)
                if bit:
                    if singletons & bit:
                        raise HttpError(400, f"more than one {name} header field (it holds a "
                                             f"single value)")
                    singletons |= bit
            pos = le + 1
        if te_seen and not te_plain:
            self.check_transfer_coding(te_value)

        if te_seen and content_length >= 0:
            raise HttpError(400, "both Transfer-Encoding and Content-Length in one request")
        if te_seen and self.version == 10:
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if host_count > 1 or (self.version == 11 and host_count == 0):
            raise HttpError(400, "an HTTP/1.1 request needs exactly one Host header")
        if settings.body and content_length > settings.body:
            raise HttpError(413, f"request body of {content_length} bytes is larger than the "
                                 f"limit of {settings.body} bytes")

        req = Request.__new__(Request)
        req.method = METHODS.get(buf[:m_end]) or PyUnicode_DecodeLatin1(buf, m_end, NULL)
        req.target = PyUnicode_DecodeLatin1(buf + t_start, t_end - t_start, NULL)
        p_start = t_start
        if buf[t_start] != b'/':
            if t_end - t_start == 1 and buf[t_start] == b'*':
                if not name_is(buf, m_end, b"options", 7) or memcmp(buf, b"OPTIONS", 7) != 0:
                    raise HttpError(400, "the asterisk-form target '*' is only for OPTIONS")
                p_start = -1
            else:
                p_start = self.absolute_path_start(buf, t_start, t_end)
        if p_start < 0:
            req.path = "*"
            req.query = ""
        else:
            q = p_start
            while q < t_end and buf[q] != b'?':
                q += 1
            req.path = decode_path(buf + p_start, q - p_start) if q > p_start else "/"
            req.query = PyUnicode_DecodeLatin1(buf + q + 1, t_end - q - 1, NULL) if q < t_end else ""
        req.script_name = ""
        req.version = HTTP11 if self.version == 11 else HTTP10
        req.headers = headers
        req.peer = conn.peer
        req.sockname = conn.sockname
        req.scheme = conn.scheme
        req.content_length = content_length

        if chunked or content_length > 0:
            self.body = HttpBody.__new__(HttpBody)
            self.body.proto = self
            self.body.conn = conn
            self.body.chunked = chunked
            self.body.remaining = 0 if chunked else content_length
            self.body.cstate = CHUNK_SIZE
            self.body.limit = settings.body
        else:
            self.body = EMPTY_BODY
        req.body = self.body
        self.req = req
        self.client_closes = conn_close or (self.version == 10 and not conn_keep)
        self.keep_alive = not self.client_closes
        self.head_request = req.method == "HEAD"
        self.expect_continue = expect and self.version == 11
        self.continue_sent = False
        conn.rstart += end
        self.scan_pos = 0
        self.empty_lines = 0
        return 1

    cdef Py_ssize_t find_head_end(self, const char *buf, Py_ssize_t n):
        """Offset just past the empty line that ends the head, or 0 if it has not arrived."""
        cdef Py_ssize_t p = self.scan_pos, i
        cdef const char *q
        while p < n:
            q = <const char *>memchr(buf + p, b'\n', n - p)
            if q == NULL:
                self.scan_pos = n
                return 0
            i = q - buf
            if i + 1 >= n:
                self.scan_pos = i
                return 0
            if buf[i + 1] == b'\n':
                return i + 2
            if buf[i + 1] == b'\r':
                if i + 2 >= n:
                    self.scan_pos = i
                    return 0
                if buf[i + 2] == b'\n':
                    return i + 3
            p = i + 1
        self.scan_pos = p
        return 0

    cdef Py_ssize_t absolute_path_start(self, const char *buf, Py_ssize_t s, Py_ssize_t e) except -2:
        """Where the path starts in an absolute-form target (http://host/path); -1 never."""
        cdef Py_ssize_t i = s
        cdef Py_ssize_t n = e - s
        if n > 7 and name_is(buf + s, 7, b"http://", 7):
            i = s + 7
        elif n > 8 and name_is(buf + s, 8, b"https://", 8):
            i = s + 8
        else:
            raise HttpError(400, f"invalid request target: {buf[s:e][:100]!r}")
        s = i
        while i < e and buf[i] != b'/' and buf[i] != b'?':
            i += 1
        if i == s or not valid_host(buf + s, i - s):
            raise HttpError(400, f"invalid host in request target: {buf[s:i][:100]!r}")
        return i

    cdef int check_transfer_coding(self, str value) except -1:
        codings = [c.strip().lower() for c in value.split(",")]
        if codings.count("chunked") > 1 or codings[-1] != "chunked":
            raise HttpError(400, f"Transfer-Encoding must end in a single 'chunked': {value!r}")
        raise HttpError(501, f"transfer coding not supported: {value!r}")

    cdef void run_request(self) except *:
        """Run the parsed request: inline, or in an application thread with --threads."""
        cdef Connection conn = self.conn
        self.busy = True
        self._head_sent = False
        self.finished = False
        conn.loop.requests += 1
        conn.loop.beat()
        self.sent = 0
        self.status_code = 0
        if conn.hand_to_thread(self.call_handler):
            return
        self.call_handler()
        self.after_request()

    def call_handler(self):
        """Run the handler, or the next steps of the producer it parked."""
        cdef Connection conn = self.conn
        try:
            self.run_step(self.handler, self.req)
        except ClientDisconnected:
            conn.close()
        except Exception:
            log.exception("internal error while handling %r", self.req)
            conn.close()
        else:
            if self.parked is None and self.finished and self.keep_alive and not self.body.done:
                try:
                    if (self.expect_continue and not self.body.started) or not self.body.drain(DRAIN_LIMIT):
                        self.keep_alive = False
                except (ClientDisconnected, HttpError):
                    conn.close()

    cdef void resume(self) except *:
        self.after_request()
        if not self.conn.closed:
            self.data_received()

    cdef void after_request(self) except *:
        cdef Connection conn = self.conn
        if self.parked is not None and not conn.closed:
            self.await_drain()
            return
        self.check_settled()
        self.busy = False
        self._head_sent = False
        self.req = None
        self.body = EMPTY_BODY
        if conn.closed:
            return
        if not self.finished:
            conn.close()
            return
        if not self.keep_alive:
            # A client that asked to close sends nothing more: no need to linger.
            conn.close_after_flush(not self.client_closes)
        # A worker that is stopping but promised keep-alive in this head leaves the
        # connection idle: the loop closes it after a quiet second, and a request that
        # arrives first is answered (with Connection: close).

    cdef void send_continue(self) except *:
        """100 (Continue) to a client that waits for it before it sends the body, once the
        body is wanted; from the loop it goes out with the next flush."""
        if (self.expect_continue and not self.continue_sent and not self._head_sent
                and self.conn.rend == self.conn.rstart):
            self.continue_sent = True
            self.conn.queue(CONTINUE)
            if self.busy:
                self.conn.flush(0)

    # The responder interface the handlers call.

    def send_head(self, str status, list headers, Py_ssize_t length, bint length_in_headers):
        """Queue the response head. length < 0: unknown (chunked on 1.1, else close)."""
        cdef int code = self.start_response_head(status)
        cdef bint no_body = code < 200 or code == 204 or code == 304
        cdef bint add_length = False
        cdef HttpBody body = self.body
        cdef bytes connection
        self.chunked = False
        self.expected = -1
        if self.conn.loop.stopping:
            self.keep_alive = False
        if not body.done and (body.chunked or body.remaining > DRAIN_LIMIT
                              or (self.expect_continue and not body.started)):
            self.keep_alive = False
        if no_body:
            pass
        elif length >= 0:
            self.expected = length
            add_length = not length_in_headers
        elif self.head_request:
            pass
        elif self.version == 11:
            self.chunked = True
        else:
            self.keep_alive = False
        if not self.keep_alive:
            connection = CONNECTION_CLOSE
        elif self.version == 10:
            connection = CONNECTION_KEEP_ALIVE
        else:
            connection = None
        self.conn.queue(build_head(STATUS_LINE_PREFIX, status, headers,
                                   length if add_length else -1, True, self.chunked, connection))
        self._head_sent = True

    def write(self, bytes data not None):
        """Queue body bytes (framed as chunks when chunked) and send what the socket
        takes; never waits. False: the client lags, a producer should park()."""
        if self.queue_body(data):
            # Streamed chunks go out as they come (server-sent events, long polls).
            self.conn.flush(0)
        return self.can_take_more()

    cdef bint queue_body(self, bytes data) except -1:
        cdef Py_ssize_t n = len(data)
        cdef char sizeline[24]
        cdef int sl
        if not self._head_sent:
            raise RuntimeError("body sent before send_head()")
        if n == 0 or not self.body_allowed:
            return False
        if self.expected >= 0 and self.sent + n > self.expected:
            log.warning("application sent more than its Content-Length (%d); extra bytes dropped",
                        self.expected)
            n = self.expected - self.sent
            if n <= 0:
                return False
            data = data[:n]
        if self.chunked:
            sl = snprintf(sizeline, sizeof(sizeline), b"%zx\r\n", n)
            self.conn.queue(PyBytes_FromStringAndSize(sizeline, sl))
            self.conn.queue_body(data)
            self.conn.queue(CRLF)
        else:
            self.conn.queue_body(data)
        self.sent += n
        return True

    def send_file(self, int fd, long long offset, Py_ssize_t count):
        """Send `count` bytes of an open file with sendfile(2); the length must be in the head."""
        if not self._head_sent or self.chunked:
            raise RuntimeError("send_file() needs a head with a known length")
        if not self.body_allowed or count <= 0:
            return
        if self.expected >= 0 and self.sent + count > self.expected:
            count = self.expected - self.sent
        self.conn.send_file(fd, offset, count)
        self.sent += count

    def finish(self, bytes last=None):
        """The response is complete (`last`: its final bytes, sent with the batch's flush)."""
        if last:
            self.queue_body(last)
        if self.chunked and self.body_allowed:
            self.conn.queue(LAST_CHUNK)
        elif self.body_allowed and self.expected >= 0 and self.sent < self.expected:
            log.warning("application sent %d bytes, less than its Content-Length (%d); closing",
                        self.sent, self.expected)
            self.keep_alive = False
        self.finished = True

    def abort(self):
        """Give up on the response after its head went out: the client sees a cut body."""
        self.finished = True
        self.conn.close()


cdef class ReplayConnection(Connection):
    """A Connection with no socket, fed pre-split pieces: the parser's test and fuzz entry."""

    cdef list pieces

    cdef Py_ssize_t recv_some(self) except -2:
        cdef bytes piece
        cdef Py_ssize_t n
        cdef char *grown
        if not self.pieces:
            return 0
        piece = self.pieces.pop(0)
        n = len(piece)
        if self.rstart == self.rend:
            self.rstart = self.rend = 0
        if self.rend + n > self.rcap:
            grown = <char *>realloc(self.rbuf, self.rend + n)
            if grown == NULL:
                raise MemoryError()
            self.rbuf = grown
            self.rcap = self.rend + n
        memcpy(self.rbuf + self.rend, PyBytes_AS_STRING(piece), n)
        self.rend += n
        return n


def parse_pieces(pieces, HttpSettings settings=None):
    """Parse requests (and read their bodies) from byte strings arriving one after another.

    Returns a list of (method, target, path, query, version, headers, body) and a flag
    telling whether the stream ended in the middle of a request; HttpError for bad input.
    """
    cdef ReplayConnection conn = ReplayConnection.__new__(ReplayConnection)
    cdef HttpProtocol proto = HttpProtocol(None, settings or HttpSettings())
    cdef list requests = []
    conn.fd = -1
    conn.pieces = [bytes(p) for p in pieces if p]
    conn.out = []
    conn.rbuf = <char *>malloc(1)
    conn.rcap = 1
    proto.conn = conn
    while True:
        proto.empty_lines = 0
        while conn.rstart < conn.rend and (conn.rbuf[conn.rstart] == b'\n' or (
                conn.rbuf[conn.rstart] == b'\r' and conn.rend - conn.rstart >= 2
                and conn.rbuf[conn.rstart + 1] == b'\n')):
            conn.rstart += 1 if conn.rbuf[conn.rstart] == b'\n' else 2
            proto.scan_pos = 0
        if conn.rstart == conn.rend or (conn.rend - conn.rstart == 1
                                        and conn.rbuf[conn.rstart] == b'\r'):
            if conn.recv_some() == 0:
                return requests, conn.rstart != conn.rend
            continue
        if not proto.parse_head():
            if conn.recv_some() == 0:
                return requests, True
            continue
        req = proto.req
        proto.expect_continue = False
        try:
            body = proto.body.read()
        except ClientDisconnected:
            return requests, True
        requests.append((req.method, req.target, req.path, req.query, req.version,
                         req.headers, body))
