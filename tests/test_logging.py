"""Error log format, --log-level, --access-log."""
import re
import socket
import subprocess

from fgwtest import (APPS_DIR, RawConnection, fastgw_command, http_request, read_lines, request,
                     subprocess_env, wait_until)

LOG_LINE_RE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000\] \[(\d+)\] "
    r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] (.*)$")

ACCESS_RE = (
    r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    r'"GET /hello\?access=%s HTTP/1\.1" 200 14 "http://referer\.example/page" "fgw-agent/2\.0"$')


def test_log_line_format(start_server):
    srv = start_server("wsgiapp:application")
    srv.wait_for_workers(1)
    assert http_request(srv.port, "GET", "/hello").status == 200
    listening = [l for l in srv.log_lines() if "Listening at:" in l]
    booting = [l for l in srv.log_lines() if "Booting worker with pid:" in l]
    assert listening and booting
    for line in listening + booting:
        m = LOG_LINE_RE.match(line)
        assert m, "bad log line format: %r" % line
        assert m.group(2) == "INFO", line
    m = LOG_LINE_RE.match(listening[0])
    assert int(m.group(1)) == srv.pid, "Listening line not logged by the master"
    assert re.match(r"Listening at: http://127\.0\.0\.1:%d(\s|$)" % srv.port, m.group(3)), m.group(3)
    assert srv.stop() == 0
    # every line the server itself wrote in a clean run follows the format
    bad = [l for l in srv.log_lines() if not LOG_LINE_RE.match(l)]
    assert not bad, bad


def test_app_traceback_logged_at_error_level(start_server):
    srv = start_server("wsgiapp:application")
    mark = srv.log_mark()
    assert http_request(srv.port, "GET", "/raise?when=before").status == 500
    srv.wait_for_log("RuntimeError: fastgw-test-boom-before", start=mark)
    lines = srv.log_lines()[mark:]
    headers = [l for l in lines if LOG_LINE_RE.match(l)]
    assert any(LOG_LINE_RE.match(l).group(2) in ("ERROR", "CRITICAL") for l in headers), lines


def _hit(port, tag):
    resp = http_request(port, "GET", "/hello?access=" + tag,
                        headers={"Referer": "http://referer.example/page",
                                 "User-Agent": "fgw-agent/2.0"})
    assert resp.status == 200


def test_access_log_stdout(start_server):
    srv = start_server("wsgiapp:application", "--access-log", "-")
    _hit(srv.port, "stdout")
    srv.wait_for_stdout(ACCESS_RE % "stdout", timeout=10)
    assert not any("access=stdout" in l for l in srv.log_lines()), "access log went to stderr"


def test_access_log_file(start_server, tmp_path):
    path = str(tmp_path / "access.log")
    srv = start_server("wsgiapp:application", "--access-log", path)
    _hit(srv.port, "file")
    wait_until(lambda: any(re.match(ACCESS_RE % "file", l) for l in read_lines(path)), 10,
               message="access log line in %s (has %r)" % (path, read_lines(path)))
    # 404 and HEAD lines too; %b is "-" for no body
    http_request(srv.port, "HEAD", "/hello?access=head")
    http_request(srv.port, "GET", "/nope?access=404")
    wait_until(lambda: any('"GET /nope?access=404 HTTP/1.1" 404 ' in l for l in read_lines(path)),
               10, message="404 line")
    wait_until(lambda: any('"HEAD /hello?access=head HTTP/1.1" 200 ' in l for l in read_lines(path)),
               10, message="HEAD line")
    assert srv.stop() == 0


def test_no_access_log_by_default(start_server):
    srv = start_server("wsgiapp:application")
    _hit(srv.port, "default")
    assert srv.stop() == 0
    assert not any("access=default" in l for l in srv.stdout_lines() + srv.log_lines())


def test_log_level_warning_hides_info(start_server, tmp_path):
    path = str(tmp_path / "quiet.sock")
    srv = start_server("wsgiapp:application", "--bind", "unix:" + path, "--log-level", "warning",
                       default_bind=False, wait=False)

    def connectable():
        if srv.proc.poll() is not None:
            raise AssertionError("server exited: " + srv.log_text())
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    wait_until(connectable, 15, message="unix socket %s accepting" % path)
    with RawConnection(unix_path=path) as conn:
        assert conn.roundtrip(request("GET", "/hello")).status == 200
    assert srv.stop() == 0
    info = [l for l in srv.log_lines() if "[INFO]" in l or "[DEBUG]" in l]
    assert not info, info


def test_log_level_debug_keeps_info(start_server):
    srv = start_server("wsgiapp:application", "--log-level", "debug")
    assert http_request(srv.port, "GET", "/hello").status == 200
    assert any("[INFO] Listening at:" in l for l in srv.log_lines())


def test_bad_log_level_is_rejected():
    proc = subprocess.run(fastgw_command() + ["serve", "wsgiapp:application", "--bind", "127.0.0.1:0",
                                              "--chdir", APPS_DIR, "--log-level", "loud"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                          env=subprocess_env())
    assert proc.returncode != 0
    assert b"loud" in proc.stderr
