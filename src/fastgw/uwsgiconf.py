"""`fastgw import-uwsgi`: a uWSGI ini file written out as the equivalent fastgw.toml.

Strategy: `uwsgiini.IniReader` turns the file into options (includes read, `%(...)`
and `$(...)` expanded). Each option is looked up in RULES, the table docs/migrating.md
shows: a `MAPS` rule is handled by the method `on_<first name>` of `UwsgiSite`, a
`NOTE` rule becomes a `# FILE:LINE` note, a `REFUSE` rule is an error (exit 2), and an
option no rule names gets a note saying it was not translated. uWSGI applies `chdir`
before anything else, so it is found first and relative paths are made absolute from
it. Where fastgw's default differs from uWSGI's in a way the site would notice (the
number of workers, harakiri), the uWSGI value is written out.
"""
import os

from fastgw.importing import MAPS, NOTE, REFUSE, Rule, RuleBook, Translation
from fastgw.uwsgiini import IniReader

# The plugins fastgw stands in for: the Python (WSGI) request plugin and the routers.
PYTHON_PLUGINS = ("python", "python3", "http", "corerouter", "router_static", "logfile")

RULES = RuleBook([
    Rule(("module", "wsgi"), MAPS, '`[[mount]] path = "/"`, `app = "MODULE:CALLABLE"`'),
    Rule(("wsgi-file", "file"), MAPS, "the file's directory goes on `pythonpath`, the app is "
         "`FILENAME:CALLABLE`"),
    Rule(("callable",), MAPS, "the attribute in `app` (`application` by default in both)"),
    Rule(("mount",), MAPS, '`[[mount]] path = "/MOUNTPOINT"`, `app = ...`: fastgw sets '
         "SCRIPT_NAME and PATH_INFO from the prefix, as uWSGI with `manage-script-name`"),
    Rule(("manage-script-name",), MAPS, "nothing to write: fastgw always moves the mount "
         "prefix into SCRIPT_NAME"),
    Rule(("chdir",), MAPS, "`[server] chdir`; relative paths of the file are made absolute "
         "from it"),
    Rule(("pythonpath", "python-path", "pp"), MAPS, "`[server] pythonpath`"),
    Rule(("virtualenv", "venv", "home", "pyhome"), MAPS, "a note: install fastgw into that "
         "virtualenv and run its `bin/fastgw`"),
    Rule(("env",), MAPS, "`[server] env`"),
    Rule(("http",), MAPS, "`[server] bind` (HTTP; no router process: fastgw's workers speak "
         "HTTP themselves); `:PORT` is `0.0.0.0:PORT`"),
    Rule(("http-socket",), MAPS, "`[server] bind` (HTTP)"),
    Rule(("socket", "uwsgi-socket"), MAPS, "`[server] bind = \"uwsgi://...\"`: nginx's "
         "`uwsgi_pass` keeps working unchanged (or the protocol `protocol` names)"),
    Rule(("fastcgi-socket",), MAPS, '`[server] bind = "fastcgi://..."`'),
    Rule(("scgi-socket",), MAPS, '`[server] bind = "scgi://..."`'),
    Rule(("protocol",), MAPS, "the protocol of the `socket` listeners"),
    Rule(("chmod-socket", "chmod"), MAPS, "`[server] unix_socket_mode` (no value: `0666`)"),
    Rule(("chown-socket",), MAPS, "UNIX sockets belong to `user`/`group`; a note when it names "
         "someone else"),
    Rule(("processes", "workers"), MAPS, "`[server] workers` (uWSGI's default, 1, is "
         "written out when it is not set: fastgw's is one per CPU)"),
    Rule(("threads",), MAPS, "`[server] threads`"),
    Rule(("enable-threads",), NOTE, "nothing to do: applications may always start threads"),
    Rule(("master",), NOTE, "nothing to do: fastgw always runs a master process"),
    Rule(("harakiri",), MAPS, "`[server] timeout` (stacks dumped, worker replaced); without "
         "harakiri, `timeout = 0` keeps uWSGI's no-limit default"),
    Rule(("harakiri-verbose",), NOTE, "nothing to do: a timed-out worker's stacks always go "
         "to the error log"),
    Rule(("max-requests",), MAPS, "`[server] max_requests`"),
    Rule(("max-requests-delta",), MAPS, "`[server] max_requests_jitter` (random, not per "
         "worker id)"),
    Rule(("reload-on-rss", "evil-reload-on-rss"), MAPS, "`[server] reload_on_rss` (MiB, as "
         "uWSGI's; the worker checks itself after requests, there is no \"evil\" variant "
         "that kills a busy worker)"),
    Rule(("reload-on-as", "evil-reload-on-as", "limit-as"), NOTE, "no equivalent: fastgw "
         "watches resident memory, not address space; use `reload_on_rss` or systemd's "
         "`MemoryMax=`"),
    Rule(("max-worker-lifetime",), NOTE, "no equivalent: use `max_requests`"),
    Rule(("reload-mercy", "worker-reload-mercy"), MAPS, "`[server] graceful_timeout`"),
    Rule(("buffer-size",), MAPS, "`[server] limit_request_head` (uWSGI's default is 4096, "
         "fastgw's 65536)"),
    Rule(("post-buffering",), NOTE, "nothing to do: fastgw always reads a request body (in "
         "memory, then a temporary file) before calling the application"),
    Rule(("limit-post",), MAPS, "`[server] limit_request_body`"),
    Rule(("listen",), MAPS, "`[server] backlog`"),
    Rule(("socket-timeout",), MAPS, "`[server] io_timeout`"),
    Rule(("static-map",), MAPS, '`[[mount]] path = "/PREFIX"`, `static = "DIR"`; a file that '
         "is not there is a 404, where uWSGI passes the request to the application"),
    Rule(("static-map2",), MAPS, '`[[mount]] path = "/PREFIX"`, `static = "DIR/PREFIX"` '
         "(static-map2 keeps the prefix in the file path)"),
    Rule(("check-static",), MAPS, "one static `[[mount]]` per entry of the directory at import "
         "time (fastgw has no fall-through from files to the application)"),
    Rule(("static-index",), MAPS, "`index` of the static mounts"),
    Rule(("route",), MAPS, "`^/PREFIX/(.*) static:DIR/$1` and `^/FILE$ static:PATH` become "
         "static mounts; any other route is refused (exit 2)"),
    Rule(("static-expires*", "static-gzip*"), NOTE, "not translated: static mounts have "
         "`cache_control` and `precompressed` (on by default)"),
    Rule(("static-safe",), NOTE, "not translated: symlinks leading outside a static directory "
         "need `follow_symlinks = true`"),
    Rule(("offload-threads",), NOTE, "nothing to do: the event loop sends files with "
         "sendfile(2), no thread needed"),
    Rule(("uid",), MAPS, "`[server] user`"),
    Rule(("gid",), MAPS, "`[server] group`"),
    Rule(("pidfile", "pidfile2"), MAPS, "`[server] pid`"),
    Rule(("logto", "logto2", "daemonize"), MAPS, "`[server] error_log` and `access_log` (one "
         "file, as uWSGI writes both there; fastgw does not detach: run it under systemd)"),
    Rule(("logger",), MAPS, "`file:PATH` becomes `[server] error_log`; other loggers a note"),
    Rule(("req-logger",), MAPS, "`file:PATH` becomes `[server] access_log`; other loggers a "
         "note"),
    Rule(("disable-logging",), MAPS, "no `access_log`"),
    Rule(("log-format", "logformat"), NOTE, "not translated: see `access_log_format` in "
         "docs/operations.md"),
    Rule(("log-reopen", "log-maxsize", "log-date", "log-master", "logfile-chown",
          "logfile-chmod"), NOTE, "not translated: fastgw reopens its logs on SIGUSR1 "
         "(logrotate without copytruncate)"),
    Rule(("vacuum",), NOTE, "nothing to do: fastgw removes its UNIX sockets and pid file when "
         "it exits"),
    Rule(("die-on-term",), NOTE, "nothing to do: SIGTERM stops fastgw gracefully (SIGHUP "
         "reloads)"),
    Rule(("lazy-apps", "lazy"), NOTE, "nothing to do: each fastgw worker imports the "
         "applications after the fork, as with lazy-apps"),
    Rule(("cheaper*",), NOTE, "no equivalent: fastgw runs a fixed number of workers (SIGTTIN "
         "and SIGTTOU add and remove one)"),
    Rule(("stats",), MAPS, "`[server] metrics` (Prometheus over HTTP, not uWSGI's JSON); a "
         "UNIX socket is not translated"),
    Rule(("stats-http",), NOTE, "nothing to do: `metrics` is served over HTTP"),
    Rule(("py-autoreload", "python-autoreload"), MAPS, "`[server] reload = true` (for "
         "development)"),
    Rule(("touch-reload", "touch-chain-reload"), NOTE, "not translated: send SIGHUP to reload"),
    Rule(("master-fifo",), NOTE, "not translated: fastgw takes signals (SIGHUP, SIGTERM, "
         "SIGTTIN, ...)"),
    Rule(("need-app", "strict", "single-interpreter", "thunder-lock", "memory-report",
          "auto-procname", "procname*", "ignore-sigpipe", "ignore-write-errors",
          "disable-write-exception", "so-keepalive", "uwsgi-version"), NOTE, "nothing to do"),
    Rule(("hook-*",), NOTE, "not run: move the command to systemd's `ExecStartPre=`"),
    Rule(("plugin", "plugins", "plugins-dir", "plugin-dir"), MAPS, "python, http and the "
         "static router are what fastgw does itself; any other plugin is refused (exit 2)"),
    Rule(("gevent", "async", "ugreen"), MAPS, "a note: fastgw serves concurrent requests with "
         "`threads`"),
    Rule(("add-header",), REFUSE, "fastgw does not add response headers; set them in the "
         "application (Django's SecurityMiddleware) and remove the line"),
    Rule(("https", "https-socket", "ssl-socket", "https2"), REFUSE, "not translated yet: "
         "fastgw serves HTTPS with `bind = [\"https://HOST:PORT\"]` and `[server] certfile`, "
         "`keyfile` (README \"HTTPS\"); set those and remove the option"),
    Rule(("emperor*", "vassal*"), REFUSE, "the Emperor is not translated: import each "
         "vassal's ini"),
    Rule(("spooler*", "mule*", "cron*", "unique-cron", "attach-daemon*", "smart-attach-daemon*",
          "legion*"), REFUSE, "fastgw runs no background tasks beside the "
         "application: run it as a systemd service or timer and remove the line"),
    Rule(("route-*", "final-route*", "error-route*", "response-route*"), REFUSE, "not "
         "translated: fastgw routes by URL prefix only"),
    Rule(("ini", "inherit"), NOTE, "read in place, as uWSGI does (`FILE:SECTION` too)"),
])


def address(text):
    """A uWSGI socket address -> fastgw's HOST:PORT or unix:PATH (None if neither: an
    abstract socket, @name). As in uWSGI, an address without ':' is a UNIX socket path."""
    if text.startswith("/") or (":" not in text and not text.startswith("@")):
        return "unix:" + text
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and "/" not in host and not host.startswith("@"):
        return f"{host or '0.0.0.0'}:{port}"
    return None


class UwsgiSite:
    """What the options say, and the fastgw.toml saying the same."""

    def __init__(self, spec):
        self.spec = spec
        self.out = Translation(spec, "import-uwsgi")
        self.protocol = "uwsgi"
        self.sockets = []        # (where, text) of `socket` lines, written with `protocol`
        self.callable = "application"
        self.app_module = None   # (where, module or file) of module/wsgi-file
        self.mounts = []         # (where, prefix, target) of mount lines
        self.statics = []        # (where, prefix, path) in file order
        self.index = None
        self.chdir = None
        self.manage_script_name = False
        self.access_log_off = False
        self.chown = None        # the chown-socket option

    def translate(self):
        reader = IniReader()
        reader.read(self.spec)
        for where, name, value in reader.env_used:
            self.out.note(where, f"$({name}) was {value!r} when this was imported")
        for option in reader.options:
            if option.name == "chdir":
                self.chdir = os.path.abspath(option.value)
        for option in reader.options:
            rule = RULES.find(option.name)
            where, text = option.where, f"{option.name} = {option.value}"
            if rule is None and option.name in reader.placeholders:
                self.out.note(where, f"{text}: a placeholder, used as %({option.name})")
            elif rule is None:
                self.out.note(where, f"{text}: not translated (no fastgw equivalent is known)")
            elif rule.kind == REFUSE:
                self.out.fail(where, f"{text}: {rule.text}")
            elif rule.kind == NOTE:
                self.out.note(where, f"{text}: {rule.text}")
            else:
                getattr(self, "on_" + rule.names[0].replace("-", "_"))(option)
        self.finish()
        return self.out.toml()

    def path(self, option, text=None):
        """A path of the file, absolute: uWSGI resolves it after its chdir."""
        text = option.value if text is None else text
        if os.path.isabs(text):
            return os.path.normpath(text)
        base = self.chdir or os.getcwd()
        self.out.note(option.where, f"{text}: relative, taken from {base}")
        return os.path.normpath(os.path.join(base, text))

    # -- applications --

    def on_module(self, o):
        self.app_module = (o.where, o.value)

    def on_wsgi_file(self, o):
        self.app_module = (o.where, self.path(o))

    def on_callable(self, o):
        self.callable = o.value

    def on_mount(self, o):
        prefix, sep, target = o.value.partition("=")
        if not sep or not prefix.startswith("/"):
            self.out.fail(o.where, f"mount = {o.value}: expected /MOUNTPOINT=MODULE or "
                                   f"/MOUNTPOINT=/path/to/app.py")
        self.mounts.append((o.where, prefix, target))

    def app_spec(self, where, target):
        """module[:callable] or a .py file -> fastgw's `module:callable`."""
        if target.endswith(".py") or "/" in target:
            path = target if os.path.isabs(target) else os.path.join(
                self.chdir or os.getcwd(), target)
            directory, name = os.path.split(os.path.normpath(path))
            module = name[:-3] if name.endswith(".py") else name
            if not module.isidentifier():
                self.out.fail(where, f"{name}: fastgw imports the application as a module, "
                                     f"and {module!r} is no module name; rename the file")
            self.out.add("pythonpath", [directory])
            return f"{module}:{self.callable}"
        module, sep, attribute = target.partition(":")
        return f"{module}:{attribute if sep else self.callable}"

    def on_manage_script_name(self, o):
        self.manage_script_name = o.value.lower() not in ("false", "off", "no", "0")
        self.out.note(o.where, f"{o.name} = {o.value}: nothing to write: fastgw always moves "
                               f"the mount prefix into SCRIPT_NAME")

    def on_chdir(self, o):
        self.out.set("chdir", self.chdir)

    def on_pythonpath(self, o):
        self.out.add("pythonpath", [self.path(o)])

    def on_virtualenv(self, o):
        venv = self.path(o)
        self.out.note(o.where, f"virtualenv {venv}: install fastgw into it "
                               f"({venv}/bin/pip install fastgw) and run {venv}/bin/fastgw")

    def on_env(self, o):
        key, sep, value = o.value.partition("=")
        if not sep:
            self.out.note(o.where, f"env = {o.value}: no '=': not translated")
            return
        self.out.server.setdefault("env", {})[key] = value

    # -- listeners --

    def bind(self, o, scheme):
        where = address(o.value)
        if where is None:
            self.out.fail(o.where, f"{o.name} = {o.value}: fastgw listens on HOST:PORT, :PORT "
                                   f"or a UNIX socket path")
        if where.startswith("unix:"):
            where = "unix:" + self.path(o)
        self.out.add("bind", [where if scheme == "http" else f"{scheme}://{where}"])

    def on_http(self, o):
        self.bind(o, "http")

    def on_http_socket(self, o):
        self.bind(o, "http")

    def on_socket(self, o):
        self.sockets.append(o)

    def on_fastcgi_socket(self, o):
        self.bind(o, "fastcgi")

    def on_scgi_socket(self, o):
        self.bind(o, "scgi")

    def on_protocol(self, o):
        if o.value not in ("uwsgi", "http", "fastcgi", "scgi"):
            self.out.fail(o.where, f"protocol = {o.value}: fastgw speaks uwsgi, http, "
                                   f"fastcgi and scgi")
        self.protocol = o.value

    def on_chmod_socket(self, o):
        mode = o.value or "666"
        try:
            value = int(mode, 8)
        except ValueError:
            self.out.fail(o.where, f"chmod-socket = {o.value}: not an octal mode such as 660")
        self.out.set("unix_socket_mode", f"{value:04o}")

    def on_chown_socket(self, o):
        self.chown = o

    # -- processes --

    def number(self, o, key, minimum=0):
        try:
            value = int(o.value)
        except ValueError:
            value = -1
        if value < minimum:
            self.out.fail(o.where, f"{o.name} = {o.value}: must be a whole number of at "
                                   f"least {minimum}")
        self.out.set(key, value)
        return value

    def on_processes(self, o):
        self.number(o, "workers", 1)

    def on_threads(self, o):
        self.number(o, "threads", 1)

    def on_harakiri(self, o):
        self.number(o, "timeout")

    def on_max_requests(self, o):
        self.number(o, "max_requests")

    def on_max_requests_delta(self, o):
        self.number(o, "max_requests_jitter")

    def on_reload_on_rss(self, o):
        self.number(o, "reload_on_rss")

    def on_reload_mercy(self, o):
        self.number(o, "graceful_timeout")

    def on_buffer_size(self, o):
        self.number(o, "limit_request_head", 1)

    def on_limit_post(self, o):
        self.number(o, "limit_request_body")

    def on_listen(self, o):
        self.number(o, "backlog", 1)

    def on_socket_timeout(self, o):
        self.number(o, "io_timeout", 1)

    def on_uid(self, o):
        self.out.set("user", o.value)

    def on_gid(self, o):
        self.out.set("group", o.value)

    def on_pidfile(self, o):
        self.out.set("pid", self.path(o))

    def on_py_autoreload(self, o):
        if o.value not in ("0", ""):
            self.out.set("reload", True)

    def on_gevent(self, o):
        self.out.note(o.where, f"{o.name} = {o.value}: fastgw has no event-loop workers for "
                               f"the application; it serves concurrent requests with threads "
                               f"(set threads, e.g. to 16, if the app waits on the network)")

    def on_plugin(self, o):
        for plugin in (p.strip() for p in o.value.split(",")):
            name = plugin.rsplit("/", 1)[-1].removesuffix("_plugin.so")
            if name.startswith("python") or name in PYTHON_PLUGINS or o.name.endswith("dir"):
                continue
            self.out.fail(o.where, f"{o.name} = {o.value}: the {plugin} plugin has no fastgw "
                                   f"equivalent; fastgw runs WSGI applications only. Remove "
                                   f"it (and what uses it) to import the rest")
        self.out.note(o.where, f"{o.name} = {o.value}: nothing to do: fastgw is the WSGI "
                               f"server and its own HTTP router")

    # -- logs and metrics --

    def on_logto(self, o):
        path = self.path(o)
        self.out.set("error_log", path)
        self.out.set("access_log", path)
        self.out.note(o.where, f"{o.name} = {o.value}: the error log and the access log "
                               f"(in the combined format, not uWSGI's request lines) both "
                               f"go there")
        if o.name == "daemonize":
            self.out.note(o.where, "daemonize: fastgw stays in the foreground; run it under "
                                   "systemd (docs/operations.md); the log file is kept")

    def logger_path(self, o):
        kind, sep, rest = o.value.partition(":")
        if kind == "file" and sep:
            return self.path(o, rest)
        self.out.note(o.where, f"{o.name} = {o.value}: only file:PATH loggers are "
                               f"translated; fastgw logs to files or stderr")
        return None

    def on_logger(self, o):
        path = self.logger_path(o)
        if path:
            self.out.set("error_log", path)

    def on_req_logger(self, o):
        path = self.logger_path(o)
        if path:
            self.out.set("access_log", path)

    def on_disable_logging(self, o):
        self.access_log_off = o.value.lower() not in ("false", "off", "no", "0")

    def on_stats(self, o):
        where = address(o.value)
        if where is None or where.startswith("unix:"):
            self.out.note(o.where, f"stats = {o.value}: fastgw's metrics listen on HOST:PORT; "
                                   f"not translated")
            return
        self.out.set("metrics", where)
        self.out.note(o.where, f"stats = {o.value}: metrics = {where!r} serves Prometheus "
                               f"/metrics, /healthz and /readyz over HTTP, not uWSGI's JSON")

    # -- static files --

    def on_static_map(self, o):
        prefix, sep, directory = o.value.partition("=")
        if not sep or not prefix.startswith("/"):
            self.out.fail(o.where, f"{o.name} = {o.value}: expected /PREFIX=DIRECTORY")
        path = self.path(o, directory)
        if o.name == "static-map2":
            path = os.path.join(path, prefix.strip("/"))
        self.statics.append((o.where, prefix, path))

    on_static_map2 = on_static_map

    def on_check_static(self, o):
        directory = self.path(o)
        try:
            entries = sorted(os.listdir(directory))
        except OSError as e:
            self.out.fail(o.where, f"check-static = {o.value}: cannot list {directory}: "
                                   f"{e.strerror}; the importer mounts each of its entries")
        for entry in entries:
            if not entry.startswith("."):
                self.statics.append((o.where, "/" + entry, os.path.join(directory, entry)))
        self.out.note(o.where, f"check-static: each entry of {directory} is a static mount; "
                               f"a file added at its top level later needs a mount of its own")

    def on_static_index(self, o):
        self.index = o.value

    def on_route(self, o):
        pattern, _, action = o.value.partition(" ")
        action = action.strip()
        if pattern.endswith("(.*)$"):
            pattern = pattern[:-1]  # the same match: (.*) runs to the end anyway
        target = action[len("static:"):] if action.startswith("static:") else None
        prefix = pattern[1:-len("/(.*)")] if (pattern.startswith("^/") and
                                               pattern.endswith("/(.*)")) else None
        if target is not None and prefix and target.endswith("/$1") and "(" not in prefix:
            self.statics.append((o.where, prefix, self.path(o, target[:-3])))
        elif target is not None and pattern.startswith("^/") and pattern.endswith("$") and \
                "$" not in target and not any(c in pattern[1:-1] for c in "()[]*+?\\"):
            self.statics.append((o.where, pattern[1:-1], self.path(o, target)))
        else:
            self.out.fail(o.where, f"route = {o.value}: only ^/PREFIX/(.*) static:DIR/$1 and "
                                   f"^/FILE$ static:PATH routes are translated; fastgw routes "
                                   f"by URL prefix. Rewrite the rule as one of those or as a "
                                   f"mount")

    # -- the result --

    def finish(self):
        out = self.out
        for o in self.sockets:
            self.bind(o, self.protocol)
        if "bind" not in out.server:
            out.note(self.spec, "no http, http-socket or socket: fastgw listens on "
                                "127.0.0.1:8000 (set [server] bind)")
        if "uwsgi://" in " ".join(out.server.get("bind", [])):
            out.note(self.spec, "uwsgi:// listeners speak the uwsgi protocol: nginx's "
                                "`include uwsgi_params; uwsgi_pass ...;` keeps working "
                                "unchanged")
        out.server.setdefault("workers", 1)
        if "timeout" not in out.server:
            out.set("timeout", 0)
            out.note(self.spec, "no harakiri: timeout = 0 keeps requests unlimited in time, "
                                "as under uWSGI; consider a limit")
        if self.access_log_off:
            out.server.pop("access_log", None)
        chown = self.chown
        if chown is not None:
            owner = ":".join(filter(None, (out.server.get("user"), out.server.get("group"))))
            if chown.value != owner:
                owner = owner or "the user fastgw runs as"
                out.note(chown.where, f"chown-socket = {chown.value}: fastgw's UNIX sockets "
                                      f"belong to [server] user/group ({owner}); set "
                                      f"unix_socket_mode to let others in")
        self.mount_apps()
        extra = {} if self.index is None else {"index": self.index}
        for where, prefix, path in self.statics:
            if not os.path.exists(path):
                out.note(where, f"{path} does not exist (yet); fastgw check will say so")
            out.mount(where, prefix, static=path, **extra)
        if not out.mounts:
            out.fail(self.spec, "no module, wsgi-file, mount or static-map: nothing to serve; "
                                "is this the site's uWSGI configuration?")

    def mount_apps(self):
        out = self.out
        if self.mounts and not self.manage_script_name:
            out.note(self.mounts[0][0], "mount without manage-script-name: uWSGI chose the "
                                        "application by the SCRIPT_NAME the web server sent; "
                                        "fastgw chooses it by URL prefix and sets SCRIPT_NAME")
        if self.app_module is not None:
            where, target = self.app_module
            out.mount(where, "/", app=self.app_spec(where, target))
        for where, prefix, target in self.mounts:
            out.mount(where, prefix, app=self.app_spec(where, target))
        if self.mounts and self.app_module is None and \
                all(prefix.rstrip("/") for _, prefix, _ in self.mounts):
            where, _, target = self.mounts[0]
            out.mount(where, "/", app=self.app_spec(where, target))
            out.note(where, "uWSGI answers URLs below no mount point with its first "
                            "application (SCRIPT_NAME empty): so does the mount at /")


def translate(spec):
    """The fastgw.toml (text) saying what the uWSGI ini at `spec` (FILE[:SECTION]) says."""
    return UwsgiSite(spec).translate()
