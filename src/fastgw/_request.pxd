# The Request and the body reader base every protocol shares (see _request.pyx).
from fastgw._loop cimport Connection


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
    # mod_ssl's variables (HTTPS, SSL_*) of a request that came over TLS, else None
    cdef public dict tls_vars
    cdef public Py_ssize_t content_length
