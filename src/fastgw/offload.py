"""Protected downloads: the application decides, fastgw sends the file (X-Accel-Redirect, X-Sendfile).

Strategy: as nginx does with X-Accel-Redirect and Apache's mod_xsendfile with
X-Sendfile, the application answers with a header and no body, and the server sends
the file. The WSGI handler only notices the header (one more kind in its table of
response header names, so other responses pay nothing) and, once the application
has returned, hands the request here; the application's body is discarded and its
close() called as always.

- `X-Accel-Redirect: /protected/report.pdf` (percent-encoded, an optional ?query):
  that URL path is answered through the mount table as an internal GET (HEAD stays
  HEAD), by the internal router, the one in which static mounts with
  `internal = true` exist; the public router answers 404 for them.
- `X-Sendfile: /srv/private/report.pdf`: that file, only if the path (made absolute
  and normalised) lies below one of the app mount's `x_sendfile_roots`; the static
  handler of that root then also refuses a symlink that leads out of it. Anything
  else is a 500 with one error line, and nothing of the file is sent.

Either way the static handler sends the file (sendfile, Range, ETag/Last-Modified
and 304, HEAD), with the client's own request headers. The application's headers
are kept (Content-Disposition, Cache-Control, Set-Cookie...) and replace the file's
of the same name, except those describing the bytes the static handler chose
(length, range, validators, content coding) and the X- header itself; an error
answer (404 of a missing file, 416) goes out as the static handler made it.
"""
import io
import logging
import os
import threading
from urllib.parse import unquote_to_bytes

from fastgw.paths import fs_bytes
from fastgw.subrequest import derived_request

log = logging.getLogger("fastgw.error")

# Internal redirects in a row (an app answering an X-Accel-Redirect with another one).
MAX_INTERNAL_REDIRECTS = 10
# The application's headers that never go out with the file.
DROPPED = frozenset({"content-length", "x-accel-redirect", "x-sendfile"})
# The file's headers the application's do not replace: they describe the bytes sent.
STATIC_WINS = frozenset({"content-range", "etag", "last-modified", "accept-ranges",
                         "content-encoding"})
# Request headers that describe the original request's body, not the internal one.
ERROR_BODY = b"500 Internal Server Error\n"

_depth = threading.local()


class Offload:
    """What an app mount's handler calls when a response carries X-Accel-Redirect or
    X-Sendfile: `router` answers internal URLs, `roots` are its x_sendfile_roots."""

    def __init__(self, router, roots=(), files_below=None):
        """`files_below(root)`: the handler serving the files below a root (StaticFiles,
        given by the worker's router so that handlers do not import each other)."""
        self.router = router
        # (the root with a trailing slash, the handler serving files below it)
        self.roots = [(fs_bytes(root).rstrip(b"/") + b"/", files_below(root)) for root in roots]

    def __call__(self, req, ex):
        name, value = ex.offload
        resp = ex.resp
        depth = getattr(_depth, "value", 0)
        try:
            if depth >= MAX_INTERNAL_REDIRECTS:
                return refuse(resp, "more than %d internal redirects in a row (last %s: %r) "
                              "for %s %s", MAX_INTERNAL_REDIRECTS, name, value, req.method,
                              req.target)
            kept = ApplicationHeaders(resp, ex.headers)
            _depth.value = depth + 1
            if name.lower() == "x-accel-redirect":
                self.redirect(req, kept, value)
            else:
                self.send_file(req, kept, value)
        except Exception:
            log.exception("error answering %s %r for %s %s", name, value, req.method, req.target)
            if resp.headers_sent:
                resp.abort()
            else:
                refuse(resp, None)
        finally:
            _depth.value = depth

    def redirect(self, req, resp, location):
        if not location.startswith("/") or location.startswith("//"):
            return refuse(resp, "X-Accel-Redirect %r from the application for %s %s is not a "
                          "URL path (/...); named locations are nginx's only", location,
                          req.method, req.target)
        path, _, query = location.encode("latin-1").partition(b"?")
        if b"%" in path:
            path = unquote_to_bytes(path)
        self.router.redispatch(internal_request(req, location, path.decode("latin-1"),
                                                query.decode("latin-1")), resp)

    def send_file(self, req, resp, value):
        raw = value.encode("latin-1")
        if raw.startswith(b"/") and b"\0" not in raw:
            path = os.path.normpath(raw)
            for prefix, files in self.roots:
                if path.startswith(prefix):
                    rest = path[len(prefix) - 1:].decode("latin-1")
                    target = rest.replace("%", "%25")
                    files(internal_request(req, target, rest, ""), resp)
                    return
        roots = ", ".join(repr(p.decode("utf-8", "backslashreplace")) for p, _ in self.roots)
        refuse(resp, "X-Sendfile %r from the application for %s %s is not below the mount's "
               "x_sendfile_roots (%s); not sending it", value, req.method, req.target,
               roots or "none: set x_sendfile_roots or --x-sendfile-root")


def refuse(resp, message, *args):
    """500 and one error line (None: already logged)."""
    if message is not None:
        log.error(message, *args)
    resp.send_head("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")],
                   len(ERROR_BODY), False)
    resp.finish(ERROR_BODY)


def internal_request(req, target, path, query):
    """The request the server answers instead of the application: GET (or HEAD) of
    `path`, with the client's headers (Range, If-None-Match...) and no body."""
    return derived_request(req, "HEAD" if req.method == "HEAD" else "GET", target, path, query,
                           io.BytesIO(b""))


class ApplicationHeaders:
    """The client's responder, adding the application's headers to a successful answer."""

    def __init__(self, resp, app_headers):
        self.resp = resp
        self.app_headers = [(name, value) for name, value in app_headers
                            if name.lower() not in DROPPED]

    def send_head(self, status, headers, length, length_in_headers):
        if status[0] in "23":
            headers = self.merge(status, headers)
        self.resp.send_head(status, headers, length, length_in_headers)

    def merge(self, status, headers):
        mine = {name.lower() for name, _ in headers}
        keep = set(STATIC_WINS)
        multipart = any(name == "Content-Type" and value.startswith("multipart/byteranges")
                        for name, value in headers)
        if multipart or status.startswith("304"):
            # The parts carry the type; a 304 has no body to describe.
            keep.add("content-type")
        app = [(name, value) for name, value in self.app_headers
               if not (name.lower() in keep and name.lower() in mine)
               and not (status.startswith("304") and name.lower() == "content-type")]
        replaced = {name.lower() for name, _ in app}
        return [h for h in headers if h[0].lower() not in replaced] + app

    def __getattr__(self, name):
        # write, send_file, finish, abort, park, headers_sent...: the client's responder.
        return getattr(self.resp, name)
