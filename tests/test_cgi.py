"""CGI scripts (RFC 3875) behind a real server: meta-variables, request bodies, the
response header block (Status, Location, local and client redirects), nph- scripts,
stderr to the error log, timeouts that kill the script's session, and every way a
request must not run something that is not an executable script below the mount.

The scripts (sh, Perl, Python) are written by the tests into a tmp cgi-bin.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import threading

import pytest

from fgwtest import (IncompleteResponse, RawConnection, pid_alive, proc_status_kib, raw_request,
                     request, wait_until)

PY = sys.executable

SCRIPTS = {
    # Every meta-variable, argv and the working directory, as JSON.
    "env.py": f"""#!{PY}
import json, os, sys
env = {{k.decode("latin-1"): v.decode("latin-1") for k, v in os.environb.items()}}
argv = [os.fsencode(a).decode("latin-1") for a in sys.argv[1:]]
body = json.dumps({{"env": env, "argv": argv, "cwd": os.getcwd()}})
sys.stdout.write("Content-Type: application/json\\r\\n\\r\\n" + body)
""",
    "sub/env.py": None,  # a copy of env.py one directory down
    "hello.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
echo "hello from sh, args: $*"
""",
    # The request body's digest and length, as the script read them from stdin.
    "post.py": f"""#!{PY}
import hashlib, json, os, sys
data = sys.stdin.buffer.read()
body = json.dumps({{"sha256": hashlib.sha256(data).hexdigest(), "length": len(data),
                   "CONTENT_LENGTH": os.environ.get("CONTENT_LENGTH"),
                   "CONTENT_TYPE": os.environ.get("CONTENT_TYPE")}})
sys.stdout.write("Status: 201 Created\\r\\nContent-Type: application/json\\r\\n"
                 "Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
""",
    # Answers before reading any of a (large) body, then exits.
    "noread.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nnot reading\\n'
""",
    "status.sh": """#!/bin/sh
printf 'Status: 404 Not Here\\nContent-Type: text/plain\\nX-Script: status\\n\\nmissing\\n'
""",
    "status-bare.sh": """#!/bin/sh
printf 'Status: 418\\nContent-Type: text/plain\\n\\nteapot\\n'
""",
    "cookies.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\nSet-Cookie: a=1\\nSet-Cookie: b=2\\nConnection: close\\n\\nok'
""",
    "local.sh": """#!/bin/sh
printf 'Location: /cgi-bin/env.py/redirected?from=local\\n\\n'
""",
    "local-app.sh": """#!/bin/sh
printf 'Location: /somewhere/else?x=1\\n\\n'
""",
    "loop.sh": """#!/bin/sh
printf 'Location: /cgi-bin/loop.sh\\n\\n'
""",
    "client.sh": """#!/bin/sh
printf 'Location: http://example.com/elsewhere\\n\\n'
""",
    "moved.sh": """#!/bin/sh
printf 'Status: 301 Moved Permanently\\nLocation: /new/place\\nContent-Type: text/plain\\n\\nmoved\\n'
""",
    "nph-raw.sh": """#!/bin/sh
printf 'HTTP/1.1 299 Custom Reason\\r\\nContent-Type: text/plain\\r\\nX-Nph: yes\\r\\n\\r\\nraw body\\n'
""",
    "stderr.sh": """#!/bin/sh
echo "cgi-stderr-marker one" >&2
printf 'Content-Type: text/plain\\n\\nok\\n'
echo "cgi-stderr-marker two" >&2
""",
    "badhead.sh": """#!/bin/sh
printf 'this is not a header\\n\\nbody\\n'
""",
    "silent.sh": """#!/bin/sh
exit 0
""",
    # n bytes of zeros (?n), with no Content-Length: streamed, chunked.
    "big.py": f"""#!{PY}
import os, sys
n = int(os.environ["QUERY_STRING"].split("=")[1])
out = sys.stdout.buffer
out.write(b"Content-Type: application/octet-stream\\r\\n\\r\\n")
block = bytes(range(256)) * 256
while n > 0:
    out.write(block[:n])
    n -= len(block)
""",
    # Records its pid and a child's, then never answers.
    "hang.sh": """#!/bin/sh
sleep 1000 &
echo "$$ $!" > "$FGW_PIDS"
wait
""",
    # Sends the head and some body, then never finishes.
    "hang-late.sh": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\npartial '
sleep 1000
""",
    # Output without end, until the client goes away.
    "endless.sh": """#!/bin/sh
echo "$$" > "$FGW_PIDS"
printf 'Content-Type: text/plain\\n\\n'
exec yes endless
""",
    # Blocks until the test opens the FIFO for writing: a request that is still running.
    "fifo.sh": """#!/bin/sh
read line < "$FGW_FIFO"
printf 'Content-Type: text/plain\\n\\ngot %s\\n' "$line"
""",
    "perl.pl": """#!/usr/bin/perl
print "Content-Type: text/plain\\n\\n";
print "hello from perl, method $ENV{REQUEST_METHOD}\\n";
""",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("cgi-site"))
    cgi = os.path.join(base, "cgi-bin")
    slow = os.path.join(base, "slow-bin")
    docs = os.path.join(base, "docs")
    outside = os.path.join(base, "outside")
    for d in (cgi, os.path.join(cgi, "sub"), os.path.join(cgi, "emptydir"), slow, docs, outside):
        os.makedirs(d)
    for name, text in SCRIPTS.items():
        if text is None:
            text = SCRIPTS[name.rsplit("/", 1)[1]]
        where = slow if name.startswith("hang") else cgi
        path = os.path.join(where, name)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o755)
    # Not executable, a dotfile, a symlink out of the directory, a script outside it.
    for name, mode in (("noexec.sh", 0o644), (".hidden.sh", 0o755)):
        path = os.path.join(cgi, name)
        with open(path, "w") as fh:
            fh.write(SCRIPTS["hello.sh"])
        os.chmod(path, mode)
    secret = os.path.join(outside, "secret.sh")
    with open(secret, "w") as fh:
        fh.write("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nSECRET-RAN\\n'\n")
    os.chmod(secret, 0o755)
    os.symlink(secret, os.path.join(cgi, "link-out.sh"))
    with open(os.path.join(docs, "page.txt"), "w") as fh:
        fh.write("a document\n")
    fifo = os.path.join(base, "fifo")
    os.mkfifo(fifo)
    config = os.path.join(base, "fastgw.toml")
    with open(config, "w") as fh:
        fh.write(f"""
[server]
env = {{ FGW_SERVER_SECRET = "must-not-leak" }}

[[mount]]
path = "/cgi-bin/"
cgi = "cgi-bin"
params = {{ FGW_SITE = "site-1", FGW_TEMPLATE = "{{prefix}}|{{script}}|{{path_info}}|{{query_string}}", REMOTE_HOST = "", FGW_PIDS = "{base}/pids", FGW_FIFO = "{fifo}" }}

[[mount]]
path = "/slow-bin"
cgi = "slow-bin"
timeout = 1
params = {{ FGW_PIDS = "{base}/pids" }}

[[mount]]
path = "/docs"
static = "docs"
""")
    return {"base": base, "cgi": cgi, "config": config, "fifo": fifo, "docs": docs,
            "pids": os.path.join(base, "pids")}


@pytest.fixture(scope="module")
def srv(start_module_server, site):
    return start_module_server("mounts:main", "--config", site["config"])


def get(srv, target, method="GET", headers=None, body=b""):
    return raw_request(srv.port, method, target, headers=headers, body=body)


def env_of(resp):
    assert resp.status == 200, resp
    assert resp.header("content-type") == "application/json"
    return resp.json()


# --------------------------------------------------------------------------
# meta-variables


def test_meta_variables(srv, site):
    with RawConnection(srv.port) as conn:
        conn.send(request("GET", "/cgi-bin/env.py/extra/caf%C3%A9%20x?a=1&b=%20", headers=[
            ("X-Custom", "custom value"), ("Proxy", "http://evil.example:3128"),
            ("X_Underscore", "spoof"), ("Cookie", "a=1"), ("Cookie", "b=2"),
            ("Authorization", "Basic dXNlcjpwYXNz")], host="example.org:8443"))
        resp = conn.read_response()
        client_port = conn.local_port
    data = env_of(resp)
    env = data["env"]
    expected = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/cgi-bin/env.py",
        "PATH_INFO": "/extra/caf\xc3\xa9 x",  # the decoded bytes, as latin-1 here
        "QUERY_STRING": "a=1&b=%20",
        "REQUEST_URI": "/cgi-bin/env.py/extra/caf%C3%A9%20x?a=1&b=%20",
        "SCRIPT_FILENAME": os.path.join(site["cgi"], "env.py"),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": str(client_port),
        "SERVER_NAME": "example.org",
        "SERVER_PORT": "8443",
        "SERVER_ADDR": "127.0.0.1",
        "REQUEST_SCHEME": "http",
        "HTTP_HOST": "example.org:8443",
        "HTTP_X_CUSTOM": "custom value",
        "HTTP_COOKIE": "a=1; b=2",
        "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz",
        "FGW_SITE": "site-1",
        "FGW_TEMPLATE": "/cgi-bin|/env.py|/extra/caf\xc3\xa9 x|a=1&b=%20",
    }
    for key, value in expected.items():
        assert env.get(key) == value, key
    assert env["SERVER_SOFTWARE"].startswith("fastgw/")
    # httpoxy: a Proxy header never becomes HTTP_PROXY; '_' names are dropped (spoofing).
    assert "HTTP_PROXY" not in env
    assert not any("UNDERSCORE" in k for k in env)
    # No body: no CONTENT_LENGTH/CONTENT_TYPE. No PATH_TRANSLATED: /extra/... maps to no file.
    for key in ("CONTENT_LENGTH", "CONTENT_TYPE", "PATH_TRANSLATED"):
        assert key not in env
    # params with an empty value remove a variable.
    assert "REMOTE_HOST" not in env
    # Only the meta-variables and PATH: nothing of the server's own environment leaks.
    assert "FGW_SERVER_SECRET" not in env and "FASTGW_TEST_DIR" not in env
    assert env["PATH"]
    # RFC 3875 section 4.4: a query with '=' is no search string, so no argv.
    assert data["argv"] == []
    assert data["cwd"] == site["cgi"]


def test_path_translated_and_subdirectory(srv, site):
    env = env_of(get(srv, "/cgi-bin/sub/env.py/docs/page.txt"))["env"]
    assert env["SCRIPT_NAME"] == "/cgi-bin/sub/env.py"
    assert env["PATH_INFO"] == "/docs/page.txt"
    # PATH_INFO taken as a URL: the static mount /docs serves it from this file.
    assert env["PATH_TRANSLATED"] == os.path.join(site["docs"], "page.txt")
    assert env["FGW_TEMPLATE"] == "/cgi-bin|/sub/env.py|/docs/page.txt|"
    env = env_of(get(srv, "/cgi-bin/env.py"))["env"]
    assert env["PATH_INFO"] == "" and env["SCRIPT_NAME"] == "/cgi-bin/env.py"


def test_search_query_becomes_argv(srv):
    resp = get(srv, "/cgi-bin/hello.sh?first+second%20word")
    assert resp.status == 200
    assert resp.body == b"hello from sh, args: first second word\n"


def test_perl_script(srv):
    if shutil.which("perl") is None and not os.path.exists("/usr/bin/perl"):
        pytest.skip("perl not installed")
    resp = get(srv, "/cgi-bin/perl.pl")
    assert resp.status == 200
    assert resp.body == b"hello from perl, method GET\n"


# --------------------------------------------------------------------------
# request bodies


def test_post_body_streamed_to_stdin(srv):
    body = os.urandom(3 * 1024 * 1024 + 17)
    resp = get(srv, "/cgi-bin/post.py", "POST", headers=[
        ("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        body=body)
    assert resp.status == 201 and resp.reason == "Created"
    assert resp.framing == "length"
    data = resp.json()
    assert data == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body),
                    "CONTENT_LENGTH": str(len(body)),
                    "CONTENT_TYPE": "application/octet-stream"}


def test_chunked_body_gets_a_content_length(srv):
    pieces = [b"a" * 1000, b"b" * 70000, b"c"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    resp = get(srv, "/cgi-bin/post.py", "POST", headers=[
        ("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")], body=chunked)
    data = resp.json()
    whole = b"".join(pieces)
    assert data["length"] == len(whole) and data["CONTENT_LENGTH"] == str(len(whole))
    assert data["sha256"] == hashlib.sha256(whole).hexdigest()


def test_script_that_does_not_read_its_body(srv):
    body = b"x" * (2 * 1024 * 1024)
    resp = get(srv, "/cgi-bin/noread.sh", "POST", headers=[("Content-Length", str(len(body)))],
               body=body)
    assert resp.status == 200 and resp.body == b"not reading\n"


# --------------------------------------------------------------------------
# the response


def test_status_and_headers(srv):
    resp = get(srv, "/cgi-bin/status.sh")
    assert (resp.status, resp.reason) == (404, "Not Here")
    assert resp.header("x-script") == "status" and resp.body == b"missing\n"
    resp = get(srv, "/cgi-bin/status-bare.sh")
    assert resp.status == 418 and resp.reason  # a reason phrase is added
    resp = get(srv, "/cgi-bin/cookies.sh")
    assert resp.header_list("set-cookie") == ["a=1", "b=2"]
    # The script's Connection header is hop-by-hop: not passed on, keep-alive stays.
    assert "close" not in resp.connection_tokens()


def test_keepalive_and_head(srv):
    with RawConnection(srv.port) as conn:
        for _ in range(3):
            resp = conn.roundtrip(request("GET", "/cgi-bin/hello.sh"))
            assert resp.body == b"hello from sh, args: \n"
        resp = conn.roundtrip(request("HEAD", "/cgi-bin/hello.sh"), "HEAD")
        assert resp.status == 200 and resp.body == b""
        resp = conn.roundtrip(request("GET", "/cgi-bin/hello.sh"))
        assert resp.status == 200


def test_local_redirect_is_dispatched_internally(srv):
    resp = get(srv, "/cgi-bin/local.sh", "POST", headers=[("Content-Length", "5")], body=b"hello")
    env = env_of(resp)["env"]
    assert env["SCRIPT_NAME"] == "/cgi-bin/env.py"
    assert env["PATH_INFO"] == "/redirected"
    assert env["QUERY_STRING"] == "from=local"
    assert env["REQUEST_METHOD"] == "GET"
    assert "CONTENT_LENGTH" not in env
    # ...also to another mount (the app at /).
    resp = get(srv, "/cgi-bin/local-app.sh")
    assert resp.status == 200
    assert resp.json()["PATH_INFO"] == "/somewhere/else"
    assert resp.json()["QUERY_STRING"] == "x=1"


def test_local_redirect_loop_is_cut(srv):
    mark = srv.log_mark()
    resp = get(srv, "/cgi-bin/loop.sh")
    assert resp.status == 500
    srv.wait_for_log(r"more than 10 local redirects", start=mark)


def test_client_redirects(srv):
    resp = get(srv, "/cgi-bin/client.sh")
    assert resp.status == 302
    assert resp.header("location") == "http://example.com/elsewhere"
    resp = get(srv, "/cgi-bin/moved.sh")  # a Status with a local Location: not internal
    assert resp.status == 301 and resp.header("location") == "/new/place"
    assert resp.body == b"moved\n"


def test_nph_script(srv):
    resp = get(srv, "/cgi-bin/nph-raw.sh")
    assert (resp.status, resp.reason) == (299, "Custom Reason")
    assert resp.header("x-nph") == "yes" and resp.body == b"raw body\n"


def test_stderr_goes_to_the_error_log(srv):
    mark = srv.log_mark()
    resp = get(srv, "/cgi-bin/stderr.sh")
    assert resp.status == 200 and resp.body == b"ok\n"
    srv.wait_for_log(r"\[ERROR\] CGI script .*stderr\.sh: cgi-stderr-marker one", start=mark)
    srv.wait_for_log(r"cgi-stderr-marker two", start=mark)


def test_malformed_output_is_500(srv):
    mark = srv.log_mark()
    assert get(srv, "/cgi-bin/badhead.sh").status == 500
    srv.wait_for_log(r"badhead\.sh: .*malformed header line", start=mark)
    assert get(srv, "/cgi-bin/silent.sh").status == 500
    srv.wait_for_log(r"silent\.sh: ended without output", start=mark)


def test_large_output_is_streamed_with_flat_memory(srv):
    total = 100 * 1024 * 1024
    worker = srv.worker_pids()[-1]
    get(srv, "/cgi-bin/big.py?n=1000")  # warm up
    before = proc_status_kib(worker, "VmRSS")
    digest = hashlib.sha256()
    count = [0]

    def sink(data):
        digest.update(data)
        count[0] += len(data)

    with RawConnection(srv.port) as conn:
        conn.send(request("GET", "/cgi-bin/big.py?n=%d" % total))
        resp = conn.read_response(sink=sink)
    assert resp.status == 200 and resp.framing == "chunked"
    assert count[0] == total
    block = bytes(range(256)) * 256
    expected = hashlib.sha256()
    for _ in range(total // len(block)):
        expected.update(block)
    assert digest.hexdigest() == expected.hexdigest()
    # The body went through, never into the worker's memory.
    assert proc_status_kib(worker, "VmRSS") - before < 32 * 1024


# --------------------------------------------------------------------------
# timeouts and concurrency


def test_timeout_kills_the_script_and_its_children(srv, site):
    if os.path.exists(site["pids"]):
        os.unlink(site["pids"])
    mark = srv.log_mark()
    resp = get(srv, "/slow-bin/hang.sh")
    assert resp.status == 504
    script, child = map(int, open(site["pids"]).read().split())
    wait_until(lambda: not pid_alive(script) and not pid_alive(child), 10,
               message="the script and its child to be killed")
    srv.wait_for_log(r"hang\.sh: timed out after 1 s .*answering 504", start=mark)


def test_timeout_after_the_head_cuts_the_response(srv):
    with RawConnection(srv.port) as conn:
        conn.send(request("GET", "/slow-bin/hang-late.sh"))
        with pytest.raises(IncompleteResponse) as info:
            conn.read_response()
    assert info.value.response.status == 200
    assert info.value.partial == b"partial "


def test_client_going_away_kills_the_script(srv, site):
    if os.path.exists(site["pids"]):
        os.unlink(site["pids"])
    with RawConnection(srv.port) as conn:
        conn.send(request("GET", "/cgi-bin/endless.sh"))
        resp = conn.read_head()
        assert resp.status == 200
        conn.read_exact(100000)
    pid = int(wait_until(lambda: os.path.exists(site["pids"]) and open(site["pids"]).read()))
    wait_until(lambda: not pid_alive(pid), 15, message="the script to be killed")
    assert get(srv, "/cgi-bin/hello.sh").status == 200


def test_a_running_script_does_not_block_the_worker(srv, site):
    """With --threads 1 a cgi mount still gets a thread pool: the loop keeps serving."""
    result = {}

    def slow():
        result["resp"] = get(srv, "/cgi-bin/fifo.sh")

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    # The script is blocked opening the FIFO; other requests are answered meanwhile.
    for _ in range(3):
        assert get(srv, "/cgi-bin/hello.sh").status == 200
        assert get(srv, "/").status == 200
    # Opening the FIFO's write end succeeds once the script has its read end open.
    fd = wait_until(lambda: open_writer(site["fifo"]), 15, message="the script to open the FIFO")
    os.write(fd, b"go\n")
    os.close(fd)
    thread.join(20)
    assert result["resp"].status == 200 and result["resp"].body == b"got go\n"


def open_writer(path):
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return None


# --------------------------------------------------------------------------
# what must not run


@pytest.mark.parametrize("target,status", [
    ("/cgi-bin/noexec.sh", 403),             # not executable
    ("/cgi-bin/", 403),                      # the directory itself
    ("/cgi-bin", 403),
    ("/cgi-bin/sub", 403),                   # a directory
    ("/cgi-bin/sub/", 403),
    ("/cgi-bin/emptydir/", 403),
    ("/cgi-bin/missing.sh", 404),
    ("/cgi-bin/missing/deeper.sh", 404),
    ("/cgi-bin/.hidden.sh", 404),            # dotfiles
    ("/cgi-bin/link-out.sh", 404),           # a symlink leading outside the directory
    ("/cgi-bin/../outside/secret.sh", 400),  # traversal
    ("/cgi-bin/%2e%2e/outside/secret.sh", 400),
    ("/cgi-bin/sub/..%2F..%2Foutside/secret.sh", 400),
    ("/cgi-bin/./hello.sh", 400),
    ("/cgi-bin/hello.sh%00.txt", 400),
    ("/cgi-bin/sub%2fenv.py", 404),           # encoded slash
])
def test_refused(srv, target, status):
    resp = get(srv, target)
    assert resp.status == status, (target, resp)
    assert b"SECRET-RAN" not in resp.body


def test_documented_recipe(start_server, site):
    """docs/gateway.md's CGI recipe, as written (the directory replaced)."""
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "gateway.md")
    with open(docs, encoding="utf-8") as fh:
        text = fh.read()
    marker = "<!-- recipe: cgi -->\n```toml\n"
    start = text.index(marker) + len(marker)
    recipe = text[start:text.index("```", start)]
    assert '"/srv/cgi-bin"' in recipe
    config = os.path.join(site["base"], "recipe.toml")
    with open(config, "w") as fh:
        fh.write(recipe.replace("/srv/cgi-bin", site["cgi"]))
    srv = start_server("mounts:main", "--config", config)
    assert get(srv, "/cgi-bin/hello.sh?a+b").body == b"hello from sh, args: a b\n"
    env = env_of(get(srv, "/cgi-bin/sub/env.py/x"))["env"]
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/cgi-bin/sub/env.py", "/x")


def test_not_executable_is_logged(srv):
    mark = srv.log_mark()
    assert get(srv, "/cgi-bin/noexec.sh").status == 403
    srv.wait_for_log(r"noexec\.sh: it is not executable", start=mark)


# --------------------------------------------------------------------------
# configuration


def run_check(*args):
    return subprocess.run([sys.executable, "-m", "fastgw", "check", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def test_check_lists_cgi_mounts(site):
    out = run_check("--config", site["config"], "--cgi", "/other/=" + site["cgi"])
    assert out.returncode == 0, out.stderr
    assert "/cgi-bin             cgi" in out.stdout
    assert f"{'/other':<20} {'cgi':<12} {site['cgi']}" in out.stdout
    assert "timeout=1" in out.stdout


@pytest.mark.parametrize("mount,message", [
    ('cgi = "does-not-exist"', "cgi directory"),
    ('cgi = "."\nsplit_path_info = "^(a)(b)$"', "split_path_info is for fastcgi and scgi"),
    ('cgi = "."\nparams = { X = "{nope}" }', "unknown placeholder {nope}"),
    ('cgi = "."\nparams = { X = 1 }', "params = "),
    ('cgi = "."\ntimeout = 0', "timeout = 0"),
    ('cgi = "."\ntimeout = 30', "not below the server's --timeout 30"),
    ('cgi = "."\nindex = "x"', "only applies to static mounts"),
    ('cgi = "."\napp = "x:y"', "not both app and cgi"),
    ('app = "x:y"\ntimeout = 3', "only applies to cgi, fastcgi and scgi"),
])
def test_config_errors(tmp_path, mount, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'[[mount]]\npath = "/x"\n{mount}\n')
    out = run_check("--config", str(path))
    assert out.returncode == 1
    assert message in out.stderr, out.stderr
    assert out.stderr.startswith("fastgw: error: ") and "[[mount]] #1" in out.stderr
