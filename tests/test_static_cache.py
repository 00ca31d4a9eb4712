"""The cache of small static files: a file answered from memory is never stale.

Every file here is made first and used only once it is older than the cache's
settling time (files changed more recently are not cached), then asked for twice,
so the second answer comes from the cache. Then it is changed in every way a
deployment changes files, and the next answer must be the new file. The in-process
tests at the end check that the cache is used at all, and its bounds.
"""
import gzip
import json
import os
import time

import pytest

from fastgw import static
from fgwtest import raw_request, wait_until

SMALL = b"0123456789abcdef" * 256  # 4 KiB
OTHER = b"fedcba9876543210" * 256  # same size, other bytes
CSS = b"body { margin: 0; }\n" * 40


def settled(paths):
    """Wait until every file is old enough to be cached (a clock condition, not a race)."""
    def old_enough():
        now = time.time_ns()
        return all(now - os.stat(p).st_ctime_ns > static.SETTLED_NS for p in paths)
    wait_until(old_enough, timeout=static.SETTLED_NS / 1e9 + 10, interval=0.05,
               message="files older than the cache's settling time")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("static-cache"))
    names = {"inplace.bin": SMALL, "renamed.bin": SMALL, "deleted.bin": SMALL,
             "grown.bin": SMALL, "cond.txt": SMALL, "gz-later.css": CSS,
             "gz-gone.css": CSS, "gz-gone.css.gz": gzip.compress(CSS, mtime=0),
             "app.css": CSS, "app.0123456789ab.css": CSS}
    for name, data in names.items():
        with open(os.path.join(root, name), "wb") as fh:
            fh.write(data)
    with open(os.path.join(root, "staticfiles.json"), "w") as fh:
        json.dump({"paths": {}}, fh)
    settled([os.path.join(root, name) for name in names])
    return root


@pytest.fixture(scope="module")
def srv(start_module_server, root):
    config = os.path.join(root, "fastgw.toml")
    with open(config, "w") as fh:
        fh.write('[[mount]]\npath = "/static"\nstatic = %s\n\n'
                 '[[mount]]\npath = "/django"\nstatic = %s\nmanifest = "staticfiles.json"\n'
                 % (json.dumps(root), json.dumps(root)))
    return start_module_server("mounts:main", "--config=" + config)


def get(srv, target, headers=None, method="GET"):
    return raw_request(srv.port, method, target, headers=headers)


def cached(srv, target, body, headers=None):
    """Ask twice (the first answer fills the cache, the second comes from it)."""
    for _ in range(2):
        resp = get(srv, target, headers)
        assert resp.status == 200
        assert resp.body == body
    return resp


def test_changed_in_place_same_size_same_mtime(srv, root):
    path = os.path.join(root, "inplace.bin")
    before = cached(srv, "/static/inplace.bin", SMALL)
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.write(OTHER)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    resp = get(srv, "/static/inplace.bin")
    assert resp.status == 200
    assert resp.body == OTHER
    # Size and mtime are the ETag's inputs, as nginx makes it: it stays the same.
    assert resp.header("ETag") == before.header("ETag")


def test_replaced_by_rename(srv, root):
    cached(srv, "/static/renamed.bin", SMALL)
    fresh = os.path.join(root, "renamed.bin.tmp")
    with open(fresh, "wb") as fh:
        fh.write(OTHER)
    os.rename(fresh, os.path.join(root, "renamed.bin"))
    assert get(srv, "/static/renamed.bin").body == OTHER


def test_deleted_is_404(srv, root):
    cached(srv, "/static/deleted.bin", SMALL)
    os.unlink(os.path.join(root, "deleted.bin"))
    assert get(srv, "/static/deleted.bin").status == 404
    assert get(srv, "/static/deleted.bin", method="HEAD").status == 404


def test_grown_beyond_the_cache_limit(srv, root):
    cached(srv, "/static/grown.bin", SMALL)
    big = SMALL * (static.CACHE_FILE_LIMIT // len(SMALL) + 3)
    with open(os.path.join(root, "grown.bin"), "ab") as fh:
        fh.write(big[len(SMALL):])
    resp = get(srv, "/static/grown.bin")
    assert resp.status == 200
    assert resp.header("Content-Length") == str(len(big))
    assert resp.body == big


def test_conditional_head_and_range_of_a_cached_file(srv):
    resp = cached(srv, "/static/cond.txt", SMALL)
    etag, modified = resp.header("ETag"), resp.header("Last-Modified")
    for headers in ([("If-None-Match", etag)], [("If-Modified-Since", modified)]):
        not_modified = get(srv, "/static/cond.txt", headers)
        assert not_modified.status == 304
        assert not_modified.body == b""
        assert not_modified.header("ETag") == etag
        assert not not_modified.has_header("Content-Type")
    assert get(srv, "/static/cond.txt", [("If-Match", '"other"')]).status == 412
    head = get(srv, "/static/cond.txt", method="HEAD")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(SMALL))
    assert head.body == b""
    part = get(srv, "/static/cond.txt", [("Range", "bytes=16-31")])
    assert part.status == 206
    assert part.body == SMALL[16:32]


def test_precompressed_variant_added_and_removed(srv, root):
    accept = [("Accept-Encoding", "gzip")]
    cached(srv, "/static/gz-later.css", CSS, accept)
    with open(os.path.join(root, "gz-later.css.gz"), "wb") as fh:
        fh.write(gzip.compress(CSS, mtime=0))
    resp = get(srv, "/static/gz-later.css", accept)
    assert resp.header("Content-Encoding") == "gzip"
    assert gzip.decompress(resp.body) == CSS

    resp = cached(srv, "/static/gz-gone.css", gzip.compress(CSS, mtime=0), accept)
    assert resp.header("Content-Encoding") == "gzip"
    os.unlink(os.path.join(root, "gz-gone.css.gz"))
    resp = get(srv, "/static/gz-gone.css", accept)
    assert not resp.has_header("Content-Encoding")
    assert resp.body == CSS


def test_new_manifest_changes_cache_control_of_cached_files(srv, root):
    resp = cached(srv, "/django/app.0123456789ab.css", CSS)
    assert resp.header("Cache-Control") == static.DjangoManifest.OTHER
    with open(os.path.join(root, "staticfiles.json"), "w") as fh:
        json.dump({"paths": {"app.css": "app.0123456789ab.css"}}, fh)
    # The manifest is looked at no more than once a second.
    wait_until(lambda: get(srv, "/django/app.0123456789ab.css").header("Cache-Control")
               == static.DjangoManifest.HASHED, message="the new manifest's Cache-Control")
    assert get(srv, "/django/app.css").header("Cache-Control") == static.DjangoManifest.OTHER


# --------------------------------------------------------------------------
# in process: the cache is used, fresh files stay out, the bound holds


class Recorder:
    headers_sent = False

    def __init__(self):
        self.calls = []

    def send_head(self, status, headers, length, length_in_headers):
        self.calls.append(("head", status, length))

    def send_file(self, fd, offset, count):
        self.calls.append(("send_file", count))

    def finish(self, last=None):
        self.calls.append(("finish", last))


def answer(handler, path):
    from fastgw._request import Request

    req = Request()
    req.method, req.path, req.target, req.query = "GET", path, "/static" + path, ""
    req.script_name, req.headers, req.peer, req.version = "/static", [], None, "HTTP/1.1"
    resp = Recorder()
    handler(req, resp)
    return resp.calls


def test_second_answer_comes_from_memory(root):
    handler = static.StaticFiles(root)
    size = len(CSS)
    assert answer(handler, "/app.css") == [("head", "200 OK", size), ("send_file", size),
                                           ("finish", None)]
    assert answer(handler, "/app.css") == [("head", "200 OK", size), ("finish", CSS)]


def test_recently_changed_file_is_not_cached(tmp_path):
    path = tmp_path / "new.txt"
    path.write_bytes(b"just written\n")
    handler = static.StaticFiles(str(tmp_path))
    for _ in range(2):
        assert ("send_file", 13) in answer(handler, "/new.txt")
    assert not handler.cache.entries


def test_cache_bound_drops_oldest_first():
    cache = static.FileCache(limit=3 * (100 + static.ENTRY_OVERHEAD))
    for i in range(5):
        entry = static.CachedFile()
        entry.cost = 100 + static.ENTRY_OVERHEAD
        cache.put(i, entry)
    assert list(cache.entries) == [2, 3, 4]
    assert cache.size == 3 * (100 + static.ENTRY_OVERHEAD)
    cache.put(3, entry)  # the same key again: replaced, not counted twice
    assert list(cache.entries) == [2, 4, 3]
    assert cache.size == 3 * (100 + static.ENTRY_OVERHEAD)
