# HTTP/1.1's character classes and the byte tests every HTTP module shares (the head
# parser, the body framing, the response head encoder). The tables are constant C
# arrays (csrc/httpchars.h), so each module that cimports this reads the same bytes
# with no set-up at import; the tests are inline, so a call costs nothing.

cdef extern from "httpchars.h":
    const unsigned char TCHAR "fgw_tchar" [256]
    const unsigned char HEXVAL "fgw_hexval" [256]
    const unsigned char HOSTCHAR "fgw_hostchar" [256]


cdef inline bint name_is(const char *p, Py_ssize_t n, const char *lower, Py_ssize_t ln) noexcept:
    """Case-insensitive match of a token against a lowercase literal (tokens hold no CR)."""
    cdef Py_ssize_t i
    if n != ln:
        return False
    for i in range(n):
        if (<unsigned char>p[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


cdef inline bint is_ows(char c) noexcept:
    return c == b' ' or c == b'\t'


cdef inline bint is_field_char(unsigned char c) noexcept:
    """A byte allowed in a field value (and a status line): no control but HTAB, no DEL."""
    return not ((c < 0x20 and c != 0x09) or c == 0x7f)
