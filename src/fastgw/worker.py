"""One worker process: imports the application, then runs the event loop on the shared listeners."""
import logging
import os
import signal
import sys

from fastgw._http import HttpProtocol, HttpSettings
from fastgw._loop import Loop
from fastgw.accesslog import AccessLog
from fastgw.errors import AppLoadError
from fastgw.loader import load_app
from fastgw.wsgi import WsgiHandler

log = logging.getLogger("fastgw.error")

# Exit status of a worker that could not import the application (the master stops).
BOOT_ERROR = 3


class Worker:
    def __init__(self, config, sockets, master_pid, ready_fd=None):
        self.config = config
        self.sockets = sockets
        self.master_pid = master_pid
        self.ready_fd = ready_fd
        self.loop = None

    def run(self):
        """Serve until told to stop; return the process exit status."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master turns Ctrl-C into SIGTERM
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            app = load_app(self.config.app)
        except AppLoadError as e:
            if e.traceback_text:
                sys.stderr.write(e.traceback_text)
            sys.stderr.write(f"fastgw: error: {e}\n")
            sys.stderr.flush()
            return BOOT_ERROR
        access_log = AccessLog(self.config.access_log) if self.config.access_log else None
        handler = WsgiHandler(app, multiprocess=self.config.workers > 1, access_log=access_log)
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
        for sock, bind in self.sockets:
            loop.add_listener(sock, bind.scheme, lambda conn: HttpProtocol(handler, settings))
        if self.ready_fd is not None:
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)
        loop.run()
        return 0

    def on_term(self, signum, frame):
        if self.loop is not None:
            self.loop.stop()
        else:
            os._exit(0)

    def tick(self):
        if os.getppid() != self.master_pid:
            log.warning("master process %d is gone; worker stopping", self.master_pid)
            self.loop.stop()
