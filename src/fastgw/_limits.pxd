# The limits and timeouts every protocol applies to what a client sends (see _limits.pyx).

# What ProtocolLimits.body_policy(path) answers (router.body_policies makes it).
cpdef enum BodyPolicy:
    BODY_GATHER = 0
    BODY_STREAM = 1
    BODY_UNWANTED = 2

cdef class ProtocolLimits:
    cdef readonly Py_ssize_t request_line
    cdef readonly Py_ssize_t field_size
    cdef readonly Py_ssize_t fields
    cdef readonly Py_ssize_t head
    cdef readonly Py_ssize_t body
    cdef readonly Py_ssize_t chunk_line
    cdef readonly Py_ssize_t trailer
    cdef readonly double header_timeout
    cdef readonly double keepalive_timeout
    cdef readonly bint proxy_protocol
    cdef readonly object proxy_trusted
    # request bodies: where gathered ones spill to (None: the temp dir), and which
    # requests get theirs as it arrives, or do not want it (a callable of the path
    # answering BODY_GATHER, BODY_STREAM or BODY_UNWANTED; None: always gather)
    cdef readonly str buffer_dir
    cdef readonly object body_policy
