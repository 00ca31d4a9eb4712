"""`fastgw explain URL`: the mount, SCRIPT_NAME/PATH_INFO, process group, auth rule and
file/script/upstream a URL meets, for every kind of mount; and the mount it names is
the one the running server picks."""
import ast
import base64
import subprocess

import pytest

from fgwtest import fastgw_command, raw_request, subprocess_env

APP = '''
import json

def application(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in ("SCRIPT_NAME", "PATH_INFO")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''

CONFIG = '''
[server]
pythonpath = ["{root}"]

[[group]]
name = "api"
processes = 2
python_path = ["{root}"]

[[mount]]
path = "/"
app = "echoapp:application"

[[mount]]
path = "/api"
app = "echoapp:application"
group = "api"

[[mount]]
path = "/api/admin"
auth = {{ realm = "Admins", check_password = "hooks:check_password", groups_for_user = "hooks:groups_for_user", require_group = "staff", group = "api" }}

[[mount]]
path = "/static"
static = "static"
cache_control = "public, max-age=60"

[[mount]]
path = "/media"
static = "media"
manifest = "staticfiles.json"

[[mount]]
path = "/cgi-bin"
cgi = "cgi-bin"

[[mount]]
path = "/php"
fastcgi = "127.0.0.1:9000"
split_path_info = '^(.+?\\.php)(/.*)?$'
params = {{ SCRIPT_FILENAME = "/srv/php{{script}}", HTTP_PROXY = "" }}
'''

HOOKS = '''
def check_password(environ, user, password):
    return password == "pw" if user in ("alice", "bob") else None

def groups_for_user(environ, user):
    return ["staff"] if user == "alice" else []
'''


@pytest.fixture
def site(tmp_path):
    (tmp_path / "echoapp.py").write_text(APP)
    (tmp_path / "hooks.py").write_text(HOOKS)
    static = tmp_path / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "app.css").write_text("body{}")
    (static / "css" / "app.css.br").write_bytes(b"br")
    (static / "café.txt").write_text("café\n")
    media = tmp_path / "media"
    media.mkdir()
    (media / "staticfiles.json").write_text('{"paths": {"a.js": "a.0123456789ab.js"}}')
    (media / "a.0123456789ab.js").write_text("x")
    (tmp_path / "cgi-bin").mkdir()
    script = tmp_path / "cgi-bin" / "hello.sh"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhi'\n")
    script.chmod(0o755)
    config = tmp_path / "fastgw.toml"
    config.write_text(CONFIG.format(root=tmp_path))
    return tmp_path, config


def explain(config, url, *extra):
    done = subprocess.run(fastgw_command() + ["explain", url, "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def field(out, name):
    """The value of an explain line `  NAME:   'value'`."""
    for line in out.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key == name:
            return value.strip()
    raise AssertionError(f"no {name} line in:\n{out}")


def test_app_mount_in_a_group_with_an_auth_rule(site):
    root, config = site
    out = explain(config, "/api/admin/users?page=2")
    assert field(out, "mount").split()[:3] == ["/api", "app", "echoapp:application"]
    assert ast.literal_eval(field(out, "SCRIPT_NAME")) == "/api"
    assert ast.literal_eval(field(out, "PATH_INFO")) == "/admin/users"
    assert ast.literal_eval(field(out, "QUERY_STRING")) == "page=2"
    assert field(out, "process group").startswith("api                  2 process(es) x 1 thread(s)")
    assert f"python_path={root}" in field(out, "process group")
    assert ("HTTP Basic, realm 'Admins', from auth-only mount '/api/admin' "
            f"({config}: [[mount]] #3") in field(out, "auth")
    assert field(out, "check_password") == "hooks:check_password"
    assert field(out, "groups_for_user") == "hooks:groups_for_user"
    assert field(out, "require_group") == "'staff'"
    assert field(out, "hooks run in").startswith("process group api ")
    # the root app: no group, no auth
    out = explain(config, "/elsewhere")
    assert field(out, "process group") == "none: the front workers run the application"
    assert field(out, "auth") == "none"
    assert ast.literal_eval(field(out, "SCRIPT_NAME")) == ""


def test_static_files(site):
    root, config = site
    out = explain(config, "http://example.com/static/css/app.css")
    assert "GET /static/css/app.css (Host: example.com)" in out
    assert field(out, "file") == f"{root}/static/css/app.css (exists, 6 bytes)"
    assert field(out, "Content-Type") == "text/css; charset=utf-8"
    assert field(out, "Cache-Control") == "public, max-age=60 (cache_control of the mount)"
    assert field(out, "precompressed") == "app.css.br (br) picked by Accept-Encoding"
    # percent-decoded as the server does: UTF-8 bytes of the name
    out = explain(config, "/static/caf%C3%A9.txt")
    assert ast.literal_eval(field(out, "decoded path")) == "/static/café.txt"
    assert field(out, "file") == f"{root}/static/café.txt (exists, 6 bytes)"
    out = explain(config, "/static/css/missing.css")
    assert field(out, "file").endswith("does not exist (No such file or directory): the answer "
                                       "is 404 Not Found")
    out = explain(config, "/static/%2e%2e/fastgw.toml")
    assert field(out, "file").startswith("none: the answer is 400 Bad Request")
    out = explain(config, "/media/a.0123456789ab.js")
    assert field(out, "Cache-Control") == ("public, max-age=31536000, immutable (manifest "
                                           "staticfiles.json: a hashed name)")


def test_cgi_and_fastcgi(site):
    root, config = site
    out = explain(config, "/cgi-bin/hello.sh/extra/path")
    assert field(out, "script") == f"{root}/cgi-bin/hello.sh"
    assert ast.literal_eval(field(out, "script SCRIPT_NAME")) == "/cgi-bin/hello.sh"
    assert ast.literal_eval(field(out, "script PATH_INFO")) == "/extra/path"
    assert field(explain(config, "/cgi-bin/nope"), "script") == "none: the answer is 404 Not Found"
    out = explain(config, "/php/index.php/a/b?x=1")
    assert field(out, "upstream") == "tcp://127.0.0.1:9000 (fastcgi)"
    assert ast.literal_eval(field(out, "script PATH_INFO")) == "/a/b"
    assert "    SCRIPT_FILENAME = '/srv/php/index.php'" in out
    assert "    HTTP_PROXY = (removed)" in out


def test_nothing_mounted_and_bad_urls(tmp_path):
    (tmp_path / "s").mkdir()
    config = tmp_path / "fastgw.toml"
    config.write_text('[[mount]]\npath = "/s"\nstatic = "s"\n')
    assert "mount:          none: nothing is mounted at this path, the answer is 404" in \
        explain(config, "/x")
    done = subprocess.run(fastgw_command() + ["explain", "ftp://x/y", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert done.returncode == 1
    assert "fastgw: error: URL 'ftp://x/y': expected a path" in done.stderr


def test_explain_picks_the_mount_the_server_picks(start_server, site):
    root, config = site
    srv = start_server("", "--config", str(config), chdir=None, cwd=str(root))
    alice = [("Authorization", "Basic " + base64.b64encode(b"alice:pw").decode())]
    for url in ("/", "/x/y", "/api", "/api/v1/a%20b", "/apix/z", "/api/admin/u", "/api/admin",
                "/api/administrator"):
        out = explain(config, url)
        seen = raw_request(srv.port, "GET", url, alice)
        assert seen.status == 200, (url, seen)
        env = seen.json()
        assert ast.literal_eval(field(out, "SCRIPT_NAME")) == env["SCRIPT_NAME"], url
        assert ast.literal_eval(field(out, "PATH_INFO")) == env["PATH_INFO"], url
    # the rule explain reports is the one the server applies
    assert "require_group" in explain(config, "/api/admin/u")
    bob = [("Authorization", "Basic " + base64.b64encode(b"bob:pw").decode())]
    assert raw_request(srv.port, "GET", "/api/admin/u", bob).status == 401
    assert raw_request(srv.port, "GET", "/api/administrator", bob).status == 200
    assert field(explain(config, "/api/administrator"), "auth") == "none"
