"""The WSGI environ (PEP 3333) as the application sees it."""
import pytest

from fgwtest import RawConnection, chunked, request


def _environ(port, method="GET", target="/environ-raw", headers=None, body=b"",
             version="HTTP/1.1", host="127.0.0.1", conn=None):
    data = request(method, target, headers, body, version, host=host)
    if conn is not None:
        resp = conn.roundtrip(data)
    else:
        with RawConnection(port) as c:
            resp = c.roundtrip(data)
    assert resp.status == 200, resp
    return resp.json()


def test_required_keys_and_types(server):
    data = _environ(server.port, target="/environ-raw?a=1")
    env, types = data["environ"], data["types"]
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
                "REMOTE_PORT", "REQUEST_URI", "wsgi.version", "wsgi.url_scheme",
                "wsgi.input", "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess",
                "wsgi.run_once", "wsgi.input_terminated", "wsgi.file_wrapper"):
        assert key in env, key
    # every CGI-style key is a native str
    for key, type_name in types.items():
        if "." not in key:
            assert type_name == "str", (key, type_name, env[key])
    assert env["wsgi.version"] == [1, 0] and types["wsgi.version"] == "tuple"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False  # --workers 1
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert data["input_methods"] == {"read": True, "readline": True, "readlines": True,
                                     "__iter__": True}
    assert data["errors_methods"] == {"write": True, "writelines": True, "flush": True}
    assert data["file_wrapper_callable"] is True
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_validator_accepts_environ(server):
    """The validated route asserts PEP 3333 rules itself (str values, no
    HTTP_CONTENT_LENGTH/HTTP_CONTENT_TYPE, ...)."""
    for data in (
        request("GET", "/environ?x=1"),
        request("POST", "/environ", [("Content-Type", "text/plain"),
                                     ("Content-Length", "3")], b"abc"),
        request("POST", "/environ", [("Transfer-Encoding", "chunked")], chunked(b"abc")),
        request("GET", "/environ", version="HTTP/1.0", host=None,
                headers=[("Connection", "keep-alive")]),
    ):
        # one connection each: the app leaves the body unread, after which
        # the server may legitimately close the connection
        with RawConnection(server.port) as conn:
            resp = conn.roundtrip(data)
        assert resp.status == 200, (data, resp)


@pytest.mark.parametrize("target,path,query", [
    ("/environ-raw/caf%C3%A9", "/environ-raw/caf\xc3\xa9", ""),
    ("/environ-raw/a%20b/c%2Fd?x=%20y&z=%C3%A9", "/environ-raw/a b/c/d", "x=%20y&z=%C3%A9"),
    ("/environ-raw/plus+sign?q=a+b", "/environ-raw/plus+sign", "q=a+b"),
    ("/environ-raw", "/environ-raw", ""),
    ("/environ-raw?", "/environ-raw", ""),
    ("/environ-raw/%7Euser/%41", "/environ-raw/~user/A", ""),
    ("/environ-raw/q?a=1?b=2&c", "/environ-raw/q", "a=1?b=2&c"),
])
def test_path_and_query(server, target, path, query):
    env = _environ(server.port, target=target)["environ"]
    assert env["PATH_INFO"] == path
    assert env.get("QUERY_STRING", "") == query
    assert env["REQUEST_URI"] == target
    assert env["SCRIPT_NAME"] == ""


def test_path_info_is_latin1_of_utf8_bytes(server):
    # raw non-ASCII bytes are not legal in a request target, but percent
    # decoding must produce one str char per byte (latin-1 "bytes in str")
    data = _environ(server.port, target="/environ-raw/%E2%82%AC%FF%00x")
    assert data["environ"]["PATH_INFO"] == "/environ-raw/\xe2\x82\xac\xff\x00x"


def test_root_path(server):
    """PATH_INFO of "/" itself (no route prefix): the app 404s with the path."""
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/"))
    assert resp.status == 404
    assert resp.body == b"no such route: /"


def test_content_type_and_length(server):
    env = _environ(server.port, "POST", headers=[("Content-Type", "application/x-test; q=1"),
                                                 ("Content-Length", "5")], body=b"12345")["environ"]
    assert env["CONTENT_TYPE"] == "application/x-test; q=1"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["REQUEST_METHOD"] == "POST"


def test_no_content_length_without_body(server):
    env = _environ(server.port)["environ"]
    assert "CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_chunked_request_has_no_content_length(server):
    env = _environ(server.port, "POST", headers=[("Transfer-Encoding", "chunked")],
                   body=chunked(b"hello"))["environ"]
    assert "CONTENT_LENGTH" not in env
    assert env["wsgi.input_terminated"] is True


def test_host_header_sets_server_name_and_port(server):
    env = _environ(server.port, host="example.org:8081")["environ"]
    assert env["SERVER_NAME"] == "example.org"
    assert env["SERVER_PORT"] == "8081"
    assert env["HTTP_HOST"] == "example.org:8081"


def test_host_header_without_port(server):
    env = _environ(server.port, host="example.org")["environ"]
    assert env["SERVER_NAME"] == "example.org"
    assert env["SERVER_PORT"].isdigit()


def test_no_host_uses_socket_address(server):
    env = _environ(server.port, version="HTTP/1.0", host=None)["environ"]
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env


def test_remote_addr_and_port(server):
    with RawConnection(server.port) as conn:
        env = _environ(server.port, conn=conn)["environ"]
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["REMOTE_PORT"] == str(conn.local_port)


def test_http_headers(server):
    headers = [
        ("X-Multi", "one"),
        ("User-Agent", "fgw-test/1.0"),
        ("x-lower-case", "lower"),
        ("X-Multi", "two"),
        ("X-Spaces", "   padded value   "),
        ("Accept", "text/plain"),
        ("X-Latin", "caf\xe9"),
        ("X-Empty", ""),
    ]
    env = _environ(server.port, headers=headers)["environ"]
    assert env["HTTP_X_MULTI"] == "one, two"
    assert env["HTTP_USER_AGENT"] == "fgw-test/1.0"
    assert env["HTTP_X_LOWER_CASE"] == "lower"
    assert env["HTTP_X_SPACES"] == "padded value"
    assert env["HTTP_ACCEPT"] == "text/plain"
    assert env["HTTP_X_LATIN"] == "caf\xe9"
    assert env["HTTP_X_EMPTY"] == ""
    assert env["HTTP_HOST"] == "127.0.0.1"


def test_proxy_header_never_becomes_http_proxy(server):
    """httpoxy (CVE-2016-5385): an application that copies HTTP_PROXY into its process
    environment would send its own requests through the client's proxy."""
    env = _environ(server.port, headers=[("Proxy", "http://evil.example:3128"),
                                         ("X-Kept", "yes")])["environ"]
    assert "HTTP_PROXY" not in env
    assert env["HTTP_X_KEPT"] == "yes"


def test_environ_is_fresh_per_request(server):
    with RawConnection(server.port) as conn:
        first = _environ(server.port, headers=[("X-Only-First", "1"),
                                               ("Content-Length", "0")],
                         method="POST", conn=conn)["environ"]
        second = _environ(server.port, conn=conn)["environ"]
    assert first["HTTP_X_ONLY_FIRST"] == "1"
    assert "HTTP_X_ONLY_FIRST" not in second
    assert "CONTENT_LENGTH" not in second
    assert second["REQUEST_METHOD"] == "GET"


def test_http10_protocol(server):
    env = _environ(server.port, version="HTTP/1.0")["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_env_flag_visible_at_import_time(server):
    with RawConnection(server.port) as conn:
        resp = conn.roundtrip(request("GET", "/import-env"))
    data = resp.json()
    assert data["import_time"]["FASTGW_TEST_DIR"] == server.test_dir
