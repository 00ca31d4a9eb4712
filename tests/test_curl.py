"""A real, independent client: curl."""
import hashlib
import json

import pytest

from fgwtest import pattern_chunks


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("curl") / "upload.bin"
    digest = hashlib.sha256()
    size = 3 * 1024 * 1024 + 17
    with open(path, "wb") as fh:
        for chunk in pattern_chunks(size):
            fh.write(chunk)
            digest.update(chunk)
    return str(path), size, digest.hexdigest()


def _ok(proc):
    assert proc.returncode == 0, "curl exit %d: %s" % (proc.returncode, proc.stderr.decode())
    return proc


def test_get(server, curl):
    proc = _ok(curl("-D", "-", server.url + "/hello"))
    out = proc.stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nServer: fastgw\r\n" in head
    assert body == b"Hello, world!\n"


def test_post_data_binary_file(server, curl, upload_file):
    path, size, sha = upload_file
    proc = _ok(curl("--data-binary", "@" + path, "-H", "Content-Type: application/octet-stream",
                    server.url + "/sha256"))
    data = json.loads(proc.stdout)
    assert data == {"sha256": sha, "length": size, "pid": data["pid"]}


def test_post_echo_small(server, curl, tmp_path):
    body = bytes(range(256))
    path = tmp_path / "small.bin"
    path.write_bytes(body)
    proc = _ok(curl("--data-binary", "@%s" % path, server.url + "/body/read"))
    chunks = json.loads(proc.stdout)["chunks"]
    assert "".join(chunks).encode("latin-1") == body


def test_chunked_upload(server, curl, upload_file):
    path, size, sha = upload_file
    proc = _ok(curl("-v", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path,
                    server.url + "/sha256"))
    assert b"Transfer-Encoding: chunked" in proc.stderr
    data = json.loads(proc.stdout)
    assert data["sha256"] == sha
    assert data["length"] == size


def test_expect_continue_upload(server, curl, upload_file):
    path, size, sha = upload_file
    proc = _ok(curl("-v", "-H", "Expect: 100-continue", "--expect100-timeout", "20",
                    "--data-binary", "@" + path, server.url + "/sha256"))
    assert b"HTTP/1.1 100 Continue" in proc.stderr
    assert json.loads(proc.stdout)["sha256"] == sha


def test_expect_continue_not_read_by_app(server, curl, upload_file):
    """Request buffering (the default): the loop asks for the body and takes it whole
    before the application runs, whether or not the application reads it (the case
    without buffering is in test_expect_continue.py)."""
    path, _, _ = upload_file
    proc = _ok(curl("-v", "-H", "Expect: 100-continue", "--expect100-timeout", "20",
                    "--data-binary", "@" + path, server.url + "/hello"))
    assert proc.stdout == b"Hello, world!\n"
    assert b"HTTP/1.1 100 Continue" in proc.stderr


def test_head(server, curl):
    proc = _ok(curl("-I", server.url + "/hello"))
    lines = proc.stdout.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    assert headers["content-length"] == "14"
    assert headers["server"] == "fastgw"
    assert "date" in headers


def test_keepalive_reuse(server, curl):
    proc = _ok(curl("-v", server.url + "/uri?first", server.url + "/uri?second"))
    assert proc.stdout == b"/uri?first/uri?second"
    err = proc.stderr.decode()
    assert "Re-using existing connection" in err, err
    assert "left intact" in err, err


def test_keepalive_reuse_chunked(server, curl):
    proc = _ok(curl("-v", server.url + "/stream?n=100000", server.url + "/uri?after"))
    assert len(proc.stdout) == 100000 + len(b"/uri?after")
    assert proc.stdout.endswith(b"/uri?after")
    assert "Re-using existing connection" in proc.stderr.decode()


def test_http10_close_delimited(server, curl):
    proc = _ok(curl("--http1.0", "-D", "-", server.url + "/len?mode=multi"))
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert body == b"part1-part2-part3"
    assert b"Transfer-Encoding" not in head


def test_download_large_chunked(server, curl):
    size = 32 * 1024 * 1024
    expected = hashlib.sha256()
    for chunk in pattern_chunks(size):
        expected.update(chunk)
    proc = _ok(curl(server.url + "/stream?n=%d" % size))
    assert len(proc.stdout) == size
    assert hashlib.sha256(proc.stdout).hexdigest() == expected.hexdigest()


def test_percent_encoded_path(server, curl):
    proc = _ok(curl(server.url + "/environ-raw/caf%C3%A9?x=%20"))
    env = json.loads(proc.stdout)["environ"]
    assert env["PATH_INFO"] == "/environ-raw/caf\xc3\xa9"
    assert env["QUERY_STRING"] == "x=%20"
