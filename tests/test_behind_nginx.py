"""fastgw behind real nginx: fastcgi_pass (with and without fastcgi_keep_conn),
scgi_pass and uwsgi_pass, over TCP and UNIX sockets.

The nginx configuration is not written here: every ``server``/``upstream``
block comes from docs/deployment.md, where each one is marked with an
``<!-- nginx-test: NAME -->`` comment. The test changes only what must differ
on a test machine: ``listen 80;`` becomes a free loopback port, and the fastgw
addresses the doc uses (127.0.0.1:9000, unix:/run/fastgw/fastcgi.sock, ...)
become the listeners of the fastgw server started here. nginx runs as a child
process with everything (config, params files, temp paths, logs) in a
temporary directory.

One fastgw server (two workers) listens on all the addresses; one nginx
serves all the blocks, one port each. Each test is run through every block:
GET, HEAD, a 64 MiB upload and a 64 MiB download checked by SHA-256 (the data
is generated and hashed piece by piece, never held whole), a static file from
``--static``. Then what only some blocks do: connection reuse with
fastcgi_keep_conn, SCRIPT_NAME/PATH_INFO from fastcgi_split_path_info,
wsgi.errors in nginx's error log. After every test, nginx's error log must
hold no [error] (or worse) line.
"""
import contextlib
import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from fgwtest import (RawConnection, TESTS_DIR, pattern_bytes, pattern_chunks, read_lines,
                     request, wait_until)

DOC = os.path.join(os.path.dirname(TESTS_DIR), "docs", "deployment.md")
SNIPPET_RE = re.compile(r"<!-- nginx-test: ([a-z0-9-]+) -->\n```nginx\n(.*?)```", re.S)

BIG = 64 * 1024 * 1024
STATIC_SIZE = 5 * 1024 * 1024 + 12345

# The fastgw addresses as the doc writes them, per protocol: (TCP, UNIX path).
DOC_ADDRESSES = {
    "fastcgi": ("127.0.0.1:9000", "/run/fastgw/fastcgi.sock"),
    "scgi": ("127.0.0.1:4000", "/run/fastgw/scgi.sock"),
    "uwsgi": ("127.0.0.1:3031", "/run/fastgw/uwsgi.sock"),
}

# Snippet name -> (protocol, transport, the fastgw listener it is pointed at).
# The keep-alive blocks get listeners of their own, so the connections nginx
# keeps open can be counted.
SNIPPETS = {
    "fastcgi-tcp": ("fastcgi", "tcp", "fastcgi-tcp"),
    "fastcgi-unix": ("fastcgi", "unix", "fastcgi-unix"),
    "fastcgi-keepalive-tcp": ("fastcgi", "tcp", "fastcgi-keep-tcp"),
    "fastcgi-keepalive-unix": ("fastcgi", "unix", "fastcgi-keep-unix"),
    "fastcgi-subpath": ("fastcgi", "tcp", "fastcgi-tcp"),
    "scgi-tcp": ("scgi", "tcp", "scgi-tcp"),
    "scgi-unix": ("scgi", "unix", "scgi-unix"),
    "uwsgi-tcp": ("uwsgi", "tcp", "uwsgi-tcp"),
    "uwsgi-unix": ("uwsgi", "unix", "uwsgi-unix"),
}
LISTENERS = ["fastcgi-tcp", "fastcgi-keep-tcp", "fastcgi-unix", "fastcgi-keep-unix",
             "scgi-tcp", "scgi-unix", "uwsgi-tcp", "uwsgi-unix"]
# The blocks that serve the whole site at "/" (the sub-path one has its own tests).
SITE = [name for name in SNIPPETS if name != "fastcgi-subpath"]

BAD_LOG_LEVELS = ("[error]", "[crit]", "[alert]", "[emerg]")


def doc_snippets():
    with open(DOC, encoding="utf-8") as fh:
        return dict(SNIPPET_RE.findall(fh.read()))


def test_doc_has_every_tested_snippet():
    found = doc_snippets()
    assert set(found) == set(SNIPPETS), "docs/deployment.md nginx-test blocks: %r" % sorted(found)


# --------------------------------------------------------------------------
# fastgw


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("behind-nginx")
    static = base / "static"
    static.mkdir()
    digest = hashlib.sha256()
    with open(static / "big.bin", "wb") as fh:
        for chunk in pattern_chunks(STATIC_SIZE):
            fh.write(chunk)
            digest.update(chunk)
    return {"base": base, "static": str(static), "static_sha256": digest.hexdigest()}


@pytest.fixture(scope="module")
def fastgw(start_module_server, site):
    sockets = site["base"] / "sockets"
    sockets.mkdir()
    binds = {}
    for key in LISTENERS:
        proto, _, transport = key.partition("-")
        transport = transport.rsplit("-", 1)[-1]
        if transport == "unix":
            binds[key] = "%s://unix:%s" % (proto, sockets / (key + ".sock"))
        else:
            binds[key] = "%s://127.0.0.1:0" % proto
    args = []
    for key in LISTENERS:
        args += ["--bind", binds[key]]
    server = start_module_server("gatewayapp:application", *args, "--workers", "2",
                                 "--mount", "/app=mounts:api", "--static", "/static=" + site["static"])
    # The log lists the listeners in --bind order, after the fixture's HTTP one.
    logged = [l for l in server.listeners if not l.startswith("http://")]
    assert len(logged) == len(LISTENERS), server.listeners
    addresses = {}
    for key, listener in zip(LISTENERS, logged):
        if "://unix:" in listener:
            assert listener == binds[key], (key, listener)
            addresses[key] = "unix:" + listener.split("://unix:", 1)[1]
        else:
            assert listener.startswith(key.partition("-")[0] + "://127.0.0.1:"), (key, listener)
            addresses[key] = listener.split("://", 1)[1]
    server.addresses = addresses
    return server


# --------------------------------------------------------------------------
# nginx


def _nginx_path():
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is required on CI but was not found (apt install nginx)")
        pytest.skip("nginx not installed")
    return found


def _nginx_conf_dir(nginx):
    """Where this nginx keeps fastcgi_params & co. (next to its nginx.conf)."""
    out = subprocess.run([nginx, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=30).stdout.decode("utf-8", "replace")
    m = re.search(r"--conf-path=(\S+)", out)
    if m:
        return os.path.dirname(m.group(1))
    m = re.search(r"--prefix=(\S+)", out)
    return os.path.join(m.group(1), "conf") if m else "/etc/nginx"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adapt_snippet(name, text, fastgw_addresses, port):
    """The doc's block with the test machine's addresses; every replaced text must
    be there (so the doc and this test cannot drift apart silently)."""
    proto, transport, listener = SNIPPETS[name]
    tcp, unix = DOC_ADDRESSES[proto]
    doc_address = tcp if transport == "tcp" else "unix:" + unix
    assert doc_address in text, "%s: the doc block does not use %s" % (name, doc_address)
    assert text.count("listen 80;") == 1, "%s: expected one 'listen 80;'" % name
    text = text.replace(doc_address, fastgw_addresses[listener])
    return text.replace("listen 80;", "listen 127.0.0.1:%d;" % port)


class Nginx:
    def __init__(self, nginx, tmp, ports, proc):
        self.nginx = nginx
        self.tmp = tmp
        self.ports = ports
        self.proc = proc
        self.error_log = os.path.join(tmp, "error.log")

    def error_log_text(self):
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def connect(self, name):
        return RawConnection(self.ports[name], timeout=60)


@contextlib.contextmanager
def running_nginx(tmp, blocks, ports):
    """nginx (a child process, everything in directory `tmp`) serving the `server`
    `blocks`, until the block ends; yields an Nginx once every port in `ports` accepts."""
    binary = _nginx_path()
    conf_dir = _nginx_conf_dir(binary)
    for params in ("fastcgi_params", "scgi_params", "uwsgi_params"):
        shutil.copy(os.path.join(conf_dir, params), os.path.join(tmp, params))
    user = ""
    if os.geteuid() == 0:
        # root's nginx would run its workers as "nobody", who cannot enter the
        # temporary directory; keep them as the current user.
        user = "user %s %s;" % (pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name)
    conf = "\n".join([
        "worker_processes 1;",
        user,
        "events { worker_connections 512; }",
        "http {",
        "    access_log off;",
        "    client_body_temp_path %s/client_body;" % tmp,
        "    proxy_temp_path %s/proxy;" % tmp,
        "    fastcgi_temp_path %s/fastcgi;" % tmp,
        "    scgi_temp_path %s/scgi;" % tmp,
        "    uwsgi_temp_path %s/uwsgi;" % tmp,
        "",
        "\n".join(blocks),
        "}",
        "",
    ])
    conf_path = os.path.join(tmp, "nginx.conf")
    with open(conf_path, "w") as fh:
        fh.write(conf)
    cmd = [binary, "-p", tmp + "/", "-c", conf_path,
           "-g", "daemon off; pid %s/nginx.pid; error_log %s/error.log info;" % (tmp, tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    server = Nginx(binary, tmp, ports, proc)
    try:
        deadline = time.monotonic() + 20
        waiting = set(ports.values())
        while waiting:
            if proc.poll() is not None:
                pytest.fail("nginx exited with %s: %s\n%s\nconfig:\n%s" % (
                    proc.returncode, proc.stdout.read().decode("utf-8", "replace"),
                    server.error_log_text(), conf))
            if time.monotonic() > deadline:
                pytest.fail("nginx did not listen on %r within 20 s\n%s" % (
                    sorted(waiting), server.error_log_text()))
            for port in list(waiting):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    waiting.discard(port)
                except OSError:
                    pass
            if waiting:
                time.sleep(0.02)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish, then exit
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        proc.stdout.close()


@pytest.fixture(scope="module")
def nginx(fastgw, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("nginx"))
    snippets = doc_snippets()
    ports = {name: _free_port() for name in SNIPPETS}
    blocks = [adapt_snippet(name, snippets[name], fastgw.addresses, ports[name])
              for name in SNIPPETS]
    with running_nginx(tmp, blocks, ports) as server:
        yield server


@pytest.fixture(autouse=True)
def nginx_log_clean(request):
    """No [error] (or worse) in nginx's log from this test, apart from the STDERR
    lines a test asks for."""
    if "nginx" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("nginx")
    start = len(server.error_log_text())
    yield
    new = server.error_log_text()[start:]
    bad = [line for line in new.splitlines()
           if any(level in line for level in BAD_LOG_LEVELS) and "FastCGI sent in stderr" not in line]
    assert not bad, "nginx logged errors:\n" + "\n".join(bad)


# --------------------------------------------------------------------------
# helpers


def get(nginx, name, target, method="GET", headers=None):
    with nginx.connect(name) as conn:
        return conn.roundtrip(request(method, target, headers), method)


def tcp_established(port):
    """Remote ports of the ESTABLISHED TCP connections whose local port is ``port``."""
    remotes = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                remotes.append(int(remote.rsplit(":", 1)[1], 16))
    return sorted(remotes)


# --------------------------------------------------------------------------
# every block


@pytest.mark.parametrize("name", SITE)
def test_get(nginx, name):
    resp = get(nginx, name, "/hello")
    assert resp.status == 200
    assert resp.body == b"Hello, world!\n"
    resp = get(nginx, name, "/environ-raw/a%20b?x=1&y=%2F", headers=[("X-Test", "behind-nginx")])
    assert resp.status == 200, resp
    env = resp.json()["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ-raw/a b"
    assert env["QUERY_STRING"] == "x=1&y=%2F"
    assert env["REQUEST_URI"] == "/environ-raw/a%20b?x=1&y=%2F"
    assert env["HTTP_X_TEST"] == "behind-nginx"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == str(nginx.ports[name])
    assert env["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize("name", SITE)
def test_post_environ_is_pep3333(nginx, name):
    """nginx passes every request header as HTTP_* too, Content-Length and
    Content-Type included; PEP 3333 (and wsgiref's validator) want them only as
    CONTENT_LENGTH and CONTENT_TYPE."""
    body = b"a=1&b=2"
    headers = [("Content-Length", str(len(body))),
               ("Content-Type", "application/x-www-form-urlencoded")]
    with nginx.connect(name) as conn:
        env = conn.roundtrip(request("POST", "/environ-raw", headers, body)).json()["environ"]
        assert env["CONTENT_LENGTH"] == str(len(body))
        assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
        assert "HTTP_CONTENT_LENGTH" not in env
        assert "HTTP_CONTENT_TYPE" not in env
        # the same request through wsgiref's validator
        resp = conn.roundtrip(request("POST", "/sha256", headers, body))
        assert resp.status == 200, resp
        assert resp.json()["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("name", SITE)
def test_mount_below_root(nginx, name):
    resp = get(nginx, name, "/app/x/y?z=1")
    assert resp.json() == {"app": "api", "SCRIPT_NAME": "/app", "PATH_INFO": "/x/y",
                           "QUERY_STRING": "z=1", "REQUEST_URI": "/app/x/y?z=1"}


@pytest.mark.parametrize("name", SITE)
def test_head_then_get_on_one_connection(nginx, name):
    with nginx.connect(name) as conn:
        resp = conn.roundtrip(request("HEAD", "/hello"), "HEAD")
        assert resp.status == 200
        assert resp.body == b""
        resp = conn.roundtrip(request("GET", "/hello"))
        assert resp.status == 200
        assert resp.body == b"Hello, world!\n"


@pytest.mark.parametrize("name", SITE)
def test_status_codes(nginx, name):
    assert get(nginx, name, "/status?code=204").status == 204
    assert get(nginx, name, "/no-such-route").status == 404
    resp = get(nginx, name, "/headers")
    assert resp.header_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


@pytest.mark.parametrize("name", SITE)
def test_upload_64mib(nginx, name):
    digest = hashlib.sha256()
    with nginx.connect(name) as conn:
        conn.send(request("POST", "/gw/sha256", [("Content-Length", str(BIG)),
                                              ("Content-Type", "application/octet-stream")]))
        for chunk in pattern_chunks(BIG):
            conn.send(chunk)
            digest.update(chunk)
        resp = conn.read_response()
    assert resp.status == 200, resp
    assert resp.json()["length"] == BIG
    assert resp.json()["sha256"] == digest.hexdigest()


@pytest.mark.parametrize("name", SITE)
def test_download_64mib(nginx, name):
    expected = hashlib.sha256()
    for chunk in pattern_chunks(BIG):
        expected.update(chunk)
    got = hashlib.sha256()
    size = [0]

    def sink(data):
        got.update(data)
        size[0] += len(data)

    with nginx.connect(name) as conn:
        conn.send(request("GET", "/stream?n=%d" % BIG))
        resp = conn.read_response(sink=sink)
    assert resp.status == 200
    assert size[0] == BIG
    assert got.hexdigest() == expected.hexdigest()


@pytest.mark.parametrize("name", SITE)
def test_static_file(nginx, site, name):
    got = hashlib.sha256()
    with nginx.connect(name) as conn:
        conn.send(request("GET", "/static/big.bin"))
        resp = conn.read_response(sink=got.update)
        assert resp.status == 200
        assert resp.header("Content-Length") == str(STATIC_SIZE)
        assert got.hexdigest() == site["static_sha256"]
        resp = conn.roundtrip(request("HEAD", "/static/big.bin"), "HEAD")
        assert resp.status == 200
        assert resp.header("Content-Length") == str(STATIC_SIZE)
        resp = conn.roundtrip(request("GET", "/static/big.bin", [("Range", "bytes=65530-65545")]))
        assert resp.status == 206
        assert resp.body == pattern_bytes(65546)[65530:]


# --------------------------------------------------------------------------
# what only some blocks do


def test_keep_conn_reuses_one_connection(nginx, fastgw):
    """fastcgi_keep_conn on + upstream keepalive: consecutive requests travel over
    the same nginx -> fastgw connection, which fastgw keeps open between them.

    The requests share one client connection: nginx only starts the next one
    after the previous one ended (END_REQUEST), so the upstream connection is
    back in nginx's cache by then. (A client that hangs up the moment it has its
    body can beat the END_REQUEST record to nginx, and nginx then drops the
    upstream connection: not what this test is about.)"""
    port = int(fastgw.addresses["fastcgi-keep-tcp"].rsplit(":", 1)[1])
    seen = None
    with nginx.connect("fastcgi-keepalive-tcp") as conn:
        for i in range(5):
            resp = conn.roundtrip(request("GET", "/uri?i=%d" % i))
            assert resp.body == b"/uri?i=%d" % i
            conns = tcp_established(port)
            assert len(conns) == 1, "connections nginx -> fastgw after request %d: %r" % (i, conns)
            if seen is None:
                seen = conns
            assert conns == seen, "request %d used a new connection (%r, before %r)" % (i, conns, seen)


def test_without_keep_conn_no_connection_stays(nginx, fastgw):
    """Plain fastcgi_pass: fastgw closes the connection after each response."""
    port = int(fastgw.addresses["fastcgi-tcp"].rsplit(":", 1)[1])
    for i in range(3):
        assert get(nginx, "fastcgi-tcp", "/uri?n=%d" % i).body == b"/uri?n=%d" % i
        wait_until(lambda: not tcp_established(port), timeout=10,
                   message="no established connection to the FastCGI port")


def test_keep_conn_post_then_get(nginx):
    """Bodies on a kept connection: the STDIN stream of one request must not
    leak into the next."""
    body = pattern_bytes(1000003)
    for _ in range(3):
        with nginx.connect("fastcgi-keepalive-unix") as conn:
            resp = conn.roundtrip(request("POST", "/gw/ignore", [("Content-Length", str(len(body)))],
                                          body))
            assert resp.status == 200
            resp = conn.roundtrip(request("POST", "/gw/sha256", [("Content-Length", str(len(body)))],
                                          body))
            assert resp.json()["sha256"] == hashlib.sha256(body).hexdigest()
            assert conn.roundtrip(request("GET", "/hello")).body == b"Hello, world!\n"


def test_split_path_info(nginx):
    resp = get(nginx, "fastcgi-subpath", "/site/environ-raw/a%20b?x=1")
    assert resp.status == 200, resp
    env = resp.json()["environ"]
    assert env["SCRIPT_NAME"] == "/site"
    assert env["PATH_INFO"] == "/environ-raw/a b"
    assert env["QUERY_STRING"] == "x=1"
    assert env["REQUEST_URI"] == "/site/environ-raw/a%20b?x=1"


def test_split_path_info_then_mount(nginx):
    """nginx splits off /site, fastgw's mount table splits /app below it."""
    resp = get(nginx, "fastcgi-subpath", "/site/app/x?y=1")
    assert resp.json() == {"app": "api", "SCRIPT_NAME": "/site/app", "PATH_INFO": "/x",
                           "QUERY_STRING": "y=1", "REQUEST_URI": "/site/app/x?y=1"}


@pytest.mark.parametrize("name", ["fastcgi-tcp", "fastcgi-keepalive-unix"])
def test_wsgi_errors_reach_nginx_error_log(nginx, name):
    marker = "fastgw-marker-%s-%d" % (name, os.getpid())
    assert get(nginx, name, "/gw/errors?text=" + marker).body == b"ok"
    wait_until(lambda: 'FastCGI sent in stderr: "%s' % marker in nginx.error_log_text(),
               timeout=10, message="the application's wsgi.errors line in nginx's error log")


@pytest.mark.parametrize("name", ["fastcgi-keepalive-tcp", "scgi-unix", "uwsgi-tcp"])
def test_client_abort_closes_the_iterable(nginx, test_dir, name):
    """The browser goes away in the middle of an endless response: nginx drops
    its connection to fastgw, and the application's iterable is closed."""
    ident = "nginx-abort-%s-%d" % (name, os.getpid())
    with nginx.connect(name) as conn:
        conn.send(request("GET", "/close?mode=infinite&id=" + ident))
        resp = conn.read_head()
        assert resp.status == 200
        conn.read_exact(1000000)
    wait_until(lambda: ident in read_lines(os.path.join(test_dir, "closed.log")), timeout=20,
               message="close() of the aborted response")
    assert get(nginx, name, "/hello").body == b"Hello, world!\n"
