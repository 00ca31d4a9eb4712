# The HTTP/1.1 request head parser (see _httphead.pyx).
from fastgw._limits cimport ProtocolLimits
from fastgw._request cimport Request


ctypedef struct HeadInfo:
    # in and out: where the search for the head's end resumes (0 for a new head)
    Py_ssize_t scan_pos
    # out, once a head is parsed: its length with the empty line, the minor version
    # (10 or 11), and the framing and connection decisions its fields make
    Py_ssize_t length
    int version
    bint chunked
    bint client_closes
    bint expect_continue


cdef Request parse_request_head(const char *buf, Py_ssize_t n, ProtocolLimits limits,
                                HeadInfo *info)
cdef Py_ssize_t skip_empty_lines(const char *buf, Py_ssize_t n, int *seen) except -1
cdef bint valid_host(const char *p, Py_ssize_t n)
