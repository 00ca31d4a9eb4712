# One request as every protocol delivers it, whatever carried it.
#
# Strategy: a protocol fills a Request at its edge (the HTTP head parser, the
# FastCGI/SCGI/uwsgi params) and hands it to the router; the handlers read it, and
# the WSGI environ is built from it in C here: a template dict copied, the request's
# own fields set, the headers mapped to HTTP_* through a cache of interned keys, and
# SERVER_NAME/SERVER_PORT split from Host once per distinct value. The body reader
# base (wsgi.input) reads a Content-Length body straight off the connection's
# buffer; protocols with framing (chunked HTTP, FastCGI records) subclass it.
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memchr

from fastgw._loop cimport Connection


cdef class BodyReader:
    """wsgi.input: the request body, read from the connection as the application asks.

    This base reads `remaining` bytes straight off the connection (Content-Length,
    SCGI, uwsgi); protocols with framing override available() and take().
    """

    cdef Py_ssize_t available(self) except -1:
        """Body bytes ready to take (waiting for some if needed); 0 once the body is over."""
        cdef Connection conn = self.conn
        cdef Py_ssize_t avail
        self.started = True
        if self.remaining == 0:
            self.done = True
            return 0
        avail = conn.rend - conn.rstart
        if avail == 0:
            conn.fill_blocking()
            avail = conn.rend - conn.rstart
        return avail if avail < self.remaining else self.remaining

    cdef bytes take(self, Py_ssize_t n):
        cdef Connection conn = self.conn
        cdef bytes data = PyBytes_FromStringAndSize(conn.rbuf + conn.rstart, n)
        conn.rstart += n
        self.remaining -= n
        return data

    def read(self, size=-1):
        cdef Py_ssize_t want, avail
        cdef list parts = []
        cdef bytes part
        if size is None or size < 0:
            while True:
                avail = self.available()
                if avail == 0:
                    break
                parts.append(self.take(avail))
            return b"".join(parts)
        want = size
        while want > 0:
            avail = self.available()
            if avail == 0:
                break
            part = self.take(avail if avail < want else want)
            parts.append(part)
            want -= len(part)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    cdef const char *peek(self):
        """Where the bytes that available() counted start."""
        return self.conn.rbuf + self.conn.rstart

    def readline(self, size=-1):
        cdef Py_ssize_t limit, avail, n
        cdef Py_ssize_t total = 0
        cdef list parts = []
        cdef const char *p
        cdef const char *nl
        if size is None:
            size = -1
        while size < 0 or total < size:
            avail = self.available()
            if avail == 0:
                break
            limit = avail if size < 0 or avail < size - total else size - total
            p = self.peek()
            nl = <const char *>memchr(p, b'\n', limit)
            n = (nl - p) + 1 if nl != NULL else limit
            parts.append(self.take(n))
            total += n
            if nl != NULL:
                break
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    cdef bint drain(self, Py_ssize_t limit) except -1:
        """Discard the unread rest of the body if it is small; True if it was all read."""
        cdef Py_ssize_t avail, total = 0
        while total <= limit:
            avail = self.available()
            if avail == 0:
                return True
            self.take(avail)
            total += avail
        return False


cdef dict ENVIRON_KEYS = {}
cdef dict SERVER_NAMES = {}
cdef dict DEFAULT_PORTS = {"http": "80", "https": "443"}
cdef Py_ssize_t CACHE_LIMIT = 1024


cdef object environ_key(str name):
    """'User-Agent' -> 'HTTP_USER_AGENT'; None for names with '_' (spoofable, as in nginx)
    and for Proxy (httpoxy, CVE-2016-5385: an HTTP_PROXY an application copies into its
    process environment would send its outgoing requests through the client's proxy),
    as CGI meta-variables drop them too."""
    cdef object key
    if "_" in name or name.lower() == "proxy":
        key = None
    else:
        key = name.upper().replace("-", "_")
        if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
            key = "HTTP_" + key
    if len(ENVIRON_KEYS) < CACHE_LIMIT:
        ENVIRON_KEYS[name] = key
    return key


cdef tuple split_host(str host, str scheme):
    """'example.com:8080' -> ('example.com', '8080'); '[::1]' -> ('::1', default port)."""
    cdef tuple found = SERVER_NAMES.get((host, scheme))
    if found is not None:
        return found
    name, port = host, DEFAULT_PORTS.get(scheme, "80")
    if host.startswith("["):
        close = host.find("]")
        if close > 0:
            name = host[1:close]
            if host[close + 1:close + 2] == ":" and host[close + 2:].isdigit():
                port = host[close + 2:]
    elif ":" in host:
        name, _, maybe_port = host.rpartition(":")
        if maybe_port.isdigit():
            port = maybe_port
        else:
            name = host
    found = (name, port)
    if len(SERVER_NAMES) < CACHE_LIMIT:
        SERVER_NAMES[(host, scheme)] = found
    return found


cdef void put_request(dict env, Request req) except *:
    env["REQUEST_METHOD"] = req.method
    env["SCRIPT_NAME"] = req.script_name
    env["PATH_INFO"] = req.path
    env["QUERY_STRING"] = req.query
    env["REQUEST_URI"] = req.target
    env["SERVER_PROTOCOL"] = req.version
    env["wsgi.input"] = req.body
    env["wsgi.url_scheme"] = req.scheme


def cgi_environ(Request req, dict template):
    """The environ of a request that came as CGI variables (FastCGI, SCGI, uwsgi): the
    web server's variables, then the request as the router split it."""
    cdef dict env = template.copy()
    env.update(req.params)
    # httpoxy: a web server passes a client's Proxy header on as HTTP_PROXY
    env.pop("HTTP_PROXY", None)
    put_request(env, req)
    if req.errors is not None:
        env["wsgi.errors"] = req.errors
    env.setdefault("SERVER_NAME", req.sockname[0])
    env.setdefault("SERVER_PORT", str(req.sockname[1]))
    env.setdefault("REMOTE_ADDR", req.peer[0] if req.peer else "")
    return env


def http_environ(Request req, dict template):
    """The PEP 3333 environ of a request that carries HTTP headers, built in C: the
    template, the request line, the peer, HTTP_* (repeats joined with ", ", cookies
    with "; "), and SERVER_NAME/SERVER_PORT from Host or the socket."""
    cdef dict env = template.copy()
    cdef object key, prev, host
    cdef tuple item
    put_request(env, req)
    if req.peer is not None:
        env["REMOTE_ADDR"] = req.peer[0]
        env["REMOTE_PORT"] = str(req.peer[1])
    else:
        env["REMOTE_ADDR"] = ""
    for item in req.headers:
        key = ENVIRON_KEYS.get(item[0], 0)
        if key is 0:
            key = environ_key(item[0])
        if key is None:
            continue
        prev = env.get(key)
        if prev is None:
            env[key] = item[1]
        elif key != "CONTENT_LENGTH":
            env[key] = prev + ("; " if key == "HTTP_COOKIE" else ", ") + item[1]
    host = env.get("HTTP_HOST")
    if host:
        env["SERVER_NAME"], env["SERVER_PORT"] = split_host(host, req.scheme)
    elif type(req.sockname) is tuple:
        env["SERVER_NAME"], env["SERVER_PORT"] = req.sockname[0], str(req.sockname[1])
    else:
        env["SERVER_NAME"], env["SERVER_PORT"] = "localhost", DEFAULT_PORTS.get(req.scheme, "80")
    if req.tls_vars is not None:
        env.update(req.tls_vars)
    return env


cdef class Request:
    """One request as any protocol delivers it to the router and handlers."""

    def __repr__(self):
        return f"<Request {self.method} {self.target!r} {self.version}>"
