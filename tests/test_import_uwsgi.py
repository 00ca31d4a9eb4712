"""`fastgw import-uwsgi` against real uWSGI (the PyPI build of the test extra): each
configuration is served by uWSGI from the ini and by fastgw from what the importer made
of the same ini, and both are asked the same requests: same statuses, bodies, static
files and mounts. uWSGI is told a free port through $(PORT); the importer reads PORT=0,
so fastgw picks its own port. Then the errors and the notes, which need no server.
"""
import os
import re
import signal

import pytest

from sidebyside import (Peer, beside, django_project, fetch, free_port, http_port,
                        import_command, imported, peer_binary, same_answers, serve_imported,
                        stopped, without_csrf, without_unix_peer)
from fgwtest import APPS_DIR
from test_behind_nginx import adapt_snippet, doc_snippets, running_nginx

APP_REQUESTS = [
    ("GET", "/"), ("GET", "/a/b?x=1&y=%C3%A9"), ("GET", "/status/404"), ("GET", "/status/503"),
    ("GET", "/big"), ("POST", "/echo", b"x" * 300000, {"Content-Type": "text/plain"}),
    ("GET", "/with-header", None, {"X-Test": "hello"}), ("HEAD", "/"),
]


def uwsgi(ini, tmp, port, env=None):
    """uWSGI on `ini`, told its port through $(PORT)."""
    peer = Peer([peer_binary("uwsgi"), "--ini", str(ini)], str(tmp), str(tmp / "uwsgi.log"),
                env={"PORT": str(port), **(env or {})}, stop_signal=signal.SIGINT)
    return peer


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def serve_both(tmp, ini_text, port_probe="/", env=None, listeners=1):
    """uWSGI and fastgw on the same ini; (peer, fastgw server, the imported TOML)."""
    ini = write(tmp / "site.ini", ini_text)
    toml = imported("import-uwsgi", ini, tmp / "fastgw.toml", env={"PORT": "0", **(env or {})},
                    cwd=str(tmp))
    port = free_port()
    peer = uwsgi(ini, tmp, port, env)
    server = beside(peer, port, port_probe, tmp / "fastgw.toml", listeners, cwd=str(tmp))
    return peer, port, server, toml


@pytest.fixture
def site(tmp_path):
    """A directory with the test application and some static files."""
    app = tmp_path / "app"
    app.mkdir()
    with open(os.path.join(APPS_DIR, "importapp.py")) as src:
        (app / "importapp.py").write_text(src.read())
    write(tmp_path / "static" / "hello.txt", "hello from static\n")
    write(tmp_path / "static" / "css" / "site.css", "body { color: red }\n" * 50)
    return tmp_path


def test_django_project_with_static_map(tmp_path):
    root = django_project(tmp_path / "project")
    peer, port, server, toml = serve_both(tmp_path, f"""
[uwsgi]
chdir = {root}
module = mysite.wsgi:application
env = DJANGO_SETTINGS_MODULE=mysite.settings
master = true
processes = 2
http-socket = 127.0.0.1:$(PORT)
static-map = /static=%(chdir)/staticroot
vacuum = true
die-on-term = true
harakiri = 30
""", port_probe="/admin/login/")
    try:
        assert 'app = "mysite.wsgi:application"' in toml
        same_answers(port, http_port(server), [
            ("GET", "/admin/login/?next=/admin/"), ("GET", "/admin/"),
            ("GET", "/static/admin/css/base.css"), ("GET", "/static/admin/img/icon-yes.svg"),
            ("GET", "/admin/login/", None, {"Accept-Language": "fr"}),
        ], headers=("Content-Type", "Location", "Content-Language"), normalize=without_csrf)
        # A file static-map does not have: uWSGI asks Django (404), fastgw says 404 itself.
        for address in (port, http_port(server)):
            assert fetch(address, "GET", "/static/nope.css")[0] == 404
    finally:
        peer.stop()
        stopped(server)


def test_two_applications_mounted(site):
    peer, port, server, toml = serve_both(site, f"""
[uwsgi]
pythonpath = {site}/app
mount = /one=importapp:application
mount = /two={site}/app/importapp.py
callable = second
manage-script-name = true
master = true
processes = 2
threads = 2
http-socket = 127.0.0.1:$(PORT)
""", port_probe="/one/")
    try:
        requests = [(method, prefix + path, *rest) for prefix in ("/one", "/two")
                    for method, path, *rest in APP_REQUESTS]
        answers = same_answers(port, http_port(server), requests + [
            ("GET", "/one"), ("GET", "/two"), ("GET", "/two/x/"),
            # Below no mount point: uWSGI's first application, with SCRIPT_NAME "".
            ("GET", "/onex"), ("GET", "/")])
        assert b'"script_name": "/two"' in answers[len(APP_REQUESTS) + 1][2]
        assert 'threads = 2' in toml and 'workers = 2' in toml
        assert "without manage-script-name" not in toml
    finally:
        peer.stop()
        stopped(server)


def test_ini_features_and_static_options(site):
    """Sections, an include, placeholders, the environment, wsgi-file, static-map2,
    check-static, a static route, static-index, the HTTP router option."""
    write(site / "public" / "assets" / "app.css", "h1 { margin: 0 }\n")
    write(site / "htdocs" / "robots.txt", "User-agent: *\nDisallow:\n")
    write(site / "htdocs" / "favicon.ico", "icon")
    write(site / "media" / "photos" / "a.txt", "a photo\n")
    write(site / "media" / "index.html", "<h1>media</h1>\n")
    write(site / "common.ini", """
[uwsgi]
master = true
processes = 2
vacuum = true
die-on-term = true
lazy-apps = true
offload-threads = 2
cheaper = 1
buffer-size = 32768
max-requests = 1000
reload-on-rss = 512
""")
    peer, port, server, toml = serve_both(site, """
[production]
socket = /nowhere.sock

[uwsgi]
base = %d
ini = common.ini
chdir = %(base)
wsgi-file = %(base)app/importapp.py
env = IMPORT_TEST_ENV=$(FLAVOUR)
http = 127.0.0.1:$(PORT)
static-map2 = /assets=%(base)public
check-static = %(base)htdocs
route = ^/media/(.*)$ static:%(base)media/$1
static-index = index.html
harakiri = 20
""", env={"FLAVOUR": "blue"})
    try:
        answers = same_answers(port, http_port(server), APP_REQUESTS + [
            ("GET", "/assets/app.css"), ("GET", "/robots.txt"), ("GET", "/favicon.ico"),
            ("GET", "/media/photos/a.txt"), ("GET", "/static/hello.txt")])
        assert b'"env": "blue"' in answers[0][2]
        for line in ("# %s:%d: cheaper = 1: no equivalent" % (site / "common.ini", 9),
                     "# %s:10: $(FLAVOUR) was 'blue'" % (site / "site.ini"),
                     'limit_request_head = 32768', 'timeout = 20',
                     'reload_on_rss = 512'):
            assert line in toml, toml
    finally:
        peer.stop()
        stopped(server)


def test_threads_and_a_socket_speaking_http(site):
    """`protocol = http` on a `socket`, threads, harakiri, several env lines, a route to
    one file, post-buffering."""
    write(site / "static" / "robots.txt", "User-agent: *\n")
    peer, port, server, toml = serve_both(site, f"""
[uwsgi]
module = importapp
pythonpath = {site}/app
protocol = http
socket = 127.0.0.1:$(PORT)
processes = 1
threads = 4
enable-threads = true
harakiri = 45
post-buffering = 8192
env = IMPORT_TEST_ENV=threaded
env = OTHER_ENV=x=y
route = ^/robots.txt$ static:{site}/static/robots.txt
""")
    try:
        answers = same_answers(port, http_port(server), APP_REQUESTS + [
            ("GET", "/robots.txt/x")])
        # uWSGI's static: route action sends no Content-Type; fastgw's file mount does.
        same_answers(port, http_port(server), [("GET", "/robots.txt")], headers=())
        assert b'"env": "threaded"' in answers[0][2]
        assert 'env = {"IMPORT_TEST_ENV" = "threaded", "OTHER_ENV" = "x=y"}' in toml
        assert "threads = 4" in toml and "timeout = 45" in toml
    finally:
        peer.stop()
        stopped(server)


def test_unix_socket_with_chmod(site):
    peer_sock, ours = site / "peer.sock", site / "fastgw.sock"
    write(site / "socket.ini", f"""
[uwsgi]
module = importapp
pythonpath = {site}/app
http-socket = $(SOCK)
chmod-socket = 660
static-map = /static={site}/static
""")
    imported("import-uwsgi", site / "socket.ini", site / "fastgw.toml", env={"SOCK": str(ours)})
    peer = Peer([peer_binary("uwsgi"), "--ini", str(site / "socket.ini")], str(site),
                str(site / "uwsgi.log"), env={"SOCK": str(peer_sock)})
    server = None
    try:
        peer.wait_ready(str(peer_sock))
        server = serve_imported(site / "fastgw.toml", cwd=str(site))
        same_answers(str(peer_sock), str(ours), APP_REQUESTS + [
            ("GET", "/static/hello.txt"), ("GET", "/static/css/site.css")],
            normalize=without_unix_peer)
        assert oct(os.stat(ours).st_mode & 0o777) == oct(os.stat(peer_sock).st_mode & 0o777) \
            == oct(0o660)
    finally:
        peer.stop()
        if server is not None:
            stopped(server)


def test_socket_behind_nginx_uwsgi_pass(site):
    """The ini of a site behind nginx (`socket` over TCP and a UNIX socket): nginx's
    uwsgi_pass blocks of docs/deployment.md, unchanged but for the addresses, in front
    of uWSGI and in front of fastgw, answer alike."""
    ours, theirs = site / "ours", site / "theirs"
    ours.mkdir()
    theirs.mkdir()
    ini = write(site / "site.ini", f"""
[uwsgi]
module = importapp:application
pythonpath = {site}/app
socket = 127.0.0.1:$(PORT)
socket = $(SOCKDIR)/uwsgi.sock
static-map = /static={site}/static
processes = 2
master = true
""")
    toml = imported("import-uwsgi", ini, site / "fastgw.toml",
                    env={"PORT": "0", "SOCKDIR": str(ours)})
    assert "uwsgi_pass" in toml
    port = free_port()
    peer = Peer([peer_binary("uwsgi"), "--ini", str(ini)], str(site), str(site / "uwsgi.log"),
                env={"PORT": str(port), "SOCKDIR": str(theirs)})
    server = None
    try:
        peer.wait_ready(port, probe=None)
        peer.wait_ready(str(theirs / "uwsgi.sock"), probe=None)
        server = serve_imported(site / "fastgw.toml", listeners=2, cwd=str(site))
        tcp = next(l for l in server.listeners if l.startswith("uwsgi://127.0.0.1:"))
        upstreams = {"peer-tcp": ("uwsgi-tcp", f"127.0.0.1:{port}"),
                     "peer-unix": ("uwsgi-unix", f"unix:{theirs}/uwsgi.sock"),
                     "fastgw-tcp": ("uwsgi-tcp", tcp[len("uwsgi://"):]),
                     "fastgw-unix": ("uwsgi-unix", f"unix:{ours}/uwsgi.sock")}
        ports = {name: free_port() for name in upstreams}
        snippets = doc_snippets()
        blocks = [adapt_snippet(doc, snippets[doc], {doc: address}, ports[name])
                  for name, (doc, address) in upstreams.items()]
        nginx_dir = site / "nginx"
        nginx_dir.mkdir()
        with running_nginx(str(nginx_dir), blocks, ports) as nginx:
            for transport in ("tcp", "unix"):
                same_answers(ports["peer-" + transport], ports["fastgw-" + transport],
                             APP_REQUESTS + [("GET", "/static/hello.txt"),
                                             ("GET", "/static/css/site.css")])
            errors = [line for line in nginx.error_log_text().splitlines()
                      if "[error]" in line or "[crit]" in line]
            assert not errors, errors
    finally:
        peer.stop()
        if server is not None:
            stopped(server)


def run_import(tmp_path, text, name="site.ini", **env):
    path = write(tmp_path / name, text)
    return path, import_command("import-uwsgi", str(path), env=env)


@pytest.mark.parametrize("line, message", [
    ("plugin = php", "the php plugin has no fastgw equivalent"),
    ("route = ^/old$ redirect:/new", "only ^/PREFIX/(.*) static:DIR/$1"),
    ("add-header = X-Frame-Options: DENY", "does not add response headers"),
    ("attach-daemon = celery worker", "runs no background tasks"),
    ("https = :443,foo.crt,foo.key", "fastgw serves HTTPS with"),
    ("if-env = HOME", "logic blocks"),
    ("yaml = other.yml", "only ini files are read"),
    ("processes = many", "must be a whole number"),
    ("http-socket = @abstract", "fastgw listens on HOST:PORT, :PORT or a UNIX socket path"),
])
def test_what_would_change_the_site_is_an_error(tmp_path, line, message):
    path, done = run_import(tmp_path, f"[uwsgi]\nmodule = app\n{line}\n")
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.startswith(f"fastgw: error: {path}:3: "), done.stderr
    assert message in done.stderr


def test_unreadable_or_sectionless_files(tmp_path):
    done = import_command("import-uwsgi", str(tmp_path / "missing.ini"))
    assert done.returncode == 2 and "cannot read it" in done.stderr
    path, done = run_import(tmp_path, "[app]\nmodule = x\n")
    assert done.returncode == 2 and f"{path}: no [uwsgi] section" in done.stderr
    done = import_command("import-uwsgi", f"{path}:app")
    assert done.returncode == 0 and 'app = "x:application"' in done.stdout
    path, done = run_import(tmp_path, "[uwsgi]\nmaster = true\n")
    assert done.returncode == 2 and "nothing to serve" in done.stderr
    path, done = run_import(tmp_path, "[uwsgi]\nini = site.ini\nmodule = x\n")
    assert done.returncode == 2 and "includes itself" in done.stderr
    path, done = run_import(tmp_path, "[uwsgi]\nmodule = x\nsocket = run/app.sock\n")
    assert f'bind = ["uwsgi://unix:{os.getcwd()}/run/app.sock"]' in done.stdout, done.stdout
    path, done = run_import(tmp_path, "[uwsgi]\nmount = /a=x:app\n")
    assert done.returncode == 0 and f"# {path}:2: mount without manage-script-name" in done.stdout


def test_notes_name_file_and_line(tmp_path):
    path, done = run_import(tmp_path, """[uwsgi]
module = mysite.wsgi
socket = 127.0.0.1:3031
reload-on-as = 200
cheaper-algo = spare
frobnicate = yes
master = true
virtualenv = /srv/venv
""")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    notes = [line for line in lines if re.match(rf"# {re.escape(str(path))}:\d+: ", line)]
    assert [n.split(":")[1] for n in notes] == ["4", "5", "6", "7", "8"], notes
    assert "reload-on-as = 200: no equivalent: fastgw watches resident memory" in notes[0]
    assert "frobnicate = yes: not translated" in notes[2]
    assert "/srv/venv/bin/fastgw" in notes[4]
    assert any("uwsgi_pass" in line for line in lines)
    assert 'bind = ["uwsgi://127.0.0.1:3031"]' in done.stdout
    # uWSGI's defaults, where fastgw's differ.
    assert "workers = 1" in done.stdout and "timeout = 0" in done.stdout
    assert re.search(r"^# .*no harakiri", done.stdout, re.M)


def test_socket_site_passes_check(tmp_path):
    """A typical Django ini behind nginx (UNIX socket, stats; FastCGI and SCGI sockets
    too): `fastgw check` accepts it."""
    (tmp_path / "static").mkdir()
    write(tmp_path / "site.ini", f"""[uwsgi]
chdir = {tmp_path}
module = mysite.wsgi:application
socket = {tmp_path}/app.sock
chmod-socket = 664
static-map = /static={tmp_path}/static
stats = 127.0.0.1:9191
fastcgi-socket = 127.0.0.1:9000
scgi-socket = {tmp_path}/scgi.sock
""")
    toml = imported("import-uwsgi", tmp_path / "site.ini", tmp_path / "fastgw.toml")
    assert 'unix_socket_mode = "0664"' in toml
    assert f'bind = ["fastcgi://127.0.0.1:9000", "scgi://unix:{tmp_path}/scgi.sock", ' \
           f'"uwsgi://unix:{tmp_path}/app.sock"]' in toml
    assert 'metrics = "127.0.0.1:9191"' in toml
