"""App processes in Python's UTF-8 mode whatever the locale (src/fastgw/utf8mode.py).

Under a Latin-1 locale, and under the C locale with PYTHONUTF8=0, `fastgw serve`
restarts itself with -X utf8 and warns, naming the locale: the application (APP
below) then saves a file whose name the locale cannot encode, posted to it, and
the static mount serves it back by that name. --keep-locale (or keep_locale in
the config file) keeps the locale's encoding, and the UnicodeEncodeError with it.
Under a UTF-8 locale, and under plain C (where Python turns UTF-8 mode on by
itself, PEP 540), nothing is restarted and nothing is logged. The restart keeps
the pid, the interpreter's options, systemd's sockets, and SIGHUP reloads.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse

import pytest

from fgwtest import fastgw_command, http_request, subprocess_env, wait_until

NAME = "café-ü-€.txt"  # € is not in Latin-1, none of it is ASCII
LATIN1 = {"LANG": "en_US.ISO-8859-1", "LC_ALL": "en_US.ISO-8859-1"}
C_NO_UTF8_MODE = {"LANG": "C", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
WARNING_RE = re.compile(r"\[WARNING\] the locale \((.*?)\) gives Python the file-system "
                        r"encoding (\S+), .*UTF-8 mode.*--keep-locale")

APP = '''
import json, os, subprocess, sys

FILES = os.environ["LOCALE_TEST_FILES"]


def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        name = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])).decode("utf-8")
        try:
            with open(os.path.join(FILES, name), "wb") as fh:
                fh.write(b"saved by the app")
            answer = {"listed": os.listdir(FILES)}
        except UnicodeEncodeError as e:
            answer = {"error": repr(e)}
    else:
        child = subprocess.run([sys.executable, "-c", "import sys; print(sys.flags.utf8_mode)"],
                               capture_output=True, text=True, check=True)
        answer = {"encoding": sys.getfilesystemencoding(), "utf8_mode": sys.flags.utf8_mode,
                  "child_utf8_mode": int(child.stdout), "warnoptions": sys.warnoptions,
                  "xoptions": sorted(sys._xoptions), "pid": os.getpid(),
                  "environ": sorted(k for k in os.environ if k.startswith("LISTEN_")
                                    or k in ("PYTHONUTF8", "FASTGW_UTF8_MODE_WARNING"))}
    body = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


@pytest.fixture(autouse=True)
def no_inherited_utf8_mode(monkeypatch):
    # The servers' environments are built from this one: only the tests set PYTHONUTF8.
    monkeypatch.delenv("PYTHONUTF8", raising=False)


@pytest.fixture(scope="session")
def latin1():
    """The Latin-1 locale's environment, checked to really give Python iso8859-1."""
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
                           env=subprocess_env(**LATIN1), capture_output=True, text=True,
                           timeout=60)
    if probe.stdout.strip() != "iso8859-1":
        message = ("the en_US.ISO-8859-1 locale is not available (Python's file-system "
                   f"encoding under it: {probe.stdout.strip()!r}); generate it with: "
                   "localedef -i en_US -f ISO-8859-1 en_US.ISO-8859-1 (.ci/run does)")
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return LATIN1


@pytest.fixture
def site(tmp_path):
    """The app's directory and the directory it saves files in (served at /files)."""
    (tmp_path / "localeapp.py").write_text(APP)
    files = tmp_path / "files"
    files.mkdir()
    return tmp_path, files


def serve_args(site):
    app_dir, files = site
    return ["localeapp:application", "--static", f"/files={files}",
            "--env", f"LOCALE_TEST_FILES={files}"]


def start(start_server, site, env, *extra):
    app, *args = serve_args(site)
    return start_server(app, *args, *extra, chdir=str(site[0]), env=env)


def report(port):
    resp = http_request(port, "GET", "/report")
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def save_and_fetch(port, files):
    """POST the name to the app, which saves the file; fetch it from the static mount."""
    saved = json.loads(http_request(port, "POST", "/save", body=NAME.encode()).body)
    if "error" in saved:
        return saved
    assert NAME in saved["listed"], saved
    assert os.path.exists(os.path.join(bytes(files), NAME.encode("utf-8")))
    back = http_request(port, "GET", "/files/" + urllib.parse.quote(NAME))
    assert (back.status, back.body) == (200, b"saved by the app")
    return saved


def warnings_in(text):
    return WARNING_RE.findall(text)


@pytest.mark.parametrize("locale_name, setting, encoding", [
    ("latin-1", "LC_ALL=en_US.ISO-8859-1", "iso8859-1"),
    ("C", "LC_ALL=C, PYTHONUTF8=0", "ascii"),
], ids=["latin-1", "C, PYTHONUTF8=0"])
def test_legacy_locale_restarts_in_utf8_mode(request, start_server, site, locale_name, setting,
                                             encoding):
    env = request.getfixturevalue("latin1") if locale_name == "latin-1" else C_NO_UTF8_MODE
    srv = start(start_server, site, env)
    assert warnings_in(srv.log_text()) == [(setting, encoding)], srv.log_text()
    # exec, not a new process: the pid its launcher knows is still the master's
    assert re.search(rf"Listening at: \S+ \({srv.proc.pid}\)$", srv.log_text(), re.M)
    got = report(srv.port)
    assert (got["encoding"], got["utf8_mode"]) == ("utf-8", 1)
    # -X utf8, not PYTHONUTF8: the app's own children run under the locale as given
    assert got["child_utf8_mode"] == 0
    assert got["environ"] == (["PYTHONUTF8"] if "PYTHONUTF8" in env else [])
    save_and_fetch(srv.port, site[1])


@pytest.mark.parametrize("how", ["flag", "config file"])
def test_keep_locale_keeps_the_locale_encoding(start_server, site, latin1, tmp_path, how):
    if how == "flag":
        srv = start(start_server, site, latin1, "--keep-locale")
    else:
        config = tmp_path / "fastgw.toml"
        config.write_text("[server]\nkeep_locale = true\n")
        srv = start(start_server, site, latin1, "--config", str(config))
    got = report(srv.port)
    assert (got["encoding"], got["utf8_mode"]) == ("iso8859-1", 0)
    assert "UnicodeEncodeError" in save_and_fetch(srv.port, site[1])["error"]
    assert "UTF-8 mode" not in srv.log_text()


@pytest.mark.parametrize("env, utf8_mode", [
    ({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}, 0),
    # Python's own UTF-8 mode (PEP 540): nothing for fastgw to do
    ({"LANG": "C", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0"}, 1),
], ids=["C.UTF-8", "C"])
def test_no_restart_when_already_utf8(start_server, site, env, utf8_mode):
    srv = start(start_server, site, env)
    got = report(srv.port)
    assert (got["encoding"], got["utf8_mode"]) == ("utf-8", utf8_mode)
    assert "utf8" not in got["xoptions"]
    assert "UTF-8 mode" not in srv.log_text()
    save_and_fetch(srv.port, site[1])


def test_check_and_bad_configuration_do_not_restart(site, latin1):
    checked = subprocess.run(fastgw_command() + ["check", *serve_args(site)],
                             env=subprocess_env(**latin1), capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "keep_locale = false" in checked.stdout
    assert checked.stderr == ""
    bad = subprocess.run(fastgw_command() + ["serve", *serve_args(site), "--static",
                                             f"/gone={site[0] / 'missing'}"],
                         env=subprocess_env(**latin1), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0
    assert bad.stderr.startswith("fastgw: error: ") and "missing" in bad.stderr, bad.stderr
    assert "UTF-8 mode" not in bad.stderr


def test_sighup_reload_stays_in_utf8_mode(start_server, site, latin1):
    srv = start(start_server, site, latin1)
    first = srv.wait_for_workers(1)[-1]
    srv.send_signal(signal.SIGHUP)
    second = srv.wait_for_workers(2)[-1]
    assert second != first
    got = wait_until(lambda: (lambda r: r["pid"] == second and r)(report(srv.port)),
                     message="a response from the reloaded worker")
    assert (got["encoding"], got["utf8_mode"]) == ("utf-8", 1)
    assert len(warnings_in(srv.log_text())) == 1


class Launched:
    """fastgw started by `command` (not the fixture's), output in a file."""

    def __init__(self, tmp_path, command, env, pass_fds=()):
        self.log_path = tmp_path / "launched.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, env=subprocess_env(**env),
                                         pass_fds=pass_fds)

    def text(self):
        return self.log_path.read_text(errors="replace")

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"fastgw exited ({self.proc.returncode}):\n{self.text()}")
            return "Booting worker" in self.text() and re.search(
                r"Listening at: .*?:(\d+)(?: \(fd \d+\))? \((\d+)\)$", self.text(), re.M)

        found = wait_until(ready, 15, message="fastgw listening")
        assert int(found.group(2)) == self.proc.pid
        return int(found.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.text()


@pytest.fixture
def launch(tmp_path):
    started = []

    def run(*args, **kwargs):
        started.append(Launched(tmp_path, *args, **kwargs))
        return started[-1]

    yield run
    for launched in started:
        if launched.proc.poll() is None:
            launched.proc.kill()
            launched.proc.wait(10)


def serve_command(site):
    return ["serve", *serve_args(site), "--bind", "127.0.0.1:0", "--workers", "1",
            "--chdir", str(site[0])]


def test_console_script(launch, site, latin1):
    script = os.path.join(os.path.dirname(sys.executable), "fastgw")
    if not os.path.exists(script):
        message = f"no fastgw script next to {sys.executable}; pip install the package"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = launch([script, *serve_command(site)], latin1)
    port = server.wait_ready()
    assert (report(port)["encoding"], report(port)["utf8_mode"]) == ("utf-8", 1)
    save_and_fetch(port, site[1])
    server.stop()
    assert len(warnings_in(server.text())) == 1


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.orig_argv is new in Python 3.10")
def test_interpreter_options_are_kept(launch, site, latin1):
    server = launch([sys.executable, "-W", "ignore::ResourceWarning", "-X", "faulthandler",
                     "-m", "fastgw", *serve_command(site)], latin1)
    got = report(server.wait_ready())
    assert got["warnoptions"] == ["ignore::ResourceWarning"]
    assert got["xoptions"] == ["faulthandler", "utf8"]
    server.stop()


# Stands in for systemd: the socket as descriptor 3, LISTEN_PID its own pid, then exec.
ACTIVATOR = r"""
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_socket_activation_survives_the_restart(launch, site, latin1):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    command = [sys.executable, "-c", ACTIVATOR, str(listener.fileno()), *fastgw_command(),
               "serve", *serve_args(site), "--bind", "fd://web", "--workers", "1",
               "--chdir", str(site[0])]
    server = launch(command, latin1, pass_fds=[listener.fileno()])
    listener.close()
    server.wait_ready()
    got = report(port)
    assert (got["encoding"], got["utf8_mode"]) == ("utf-8", 1)
    assert got["environ"] == []  # LISTEN_* are the master's, not the app's
    server.stop()
    assert len(warnings_in(server.text())) == 1
