# The request lifecycle every protocol shares (see _lifecycle.pyx).
from fastgw._loop cimport Protocol
from fastgw._request cimport BodyReader, Request


cdef class RequestProtocol(Protocol):
    cdef object handler
    # the request in progress, and its body as the protocol frames it
    cdef Request req
    cdef BodyReader body
    cdef bint busy
    # how much of an unread body is read and discarded to keep the connection
    cdef Py_ssize_t drain_limit
    # the state of the response in progress, the same for every protocol
    cdef bint _head_sent
    cdef bint body_allowed
    cdef bint head_request
    cdef Py_ssize_t sent
    cdef readonly int status_code
    # a body producer waiting for the client to take what is queued (see park())
    cdef object parked
    # called with (bytes sent, why cut or None) once the response is out or cut
    cdef object settled

    cdef void begin(self, Request req, BodyReader body) except *
    cdef void run_step(self) except *
    cdef void after_request(self) except *
    cdef bint keeps_connection(self) except -1
    cdef void body_broken(self)
    cdef void body_wanted(self) except *
    cdef void request_ended(self) except *
    cdef void lost_client(self) except *
    cdef void write_drained(self) except *
    cdef int start_response_head(self, str status) except -1
    cdef bint can_take_more(self)
    cdef void continue_response(self) except *
    cdef void await_drain(self) except *
    cdef void check_settled(self) except *
    cdef void settle(self, object cut) except *
