"""`fastgw import-gunicorn` against real gunicorn (the test extra's): each gunicorn.conf.py
is served by gunicorn and, translated, by fastgw, and both are asked the same requests:
same statuses and bodies, the same access log lines for the same log format, the same
scheme from X-Forwarded-Proto. The configuration files read their port (and paths) from
the environment, as many real ones do: the importer runs with PORT=0, so fastgw picks its
own port. Then the errors and the notes, which need no server.
"""
import os
import signal

import pytest

from fgwtest import APPS_DIR, RawConnection, read_lines, request, wait_until
from sidebyside import (Peer, beside, django_project, free_port, http_port, import_command,
                        imported, peer_binary, same_answers, serve_imported, stopped,
                        without_csrf)
from test_behind_nginx import adapt_snippet, doc_snippets, running_nginx
from test_import_uwsgi import APP_REQUESTS, write

PROXIED = {"X-Forwarded-Proto": "https", "X-Test": "through a proxy"}


def gunicorn(conf, tmp, env, app=None):
    cmd = [peer_binary("gunicorn"), "--config", str(conf)] + ([app] if app else [])
    return Peer(cmd, str(tmp), str(tmp / "gunicorn.log"), env=env, stop_signal=signal.SIGINT)


def serve_both(tmp, conf_text, app=None, env=None, ours=None, theirs=None, probe="/",
               listeners=1):
    """gunicorn and fastgw on the same file; `ours`/`theirs`: environment of each side
    (the file's paths, so the two do not share a log or a socket)."""
    conf = write(tmp / "gunicorn.conf.py", conf_text)
    toml = imported("import-gunicorn", conf, tmp / "fastgw.toml", *([app] if app else []),
                    env={"PORT": "0", **(env or {}), **(ours or {})}, cwd=str(tmp))
    port = free_port()
    peer = gunicorn(conf, tmp, {"PORT": str(port), **(env or {}), **(theirs or {})}, app)
    server = beside(peer, port, probe, tmp / "fastgw.toml", listeners, cwd=str(tmp))
    return peer, port, server, toml


@pytest.fixture
def site(tmp_path):
    write(tmp_path / "app" / "importapp.py",
          open(os.path.join(APPS_DIR, "importapp.py")).read())
    return tmp_path


def test_access_log_format_and_forwarded_ips(site):
    peer, port, server, toml = serve_both(site, f"""
import os
bind = "127.0.0.1:" + os.environ["PORT"]
workers = 2
pythonpath = "{site}/app"
accesslog = os.environ["ACCESS_LOG"]
access_log_format = ('%(h)s %(l)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(m)s %(U)s %(H)s '
                     '"%({{x-test}}i)s" 100%%')
forwarded_allow_ips = "127.0.0.1"
raw_env = ["IMPORT_TEST_ENV=from raw_env"]
""", app="importapp:application", ours={"ACCESS_LOG": str(site / "ours.log")},
        theirs={"ACCESS_LOG": str(site / "theirs.log")})
    try:
        # No HEAD: what gunicorn logs as its size changed (gunicorn 23: the Content-Length,
        # 27: the 0 bytes sent, as fastgw's %B).
        requests = [r for r in APP_REQUESTS if r[0] != "HEAD"] + [
            ("GET", "/behind?proxy=1", None, PROXIED),
            ("GET", "/refer", None, {"Referer": "http://example.com/", "User-Agent": "t/1"})]
        answers = same_answers(port, http_port(server), requests)
        assert b'"scheme": "https"' in answers[-2][2]
        assert b'"env": "from raw_env"' in answers[0][2]
        # gunicorn logs the probe of wait_ready too.
        wanted = len(requests)
        wait_until(lambda: len(read_lines(site / "theirs.log")) >= wanted + 1, 15,
                   message="gunicorn's access log lines")
        wait_until(lambda: len(read_lines(site / "ours.log")) >= wanted, 15,
                   message="fastgw's access log lines")
        # two workers each write their own lines, as their responses complete: the order
        # between processes is not the order of the requests, so compare the sets
        theirs = read_lines(site / "theirs.log")[-wanted:]
        ours = read_lines(site / "ours.log")[-wanted:]
        assert sorted(ours) == sorted(theirs)
        assert any(line.endswith('"t/1" GET /refer HTTP/1.1 "-" 100%') for line in theirs)
    finally:
        peer.stop()
        stopped(server)


def test_django_with_gthread_workers(tmp_path):
    root = django_project(tmp_path / "project")
    peer, port, server, toml = serve_both(tmp_path, f"""
import os
wsgi_app = "mysite.wsgi:application"
chdir = "{root}"
pythonpath = "{root}"
raw_env = ["DJANGO_SETTINGS_MODULE=mysite.settings"]
bind = ["127.0.0.1:%s" % os.environ["PORT"]]
worker_class = "gthread"
workers = 2
threads = 4
timeout = 60
graceful_timeout = 10
keepalive = 5
max_requests = 500
max_requests_jitter = 50
loglevel = "warning"
preload_app = True

def post_fork(server, worker):
    server.log.info("worker %s forked", worker.pid)

def when_ready(server):
    pass
""", probe="/admin/login/")
    try:
        same_answers(port, http_port(server), [
            ("GET", "/admin/login/?next=/admin/"), ("GET", "/admin/"),
            ("GET", "/nothing-here/"), ("GET", "/admin/login/", None, {"Accept-Language": "de"}),
        ], headers=("Content-Type", "Location", "Content-Language"), normalize=without_csrf)
        for line in ("threads = 4", "max_requests_jitter = 50", 'log_level = "warning"',
                     "post_fork(): gunicorn's hook is not run", "when_ready(): ",
                     "preload_app = True: nothing to do"):
            assert line in toml, toml
    finally:
        peer.stop()
        stopped(server)


def test_unix_socket_and_sync_worker(site):
    conf = write(site / "gunicorn.conf.py", f"""
import os
bind = "unix:" + os.environ["SOCK"]
worker_class = "sync"
workers = 2
pythonpath = "{site}/app"
wsgi_app = "importapp:application"
limit_request_line = 4094
limit_request_fields = 50
backlog = 64
pidfile = os.environ["SOCK"] + ".pid"
umask = 0o007
""")
    ours, theirs = site / "ours.sock", site / "theirs.sock"
    toml = imported("import-gunicorn", conf, site / "fastgw.toml", env={"SOCK": str(ours)})
    peer = gunicorn(conf, site, {"SOCK": str(theirs)})
    server = None
    try:
        peer.wait_ready(str(theirs))
        server = serve_imported(site / "fastgw.toml", cwd=str(site))
        same_answers(str(theirs), str(ours), APP_REQUESTS)
        assert os.path.exists(f"{ours}.pid") and os.path.exists(f"{theirs}.pid")
        assert "limit_request_line = 4094" in toml and "backlog = 64" in toml
        assert "umask = 7: not translated" in toml
    finally:
        peer.stop()
        if server is not None:
            stopped(server)


def test_settings_computed_by_python(site):
    """A file that computes its settings (two binds, a branch on the environment,
    cpu_count): the importer sees what gunicorn sees, because it runs the file too."""
    second = free_port()
    peer, port, server, toml = serve_both(site, f"""
import multiprocessing
import os

bind = ["127.0.0.1:" + os.environ["PORT"], "127.0.0.1:" + os.environ["SECOND"]]
workers = min(multiprocessing.cpu_count(), 2)
if os.environ.get("FLAVOUR") == "blue":
    raw_env = ["IMPORT_TEST_ENV=" + os.environ["FLAVOUR"]]
else:
    raw_env = []
pythonpath = ",".join(["{site}/app", "{site}/nowhere"])
wsgi_app = "importapp:second"
helper_value = 42
""", env={"FLAVOUR": "blue"}, ours={"SECOND": "0"}, theirs={"SECOND": str(second)},
        listeners=2)
    try:
        ports = [int(line.rsplit(":", 1)[1]) for line in server.listeners
                 if line.startswith("http://")]
        assert len(set(ports)) == 2, server.listeners
        for mine, theirs in zip(ports, (port, second)):
            answers = same_answers(theirs, mine, APP_REQUESTS)
            assert b'"app": "second"' in answers[0][2] and b'"env": "blue"' in answers[0][2]
        assert "helper_value: not a gunicorn setting" in toml
    finally:
        peer.stop()
        stopped(server)


def needs_setting(name):
    """Skip where the installed gunicorn predates `name` (Python 3.9 gets gunicorn 23)."""
    import gunicorn
    from gunicorn.config import KNOWN_SETTINGS

    if name not in {setting.name for setting in KNOWN_SETTINGS}:
        pytest.skip(f"gunicorn {gunicorn.__version__}, the newest for this Python, has no "
                    f"{name} setting")


def test_uwsgi_protocol_behind_nginx(site):
    """gunicorn's `protocol = "uwsgi"` behind nginx's uwsgi_pass block of
    docs/deployment.md, and fastgw's uwsgi:// listener behind the same block."""
    needs_setting("protocol")
    conf = write(site / "gunicorn.conf.py", f"""
import os
bind = "127.0.0.1:" + os.environ["PORT"]
protocol = "uwsgi"
workers = 2
pythonpath = "{site}/app"
wsgi_app = "importapp:application"
""")
    toml = imported("import-gunicorn", conf, site / "fastgw.toml", env={"PORT": "0"})
    assert 'bind = ["uwsgi://127.0.0.1:0"]' in toml
    port = free_port()
    peer = gunicorn(conf, site, {"PORT": str(port)})
    server = None
    try:
        peer.wait_ready(port, probe=None)
        server = serve_imported(site / "fastgw.toml", cwd=str(site))
        ours = next(l for l in server.listeners if l.startswith("uwsgi://"))[len("uwsgi://"):]
        ports = {"peer": free_port(), "fastgw": free_port()}
        block = doc_snippets()["uwsgi-tcp"]
        blocks = [adapt_snippet("uwsgi-tcp", block, {"uwsgi-tcp": address}, ports[name])
                  for name, address in (("peer", f"127.0.0.1:{port}"), ("fastgw", ours))]
        (site / "nginx").mkdir()
        with running_nginx(str(site / "nginx"), blocks, ports):
            answers = same_answers(ports["peer"], ports["fastgw"], APP_REQUESTS)
            assert b'"remote_addr": "127.0.0.1"' in answers[0][2]
    finally:
        peer.stop()
        if server is not None:
            stopped(server)


def test_proxy_protocol(site):
    """A load balancer's PROXY protocol v1 header: both take the client address from it."""
    peer, port, server, toml = serve_both(site, f"""
import os
bind = "127.0.0.1:" + os.environ["PORT"]
proxy_protocol = True
proxy_allow_ips = "127.0.0.1"
pythonpath = "{site}/app"
wsgi_app = "importapp:application"
""", probe=None)
    try:
        assert "proxy_protocol = true" in toml
        answers = []
        for address in (port, http_port(server)):
            with RawConnection(address) as conn:
                conn.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n" +
                          request("GET", "/via/balancer?x=1"))
                answers.append(conn.read_response())
        assert [a.status for a in answers] == [200, 200]
        assert answers[0].body == answers[1].body
        assert answers[0].json()["remote_addr"] == "203.0.113.7"
    finally:
        peer.stop()
        stopped(server)


def test_every_setting_of_the_installed_gunicorn_has_a_rule():
    """The table covers the gunicorn the tests run (a new release's settings show here)."""
    from gunicorn.config import KNOWN_SETTINGS

    from fastgw.gunicornconf import RULES
    assert [s.name for s in KNOWN_SETTINGS if RULES.find(s.name) is None] == []


def run_import(tmp_path, text, *args):
    path = write(tmp_path / "gunicorn.conf.py", text)
    return path, import_command("import-gunicorn", str(path), *args)


@pytest.mark.parametrize("text, line, message", [
    ('bind = "0.0.0.0:443"\ncertfile = "/etc/ssl/site.pem"\n', 2, "fastgw serves HTTPS with"),
    ('worker_class = "uvicorn.workers.UvicornWorker"\n', 1, "an ASGI worker"),
    ('worker_class = "mypackage.CustomWorker"\n', 1, "cannot stand in for"),
    ('workers = "many"\n', 1, "must be a number"),
    ('import os\n\nworkers = int(os.environ["NOPE"])\n', 3, "KeyError"),
    ('raw_env = ["NOEQUALS"]\n', 1, "is not KEY=VALUE"),
])
def test_what_would_change_the_site_is_an_error(tmp_path, text, line, message):
    path, done = run_import(tmp_path, text, "app:application")
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.startswith(f"fastgw: error: {path}:{line}: "), done.stderr
    assert message in done.stderr


def test_notes_and_what_gunicorn_does_by_default(tmp_path):
    path, done = run_import(tmp_path, """
worker_class = "gevent"
worker_connections = 500
statsd_host = "localhost:8125"
daemon = True

def on_starting(server):
    pass
""")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"# {path}:2: worker_class = 'gevent': fastgw has no event-loop workers" in out
    assert f"# {path}:4: statsd_host = 'localhost:8125': not translated" in out
    assert f"# {path}:5: daemon = True: fastgw stays in the foreground" in out
    assert f"# {path}:7: on_starting(): gunicorn's hook is not run" in out
    assert "max_connections = 500" in out
    # gunicorn's defaults that fastgw does not share; no APP: a note says how to give it.
    assert "workers = 1" in out and 'forwarded_allow_ips = ["127.0.0.1", "::1"]' in out
    assert "no wsgi_app" in out and "[[mount]]" not in out
    path, done = run_import(tmp_path, 'bind = [":8000", "localhost", "tcp://[::1]:9000"]\n')
    assert 'bind = ["0.0.0.0:8000", "localhost:8000", "[::1]:9000"]' in done.stdout
    done = import_command("import-gunicorn", str(tmp_path / "missing.py"))
    assert done.returncode == 2 and "cannot read it" in done.stderr
