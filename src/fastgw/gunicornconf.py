"""`fastgw import-gunicorn`: a gunicorn.conf.py written out as the equivalent fastgw.toml.

Strategy: the file is run as gunicorn runs it (a module named `__config__`, its own
`__file__`, the current directory on sys.path), and its global names are read as
gunicorn reads them: a name that is a gunicorn setting is one, anything else is
ignored (a plain value gets a note, in case it is a misspelt setting). Each setting is looked up in RULES, the table docs/migrating.md shows: a
`MAPS` rule is handled by the method `on_<name>` of `GunicornSite`, a `NOTE` rule is a
note, a `REFUSE` rule an error (exit 2). Notes point at the line that set the name
(found in the file's syntax tree), and a value computed by Python (cpu_count()) is
noted as computed on the machine that ran the import. gunicorn's defaults that fastgw
does not share and a site would notice (one worker; X-Forwarded-Proto trusted from
127.0.0.1) are written out.
"""
import ast
import importlib.machinery
import importlib.util
import os
import re
import sys
import traceback

from fastgw.errors import ConfigImportError
from fastgw.importing import MAPS, NOTE, REFUSE, Rule, RuleBook, Translation

# gunicorn's server hooks -> what fastgw offers instead.
HOOKS = {
    "on_starting": "systemd's `ExecStartPre=`",
    "on_reload": "SIGHUP reloads; the error log says so",
    "when_ready": "`--metrics`: /readyz answers 200 once the workers are up",
    "pre_fork": "nothing runs in the master between forks",
    "post_fork": "code at import of the WSGI module runs in each worker after the fork",
    "post_worker_init": "code at import of the WSGI module",
    "worker_int": "SIGINT stops gracefully",
    "worker_abort": "`timeout` dumps the stacks of a stuck worker to the error log",
    "pre_exec": "SIGHUP reloads without exec",
    "pre_request": "WSGI middleware",
    "post_request": "WSGI middleware, or the access log",
    "child_exit": "the master logs every worker exit",
    "worker_exit": "atexit in the application",
    "nworkers_changed": "SIGTTIN/SIGTTOU log the new count",
    "on_exit": "systemd's `ExecStopPost=`",
    "ssl_context": "TLS in nginx",
    "on_dirty_starting": "nothing: fastgw has no dirty workers",
    "dirty_post_fork": "nothing: fastgw has no dirty workers",
    "dirty_worker_init": "nothing: fastgw has no dirty workers",
    "dirty_worker_exit": "nothing: fastgw has no dirty workers",
}
# gunicorn's access log atoms -> fastgw's directives (docs/operations.md). gunicorn's
# %(b)s is '-' only when nothing was sent at all, so it is "0" for a HEAD: fastgw's %B.
LOG_ATOMS = {
    "h": "%h", "l": "%l", "u": "%u", "t": "%t", "r": "%r", "m": "%m", "U": "%U", "H": "%H",
    "s": "%>s", "B": "%B", "b": "%B", "f": "%{Referer}i", "a": "%{User-Agent}i", "T": "%T",
    "D": "%D", "p": "<%P>",
}
LOG_ATOM = re.compile(r"%%|%\((\{[^}]*\}[a-z]|[A-Za-z]+)\)s")

RULES = RuleBook([
    Rule(("wsgi_app",), MAPS, '`[[mount]] path = "/"`, `app = ...` (or the APP argument, as '
         "on gunicorn's command line)"),
    Rule(("bind",), MAPS, "`[server] bind` (`unix:PATH` and `fd://N` as they are; `:PORT` "
         "is `0.0.0.0:PORT`, a host alone gets gunicorn's port 8000)"),
    Rule(("workers",), MAPS, "`[server] workers` (gunicorn's default, 1, is written out when "
         "it is not set: fastgw's is one per CPU)"),
    Rule(("threads",), MAPS, "`[server] threads`"),
    Rule(("worker_class",), MAPS, "`sync` and `gthread` map to `threads`; `gevent`, "
         "`eventlet` and `tornado` become a note (fastgw serves concurrent requests with "
         "threads); ASGI workers (uvicorn) are refused: fastgw serves WSGI"),
    Rule(("worker_connections",), MAPS, "`[server] max_connections`"),
    Rule(("timeout",), MAPS, "`[server] timeout`"),
    Rule(("graceful_timeout",), MAPS, "`[server] graceful_timeout`"),
    Rule(("keepalive",), MAPS, "`[server] keepalive`"),
    Rule(("max_requests",), MAPS, "`[server] max_requests`"),
    Rule(("max_requests_jitter",), MAPS, "`[server] max_requests_jitter`"),
    Rule(("accesslog",), MAPS, "`[server] access_log` (`-` is stdout)"),
    Rule(("access_log_format",), MAPS, "`[server] access_log_format`, each `%(x)s` atom "
         "translated (`%(h)s` to `%h`, `%(s)s` to `%>s`, `%({X-Name}i)s` to `%{X-Name}i`, "
         "...); atoms with no equivalent are logged as `-` and noted"),
    Rule(("errorlog",), MAPS, "`[server] error_log` (`-` is stderr, the default)"),
    Rule(("loglevel",), MAPS, "`[server] log_level`"),
    Rule(("forwarded_allow_ips",), MAPS, "`[server] forwarded_allow_ips`; gunicorn's default "
         "(`127.0.0.1,::1`) is written out when it is not set. fastgw also takes the client "
         "address from X-Forwarded-For and the host from X-Forwarded-Host of these peers"),
    Rule(("proxy_protocol",), MAPS, "`[server] proxy_protocol`"),
    Rule(("proxy_allow_ips",), MAPS, "`[server] proxy_allow_ips`"),
    Rule(("limit_request_line",), MAPS, "`[server] limit_request_line` (0, no limit, is not "
         "written: fastgw's limit is 8190)"),
    Rule(("limit_request_fields",), MAPS, "`[server] limit_request_fields`"),
    Rule(("limit_request_field_size",), MAPS, "`[server] limit_request_field_size`"),
    Rule(("raw_env",), MAPS, "`[server] env`"),
    Rule(("chdir",), MAPS, "`[server] chdir`"),
    Rule(("pythonpath",), MAPS, "`[server] pythonpath` (gunicorn's commas become a list)"),
    Rule(("user",), MAPS, "`[server] user`"),
    Rule(("group",), MAPS, "`[server] group`"),
    Rule(("pidfile",), MAPS, "`[server] pid`"),
    Rule(("reuse_port",), MAPS, "`[server] reuse_port`"),
    Rule(("backlog",), MAPS, "`[server] backlog`"),
    Rule(("reload",), MAPS, "`[server] reload`"),
    Rule(("preload_app",), NOTE, "nothing to do: each fastgw worker imports the application "
         "after the fork; code that must run once belongs in a deploy step"),
    Rule(("daemon",), NOTE, "fastgw stays in the foreground: run it under systemd "
         "(docs/operations.md)"),
    Rule(("certfile", "keyfile", "ca_certs", "cert_reqs", "ssl_version", "ciphers",
          "do_handshake_on_connect", "suppress_ragged_eofs"), REFUSE, "not translated yet: "
         "fastgw serves HTTPS with `bind = [\"https://HOST:PORT\"]` and `[server] certfile`, "
         "`keyfile`, `ca_certs`, `cert_reqs`, `ssl_ciphers` (README \"HTTPS\"); set those "
         "and remove the setting"),
    Rule(("umask",), NOTE, "not translated: `unix_socket_mode` sets the UNIX sockets' "
         "permissions"),
    Rule(("secure_scheme_headers", "forwarder_headers", "header_map"), NOTE, "not "
         "translated: fastgw trusts X-Forwarded-Proto/-For/-Host and Forwarded from "
         "`forwarded_allow_ips` peers"),
    Rule(("statsd_host", "statsd_prefix", "dogstatsd_tags"), NOTE, "not translated: "
         "`metrics` serves Prometheus /metrics instead"),
    Rule(("syslog", "syslog_addr", "syslog_prefix", "syslog_facility", "logconfig",
          "logconfig_dict", "logconfig_json", "logger_class", "capture_output",
          "disable_redirect_access_to_syslog", "enable_stdio_inheritance"), NOTE, "not "
         "translated: fastgw writes its error log to a file or stderr (journald under "
         "systemd)"),
    Rule(("sendfile",), NOTE, "nothing to do: static files and wsgi.file_wrapper always use "
         "sendfile(2)"),
    Rule(("proc_name", "default_proc_name", "worker_tmp_dir", "tmp_upload_dir", "spew",
          "check_config", "print_config", "initgroups", "reload_engine", "reload_extra_files",
          "strip_header_spaces", "permit_obsolete_folding", "casefold_http_method",
          "permit_unconventional_http_method", "permit_unconventional_http_version",
          "tolerate_dangerous_framing", "paste", "raw_paste_global_conf", "config",
          "worker_class_args"), NOTE, "not translated"),
    Rule(("protocol",), MAPS, "`uwsgi`: the binds become `uwsgi://` listeners (nginx's "
         "`uwsgi_pass` keeps working); `http`: nothing to write"),
    Rule(("uwsgi_allow_ips",), NOTE, "not translated: fastgw's uwsgi listeners take any peer "
         "that can connect; bind them to 127.0.0.1 or a UNIX socket"),
    Rule(("http_protocols", "http2_cleartext", "http2_max_concurrent_streams",
          "http2_initial_window_size", "http2_max_frame_size", "http2_max_header_list_size",
          "http_parser"), NOTE, "not translated: fastgw speaks HTTP/1.1 (HTTP/2 belongs to "
         "nginx in front)"),
    Rule(("asgi_loop", "asgi_lifespan", "asgi_disconnect_grace_period",
          "websocket_max_message_size", "root_path"), NOTE, "not translated: ASGI settings; "
         "fastgw serves WSGI (mount an application below a prefix with `[[mount]] path`)"),
    Rule(("dirty_apps",), REFUSE, "fastgw has no dirty workers for long tasks: run them as a "
         "service of their own and remove the setting"),
    Rule(("dirty_workers", "dirty_timeout", "dirty_threads", "dirty_graceful_timeout"), NOTE,
         "nothing to do without `dirty_apps`"),
    Rule(("control_socket", "control_socket_mode", "control_socket_disable"), NOTE, "not "
         "translated: fastgw takes signals (SIGHUP, SIGTERM, SIGTTIN, ...)"),
    Rule(("enable_backlog_metric",), NOTE, "not translated: see `metrics`"),
    Rule(tuple(HOOKS), MAPS, "a note naming what fastgw offers instead (systemd, `metrics`, "
         "WSGI middleware, ...)"),
])
ASYNC_WORKERS = ("gevent", "eventlet", "tornado", "gaiohttp")


def definitions(path, source):
    """(name -> FILE:LINE of the last statement that binds it outside functions, names
    whose value there is computed rather than written as a literal)."""
    lines, computed = {}, set()
    try:
        tree = ast.parse(source, path)
    except SyntaxError:
        return lines, computed

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines[node.name] = f"{path}:{node.lineno}"
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    lines[child.id] = f"{path}:{node.lineno}"
                    computed.discard(child.id)
                    if not literal(node):
                        computed.add(child.id)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit(inner)

    visit(tree.body)
    return lines, computed


def literal(node):
    """Is `node` an assignment of a value written out (a number, a string, a list)?"""
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        return False
    try:
        ast.literal_eval(node.value)
    except ValueError:
        return False
    return True


def run_config(path):
    """The global names of the configuration file, run as gunicorn runs it."""
    try:
        with open(path, "rb") as fh:
            source = fh.read()
    except OSError as e:
        raise ConfigImportError(f"{path}: cannot read it: {e.strerror}; give the gunicorn "
                                f"configuration file (e.g. gunicorn.conf.py)") from None
    spec = importlib.util.spec_from_loader(
        "__config__", importlib.machinery.SourceFileLoader("__config__", path))
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_module = list(sys.path), sys.modules.get("__config__")
    sys.path.insert(0, os.getcwd())
    sys.modules["__config__"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # the file is arbitrary code: report, never crash
        last = traceback.extract_tb(e.__traceback__)
        line = next((f.lineno for f in reversed(last) if f.filename == path), None)
        raise ConfigImportError(f"{path}:{line or 1}: running it failed "
                                f"({type(e).__name__}: {e}), as it would in gunicorn; fix "
                                f"it and import again") from None
    finally:
        sys.path[:] = saved_path
        if saved_module is None:
            sys.modules.pop("__config__", None)
        else:
            sys.modules["__config__"] = saved_module
    return (vars(module),) + definitions(path, source.decode("utf-8", "replace"))


def translate_log_format(text):
    """gunicorn's access_log_format -> (fastgw's format, atoms with no equivalent)."""
    missing = []

    def atom(match):
        name = match.group(1)
        if name is None:
            return "%%"
        if name in LOG_ATOMS:
            return LOG_ATOMS[name]
        if name.startswith("{") and name.endswith("}i"):
            return "%" + name
        missing.append(f"%({name})s")
        return "-"

    pieces, last = [], 0
    for match in LOG_ATOM.finditer(text):
        pieces.append(text[last:match.start()].replace("%", "%%"))
        pieces.append(atom(match))
        last = match.end()
    pieces.append(text[last:].replace("%", "%%"))
    return "".join(pieces), missing


def gunicorn_address(text):
    """A gunicorn bind -> fastgw's: `:8000` is 0.0.0.0:8000, a host alone is port 8000
    (gunicorn's defaults), `tcp://` is dropped; unix: and fd:// are the same in both."""
    if text.startswith("tcp://"):
        text = text[len("tcp://"):]
    if text.startswith(("unix:", "fd://")):
        return text
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and (host.endswith("]") or "[" not in host):
        return f"{host or '0.0.0.0'}:{port}"
    return f"{text}:8000"


def as_list(value):
    """gunicorn's list settings: a list, or one string with commas."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


class GunicornSite:
    """What the settings say, and the fastgw.toml saying the same."""

    def __init__(self, path, app=None):
        self.path = path
        self.app = app
        self.out = Translation(path, "import-gunicorn")
        self.worker_class = "sync"
        self.protocol = "http"

    def translate(self):
        names, lines, computed = run_config(self.path)
        settings = []
        for name, value in names.items():
            if name.startswith("_") or type(value).__name__ == "module":
                continue
            where = lines.get(name, self.path)
            rule = RULES.find(name)
            if rule is None:
                if not callable(value):
                    self.out.note(where, f"{name}: not a gunicorn setting this importer knows; "
                                         f"gunicorn ignores names that are not its settings")
            elif rule.kind == REFUSE:
                self.out.fail(where, f"{name} = {value!r}: {rule.text}")
            elif rule.kind == NOTE:
                self.out.note(where, f"{name} = {value!r}: {rule.text}")
            else:
                settings.append((name, value, where))
                if name in computed and name not in HOOKS:
                    self.out.note(where, f"{name} = {value!r}: computed when the file was run "
                                         f"here; import again on the host that serves the site")
        # worker_class decides what threads means, wherever it is in the file.
        for name, value, where in sorted(settings, key=lambda s: s[0] != "worker_class"):
            if name in HOOKS:
                self.out.note(where, f"{name}(): gunicorn's hook is not run; in fastgw: "
                                     f"{HOOKS[name]}")
            else:
                getattr(self, "on_" + name)(value, where)
        self.finish(names, lines)
        return self.out.toml()

    def number(self, key, value, where, minimum=0, name=None):
        try:
            number = value if isinstance(value, (int, float)) and not isinstance(
                value, bool) else int(str(value).strip())
        except ValueError:
            number = -1
        if number < minimum:
            self.out.fail(where, f"{name or key} = {value!r}: must be a number of at least "
                                 f"{minimum}")
        self.out.set(key, number)

    def on_wsgi_app(self, value, where):
        self.app = self.app or str(value)

    def on_bind(self, value, where):
        binds = [value] if isinstance(value, str) else list(value)
        self.out.add("bind", [gunicorn_address(str(b)) for b in binds])

    def on_workers(self, value, where):
        self.number("workers", value, where, 1)

    def on_threads(self, value, where):
        self.number("threads", value, where, 1)

    def on_worker_class(self, value, where):
        name = value if isinstance(value, str) else getattr(value, "__name__", str(value))
        short = name.rsplit(".", 1)[-1].lower()
        if short in ("sync", "syncworker"):
            self.out.set("threads", 1)
        elif short in ("gthread", "threadworker"):
            pass
        elif "uvicorn" in name.lower() or "asgi" in name.lower():
            self.out.fail(where, f"worker_class = {name!r}: an ASGI worker; fastgw serves "
                                 f"WSGI applications only")
        elif any(w in name.lower() for w in ASYNC_WORKERS):
            self.out.note(where, f"worker_class = {name!r}: fastgw has no event-loop workers "
                                 f"for the application; it serves concurrent requests with "
                                 f"threads (set threads, e.g. to 16, for an app that waits "
                                 f"on the network)")
        else:
            self.out.fail(where, f"worker_class = {name!r}: a worker class fastgw cannot "
                                 f"stand in for; use sync or gthread")
        self.worker_class = short

    def on_protocol(self, value, where):
        if str(value) not in ("http", "uwsgi"):
            self.out.fail(where, f"protocol = {value!r}: fastgw's listeners speak http, uwsgi, "
                                 f"fastcgi and scgi")
        self.protocol = str(value)

    def on_worker_connections(self, value, where):
        self.number("max_connections", value, where, 1, "worker_connections")

    def on_timeout(self, value, where):
        self.number("timeout", value, where)

    def on_graceful_timeout(self, value, where):
        self.number("graceful_timeout", value, where)

    def on_keepalive(self, value, where):
        self.number("keepalive", value, where)

    def on_max_requests(self, value, where):
        self.number("max_requests", value, where)

    def on_max_requests_jitter(self, value, where):
        self.number("max_requests_jitter", value, where)

    def on_accesslog(self, value, where):
        if value is not None:
            self.out.set("access_log", str(value))

    def on_access_log_format(self, value, where):
        text, missing = translate_log_format(str(value))
        self.out.set("access_log_format", text)
        if missing:
            self.out.note(where, f"access_log_format: {', '.join(missing)} have no fastgw "
                                 f"equivalent and are logged as '-'")

    def on_errorlog(self, value, where):
        if value not in (None, "-"):
            self.out.set("error_log", str(value))

    def on_loglevel(self, value, where):
        self.out.set("log_level", str(value).lower())

    def on_forwarded_allow_ips(self, value, where):
        self.out.set("forwarded_allow_ips", as_list(value))

    def on_proxy_protocol(self, value, where):
        on = value if isinstance(value, bool) else str(value).lower() not in (
            "", "off", "false", "none", "0")
        self.out.set("proxy_protocol", bool(on))

    def on_proxy_allow_ips(self, value, where):
        self.out.set("proxy_allow_ips", as_list(value))

    def on_limit_request_line(self, value, where):
        if str(value) != "0":
            self.number("limit_request_line", value, where, 1)

    def on_limit_request_fields(self, value, where):
        self.number("limit_request_fields", value, where, 1)

    def on_limit_request_field_size(self, value, where):
        if str(value) != "0":
            self.number("limit_request_field_size", value, where, 1)

    def on_raw_env(self, value, where):
        env = self.out.server.setdefault("env", {})
        for item in [value] if isinstance(value, str) else value:
            key, sep, text = str(item).partition("=")
            if not sep:
                self.out.fail(where, f"raw_env: {item!r} is not KEY=VALUE")
            env[key] = text

    def on_chdir(self, value, where):
        self.out.set("chdir", os.path.abspath(str(value)))

    def on_pythonpath(self, value, where):
        if value:
            self.out.add("pythonpath", [os.path.abspath(p) for p in as_list(value)])

    def on_user(self, value, where):
        if value is not None:
            self.out.set("user", str(value))

    def on_group(self, value, where):
        if value is not None:
            self.out.set("group", str(value))

    def on_pidfile(self, value, where):
        if value:
            self.out.set("pid", os.path.abspath(str(value)))

    def on_reuse_port(self, value, where):
        self.out.set("reuse_port", bool(value))

    def on_backlog(self, value, where):
        self.number("backlog", value, where, 1)

    def on_reload(self, value, where):
        self.out.set("reload", bool(value))

    def finish(self, names, lines):
        out = self.out
        if out.server.get("threads", 1) > 1 and self.worker_class in ("sync", "syncworker") \
                and "worker_class" in names:
            out.note(lines.get("worker_class", self.path), "worker_class sync with threads: "
                     "fastgw runs the threads, as gunicorn switches to gthread")
        if self.protocol == "uwsgi":
            out.server["bind"] = ["uwsgi://" + b for b in out.server.get("bind",
                                                                        ["127.0.0.1:8000"])]
            out.note(self.path, "uwsgi:// listeners speak the uwsgi protocol: nginx's "
                                "`include uwsgi_params; uwsgi_pass ...;` keeps working")
        out.server.setdefault("workers", 1)
        if "forwarded_allow_ips" not in out.server:
            out.set("forwarded_allow_ips", ["127.0.0.1", "::1"])
            out.note(self.path, "forwarded_allow_ips: gunicorn's default, 127.0.0.1 and ::1, "
                                "is written out (it trusts their X-Forwarded-Proto)")
        if self.app:
            out.mount(self.path, "/", app=self.app)
        else:
            out.note(self.path, "no wsgi_app: give the application as on gunicorn's command "
                                "line: fastgw import-gunicorn FILE mysite.wsgi:application, "
                                "or fastgw serve --config FILE mysite.wsgi:application")


def translate(path, app=None):
    """The fastgw.toml (text) saying what the gunicorn configuration at `path` says, with
    `app` (as on gunicorn's command line) mounted at '/'."""
    return GunicornSite(path, app).translate()
