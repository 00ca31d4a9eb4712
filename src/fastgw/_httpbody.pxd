# HTTP/1.1 request bodies and their chunked framing (see _httpbody.pyx).
from fastgw._limits cimport ProtocolLimits
from fastgw._loop cimport Connection
from fastgw._request cimport BodyReader, Request


cdef enum ChunkState:
    CHUNK_SIZE
    CHUNK_DATA
    CHUNK_DATA_END
    CHUNK_TRAILER


ctypedef struct Framing:
    ChunkState state
    Py_ssize_t trailer_bytes
    Py_ssize_t received
    # --limit-request-body (0: none), --limit-chunk-line, --limit-trailer-size
    Py_ssize_t limit
    Py_ssize_t chunk_line
    Py_ssize_t trailer


cdef class HttpBody(BodyReader):
    cdef readonly bint chunked
    cdef Framing framing
    cdef Py_ssize_t ready(self) except -2


cdef HttpBody new_body(Connection conn, Request req, bint chunked, ProtocolLimits limits)
cdef HttpBody empty_body()
