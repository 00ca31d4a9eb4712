# HTTP/1.1 request bodies (RFC 9112 sections 6-7): length-delimited or chunked.
#
# Strategy: the chunked framing is a pure function over the bytes at hand and a small
# state (Framing): it consumes one framing element (a size line, the CRLF after the
# data, a trailer line) or says more bytes must arrive, so the body reader, the
# loop's body gathering and the parser's test entry (parse_pieces) all run the same
# code. The body reader, wsgi.input, takes data bytes straight out of the
# connection's buffer; the protocol hears through two hooks of its base when the
# application first wants the body (an interim 100 Continue) and when the framing is
# broken (the connection cannot be reused).
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.string cimport memchr

from fastgw._httpchars cimport HEXVAL, TCHAR, is_field_char, is_ows
from fastgw._httphead cimport HeadInfo, parse_request_head, skip_empty_lines
from fastgw._lifecycle cimport RequestProtocol
from fastgw._limits cimport ProtocolLimits
from fastgw._loop cimport Connection
from fastgw._request cimport BodyReader, Request

from fastgw.errors import HttpError


cdef Py_ssize_t chunk_framing(Framing *f, const char *p, Py_ssize_t avail,
                              Py_ssize_t *remaining, bint *done) except -2:
    """Consume the framing element at p[:avail] (f.state says which): its size, or -1
    when more bytes must arrive. A size line sets *remaining to the chunk's size (and
    the state to CHUNK_DATA, or CHUNK_TRAILER after the last chunk); the empty line
    that ends the trailer section sets *done. HttpError for broken framing (400) or a
    body past f.limit (413)."""
    cdef const char *nl
    cdef Py_ssize_t line_len, i, size, digits
    if f.state == CHUNK_DATA_END:
        if avail == 0:
            return -1
        if p[0] == b'\n':
            f.state = CHUNK_SIZE
            return 1
        if p[0] == b'\r':
            if avail < 2:
                return -1
            if p[1] != b'\n':
                raise HttpError(400, f"chunk data not followed by CRLF: {p[:2]!r}")
            f.state = CHUNK_SIZE
            return 2
        raise HttpError(400, f"chunk data longer than its size: {p[:min(avail, 16)]!r}")
    nl = <const char *>memchr(p, b'\n', avail)
    if nl == NULL:
        if f.state == CHUNK_SIZE and avail > f.chunk_line:
            raise HttpError(400, "chunk size line too long")
        if f.state == CHUNK_TRAILER and f.trailer_bytes + avail > f.trailer:
            raise HttpError(400, "trailer section too long")
        return -1
    line_len = nl - p
    if line_len > 0 and p[line_len - 1] == b'\r':
        line_len -= 1
    if f.state == CHUNK_SIZE:
        size = 0
        digits = 0
        i = 0
        while i < line_len and HEXVAL[<unsigned char>p[i]] != 255:
            size = size * 16 + HEXVAL[<unsigned char>p[i]]
            digits += 1
            i += 1
        if digits == 0 or digits > 15:
            raise HttpError(400, f"invalid chunk size line: {p[:line_len]!r}")
        if not valid_chunk_extensions(p, i, line_len):
            raise HttpError(400, f"invalid chunk size line: {p[:line_len]!r}")
        if nl - p > f.chunk_line:
            raise HttpError(400, "chunk size line too long")
        f.received += size
        if f.limit and f.received > f.limit:
            raise HttpError(413, f"request body larger than {f.limit} bytes")
        remaining[0] = size
        f.state = CHUNK_TRAILER if size == 0 else CHUNK_DATA
        return (nl - p) + 1
    # CHUNK_TRAILER: field lines up to an empty line; PEP 3333 has no place for them.
    f.trailer_bytes += (nl - p) + 1
    if f.trailer_bytes > f.trailer:
        raise HttpError(400, "trailer section too long")
    if line_len > 0 and not valid_field_line(p, line_len):
        raise HttpError(400, f"invalid trailer line: {p[:line_len]!r}")
    if line_len == 0:
        done[0] = True
    return (nl - p) + 1


cdef Framing new_framing(bint chunked, ProtocolLimits limits) noexcept:
    cdef Framing f
    f.state = CHUNK_SIZE if chunked else CHUNK_DATA
    f.trailer_bytes = 0
    f.received = 0
    f.limit = limits.body
    f.chunk_line = limits.chunk_line
    f.trailer = limits.trailer
    return f


cdef class HttpBody(BodyReader):
    """wsgi.input for HTTP: Content-Length or chunked, with 100-continue on first read."""

    cdef Py_ssize_t available(self) except -1:
        """Bytes of body data ready in the buffer (waiting for some if needed); 0 at the end."""
        cdef Connection conn = self.conn
        cdef Py_ssize_t avail
        if not self.started:
            self.started = True
            # RFC 9110 10.1.1: no 100 (Continue) once some of the body is already here.
            if conn.rend == conn.rstart and conn.protocol is not None:
                (<RequestProtocol>conn.protocol).body_wanted()
        while True:
            avail = self.ready()
            if avail >= 0:
                return avail
            conn.fill_blocking()

    cdef Py_ssize_t ready(self) except -2:
        """Body bytes at the buffer start, after any framing; 0 at the end of the body,
        -1 when more must arrive first (never waits: the loop gathers with this)."""
        cdef Connection conn = self.conn
        cdef Py_ssize_t avail, used
        while not self.done:
            if self.chunked and self.framing.state != CHUNK_DATA:
                try:
                    used = chunk_framing(&self.framing, conn.rbuf + conn.rstart,
                                         conn.rend - conn.rstart, &self.remaining, &self.done)
                except HttpError:
                    if conn.protocol is not None:
                        (<RequestProtocol>conn.protocol).body_broken()
                    raise
                if used < 0:
                    return -1
                conn.rstart += used
                continue
            if self.remaining == 0:
                if self.chunked:
                    self.framing.state = CHUNK_DATA_END
                    continue
                self.done = True
                break
            avail = conn.rend - conn.rstart
            if avail == 0:
                return -1
            return avail if avail < self.remaining else self.remaining
        return 0

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


cdef HttpBody EMPTY = EmptyBody()


cdef HttpBody new_body(Connection conn, Request req, bint chunked, ProtocolLimits limits):
    """The wsgi.input of a request whose head was just parsed (the shared empty one when
    it has no body)."""
    cdef HttpBody body
    if not chunked and req.content_length <= 0:
        return EMPTY
    body = HttpBody.__new__(HttpBody)
    body.conn = conn
    body.chunked = chunked
    body.remaining = 0 if chunked else req.content_length
    body.framing = new_framing(chunked, limits)
    return body


cdef HttpBody empty_body():
    return EMPTY


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
        if not is_field_char(c):
            return False
    return True


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
                if not is_field_char(c):
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


def parse_pieces(pieces, ProtocolLimits limits not None):
    """Parse requests, and their bodies, from byte strings arriving one after another,
    with the protocol's own pure functions (the parser's test and fuzzing entry).

    Returns a list of (method, target, path, query, version, headers, body) and a flag
    telling whether the stream ended in the middle of a request; HttpError for bad input.
    """
    cdef bytearray buf = bytearray()
    cdef list waiting = [bytes(p) for p in pieces if p]
    cdef list requests = []
    cdef list parts
    cdef HeadInfo info
    cdef Framing framing
    cdef Request req
    cdef Py_ssize_t remaining, used, take
    cdef bint done
    cdef int seen
    waiting.reverse()
    while True:
        info.scan_pos = 0
        seen = 0
        while True:
            used = skip_empty_lines(PyByteArray_AS_STRING(buf), len(buf), &seen)
            del buf[:used]
            req = None
            if len(buf) and not (len(buf) == 1 and buf[0] == 13):
                req = parse_request_head(PyByteArray_AS_STRING(buf), len(buf), limits, &info)
                if req is not None:
                    break
            if not waiting:
                return requests, len(buf) != 0
            buf += waiting.pop()
        del buf[:info.length]
        framing = new_framing(info.chunked, limits)
        remaining = 0 if info.chunked else max(req.content_length, 0)
        done = not info.chunked and remaining == 0
        parts = []
        while not done:
            if info.chunked and framing.state != CHUNK_DATA:
                used = chunk_framing(&framing, PyByteArray_AS_STRING(buf), len(buf),
                                     &remaining, &done)
            elif remaining == 0:
                if info.chunked:
                    framing.state = CHUNK_DATA_END
                    continue
                break
            else:
                used = min(remaining, len(buf)) if len(buf) else -1
                if used > 0:
                    parts.append(bytes(buf[:used]))
                    remaining -= used
            if used < 0:
                if not waiting:
                    return requests, True
                buf += waiting.pop()
            else:
                del buf[:used]
        requests.append((req.method, req.target, req.path, req.query, req.version,
                         req.headers, b"".join(parts)))
