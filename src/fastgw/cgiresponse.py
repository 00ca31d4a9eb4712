"""The CGI response format (RFC 3875 section 6), from a script or an upstream, onto the responder.

Strategy: ScriptResponse takes the back end's output as it comes: a header block
(Status, Location, Content-Type, others; at most MAX_HEAD bytes, hop-by-hop
headers dropped) becomes one send_head, the rest is streamed as the body,
chunked when no Content-Length was given. A Location that is a local path, with
no Status, ends the response early: the gateway re-dispatches the request (a
local redirect); any other Location without a Status becomes a 302. An NPH
script's own status line is taken as it is. StderrLog turns a back end's error
output into error-log lines.
"""
import http
import logging
import re

from fastgw.errors import GatewayError

log = logging.getLogger("fastgw.error")

# A header block larger than this is refused (the back end is broken or hostile).
MAX_HEAD = 65536
# A stderr line longer than this is logged in pieces.
MAX_LOG_LINE = 4096
# RFC 9110 section 7.6.1: they describe the back end's connection, not the client's.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NPH_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: (.*))?")


def status_line(value):
    """'404', '404 Not Found' -> '404 Not Found' (a reason added when missing)."""
    code = value[:3]
    if not (code.isdigit() and code.isascii()) or (len(value) > 3 and value[3] != " "):
        raise GatewayError(f"sent a malformed Status {value!r}")
    number = int(code)
    if not 200 <= number <= 599:
        raise GatewayError(f"sent Status {value!r}; a final status is 200 to 599")
    reason = value[4:].strip()
    if not reason:
        try:
            reason = http.HTTPStatus(number).phrase
        except ValueError:
            reason = "Unknown"
    return f"{code} {reason}"


class ScriptResponse:
    """The CGI response format from a script or an upstream, onto the responder.

    feed() takes output bytes as they come; finish() at the end of the output. After a
    local redirect (`location` set) feed() returns False: the rest of the output is not
    wanted and the caller re-dispatches the request.
    """

    def __init__(self, resp, what, nph=False, head=False):
        self.resp = resp
        self.what = what
        self.nph = nph
        # A HEAD response's body is optional: a back end speaking HTTP semantics (a fastgw
        # process group) sends none, a CGI script usually does and it is dropped.
        self.head = head
        self.buf = bytearray()
        self.scan = 0
        self.lines = []
        self.in_head = True
        self.location = None
        self.expected = -1
        self.received = 0

    def feed(self, data):
        if not self.in_head:
            self.body(data)
            return True
        buf = self.buf
        buf += data
        pos = self.scan
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = bytes(buf[pos:nl - 1 if nl > pos and buf[nl - 1] == 13 else nl])
            pos = nl + 1
            if line:
                self.lines.append(line)
                continue
            rest = bytes(buf[pos:])
            self.buf = None
            self.in_head = False
            self.start()
            if self.location is not None:
                return False
            if rest:
                self.body(rest)
            return True
        self.scan = pos
        if len(buf) > MAX_HEAD:
            raise GatewayError(f"sent a header block larger than {MAX_HEAD} bytes")
        return True

    def start(self):
        """The header block is complete: send the response head (or note a local redirect)."""
        lines = self.lines
        status = None
        location = None
        headers = []
        if self.nph:
            if not lines or not _NPH_STATUS.fullmatch(lines[0]):
                raise GatewayError(f"(nph-) did not start with an HTTP/1.x status line: "
                                   f"{(lines[0] if lines else b'')[:100]!r}")
            status = status_line(lines[0][9:].decode("latin-1"))
            lines = lines[1:]
        elif not lines:
            raise GatewayError("sent an empty header block")
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep or not _HEADER_NAME.fullmatch(name):
                raise GatewayError(f"sent a malformed header line: {line[:100]!r}")
            value = value.strip(b" \t")
            if b"\0" in value or b"\r" in value:
                raise GatewayError(f"sent a control character in header {name!r}")
            name = name.decode("latin-1")
            value = value.decode("latin-1")
            lower = name.lower()
            if lower == "status" and not self.nph:
                if status is not None:
                    raise GatewayError("sent two Status headers")
                status = status_line(value)
                continue
            if lower == "location" and not self.nph:
                location = value
            elif lower == "content-length":
                if not (value.isdigit() and value.isascii()):
                    raise GatewayError(f"sent a malformed Content-Length {value!r}")
                if self.expected >= 0 and int(value) != self.expected:
                    raise GatewayError("sent two different Content-Length headers")
                if self.expected >= 0:
                    continue
                self.expected = int(value)
            elif lower in HOP_BY_HOP:
                continue
            headers.append((name, value))
        if location is not None and status is None:
            if location.startswith("/") and not location.startswith("//"):
                self.location = location
                return
            status = "302 Found"
        if status is None:
            status = "200 OK"
        self.resp.send_head(status, headers, self.expected, self.expected >= 0)

    def body(self, data):
        if self.expected >= 0:
            room = self.expected - self.received
            if len(data) > room:
                if room <= 0:
                    return
                data = data[:room]
        self.received += len(data)
        self.resp.write(data if type(data) is bytes else bytes(data))

    def finish(self):
        """The output ended: complete the response (GatewayError if it ended too early)."""
        if self.in_head:
            if self.buf or self.lines:
                raise GatewayError("ended its output inside the header block")
            raise GatewayError("ended without output")
        if self.location is not None:
            return
        if self.expected >= 0 and self.received < self.expected and not self.head:
            log.error("%s sent %d body bytes, less than its Content-Length %d; cutting the "
                      "response off", self.what, self.received, self.expected)
            self.resp.abort()
            return
        self.resp.finish()


class StderrLog:
    """A back end's error output, one error-log line per line it writes."""

    def __init__(self, what):
        self.what = what
        self.partial = b""

    def feed(self, data):
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LOG_LINE:
            lines.append(self.partial)
            self.partial = b""
        for line in lines:
            self.emit(line)

    def emit(self, line):
        line = line.rstrip(b"\r")
        while line:
            log.error("%s: %s", self.what,
                      line[:MAX_LOG_LINE].decode("utf-8", "backslashreplace"))
            line = line[MAX_LOG_LINE:]

    def close(self):
        if self.partial:
            self.emit(self.partial)
            self.partial = b""
