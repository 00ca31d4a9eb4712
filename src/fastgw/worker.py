"""One worker process: imports the application, then runs the event loop on the shared listeners."""
import faulthandler
import logging
import os
import random
import signal
import sys
import time

from fastgw._fcgi import FcgiProtocol
from fastgw._http import HttpProtocol, HttpSettings
from fastgw._loop import Loop
from fastgw._scgi import CgiVarsProtocol
from fastgw.accesslog import AccessLog
from fastgw.errors import AppLoadError
from fastgw.loader import load_app
from fastgw.router import build_router
from fastgw.threadpool import ThreadPool

log = logging.getLogger("fastgw.error")

# Exit status of a worker that could not import the application (the master stops).
BOOT_ERROR = 3


PROTOCOLS = {
    "http": lambda handler, settings: HttpProtocol(handler, settings),
    "fastcgi": lambda handler, settings: FcgiProtocol(handler, settings),
    "scgi": lambda handler, settings: CgiVarsProtocol(handler, settings, False),
    "uwsgi": lambda handler, settings: CgiVarsProtocol(handler, settings, True),
}


class Worker:
    def __init__(self, config, sockets, master_pid, ready_fd=None, heartbeat=None):
        self.config = config
        self.sockets = sockets
        self.master_pid = master_pid
        self.ready_fd = ready_fd
        self.heartbeat = heartbeat
        self.loop = None
        self.pool = None
        self.access_log = None
        self.max_requests = 0
        self.watched = {}

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
        access_log = self.access_log = (AccessLog(self.config.access_log)
                                        if self.config.access_log else None)
        handler = build_router(self.config.mounts, apps, multiprocess=self.config.workers > 1,
                               access_log=access_log,
                               multithread=self.config.threads > 1).handler()
        config = self.config
        settings = HttpSettings(
            request_line=config.limit_request_line, field_size=config.limit_request_field_size,
            fields=config.limit_request_fields, head=config.limit_request_head,
            body=config.limit_request_body, chunk_line=config.limit_chunk_line,
            trailer=config.limit_trailer_size, header_timeout=config.header_timeout,
            keepalive_timeout=config.keepalive)
        loop = self.loop = Loop()
        loop.io_timeout = config.io_timeout
        loop.graceful_timeout = config.graceful_timeout
        loop.max_connections = config.max_connections
        loop.tick = self.tick
        threads = config.threads
        if threads > 1:
            self.pool = ThreadPool(threads)
            loop.use_threads(self.pool)
        if config.max_requests:
            self.max_requests = config.max_requests + random.randint(0, config.max_requests_jitter)
        if config.reload:
            self.watched = self.module_files()
        for sock, bind in self.sockets:
            make = PROTOCOLS[bind.scheme]
            loop.add_listener(sock, bind.scheme,
                              lambda conn, make=make: make(handler, settings))
        if self.ready_fd is not None:
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)
        self.beat()
        loop.run()
        return 0

    def on_term(self, signum, frame):
        if self.loop is not None:
            self.loop.stop()
        else:
            os._exit(0)

    def on_reopen(self, signum, frame):
        if self.access_log is not None:
            self.access_log.reopen()

    def beat(self):
        """Tell the master the worker is alive: the start of its oldest running request."""
        if self.heartbeat is not None:
            now = time.monotonic()
            oldest = self.pool.oldest_start() if self.pool is not None else None
            pages, slot = self.heartbeat
            pages.write(slot, now if oldest is None else oldest)

    def tick(self):
        """Once a second, from the loop: heartbeat, recycling, code reload, orphan check."""
        self.beat()
        loop = self.loop
        if loop.stopping:
            return
        if os.getppid() != self.master_pid:
            log.warning("master process %d is gone; worker stopping", self.master_pid)
            loop.stop()
        elif self.max_requests and loop.requests >= self.max_requests:
            log.info("worker %d served %d requests (--max-requests); restarting",
                     os.getpid(), loop.requests)
            loop.stop()
        elif self.watched and self.changed_file():
            loop.stop()

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
