# The HTTP/1.1 request head parser (RFC 9112 sections 2-3, 5-6): a pure function of
# the bytes received so far and the limits, as h11's and httptools' parsers are; it
# knows no socket, so the protocol, the tests and the fuzzer call the same code.
#
# Strategy: a head is parsed only once it is complete (memchr finds the empty line,
# resuming where the last search stopped, kept in HeadInfo.scan_pos), in one pass of
# C over the bytes, and becomes a Request whose strings are made once. Framing
# decisions are taken from a few fields recognised on the way (Content-Length,
# Transfer-Encoding, Connection, Expect, Host) and returned in HeadInfo; anything
# that cannot be framed safely is refused with HttpError before an application sees
# it. Line endings: CRLF, or a bare LF (RFC 9112 2.2 allows it, as nginx and h11 do);
# a CR anywhere else is refused.
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.stdlib cimport malloc, free
from libc.string cimport memchr, memcmp

from fastgw._httpchars cimport HEXVAL, HOSTCHAR, TCHAR, is_field_char, is_ows, name_is
from fastgw._limits cimport ProtocolLimits
from fastgw._request cimport Request

from fastgw.errors import HttpError

cdef enum:
    MAX_EMPTY_LINES = 8

cdef str HTTP11 = "HTTP/1.1"
cdef str HTTP10 = "HTTP/1.0"
cdef dict METHODS = {m.encode(): m for m in
                     ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


cdef Py_ssize_t skip_empty_lines(const char *buf, Py_ssize_t n, int *seen) except -1:
    """RFC 9112 2.2: empty lines (CRLF or LF) before a request line are ignored, a few
    only: the bytes of those at the start of buf[:n]; *seen counts them across calls.
    HttpError past MAX_EMPTY_LINES."""
    cdef Py_ssize_t i = 0
    while i < n:
        if buf[i] == b'\n':
            i += 1
        elif buf[i] == b'\r' and i + 1 < n and buf[i + 1] == b'\n':
            i += 2
        else:
            break
        seen[0] += 1
        if seen[0] > MAX_EMPTY_LINES:
            raise HttpError(400, "too many empty lines before the request line")
    return i


cdef Request parse_request_head(const char *buf, Py_ssize_t n, ProtocolLimits limits,
                                HeadInfo *info):
    """The request head at the start of buf[:n], as a Request (its peer, socket, scheme
    and body are the protocol's to set) and `info`; None if it is not all here yet
    (info.scan_pos then says where to look on). HttpError for a head to refuse."""
    cdef Py_ssize_t end = find_head_end(buf, n, &info.scan_pos)
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
    if end == 0:
        nl = <const char *>memchr(buf, b'\n', n)
        if (nl == NULL and n > limits.request_line + 1) or (nl != NULL and nl - buf > limits.request_line + 1):
            raise HttpError(414, f"request line longer than {limits.request_line} bytes")
        if n > limits.head:
            raise HttpError(431, f"request head longer than {limits.head} bytes")
        return None
    if end > limits.head:
        raise HttpError(431, f"request head longer than {limits.head} bytes")

    # Request line: method SP request-target SP HTTP-version
    le = <const char *>memchr(buf, b'\n', end) - buf
    line_end = le - 1 if le > 0 and buf[le - 1] == b'\r' else le
    if line_end > limits.request_line:
        raise HttpError(414, f"request line longer than {limits.request_line} bytes")
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
    info.version = 10 if minor == 0 else 11

    # Header fields
    headers = []
    pos = le + 1
    while pos < end:
        le = <const char *>memchr(buf + pos, b'\n', end - pos) - buf
        line_end = le - 1 if le > pos and buf[le - 1] == b'\r' else le
        if line_end == pos:
            break
        if line_end - pos > limits.field_size:
            raise HttpError(431, f"header field longer than {limits.field_size} bytes: "
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
            if not is_field_char(c):
                raise HttpError(400, f"invalid character {bytes([c])!r} in header "
                                     f"{buf[pos:name_end]!r}")
        nheaders += 1
        if nheaders > limits.fields:
            raise HttpError(431, f"more than {limits.fields} header fields")
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
            elif info.version == 11:
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
        check_transfer_coding(te_value)

    if te_seen and content_length >= 0:
        raise HttpError(400, "both Transfer-Encoding and Content-Length in one request")
    if te_seen and info.version == 10:
        raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
    if host_count > 1 or (info.version == 11 and host_count == 0):
        raise HttpError(400, "an HTTP/1.1 request needs exactly one Host header")
    if limits.body and content_length > limits.body:
        raise HttpError(413, f"request body of {content_length} bytes is larger than the "
                             f"limit of {limits.body} bytes")

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
            p_start = absolute_path_start(buf, t_start, t_end)
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
    req.version = HTTP11 if info.version == 11 else HTTP10
    req.headers = headers
    req.content_length = content_length
    info.length = end
    info.chunked = chunked
    info.client_closes = conn_close or (info.version == 10 and not conn_keep)
    info.expect_continue = expect and info.version == 11
    info.scan_pos = 0
    return req


cdef Py_ssize_t find_head_end(const char *buf, Py_ssize_t n, Py_ssize_t *scan_pos) noexcept:
    """Offset just past the empty line that ends the head, or 0 if it has not arrived
    (then *scan_pos is where the next search, with more bytes, starts)."""
    cdef Py_ssize_t p = scan_pos[0], i
    cdef const char *q
    while p < n:
        q = <const char *>memchr(buf + p, b'\n', n - p)
        if q == NULL:
            scan_pos[0] = n
            return 0
        i = q - buf
        if i + 1 >= n:
            scan_pos[0] = i
            return 0
        if buf[i + 1] == b'\n':
            return i + 2
        if buf[i + 1] == b'\r':
            if i + 2 >= n:
                scan_pos[0] = i
                return 0
            if buf[i + 2] == b'\n':
                return i + 3
        p = i + 1
    scan_pos[0] = p
    return 0


cdef Py_ssize_t absolute_path_start(const char *buf, Py_ssize_t s, Py_ssize_t e) except -2:
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


cdef int check_transfer_coding(str value) except -1:
    codings = [c.strip().lower() for c in value.split(",")]
    if codings.count("chunked") > 1 or codings[-1] != "chunked":
        raise HttpError(400, f"Transfer-Encoding must end in a single 'chunked': {value!r}")
    raise HttpError(501, f"transfer coding not supported: {value!r}")


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
