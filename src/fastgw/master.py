"""The master process: binds the listeners, forks workers that share them, keeps them alive.

Strategy: signals only append to a list and wake the main loop through
signal.set_wakeup_fd; everything else (reaping, respawning, reloading, stopping)
happens in the loop. Workers import the application themselves after the fork, so
a reload (SIGHUP) is: fork a new generation, wait until every new worker reports
that it imported the app, then retire the old generation gracefully; the
listening sockets never close. The first worker must report ready before the
others are forked, so a broken APP is reported once and stops the server instead
of sending every worker into a crash loop. Each worker writes a heartbeat (the
start of its oldest running request, or the current time) into a shared page;
a worker silent for longer than --timeout gets SIGUSR2 (faulthandler dumps its
threads' stacks to the error log) and then SIGKILL.

The table of workers, and what the master does to them as a whole, is
fastgw.workertable. Process groups (fastgw.groups) are pools of the same kind of
worker, one pool per [[group]], each listening on its own private UNIX socket.
They boot before the front workers (a group that cannot load its application
stops the start), are reloaded with them, and are told to stop only once the
front workers are gone, so a request being forwarded to a group still finds it.
"""
import dataclasses
import logging
import os
import select
import signal
import sys
import time

from fastgw.accesslog import AccessLog
from fastgw.errorlog import reopen_error_log
from fastgw.errors import ConfigError, FastgwError
from fastgw.groupconfig import enter_group
from fastgw.groupsockets import GroupSockets
from fastgw.tlscontext import server_context
from fastgw.heartbeats import SLOTS as HEARTBEAT_SLOTS, Heartbeats
from fastgw.listeners import describe_listener, listen
from fastgw.metrics import MetricsPage, MetricsServer, describe, open_listener
from fastgw.privileges import switch_to, wanted_ids
from fastgw.processes import STOP_SIGNALS, describe_status
from fastgw.sdnotify import ServiceNotifier
from fastgw.upgrade import Inherited, Upgrader, metrics_key
from fastgw.worker import BOOT_ERROR, Worker
from fastgw.workertable import WorkerInfo, WorkerTable

log = logging.getLogger("fastgw.error")



class Master(WorkerTable):
    def __init__(self, config, reload_config=None, upgrader=None):
        super().__init__()
        self.config = config
        self.reload_config = reload_config
        # SIGUSR2 (fastgw.upgrade): the new master it starts, and what a master started
        # that way inherited.
        self.upgrader = upgrader or Upgrader()
        self.inherited = None
        self.sockets = []
        # The HTTPS listeners' SSLContext (fastgw.tlscontext), rebuilt by a reload.
        self.tls_context = None
        self.signals = []
        self.deferred = []
        self.worker_ids = None
        self.stopping = False
        self.stop_deadline = None
        self.next_spawn = 0.0
        self.exit_code = 0
        self.heartbeats = Heartbeats()
        self.pid_file = None
        # Operations (fastgw.metrics): shared counters, the /metrics listener, readiness.
        self.metrics = None
        self.metrics_server = None
        self.ready = False
        self.draining = False
        self.drain_deadline = None
        # Process groups: name -> (listening socket, Bind) in the private directory.
        self.group_sockets = GroupSockets()
        self.pool_ids = {}
        self.groups_stopping = False
        # systemd (fastgw.sdnotify): READY=1 said once every worker serves; requests
        # counted by the front workers that are gone, for STATUS.
        self.notifier = ServiceNotifier()
        self.announced = False
        self.requests_done = 0

    def run(self):
        """Run until stopped; return the exit status."""
        config = self.config
        # Before any fork: the workers must not inherit NOTIFY_SOCKET.
        self.notifier = ServiceNotifier.from_environ()
        self.tls_context = server_context(config)  # a bad certificate stops here (exit 2)
        inherited = self.inherited = Inherited()
        for bind in config.binds:
            sock = inherited.take(bind.describe()) or listen(
                bind, config.backlog, reuse_port=config.reuse_port,
                unix_mode=config.unix_socket_mode)
            self.sockets.append((sock, bind))
        try:
            for sock, bind in self.sockets:
                log.info("Listening at: %s (%d)", describe_listener(sock, bind), os.getpid())
            self.group_sockets.open(config.groups, config.backlog)
            self.start_metrics()
            inherited.close_rest()
            self.check_access_log()
            self.write_pid_file()
            self.drop_privileges()
            self.install_signals()
            if not self.boot_first_worker():
                return 0 if self.stopping else 1
            self.ready = True
            return self.supervise()
        finally:
            self.kill_all(signal.SIGKILL)
            if self.metrics_server is not None:
                self.metrics_server.close()
            for sock, bind in self.sockets:
                sock.close()
                # A UNIX socket file shared with the other master of an upgrade stays.
                if (bind.path is not None and not self.upgrader.running()
                        and inherited.may_unlink(bind.describe())):
                    try:
                        os.unlink(bind.path)
                    except OSError:
                        pass
            self.group_sockets.close_all()
            if self.pid_file is not None:
                try:
                    os.unlink(self.pid_file)
                except OSError:
                    pass

    def write_pid_file(self):
        path = self.config.pid
        if not path:
            return
        try:
            with open(path, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as e:
            raise ConfigError(f"--pid {path!r}: cannot write the pid file: {e.strerror}") from None
        self.pid_file = os.path.abspath(path)

    def drop_privileges(self):
        """--user/--group (and a group's user/group): checked here, applied in each worker
        right after the fork (fastgw.privileges); the master stays root."""
        self.pool_ids = wanted_ids(self.config)
        if None not in self.pool_ids:
            return
        self.worker_ids = self.pool_ids[None]
        uid, gid = self.worker_ids
        for sock, bind in self.sockets:
            if bind.path is not None:
                os.chown(bind.path, os.getuid() if uid is None else uid, gid)
        self.group_sockets.give_to(self.worker_ids)
        log.info("Workers run as uid %d, gid %d", os.getuid() if uid is None else uid, gid)

    def start_metrics(self):
        """--metrics: the shared counters (before any fork) and the thread answering scrapes."""
        bind = self.config.metrics_bind
        if bind is None:
            return
        self.metrics = MetricsPage(HEARTBEAT_SLOTS)
        sock = self.inherited.take(metrics_key(bind)) or open_listener(bind)
        self.metrics_server = MetricsServer(sock, self.metrics, self.readiness)
        self.metrics_server.start()
        log.info("Metrics, /healthz and /readyz at: %s (%d)", describe(sock, bind), os.getpid())

    def check_access_log(self):
        """An access log the workers could not open is a start-up error, said once."""
        path = self.config.access_log
        if not path or path == "-":
            return
        try:
            AccessLog(path, self.config.access_log_format).close()
        except OSError as e:
            raise ConfigError(f"--access-log {path!r}: cannot open it: {e.strerror}") from None

    def readiness(self):
        """(ready, draining) for /readyz: ready once serving, not from SIGTERM on."""
        leaving = self.draining or self.stopping
        return self.ready and not leaving, leaving

    def begin_drain(self):
        seconds = self.config.drain_seconds
        self.draining = True
        self.drain_deadline = time.monotonic() + seconds
        self.notifier.stopping()
        log.info("SIGTERM: draining for %g s (--drain-seconds): still serving, /readyz says "
                 "503; then stopping gracefully", seconds)

    def install_signals(self):
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD,
                       signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN,
                       signal.SIGTTOU):
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum, frame):
        self.signals.append(signum)

    def spawn(self, ready=False, pool=None):
        ready_r = ready_w = None
        if ready:
            ready_r, ready_w = os.pipe()
        slot = self.heartbeats.take()
        if self.metrics is not None and pool is None:
            self.metrics.take(slot, self.config.mounts)
        master_pid = os.getpid()
        # Block stop signals across fork(): the child must not receive one while it still
        # has the master's handlers; it unblocks them once its own are in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self.child(master_pid, ready_r, ready_w, slot, pool)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        info = WorkerInfo(pid, slot, time.monotonic(), pool=pool)
        self.workers[pid] = info
        if pool is None:
            log.info("Booting worker with pid: %d", pid)
        else:
            log.info("Booting process group %r worker with pid: %d", pool, pid)
        if ready:
            os.close(ready_w)
            info.ready_fd = ready_r
        return info

    def child(self, master_pid, ready_r, ready_w, slot, pool):
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU,
                           signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            os.close(self.wake_r)
            os.close(self.wake_w)
            if self.metrics_server is not None:
                self.metrics_server.close_in_child()
            if ready_r is not None:
                os.close(ready_r)
            for info in list(self.workers.values()) + list(self.retiring.values()):
                if info.ready_fd >= 0:
                    os.close(info.ready_fd)
            # A group's config is validated before the user switch (its directories may
            # not be the user's to stat).
            group_config = None
            if pool is not None:
                group_config = self.config.group_config(self.group(pool))
            ids = self.pool_ids.get(pool)
            if ids is not None:
                switch_to(ids)
            code = self.make_worker(pool, master_pid, ready_w, slot, group_config).run()
        except BaseException:
            log.exception("worker %d crashed", os.getpid())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def group(self, name):
        return next(g for g in self.config.groups if g.name == name)

    def make_worker(self, pool, master_pid, ready_w, slot, group_config=None):
        """In the child: the front Worker, or a process group's (listening on the group's
        socket only); each closes the listeners that are not its own."""
        heartbeat = (self.heartbeats, slot)
        if pool is None:
            for sock, _ in self.group_sockets.values():
                sock.close()
            return Worker(self.config, self.sockets, master_pid, ready_w, heartbeat=heartbeat,
                          metrics=(self.metrics, slot) if self.metrics is not None else None,
                          group_sockets=self.group_sockets.paths(),
                          tls_context=self.tls_context)
        for sock, _ in self.sockets:
            sock.close()
        mine = self.group_sockets[pool]
        for sock, _ in self.group_sockets.values():
            if sock is not mine[0]:
                sock.close()
        enter_group(self.group(pool))
        return Worker(group_config, [mine], master_pid, ready_w,
                      heartbeat=heartbeat, group_auth=self.config.group_auth(pool))

    def wait_ready(self, infos):
        """Wait until every worker in `infos` imported the app: True, or False if one failed."""
        pending = {info.ready_fd: info for info in infos}
        ok = True
        try:
            while pending and ok:
                # The serving generation (none at the first boot) answers meanwhile.
                self.notifier.watchdog(time.monotonic(), True)
                readable, _, _ = select.select(list(pending) + [self.wake_r], [], [],
                                               self.notifier.wait_limit(time.monotonic(), 1.0))
                for fd in readable:
                    if fd == self.wake_r:
                        self.drain_wakeups()
                        if self.handle_signals(during_boot=True):
                            return False
                        continue
                    info = pending.pop(fd)
                    if os.read(fd, 1):
                        self.heartbeats.write(info.slot, time.monotonic())
                        continue
                    _, status = os.waitpid(info.pid, 0)
                    self.forget(info)
                    if not self.stopping:
                        if os.waitstatus_to_exitcode(status) == BOOT_ERROR:
                            log.error("the application%s could not be loaded (error above)",
                                      f" of process group {info.pool!r}" if info.pool else "")
                        else:
                            log.error("a new worker exited (%s) before it was ready",
                                      describe_status(status))
                    ok = False
                if self.stopping:
                    return False
            return ok
        finally:
            for info in infos:
                if info.ready_fd >= 0:
                    os.close(info.ready_fd)
                    info.ready_fd = -1
            self.signals[0:0] = self.deferred
            self.deferred = []

    def boot_first_worker(self):
        """Fork one worker (first each process group's) and wait until it has imported the
        app; False if it could not."""
        for group in self.config.groups:
            if not self.wait_ready([self.spawn(ready=True, pool=group.name)]):
                if self.stopping:
                    log.info("Shutting down: stopped before process group %r was ready",
                             group.name)
                else:
                    log.error("stopping: process group %r could not start; fix it and start "
                              "again", group.name)
                return False
            for _ in range(group.processes - 1):
                self.spawn(pool=group.name)
        if not self.wait_ready([self.spawn(ready=True)]):
            if self.stopping:
                log.info("Shutting down: stopped before the first worker was ready")
            else:
                log.error("stopping: fix the application and start again")
            return False
        for _ in range(self.config.workers - 1):
            self.spawn()
        return True

    def supervise(self):
        while True:
            limit = 0.1 if self.stopping or self.draining else 1.0
            try:
                readable, _, _ = select.select([self.wake_r], [], [],
                                               self.notifier.wait_limit(time.monotonic(), limit))
            except InterruptedError:
                readable = []
            if readable:
                self.drain_wakeups()
            if self.handle_signals():
                return self.exit_code
            self.reap()
            self.check_timeouts()
            self.report_service()
            if self.draining and not self.stopping and time.monotonic() >= self.drain_deadline:
                self.begin_stop("drain window over")
            if self.stopping:
                if not self.groups_stopping and not any(
                        info.pool is None for info in self.all_workers()):
                    self.groups_stopping = True
                    self.kill_all(signal.SIGTERM)
                if not self.workers and not self.retiring:
                    log.info("Shutting down: all workers stopped")
                    return self.exit_code
                if time.monotonic() > self.stop_deadline:
                    log.warning("graceful timeout: killing %d worker(s)",
                                len(self.workers) + len(self.retiring))
                    self.kill_all(signal.SIGKILL)
            else:
                self.replace_asked()
                self.maintain()

    def replace_asked(self):
        """Recycling (--max-requests, --reload-on-rss, --reload): a worker that asked for a
        successor is retired once the successor has imported the application, like a
        reload's old generation; if the successor cannot start, the worker serves on."""
        for info in list(self.workers.values()):
            asked = self.heartbeats.replacements_asked(info.slot)
            if asked == info.asked or info.pid not in self.workers:
                continue
            info.asked = asked
            successor = self.spawn(ready=True, pool=info.pool)
            if self.wait_ready([successor]):
                log.info("worker %d replaced by worker %d", info.pid, successor.pid)
                if self.metrics is not None:
                    self.metrics.worker_restarts += 1
                self.retire(info)
            elif not self.stopping:
                log.error("worker %d: its successor could not start; it keeps serving",
                          info.pid)
            if self.stopping:
                return

    def drain_wakeups(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def handle_signals(self, during_boot=False):
        """Act on received signals; True when the master must exit now."""
        while self.signals:
            signum = self.signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping:
                    log.info("second %s: stopping at once", signal.Signals(signum).name)
                    self.kill_all(signal.SIGKILL)
                    self.reap()
                    return True
                if (signum == signal.SIGTERM and self.config.drain_seconds and not self.draining
                        and not during_boot):
                    self.begin_drain()
                    continue
                self.begin_stop(signal.Signals(signum).name)
            elif signum == signal.SIGQUIT:
                log.info("SIGQUIT: stopping at once")
                self.kill_all(signal.SIGKILL)
                self.reap()
                return True
            elif self.stopping or (self.draining and signum != signal.SIGUSR1):
                continue
            elif during_boot:
                # Acted on once the workers being started are ready (or have failed).
                self.deferred.append(signum)
            elif signum == signal.SIGHUP:
                self.notifier.reloading()
                self.reload()
                if not self.stopping:
                    self.announced = True
                    self.notifier.ready(self.service_status())
            elif signum == signal.SIGUSR2:
                self.upgrader.start(self)
            elif signum == signal.SIGUSR1:
                log.info("SIGUSR1: reopening log files")
                reopen_error_log()
                self.kill_all(signal.SIGUSR1)
            elif signum == signal.SIGTTIN:
                self.resize(self.config.workers + 1)
            elif signum == signal.SIGTTOU:
                self.resize(max(1, self.config.workers - 1))
        return False

    def begin_stop(self, why):
        log.info("%s: stopping gracefully (up to %g s)", why, self.config.graceful_timeout)
        if not self.draining:
            self.notifier.stopping()
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.config.graceful_timeout + 1.0
        # Process groups are stopped once the front workers are gone (see supervise).
        self.kill_all(signal.SIGTERM, front_only=True)
        # No more workers will be forked: the master's copies of the listeners go now, so
        # a listener is closed (new connections refused, or sent to the other sockets of
        # a --reuse-port group) as soon as the workers have taken what is queued on it.
        for sock, _ in self.sockets:
            sock.close()

    def reload(self):
        """SIGHUP: new config, new workers with the app re-imported, then retire the old ones."""
        log.info("SIGHUP: reloading")
        config = self.config
        if self.reload_config is not None:
            try:
                config = self.reload_config()
            except FastgwError as e:
                log.error("reload failed: %s; the running workers keep serving", e)
                return
            if config.binds != self.config.binds:
                log.warning("reload: listeners cannot change without a restart; keeping %s",
                            ", ".join(b.describe() for b in self.config.binds))
                config = dataclasses.replace(config, binds=self.config.binds)
        try:
            tls_context = server_context(config)  # renewed certificates are read here
        except FastgwError as e:
            log.error("reload failed: %s; the running workers keep serving", e)
            return
        old_config, old = self.config, list(self.workers.values())
        old_tls_context, self.tls_context = self.tls_context, tls_context
        try:
            self.group_sockets.open(config.groups, config.backlog)
        except OSError as e:
            log.error("reload failed: cannot open a process group's socket: %s", e)
            return
        self.config = config
        self.workers = {}
        new = [self.spawn(ready=True, pool=group.name)
               for group in config.groups for _ in range(group.processes)]
        new += [self.spawn(ready=True) for _ in range(config.workers)]
        if self.wait_ready(new):
            for info in old:
                self.retire(info)
            self.group_sockets.close_unused(self.config.groups)
            log.info("reload done: %d new worker(s), %d retiring", len(new), len(old))
            return
        for info in list(self.workers.values()):
            self.retire(info)
            self.kill_worker(info, signal.SIGKILL)
        self.config, self.tls_context = old_config, old_tls_context
        self.workers.update({info.pid: info for info in old})
        self.group_sockets.close_unused(self.config.groups)
        if not self.stopping:
            log.error("reload failed: the new workers could not start; the old workers keep serving")

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            info = self.workers.get(pid) or self.retiring.get(pid)
            if info is None:
                if pid == self.upgrader.pid:
                    self.upgrader.ended(self, status)
                continue
            booted = self.heartbeats.read(info.slot) > 0
            self.forget(info)
            if info.pid not in self.retire_deadline and not self.stopping:
                if self.metrics is not None:
                    self.metrics.worker_restarts += 1
                self.worker_died(info, status, booted)
            self.retire_deadline.pop(pid, None)

    def service_status(self):
        """The STATUS line: front workers serving, requests served since the start."""
        front = [info for info in self.all_workers() if info.pool is None]
        serving = sum(1 for info in front
                      if info.pid in self.workers and self.heartbeats.read(info.slot) > 0)
        requests = self.requests_done + sum(self.heartbeats.read_requests(info.slot)
                                            for info in front)
        return f"{serving} worker(s) serving, {requests} request(s) served"

    def report_service(self):
        """systemd: READY=1 once every worker of the generation serves, then STATUS when it
        changes; WATCHDOG=1 while some front worker serves and no worker's heartbeat is
        older than --timeout (or than the watchdog limit with --timeout 0)."""
        now = time.monotonic()
        beats = [(info, self.heartbeats.read(info.slot)) for info in self.workers.values()]
        serving = [(info, beat) for info, beat in beats if beat > 0]
        if not self.stopping:
            if self.announced:
                self.notifier.status(self.service_status())
            elif len(serving) == self.config.workers + sum(g.processes for g in self.config.groups):
                self.announced = True
                self.notifier.ready(self.service_status())
        limit = self.config.timeout or 2 * self.notifier.watchdog_interval
        healthy = (any(info.pool is None for info, _ in serving)
                   and all(now - beat <= limit for _, beat in serving))
        self.notifier.watchdog(now, healthy)
