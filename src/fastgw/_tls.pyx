# TLS between a connection's socket and its Stream's buffers (an HTTPS listener).
#
# Strategy: the standard library's ssl.SSLObject over two memory BIOs, driven by the
# loop like any socket. recv(): bytes from the socket go into the incoming BIO and
# SSLObject.read() decrypts straight into the read buffer the protocol parses (the
# handshake runs there first, non-blocking, its records sent as output). flush():
# the plaintext queue (bytes, and file ranges read with pread since sendfile cannot
# carry TLS) is encrypted CHUNK bytes at a time, only once the ciphertext of the
# previous chunk is all out, so a stalled reader holds one chunk of records and the
# queue it already had, never a worker. out_bytes counts the ciphertext waiting
# instead of the plaintext it replaced, so the loop's drain and send-timeout logic
# applies unchanged. A first byte that cannot start a TLS record (0x16, a handshake)
# is plain HTTP: it gets a plain-text 400 and a close.
from cpython.buffer cimport PyBUF_READ, PyBUF_WRITE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.errno cimport errno, EAGAIN, EINTR

from fastgw._stream cimport FileRange, Stream, TlsLayer
from fastgw._sys cimport *

import logging
import os
import ssl

from fastgw.errors import ClientDisconnected

log = logging.getLogger("fastgw.error")

cdef enum:
    # What one recv() takes from the socket; a TLS record is at most 16 KiB + overhead.
    RAW_CHUNK = 16709
    # Plaintext encrypted per step of flush(): four full records.
    CHUNK = 65536
    TLS_HANDSHAKE_RECORD = 0x16

cdef bytes PLAIN_HTTP_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 47\r\n"
    b"Connection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL.\r\n\r\n")


# mod_ssl's short names of the usual subject attributes (SSL_CLIENT_S_DN, RFC 2253)
cdef dict SHORT_NAMES = {"commonName": "CN", "organizationName": "O",
                         "organizationalUnitName": "OU", "countryName": "C",
                         "stateOrProvinceName": "ST", "localityName": "L",
                         "emailAddress": "emailAddress"}


cdef class TlsSession(TlsLayer):
    """One server-side TLS connection: its SSLObject, BIOs and unsent records."""

    cdef object tls
    cdef object incoming
    cdef object outgoing
    # records not yet taken by the socket, from pending_offset
    cdef bytes pending
    cdef Py_ssize_t pending_offset
    cdef bint first_byte_seen
    # our close_notify is sent: nothing more is decrypted
    cdef bint shut
    cdef object peer
    cdef dict variables

    def __init__(self, context, peer):
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.peer = peer[0] if peer else "a unix socket client"

    cdef Py_ssize_t recv(self, Stream s) except -2:
        cdef char raw[RAW_CHUNK]
        cdef Py_ssize_t space = s.rcap - s.rend, n
        cdef ssize_t r
        while True:
            if self.shut:
                pass  # lingering after close_notify: what comes is read and dropped
            elif self.established:
                try:
                    n = self.tls.read(space, PyMemoryView_FromMemory(s.rbuf + s.rend, space,
                                                                     PyBUF_WRITE))
                except ssl.SSLWantReadError:
                    n = 0
                except ssl.SSLZeroReturnError:
                    return 0  # the client's close_notify
                except ssl.SSLError as e:
                    log.warning("TLS error from %s: %s; closing", self.peer, e.reason or e)
                    return 0
                if n > 0:
                    s.rend += n
                    return n
            elif not self.handshake(s):
                return 0
            elif self.established:
                continue
            r = recv(s.fd, raw, RAW_CHUNK, 0)
            if r < 0:
                if errno == EINTR:
                    continue
                s.readable = False
                return -1 if errno == EAGAIN else 0
            if r == 0:
                return 0
            if self.shut:
                return r
            if not self.first_byte_seen:
                self.first_byte_seen = True
                if <unsigned char>raw[0] != TLS_HANDSHAKE_RECORD:
                    self.refuse_plain_http(s)
                    return 0
            self.incoming.write(PyMemoryView_FromMemory(raw, r, PyBUF_READ))

    cdef bint handshake(self, Stream s) except -1:
        """One step of the handshake: its records queued and sent; False if it failed."""
        cdef bint ok = True
        if self.first_byte_seen:
            try:
                self.tls.do_handshake()
                self.established = True
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLError, OSError) as e:
                log.warning("TLS handshake with %s failed: %s",
                            self.peer, getattr(e, "reason", None) or e)
                ok = False
        self.take_records(s, 0)
        try:
            self.send_pending(s)
        except ClientDisconnected:
            return False
        return ok

    cdef void close_notify(self, Stream s):
        if self.shut:
            return
        self.shut = True
        if not self.established:
            return
        try:
            self.tls.unwrap()
        except ssl.SSLError:
            pass  # SSLWantReadError: the client's alert is not awaited
        self.take_records(s, 0)
        try:
            self.send_pending(s)  # a few bytes into a socket that just took the response
        except ClientDisconnected:
            pass

    cdef void refuse_plain_http(self, Stream s):
        log.info("plain HTTP from %s on an HTTPS port; answered 400", self.peer)
        send(s.fd, PyBytes_AS_STRING(PLAIN_HTTP_REPLY), PyBytes_GET_SIZE(PLAIN_HTTP_REPLY),
             MSG_NOSIGNAL | MSG_DONTWAIT)
        shutdown(s.fd, SHUT_WR)

    cdef void take_records(self, Stream s, Py_ssize_t plaintext):
        """Move what the SSLObject wrote to the pending records; `plaintext` bytes of the
        queue became them (out_bytes now counts the records instead)."""
        cdef bytes records = self.outgoing.read()
        s.out_bytes += PyBytes_GET_SIZE(records) - plaintext
        if not records:
            return
        if self.pending is None:
            self.pending = records
            self.pending_offset = 0
        else:
            self.pending = self.pending[self.pending_offset:] + records
            self.pending_offset = 0

    cdef int send_pending(self, Stream s) except -1:
        """Send the pending records as far as the socket takes them: 1 when all are out."""
        cdef const char *data
        cdef Py_ssize_t size
        cdef ssize_t n
        if self.pending is None:
            return 1
        data = PyBytes_AS_STRING(self.pending)
        size = PyBytes_GET_SIZE(self.pending)
        while self.pending_offset < size:
            n = send(s.fd, data + self.pending_offset, size - self.pending_offset, MSG_NOSIGNAL)
            if n < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    return 0
                raise ClientDisconnected(f"writing to the client failed: {os.strerror(errno)}")
            self.pending_offset += n
            s.out_bytes -= n
            s.last_active = monotonic()
        self.pending = None
        return 1

    cdef int flush(self, Stream s, int flags) except -1:
        if not s.nodelay and s.more_coming():
            s.set_nodelay()
        while True:
            if not self.send_pending(s):
                return 0
            if s.out_index >= len(s.out):
                break
            self.encrypt_next(s)
        del s.out[:]
        s.out_index = 0
        s.out_offset = 0
        s.spool = None
        return 1

    cdef void encrypt_next(self, Stream s) except *:
        """Encrypt up to CHUNK bytes from the head of the queue (small items joined, so a
        response head and a short body make one record)."""
        cdef list parts = []
        cdef Py_ssize_t plain = 0, size, take
        cdef list out = s.out
        cdef FileRange rng
        while s.out_index < len(out) and plain < CHUNK:
            item = out[s.out_index]
            if type(item) is bytes:
                size = PyBytes_GET_SIZE(item) - s.out_offset
                take = min(size, CHUNK - plain)
                if s.out_offset == 0 and take == size:
                    parts.append(item)
                else:
                    parts.append(item[s.out_offset:s.out_offset + take])
                if take == size:
                    s.out_index += 1
                    s.out_offset = 0
                else:
                    s.out_offset += take
            else:
                rng = <FileRange>item
                take = min(rng.count, CHUNK - plain)
                data = os.pread(rng.fd, take, rng.offset)
                if not data:
                    raise ClientDisconnected("the file shrank while it was being sent")
                take = len(data)
                parts.append(data)
                rng.offset += take
                rng.count -= take
                if rng.count == 0:
                    s.out_index += 1
            plain += take
        self.tls.write(parts[0] if len(parts) == 1 else b"".join(parts))
        self.take_records(s, plain)

    cdef dict environ(self):
        """mod_ssl's variables for this connection (computed once, after the handshake)."""
        if self.variables is None:
            cipher = self.tls.cipher()
            variables = {"HTTPS": "on", "SSL_PROTOCOL": self.tls.version() or "",
                         "SSL_CIPHER": cipher[0] if cipher else ""}
            der = self.tls.getpeercert(True)
            if der:
                cert = self.tls.getpeercert() or {}
                variables["SSL_CLIENT_VERIFY"] = "SUCCESS"
                variables["SSL_CLIENT_S_DN"] = ",".join(
                    "+".join(f"{SHORT_NAMES.get(k, k)}={v}" for k, v in rdn)
                    for rdn in reversed(cert.get("subject", ())))
                variables["SSL_CLIENT_CERT"] = ssl.DER_cert_to_PEM_cert(der)
            else:
                variables["SSL_CLIENT_VERIFY"] = "NONE"
            self.variables = variables
        return self.variables
