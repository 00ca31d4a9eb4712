"""Process groups: mod_wsgi's daemon mode (WSGIDaemonProcess + WSGIProcessGroup).

Strategy: a group is a pool of fastgw workers of its own, forked by the master,
that serve the mounts naming the group over FastCGI on a private UNIX socket
(mode 0600, in a 0700 directory of the master's). The front workers never import
a group's applications; they forward the group's mounts to that socket through
the FastCGI upstream client (upstream.GroupForwarder), with the whole request
path, so the group's own router gives the application the same SCRIPT_NAME and
PATH_INFO as in-process mounting would. Each group process sets its environment,
directory, python path and virtualenv before it imports anything of the
application, so two groups can hold two Django sites with different settings.
An auth hook can run in a group too (`auth.group`): the front asks the group with
a FastCGI request carrying FASTGW_AUTH_* parameters, which only the front can send
(the socket is private, and client headers only ever become HTTP_* parameters).
"""
import glob
import json
import logging
import os
import re
import site
import sys
import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

from fastgw.errors import ConfigError

log = logging.getLogger("fastgw.error")

GROUP_KEYS = ("name", "processes", "threads", "python_path", "venv", "env", "chdir", "user",
              "group")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# Parameters of an auth hook call from the front to a group (see module docstring).
AUTH_HOOK = "FASTGW_AUTH_HOOK"
AUTH_MOUNT = "FASTGW_AUTH_MOUNT"
AUTH_USER = "FASTGW_AUTH_USER"
AUTH_PASSWORD = "FASTGW_AUTH_PASSWORD"


@dataclass(frozen=True)
class Group:
    """One [[group]] table: a named pool of processes with its own Python setup."""

    name: str
    processes: int = 1
    threads: int = 1
    python_path: Tuple[str, ...] = ()
    venv: Optional[str] = None
    env: Tuple[Tuple[str, str], ...] = ()
    chdir: Optional[str] = None
    user: Optional[str] = None
    group: Optional[str] = None
    source: str = field(default="", compare=False)

    def __post_init__(self):
        where = self.source or f"group {self.name!r}"
        if type(self.name) is not str or not _NAME.fullmatch(self.name):
            raise ConfigError(f"{where}: name {self.name!r} must be 1-64 letters, digits, '_', "
                              f"'.' or '-', e.g. name = \"mysite\"")
        for key in ("processes", "threads"):
            value = getattr(self, key)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{where}: {key} = {value!r} must be a whole number of at "
                                  f"least 1")
        for path in self.python_path:
            if not os.path.isdir(path):
                raise ConfigError(f"{where}: python_path entry {path!r} is not a directory")
        if self.chdir is not None and not os.path.isdir(self.chdir):
            raise ConfigError(f"{where}: chdir {self.chdir!r} is not a directory")
        if self.venv is not None:
            venv_site_packages(self.venv, where)
        for key, value in self.env:
            if not key or "=" in key or "\0" in key + value:
                raise ConfigError(f"{where}: env {key!r} = {value!r}: names may not be empty or "
                                  f"contain '=' or NUL")

    def describe(self):
        line = f"{self.name:<20} {self.processes} process(es) x {self.threads} thread(s)"
        options = []
        if self.python_path:
            options.append("python_path=" + ":".join(self.python_path))
        if self.venv:
            options.append(f"venv={self.venv}")
        if self.chdir:
            options.append(f"chdir={self.chdir}")
        options += [f"{k}={v!r}" for k, v in self.env]
        if self.user or self.group:
            options.append(f"user={self.user or '-'} group={self.group or '-'}")
        return line + ("  (" + ", ".join(options) + ")" if options else "")


def venv_site_packages(venv, where):
    """The site-packages directory of a virtualenv made for this Python version."""
    version = "%d.%d" % sys.version_info[:2]
    if not os.path.isdir(venv):
        raise ConfigError(f"{where}: venv {venv!r} is not a directory; give the virtualenv's "
                          f"root (the directory holding bin/ and lib/)")
    wanted = os.path.join(venv, "lib", f"python{version}", "site-packages")
    if os.path.isdir(wanted):
        return wanted
    others = sorted(os.path.basename(os.path.dirname(p))
                    for p in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    if others:
        raise ConfigError(f"{where}: venv {venv!r} was made for {', '.join(others)}, but fastgw "
                          f"runs on Python {version}; recreate it with python{version} -m venv "
                          f"(as mod_wsgi's python-home, it must match the server's Python)")
    raise ConfigError(f"{where}: venv {venv!r} has no lib/python{version}/site-packages; is it "
                      f"a virtualenv? create one with python{version} -m venv {venv}")


def parse_group_table(entry, number, label, resolve):
    """One [[group]] table of a config file -> Group; `resolve` makes paths absolute."""
    where = f"{label}: [[group]] #{number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    name = entry.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: needs name = \"NAME\" (a string)")
    where = f"{where} (name = {json.dumps(name)})"
    for key in entry:
        if key not in GROUP_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: "
                              f"{', '.join(GROUP_KEYS)}")
    values = {"name": name, "source": where}
    for key in ("processes", "threads"):
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: {key} = {value!r} must be a whole number")
            values[key] = value
    for key in ("venv", "chdir", "user", "group"):
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise ConfigError(f"{where}: {key} must be a non-empty string")
            values[key] = resolve(entry[key]) if key in ("venv", "chdir") else entry[key]
    if "python_path" in entry:
        paths = entry["python_path"]
        if isinstance(paths, str):
            paths = paths.split(":")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"{where}: python_path must be a list of directories (or one "
                              f"string, colon-separated)")
        values["python_path"] = tuple(resolve(p) for p in paths if p)
    if "env" in entry:
        from fastgw.configfile import string_table
        values["env"] = string_table(entry["env"], f"{where}: env",
                                     'env = { DJANGO_SETTINGS_MODULE = "mysite.settings" }')
    return Group(**values)


def enter_group(group):
    """In a group's freshly forked process, before the application is imported: its
    environment, directory and import path (python_path, then the venv, then the rest)."""
    os.environ.update(group.env)
    if group.chdir:
        os.chdir(group.chdir)
    front = [os.path.abspath(p) for p in group.python_path]
    if group.chdir:
        front.insert(0, os.getcwd())
    if group.venv:
        packages = venv_site_packages(group.venv, f"group {group.name!r}")
        before = list(sys.path)
        site.addsitedir(packages)  # also runs the venv's .pth files
        front += [p for p in sys.path if p not in before]
        os.environ["VIRTUAL_ENV"] = group.venv
    rest = [p for p in sys.path if p not in front]
    sys.path[:] = front + rest


def run_auth_hook(req, hooks, environ_builder):
    """Answer a front's FASTGW_AUTH_* request: the result of the group's hook as JSON.

    `hooks` maps a mount's prefix to its AuthGate (in this process); the answer is
    {"allowed": true/false/null} or {"groups": [...]}."""
    params = req.params
    gate = hooks.get(params.get(AUTH_MOUNT, ""))
    if gate is None:
        raise LookupError(f"no auth hook for mount {params.get(AUTH_MOUNT)!r} in this group")
    user = params.get(AUTH_USER, "").encode("latin-1").decode("utf-8", "replace")
    environ = environ_builder.environ(req)
    for key in (AUTH_HOOK, AUTH_MOUNT, AUTH_USER, AUTH_PASSWORD):
        environ.pop(key, None)
    if params[AUTH_HOOK] == "groups_for_user":
        groups = gate.groups_for_user(environ, user) or ()
        return {"groups": [g.decode("utf-8", "replace") if isinstance(g, bytes) else str(g)
                           for g in groups]}
    password = params.get(AUTH_PASSWORD, "").encode("latin-1").decode("utf-8", "replace")
    allowed = gate.check_password(environ, user, password)
    return {"allowed": allowed if allowed in (True, False, None) else bool(allowed)}


class GroupService:
    """The handler of a group's processes: its mounts, and the auth hooks the front asks
    it to run (requests carrying FASTGW_AUTH_HOOK)."""

    def __init__(self, handler, auth_configs):
        from fastgw.auth import AuthGate
        from fastgw.wsgi import WsgiHandler

        self.handler = handler
        self.gates = {prefix: AuthGate(None, auth, f"auth of mount {prefix!r}")
                      for prefix, auth in auth_configs.items()}
        self.environ_builder = WsgiHandler(None)

    def __call__(self, req, resp):
        params = req.params
        if params is None or AUTH_HOOK not in params:
            return self.handler(req, resp)
        try:
            body = json.dumps(run_auth_hook(req, self.gates, self.environ_builder)).encode()
            status = "200 OK"
        except Exception:
            log.exception("the auth hook %s for mount %r failed", params.get(AUTH_HOOK),
                          params.get(AUTH_MOUNT))
            body = b'{"error": "the hook failed; see the error log"}'
            status = "500 Internal Server Error"
        resp.send_head(status, [("Content-Type", "application/json")], len(body), False)
        resp.finish(body)


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
        from fastgw.upstream import FastCgiUpstream

        upstream = FastCgiUpstream("unix:" + socket_path, where=f"process group {group!r}")
        return (cls(upstream, group, prefix, "check_password"),
                cls(upstream, group, prefix, "groups_for_user"))

    def __call__(self, environ, user, password=None):
        from fastgw.cgi import GatewayError

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
