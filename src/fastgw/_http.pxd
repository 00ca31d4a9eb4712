# What the other protocols (_fcgi, _scgi) share with the HTTP codec.

cdef class HttpSettings:
    cdef public Py_ssize_t request_line
    cdef public Py_ssize_t field_size
    cdef public Py_ssize_t fields
    cdef public Py_ssize_t head
    cdef public Py_ssize_t body
    cdef public Py_ssize_t chunk_line
    cdef public Py_ssize_t trailer
    cdef public double header_timeout
    cdef public double keepalive_timeout
    cdef public bint proxy_protocol
    cdef public object proxy_trusted
    # request bodies: where gathered ones spill to (None: the temp dir), and which
    # requests get theirs as it arrives, or do not want it (a callable of the path
    # answering BODY_GATHER, BODY_STREAM or BODY_UNWANTED; None: always gather)
    cdef public str buffer_dir
    cdef public object body_policy


cdef bytes build_head(bytes prefix, str status, list headers, Py_ssize_t length,
                      bint server_and_date, bint chunked, bytes connection)
