# A socket's byte streams: the read buffer the protocols parse in place, and the
# output queue that never waits on the client.
#
# Strategy: the read buffer is one malloc'd block, compacted or doubled only when full,
# so a keep-alive request costs no allocation. The output queue holds bytes objects
# (by reference) and file ranges (FileRange, sent with sendfile); flush() sends what
# the socket takes, one sendmsg for a run of bytes and sendfile per range, and keeps
# the rest with the offset where it stopped. Body bytes from a writer that cannot be
# parked (CGI, upstreams, write()) spill to an unlinked file past SPILL_THRESHOLD, so
# memory stays bounded; a client more than SPOOL_MAX behind counts as gone. Small
# descriptor owners (OwnedFd) close files when the last range that needs them is sent.
# A TLS connection's reads and writes go through its TlsLayer (_tls.pyx) instead: the
# buffers and the queue stay the same, only the bytes on the wire are records.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdlib cimport realloc, free
from libc.string cimport memmove, strerror
from posix.unistd cimport close as c_close

from fastgw._sys cimport *

import os

from fastgw.errors import ClientDisconnected
from fastgw.spool import open_unlinked

cdef enum:
    MAX_IOV = 64

cdef enum:
    # Push-style body bytes go to the connection's spool file past this much queued.
    SPILL_THRESHOLD = 1048576

# What one connection may spill before the client counts as gone (nginx's
# proxy_max_temp_file_size default): the disk a stalled reader costs is bounded too.
cdef long long SPOOL_MAX = 1 << 30

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


cdef class TlsLayer:
    cdef Py_ssize_t recv(self, Stream s) except -2:
        return 0

    cdef int flush(self, Stream s, int flags) except -1:
        return 1

    cdef void close_notify(self, Stream s):
        pass

    cdef dict environ(self):
        return None


cdef class Stream(Handle):
    """A socket's read buffer and output queue (Connection adds the loop and protocol)."""

    def use_tls(self, TlsLayer layer):
        """Read and write through `layer` from now on (before the first byte is read)."""
        self.tls = layer

    def __dealloc__(self):
        if self.rbuf != NULL:
            free(self.rbuf)
            self.rbuf = NULL

    cdef bint more_coming(self):
        """Whether the response being flushed has more bytes to come (then a partial
        write turns TCP_NODELAY on, so its tail is not held back by Nagle)."""
        return False

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
        if self.tls is not None:
            return self.tls.recv(self)
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

    cdef void wait(self, short events) except *:
        """Block (GIL released) until the socket is ready for `events`, at most io_timeout."""
        cdef pollfd pfd
        cdef int rc
        cdef int timeout_ms = <int>(self.io_timeout * 1000)
        cdef double deadline = monotonic() + self.io_timeout
        pfd.fd = self.fd
        pfd.events = events
        while True:
            with nogil:
                rc = poll(&pfd, 1, timeout_ms)
            if rc > 0:
                return
            if rc == 0:
                raise ClientDisconnected(
                    f"client sent nothing for {self.io_timeout:g} s")
            if errno == EINTR:
                PyErr_CheckSignals()
                timeout_ms = max(0, <int>((deadline - monotonic()) * 1000))
                continue
            PyErr_SetFromErrno(OSError)

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
            self.spool = own_fd(open_unlinked(self.spool_dir))
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
        if self.tls is not None:
            return self.tls.flush(self, flags)
        if not self.nodelay and self.more_coming():
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
