"""The --config TOML file: [server] keys for every flag, [[mount]] entries, the command
line overriding the file, errors that name the file, key and value, and `fastgw check`."""
import os
import re
import subprocess
import textwrap

import pytest

from fgwtest import APPS_DIR, fastgw_command, pid_alive, raw_request, subprocess_env, wait_until
from fastgw.cli import build_parser, server_options


def run_fastgw(*args, cwd=None, env=None):
    return subprocess.run(fastgw_command() + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                          env=subprocess_env(**(env or {})), cwd=cwd)


def write(tmp_path, text, name="fastgw.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def error_line(proc):
    text = proc.stderr.decode("utf-8", "replace")
    lines = [l for l in text.splitlines() if l.startswith("fastgw: error:")]
    assert proc.returncode != 0, "exit code 0 for a bad config; stderr:\n" + text
    assert len(lines) == 1, "expected one 'fastgw: error:' line; stderr:\n" + text
    assert "Traceback" not in text, text
    return lines[0]


@pytest.fixture
def site(tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "app.css").write_bytes(b"css!\n")
    (tmp_path / "robots.txt").write_bytes(b"User-agent: *\n")
    return tmp_path


# --------------------------------------------------------------------------
# serving from a file


def test_two_apps_and_static_from_file(start_server, site):
    config = write(site, f"""
        [server]
        workers = 1
        chdir = {str(APPS_DIR)!r}
        env = {{ FASTGW_TEST_FROM_FILE = "yes" }}

        [[mount]]
        path = "/"
        app = "mounts:main"

        [[mount]]
        path = "/api"
        app = "mounts:api"

        [[mount]]
        path = "/static"
        static = "static"          # relative to this file
        cache_control = "public, max-age=31536000, immutable"

        [[mount]]
        path = "/robots.txt"
        static = "robots.txt"
        """)
    # started from another directory, with no --chdir: the file says where things are
    srv = start_server("--config=" + config, chdir=None, cwd="/")
    main = raw_request(srv.port, "GET", "/x/y").json()
    assert (main["app"], main["SCRIPT_NAME"], main["PATH_INFO"]) == ("main", "", "/x/y")
    api = raw_request(srv.port, "GET", "/api/users").json()
    assert (api["app"], api["SCRIPT_NAME"], api["PATH_INFO"]) == ("api", "/api", "/users")
    css = raw_request(srv.port, "GET", "/static/app.css")
    assert css.body == b"css!\n"
    assert css.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert raw_request(srv.port, "GET", "/robots.txt").body == b"User-agent: *\n"


def test_command_line_overrides_file(start_server, site):
    # the file's bind could not work (no such directory); --bind 127.0.0.1:0 replaces it,
    # the file's workers = 3 is overridden by --workers 1 (the test harness adds both)
    config = write(site, """
        [server]
        bind = ["unix:/nonexistent-fgw-dir/fgw.sock"]
        workers = 3
        log_level = "warning"

        [[mount]]
        path = "/"
        app = "mounts:api"
        """)
    srv = start_server("--config=" + config, "--log-level", "info")
    assert srv.listeners == ["http://127.0.0.1:%d" % srv.port]
    assert len(srv.wait_for_workers(1)) == 1
    # APP on the command line replaces the file's mount at /
    srv2 = start_server("mounts:main", "--config", config, "--log-level", "info")
    assert raw_request(srv2.port, "GET", "/").json()["app"] == "main"


def test_command_line_mount_replaces_same_prefix(start_server, site):
    config = write(site, """
        [[mount]]
        path = "/api"
        app = "mounts:api"

        [[mount]]
        path = "/"
        app = "mounts:main"
        """)
    srv = start_server("--config=" + config, "--mount", "/api=mounts:deep")
    assert raw_request(srv.port, "GET", "/api/x").json()["app"] == "deep"
    assert raw_request(srv.port, "GET", "/").json()["app"] == "main"


def test_every_flag_has_a_config_key():
    parser = build_parser()
    options = server_options(parser.commands["serve"])
    flags = {s for a in parser.commands["serve"]._actions for s in a.option_strings
             if s.startswith("--")}
    expected = ({f[2:].replace("-", "_") for f in flags}
                - {"help", "config", "mount", "static", "cgi", "fastcgi", "scgi"})
    assert set(options) == expected
    for key in ("bind", "workers", "chdir", "pythonpath", "env", "backlog", "log_level",
                "access_log", "keepalive", "graceful_timeout", "header_timeout", "io_timeout",
                "max_connections", "limit_request_line", "limit_request_body"):
        assert key in options


def test_all_server_keys_accepted(tmp_path):
    config = write(tmp_path, f"""
        [server]
        bind = ["127.0.0.1:0", "unix:fgw.sock"]
        workers = 2
        chdir = {str(APPS_DIR)!r}
        pythonpath = ["extra", "/opt/fgw"]
        env = {{ A = "1", B = "two words" }}
        backlog = 16
        log_level = "debug"
        access_log = "logs/access.log"
        keepalive = 2
        graceful_timeout = 3.5
        header_timeout = 4
        io_timeout = 5
        max_connections = 100
        limit_request_line = 1000
        limit_request_field_size = 2000
        limit_request_fields = 30
        limit_request_head = 40000
        limit_request_body = 0
        limit_chunk_line = 500
        limit_trailer_size = 600

        [[mount]]
        path = "/"
        app = "mounts:main"
        """)
    proc = run_fastgw("check", "--config", config, "--env", "B=cli", "--env", "C=3")
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    base = str(tmp_path)
    assert 'bind = ["127.0.0.1:0", "unix:%s/fgw.sock"]' % base in out
    assert "workers = 2" in out
    assert 'pythonpath = ["%s/extra", "/opt/fgw"]' % base in out
    assert 'env = {"A" = "1", "B" = "cli", "C" = "3"}' in out
    assert 'access_log = "%s/logs/access.log"' % base in out
    assert "graceful_timeout = 3.5" in out
    assert "header_timeout = 4.0" in out
    assert "limit_trailer_size = 600" in out
    assert 'log_level = "debug"' in out


# --------------------------------------------------------------------------
# fastgw check


def test_check_prints_routing_table_and_settings(site):
    config = write(site, """
        [server]
        bind = "127.0.0.1:9999"
        workers = 4

        [[mount]]
        path = "/"
        app = "broken_import:application"   # check does not import apps

        [[mount]]
        path = "/api/"
        app = "mounts:api"

        [[mount]]
        path = "/static"
        static = "static"
        index = false
        cache_control = "max-age=60"

        [[mount]]
        path = "/robots.txt"
        static = "robots.txt"
        """)
    proc = run_fastgw("check", "--config", config, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "configuration OK" in out
    table = [l.split() for l in out.splitlines() if l.startswith("  /")]
    assert [row[0] for row in table] == ["/robots.txt", "/api", "/static", "/"]
    assert table[0][1:3] == ["static", "file"] and table[0][3] == str(site / "robots.txt")
    assert table[1][1:] == ["app", "mounts:api"]
    assert table[2][1:4] == ["static", "dir", str(site / "static")]
    assert "index=off" in out and "cache_control='max-age=60'" in out
    assert table[3][1:] == ["app", "broken_import:application"]
    assert 'bind = ["127.0.0.1:9999"]' in out
    assert "workers = 2" in out  # the command line wins


def test_check_without_config_file():
    proc = run_fastgw("check", "wsgiapp:application", "--static", "/s=" + APPS_DIR)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert re.search(r"^  /s\s+static dir\s+%s" % re.escape(APPS_DIR), out, re.M), out
    assert re.search(r"^  /\s+app\s+wsgiapp:application$", out, re.M), out
    assert 'bind = ["127.0.0.1:8000"]' in out


# --------------------------------------------------------------------------
# errors: one line naming the file, the key, the value and what is allowed


BAD_CONFIGS = [
    ("[server]\nwokers = 2\n", ["fastgw.toml", "wokers", "workers"]),
    ("[server]\nworkers = 0\n", ["fastgw.toml", "[server] workers", "0", "1 or more"]),
    ("[server]\nworkers = \"many\"\n", ["fastgw.toml", "workers", "many", "whole number"]),
    ("[server]\nworkers = 2.5\n", ["fastgw.toml", "workers", "2.5", "whole number"]),
    ("[server]\nworkers = true\n", ["fastgw.toml", "workers", "true", "whole number"]),
    ("[server]\nlog_level = \"loud\"\n", ["fastgw.toml", "log_level", "loud", "debug, info"]),
    ("[server]\nheader_timeout = 0\n", ["fastgw.toml", "header_timeout", "0", "more than 0"]),
    ("[server]\nkeepalive = -1\n", ["fastgw.toml", "keepalive", "-1", "0 or more"]),
    ("[server]\nbind = \"nope\"\n", ["fastgw.toml", "bind", "nope", "HOST:PORT"]),
    ("[server]\nbind = 8000\n", ["fastgw.toml", "bind", "8000", "list of strings"]),
    ("[server]\nchdir = \"no-such-dir-fgw\"\n", ["fastgw.toml", "chdir", "no-such-dir-fgw", "no such directory"]),
    ("[server]\nenv = { A = 1 }\n", ["fastgw.toml", "env", "strings"]),
    ("[server]\nenv = [\"NOEQUALS\"]\n", ["fastgw.toml", "env", "NOEQUALS", "KEY=VALUE"]),
    ("[server]\naccess_log = 5\n", ["fastgw.toml", "access_log", "5", "string"]),
    ("[server]\napp = \"x:y\"\n", ["fastgw.toml", "'app'", "[[mount]]"]),
    ("[server]\nconfig = \"other.toml\"\n", ["fastgw.toml", "'config'"]),
    ("server = 5\n", ["fastgw.toml", "[server] must be a table"]),
    ("[serve]\nworkers = 2\n", ["fastgw.toml", "'serve'", "[server]"]),
    ("workers = 2\n", ["fastgw.toml", "'workers'", "[server]"]),
    ("[server\nworkers = 2\n", ["fastgw.toml", "not valid TOML", "line 1"]),
    ("[server]\nworkers = 2\nworkers = 3\n", ["fastgw.toml", "not valid TOML"]),
    ("[mount]\npath = \"/\"\napp = \"mounts:main\"\n", ["fastgw.toml", "[[mount]]"]),
    ("[[mount]]\napp = \"mounts:main\"\n", ["fastgw.toml", "[[mount]] #1", "path"]),
    ("[[mount]]\npath = \"/\"\n", ["fastgw.toml", "[[mount]] #1", "app", "static", "neither"]),
    ("[[mount]]\npath = \"/\"\napp = \"mounts:main\"\nstatic = \"x\"\n",
     ["fastgw.toml", "[[mount]] #1", "not both"]),
    ("[[mount]]\npath = \"/\"\napp = \"mounts:main\"\n[[mount]]\npath = \"/s\"\nstatic = \"nowhere\"\n",
     ["fastgw.toml", "[[mount]] #2", "/s", "nowhere", "no such file or directory"]),
    ("[[mount]]\npath = \"/\"\napp = \"mounts:main\"\nindex = \"index.html\"\n",
     ["fastgw.toml", "[[mount]] #1", "index", "only applies to static"]),
    ("[[mount]]\npath = \"/s\"\nstatic = \".\"\ndotfiles = \"yes\"\n",
     ["fastgw.toml", "dotfiles", "yes", "true or false"]),
    ("[[mount]]\npath = \"/s\"\nstatic = \".\"\nindex = 3\n", ["fastgw.toml", "index", "3", "file name"]),
    ("[[mount]]\npath = \"/s\"\nstatic = \".\"\nindex = \"a/b.html\"\n", ["fastgw.toml", "index", "a/b.html"]),
    ("[[mount]]\npath = \"/s\"\nstatic = \".\"\ncache_control = \"a\\nb\"\n", ["fastgw.toml", "cache_control"]),
    ("[[mount]]\npath = \"/s\"\nstatic = \".\"\nlisting = true\n",
     ["fastgw.toml", "[[mount]] #1", "'listing'", "precompressed"]),
    ("[[mount]]\npath = \"static\"\nstatic = \".\"\n", ["fastgw.toml", "static", "must start with '/'"]),
    ("[[mount]]\npath = \"/a/../b\"\nstatic = \".\"\n", ["fastgw.toml", "/a/../b", "'..'"]),
    ("[[mount]]\npath = \"/a b\"\nstatic = \".\"\n", ["fastgw.toml", "/a b", "spaces"]),
    ("[[mount]]\npath = \"/\"\napp = \"not a spec\"\n", ["fastgw.toml", "[[mount]] #1", "not a spec"]),
    ("[[mount]]\npath = \"/x\"\napp = \"mounts:api\"\n[[mount]]\npath = \"/x/\"\nstatic = \".\"\n",
     ["fastgw.toml", "[[mount]] #1", "[[mount]] #2", "'/x'", "once"]),
    ("", ["nothing to serve"]),
    ("[server]\nworkers = 1\n", ["nothing to serve", "[[mount]]"]),
]


@pytest.mark.parametrize("text,needles", BAD_CONFIGS)
@pytest.mark.parametrize("command", ["serve", "check"])
def test_config_errors(tmp_path, text, needles, command):
    config = write(tmp_path, text)
    proc = run_fastgw(command, "--config", config, cwd=str(tmp_path))
    line = error_line(proc)
    for needle in needles:
        assert needle.lower() in line.lower(), (needle, line)
    assert b"Listening at" not in proc.stderr


def test_missing_config_file(tmp_path):
    line = error_line(run_fastgw("serve", "--config", str(tmp_path / "nope.toml")))
    assert "nope.toml" in line and "no such file" in line


def test_config_file_not_utf8(tmp_path):
    path = tmp_path / "fastgw.toml"
    path.write_bytes(b"[server]\nlog_level = \"\xff\"\n")
    line = error_line(run_fastgw("check", "--config", str(path)))
    assert "fastgw.toml" in line and "TOML" in line


@pytest.mark.parametrize("args,needles", [
    (["--mount", "/api"], ["--mount", "'/api'", "PREFIX=APP"]),
    (["--mount", "api=mounts:api"], ["--mount", "must start with '/'"]),
    (["--static", "/s=/no/such/fgw/dir"], ["--static", "/no/such/fgw/dir", "no such file"]),
    (["--static", "/s"], ["--static", "PREFIX=PATH"]),
    (["--static", "/s=" + APPS_DIR, "--static", "/s/=" + APPS_DIR], ["/s", "once"]),
    (["mounts:main", "--mount", "/=mounts:api"], ["APP", "mounts:main", "'/'"]),
    ([], ["nothing to serve"]),
])
def test_command_line_mount_errors(args, needles):
    line = error_line(run_fastgw("serve", "--bind", "127.0.0.1:0", *args))
    for needle in needles:
        assert needle.lower() in line.lower(), (needle, line)


def test_cli_error_beats_file_value(tmp_path):
    """A bad value on the command line is named as the flag, not as the file's key."""
    config = write(tmp_path, "[server]\nworkers = 2\n[[mount]]\npath = \"/\"\napp = \"mounts:main\"\n")
    proc = run_fastgw("check", "--config", config, "--header-timeout", "0")
    line = error_line(proc)
    assert "--header-timeout" in line and "fastgw.toml" not in line


# --------------------------------------------------------------------------
# SIGHUP reads the file again


def test_sighup_rereads_config_file(start_server, site):
    import signal

    config = write(site, """
        [[mount]]
        path = "/"
        app = "mounts:main"
        """)
    srv = start_server("--config=" + config)
    assert raw_request(srv.port, "GET", "/api/x").json()["app"] == "main"
    # a broken file: the reload fails, the running workers keep serving
    write(site, "[server]\nworkers = 0\n")
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"reload failed: .*fastgw\.toml: \[server\] workers", start=mark)
    assert raw_request(srv.port, "GET", "/api/x").json()["app"] == "main"
    write(site, """
        [[mount]]
        path = "/"
        app = "mounts:main"

        [[mount]]
        path = "/api"
        app = "mounts:api"

        [[mount]]
        path = "/static"
        static = "static"
        """)
    old_workers = srv.live_worker_pids()
    mark = srv.log_mark()
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"reload done", start=mark)
    # only the new generation may answer (a retiring worker is not under test here)
    wait_until(lambda: not any(pid_alive(p) for p in old_workers), 15,
               message="old workers %r to exit" % old_workers)
    assert raw_request(srv.port, "GET", "/api/x").json()["app"] == "api"
    assert raw_request(srv.port, "GET", "/static/app.css").body == b"css!\n"


# --------------------------------------------------------------------------
# the documentation's examples use real keys


def _toml_blocks(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return re.findall(r"```toml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("doc", ["docs/config.md", "README.md"])
def test_documented_examples_use_real_keys(doc):
    from fastgw.configfile import MOUNT_KEYS, tomllib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    blocks = _toml_blocks(os.path.join(root, doc))
    assert blocks, "no ```toml example in " + doc
    options = server_options(build_parser().commands["serve"])
    for block in blocks:
        data = tomllib.loads(block)
        assert set(data) <= {"server", "mount"}, data
        assert set(data.get("server", {})) <= set(options), block
        for mount in data.get("mount", []):
            assert set(mount) <= set(MOUNT_KEYS), mount
            auth_only = set(mount) == {"path", "auth"}
            assert "path" in mount and (("app" in mount) != ("static" in mount) or auth_only), mount


def test_config_reference_lists_every_key():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "config.md"), encoding="utf-8") as fh:
        text = fh.read()
    from fastgw.configfile import MOUNT_KEYS

    options = server_options(build_parser().commands["serve"])
    missing = [k for k in list(options) + list(MOUNT_KEYS) if "| `%s` |" % k not in text]
    assert not missing, "keys missing from the tables of docs/config.md: %r" % missing
