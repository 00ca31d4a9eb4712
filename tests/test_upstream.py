"""FastCGI and SCGI upstreams behind a real server.

* real php-fpm (started by the tests, unprivileged config in a tmp dir): GET with a
  query and PATH_INFO, a POST form, a 16 MiB upload, a large response, Set-Cookie,
  Location and Status from PHP, PHP errors in fastgw's error log, a slow script
  answered 504, php-fpm down or stopped answered 502;
* a small FastCGI responder written here, to see what the client does on the wire:
  one kept connection for many requests (FCGI_KEEP_CONN), a pooled connection the
  upstream closed, STDERR records, FCGI_OVERLOADED, an upstream that never answers
  or hangs up mid-response;
* fastgw itself as the FastCGI and the SCGI back end (bodies streamed both ways).
"""
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from fgwtest import IncompleteResponse, RawConnection, pattern_bytes, raw_request, request

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                    "gateway.md")


def doc_recipe(name, **replace):
    """The TOML block after `<!-- recipe: NAME -->` in docs/gateway.md, with paths replaced:
    the tests run the documented configurations as written."""
    with open(DOCS, encoding="utf-8") as fh:
        text = fh.read()
    marker = "<!-- recipe: %s -->\n```toml\n" % name
    start = text.index(marker) + len(marker)
    block = text[start:text.index("```", start)]
    for old, new in replace.items():
        assert old in block, (old, block)
        block = block.replace(old, new)
    return block


# --------------------------------------------------------------------------
# php-fpm

PHP_SCRIPTS = {
    "info.php": """<?php
header("Content-Type: application/json");
$keys = ["SCRIPT_NAME", "PATH_INFO", "SCRIPT_FILENAME", "DOCUMENT_ROOT", "REQUEST_METHOD",
         "QUERY_STRING", "REQUEST_URI", "HTTP_X_CUSTOM", "CONTENT_TYPE", "CONTENT_LENGTH",
         "GATEWAY_INTERFACE", "SERVER_SOFTWARE", "REMOTE_ADDR", "HTTP_PROXY"];
$server = [];
foreach ($keys as $k) { $server[$k] = $_SERVER[$k] ?? null; }
echo json_encode(["get" => $_GET, "post" => $_POST, "server" => $server]);
""",
    "upload.php": """<?php
$in = fopen("php://input", "rb");
$ctx = hash_init("sha256");
$n = 0;
while (!feof($in)) { $d = fread($in, 65536); $n += strlen($d); hash_update($ctx, $d); }
header("Content-Type: application/json");
echo json_encode(["sha256" => hash_final($ctx), "length" => $n]);
""",
    "big.php": """<?php
header("Content-Type: application/octet-stream");
$n = (int)$_GET["n"];
$block = str_repeat("0123456789abcdef", 4096);
while ($n > 0) { echo substr($block, 0, min($n, 65536)); $n -= 65536; }
""",
    "headers.php": """<?php
setcookie("first", "1");
setcookie("second", "2");
header("X-Php: yes");
http_response_code((int)($_GET["code"] ?? 200));
echo "headers";
""",
    "gone.php": """<?php
header("Status: 410 Gone");
echo "gone";
""",
    "redirect.php": """<?php
header("Location: /blog/info.php?from=redirect");
""",
    "error.php": """<?php
error_log("php-error-marker from error_log");
trigger_error("php-warning-marker", E_USER_WARNING);
echo "still answered";
""",
    "sleep.php": """<?php
sleep(5);
echo "slept";
""",
}

PHP_FPM_CONF = """[global]
error_log = {base}/php-fpm.log
pid = {base}/php-fpm.pid
daemonize = no

[www]
listen = {base}/php.sock
pm = static
pm.max_children = 4
catch_workers_output = yes
php_admin_value[post_max_size] = 64M
php_admin_flag[display_errors] = off
php_admin_flag[log_errors] = on
"""


def find_php_fpm():
    for name in ("php-fpm", "php-fpm8.4", "php-fpm8.3", "php-fpm8.2", "php-fpm8.1", "php-fpm8.0"):
        path = shutil.which(name)
        if path:
            return path
    found = sorted(glob.glob("/usr/sbin/php-fpm*"))
    return found[-1] if found else None


@pytest.fixture(scope="session")
def php_fpm_path():
    path = find_php_fpm()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("php-fpm is required on CI but was not found (apt-get install php-fpm)")
        pytest.skip("php-fpm not installed")
    return path


def wait_connectable(path, proc, deadline=15.0):
    end = time.monotonic() + deadline
    while True:
        if proc.poll() is not None:
            raise RuntimeError("php-fpm exited with %s" % proc.returncode)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
            return
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError("php-fpm did not listen on %s within %gs" % (path, deadline))
            time.sleep(0.02)


class PhpFpm:
    def __init__(self, binary, base):
        self.base = base
        self.socket = os.path.join(base, "php.sock")
        conf = os.path.join(base, "php-fpm.conf")
        with open(conf, "w") as fh:
            fh.write(PHP_FPM_CONF.format(base=base))
        cmd = [binary, "-F", "-y", conf, "-p", base]
        if os.geteuid() == 0:
            cmd.append("--allow-to-run-as-root")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_connectable(self.socket, self.proc)
        except Exception:
            self.stop()
            log = os.path.join(base, "php-fpm.log")
            raise RuntimeError(open(log).read() if os.path.exists(log) else "no php-fpm log")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # php-fpm's graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_www(base):
    www = os.path.join(base, "www")
    os.makedirs(os.path.join(www, "assets"))
    with open(os.path.join(www, "assets", "site.css"), "w") as fh:
        fh.write("body { margin: 0 }\n")
    for name, text in PHP_SCRIPTS.items():
        with open(os.path.join(www, name), "w") as fh:
            fh.write(text)
    return www


@pytest.fixture(scope="module")
def php(php_fpm_path, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("php"))
    www = make_www(base)
    fpm = PhpFpm(php_fpm_path, base)
    yield {"base": base, "www": www, "fpm": fpm}
    fpm.stop()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Besides the documented recipe: a slow script, and upstreams that are down.
PHP_MOUNTS = """
[[mount]]
path = "/php-slow"
fastcgi = "unix:{socket}"
timeout = 1
params = {{ SCRIPT_FILENAME = "{www}/sleep.php" }}

[[mount]]
path = "/php-down"
fastcgi = "unix:{base}/nothing-listens-here.sock"

[[mount]]
path = "/tcp-down"
fastcgi = "tcp://127.0.0.1:{port}"
"""


@pytest.fixture(scope="module")
def php_srv(start_module_server, php):
    config = os.path.join(php["base"], "fastgw.toml")
    with open(config, "w") as fh:
        fh.write(doc_recipe("php", **{"/run/php/php8.2-fpm.sock": php["fpm"].socket,
                                      "/srv/blog": php["www"]}))
        fh.write(PHP_MOUNTS.format(socket=php["fpm"].socket, www=php["www"], base=php["base"],
                                   port=closed_port()))
    return start_module_server("mounts:main", "--config", config)


def test_php_get_with_query_and_path_info(php_srv, php):
    resp = raw_request(php_srv.port, "GET", "/blog/info.php/extra/path?a=1&b=two",
                       headers=[("X-Custom", "custom"), ("Proxy", "http://evil:1")])
    assert resp.status == 200, resp
    assert resp.header("content-type") == "application/json"
    data = resp.json()
    assert data["get"] == {"a": "1", "b": "two"}
    server = data["server"]
    assert server["SCRIPT_NAME"] == "/blog/info.php"
    assert server["PATH_INFO"] == "/extra/path"
    assert server["SCRIPT_FILENAME"] == os.path.join(php["www"], "info.php")
    assert server["DOCUMENT_ROOT"] == php["www"]
    assert server["REQUEST_URI"] == "/blog/info.php/extra/path?a=1&b=two"
    assert server["HTTP_X_CUSTOM"] == "custom"
    assert server["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert server["REMOTE_ADDR"] == "127.0.0.1"
    assert server["HTTP_PROXY"] is None  # httpoxy


def test_php_assets_are_static(php_srv):
    resp = raw_request(php_srv.port, "GET", "/blog/assets/site.css")
    assert resp.status == 200 and resp.body == b"body { margin: 0 }\n"
    assert resp.header("etag")  # served by fastgw's static files, not by php-fpm


def test_php_post_form(php_srv):
    body = b"name=fast+gw&list%5B%5D=1&list%5B%5D=2&empty="
    resp = raw_request(php_srv.port, "POST", "/blog/info.php", headers=[
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", str(len(body)))], body=body)
    assert resp.status == 200
    data = resp.json()
    assert data["post"] == {"name": "fast gw", "list": ["1", "2"], "empty": ""}
    assert data["server"]["REQUEST_METHOD"] == "POST"
    assert data["server"]["CONTENT_LENGTH"] == str(len(body))


def test_php_16_mib_upload(php_srv):
    body = pattern_bytes(16 * 1024 * 1024)
    resp = raw_request(php_srv.port, "PUT", "/blog/upload.php", headers=[
        ("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        body=body)
    assert resp.status == 200
    assert resp.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


def test_php_chunked_upload(php_srv):
    pieces = [b"x" * 100000, b"y" * 5]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    resp = raw_request(php_srv.port, "POST", "/blog/upload.php", headers=[
        ("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")],
        body=chunked)
    whole = b"".join(pieces)
    assert resp.json() == {"sha256": hashlib.sha256(whole).hexdigest(), "length": len(whole)}


def test_php_large_response(php_srv):
    n = 12 * 1024 * 1024 + 5
    resp = raw_request(php_srv.port, "GET", "/blog/big.php?n=%d" % n)
    assert resp.status == 200 and len(resp.body) == n
    block = b"0123456789abcdef" * 4096
    assert resp.body == (block * (n // len(block) + 1))[:n]


def test_php_headers_location_and_status(php_srv):
    resp = raw_request(php_srv.port, "GET", "/blog/headers.php")
    assert resp.status == 200 and resp.body == b"headers"
    assert resp.header_list("set-cookie") == ["first=1", "second=2"]
    assert resp.header("x-php") == "yes"
    resp = raw_request(php_srv.port, "GET", "/blog/headers.php?code=404")
    assert resp.status == 404
    resp = raw_request(php_srv.port, "GET", "/blog/gone.php")
    assert resp.status == 410 and resp.body == b"gone"
    # PHP adds "Status: 302" to a Location: a client redirect, not an internal one.
    resp = raw_request(php_srv.port, "GET", "/blog/redirect.php")
    assert resp.status == 302
    assert resp.header("location") == "/blog/info.php?from=redirect"
    resp = raw_request(php_srv.port, "GET", "/blog/missing.php")
    assert resp.status == 404


def test_php_keepalive_and_head(php_srv):
    with RawConnection(php_srv.port) as conn:
        for _ in range(3):
            resp = conn.roundtrip(request("GET", "/blog/gone.php"))
            assert resp.status == 410 and resp.body == b"gone"
        resp = conn.roundtrip(request("HEAD", "/blog/gone.php"), "HEAD")
        assert resp.status == 410 and resp.body == b""


def test_php_errors_are_logged(php_srv):
    mark = php_srv.log_mark()
    resp = raw_request(php_srv.port, "GET", "/blog/error.php")
    assert resp.status == 200 and resp.body == b"still answered"
    php_srv.wait_for_log(r"\[ERROR\] fastcgi upstream unix:.*php-error-marker from error_log",
                         start=mark)
    php_srv.wait_for_log(r"fastcgi upstream unix:.*php-warning-marker", start=mark)


def test_php_slow_script_is_504(php_srv):
    mark = php_srv.log_mark()
    resp = raw_request(php_srv.port, "GET", "/php-slow/")
    assert resp.status == 504
    php_srv.wait_for_log(r"fastcgi upstream .*: no answer after 1 s .*answering 504", start=mark)
    # The worker is fine and php-fpm still answers.
    assert raw_request(php_srv.port, "GET", "/blog/gone.php").status == 410


def test_upstream_down_is_502(php_srv):
    mark = php_srv.log_mark()
    assert raw_request(php_srv.port, "GET", "/php-down/x.php").status == 502
    php_srv.wait_for_log(r"nothing-listens-here\.sock: cannot connect: ", start=mark)
    assert raw_request(php_srv.port, "GET", "/tcp-down/x.php").status == 502
    php_srv.wait_for_log(r"fastcgi upstream tcp://127\.0\.0\.1:\d+: cannot connect: Connection "
                         r"refused", start=mark)


def test_php_fpm_stopped_is_502(start_server, php_fpm_path, tmp_path):
    base = str(tmp_path)
    www = make_www(base)
    fpm = PhpFpm(php_fpm_path, base)
    try:
        config = os.path.join(base, "fastgw.toml")
        with open(config, "w") as fh:
            fh.write(f"""
[[mount]]
path = "/php"
fastcgi = "unix:{fpm.socket}"
params = {{ SCRIPT_FILENAME = "{www}{{path_info}}" }}
""")
        srv = start_server("mounts:main", "--config", config)
        with RawConnection(srv.port) as conn:
            assert conn.roundtrip(request("GET", "/php/gone.php")).status == 410
            fpm.stop()
            assert conn.roundtrip(request("GET", "/php/gone.php")).status == 502
    finally:
        fpm.stop()


# --------------------------------------------------------------------------
# a FastCGI responder that shows what the client does


def fcgi_record(rtype, content, rid=1):
    pad = -len(content) % 8
    return struct.pack("!BBHHBx", 1, rtype, rid, len(content), pad) + content + b"\0" * pad


def parse_pairs(data):
    out = {}
    i = 0
    while i < len(data):
        lengths = []
        for _ in range(2):
            if data[i] & 0x80:
                lengths.append(struct.unpack("!I", data[i:i + 4])[0] & 0x7fffffff)
                i += 4
            else:
                lengths.append(data[i])
                i += 1
        n, v = lengths
        out[data[i:i + n].decode("latin-1")] = data[i + n:i + n + v].decode("latin-1")
        i += n + v
    return out


class Responder:
    """FastCGI responder on a UNIX socket; QUERY_STRING says how to misbehave."""

    def __init__(self, path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(32)
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self.serve, args=(conn, number), daemon=True).start()

    @staticmethod
    def read_exact(conn, n):
        data = b""
        while len(data) < n:
            more = conn.recv(n - len(data))
            if not more:
                raise EOFError
            data += more
        return data

    def read_record(self, conn):
        _, rtype, rid, clen, plen = struct.unpack("!BBHHBx", self.read_exact(conn, 8))
        content = self.read_exact(conn, clen + plen)[:clen]
        return rtype, rid, content

    def serve(self, conn, number):
        with conn:
            try:
                while self.one_request(conn, number):
                    pass
            except (EOFError, OSError):
                pass

    def one_request(self, conn, number):
        rtype, rid, content = self.read_record(conn)
        assert rtype == 1 and rid == 1
        keep = bool(content[2] & 1)
        params = b""
        stdin = hashlib.sha256()
        length = 0
        done = set()
        while len(done) < 2:
            rtype, rid, content = self.read_record(conn)
            if rtype == 4:
                params += content
            elif rtype == 5:
                stdin.update(content)
                length += len(content)
            if not content:
                done.add(rtype)
        env = parse_pairs(params)
        mode = env.get("QUERY_STRING", "")
        body = json.dumps({"connection": number, "keep_conn": keep, "length": length,
                           "sha256": stdin.hexdigest(), "env": env}).encode()
        head = b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        end = fcgi_record(3, b"\0\0\0\0\0\0\0\0")
        if mode == "hang":
            while conn.recv(65536):
                pass
            return False
        if mode == "overloaded":
            conn.sendall(fcgi_record(3, b"\0\0\0\0\2\0\0\0"))
            return keep
        if mode == "cut":
            conn.sendall(fcgi_record(6, head + body[:10]))
            return False
        out = b""
        if mode == "stderr":
            out += fcgi_record(7, b"fcgi-stderr-marker line 1\nline 2\n")
        # The response in small records, as a real upstream streams it.
        data = head + body
        for pos in range(0, len(data), 100):
            out += fcgi_record(6, data[pos:pos + 100])
        conn.sendall(out + fcgi_record(6, b"") + end)
        return keep and mode != "close-after"

    def close(self):
        self.listener.close()


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("responder"))
    r = Responder(os.path.join(base, "fcgi.sock"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def fcgi_srv(start_module_server, responder, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("responder-front"))
    config = os.path.join(base, "fastgw.toml")
    with open(config, "w") as fh:
        fh.write(f"""
[[mount]]
path = "/fcgi"
fastcgi = "unix:{responder.path}"
params = {{ SCRIPT_FILENAME = "/srv{{path_info}}", FGW_HOST = "{{http_host}}" }}

[[mount]]
path = "/fcgi-slow"
fastcgi = "unix:{responder.path}"
timeout = 1
""")
    return start_module_server("mounts:main", "--config", config)


def test_one_kept_connection_for_many_requests(fcgi_srv, responder):
    seen = set()
    with RawConnection(fcgi_srv.port) as conn:
        for i in range(6):
            resp = conn.roundtrip(request("GET", "/fcgi/page%d" % i))
            assert resp.status == 200
            data = resp.json()
            assert data["keep_conn"] is True
            assert data["env"]["SCRIPT_FILENAME"] == "/srv/page%d" % i
            assert data["env"]["FGW_HOST"] == "127.0.0.1"
            assert data["env"]["SCRIPT_NAME"] == "/fcgi"
            seen.add(data["connection"])
    assert len(seen) == 1


def test_request_body_sent_as_stdin(fcgi_srv):
    body = pattern_bytes(3 * 65536 + 11)
    resp = raw_request(fcgi_srv.port, "POST", "/fcgi/upload", headers=[
        ("Content-Length", str(len(body)))], body=body)
    data = resp.json()
    assert data["length"] == len(body) and data["sha256"] == hashlib.sha256(body).hexdigest()
    assert data["env"]["CONTENT_LENGTH"] == str(len(body))


def test_pooled_connection_closed_by_the_upstream(fcgi_srv):
    first = raw_request(fcgi_srv.port, "GET", "/fcgi/x?close-after").json()
    second = raw_request(fcgi_srv.port, "GET", "/fcgi/x").json()
    assert second["connection"] != first["connection"]


def test_upstream_stderr_is_logged(fcgi_srv):
    mark = fcgi_srv.log_mark()
    resp = raw_request(fcgi_srv.port, "GET", "/fcgi/x?stderr")
    assert resp.status == 200
    fcgi_srv.wait_for_log(r"\[ERROR\] fastcgi upstream unix:.*fcgi\.sock: fcgi-stderr-marker "
                          r"line 1$", start=mark)
    fcgi_srv.wait_for_log(r"fcgi\.sock: line 2$", start=mark)


def test_overloaded_upstream_is_503(fcgi_srv):
    assert raw_request(fcgi_srv.port, "GET", "/fcgi/x?overloaded").status == 503


def test_upstream_that_never_answers_is_504(fcgi_srv):
    assert raw_request(fcgi_srv.port, "GET", "/fcgi-slow/x?hang").status == 504
    assert raw_request(fcgi_srv.port, "GET", "/fcgi/x").status == 200


def test_upstream_hanging_up_mid_response(fcgi_srv):
    with RawConnection(fcgi_srv.port) as conn:
        conn.send(request("GET", "/fcgi/x?cut"))
        with pytest.raises(IncompleteResponse):
            conn.read_response()


def test_bad_paths_never_reach_the_upstream(fcgi_srv):
    assert raw_request(fcgi_srv.port, "GET", "/fcgi/../etc/passwd").status == 400
    assert raw_request(fcgi_srv.port, "GET", "/fcgi/a/%2e%2e/b").status == 400


# --------------------------------------------------------------------------
# fastgw as the FastCGI and SCGI back end


@pytest.fixture(scope="module")
def backends(start_module_server, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("backends"))
    fcgi_sock = os.path.join(base, "fcgi.sock")
    back = start_module_server("wsgiapp:application", "--bind", "fastcgi://unix:" + fcgi_sock,
                               "--bind", "scgi://127.0.0.1:0", default_bind=False)
    scgi_port = [l for l in back.listeners if l.startswith("scgi://")][0].rsplit(":", 1)[1]
    config = os.path.join(base, "fastgw.toml")
    with open(config, "w") as fh:
        fh.write(doc_recipe("upstreams", **{"/run/app.sock": fcgi_sock,
                                            "tcp://127.0.0.1:4000": "tcp://127.0.0.1:" + scgi_port}))
    front = start_module_server("mounts:main", "--config", config,
                                "--scgi", "/scgi-down=unix:" + os.path.join(base, "none.sock"))
    return back, front


@pytest.mark.parametrize("prefix", ["/app", "/legacy"])
def test_fastgw_backend_bodies_both_ways(backends, prefix):
    _, front = backends
    body = pattern_bytes(5 * 1024 * 1024 + 3)
    resp = raw_request(front.port, "POST", prefix + "/sha256", headers=[
        ("Content-Length", str(len(body)))], body=body)
    assert resp.status == 200
    data = resp.json()
    assert data["sha256"] == hashlib.sha256(body).hexdigest() and data["length"] == len(body)
    n = 6 * 1024 * 1024 + 1
    resp = raw_request(front.port, "GET", prefix + "/stream?n=%d" % n)
    assert resp.status == 200 and resp.body == pattern_bytes(n)


@pytest.mark.parametrize("prefix", ["/app", "/legacy"])
def test_fastgw_backend_environ(backends, prefix):
    _, front = backends
    resp = raw_request(front.port, "GET", prefix + "/environ?q=1", headers=[("X-Custom", "v")])
    env = resp.json()["environ"]
    assert env["SCRIPT_NAME"] == prefix
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "q=1"
    assert env["HTTP_X_CUSTOM"] == "v"
    resp = raw_request(front.port, "GET", prefix + "/headers")
    assert resp.header_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_scgi_down_is_502(backends):
    _, front = backends
    assert raw_request(front.port, "GET", "/scgi-down/x").status == 502


# --------------------------------------------------------------------------
# configuration


def run_check(*args):
    return subprocess.run([sys.executable, "-m", "fastgw", "check", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def test_check_lists_upstreams(tmp_path):
    config = tmp_path / "fastgw.toml"
    config.write_text("""
[[mount]]
path = "/php"
fastcgi = "unix:run/php.sock"
split_path_info = '^(.+?\\.php)(/.*)?$'
params = { SCRIPT_FILENAME = "/srv/php{script}" }
""")
    out = run_check("--config", str(config), "--scgi", "/s=127.0.0.1:4000",
                    "--fastcgi", "/f=[::1]:9000")
    assert out.returncode == 0, out.stderr
    assert "fastcgi      unix:%s/run/php.sock" % tmp_path in out.stdout
    assert "SCRIPT_FILENAME='/srv/php{script}'" in out.stdout
    assert "scgi         tcp://127.0.0.1:4000" in out.stdout
    assert "fastcgi      tcp://[::1]:9000" in out.stdout


@pytest.mark.parametrize("args,message", [
    (["--fastcgi", "/p=localhost"], "expected unix:/path/to.sock, tcp://HOST:PORT"),
    (["--fastcgi", "/p=tcp://h:0"], "port must be a number from 1 to 65535"),
    (["--scgi", "/p"], "expected PREFIX=ADDRESS"),
    (["--fastcgi", "/p=unix:"], "missing socket path"),
])
def test_cli_errors(args, message):
    out = run_check("mounts:main", *args)
    assert out.returncode == 1 and message in out.stderr, out.stderr


@pytest.mark.parametrize("mount,message", [
    ('fastcgi = "unix:x.sock"\nsplit_path_info = "(a)"', "needs two groups"),
    ('fastcgi = "unix:x.sock"\nsplit_path_info = "(a"', "is not a regular expression"),
    ('scgi = "unix:x.sock"\nparams = { "A-B" = "x" }', "params name 'A-B'"),
    ('scgi = "unix:x.sock"\nparams = { A = "{" }', "has a '{' with no '}'"),
    ('scgi = "unix:x.sock"\nfastcgi = "unix:y.sock"', "not both fastcgi and scgi"),
    ('fastcgi = 9000', "fastcgi = 9000: must be a string"),
])
def test_config_errors(tmp_path, mount, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'[[mount]]\npath = "/x"\n{mount}\n')
    out = run_check("--config", str(path))
    assert out.returncode == 1 and message in out.stderr, out.stderr
