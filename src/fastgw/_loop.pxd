# Shared declarations of the event loop: the protocols (_http, _fcgi, _scgi) subclass
# Protocol and drive their Connection through these C-level methods.
from libc.stdint cimport uint32_t
from posix.types cimport off_t


cdef class Loop

cdef extern from "poller.h" nogil:
    ctypedef struct fgw_event:
        uint32_t events
        void *ptr


cdef class Handle:
    cdef int fd
    cdef void on_event(self, uint32_t events) except *


cdef class OwnedFd:
    cdef int fd


cdef int write_all(int fd, const char *data, Py_ssize_t n, long long offset,
                   str what) except -1


cdef class FileRange:
    # A part of a file in a connection's output queue; `holder` owns the descriptor
    # once the handler that queued it may have closed its own (None: borrowed).
    cdef int fd
    cdef long long offset
    cdef Py_ssize_t count
    cdef OwnedFd holder


cdef class Protocol:
    cdef Connection conn
    # The state of the response in progress, the same for every protocol.
    cdef bint _head_sent
    cdef bint body_allowed
    cdef bint head_request
    cdef bint finished
    cdef Py_ssize_t sent
    cdef readonly int status_code
    # A body producer waiting for the client to take what is queued (see park()).
    cdef object parked
    # Called with (bytes sent, why cut or None) once the response is out or cut.
    cdef object settled
    cdef int start_response_head(self, str status) except -1
    cdef bint can_take_more(self)
    cdef void data_received(self) except *
    cdef void write_drained(self) except *
    cdef void output_drained(self) except *
    cdef void run_step(self, object handler, object req) except *
    cdef void continue_response(self) except *
    cdef void await_drain(self) except *
    cdef void check_settled(self) except *
    cdef void settle(self, object cut) except *
    cdef void after_request(self) except *
    cdef void eof_received(self) except *
    cdef bint is_idle(self)
    cdef void resume(self) except *
    cdef double deadline(self)
    cdef void timed_out(self) except *
    cdef void connection_lost(self) except *


cdef class BodyReader:
    cdef Connection conn
    cdef readonly bint done
    cdef readonly bint started
    cdef Py_ssize_t remaining
    cdef Py_ssize_t available(self) except -1
    cdef bytes take(self, Py_ssize_t n)
    cdef const char *peek(self)
    cdef bint drain(self, Py_ssize_t limit) except -1


cdef class Request:
    cdef public str method
    cdef public str target
    cdef public str path
    cdef public str query
    cdef public str script_name
    cdef public str version
    cdef public list headers
    cdef public dict params
    cdef public object errors
    cdef public object body
    cdef public object peer
    cdef public object sockname
    cdef public str scheme
    cdef public Py_ssize_t content_length


cdef class Connection(Handle):
    cdef Loop loop
    cdef Protocol protocol
    cdef readonly object peer
    cdef readonly object sockname
    cdef readonly str scheme
    cdef char *rbuf
    cdef Py_ssize_t rcap
    cdef Py_ssize_t rstart
    cdef Py_ssize_t rend
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
    # monotonic time by which a closing connection is closed, however it behaves
    cdef double close_deadline
    cdef str close_reason
    cdef readonly bint closed
    cdef bint readable
    cdef bint paused
    cdef bint want_close
    cdef bint lingering
    cdef bint linger
    cdef bint eof
    cdef bint hup
    cdef bint owned
    cdef bint close_requested
    # TCP_NODELAY is on (set lazily: a response sent in one write does not need it).
    cdef bint nodelay
    cdef double last_active

    cdef void read_ready(self) except *
    cdef Py_ssize_t recv_some(self) except -2
    cdef Py_ssize_t fill_blocking(self) except -1
    cdef void queue(self, bytes data)
    cdef void queue_body(self, bytes data) except *
    cdef void queue_file(self, int fd, long long offset, Py_ssize_t count) except *
    cdef void adopt_files(self) except *
    cdef int send_range(self, FileRange item) except -1
    cdef int flush(self, int flags) except -1
    cdef void set_nodelay(self)
    cdef bint read_unseen_input(self) except -1
    cdef void wait(self, short events) except *
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
    cdef public Py_ssize_t max_connections
    cdef public double io_timeout
    cdef public double graceful_timeout
    cdef public unsigned long long requests
    cdef public object tick
    # set by a signal handler: stop() at the top of the next turn of the loop, not
    # in the middle of whatever the handler interrupted
    cdef public bint stop_soon
    cdef double stop_deadline
    cdef public str spool_dir
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
