"""Auth hooks run in a process group, asked from the front (`auth.group`).

Strategy: the front calls a GroupAuthHook as it would call the hook itself; it
sends the group a FastCGI request over the group's private socket, carrying the
environ as parameters plus FASTGW_AUTH_* parameters that name the hook, the
mount, the user and the password, and reads a small JSON answer. Only the front
can send those parameters (the socket is private, and client headers only ever
become HTTP_* parameters); fastgw.groups answers them in the group.
"""
import json
import time

from fastgw.errors import GatewayError
from fastgw.upstream import FastCgiUpstream

# Parameters of an auth hook call from the front to a group (see module docstring).
AUTH_HOOK = "FASTGW_AUTH_HOOK"
AUTH_MOUNT = "FASTGW_AUTH_MOUNT"
AUTH_USER = "FASTGW_AUTH_USER"
AUTH_PASSWORD = "FASTGW_AUTH_PASSWORD"


class GroupAuthHook:
    """check_password / groups_for_user of a mount whose auth hooks run in a process group:
    called like the hook itself, it asks the group over its socket."""

    def __init__(self, upstream, group, prefix, hook):
        self.upstream = upstream
        self.prefix = prefix
        self.hook = hook
        self.what = f"auth.{hook} in process group {group!r}"

    @classmethod
    def pair(cls, socket_path, group, prefix):
        """(check_password, groups_for_user) of one mount, sharing the group connections."""
        upstream = FastCgiUpstream("unix:" + socket_path, where=f"process group {group!r}")
        return (cls(upstream, group, prefix, "check_password"),
                cls(upstream, group, prefix, "groups_for_user"))

    def __call__(self, environ, user, password=None):
        params = {k: v for k, v in environ.items() if type(v) is str and not k.startswith("wsgi.")}
        params.pop("CONTENT_LENGTH", None)  # the hook's request carries no body
        params[AUTH_HOOK] = self.hook
        params[AUTH_MOUNT] = self.prefix
        params[AUTH_USER] = user.encode("utf-8", "surrogateescape").decode("latin-1")
        if password is not None:
            params[AUTH_PASSWORD] = password.encode("utf-8", "surrogateescape").decode("latin-1")
        out = CollectedResponse()
        deadline = time.monotonic() + AUTH_TIMEOUT
        self.upstream.exchange(params, NO_BODY, out, deadline, None)
        status, answer = out.parse(self.what)
        if status != 200:
            raise GatewayError(f"{self.what} failed (status {status}); see the error log")
        if self.hook == "groups_for_user":
            return answer["groups"]
        return answer["allowed"]


class CollectedResponse:
    """A whole (small) CGI-style response gathered in memory."""

    def __init__(self):
        self.data = bytearray()

    def feed(self, data):
        self.data += data
        return True

    def parse(self, what):
        head, sep, body = bytes(self.data).partition(b"\r\n\r\n")
        status = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"status":
                status = int(value.split()[0])
        if not sep or not status:
            raise ValueError(f"{what}: the group sent a malformed answer")
        return status, json.loads(body) if status == 200 else None


class NoBody:
    length = 0
    taken = 0


NO_BODY = NoBody()
# Seconds an auth hook in a group may take.
AUTH_TIMEOUT = 30.0
