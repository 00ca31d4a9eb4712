"""Command line: version, app specs, flags, and user errors."""
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from fgwtest import (APPS_DIR, RawConnection, fastgw_command, http_request, pid_alive, request,
                     subprocess_env, wait_until)

VERSION_RE = re.compile(r"^fastgw \d+\.\d+\.\d+\S*$")


def run_fastgw(*args, timeout=30, cwd=None):
    try:
        return subprocess.run(fastgw_command() + list(args), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=subprocess_env(), cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("fastgw %s did not exit within %ss; stderr:\n%s" % (
            " ".join(args), timeout, (exc.stderr or b"").decode("utf-8", "replace")))


def serve_args(app, *extra, bind=True):
    args = ["serve", app]
    if bind:
        args += ["--bind", "127.0.0.1:0"]
    return args + ["--workers", "1", "--chdir", APPS_DIR] + list(extra)


def error_lines(proc):
    text = proc.stderr.decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.startswith("fastgw: error:")], text


def assert_user_error(proc, *needles):
    lines, text = error_lines(proc)
    assert proc.returncode != 0, "exit code 0 for a user error; stderr:\n" + text
    assert lines, "no 'fastgw: error:' line; stderr:\n" + text
    for needle in needles:
        assert any(needle.lower() in line.lower() for line in lines), (
            "%r not named in the error line(s) %r" % (needle, lines))


# --------------------------------------------------------------------------
# version


def test_python_m_version():
    proc = run_fastgw("--version")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode().strip()
    assert VERSION_RE.match(out), out
    assert out == "fastgw 0.1.0"


def test_console_script_version():
    script = shutil.which("fastgw") or os.path.join(os.path.dirname(sys.executable), "fastgw")
    if not os.path.exists(script):
        if os.environ.get("CI") == "true":
            pytest.fail("fastgw console script not installed")
        pytest.skip("fastgw console script not installed")
    proc = subprocess.run([script, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert VERSION_RE.match(proc.stdout.decode().strip()), proc.stdout


# --------------------------------------------------------------------------
# app specifications


@pytest.mark.parametrize("app,body", [
    ("wsgiapp:application", None),
    ("wsgiapp", None),
    ("plainmod", b"plain-module-application"),
    ("factory:create_app()", b"factory-app"),
    ("dotted:holder.app", b"dotted-app"),
])
def test_app_spec_forms(start_server, app, body):
    srv = start_server(app)
    resp = http_request(srv.port, "GET", "/hello")
    assert resp.status == 200
    assert resp.body == (body or b"Hello, world!\n")
    assert srv.stop() == 0


def test_pythonpath(start_server):
    extra = os.path.join(APPS_DIR, "extra")
    srv = start_server("ppmod:application", "--pythonpath", "/nonexistent-fgw-dir:" + extra)
    assert http_request(srv.port, "GET", "/").body == b"pythonpath-app"


def test_env_flags(start_server):
    srv = start_server("wsgiapp:application", "--env", "FASTGW_TEST_ONE=1",
                       "--env", "FASTGW_TEST_EQ=a=b c")
    data = http_request(srv.port, "GET", "/import-env").json()
    assert data["import_time"]["FASTGW_TEST_ONE"] == "1"
    assert data["import_time"]["FASTGW_TEST_EQ"] == "a=b c"
    assert data["now"]["FASTGW_TEST_EQ"] == "a=b c"


def test_chdir_is_used(start_server, tmp_path):
    # started from an unrelated cwd: the app module is only found via --chdir
    srv = start_server("plainmod", cwd=str(tmp_path))
    assert http_request(srv.port, "GET", "/").body == b"plain-module-application"


def test_backlog_flag(start_server):
    srv = start_server("wsgiapp:application", "--backlog", "16")
    assert http_request(srv.port, "GET", "/hello").status == 200


# --------------------------------------------------------------------------
# binds


def test_two_tcp_binds(start_server):
    srv = start_server("wsgiapp:application", "--bind", "127.0.0.1:0")
    ports = [int(m.group(1)) for m in
             (re.match(r"http://127\.0\.0\.1:(\d+)$", l) for l in srv.listeners) if m]
    assert len(ports) == 2 and len(set(ports)) == 2, srv.listeners
    for port in ports:
        assert http_request(port, "GET", "/hello").status == 200


def test_unix_socket_bind(start_server, tmp_path):
    path = str(tmp_path / "fgw.sock")
    srv = start_server("wsgiapp:application", "--bind", "unix:" + path, default_bind=False)
    assert srv.listeners == ["unix:" + path], srv.listeners
    with RawConnection(unix_path=path) as conn:
        resp = conn.roundtrip(request("GET", "/hello"))
        assert resp.status == 200
        assert resp.body == b"Hello, world!\n"
        env = conn.roundtrip(request("GET", "/environ-raw")).json()["environ"]
        assert env["SERVER_NAME"] == "127.0.0.1"  # from the Host header


def _ipv6_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_bind(start_server):
    srv = start_server("wsgiapp:application", "--bind", "[::1]:0", default_bind=False)
    m = re.match(r"http://\[::1\]:(\d+)$", srv.listeners[0])
    assert m, srv.listeners
    port = int(m.group(1))
    with RawConnection(port, host="::1", family=socket.AF_INET6) as conn:
        resp = conn.roundtrip(request("GET", "/environ-raw", host="[::1]:%d" % port))
    assert resp.status == 200
    env = resp.json()["environ"]
    assert env["REMOTE_ADDR"] == "::1"


# --------------------------------------------------------------------------
# user errors


def test_module_not_found():
    proc = run_fastgw(*serve_args("fgw_no_such_module_xyz:application"))
    assert_user_error(proc, "fgw_no_such_module_xyz")


def test_attribute_missing():
    proc = run_fastgw(*serve_args("wsgiapp:fgw_missing_attribute"))
    assert_user_error(proc, "fgw_missing_attribute")


def test_dotted_attribute_missing():
    proc = run_fastgw(*serve_args("dotted:holder.fgw_nope"))
    assert_user_error(proc, "fgw_nope")


@pytest.mark.parametrize("spec,needle", [
    ("not_callable:application", "application"),
    ("not_callable:settings", "settings"),
    ("not_callable", "application"),
])
def test_not_callable(spec, needle):
    proc = run_fastgw(*serve_args(spec))
    assert_user_error(proc, needle)


def test_import_error_shows_app_traceback():
    proc = run_fastgw(*serve_args("broken_import:application"))
    assert_user_error(proc)
    text = proc.stderr.decode("utf-8", "replace")
    assert "Traceback (most recent call last)" in text, text
    assert "_explode_during_import" in text, text
    assert "RuntimeError: fastgw-test-import-explosion" in text, text
    assert "broken_import.py" in text, text


def test_port_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        bind = "127.0.0.1:%d" % port
        proc = run_fastgw(*serve_args("wsgiapp:application", "--bind", bind, bind=False))
    assert_user_error(proc, str(port))


@pytest.mark.parametrize("bind", [
    "127.0.0.1:notaport",
    "127.0.0.1:99999",
    "[::1:8000",
    "tcp://127.0.0.1:80",
])
def test_bad_bind_syntax(bind):
    proc = run_fastgw(*serve_args("wsgiapp:application", "--bind", bind, bind=False))
    assert_user_error(proc, bind)


@pytest.mark.parametrize("workers", ["0", "-1", "abc", ""])
def test_bad_workers(workers):
    proc = run_fastgw("serve", "wsgiapp:application", "--bind", "127.0.0.1:0",
                      "--chdir", APPS_DIR, "--workers", workers)
    assert_user_error(proc, "workers")


def test_unknown_flag_is_usage_error():
    proc = run_fastgw(*serve_args("wsgiapp:application", "--fgw-no-such-flag"))
    text = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, (proc.returncode, text)
    assert "usage:" in text.lower()
    assert "--fgw-no-such-flag" in text


def test_user_error_leaves_no_processes(tmp_path):
    """A failing start must not leave a forked worker behind."""
    proc = run_fastgw(*serve_args("wsgiapp:fgw_missing_attribute"))
    assert proc.returncode != 0
    pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)",
                                       proc.stderr.decode("utf-8", "replace"))]
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10,
               message="workers of the failed start to exit: %r" % pids)


def documented_defaults():
    """(where, Config field, default cell) of the option tables of README.md and of the
    [server] table of docs/config.md."""
    from fastgw.cli import build_parser, server_options

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    options = server_options(build_parser().commands["serve"])
    by_flag = {option.flag: option.dest for option in options.values()}
    rows = []
    with open(os.path.join(root, "README.md"), encoding="utf-8") as fh:
        for line in fh:
            match = re.match(r"\| `[^|]*?(--[a-z-]+)[^|]*` \| ([^|]*) \|", line)
            if match and match.group(1) in by_flag:
                rows.append(("README.md " + match.group(1), by_flag[match.group(1)],
                             match.group(2).strip()))
    with open(os.path.join(root, "docs", "config.md"), encoding="utf-8") as fh:
        for line in fh:
            match = re.match(r"\| `(\w+)` \| `[^|]*` \| [^|]* \| ([^|]*) \|", line)
            if match and match.group(1) in options:
                rows.append(("docs/config.md " + match.group(1), options[match.group(1)].dest,
                             match.group(2).strip()))
    return rows


def test_documented_defaults_are_the_config_defaults():
    # Config's field defaults are the one table of defaults; the docs must say the same.
    from fastgw.addresses import parse_bind
    from fastgw.config import Config, default

    fields = Config.__dataclass_fields__
    compared = []
    for where, dest, cell in documented_defaults():
        name = dest if dest in fields else dest + "s"
        if name not in fields:
            continue  # a flag that is not a setting of its own (--keep-locale, --x-sendfile-root)
        value = default(name)
        number = re.fullmatch(r"(\d+(?:\.\d+)?)(?: \(.*\))?", cell)
        text = re.match(r'`"?([^`"]+)"?`', cell)
        if number:
            assert float(number.group(1)) == value, (where, cell, value)
        elif text and name == "binds":
            assert (parse_bind(text.group(1)),) == value, (where, cell, value)
        elif text:
            shown = ",".join(value) if type(value) is tuple else value
            assert text.group(1) == shown, (where, cell, value)
        elif cell in ("off", "none", "false"):
            assert not value, (where, cell, value)
        else:
            continue  # said in words: "number of CPUs", "stderr", "umask"...
        compared.append(where)
    # Both tables hold the numbers (limits, timeouts, counts): most rows are compared.
    assert len(compared) >= 40, compared
