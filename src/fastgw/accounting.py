"""The bookkeeping every request passes through before and after the router.

Strategy: one callable wraps the Router only when something asks for it (trusted
proxies, request ids, metrics or an access log); otherwise the worker hands its
protocols the Router, or the single app's handler, directly and this costs nothing.
In order: the forwarding headers of a trusted proxy rewrite the Request (so routing,
the application and the log all see the client), the request gets its id, the
router picks the mount, the handler runs, and then the metrics and the access log
line record the mount, the status, the bytes and the time taken, once the response
is out (or cut off: the log line then says why), not when the handler returns.
"""
import itertools
import logging
import os
import re
import time

from fastgw.router import not_found

log = logging.getLogger("fastgw.error")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[\x21-\x7e]{1,200}")


class RequestIds:
    """X-Request-ID: the one the client (or a proxy) sent if it is sane, else a new one.

    New ids are 32 hex digits: 16 random to the process, then a counter, so they are
    unique across workers and restarts without a random draw per request.
    """

    def __init__(self):
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def new(self):
        return f"{self.prefix}{next(self.counter):016x}"

    def assign(self, req):
        """The request's id; a new one is also put into the request, so the application
        sees it as HTTP_X_REQUEST_ID (an invalid one sent by the client is replaced)."""
        headers = req.headers
        if headers is None:
            headers = req.headers = []
        for i, (name, value) in enumerate(headers):
            if len(name) == 12 and name.lower() == "x-request-id":
                if _VALID_ID.fullmatch(value):
                    return value
                rid = self.new()
                headers[i] = (name, rid)
                break
        else:
            rid = self.new()
            headers.append((REQUEST_ID_HEADER, rid))
        if req.params is not None:
            req.params["HTTP_X_REQUEST_ID"] = rid
        return rid


def header_value(req, lower_name):
    for name, value in req.headers or ():
        if len(name) == len(lower_name) and name.lower() == lower_name:
            return value
    return None


class WithRequestId:
    """The responder of a request, adding X-Request-ID to the response head (unless the
    handler set one itself)."""

    __slots__ = ("resp", "request_id")

    def __init__(self, resp, request_id):
        self.resp = resp
        self.request_id = request_id

    def send_head(self, status, headers, length, length_in_headers):
        for name, _ in headers:
            if len(name) == 12 and name.lower() == "x-request-id":
                break
        else:
            headers = headers + [(REQUEST_ID_HEADER, self.request_id)]
        self.resp.send_head(status, headers, length, length_in_headers)

    def write(self, data):
        return self.resp.write(data)

    def send_file(self, fd, offset, count):
        return self.resp.send_file(fd, offset, count)

    def finish(self, last=None):
        self.resp.finish(last)

    def abort(self):
        self.resp.abort()

    @property
    def headers_sent(self):
        return self.resp.headers_sent

    @property
    def bytes_sent(self):
        return self.resp.bytes_sent

    @property
    def status_code(self):
        return self.resp.status_code

    def __getattr__(self, name):
        return getattr(self.resp, name)


class Accounting:
    """A handler(req, resp) around a Router: trusted proxies, request ids, metrics, access log."""

    def __init__(self, router, trusted=None, request_ids=None, metrics=None, access_log=None):
        self.router = router
        self.trusted = trusted
        self.request_ids = request_ids
        self.metrics = metrics
        self.access_log = access_log

    @classmethod
    def wrap(cls, router, trusted=None, request_ids=None, metrics=None, access_log=None):
        """The handler a worker serves with: the Router's own when nothing is asked for."""
        if trusted is None and request_ids is None and metrics is None and access_log is None:
            return router.handler()
        return cls(router, trusted, request_ids, metrics, access_log)

    def __call__(self, req, resp):
        access_log = self.access_log
        started = time.time() if access_log is not None else 0.0
        t0 = time.perf_counter_ns()
        if self.trusted is not None:
            self.trusted.apply(req)
        request_id = None
        if self.request_ids is not None:
            request_id = self.request_ids.assign(req)
            resp = WithRequestId(resp, request_id)
        elif access_log is not None:
            request_id = header_value(req, "x-request-id")
        metrics = self.metrics
        if metrics is not None:
            metrics.begin()
        prefix, handler = "", None
        try:
            prefix, handler = self.router.match(req.path)
            if prefix:
                req.script_name += prefix
                req.path = req.path[len(prefix):]
            (handler or not_found)(req, resp)
        finally:
            def record(nbytes, cut):
                duration_us = (time.perf_counter_ns() - t0) // 1000
                status = resp.status_code
                if metrics is not None:
                    metrics.end(prefix, handler is not None, status, nbytes, duration_us)
                if access_log is not None:
                    try:
                        access_log.log(req, status, nbytes, duration_us=duration_us,
                                       request_id=request_id, started=started, cut=cut)
                    except Exception:
                        log.exception("cannot write the access log")

            # Once the response is out (a slow client may take long), or cut off.
            resp.on_settled(record)
