"""The routing table: longest prefix on whole segments, SCRIPT_NAME/PATH_INFO as
mod_wsgi's WSGIScriptAlias sets them, exact single-file mounts, and the access log
covering every kind of mount."""
import os
import re

import pytest

from fgwtest import RawConnection, raw_request, read_lines, request, wait_until
from fastgw.router import Router


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("router-site"))
    static = os.path.join(base, "static")
    os.makedirs(static)
    with open(os.path.join(static, "x.txt"), "wb") as fh:
        fh.write(b"static x\n")
    robots = os.path.join(base, "robots.txt")
    with open(robots, "wb") as fh:
        fh.write(b"User-agent: *\n")
    return {"base": base, "static": static, "robots": robots,
            "access_log": os.path.join(base, "access.log")}


@pytest.fixture(scope="module")
def srv(start_module_server, site):
    return start_module_server(
        "mounts:main",
        "--mount", "/api=mounts:api",
        "--mount", "/api/v2/deep/=mounts:deep",
        "--static", "/static/=" + site["static"],
        "--static", "/robots.txt=" + site["robots"],
        "--access-log", site["access_log"])


def routed(srv, target, method="GET"):
    resp = raw_request(srv.port, method, target)
    assert resp.status == 200, (target, resp)
    data = resp.json()
    return data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]


@pytest.mark.parametrize("target,app,script_name,path_info", [
    ("/", "main", "", "/"),
    ("/hello", "main", "", "/hello"),
    ("/api", "api", "/api", ""),
    ("/api/", "api", "/api", "/"),
    ("/api/users/7", "api", "/api", "/users/7"),
    ("/api/users/7/", "api", "/api", "/users/7/"),
    ("/apifoo", "main", "", "/apifoo"),
    ("/api-v2/x", "main", "", "/api-v2/x"),
    ("/api/v2", "api", "/api", "/v2"),
    ("/api/v2/deep", "deep", "/api/v2/deep", ""),
    ("/api/v2/deep/a/b", "deep", "/api/v2/deep", "/a/b"),
    ("/api/v2/deeper", "api", "/api", "/v2/deeper"),
    ("/API/x", "main", "", "/API/x"),
    ("/%61pi/users", "api", "/api", "/users"),
    ("/staticfoo", "main", "", "/staticfoo"),
    ("/robots.txt/x", "main", "", "/robots.txt/x"),
    ("/robots.txt.bak", "main", "", "/robots.txt.bak"),
    ("http://127.0.0.1/api/abs", "api", "/api", "/abs"),
])
def test_script_name_and_path_info(srv, target, app, script_name, path_info):
    assert routed(srv, target) == (app, script_name, path_info)


def test_query_and_request_uri_untouched(srv):
    resp = raw_request(srv.port, "GET", "/api/search?q=a%20b&x=1")
    data = resp.json()
    assert data["QUERY_STRING"] == "q=a%20b&x=1"
    assert data["REQUEST_URI"] == "/api/search?q=a%20b&x=1"
    assert data["PATH_INFO"] == "/search"


def test_static_and_file_mounts(srv):
    assert raw_request(srv.port, "GET", "/static/x.txt").body == b"static x\n"
    assert raw_request(srv.port, "GET", "/robots.txt").body == b"User-agent: *\n"
    assert raw_request(srv.port, "GET", "/static/missing").status == 404


def test_keepalive_across_mounts(srv):
    with RawConnection(srv.port) as conn:
        for _ in range(3):
            assert conn.roundtrip(request("GET", "/api/a")).json()["app"] == "api"
            assert conn.roundtrip(request("GET", "/static/x.txt")).body == b"static x\n"
            assert conn.roundtrip(request("GET", "/b")).json()["app"] == "main"
            assert conn.roundtrip(request("GET", "/robots.txt")).status == 200


def test_access_log_covers_apps_and_static(srv, site):
    path = site["access_log"]
    tag = "fgw-router-log"
    raw_request(srv.port, "GET", "/api/x?%s" % tag, headers=[("User-Agent", "agent/1"),
                                                              ("Referer", "http://ref/")])
    raw_request(srv.port, "GET", "/static/x.txt?%s" % tag)
    raw_request(srv.port, "GET", "/static/nope?%s" % tag)
    raw_request(srv.port, "HEAD", "/robots.txt?%s" % tag)
    expected = [
        r'"GET /api/x\?%s HTTP/1\.1" 200 \d+ "http://ref/" "agent/1"$' % tag,
        r'"GET /static/x\.txt\?%s HTTP/1\.1" 200 9 "-" "-"$' % tag,
        r'"GET /static/nope\?%s HTTP/1\.1" 404 \d+ ' % tag,
        r'"HEAD /robots\.txt\?%s HTTP/1\.1" 200 - ' % tag,
    ]

    def all_logged():
        lines = read_lines(path)
        return all(any(re.search(e, l) for l in lines) for e in expected)

    wait_until(all_logged, 10, message="access log lines (has %r)" % read_lines(path)[-6:])
    line = next(l for l in read_lines(path) if "/static/x.txt?" + tag in l)
    assert re.match(r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] ', line)


def test_no_root_mount_gives_404(start_server, site):
    srv = start_server("--mount=/api=mounts:api", "--static", "/static=" + site["static"])
    assert raw_request(srv.port, "GET", "/api/x").json()["app"] == "api"
    resp = raw_request(srv.port, "GET", "/other")
    assert resp.status == 404
    assert raw_request(srv.port, "GET", "/").status == 404
    assert raw_request(srv.port, "GET", "/static/x.txt").body == b"static x\n"


def test_same_app_mounted_twice(start_server):
    srv = start_server("mounts:main", "--mount", "/one=mounts:api", "--mount", "/two=mounts:api")
    assert routed(srv, "/one/x") == ("api", "/one", "/x")
    assert routed(srv, "/two/x") == ("api", "/two", "/x")


# --------------------------------------------------------------------------
# the matching itself, in process


class FakeRequest:
    def __init__(self, path):
        self.path = path
        self.script_name = ""


def table(*prefixes, exact=()):
    routes = [(p, "h" + p, False) for p in prefixes]
    routes += [(p, "file" + p, True) for p in exact]
    return Router(routes)


@pytest.mark.parametrize("path,expected", [
    ("/", ("", "h/")),
    ("/a", ("/a", "h/a")),
    ("/a/", ("/a", "h/a")),
    ("/ab", ("", "h/")),
    ("/a/b", ("/a/b", "h/a/b")),
    ("/a/b/c/d/e", ("/a/b", "h/a/b")),
    ("/a/bc", ("/a", "h/a")),
    ("/x/y/z", ("/x/y/z", "h/x/y/z")),
    ("/x/y", ("", "h/")),
    ("/robots.txt", ("/robots.txt", "file/robots.txt")),
    ("/robots.txt/", ("", "h/")),
    ("*", ("", "h/")),
    ("//a", ("", "h/")),
])
def test_match(path, expected):
    router = table("/", "/a", "/a/b", "/x/y/z", exact=("/robots.txt",))
    assert router.match(path) == expected


def test_match_without_root():
    router = table("/a")
    assert router.match("/b") == ("", None)
    assert router.match("/a/b") == ("/a", "h/a")


def test_single_root_app_is_not_wrapped():
    root = object()
    assert Router([("/", root, False)]).handler() is root
    router = Router([("/", root, False), ("/s", object(), False)])
    assert router.handler() is router
