"""PEP 3333: a Request becomes an environ, the application's answer becomes a response.

Strategy: the environ starts as a copy of a template holding everything that is the
same for every request; header names turn into environ keys through a bounded
cache. The handler knows nothing of the wire: it talks to a responder (send_head,
write, send_file, finish, abort) that the protocol supplies. The body length is
decided here (the app's Content-Length, a one-item list, or unknown); framing
(chunked, close-delimited) is the protocol's business.
"""
import logging
import os
import stat
import sys

from fastgw import __version__
from fastgw._request import cgi_environ, http_environ
from fastgw.errors import ClientDisconnected, HttpError

log = logging.getLogger("fastgw.error")

# RFC 9110 section 7.6.1: these describe one connection; PEP 3333 forbids apps to send them.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
CACHE_LIMIT = 1024

# Headers asking the server to send a file instead of the body (fastgw.offload).
OFFLOAD_HEADERS = frozenset({"x-accel-redirect", "x-sendfile"})

_header_kinds = {}
ORDINARY, HOP, LENGTH, OFFLOAD = 0, 1, 2, 3


def header_kind(name):
    """What start_response must check of a response header name (cached: apps reuse names)."""
    lower = name.lower()
    kind = (HOP if lower in HOP_BY_HOP else LENGTH if lower == "content-length"
            else OFFLOAD if lower in OFFLOAD_HEADERS else ORDINARY)
    if len(_header_kinds) < CACHE_LIMIT:
        _header_kinds[name] = kind
    return kind


class FileWrapper:
    """wsgi.file_wrapper: iterates a file in blocks; real files go out with sendfile(2)."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class Exchange:
    """One request's response state: start_response, write() and the head."""

    __slots__ = ("resp", "status", "headers", "length", "head_sent", "offload")

    def __init__(self, resp):
        self.resp = resp
        self.status = None
        self.headers = None
        self.length = -1
        self.head_sent = False
        # The (name, value) of an X-Accel-Redirect or X-Sendfile header, if any.
        self.offload = None

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be str, not {type(status).__name__}: {status!r}")
        if len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"status must look like '200 OK', got {status!r}")
        if type(headers) is not list:
            raise TypeError(f"response headers must be a list, not {type(headers).__name__}")
        length = -1
        offload = None
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError(f"response header must be a (name, value) tuple: {item!r}")
            name, value = item
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"response header name and value must be str: {item!r}")
            kind = _header_kinds.get(name)
            if kind is None:
                kind = header_kind(name)
            if kind == ORDINARY:
                continue
            if kind == HOP:
                raise ValueError(f"hop-by-hop header {name!r} is not allowed in a WSGI response")
            if kind == OFFLOAD:
                offload = item
                continue
            if kind == LENGTH:
                if not value.isdigit() or not value.isascii():
                    raise ValueError(f"invalid Content-Length header from the application: {value!r}")
                if length >= 0 and int(value) != length:
                    raise ValueError("the application sent two different Content-Length headers")
                length = int(value)
        self.status = status
        self.headers = headers
        self.length = length
        self.offload = offload
        return self.write

    def send_head(self, computed_length=-1):
        if self.length >= 0:
            self.resp.send_head(self.status, self.headers, self.length, True)
        else:
            self.resp.send_head(self.status, self.headers, computed_length, False)
        self.head_sent = True

    def write(self, data):
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() needs bytes, not {type(data).__name__}")
        if self.offload is not None:
            return  # the file the header names replaces the body (fastgw.offload)
        if not self.head_sent:
            self.send_head()
        self.resp.write(data)


class WsgiHandler:
    """Calls one WSGI application for each request handed to it."""

    def __init__(self, app, multiprocess=False, errors=None, multithread=False):
        self.app = app
        self.template = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": errors if errors is not None else sys.stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "SERVER_SOFTWARE": f"fastgw/{__version__}",
        }
        # fastgw.offload.Offload, set by the router: sends the file an X-Accel-Redirect or
        # X-Sendfile names. Without one those headers are passed on like any other.
        self.offload = None

    def environ(self, req):
        if req.params is None:
            return http_environ(req, self.template)
        return cgi_environ(req, self.template)

    def __call__(self, req, resp, extra=None):
        env = self.environ(req)
        if extra is not None:
            env.update(extra)  # REMOTE_USER, AUTH_TYPE from an auth mount (auth.py)
        ex = Exchange(resp)
        result = None
        try:
            result = self.app(env, ex.start_response)
            if ex.offload is not None and self.offload is not None and not ex.head_sent:
                self.offload(req, ex)  # the application's body is not sent (closed below)
            elif (type(result) is list or type(result) is tuple) and len(result) <= 1 \
                    and not ex.head_sent:
                # the common case, kept inline: a one-item list, its head and body queued
                if ex.status is None:
                    raise AssertionError("the application returned without calling "
                                         "start_response()")
                body = result[0] if result else b""
                if type(body) is not bytes:
                    raise TypeError(f"the application's body must be bytes, not "
                                    f"{type(body).__name__}")
                if ex.length >= 0 and len(body) != ex.length and ex.status[:3] not in ("204", "304"):
                    raise ValueError(f"the application's Content-Length ({ex.length}) does not "
                                     f"match its {len(body)}-byte body")
                ex.send_head(len(body))
                resp.finish(body)
            elif type(result) is FileWrapper and ex.status is not None and self.send_file(ex, result):
                resp.finish(None)
            else:
                stream = BodyStream(req, ex, result, self.offload)
                result = None  # the stream closes it, when it ends or is cut
                stream.resume()
        except ClientDisconnected as e:
            log.info("client %s went away: %s", req.peer, e)
            resp.abort()
        except HttpError as e:
            log.info("bad request body from %s: %s %s", req.peer, e.status, e)
            fail(ex, e.status_line, str(e))
        except Exception:
            log.exception("error in the application for %s %s", req.method, req.target)
            fail(ex, "500 Internal Server Error", "Internal Server Error")
        finally:
            # a plain list has no close(): no attribute lookup for the common case
            if result is not None and type(result) is not list:
                close_result(result)

    def send_file(self, ex, wrapper):
        """Send a FileWrapper over a regular file with sendfile(2); False to iterate instead."""
        try:
            fd = wrapper.filelike.fileno()
            st = os.fstat(fd)
            offset = wrapper.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        count = max(0, st.st_size - offset)
        if ex.length >= 0:
            count = min(count, ex.length)
        ex.send_head(count)
        ex.resp.send_file(fd, offset, count)
        return True



def fail(ex, status, text):
    """An error response, or a cut one when the head is already out."""
    if ex.head_sent:
        ex.resp.abort()
        return
    body = (text + "\n").encode("utf-8", "replace")
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    ex.resp.send_head(status, headers, len(body), False)
    ex.resp.finish(body)


def close_result(result):
    """PEP 3333: the server calls close() of what the application returned, always."""
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("error in close() of the application's response")


class BodyStream:
    """A body iterable sent as the client takes it.

    resume() runs the iterator until it ends or the responder's write() says the
    client lags; then it parks itself on the responder, which calls resume() again
    once the queue is empty (inline, or on an application thread) or cancel() if
    the connection is lost. Either way close() of the application's iterable is
    called exactly once.
    """

    __slots__ = ("req", "ex", "result", "it", "offload")

    def __init__(self, req, ex, result, offload=None):
        self.req = req
        self.ex = ex
        self.result = result
        self.it = iter(result)
        self.offload = offload

    def resume(self):
        ex = self.ex
        resp = ex.resp
        try:
            for chunk in self.it:
                if type(chunk) is not bytes:
                    raise TypeError(f"the application yielded {type(chunk).__name__}, not bytes")
                if not chunk:
                    continue
                if not ex.head_sent:
                    if ex.status is None:
                        raise AssertionError("the application yielded a body before start_response()")
                    if ex.offload is not None and self.offload is not None:
                        break  # start_response was called late: the file replaces the body
                    ex.send_head()
                if not resp.write(chunk):
                    resp.park(self)
                    return
            if not ex.head_sent:
                if ex.status is None:
                    raise AssertionError("the application returned without calling start_response()")
                if ex.offload is not None and self.offload is not None:
                    self.offload(self.req, ex)
                    self.cancel()
                    return
                ex.send_head(0)
            resp.finish(None)
        except ClientDisconnected as e:
            log.info("client %s went away: %s", self.req.peer, e)
            resp.abort()
        except HttpError as e:
            log.info("bad request body from %s: %s %s", self.req.peer, e.status, e)
            fail(ex, e.status_line, str(e))
        except Exception:
            log.exception("error in the application for %s %s", self.req.method, self.req.target)
            fail(ex, "500 Internal Server Error", "Internal Server Error")
        self.cancel()

    def cancel(self):
        result, self.result = self.result, None
        if result is not None:
            close_result(result)
