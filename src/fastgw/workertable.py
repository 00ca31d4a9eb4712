"""The master's table of its worker processes, and what it does to them as a whole.

Strategy: every child the master forked is a WorkerInfo in one of two dicts, the
current generation (`workers`) and those told to stop (`retiring`, each with a
deadline); a worker's slot in the shared heartbeat page says whether it serves
and since when its request runs. From that table alone the master retires and
kills workers, replaces those that died (after a pause if they die young), grows
or shrinks the pool (SIGTTIN/SIGTTOU) and enforces --timeout and the graceful
timeout. The master (fastgw.master) forks, reads signals and reloads; it is this
class with those added.
"""
import dataclasses
import logging
import os
import signal
import time
from typing import Optional

from fastgw.processes import describe_status
from fastgw.worker import BOOT_ERROR

log = logging.getLogger("fastgw.error")

# A worker that dies younger than this is replaced only after this long.
RESPAWN_DELAY = 1.0
# After SIGUSR2 asked a stuck worker for its stacks, it is killed this much later.
STACK_DUMP_GRACE = 1.0


@dataclasses.dataclass
class WorkerInfo:
    pid: int
    slot: int
    started: float
    ready_fd: int = -1
    timed_out_at: float = 0.0
    # The process group the worker serves; None for the front workers.
    pool: Optional[str] = None
    # How many times it asked for a successor (Heartbeats.ask_replacement), as last seen.
    asked: int = 0


class WorkerTable:
    """The worker bookkeeping of a Master: needs its `config`, `heartbeats`, `metrics`,
    `stopping`, `exit_code`, `next_spawn`, `requests_done`, `spawn` and `begin_stop`."""

    def __init__(self):
        self.workers = {}  # pid -> WorkerInfo, the current generation
        self.retiring = {}  # pid -> WorkerInfo, told to stop (reload, fewer workers)
        self.retire_deadline = {}

    def resize(self, count):
        log.info("workers: %d -> %d", self.config.workers, count)
        self.config = dataclasses.replace(self.config, workers=count)
        front = [info for info in self.workers.values() if info.pool is None]
        front.sort(key=lambda info: info.started)
        for info in front[:max(0, len(front) - count)]:
            self.retire(info)

    def retire(self, info):
        self.workers.pop(info.pid, None)
        self.retiring[info.pid] = info
        self.retire_deadline[info.pid] = time.monotonic() + self.config.graceful_timeout + 1.0
        if not self.stopping:
            # the workers that stay take the shared backlog: this one stops accepting now
            self.heartbeats.mark_replaced(info.slot)
        try:
            os.kill(info.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def forget(self, info):
        self.workers.pop(info.pid, None)
        self.retiring.pop(info.pid, None)
        if info.pool is None:
            self.requests_done += self.heartbeats.read_requests(info.slot)
        if self.metrics is not None and info.pool is None:
            self.metrics.release(info.slot)
        self.heartbeats.give_back(info.slot)

    def worker_died(self, info, status, booted):
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            log.info("worker %d exited to be replaced", info.pid)
            return
        if code == BOOT_ERROR and not booted and not self.config.reload:
            log.error("worker %d%s could not load the application (error above); stopping",
                      info.pid, f" of process group {info.pool!r}" if info.pool else "")
            self.exit_code = 1
            self.begin_stop("boot failure")
            return
        log.warning("worker %d%s exited (%s); starting another", info.pid,
                    f" of process group {info.pool!r}" if info.pool else "",
                    describe_status(status))
        if not booted or time.monotonic() - info.started < RESPAWN_DELAY:
            self.next_spawn = time.monotonic() + RESPAWN_DELAY

    def check_timeouts(self):
        now = time.monotonic()
        for pid, deadline in list(self.retire_deadline.items()):
            if now > deadline and pid in self.retiring:
                log.warning("worker %d did not finish within the graceful timeout; killing it", pid)
                self.kill_worker(self.retiring[pid], signal.SIGKILL)
        timeout = self.config.timeout
        if not timeout:
            return
        for info in self.all_workers():
            beat = self.heartbeats.read(info.slot)
            if info.timed_out_at:
                if now - info.timed_out_at > STACK_DUMP_GRACE:
                    self.kill_worker(info, signal.SIGKILL)
            elif beat and now - beat > timeout:
                log.error("worker %d: a request has run for more than %g s (--timeout); "
                          "dumping its stacks and killing it", info.pid, timeout)
                info.timed_out_at = now
                if self.metrics is not None:
                    self.metrics.worker_timeouts += 1
                self.kill_worker(info, signal.SIGUSR2)

    def maintain(self):
        """Respawn workers that died (after a pause if they die young)."""
        wanted = {None: self.config.workers}
        wanted.update((group.name, group.processes) for group in self.config.groups)
        running = dict.fromkeys(wanted, 0)
        for info in self.workers.values():
            running[info.pool] = running.get(info.pool, 0) + 1
        for pool, count in wanted.items():
            while running[pool] < count and time.monotonic() >= self.next_spawn:
                self.spawn(pool=pool)
                running[pool] += 1

    def kill_worker(self, info, signum):
        try:
            os.kill(info.pid, signum)
        except ProcessLookupError:
            pass

    def all_workers(self):
        return list(self.workers.values()) + list(self.retiring.values())

    def kill_all(self, signum, front_only=False):
        for info in self.all_workers():
            if not front_only or info.pool is None:
                self.kill_worker(info, signum)
