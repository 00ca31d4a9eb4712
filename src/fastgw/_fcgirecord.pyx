# FastCGI 1.0 records (the constants are in _fcgirecord.pxd): the 8-byte header of a
# record the server sends, and the name-value pairs of PARAMS and GET_VALUES (1- or
# 4-byte lengths). Kept apart from the protocol (_fcgi) so the parser is reachable on
# bytes alone: parse_params() is the entry point of the tests and fuzz/fuzz_cgivars.py.
from cpython.bytes cimport PyBytes_FromStringAndSize


class FcgiProtocolError(Exception):
    """The client broke the FastCGI framing; the connection is closed."""


cdef bytes record_header(int rtype, int rid, Py_ssize_t clen, int plen):
    cdef unsigned char h[8]
    h[0] = FCGI_VERSION
    h[1] = rtype
    h[2] = (rid >> 8) & 0xff
    h[3] = rid & 0xff
    h[4] = (clen >> 8) & 0xff
    h[5] = clen & 0xff
    h[6] = plen
    h[7] = 0
    return PyBytes_FromStringAndSize(<char *>h, 8)


cdef dict parse_name_values(bytes data, str what):
    """FastCGI name-value pairs (1- or 4-byte lengths) -> {name: value} as latin-1 str."""
    cdef const unsigned char *p = data
    cdef Py_ssize_t n = len(data), i = 0, nlen, vlen
    cdef dict out = {}
    while i < n:
        nlen = p[i]
        if nlen & 0x80:
            if i + 4 > n:
                raise FcgiProtocolError(f"truncated name length in {what}")
            nlen = ((p[i] & 0x7f) << 24) | (p[i + 1] << 16) | (p[i + 2] << 8) | p[i + 3]
            i += 4
        else:
            i += 1
        if i >= n:
            raise FcgiProtocolError(f"truncated value length in {what}")
        vlen = p[i]
        if vlen & 0x80:
            if i + 4 > n:
                raise FcgiProtocolError(f"truncated value length in {what}")
            vlen = ((p[i] & 0x7f) << 24) | (p[i + 1] << 16) | (p[i + 2] << 8) | p[i + 3]
            i += 4
        else:
            i += 1
        if i + nlen + vlen > n:
            raise FcgiProtocolError(f"name-value pair longer than the {what} stream")
        out[data[i:i + nlen].decode("latin-1")] = data[i + nlen:i + nlen + vlen].decode("latin-1")
        i += nlen + vlen
    return out


def parse_params(bytes data not None):
    """A PARAMS stream's bytes -> {name: value} (latin-1 str); FcgiProtocolError when
    malformed. The numbers among them are checked by cgiparams.request_from_params."""
    return parse_name_values(data, "PARAMS")


cdef bytes encode_name_value(bytes name, bytes value):
    return bytes([len(name), len(value)]) + name + value
