"""`fastgw import-apache`: the Apache + mod_wsgi directives of Django's deployment guide,
read and written out as an equivalent fastgw.toml.

Strategy: two steps. `read_directives` turns the file into a tree of Directives
(name, arguments, file:line, children for <Sections>), joining backslash-continued
lines and unquoting arguments as Apache does; it fails only where the structure
cannot be trusted (an unbalanced section, an unterminated quote). `ApacheSite`
walks that tree once, collecting what mod_wsgi would know (script aliases, daemon
processes, where WSGIProcessGroup applies, aliases, <Location> logins), then
writes [server], [[group]] and [[mount]] tables. Every directive that is not
mapped one to one gets a `# FILE:LINE: ...` note at the top of the output, so
nothing is dropped silently; a login rule that cannot be translated is an error,
since dropping it would open the site.
"""
import os
from dataclasses import dataclass, field
from typing import List, Optional

from fastgw.configfile import toml_value
from fastgw.errors import ApacheConfigError
from fastgw.groupconfig import GROUP_KEYS

# Sections whose contents apply to the whole server (fastgw serves one site).
TRANSPARENT = frozenset({"virtualhost", "ifmodule", "ifdefine", "ifversion"})
# Sections that scope their contents to a directory, file name or URL.
SCOPES = frozenset({"directory", "files", "location"})
# <Location> directives of an HTTP Basic login.
AUTH_DIRECTIVES = frozenset({"authtype", "authname", "authbasicprovider", "require"})


@dataclass
class Directive:
    """One line of the configuration; a <Section> has `children`."""

    name: str
    args: List[str]
    where: str
    children: Optional[list] = None

    @property
    def key(self):
        return self.name.lower()

    @property
    def text(self):
        words = " ".join([self.name] + [quoted(a) for a in self.args])
        return words if self.children is None else f"<{words}>"


def quoted(arg):
    return f'"{arg}"' if not arg or any(c.isspace() for c in arg) else arg


def read_directives(path):
    """The directives of an Apache configuration file, as a tree."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise ApacheConfigError(f"{path}: cannot read it: {e.strerror}; give the Apache "
                                f"configuration file, e.g. /etc/apache2/sites-available/"
                                f"mysite.conf") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ApacheConfigError(f"{path}:{line}: not UTF-8 (byte {raw[e.start]:#04x}); save "
                                f"the file as UTF-8 and run again") from None
    top = []
    stack = [(None, top)]
    for number, line in logical_lines(text):
        where = f"{path}:{number}"
        if not line or line.startswith("#"):
            continue
        opening = stack[-1][0]
        if line.startswith("</"):
            name = line[2:].rstrip(">").strip()
            if opening is None:
                raise ApacheConfigError(f"{where}: </{name}> closes nothing; remove it or add "
                                        f"the matching <{name} ...> above it")
            if opening.key != name.lower():
                raise ApacheConfigError(f"{where}: </{name}> closes <{opening.name}> opened at "
                                        f"{opening.where}; close that one with "
                                        f"</{opening.name}> first")
            stack.pop()
        elif line.startswith("<"):
            if not line.endswith(">"):
                raise ApacheConfigError(f"{where}: {line!r}: a section line must end with '>'")
            name, args = split_args(line[1:-1], where)
            section = Directive(name, args, where, [])
            stack[-1][1].append(section)
            stack.append((section, section.children))
        else:
            name, args = split_args(line, where)
            stack[-1][1].append(Directive(name, args, where))
    if len(stack) > 1:
        opening = stack[-1][0]
        raise ApacheConfigError(f"{opening.where}: <{opening.name} {' '.join(opening.args)}> is "
                                f"never closed; add </{opening.name}> after its last line")
    return top


def logical_lines(text):
    """(first line number, stripped line) with backslash-continued lines joined."""
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, (pending + line).strip()
        pending = ""
    if pending:
        yield start, pending.strip()


def split_args(text, where):
    """A directive line -> (name, arguments); "..." and '...' quote an argument."""
    words = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "\"'":
            j, word = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n and text[j + 1] == c:
                    j += 1
                word.append(text[j])
                j += 1
            if j >= n:
                raise ApacheConfigError(f"{where}: unterminated {c} in {text!r}; close the quote")
            words.append("".join(word))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace():
                j += 1
            words.append(text[i:j])
            i = j
    if not words:
        raise ApacheConfigError(f"{where}: an empty section '<>'")
    return words[0], words[1:]


def options(directive, start):
    """key=value options from argument `start` on -> {key: value}."""
    found = {}
    for arg in directive.args[start:]:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ApacheConfigError(f"{directive.where}: {directive.name}: {arg!r} is not a "
                                    f"key=value option")
        found[key.lower()] = value
    return found


def need(directive, count, usage):
    if len(directive.args) < count:
        raise ApacheConfigError(f"{directive.where}: {directive.text}: missing arguments; "
                                f"write {usage}")


def within(prefix, path):
    """Is file system or URL path `path` at or below directory or prefix `prefix`?"""
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


@dataclass
class Daemon:
    """A WSGIDaemonProcess: a [[group]]."""

    name: str
    table: dict = field(default_factory=dict)

    @property
    def python_path(self):
        return self.table.setdefault("python_path", [])


@dataclass
class Login:
    """The HTTP Basic login of a <Location>."""

    url: str
    where: str
    auth_type: Optional[str] = None
    realm: Optional[str] = None
    provider: Optional[str] = None
    requires: list = field(default_factory=list)
    user_script: Optional[Directive] = None
    group_script: Optional[Directive] = None


class ApacheSite:
    """What the directives say, and the fastgw.toml saying the same."""

    def __init__(self, path):
        self.path = path
        self.notes = []
        self.python_path = []
        self.python_home = None
        self.daemons = {}
        # (scope, group name, directive): WSGIProcessGroup where it applies.
        self.process_groups = []
        # (URL, script, options, directive) of WSGIScriptAlias; (URL, path) of Alias.
        self.scripts = []
        self.aliases = []
        self.logins = []
        # Mount prefix -> (script or path, directive) that mapped it first.
        self.origins = {}
        self.user_script = None
        self.group_script = None

    def note(self, directive, text):
        self.notes.append(f"{directive.where}: {directive.text}: {text}")

    # -- reading --

    def walk(self, directives, scope=None, login=None):
        for d in directives:
            key = d.key
            if d.children is not None:
                self.section(d, scope, login)
            elif login is not None and key in AUTH_DIRECTIVES | {"wsgiauthuserscript",
                                                                 "wsgiauthgroupscript"}:
                self.login_directive(login, d)
            else:
                handler = getattr(self, "on_" + key, None)
                if handler is None:
                    self.note(d, "not translated (no fastgw equivalent is known)")
                else:
                    handler(d, scope)

    def section(self, d, scope, login):
        key = d.key
        if key in TRANSPARENT:
            if key == "virtualhost":
                self.note(d, "its contents are translated; set [server] bind to the address "
                             "fastgw listens on")
            self.walk(d.children, scope, login)
        elif key in SCOPES:
            need(d, 1, f"<{d.name} PATH>")
            inner = (key, d.args[0])
            if self.has_login(d.children):
                if key != "location" or scope is not None:
                    raise ApacheConfigError(f"{d.where}: a login in <{d.name} {d.args[0]}>: "
                                            f"fastgw's logins guard URLs; write it as <Location "
                                            f"URL> with the URL that reaches it")
                login = Login(d.args[0], d.where)
                self.logins.append(login)
            self.walk(d.children, inner, login)
        else:
            self.note(d, "section not translated, nor anything inside it")

    @staticmethod
    def has_login(children):
        return any(c.key in ("authtype", "authbasicprovider") or
                   (c.key == "require" and c.args[:1] and
                    c.args[0].lower() in ("valid-user", "group", "user"))
                   for c in children)

    def on_wsgiscriptalias(self, d, scope):
        need(d, 2, "WSGIScriptAlias URL /path/to/wsgi.py")
        opts = options(d, 2)
        for key in opts:
            if key == "application-group":
                self.note(d, "application-group: fastgw runs each application in the main "
                             "interpreter of its own processes (as %{GLOBAL})")
            elif key != "process-group":
                self.note(d, f"option {key} not translated")
        script = os.path.normpath(d.args[1])
        if not script.endswith(".py"):
            self.note(d, "fastgw imports the WSGI script as a module: give it a name ending "
                         "in .py")
        self.scripts.append((d.args[0], script, opts, d))

    def on_wsgiscriptaliasmatch(self, d, scope):
        self.note(d, "not translated: mount each application at its URL prefix with "
                     "WSGIScriptAlias instead")

    def on_wsgipythonpath(self, d, scope):
        need(d, 1, "WSGIPythonPath /path/to/mysite.com")
        self.python_path += [p for arg in d.args for p in arg.split(":") if p]

    def on_wsgipythonhome(self, d, scope):
        need(d, 1, "WSGIPythonHome /path/to/venv")
        self.python_home = (d.args[0], d)

    def on_wsgidaemonprocess(self, d, scope):
        need(d, 1, "WSGIDaemonProcess NAME [processes=N threads=N python-path=... ...]")
        daemon = Daemon(d.args[0])
        table = daemon.table
        table["name"] = daemon.name
        for key, value in options(d, 1).items():
            if key in ("processes", "threads"):
                if not value.isdigit() or int(value) < 1:
                    raise ApacheConfigError(f"{d.where}: {d.name} {key}={value}: must be a "
                                            f"whole number of at least 1")
                table[key] = int(value)
            elif key == "python-path":
                daemon.python_path.extend(p for p in value.split(":") if p)
            elif key == "python-home":
                table["venv"] = value
            elif key == "home":
                table["chdir"] = value
            elif key in ("user", "group"):
                table[key] = value
            elif key in ("lang", "locale"):
                self.note(d, f"{key}={value}: not needed; fastgw runs its workers and process "
                             f"groups in Python's UTF-8 mode whatever the locale (see "
                             f"docs/django.md, 'If you get a UnicodeEncodeError')")
            else:
                self.note(d, f"option {key}={value} not translated")
        if "threads" not in table:
            self.note(d, "mod_wsgi's default is 15 threads per process, fastgw's is 1; add "
                         "threads = 15 to the group if the application needs them")
        self.daemons[daemon.name] = daemon

    def on_wsgiprocessgroup(self, d, scope):
        need(d, 1, "WSGIProcessGroup NAME")
        self.process_groups.append((scope, d.args[0], d))

    def on_wsgiapplicationgroup(self, d, scope):
        need(d, 1, "WSGIApplicationGroup %{GLOBAL}")
        if d.args[0] == "%{GLOBAL}":
            self.note(d, "nothing to do: fastgw always runs applications in the main "
                         "interpreter")
        else:
            self.note(d, "fastgw runs each application in the main interpreter of its own "
                         "processes; to keep two applications apart, give each a [[group]]")

    def on_alias(self, d, scope):
        need(d, 2, "Alias URL /path/to/directory-or-file")
        self.aliases.append((d.args[0], d.args[1].rstrip("/") or "/", d))

    def on_require(self, d, scope):
        words = [a.lower() for a in d.args]
        if words == ["all", "granted"]:
            self.note(d, "nothing to do: fastgw serves what is mounted and nothing else")
        else:
            self.note(d, "not translated: fastgw serves every mounted path (only <Location> "
                         "logins with Require valid-user or Require group are translated)")

    def on_options(self, d, scope):
        if [a.lower() for a in d.args] == ["-indexes"]:
            self.note(d, "nothing to do: fastgw never lists directories")
        else:
            self.note(d, "not translated; fastgw never lists directories, and symlinks "
                         "leading outside a static directory need follow_symlinks = true")

    def on_wsgiauthuserscript(self, d, scope):
        need(d, 1, "WSGIAuthUserScript /path/to/mysite.com/mysite/wsgi.py")
        self.user_script = d

    def on_wsgiauthgroupscript(self, d, scope):
        need(d, 1, "WSGIAuthGroupScript /path/to/mysite.com/mysite/wsgi.py")
        self.group_script = d

    def login_directive(self, login, d):
        key = d.key
        if key == "wsgiauthuserscript":
            need(d, 1, "WSGIAuthUserScript /path/to/wsgi.py")
            login.user_script = d
        elif key == "wsgiauthgroupscript":
            need(d, 1, "WSGIAuthGroupScript /path/to/wsgi.py")
            login.group_script = d
        elif key == "require":
            need(d, 1, "Require valid-user")
            if [a.lower() for a in d.args] != ["all", "granted"]:
                login.requires.append(d)
        else:
            need(d, 1, f"{d.name} VALUE")
            setattr(login, {"authtype": "auth_type", "authname": "realm",
                            "authbasicprovider": "provider"}[key], d.args[0])

    # -- translating --

    def group_for(self, url, script):
        """The process group running `script` mounted at `url` (None: the front workers)."""
        chosen = None
        for scope, name, d in self.process_groups:
            if (scope is None or (scope[0] == "location" and within(scope[1], url))
                    or (scope[0] == "directory" and within(scope[1], script))):
                chosen = (name, d)
        return self.daemon_named(*chosen) if chosen else None

    def daemon_named(self, name, d):
        if name == "%{GLOBAL}":
            return None
        if name not in self.daemons:
            known = ", ".join(sorted(self.daemons)) or "none is defined"
            raise ApacheConfigError(f"{d.where}: {d.text}: no WSGIDaemonProcess is named "
                                    f"{name!r} (daemon processes: {known}); define it or fix "
                                    f"the name")
        return name

    def module_for(self, script, group, d):
        """`script`'s module name, found through the python path it will be imported with."""
        paths = self.daemons[group].python_path if group else self.python_path
        stem = os.path.splitext(script)[0]
        for entry in paths:
            entry = os.path.normpath(entry)
            if within(entry, stem):
                parts = os.path.relpath(stem, entry).split(os.sep)
                if all(p.isidentifier() for p in parts):
                    return ".".join(parts)
        directory = os.path.dirname(stem)
        package, name = os.path.basename(directory), os.path.basename(stem)
        if package.isidentifier():
            entry, module = os.path.dirname(directory), f"{package}.{name}"
        else:
            entry, module = directory, name
        paths.append(entry)
        where = f"python_path of [[group]] {group!r}" if group else "[server] pythonpath"
        self.notes.append(f"{d.where}: {os.path.basename(script)} is on no python path; "
                          f"{entry} was added to {where} so that it imports as {module}")
        return module

    def hook_group(self, script_directive):
        """The process group running the auth hooks of `script_directive`."""
        opts = options(script_directive, 1)
        if "process-group" in opts:
            return self.daemon_named(opts["process-group"], script_directive)
        script = os.path.normpath(script_directive.args[0])
        for url, path, alias_opts, d in self.scripts:
            if path == script:
                return self.script_group(url, path, alias_opts, d)
        return self.group_for("/", script)

    def script_group(self, url, script, opts, d):
        if "process-group" in opts:
            return self.daemon_named(opts["process-group"], d)
        return self.group_for(url, script)

    def add_mount(self, by_path, d, url, target, mount):
        """Add `mount` for `url`; the same URL again is fine with the same target."""
        key = url.rstrip("/") or "/"
        if key not in by_path:
            by_path[key] = mount
            self.origins[key] = (target, d)
            return
        first, where = self.origins[key]
        if first != target:
            raise ApacheConfigError(f"{d.where}: {d.text}: {url} is already mapped to {first} "
                                    f"at {where.where}; keep one of them")
        self.note(d, f"repeats {where.where}; translated once")

    def login_auth(self, login):
        """The auth table of a <Location> login; what cannot be kept exactly is an error."""
        where = f"{login.where}: <Location {login.url}>"
        if not login.requires:
            raise ApacheConfigError(f"{where}: a login without Require; add Require valid-user "
                                    f"(or Require group NAME)")
        for require in login.requires:
            kind = require.args[0].lower()
            if kind not in ("valid-user", "group") or (kind == "group" and len(require.args) < 2):
                raise ApacheConfigError(f"{require.where}: {require.text}: cannot be translated "
                                        f"(fastgw's auth knows Require valid-user and Require "
                                        f"group NAME); dropping it would open {login.url}")
        groups = [r for r in login.requires if r.args[0].lower() == "group"]
        require = groups[0] if groups else login.requires[0]
        words, kind = require.args, require.args[0].lower()
        if len(groups) > 1 or (len(groups) == 1 and len(words) > 2):
            raise ApacheConfigError(f"{require.where}: fastgw's require_group names one group; "
                                    f"put the users in one group, or return it from "
                                    f"groups_for_user()")
        if groups and len(login.requires) > 1:
            self.notes.append(f"{where}: Require group and Require valid-user: Apache 2.4 lets "
                              f"either one suffice, fastgw keeps the stricter require_group = "
                              f"{words[1]!r}; drop it from the auth table to let every user in")
        if (login.auth_type or "").lower() != "basic":
            raise ApacheConfigError(f"{where}: AuthType {login.auth_type or '(none)'}: fastgw "
                                    f"does HTTP Basic authentication; write AuthType Basic")
        if (login.provider or "").lower() != "wsgi":
            raise ApacheConfigError(f"{where}: AuthBasicProvider {login.provider or '(none)'}: "
                                    f"only the wsgi provider (WSGIAuthUserScript) can be "
                                    f"translated; write AuthBasicProvider wsgi and a "
                                    f"WSGIAuthUserScript with check_password()")
        user_script = login.user_script or self.user_script
        if user_script is None:
            raise ApacheConfigError(f"{where}: AuthBasicProvider wsgi but no "
                                    f"WSGIAuthUserScript; add WSGIAuthUserScript "
                                    f"/path/to/mysite/wsgi.py")
        group = self.hook_group(user_script)
        module = self.module_for(os.path.normpath(user_script.args[0]), group, user_script)
        auth = {"realm": login.realm or "fastgw", "check_password": f"{module}:check_password"}
        if login.realm is None:
            self.notes.append(f"{where}: no AuthName; the realm is \"fastgw\"")
        if kind == "group":
            group_script = login.group_script or self.group_script
            if group_script is None:
                raise ApacheConfigError(f"{require.where}: {require.text} needs a "
                                        f"WSGIAuthGroupScript with groups_for_user(); add "
                                        f"WSGIAuthGroupScript /path/to/mysite/wsgi.py")
            group_module = self.module_for(os.path.normpath(group_script.args[0]), group,
                                           group_script)
            auth["groups_for_user"] = f"{group_module}:groups_for_user"
            auth["require_group"] = words[1]
        if group is not None:
            auth["group"] = group
        return auth

    def tables(self):
        """([server] table, [[group]] tables, [[mount]] tables)."""
        by_path = {}
        for url, script, opts, d in self.scripts:
            group = self.script_group(url, script, opts, d)
            self.add_mount(by_path, d, url, script, {
                "path": url, "app": f"{self.module_for(script, group, d)}:application"})
            if group is not None:
                by_path[url.rstrip("/") or "/"]["group"] = group
        for url, path, d in self.aliases:
            if not os.path.exists(path):
                self.note(d, f"{path} does not exist (yet); fastgw check will say so")
            self.add_mount(by_path, d, url, path, {"path": url, "static": path})
        if not by_path:
            raise ApacheConfigError(f"{self.path}: no WSGIScriptAlias or Alias: nothing to "
                                    f"serve; is this the file with the site's configuration?")
        mounts = list(by_path.values())
        for login in self.logins:
            auth = self.login_auth(login)
            target = by_path.get(login.url.rstrip("/") or "/")
            if target is None:
                mounts.append({"path": login.url, "auth": auth})
            else:
                target["auth"] = auth
        server = {}
        if self.python_path:
            server["pythonpath"] = list(dict.fromkeys(self.python_path))
        if self.python_home is not None:
            self.translate_python_home(*self.python_home)
        # In [[group]]'s own key order; an empty python_path is left out.
        groups = [{key: daemon.table[key] for key in GROUP_KEYS if daemon.table.get(key)}
                  for daemon in self.daemons.values()]
        return server, groups, mounts

    def translate_python_home(self, home, d):
        """WSGIPythonHome is the interpreter of embedded mode, and of daemon processes
        without python-home of their own."""
        used = [daemon for daemon in self.daemons.values() if "venv" not in daemon.table]
        for daemon in used:
            daemon.table["venv"] = home
        if used:
            self.note(d, "became the venv of [[group]] "
                         + ", ".join(repr(daemon.name) for daemon in used)
                         + "; for the front workers, install fastgw into it and run its "
                           "bin/fastgw")
        else:
            self.note(d, f"install fastgw into that virtualenv and run {home}/bin/fastgw "
                         f"(the interpreter running fastgw is the one the applications get)")

    def toml(self):
        server, groups, mounts = self.tables()
        out = [f"# fastgw.toml translated from {self.path} by `fastgw import-apache`.",
               "# Check it with `fastgw check --config FILE`, then serve it with "
               "`fastgw serve --config FILE`."]
        if self.notes:
            out += ["#", "# Notes on the Apache directives:"]
            # In the file's order; each note starts with "FILE:LINE:".
            start = len(self.path) + 1
            out += [f"# {line}" for line in sorted(
                self.notes, key=lambda note: int(note[start:].partition(":")[0]))]
        if server:
            out += ["", "[server]"] + [f"{k} = {toml_value(v)}" for k, v in server.items()]
        for kind, tables in (("group", groups), ("mount", mounts)):
            for table in tables:
                out += ["", f"[[{kind}]]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
        return "\n".join(out) + "\n"


def translate(path):
    """The fastgw.toml (text) saying what the Apache configuration at `path` says."""
    site = ApacheSite(path)
    site.walk(read_directives(path))
    return site.toml()
