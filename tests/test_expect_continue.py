"""Expect: 100-continue. With request buffering (the default) the loop sends the
interim 100 itself once it decides to read the body: after routing (no 100 for a
static mount or an unmounted path) and the size limit (413 instead). Under a mount
with request_buffering = false it is sent lazily, on the application's first read."""
import textwrap

import pytest

from fgwtest import APPS_DIR, RawConnection, chunked, request

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _expect_head(path, body_len=None, te_chunked=False, extra=()):
    headers = [("Expect", "100-continue")]
    if te_chunked:
        headers.append(("Transfer-Encoding", "chunked"))
    else:
        headers.append(("Content-Length", str(body_len)))
    return request("POST", path, headers + list(extra))


def start(mode, start_module_server, tmp_path_factory):
    """wsgiapp at "/" (the body gathered first, or streamed), static files at /files."""
    base = tmp_path_factory.mktemp("continue-" + mode)
    (base / "files").mkdir()
    (base / "files" / "a.txt").write_bytes(b"static\n")
    config = base / "fastgw.toml"
    config.write_text(textwrap.dedent(f'''
        [server]
        limit_request_body = 100000

        [[mount]]
        path = "/"
        app = "wsgiapp:application"
        request_buffering = {"true" if mode == "buffered" else "false"}

        [[mount]]
        path = "/files"
        static = "{base / "files"}"
        '''))
    srv = start_module_server(None, "--config", str(config), "--chdir", APPS_DIR)
    srv.mode = mode
    return srv


@pytest.fixture(scope="module")
def buffered(start_module_server, tmp_path_factory):
    return start("buffered", start_module_server, tmp_path_factory)


@pytest.fixture(scope="module")
def streamed(start_module_server, tmp_path_factory):
    return start("streamed", start_module_server, tmp_path_factory)


@pytest.fixture(params=["buffered", "streamed"])
def server(request):
    return request.getfixturevalue(request.param)


def test_continue_sent_when_app_reads(server):
    body = b"body sent only after 100 Continue"
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/body/read", len(body)))
        # the app reads wsgi.input -> the server must ask for the body
        interim = conn.read_exact(len(CONTINUE))
        assert interim == CONTINUE
        conn.send(body)
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.json()["chunks"] == [body.decode()]
        # connection still in sync afterwards
        again = conn.roundtrip(request("GET", "/uri?after-continue"))
        assert again.body == b"/uri?after-continue"


def test_continue_with_chunked_body(server):
    payload = b"chunked after continue\nline two\n"
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/body/readline", te_chunked=True))
        assert conn.read_exact(len(CONTINUE)) == CONTINUE
        conn.send(chunked(payload[:10], payload[10:]))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.json()["chunks"] == ["chunked after continue\n", "line two\n"]


def test_interim_response_parsed_as_response(server):
    """Read the interim reply through the generic parser too."""
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/body/read", 3))
        interim = conn.read_response(skip_interim=False)
        assert interim.status == 100
        assert interim.version == "HTTP/1.1"
        assert interim.headers == []
        conn.send(b"abc")
        final = conn.read_response()
        assert final.status == 200
        assert final.json()["chunks"] == ["abc"]


def test_no_continue_when_app_does_not_read(streamed):
    server = streamed
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/hello", 1000))
        # the body is never sent: the final response must come by itself and
        # must not be preceded by an interim 100
        resp = conn.read_response(skip_interim=False)
        assert resp.status == 200, "got %d before the final response" % resp.status
        assert resp.body == b"Hello, world!\n"


def test_no_continue_when_app_does_not_read_then_client_sends_body(streamed):
    """A client that gave up waiting may send the body anyway; it must not be
    taken as the next request."""
    server = streamed
    body = b"GET /uri?smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/hello", len(body)))
        resp = conn.read_response(skip_interim=False)
        assert resp.status == 200
        if "close" in resp.connection_tokens():
            return
        conn.send(body + request("GET", "/uri?next"))
        try:
            nxt = conn.read_response()
        except AssertionError as exc:
            assert "no response" in str(exc), exc  # closing is acceptable
            return
        assert nxt.body == b"/uri?next", nxt


def test_buffered_continue_comes_from_the_loop(buffered):
    """Buffered: the 100 comes before the application runs, even one that never reads;
    the body the client then sends is taken whole and not mistaken for a request."""
    server = buffered
    body = b"GET /uri?smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 2000  # > 64 KiB: spooled
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/hello", len(body)))
        assert conn.read_exact(len(CONTINUE)) == CONTINUE
        conn.send(body)
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"Hello, world!\n"
        assert conn.roundtrip(request("GET", "/uri?next")).body == b"/uri?next"


@pytest.mark.parametrize("path", ["/files/a.txt", "/files/none"])
def test_no_continue_for_a_mount_that_takes_no_body(server, path):
    """A static mount answers without the body: no 100 invites it, in either mode."""
    with RawConnection(server.port) as conn:
        conn.send(_expect_head(path, 5000))
        resp = conn.read_response(skip_interim=False)
        assert resp.status == 405, resp


def test_over_limit_gets_413_without_continue(server):
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/body/read", 200000))
        resp = conn.read_response(skip_interim=False)
        assert resp.status == 413


def test_continue_with_body_already_sent(server):
    """Client sends headers and body together; any 100 must still come
    before the final response, and the body must arrive intact."""
    body = b"eager body"
    with RawConnection(server.port) as conn:
        conn.send(_expect_head("/body/read", len(body)) + body)
        resp = conn.read_response()  # an interim 100 (if any) is skipped
        assert resp.status == 200
        assert resp.json()["chunks"] == [body.decode()]
        again = conn.roundtrip(request("GET", "/uri?z"))
        assert again.body == b"/uri?z"
