"""Auth-only mounts (a [[mount]] with path and auth only: Apache's <Location "/secret">
login inside the app at "/"): the mount that would serve a URL still serves it with
its own SCRIPT_NAME/PATH_INFO and gets REMOTE_USER; mounts below the rule are guarded
unless they have an auth of their own; the hooks can run in a process group; and
the routing the server does is the routing `route_table` describes."""
import re
import textwrap

import pytest

from fastgw.authconfig import AuthConfig
from fastgw.config import Config, Mount
from fastgw.errors import ConfigError
from fastgw.router import route_table, table_router
from fgwtest import raw_request
from test_auth import APP, basic  # APP echoes REMOTE_USER, SCRIPT_NAME, PATH_INFO

HOOKS = '''
def check_password(environ, user, password):
    return {"alice": "s3cret"}.get(user) == password if user == "alice" else None

def own_check_password(environ, user, password):
    return {"carol": "c4rol"}.get(user) == password if user == "carol" else None
'''


CONFIG = '''
[server]
pythonpath = ["{pythonpath}"]
{server}

[[mount]]
path = "/"
app = "echoapp:application"

[[mount]]
path = "/secret"
auth = {{ realm = "Secret", check_password = "{hooks}:check_password"{in_group} }}

[[mount]]
path = "/secret/files"
static = "files"

[[mount]]
path = "/secret/own"
static = "files"
auth = {{ realm = "Own", check_password = "{hooks}:own_check_password" }}

[[mount]]
path = "/secret/notice.txt"
static = "files/a.txt"
{extra}
'''


def write_site(tmp_path, server="", in_group=False):
    (tmp_path / "echoapp.py").write_text(APP)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("file a\n")
    extra = ""
    if in_group:
        # The hooks are importable in the group only, not in the front workers.
        (tmp_path / "grouponly").mkdir()
        (tmp_path / "grouponly" / "rulehooks.py").write_text(HOOKS)
        extra = f'\n[[group]]\nname = "hooks"\npython_path = ["{tmp_path}/grouponly"]\n'
    else:
        (tmp_path / "rulehooks.py").write_text(HOOKS)
    (tmp_path / "own.py").write_text(HOOKS)
    config = tmp_path / "fastgw.toml"
    config.write_text(CONFIG.format(pythonpath=tmp_path, server=server, hooks="rulehooks",
                                    in_group=', group = "hooks"' if in_group else "",
                                    extra=extra).replace('"rulehooks:own_check_password"',
                                                         '"own:own_check_password"'))
    return config


@pytest.mark.parametrize("server", ["", 'access_log = "access.log"\nrequest_id = true'],
                         ids=["router", "accounting"])
def test_rule_guards_the_app_and_the_mounts_below(start_server, tmp_path, server):
    config = write_site(tmp_path, server)
    srv = start_server("", "--config", str(config), chdir=None, cwd=str(tmp_path))
    port = srv.port

    refused = raw_request(port, "GET", "/secret/x")
    assert refused.status == 401
    assert refused.header("WWW-Authenticate") == 'Basic realm="Secret", charset="UTF-8"'
    assert raw_request(port, "GET", "/secret", basic("alice", "wrong")).status == 401
    # the app at "/" serves it, with the SCRIPT_NAME/PATH_INFO it always gets
    env = raw_request(port, "GET", "/secret/x", basic("alice", "s3cret")).json()
    assert env == {"REMOTE_USER": "alice", "AUTH_TYPE": "Basic", "HTTP_AUTHORIZATION": None,
                   "SCRIPT_NAME": "", "PATH_INFO": "/secret/x"}
    assert raw_request(port, "GET", "/secret", basic("alice", "s3cret")).json()["PATH_INFO"] == \
        "/secret"
    # whole segments only: /secretx is not below /secret
    assert raw_request(port, "GET", "/secretx").json()["REMOTE_USER"] is None

    # a static mount below the rule, and a file mount, are guarded by it
    assert raw_request(port, "GET", "/secret/files/a.txt").status == 401
    got = raw_request(port, "GET", "/secret/files/a.txt", basic("alice", "s3cret"))
    assert (got.status, got.body) == (200, b"file a\n")
    assert raw_request(port, "GET", "/secret/notice.txt").status == 401
    assert raw_request(port, "GET", "/secret/notice.txt", basic("alice", "s3cret")).status == 200

    # a mount with its own auth answers to that one only (not both)
    own = raw_request(port, "GET", "/secret/own/a.txt")
    assert own.header("WWW-Authenticate") == 'Basic realm="Own", charset="UTF-8"'
    assert raw_request(port, "GET", "/secret/own/a.txt", basic("carol", "c4rol")).status == 200
    assert raw_request(port, "GET", "/secret/own/a.txt", basic("alice", "s3cret")).status == 401
    srv.stop()
    if server:
        log = (tmp_path / "access.log").read_text()
        assert '"GET /secret/x HTTP/1.1" 200' in log and "s3cret" not in log


def test_rule_hooks_run_in_a_process_group(start_server, tmp_path):
    config = write_site(tmp_path, in_group=True)
    srv = start_server("", "--config", str(config), chdir=None, cwd=str(tmp_path))
    port = srv.port
    assert raw_request(port, "GET", "/secret/x").status == 401
    assert raw_request(port, "GET", "/secret/x", basic("alice", "nope")).status == 401
    env = raw_request(port, "GET", "/secret/x", basic("alice", "s3cret")).json()
    assert (env["REMOTE_USER"], env["SCRIPT_NAME"], env["PATH_INFO"]) == ("alice", "", "/secret/x")
    assert raw_request(port, "GET", "/secret/files/a.txt", basic("alice", "s3cret")).status == 200


def test_route_table_and_router_agree(tmp_path):
    auth = AuthConfig(check_password="m:f")
    own = AuthConfig(check_password="m:g")
    (tmp_path / "f.txt").write_text("x")
    config = Config(mounts=(
        Mount("/", app="a:b"), Mount("/api", app="a:c"), Mount("/api/admin", auth=auth),
        Mount("/api/admin/files", static=str(tmp_path)),
        Mount("/api/admin/files/private", auth=own),
        Mount("/api/admin/f.txt", static=str(tmp_path / "f.txt"))))
    router = table_router(route_table(config.mounts), lambda route: route)

    def where(path):
        prefix, route = router.match(path)
        return prefix, route.mount.path, route.auth.auth if route.auth else None

    assert where("/api/admin/x") == ("/api", "/api", auth)
    assert where("/api/admin") == ("/api", "/api", auth)
    assert where("/api/administrator") == ("/api", "/api", None)
    assert where("/api/admin/files/a") == ("/api/admin/files", "/api/admin/files", auth)
    # a rule below a mount: served by that mount, the deepest auth wins
    assert where("/api/admin/files/private/a") == ("/api/admin/files", "/api/admin/files", own)
    assert where("/api/admin/f.txt") == ("/api/admin/f.txt", "/api/admin/f.txt", auth)
    assert where("/other") == ("", "/", None)


@pytest.mark.parametrize("body, message", [
    ('[[mount]]\npath = "/static"\nstatic = "."\n[[mount]]\npath = "/secret"\nauth = {A}\n',
     "auth-only mount '/secret' guards nothing"),
    ('[[mount]]\npath = "/"\napp = "a:b"\n[[mount]]\npath = "/"\nauth = {A}\n',
     "to protect that mount itself, move the auth table into it"),
    ('[[mount]]\npath = "/"\napp = "a:b"\n[[mount]]\npath = "/s"\nauth = {A}\nindex = false\n',
     "index does not apply to an auth-only mount"),
    ('[[mount]]\npath = "/"\napp = "a:b"\n[[mount]]\npath = "/s"\nauth = {A}\ngroup = "g"\n',
     "group does not apply to an auth-only mount"),
    ('[[mount]]\npath = "/"\napp = "a:b"\n[[mount]]\npath = "/s"\n',
     "not neither (or only auth, to require a login below the prefix)"),
])
def test_rule_config_errors(tmp_path, body, message):
    from fastgw.cli import config_from_args, parse_command_line

    config = tmp_path / "fastgw.toml"
    config.write_text(body.replace("{A}", '{ check_password = "m:f" }'))
    with pytest.raises(ConfigError, match=re.escape(message)):
        _, args, file_config = parse_command_line(["check", "--config", str(config)])
        config_from_args(args, file_config)


def test_check_lists_the_rule(tmp_path, capsys):
    from fastgw.cli import main

    config = write_site(tmp_path)
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert textwrap.dedent('''\
        /secret              auth only    auth realm='Secret' check_password=rulehooks:check_password''') in out
