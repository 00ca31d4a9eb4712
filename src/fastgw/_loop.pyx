# The event loop of one worker process.
#
# Strategy: every connection is registered once with the poller (epoll on Linux,
# kqueue on macOS/BSD: csrc/poller.h), edge-triggered for reading and writing, so a
# keep-alive request costs no epoll_ctl; FASTGW_POLLER=poll selects a level-triggered
# poll(2) fallback that recomputes interest from the connections' state each time. A
# connection remembers whether its socket may still hold unread bytes (`readable`,
# cleared by a short read or EAGAIN) and whether it is waiting for output space
# (`paused`). Its buffers are a Stream's (_stream.pyx); its protocol (_http, _fcgi,
# _scgi through _lifecycle) parses in place and queues; listeners (_accept.pyx) make
# the connections.
#
# Output never waits on a client: what the socket does not take stays queued and
# goes out on writability, from where it stopped. A response body that is produced
# step by step (a WSGI generator) is parked by its producer when the queue passes
# HIGH_WATER and resumed, inline or on an application thread, once the queue is
# empty (_lifecycle.pyx); writers that cannot be parked spill to a file (_stream.pyx).
# A client that takes nothing for io_timeout is dropped (reset) and its producer
# closed. Timers are a once-a-second sweep.
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport errno, EAGAIN, EINTR, ECONNABORTED, EMFILE, ENFILE
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, realloc, free
from posix.unistd cimport close as c_close

# the sockets, poller, sendfile, poll(2) and pwrite declarations
from fastgw._sys cimport *

import collections
import logging
import os

from fastgw.errors import ClientDisconnected

log = logging.getLogger("fastgw.error")


cdef enum:
    MAX_EVENTS = 256

# After a response that closes the connection, how long to read and discard what
# the client still sends, so the kernel does not answer it with a reset: idle at
# most LINGER_TIMEOUT, in all at most LINGER_TOTAL (nginx's lingering_timeout and
# lingering_time), or the cap its caller gives (a 408 gets a short one).
cdef double LINGER_TIMEOUT = 2.0
cdef double LINGER_TOTAL = 30.0
# When a worker stops, an idle connection is closed only after this long without
# traffic: a connection just accepted, or a keep-alive one, may have a request on
# the way, which is then answered (with Connection: close) instead of reset.
cdef double STOP_IDLE_GRACE = 1.0


cdef class Protocol:
    """What the loop asks of a wire protocol; it owns no socket, only parses and queues.
    The request lifecycle every protocol shares is _lifecycle.RequestProtocol."""

    cdef void data_received(self) except *:
        pass

    cdef void output_drained(self) except *:
        """The queue just emptied on writability."""
        pass

    cdef void eof_received(self) except *:
        self.conn.close()

    cdef bint is_idle(self):
        return self.conn.rend == self.conn.rstart

    cdef void resume(self) except *:
        """After a request (or its parked producer) ran on an application thread."""
        pass

    cdef double deadline(self):
        """Monotonic time by which the connection must make progress; 0 for none."""
        return 0.0

    cdef void timed_out(self) except *:
        self.conn.close()

    cdef void connection_lost(self) except *:
        pass


cdef class Connection(Stream):
    """A client socket as the loop serves it: its streams (Stream), its protocol, and
    the state of its closing."""

    cdef bint more_coming(self):
        return not self.protocol.finished

    cdef void on_event(self, uint32_t events) except *:
        if self.closed:
            return
        if self.owned:
            # An application thread is using the socket; it is looked at again when
            # the thread hands the connection back.
            return
        if events & FGW_OUT and self.out_bytes:
            try:
                drained = self.flush(0)
            except ClientDisconnected:
                self.close()
                return
            if drained:
                if self.want_close:
                    self.finish_close()
                    return
                if self.paused:
                    self.paused = False
                    self.protocol.output_drained()
        if events & (FGW_IN | FGW_RDHUP | FGW_HUP | FGW_ERR):
            self.readable = True
            if events & (FGW_RDHUP | FGW_HUP | FGW_ERR):
                # The end of the stream came with (or after) the data: read on until
                # recv() says so, even after a short read.
                self.hup = True
        if self.readable and not self.closed:
            self.read_ready()

    cdef void read_ready(self) except *:
        cdef Py_ssize_t n
        while self.readable and not self.closed and not self.paused and not self.owned:
            if self.lingering:
                self.rstart = self.rend = 0
            n = self.recv_some()
            if n > 0:
                self.last_active = monotonic()
                if not self.lingering:
                    self.protocol.data_received()
            elif n == 0:
                self.eof = True
                if self.lingering:
                    self.close()
                else:
                    self.protocol.eof_received()
                return

    cdef bint read_unseen_input(self) except -1:
        """Before an idle connection is closed: if the socket holds bytes whose event the
        loop has not handled yet (it comes late after an inline call that took long),
        the connection is not idle: read and serve them. True if there were some."""
        cdef char c
        if recv(self.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0:
            return False
        self.readable = True
        self.read_ready()
        return True

    cdef bint hand_to_thread(self, object job) except -1:
        """With --threads: flush what is queued (earlier pipelined responses), then let an
        application thread run job() with this connection. False: run it inline."""
        if not self.loop.threaded:
            return False
        try:
            self.flush(0)
        except ClientDisconnected:
            self.close()
            return True
        self.paused = False
        self.loop.submit(self, job)
        return True

    cdef void close_after_flush(self, bint linger=True, double cap=0.0):
        """Close once queued output is out. With `linger`, half-close first and read what
        the client still sends until it closes, so unread input does not make the kernel
        reset the connection (and lose the response) at the client. `cap`: seconds from
        now after which the connection is closed whatever it does (default LINGER_TOTAL,
        counted from the start of lingering)."""
        self.want_close = True
        self.linger = linger
        if cap > 0.0:
            self.close_deadline = monotonic() + cap
        if self.closed:
            return
        try:
            # MSG_MORE: the close() or shutdown() right after sends the FIN in the same
            # segment as the response's last bytes (one packet less per connection).
            if not self.flush(MSG_MORE):
                return
        except ClientDisconnected:
            self.close()
            return
        self.finish_close()

    cdef void finish_close(self):
        if self.tls is not None:
            self.tls.close_notify(self)  # the client can tell the end from a truncation
        if self.eof or (not self.linger and self.rstart == self.rend and not self.readable):
            self.close()
            return
        shutdown(self.fd, SHUT_WR)
        self.lingering = True
        self.last_active = monotonic()
        if self.close_deadline == 0.0:
            self.close_deadline = self.last_active + LINGER_TOTAL
        self.rstart = self.rend = 0
        if self.readable:
            self.read_ready()

    cdef void drop(self, str reason):
        """Give up on a client that stopped taking the response: reset the connection
        (the kernel frees what it still holds for it) and say why, once."""
        cdef linger lg
        if self.closed:
            return
        log.info("dropped connection from %s: %s (%d bytes not sent)",
                 self.peer[0] if self.peer else "unix socket", reason, self.out_bytes)
        self.close_reason = reason
        lg.l_onoff = 1
        lg.l_linger = 0
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg))
        self.close()

    cdef void close(self):
        if self.closed:
            return
        if self.owned and pthread_self() != self.loop.thread:
            self.close_requested = True
            return
        self.closed = True
        c_close(self.fd)
        self.loop.forget(self)
        try:
            self.protocol.connection_lost()
        except Exception:
            log.exception("internal error closing a connection")
        self.out = []
        self.out_bytes = 0
        self.spool = None
        self.dup_copy = None


cdef class Waker(Handle):
    """The read end of the pipe application threads write to when they hand a connection back."""

    cdef Loop loop

    cdef void on_event(self, uint32_t events) except *:
        cdef char buf[256]
        while read(self.fd, buf, sizeof(buf)) > 0:
            pass
        self.loop.take_back()


cdef class Loop:
    """epoll, the listeners, the connections and the once-a-second sweep."""

    def __cinit__(self):
        self.use_poll = os.environ.get("FASTGW_POLLER", "") == "poll"
        self.epfd = -1
        if not self.use_poll:
            self.epfd = fgw_poller_create()
            if self.epfd < 0:
                PyErr_SetFromErrno(OSError)
        self.conns = {}
        self.listeners = []
        self.closing = []
        self.retry_write = []
        self.wake_r = self.wake_w = -1
        self.thread = pthread_self()

    def __init__(self, config):
        """The loop's limits come from the Config, which holds every default."""
        self.io_timeout = config.io_timeout
        self.graceful_timeout = config.graceful_timeout
        self.max_connections = config.max_connections
        self.spool_dir = config.body_buffer_dir

    def __dealloc__(self):
        if self.epfd >= 0:
            c_close(self.epfd)
        free(self.pfds)
        free(self.pptrs)
        if self.wake_r >= 0:
            c_close(self.wake_r)
            c_close(self.wake_w)

    def set_heartbeat(self, page, Py_ssize_t slot):
        """Where to stamp the start of each request run inline (a shared page of the
        master's, read by its --timeout watchdog)."""
        cdef unsigned char[::1] view = page
        self.heartbeat_view = view
        self.heartbeat = <double *>&view[8 * slot]

    cdef void beat(self):
        # With application threads the worker's tick publishes their oldest start.
        if self.heartbeat != NULL and not self.threaded:
            self.heartbeat[0] = monotonic()

    def use_threads(self, pool):
        """Run requests in `pool` (an object with submit(callable)) instead of inline."""
        cdef Waker waker = Waker.__new__(Waker)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        waker.fd = self.wake_r
        waker.loop = self
        self.waker = waker
        self.pool = pool
        self.handed_back = collections.deque()
        self.threaded = True
        self.register(waker, True)

    cdef void submit(self, Connection conn, object job) except *:
        """Run job() in an application thread, which owns `conn` until it hands it back."""
        conn.owned = True
        self.pool.submit(self.run_job, conn, job)

    def run_job(self, Connection conn, job):
        try:
            job()
        except BaseException:
            log.exception("internal error in an application thread")
            conn.close_requested = True
        finally:
            self.handed_back.append(conn)
            write(self.wake_w, b"x", 1)

    cdef void take_back(self) except *:
        cdef Connection conn
        while self.handed_back:
            conn = self.handed_back.popleft()
            conn.owned = False
            conn.last_active = monotonic()
            try:
                if conn.close_requested:
                    conn.close()
                    continue
                conn.protocol.resume()
                if not conn.closed and not conn.owned:
                    conn.readable = True
                    conn.read_ready()
            except Exception:
                log.exception("internal error on a connection; closing it")
                conn.close()

    cdef void retry_writes(self) except *:
        cdef list batch = self.retry_write
        cdef Connection conn
        self.retry_write = []
        for conn in batch:
            if conn.closed or conn.owned:
                continue
            try:
                if conn.out_bytes:
                    conn.on_event(FGW_OUT)
                elif conn.paused:
                    conn.paused = False
                    conn.protocol.output_drained()
            except Exception:
                log.exception("internal error on a connection; closing it")
                conn.close()

    cdef void register(self, Handle h, bint listener) except *:
        """Watch h: a listener level-triggered, anything else edge-triggered both ways.
        The poll(2) backend needs no registration: it looks at the handles each time."""
        if self.use_poll:
            return
        if fgw_poller_add(self.epfd, h.fd, <void *>h, listener) < 0:
            PyErr_SetFromErrno(OSError)

    @property
    def poller(self):
        return "poll" if self.use_poll else FGW_POLLER_NAME.decode()

    def add_listener(self, Handle listener):
        """Serve a listening socket (an _accept.Listener made for this loop)."""
        self.listeners.append(listener)
        self.register(listener, True)

    cdef void forget(self, Connection conn):
        self.conns.pop(conn.fd, None)
        # Resume with a tenth of the cap free (at least one slot), so that accepting is
        # not switched off and on for every connection at the boundary.
        if self.accept_paused and len(self.conns) <= self.max_connections - max(1, self.max_connections // 10):
            self.pause_accepting(False)
        # Keep the object alive until the current batch of events is dispatched:
        # a later event of the batch may still point at it.
        self.closing.append(conn)

    cdef void pause_accepting(self, bint pause) except *:
        cdef Handle listener
        if pause == self.accept_paused or self.stopping:
            return
        self.accept_paused = pause
        if self.use_poll:
            return
        for listener in self.listeners:
            if pause:
                fgw_poller_del(self.epfd, listener.fd)
            else:
                self.register(listener, True)

    def stop(self):
        """Stop accepting, let requests in flight finish, then make run() return."""
        cdef Handle listener
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = monotonic() + self.graceful_timeout
        if not self.accept_paused and not self.use_poll:
            for listener in self.listeners:
                fgw_poller_del(self.epfd, listener.fd)
        self.listeners = []

    @property
    def connection_count(self):
        return len(self.conns)

    cdef void sweep(self, double now) except *:
        cdef Connection conn
        cdef double deadline
        cdef Py_ssize_t waiting = 0, queued = 0
        for conn in list(self.conns.values()):
            if conn.out_bytes:
                waiting += 1
                queued += conn.out_bytes
            if conn.closed or conn.owned:
                continue
            if conn.close_deadline and now > conn.close_deadline:
                if conn.out_bytes:
                    conn.drop("the client took too long to take the last response")
                else:
                    conn.close()
            elif conn.lingering:
                if now - conn.last_active > LINGER_TIMEOUT:
                    conn.close()
            elif conn.out_bytes:
                # Output waits for the client: only the send timeout applies.
                if now - conn.last_active > self.io_timeout:
                    conn.drop(f"the client accepted nothing for {self.io_timeout:g} s")
            elif (self.stopping and conn.protocol.is_idle()
                    and now - conn.last_active > STOP_IDLE_GRACE):
                if not conn.read_unseen_input():
                    conn.close()
            else:
                deadline = conn.protocol.deadline()
                if deadline and now > deadline:
                    if conn.protocol.is_idle() and conn.read_unseen_input():
                        continue
                    try:
                        conn.protocol.timed_out()
                    except Exception:
                        log.exception("internal error timing out a connection; closing it")
                        conn.close()
        self.waiting_on_clients = waiting
        self.queued_output = queued

    cdef int poll_once(self, fgw_event *out, int timeout_ms) except -2:
        """The poll(2) backend: level-triggered, interest recomputed from the handles."""
        cdef Py_ssize_t count = len(self.listeners) + len(self.conns) + 1, k = 0, i
        cdef int n, found = 0
        cdef short want
        cdef Connection conn
        cdef Handle listener
        cdef pollfd *pfds
        if count > self.pcap:
            self.pfds = realloc(self.pfds, count * sizeof(pollfd))
            self.pptrs = <void **>realloc(self.pptrs, count * sizeof(void *))
            if self.pfds == NULL or self.pptrs == NULL:
                raise MemoryError()
            self.pcap = count
        pfds = <pollfd *>self.pfds
        if not self.accept_paused and not self.stopping:
            for listener in self.listeners:
                pfds[k].fd = listener.fd
                pfds[k].events = POLLIN
                self.pptrs[k] = <void *>listener
                k += 1
        if self.waker is not None:
            pfds[k].fd = self.wake_r
            pfds[k].events = POLLIN
            self.pptrs[k] = <void *>self.waker
            k += 1
        for conn in self.conns.values():
            if conn.owned or conn.closed:
                continue
            want = POLLOUT if conn.out_bytes else 0
            if not conn.paused:
                want |= POLLIN
            pfds[k].fd = conn.fd
            pfds[k].events = want
            self.pptrs[k] = <void *>conn
            k += 1
        with nogil:
            n = poll(pfds, k, timeout_ms)
        if n <= 0:
            return n
        for i in range(k):
            if pfds[i].revents and found < MAX_EVENTS:
                out[found].ptr = self.pptrs[i]
                out[found].events = ((FGW_IN if pfds[i].revents & POLLIN else 0)
                                     | (FGW_OUT if pfds[i].revents & POLLOUT else 0)
                                     | (FGW_HUP if pfds[i].revents & POLLHUP else 0)
                                     | (FGW_ERR if pfds[i].revents & POLLERR else 0))
                found += 1
        return found

    def run(self):
        cdef fgw_event events[MAX_EVENTS]
        cdef int n, i, timeout_ms
        cdef double now, next_sweep
        cdef Handle handle
        next_sweep = monotonic() + 1.0
        while True:
            if self.stop_soon and not self.stopping:
                self.stop()
            if self.stopping:
                self.sweep(monotonic())
                self.closing = []
                if not self.conns or monotonic() > self.stop_deadline:
                    break
            timeout_ms = 0 if self.retry_write else 1000 if not self.stopping else 100
            if self.use_poll:
                n = self.poll_once(events, timeout_ms)
            else:
                with nogil:
                    n = fgw_poller_wait(self.epfd, events, MAX_EVENTS, timeout_ms)
            if n < 0:
                if errno == EINTR:
                    PyErr_CheckSignals()
                    continue
                PyErr_SetFromErrno(OSError)
            for i in range(n):
                handle = <Handle>events[i].ptr
                try:
                    handle.on_event(events[i].events)
                except MemoryError:
                    log.error("out of memory on a connection; closing it")
                    if isinstance(handle, Connection):
                        (<Connection>handle).close()
                except Exception:
                    log.exception("internal error on a connection; closing it")
                    if isinstance(handle, Connection):
                        (<Connection>handle).close()
            self.closing = []
            if self.retry_write:
                self.retry_writes()
                self.closing = []
            now = monotonic()
            if now >= next_sweep:
                next_sweep = now + 1.0
                self.sweep(now)
                self.closing = []
                if self.tick is not None:
                    self.tick()
        for conn in list(self.conns.values()):
            (<Connection>conn).close()
        self.closing = []
