# The event loop of one worker process.
#
# Strategy: every connection is registered once with the poller (epoll on Linux,
# kqueue on macOS/BSD: csrc/poller.h), edge-triggered for reading and writing, so a
# keep-alive request costs no epoll_ctl; FASTGW_POLLER=poll selects a level-triggered
# poll(2) fallback that recomputes interest from the connections' state each time. A
# connection remembers whether its socket may still hold unread bytes (`readable`,
# cleared by a short read or EAGAIN) and whether it is waiting for output space
# (`paused`). Protocols parse straight out of the connection's reusable buffer and
# queue bytes objects and file ranges (FileRange) that go out with one sendmsg per
# batch of bytes and sendfile per range.
#
# Output never waits on a client: what the socket does not take stays queued and
# goes out on writability, from where it stopped. A response body that is produced
# step by step (a WSGI generator) is parked by its producer when the queue passes
# HIGH_WATER and resumed, inline or on an application thread, once the queue is
# empty; push-style writers that cannot be parked (the legacy write() callable,
# CGI and upstream output) spill to an unlinked file past SPILL_THRESHOLD, so
# memory stays bounded either way. A client that takes nothing for io_timeout is
# dropped (reset) and its producer closed. Timers are a once-a-second sweep.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport errno, EAGAIN, EINTR, ECONNABORTED, EMFILE, ENFILE
from libc.string cimport strerror
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memmove
from posix.types cimport off_t
from posix.unistd cimport close as c_close
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

import collections
import logging
import os
import socket

from fastgw.errors import ClientDisconnected
from fastgw.spool import open_unlinked

log = logging.getLogger("fastgw.error")


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct sockaddr_storage:
        unsigned short ss_family
    struct iovec:
        void *iov_base
        size_t iov_len
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct linger:
        int l_onoff
        int l_linger
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)
    int shutdown(int fd, int how)
    int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
    enum:
        SHUT_WR
        MSG_PEEK
        MSG_DONTWAIT
        AF_INET
        AF_INET6
        AF_UNIX
        IPPROTO_TCP
        SOL_SOCKET
        SO_LINGER

cdef extern from "poller.h" nogil:
    const char *FGW_POLLER_NAME
    int fgw_poller_create()
    int fgw_poller_add(int pfd, int fd, void *ptr, int listener)
    int fgw_poller_del(int pfd, int fd)
    int fgw_poller_wait(int pfd, fgw_event *out, int max, int timeout_ms)
    enum:
        FGW_IN
        FGW_OUT
        FGW_ERR
        FGW_HUP
        FGW_RDHUP

cdef extern from "compat.h" nogil:
    int fgw_accept(int fd, sockaddr *addr, socklen_t *len)
    ssize_t fgw_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
    enum:
        MSG_NOSIGNAL
        MSG_MORE

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short)

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP

cdef extern from "<pthread.h>" nogil:
    unsigned long pthread_self()

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t n)
    ssize_t write(int fd, const void *buf, size_t n)
    ssize_t pwrite(int fd, const void *buf, size_t n, off_t offset)

cdef extern from "<fcntl.h>" nogil:
    int fcntl(int fd, int cmd, int arg)
    enum:
        F_DUPFD_CLOEXEC


cdef enum:
    MAX_EVENTS = 256
    MAX_IOV = 64
    READ_BUFFER_SIZE = 16384
    ACCEPT_BATCH = 64
    # Connections whose first request is answered during one accept batch, at most.
    ACCEPT_SERVE_BATCH = 16

cdef enum:
    # A parked producer resumes when the queue is empty and stops when it passes this:
    # what a slow reader costs in memory, beside the kernel's socket buffer.
    HIGH_WATER = 65536
    # Push-style body bytes go to the connection's spool file past this much queued.
    SPILL_THRESHOLD = 1048576

# What one connection may spill before the client counts as gone (nginx's
# proxy_max_temp_file_size default): the disk a stalled reader costs is bounded too.
cdef long long SPOOL_MAX = 1 << 30

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


cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef object peer_address(sockaddr_storage *addr):
    cdef char text[64]
    if addr.ss_family == AF_INET:
        inet_ntop(AF_INET, &(<sockaddr_in *>addr).sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs((<sockaddr_in *>addr).sin_port))
    if addr.ss_family == AF_INET6:
        inet_ntop(AF_INET6, &(<sockaddr_in6 *>addr).sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs((<sockaddr_in6 *>addr).sin6_port))
    return None


cdef class Handle:
    cdef void on_event(self, uint32_t events) except *:
        pass


cdef class OwnedFd:
    """A descriptor closed when the last FileRange (or spool) holding it is gone."""

    def __dealloc__(self):
        if self.fd >= 0:
            c_close(self.fd)


cdef int write_all(int fd, const char *data, Py_ssize_t n, long long offset,
                   str what) except -1:
    """pwrite(2) all of it at `offset` (a temporary file: short writes only when the disk
    is full, which raises)."""
    cdef Py_ssize_t done = 0
    cdef ssize_t w
    while done < n:
        w = pwrite(fd, data + done, n - done, offset + done)
        if w < 0:
            if errno == EINTR:
                continue
            raise OSError(errno, f"cannot {what}: {strerror(errno).decode()}")
        done += w
    return 0


cdef OwnedFd own_fd(int fd):
    cdef OwnedFd holder = OwnedFd.__new__(OwnedFd)
    holder.fd = fd
    return holder


cdef class FileRange:
    pass


cdef class Protocol:
    """What a wire protocol implements; it owns no socket, only parses and queues.

    The base also carries what every protocol's response shares: the status, the
    body bytes counted, a parked body producer and the settled callback.
    """

    cdef void data_received(self) except *:
        pass

    cdef void write_drained(self) except *:
        """The queue is empty again and no producer is parked: read on."""
        pass

    cdef void eof_received(self) except *:
        self.conn.close()

    cdef bint is_idle(self):
        return self.conn.rend == self.conn.rstart

    cdef void resume(self) except *:
        """After the request (or its parked producer) ran, inline or in an application
        thread: end it or wait again, send what is queued, read on."""
        pass

    cdef void after_request(self) except *:
        pass

    cdef double deadline(self):
        """Monotonic time by which the connection must make progress; 0 for none."""
        return 0.0

    cdef void timed_out(self) except *:
        self.conn.close()

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

    cdef void run_step(self, object handler, object req) except *:
        """Call the handler for a new request, or the next steps of the producer it
        parked (what every protocol's call_handler runs, inline or on a thread)."""
        cdef object producer = self.parked
        if producer is None:
            handler(req, self)
        else:
            self.parked = None
            producer.resume()

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


cdef class BodyReader:
    """wsgi.input: the request body, read from the connection as the application asks.

    This base reads `remaining` bytes straight off the connection (Content-Length,
    SCGI, uwsgi); protocols with framing override available() and take().
    """

    cdef Py_ssize_t available(self) except -1:
        """Body bytes ready to take (waiting for some if needed); 0 once the body is over."""
        cdef Connection conn = self.conn
        cdef Py_ssize_t avail
        self.started = True
        if self.remaining == 0:
            self.done = True
            return 0
        avail = conn.rend - conn.rstart
        if avail == 0:
            conn.fill_blocking()
            avail = conn.rend - conn.rstart
        return avail if avail < self.remaining else self.remaining

    cdef bytes take(self, Py_ssize_t n):
        cdef Connection conn = self.conn
        cdef bytes data = PyBytes_FromStringAndSize(conn.rbuf + conn.rstart, n)
        conn.rstart += n
        self.remaining -= n
        return data

    def read(self, size=-1):
        cdef Py_ssize_t want, avail
        cdef list parts = []
        cdef bytes part
        if size is None or size < 0:
            while True:
                avail = self.available()
                if avail == 0:
                    break
                parts.append(self.take(avail))
            return b"".join(parts)
        want = size
        while want > 0:
            avail = self.available()
            if avail == 0:
                break
            part = self.take(avail if avail < want else want)
            parts.append(part)
            want -= len(part)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    cdef const char *peek(self):
        """Where the bytes that available() counted start."""
        return self.conn.rbuf + self.conn.rstart

    def readline(self, size=-1):
        cdef Py_ssize_t limit, avail, n
        cdef Py_ssize_t total = 0
        cdef list parts = []
        cdef const char *p
        cdef const char *nl
        if size is None:
            size = -1
        while size < 0 or total < size:
            avail = self.available()
            if avail == 0:
                break
            limit = avail if size < 0 or avail < size - total else size - total
            p = self.peek()
            nl = <const char *>memchr(p, b'\n', limit)
            n = (nl - p) + 1 if nl != NULL else limit
            parts.append(self.take(n))
            total += n
            if nl != NULL:
                break
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    cdef bint drain(self, Py_ssize_t limit) except -1:
        """Discard the unread rest of the body if it is small; True if it was all read."""
        cdef Py_ssize_t avail, total = 0
        while total <= limit:
            avail = self.available()
            if avail == 0:
                return True
            self.take(avail)
            total += avail
        return False


cdef dict ENVIRON_KEYS = {}
cdef dict SERVER_NAMES = {}
cdef dict DEFAULT_PORTS = {"http": "80", "https": "443"}
cdef Py_ssize_t CACHE_LIMIT = 1024


cdef object environ_key(str name):
    """'User-Agent' -> 'HTTP_USER_AGENT'; None for names with '_' (spoofable, as in nginx)."""
    cdef object key
    if "_" in name:
        key = None
    else:
        key = name.upper().replace("-", "_")
        if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
            key = "HTTP_" + key
    if len(ENVIRON_KEYS) < CACHE_LIMIT:
        ENVIRON_KEYS[name] = key
    return key


cdef tuple split_host(str host, str scheme):
    """'example.com:8080' -> ('example.com', '8080'); '[::1]' -> ('::1', default port)."""
    cdef tuple found = SERVER_NAMES.get((host, scheme))
    if found is not None:
        return found
    name, port = host, DEFAULT_PORTS.get(scheme, "80")
    if host.startswith("["):
        close = host.find("]")
        if close > 0:
            name = host[1:close]
            if host[close + 1:close + 2] == ":" and host[close + 2:].isdigit():
                port = host[close + 2:]
    elif ":" in host:
        name, _, maybe_port = host.rpartition(":")
        if maybe_port.isdigit():
            port = maybe_port
        else:
            name = host
    found = (name, port)
    if len(SERVER_NAMES) < CACHE_LIMIT:
        SERVER_NAMES[(host, scheme)] = found
    return found


cdef void put_request(dict env, Request req) except *:
    env["REQUEST_METHOD"] = req.method
    env["SCRIPT_NAME"] = req.script_name
    env["PATH_INFO"] = req.path
    env["QUERY_STRING"] = req.query
    env["REQUEST_URI"] = req.target
    env["SERVER_PROTOCOL"] = req.version
    env["wsgi.input"] = req.body
    env["wsgi.url_scheme"] = req.scheme


def cgi_environ(Request req, dict template):
    """The environ of a request that came as CGI variables (FastCGI, SCGI, uwsgi): the
    web server's variables, then the request as the router split it."""
    cdef dict env = template.copy()
    env.update(req.params)
    put_request(env, req)
    if req.errors is not None:
        env["wsgi.errors"] = req.errors
    env.setdefault("SERVER_NAME", req.sockname[0])
    env.setdefault("SERVER_PORT", str(req.sockname[1]))
    env.setdefault("REMOTE_ADDR", req.peer[0] if req.peer else "")
    return env


def http_environ(Request req, dict template):
    """The PEP 3333 environ of a request that carries HTTP headers, built in C: the
    template, the request line, the peer, HTTP_* (repeats joined with ", ", cookies
    with "; "), and SERVER_NAME/SERVER_PORT from Host or the socket."""
    cdef dict env = template.copy()
    cdef object key, prev, host
    cdef tuple item
    put_request(env, req)
    if req.peer is not None:
        env["REMOTE_ADDR"] = req.peer[0]
        env["REMOTE_PORT"] = str(req.peer[1])
    else:
        env["REMOTE_ADDR"] = ""
    for item in req.headers:
        key = ENVIRON_KEYS.get(item[0], 0)
        if key is 0:
            key = environ_key(item[0])
        if key is None:
            continue
        prev = env.get(key)
        if prev is None:
            env[key] = item[1]
        elif key != "CONTENT_LENGTH":
            env[key] = prev + ("; " if key == "HTTP_COOKIE" else ", ") + item[1]
    host = env.get("HTTP_HOST")
    if host:
        env["SERVER_NAME"], env["SERVER_PORT"] = split_host(host, req.scheme)
    elif type(req.sockname) is tuple:
        env["SERVER_NAME"], env["SERVER_PORT"] = req.sockname[0], str(req.sockname[1])
    else:
        env["SERVER_NAME"], env["SERVER_PORT"] = "localhost", DEFAULT_PORTS.get(req.scheme, "80")
    return env


cdef class Request:
    """One request as any protocol delivers it to the router and handlers."""

    def __repr__(self):
        return f"<Request {self.method} {self.target!r} {self.version}>"


cdef class Listener(Handle):
    cdef Loop loop
    cdef object sock
    cdef object sockname
    cdef str scheme
    cdef object protocol_factory
    cdef bint tcp

    cdef void on_event(self, uint32_t events) except *:
        cdef sockaddr_storage addr
        cdef socklen_t addrlen
        cdef int cfd
        cdef int inline = 0
        cdef unsigned long long served
        cdef Connection conn
        cdef int i
        for i in range(ACCEPT_BATCH):
            if self.loop.stopping:
                return
            if len(self.loop.conns) >= self.loop.max_connections:
                log.warning("%d connections open, the --max-connections of this worker; "
                            "not accepting more until some close", len(self.loop.conns))
                self.loop.pause_accepting(True)
                return
            addrlen = sizeof(addr)
            cfd = fgw_accept(self.fd, <sockaddr *>&addr, &addrlen)
            if cfd < 0:
                if errno == EINTR or errno == ECONNABORTED:
                    continue
                if errno == EAGAIN:
                    return
                if errno == EMFILE or errno == ENFILE:
                    log.error("cannot accept a connection: too many open files (raise `ulimit -n`)")
                    return
                PyErr_SetFromErrno(OSError)
            conn = Connection.__new__(Connection)
            conn.fd = cfd
            conn.nodelay = not self.tcp
            conn.loop = self.loop
            conn.peer = peer_address(&addr)
            conn.sockname = self.sockname
            conn.scheme = self.scheme
            conn.out = []
            conn.last_active = monotonic()
            conn.rbuf = <char *>malloc(READ_BUFFER_SIZE)
            if conn.rbuf == NULL:
                c_close(cfd)
                raise MemoryError()
            conn.rcap = READ_BUFFER_SIZE
            conn.protocol = self.protocol_factory(conn)
            conn.protocol.conn = conn
            self.loop.conns[cfd] = conn
            # Read before registering: under load the request is usually there already,
            # and a connection answered and closed at once (Connection: close) then costs
            # no epoll_ctl. Registering later loses nothing: an edge-triggered ADD reports
            # data that arrived in between.
            conn.readable = True
            served = self.loop.requests
            try:
                conn.read_ready()
            except Exception:
                log.exception("internal error on a connection; closing it")
                conn.close()
            if not conn.closed:
                self.loop.register(conn, False)
            if self.loop.requests != served:
                inline += 1
                if inline >= ACCEPT_SERVE_BATCH:
                    return  # the other connections' events first; the listener stays ready


cdef class Connection(Handle):
    """A client socket: its read buffer, its queue of outgoing bytes, its state."""

    def __dealloc__(self):
        if self.rbuf != NULL:
            free(self.rbuf)
            self.rbuf = NULL

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

    cdef Py_ssize_t recv_some(self) except -2:
        """Read once into the buffer: >0 bytes read, 0 at EOF, -1 if nothing is there."""
        cdef Py_ssize_t space, n
        cdef char *grown
        if self.rstart == self.rend:
            self.rstart = self.rend = 0
        elif self.rend == self.rcap and self.rstart > 0:
            memmove(self.rbuf, self.rbuf + self.rstart, self.rend - self.rstart)
            self.rend -= self.rstart
            self.rstart = 0
        if self.rend == self.rcap:
            grown = <char *>realloc(self.rbuf, self.rcap * 2)
            if grown == NULL:
                raise MemoryError()
            self.rbuf = grown
            self.rcap *= 2
        space = self.rcap - self.rend
        while True:
            n = recv(self.fd, self.rbuf + self.rend, space, 0)
            if n >= 0:
                break
            if errno == EINTR:
                continue
            self.readable = False
            if errno == EAGAIN:
                return -1
            return 0
        if n < space and not self.hup:
            self.readable = False
        self.rend += n
        return n

    cdef Py_ssize_t fill_blocking(self) except -1:
        """Read at least one byte into the buffer, waiting for it; raise if the client left."""
        cdef Py_ssize_t n
        while True:
            n = self.recv_some()
            if n > 0:
                return n
            if n == 0:
                self.eof = True
                raise ClientDisconnected("client closed the connection in the middle of a request")
            self.wait(POLLIN)

    cdef void queue(self, bytes data):
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if n:
            self.out.append(data)
            self.out_bytes += n

    cdef void queue_body(self, bytes data) except *:
        """Queue response body bytes: by reference while little is waiting, else (the
        client lags behind a writer that cannot be parked) appended to the spool file."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), done = 0
        cdef ssize_t w
        cdef const char *p = PyBytes_AS_STRING(data)
        cdef FileRange last
        if self.out_bytes < SPILL_THRESHOLD or n < 4096:
            self.queue(data)
            return
        if self.spool is None:
            self.spool = own_fd(open_unlinked(self.loop.spool_dir))
            self.spool_end = 0
        elif self.spool_end + n > SPOOL_MAX:
            self.close_reason = (f"the client fell {SPOOL_MAX >> 20} MiB behind the response "
                                 f"(the spool limit)")
            raise ClientDisconnected(self.close_reason)
        write_all(self.spool.fd, p, n, self.spool_end, "spill a response to a temporary file")
        # Contiguous spilled bytes are one range (no framing in between).
        if self.out_index < len(self.out):
            item = self.out[len(self.out) - 1]
            if type(item) is FileRange:
                last = <FileRange>item
                if last.holder is self.spool and last.offset + last.count == self.spool_end:
                    last.count += n
                    self.spool_end += n
                    self.out_bytes += n
                    return
        last = FileRange.__new__(FileRange)
        last.holder = self.spool
        last.fd = self.spool.fd
        last.offset = self.spool_end
        last.count = n
        self.out.append(last)
        self.spool_end += n
        self.out_bytes += n

    cdef void queue_file(self, int fd, long long offset, Py_ssize_t count) except *:
        """Queue a range of an open file, borrowed until adopt_files()."""
        cdef FileRange item
        if count <= 0:
            return
        item = FileRange.__new__(FileRange)
        item.fd = fd
        item.offset = offset
        item.count = count
        self.out.append(item)
        self.out_bytes += count

    cdef void adopt_files(self) except *:
        """The handler may close its descriptors once send_file() returns: the ranges
        still queued get a duplicate of theirs (one per source file and response)."""
        cdef Py_ssize_t i
        cdef FileRange item
        cdef int copy
        for i in range(self.out_index, len(self.out)):
            if type(self.out[i]) is not FileRange:
                continue
            item = <FileRange>self.out[i]
            if item.holder is not None:
                continue
            if self.dup_copy is None or self.dup_source != item.fd:
                copy = fcntl(item.fd, F_DUPFD_CLOEXEC, 0)
                if copy < 0:
                    PyErr_SetFromErrno(OSError)
                self.dup_copy = own_fd(copy)
                self.dup_source = item.fd
            item.holder = self.dup_copy
            item.fd = self.dup_copy.fd

    def send_file(self, int infd, off_t offset, Py_ssize_t count):
        """Queue a file range after what is queued (the head rides with MSG_MORE), send
        what the socket takes now, and keep the rest (with its own descriptor) queued."""
        self.queue_file(infd, offset, count)
        try:
            self.flush(0)
        finally:
            self.adopt_files()

    cdef void set_nodelay(self):
        cdef int one = 1
        setsockopt(self.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
        self.nodelay = True

    cdef int send_range(self, FileRange item) except -1:
        """sendfile(2) the range as far as the socket takes it: 1 when it is all out."""
        cdef ssize_t n
        cdef off_t offset
        while item.count > 0:
            offset = item.offset
            n = fgw_sendfile(self.fd, item.fd, &offset, min(item.count, 1 << 30))
            if n > 0:
                item.offset += n
                item.count -= n
                self.out_bytes -= n
                self.last_active = monotonic()
            elif n == 0:
                raise ClientDisconnected("the file shrank while it was being sent")
            elif errno == EINTR:
                continue
            elif errno == EAGAIN:
                return 0
            else:
                raise ClientDisconnected(f"sendfile to the client failed: {os.strerror(errno)}")
        return 1

    cdef int flush(self, int flags) except -1:
        """Send what is queued without blocking: 1 when all is out, 0 when the socket is full."""
        cdef iovec iov[MAX_IOV]
        cdef msghdr msg
        cdef Py_ssize_t i, count, n, size
        cdef list out = self.out
        cdef Py_ssize_t total = len(out)
        cdef object item
        if not self.nodelay and not self.protocol.finished:
            # Part of a response goes out and more follows (a stream, sendfile after the
            # head): Nagle's algorithm would hold a small tail back for the client's ACK.
            self.set_nodelay()
        while self.out_index < total:
            item = out[self.out_index]
            if type(item) is not bytes:
                if not self.send_range(<FileRange>item):
                    return 0
                self.out_index += 1
                continue
            count = 0
            i = self.out_index
            while i < total and count < MAX_IOV:
                item = out[i]
                if type(item) is not bytes:
                    break
                if count == 0:
                    iov[0].iov_base = PyBytes_AS_STRING(item) + self.out_offset
                    iov[0].iov_len = PyBytes_GET_SIZE(item) - self.out_offset
                else:
                    iov[count].iov_base = PyBytes_AS_STRING(item)
                    iov[count].iov_len = PyBytes_GET_SIZE(item)
                count += 1
                i += 1
            msg.msg_name = NULL
            msg.msg_namelen = 0
            msg.msg_iov = iov
            msg.msg_iovlen = count
            msg.msg_control = NULL
            msg.msg_controllen = 0
            msg.msg_flags = 0
            n = sendmsg(self.fd, &msg, MSG_NOSIGNAL | (flags if i == total else MSG_MORE))
            if n < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    return 0
                raise ClientDisconnected(f"writing to the client failed: {os.strerror(errno)}")
            self.out_bytes -= n
            if self.out_bytes:
                # Progress of a response that goes out in pieces restarts the send timeout.
                self.last_active = monotonic()
            while n > 0:
                item = out[self.out_index]
                size = PyBytes_GET_SIZE(item) - self.out_offset
                if n >= size:
                    n -= size
                    self.out_index += 1
                    self.out_offset = 0
                else:
                    self.out_offset += n
                    n = 0
        del out[:]
        self.out_index = 0
        self.out_offset = 0
        self.spool = None
        return 1

    cdef void wait(self, short events) except *:
        """Block (GIL released) until the socket is ready for `events`, at most io_timeout."""
        cdef pollfd pfd
        cdef int rc
        cdef int timeout_ms = <int>(self.loop.io_timeout * 1000)
        cdef double deadline = monotonic() + self.loop.io_timeout
        pfd.fd = self.fd
        pfd.events = events
        while True:
            with nogil:
                rc = poll(&pfd, 1, timeout_ms)
            if rc > 0:
                return
            if rc == 0:
                raise ClientDisconnected(
                    f"client sent nothing for {self.loop.io_timeout:g} s")
            if errno == EINTR:
                PyErr_CheckSignals()
                timeout_ms = max(0, <int>((deadline - monotonic()) * 1000))
                continue
            PyErr_SetFromErrno(OSError)

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
        self.max_connections = 4096
        self.io_timeout = 30.0
        self.wake_r = self.wake_w = -1
        self.thread = pthread_self()
        self.graceful_timeout = 30.0

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

    def add_listener(self, sock, str scheme, protocol_factory):
        """Serve `sock` (a listening socket shared with sibling workers) with a protocol."""
        cdef Listener listener = Listener.__new__(Listener)
        listener.fd = sock.fileno()
        listener.loop = self
        listener.sock = sock
        listener.sockname = sock.getsockname()
        listener.scheme = scheme
        listener.protocol_factory = protocol_factory
        listener.tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
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
        cdef Listener listener
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
        cdef Listener listener
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
        cdef Listener listener
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
