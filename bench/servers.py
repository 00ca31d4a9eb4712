"""How each server is started, and how a started stack is measured and stopped.

A Launch is one process: its argv (run under `taskset -c 0`), and how to know
it is ready (a TCP port accepting, a UNIX socket accepting, or a port printed
in its log when it bound port 0). A Stack is the processes one benchmark row
needs: a server alone, or nginx plus the application server behind it. Every
factory takes the application (a name in bench_apps, or an App such as the
Django project) and a Tuning (threads, workers), and returns a Launch; each
translates those into its own flags, so nothing here knows about scenarios.
"""
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from measure import (StartError, accepts, cpu_ticks, free_port, process_name, process_tree,
                     rss_kib, wait_until)

SERVER_CPU = "0"
HOST = "127.0.0.1"
LISTENING = r"Listening at: \S+://127\.0\.0\.1:(\d+)"


@dataclass
class Context:
    """Where things are: the bench directory, its virtualenv, the static files, and a
    scratch directory of the run (servers that need a directory of their own)."""
    bench_dir: str
    venv_bin: str
    static_dir: str = ""
    scratch: str = ""
    django_site: object = None        # a django_site.Site, or None with the reason:
    django_unavailable: str = ""

    def bin(self, name):
        return os.path.join(self.venv_bin, name)

    @property
    def python(self):
        return self.bin("python")


@dataclass(frozen=True)
class Tuning:
    """Settings a scenario asks of every server.

    idle: the scenario holds ~1,000 idle keep-alive connections, so servers whose
    defaults would close or refuse them get a long keep-alive timeout and a
    connection limit above that (what anyone deploying for that load would set).
    threads: application threads per worker (0: the server's default).
    workers: worker processes.
    """
    idle: bool = False
    threads: int = 0
    workers: int = 1


@dataclass(frozen=True)
class App:
    """What a row serves: MODULE:CALLABLE importable from root, and, when static_dir
    is set, the files below it at /static/ (Django's collectstatic output), served
    the way each server's documentation recommends."""
    module: str
    callable: str
    root: str
    static_dir: Optional[str] = None
    env: Tuple[Tuple[str, str], ...] = ()

    @property
    def spec(self):
        return f"{self.module}:{self.callable}"

    @property
    def wsgi_file(self):
        return os.path.join(self.root, *self.module.split(".")) + ".py"


@dataclass
class Launch:
    argv: List[str]
    port: Optional[int] = None            # known in advance, or ...
    port_from_log: Optional[str] = None   # ... a regex whose group 1 is the port
    unix_path: Optional[str] = None       # a UNIX socket to wait for instead
    env: Dict[str, str] = field(default_factory=dict)
    cwd: Optional[str] = None
    role: str = "server"                  # "server" (the app server), or "proxy"


# --- the HTTP servers ---------------------------------------------------------

def _app(ctx, app):
    return app if isinstance(app, App) else App("bench_apps", app, ctx.bench_dir)


def _app_env(ctx, app=None, whitenoise=False):
    """PYTHONPATH for the app; BENCH_STATIC=whitenoise makes the Django project serve
    its static files itself (WhiteNoise), for servers that serve no files."""
    app = _app(ctx, app or "hello")
    env = {"PYTHONPATH": app.root, **dict(app.env)}
    if whitenoise and app.static_dir:
        env["BENCH_STATIC"] = "whitenoise"
    return env


def fastgw(ctx, app, tuning, extra=()):
    app = _app(ctx, app)
    argv = [ctx.bin("fastgw"), "serve", app.spec, "--bind", f"{HOST}:0",
            "--workers", str(tuning.workers), "--chdir", app.root, *extra]
    if tuning.threads:
        argv += ["--threads", str(tuning.threads)]
    if app.static_dir:
        argv += ["--static", f"/static/={app.static_dir}"]
    if tuning.idle:
        argv += ["--keepalive", "300"]
    return Launch(argv, port_from_log=LISTENING, env=_app_env(ctx, app))


def _gunicorn(ctx, app, tuning, worker):
    app = _app(ctx, app)
    argv = [ctx.bin("gunicorn"), "--workers", str(tuning.workers), "--worker-class", worker,
            "--bind", f"{HOST}:0", "--chdir", app.root]
    if worker == "gthread":
        argv += ["--threads", str(tuning.threads or 4)]
        if tuning.idle:
            argv += ["--keep-alive", "300", "--worker-connections", "2000"]
    return Launch(argv + [app.spec], port_from_log=LISTENING,
                  env=_app_env(ctx, app, whitenoise=True))


def gunicorn_sync(ctx, app, tuning):
    return _gunicorn(ctx, app, tuning, "sync")


def gunicorn_gthread(ctx, app, tuning):
    return _gunicorn(ctx, app, tuning, "gthread")


def _launcher(ctx, server, app, tuning):
    port = free_port()
    argv = [ctx.python, os.path.join(ctx.bench_dir, "launch.py"), server, f"bench_apps:{app}",
            "--host", HOST, "--port", str(port)]
    if server == "meinheld" and tuning.idle:
        argv += ["--keepalive", "300"]
    return Launch(argv, port=port, env=_app_env(ctx))


def bjoern(ctx, app, tuning):
    return _launcher(ctx, "bjoern", app, tuning)


def meinheld(ctx, app, tuning):
    return _launcher(ctx, "meinheld", app, tuning)


def fastwsgi(ctx, app, tuning):
    return _launcher(ctx, "fastwsgi", app, tuning)


def granian(ctx, app, tuning):
    app = _app(ctx, app)
    port = free_port()
    argv = [ctx.bin("granian"), "--interface", "wsgi", "--host", HOST, "--port", str(port),
            "--workers", str(tuning.workers), "--no-ws"]
    if tuning.threads:
        argv += ["--blocking-threads", str(tuning.threads)]
    if app.static_dir:
        argv += ["--static-path-route", "/static", "--static-path-mount", app.static_dir]
    return Launch(argv + [app.spec], port=port, env=_app_env(ctx, app), cwd=app.root)


def uwsgi(ctx, app, tuning):
    # --http-socket: uWSGI's own HTTP parser in the worker, no router process. It
    # answers one request per connection and closes it (wrk counts each close as
    # a read error). --http11-socket would keep connections open, but one
    # process then serves a single keep-alive connection while the other 49 wait.
    app = _app(ctx, app)
    port = free_port()
    argv = [ctx.bin("uwsgi"), "--http-socket", f"{HOST}:{port}",
            *_uwsgi_common(ctx, app, tuning)]
    if app.static_dir:
        argv += ["--static-map", f"/static={app.static_dir}"]
    return Launch(argv, port=port, env=_app_env(ctx, app))


def _uwsgi_common(ctx, app, tuning=Tuning()):
    app = _app(ctx, app)
    argv = ["--master", "--processes", str(tuning.workers), "--wsgi-file", app.wsgi_file,
            "--callable", app.callable, "--pythonpath", app.root, "--disable-logging",
            "--die-on-term", "--need-app"]
    if tuning.threads:
        argv += ["--threads", str(tuning.threads)]
    return argv


def waitress(ctx, app, tuning):
    app = _app(ctx, app)
    port = free_port()
    argv = [ctx.bin("waitress-serve"), "--host", HOST, "--port", str(port)]
    if tuning.threads:
        argv += ["--threads", str(tuning.threads)]
    if tuning.idle:
        # default: at most 100 connections, and select(), which stops at fd 1024
        argv += ["--connection-limit", "2000", "--asyncore-use-poll"]
    return Launch(argv + [app.spec], port=port, env=_app_env(ctx, app, whitenoise=True),
                  cwd=app.root)


def mod_wsgi(ctx, app, tuning):
    """mod_wsgi-express: Apache (event MPM) in front of mod_wsgi daemon processes.

    Apache will not serve as root, so its children and the daemon run as
    www-data when the harness is root (setup_env makes the interpreter reachable)."""
    app = _app(ctx, app)
    port = free_port()
    argv = [ctx.bin("mod_wsgi-express"), "start-server", app.wsgi_file, "--callable-object",
            app.callable, "--host", HOST, "--port", str(port), "--processes",
            str(tuning.workers), "--threads", str(tuning.threads or 5), "--server-root",
            os.path.join(ctx.scratch, f"mod_wsgi-{port}"), "--working-directory", app.root,
            "--python-path", app.root, "--locale", "C.UTF-8", "--log-to-terminal"]
    if app.static_dir:
        argv += ["--url-alias", "/static", app.static_dir]
    if os.geteuid() == 0:
        argv += ["--user", "www-data", "--group", "www-data"]
    return Launch(argv, port=port, env=_app_env(ctx, app))


# name -> (factory, pip distribution that provides it)
HTTP_SERVERS = {
    "fastgw": (fastgw, "fastgw"),
    "gunicorn-sync": (gunicorn_sync, "gunicorn"),
    "gunicorn-gthread": (gunicorn_gthread, "gunicorn"),
    "bjoern": (bjoern, "bjoern"),
    "meinheld": (meinheld, "meinheld"),
    "granian": (granian, "granian"),
    "uwsgi": (uwsgi, "uwsgi"),
    "waitress": (waitress, "waitress"),
    "fastwsgi": (fastwsgi, "fastwsgi"),
    "mod_wsgi": (mod_wsgi, "mod_wsgi"),
}


# --- what fastgw can do yet --------------------------------------------------

def fastgw_features(ctx):
    """Features the installed fastgw advertises in `fastgw serve --help`."""
    try:
        text = subprocess.run([ctx.bin("fastgw"), "serve", "--help"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    features = set()
    if "--static" in text:
        features.add("static")
    if "fastcgi://" in text:
        features.add("fastcgi")
    return features


# --- nginx ---------------------------------------------------------------------

NGINX_MAIN = """\
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_max_body_size 16m;
    default_type application/octet-stream;
{upstream}    server {{
        listen {host}:{port};
        server_name localhost;
{locations}
    }}
}}
"""

CGI_PARAMS = [
    ("QUERY_STRING", "$query_string"), ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"), ("CONTENT_LENGTH", "$content_length"),
    ("REQUEST_URI", "$request_uri"), ("SCRIPT_NAME", '""'), ("PATH_INFO", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"), ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"), ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"), ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"), ("SERVER_NAME", "$server_name"),
]


def nginx_locations_params(directive):
    return "\n".join(f"            {directive} {name} {value};" for name, value in CGI_PARAMS)


def nginx(tmp, locations, upstream=""):
    """nginx with one worker, configured in tmp, answering `locations`."""
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_MAIN.format(tmp=tmp, host=HOST, port=port, locations=locations,
                                  upstream=upstream))
    argv = [shutil.which("nginx") or "nginx", "-p", tmp, "-c", conf, "-e",
            os.path.join(tmp, "error.log"),
            "-g", "daemon off; master_process on; worker_processes 1;"]
    return Launch(argv, port=port, role="proxy")


def nginx_return_hello(tmp):
    return nginx(tmp, "        location / { default_type text/plain; "
                      "return 200 'Hello, World!'; }")


def nginx_static(tmp, static_dir):
    return nginx(tmp, f"        location /static/ {{ alias {static_dir}/; }}")


def nginx_uwsgi_pass(tmp, sock):
    return nginx(tmp, "        location / {\n"
                      f"            uwsgi_pass unix:{sock};\n"
                      f"{nginx_locations_params('uwsgi_param')}\n        }}")


def nginx_fastcgi_pass(tmp, sock):
    return nginx(tmp, "        location / {\n"
                      f"            fastcgi_pass unix:{sock};\n"
                      f"{nginx_locations_params('fastcgi_param')}\n        }}")


def nginx_fastcgi_keep_conn(tmp, sock):
    """fastcgi_pass over kept connections (an upstream keepalive pool, fastcgi_keep_conn)."""
    return nginx(tmp, f"        location / {{\n"
                      f"            fastcgi_pass app_pool;\n"
                      f"            fastcgi_keep_conn on;\n"
                      f"{nginx_locations_params('fastcgi_param')}\n        }}",
                 upstream=f"    upstream app_pool {{ server unix:{sock}; keepalive 16; }}\n")


def uwsgi_backend(ctx, app, sock):
    argv = [ctx.bin("uwsgi"), "--socket", sock, "--chmod-socket=666", *_uwsgi_common(ctx, app)]
    return Launch(argv, unix_path=sock, env=_app_env(ctx))


def flup_backend(ctx, app, sock):
    argv = [ctx.python, os.path.join(ctx.bench_dir, "launch.py"), "flup", f"bench_apps:{app}",
            "--unix", sock]
    return Launch(argv, unix_path=sock, env=_app_env(ctx))


def fastgw_backend(protocol):
    """fastgw speaking `protocol` (fastcgi, uwsgi) on a UNIX socket."""
    def backend(ctx, app, sock):
        argv = [ctx.bin("fastgw"), "serve", _app(ctx, app).spec, "--bind",
                f"{protocol}://unix:{sock}", "--workers", "1", "--chdir", ctx.bench_dir]
        return Launch(argv, unix_path=sock, env=_app_env(ctx))
    return backend


# --- a running stack -------------------------------------------------------------

class Stack:
    """Processes started in order (back end first), all pinned to `cpus`."""

    def __init__(self, launches, tmp, start_timeout=30.0, cpus=SERVER_CPU):
        self.launches = launches
        self.tmp = tmp
        self.cpus = cpus
        self.procs: List[Tuple[Launch, subprocess.Popen, str]] = []
        self.port = None
        self.start_timeout = start_timeout

    @property
    def commands(self):
        return [" ".join(_quote(a) for a in ["taskset", "-c", self.cpus, *l.argv])
                for l in self.launches]

    def start(self):
        for i, launch in enumerate(self.launches):
            log_path = os.path.join(self.tmp, f"server{i}.log")
            env = dict(os.environ)
            env.update(launch.env)
            log = open(log_path, "wb")
            proc = subprocess.Popen(["taskset", "-c", self.cpus, *launch.argv], env=env,
                                    cwd=launch.cwd or self.tmp, stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            self.procs.append((launch, proc, log_path))
            deadline = time.monotonic() + self.start_timeout
            alive = lambda p=proc: p.poll() is None
            try:
                port = self._wait_ready(launch, log_path, deadline, alive)
            except StartError as e:
                raise StartError(f"{os.path.basename(launch.argv[0])}: {e}; log: "
                                 f"{_tail(log_path)}") from None
            if port is not None:
                self.port = port

    @staticmethod
    def _wait_ready(launch, log_path, deadline, alive):
        if launch.unix_path:
            wait_until(lambda: accepts(launch.unix_path), deadline,
                       f"{launch.unix_path} to accept", alive)
            return None
        port = launch.port
        if port is None:
            pattern = re.compile(launch.port_from_log)

            def port_in_log():
                with open(log_path, errors="replace") as f:
                    m = pattern.search(f.read())
                return int(m.group(1)) if m else None
            port = wait_until(port_in_log, deadline, "the port in its log", alive)
        wait_until(lambda: accepts((HOST, port)), deadline, f"port {port} to accept", alive)
        return port

    def roots(self, role=None):
        return [p.pid for l, p, _ in self.procs if role is None or l.role == role]

    def pids(self):
        return [pid for root in self.roots() for pid in process_tree(root)]

    def cpu(self):
        return cpu_ticks(self.pids())

    def workers(self):
        """The app server's worker processes: children of its root, or the root alone."""
        out = []
        roots = self.roots("server") or self.roots()
        for root in roots:
            tree = process_tree(root)
            out.extend(tree[1:] or tree[:1])
        return out

    def rss(self):
        worker_rss = [rss_kib(pid) for pid in self.workers()]
        total = [rss_kib(pid) for pid in self.pids()]
        return ([r for r in worker_rss if r is not None], sum(r for r in total if r))

    def describe_tree(self):
        return [f"{pid} {process_name(pid)}" for pid in self.pids()]

    def exited(self):
        return [(os.path.basename(l.argv[0]), p.returncode) for l, p, _ in self.procs
                if p.poll() is not None]

    def logs(self):
        out = {}
        for launch, _, path in self.procs:
            with open(path, errors="replace") as f:
                out[os.path.basename(launch.argv[0])] = f.read()
        nginx_errors = os.path.join(self.tmp, "error.log")
        if os.path.exists(nginx_errors):
            with open(nginx_errors, errors="replace") as f:
                out["nginx error.log"] = f.read()
        return out

    def stop(self, timeout=5.0):
        """SIGTERM each root (front end first), then SIGKILL whatever of our trees is left."""
        trees = {p.pid: process_tree(p.pid) for _, p, _ in self.procs}
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for root, tree in trees.items():
            for pid in tree:
                try:
                    if _still_ours(pid, root):
                        os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _still_ours(pid, root):
    """pid is alive and still in the session we started root in (not a reused pid)."""
    try:
        return os.getsid(pid) == root
    except OSError:
        return False


def _tail(path, lines=12):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(no log)"


def _quote(arg):
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"
