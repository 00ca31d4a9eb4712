"""The access log: one line per response, in Apache's combined format, JSON, or a format string.

Strategy: a format is compiled once into a function of one finished request (a
`Finished`), so the per-request work is only what the chosen fields need. Lines
go out with one write(2) per line on a descriptor opened with O_APPEND, so the
lines of several workers (and of application threads) never interleave, and
`reopen()` (SIGUSR1, after logrotate moved the file) swaps the file under the
same descriptor number with dup2, which is safe while other threads write.

Custom formats use Apache's mod_log_config directives (a subset; `FORMAT_HELP`).
"""
import json
import os
import re
import time

from fastgw.errors import ConfigError

FORMATS = ("combined", "common", "json")
COMMON = '%h %l %u %t "%r" %>s %b'

FORMAT_HELP = (
    "%h remote address, %l '-', %u user, %t [time], %r request line, %s or %>s status, "
    "%b bytes ('-' for none), %B bytes, %D duration in microseconds, %T duration in "
    "seconds, %m method, %U path, %q query ('?...' or empty), %H protocol, "
    "%{Header}i a request header, %L request id, %P process id, %X 'X' if the response "
    "was cut off (client gone or too slow) else '+', %% a '%'")


class Finished:
    """What a log line can say about one request (built only when a line is written)."""

    __slots__ = ("req", "status", "nbytes", "user", "duration_us", "request_id", "started", "cut")

    def __init__(self, req, status, nbytes, user, duration_us, request_id, started, cut=None):
        self.cut = cut
        self.req = req
        self.status = status
        self.nbytes = nbytes
        self.user = user
        self.duration_us = duration_us
        self.request_id = request_id
        self.started = started

    def header(self, lower_name):
        for name, value in self.req.headers or ():
            if len(name) == len(lower_name) and name.lower() == lower_name:
                return value
        return None


def quote(text):
    """Escape what would break the log line (quotes, backslashes, control characters)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)


class ClfTime:
    """[10/Oct/2000:13:55:36 +0000], formatted once per second."""

    def __init__(self):
        self.second = None
        self.text = ""

    def __call__(self, when):
        second = int(when)
        if second != self.second:
            self.second = second
            self.text = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
        return self.text


def iso_time(when):
    """2026-11-25T00:10:17.123Z (UTC, milliseconds)."""
    ms = int(when * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def remote(f):
    peer = f.req.peer
    return peer[0] if peer else "-"


def request_line(f):
    req = f.req
    return quote(f"{req.method} {req.target} {req.version}")


def raw_path(req):
    return req.target.partition("?")[0]


# Directive letter -> function of a Finished returning the text to log.
_clf_time = ClfTime()
DIRECTIVES = {
    "h": remote,
    "a": remote,
    "l": lambda f: "-",
    "u": lambda f: quote(f.user) if f.user else "-",
    "t": lambda f: f"[{_clf_time(f.started)}]",
    "r": request_line,
    "s": lambda f: str(f.status) if f.status else "-",
    "b": lambda f: str(f.nbytes) if f.nbytes else "-",
    "B": lambda f: str(f.nbytes or 0),
    "D": lambda f: str(f.duration_us),
    "T": lambda f: str(f.duration_us // 1000000),
    "m": lambda f: quote(f.req.method),
    "U": lambda f: quote(raw_path(f.req)),
    "q": lambda f: quote("?" + f.req.query) if f.req.query else "",
    "H": lambda f: quote(f.req.version),
    "L": lambda f: quote(f.request_id) if f.request_id else "-",
    "P": lambda f: str(os.getpid()),
    # Apache: X when the connection was lost before the response was complete.
    "X": lambda f: "X" if f.cut else "+",
}

_DIRECTIVE_RE = re.compile(r"%(?:\{([^}]*)\}([a-zA-Z])|>?([a-zA-Z%])|(.?))")


def compile_format(text, where="--access-log-format"):
    """A format string -> function(Finished) -> line (without the newline).

    Raises ConfigError naming an unknown or malformed directive.
    """
    pieces = []
    pos = 0
    for m in _DIRECTIVE_RE.finditer(text):
        if m.start() > pos:
            pieces.append(text[pos:m.start()])
        pos = m.end()
        arg, braced, letter, bad = m.groups()
        if bad is not None:
            shown = m.group(0) if bad else "a '%' at the end"
            raise ConfigError(f"{where} {text!r}: unknown directive {shown!r}; use %% for a "
                              f"literal '%'. Directives: {FORMAT_HELP}")
        if letter == "%":
            pieces.append("%")
        elif braced is not None:
            if braced != "i" or not arg:
                raise ConfigError(f"{where} {text!r}: {m.group(0)!r} is not supported; "
                                  f"%{{Header-Name}}i logs a request header. Directives: "
                                  f"{FORMAT_HELP}")
            name = arg.lower()
            pieces.append(lambda f, name=name: quote(f.header(name) or "-"))
        else:
            func = DIRECTIVES.get(letter)
            if func is None:
                raise ConfigError(f"{where} {text!r}: unknown directive {m.group(0)!r}. "
                                  f"Directives: {FORMAT_HELP}")
            pieces.append(func)
    if pos < len(text):
        pieces.append(text[pos:])
    literals_only = all(isinstance(p, str) for p in pieces)
    if literals_only:
        raise ConfigError(f"{where} {text!r}: a custom format needs at least one %-directive "
                          f"(or use combined, common or json). Directives: {FORMAT_HELP}")
    parts = tuple(pieces)

    def render(f):
        return "".join(p if p.__class__ is str else p(f) for p in parts)

    return render


def check_format(text, where="--access-log-format"):
    """Validate an --access-log-format value (combined, common, json or a format string)."""
    if text in FORMATS:
        return
    if "%" not in text:
        raise ConfigError(f"{where} {text!r}: choose combined, common or json, or give a "
                          f"format string with %-directives, e.g. '%h %t \"%r\" %>s %D'")
    compile_format(text, where)


def combined_line(f, clf_time=ClfTime()):
    """Apache's combined format; a hand-written fast path (the default format)."""
    req = f.req
    referer = user_agent = "-"
    for name, value in req.headers or ():
        if len(name) == 7 and name.lower() == "referer":
            referer = value
        elif len(name) == 10 and name.lower() == "user-agent":
            user_agent = value
    peer = req.peer
    return (f"{peer[0] if peer else '-'} - {quote(f.user) if f.user else '-'} "
            f"[{clf_time(f.started)}] \"{request_line(f)}\" {f.status or '-'} {f.nbytes or '-'} "
            f"\"{quote(referer)}\" \"{quote(user_agent)}\"")


def json_line(f):
    req = f.req
    peer = req.peer
    fields = {
        "time": iso_time(f.started),
        "remote": peer[0] if peer else None,
        "method": req.method,
        "path": raw_path(req),
        "query": req.query,
        "protocol": req.version,
        "status": f.status or None,
        "bytes": f.nbytes or 0,
        "duration_us": f.duration_us,
        "user_agent": f.header("user-agent"),
        "referer": f.header("referer"),
        "user": f.user,
        "request_id": f.request_id,
    }
    if f.cut:
        fields["cut"] = f.cut  # why the client got less than the whole response
    return json.dumps(fields, separators=(",", ":"))


class AccessLog:
    def __init__(self, target, format="combined"):
        self.target = target
        self.format = format
        if format == "combined":
            self.render = combined_line
        elif format == "json":
            self.render = json_line
        elif format == "common":
            self.render = compile_format(COMMON)
        else:
            self.render = compile_format(format)
        self.fd = -1
        self.reopen()

    def reopen(self):
        """(Re)open the file, e.g. after logrotate moved it; '-' is standard output."""
        if self.target == "-":
            self.fd = 1
            return
        fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if self.fd < 0:
            self.fd = fd
            return
        # Same descriptor number, new file: a thread writing a line now writes it whole
        # to the old file or to the new one.
        os.dup2(fd, self.fd, inheritable=False)
        os.close(fd)

    def log(self, req, status, nbytes, user=None, duration_us=0, request_id=None, started=None,
            cut=None):
        """One line for a finished request: the Request, its status code and body bytes sent;
        `started` is its wall-clock start (time.time()), now if not given; `cut` why the
        response was cut off, if it was."""
        f = Finished(req, status, nbytes, user, duration_us, request_id,
                     time.time() if started is None else started, cut)
        self.write(self.render(f))

    def write(self, line):
        data = (line + "\n").encode("utf-8", "backslashreplace")
        while data:
            data = data[os.write(self.fd, data):]

    def close(self):
        if self.fd > 2:
            os.close(self.fd)
        self.fd = -1
