"""The `fastgw` command: flags (and a --config file) into a Config; serve it or check it.

Strategy: `serve` and `check` share one set of arguments. A --config file's
[server] values become the parser's defaults and the command line is parsed
again, so a flag given on the command line always wins; list flags (--bind)
given on the command line replace the file's, --env adds to them, and a mount
given on the command line replaces the file's mount of the same prefix.
"""
import argparse
import dataclasses
import logging
import os
import sys

from fastgw import __version__, apacheconf, configfile, gunicornconf, uwsgiconf
from fastgw.activation import default_binds
from fastgw.addresses import parse_bind
from fastgw.config import LOG_LEVELS, Config, default, parse_env
from fastgw.configfile import Option, toml_value
from fastgw.errorlog import setup_error_log
from fastgw.errors import ConfigError, FastgwError
from fastgw.explain import explain as explain_url
from fastgw.loader import prepare_import_path
from fastgw.master import Master
from fastgw.mount import Mount, parse_mount_arg
from fastgw.mountkinds import describe_mount
from fastgw.paths import fs_str
from fastgw.upgrade import Upgrader
from fastgw.utf8mode import restart_in_utf8_mode

# The `import-*` commands: the translate() that prints the fastgw.toml.
IMPORTERS = {"import-apache": apacheconf.translate, "import-uwsgi": uwsgiconf.translate,
             "import-gunicorn": gunicornconf.translate}
# Arguments that are not [server] keys of a config file.
NOT_SERVER_KEYS = frozenset({"help", "app", "config", "mount", "static", "cgi", "fastcgi", "scgi"})


def whole_number(minimum):
    """An argparse type: an int of at least `minimum`, with a message saying so."""

    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {minimum} or more")
        return value

    convert.__name__ = "positive_int" if minimum else "non_negative_int"
    return convert


positive_int = whole_number(1)
non_negative_int = whole_number(0)


def octal_mode(text):
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode such as 0660") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} must be an octal mode from 000 to 777")
    return value


def seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with errors in fastgw's one-line `fastgw: error: ...` form."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"fastgw: error: {message} (see `{self.prog} --help`)\n")


def build_parser():
    parser = ArgumentParser(
        prog="fastgw", description="A fast gateway between the web and Python (WSGI) applications.")
    parser.add_argument("--version", action="version", version=f"fastgw {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = {}
    serve = commands.add_parser(
        "serve", help="serve WSGI applications and static files over HTTP/1.1",
        description="Serve WSGI applications and static files over HTTP/1.1 with prefork workers.")
    add_serve_arguments(serve)
    parser.commands["serve"] = serve
    check = commands.add_parser(
        "check", help="validate the configuration; print the routing table and settings",
        description="Validate the configuration (the same arguments as serve, usually "
                    "--config FILE) and print the routing table and the resolved settings. "
                    "Applications are not imported.")
    add_serve_arguments(check)
    parser.commands["check"] = check
    explain = commands.add_parser(
        "explain", help="show which mount, process group, auth rule and file serve a URL",
        description="Show how the configuration (the same arguments as serve, usually "
                    "--config FILE) answers URL: the mount, SCRIPT_NAME and PATH_INFO, the "
                    "process group, the auth rule, and the file, script or upstream. "
                    "Applications are not imported.")
    explain.add_argument("url", metavar="URL",
                         help="a path (/static/app.css, with a ?query if you like) or a full "
                              "URL (http://host/x); percent-encoding is decoded as the server "
                              "does")
    add_serve_arguments(explain)
    parser.commands["explain"] = explain
    apache = commands.add_parser(
        "import-apache", help="translate an Apache + mod_wsgi configuration into fastgw.toml",
        description="Read the Apache directives of Django's mod_wsgi guide (WSGIScriptAlias, "
                    "WSGIDaemonProcess, Alias, <Location> logins, ...) and print the "
                    "equivalent fastgw.toml on stdout, with a comment for each directive "
                    "that is not mapped one to one.")
    apache.add_argument("file", metavar="FILE", help="the Apache configuration file")
    uwsgi = commands.add_parser(
        "import-uwsgi", help="translate a uWSGI ini file into fastgw.toml",
        description="Read a uWSGI ini file ([uwsgi] section, ini = includes, %%(...) and "
                    "$(...) expanded) and print the equivalent fastgw.toml on stdout, with a "
                    "comment for each option that is not mapped one to one. Options whose "
                    "loss would change what the site does are errors (exit 2).")
    uwsgi.add_argument("file", metavar="FILE",
                       help="the uWSGI ini file; FILE:SECTION reads another section")
    gunicorn = commands.add_parser(
        "import-gunicorn", help="translate a gunicorn.conf.py into fastgw.toml",
        description="Run a gunicorn configuration file as gunicorn does, read its settings "
                    "and print the equivalent fastgw.toml on stdout, with a comment for each "
                    "setting that is not mapped one to one. Settings whose loss would change "
                    "what the site does are errors (exit 2).")
    gunicorn.add_argument("file", metavar="FILE", help="the gunicorn configuration file")
    gunicorn.add_argument("app", metavar="APP", nargs="?",
                          help="the application as on gunicorn's command line "
                               "(mysite.wsgi:application), mounted at '/'")
    return parser


# The request limits: flag, its type, what it limits and the answer past it.
LIMIT_FLAGS = (
    ("--limit-request-line", positive_int, "longest request line, else 414"),
    ("--limit-request-field-size", positive_int, "longest header field line, else 431"),
    ("--limit-request-fields", positive_int, "most header fields, else 431"),
    ("--limit-request-head", positive_int, "largest request head (line and fields), else 431"),
    ("--limit-request-body", non_negative_int,
     "largest request body, also chunked, else 413; 0 = no limit"),
    ("--limit-chunk-line", positive_int, "longest chunk-size line with its extensions, else 400"),
    ("--limit-trailer-size", positive_int, "largest trailer section of a chunked body, else 400"),
)


def add_serve_arguments(serve):
    first = default("binds")[0]
    default_bind = f"{first.host}:{first.port}"
    serve.add_argument("app", metavar="APP", nargs="?",
                       help="the WSGI application mounted at '/': module:attribute (dotted "
                            "attribute allowed), module:factory() or module (attribute "
                            "'application'); optional when --mount, --static or --config say "
                            "what to serve")
    serve.add_argument("-c", "--config", metavar="FILE",
                       help="read settings ([server]) and mounts ([[mount]]) from a TOML file; "
                            "flags on the command line override it")
    serve.add_argument("--mount", action="append", default=[], metavar="PREFIX=APP",
                       help="mount a WSGI application at a URL prefix, e.g. "
                            "/api=api.wsgi:application (SCRIPT_NAME=/api); repeatable")
    serve.add_argument("--static", action="append", default=[], metavar="PREFIX=PATH",
                       help="serve a directory below a URL prefix (/static=/srv/static) or one "
                            "file at exactly a path (/robots.txt=/srv/robots.txt); repeatable")
    serve.add_argument("--cgi", action="append", default=[], metavar="PREFIX=DIR",
                       help="run the executable files of DIR as CGI scripts below a URL prefix, "
                            "e.g. /cgi-bin/=/srv/cgi-bin; repeatable")
    serve.add_argument("--fastcgi", action="append", default=[], metavar="PREFIX=ADDRESS",
                       help="forward a URL prefix to a FastCGI server (php-fpm), e.g. "
                            "/php=unix:/run/php/php-fpm.sock or /app=tcp://127.0.0.1:9000; "
                            "repeatable (params: use a --config file)")
    serve.add_argument("--scgi", action="append", default=[], metavar="PREFIX=ADDRESS",
                       help="forward a URL prefix to an SCGI server, e.g. "
                            "/app=tcp://127.0.0.1:4000; repeatable")
    serve.add_argument("--x-sendfile-root", action="append", default=[], metavar="DIR",
                       help="an application's X-Sendfile may name files below DIR (sent by "
                            "fastgw, the app's body discarded); applies to every app mount "
                            "without x_sendfile_roots of its own; repeatable")
    serve.add_argument("-b", "--bind", action="append", metavar="ADDRESS",
                       help="listen on HOST:PORT, [IPv6]:PORT, unix:/path or fd://N (an "
                            "inherited socket; fd://NAME for a systemd socket); prefix "
                            "fastcgi://, scgi:// or uwsgi:// to speak that protocol to a web "
                            "server in front (e.g. fastcgi://unix:/run/app.sock); repeatable "
                            f"(default {default_bind}, or the sockets systemd passed)")
    serve.add_argument("-w", "--workers", type=positive_int, default=default("workers"),
                       help="number of worker processes (default: number of CPUs, %(default)s)")
    serve.add_argument("--chdir", metavar="DIR", help="change to DIR before importing the app")
    serve.add_argument("--pythonpath", metavar="DIRS", default="",
                       help="colon-separated directories put first on sys.path, "
                            "like mod_wsgi's WSGIPythonPath")
    serve.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                       help="set an environment variable for the app; repeatable")
    serve.add_argument("--backlog", type=positive_int, default=default("backlog"),
                       help="listen(2) backlog (default %(default)s)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default=default("log_level"),
                       help="error log level (default %(default)s)")
    serve.add_argument("--access-log", metavar="FILE",
                       help="write an access log (Apache combined format) to FILE, '-' for stdout")
    serve.add_argument("--keepalive", type=seconds, default=default("keepalive"),
                       metavar="SECONDS",
                       help="close idle keep-alive connections after this long "
                            "(default %(default)g)")
    serve.add_argument("--graceful-timeout", type=seconds, default=default("graceful_timeout"),
                       metavar="SECONDS",
                       help="on SIGTERM, how long requests in flight may take "
                            "(default %(default)g)")
    serve.add_argument("--header-timeout", type=seconds, default=default("header_timeout"),
                       metavar="SECONDS",
                       help="a request head must arrive within this long, else 408 "
                            "(default %(default)g)")
    serve.add_argument("--io-timeout", type=seconds, default=default("io_timeout"),
                       metavar="SECONDS",
                       help="how long a request may wait for the client to send more of its "
                            "body or to take more of the response (default %(default)g)")
    serve.add_argument("--body-buffer-dir", metavar="DIR",
                       help="where request bodies larger than memory allows wait, in unlinked "
                            "temporary files, until the application is called; also where "
                            "responses a slow client lags behind spill (default: the "
                            "system's temporary directory)")
    serve.add_argument("--max-connections", type=positive_int, default=default("max_connections"),
                       metavar="N",
                       help="open connections per worker; beyond it accepting pauses "
                            "(default %(default)g)")
    process = serve.add_argument_group("process model")
    process.add_argument("--threads", type=positive_int, default=default("threads"), metavar="N",
                         help="application threads per worker; 1 runs the app inline on the "
                              "event loop (fastest), N > 1 lets blocking apps overlap "
                              "(default %(default)g)")
    process.add_argument("--timeout", type=seconds, default=default("timeout"), metavar="SECONDS",
                         help="kill (after dumping its stacks) a worker whose request runs "
                              "longer; 0 = never (default %(default)g)")
    process.add_argument("--max-requests", type=non_negative_int, default=default("max_requests"),
                         metavar="N",
                         help="restart a worker gracefully after about N requests; 0 = never")
    process.add_argument("--max-requests-jitter", type=non_negative_int,
                         default=default("max_requests_jitter"), metavar="N",
                         help="add a random 0..N to --max-requests per worker "
                              "(default %(default)g)")
    process.add_argument("--reload-on-rss", type=non_negative_int,
                         default=default("reload_on_rss"), metavar="MIB",
                         help="replace a worker gracefully once its resident memory passed MIB "
                              "mebibytes after a request (against slow leaks); 0 = never")
    process.add_argument("--pid", metavar="FILE", help="write the master's pid to FILE")
    process.add_argument("--user", metavar="USER",
                         help="switch to this user after binding (when started as root)")
    process.add_argument("--group", metavar="GROUP",
                         help="switch to this group after binding (when started as root)")
    serve.add_argument("--proxy-protocol", action="store_true",
                       help="HTTP listeners expect a PROXY protocol (v1 or v2) header from a "
                            "load balancer first; enable only where nothing else can connect")
    process.add_argument("--reload", action="store_true",
                         help="development: restart workers when a source file of the app changes")
    process.add_argument("--keep-locale", action="store_true",
                         help="run the app processes with the file-system encoding of the "
                              "locale even when it is not UTF-8, instead of restarting fastgw "
                              "in Python's UTF-8 mode")
    ops = serve.add_argument_group("operations (docs/operations.md)")
    ops.add_argument("--access-log-format", metavar="FORMAT", default=default("access_log_format"),
                     help="combined (default), common, json (one object per line), or a "
                          "format string of Apache directives, e.g. '%%h \"%%r\" %%>s %%D'")
    ops.add_argument("--error-log", metavar="FILE",
                     help="write the error log to FILE instead of stderr (reopened on SIGUSR1)")
    ops.add_argument("--request-id", action="store_true",
                     help="give every request an X-Request-ID (the client's if valid, else a "
                          "new one), seen by the app and returned in the response")
    ops.add_argument("--metrics", metavar="ADDRESS",
                     help="serve Prometheus /metrics, /healthz and /readyz on HOST:PORT, "
                          "e.g. 127.0.0.1:9100")
    ops.add_argument("--drain-seconds", type=seconds, default=default("drain_seconds"),
                     metavar="SECONDS",
                     help="on SIGTERM, keep serving this long while /readyz says 503, then "
                          "stop gracefully (default %(default)g)")
    ops.add_argument("--reuse-port", action="store_true",
                     help="set SO_REUSEPORT on TCP listeners (start a new fastgw on the "
                          "same port before stopping the old one)")
    ops.add_argument("--unix-socket-mode", type=octal_mode, metavar="MODE",
                     help="permissions of UNIX-socket listeners, e.g. 0660 (owner: --user/--group)")
    ops.add_argument("--proxy-allow-ips", action="append", default=[], metavar="CIDRS",
                     help="with --proxy-protocol, the peers allowed to send the header "
                          "(others are refused): comma-separated addresses or networks, * "
                          f"for all (default {','.join(default('proxy_allow_ips'))}); "
                          "repeatable")
    ops.add_argument("--forwarded-allow-ips", action="append", default=[], metavar="CIDRS",
                     help="trust X-Forwarded-For/-Proto/-Host and Forwarded from these peers: "
                          "comma-separated addresses or networks, * for all, unix for "
                          "UNIX-socket peers; repeatable")
    tls = serve.add_argument_group("HTTPS (--bind https://HOST:PORT)")
    tls.add_argument("--certfile", metavar="FILE",
                     help="PEM certificate chain of the HTTPS listeners (the key too, "
                          "without --keyfile)")
    tls.add_argument("--keyfile", metavar="FILE", help="PEM private key of --certfile")
    tls.add_argument("--ssl-ciphers", metavar="LIST",
                     help="OpenSSL cipher list for TLS 1.2 (default: Mozilla intermediate)")
    tls.add_argument("--ssl-min-version", choices=("1.2", "1.3"), default="1.2",
                     help="oldest TLS version accepted (default %(default)s)")
    tls.add_argument("--sni-cert", action="append", default=[], metavar="NAME=CERT[,KEY]",
                     help="serve this certificate (and key) to clients asking for server "
                          "name NAME (`*.example.org` for a wildcard); repeatable")
    tls.add_argument("--ca-certs", metavar="FILE",
                     help="PEM CA certificates that sign client certificates")
    tls.add_argument("--cert-reqs", choices=("none", "optional", "required"), default="none",
                     help="ask clients for a certificate signed by --ca-certs (default none)")
    limits = serve.add_argument_group("request limits (bytes unless noted)")
    for flag, kind, text in LIMIT_FLAGS:
        limits.add_argument(flag, type=kind, default=default(flag[2:].replace("-", "_")),
                            metavar="N", help=text + " (default %(default)g)")


def server_options(command_parser):
    """The [server] keys of a config file: one per flag of `serve`."""
    options = {}
    for action in command_parser._actions:
        if not action.option_strings or action.dest in NOT_SERVER_KEYS:
            continue
        flag = max(action.option_strings, key=len)
        key = flag.lstrip("-").replace("-", "_")
        boolean = action.nargs == 0
        options[key] = Option(key, flag, action.dest, convert=action.type, choices=action.choices,
                              multiple=isinstance(action, argparse._AppendAction),
                              boolean=boolean, const=action.const if boolean else None)
    return options


def parse_command_line(argv=None):
    """argv -> (parser, args, ConfigFile or None); a --config file fills in what argv leaves out."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None or args.command in IMPORTERS:
        return parser, args, None
    file_config = None
    if args.config:
        command_parser = parser.commands[args.command]
        options = server_options(command_parser)
        file_config = configfile.load(args.config, options)
        command_parser.set_defaults(**{options[key].dest: value
                                       for key, value in file_config.server.items()
                                       if not options[key].multiple})
        args = parser.parse_args(argv)
        args.file_options = options
    return parser, args, file_config


def config_from_args(args, file_config=None):
    sources = {}
    binds = args.bind
    bind_where = "--bind"
    env = list(args.env)
    file_mounts = []
    if file_config is not None:
        options = args.file_options
        for key, value in file_config.server.items():
            option = options[key]
            if option.multiple:
                if key == "env":
                    env = value + env
                elif key == "bind" and not binds:
                    binds = value
                    bind_where = f"{file_config.where('bind')} ="
                elif not getattr(args, option.dest, None):
                    setattr(args, option.dest, value)
                    sources[option.dest] = file_config.where(key)
            elif getattr(args, option.dest, None) == value:
                sources[option.dest] = file_config.where(key)
        file_mounts = file_config.mounts
    cli_mounts = []
    if args.app is not None:
        cli_mounts.append(Mount(path="/", app=args.app, source=f"APP {args.app!r}"))
    cli_mounts += [parse_mount_arg(text, "--mount") for text in args.mount]
    cli_mounts += [parse_mount_arg(text, "--static") for text in args.static]
    for flag in ("cgi", "fastcgi", "scgi"):
        cli_mounts += [parse_mount_arg(text, "--" + flag) for text in getattr(args, flag)]
    overridden = {m.path for m in cli_mounts}
    mounts = [m for m in file_mounts if m.path not in overridden] + cli_mounts
    if args.x_sendfile_root:
        mounts = with_sendfile_roots(mounts, args.x_sendfile_root)
    return Config(
        mounts=tuple(mounts),
        groups=tuple(file_config.groups) if file_config is not None else (),
        config_file=file_config.path if file_config is not None else None,
        sources=sources,
        binds=(tuple(parse_bind(b, bind_where) for b in (binds or default_binds()))
               or default("binds")),
        workers=args.workers,
        chdir=args.chdir,
        pythonpath=tuple(p for p in args.pythonpath.split(":") if p),
        env=tuple(parse_env(e) for e in env),
        backlog=args.backlog,
        log_level=args.log_level,
        access_log=args.access_log,
        keepalive=args.keepalive,
        graceful_timeout=args.graceful_timeout,
        header_timeout=args.header_timeout,
        io_timeout=args.io_timeout,
        body_buffer_dir=(os.path.abspath(args.body_buffer_dir) if args.body_buffer_dir
                         else None),
        max_connections=args.max_connections,
        limit_request_line=args.limit_request_line,
        limit_request_field_size=args.limit_request_field_size,
        limit_request_fields=args.limit_request_fields,
        limit_request_head=args.limit_request_head,
        limit_request_body=args.limit_request_body,
        limit_chunk_line=args.limit_chunk_line,
        limit_trailer_size=args.limit_trailer_size,
        threads=args.threads,
        timeout=args.timeout,
        max_requests=args.max_requests,
        max_requests_jitter=args.max_requests_jitter,
        reload_on_rss=args.reload_on_rss,
        pid=args.pid,
        user=args.user,
        group=args.group,
        reload=args.reload,
        proxy_protocol=args.proxy_protocol,
        certfile=args.certfile and os.path.abspath(args.certfile),
        keyfile=args.keyfile and os.path.abspath(args.keyfile),
        ssl_ciphers=args.ssl_ciphers,
        ssl_min_version=args.ssl_min_version,
        ca_certs=args.ca_certs and os.path.abspath(args.ca_certs),
        sni_cert=tuple(args.sni_cert),
        cert_reqs=args.cert_reqs,
        access_log_format=args.access_log_format,
        error_log=args.error_log,
        request_id=args.request_id,
        metrics=args.metrics,
        drain_seconds=args.drain_seconds,
        reuse_port=args.reuse_port,
        unix_socket_mode=args.unix_socket_mode,
        forwarded_allow_ips=tuple(args.forwarded_allow_ips),
        proxy_allow_ips=tuple(args.proxy_allow_ips) or default("proxy_allow_ips"),
    )


def with_sendfile_roots(mounts, roots):
    """--x-sendfile-root: the roots of every app mount that has none of its own."""
    if not any(m.kind in ("app", "group") for m in mounts):
        raise ConfigError("--x-sendfile-root: no application is mounted; it names the "
                          "directories an application's X-Sendfile may send files from")
    roots = tuple(fs_str(os.fsencode(root)) for root in roots)
    return [dataclasses.replace(m, x_sendfile_roots=roots)
            if m.kind in ("app", "group") and not m.x_sendfile_roots else m for m in mounts]


def serve(config, reload_config=None, locale_warning=None):
    upgrader = Upgrader()  # before --chdir: a new master starts where this one did
    setup_error_log(config.log_level, config.error_log)
    if locale_warning:
        logging.getLogger("fastgw.error").warning(locale_warning)
    if config.chdir:
        os.chdir(config.chdir)
    os.environ.update(config.env)
    prepare_import_path(config.pythonpath)
    return Master(config, reload_config=reload_config, upgrader=upgrader).run()


def config_reloader(argv):
    """For SIGHUP: read the command line and the --config file again, as at the start
    (relative paths from the directory fastgw was started in, not the --chdir one)."""
    start_dir = os.getcwd()
    argv = list(sys.argv[1:] if argv is None else argv)

    def reload_config():
        here = os.getcwd()
        try:
            os.chdir(start_dir)
        except OSError as e:
            raise ConfigError(f"cannot go back to {start_dir!r} to read the configuration "
                              f"again: {e.strerror}") from None
        try:
            _, args, file_config = parse_command_line(argv)
            return config_from_args(args, file_config)
        except SystemExit:
            raise ConfigError("the command line no longer parses") from None
        finally:
            os.chdir(here)

    return reload_config


def routing_order(mount):
    """Sort key: exact files, then longer prefixes, then '/': the order matching tries them."""
    return (mount.kind != "file", mount.path == "/", -mount.path.count("/"), mount.path)


def setting_value(config, args, key, option):
    """The resolved value of a [server] key, as a TOML value."""
    if key == "bind":
        return [bind_text(b) for b in config.binds]
    if key == "env":
        return dict(config.env)
    if key == "pythonpath":
        return list(config.pythonpath)
    if key == "unix_socket_mode" and config.unix_socket_mode is not None:
        return f"{config.unix_socket_mode:04o}"
    if hasattr(config, key):
        return getattr(config, key)
    return getattr(args, option.dest, None)


def bind_text(bind):
    scheme = "" if bind.scheme == "http" else f"{bind.scheme}://"
    if bind.fd is not None:
        return f"{scheme}fd://{bind.fd}"
    if bind.path is not None:
        return f"{scheme}unix:{bind.path}"
    host = f"[{bind.host}]" if ":" in bind.host else bind.host
    return f"{scheme}{host}:{bind.port}"


def printable_stdout():
    """stdout, writing what the locale cannot encode as \\xNN rather than failing."""
    out = sys.stdout
    try:
        out.reconfigure(errors="backslashreplace")
    except (AttributeError, ValueError):
        pass
    return out


def check(config, args):
    """`fastgw check`: the configuration is valid; print the routing table and the settings."""
    out = printable_stdout()
    where = f" ({config.config_file} and the command line)" if config.config_file else ""
    out.write(f"fastgw: configuration OK{where}\n\n")
    out.write("routing table (exact files first, then the longest prefix wins):\n")
    for mount in sorted(config.mounts, key=routing_order):
        out.write(f"  {describe_mount(mount)}\n")
    if config.groups:
        out.write("\nprocess groups:\n")
        for group in config.groups:
            out.write(f"  {group.describe()}\n")
    out.write("\nsettings ([server] keys):\n")
    options = getattr(args, "file_options", None) or server_options(build_parser().commands["check"])
    for key, option in sorted(options.items()):
        value = setting_value(config, args, key, option)
        if value is None:
            out.write(f"  # {key} is not set\n")
        else:
            out.write(f"  {key} = {toml_value(value)}\n")
    out.flush()
    return 0


def main(argv=None):
    if os.name == "nt":
        print("fastgw: error: Windows is not supported; run fastgw on Linux or macOS "
              "(or in WSL)", file=sys.stderr)
        return 1
    try:
        parser, args, file_config = parse_command_line(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if args.command in IMPORTERS:
            translate = IMPORTERS[args.command]
            text = translate(args.file, args.app) if args.command == "import-gunicorn" \
                else translate(args.file)
            # TOML is UTF-8 whatever the locale.
            sys.stdout.buffer.write(text.encode("utf-8"))
            return 0
        config = config_from_args(args, file_config)
        if args.command == "check":
            return check(config, args)
        if args.command == "explain":
            printable_stdout().write(explain_url(config, args.url))
            return 0
        # After validation: a bad configuration fails at once with its own error.
        locale_warning = restart_in_utf8_mode(args.keep_locale)
        return serve(config, config_reloader(argv), locale_warning)
    except (ConfigError, FastgwError) as e:
        print(f"fastgw: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
