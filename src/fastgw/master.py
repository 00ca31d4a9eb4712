"""The master process: binds the listeners, forks workers that share them, keeps them alive.

Strategy: signals only append to a list and wake the main loop through
signal.set_wakeup_fd; everything else (reaping, respawning, stopping) happens
in the loop. The first worker must report that it imported the application
before the others are forked, so a broken APP is reported once and stops the
server instead of sending every worker into a crash loop.
"""
import logging
import os
import select
import signal
import sys
import time

from fastgw.listeners import listen
from fastgw.worker import BOOT_ERROR, Worker

log = logging.getLogger("fastgw.error")

RESPAWN_DELAY = 1.0


class Master:
    def __init__(self, config):
        self.config = config
        self.sockets = []
        self.workers = {}  # pid -> time it was started
        self.signals = []
        self.stopping = False
        self.stop_deadline = None
        self.next_spawn = 0.0

    def run(self):
        """Run until stopped; return the exit status."""
        for bind in self.config.binds:
            self.sockets.append((listen(bind, self.config.backlog), bind))
        try:
            for sock, bind in self.sockets:
                port = sock.getsockname()[1] if bind.path is None else None
                log.info("Listening at: %s (%d)", bind.describe(port), os.getpid())
            self.install_signals()
            if not self.boot_first_worker():
                return 0 if self.stopping else 1
            return self.supervise()
        finally:
            self.kill_all(signal.SIGKILL)
            for sock, bind in self.sockets:
                sock.close()
                if bind.path is not None:
                    try:
                        os.unlink(bind.path)
                    except OSError:
                        pass

    def install_signals(self):
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum, frame):
        self.signals.append(signum)

    def spawn(self, ready=False):
        ready_r = ready_w = None
        if ready:
            ready_r, ready_w = os.pipe()
        master_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            self.child(master_pid, ready_r, ready_w)
        self.workers[pid] = time.monotonic()
        log.info("Booting worker with pid: %d", pid)
        if ready:
            os.close(ready_w)
        return pid, ready_r

    def child(self, master_pid, ready_r, ready_w):
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(self.wake_r)
            os.close(self.wake_w)
            if ready_r is not None:
                os.close(ready_r)
            code = Worker(self.config, self.sockets, master_pid, ready_w).run()
        except BaseException:
            log.exception("worker %d crashed", os.getpid())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def boot_first_worker(self):
        """Fork one worker and wait until it has imported the app; False if it could not."""
        pid, ready_r = self.spawn(ready=True)
        try:
            while True:
                readable, _, _ = select.select([ready_r, self.wake_r], [], [], 1.0)
                if ready_r in readable:
                    if os.read(ready_r, 1):
                        break
                    _, status = os.waitpid(pid, 0)
                    self.workers.pop(pid, None)
                    if self.stopping:
                        log.info("Shutting down: stopped before the first worker was ready")
                    elif os.waitstatus_to_exitcode(status) == BOOT_ERROR:
                        log.error("the application could not be loaded; stopping")
                    else:
                        log.error("the first worker exited (%s) before it was ready; stopping",
                                  describe_status(status))
                    return False
                if self.wake_r in readable:
                    self.drain_wakeups()
                    if self.handle_signals():
                        return False
        finally:
            os.close(ready_r)
        for _ in range(self.config.workers - 1):
            self.spawn()
        return True

    def supervise(self):
        while True:
            timeout = 1.0
            if self.stopping:
                timeout = 0.1
            try:
                readable, _, _ = select.select([self.wake_r], [], [], timeout)
            except InterruptedError:
                readable = []
            if readable:
                self.drain_wakeups()
            if self.handle_signals():
                return 0
            self.reap()
            if self.stopping:
                if not self.workers:
                    log.info("Shutting down: all workers stopped")
                    return 0
                if time.monotonic() > self.stop_deadline:
                    log.warning("graceful timeout: killing %d worker(s)", len(self.workers))
                    self.kill_all(signal.SIGKILL)
            else:
                self.maintain()

    def drain_wakeups(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def handle_signals(self):
        """Act on received signals; True when the master must exit now."""
        while self.signals:
            signum = self.signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping:
                    log.info("second %s: stopping at once", signal.Signals(signum).name)
                    self.kill_all(signal.SIGKILL)
                    self.reap()
                    return True
                log.info("%s: stopping gracefully (up to %g s)", signal.Signals(signum).name,
                         self.config.graceful_timeout)
                self.stopping = True
                self.stop_deadline = time.monotonic() + self.config.graceful_timeout + 1.0
                self.kill_all(signal.SIGTERM)
            elif signum == signal.SIGQUIT:
                log.info("SIGQUIT: stopping at once")
                self.kill_all(signal.SIGKILL)
                self.reap()
                return True
        return False

    def reap(self):
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            started = self.workers.pop(pid, None)
            if started is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.warning("worker %d exited (%s)%s", pid, describe_status(status),
                        "; it could not load the application" if code == BOOT_ERROR else "")
            if code == BOOT_ERROR or time.monotonic() - started < RESPAWN_DELAY:
                self.next_spawn = time.monotonic() + RESPAWN_DELAY

    def maintain(self):
        """Respawn workers that died (after a pause if they die young)."""
        while len(self.workers) < self.config.workers and time.monotonic() >= self.next_spawn:
            self.spawn()

    def kill_all(self, signum):
        for pid in list(self.workers):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                self.workers.pop(pid, None)


def describe_status(status):
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
