"""Requests the server answers itself on a client's behalf (no network behind them).

Strategy: a CGI local redirect (Location: /path with no Status) and an
application's X-Accel-Redirect both ask the server to answer a GET of another
URL instead. The new request is made from the client's: same version, peer,
addresses, scheme, error stream and headers, less those that describe a body it
no longer has (and, for FastCGI/SCGI fronts, less the CGI variables naming the
old URL and body). It is built as the same type as the client's request, so
nothing here depends on the protocol that carried it.
"""

BODY_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})
# CGI variables of the client's request that do not describe the new one.
URL_AND_BODY_PARAMS = ("CONTENT_LENGTH", "CONTENT_TYPE", "SCRIPT_NAME", "PATH_INFO",
                       "REQUEST_URI", "QUERY_STRING", "REQUEST_METHOD", "DOCUMENT_URI")


def derived_request(req, method, target, path, query, body):
    """A bodiless `method` request of `path`?`query` (`target` as sent), made from `req`."""
    new = type(req)()
    new.method = method
    new.target = target
    new.path = path
    new.query = query
    new.script_name = ""
    new.version = req.version
    new.headers = [(name, value) for name, value in req.headers
                   if name.lower() not in BODY_HEADERS]
    params = req.params
    if params is not None:
        params = {k: v for k, v in params.items() if k not in URL_AND_BODY_PARAMS}
    new.params = params
    new.errors = req.errors
    new.body = body
    new.peer = req.peer
    new.sockname = req.sockname
    new.scheme = req.scheme
    new.content_length = -1
    return new
