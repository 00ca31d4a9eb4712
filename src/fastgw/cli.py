"""The `fastgw` command: parse flags into a Config, start the master, report errors in one line."""
import argparse
import os
import sys

from fastgw import __version__
from fastgw.config import LOG_LEVELS, Config, parse_bind, parse_env
from fastgw.errors import ConfigError, FastgwError


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
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
    serve = commands.add_parser(
        "serve", help="serve a WSGI application over HTTP/1.1",
        description="Serve a WSGI application over HTTP/1.1 with prefork workers.")
    serve.add_argument("app", metavar="APP",
                       help="the WSGI application: module:attribute (dotted attribute allowed), "
                            "module:factory() or module (attribute 'application')")
    serve.add_argument("-b", "--bind", action="append", metavar="ADDRESS",
                       help="listen on HOST:PORT, [IPv6]:PORT or unix:/path; repeatable "
                            "(default 127.0.0.1:8000)")
    serve.add_argument("-w", "--workers", type=positive_int, default=os.cpu_count() or 1,
                       help="number of worker processes (default: number of CPUs, %(default)s)")
    serve.add_argument("--chdir", metavar="DIR", help="change to DIR before importing the app")
    serve.add_argument("--pythonpath", metavar="DIRS", default="",
                       help="colon-separated directories put first on sys.path, "
                            "like mod_wsgi's WSGIPythonPath")
    serve.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                       help="set an environment variable for the app; repeatable")
    serve.add_argument("--backlog", type=positive_int, default=2048,
                       help="listen(2) backlog (default %(default)s)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                       help="error log level (default %(default)s)")
    serve.add_argument("--access-log", metavar="FILE",
                       help="write an access log (Apache combined format) to FILE, '-' for stdout")
    serve.add_argument("--keepalive", type=seconds, default=5.0, metavar="SECONDS",
                       help="close idle keep-alive connections after this long (default 5)")
    serve.add_argument("--graceful-timeout", type=seconds, default=30.0, metavar="SECONDS",
                       help="on SIGTERM, how long requests in flight may take (default 30)")
    serve.add_argument("--header-timeout", type=seconds, default=10.0, metavar="SECONDS",
                       help="a request head must arrive within this long, else 408 (default 10)")
    serve.add_argument("--io-timeout", type=seconds, default=30.0, metavar="SECONDS",
                       help="how long a request may wait for the client to send more of its "
                            "body or to take more of the response (default 30)")
    serve.add_argument("--max-connections", type=positive_int, default=4096, metavar="N",
                       help="open connections per worker; beyond it accepting pauses "
                            "(default 4096)")
    limits = serve.add_argument_group("request limits (bytes unless noted)")
    limits.add_argument("--limit-request-line", type=positive_int, default=8190, metavar="N",
                        help="longest request line, else 414 (default 8190)")
    limits.add_argument("--limit-request-field-size", type=positive_int, default=8190,
                        metavar="N", help="longest header field line, else 431 (default 8190)")
    limits.add_argument("--limit-request-fields", type=positive_int, default=100, metavar="N",
                        help="most header fields, else 431 (default 100)")
    limits.add_argument("--limit-request-head", type=positive_int, default=65536, metavar="N",
                        help="largest request head (line and fields), else 431 (default 65536)")
    limits.add_argument("--limit-request-body", type=non_negative_int, default=0, metavar="N",
                        help="largest request body, also chunked, else 413; 0 = no limit "
                             "(default 0)")
    limits.add_argument("--limit-chunk-line", type=positive_int, default=4096, metavar="N",
                        help="longest chunk-size line with its extensions, else 400 "
                             "(default 4096)")
    limits.add_argument("--limit-trailer-size", type=positive_int, default=8192, metavar="N",
                        help="largest trailer section of a chunked body, else 400 "
                             "(default 8192)")
    return parser


def config_from_args(args):
    return Config(
        app=args.app,
        binds=tuple(parse_bind(b) for b in (args.bind or ["127.0.0.1:8000"])),
        workers=args.workers,
        chdir=args.chdir,
        pythonpath=tuple(p for p in args.pythonpath.split(":") if p),
        env=tuple(parse_env(e) for e in args.env),
        backlog=args.backlog,
        log_level=args.log_level,
        access_log=args.access_log,
        keepalive=args.keepalive,
        graceful_timeout=args.graceful_timeout,
        header_timeout=args.header_timeout,
        io_timeout=args.io_timeout,
        max_connections=args.max_connections,
        limit_request_line=args.limit_request_line,
        limit_request_field_size=args.limit_request_field_size,
        limit_request_fields=args.limit_request_fields,
        limit_request_head=args.limit_request_head,
        limit_request_body=args.limit_request_body,
        limit_chunk_line=args.limit_chunk_line,
        limit_trailer_size=args.limit_trailer_size,
    )


def serve(config):
    from fastgw.errorlog import setup_error_log
    from fastgw.loader import parse_app_spec, prepare_import_path
    from fastgw.master import Master

    parse_app_spec(config.app)
    setup_error_log(config.log_level)
    if config.chdir:
        os.chdir(config.chdir)
    os.environ.update(config.env)
    prepare_import_path(config.pythonpath)
    return Master(config).run()


def main(argv=None):
    if os.name == "nt":
        print("fastgw: error: Windows is not supported; run fastgw on Linux or macOS "
              "(or in WSL)", file=sys.stderr)
        return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return serve(config_from_args(args))
    except (ConfigError, FastgwError) as e:
        print(f"fastgw: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
