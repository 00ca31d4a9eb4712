# Shared declarations of the event loop: the protocols (_http, _fcgi, _scgi) subclass
# Protocol (through _lifecycle.RequestProtocol) and drive their Connection through
# these C-level methods.
from libc.stdint cimport uint32_t
from posix.types cimport off_t

from fastgw._stream cimport FileRange, Handle, OwnedFd, Stream, write_all
from fastgw._sys cimport fgw_event, monotonic


cdef class Loop


cdef enum:
    # A parked producer resumes when the queue is empty and stops when it passes this:
    # what a slow reader costs in memory, beside the kernel's socket buffer.
    HIGH_WATER = 65536


cdef class Protocol:
    cdef Connection conn
    # the response in progress is complete (its last bytes need no TCP_NODELAY)
    cdef bint finished
    cdef void data_received(self) except *
    cdef void output_drained(self) except *
    cdef void eof_received(self) except *
    cdef bint is_idle(self)
    cdef void resume(self) except *
    cdef double deadline(self)
    cdef void timed_out(self) except *
    cdef void connection_lost(self) except *


cdef class Connection(Stream):
    cdef Loop loop
    cdef Protocol protocol
    cdef readonly object peer
    cdef readonly object sockname
    cdef readonly str scheme
    # monotonic time by which a closing connection is closed, however it behaves
    cdef double close_deadline
    cdef readonly bint closed
    cdef bint paused
    cdef bint want_close
    cdef bint lingering
    cdef bint linger
    cdef bint owned
    cdef bint close_requested

    cdef void read_ready(self) except *
    cdef bint read_unseen_input(self) except -1
    cdef bint hand_to_thread(self, object job) except -1
    cdef void close_after_flush(self, bint linger=*, double cap=*)
    cdef void drop(self, str reason)
    cdef void finish_close(self)
    cdef void close(self)


cdef class Loop:
    cdef int epfd
    cdef dict conns
    cdef list listeners
    cdef list closing
    cdef readonly bint stopping
    cdef bint accept_paused
    cdef readonly Py_ssize_t max_connections
    cdef readonly double io_timeout
    cdef readonly double graceful_timeout
    cdef public unsigned long long requests
    cdef public object tick
    # set by a signal handler: stop() at the top of the next turn of the loop, not
    # in the middle of whatever the handler interrupted
    cdef public bint stop_soon
    cdef double stop_deadline
    cdef readonly str spool_dir
    # counted by each sweep, for the metrics: connections whose output waits for the
    # client, and the bytes queued for them
    cdef readonly Py_ssize_t waiting_on_clients
    cdef readonly Py_ssize_t queued_output
    # connections whose queued output is to be tried again on the next turn of the loop
    cdef list retry_write
    cdef readonly bint threaded
    cdef object pool
    cdef object waker
    cdef double *heartbeat
    cdef object heartbeat_view
    cdef object handed_back
    cdef int wake_r
    cdef int wake_w
    cdef unsigned long thread
    cdef bint use_poll
    cdef void *pfds
    cdef void **pptrs
    cdef Py_ssize_t pcap
    cdef void register(self, Handle h, bint listener) except *
    cdef int poll_once(self, fgw_event *out, int timeout_ms) except -2
    cdef void sweep(self, double now) except *
    cdef void forget(self, Connection conn)
    cdef void pause_accepting(self, bint pause) except *
    cdef void submit(self, Connection conn, object job) except *
    cdef void take_back(self) except *
    cdef void retry_writes(self) except *
    cdef void beat(self)
