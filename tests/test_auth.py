"""HTTP Basic auth mounts (auth.py) with a plain Python check_password hook, no Django:
the hook contract (True / False / None), groups, malformed headers, hook errors,
REMOTE_USER for apps, static mounts behind auth, credentials kept out of logs."""
import base64
import json
import textwrap

import pytest

from fastgw.auth import parse_basic
from fastgw.configfile import load
from fastgw.errors import ConfigError
from fgwtest import basic_auth, raw_request

HOOKS = '''
import os

CALLS = []

def check_password(environ, user, password):
    if "SCRIPT_NAME" not in environ:
        raise AssertionError("hook got no environ")
    if user == "boom":
        raise RuntimeError("the user database is down")
    users = {"alice": "s3cret", "bob": "hunter2", "jos\\u00e9": "p\\u00e4ss"}
    if user not in users:
        return None
    return users[user] == password

def groups_for_user(environ, user):
    return {"alice": ["staff"], "bob": [b"users"]}.get(user, [])
'''

APP = '''
import json

def application(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in (
        "REMOTE_USER", "AUTH_TYPE", "HTTP_AUTHORIZATION", "SCRIPT_NAME", "PATH_INFO")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


def basic(user, password):
    """Basic credentials as raw_request's header list."""
    return list(basic_auth(user, password).items())


@pytest.fixture
def site(tmp_path):
    (tmp_path / "authhooks.py").write_text(HOOKS)
    (tmp_path / "echoapp.py").write_text(APP)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "secret.txt").write_text("top secret\n")
    (tmp_path / "cgi").mkdir()
    script = tmp_path / "cgi" / "who.sh"
    script.write_text('#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%s %s %s" '
                      '"$REMOTE_USER" "$AUTH_TYPE" "${HTTP_AUTHORIZATION:-none}"\n')
    script.chmod(0o755)
    config = tmp_path / "fastgw.toml"
    config.write_text(textwrap.dedent('''
        [server]
        pythonpath = ["."]
        access_log = "access.log"

        [[mount]]
        path = "/"
        app = "echoapp:application"

        [[mount]]
        path = "/private"
        app = "echoapp:application"
        auth = { realm = "Private area", check_password = "authhooks:check_password" }

        [[mount]]
        path = "/staff"
        app = "echoapp:application"
        auth = { realm = "Staff", check_password = "authhooks:check_password", groups_for_user = "authhooks:groups_for_user", require_group = "staff" }

        [[mount]]
        path = "/files"
        static = "files"
        auth = { check_password = "authhooks:check_password" }

        [[mount]]
        path = "/cgi-bin"
        cgi = "cgi"
        auth = { check_password = "authhooks:check_password" }
        '''))
    return tmp_path, config


@pytest.mark.parametrize("threads", ["1", "4"])
def test_auth_hook_contract(start_server, site, threads):
    tmp_path, config = site
    srv = start_server("--config=" + str(config), "--threads", threads, chdir=None,
                       cwd=str(tmp_path))
    port = srv.port

    open_page = raw_request(port, "GET", "/x").json()
    assert open_page["REMOTE_USER"] is None

    none = raw_request(port, "GET", "/private/page")
    assert none.status == 401
    assert none.header("WWW-Authenticate") == 'Basic realm="Private area", charset="UTF-8"'

    assert raw_request(port, "GET", "/private/page", basic("alice", "wr0ngpw")).status == 401
    assert raw_request(port, "GET", "/private/page", basic("nobody", "x")).status == 401

    ok = raw_request(port, "GET", "/private/page", basic("alice", "s3cret"))
    assert ok.status == 200
    env = ok.json()
    assert env["REMOTE_USER"] == "alice" and env["AUTH_TYPE"] == "Basic"
    assert env["HTTP_AUTHORIZATION"] is None  # the password never reaches the app
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/private", "/page")

    # UTF-8 credentials (RFC 7617); REMOTE_USER carries the bytes as latin-1 (PEP 3333)
    utf8 = raw_request(port, "GET", "/private/", basic("jos\u00e9", "p\u00e4ss"))
    assert utf8.status == 200
    assert utf8.json()["REMOTE_USER"].encode("latin-1").decode("utf-8") == "jos\u00e9"

    # groups: 401 (Apache's answer to an authenticated user failing `Require group`)
    assert raw_request(port, "GET", "/staff/", basic("bob", "hunter2")).status == 401
    assert raw_request(port, "GET", "/staff/", basic("alice", "s3cret")).status == 200

    # static files behind auth
    assert raw_request(port, "GET", "/files/secret.txt").status == 401
    got = raw_request(port, "GET", "/files/secret.txt", basic("bob", "hunter2"))
    assert (got.status, got.body) == (200, b"top secret\n")

    # CGI scripts get REMOTE_USER and AUTH_TYPE, not the credentials
    assert raw_request(port, "GET", "/cgi-bin/who.sh").status == 401
    cgi = raw_request(port, "GET", "/cgi-bin/who.sh", basic("bob", "hunter2"))
    assert (cgi.status, cgi.body) == (200, b"bob Basic none")

    # malformed headers are failed logins (401), never a crash
    for value in ("Basic", "Basic !!!notbase64", "Bearer abc", "Basic " +
                  base64.b64encode(b"no-colon").decode(), "Basic " + "A" * 6000,
                  "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), "basic  "):
        bad = raw_request(port, "GET", "/private/", [("Authorization", value)])
        assert bad.status == 401, value

    # a hook that raises: 500, logged without the password
    assert raw_request(port, "GET", "/private/", basic("boom", "pw-never-logged")).status == 500
    srv.wait_for_log("the authentication hook failed")
    assert raw_request(port, "GET", "/x").status == 200  # the worker lives on
    srv.stop()
    log = srv.log_text() + (tmp_path / "access.log").read_text()
    for secret in ("s3cret", "hunter2", "pw-never-logged", "wr0ngpw"):
        assert secret not in log
    assert base64.b64encode(b"alice:s3cret").decode() not in log


def test_parse_basic():
    assert parse_basic("Basic " + base64.b64encode(b"u:p:q").decode()) == ("u", "p:q", b"u")
    assert parse_basic("BASIC  " + base64.b64encode(b"u:").decode()) == ("u", "", b"u")
    assert parse_basic("Basic " + base64.b64encode(b":p").decode()) is None
    assert parse_basic("Basic \u00e9") is None
    assert parse_basic("Digest x") is None


@pytest.mark.parametrize("auth, message", [
    ('{ realm = "x" }', "needs check_password"),
    ('{ check_password = "nocolon" }', "expected module:function"),
    ('{ check_password = "m:f", require_group = "staff" }', "needs groups_for_user"),
    ('{ check_password = "m:f", user = "x" }', "unknown key 'user'"),
    ('{ check_password = "m:f", realm = "a\\"b" }', "realm"),
    ('"m:f"', "auth must be a table"),
])
def test_auth_config_errors(tmp_path, auth, message):
    config = tmp_path / "fastgw.toml"
    config.write_text(f'[[mount]]\npath = "/p"\napp = "a:b"\nauth = {auth}\n')
    with pytest.raises(ConfigError, match=message):
        load(str(config), {})


def test_manifest_config_errors(tmp_path):
    (tmp_path / "s").mkdir()
    config = tmp_path / "fastgw.toml"
    config.write_text('[[mount]]\npath = "/s"\nstatic = "s"\nmanifest = "staticfiles.json"\n')
    with pytest.raises(ConfigError, match="collectstatic"):
        load(str(config), {})
    config.write_text('[[mount]]\npath = "/s"\napp = "a:b"\nmanifest = "x.json"\n')
    with pytest.raises(ConfigError, match="only applies to static"):
        load(str(config), {})


def test_manifest_cache_control(start_server, tmp_path):
    static = tmp_path / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "a.css").write_text("a")
    (static / "css" / "a.0123456789ab.css").write_text("a")
    (static / "staticfiles.json").write_text(json.dumps(
        {"paths": {"css/a.css": "css/a.0123456789ab.css"}, "version": "1.1"}))
    (tmp_path / "fastgw.toml").write_text(
        '[[mount]]\npath = "/static"\nstatic = "static"\nmanifest = "staticfiles.json"\n')
    srv = start_server("--config=" + str(tmp_path / "fastgw.toml"), chdir=None, cwd="/")
    hashed = raw_request(srv.port, "GET", "/static/css/a.0123456789ab.css")
    assert hashed.header("Cache-Control") == "public, max-age=31536000, immutable"
    plain = raw_request(srv.port, "GET", "/static/css/a.css")
    assert plain.header("Cache-Control") == "public, max-age=60"
