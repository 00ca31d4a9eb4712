"""Binary upgrade on SIGUSR2: a new master from the fastgw installed now, the listeners inherited.

Strategy (nginx's and gunicorn's): the master forks, and the child executes the
command fastgw was started with (`python -m fastgw` or the `fastgw` script, the same
arguments, from the directory it was started in), so a new version of fastgw or of
the application's virtualenv is what runs. The listening sockets stay open across
the exec, named in FASTGW_LISTENERS (JSON: each listener's description, as --bind
gives it, to its descriptor); the new master takes the one whose description matches
each of its binds instead of binding again, so the old master's workers and the new
master's accept on the same sockets and no connection is refused. The old master's
pid file becomes PIDFILE.oldbin and the new master writes PIDFILE. The operator then
sends SIGTERM to the old master (it stops gracefully, as always) or, to go back,
SIGQUIT to the new one: the old master sees its child exit, renames the pid file back
and goes on. Until then the old master leaves systemd to the new one (MAINPID=).

A UNIX socket file is shared by both: the old master does not remove it at exit
while the new master runs, and the new master does not while the old one (its
parent) still runs.
"""
import json
import logging
import os
import signal
import socket
import sys

from fastgw.activation import pass_on_passed_sockets
from fastgw.processes import STOP_SIGNALS, describe_status

log = logging.getLogger("fastgw.error")

LISTENERS_VARIABLE = "FASTGW_LISTENERS"
PARENT_VARIABLE = "FASTGW_UPGRADE_FROM"
OLD_SUFFIX = ".oldbin"


def upgrade_command():
    """The command that started this fastgw, run again."""
    if hasattr(sys, "orig_argv"):
        return [sys.executable, *sys.orig_argv[1:]]
    return [sys.executable, "-m", "fastgw", *sys.argv[1:]]


class Inherited:
    """In a new master: the listeners the old one passed, by description."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        text = env.pop(LISTENERS_VARIABLE, None)
        parent = env.pop(PARENT_VARIABLE, "")
        self.parent = int(parent) if parent.isdigit() else None
        self.fds = {}
        if text:
            try:
                self.fds = {str(k): int(v) for k, v in json.loads(text).items()}
            except (ValueError, AttributeError, TypeError):
                log.warning("%s=%r is not what a fastgw master passes; binding anew",
                            LISTENERS_VARIABLE, text)
        self.taken = set()

    def take(self, key):
        """The inherited listening socket described by `key`, or None."""
        fd = self.fds.pop(key, None)
        if fd is None:
            return None
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            log.warning("inherited listener %s (descriptor %d) is unusable (%s); binding anew",
                        key, fd, e.strerror)
            return None
        sock.set_inheritable(False)
        sock.setblocking(False)
        self.taken.add(key)
        return sock

    def close_rest(self):
        """Listeners the new configuration no longer has: closed (the old master keeps its
        copies until it stops)."""
        for key, fd in self.fds.items():
            log.info("inherited listener %s is not in the configuration any more; closing it",
                     key)
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}

    def may_unlink(self, key):
        """May this master remove the socket file of listener `key` at exit?"""
        return key not in self.taken or self.parent is None or os.getppid() != self.parent


class Upgrader:
    """In a master: starts the new master on SIGUSR2 and follows it."""

    def __init__(self):
        self.pid = None
        self.start_dir = os.getcwd()
        self.command = upgrade_command()
        self.quiet_notifier = None

    def start(self, master):
        if self.pid is not None:
            log.warning("SIGUSR2: the new master %d started earlier still runs; send SIGTERM to "
                        "this master (%d) to finish that upgrade, or SIGQUIT to %d to undo it",
                        self.pid, os.getpid(), self.pid)
            return
        listeners = {bind.describe(): sock.fileno() for sock, bind in master.sockets}
        if master.metrics_server is not None:
            listeners[metrics_key(master.config.metrics_bind)] = master.metrics_server.sock.fileno()
        old_pid_file = None
        if master.pid_file is not None:
            old_pid_file = master.pid_file + OLD_SUFFIX
            try:
                os.rename(master.pid_file, old_pid_file)
            except OSError as e:
                log.error("SIGUSR2: cannot rename the pid file %s to %s (%s); not upgrading",
                          master.pid_file, old_pid_file, e.strerror)
                return
        sys.stdout.flush()
        sys.stderr.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self.exec_new_master(master, listeners)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.pid = pid
        if old_pid_file is not None:
            master.pid_file = old_pid_file
        # The new master speaks for the service from now on (MAINPID= in its READY=1).
        self.quiet_notifier, master.notifier = master.notifier, type(master.notifier)()
        log.info("SIGUSR2: started a new master, pid %d (%s), on the same listeners%s; "
                 "SIGTERM to this one (%d) finishes the upgrade, SIGTERM to %d undoes it",
                 pid, " ".join(self.command[:3]),
                 f"; this master's pid file is now {old_pid_file}" if old_pid_file else "",
                 os.getpid(), pid)

    def exec_new_master(self, master, listeners):
        """In the forked child: become the new master (never returns)."""
        try:
            for signum in range(1, signal.NSIG):
                if signum not in (signal.SIGKILL, signal.SIGSTOP):
                    try:
                        signal.signal(signum, signal.SIG_DFL)
                    except (OSError, ValueError):
                        pass
            signal.set_wakeup_fd(-1)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for fd in listeners.values():
                os.set_inheritable(fd, True)
            pass_on_passed_sockets()
            env = dict(os.environ)
            env[LISTENERS_VARIABLE] = json.dumps(listeners)
            env[PARENT_VARIABLE] = str(os.getppid())
            master.notifier.pass_on(env, os.getpid())
            os.chdir(self.start_dir)
            os.execve(self.command[0], self.command, env)
        except BaseException as e:
            try:
                sys.stderr.write(f"fastgw: error: SIGUSR2: cannot start the new master "
                                 f"({' '.join(self.command[:3])}): {e}\n")
                sys.stderr.flush()
            finally:
                os._exit(127)

    def ended(self, master, status):
        """The new master exited (undone with SIGQUIT, or it failed to start): this master
        goes on serving, with its pid file and the service manager back."""
        pid, self.pid = self.pid, None
        if master.pid_file is not None and master.pid_file.endswith(OLD_SUFFIX):
            current = master.pid_file[:-len(OLD_SUFFIX)]
            try:
                os.rename(master.pid_file, current)
                master.pid_file = current
            except OSError as e:
                log.error("cannot rename the pid file %s back to %s: %s", master.pid_file,
                          current, e.strerror)
        if self.quiet_notifier is not None:
            master.notifier, self.quiet_notifier = self.quiet_notifier, None
            master.notifier.ready(master.service_status())
        log.warning("the new master %d exited (%s); this master (%d) goes on serving",
                    pid, describe_status(status), os.getpid())

    def running(self):
        return self.pid is not None


def metrics_key(bind):
    return "metrics " + bind.describe()
