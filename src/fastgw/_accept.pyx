# Accepting connections: a listener of one worker's loop.
#
# Strategy: accept in batches (ACCEPT_BATCH per readiness event, so one busy listener
# cannot starve the connections), give each new socket a Connection with its read
# buffer and its protocol, and read at once, before the socket is registered with
# the poller: under load the request is usually there already, and a connection
# answered and closed at once costs no epoll_ctl. Past --max-connections the loop
# stops accepting until some close; EMFILE is logged, not fatal.
from cpython.exc cimport PyErr_SetFromErrno
from libc.errno cimport errno, EAGAIN, EINTR, ECONNABORTED, EMFILE, ENFILE
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc
from posix.unistd cimport close as c_close

from fastgw._loop cimport Connection, Loop
from fastgw._stream cimport Handle
from fastgw._sys cimport *

import logging
import socket

log = logging.getLogger("fastgw.error")

cdef enum:
    READ_BUFFER_SIZE = 16384
    ACCEPT_BATCH = 64
    # Connections whose first request is answered during one accept batch, at most.
    ACCEPT_SERVE_BATCH = 16


cdef object peer_address(sockaddr_storage *addr):
    cdef char text[64]
    if addr.ss_family == AF_INET:
        inet_ntop(AF_INET, &(<sockaddr_in *>addr).sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs((<sockaddr_in *>addr).sin_port))
    if addr.ss_family == AF_INET6:
        inet_ntop(AF_INET6, &(<sockaddr_in6 *>addr).sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs((<sockaddr_in6 *>addr).sin6_port))
    return None


cdef class Listener(Handle):
    """A listening socket (shared with the sibling workers) of one worker's loop."""

    cdef Loop loop
    cdef object sock
    cdef object sockname
    cdef str scheme
    cdef object protocol_factory
    cdef bint tcp

    def __init__(self, Loop loop, sock, str scheme, protocol_factory):
        self.fd = sock.fileno()
        self.loop = loop
        self.sock = sock
        self.sockname = sock.getsockname()
        self.scheme = scheme
        self.protocol_factory = protocol_factory
        self.tcp = sock.family in (socket.AF_INET, socket.AF_INET6)

    cdef void on_event(self, uint32_t events) except *:
        cdef sockaddr_storage addr
        cdef socklen_t addrlen
        cdef int cfd
        cdef int inline = 0
        cdef unsigned long long served
        cdef Connection conn
        cdef int i
        for i in range(ACCEPT_BATCH):
            # a worker told to stop (stop_soon: its successors are ready) takes no more
            if self.loop.stopping or self.loop.stop_soon:
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
            conn.io_timeout = self.loop.io_timeout
            conn.spool_dir = self.loop.spool_dir
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
