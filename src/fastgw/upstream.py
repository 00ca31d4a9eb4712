"""FastCGI and SCGI upstreams: php-fpm, another fastgw, any responder behind a socket.

Strategy: the client side of both protocols, in pure Python (a request costs a
few records; the bytes in between are copied, not parsed). The handler runs in
an application thread and owns one upstream socket for the request, non-blocking
under poll(2): request bytes (FastCGI records, or the SCGI netstring) go out as
the socket takes them and the client's body is read only when they are all out,
so a slow upstream slows the client down and not the reverse; response bytes are
handed to the shared ScriptResponse (cgiresponse.py) as they arrive, and the responder
blocks while the client lags, so a slow client slows the upstream down.

FastCGI connections are kept (FCGI_KEEP_CONN) in a per-mount pool when the
upstream ended the request cleanly and had the whole body; a pooled connection
the upstream has closed meanwhile is noticed before use (a peek sees its EOF)
and dropped. SCGI has one request per connection. Upstream down is 502, no
answer within the mount's timeout is 504, FastCGI STDERR goes to the error log.
"""
import re
import select
import socket
import struct
import threading
import time

from fastgw.cgiresponse import StderrLog
from fastgw.errors import GatewayError, GatewayTimeout
from fastgw.gateway import CHUNK, Gateway, bad_path, ms_left

# FastCGI 1.0 record types and constants (the specification's names).
FCGI_VERSION_1 = 1
FCGI_BEGIN_REQUEST = 1
FCGI_ABORT_REQUEST = 2
FCGI_END_REQUEST = 3
FCGI_PARAMS = 4
FCGI_STDIN = 5
FCGI_STDOUT = 6
FCGI_STDERR = 7
FCGI_RESPONDER = 1
FCGI_KEEP_CONN = 1
FCGI_REQUEST_COMPLETE = 0
PROTOCOL_STATUS = {1: ("cannot multiplex connections (FCGI_CANT_MPX_CONN)", 502),
                   2: ("is overloaded (FCGI_OVERLOADED)", 503),
                   3: ("does not take the responder role (FCGI_UNKNOWN_ROLE)", 502)}
RECORD_HEADER = struct.Struct("!BBHHBx")
MAX_CONTENT = 65528  # a multiple of 8 below 65535: records need no padding but the last
REQUEST_ID = 1
# Idle FastCGI connections kept per mount and worker process.
MAX_IDLE = 16
RECV_SIZE = 262144


def record(rtype, content, rid=REQUEST_ID):
    """One record (content up to 65535 bytes), padded to a multiple of 8."""
    n = len(content)
    pad = -n % 8
    return RECORD_HEADER.pack(FCGI_VERSION_1, rtype, rid, n, pad) + content + b"\0" * pad


def stream_records(rtype, data, rid=REQUEST_ID):
    """A stream's data as records; empty data is the stream's end."""
    if not data:
        return record(rtype, b"", rid)
    if len(data) <= MAX_CONTENT:
        return record(rtype, data, rid)
    return b"".join(record(rtype, data[pos:pos + MAX_CONTENT], rid)
                    for pos in range(0, len(data), MAX_CONTENT))


def encode_length(n):
    return bytes((n,)) if n < 128 else struct.pack("!I", n | 0x80000000)


def encode_params(env):
    """CGI variables as FastCGI name-value pairs (latin-1 strs back to their bytes)."""
    out = []
    for name, value in env.items():
        name = name.encode("latin-1")
        value = value.encode("latin-1")
        out.append(encode_length(len(name)) + encode_length(len(value)) + name + value)
    return b"".join(out)


def begin_request(keep_conn):
    return record(FCGI_BEGIN_REQUEST,
                  struct.pack("!HB5x", FCGI_RESPONDER, FCGI_KEEP_CONN if keep_conn else 0))


def scgi_request(env, length):
    """The SCGI header netstring: CONTENT_LENGTH first, then SCGI=1, then the rest."""
    env = dict(env)
    env.pop("CONTENT_LENGTH", None)
    env.pop("SCGI", None)
    parts = [b"CONTENT_LENGTH\0%d\0SCGI\0" % length, b"1\0"]
    for name, value in env.items():
        parts.append(name.encode("latin-1") + b"\0" + value.encode("latin-1") + b"\0")
    headers = b"".join(parts)
    return b"%d:%s," % (len(headers), headers)


def parse_address(text):
    """'unix:/run/php.sock' or 'tcp://host:port' (as addresses.parse_upstream writes them) ->
    (family, address)."""
    if text.startswith("unix:"):
        return socket.AF_UNIX, text[5:]
    hostport = text[6:] if text.startswith("tcp://") else text
    host, _, port = hostport.rpartition(":")
    if host.startswith("["):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host, int(port))


class UpstreamClosed(GatewayError):
    """The upstream closed the connection (or reset it) before the response was complete."""


class Upstream(Gateway):
    """What the FastCGI and SCGI gateways share: the address, connecting, the path split."""

    protocol = ""

    def __init__(self, address, params=(), split_path_info=None, timeout=60.0, where="mount"):
        super().__init__(params, timeout, where)
        self.address_text = address
        self.family, self.address = parse_address(address)
        self.split = None
        if split_path_info:
            self.split = re.compile(split_path_info)
        self.what = f"{self.protocol} upstream {address}"

    @classmethod
    def from_mount(cls, mount, timeout):
        return cls(getattr(mount, cls.protocol), params=mount.params,
                   split_path_info=mount.split_path_info, timeout=timeout,
                   where=mount.source or f"mount {mount.path!r}")

    def describe(self, context):
        return self.what

    def locate(self, req):
        status = bad_path(req)
        if status:
            return status
        path = req.path
        script = ""
        if self.split is not None:
            match = self.split.match(path)
            if match is not None:
                script = match.group(1) or ""
                path = match.group(2) or ""
        prefix = req.script_name
        return prefix + script, path, {"prefix": prefix, "script": script}, None

    def connect(self, deadline):
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(self.address)
        except socket.timeout:
            sock.close()
            raise GatewayTimeout("no connection within the timeout") from None
        except OSError as e:
            sock.close()
            raise GatewayError(f"cannot connect: {e.strerror or e}") from None
        if self.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock


def pump(sock, first, body, frame, on_data, deadline):
    """Send `first`, then (when `body` is not None) the body framed by frame(chunk), where
    frame(b"") ends it; meanwhile on_data(bytes) gets what arrives (b"" at EOF) until it
    returns True. Returns True when the whole request went out.
    """
    out = memoryview(first)
    more = body is not None
    broken = False
    fd = sock.fileno()
    poller = select.poll()
    mask = select.POLLIN | select.POLLOUT
    poller.register(fd, mask)
    while True:
        if more and not out:
            chunk = body.read(CHUNK)
            out = memoryview(frame(chunk))
            more = bool(chunk)
        want = select.POLLIN | (select.POLLOUT if out else 0)
        if want != mask:
            poller.modify(fd, want)
            mask = want
        events = poller.poll(ms_left(deadline))
        if not events:
            raise GatewayTimeout("no answer")
        event = events[0][1]
        if event & select.POLLOUT and out:
            try:
                out = out[sock.send(out):]
            except BlockingIOError:
                pass
            except OSError:
                # The upstream stopped reading: what it answers (or its EOF) says why.
                out = memoryview(b"")
                more = False
                broken = True
        if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError as e:
                raise UpstreamClosed(f"connection lost: {e.strerror or e}") from None
            if on_data(data):
                return not (more or out or broken)
            if not data:
                raise UpstreamClosed("closed the connection before the response was complete")


class FastCgiUpstream(Upstream):
    """Requests forwarded to a FastCGI responder (php-fpm, a fastgw FastCGI listener)."""

    protocol = "fastcgi"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idle = []
        self.lock = threading.Lock()

    def take_idle(self):
        """A pooled connection the upstream has not closed meanwhile, or None."""
        while True:
            with self.lock:
                if not self.idle:
                    return None
                sock = self.idle.pop()
            try:
                sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return sock  # nothing to read: still open and idle
            except OSError:
                pass
            sock.close()  # EOF or stray bytes: not usable

    def give_back(self, sock):
        with self.lock:
            if len(self.idle) < MAX_IDLE:
                self.idle.append(sock)
                return
        sock.close()

    def exchange(self, env, body, out, deadline, context):
        params = encode_params(env)
        request = bytearray(begin_request(True))
        request += stream_records(FCGI_PARAMS, params) if params else b""
        request += record(FCGI_PARAMS, b"")
        if not body.length:
            request += record(FCGI_STDIN, b"")
        while True:
            sock = self.take_idle()
            pooled = sock is not None
            if sock is None:
                sock = self.connect(deadline)
            reader = FcgiReader(out, self.what)
            keep = False
            try:
                sent_all = pump(sock, request, body if body.length else None,
                                lambda chunk: stream_records(FCGI_STDIN, chunk),
                                reader.feed, deadline)
                keep = sent_all and reader.ended and not reader.buf
                return
            except UpstreamClosed:
                if pooled and not reader.got_any and body.taken == 0:
                    continue  # a pooled connection died under us: try another one
                raise
            finally:
                if keep:
                    self.give_back(sock)
                else:
                    sock.close()


class GroupForwarder(FastCgiUpstream):
    """An app mount served by a process group (fastgw.groups): the request goes to the
    group's socket with its whole path in PATH_INFO, and the group's router splits it
    again, so the application sees the SCRIPT_NAME and PATH_INFO it would in-process."""

    def __init__(self, group, path, timeout):
        super().__init__("unix:" + path, timeout=timeout, where=f"process group {group!r}")
        self.what = f"process group {group!r}"

    def locate(self, req):
        return "", req.script_name + req.path, {}, None


class FcgiReader:
    """Records from the upstream: STDOUT to the response, STDERR to the log, END_REQUEST."""

    def __init__(self, out, what):
        self.out = out
        self.errors = StderrLog(what)
        self.what = what
        self.buf = bytearray()
        self.ended = False
        self.got_any = False
        self.redirected = False

    def feed(self, data):
        """True when the response is over (END_REQUEST, or a local redirect)."""
        if not data:
            self.errors.close()
            return False
        self.got_any = True
        buf = self.buf
        buf += data
        while len(buf) >= 8:
            version, rtype, rid, clen, plen = RECORD_HEADER.unpack_from(buf)
            if version != FCGI_VERSION_1:
                raise GatewayError(f"sent a record of FastCGI version {version} (is it FastCGI?)")
            end = 8 + clen + plen
            if len(buf) < end:
                break
            content = bytes(buf[8:8 + clen])
            del buf[:end]
            if rid != REQUEST_ID:
                continue  # a management record or another id: not ours
            if rtype == FCGI_STDOUT:
                if content and not self.out.feed(content):
                    self.redirected = True
                    self.errors.close()
                    return True
            elif rtype == FCGI_STDERR:
                if content:
                    self.errors.feed(content)
            elif rtype == FCGI_END_REQUEST:
                self.errors.close()
                if len(content) < 8:
                    raise GatewayError("sent a short END_REQUEST record")
                status = content[4]
                if status != FCGI_REQUEST_COMPLETE:
                    message, code = PROTOCOL_STATUS.get(
                        status, (f"ended the request with protocol status {status}", 502))
                    raise GatewayError(message, code)
                self.ended = True
                return True
        return False


class ScgiUpstream(Upstream):
    """Requests forwarded to an SCGI server; one connection per request."""

    protocol = "scgi"

    def exchange(self, env, body, out, deadline, context):
        length = body.length or 0
        sock = self.connect(deadline)

        def on_data(data):
            # EOF ends an SCGI response; a local redirect wants no more of it.
            return not data or not out.feed(data)

        try:
            pump(sock, scgi_request(env, length), body if length else None,
                 lambda chunk: chunk, on_data, deadline)
        finally:
            sock.close()
