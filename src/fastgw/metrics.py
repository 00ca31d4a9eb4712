"""Prometheus metrics, /healthz and /readyz: counters shared by the workers, served by the master.

Strategy: before it forks, the master maps one anonymous shared page per worker
slot (the heartbeat slot). A worker only ever writes its own page: plain 64-bit
counters and gauges updated in place through a memoryview (under a lock only when
application threads share them), so counting costs no system call and no message.
The master sums the pages of the live workers plus what the workers that exited had
counted (folded into its own totals when it reaps them, so a counter never goes
back), adds what only it knows (worker restarts and timeouts), and answers
GET /metrics, /healthz and /readyz on the --metrics listener from a small thread.
/readyz is 503 until the first worker is ready and again from SIGTERM on (the
drain window), so a load balancer stops sending before the listeners close.

Requests are labelled by mount (its URL prefix; "none" when nothing is mounted at
the path) and status class. Refusals of the HTTP layer itself (400, 408, 414, 431
before a request reaches the router) are not requests here.
"""
import bisect
import logging
import mmap
import os
import select
import signal
import socket
import threading

from fastgw.listeners import listen
from fastgw.mountkinds import KINDS

log = logging.getLogger("fastgw.error")

SLOT_BYTES = 4096  # one page per worker: no two workers write the same cache line
SLOT_WORDS = SLOT_BYTES // 8
MAX_LABELS = 64
NONE_LABEL = 0  # the path matched no mount
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")  # "none": no response was started
# Latency histogram bounds, in microseconds (rendered in seconds).
BOUNDS_US = (500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
             1000000, 2500000, 5000000, 10000000)

# Word offsets inside a worker's page.
REQUESTS = 0                                   # MAX_LABELS x len(CLASSES) counters
HISTOGRAM = REQUESTS + MAX_LABELS * len(CLASSES)  # len(BOUNDS_US) + 1 buckets
DURATION_SUM = HISTOGRAM + len(BOUNDS_US) + 1  # microseconds
RESPONSE_BYTES = DURATION_SUM + 1
UPSTREAM_ERRORS = RESPONSE_BYTES + 1
IN_FLIGHT = UPSTREAM_ERRORS + 1                # gauges from here on
CONNECTIONS = IN_FLIGHT + 1
WAITING_ON_CLIENTS = CONNECTIONS + 1
QUEUED_OUTPUT = WAITING_ON_CLIENTS + 1
BODY_MEMORY = QUEUED_OUTPUT + 1
BODY_DISK = BODY_MEMORY + 1
LAST_GAUGE = BODY_DISK
COUNTER_WORDS = IN_FLIGHT
assert LAST_GAUGE < SLOT_WORDS

UPSTREAM_STATUSES = (502, 504)


def mount_prefix(mount):
    """The prefix Router.match reports for a mount ("" for the root mount)."""
    return "" if mount.path == "/" else mount.wire_path


class MetricsPage:
    """The shared pages (made by the master before forking) and the master's totals."""

    def __init__(self, slots):
        self.slots = slots
        self.mm = mmap.mmap(-1, slots * SLOT_BYTES)
        self.words = memoryview(self.mm).cast("Q")
        self.labels = ["none"]
        self.label_index = {}
        self.retired = [0] * COUNTER_WORDS
        self.live = set()
        self.lock = threading.Lock()
        self.worker_restarts = 0
        self.worker_timeouts = 0

    # -- master side --

    def labels_for(self, mounts):
        """{mount prefix: label index} and the labels of upstream (fastcgi/scgi) mounts;
        new mounts (after a reload) get new labels, old ones keep theirs."""
        index, upstream = {}, set()
        for mount in mounts:
            if KINDS[mount.kind].make is None:
                continue  # a login rule; its requests count for the mount serving them
            label = self.label_index.get(mount.path)
            if label is None:
                if len(self.labels) < MAX_LABELS - 1:
                    label = len(self.labels)
                    self.labels.append(mount.path)
                else:
                    label = MAX_LABELS - 1
                    if len(self.labels) < MAX_LABELS:
                        self.labels.append("other")
                self.label_index[mount.path] = label
            index[mount_prefix(mount)] = label
            if KINDS[mount.kind].upstream:
                upstream.add(label)
        return index, frozenset(upstream)

    def take(self, slot, mounts):
        """A worker is about to be forked into `slot`: its page starts at zero."""
        self.labels_for(mounts)
        with self.lock:
            self.clear(slot)
            self.live.add(slot)

    def release(self, slot):
        """A worker was reaped: keep what it counted, free its page."""
        with self.lock:
            if slot not in self.live:
                return
            base = slot * SLOT_WORDS
            words, retired = self.words, self.retired
            for i in range(COUNTER_WORDS):
                retired[i] += words[base + i]
            self.clear(slot)
            self.live.discard(slot)

    def clear(self, slot):
        self.mm[slot * SLOT_BYTES:(slot + 1) * SLOT_BYTES] = bytes(SLOT_BYTES)

    def worker_view(self, slot, mounts, threaded=False):
        """What a worker forked into `slot` counts with (called in the worker)."""
        index, upstream = self.labels_for(mounts)
        return WorkerMetrics(self.words[slot * SLOT_WORDS:(slot + 1) * SLOT_WORDS], index,
                             upstream, threaded)

    def totals(self):
        """The sum over every worker, live or gone: (counters and gauges, live workers)."""
        with self.lock:
            total = list(self.retired) + [0] * (SLOT_WORDS - COUNTER_WORDS)
            words = self.words
            for slot in self.live:
                base = slot * SLOT_WORDS
                for i in range(LAST_GAUGE + 1):
                    value = words[base + i]
                    if value:
                        total[i] += value
            return total, len(self.live)

    def render(self, ready, draining):
        """The Prometheus text exposition (version 0.0.4)."""
        total, workers = self.totals()
        labels = list(self.labels)
        out = []

        def family(name, kind, text):
            out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")

        family("fastgw_requests_total", "counter",
               "Requests answered, by mount (URL prefix; none: nothing mounted) and status class.")
        for label, mount in enumerate(labels):
            base = REQUESTS + label * len(CLASSES)
            for k, status in enumerate(CLASSES):
                out.append(f'fastgw_requests_total{{mount="{escape(mount)}",status="{status}"}} '
                           f"{total[base + k]}\n")
        family("fastgw_request_duration_seconds", "histogram",
               "Time from routing a request to the end of its handler.")
        running = 0
        for k, bound in enumerate(BOUNDS_US):
            running += total[HISTOGRAM + k]
            out.append(f'fastgw_request_duration_seconds_bucket{{le="{bound / 1e6:g}"}} {running}\n')
        running += total[HISTOGRAM + len(BOUNDS_US)]
        out.append(f'fastgw_request_duration_seconds_bucket{{le="+Inf"}} {running}\n')
        out.append(f"fastgw_request_duration_seconds_sum {total[DURATION_SUM] / 1e6:.6f}\n")
        out.append(f"fastgw_request_duration_seconds_count {running}\n")
        for name, kind, text, value in (
                ("fastgw_requests_in_flight", "gauge", "Requests being handled now.",
                 total[IN_FLIGHT]),
                ("fastgw_connections", "gauge",
                 "Open client connections (each worker reports once a second).",
                 total[CONNECTIONS]),
                ("fastgw_connections_waiting_on_client", "gauge",
                 "Connections whose response waits for a slow client to read it.",
                 total[WAITING_ON_CLIENTS]),
                ("fastgw_output_queued_bytes", "gauge",
                 "Response bytes queued for clients that have not read them yet "
                 "(memory, spool files and file ranges).",
                 total[QUEUED_OUTPUT]),
                ("fastgw_request_body_memory_bytes", "gauge",
                 "Request bodies gathered before the application is called, in memory.",
                 total[BODY_MEMORY]),
                ("fastgw_request_body_disk_bytes", "gauge",
                 "Request bodies gathered before the application is called, in temporary "
                 "files (--body-buffer-dir).",
                 total[BODY_DISK]),
                ("fastgw_response_body_bytes_total", "counter", "Response body bytes sent.",
                 total[RESPONSE_BYTES]),
                ("fastgw_upstream_errors_total", "counter",
                 "FastCGI/SCGI upstream failures (502: unreachable or broken, 504: too slow).",
                 total[UPSTREAM_ERRORS]),
                ("fastgw_worker_restarts_total", "counter",
                 "Workers that exited or were killed and were replaced (not reloads).",
                 self.worker_restarts),
                ("fastgw_worker_timeouts_total", "counter",
                 "Workers killed because a request ran longer than --timeout.",
                 self.worker_timeouts),
                ("fastgw_workers", "gauge", "Worker processes running.", workers),
                ("fastgw_ready", "gauge", "1 when /readyz answers 200.", int(ready)),
                ("fastgw_draining", "gauge", "1 from SIGTERM until exit.", int(draining))):
            family(name, kind, text)
            out.append(f"{name} {value}\n")
        return "".join(out)


def escape(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class WorkerMetrics:
    """A worker's own page: what the request bookkeeping and the loop's tick update."""

    def __init__(self, words, prefixes, upstream, threaded=False):
        self.words = words
        self.prefixes = prefixes
        self.upstream = upstream
        self.lock = threading.Lock() if threaded else None

    def begin(self):
        lock = self.lock
        if lock is None:
            self.words[IN_FLIGHT] += 1
        else:
            with lock:
                self.words[IN_FLIGHT] += 1

    def end(self, prefix, found, status, nbytes, duration_us):
        """A request is done: `prefix` is the mount Router.match found (`found` False when
        nothing is mounted at the path)."""
        label = self.prefixes.get(prefix, MAX_LABELS - 1) if found else NONE_LABEL
        kind = status // 100 - 1 if 100 <= status < 600 else 5
        bucket = bisect.bisect_left(BOUNDS_US, duration_us)
        upstream_error = label in self.upstream and status in UPSTREAM_STATUSES
        lock = self.lock
        if lock is not None:
            lock.acquire()
        try:
            w = self.words
            w[REQUESTS + label * len(CLASSES) + kind] += 1
            w[HISTOGRAM + bucket] += 1
            w[DURATION_SUM] += duration_us
            if nbytes:
                w[RESPONSE_BYTES] += nbytes
            if upstream_error:
                w[UPSTREAM_ERRORS] += 1
            if w[IN_FLIGHT]:
                w[IN_FLIGHT] -= 1
        finally:
            if lock is not None:
                lock.release()

    def set_connections(self, count, waiting, queued, body_memory, body_disk):
        words = self.words
        words[CONNECTIONS] = count
        words[WAITING_ON_CLIENTS] = waiting
        words[QUEUED_OUTPUT] = queued
        words[BODY_MEMORY] = body_memory
        words[BODY_DISK] = body_disk


class MetricsServer:
    """GET /metrics, /healthz, /readyz on one listening socket, answered by a thread.

    `state()` returns (ready, draining) as the master sees them now.
    """

    READ_TIMEOUT = 2.0

    def __init__(self, sock, page, state):
        self.sock = sock
        self.page = page
        self.state = state
        self.thread = None
        self.stop_r, self.stop_w = os.pipe()

    def start(self):
        # The thread must never take the master's signals: block them while it is created
        # (it inherits the mask), so they keep going to the main thread's handlers.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
        try:
            self.thread = threading.Thread(target=self.serve, name="fastgw-metrics", daemon=True)
            self.thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def close(self):
        """Stop the thread and close the listener (master exit)."""
        try:
            os.write(self.stop_w, b"x")
        except OSError:
            pass
        if self.thread is not None:
            self.thread.join(self.READ_TIMEOUT + 1.0)
        path = self.sock.getsockname() if self.sock.family == getattr(socket, "AF_UNIX", -1) else ""
        self.sock.close()
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass
        os.close(self.stop_r)
        os.close(self.stop_w)

    def close_in_child(self):
        """A forked worker keeps none of this."""
        self.sock.close()
        os.close(self.stop_r)
        os.close(self.stop_w)

    def serve(self):
        while True:
            try:
                readable, _, _ = select.select([self.sock, self.stop_r], [], [])
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return
            if self.stop_r in readable:
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError:
                return
            try:
                self.answer(conn)
            except OSError:
                pass
            except Exception:
                log.exception("metrics listener: internal error")
            finally:
                conn.close()

    def answer(self, conn):
        conn.setblocking(True)
        conn.settimeout(self.READ_TIMEOUT)
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            if len(data) > 16384:
                return self.send(conn, "431 Request Header Fields Too Large", "too large\n")
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        line = data.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return self.send(conn, "400 Bad Request", "bad request line\n")
        method, target = parts[0], parts[1].partition("?")[0]
        if method not in ("GET", "HEAD"):
            return self.send(conn, "405 Method Not Allowed", "GET or HEAD\n",
                             extra="Allow: GET, HEAD\r\n", head=False)
        head = method == "HEAD"
        ready, draining = self.state()
        if target == "/metrics":
            return self.send(conn, "200 OK", self.page.render(ready, draining), head=head,
                             ctype="text/plain; version=0.0.4; charset=utf-8")
        if target == "/healthz":
            return self.send(conn, "200 OK", "ok\n", head=head)
        if target == "/readyz":
            if ready:
                return self.send(conn, "200 OK", "ready\n", head=head)
            return self.send(conn, "503 Service Unavailable",
                             "draining\n" if draining else "starting\n", head=head)
        return self.send(conn, "404 Not Found", "try /metrics, /healthz or /readyz\n", head=head)

    @staticmethod
    def send(conn, status, text, head=False, ctype="text/plain; charset=utf-8", extra=""):
        body = text.encode("utf-8")
        conn.sendall((f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n{extra}"
                      f"Connection: close\r\n\r\n").encode("latin-1") + (b"" if head else body))


def open_listener(bind):
    """The --metrics listening socket (bound by the master, before it drops privileges)."""
    return listen(bind, 64)


def describe(sock, bind):
    if bind.path is not None:
        return f"unix:{bind.path}"
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

