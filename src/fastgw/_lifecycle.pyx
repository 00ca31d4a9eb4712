# The request lifecycle every protocol shares, and the response state it carries.
#
# Strategy: a protocol (HTTP, FastCGI, SCGI/uwsgi) frames bytes: it turns them into a
# Request and a body reader, and calls begin(). From there the path is the same for
# all: the request is counted, the handler runs inline or on an application thread
# (--threads), a body producer that outpaces the client parks and resumes when the
# queue drains, the unread rest of the body is drained if the connection is to carry
# another request, and the response settles (for the access log and the metrics) once
# its bytes are with the kernel or the connection is lost. The protocols answer a few
# questions through hooks: may the connection carry another request
# (keeps_connection), what to do once a request is over (request_ended), and what a
# client that went away costs (lost_client).
import logging

from fastgw._loop cimport Connection, HIGH_WATER, Protocol
from fastgw._sys cimport monotonic
from fastgw._request cimport BodyReader, Request

from fastgw.errors import ClientDisconnected, HttpError

log = logging.getLogger("fastgw.error")


cdef class RequestProtocol(Protocol):
    """The base of the request-serving protocols; also the responder interface's shared
    part (park, on_settled, headers_sent, bytes_sent)."""

    # -- the lifecycle --

    cdef void begin(self, Request req, BodyReader body) except *:
        """Run a request whose head (and, if gathered, body) is in: inline, or on an
        application thread with --threads; `body` is the reader the protocol frames."""
        cdef Connection conn = self.conn
        self.req = req
        self.body = body
        self.busy = True
        self._head_sent = False
        self.finished = False
        self.sent = 0
        self.status_code = 0
        self.head_request = req.method == "HEAD"
        conn.loop.requests += 1
        conn.loop.beat()
        if conn.hand_to_thread(self.call_handler):
            return
        self.call_handler()
        self.after_request()

    def call_handler(self):
        """Run the handler, or the next steps of the producer it parked; once the
        response is complete, read the rest of the body if the connection goes on."""
        cdef Connection conn = self.conn
        try:
            self.run_step()
        except ClientDisconnected:
            self.lost_client()
            return
        except Exception:
            log.exception("internal error while handling %r", self.req)
            conn.close()
            return
        if (self.parked is None and self.finished and not self.body.done
                and self.keeps_connection()):
            try:
                if not self.body.drain(self.drain_limit):
                    self.body_broken()
            except (ClientDisconnected, HttpError):
                conn.close()

    cdef void run_step(self) except *:
        """Call the handler for a new request, or the next steps of the producer it
        parked (what call_handler runs, inline or on a thread)."""
        cdef object producer = self.parked
        if producer is None:
            self.handler(self.req, self)
        else:
            self.parked = None
            producer.resume()

    cdef void resume(self) except *:
        """After the request (or its parked producer) ran on an application thread: end
        it or wait again, send what is queued, read on."""
        self.after_request()
        if not self.conn.closed:
            self.data_received()

    cdef void after_request(self) except *:
        if self.parked is not None and not self.conn.closed:
            self.await_drain()
            return
        self.check_settled()
        self.busy = False
        self._head_sent = False
        self.request_ended()
        self.req = None
        self.body = None

    # -- what the protocols answer --

    cdef bint keeps_connection(self) except -1:
        """Whether the connection is to carry another request (then the unread body is
        drained, up to drain_limit bytes)."""
        return False

    cdef void body_broken(self):
        """The body cannot be read to its end (broken framing, or more of it than
        drain_limit): the connection cannot carry another request."""
        pass

    cdef void body_wanted(self) except *:
        """The application reads the body for the first time (HTTP answers an Expect:
        100-continue here)."""
        pass

    cdef void request_ended(self) except *:
        """The response is complete, or cut: keep the connection, or close it."""
        pass

    cdef void lost_client(self) except *:
        """The client (or web server) went away while the handler ran."""
        self.conn.close()

    cdef void write_drained(self) except *:
        """The queue is empty again and no producer is parked: read on."""
        pass

    cdef void connection_lost(self) except *:
        cdef object producer = self.parked
        self.parked = None
        if self.finished and producer is None and self.conn.out_bytes == 0:
            self.settle(None)
        else:
            self.settle(self.conn.close_reason or "the connection was closed")
        if producer is not None:
            try:
                producer.cancel()
            except Exception:
                log.exception("error closing a response cut off by a lost connection")

    cdef int start_response_head(self, str status) except -1:
        """Record the status code of a head about to be sent; HEAD, 1xx, 204 and 304
        responses carry no body. Returns the code."""
        cdef int code = (ord(status[0]) - 48) * 100 + (ord(status[1]) - 48) * 10 + ord(status[2]) - 48
        self.status_code = code
        self.body_allowed = not (code < 200 or code == 204 or code == 304 or self.head_request)
        # A descriptor number seen in an earlier response may name another file now.
        self.conn.dup_copy = None
        # The send timeout counts from here (an application may have run for long).
        self.conn.last_active = monotonic()
        return code

    cdef bint can_take_more(self):
        """What write() answers: False when the producer should park (park())."""
        return self.conn.out_bytes < HIGH_WATER or self.conn.closed

    # -- parking: a body producer waits for the client without holding a worker --

    def park(self, producer):
        """Called by a handler whose write() said False: `producer.resume()` is called
        (inline, or on an application thread) once the client has taken what is
        queued, and `producer.cancel()` instead if the connection is lost first."""
        self.parked = producer

    cdef void output_drained(self) except *:
        """The queue just emptied on writability."""
        if self.parked is not None:
            self.continue_response()
        else:
            self.check_settled()
            self.write_drained()

    cdef void continue_response(self) except *:
        """Run the parked producer's next steps the way the request itself ran."""
        cdef object job = (<object>self).call_handler
        if self.conn.hand_to_thread(job):
            return
        job()
        self.resume()

    cdef void await_drain(self) except *:
        """A producer parked: stop reading and try the queue again next turn (its
        write may have run on a thread, whose EAGAIN the loop has not seen)."""
        cdef Connection conn = self.conn
        if conn.closed:
            return
        conn.paused = True
        conn.loop.retry_write.append(conn)

    # -- settling: when the response is out (or cut), for the log and the metrics --

    def on_settled(self, callback):
        """callback(bytes_sent, cut) once the response's bytes are with the kernel, or
        the connection is lost (`cut` then says why); at once if that is already so."""
        self.settled = callback
        self.check_settled()

    cdef void check_settled(self) except *:
        if self.settled is not None and self.finished and self.parked is None and (
                self.conn.out_bytes < HIGH_WATER or self.conn.closed):
            self.settle(self.conn.close_reason if self.conn.closed else None)

    cdef void settle(self, object cut) except *:
        cdef object callback = self.settled
        cdef Py_ssize_t sent = self.sent
        if callback is None:
            return
        self.settled = None
        if cut is not None:
            # What is still queued never reached the client.
            sent = max(0, sent - self.conn.out_bytes)
        try:
            callback(sent, cut)
        except Exception:
            log.exception("error recording a finished response")

    # The part of the responder interface the handlers call that every protocol shares.

    @property
    def headers_sent(self):
        return self._head_sent

    @property
    def bytes_sent(self):
        return self.sent


