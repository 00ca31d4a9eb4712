# FastCGI 1.0 records: the constants, the 8-byte header, the name-value pair codec.

cdef enum:
    FCGI_VERSION = 1
    BEGIN_REQUEST = 1
    ABORT_REQUEST = 2
    END_REQUEST = 3
    PARAMS = 4
    STDIN = 5
    STDOUT = 6
    STDERR = 7
    DATA = 8
    GET_VALUES = 9
    GET_VALUES_RESULT = 10
    UNKNOWN_TYPE = 11
    RESPONDER = 1
    KEEP_CONN = 1
    REQUEST_COMPLETE = 0
    OVERLOADED = 2
    UNKNOWN_ROLE = 3
    MAX_CONTENT = 65535


cdef bytes record_header(int rtype, int rid, Py_ssize_t clen, int plen)
cdef dict parse_name_values(bytes data, str what)
cdef bytes encode_name_value(bytes name, bytes value)
