"""systemd's notification protocol (sd_notify(3)): ready, reloading, stopping, status, watchdog.

Strategy: the service manager puts the address of a UNIX datagram socket in
NOTIFY_SOCKET (a path, or '@name' for the abstract namespace); each message is one
datagram of newline-separated VAR=VALUE lines. The master reads the variables once,
before it forks, and removes them from the environment: only the master speaks for
the service, never a worker or the application. A message is sent without blocking
and a failure is logged, never raised: the service manager going away must not stop
the server. With WATCHDOG_USEC (for this pid, WATCHDOG_PID), the master sends
WATCHDOG=1 at half the interval, but only while its workers' heartbeats are fresh, so
a server whose workers are all stuck is restarted by the service manager.
"""
import logging
import os
import socket
import time

log = logging.getLogger("fastgw.error")

VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class ServiceNotifier:
    """Tells the service manager about the master; every method is a no-op without one."""

    def __init__(self, address=None, watchdog_usec=0):
        self.address = address
        self.sock = None
        if address is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        # Seconds between WATCHDOG=1 pings (half the manager's limit), 0 without one.
        self.watchdog_interval = watchdog_usec / 2e6 if self.sock is not None else 0.0
        self.next_ping = 0.0
        self.last_status = None

    @classmethod
    def from_environ(cls, environ=None):
        """The notifier the environment asks for; the variables are removed from it."""
        env = os.environ if environ is None else environ
        values = {name: env.pop(name, None) for name in VARIABLES}
        address = values["NOTIFY_SOCKET"] or None
        if address is not None:
            if address.startswith("@"):
                address = "\0" + address[1:]
            elif not address.startswith("/"):
                log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket (@name); "
                            "not notifying the service manager", address)
                address = None
        usec = 0
        try:
            usec = int(values["WATCHDOG_USEC"] or 0)
            if values["WATCHDOG_PID"] and int(values["WATCHDOG_PID"]) != os.getpid():
                usec = 0  # the watchdog is meant for another process
        except ValueError:
            log.warning("WATCHDOG_USEC=%r / WATCHDOG_PID=%r are not numbers; no watchdog pings",
                        values["WATCHDOG_USEC"], values["WATCHDOG_PID"])
            usec = 0
        return cls(address, max(0, usec))

    def pass_on(self, environ, pid):
        """Variables for a new master (binary upgrade, pid `pid`) to speak to the same manager."""
        if self.address is None:
            return
        environ["NOTIFY_SOCKET"] = ("@" + self.address[1:] if self.address.startswith("\0")
                                    else self.address)
        if self.watchdog_interval:
            environ["WATCHDOG_USEC"] = str(int(self.watchdog_interval * 2e6))
            environ["WATCHDOG_PID"] = str(pid)

    def send(self, *lines):
        if self.sock is None:
            return
        try:
            self.sock.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError as e:
            log.warning("cannot notify the service manager at %r: %s", self.address, e)

    def ready(self, status):
        self.last_status = status
        self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")

    def reloading(self):
        # MONOTONIC_USEC lets a Type=notify-reload unit tell this reload from an older one.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                  "STATUS=reloading")

    def stopping(self):
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text):
        """STATUS=text, when it changed."""
        if text != self.last_status:
            self.last_status = text
            self.send(f"STATUS={text}")

    def watchdog(self, now, healthy):
        """WATCHDOG=1 when a ping is due and the workers are `healthy`."""
        if not self.watchdog_interval or now < self.next_ping:
            return
        if healthy:
            self.send("WATCHDOG=1")
            self.next_ping = now + self.watchdog_interval
        else:
            # Asked again soon: a worker that recovers is pinged for without a long gap.
            self.next_ping = now + min(0.25, self.watchdog_interval)

    def wait_limit(self, now, limit):
        """How long the master may sleep in select() without missing a ping."""
        if not self.watchdog_interval:
            return limit
        return max(0.0, min(limit, self.next_ping - now))
