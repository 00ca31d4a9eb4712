# The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer sends
# before the client's first byte, naming the real client.
#
# Strategy: a pure function of the bytes received so far, like the HTTP head parser:
# it answers "not all here yet", or the header's size and the peer it names; the
# HTTP protocol calls it once per connection and makes the peer the connection's.
from libc.string cimport memchr, memcmp

import ipaddress

from fastgw.errors import HttpError


cdef const char *PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


cdef object proxy_v1_peer(str line):
    """'PROXY TCP4 src dst sport dport\r\n' -> (src, sport); None for PROXY UNKNOWN."""
    parts = line.rstrip("\r\n").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6") or not line.endswith("\r\n"):
        raise HttpError(400, f"malformed PROXY protocol v1 line: {line!r}")
    try:
        ipaddress.ip_address(parts[2])
        ipaddress.ip_address(parts[3])
        port = int(parts[4])
        if not (0 <= port <= 65535 and parts[4].isdigit() and parts[5].isdigit()):
            raise ValueError
    except ValueError:
        raise HttpError(400, f"malformed PROXY protocol v1 line: {line!r}") from None
    return (parts[2], port)


cdef object proxy_v2_peer(const unsigned char *p, Py_ssize_t size):
    """The v2 binary header: version 2, command LOCAL (keep the socket's peer) or PROXY."""
    if p[12] >> 4 != 2:
        raise HttpError(400, f"unsupported PROXY protocol version {p[12] >> 4}")
    if p[12] & 0x0f == 0:
        return None
    if p[12] & 0x0f != 1:
        raise HttpError(400, "unknown PROXY protocol v2 command")
    if p[13] >> 4 == 1 and size >= 16 + 12:
        return (str(ipaddress.IPv4Address(bytes(p[16:20]))), (p[24] << 8) | p[25])
    if p[13] >> 4 == 2 and size >= 16 + 36:
        return (str(ipaddress.IPv6Address(bytes(p[16:32]))), (p[48] << 8) | p[49])
    return None


cdef tuple proxy_header(const unsigned char *p, Py_ssize_t n):
    """The PROXY header at the start of p[:n]: (its size, the peer it names or None for
    the socket's own), or None when more bytes must arrive; HttpError if it is not one."""
    cdef Py_ssize_t size
    cdef const unsigned char *nl
    if n >= 12 and memcmp(p, PROXY_V2_SIGNATURE, 12) == 0:
        if n < 16:
            return None
        size = 16 + ((p[14] << 8) | p[15])
        if n < size:
            return None
        return (size, proxy_v2_peer(p, size))
    if n >= 6 and memcmp(p, b"PROXY ", 6) == 0:
        nl = <const unsigned char *>memchr(p, b'\n', n if n < 108 else 108)
        if nl == NULL:
            if n >= 108:
                raise HttpError(400, "PROXY protocol v1 line longer than 107 bytes")
            return None
        size = nl - p + 1
        return (size, proxy_v1_peer((<const char *>p)[:size].decode("latin-1")))
    if n >= 12 or (memcmp(p, b"PROXY ", n if n < 6 else 6) != 0
                   and memcmp(p, PROXY_V2_SIGNATURE, n) != 0):
        raise HttpError(400, "expected a PROXY protocol header (--proxy-protocol is on)")
    return None
