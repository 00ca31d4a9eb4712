"""Static files over a real server: types, validators and 304s, ranges, precompressed
variants, directory index, methods, and every path trick that must not leave the root."""
import gzip
import json
import os
import re

import pytest

from fgwtest import RawConnection, pattern_bytes, raw_request, request

HELLO = b"Hello, static world!\n"
BINARY = pattern_bytes(300000)
CSS = b"body { color: #333; }\n" * 50
SECRET = b"TOP-SECRET outside the root\n"


def build_tree(base):
    """<base>/root is served; <base>/outside holds what must never be served."""
    root = os.path.join(base, "root")
    outside = os.path.join(base, "outside")
    for d in (root, outside, os.path.join(root, "docs"), os.path.join(root, "nodir"),
              os.path.join(root, ".git"), os.path.join(root, "sub", "deeper")):
        os.makedirs(d, exist_ok=True)

    def put(rel, data, where=root):
        with open(os.path.join(where, rel), "wb") as fh:
            fh.write(data)

    put("hello.txt", HELLO)
    put("data.bin", BINARY)
    put("style.css", CSS)
    put("style.css.gz", gzip.compress(CSS, mtime=0))
    put("style.css.br", b"BROTLI-BYTES-FOR-TESTS")
    put("only-gz.js", b"console.log('plain');\n")
    put("only-gz.js.gz", gzip.compress(b"console.log('plain');\n", mtime=0))
    put("app.json", b'{"ok": true}\n')
    put("image.png", b"\x89PNG\r\n\x1a\nfake")
    put("unknown.fgwext", b"what am I\n")
    put("empty.txt", b"")
    put("a b.txt", b"space in the name\n")
    put("100%.txt", b"percent in the name\n")
    put("robots.txt", b"User-agent: *\nDisallow:\n")
    put(os.path.join("docs", "index.html"), b"<h1>docs index</h1>\n")
    put(os.path.join("nodir", "file.txt"), b"in nodir\n")
    put(os.path.join("sub", "deeper", "leaf.txt"), b"leaf\n")
    put(".secret", b"dotfile contents\n")
    put(os.path.join(".git", "config"), b"[core]\n")
    put("secret.txt", SECRET, where=outside)
    put("fgw-passwd", SECRET, where=outside)
    os.symlink(os.path.join(root, "hello.txt"), os.path.join(root, "link_in"))
    os.symlink("../hello.txt", os.path.join(root, "sub", "rel_link_in"))
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "link_out"))
    os.symlink(outside, os.path.join(root, "dirlink_out"))
    os.symlink("../../outside/secret.txt", os.path.join(root, "sub", "rel_link_out"))
    os.mkfifo(os.path.join(root, "fifo"))
    return root, outside


def write_config(path, mounts):
    lines = []
    for mount in mounts:
        lines.append("[[mount]]")
        for key, value in mount.items():
            lines.append("%s = %s" % (key, json.dumps(value)))
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("static-tree"))
    root, outside = build_tree(base)
    return {"base": base, "root": root, "outside": outside}


@pytest.fixture(scope="module")
def srv(start_module_server, tree):
    config = write_config(os.path.join(tree["base"], "fastgw.toml"), [
        {"path": "/static", "static": "root", "cache_control": "public, max-age=60"},
        {"path": "/plain", "static": "root", "index": False, "precompressed": False},
        {"path": "/dot", "static": "root", "dotfiles": True, "follow_symlinks": True},
        {"path": "/robots.txt", "static": "root/robots.txt"},
    ])
    return start_module_server("--config=" + config)


def get(srv, target, headers=None, method="GET", version="HTTP/1.1"):
    return raw_request(srv.port, method, target, headers=headers, version=version)


# --------------------------------------------------------------------------
# plain files


def test_text_file(srv):
    resp = get(srv, "/static/hello.txt")
    assert resp.status == 200
    assert resp.body == HELLO
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.header("Content-Length") == str(len(HELLO))
    assert resp.header("Accept-Ranges") == "bytes"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', resp.header("ETag"))
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
                        resp.header("Last-Modified"))
    assert resp.header("Cache-Control") == "public, max-age=60"
    assert resp.header("Vary") == "Accept-Encoding"


def test_binary_file(srv):
    resp = get(srv, "/static/data.bin")
    assert resp.status == 200
    assert resp.header("Content-Type") == "application/octet-stream"
    assert resp.body == BINARY


@pytest.mark.parametrize("name,ctype", [
    ("style.css", "text/css; charset=utf-8"),
    ("only-gz.js", "text/javascript; charset=utf-8"),
    ("app.json", "application/json; charset=utf-8"),
    ("image.png", "image/png"),
    ("unknown.fgwext", "application/octet-stream"),
    ("docs/index.html", "text/html; charset=utf-8"),
])
def test_content_types(srv, name, ctype):
    resp = get(srv, "/plain/" + name)
    assert resp.status == 200
    assert resp.header("Content-Type") == ctype


def test_empty_file(srv):
    resp = get(srv, "/static/empty.txt")
    assert resp.status == 200
    assert resp.header("Content-Length") == "0"
    assert resp.body == b""


def test_percent_encoded_names(srv):
    assert get(srv, "/static/a%20b.txt").body == b"space in the name\n"
    assert get(srv, "/static/100%25.txt").body == b"percent in the name\n"
    assert get(srv, "/static/%68ello.txt").body == HELLO


def test_head(srv):
    full = get(srv, "/static/data.bin")
    resp = get(srv, "/static/data.bin", method="HEAD")
    assert resp.status == 200
    assert resp.body == b""
    assert resp.header("Content-Length") == str(len(BINARY))
    assert resp.header("ETag") == full.header("ETag")
    assert resp.header("Last-Modified") == full.header("Last-Modified")


def test_single_file_mount(srv):
    resp = get(srv, "/robots.txt")
    assert resp.status == 200
    assert resp.body == b"User-agent: *\nDisallow:\n"
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    # exact match only: nothing below it, and no app at / to fall back to
    assert get(srv, "/robots.txt/x").status == 404
    assert get(srv, "/robots.txtx").status == 404


def test_keepalive_mix(srv):
    """200, 304, 206, multipart and 404 answers framed right on one connection."""
    with RawConnection(srv.port) as conn:
        first = conn.roundtrip(request("GET", "/static/hello.txt"))
        etag = first.header("ETag")
        assert conn.roundtrip(request("GET", "/static/hello.txt",
                                      [("If-None-Match", etag)])).status == 304
        assert conn.roundtrip(request("GET", "/static/hello.txt",
                                      [("Range", "bytes=0-4")])).body == HELLO[:5]
        multi = conn.roundtrip(request("GET", "/static/hello.txt", [("Range", "bytes=0-1,3-4")]))
        assert multi.status == 206
        assert conn.roundtrip(request("GET", "/static/nope.txt")).status == 404
        assert conn.roundtrip(request("HEAD", "/static/data.bin"), "HEAD").status == 200
        assert conn.roundtrip(request("GET", "/static/hello.txt")).body == HELLO


def test_http10(srv):
    resp = get(srv, "/static/hello.txt", version="HTTP/1.0")
    assert resp.status == 200
    assert resp.body == HELLO


# --------------------------------------------------------------------------
# methods, directories


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_405(srv, method):
    resp = get(srv, "/static/hello.txt", method=method)
    assert resp.status == 405
    assert resp.header("Allow") == "GET, HEAD"


def test_directory_index(srv):
    resp = get(srv, "/static/docs/")
    assert resp.status == 200
    assert resp.body == b"<h1>docs index</h1>\n"
    assert resp.header("Content-Type") == "text/html; charset=utf-8"


def test_directory_without_slash_redirects(srv):
    resp = get(srv, "/static/docs?page=2")
    assert resp.status == 301
    assert resp.header("Location") == "/static/docs/?page=2"


def test_directory_redirect_stays_on_site(start_server, tree):
    """A directory at //name must not redirect to //name/ (another host for a browser)."""
    os.makedirs(os.path.join(tree["root"], "evil.example"), exist_ok=True)
    srv = start_server("--static=/=" + tree["root"])
    resp = get(srv, "//evil.example")
    assert resp.status == 301
    assert resp.header("Location") == "/evil.example/"
    assert get(srv, "/hello.txt").body == HELLO


def test_no_directory_listing(srv):
    assert get(srv, "/static/nodir/").status == 404
    assert get(srv, "/static/").status == 404  # the root has no index.html
    assert get(srv, "/static/sub/deeper/").status == 404


def test_index_off(srv):
    assert get(srv, "/plain/docs/").status == 404
    assert get(srv, "/plain/docs").status == 404


def test_file_with_trailing_slash(srv):
    assert get(srv, "/static/hello.txt/").status == 404


def test_missing(srv):
    resp = get(srv, "/static/does-not-exist.txt")
    assert resp.status == 404
    assert get(srv, "/static/hello.txt/x").status == 404


def test_fifo_is_not_served_and_does_not_hang(srv):
    assert get(srv, "/static/fifo").status == 404
    assert get(srv, "/static/hello.txt").status == 200


def test_unreadable_file_403(srv, tree):
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    path = os.path.join(tree["root"], "locked.txt")
    with open(path, "wb") as fh:
        fh.write(b"locked\n")
    os.chmod(path, 0)
    try:
        assert get(srv, "/static/locked.txt").status == 403
    finally:
        os.chmod(path, 0o644)


# --------------------------------------------------------------------------
# conditional requests


def _validators(srv, target="/static/hello.txt"):
    resp = get(srv, target)
    return resp.header("ETag"), resp.header("Last-Modified")


def test_if_none_match_304(srv):
    etag, last_modified = _validators(srv)
    resp = get(srv, "/static/hello.txt", [("If-None-Match", etag)])
    assert resp.status == 304
    assert resp.body == b""
    assert resp.header("ETag") == etag
    assert resp.header("Last-Modified") == last_modified
    assert resp.header("Cache-Control") == "public, max-age=60"
    assert not resp.has_header("Content-Length")
    assert get(srv, "/static/hello.txt", [("If-None-Match", '"nope", ' + etag)]).status == 304
    assert get(srv, "/static/hello.txt", [("If-None-Match", "W/" + etag)]).status == 304
    assert get(srv, "/static/hello.txt", [("If-None-Match", "*")]).status == 304
    assert get(srv, "/static/hello.txt", [("if-none-match", etag)], method="HEAD").status == 304


def test_if_none_match_other_tag_200(srv):
    resp = get(srv, "/static/hello.txt", [("If-None-Match", '"something-else"')])
    assert resp.status == 200
    assert resp.body == HELLO


def test_if_modified_since(srv):
    _, last_modified = _validators(srv)
    assert get(srv, "/static/hello.txt", [("If-Modified-Since", last_modified)]).status == 304
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert get(srv, "/static/hello.txt", [("If-Modified-Since", future)]).status == 304
    past = "Thu, 01 Jan 1970 00:00:01 GMT"
    resp = get(srv, "/static/hello.txt", [("If-Modified-Since", past)])
    assert resp.status == 200 and resp.body == HELLO
    assert get(srv, "/static/hello.txt", [("If-Modified-Since", "garbage")]).status == 200


def test_if_none_match_wins_over_if_modified_since(srv):
    _, last_modified = _validators(srv)
    resp = get(srv, "/static/hello.txt", [("If-None-Match", '"other"'),
                                          ("If-Modified-Since", last_modified)])
    assert resp.status == 200


def test_if_match_and_if_unmodified_since(srv):
    etag, last_modified = _validators(srv)
    assert get(srv, "/static/hello.txt", [("If-Match", etag)]).status == 200
    assert get(srv, "/static/hello.txt", [("If-Match", '"other"')]).status == 412
    assert get(srv, "/static/hello.txt", [("If-Match", "W/" + etag)]).status == 412
    past = "Thu, 01 Jan 1970 00:00:01 GMT"
    assert get(srv, "/static/hello.txt", [("If-Unmodified-Since", past)]).status == 412
    assert get(srv, "/static/hello.txt", [("If-Unmodified-Since", last_modified)]).status == 200


def test_etag_changes_with_content(srv, tree):
    path = os.path.join(tree["root"], "changing.txt")
    with open(path, "wb") as fh:
        fh.write(b"one\n")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    first = get(srv, "/static/changing.txt")
    with open(path, "wb") as fh:
        fh.write(b"two!\n")
    os.utime(path, (1_600_000_100, 1_600_000_100))
    second = get(srv, "/static/changing.txt", [("If-None-Match", first.header("ETag"))])
    assert second.status == 200
    assert second.body == b"two!\n"
    assert second.header("ETag") != first.header("ETag")
    assert second.header("Last-Modified") == "Sun, 13 Sep 2020 12:28:20 GMT"


# --------------------------------------------------------------------------
# ranges


@pytest.mark.parametrize("spec,first,last", [
    ("bytes=0-4", 0, 4),
    ("bytes=1000-1999", 1000, 1999),
    ("bytes=299990-", 299990, 299999),
    ("bytes=-10", 299990, 299999),
    ("bytes=299000-999999999", 299000, 299999),
    ("bytes=0-0", 0, 0),
    ("bytes=-999999999", 0, 299999),
    ("BYTES = 5 - 9", 5, 9),
])
def test_single_range(srv, spec, first, last):
    resp = get(srv, "/static/data.bin", [("Range", spec)])
    assert resp.status == 206, resp
    assert resp.header("Content-Range") == "bytes %d-%d/%d" % (first, last, len(BINARY))
    assert resp.header("Content-Length") == str(last - first + 1)
    assert resp.body == BINARY[first:last + 1]


def _parse_multipart(resp):
    ctype = resp.header("Content-Type")
    m = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", ctype)
    assert m, ctype
    boundary = m.group(1).encode()
    body = resp.body
    assert body.startswith(b"--" + boundary + b"\r\n"), body[:80]
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n"), body[-80:]
    parts = []
    for chunk in body[:-len(b"\r\n--" + boundary + b"--\r\n")].split(b"--" + boundary + b"\r\n")[1:]:
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        head, _, data = chunk.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        parts.append((fields, data))
    return parts


def test_multiple_ranges(srv):
    resp = get(srv, "/static/data.bin", [("Range", "bytes=0-9, 100-199,-5")])
    assert resp.status == 206
    assert int(resp.header("Content-Length")) == len(resp.body)
    parts = _parse_multipart(resp)
    size = len(BINARY)
    expected = [(0, 9), (100, 199), (size - 5, size - 1)]
    assert len(parts) == 3
    for (fields, data), (first, last) in zip(parts, expected):
        assert fields[b"Content-Type"] == b"application/octet-stream"
        assert fields[b"Content-Range"] == b"bytes %d-%d/%d" % (first, last, size)
        assert data == BINARY[first:last + 1]


def test_multiple_ranges_head(srv):
    get_resp = get(srv, "/static/hello.txt", [("Range", "bytes=0-1,3-4")])
    resp = get(srv, "/static/hello.txt", [("Range", "bytes=0-1,3-4")], method="HEAD")
    assert resp.status == 206
    assert resp.body == b""
    assert resp.header("Content-Length") == get_resp.header("Content-Length")


def test_multiple_ranges_one_satisfiable(srv):
    resp = get(srv, "/static/hello.txt", [("Range", "bytes=0-3,5000-6000")])
    assert resp.status == 206
    assert resp.header("Content-Range") == "bytes 0-3/%d" % len(HELLO)
    assert resp.body == HELLO[:4]


@pytest.mark.parametrize("spec", ["bytes=300000-", "bytes=999999-1000000", "bytes=-0",
                                  "bytes=300000-300001,400000-"])
def test_unsatisfiable_range_416(srv, spec):
    resp = get(srv, "/static/data.bin", [("Range", spec)])
    assert resp.status == 416
    assert resp.header("Content-Range") == "bytes */%d" % len(BINARY)


def test_range_on_empty_file_416(srv):
    resp = get(srv, "/static/empty.txt", [("Range", "bytes=0-")])
    assert resp.status == 416
    assert resp.header("Content-Range") == "bytes */0"


@pytest.mark.parametrize("spec", ["items=0-4", "bytes=5-1", "bytes=abc", "bytes=", "bytes=1",
                                  "bytes=-", "bytes=0-1,,x-2", "bytes=\u00b2-3".encode().decode("latin-1"),
                                  "bytes=" + ",".join("%d-%d" % (i, i) for i in range(100)),
                                  "bytes=0-,0-,0-"])
def test_ignored_range_gives_200(srv, spec):
    resp = get(srv, "/static/data.bin", [("Range", spec)])
    assert resp.status == 200
    assert resp.body == BINARY


def test_if_range(srv):
    etag, last_modified = _validators(srv, "/static/data.bin")
    for validator in (etag, last_modified):
        resp = get(srv, "/static/data.bin", [("Range", "bytes=10-19"), ("If-Range", validator)])
        assert resp.status == 206, validator
        assert resp.body == BINARY[10:20]
    for stale in ('"stale-etag"', "W/" + etag, "Thu, 01 Jan 1970 00:00:01 GMT"):
        resp = get(srv, "/static/data.bin", [("Range", "bytes=10-19"), ("If-Range", stale)])
        assert resp.status == 200, stale
        assert resp.body == BINARY


# --------------------------------------------------------------------------
# precompressed variants


def test_precompressed_gzip(srv):
    resp = get(srv, "/static/style.css", [("Accept-Encoding", "gzip, deflate")])
    assert resp.status == 200
    assert resp.header("Content-Encoding") == "gzip"
    assert resp.header("Content-Type") == "text/css; charset=utf-8"
    assert resp.header("Vary") == "Accept-Encoding"
    assert gzip.decompress(resp.body) == CSS
    plain = get(srv, "/static/style.css")
    assert not plain.has_header("Content-Encoding")
    assert plain.header("Vary") == "Accept-Encoding"
    assert plain.body == CSS
    assert plain.header("ETag") != resp.header("ETag")


def test_precompressed_brotli_preferred(srv):
    resp = get(srv, "/static/style.css", [("Accept-Encoding", "gzip, deflate, br")])
    assert resp.header("Content-Encoding") == "br"
    assert resp.body == b"BROTLI-BYTES-FOR-TESTS"
    resp = get(srv, "/static/style.css", [("Accept-Encoding", "br;q=0, gzip;q=0.5")])
    assert resp.header("Content-Encoding") == "gzip"
    resp = get(srv, "/static/style.css", [("Accept-Encoding", "*")])
    assert resp.header("Content-Encoding") == "br"


def test_precompressed_refused_codings(srv):
    for accept in ("gzip;q=0, br;q=0", "identity", "deflate", "*;q=0", "br;q=0, *"):
        resp = get(srv, "/static/style.css", [("Accept-Encoding", accept)])
        if accept == "br;q=0, *":
            assert resp.header("Content-Encoding") == "gzip"
            continue
        assert not resp.has_header("Content-Encoding"), accept
        assert resp.body == CSS


def test_precompressed_only_where_present(srv):
    resp = get(srv, "/static/only-gz.js", [("Accept-Encoding", "br")])
    assert not resp.has_header("Content-Encoding")
    assert resp.body == b"console.log('plain');\n"
    resp = get(srv, "/static/hello.txt", [("Accept-Encoding", "gzip, br")])
    assert not resp.has_header("Content-Encoding")
    assert resp.body == HELLO


def test_precompressed_off(srv):
    resp = get(srv, "/plain/style.css", [("Accept-Encoding", "gzip, br")])
    assert not resp.has_header("Content-Encoding")
    assert not resp.has_header("Vary")
    assert resp.body == CSS


def test_precompressed_with_range_and_304(srv):
    gz = get(srv, "/static/style.css", [("Accept-Encoding", "gzip")])
    resp = get(srv, "/static/style.css", [("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")])
    assert resp.status == 206
    assert resp.body == gz.body[:10]
    assert resp.header("Content-Encoding") == "gzip"
    resp = get(srv, "/static/style.css", [("Accept-Encoding", "gzip"),
                                          ("If-None-Match", gz.header("ETag"))])
    assert resp.status == 304


def test_curl_compressed(srv, curl):
    # only a .gz sibling here (the .br of style.css is not real brotli)
    proc = curl("--compressed", "-D", "-", srv.url + "/static/only-gz.js")
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert body == b"console.log('plain');\n"


# --------------------------------------------------------------------------
# safety: nothing outside the root, ever


@pytest.mark.parametrize("target,status", [
    ("/static/../outside/secret.txt", 400),
    ("/static/sub/../../outside/secret.txt", 400),
    ("/static/%2e%2e/outside/secret.txt", 400),
    ("/static/%2E%2E/%2E%2E/%2E%2E/etc/passwd", 400),
    ("/static/.%2e/outside/secret.txt", 400),
    ("/static/./hello.txt", 400),
    ("/static/sub/./../hello.txt", 400),
    ("/static/..%2foutside%2fsecret.txt", 404),
    ("/static/%2e%2e%2foutside%2fsecret.txt", 404),
    ("/static/sub%2f..%2f..%2foutside/secret.txt", 404),
    ("/static/%2fetc/passwd", 404),
    ("/static/..%5coutside%5csecret.txt", 400),
    ("/static/..%5C..%5Coutside%5Csecret.txt", 400),
    ("/static/hello.txt%00.png", 400),
    ("/static/%00", 400),
    ("/static//etc/passwd", 404),
    ("/static///outside/secret.txt", 404),
    ("/static/%c0%ae%c0%ae/outside/secret.txt", 404),
    ("/static/%c0%af..%c0%afoutside/secret.txt", 404),
    ("/static/link_out", 404),
    ("/static/dirlink_out/secret.txt", 404),
    ("/static/sub/rel_link_out", 404),
    ("/static/.secret", 404),
    ("/static/.git/config", 404),
    ("/static/sub/../.secret", 400),
    ("/static/.git/", 404),
    ("/static/.%73ecret", 404),
])
def test_traversal_refused(srv, target, status):
    resp = get(srv, target)
    assert resp.status == status, (target, resp)
    assert b"TOP-SECRET" not in resp.body
    assert b"dotfile" not in resp.body


def test_traversal_absolute_form(srv):
    resp = get(srv, "http://127.0.0.1/static/../outside/secret.txt")
    assert resp.status == 400
    assert b"TOP-SECRET" not in resp.body


def test_raw_backslash(srv):
    with RawConnection(srv.port) as conn:
        conn.send(b"GET /static/..\\outside\\secret.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = conn.read_response()
    assert resp.status == 400
    assert b"TOP-SECRET" not in resp.body


def test_symlinks_inside_root_are_followed(srv):
    assert get(srv, "/static/link_in").body == HELLO
    assert get(srv, "/static/sub/rel_link_in").body == HELLO


def test_dotfiles_and_outside_symlinks_when_enabled(srv):
    # the /dot mount has dotfiles = true and follow_symlinks = true
    assert get(srv, "/dot/.secret").body == b"dotfile contents\n"
    assert get(srv, "/dot/.git/config").body == b"[core]\n"
    assert get(srv, "/dot/link_out").body == SECRET
    # '..' is still malformed, whatever the options
    assert get(srv, "/dot/../outside/secret.txt").status == 400
    assert get(srv, "/dot/%2e%2e/outside/secret.txt").status == 400


def test_worker_survives_the_tricks(srv):
    pids = srv.live_worker_pids()
    for target in ("/static/%ff%fe", "/static/" + "a" * 5000, "/static/%", "/static/%zz",
                   "/static/%2", "/static/" + "%2e" * 100):
        assert get(srv, target).status in (400, 404, 414), target
    assert get(srv, "/static/hello.txt").body == HELLO
    assert srv.live_worker_pids() == pids


# --------------------------------------------------------------------------
# unexpected errors, in process: 500 before the head, a cut connection after it


class FakeResponder:
    """Records what a handler does with the responder interface."""

    def __init__(self, fail_send_file=False):
        self.calls = []
        self.headers_sent = False
        self.fail_send_file = fail_send_file

    def send_head(self, status, headers, length, length_in_headers):
        self.calls.append(("head", status))
        self.headers_sent = True

    def write(self, data):
        self.calls.append(("write", len(data)))

    def send_file(self, fd, offset, count):
        if self.fail_send_file:
            raise OSError(5, "Input/output error")
        self.calls.append(("send_file", offset, count))

    def finish(self, last=None):
        self.calls.append(("finish",))

    def abort(self):
        self.calls.append(("abort",))


def _request(path, method="GET"):
    from fastgw._request import Request

    req = Request()
    req.method, req.path, req.target, req.query = method, path, "/static" + path, ""
    req.script_name, req.headers, req.peer, req.version = "/static", [], None, "HTTP/1.1"
    return req


def test_unexpected_error_before_head_is_500(tree, monkeypatch, caplog):
    from fastgw import static

    handler = static.StaticFiles(tree["root"])

    def broken(name):
        raise RuntimeError("fgw-simulated-bug")

    monkeypatch.setattr(static, "content_type", broken)
    resp = FakeResponder()
    handler(_request("/hello.txt"), resp)
    assert resp.calls == [("head", "500 Internal Server Error"), ("finish",)]
    assert "fgw-simulated-bug" in caplog.text


def test_unexpected_error_after_head_aborts(tree):
    from fastgw import static

    handler = static.StaticFiles(tree["root"])
    resp = FakeResponder(fail_send_file=True)
    before = len(os.listdir("/proc/self/fd"))
    handler(_request("/hello.txt"), resp)
    assert resp.calls == [("head", "200 OK"), ("abort",)]
    assert len(os.listdir("/proc/self/fd")) == before  # the file was closed


def test_no_descriptor_leaks(tree):
    from fastgw import static

    handler = static.StaticFiles(tree["root"])
    before = len(os.listdir("/proc/self/fd"))
    for path, headers in [("/hello.txt", []), ("/style.css", [("Accept-Encoding", "gzip, br")]),
                          ("/docs/", []), ("/docs", []), ("/nodir/", []), ("/link_out", []),
                          ("/fifo", []), ("/data.bin", [("Range", "bytes=0-1,5-6")]),
                          ("/hello.txt", [("If-None-Match", "*")]), ("/missing", [])]:
        req = _request(path)
        req.headers = headers
        handler(req, FakeResponder())
    assert len(os.listdir("/proc/self/fd")) == before
