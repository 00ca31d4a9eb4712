"""Side by side: a peer server (uWSGI, gunicorn) on its own configuration, and fastgw on
the fastgw.toml an importer made of that same file, asked the same requests.

* ``Peer``: the peer as a child process in its own process group, waited for by
  polling its socket (never by sleeping), stopped with its own stop signal and, if
  it lingers, SIGKILL to the whole group.
* ``imported``: runs ``fastgw import-*``, writes the TOML, checks it with
  ``fastgw check``, and returns the text.
* ``serve_imported``: fastgw serving that file (conftest's ``Server``), every listener
  of the file up.
* ``same_answers``: the same requests to both, statuses, chosen headers and bodies
  compared; the peer's answers are returned for assertions of their own.
"""
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from conftest import LISTEN_RE, Server
from fgwtest import fastgw_command, subprocess_env, wait_until

ON_CI = os.environ.get("CI") == "true"


def peer_binary(name):
    """The peer's command, installed next to the running interpreter (the test extra)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed; it is in the test extra (pip install -e '.[test]')"
    if ON_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port():
    """A port for a peer that must be told one (uWSGI, gunicorn); fastgw takes port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def fetch(address, method, path, body=None, headers=None, timeout=20):
    """(status, headers, body) of one request; `address` is a port or a UNIX socket path."""
    if isinstance(address, int):
        conn = http.client.HTTPConnection("127.0.0.1", address, timeout=timeout)
    else:
        conn = UnixHTTPConnection(address, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def accepts(address):
    family = socket.AF_INET if isinstance(address, int) else socket.AF_UNIX
    target = ("127.0.0.1", address) if isinstance(address, int) else address
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(target)
            return True
        except OSError:
            return False


class Peer:
    """uWSGI or gunicorn, started on a configuration file."""

    def __init__(self, cmd, cwd, log_path, env=None, stop_signal=signal.SIGINT):
        self.cmd = cmd
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=subprocess_env(**(env or {})))

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def wait_ready(self, address, probe="/", timeout=30):
        """Until `address` answers a request (the application is loaded)."""
        def answered():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.cmd[0]} exited with {self.proc.returncode}:\n"
                                     f"{self.log_text()[-4000:]}")
            if not accepts(address):
                return False
            if probe is None:
                return True
            try:
                return fetch(address, "GET", probe, timeout=10)[0] > 0
            except OSError:
                return False
        wait_until(answered, timeout, message=f"{self.cmd[0]} answering on {address}")
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers the master left behind
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self.log.close()


def import_command(command, *args, env=None, cwd=None):
    return subprocess.run(fastgw_command() + [command, *args], capture_output=True, text=True,
                          env=subprocess_env(**(env or {})), cwd=cwd, timeout=60)


def imported(command, source, toml_path, *args, env=None, cwd=None):
    """`fastgw COMMAND SOURCE` written to `toml_path`, which `fastgw check` accepts."""
    done = import_command(command, str(source), *args, env=env, cwd=cwd)
    assert done.returncode == 0, f"{command} {source} exited {done.returncode}:\n{done.stderr}"
    with open(toml_path, "w", encoding="utf-8") as fh:
        fh.write(done.stdout)
    checked = subprocess.run(fastgw_command() + ["check", "--config", str(toml_path)],
                             capture_output=True, text=True, timeout=60, cwd=cwd)
    assert checked.returncode == 0, f"fastgw check rejects {toml_path}:\n{checked.stderr}\n" \
                                    f"{done.stdout}"
    return done.stdout


def serve_imported(toml_path, listeners=1, cwd=None):
    """fastgw serving the imported file; `.listeners` holds its `Listening at:` lines
    (logged at level info, whatever log level the file sets)."""
    server = Server(None, ["--config", str(toml_path), "--log-level", "info"],
                    default_bind=False,
                    default_workers=False, chdir=None, cwd=cwd)
    server.wait_for_log(LISTEN_RE, count=listeners)
    server.listeners = [LISTEN_RE.search(line).group(1) for line in server.log_lines()
                        if LISTEN_RE.search(line)]
    return server


def beside(peer, address, probe, toml_path, listeners=1, cwd=None):
    """fastgw serving `toml_path` once `peer` answers on `address`; if either fails to
    start, the peer is stopped before the error goes on."""
    try:
        peer.wait_ready(address, probe)
        return serve_imported(toml_path, listeners, cwd=cwd)
    except BaseException:
        peer.stop()
        raise


def http_port(server):
    """The port of fastgw's first HTTP listener."""
    for listener in server.listeners:
        if listener.startswith("http://127.0.0.1:"):
            return int(listener.rsplit(":", 1)[1])
    raise AssertionError(f"no HTTP listener on 127.0.0.1: {server.listeners}")


def same_answers(peer_address, fastgw_address, requests, headers=("Content-Type",),
                 normalize=None):
    """Each (method, path[, body, request headers]) to both: same status, `headers` and
    body (after `normalize`, for what differs per answer whoever serves it). Returns the
    peer's (status, headers, body) per request."""
    answers = []
    for item in requests:
        method, path, body, sent = (tuple(item) + (None, None))[:4]
        theirs = fetch(peer_address, method, path, body, sent)
        ours = fetch(fastgw_address, method, path, body, sent)
        if normalize is not None:
            theirs, ours = [(a[0], a[1], normalize(a[2])) for a in (theirs, ours)]
        what = f"{method} {path}"
        assert ours[0] == theirs[0], f"{what}: fastgw {ours[0]}, peer {theirs[0]}: " \
                                     f"{ours[2][:300]!r} / {theirs[2][:300]!r}"
        for name in headers:
            mine, peers = ours[1].get(name), theirs[1].get(name)
            if name == "Content-Type" and mine and peers:
                # fastgw names the charset of text files; the media type must agree.
                mine, peers = mine.split(";")[0], peers.split(";")[0]
            assert mine == peers, f"{what}: {name}: fastgw {mine!r}, peer {peers!r}"
        assert ours[2] == theirs[2], f"{what}: bodies differ:\nfastgw {ours[2][:600]!r}\n" \
                                     f"peer   {theirs[2][:600]!r}"
        answers.append(theirs)
    return answers


def stopped(server):
    """Stop fastgw, failing the test if it does not stop cleanly."""
    error = server.cleanup()
    assert error is None, error



DJANGO_SETTINGS = '''
ALLOWED_HOSTS = ["*"]
DEBUG = False
STATIC_ROOT = BASE_DIR / "staticroot"
'''
# Django's login form carries a new CSRF token in each answer.
CSRF = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]+"')


def django_project(root):
    """startproject and collectstatic in `root` (no database: the pages asked for need none)."""
    try:
        import django  # noqa: F401 - only whether it is there
    except ImportError:
        message = "Django is not installed; it is in the test extra"
        if ON_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="mysite.settings", PYTHONPATH=str(root))
    for args in (["-m", "django", "startproject", "mysite", str(root)],
                 [str(root / "manage.py"), "collectstatic", "--noinput", "-v", "0"]):
        if "collectstatic" in args:
            with open(root / "mysite" / "settings.py", "a") as fh:
                fh.write(DJANGO_SETTINGS)
        done = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return root


def without_csrf(body):
    return CSRF.sub(rb'\1TOKEN"', body)


def without_unix_peer(body):
    """Over a UNIX socket there is no client address: uWSGI says 0.0.0.0, fastgw ''."""
    return re.sub(rb'"remote_addr": "[^"]*"', b'"remote_addr": "(unix)"', body)
