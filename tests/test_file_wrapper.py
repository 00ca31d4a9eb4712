"""wsgi.file_wrapper: real files (sendfile path) and plain file-likes."""
import hashlib
import os

import pytest

from fgwtest import RawConnection, pattern_bytes, pattern_chunks, read_lines, request, wait_for_line

SMALL = 300000
LARGE = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def files(test_dir):
    small = os.path.join(test_dir, "fw-small.bin")
    with open(small, "wb") as fh:
        fh.write(pattern_bytes(SMALL))
    large = os.path.join(test_dir, "fw-large.bin")
    digest = hashlib.sha256()
    with open(large, "wb") as fh:
        for chunk in pattern_chunks(LARGE):
            fh.write(chunk)
            digest.update(chunk)
    empty = os.path.join(test_dir, "fw-empty.bin")
    open(empty, "wb").close()
    return {"small": pattern_bytes(SMALL), "large_sha256": digest.hexdigest()}


def _get(port, target, method="GET"):
    with RawConnection(port) as conn:
        return conn.roundtrip(request(method, target), method)


def test_file_with_content_length(server, files):
    resp = _get(server.port, "/file?name=fw-small.bin")
    assert resp.status == 200
    assert resp.framing == "length"
    assert resp.header("Content-Length") == str(SMALL)
    assert resp.body == files["small"]


def test_file_small_blksize(server, files):
    resp = _get(server.port, "/file?name=fw-small.bin&blksize=1000")
    assert resp.body == files["small"]


def test_file_without_content_length(server, files):
    """The app gives no length: chunked, or a Content-Length the server
    derived from the file itself (then it must be exact)."""
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/file?name=fw-small.bin&length=none"))
        assert resp.status == 200
        assert resp.framing in ("chunked", "length")
        if resp.framing == "length":
            assert resp.header("Content-Length") == str(SMALL)
        assert resp.body == files["small"]
        assert conn.roundtrip(request("GET", "/uri?after-file")).body == b"/uri?after-file"


def test_file_without_content_length_http10(server, files):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/file?name=fw-small.bin&length=none",
                                      version="HTTP/1.0"))
    assert resp.framing in ("close", "length")
    assert not resp.has_header("Transfer-Encoding")
    assert resp.body == files["small"]


def test_file_without_content_length_from_offset(server, files):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/file?name=fw-small.bin&length=none&offset=1000"))
        assert resp.body == files["small"][1000:]
        if resp.framing == "length":
            assert resp.header("Content-Length") == str(SMALL - 1000)
        assert conn.roundtrip(request("GET", "/uri?z")).body == b"/uri?z"


def test_file_sent_from_current_position(server, files):
    resp = _get(server.port, "/file?name=fw-small.bin&offset=12345")
    assert resp.header("Content-Length") == str(SMALL - 12345)
    assert resp.body == files["small"][12345:]


def test_file_not_more_than_content_length(server, files):
    """PEP 3333: the server must not send more than Content-Length bytes,
    even when the file is longer (sendfile must be bounded)."""
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/file?name=fw-small.bin&length=1000"))
        assert resp.body == files["small"][:1000]
        follow = conn.roundtrip(request("GET", "/uri?after-short-file"))
        assert follow.status == 200, "extra file bytes were sent after Content-Length"
        assert follow.body == b"/uri?after-short-file"


def test_empty_file(server, files):
    resp = _get(server.port, "/file?name=fw-empty.bin")
    assert resp.status == 200
    assert resp.header("Content-Length") == "0"
    assert resp.body == b""


def test_file_head(server, files):
    with RawConnection(server.port) as conn:
        conn.send(request("HEAD", "/file?name=fw-small.bin") + request("GET", "/uri?after-head"))
        head = conn.read_response("HEAD")
        after = conn.read_response()
    assert head.header("Content-Length") == str(SMALL)
    assert after.body == b"/uri?after-head"


def test_large_file_keepalive_and_sha256(server, files):
    with RawConnection(server.port, timeout=60) as conn:
        for _ in range(2):
            digest = hashlib.sha256()
            sizes = []

            def sink(data):
                digest.update(data)
                sizes.append(len(data))

            conn.send(request("GET", "/file?name=fw-large.bin"))
            resp = conn.read_response(sink=sink)
            assert resp.header("Content-Length") == str(LARGE)
            assert sum(sizes) == LARGE
            assert digest.hexdigest() == files["large_sha256"]


def test_file_wrapper_close_calls_file_close(server, files):
    resp = _get(server.port, "/file?name=fw-small.bin&record=fw-close-1")
    assert resp.body == files["small"]
    path = os.path.join(server.test_dir, "closed.log")
    wait_for_line(path, "closed fw-close-1")
    assert "gc fw-close-1" not in read_lines(path)


@pytest.mark.parametrize("query", ["", "&offset=5000", "&length=none", "&blksize=4096"])
def test_real_file_is_sent_without_python_reads(server, files, query):
    """A real file goes out by sendfile(2) from its descriptor: the file
    object's read()/readinto() are never called (the app's file records any
    such call)."""
    ident = "fw-sendfile-%d" % len(query) + query.replace("&", "-").replace("=", "")
    resp = _get(server.port, "/file?name=fw-small.bin&record=%s%s" % (ident, query))
    offset = 5000 if "offset" in query else 0
    assert resp.body == files["small"][offset:]
    path = os.path.join(server.test_dir, "closed.log")
    wait_for_line(path, "closed " + ident)
    assert "python-read " + ident not in read_lines(path), (
        "the file was read through Python instead of sendfile")


@pytest.mark.parametrize("kind", ["bytesio", "readonly"])
@pytest.mark.parametrize("blksize", [None, 777])
def test_file_like_without_usable_fileno(server, kind, blksize):
    target = "/filelike?n=200000&kind=" + kind + ("&blksize=%d" % blksize if blksize else "")
    resp = _get(server.port, target)
    assert resp.status == 200
    assert resp.body == pattern_bytes(200000)


def test_file_like_close_called(server):
    resp = _get(server.port, "/filelike?n=5000&kind=readonly&record=fl-close-1")
    assert resp.status == 200
    wait_for_line(os.path.join(server.test_dir, "closed.log"), "closed fl-close-1")
