# SCGI and uwsgi, server side: one request per connection, CGI variables in a header
# block, then the body, then a CGI-style response (`Status: 200 OK`) and close.
#
# SCGI: a netstring `<len>:NAME\0VALUE\0...,` whose first variable is CONTENT_LENGTH
# and which carries SCGI=1. uwsgi (modifier1 0, what nginx `uwsgi_pass` sends): a
# 4-byte header (modifier1, little-endian u16 size, modifier2), then (u16 name
# length, name, u16 value length, value) pairs. Both are parsed only once the whole
# block is in the buffer; the block size is bounded by --limit-request-head.
# parse_head() is that parser on bytes, without a socket (tests and fuzz/fuzz_cgivars.py).
# A variable that must be a number and is not (cgiparams) gets a 400 answer and a close.
from libc.string cimport memchr

from fastgw._limits cimport ProtocolLimits
from fastgw._responsehead cimport build_head
from fastgw._lifecycle cimport RequestProtocol
from fastgw._loop cimport Connection
from fastgw._request cimport BodyReader

import logging

from fastgw.cgiparams import request_from_params
from fastgw.errors import HttpError

log = logging.getLogger("fastgw.error")

cdef bytes CGI_PREFIX = b"Status: "
# nginx's uwsgi module expects an HTTP status line, as uWSGI sends.
cdef bytes UWSGI_PREFIX = b"HTTP/1.1 "


class CgiVarsError(Exception):
    """A malformed SCGI netstring or uwsgi packet; the connection is closed."""


cdef dict parse_scgi_block(bytes block):
    cdef list parts = block.split(b"\0")
    cdef dict params = {}
    if len(parts) % 2 != 1 or parts[-1] != b"":
        raise CgiVarsError("SCGI header block is not NAME\\0VALUE\\0 pairs")
    if parts[0] != b"CONTENT_LENGTH":
        raise CgiVarsError("SCGI header block must start with CONTENT_LENGTH")
    for i in range(0, len(parts) - 1, 2):
        params[parts[i].decode("latin-1")] = parts[i + 1].decode("latin-1")
    if params.get("SCGI") != "1":
        raise CgiVarsError("SCGI header block lacks SCGI=1")
    return params


cdef tuple scgi_head(const char *p, Py_ssize_t avail, Py_ssize_t limit):
    """(params, bytes the netstring takes) once it is all in p[:avail]; None before."""
    cdef const char *colon = <const char *>memchr(p, b':', avail if avail < 12 else 12)
    cdef Py_ssize_t size = 0, i
    if colon == NULL:
        if avail >= 12:
            raise CgiVarsError("SCGI netstring length missing or too long")
        return None
    if colon == p:
        raise CgiVarsError("SCGI netstring without a length")
    for i in range(colon - p):
        if not c'0' <= p[i] <= c'9':
            raise CgiVarsError(f"SCGI netstring length is not a number: {p[:colon - p]!r}")
        size = size * 10 + (p[i] - c'0')
    if size > limit:
        raise CgiVarsError(f"SCGI header block of {size} bytes is larger than "
                           f"{limit} (--limit-request-head)")
    i = (colon - p) + 1
    if avail < i + size + 1:
        return None
    if p[i + size] != b',':
        raise CgiVarsError("SCGI netstring does not end with ',' where its length says")
    return parse_scgi_block(p[i:i + size]), i + size + 1


cdef dict parse_uwsgi_vars(const unsigned char *p, Py_ssize_t n):
    cdef Py_ssize_t i = 0, klen, vlen
    cdef dict params = {}
    while i < n:
        if i + 2 > n:
            raise CgiVarsError("truncated uwsgi variable")
        klen = p[i] | (p[i + 1] << 8)
        i += 2
        if i + klen + 2 > n:
            raise CgiVarsError("uwsgi variable name longer than the packet")
        key = (<const char *>p)[i:i + klen].decode("latin-1")
        i += klen
        vlen = p[i] | (p[i + 1] << 8)
        i += 2
        if i + vlen > n:
            raise CgiVarsError("uwsgi variable value longer than the packet")
        params[key] = (<const char *>p)[i:i + vlen].decode("latin-1")
        i += vlen
    return params


cdef tuple uwsgi_head(const unsigned char *p, Py_ssize_t avail, Py_ssize_t limit):
    """(params, bytes the packet takes) once it is all in p[:avail]; None before."""
    cdef Py_ssize_t size
    if avail < 4:
        return None
    if p[0] != 0:
        raise CgiVarsError(f"uwsgi modifier1 {p[0]} is not supported (only 0, WSGI)")
    size = p[1] | (p[2] << 8)
    if size > limit:
        raise CgiVarsError(f"uwsgi packet of {size} bytes is larger than "
                           f"{limit} (--limit-request-head)")
    if avail < 4 + size:
        return None
    return parse_uwsgi_vars(p + 4, size), 4 + size


def parse_head(bytes data not None, bint uwsgi=False, Py_ssize_t limit=65536):
    """The server's own parser without a socket (tests, fuzz/fuzz_cgivars.py): the SCGI
    netstring or uwsgi packet at the start of `data` -> (params, bytes it takes), None
    while incomplete, CgiVarsError when malformed. The numbers among the params are
    checked later, by cgiparams.request_from_params (HttpError 400)."""
    if uwsgi:
        return uwsgi_head(<const unsigned char *>data, len(data), limit)
    return scgi_head(data, len(data), limit)


cdef class CgiVarsProtocol(RequestProtocol):
    """SCGI (uwsgi=False) or uwsgi (uwsgi=True) on one connection; also the responder."""

    cdef ProtocolLimits settings
    cdef bint uwsgi
    cdef bint started

    def __cinit__(self, handler, ProtocolLimits settings not None, bint uwsgi=False):
        self.handler = handler
        self.settings = settings
        self.uwsgi = uwsgi

    cdef bint is_idle(self):
        return not self.started and self.conn.rend == self.conn.rstart

    cdef double deadline(self):
        if self.busy:
            return 0.0
        if self.is_idle():
            return self.conn.last_active + self.settings.keepalive_timeout
        return self.conn.last_active + self.settings.header_timeout

    cdef void data_received(self) except *:
        cdef Connection conn = self.conn
        cdef tuple head
        if self.started or self.busy:
            return
        try:
            if self.uwsgi:
                head = uwsgi_head(<const unsigned char *>conn.rbuf + conn.rstart,
                                  conn.rend - conn.rstart, self.settings.head)
            else:
                head = scgi_head(conn.rbuf + conn.rstart, conn.rend - conn.rstart,
                                 self.settings.head)
        except CgiVarsError as e:
            log.warning("%s protocol error from %s: %s; closing the connection",
                        "uwsgi" if self.uwsgi else "SCGI", self.conn.peer or "the web server", e)
            self.conn.close()
            return
        if head is None:
            return
        conn.rstart += head[1]
        self.started = True
        self.run_request(head[0])

    cdef void run_request(self, dict params) except *:
        cdef Connection conn = self.conn
        cdef BodyReader body = BodyReader.__new__(BodyReader)
        body.conn = conn
        try:
            self.req = request_from_params(params, body)
        except HttpError as e:
            # the web server sent a variable no request can have: answer, never a traceback
            log.warning("%s request from %s refused: %s", "uwsgi" if self.uwsgi else "SCGI",
                        conn.peer or "the web server", e)
            self.refuse(e.status_line, f"{e}\n")
            return
        body.remaining = max(self.req.content_length, 0)
        if self.settings.body and body.remaining > self.settings.body:
            self.req = None
            self.refuse("413 Content Too Large", f"request body of {body.remaining} bytes is "
                                                 f"larger than {self.settings.body}\n")
            return
        self.begin(self.req, body)

    cdef void request_ended(self) except *:
        if not self.conn.closed:
            # The whole request read (the body is bounded by CONTENT_LENGTH): the web
            # server sends nothing more, so close at once, without lingering.
            self.conn.close_after_flush(self.body.remaining != 0
                                        or self.conn.rend != self.conn.rstart)

    cdef void refuse(self, str status, str text) except *:
        """Answer a request the application never sees, then close."""
        body = text.encode("utf-8", "backslashreplace")
        self.conn.queue(build_head(UWSGI_PREFIX if self.uwsgi else CGI_PREFIX, status,
                                   [("Content-Type", "text/plain; charset=utf-8")],
                                   len(body), False, False, None))
        self.conn.queue(body)
        self.conn.close_after_flush()

    # The responder interface the handlers call.

    def send_head(self, str status, list headers, Py_ssize_t length, bint length_in_headers):
        self.start_response_head(status)
        self.conn.queue(build_head(UWSGI_PREFIX if self.uwsgi else CGI_PREFIX, status, headers,
                                   length if length >= 0 and not length_in_headers else -1,
                                   False, False, None))
        self._head_sent = True

    def write(self, bytes data not None):
        """Queue body bytes and send what the socket takes; never waits. False: the web
        server lags, a producer should park()."""
        if not self._head_sent:
            raise RuntimeError("body sent before send_head()")
        if not data or not self.body_allowed:
            return True
        self.conn.queue_body(data)
        self.sent += len(data)
        self.conn.flush(0)
        return self.can_take_more()

    def send_file(self, int fd, long long offset, Py_ssize_t count):
        if not self._head_sent:
            raise RuntimeError("send_file() before send_head()")
        if not self.body_allowed or count <= 0:
            return
        self.conn.send_file(fd, offset, count)
        self.sent += count

    def finish(self, bytes last=None):
        if last and self.body_allowed:
            self.conn.queue(last)
            self.sent += len(last)
        self.finished = True

    def abort(self):
        self.finished = True
        self.conn.close()
