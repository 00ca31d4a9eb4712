"""What every gateway back end shares: CGI scripts, FastCGI and SCGI upstreams.

Strategy: `Gateway` is the handler base of the mounts answered by a back end that
speaks CGI (RFC 3875). A subclass says where a request goes (`locate`: the script,
or the upstream and the split of the path) and how it is carried (`exchange`);
this module makes the meta-variables (section 4.1), applies the mount's `params`
templates (fastgw.gatewayparams), hands the back end the request body through
`RequestBody` (a chunked body is spooled so CONTENT_LENGTH is known, as nginx
does), feeds its output to a ScriptResponse (fastgw.cgiresponse) and turns
failures into statuses: bad output 502 (500 for CGI scripts), timeouts 504. A
local redirect (section 6.2.2) is answered by routing a GET of the new URL again
through the router the worker gives the gateway.
"""
import abc
import logging
import tempfile
import threading
import time
from urllib.parse import unquote_to_bytes

from fastgw import __version__
from fastgw.cgiresponse import ScriptResponse
from fastgw.errors import ClientDisconnected, GatewayError, GatewayTimeout, HttpError
from fastgw.gatewayparams import apply_params, check_params
from fastgw.subrequest import derived_request

log = logging.getLogger("fastgw.error")

SERVER_SOFTWARE = f"fastgw/{__version__}"
GATEWAY_INTERFACE = "CGI/1.1"
CHUNK = 65536
MAX_LOCAL_REDIRECTS = 10
# Request bodies of unknown length (chunked) are kept in memory up to this size, then on disk.
SPOOL_IN_MEMORY = 1 << 20

STATUS_LINES = {
    400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
    500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
}


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
# local redirects

_redirects = threading.local()


def redirected_request(req, location):
    """The GET request a local redirect (Location: /path?query) asks the server to answer."""
    raw = location.encode("latin-1")
    path, _, query = raw.partition(b"?")
    return derived_request(req, "GET", location,
                           (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1"),
                           query.decode("latin-1"), EMPTY_BODY)


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
    # Set by mountkinds.build_router: where local redirects go.
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
