"""One worker process: imports the application, then runs the event loop on the shared listeners."""
import faulthandler
import logging
import os
import random
import signal
import sys
import time

from fastgw._accept import Listener
from fastgw._bodybuf import buffered as buffered_bodies
from fastgw._fcgi import FcgiProtocol
from fastgw._http import HttpProtocol
from fastgw._limits import BodyPolicy, ProtocolLimits
from fastgw._loop import Loop
from fastgw._scgi import CgiVarsProtocol
from fastgw._tls import TlsSession
from fastgw.accesslog import AccessLog
from fastgw.accounting import Accounting, RequestIds
from fastgw.auth import AuthGate
from fastgw.errorlog import reopen_error_log
from fastgw.errors import AppLoadError
from fastgw.groups import GroupService
from fastgw.listeners import pending_connections
from fastgw.loader import load_app
from fastgw.mountkinds import KINDS, Build, build_router
from fastgw.proxyheaders import TrustedProxies
from fastgw.threadpool import ThreadPool
from fastgw.wsgi import WsgiHandler

log = logging.getLogger("fastgw.error")

# Exit status of a worker that could not import the application (the master stops).
BOOT_ERROR = 3
# Application threads a worker runs at least when it has cgi/fastcgi/scgi mounts.
GATEWAY_MIN_THREADS = 4
# A front worker's threads for forwarding to process groups, at most.
MAX_FORWARD_THREADS = 64
# On SIGTERM a worker goes on accepting while connections wait in the listen backlog
# (closing the listeners would drop them), for at most this long.
BACKLOG_GRACE = 2.0
# A recycled worker whose successor could not start serves on and asks again this late.
ASK_AGAIN = 10.0
MIB = 1024 * 1024


PROTOCOLS = {
    "http": lambda handler, settings, conn: HttpProtocol(handler, settings),
    "https": lambda handler, settings, conn: HttpProtocol(handler, settings),
    "fastcgi": lambda handler, settings, conn: FcgiProtocol(handler, settings),
    "scgi": lambda handler, settings, conn: CgiVarsProtocol(handler, settings, False),
    "uwsgi": lambda handler, settings, conn: CgiVarsProtocol(handler, settings, True),
}


def tls_protocol(make, context):
    """A protocol factory whose connections read and write through TLS first."""
    def protocol(handler, settings, conn):
        conn.use_tls(TlsSession(context, conn.peer))
        return make(handler, settings, conn)
    return protocol


def front_threads(config):
    """Application threads of a worker: --threads, and enough to wait on back ends (CGI
    scripts, upstreams, process groups), which never block the loop thread."""
    threads = config.threads
    if any(KINDS[mount.kind].threads for mount in config.mounts):
        threads = max(GATEWAY_MIN_THREADS, threads)
    if config.groups:
        # Room for every group thread to be busy at once, shared among the front workers.
        capacity = sum(g.processes * g.threads for g in config.groups)
        threads = max(threads, min(MAX_FORWARD_THREADS, -(-capacity // config.workers)))
    return threads


def body_policies(router, mounts):
    """The protocols' ProtocolLimits.body_policy: for a request path, whether its body is
    gathered before the call (most mounts), streamed to the application as it arrives
    (request_buffering = false) or not wanted (static files, or no mount: the answer
    needs no body). None when every path gathers."""
    policies = {}
    for m in mounts:
        prefix = "" if m.path == "/" else m.wire_path
        if not KINDS[m.kind].wants_body:
            policies[prefix] = BodyPolicy.BODY_UNWANTED
        elif not m.request_buffering:
            policies[prefix] = BodyPolicy.BODY_STREAM
    if "" not in policies and not any(m.path == "/" for m in mounts):
        policies[""] = BodyPolicy.BODY_UNWANTED
    if not policies:
        return None
    gather = BodyPolicy.BODY_GATHER

    def policy(path):
        return policies.get(router.match(path)[0], gather)
    return policy


class Worker:
    def __init__(self, config, sockets, master_pid, ready_fd=None, heartbeat=None, metrics=None,
                 group_sockets=None, group_auth=None, tls_context=None):
        self.config = config
        self.tls_context = tls_context  # the master's, shared: sessions resume on any worker
        # In a process group's worker: {mount prefix: AuthConfig} of the hooks it runs.
        self.group_auth = group_auth or {}
        # Process group name -> its UNIX socket path (mounts and auth hooks forwarded there).
        self.group_sockets = group_sockets or {}
        self.metrics_slot = metrics  # (MetricsPage, slot) with --metrics
        self.metrics = None
        self.stop_asked = None
        self.sockets = sockets
        self.master_pid = master_pid
        self.ready_fd = ready_fd
        self.heartbeat = heartbeat
        self.loop = None
        self.pool = None
        self.access_log = None
        self.max_requests = 0
        # --reload-on-rss in bytes, and the request count when memory was last looked at.
        self.rss_limit = config.reload_on_rss * MIB
        self.rss_checked = 0
        self.watched = {}
        self.asked_at = None  # when this worker last asked the master for a successor

    def run(self):
        """Serve until told to stop; return the process exit status."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master turns Ctrl-C into SIGTERM
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.on_reopen)
        # The master sends SIGUSR2 before it kills a worker stuck past --timeout.
        faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True)
        apps = {}
        try:
            for mount in self.config.mounts:
                if mount.kind == "app" and mount.app not in apps:
                    apps[mount.app] = load_app(mount.app)
        except AppLoadError as e:
            if e.traceback_text:
                sys.stderr.write(e.traceback_text)
            sys.stderr.write(f"fastgw: error: {e}\n")
            sys.stderr.flush()
            return BOOT_ERROR
        access_log = self.access_log = (
            AccessLog(self.config.access_log, self.config.access_log_format)
            if self.config.access_log else None)
        config = self.config
        threads = front_threads(config)
        router = build_router(config.mounts, Build(
            apps, multiprocess=config.workers > 1, multithread=threads > 1,
            server_timeout=config.timeout, group_sockets=self.group_sockets))
        if self.metrics_slot is not None:
            page, slot = self.metrics_slot
            self.metrics = page.worker_view(slot, config.mounts, threaded=threads > 1)
        handler = Accounting.wrap(
            router, trusted=TrustedProxies.from_config(config.forwarded_allow_ips),
            request_ids=RequestIds() if config.request_id else None, metrics=self.metrics,
            access_log=access_log)
        if config.serving_group is not None:
            environ_of = WsgiHandler(None).environ
            gates = {prefix: AuthGate(None, auth, environ_of, f"auth of mount {prefix!r}")
                     for prefix, auth in self.group_auth.items()}
            handler = GroupService(handler, gates, environ_of)
        settings = ProtocolLimits(
            config, body_policy=body_policies(router, config.mounts),
            proxy_trusted=(TrustedProxies.from_config(config.proxy_allow_ips)
                           if config.proxy_protocol else None))
        loop = self.loop = Loop(config)
        loop.tick = self.tick
        if threads > 1:
            self.pool = ThreadPool(threads)
            loop.use_threads(self.pool)
        if config.max_requests:
            self.max_requests = config.max_requests + random.randint(0, config.max_requests_jitter)
        if config.reload:
            self.watched = self.module_files()
        for sock, bind in self.sockets:
            make = PROTOCOLS[bind.scheme]
            if bind.scheme == "https":
                make = tls_protocol(make, self.tls_context)
            loop.add_listener(Listener(loop, sock, bind.scheme,
                                       lambda conn, make=make: make(handler, settings, conn)))
        if self.ready_fd is not None:
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)
        log.debug("worker %d: event loop on %s, %d thread(s)", os.getpid(), loop.poller,
                  config.threads)
        if self.heartbeat is not None:
            loop.set_heartbeat(self.heartbeat[0].page, self.heartbeat[1])
        self.beat()
        loop.run()
        return 0

    def on_term(self, signum, frame):
        if self.loop is not None:
            self.stop_accepting()
        else:
            os._exit(0)

    def stop_accepting(self):
        """Stop the loop (it finishes what is in flight) and close this worker's copies of
        the listeners. When the server stops, take what waits in the listen backlog
        first (the tick calls again), at most BACKLOG_GRACE seconds; a worker the master
        replaced (reload, fewer workers) stops at once: its successors take the backlog."""
        now = time.monotonic()
        if self.stop_asked is None:
            self.stop_asked = now
        sockets = [sock for sock, _ in self.sockets]
        replaced = self.heartbeat is not None and self.heartbeat[0].replaced(self.heartbeat[1])
        if replaced and not self.loop.stopping:
            # from the signal handler: the loop stops at its next turn, not in the middle
            # of what the signal interrupted; this worker's copies of the listeners close
            # when it exits, and the successors take the backlog meanwhile
            self.loop.stop_soon = True
            return
        if (not replaced and now - self.stop_asked < BACKLOG_GRACE
                and pending_connections(sockets)):
            if self.stop_asked == now:
                log.info("worker %d: connections wait in the listen backlog; taking them "
                         "before stopping", os.getpid())
            return
        self.loop.stop()
        for sock in sockets:
            sock.close()

    def on_reopen(self, signum, frame):
        reopen_error_log()
        if self.access_log is not None:
            self.access_log.reopen()

    def beat(self):
        """Tell the master the worker is alive: the start of its oldest running request."""
        if self.heartbeat is not None:
            now = time.monotonic()
            oldest = self.pool.oldest_start() if self.pool is not None else None
            pages, slot = self.heartbeat
            pages.write(slot, now if oldest is None else oldest)
            pages.write_requests(slot, self.loop.requests)

    def tick(self):
        """Once a second, from the loop: heartbeat, recycling, code reload, orphan check."""
        self.beat()
        loop = self.loop
        if self.metrics is not None:
            self.metrics.set_connections(loop.connection_count, loop.waiting_on_clients,
                                         loop.queued_output, *buffered_bodies())
        if self.stop_asked is not None and not loop.stopping:
            self.stop_accepting()
        if loop.stopping:
            return
        if os.getppid() != self.master_pid:
            log.warning("master process %d is gone; worker stopping", self.master_pid)
            loop.stop()
        elif self.watched and self.changed_file():
            # a later edit asks again (the successor of a broken edit could not start)
            self.watched = self.module_files()
            self.ask_replacement()
        elif self.asked_at is not None and time.monotonic() - self.asked_at < ASK_AGAIN:
            return
        elif self.max_requests and loop.requests >= self.max_requests:
            log.info("worker %d served %d requests (--max-requests); restarting",
                     os.getpid(), loop.requests)
            self.ask_replacement()
        elif self.rss_limit and loop.requests != self.rss_checked and self.memory_too_large():
            self.ask_replacement()

    def ask_replacement(self):
        """Recycling: the master starts a successor and retires this worker once the
        successor is ready, so new connections never wait for an import. Asked again
        after ASK_AGAIN seconds if this worker still serves (its successor failed)."""
        self.asked_at = time.monotonic()
        pages, slot = self.heartbeat
        pages.ask_replacement(slot)

    def memory_too_large(self):
        """--reload-on-rss: looked at once a second, only after requests were served (memory
        grows while serving; an idle worker's does not)."""
        self.rss_checked = self.loop.requests
        rss = resident_bytes()
        if rss <= self.rss_limit:
            return False
        log.info("worker %d: resident memory %d MiB passed --reload-on-rss %d MiB after %d "
                 "requests; replacing it gracefully", os.getpid(), rss // MIB,
                 self.rss_limit // MIB, self.loop.requests)
        return True

    @staticmethod
    def module_files():
        files = {}
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if path and path.endswith(".py"):
                try:
                    files[path] = os.stat(path).st_mtime
                except OSError:
                    pass
        return files

    def changed_file(self):
        for path, mtime in self.watched.items():
            try:
                changed = os.stat(path).st_mtime != mtime
            except OSError:
                changed = True
            if changed:
                log.info("%s changed; reloading (--reload)", path)
                return True
        return False


def resident_bytes():
    """This process's resident memory: /proc/self/statm where there is one (Linux), else
    the peak from getrusage (macOS, the BSDs), which errs towards replacing a worker."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
