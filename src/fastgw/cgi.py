"""CGI/1.1 (RFC 3875): scripts run per request, and the parts every gateway back end shares.

Strategy: the path below a cgi mount is walked on the file system one segment at
a time until it reaches a regular file. That file is the script; the segments
walked join SCRIPT_NAME and the rest is PATH_INFO. The script runs with no shell
(its own path is argv[0]), in a session of its own (a timeout kills it and
everything it started), with the request's meta-variables and PATH as its whole
environment. One thread pumps three pipes with poll(2): the request body into
stdin as the script takes it, stdout into the response as the client takes it,
stderr lines into the error log.

What the FastCGI and SCGI upstreams (upstream.py) share with CGI lives here too:
`Gateway` (meta-variables, `params` templates, error statuses, local redirects),
`RequestBody` (a chunked request body is spooled so CONTENT_LENGTH is known) and
`ScriptResponse`, which turns the CGI response format (RFC 3875 section 6) into
calls on the responder: a header block (Status, Location, Content-Type, others),
then the body, streamed, chunked when no Content-Length was given. A Location
that is a local path, with no Status, is re-dispatched through the router as a
GET (a local redirect); any other Location without a Status becomes a 302.
"""
import abc
import errno
import http
import logging
import os
import re
import select
import signal
import stat
import subprocess
import tempfile
import threading
import time
from urllib.parse import unquote_to_bytes

from fastgw import __version__
from fastgw.config import fs_bytes, printable_path, wire_path
from fastgw.errors import ClientDisconnected, ConfigError, HttpError

log = logging.getLogger("fastgw.error")

SERVER_SOFTWARE = f"fastgw/{__version__}"
GATEWAY_INTERFACE = "CGI/1.1"
CHUNK = 65536
# A header block larger than this is refused (the back end is broken or hostile).
MAX_HEAD = 65536
MAX_LOCAL_REDIRECTS = 10
# Request bodies of unknown length (chunked) are kept in memory up to this size, then on disk.
SPOOL_IN_MEMORY = 1 << 20
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# A stderr line longer than this is logged in pieces.
MAX_LOG_LINE = 4096

STATUS_LINES = {
    400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
    500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
}
# RFC 9110 section 7.6.1: they describe the back end's connection, not the client's.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG})
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NPH_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: (.*))?")


# --------------------------------------------------------------------------
# errors


class GatewayError(Exception):
    """The back end failed: answered with `status` (None: the gateway's usual one) or cut off."""

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class GatewayTimeout(GatewayError):
    status = 504


def error_response(resp, status):
    line = STATUS_LINES[status]
    body = (line + "\n").encode("latin-1")
    resp.send_head(line, [("Content-Type", "text/plain; charset=utf-8")], len(body), False)
    resp.finish(body)


def ms_left(deadline):
    """poll(2) timeout in milliseconds until `deadline`; GatewayTimeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise GatewayTimeout("timed out")
    return int(left * 1000) + 1


# --------------------------------------------------------------------------
# params templates


class Placeholder:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


# Placeholders that are not meta-variables: the mount's prefix, and the script part of
# the path below it (what split_path_info, or the CGI file walk, took as the script).
SPECIAL_PLACEHOLDERS = frozenset({"prefix", "script"})
# Meta-variables a template may name (lower case); any http_* name is allowed too.
KNOWN_PLACEHOLDERS = frozenset({
    "auth_type", "content_length", "content_type", "document_root", "gateway_interface",
    "https", "path_info", "path_translated", "query_string", "remote_addr", "remote_host",
    "remote_port", "remote_user", "request_method", "request_scheme", "request_uri",
    "script_filename", "script_name", "server_addr", "server_name", "server_port",
    "server_protocol", "server_software",
}) | SPECIAL_PLACEHOLDERS
_PLACEHOLDER_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_template(text, where):
    """'{document_root}{script}' -> a tuple of literal strs (wire form) and Placeholders."""
    parts = []
    literal = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif c == "{":
            end = text.find("}", i)
            if end < 0:
                raise ConfigError(f"{where}: {text!r} has a '{{' with no '}}'; write {{{{ for a "
                                  f"literal brace")
            name = text[i + 1:end]
            if not _PLACEHOLDER_NAME.fullmatch(name) or not (
                    name in KNOWN_PLACEHOLDERS or name.startswith("http_")):
                raise ConfigError(f"{where}: unknown placeholder {{{name}}} in {text!r}; use a "
                                  f"meta-variable in lower case ({{document_root}}, "
                                  f"{{script_name}}, {{path_info}}, {{query_string}}, "
                                  f"{{http_host}}, ...) or {{prefix}}, {{script}}")
            if literal:
                parts.append(wire_path("".join(literal)))
                literal = []
            parts.append(Placeholder(name))
            i = end + 1
        elif c == "}":
            raise ConfigError(f"{where}: {text!r} has a '}}' with no '{{'; write }}}} for a "
                              f"literal brace")
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append(wire_path("".join(literal)))
    return tuple(parts)


def check_params(params, where):
    """Validate a mount's params (name -> template) and compile them: (name, parts) pairs,
    DOCUMENT_ROOT first (the others may use {document_root})."""
    compiled = []
    for name, text in params:
        if type(name) is not str or not _PARAM_NAME.fullmatch(name):
            raise ConfigError(f"{where}: params name {name!r} must be letters, digits and '_', "
                              f"e.g. SCRIPT_FILENAME")
        if type(text) is not str or "\0" in text:
            raise ConfigError(f"{where}: params {name} = {text!r}: must be a string without NUL")
        compiled.append((name, parse_template(text, f"{where}: params {name}")))
    compiled.sort(key=lambda item: item[0] != "DOCUMENT_ROOT")
    return tuple(compiled)


def render(parts, env, specials):
    out = []
    for part in parts:
        if type(part) is str:
            out.append(part)
        else:
            name = part.name
            out.append(specials[name] if name in specials else env.get(name.upper(), ""))
    return "".join(out)


def apply_params(env, templates, specials):
    """Set the mount's params in `env`; a param that renders empty removes the variable."""
    if not templates:
        return env
    seen = env
    for name, parts in templates:
        value = render(parts, seen, specials)
        if name == "DOCUMENT_ROOT":
            seen = dict(env, DOCUMENT_ROOT=value)
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


# --------------------------------------------------------------------------
# meta-variables (RFC 3875 section 4.1)

_header_keys = {}
# From a FastCGI/SCGI front end's own CGI variables, these carry over to a back end.
INHERITED = ("REMOTE_USER", "AUTH_TYPE", "SERVER_ADDR", "SERVER_NAME", "SERVER_PORT", "HTTPS")


def header_key(name):
    """'User-Agent' -> 'HTTP_USER_AGENT'; '' for headers a back end never sees: names with
    '_' (spoofable, as in nginx), Proxy (httpoxy, CVE-2016-5385), the body framing."""
    key = _header_keys.get(name)
    if key is not None:
        return key
    lower = name.lower()
    if "_" in name or lower in ("proxy", "content-length", "transfer-encoding"):
        key = ""
    elif lower == "content-type":
        key = "CONTENT_TYPE"
    else:
        key = "HTTP_" + name.upper().replace("-", "_")
    if len(_header_keys) < 1024:
        _header_keys[name] = key
    return key


def split_host(host, scheme):
    """Host header -> (SERVER_NAME, SERVER_PORT): 'example.com:8080', '[::1]', 'example.com'."""
    port = "443" if scheme == "https" else "80"
    if host.startswith("["):
        close = host.find("]")
        if close > 0:
            rest = host[close + 1:]
            if rest[:1] == ":" and rest[1:].isdigit():
                port = rest[1:]
            return host[1:close], port
        return host, port
    name, sep, maybe_port = host.rpartition(":")
    if sep and maybe_port.isdigit():
        return name, maybe_port
    return host, port


def meta_variables(req, script_name, path_info, body_length):
    """The request's CGI meta-variables (latin-1 strs carrying the bytes)."""
    env = {
        "GATEWAY_INTERFACE": GATEWAY_INTERFACE,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SERVER_PROTOCOL": req.version,
        "REQUEST_METHOD": req.method,
        "REQUEST_URI": req.target,
        "REQUEST_SCHEME": req.scheme,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": req.query,
    }
    if body_length is not None:
        env["CONTENT_LENGTH"] = str(body_length)
    peer = req.peer
    if peer:
        env["REMOTE_ADDR"] = env["REMOTE_HOST"] = peer[0]
        env["REMOTE_PORT"] = str(peer[1])
    else:
        env["REMOTE_ADDR"] = env["REMOTE_HOST"] = ""  # a UNIX socket has no peer address
    for name, value in req.headers:
        key = _header_keys.get(name)
        if key is None:
            key = header_key(name)
        if not key:
            continue
        if key in env:
            env[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            env[key] = value
    sockname = req.sockname
    if type(sockname) is tuple:
        env["SERVER_ADDR"] = sockname[0]
    host = env.get("HTTP_HOST")
    if host:
        env["SERVER_NAME"], env["SERVER_PORT"] = split_host(host, req.scheme)
    elif type(sockname) is tuple:
        env["SERVER_NAME"], env["SERVER_PORT"] = sockname[0], str(sockname[1])
    else:
        env["SERVER_NAME"], env["SERVER_PORT"] = "localhost", "443" if req.scheme == "https" else "80"
    if req.scheme == "https":
        env["HTTPS"] = "on"
    params = req.params
    if params:
        for key in INHERITED:
            value = params.get(key)
            if value:
                env[key] = value
    return env


# --------------------------------------------------------------------------
# the request body


class RequestBody:
    """The request body as a back end gets it: a known `length` (None: no body) and read(n).

    A chunked body has no length up front, but CGI needs CONTENT_LENGTH (PHP reads
    nothing without it), so it is read whole into a spool file first, as nginx does.
    """

    def __init__(self, req):
        self.source = req.body
        self.spool = None
        self.taken = 0
        length = req.content_length
        if length < 0:
            chunked = any(name.lower() == "transfer-encoding" for name, _ in req.headers)
            length = self.fill_spool() if chunked else None
        self.length = length
        self.left = length or 0

    def fill_spool(self):
        spool = self.spool = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY)
        total = 0
        while True:
            data = self.source.read(CHUNK)
            if not data:
                break
            spool.write(data)
            total += len(data)
        spool.seek(0)
        return total

    def read(self, size=CHUNK):
        """Up to `size` bytes (waiting for the client if needed); b"" at the end."""
        if self.left <= 0:
            return b""
        want = size if size < self.left else self.left
        if self.spool is not None:
            data = self.spool.read(want)
        else:
            data = self.source.read(want)
        if not data:
            self.left = 0
            raise ClientDisconnected("the request body ended before its Content-Length")
        self.left -= len(data)
        self.taken += len(data)
        return data

    def close(self):
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class EmptyBody:
    """wsgi.input of a request with no body (a local redirect's GET)."""

    def read(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return iter(())


EMPTY_BODY = EmptyBody()


# --------------------------------------------------------------------------
# the response


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


# --------------------------------------------------------------------------
# local redirects

_redirects = threading.local()


def redirected_request(req, location):
    """The GET request a local redirect (Location: /path?query) asks the server to answer."""
    from fastgw._request import Request

    raw = location.encode("latin-1")
    path, _, query = raw.partition(b"?")
    new = Request()
    new.method = "GET"
    new.target = location
    new.path = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    new.query = query.decode("latin-1")
    new.script_name = ""
    new.version = req.version
    new.headers = [(name, value) for name, value in req.headers
                   if name.lower() not in ("content-length", "content-type", "transfer-encoding")]
    params = req.params
    if params is not None:
        params = {k: v for k, v in params.items() if k not in (
            "CONTENT_LENGTH", "CONTENT_TYPE", "SCRIPT_NAME", "PATH_INFO", "REQUEST_URI",
            "QUERY_STRING", "REQUEST_METHOD", "DOCUMENT_URI")}
    new.params = params
    new.errors = req.errors
    new.body = EMPTY_BODY
    new.peer = req.peer
    new.sockname = req.sockname
    new.scheme = req.scheme
    new.content_length = -1
    return new


def local_redirect(router, req, resp, location, what):
    """Answer `req` with what the server answers for GET `location` (RFC 3875 section 6.2.2)."""
    depth = getattr(_redirects, "depth", 0)
    if router is None:
        resp.send_head("302 Found", [("Location", location)], 0, False)
        resp.finish()
        return
    if depth >= MAX_LOCAL_REDIRECTS:
        log.error("%s: more than %d local redirects in a row (last to %r); giving up",
                  what, MAX_LOCAL_REDIRECTS, location)
        error_response(resp, 500)
        return
    _redirects.depth = depth + 1
    try:
        router.redispatch(redirected_request(req, location), resp)
    finally:
        _redirects.depth = depth


# --------------------------------------------------------------------------
# what the gateways share


class Gateway(abc.ABC):
    """A handler answering from a back end that speaks CGI: scripts, FastCGI, SCGI.

    Subclasses say where a request goes (locate) and how it is carried (exchange);
    this class makes the meta-variables, applies `params`, and turns failures into
    statuses: bad output 502 (500 for CGI scripts), timeouts 504.
    """

    bad_output_status = 502
    # Set by build_router: where local redirects go.
    router = None

    def __init__(self, params=(), timeout=60.0, where="mount"):
        self.templates = check_params(params, where)
        self.timeout = timeout

    @abc.abstractmethod
    def locate(self, req):
        """(script_name, path_info, placeholders, context) or the status refusing `req`."""

    def environ(self, req, script_name, path_info, body, context):
        return meta_variables(req, script_name, path_info, body.length)

    @abc.abstractmethod
    def exchange(self, env, body, out, deadline, context):
        """Send the request, feed the response to `out` (a ScriptResponse)."""

    @abc.abstractmethod
    def describe(self, context):
        """What answers, for log lines: the script or the upstream."""

    def __call__(self, req, resp):
        deadline = time.monotonic() + self.timeout
        where = self.locate(req)
        if type(where) is int:
            return error_response(resp, where)
        script_name, path_info, specials, context = where
        what = self.describe(context)
        body = None
        out = None
        try:
            body = RequestBody(req)
            env = self.environ(req, script_name, path_info, body, context)
            apply_params(env, self.templates, specials)
            out = ScriptResponse(resp, what, nph=self.is_nph(context), head=req.method == "HEAD")
            self.exchange(env, body, out, deadline, context)
            out.finish()
        except GatewayTimeout as e:
            log.error("%s: %s after %g s (the mount's timeout); %s", what, e, self.timeout,
                      "cutting the response off" if resp.headers_sent else "answering 504")
            self.fail(resp, 504)
        except GatewayError as e:
            log.error("%s: %s", what, e)
            self.fail(resp, e.status or self.bad_output_status)
        except ClientDisconnected as e:
            log.info("client %s went away during %s: %s", req.peer, what, e)
            resp.abort()
        except HttpError as e:
            log.info("bad request body from %s: %s %s", req.peer, e.status, e)
            self.fail(resp, e.status, e.status_line)
        except Exception:
            log.exception("error in the gateway to %s for %s %s", what, req.method, req.target)
            self.fail(resp, 500)
        finally:
            if body is not None:
                body.close()
        if out is not None and out.location is not None and not resp.headers_sent:
            local_redirect(self.router, req, resp, out.location, what)

    def is_nph(self, context):
        return False

    @staticmethod
    def fail(resp, status, line=None):
        if resp.headers_sent:
            resp.abort()
        elif line is not None and status not in STATUS_LINES:
            body = (line + "\n").encode("latin-1")
            resp.send_head(line, [("Content-Type", "text/plain; charset=utf-8")], len(body), False)
            resp.finish(body)
        else:
            error_response(resp, status)


def bad_path(req):
    """A status for a path below the mount no back end should see: NUL, '.', '..'."""
    path = req.path
    if "\0" in path:
        return 400
    if "/." in path:
        for segment in path.split("/"):
            if segment == "." or segment == "..":
                return 400
    return 0


# --------------------------------------------------------------------------
# CGI scripts


def search_args(query):
    """RFC 3875 section 4.4: a query with no '=' is a search string, its words become argv."""
    if not query or "=" in query:
        return []
    args = []
    for word in query.split("+"):
        arg = unquote_to_bytes(word.encode("latin-1"))
        if not arg or b"\0" in arg:
            return []
        args.append(arg)
    return args


class CgiScripts(Gateway):
    """Runs the executable files of a directory as CGI scripts."""

    bad_output_status = 500

    def __init__(self, root, params=(), timeout=60.0, where="cgi mount"):
        super().__init__(params, timeout, where)
        root = os.path.abspath(root if type(root) is bytes else fs_bytes(root))
        self.root = root.rstrip(b"/") or b"/"
        real = os.path.realpath(self.root)
        self.real_prefix = real if real.endswith(b"/") else real + b"/"
        self.path = os.environ.get("PATH") or DEFAULT_PATH

    @classmethod
    def from_mount(cls, mount, timeout):
        return cls(mount.cgi, params=mount.params, timeout=timeout,
                   where=mount.source or f"mount {mount.path!r}")

    def locate(self, req):
        """Walk the path below the mount to the script: 400/403/404 when there is none."""
        status = bad_path(req)
        if status:
            return status
        raw = req.path.encode("latin-1")
        if not raw or raw == b"/":
            return 403
        if raw[:1] != b"/" or b"\\" in raw:
            return 400
        if "%" in req.target and "%2f" in req.target.partition("?")[0].lower():
            return 404  # like Apache's AllowEncodedSlashes Off
        segments = raw.split(b"/")
        path = self.root if self.root != b"/" else b""
        last = len(segments) - 1
        st = None
        for i in range(1, last + 1):
            segment = segments[i]
            if not segment:
                if i == last:
                    return 403  # the URL of a directory: no listings, no index scripts
                continue
            if segment[:1] == b".":
                return 404
            path = path + b"/" + segment
            try:
                st = os.stat(path)
            except PermissionError:
                return 403
            except OSError as e:
                if e.errno in _NOT_FOUND_ERRNOS:
                    return 404
                raise
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                return 404
            break
        else:
            return 403
        real = os.path.realpath(path)
        if not real.startswith(self.real_prefix):
            log.info("not running %s: a symlink leads outside %s",
                     printable_path(path.decode("utf-8", "surrogateescape")),
                     printable_path(self.root.decode("utf-8", "surrogateescape")))
            return 404
        if not st.st_mode & 0o111 or not os.access(path, os.X_OK):
            log.info("not running %s: it is not executable (chmod +x it to make it a CGI script)",
                     printable_path(path.decode("utf-8", "surrogateescape")))
            return 403
        script = b"/".join(segments[:i + 1]).decode("latin-1")
        path_info = raw[len(script):].decode("latin-1")
        return (req.script_name + script, path_info,
                {"prefix": req.script_name, "script": script}, path)

    def describe(self, path):
        return "CGI script " + printable_path(path.decode("utf-8", "surrogateescape"))

    def is_nph(self, path):
        return os.path.basename(path).startswith(b"nph-")

    def environ(self, req, script_name, path_info, body, path):
        env = meta_variables(req, script_name, path_info, body.length)
        env["SCRIPT_FILENAME"] = path.decode("latin-1")
        env["PATH"] = self.path
        if path_info:
            translated = self.translate(path_info)
            if translated is not None:
                env["PATH_TRANSLATED"] = translated
        return env

    def translate(self, path_info):
        """PATH_TRANSLATED: where the server would find PATH_INFO as a URL (a static mount)."""
        router = self.router
        if router is None:
            return None
        from fastgw.static import StaticFiles

        prefix, handler = router.match(path_info)
        if type(handler) is not StaticFiles or handler.single_file:
            return None
        return handler.root.decode("latin-1") + path_info[len(prefix):]

    def exchange(self, env, body, out, deadline, path):
        argv = [path] + search_args(env.get("QUERY_STRING", ""))
        environ = {k.encode("latin-1"): v.encode("latin-1") for k, v in env.items()}
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if body.length else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ,
                cwd=os.path.dirname(path) or b"/", close_fds=True, start_new_session=True)
        except OSError as e:
            raise GatewayError(f"cannot run it: {e.strerror}") from None
        ended = False
        try:
            ended = self.pump(proc, body, out, deadline)
        finally:
            self.reap(proc, ended, deadline, out.what)

    def pump(self, proc, body, out, deadline):
        """stdin, stdout and stderr until stdout ends; True then, False after a local redirect."""
        stdout = proc.stdout.fileno()
        stderr = proc.stderr.fileno()
        stdin = proc.stdin.fileno() if proc.stdin is not None else -1
        errors = StderrLog(out.what)
        poller = select.poll()
        for fd in (stdin, stdout, stderr):
            if fd >= 0:
                os.set_blocking(fd, False)
        poller.register(stdout, select.POLLIN)
        poller.register(stderr, select.POLLIN)
        pending = b""
        reading = 2
        try:
            while reading:
                if stdin >= 0 and not pending and stdout >= 0:
                    pending = body.read(CHUNK)
                    if pending:
                        poller.register(stdin, select.POLLOUT)
                    else:
                        proc.stdin.close()
                        stdin = -1
                events = poller.poll(ms_left(deadline))
                if not events:
                    raise GatewayTimeout("timed out")
                for fd, event in events:
                    if fd == stdin:
                        try:
                            n = os.write(stdin, pending)
                            pending = pending[n:]
                            if not pending:
                                poller.unregister(stdin)
                        except BlockingIOError:
                            pass
                        except OSError:
                            # The script stopped reading its input: it has what it wants.
                            poller.unregister(stdin)
                            proc.stdin.close()
                            stdin = -1
                            pending = b""
                    elif fd == stdout:
                        try:
                            data = os.read(stdout, 4 * CHUNK)
                        except BlockingIOError:
                            continue
                        if not data:
                            poller.unregister(stdout)
                            stdout = -1
                            reading -= 1
                            if stdin >= 0:
                                # No more output can come: the script does not want the rest.
                                if pending:
                                    poller.unregister(stdin)
                                    pending = b""
                                proc.stdin.close()
                                stdin = -1
                        elif not out.feed(data):
                            return False
                    elif fd == stderr:
                        try:
                            data = os.read(stderr, CHUNK)
                        except BlockingIOError:
                            continue
                        if not data:
                            poller.unregister(stderr)
                            reading -= 1
                        else:
                            errors.feed(data)
            return True
        finally:
            errors.close()

    @staticmethod
    def reap(proc, ended, deadline, what):
        """Close the pipes and collect the script; its session is killed unless it ended well."""
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if ended:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
                return
            except subprocess.TimeoutExpired:
                log.error("%s: still running at the timeout after closing its output; killed", what)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
