"""What the harness measures, and how: process trees from /proc, wrk, idle connections.

CPU time is read from /proc/PID/stat for every process in a server's tree
(utime and stime, plus cutime and cstime so a worker that dies and is reaped
mid-run still counts), before and after a wrk run; the difference divided by
the requests wrk saw completed is the server's CPU cost per request.
wrk's text report (with --latency) is parsed for throughput, percentiles and
errors; with pace.lua (a fixed rate, latency counted from each request's due
time) for the percentiles that script prints. Nothing here sleeps for a fixed
time: every wait polls a condition against a deadline.
"""
import os
import re
import selectors
import socket
import subprocess
import time

PACE_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pace.lua")
PATHS_LUA = os.path.join(os.path.dirname(PACE_LUA), "paths.lua")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- process trees ---------------------------------------------------------

def _stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (the command name may hold spaces and parens)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].split()


def _parent_map():
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parents[int(entry)] = int(_stat_fields(entry)[1])   # field 4: ppid
        except (OSError, ValueError, IndexError):
            continue
    return parents


def process_tree(root_pid):
    """root_pid and all its live descendants, parents before children."""
    children = {}
    for pid, ppid in _parent_map().items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop(0)
        if os.path.exists(f"/proc/{pid}"):
            tree.append(pid)
            todo.extend(sorted(children.get(pid, ())))
    return tree


def cpu_ticks(pids):
    """(user, system) clock ticks summed over pids, reaped children included."""
    user = system = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    return user, system


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def process_name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        return " ".join(a.decode(errors="replace") for a in argv if a)[:120]
    except OSError:
        return "?"


# --- waiting ---------------------------------------------------------------

class StartError(Exception):
    """A server did not come up; the message says why (and quotes its log)."""


def wait_until(condition, deadline, what, alive=None):
    """Poll condition() until it returns a truthy value; raise StartError on deadline
    or when alive() says the process has exited."""
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and not alive():
            raise StartError(f"exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise StartError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def accepts(address):
    """True when a stream socket at address (a (host, port) or a UNIX path) accepts."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(address)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def free_port():
    """A TCP port nothing listens on right now (for servers that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- one HTTP exchange, for the smoke test --------------------------------

def http_exchange(host, port, method, path, body=b"", timeout=10.0):
    """Send one HTTP/1.1 request on a fresh connection; return (status, headers, body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(head + body)
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            status, headers, rest = _split_response(data)
            if status and "content-length" in headers and \
                    len(rest) >= int(headers["content-length"]):
                break
    status, headers, rest = _split_response(data)
    if not status:
        raise OSError(f"no complete response head: {data[:200]!r}")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        rest = _dechunk(rest)
    return status, headers, rest


def _dechunk(data):
    """The body of a chunked message (granian sends static files so)."""
    body, pos = b"", 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise OSError(f"truncated chunked body: {data[pos:pos + 40]!r}")
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return body
        body += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def _split_response(data):
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return 0, {}, b""
    lines = data[:end].decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0, {}, b""
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, data[end + 4:]


# --- wrk -------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def wrk_command(url, duration, connections=50, close=False, script=None, cpu="1",
                paths=()):
    """Closed-loop wrk (each connection sends its next request when answered); with
    paths, paths.lua sends them in turn (a script given as well would be ignored)."""
    argv = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
            "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    if paths:
        return argv + ["-s", PATHS_LUA, url, "--", *paths]
    if script:
        argv += ["-s", script]
    return argv + [url]


def paced_wrk_command(url, duration, rate, connections, paths=(), cpu="1"):
    """wrk sending `rate` requests a second in all on `connections` connections, one
    per wrk thread (pace.lua needs that to know which request an answer is for)."""
    return ["taskset", "-c", cpu, "wrk", f"-t{connections}", f"-c{connections}",
            f"-d{duration:g}s", "--latency", "-s", PACE_LUA, url, "--", f"{rate:.1f}",
            str(connections), *paths]


def parse_paced(text):
    """pace.lua's summary: answers, achieved and target rate, latency from the due time."""
    out = {"answers": 0, "seconds": 0.0, "rps": 0.0, "target_rps": 0.0, "latency_ms": {}}
    m = re.search(r"Paced: (\d+) answers in ([\d.]+)s, ([\d.]+) req/s \(target ([\d.]+) "
                  r"req/s\)", text)
    if m:
        out.update(answers=int(m.group(1)), seconds=float(m.group(2)), rps=float(m.group(3)),
                   target_rps=float(m.group(4)))
    block = text.partition("Latency from the due time:")[2]
    for pct, value, unit in re.findall(r"^\s+([\d.]+)%\s+([\d.]+)(us|ms|s)\s*$", block, re.M):
        out["latency_ms"][f"{float(pct):g}"] = float(value) * _UNITS[unit]
    return out


def run_wrk(argv, timeout):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    result = parse_wrk(proc.stdout)
    result["exit_code"] = proc.returncode
    return result


def parse_wrk(text):
    """The numbers of a `wrk --latency` report (latencies in ms)."""
    out = {"raw": text, "requests": 0, "rps": 0.0, "latency_ms": {},
           "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
           "non_2xx_3xx": 0, "bytes_read": 0}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        out["requests"] = int(m.group(1))
        out["elapsed_s"] = float(m.group(2)) * _UNITS.get(m.group(3), 1e3) / 1e3
        out["bytes_read"] = int(float(m.group(4)) * _SIZE.get(m.group(5), 1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
        out["latency_ms"][pct] = float(value) * _UNITS[unit]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non_2xx_3xx"] = int(m.group(1))
    return out


# --- idle connections --------------------------------------------------------

class IdleConnections:
    """Connections that made one keep-alive request, got the answer, and then sit idle.

    Opened all at once with non-blocking sockets so a server that cannot take
    them all (a connection limit, one connection at a time) costs the harness
    a bounded wait, not a time-out per connection.
    """

    def __init__(self, host, port, count, path="/", deadline_s=10.0):
        self.sockets = []
        self.answered = 0
        self.pending = 0
        self.refused = 0
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        sel = selectors.DefaultSelector()
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                self.refused += 1
                continue
            self.sockets.append(s)
            sel.register(s, selectors.EVENT_WRITE, {"sent": False, "got": b""})
        deadline = time.monotonic() + deadline_s
        waiting = len(self.sockets)
        while waiting and time.monotonic() < deadline:
            for key, events in sel.select(timeout=0.2):
                s, state = key.fileobj, key.data
                try:
                    if not state["sent"]:
                        s.send(request)
                        state["sent"] = True
                        sel.modify(s, selectors.EVENT_READ, state)
                        continue
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    state["got"] += chunk
                    if not _response_complete(state["got"]):
                        continue
                    self.answered += 1
                sel.unregister(s)
                waiting -= 1
        self.pending = waiting
        sel.close()

    def still_open(self):
        """How many of the connections the server has not closed."""
        open_count = 0
        for s in self.sockets:
            try:
                data = s.recv(1, socket.MSG_PEEK)
                if data:
                    open_count += 1          # unread bytes; still connected
            except (BlockingIOError, InterruptedError):
                open_count += 1
            except OSError:
                pass
        return open_count

    def close(self):
        for s in self.sockets:
            s.close()
        self.sockets = []


class StalledReaders(IdleConnections):
    """Clients that ask for a large response and never read it: a 4 KiB receive
    buffer (set before connect, so the window is small from the start), the request
    sent, and nothing read after the first bytes of the answer.

    `started` counts those whose first response bytes came within the deadline: a
    server that serves one client at a time answers few of them. still_open() and
    close() are IdleConnections'.
    """

    def __init__(self, host, port, count, path, deadline_s=10.0):
        self.sockets = []
        self.started = 0
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        sel = selectors.DefaultSelector()
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            self.sockets.append(s)
            sel.register(s, selectors.EVENT_WRITE, False)
        deadline = time.monotonic() + deadline_s
        waiting = len(self.sockets)
        while waiting and time.monotonic() < deadline:
            for key, events in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    if not key.data:
                        s.send(request)
                        sel.modify(s, selectors.EVENT_READ, True)
                        continue
                    first = s.recv(1, socket.MSG_PEEK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    first = b""
                if first:
                    self.started += 1
                sel.unregister(s)
                waiting -= 1
        sel.close()


def _response_complete(data):
    status, headers, rest = _split_response(data)
    if not status:
        return False
    return len(rest) >= int(headers.get("content-length", "0") or 0)
