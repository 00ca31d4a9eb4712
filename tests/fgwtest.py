"""Helpers shared by the fastgw end-to-end tests.

* ``RawConnection``: a socket client that reads HTTP/1.x responses off the
  wire exactly (status line, headers, body framed by Content-Length, chunked
  encoding or connection close) so framing bugs are visible.
* ``request``: build raw request bytes.
* ``http_request``: ordinary requests through ``http.client``.
* ``pattern_chunks``: the deterministic data stream the app also produces.
* small polling helpers (everything waits with a deadline, nothing sleeps
  as synchronisation).
"""
import base64
import http.client
import importlib.util
import json
import os
import socket
import sys
import threading
import time

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
APPS_DIR = os.path.join(TESTS_DIR, "apps")

DEFAULT_TIMEOUT = 20.0


def fastgw_command():
    """How the server is started: the module of the running interpreter."""
    return [sys.executable, "-m", "fastgw"]


def subprocess_env(**overrides):
    env = dict(os.environ)
    env.update(overrides)
    return env


def _load_pattern_module():
    spec = importlib.util.spec_from_file_location(
        "fgw_pattern_for_tests", os.path.join(APPS_DIR, "fgw_pattern.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_pattern = _load_pattern_module()
pattern_chunks = _pattern.pattern_chunks
BLOCK = _pattern.BLOCK


def pattern_bytes(total, chunk=BLOCK):
    return b"".join(pattern_chunks(total, chunk))


# --------------------------------------------------------------------------
# polling


def wait_until(predicate, timeout=15.0, interval=0.02, message="condition"):
    """Poll ``predicate`` until it returns a truthy value or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)


def read_lines(path):
    try:
        with open(path) as fh:
            return fh.read().splitlines()
    except FileNotFoundError:
        return []


def wait_for_line(path, line, timeout=15.0):
    return wait_until(lambda: line in read_lines(path), timeout,
                      message="line %r in %s (has: %r)" % (line, path, read_lines(path)[-10:]))


def pid_alive(pid):
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as fh:
            stat = fh.read()
        state = stat.rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def proc_status_kib(pid, field):
    """A ``kB`` field (VmRSS, VmHWM, ...) of /proc/PID/status, in KiB."""
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


# --------------------------------------------------------------------------
# raw HTTP


class IncompleteResponse(AssertionError):
    """The connection ended before the response was complete."""

    def __init__(self, message, response=None, partial=b""):
        super().__init__(message)
        self.response = response
        self.partial = partial


class Response:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as sent, str (latin-1)
        self.raw_head = raw_head
        self.body = b""
        self.framing = None  # "none", "length", "chunked", "close"
        self.trailers = []
        self.chunk_sizes = []

    def header(self, name, default=None):
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default

    def header_list(self, name):
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]

    def has_header(self, name):
        return bool(self.header_list(name))

    def connection_tokens(self):
        tokens = set()
        for value in self.header_list("connection"):
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
        return tokens

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %s %d %s headers=%r body[%d]=%r>" % (
            self.version, self.status, self.reason, self.headers,
            len(self.body), self.body[:200])


def request(method, target, headers=None, body=b"", version="HTTP/1.1", host="127.0.0.1"):
    """Raw request bytes. ``headers`` is a list of pairs, sent as given."""
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    for name, value in headers or []:
        lines.append("%s: %s" % (name, value))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body


def chunked(*pieces, trailers=b""):
    """Encode pieces as a chunked body (each piece one chunk)."""
    out = b""
    for piece in pieces:
        if piece:
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n" + trailers + b"\r\n"


class RawConnection:
    def __init__(self, port=None, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, unix_path=None,
                 family=socket.AF_INET):
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    # -- plumbing --
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        """Read more data into the buffer. False on EOF."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_line(self, limit=1 << 20):
        while True:
            idx = self.buf.find(b"\r\n")
            if idx >= 0:
                line, self.buf = self.buf[:idx], self.buf[idx + 2:]
                return line
            if len(self.buf) > limit:
                raise AssertionError("line too long: %r" % self.buf[:200])
            if not self._fill():
                raise EOFError("connection closed while reading a line (got %r)" % self.buf)

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed with %d of %d bytes" % (len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_available(self, timeout):
        """Whatever arrives within ``timeout`` (b"" on EOF or nothing)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            if not self.buf:
                self._fill()
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(old)
        data, self.buf = self.buf, b""
        return data

    # -- HTTP --
    def read_head(self):
        try:
            status_line = self.read_line()
        except EOFError as exc:
            raise IncompleteResponse("no response: %s" % exc) from None
        raw = [status_line]
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError("bad status line: %r" % status_line)
        version, code = parts[0], parts[1]
        reason = parts[2] if len(parts) > 2 else ""
        if not (len(code) == 3 and code.isdigit()):
            raise AssertionError("bad status code in %r" % status_line)
        headers = []
        while True:
            try:
                line = self.read_line()
            except EOFError as exc:
                raise IncompleteResponse("EOF inside response head: %s" % exc) from None
            raw.append(line)
            if not line:
                break
            if line[:1] in (b" ", b"\t"):
                raise AssertionError("obsolete header folding in response: %r" % line)
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise AssertionError("malformed response header line: %r" % line)
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        return Response(version, int(code), reason, headers, b"\r\n".join(raw))

    def read_response(self, method="GET", skip_interim=True, sink=None):
        """Read one full response. Interim 1xx responses are skipped unless
        ``skip_interim`` is False. With ``sink`` the body is passed to it
        piece by piece instead of being stored."""
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200:
                resp.framing = "none"
                if skip_interim:
                    continue
                return resp
            break
        self.read_body(resp, method, sink)
        return resp

    def read_body(self, resp, method="GET", sink=None):
        store = []

        def emit(data):
            if sink is not None:
                sink(data)
            else:
                store.append(data)

        def partial():
            return b"".join(store)

        te = ",".join(resp.header_list("transfer-encoding")).lower()
        lengths = resp.header_list("content-length")
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            resp.framing = "none"
        elif te:
            codings = [c.strip() for c in te.split(",") if c.strip()]
            if codings[-1] != "chunked":
                resp.framing = "close"
            else:
                resp.framing = "chunked"
                while True:
                    try:
                        line = self.read_line()
                    except EOFError:
                        resp.body = partial()
                        raise IncompleteResponse("EOF inside chunked body", resp, partial()) from None
                    size_text = line.split(b";", 1)[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError:
                        raise AssertionError("bad chunk size line %r" % line) from None
                    if size == 0:
                        while True:
                            try:
                                trailer = self.read_line()
                            except EOFError:
                                resp.body = partial()
                                raise IncompleteResponse("EOF in trailers", resp, partial()) from None
                            if not trailer:
                                break
                            resp.trailers.append(trailer)
                        break
                    try:
                        data = self.read_exact(size)
                        crlf = self.read_exact(2)
                    except EOFError:
                        store.append(self.buf)
                        resp.body = partial()
                        raise IncompleteResponse("EOF inside a chunk", resp, partial()) from None
                    if crlf != b"\r\n":
                        raise AssertionError("chunk not followed by CRLF: %r" % crlf)
                    resp.chunk_sizes.append(size)
                    emit(data)
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                raise AssertionError("bad Content-Length in response: %r" % lengths)
            remaining = int(lengths[0])
            resp.framing = "length"
            while remaining:
                if not self.buf and not self._fill():
                    resp.body = partial()
                    raise IncompleteResponse("EOF with %d body bytes missing" % remaining,
                                             resp, partial())
                data, self.buf = self.buf[:remaining], self.buf[remaining:]
                remaining -= len(data)
                emit(data)
        else:
            resp.framing = "close"
        if resp.framing == "close":
            while True:
                if self.buf:
                    emit(self.buf)
                    self.buf = b""
                if not self._fill():
                    break
        if sink is None:
            resp.body = b"".join(store)
        return resp

    def wait_closed(self, timeout=10.0):
        """True if the peer closes (EOF/RST) within ``timeout``; False if the
        connection is still open then. Unexpected data is an error."""
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                if self.buf:
                    raise AssertionError("unexpected data on connection: %r" % self.buf[:200])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                try:
                    if not self._fill():
                        return True
                except socket.timeout:
                    return False
        finally:
            self.sock.settimeout(old)

    def roundtrip(self, data, method="GET"):
        self.send(data)
        return self.read_response(method)


class _Sender(threading.Thread):
    def __init__(self, conn, data):
        super().__init__(daemon=True)
        self.conn = conn
        self.data = data
        self.error = None

    def run(self):
        try:
            self.conn.sock.sendall(self.data)
        except OSError as exc:
            self.error = exc


def send_in_background(conn, data):
    """sendall() from a thread; errors are kept in ``.error``."""
    sender = _Sender(conn, data)
    sender.start()
    return sender


def raw_request(port, method, target, headers=None, body=b"", version="HTTP/1.1", **kw):
    with RawConnection(port) as conn:
        return conn.roundtrip(request(method, target, headers, body, version, **kw), method)


# --------------------------------------------------------------------------
# http.client


class SimpleResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def http_request(port, method, path, body=None, headers=None, timeout=DEFAULT_TIMEOUT,
                 host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return SimpleResponse(resp.status, resp.headers, data)
    finally:
        conn.close()


def basic_auth(user, password):
    """The Authorization header of HTTP Basic credentials (UTF-8, RFC 7617)."""
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return {"Authorization": "Basic " + token}


def cookies_of(resp):
    """{name: value} of the Set-Cookie headers of a response."""
    jar = {}
    for value in resp.headers.get_all("Set-Cookie") or ():
        name, _, rest = value.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def get_pid(port):
    resp = http_request(port, "GET", "/pid")
    assert resp.status == 200, resp.body
    return int(resp.body)
