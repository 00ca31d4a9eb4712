"""Access log formats (combined, json, a format string), X-Request-ID, the error log file,
and reopening both with SIGUSR1 after they were moved away (as logrotate does)."""
import json
import os
import re
import signal
import subprocess

import pytest

from fgwtest import (RawConnection, fastgw_command, http_request, raw_request, read_lines,
                     request, subprocess_env, wait_until)
from fastgw._request import Request
from fastgw.accesslog import AccessLog, check_format, compile_format, Finished
from fastgw.errors import ConfigError

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def make_request(method="GET", target="/a/b?x=1", headers=(), peer=("10.1.2.3", 5555)):
    req = Request()
    req.method = method
    req.target = target
    req.path, _, req.query = target.partition("?")
    req.version = "HTTP/1.1"
    req.headers = list(headers)
    req.peer = peer
    req.params = None
    return req


# --------------------------------------------------------------------------
# formats, in process


def test_format_directives():
    render = compile_format('%h %l %u %t "%r" %>s %s %b %B %D %T %m %U %q %H %{User-Agent}i '
                            '%{X-Missing}i %L %P %%')
    req = make_request(headers=[("User-Agent", 'agent "quoted"')])
    line = render(Finished(req, 201, 0, "alice", 2500000, "rid-1", 0.0))
    assert line == ('10.1.2.3 - alice [01/Jan/1970:00:00:00 +0000] "GET /a/b?x=1 HTTP/1.1" '
                    '201 201 - 0 2500000 2 GET /a/b ?x=1 HTTP/1.1 agent \\x22quoted\\x22 - '
                    'rid-1 %d %%' % os.getpid())


@pytest.mark.parametrize("bad, says", [
    ("%z", "'%z'"),
    ("%{Host}o", "not supported"),
    ("%h %", "at the end"),
    ("plain text", "choose combined"),
])
def test_bad_format_is_a_config_error(bad, says):
    with pytest.raises(ConfigError) as info:
        check_format(bad)
    assert "--access-log-format" in str(info.value) and says in str(info.value)


def test_json_line_fields(tmp_path):
    path = tmp_path / "a.log"
    log = AccessLog(str(path), "json")
    req = make_request(headers=[("user-agent", "ua/1"), ("Referer", "http://r/")])
    log.log(req, 404, 12, duration_us=345, request_id="id-9", started=1700000000.1234)
    log.close()
    (line,) = path.read_text().splitlines()
    entry = json.loads(line)
    assert entry == {"time": "2023-11-14T22:13:20.123Z", "remote": "10.1.2.3", "method": "GET",
                     "path": "/a/b", "query": "x=1", "protocol": "HTTP/1.1", "status": 404,
                     "bytes": 12, "duration_us": 345, "user_agent": "ua/1",
                     "referer": "http://r/", "user": None, "request_id": "id-9"}


# --------------------------------------------------------------------------
# against the server


def test_json_access_log_with_request_ids(start_server, tmp_path):
    path = str(tmp_path / "access.json")
    srv = start_server("wsgiapp:application", "--access-log", path,
                       "--access-log-format", "json", "--request-id")
    generated = http_request(srv.port, "GET", "/environ-raw?q=1",
                             headers={"User-Agent": "json-test/1"})
    rid = generated.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    # the application sees the id it is logged with
    assert generated.json()["environ"]["HTTP_X_REQUEST_ID"] == rid
    passed = http_request(srv.port, "GET", "/hello", headers={"X-Request-ID": "trace-abc.42"})
    assert passed.headers.get_all("X-Request-ID") == ["trace-abc.42"]
    # an id that is not one visible-ASCII token is replaced, not echoed
    bad = raw_request(srv.port, "GET", "/environ-raw",
                      headers=[("X-Request-ID", "has space")])
    replaced = bad.header("X-Request-ID")
    assert replaced != "has space" and re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert bad.json()["environ"]["HTTP_X_REQUEST_ID"] == replaced
    lines = wait_until(lambda: len(read_lines(path)) >= 3 and read_lines(path), 10,
                       message="3 access log lines")
    entries = [json.loads(l) for l in lines]
    first = entries[0]
    assert ISO_MS.match(first["time"]), first
    assert (first["method"], first["path"], first["query"], first["status"]) == \
        ("GET", "/environ-raw", "q=1", 200)
    assert first["bytes"] == len(generated.body)
    assert isinstance(first["duration_us"], int) and first["duration_us"] >= 0
    assert (first["remote"], first["user_agent"], first["request_id"]) == \
        ("127.0.0.1", "json-test/1", rid)
    assert entries[1]["request_id"] == "trace-abc.42"
    assert entries[2]["request_id"] == replaced


def test_custom_format_to_stdout(start_server):
    srv = start_server("wsgiapp:application", "--access-log", "-", "--access-log-format",
                       'custom %m %U%q %>s %b %{X-Trace}i %L')
    raw_request(srv.port, "GET", "/hello?z=9", headers=[("X-Trace", "t1"),
                                                       ("X-Request-ID", "r-7")])
    srv.wait_for_stdout(r"^custom GET /hello\?z=9 200 14 t1 r-7$")


def test_request_id_not_added_to_an_apps_own(start_server, tmp_path):
    app = tmp_path / "ownid.py"
    app.write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('X-Request-ID', 'from-app'), ('Content-Length', '2')])\n"
        "    return [b'ok']\n")
    srv = start_server("ownid:application", "--request-id", chdir=str(tmp_path))
    resp = raw_request(srv.port, "GET", "/")
    assert resp.header_list("X-Request-ID") == ["from-app"]


def test_bad_access_log_format_refused(tmp_path):
    proc = subprocess.run(fastgw_command() + ["serve", "wsgiapp:application",
                                              "--access-log-format", "%h %Q"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=subprocess_env(), timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "fastgw: error: --access-log-format '%h %Q'" in err, err
    assert "Traceback" not in err


def test_access_and_error_logs_reopen_on_sigusr1(start_server, tmp_path):
    access = tmp_path / "access.log"
    errors = tmp_path / "error.log"
    srv = start_server("wsgiapp:application", "--access-log", str(access), "--error-log",
                       str(errors), wait=False)
    port = int(wait_until(lambda: re.search(r"Listening at: http://127\.0\.0\.1:(\d+)",
                                            errors.read_text() if errors.exists() else ""),
                          15, message="Listening line in the error log file").group(1))
    # the server's own lines go to the file, not to stderr
    assert not any("Listening at:" in l for l in srv.log_lines())
    assert http_request(port, "GET", "/hello?before").status == 200
    wait_until(lambda: any("/hello?before" in l for l in read_lines(str(access))), 10,
               message="first access line")
    os.rename(access, str(access) + ".1")
    os.rename(errors, str(errors) + ".1")
    srv.send_signal(signal.SIGUSR1)
    # The worker reopens when the master's SIGUSR1 reaches it: requests go on until one is
    # logged in a new access.log (the worker reopens the error log before the access log).
    counter = iter(range(10**6))

    def reopened():
        http_request(port, "GET", "/hello?after=%d" % next(counter))
        return any("/hello?after=" in l for l in read_lines(str(access)))

    wait_until(reopened, 15, message="a line in the new access log")
    old_access = read_lines(str(access) + ".1")
    assert any("/hello?before" in l for l in old_access)
    raw = RawConnection(port)
    raw.send(request("GET", "/raise?when=before"))
    assert raw.read_response().status == 500
    raw.close()
    wait_until(lambda: "fastgw-test-boom-before" in errors.read_text(), 15,
               message="the application's traceback in the new error log")
    old_errors = open(str(errors) + ".1").read()
    assert "Listening at:" in old_errors and "SIGUSR1: reopening log files" in old_errors
    assert srv.stop() == 0
    assert "Shutting down" in errors.read_text()


def test_access_log_that_cannot_be_opened_is_a_startup_error(tmp_path):
    path = str(tmp_path / "no-such-dir" / "access.log")
    proc = subprocess.run(fastgw_command() + ["serve", "wsgiapp:application", "--bind",
                                              "127.0.0.1:0", "--access-log", path],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=subprocess_env(), timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "fastgw: error: --access-log %r: cannot open it: No such file" % path in err, err
    assert "Booting worker" not in err
