# The event loop of one worker process.
#
# Strategy: every connection is registered once with the poller (epoll on Linux,
# kqueue on macOS/BSD: csrc/poller.h), edge-triggered for reading and writing, so a
# keep-alive request costs no epoll_ctl; FASTGW_POLLER=poll selects a level-triggered
# poll(2) fallback that recomputes interest from the connections' state each time. A
# connection remembers whether its socket may still hold unread bytes (`readable`,
# cleared by a short read or EAGAIN) and whether it is waiting for output space
# (`paused`). Protocols parse straight out of the connection's reusable buffer and
# queue bytes objects that go out in one sendmsg (scatter/gather) per batch.
# When an application running inline must block (reading a request body that has
# not arrived, writing a response faster than the client reads) the connection
# waits on its own fd with poll(2), bounded by io_timeout: the worker is busy with
# that request anyway. Timers are a once-a-second sweep over the connections.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport errno, EAGAIN, EINTR, ECONNABORTED, EMFILE, ENFILE
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
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)
    int shutdown(int fd, int how)
    int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
    enum:
        SHUT_WR
        AF_INET
        AF_INET6
        AF_UNIX
        IPPROTO_TCP

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


cdef enum:
    MAX_EVENTS = 256
    MAX_IOV = 64
    READ_BUFFER_SIZE = 16384
    ACCEPT_BATCH = 64
    # Connections whose first request is answered during one accept batch, at most.
    ACCEPT_SERVE_BATCH = 16

# After a response that closes the connection, how long to read and discard what
# the client still sends, so the kernel does not answer it with a reset.
cdef double LINGER_TIMEOUT = 2.0
# When a worker stops, an idle connection is closed only after this long without
# traffic: a connection just accepted, or a keep-alive one, may have a request on
# the way, which is then answered (with Connection: close) instead of reset.
cdef double STOP_IDLE_GRACE = 1.0

WAIT_READ = POLLIN
WAIT_WRITE = POLLOUT
SEND_MORE = MSG_MORE


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


cdef class Protocol:
    """What a wire protocol implements; it owns no socket, only parses and queues."""

    cdef void data_received(self) except *:
        pass

    cdef void write_drained(self) except *:
        pass

    cdef void eof_received(self) except *:
        self.conn.close()

    cdef bint is_idle(self):
        return self.conn.rend == self.conn.rstart

    cdef void resume(self) except *:
        """Back on the loop thread after a request ran in an application thread."""
        pass

    cdef double deadline(self):
        """Monotonic time by which the connection must make progress; 0 for none."""
        return 0.0

    cdef void timed_out(self) except *:
        self.conn.close()

    cdef void connection_lost(self):
        pass

    cdef int start_response_head(self, str status) except -1:
        """Record the status code of a head about to be sent; HEAD, 1xx, 204 and 304
        responses carry no body. Returns the code."""
        cdef int code = (ord(status[0]) - 48) * 100 + (ord(status[1]) - 48) * 10 + ord(status[2]) - 48
        self.status_code = code
        self.body_allowed = not (code < 200 or code == 204 or code == 304 or self.head_request)
        return code

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
                    self.protocol.write_drained()
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

    def read_into(self, Py_ssize_t limit):
        """Blocking read of up to `limit` bytes straight from the socket (buffer must be empty)."""
        cdef bytearray chunk = bytearray(limit)
        cdef Py_ssize_t n
        cdef char *p = chunk
        while True:
            with nogil:
                n = recv(self.fd, p, limit, 0)
            if n > 0:
                del chunk[n:]
                return bytes(chunk)
            if n == 0:
                self.eof = True
                raise ClientDisconnected("client closed the connection in the middle of a request")
            if errno == EINTR:
                continue
            if errno == EAGAIN:
                self.readable = False
                self.wait(POLLIN)
                continue
            raise ClientDisconnected(f"reading from the client failed: {os.strerror(errno)}")

    cdef void queue(self, bytes data):
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if n:
            self.out.append(data)
            self.out_bytes += n

    cdef void set_nodelay(self):
        cdef int one = 1
        setsockopt(self.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
        self.nodelay = True

    cdef int flush(self, int flags) except -1:
        """Send queued bytes without blocking: 1 when all are out, 0 when the socket is full."""
        cdef iovec iov[MAX_IOV]
        cdef msghdr msg
        cdef Py_ssize_t i, count, n, size
        cdef list out = self.out
        cdef Py_ssize_t total = len(out)
        cdef bytes item
        if not self.nodelay and not self.protocol.finished:
            # Part of a response goes out and more follows (a stream, sendfile after the
            # head): Nagle's algorithm would hold a small tail back for the client's ACK.
            self.set_nodelay()
        while self.out_index < total:
            count = 0
            i = self.out_index
            while i < total and count < MAX_IOV:
                item = <bytes>out[i]
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
            while n > 0:
                item = <bytes>out[self.out_index]
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
        return 1

    cdef void flush_blocking(self, int flags) except *:
        while not self.flush(flags):
            self.wait(POLLOUT)

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
                if events == POLLOUT and pfd.revents & (POLLERR | POLLHUP) and not pfd.revents & POLLOUT:
                    raise ClientDisconnected("client closed the connection while a response was sent")
                return
            if rc == 0:
                raise ClientDisconnected(
                    f"client sent or accepted nothing for {self.loop.io_timeout:g} s")
            if errno == EINTR:
                PyErr_CheckSignals()
                timeout_ms = max(0, <int>((deadline - monotonic()) * 1000))
                continue
            PyErr_SetFromErrno(OSError)

    cdef void sendfile_blocking(self, int infd, off_t offset, Py_ssize_t count) except *:
        cdef Py_ssize_t n
        while count > 0:
            with nogil:
                n = fgw_sendfile(self.fd, infd, &offset, min(count, 1 << 30))
            if n > 0:
                count -= n
            elif n == 0:
                raise ClientDisconnected("the file shrank while it was being sent")
            elif errno == EINTR:
                continue
            elif errno == EAGAIN:
                self.wait(POLLOUT)
            else:
                raise ClientDisconnected(f"sendfile to the client failed: {os.strerror(errno)}")

    def send_file(self, int infd, off_t offset, Py_ssize_t count):
        """Flush what is queued (the head rides with MSG_MORE), then sendfile(2) the range."""
        self.flush_blocking(MSG_MORE)
        self.sendfile_blocking(infd, offset, count)

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

    cdef void close_after_flush(self, bint linger=True):
        """Close once queued output is out. With `linger`, half-close first and read what
        the client still sends until it closes, so unread input does not make the kernel
        reset the connection (and lose the response) at the client."""
        self.want_close = True
        self.linger = linger
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
        self.rstart = self.rend = 0
        if self.readable:
            self.read_ready()

    cdef void close(self):
        if self.closed:
            return
        if self.owned and pthread_self() != self.loop.thread:
            self.close_requested = True
            return
        self.closed = True
        c_close(self.fd)
        self.loop.forget(self)
        self.protocol.connection_lost()


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
        for conn in list(self.conns.values()):
            if conn.closed:
                continue
            if conn.lingering:
                if now - conn.last_active > LINGER_TIMEOUT:
                    conn.close()
            elif self.stopping and conn.protocol.is_idle() and now - conn.last_active > STOP_IDLE_GRACE:
                conn.close()
            else:
                deadline = conn.protocol.deadline()
                if deadline and now > deadline:
                    try:
                        conn.protocol.timed_out()
                    except Exception:
                        log.exception("internal error timing out a connection; closing it")
                        conn.close()

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
            if self.stopping:
                self.sweep(monotonic())
                self.closing = []
                if not self.conns or monotonic() > self.stop_deadline:
                    break
            timeout_ms = 1000 if not self.stopping else 100
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
