# HTTP/1.1 (RFC 9112) on a Connection: the protocol of one client connection, and the
# responder its requests' handlers write to.
#
# Strategy: the bytes are the connection's; what they mean is the pure functions' of
# the modules beside this one: _proxyproto (a PROXY header first, if configured),
# _httphead (the request head, once it is complete), _httpbody (the body's framing),
# _responsehead (the response head). This class keeps the connection's state between
# them: which request is in progress, whether the loop gathers its body before the
# application is called (nginx's request buffering: a slow sender then holds a buffer,
# not a worker), keep-alive, 100-continue. The responder interface: send_head(),
# write(), send_file(), finish(); bytes are queued and go out in one sendmsg at the
# end of the batch, so head and body of a small response share a syscall.
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdio cimport snprintf

from fastgw._bodybuf cimport SpooledBody
from fastgw._httpbody cimport HttpBody, empty_body, new_body
from fastgw._httphead cimport HeadInfo, parse_request_head, skip_empty_lines
from fastgw._limits cimport BODY_GATHER, BODY_STREAM, ProtocolLimits
from fastgw._lifecycle cimport RequestProtocol
from fastgw._loop cimport Connection
from fastgw._proxyproto cimport proxy_header
from fastgw._request cimport Request
from fastgw._responsehead cimport build_head

import logging

from fastgw.errors import REASONS, ClientDisconnected, HttpError

log = logging.getLogger("fastgw.error")


cdef enum:
    BUFFERED_BODY = 65536
    DRAIN_LIMIT = 262144
    FLUSH_THRESHOLD = 65536

# How long a client that let a timeout pass may linger on after its 408, in all.
cdef double LINGER_AFTER_TIMEOUT = 2.0

cdef bytes CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes CRLF = b"\r\n"
cdef bytes LAST_CHUNK = b"0\r\n\r\n"
cdef bytes STATUS_LINE_PREFIX = b"HTTP/1.1 "
cdef bytes CONNECTION_CLOSE = b"Connection: close\r\n"
cdef bytes CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
cdef HttpBody EMPTY_BODY = empty_body()


cdef class HttpProtocol(RequestProtocol):
    """HTTP/1.1 server side of one connection, and the responder for its requests."""

    cdef ProtocolLimits settings
    cdef HeadInfo head
    cdef double head_started
    cdef bint waiting_body
    # the body the loop is gathering before the application is called (None: none)
    cdef SpooledBody gathering
    cdef int empty_lines
    cdef bint proxied
    cdef bint keep_alive
    cdef bint client_closes
    cdef bint expect_continue
    cdef bint continue_sent
    cdef bint chunked
    cdef Py_ssize_t expected

    def __cinit__(self, handler, ProtocolLimits settings not None):
        self.handler = handler
        self.settings = settings
        self.drain_limit = DRAIN_LIMIT

    cdef bint is_idle(self):
        return (not self.busy and not self.waiting_body and self.gathering is None
                and self.conn.rend == self.conn.rstart)

    cdef double deadline(self):
        if self.busy:
            return 0.0
        if self.waiting_body or self.gathering is not None:
            return self.conn.last_active + self.conn.loop.io_timeout
        if self.conn.rend == self.conn.rstart:
            if self.conn.tls is not None and not self.conn.tls.established:
                # a TLS handshake counts as the head: a slow one is dropped like a slow head
                return self.conn.last_active + self.settings.header_timeout
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
        RequestProtocol.connection_lost(self)

    cdef void eof_received(self) except *:
        self.conn.close()

    cdef void data_received(self) except *:
        cdef Connection conn = self.conn
        cdef int policy
        cdef Py_ssize_t used
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
                try:
                    used = skip_empty_lines(conn.rbuf + conn.rstart, conn.rend - conn.rstart,
                                            &self.empty_lines)
                    if used:
                        conn.rstart += used
                        self.head.scan_pos = 0
                    if conn.rstart == conn.rend:
                        break
                    if self.head.scan_pos == 0:
                        self.head_started = conn.last_active
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
            self.begin(self.req, self.body)
            if conn.owned:
                return
            if not conn.closed and conn.out_bytes >= FLUSH_THRESHOLD:
                if not self.flush_or_close():
                    return
        if not conn.closed and conn.out_bytes:
            self.flush_or_close()

    cdef bint body_is_here(self):
        """The whole Content-Length body is in the read buffer (the zero-copy case)."""
        return (not (<HttpBody>self.body).chunked
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
        cdef HttpBody body = <HttpBody>self.body
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
        """The PROXY protocol header a load balancer sends first: it names the real
        client, which becomes the connection's peer. False: not all here yet."""
        cdef Connection conn = self.conn
        trusted = self.settings.proxy_trusted
        if trusted is not None and not trusted.trusts(conn.peer[0] if conn.peer else None):
            raise HttpError(400, f"PROXY protocol header expected from {conn.peer}, which is "
                                 f"not in --proxy-allow-ips")
        found = proxy_header(<const unsigned char *>conn.rbuf + conn.rstart,
                             conn.rend - conn.rstart)
        if found is None:
            return False
        conn.rstart += found[0]
        self.proxied = True
        if found[1] is not None:
            conn.peer = found[1]
        return True

    cdef bint parse_head(self) except -1:
        """The request head at the buffer start, once it is all here: it becomes the
        request in progress, with its body reader. False: not all here yet."""
        cdef Connection conn = self.conn
        cdef Request req = parse_request_head(conn.rbuf + conn.rstart, conn.rend - conn.rstart,
                                              self.settings, &self.head)
        if req is None:
            return False
        req.peer = conn.peer
        req.sockname = conn.sockname
        req.scheme = conn.scheme
        if conn.tls is not None:
            req.tls_vars = conn.tls.environ()
        self.body = new_body(conn, req, self.head.chunked, self.settings)
        req.body = self.body
        self.req = req
        self.client_closes = self.head.client_closes
        self.keep_alive = not self.client_closes
        self.head_request = req.method == "HEAD"
        self.expect_continue = self.head.expect_continue
        self.continue_sent = False
        conn.rstart += self.head.length
        self.empty_lines = 0
        return True

    cdef void body_wanted(self) except *:
        self.send_continue()

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
        self.conn.queue(build_head(STATUS_LINE_PREFIX, f"{status} {REASONS.get(status, 'Error')}",
                                   [("Content-Type", "text/plain; charset=utf-8")], len(body),
                                   True, False, CONNECTION_CLOSE))
        self.conn.queue(body)
        self.conn.close_after_flush(True, cap)

    cdef bint keeps_connection(self) except -1:
        # a client that waits for 100 (Continue) before it sends the body never got
        # one: it may send it now, or never; the connection cannot tell which
        if self.keep_alive and self.expect_continue and not self.body.started:
            self.keep_alive = False
        return self.keep_alive

    cdef void body_broken(self):
        self.keep_alive = False

    cdef void request_ended(self) except *:
        cdef Connection conn = self.conn
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
        cdef HttpBody body = <HttpBody>self.body
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
        elif self.head.version == 11:
            self.chunked = True
        else:
            self.keep_alive = False
        if not self.keep_alive:
            connection = CONNECTION_CLOSE
        elif self.head.version == 10:
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


