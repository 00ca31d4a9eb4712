"""A small raw FastCGI client for the tests: the web server's side of FastCGI 1.0.

It builds records byte by byte (so a test can send exactly the framing it
wants, good or bad), reads records back and checks what the spec and the issue
require of every record the server sends: version 1, content of at most 65535
bytes, content plus padding a multiple of 8. ``Exchange`` collects the STDOUT,
STDERR and END_REQUEST of one request id; ``parse_cgi_response`` splits the
STDOUT stream into status, headers and body.

Also here: the SCGI netstring and uwsgi packet encoders the SCGI/uwsgi tests
use, because they are the same kind of thing (CGI variables on the wire).
"""
import socket
import struct
import time

from fgwtest import RawConnection

VERSION = 1

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
AUTHORIZER = 2
FILTER = 3

KEEP_CONN = 1

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

MAX_CONTENT = 65535

TYPE_NAMES = {
    BEGIN_REQUEST: "BEGIN_REQUEST", ABORT_REQUEST: "ABORT_REQUEST",
    END_REQUEST: "END_REQUEST", PARAMS: "PARAMS", STDIN: "STDIN", STDOUT: "STDOUT",
    STDERR: "STDERR", DATA: "DATA", GET_VALUES: "GET_VALUES",
    GET_VALUES_RESULT: "GET_VALUES_RESULT", UNKNOWN_TYPE: "UNKNOWN_TYPE",
}


# --------------------------------------------------------------------------
# encoding


def record(rtype, rid, content=b"", padding=None, version=VERSION):
    """One record. ``padding`` defaults to what aligns the record to 8 bytes."""
    if len(content) > MAX_CONTENT:
        raise ValueError("record content of %d bytes does not fit" % len(content))
    if padding is None:
        padding = -len(content) % 8
    return struct.pack(">BBHHBx", version, rtype, rid, len(content), padding) + content + \
        b"\0" * padding


def stream(rtype, rid, data, piece=MAX_CONTENT):
    """``data`` as records of at most ``piece`` bytes, then the empty record ending
    the stream."""
    out = []
    for pos in range(0, len(data), piece):
        out.append(record(rtype, rid, data[pos:pos + piece]))
    out.append(record(rtype, rid, b""))
    return b"".join(out)


def encode_length(n, long=False):
    if n > 0x7FFFFFFF:
        raise ValueError(n)
    if n > 127 or long:
        return struct.pack(">I", n | 0x80000000)
    return bytes([n])


def _bytes(text):
    return text if isinstance(text, bytes) else text.encode("latin-1")


def encode_pairs(pairs, long=False):
    """Name-value pairs; lengths over 127 always take 4 bytes, ``long=True``
    uses the 4-byte form for short ones too (legal, and what some clients do)."""
    if isinstance(pairs, dict):
        pairs = pairs.items()
    out = []
    for name, value in pairs:
        name, value = _bytes(name), _bytes(value)
        out.append(encode_length(len(name), long) + encode_length(len(value), long) + name + value)
    return b"".join(out)


def decode_pairs(data):
    pairs = {}
    i = 0
    while i < len(data):
        lengths = []
        for _ in range(2):
            if data[i] & 0x80:
                lengths.append(struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF)
                i += 4
            else:
                lengths.append(data[i])
                i += 1
        nlen, vlen = lengths
        name = data[i:i + nlen]
        value = data[i + nlen:i + nlen + vlen]
        if len(name) != nlen or len(value) != vlen:
            raise AssertionError("truncated name-value pair in %r" % data)
        pairs[name.decode("latin-1")] = value.decode("latin-1")
        i += nlen + vlen
    return pairs


def begin_request(rid, role=RESPONDER, keep_conn=False):
    body = struct.pack(">HB5x", role, KEEP_CONN if keep_conn else 0)
    return record(BEGIN_REQUEST, rid, body)


def cgi_params(method="GET", uri="/", body_length=None, path_info=None, script_name="",
               headers=(), extra=None):
    """CGI variables as nginx's fastcgi_params would send them for ``uri``."""
    path, _, query = uri.partition("?")
    params = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "application/octet-stream" if body_length else "",
        "CONTENT_LENGTH": str(body_length) if body_length is not None else "",
        "SCRIPT_NAME": script_name or path,
        "REQUEST_URI": uri,
        "DOCUMENT_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "fcgiclient/1",
        "REMOTE_ADDR": "192.0.2.10",
        "REMOTE_PORT": "50123",
        "SERVER_ADDR": "192.0.2.1",
        "SERVER_PORT": "8080",
        "SERVER_NAME": "fcgi.example",
        "HTTP_HOST": "fcgi.example:8080",
    }
    if path_info is not None:
        params["SCRIPT_NAME"] = script_name
        params["PATH_INFO"] = path_info
    for name, value in headers:
        params["HTTP_" + name.upper().replace("-", "_")] = value
    if extra:
        params.update(extra)
    return params


def request_bytes(rid, params, body=b"", keep_conn=False, params_piece=MAX_CONTENT,
                  stdin_piece=MAX_CONTENT, long=False):
    """A whole request: BEGIN_REQUEST, the PARAMS stream, the STDIN stream."""
    return (begin_request(rid, keep_conn=keep_conn)
            + stream(PARAMS, rid, encode_pairs(params, long), params_piece)
            + stream(STDIN, rid, body, stdin_piece))


# --------------------------------------------------------------------------
# decoding


class Record:
    __slots__ = ("version", "type", "rid", "content", "padding")

    def __init__(self, version, rtype, rid, content, padding):
        self.version = version
        self.type = rtype
        self.rid = rid
        self.content = content
        self.padding = padding

    def __repr__(self):
        return "<Record %s id=%d content[%d]=%r padding=%d>" % (
            TYPE_NAMES.get(self.type, self.type), self.rid, len(self.content),
            self.content[:60], self.padding)


class ConnectionClosed(AssertionError):
    """The server closed the connection while a record was expected."""


class FcgiConnection(RawConnection):
    """A client connection (TCP or UNIX socket) that reads whole records; the socket
    plumbing is fgwtest.RawConnection's."""

    def __init__(self, address, timeout=20.0):
        if isinstance(address, str):
            super().__init__(unix_path=address, timeout=timeout)
        else:
            super().__init__(port=address[1], host=address[0], timeout=timeout)
        self.records = []  # every record read, in order

    def _take(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionClosed("connection closed with %d of %d bytes of a record "
                                       "(records so far: %r)" % (len(self.buf), n,
                                                                 self.records[-5:]))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_record(self):
        """The next record, checked: version 1, content <= 65535, 8-byte alignment."""
        version, rtype, rid, clen, plen = struct.unpack(">BBHHBx", self._take(8))
        content = self._take(clen)
        self._take(plen)  # padding
        rec = Record(version, rtype, rid, content, plen)
        self.records.append(rec)
        assert version == VERSION, "record with version %d: %r" % (version, rec)
        assert (clen + plen) % 8 == 0, "record not padded to a multiple of 8: %r" % rec
        return rec

    def read_until_end(self, rids, limit=1 << 30):
        """Read records until every request id in ``rids`` got its END_REQUEST;
        return {rid: Exchange}."""
        if isinstance(rids, int):
            rids = [rids]
        exchanges = {rid: Exchange(rid) for rid in rids}
        pending = set(rids)
        while pending:
            rec = self.read_record()
            ex = exchanges.get(rec.rid)
            if ex is None:
                raise AssertionError("record for an unexpected request id: %r" % rec)
            ex.add(rec, limit)
            if rec.type == END_REQUEST:
                pending.discard(rec.rid)
        return exchanges

    def exchange(self, rid, data, limit=1 << 30):
        """Send ``data`` and read the response of request ``rid``."""
        self.send(data)
        return self.read_until_end(rid, limit)[rid]

    def wait_closed(self, timeout=5.0):
        """True if the server closes within ``timeout``. Bytes that arrive first
        stay in ``self.buf``."""
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                try:
                    if not self._fill():
                        return True
                except socket.timeout:
                    return False
        finally:
            self.sock.settimeout(old)


class Exchange:
    """What the server sent for one request id."""

    def __init__(self, rid):
        self.rid = rid
        self.stdout_records = []
        self.stderr_records = []
        self.stdout_ended = False
        self.stderr_ended = False
        self.app_status = None
        self.protocol_status = None
        self.stdout_size = 0
        self.digest = None

    def add(self, rec, limit):
        if self.protocol_status is not None:
            raise AssertionError("record after END_REQUEST: %r" % rec)
        if rec.type == STDOUT:
            if self.stdout_ended:
                raise AssertionError("STDOUT after the empty STDOUT record: %r" % rec)
            if not rec.content:
                self.stdout_ended = True
            self.stdout_size += len(rec.content)
            if self.digest is not None:
                self.digest.update(rec.content)
                rec.content = b""
            elif self.stdout_size > limit:
                raise AssertionError("more than %d bytes of STDOUT" % limit)
            self.stdout_records.append(rec)
        elif rec.type == STDERR:
            if self.stderr_ended:
                raise AssertionError("STDERR after the empty STDERR record: %r" % rec)
            if not rec.content:
                self.stderr_ended = True
            self.stderr_records.append(rec)
        elif rec.type == END_REQUEST:
            assert len(rec.content) == 8, rec
            self.app_status, self.protocol_status = struct.unpack(">IB3x", rec.content)
        else:
            raise AssertionError("unexpected record in a response: %r" % rec)

    @property
    def stdout(self):
        return b"".join(r.content for r in self.stdout_records)

    @property
    def stderr(self):
        return b"".join(r.content for r in self.stderr_records)

    def response(self):
        return parse_cgi_response(self.stdout)


class CgiResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default

    def header_list(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        import json
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<CgiResponse %d %r headers=%r body[%d]=%r>" % (
            self.status, self.reason, self.headers, len(self.body), self.body[:200])


def parse_cgi_response(data, status_line=False):
    """``Status: 200 OK`` (CGI, FastCGI, SCGI) or, with ``status_line``, an
    ``HTTP/1.1 200 OK`` first line (uwsgi) followed by headers and a body."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError("no end of the response head in %r" % data[:300])
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    status, reason = 200, "OK"
    if status_line:
        first = lines.pop(0)
        version, code, reason = (first.split(" ", 2) + [""])[:3]
        assert version.startswith("HTTP/1."), first
        status = int(code)
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon and name == name.strip() and name, "bad response header line %r" % line
        if name.lower() == "status" and not status_line:
            code, _, reason = value.strip().partition(" ")
            status = int(code)
        else:
            headers.append((name, value.strip()))
    if not status_line:
        assert any(l.lower().startswith("status:") for l in lines), \
            "no Status: header in %r" % head
    return CgiResponse(status, reason, headers, body)


# --------------------------------------------------------------------------
# SCGI and uwsgi


def scgi_netstring(params, body_length=0, first=None):
    """An SCGI header netstring: CONTENT_LENGTH first (unless ``first`` names
    another variable to put first), then SCGI=1 and ``params``."""
    items = [("CONTENT_LENGTH", str(body_length)), ("SCGI", "1")]
    items += [(k, v) for k, v in params.items() if k not in ("CONTENT_LENGTH", "SCGI")]
    if first is not None:
        items.sort(key=lambda kv: kv[0] != first)
    block = b"".join(_bytes(k) + b"\0" + _bytes(v) + b"\0" for k, v in items)
    return b"%d:%s," % (len(block), block)


def uwsgi_packet(params, modifier1=0, modifier2=0):
    """A uwsgi request packet as nginx's uwsgi_pass sends it (modifier1 0)."""
    body = b"".join(struct.pack("<H", len(_bytes(k))) + _bytes(k)
                    + struct.pack("<H", len(_bytes(v))) + _bytes(v)
                    for k, v in params.items())
    return struct.pack("<BHB", modifier1, len(body), modifier2) + body
