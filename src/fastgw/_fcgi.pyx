# FastCGI 1.0, responder role, server side (the web server in front is the client).
#
# Strategy: records are handled whole (a record is at most 8 + 65535 + 255 bytes,
# so the connection buffer grows to hold one). Each request id gets an FcgiRequest
# that collects PARAMS; when its PARAMS stream ends the request is dispatched to
# the handler, inline, one at a time per connection. While an application reads
# its body (STDIN records, streamed into wsgi.input) records of other requests
# multiplexed on the same connection are collected for later: their PARAMS and
# STDIN are buffered and they run after the current one. Responses go out as
# STDOUT records (split at 65535 bytes, padded to 8), files with sendfile(2) per
# record, then an empty STDOUT and END_REQUEST. Bad framing closes the connection.
#
# What one connection may hold is bounded: at most MAX_REQS request ids at once (the
# value GET_VALUES advertises as FCGI_MAX_REQS; a further BEGIN_REQUEST is answered
# FCGI_OVERLOADED) and at most MAX_PENDING_INPUT bytes of PARAMS and STDIN buffered for
# requests that wait (past it the connection is closed): the per-id caps alone let one
# connection with many ids hold gigabytes. wsgi.input ends at CONTENT_LENGTH (PEP 3333);
# a CGI variable that must be a number and is not gets a 400 answer (cgiparams).
# The record layout and the name-value codec are in _fcgirecord.
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.pyport cimport PY_SSIZE_T_MAX

from fastgw._fcgirecord cimport *
from fastgw._limits cimport ProtocolLimits
from fastgw._responsehead cimport build_head
from fastgw._lifecycle cimport RequestProtocol
from fastgw._loop cimport Connection
from fastgw._request cimport BodyReader, Request

import logging

from fastgw._fcgirecord import FcgiProtocolError
from fastgw.cgiparams import request_from_params
from fastgw.errors import ClientDisconnected, HttpError

log = logging.getLogger("fastgw.error")

cdef enum:
    MAX_PENDING_STDIN = 1048576
    # per connection; web servers multiplex little if at all (nginx and Apache never)
    MAX_REQS = 32
    MAX_PENDING_INPUT = 4194304

cdef bytes PADDING = b"\0" * 8
cdef double KEPT_IDLE = 300.0
cdef bytes CGI_PREFIX = b"Status: "


cdef class FcgiRequest:
    """One request id's state on a connection."""

    cdef int rid
    cdef bint keep_conn
    cdef bytearray params
    cdef bint params_done
    cdef bytearray stdin
    cdef bint stdin_done


cdef class FcgiInput(BodyReader):
    """wsgi.input over the STDIN records of one request."""

    cdef FcgiProtocol proto
    cdef FcgiRequest freq
    cdef Py_ssize_t padding
    cdef bytes pending
    cdef Py_ssize_t pending_pos
    cdef bint ended
    # bytes CONTENT_LENGTH still allows (PEP 3333: read no further); -1 without one
    cdef Py_ssize_t left

    cdef Py_ssize_t available(self) except -1:
        cdef Py_ssize_t n
        if self.left == 0:
            # The rest of the STDIN record at hand is in the buffer (records are read
            # whole): skip it; later STDIN records of this id are ignored once it ends.
            self.pending = None
            self.conn.rstart += self.remaining + self.padding
            self.remaining = self.padding = 0
            return 0
        n = self.stdin_available()
        return n if self.left < 0 or n <= self.left else self.left

    cdef Py_ssize_t stdin_available(self) except -1:
        cdef FcgiProtocol proto = self.proto
        cdef Connection conn = self.conn
        self.started = True
        while True:
            if self.pending is not None:
                if self.pending_pos < len(self.pending):
                    return len(self.pending) - self.pending_pos
                self.pending = None
            if self.remaining > 0:
                return self.remaining
            if self.ended:
                self.done = True
            if self.done:
                return 0
            try:
                if not proto.read_record():
                    conn.fill_blocking()
                    continue
            except FcgiProtocolError as e:
                proto.fail_during_request(e)
            if proto.rid == self.freq.rid and proto.rtype == STDIN:
                conn.rstart += 8
                if proto.clen == 0:
                    conn.rstart += proto.plen
                    self.done = True
                    return 0
                self.remaining = proto.clen
                self.padding = proto.plen
            elif proto.rid == self.freq.rid and proto.rtype == ABORT_REQUEST:
                proto.consume_record()
                proto.aborted = True
                raise ClientDisconnected("the web server aborted the request (FCGI_ABORT_REQUEST)")
            else:
                try:
                    proto.handle_record()
                except FcgiProtocolError as e:
                    proto.fail_during_request(e)

    cdef const char *peek(self):
        if self.pending is not None:
            return <const char *>self.pending + self.pending_pos
        return self.conn.rbuf + self.conn.rstart

    cdef bytes take(self, Py_ssize_t n):
        cdef bytes data
        if self.left > 0:
            self.left -= n
        if self.pending is not None:
            data = self.pending[self.pending_pos:self.pending_pos + n]
            self.pending_pos += n
            return data
        data = BodyReader.take(self, n)
        if self.remaining == 0:
            self.conn.rstart += self.padding
            self.padding = 0
        return data


cdef class FcgiErrors:
    """wsgi.errors of a FastCGI request: text goes to the web server as STDERR records."""

    cdef FcgiProtocol proto
    cdef int rid

    def write(self, text):
        data = text.encode("utf-8", "backslashreplace") if isinstance(text, str) else bytes(text)
        if data and self.proto.current is not None and self.proto.current.rid == self.rid:
            self.proto.queue_stream(STDERR, self.rid, data)
            self.proto.stderr_used = True
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass


cdef class FcgiProtocol(RequestProtocol):
    """The server side of one FastCGI connection, and the responder of its current request."""

    cdef ProtocolLimits settings
    cdef dict requests
    cdef list ready
    cdef FcgiRequest current
    cdef bint close_when_done
    # PARAMS and STDIN bytes buffered for requests not yet running
    cdef Py_ssize_t pending
    cdef bint overload_logged
    # the record at the buffer start (set by read_record)
    cdef int rtype
    cdef int rid
    cdef Py_ssize_t clen
    cdef int plen
    # response state of the current request
    cdef bint stderr_used
    cdef bint aborted

    def __cinit__(self, handler, ProtocolLimits settings not None):
        self.handler = handler
        self.settings = settings
        # the web server sends all of STDIN: reading it keeps the connection usable
        self.drain_limit = PY_SSIZE_T_MAX
        self.requests = {}
        self.ready = []

    cdef bint is_idle(self):
        return not self.busy and not self.requests and self.conn.rend == self.conn.rstart

    cdef double deadline(self):
        if self.busy:
            return 0.0
        if self.is_idle():
            # A web server keeps its FastCGI connections open for reuse (nginx's upstream
            # keepalive_timeout is 60 s): closing first would race its next request.
            return self.conn.last_active + max(self.settings.keepalive_timeout, KEPT_IDLE)
        return self.conn.last_active + self.conn.loop.io_timeout

    cdef void write_drained(self) except *:
        self.data_received()

    cdef int fail_during_request(self, object error) except -1:
        """A framing error seen while the application reads its body: stop it, then close."""
        log.warning("FastCGI protocol error from %s: %s; closing the connection",
                    self.conn.peer or "the web server", error)
        raise ClientDisconnected(f"FastCGI protocol error: {error}")

    cdef void data_received(self) except *:
        cdef Connection conn = self.conn
        if self.busy:
            return
        try:
            while not conn.closed and not conn.paused and not conn.want_close:
                if self.ready:
                    self.run_request(self.ready.pop(0))
                    if conn.owned:
                        return
                    continue
                if not self.read_record():
                    break
                self.handle_record()
        except FcgiProtocolError as e:
            log.warning("FastCGI protocol error from %s: %s; closing the connection",
                        conn.peer or "the web server", e)
            conn.close()
            return
        if not conn.closed and conn.out_bytes:
            try:
                if not conn.flush(0):
                    conn.paused = True
            except ClientDisconnected:
                conn.close()

    cdef bint read_record(self) except -1:
        """True when a whole record is at the buffer start (its header is then decoded)."""
        cdef Connection conn = self.conn
        cdef const unsigned char *h = <const unsigned char *>conn.rbuf + conn.rstart
        cdef Py_ssize_t avail = conn.rend - conn.rstart
        if avail < 8:
            return False
        if h[0] != FCGI_VERSION:
            raise FcgiProtocolError(f"unsupported FastCGI version {h[0]} (only 1 exists)")
        self.rtype = h[1]
        self.rid = (h[2] << 8) | h[3]
        self.clen = (h[4] << 8) | h[5]
        self.plen = h[6]
        return avail >= 8 + self.clen + self.plen

    cdef bytes record_content(self):
        cdef Connection conn = self.conn
        return PyBytes_FromStringAndSize(conn.rbuf + conn.rstart + 8, self.clen)

    cdef void consume_record(self):
        self.conn.rstart += 8 + self.clen + self.plen

    cdef void handle_record(self) except *:
        """Act on the record at the buffer start and consume it."""
        cdef FcgiRequest freq
        cdef bytes content = self.record_content()
        cdef int rtype = self.rtype, rid = self.rid
        self.consume_record()
        if rid == 0:
            if rtype == GET_VALUES:
                self.answer_get_values(content)
            else:
                self.send_unknown_type(rtype)
            return
        freq = self.requests.get(rid)
        if rtype == BEGIN_REQUEST:
            if len(content) < 8:
                raise FcgiProtocolError("BEGIN_REQUEST body shorter than 8 bytes")
            if freq is not None:
                raise FcgiProtocolError(f"BEGIN_REQUEST for request id {rid}, which is active")
            if len(self.requests) >= MAX_REQS:
                if not self.overload_logged:
                    self.overload_logged = True
                    log.warning("FastCGI connection from %s opens more than %d requests at "
                                "once (FCGI_MAX_REQS); refusing the others with FCGI_OVERLOADED",
                                self.conn.peer or "the web server", MAX_REQS)
                self.end_request(rid, OVERLOADED)
                return
            role = (content[0] << 8) | content[1]
            if role != RESPONDER:
                log.warning("FastCGI role %d is not supported (only RESPONDER)", role)
                self.end_request(rid, UNKNOWN_ROLE)
                if not content[2] & KEEP_CONN:
                    self.close_when_done = True
                    self.conn.close_after_flush()
                return
            freq = FcgiRequest.__new__(FcgiRequest)
            freq.rid = rid
            freq.keep_conn = content[2] & KEEP_CONN
            freq.params = bytearray()
            freq.stdin = bytearray()
            self.requests[rid] = freq
        elif freq is None:
            if rtype in (PARAMS, STDIN, DATA, ABORT_REQUEST):
                return  # a late record of a request that already ended: ignore it
            self.send_unknown_type(rtype)
        elif rtype == PARAMS:
            if freq.params_done:
                raise FcgiProtocolError(f"PARAMS after the end of the PARAMS stream (id {rid})")
            if not content:
                freq.params_done = True
                self.ready.append(freq)
            elif len(freq.params) + len(content) > self.settings.head:
                raise FcgiProtocolError(f"PARAMS larger than {self.settings.head} bytes "
                                        f"(--limit-request-head)")
            else:
                self.buffer_input(len(content))
                freq.params += content
        elif rtype == STDIN:
            if not content:
                freq.stdin_done = True
            elif len(freq.stdin) + len(content) > MAX_PENDING_STDIN:
                raise FcgiProtocolError("too much STDIN buffered for a request that waits its turn")
            else:
                self.buffer_input(len(content))
                freq.stdin += content
        elif rtype == ABORT_REQUEST:
            self.requests.pop(rid, None)
            self.pending -= len(freq.params) + len(freq.stdin)
            if freq in self.ready:
                self.ready.remove(freq)
            self.end_request(rid, REQUEST_COMPLETE)
        elif rtype == DATA:
            pass
        else:
            self.send_unknown_type(rtype)

    cdef void buffer_input(self, Py_ssize_t n) except *:
        self.pending += n
        if self.pending > MAX_PENDING_INPUT:
            raise FcgiProtocolError(f"more than {MAX_PENDING_INPUT} bytes of PARAMS and STDIN "
                                    f"buffered for the requests waiting on this connection")

    cdef void answer_get_values(self, bytes content) except *:
        # FCGI_MAX_REQS is the bound of one connection: a web server may put all its
        # requests on one, and one that keeps to the advertised values is never refused.
        cdef dict known = {"FCGI_MAX_CONNS": str(self.conn.loop.max_connections),
                           "FCGI_MAX_REQS": str(MAX_REQS),
                           "FCGI_MPXS_CONNS": "1"}
        cdef bytes body = b""
        for name in parse_name_values(content, "GET_VALUES"):
            if name in known:
                body += encode_name_value(name.encode(), known[name].encode())
        self.queue_record(GET_VALUES_RESULT, 0, body)

    cdef void send_unknown_type(self, int rtype) except *:
        self.queue_record(UNKNOWN_TYPE, 0, bytes([rtype, 0, 0, 0, 0, 0, 0, 0]))

    cdef void end_request(self, int rid, int status) except *:
        self.queue_record(END_REQUEST, rid, bytes([0, 0, 0, 0, status, 0, 0, 0]))

    cdef void queue_record(self, int rtype, int rid, bytes content) except *:
        cdef Py_ssize_t n = len(content)
        cdef int plen = (8 - n % 8) % 8
        self.conn.queue(record_header(rtype, rid, n, plen))
        self.conn.queue(content)
        if plen:
            self.conn.queue(PADDING[:plen])

    cdef void queue_stream(self, int rtype, int rid, bytes data) except *:
        """Queue data as records of at most 65535 bytes each."""
        cdef Py_ssize_t n = len(data), pos = 0
        if n <= MAX_CONTENT:
            self.queue_record(rtype, rid, data)
            return
        while pos < n:
            self.queue_record(rtype, rid, data[pos:pos + 65528])
            pos += 65528

    cdef void queue_stdout(self, bytes data) except *:
        """Body bytes as STDOUT records; past the spill threshold their contents go to
        the connection's spool file (Connection.queue_body), the headers stay bytes."""
        cdef Py_ssize_t n = len(data), pos = 0, size
        cdef int plen
        cdef int rid = self.current.rid
        while pos < n:
            size = n - pos if n - pos <= MAX_CONTENT else 65528
            plen = (8 - size % 8) % 8
            self.conn.queue(record_header(STDOUT, rid, size, plen))
            self.conn.queue_body(data if size == n else data[pos:pos + size])
            if plen:
                self.conn.queue(PADDING[:plen])
            pos += size

    cdef void run_request(self, FcgiRequest freq) except *:
        cdef Connection conn = self.conn
        cdef FcgiInput body = FcgiInput.__new__(FcgiInput)
        cdef FcgiErrors errors = FcgiErrors.__new__(FcgiErrors)
        params = parse_name_values(bytes(freq.params), "PARAMS")
        self.pending -= len(freq.params) + len(freq.stdin)
        freq.params = bytearray()
        body.conn = conn
        body.proto = self
        body.freq = freq
        if freq.stdin:
            body.pending = bytes(freq.stdin)
            freq.stdin = bytearray()
        body.ended = freq.stdin_done
        errors.proto = self
        errors.rid = freq.rid
        try:
            self.req = request_from_params(params, body, errors)
        except HttpError as e:
            # the web server sent a variable no request can have: answer, never a traceback
            log.warning("FastCGI request from %s refused: %s", conn.peer or "the web server", e)
            self.refuse(freq, e.status_line, f"{e}\n")
            return
        body.left = self.req.content_length
        self.current = freq
        self.stderr_used = False
        self.aborted = False
        self.begin(self.req, body)

    cdef void refuse(self, FcgiRequest freq, str status, str text) except *:
        """Answer a request the application never sees; later records of its id are ignored."""
        cdef bytes body = text.encode("utf-8", "backslashreplace")
        self.requests.pop(freq.rid, None)
        self.queue_stream(STDOUT, freq.rid, build_head(
            CGI_PREFIX, status, [("Content-Type", "text/plain; charset=utf-8")],
            len(body), False, False, None) + body)
        self.queue_record(STDOUT, freq.rid, b"")
        self.end_request(freq.rid, REQUEST_COMPLETE)
        if not freq.keep_conn:
            self.conn.close_after_flush()

    cdef bint keeps_connection(self) except -1:
        cdef Connection conn = self.conn
        return (self.current.keep_conn and not self.aborted and not conn.closed
                and not conn.close_requested)

    cdef void lost_client(self) except *:
        # an aborted request's application learns it from a failed write: the connection
        # itself goes on (FCGI_ABORT_REQUEST ends one request, not the connection)
        if not self.aborted:
            self.conn.close()

    cdef void request_ended(self) except *:
        cdef Connection conn = self.conn
        cdef FcgiRequest freq = self.current
        cdef FcgiInput body = <FcgiInput>self.body
        self.current = None
        self.requests.pop(freq.rid, None)
        if conn.closed:
            return
        if not self.finished:
            conn.close()
            return
        self.end_request(freq.rid, REQUEST_COMPLETE)
        # A stopping worker closes kept connections too: a web server (or a front worker
        # forwarding to a process group) that reuses one at once would keep it busy, and
        # the worker would never stop; a request sent on it meanwhile is retried there.
        if not freq.keep_conn or conn.loop.stopping:
            # With the request's input all read (its STDIN end record included) the web
            # server sends nothing more: close at once, no half-close and lingering read.
            conn.close_after_flush(not (body is not None and (body.ended or body.done)
                                        and conn.rend == conn.rstart))

    # The responder interface the handlers call.

    def send_head(self, str status, list headers, Py_ssize_t length, bint length_in_headers):
        self.start_response_head(status)
        self.queue_stream(STDOUT, self.current.rid,
                          build_head(CGI_PREFIX, status, headers,
                                     length if length >= 0 and not length_in_headers else -1,
                                     False, False, None))
        self._head_sent = True

    def write(self, bytes data not None):
        """Queue STDOUT records and send what the socket takes; never waits. False: the
        web server lags, a producer should park()."""
        # Streamed bodies go out as they come (fastcgi_buffering off, server-sent events).
        if self.queue_body(data):
            self.conn.flush(0)
        return self.can_take_more()

    cdef bint queue_body(self, bytes data) except -1:
        if not self._head_sent:
            raise RuntimeError("body sent before send_head()")
        if not data or not self.body_allowed:
            return False
        self.queue_stdout(data)
        self.sent += len(data)
        return True

    def send_file(self, int fd, long long offset, Py_ssize_t count):
        """sendfile(2) the range, one STDOUT record at a time: header, file bytes, padding."""
        cdef Py_ssize_t n
        cdef int plen
        if not self._head_sent:
            raise RuntimeError("send_file() before send_head()")
        if not self.body_allowed:
            return
        while count > 0:
            n = count if count < 65528 else 65528
            plen = (8 - n % 8) % 8
            self.conn.queue(record_header(STDOUT, self.current.rid, n, plen))
            self.conn.queue_file(fd, offset, n)
            if plen:
                self.conn.queue(PADDING[:plen])
            offset += n
            count -= n
            self.sent += n
        try:
            self.conn.flush(0)
        finally:
            self.conn.adopt_files()

    def finish(self, bytes last=None):
        if last:
            self.queue_body(last)
        self.queue_record(STDOUT, self.current.rid, b"")
        if self.stderr_used:
            self.queue_record(STDERR, self.current.rid, b"")
        self.finished = True

    def abort(self):
        """After ABORT_REQUEST the request just ends (END_REQUEST follows); else close."""
        self.finished = True
        if not self.aborted:
            self.conn.close()
