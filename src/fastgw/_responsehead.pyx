# Response heads: a status line and the application's headers, checked and
# encoded in C, for every protocol (HTTP's "HTTP/1.1 " status line, CGI-style
# protocols' "Status: " line).
#
# Strategy: two passes over the headers list: the first checks each item is a
# (str, str) tuple of one-byte characters and adds up the size, the second copies
# the bytes into one bytes object made at that size, checking token names and
# control characters as it goes. No Python object is made per header; Server and
# Date are added unless the application gave its own, Date from a per-second cache.
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.string cimport memcpy
from libc.stdio cimport snprintf

from fastgw._httpchars cimport TCHAR, is_field_char, name_is

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_1BYTE_KIND
    bint PyUnicode_Check(object)
    bint PyTuple_Check(object)


cdef Py_ssize_t str_len(object s, str what, object header=None) except -1:
    """Length of a str that must be latin-1 (one byte per character) on the wire."""
    if not PyUnicode_Check(s) or PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND:
        if header is not None:
            what = f"{what} {header!r}"
        if not PyUnicode_Check(s):
            raise TypeError(f"{what} must be str, not {type(s).__name__}: {s!r}")
        raise ValueError(f"{what} is not latin-1 encodable: {s!r}")
    return PyUnicode_GET_LENGTH(s)


cdef char *put(char *w, const char *src, Py_ssize_t n):
    memcpy(w, src, n)
    return w + n




cdef bytes build_head(bytes prefix, str status, list headers, Py_ssize_t length,
                      bint server_and_date, bint chunked, bytes connection):
    """Encode a response head: `prefix` + status line, the app's headers (checked: token
    names, no CR/LF/NUL in values), then Server/Date, Content-Length or chunked, Connection.
    HTTP uses the prefix b"HTTP/1.1 "; CGI-style protocols (FastCGI, SCGI, uwsgi) b"Status: ".
    """
    cdef Py_ssize_t size, status_len, nlen, vlen, k
    cdef bint own_date = not server_and_date, own_server = not server_and_date
    cdef const unsigned char *s
    cdef char lenbuf[32]
    cdef int lenlen = 0
    cdef bytes out
    cdef char *w
    cdef object item
    status_len = str_len(status, "status")
    if status_len < 4 or not (b'1' <= (<const char *>PyUnicode_DATA(status))[0] <= b'5'):
        raise ValueError(f"malformed status line: {status!r}")
    size = len(prefix) + status_len + 2
    for item in headers:
        if not PyTuple_Check(item) or len(item) != 2:
            raise TypeError(f"response header must be a (name, value) tuple: {item!r}")
        nlen = str_len(item[0], "header name")
        vlen = str_len(item[1], "value of header", item[0])
        s = <const unsigned char *>PyUnicode_DATA(item[0])
        if nlen == 4 and name_is(<const char *>s, 4, b"date", 4):
            own_date = True
        elif nlen == 6 and name_is(<const char *>s, 6, b"server", 6):
            own_server = True
        size += nlen + vlen + 4
    if not own_server:
        size += 16
    if not own_date:
        size += 8 + FASTGW_HTTP_DATE_LEN
    if length >= 0:
        lenlen = snprintf(lenbuf, sizeof(lenbuf), b"Content-Length: %zd\r\n", length)
        size += lenlen
    if chunked:
        size += 28
    if connection is not None:
        size += len(connection)
    size += 2
    out = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(out)
    w = put(w, prefix, len(prefix))
    s = <const unsigned char *>PyUnicode_DATA(status)
    for k in range(status_len):
        if not is_field_char(s[k]):
            raise ValueError(f"control character in status line {status!r}")
    w = put(w, <const char *>s, status_len)
    w = put(w, b"\r\n", 2)
    if not own_server:
        w = put(w, b"Server: fastgw\r\n", 16)
    if not own_date:
        w = put(w, b"Date: ", 6)
        w = put(w, fastgw_http_date(), FASTGW_HTTP_DATE_LEN)
        w = put(w, b"\r\n", 2)
    for item in headers:
        name = item[0]
        value = item[1]
        nlen = PyUnicode_GET_LENGTH(name)
        vlen = PyUnicode_GET_LENGTH(value)
        s = <const unsigned char *>PyUnicode_DATA(name)
        if nlen == 0:
            raise ValueError("empty response header name")
        for k in range(nlen):
            if not TCHAR[s[k]]:
                raise ValueError(f"invalid character in response header name {name!r}")
        w = put(w, <const char *>s, nlen)
        w = put(w, b": ", 2)
        s = <const unsigned char *>PyUnicode_DATA(value)
        for k in range(vlen):
            if not is_field_char(s[k]):
                raise ValueError(f"control character in the value of response header {name!r}")
        w = put(w, <const char *>s, vlen)
        w = put(w, b"\r\n", 2)
    if lenlen:
        w = put(w, lenbuf, lenlen)
    if chunked:
        w = put(w, b"Transfer-Encoding: chunked\r\n", 28)
    if connection is not None:
        w = put(w, connection, len(connection))
    put(w, b"\r\n", 2)
    return out
