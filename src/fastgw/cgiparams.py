"""Requests that arrive as CGI meta-variables (FastCGI, SCGI, uwsgi) become Requests.

The web server in front already parsed HTTP; what it sends is a dict of CGI
variables (RFC 3875) whose values are bytes, carried here as latin-1 str like
every PEP 3333 string. PATH_INFO and SCRIPT_NAME are used as the web server split
them when it sends PATH_INFO (nginx `fastcgi_split_path_info`); otherwise the
path comes from REQUEST_URI and the router's mount table does the split.
Numbers (CONTENT_LENGTH, the ports) are ASCII digits only: `str.isdigit()` also
accepts digits such as '\xb2' that `int()` refuses, so a bad number is an HttpError
(400) the protocol answers, never an exception out of the parser.
"""
from urllib.parse import unquote_to_bytes

from fastgw._request import Request
from fastgw.errors import HttpError

# CONTENT_LENGTH is a Py_ssize_t in the body readers; a port is a u16.
MAX_LENGTH = (1 << 63) - 1
MAX_PORT = 65535

_header_names = {}


def header_name(key):
    """'HTTP_USER_AGENT' -> 'user-agent' (headers as the router and static files see them)."""
    name = _header_names.get(key)
    if name is None:
        name = key[5:].lower().replace("_", "-")
        if len(_header_names) < 1024:
            _header_names[key] = name
    return name


def cgi_number(params, name, default, limit):
    """The value of `name` as an int of ASCII digits at most `limit`; `default` when it is
    absent or empty; HttpError(400) otherwise."""
    text = params.get(name, "")
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19 or int(text) > limit:
        raise HttpError(400, f"invalid {name} {text[:40]!r} (not a number of at most {limit})")
    return int(text)


def request_from_params(params, body, errors=None):
    """Build a Request from CGI variables; `body` is its wsgi.input. HttpError(400) for a
    variable that must be a number and is not."""
    req = Request()
    for key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        # nginx also passes the header itself as HTTP_CONTENT_*; PEP 3333 has only CONTENT_*.
        duplicate = params.pop("HTTP_" + key, None)
        if not params.get(key) and duplicate:
            params[key] = duplicate
        if key in params and not params[key]:
            del params[key]
    uri = params.get("REQUEST_URI")
    query = params.get("QUERY_STRING", "")
    if "PATH_INFO" in params:
        req.script_name = params.get("SCRIPT_NAME", "")
        req.path = params["PATH_INFO"]
    else:
        raw = uri if uri is not None else params.get("DOCUMENT_URI", params.get("SCRIPT_NAME", "/"))
        raw = raw.partition("?")[0] or "/"
        req.script_name = ""
        req.path = unquote_to_bytes(raw).decode("latin-1") if "%" in raw else raw
    if uri is None:
        uri = req.script_name + req.path + ("?" + query if query else "")
    req.method = params.get("REQUEST_METHOD", "GET")
    req.target = uri
    req.query = query
    req.version = params.get("SERVER_PROTOCOL", "HTTP/1.1")
    headers = [(header_name(k), v) for k, v in params.items() if k.startswith("HTTP_")]
    if "CONTENT_TYPE" in params:
        headers.append(("content-type", params["CONTENT_TYPE"]))
    length = params.get("CONTENT_LENGTH", "")
    if length:
        headers.append(("content-length", length))
    req.headers = headers
    req.params = params
    req.body = body
    req.errors = errors
    req.content_length = cgi_number(params, "CONTENT_LENGTH", -1, MAX_LENGTH)
    https = params.get("HTTPS", "").lower() in ("on", "1", "yes")
    req.scheme = "https" if https or params.get("REQUEST_SCHEME") == "https" else "http"
    addr = params.get("REMOTE_ADDR")
    port = cgi_number(params, "REMOTE_PORT", 0, MAX_PORT)
    req.peer = (addr, port) if addr else None
    req.sockname = (params.get("SERVER_NAME", "localhost"),
                    cgi_number(params, "SERVER_PORT", 80, MAX_PORT))
    return req
