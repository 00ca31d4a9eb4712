"""Process groups (mod_wsgi daemon mode) with the real server.

* docs/gateway.md's recipe as written: two real Django sites with conflicting
  settings modules in two groups, one with its own virtualenv holding a package the
  main environment lacks, Django's own modwsgi check_password run in a group;
* requests through a group: SCRIPT_NAME/PATH_INFO, headers, REMOTE_ADDR, a 4 MiB
  POST echoed with sha256, a chunked response, HEAD, Set-Cookie twice;
* auth hooks in a group (importable only there), with require_group;
* a killed group worker is replaced while the other group keeps answering;
* SIGHUP reloads the groups' code; a group app that cannot be imported stops the
  start with its error; a request running past --timeout gets 504;
* config errors name the mount or group to fix.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fgwtest import basic_auth, fastgw_command, http_request, pid_alive, wait_until
from test_upstream import doc_recipe

GROUP_BOOT_RE = r"Booting process group '%s' worker with pid: (\d+)"

PROBE_APP = '''
import hashlib, json, os, sys, time

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        data = environ["wsgi.input"].read()
        body = json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body.encode()]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"%05d\\n" % i for i in range(2000))
    if path == "/cookies":
        start_response("201 Created", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                       ("Content-Length", "2")])
        return [b"ok"]
    if path == "/sleep":
        time.sleep(60)
    if path == "/version":
        with open(os.environ["PROBE_VERSION_FILE"]) as f:
            body = f.read().encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD", "REMOTE_ADDR",
            "HTTP_X_PROBE", "REMOTE_USER", "wsgi.url_scheme", "SERVER_PROTOCOL", "HTTP_HOST",
            "HTTP_X_REQUEST_ID")
    body = json.dumps({"environ": {k: environ.get(k) for k in keys}, "pid": os.getpid(),
                       "site": os.environ.get("PROBE_SITE"), "cwd": os.getcwd(),
                       "only_here": "probe_hooks" in sys.modules or _hooks_importable()})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]

def _hooks_importable():
    try:
        import probe_hooks  # noqa: F401
        return True
    except ImportError:
        return False
'''

HOOKS = '''
import os

USERS = {"ann": "pw-ann", "bob": "pw-bob"}
GROUPS = {"ann": ["staff"], "bob": []}

def check_password(environ, user, password):
    assert os.environ["PROBE_SITE"] == "hooks-site"   # runs in the group's processes
    if user not in USERS:
        return None
    return USERS[user] == password

def groups_for_user(environ, user):
    return GROUPS.get(user, [])
'''


def write_tree(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(textwrap.dedent(text))


def group_pids(srv, name):
    import re
    pattern = re.compile(GROUP_BOOT_RE % name)
    return [int(m.group(1)) for m in map(pattern.search, srv.log_lines()) if m]


def probe_config(tmp_path, extra_server="", extra=""):
    site_a = tmp_path / "site_a"
    site_b = tmp_path / "site_b"
    write_tree(str(site_a), {"probeapp.py": PROBE_APP})
    write_tree(str(site_b), {"probeapp.py": PROBE_APP, "probe_hooks.py": HOOKS})
    version = tmp_path / "version.txt"
    version.write_text("v1")
    config = tmp_path / "fastgw.toml"
    config.write_text(f"""
[server]
bind = "127.0.0.1:0"
workers = 1
{extra_server}

[[group]]
name = "a"
processes = 2
threads = 2
python_path = ["{site_a}"]
env = {{ PROBE_SITE = "site-a", PROBE_VERSION_FILE = "{version}" }}

[[group]]
name = "b"
python_path = ["{site_b}"]
chdir = "{site_b}"
env = {{ PROBE_SITE = "hooks-site" }}

[[mount]]
path = "/a"
app = "probeapp:application"
group = "a"

[[mount]]
path = "/b/deep"
app = "probeapp:application"
group = "b"
auth = {{ realm = "B", check_password = "probe_hooks:check_password", group = "b" }}

[[mount]]
path = "/staff"
app = "probeapp:application"
group = "b"
auth = {{ realm = "Staff", check_password = "probe_hooks:check_password", groups_for_user = "probe_hooks:groups_for_user", require_group = "staff", group = "b" }}
{extra}
""")
    return config, version


@pytest.fixture
def probe(start_server, tmp_path):
    config, version = probe_config(tmp_path)
    srv = start_server("", "--config", str(config), default_bind=False, default_workers=False,
                       chdir=None)
    srv.wait_for_workers(4)
    return srv, version


def test_group_request_sees_what_an_in_process_app_sees(probe):
    srv, _ = probe
    resp = http_request(srv.port, "GET", "/a/x/y%20z?q=1", headers={"X-Probe": "yes"})
    assert resp.status == 200, resp.body
    info = json.loads(resp.body)
    assert info["site"] == "site-a"
    assert info["pid"] in group_pids(srv, "a")
    assert info["environ"] == {
        "SCRIPT_NAME": "/a", "PATH_INFO": "/x/y z", "QUERY_STRING": "q=1",
        "REQUEST_METHOD": "GET", "REMOTE_ADDR": "127.0.0.1", "HTTP_X_PROBE": "yes",
        "REMOTE_USER": None, "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:%d" % srv.port, "HTTP_X_REQUEST_ID": None}
    # The group's python_path is its own: site b's hook module is not importable in a.
    assert info["only_here"] is False


def test_proxy_headers_and_request_ids_are_the_fronts(start_server, tmp_path):
    config, _ = probe_config(tmp_path, extra_server='forwarded_allow_ips = ["127.0.0.1"]\n'
                                                   'request_id = true')
    srv = start_server("", "--config", str(config), default_bind=False, default_workers=False,
                       chdir=None)
    srv.wait_for_workers(4)
    resp = http_request(srv.port, "GET", "/a/", headers={"X-Forwarded-For": "203.0.113.7",
                                                         "X-Forwarded-Proto": "https"})
    info = json.loads(resp.body)["environ"]
    assert info["REMOTE_ADDR"] == "203.0.113.7"
    assert info["wsgi.url_scheme"] == "https"
    assert info["HTTP_X_REQUEST_ID"] == resp.headers["X-Request-ID"]


def test_group_bodies_stream_both_ways(probe):
    srv, _ = probe
    data = os.urandom(4 << 20)
    resp = http_request(srv.port, "POST", "/a/echo", body=data,
                        headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    assert json.loads(resp.body) == {"sha256": hashlib.sha256(data).hexdigest(),
                                     "length": len(data)}
    resp = http_request(srv.port, "GET", "/a/stream")
    assert resp.status == 200
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert resp.body == b"".join(b"%05d\n" % i for i in range(2000))
    resp = http_request(srv.port, "GET", "/a/cookies")
    assert resp.status == 201 and resp.body == b"ok"
    assert resp.headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    resp = http_request(srv.port, "HEAD", "/a/cookies")
    assert resp.status == 201 and resp.body == b""
    assert resp.headers["Content-Length"] == "2"


def test_auth_hook_runs_in_the_group(probe):
    srv, _ = probe
    assert http_request(srv.port, "GET", "/b/deep/p").status == 401
    assert http_request(srv.port, "GET", "/b/deep/p", headers=basic_auth("ann", "nope")).status == 401
    assert http_request(srv.port, "GET", "/b/deep/p", headers=basic_auth("zed", "x")).status == 401
    resp = http_request(srv.port, "GET", "/b/deep/p", headers=basic_auth("bob", "pw-bob"))
    assert resp.status == 200, resp.body
    info = json.loads(resp.body)
    assert info["environ"]["REMOTE_USER"] == "bob"
    assert info["environ"]["SCRIPT_NAME"] == "/b/deep"
    assert info["site"] == "hooks-site" and info["only_here"] is True
    assert info["cwd"] == os.path.realpath(str(srv.cmd[srv.cmd.index("--config") + 1])
                                           ).rsplit("/", 1)[0] + "/site_b"
    # require_group: bob is not staff, ann is.
    assert http_request(srv.port, "GET", "/staff/", headers=basic_auth("bob", "pw-bob")).status == 401
    resp = http_request(srv.port, "GET", "/staff/", headers=basic_auth("ann", "pw-ann"))
    assert resp.status == 200 and json.loads(resp.body)["environ"]["REMOTE_USER"] == "ann"
    assert "pw-ann" not in srv.log_text() and "pw-bob" not in srv.log_text()


def test_killed_group_worker_is_replaced_and_others_keep_serving(probe):
    srv, _ = probe
    old = group_pids(srv, "a")
    assert len(old) == 2
    victim = old[0]
    os.kill(victim, signal.SIGKILL)
    # The other groups, and the surviving worker of a, keep answering meanwhile.
    for _ in range(5):
        assert http_request(srv.port, "GET", "/b/deep/", headers=basic_auth("bob", "pw-bob")).status == 200
        assert http_request(srv.port, "GET", "/a/").status == 200
    wait_until(lambda: len(group_pids(srv, "a")) == 3, message="a replacement worker of group a")
    new = group_pids(srv, "a")[-1]
    wait_until(lambda: json.loads(http_request(srv.port, "GET", "/a/").body)["pid"] == new
               or not pid_alive(victim), message="the replacement serving")
    srv.wait_for_log(r"worker %d of process group 'a' exited \(killed by SIGKILL\)" % victim)
    pids = set()
    for _ in range(40):
        pids.add(json.loads(http_request(srv.port, "GET", "/a/").body)["pid"])
    assert victim not in pids and pids <= {old[1], new}


def test_sighup_reloads_group_code(probe):
    srv, version = probe
    assert http_request(srv.port, "GET", "/a/version").body == b"v1"
    old = group_pids(srv, "a")
    version.write_text("v2")
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"reload done", start=mark)
    new = group_pids(srv, "a")[len(old):]
    assert len(new) == 2
    wait_until(lambda: not any(pid_alive(p) for p in old), message="old group workers gone")
    resp = http_request(srv.port, "GET", "/a/")
    assert json.loads(resp.body)["pid"] in new


def test_request_past_the_timeout_gets_504_and_the_group_worker_is_replaced(start_server,
                                                                           tmp_path):
    config, _ = probe_config(tmp_path, extra_server="timeout = 3")
    srv = start_server("", "--config", str(config), default_bind=False, default_workers=False,
                       chdir=None)
    srv.wait_for_workers(4)
    resp = http_request(srv.port, "GET", "/a/sleep", timeout=30)
    assert resp.status == 504
    srv.wait_for_log(r"dumping its stacks and killing it", timeout=20)
    wait_until(lambda: len(group_pids(srv, "a")) == 3, 20, message="the stuck worker replaced")
    assert http_request(srv.port, "GET", "/a/").status == 200


def test_group_that_cannot_import_its_app_stops_the_start(tmp_path):
    config, _ = probe_config(tmp_path, extra='''
[[group]]
name = "broken"

[[mount]]
path = "/broken"
app = "no_such_module_anywhere:application"
group = "broken"
''')
    proc = subprocess.run(fastgw_command() + ["serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no module named 'no_such_module_anywhere'" in proc.stderr
    assert "process group 'broken' could not start" in proc.stderr


def run_check(config):
    return subprocess.run(fastgw_command() + ["check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("body, message", [
    ('[[mount]]\npath = "/x"\napp = "m:app"\ngroup = "nope"\n',
     "group = 'nope' names no [[group]] (groups: none is defined)"),
    ('[[group]]\nname = "g"\n[[mount]]\npath = "/x"\nstatic = "."\ngroup = "g"\n',
     "group = \"g\" only applies to app mounts"),
    ('[[group]]\nname = "g"\nprocesses = 0\n', "processes = 0 must be a whole number of at least 1"),
    ('[[group]]\nname = "g"\nvenv = "/no/such/venv"\n', "venv '/no/such/venv' is not a directory"),
    ('[[group]]\nname = "g"\n[[group]]\nname = "g"\n', "are both named 'g'"),
    ('[[group]]\nname = "g"\nthreds = 2\n', "unknown key 'threds'"),
    ('[[group]]\nname = "bad name"\n', "name 'bad name' must be 1-64 letters"),
    ('[[group]]\nname = "g"\n[[mount]]\npath = "/x"\nstatic = "."\nauth = { check_password = "m:f", group = "h" }\n',
     "auth.group = 'h' names no [[group]] (groups: g)"),
])
def test_group_config_errors(tmp_path, body, message):
    config = tmp_path / "fastgw.toml"
    config.write_text('[[mount]]\npath = "/"\napp = "m:app"\n' + body)
    proc = run_check(config)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "fastgw.toml" in proc.stderr


def test_venv_of_another_python_is_refused(tmp_path):
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.4" / "site-packages").mkdir(parents=True)
    config = tmp_path / "fastgw.toml"
    config.write_text('[[group]]\nname = "g"\nvenv = "%s"\n[[mount]]\npath = "/"\napp = "m:a"\n'
                      'group = "g"\n' % venv)
    proc = run_check(config)
    assert proc.returncode != 0
    assert "was made for python3.4, but fastgw runs on Python %d.%d" % sys.version_info[:2] \
        in proc.stderr


# --------------------------------------------------------------------------
# docs/gateway.md's recipe: two Django sites


DJANGO_SETTINGS = '''
import os
BASE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "test-only-{site}"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "{site}.urls"
SITE_LABEL = "{site}"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes"]
MIDDLEWARE = []
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                          "NAME": os.path.join(BASE, "{site}.sqlite3")}}}}
'''

DJANGO_URLS = '''
import os
from django.conf import settings
from django.http import JsonResponse
from django.urls import re_path
{extra_import}

def view(request):
    return JsonResponse({{"site": settings.SITE_LABEL,
                         "settings": os.environ["DJANGO_SETTINGS_MODULE"],
                         "path": request.path, "path_info": request.path_info,
                         "user": request.META.get("REMOTE_USER"),
                         "extra": {extra_value}}})

urlpatterns = [re_path(r"", view)]
'''


def make_django_site(root, site, extra_import="", extra_value="None"):
    write_tree(root, {
        f"{site}/__init__.py": "",
        f"{site}/settings.py": DJANGO_SETTINGS.format(site=site),
        f"{site}/urls.py": DJANGO_URLS.format(extra_import=extra_import,
                                              extra_value=extra_value),
    })


def test_docs_recipe_two_django_sites(start_server, tmp_path):
    pytest.importorskip("django")
    shop, blog = str(tmp_path / "shop"), str(tmp_path / "blog")
    make_django_site(shop, "shop", "import shopextra", "shopextra.WHO")
    make_django_site(blog, "blog")
    venv = str(tmp_path / "venvs" / "shop")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    packages = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    with open(os.path.join(packages, "shopextra.py"), "w") as fh:
        fh.write('WHO = "from the shop venv"\n')
    with pytest.raises(ImportError):
        __import__("shopextra")  # the main environment lacks it
    # The blog's users, in its own database.
    setup = ("import django; django.setup(); from django.core.management import call_command; "
             "call_command('migrate', verbosity=0); "
             "from django.contrib.auth.models import User; "
             "User.objects.create_user('editor', password='s3cret')")
    subprocess.run([sys.executable, "-c", setup], cwd=blog, check=True, timeout=120,
                   env=dict(os.environ, DJANGO_SETTINGS_MODULE="blog.settings",
                            PYTHONPATH=blog))
    config = tmp_path / "fastgw.toml"
    config.write_text(doc_recipe("groups", **{'"127.0.0.1:8000"': '"127.0.0.1:0"',
                                              "/srv/venvs/shop": venv, "/srv/shop": shop,
                                              "/srv/blog": blog}))
    srv = start_server("", "--config", str(config), default_bind=False, default_workers=False,
                       chdir=None)
    srv.wait_for_workers(5)
    resp = http_request(srv.port, "GET", "/shop/cart/1")
    assert resp.status == 200, resp.body
    assert json.loads(resp.body) == {"site": "shop", "settings": "shop.settings",
                                     "path": "/shop/cart/1", "path_info": "/cart/1",
                                     "user": None, "extra": "from the shop venv"}
    assert http_request(srv.port, "GET", "/blog/post").status == 401
    resp = http_request(srv.port, "GET", "/blog/post", headers=basic_auth("editor", "wrong"))
    assert resp.status == 401
    resp = http_request(srv.port, "GET", "/blog/post", headers=basic_auth("editor", "s3cret"))
    assert resp.status == 200, resp.body
    assert json.loads(resp.body) == {"site": "blog", "settings": "blog.settings",
                                     "path": "/blog/post", "path_info": "/post",
                                     "user": "editor", "extra": None}
    check = run_check(config)
    assert check.returncode == 0, check.stderr
    assert "shop                 2 process(es) x 8 thread(s)" in check.stdout


UID_APP = '''
import json, os

def application(environ, start_response):
    body = json.dumps({"uid": os.getuid(), "gid": os.getgid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_group_runs_as_its_own_user(start_server, tmp_path):
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    # pytest's own directories are root's alone: the group's code lives where nobody can
    # read it.
    site = tempfile.mkdtemp(prefix="fastgw-group-user-")
    os.chmod(site, 0o755)
    write_tree(site, {"uidapp.py": UID_APP})
    os.chmod(os.path.join(site, "uidapp.py"), 0o644)
    config = tmp_path / "fastgw.toml"
    config.write_text(f"""
[server]
bind = "127.0.0.1:0"
workers = 1

[[group]]
name = "low"
python_path = ["{site}"]
user = "nobody"

[[mount]]
path = "/low"
app = "uidapp:application"
group = "low"

[[mount]]
path = "/front"
app = "uidapp:application"
""")
    try:
        srv = start_server("", "--config", str(config), default_bind=False,
                           default_workers=False, chdir=site)
        srv.wait_for_workers(2)
        low = json.loads(http_request(srv.port, "GET", "/low/").body)
        assert (low["uid"], low["gid"]) == (nobody.pw_uid, nobody.pw_gid)
        assert json.loads(http_request(srv.port, "GET", "/front/").body)["uid"] == 0
        srv.stop()
    finally:
        shutil.rmtree(site, ignore_errors=True)
