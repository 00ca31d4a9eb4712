# A socket's read buffer and output queue (see _stream.pyx).
from libc.stdint cimport uint32_t


cdef class Handle:
    # what the poller reports an event for: a listener, a connection, the waker
    cdef int fd
    cdef void on_event(self, uint32_t events) except *


cdef class OwnedFd:
    cdef int fd


cdef OwnedFd own_fd(int fd)
cdef int write_all(int fd, const char *data, Py_ssize_t n, long long offset,
                   str what) except -1


cdef class FileRange:
    # A part of a file in a connection's output queue; `holder` owns the descriptor
    # once the handler that queued it may have closed its own (None: borrowed).
    cdef int fd
    cdef long long offset
    cdef Py_ssize_t count
    cdef OwnedFd holder


cdef class TlsLayer:
    # What a TLS connection puts between its socket and its Stream's buffers (_tls.pyx):
    # recv() and flush() do what Stream.recv_some() and Stream.flush() do, in records.
    # the handshake is done (until then the connection's deadline is the head's)
    cdef readonly bint established
    cdef Py_ssize_t recv(self, Stream s) except -2
    cdef int flush(self, Stream s, int flags) except -1
    # the response is all out and the connection closes: send the close_notify alert
    cdef void close_notify(self, Stream s)
    # mod_ssl's variables (HTTPS, SSL_PROTOCOL...) for the requests it carries
    cdef dict environ(self)


cdef class Stream(Handle):
    # the read buffer: bytes rstart..rend of rbuf (rcap bytes) are unparsed
    cdef char *rbuf
    cdef Py_ssize_t rcap
    cdef Py_ssize_t rstart
    cdef Py_ssize_t rend
    # the socket may hold unread bytes / reported the end of the stream / recv() said so
    cdef bint readable
    cdef bint hup
    cdef bint eof
    # the output queue: bytes and FileRanges from out[out_index], the first sent up to
    # out_offset; out_bytes in all
    cdef list out
    cdef Py_ssize_t out_index
    cdef Py_ssize_t out_offset
    cdef Py_ssize_t out_bytes
    # the descriptor the last borrowed FileRange was duplicated from, and the copy
    cdef int dup_source
    cdef OwnedFd dup_copy
    # body bytes spilled to an unlinked file while the client lags (push-style writers)
    cdef OwnedFd spool
    cdef long long spool_end
    cdef str spool_dir
    cdef str close_reason
    # TCP_NODELAY is on (set lazily: a response sent in one write does not need it).
    cdef bint nodelay
    cdef double last_active
    # how long a blocking read (fill_blocking) waits for the client
    cdef double io_timeout
    # TLS between the socket and the buffers (None: plain bytes, the fast path)
    cdef readonly TlsLayer tls

    cdef bint more_coming(self)
    cdef Py_ssize_t recv_some(self) except -2
    cdef Py_ssize_t fill_blocking(self) except -1
    cdef void wait(self, short events) except *
    cdef void queue(self, bytes data)
    cdef void queue_body(self, bytes data) except *
    cdef void queue_file(self, int fd, long long offset, Py_ssize_t count) except *
    cdef void adopt_files(self) except *
    cdef int send_range(self, FileRange item) except -1
    cdef int flush(self, int flags) except -1
    cdef void set_nodelay(self)
