"""FastCGI 1.0 responder, over raw sockets and with cgi-fcgi (libfcgi-bin).

The raw tests play the web server byte by byte with ``fcgiclient``: every record
the server sends is checked for version 1 and 8-byte alignment as it is read.
One server per mode (application inline on the loop thread, and ``--threads 4``)
serves the whole module; it listens on FastCGI over TCP and a UNIX socket, on
HTTP (to ask the worker's pid: a bad connection must never cost the worker),
mounts ``mounts:api`` at /app for the router-split tests and a static directory
at /static. ``--limit-request-head 16384`` bounds the PARAMS stream.
"""
import hashlib
import itertools
import os
import shutil
import socket
import struct
import subprocess
import threading

import pytest

import fcgiclient as fc
from fgwtest import get_pid, http_request, pattern_bytes, read_lines, wait_for_line

HEAD_LIMIT = 16384
MAX_CONNECTIONS = 512
STATIC_SIZE = 3 * 65535 + 1001  # several full records and an unaligned tail

_ids = itertools.count(1)


def unique(prefix):
    return "%s-%d-%d" % (prefix, os.getpid(), next(_ids))


class FcgiServer:
    def __init__(self, server, mode, unix_path, static_dir, test_dir):
        self.server = server
        self.mode = mode
        self.unix_path = unix_path
        self.static_dir = static_dir
        self.test_dir = test_dir
        tcp = [l for l in server.listeners if l.startswith("fastcgi://127.0.0.1:")]
        assert len(tcp) == 1, server.listeners
        self.address = ("127.0.0.1", int(tcp[0].rsplit(":", 1)[1]))
        assert "fastcgi://unix:" + unix_path in server.listeners, server.listeners

    def connect(self, unix=False):
        return fc.FcgiConnection(self.unix_path if unix else self.address)

    def pid(self):
        return get_pid(self.server.port)

    def gateway_log(self):
        return os.path.join(self.test_dir, "gateway.log")


@pytest.fixture(scope="module", params=["inline", "threads"])
def fcgi(request, start_module_server, tmp_path_factory, test_dir):
    base = tmp_path_factory.mktemp("fcgi-" + request.param)
    unix_path = str(base / "fastcgi.sock")
    static_dir = base / "static"
    static_dir.mkdir()
    (static_dir / "big.bin").write_bytes(pattern_bytes(STATIC_SIZE))
    (static_dir / "hello.txt").write_bytes(b"static hello\n")
    args = ["--bind", "fastcgi://127.0.0.1:0", "--bind", "fastcgi://unix:" + unix_path,
            "--mount", "/app=mounts:api", "--static", "/static=" + str(static_dir),
            "--limit-request-head", str(HEAD_LIMIT),
            "--max-connections", str(MAX_CONNECTIONS)]
    if request.param == "threads":
        args += ["--threads", "4"]
    server = start_module_server("gatewayapp:application", *args)
    return FcgiServer(server, request.param, unix_path, str(static_dir), test_dir)


def assert_complete(ex):
    """A well-formed end: STDOUT stream closed by an empty record, then
    END_REQUEST(appStatus 0, FCGI_REQUEST_COMPLETE)."""
    assert ex.stdout_ended, "STDOUT stream not ended by an empty record: %r" % ex.stdout_records
    assert ex.protocol_status == fc.REQUEST_COMPLETE
    assert ex.app_status == 0


def get(conn, rid, uri, method="GET", body=b"", keep_conn=False, **kw):
    params = fc.cgi_params(method, uri, body_length=len(body) if body or method == "POST" else None,
                           **kw)
    ex = conn.exchange(rid, fc.request_bytes(rid, params, body, keep_conn=keep_conn))
    assert_complete(ex)
    return ex


def environ_of(fcgi, params, rid=1):
    with fcgi.connect() as conn:
        ex = conn.exchange(rid, fc.request_bytes(rid, params))
    assert_complete(ex)
    resp = ex.response()
    assert resp.status == 200, resp
    return resp.json()["environ"]


def assert_still_serving(fcgi, pid):
    """The worker that saw the bad connection is the one serving, and serves FastCGI."""
    assert fcgi.pid() == pid
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/hello").response()
    assert (resp.status, resp.body) == (200, b"Hello, world!\n")


# --------------------------------------------------------------------------
# basic request / response


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_get(fcgi, unix):
    with fcgi.connect(unix) as conn:
        ex = get(conn, 1, "/hello")
        resp = ex.response()
        assert resp.status == 200
        assert resp.header("Content-Type") == "text/plain"
        assert resp.header("Content-Length") == "14"
        assert resp.body == b"Hello, world!\n"
        assert ex.stdout.startswith(b"Status: 200 OK\r\n")
        assert not ex.stderr_records
        # Without FCGI_KEEP_CONN the server closes the connection after END_REQUEST.
        assert conn.wait_closed(), "connection still open without FCGI_KEEP_CONN"
        assert conn.buf == b""


def test_request_id_is_echoed(fcgi):
    with fcgi.connect() as conn:
        ex = get(conn, 65535, "/hello")
    assert all(r.rid == 65535 for r in ex.stdout_records)
    assert ex.response().body == b"Hello, world!\n"


def test_post_body(fcgi):
    body = b"name=value&x=" + b"y" * 1000
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/body/read", "POST", body).response()
    assert resp.status == 200
    assert resp.json()["chunks"] == [body.decode()]
    assert resp.json()["after_eof"] == ""


def test_head(fcgi):
    with fcgi.connect() as conn:
        ex = get(conn, 1, "/hello", "HEAD")
    resp = ex.response()
    assert resp.status == 200
    assert resp.header("Content-Length") == "14"
    assert resp.body == b""


def test_status_and_repeated_headers(fcgi):
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/headers").response()
    assert resp.status == 200
    assert resp.header_list("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert resp.header("X-Custom") == "custom-value"
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/status?code=204&body=1").response()
    assert (resp.status, resp.body) == (204, b"")
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/no-such-route").response()
    assert resp.status == 404


def test_params_with_four_byte_lengths_split_across_records(fcgi):
    long_name = "HTTP_X_" + "N" * 300           # name length > 127: 4-byte length
    long_value = "v" * 5000                      # value length > 127: 4-byte length
    params = fc.cgi_params("GET", "/environ-raw", extra={long_name: long_value,
                                                         "HTTP_X_SHORT": "s" * 127,
                                                         "HTTP_X_EMPTY": ""})
    encoded = fc.encode_pairs(params, long=True)  # short lengths in the 4-byte form too
    assert len(encoded) < HEAD_LIMIT
    # PARAMS records of 3 bytes: every length and most names are cut in two.
    data = fc.begin_request(1) + fc.stream(fc.PARAMS, 1, encoded, 3) + fc.stream(fc.STDIN, 1, b"")
    with fcgi.connect() as conn:
        ex = conn.exchange(1, data)
    assert_complete(ex)
    env = ex.response().json()["environ"]
    assert env[long_name] == long_value
    assert env["HTTP_X_SHORT"] == "s" * 127
    assert env["HTTP_X_EMPTY"] == ""
    assert env["SERVER_NAME"] == "fcgi.example"


def test_params_one_byte_lengths_one_record_per_byte(fcgi):
    params = fc.cgi_params("GET", "/environ-raw?a=1", extra={"HTTP_X_ONE": "1"})
    data = fc.begin_request(1) + fc.stream(fc.PARAMS, 1, fc.encode_pairs(params), 1) \
        + fc.stream(fc.STDIN, 1, b"")
    with fcgi.connect() as conn:
        ex = conn.exchange(1, data)
    env = ex.response().json()["environ"]
    assert env["HTTP_X_ONE"] == "1"
    assert env["QUERY_STRING"] == "a=1"


@pytest.mark.parametrize("piece", [1, 7, 8000, 65535])
def test_stdin_in_many_records(fcgi, piece):
    size = 1048576 + 3 if piece > 1 else 20000
    body = pattern_bytes(size)
    params = fc.cgi_params("POST", "/sha256", body_length=size)
    with fcgi.connect() as conn:
        ex = conn.exchange(1, fc.request_bytes(1, params, body, stdin_piece=piece))
    assert_complete(ex)
    result = ex.response().json()
    assert result["length"] == size
    assert result["sha256"] == hashlib.sha256(body).hexdigest()


def test_stdin_is_streamed_to_the_application(fcgi):
    """The application reads the first bytes of the body and answers with them
    before the web server has sent the rest: wsgi.input is not buffered whole."""
    rest = pattern_bytes(200000)
    params = fc.cgi_params("POST", "/gw/echo-first?n=5", body_length=5 + len(rest))
    with fcgi.connect() as conn:
        conn.send(fc.begin_request(1) + fc.stream(fc.PARAMS, 1, fc.encode_pairs(params))
                  + fc.record(fc.STDIN, 1, b"hello"))
        seen = b""
        while b"first=hello\n" not in seen:
            rec = conn.read_record()
            assert rec.type == fc.STDOUT and rec.rid == 1, rec
            assert rec.content, "STDOUT ended before the body was sent"
            seen += rec.content
        conn.send(fc.stream(fc.STDIN, 1, rest, 4096))
        ex = conn.read_until_end(1)[1]
    assert_complete(ex)
    body = fc.parse_cgi_response(seen + ex.stdout).body
    assert body == b"first=hello\nrest=%d %s\n" % (len(rest),
                                                   hashlib.sha256(rest).hexdigest().encode())


def _check_stdout_records(ex, size):
    contents = [r for r in ex.stdout_records if r.content]
    assert all(len(r.content) <= fc.MAX_CONTENT for r in contents)
    # Content of n bytes in records of at most 65535: at least ceil(n / 65535) of them.
    assert len(contents) >= -(-ex.stdout_size // fc.MAX_CONTENT)
    assert ex.stdout_size > size


@pytest.mark.parametrize("target", ["/stream?n=%d", "/gw/big?n=%d"], ids=["iterable", "one-item-list"])
def test_large_response_in_records(fcgi, target):
    size = 1000003
    with fcgi.connect() as conn:
        ex = get(conn, 1, target % size)
    _check_stdout_records(ex, size)
    resp = ex.response()
    assert resp.status == 200
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(pattern_bytes(size)).digest()


def test_file_wrapper_sendfile_records(fcgi, test_dir):
    size = 4 * 65535 + 17
    name = "fcgi-fw.bin"
    with open(os.path.join(test_dir, name), "wb") as fh:
        fh.write(pattern_bytes(size))
    ident = unique("fw")
    with fcgi.connect() as conn:
        ex = get(conn, 1, "/file?name=%s&record=%s" % (name, ident))
    _check_stdout_records(ex, size)
    resp = ex.response()
    assert resp.header("Content-Length") == str(size)
    assert resp.body == pattern_bytes(size)
    log = os.path.join(test_dir, "closed.log")
    wait_for_line(log, "closed " + ident)
    assert "python-read " + ident not in read_lines(log), "file was read in Python, not sendfile"


def test_static_file(fcgi):
    with fcgi.connect() as conn:
        ex = get(conn, 1, "/static/big.bin")
    _check_stdout_records(ex, STATIC_SIZE)
    resp = ex.response()
    assert resp.status == 200
    assert resp.header("Content-Length") == str(STATIC_SIZE)
    assert resp.body == pattern_bytes(STATIC_SIZE)
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/static/big.bin", "HEAD").response()
    assert resp.status == 200
    assert resp.header("Content-Length") == str(STATIC_SIZE)
    assert resp.body == b""


def test_static_range(fcgi):
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/static/big.bin", headers=[("Range", "bytes=65530-65545")]).response()
    assert resp.status == 206
    assert resp.body == pattern_bytes(STATIC_SIZE)[65530:65546]


# --------------------------------------------------------------------------
# wsgi.errors -> STDERR


def test_wsgi_errors_become_stderr_records(fcgi):
    with fcgi.connect() as conn:
        ex = get(conn, 1, "/gw/errors?text=fastgw-stderr-one")
    assert ex.response().body == b"ok"
    assert ex.stderr == (b"fastgw-stderr-one\nline-a of fastgw-stderr-one\n"
                         b"line-b of fastgw-stderr-one\n")
    assert all(r.rid == 1 for r in ex.stderr_records)
    # and not into the server's own log
    assert not any("fastgw-stderr-one" in line for line in fcgi.server.log_lines())


def test_stderr_stream_is_terminated(fcgi):
    """FastCGI 3.3: a stream is non-empty records followed by an empty one; a
    response that used STDERR ends that stream before END_REQUEST."""
    with fcgi.connect() as conn:
        ex = get(conn, 1, "/gw/errors?text=fastgw-stderr-two")
    assert ex.stderr
    assert ex.stderr_ended, "STDERR stream not ended by an empty STDERR record"


# --------------------------------------------------------------------------
# management records


def test_get_values(fcgi):
    query = fc.encode_pairs([("FCGI_MAX_CONNS", ""), ("FCGI_MAX_REQS", ""),
                             ("FCGI_MPXS_CONNS", ""), ("FCGI_NO_SUCH_VARIABLE", "")])
    with fcgi.connect() as conn:
        conn.send(fc.record(fc.GET_VALUES, 0, query))
        rec = conn.read_record()
        assert (rec.type, rec.rid) == (fc.GET_VALUES_RESULT, 0)
        values = fc.decode_pairs(rec.content)
        assert set(values) == {"FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"}
        assert values["FCGI_MAX_CONNS"] == str(MAX_CONNECTIONS)
        assert values["FCGI_MAX_REQS"].isdigit() and int(values["FCGI_MAX_REQS"]) >= 1
        assert values["FCGI_MPXS_CONNS"] == "1"
        # a management record does not end the connection: a request follows
        assert get(conn, 1, "/hello").response().body == b"Hello, world!\n"


def test_get_values_subset(fcgi):
    with fcgi.connect() as conn:
        conn.send(fc.record(fc.GET_VALUES, 0, fc.encode_pairs([("FCGI_MPXS_CONNS", "")])))
        rec = conn.read_record()
    assert rec.type == fc.GET_VALUES_RESULT
    assert fc.decode_pairs(rec.content) == {"FCGI_MPXS_CONNS": "1"}


@pytest.mark.parametrize("rtype", [fc.UNKNOWN_TYPE + 1, 99, 255])
def test_unknown_management_type(fcgi, rtype):
    with fcgi.connect() as conn:
        conn.send(fc.record(rtype, 0, b"whatever"))
        rec = conn.read_record()
        assert (rec.type, rec.rid) == (fc.UNKNOWN_TYPE, 0)
        assert rec.content == bytes([rtype]) + b"\0" * 7
        assert get(conn, 1, "/hello").response().status == 200


def test_begin_request_on_management_id(fcgi):
    """Request id 0 is for management records; BEGIN_REQUEST is not one."""
    with fcgi.connect() as conn:
        conn.send(fc.begin_request(0, keep_conn=True))
        rec = conn.read_record()
        assert (rec.type, rec.rid) == (fc.UNKNOWN_TYPE, 0)
        assert rec.content == bytes([fc.BEGIN_REQUEST]) + b"\0" * 7


# --------------------------------------------------------------------------
# roles


@pytest.mark.parametrize("role", [fc.AUTHORIZER, fc.FILTER, 77])
def test_unknown_role_with_keep_conn(fcgi, role):
    params = fc.encode_pairs(fc.cgi_params("GET", "/hello"))
    with fcgi.connect() as conn:
        # A web server sends the whole request before it reads the answer.
        conn.send(fc.record(fc.BEGIN_REQUEST, 1, struct.pack(">HB5x", role, fc.KEEP_CONN))
                  + fc.stream(fc.PARAMS, 1, params) + fc.stream(fc.STDIN, 1, b"")
                  + fc.stream(fc.DATA, 1, b""))
        rec = conn.read_record()
        assert (rec.type, rec.rid) == (fc.END_REQUEST, 1)
        assert rec.content[4] == fc.UNKNOWN_ROLE
        # The connection stays usable, and id 1 is free again.
        resp = get(conn, 1, "/hello", keep_conn=True).response()
        assert resp.body == b"Hello, world!\n"


def test_unknown_role_without_keep_conn_closes(fcgi):
    with fcgi.connect() as conn:
        conn.send(fc.record(fc.BEGIN_REQUEST, 3, struct.pack(">HB5x", fc.AUTHORIZER, 0)))
        rec = conn.read_record()
        assert (rec.type, rec.rid) == (fc.END_REQUEST, 3)
        assert rec.content[4] == fc.UNKNOWN_ROLE
        assert conn.wait_closed()


# --------------------------------------------------------------------------
# FCGI_KEEP_CONN and multiplexing


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_keep_conn_several_requests(fcgi, unix):
    with fcgi.connect(unix) as conn:
        for i, rid in enumerate([1, 1, 2, 7, 1]):
            ex = get(conn, rid, "/uri?n=%d" % i, keep_conn=True)
            assert ex.response().body == b"/uri?n=%d" % i
        body = pattern_bytes(300000)
        result = get(conn, 1, "/sha256", "POST", body, keep_conn=True).response().json()
        assert result["sha256"] == hashlib.sha256(body).hexdigest()
        # the last one without FCGI_KEEP_CONN: the server closes after it
        assert get(conn, 1, "/hello").response().body == b"Hello, world!\n"
        assert conn.wait_closed()


def test_keep_conn_pipelined(fcgi):
    """Three requests in one write; answers come in order on the same connection."""
    data = b"".join(fc.request_bytes(rid, fc.cgi_params("GET", "/uri?rid=%d" % rid), keep_conn=True)
                    for rid in (1, 2, 3))
    with fcgi.connect() as conn:
        conn.send(data)
        exchanges = conn.read_until_end([1, 2, 3])
    for rid, ex in exchanges.items():
        assert_complete(ex)
        assert ex.response().body == b"/uri?rid=%d" % rid


def test_keep_conn_app_ignores_body(fcgi):
    """An app that does not read its body: the rest of STDIN must not be taken
    for the next request's records."""
    body = pattern_bytes(200000)
    with fcgi.connect() as conn:
        ex = get(conn, 1, "/body/ignore", "POST", body, keep_conn=True)
        assert ex.response().status == 200
        assert get(conn, 2, "/hello", keep_conn=True).response().body == b"Hello, world!\n"


def _interleave(*streams):
    """Round-robin the records of several byte strings of records."""
    def split(data):
        out = []
        pos = 0
        while pos < len(data):
            clen, plen = struct.unpack(">HB", data[pos + 4:pos + 7])
            out.append(data[pos:pos + 8 + clen + plen])
            pos += 8 + clen + plen
        return out
    lists = [split(s) for s in streams]
    out = []
    for group in itertools.zip_longest(*lists):
        out.extend(r for r in group if r is not None)
    return b"".join(out)


def test_multiplexed_interleaved_requests(fcgi):
    body1 = pattern_bytes(150001)
    body2 = bytes(reversed(pattern_bytes(90007)))
    req1 = fc.request_bytes(1, fc.cgi_params("POST", "/sha256", body_length=len(body1)), body1,
                            keep_conn=True, params_piece=50, stdin_piece=10000)
    req2 = fc.request_bytes(2, fc.cgi_params("POST", "/sha256", body_length=len(body2)), body2,
                            keep_conn=True, params_piece=70, stdin_piece=7000)
    req3 = fc.request_bytes(3, fc.cgi_params("GET", "/uri?third"), keep_conn=True, params_piece=33)
    with fcgi.connect() as conn:
        conn.send(_interleave(req2, req1, req3))
        exchanges = conn.read_until_end([1, 2, 3])
        for ex in exchanges.values():
            assert_complete(ex)
        assert exchanges[1].response().json()["sha256"] == hashlib.sha256(body1).hexdigest()
        assert exchanges[2].response().json()["sha256"] == hashlib.sha256(body2).hexdigest()
        assert exchanges[3].response().body == b"/uri?third"
        # and the connection is still good
        assert get(conn, 4, "/hello", keep_conn=True).response().status == 200


def test_multiplexed_request_arrives_while_app_reads_body(fcgi):
    """Request 2 comes whole while request 1's application waits for its body."""
    body1 = pattern_bytes(100000)
    params1 = fc.cgi_params("POST", "/gw/echo-first?n=4", body_length=len(body1))
    with fcgi.connect() as conn:
        conn.send(fc.begin_request(1, keep_conn=True)
                  + fc.stream(fc.PARAMS, 1, fc.encode_pairs(params1))
                  + fc.record(fc.STDIN, 1, body1[:4]))
        seen = b""
        while b"first=" not in seen:
            rec = conn.read_record()
            assert (rec.type, rec.rid) == (fc.STDOUT, 1), rec
            seen += rec.content
        conn.send(fc.request_bytes(2, fc.cgi_params("GET", "/uri?second"), keep_conn=True))
        conn.send(fc.stream(fc.STDIN, 1, body1[4:], 5000))
        exchanges = conn.read_until_end([1, 2])
    assert_complete(exchanges[1])
    assert_complete(exchanges[2])
    rest = body1[4:]
    assert fc.parse_cgi_response(seen + exchanges[1].stdout).body == (
        b"first=" + body1[:4] + b"\nrest=%d %s\n" % (len(rest), hashlib.sha256(rest).hexdigest().encode()))
    assert exchanges[2].response().body == b"/uri?second"


# --------------------------------------------------------------------------
# aborts and disconnects


def _start_consumer(conn, ident, keep_conn=True):
    params = fc.cgi_params("POST", "/gw/consume?id=" + ident, body_length=10 * 1024 * 1024)
    conn.send(fc.begin_request(1, keep_conn=keep_conn)
              + fc.stream(fc.PARAMS, 1, fc.encode_pairs(params))
              + fc.record(fc.STDIN, 1, b"x" * 1000))
    seen = b""
    while b"started\n" not in seen:
        rec = conn.read_record()
        assert (rec.type, rec.rid) == (fc.STDOUT, 1), rec
        seen += rec.content


def test_abort_request_closes_the_iterable(fcgi):
    ident = unique("abort")
    pid = fcgi.pid()
    with fcgi.connect() as conn:
        _start_consumer(conn, ident)
        conn.send(fc.record(fc.ABORT_REQUEST, 1))
        wait_for_line(fcgi.gateway_log(), "closed " + ident)
    assert_still_serving(fcgi, pid)


def test_abort_request_is_answered_with_end_request(fcgi):
    """FastCGI 5.4: after {ABORT_REQUEST, R} the application responds with
    {END_REQUEST, R, {REQUEST_COMPLETE, appStatus}}; with FCGI_KEEP_CONN the
    connection (which may carry other requests) stays open."""
    ident = unique("abort-end")
    with fcgi.connect() as conn:
        _start_consumer(conn, ident)
        conn.sock.settimeout(5)
        conn.send(fc.record(fc.ABORT_REQUEST, 1))
        while True:
            rec = conn.read_record()  # ConnectionClosed if the server just hangs up
            assert rec.rid == 1 and rec.type in (fc.STDOUT, fc.STDERR, fc.END_REQUEST), rec
            if rec.type == fc.END_REQUEST:
                break
        assert rec.content[4] == fc.REQUEST_COMPLETE
        assert get(conn, 2, "/hello", keep_conn=True).response().status == 200


def test_abort_request_does_not_hang(fcgi):
    """Whatever else it does, after ABORT_REQUEST the server answers the request or
    closes the connection promptly (here the application has already stopped)."""
    ident = unique("abort-hang")
    with fcgi.connect() as conn:
        _start_consumer(conn, ident)
        conn.send(fc.record(fc.ABORT_REQUEST, 1))
        wait_for_line(fcgi.gateway_log(), "closed " + ident)
        conn.sock.settimeout(5)
        try:
            while conn.read_record().type != fc.END_REQUEST:
                pass
        except fc.ConnectionClosed:
            pass
        except socket.timeout:
            pytest.fail("no END_REQUEST and no close within 5 s of ABORT_REQUEST")


def test_abort_before_params_end(fcgi):
    """Aborting a request that has not started yet: END_REQUEST, nothing runs."""
    params = fc.encode_pairs(fc.cgi_params("GET", "/gw/consume?id=never-" + fcgi.mode))
    with fcgi.connect() as conn:
        conn.send(fc.begin_request(1, keep_conn=True) + fc.record(fc.PARAMS, 1, params[:40])
                  + fc.record(fc.ABORT_REQUEST, 1))
        rec = conn.read_record()
        assert (rec.type, rec.rid) == (fc.END_REQUEST, 1), rec
        assert rec.content[4] == fc.REQUEST_COMPLETE
        # late records of the aborted request are ignored; the connection still serves
        conn.send(fc.record(fc.PARAMS, 1, params[40:]) + fc.record(fc.PARAMS, 1)
                  + fc.record(fc.STDIN, 1))
        assert get(conn, 2, "/hello", keep_conn=True).response().status == 200
    assert "closed never-" + fcgi.mode not in read_lines(fcgi.gateway_log())


def test_disconnect_while_reading_body(fcgi):
    ident = unique("eof-body")
    pid = fcgi.pid()
    with fcgi.connect() as conn:
        _start_consumer(conn, ident)
    wait_for_line(fcgi.gateway_log(), "closed " + ident)
    assert_still_serving(fcgi, pid)


def test_disconnect_during_endless_response(fcgi, test_dir):
    ident = unique("endless")
    pid = fcgi.pid()
    with fcgi.connect() as conn:
        conn.send(fc.request_bytes(1, fc.cgi_params("GET", "/close?mode=infinite&id=" + ident)))
        got = 0
        while got < 1000000:
            got += len(conn.read_record().content)
    wait_for_line(os.path.join(test_dir, "closed.log"), ident)
    assert_still_serving(fcgi, pid)


# --------------------------------------------------------------------------
# bad input: connection closed and logged, the worker keeps serving


BAD_INPUT = {
    "wrong-version": (fc.record(fc.BEGIN_REQUEST, 1, struct.pack(">HB5x", 1, 0), version=2),
                      r"FastCGI protocol error.*version 2"),
    "short-begin-request": (fc.record(fc.BEGIN_REQUEST, 1, b"\0\1\0"),
                            r"FastCGI protocol error.*BEGIN_REQUEST"),
    "id-reuse": (fc.begin_request(1, keep_conn=True)
                 + fc.record(fc.PARAMS, 1, fc.encode_pairs({"REQUEST_METHOD": "GET"}))
                 + fc.begin_request(1, keep_conn=True),
                 r"FastCGI protocol error.*request id 1"),
    "params-over-limit": (fc.begin_request(1)
                          + b"".join(fc.record(fc.PARAMS, 1, fc.encode_pairs(
                              {"HTTP_X_%d" % i: "v" * 4000})) for i in range(5)),
                          r"FastCGI protocol error.*PARAMS larger than %d" % HEAD_LIMIT),
    "pair-longer-than-stream": (fc.begin_request(1)
                                + fc.record(fc.PARAMS, 1, b"\x05\x7fNAME1short")
                                + fc.record(fc.PARAMS, 1, b"") + fc.stream(fc.STDIN, 1, b""),
                                r"FastCGI protocol error.*name-value pair"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_closes_connection(fcgi, case):
    data, log_re = BAD_INPUT[case]
    pid = fcgi.pid()
    mark = fcgi.server.log_mark()
    with fcgi.connect() as conn:
        conn.send(data)
        assert conn.wait_closed(), "connection still open after %s" % case
    assert b"Status:" not in conn.buf, "a response to bad input: %r" % conn.buf[:300]
    fcgi.server.wait_for_log(log_re, timeout=5, start=mark)
    assert_still_serving(fcgi, pid)


BAD_DURING_BODY = {
    "wrong-version": (fc.record(fc.STDIN, 1, b"x" * 100, version=2), r"version 2"),
    "params-after-end": (fc.record(fc.PARAMS, 1, fc.encode_pairs({"X": "y"})), r"PARAMS"),
    "id-reuse": (fc.begin_request(1, keep_conn=True), r"request id 1"),
    "short-begin-request": (fc.record(fc.BEGIN_REQUEST, 2, b"\0\1"), r"BEGIN_REQUEST"),
}


@pytest.mark.parametrize("case", sorted(BAD_DURING_BODY))
def test_bad_record_while_app_reads_body(fcgi, case):
    """Broken framing found while the application reads wsgi.input: the connection
    is closed and the log says it was the web server's FastCGI, not an application
    error; the worker keeps serving."""
    bad, log_re = BAD_DURING_BODY[case]
    ident = unique("bad-body")
    pid = fcgi.pid()
    mark = fcgi.server.log_mark()
    with fcgi.connect() as conn:
        _start_consumer(conn, ident)
        conn.send(bad)
        assert conn.wait_closed(), "connection still open after %s" % case
    wait_for_line(fcgi.gateway_log(), "closed " + ident)
    fcgi.server.wait_for_log(r"FastCGI protocol error.*" + log_re, timeout=5, start=mark)
    lines = fcgi.server.log_lines()[mark:]
    assert not [l for l in lines if "error in the application" in l or "internal error" in l], lines
    assert_still_serving(fcgi, pid)


def _hold_loop(fcgi, ident):
    """Start a request that holds the worker's loop thread until ``release`` is called."""
    result = {}

    def run():
        result["resp"] = http_request(fcgi.server.port, "GET", "/gw/hold?id=" + ident)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for_line(fcgi.gateway_log(), "holding " + ident)

    def release():
        open(os.path.join(fcgi.test_dir, "release-" + ident), "w").close()
        thread.join(30)
        assert result["resp"].body == b"released"

    return release


@pytest.mark.parametrize("cut", [3, 8, 20])
def test_truncated_record_then_close(fcgi, cut):
    """The web server goes away in the middle of a record. The loop is held while
    the bytes and the FIN are sent, so both are waiting when the server first reads
    the new connection (data and end of stream in one readiness event)."""
    if fcgi.mode == "threads":
        pytest.skip("with --threads the application cannot hold the loop thread")
    params = fc.encode_pairs(fc.cgi_params("GET", "/hello"))
    data = fc.begin_request(1) + fc.record(fc.PARAMS, 1, params)
    pid = fcgi.pid()
    release = _hold_loop(fcgi, unique("hold"))
    with fcgi.connect() as conn:
        conn.send(data[:16 + cut])
        conn.sock.shutdown(socket.SHUT_WR)
        release()
        assert conn.wait_closed(), "connection left open after EOF in the middle of a record"
        assert conn.buf == b""
    assert_still_serving(fcgi, pid)


def test_bad_connection_does_not_disturb_another(fcgi):
    """A keep-conn connection in the middle of a request survives another
    connection's protocol error in the same worker."""
    with fcgi.connect() as good:
        good.send(fc.begin_request(1, keep_conn=True)
                  + fc.record(fc.PARAMS, 1, fc.encode_pairs(fc.cgi_params("GET", "/uri?good"))))
        with fcgi.connect() as bad:
            bad.send(b"\x09" * 16)
            assert bad.wait_closed()
        good.send(fc.record(fc.PARAMS, 1) + fc.record(fc.STDIN, 1))
        ex = good.read_until_end(1)[1]
        assert_complete(ex)
        assert ex.response().body == b"/uri?good"


# --------------------------------------------------------------------------
# environ from params


def test_environ_from_nginx_params(fcgi):
    params = fc.cgi_params("GET", "/environ-raw?x=1&y=%20", headers=[("User-Agent", "fcgi-test"),
                                                                       ("Cookie", "a=b"),
                                                                       ("Proxy", "http://evil:1")])
    env = environ_of(fcgi, params)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ-raw"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["REQUEST_URI"] == "/environ-raw?x=1&y=%20"
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["REMOTE_PORT"] == "50123"
    assert env["SERVER_NAME"] == "fcgi.example"
    assert env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_USER_AGENT"] == "fcgi-test"
    assert env["HTTP_COOKIE"] == "a=b"
    assert env["HTTP_HOST"] == "fcgi.example:8080"
    assert "HTTP_PROXY" not in env  # httpoxy: nginx passes a Proxy header on
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    # nginx sends empty CONTENT_LENGTH/CONTENT_TYPE for a GET; PEP 3333 allows absent or
    # empty, never a non-number
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env.get("CONTENT_TYPE", "") == ""
    assert "HTTP_CONTENT_LENGTH" not in env


def test_environ_content_headers_as_nginx_sends_them(fcgi):
    """nginx sends the request's Content-Length and Content-Type twice: as
    CONTENT_LENGTH/CONTENT_TYPE (fastcgi_params) and, like every header, as
    HTTP_CONTENT_LENGTH/HTTP_CONTENT_TYPE. PEP 3333 (wsgiref's validator) does not
    allow the HTTP_ forms in the environ."""
    body = b"a=1&b=2"
    extra = {"CONTENT_TYPE": "application/x-www-form-urlencoded",
             "HTTP_CONTENT_TYPE": "application/x-www-form-urlencoded",
             "HTTP_CONTENT_LENGTH": str(len(body))}
    for target in ("/environ-raw", "/sha256"):
        params = fc.cgi_params("POST", target, body_length=len(body), extra=extra)
        with fcgi.connect() as conn:
            ex = conn.exchange(1, fc.request_bytes(1, params, body))
        resp = ex.response()
        assert resp.status == 200, resp
        if target == "/environ-raw":
            env = resp.json()["environ"]
            assert env["CONTENT_LENGTH"] == str(len(body))
            assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
            assert "HTTP_CONTENT_LENGTH" not in env
            assert "HTTP_CONTENT_TYPE" not in env


def test_environ_split_path_info(fcgi):
    """nginx `fastcgi_split_path_info ^(/site)(/.*)$` sends SCRIPT_NAME and PATH_INFO."""
    params = fc.cgi_params("GET", "/site/environ-raw/a%20b?q=1", script_name="/site",
                           path_info="/environ-raw/a b")
    env = environ_of(fcgi, params)
    assert env["SCRIPT_NAME"] == "/site"
    assert env["PATH_INFO"] == "/environ-raw/a b"
    assert env["QUERY_STRING"] == "q=1"
    assert env["REQUEST_URI"] == "/site/environ-raw/a%20b?q=1"


def test_environ_path_from_request_uri(fcgi):
    """No PATH_INFO: the path comes from REQUEST_URI, percent-decoded (UTF-8 bytes
    carried in a latin-1 str, as over HTTP); SCRIPT_NAME is the mount's ('')."""
    params = fc.cgi_params("GET", "/environ-raw/caf%C3%A9%20x?a=%C3%A9")
    env = environ_of(fcgi, params)
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ-raw/caf\u00c3\u00a9 x"
    assert env["QUERY_STRING"] == "a=%C3%A9"


def test_environ_mount_split_from_request_uri(fcgi):
    params = fc.cgi_params("GET", "/app/x/y?z=1")
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/app/x/y?z=1").response()
    assert resp.json() == {"app": "api", "SCRIPT_NAME": "/app", "PATH_INFO": "/x/y",
                           "QUERY_STRING": "z=1", "REQUEST_URI": "/app/x/y?z=1"}
    assert params["REQUEST_URI"] == "/app/x/y?z=1"


def test_environ_mount_split_after_web_server_split(fcgi):
    """nginx already split off /prefix; the router splits the mount below it."""
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/prefix/app/x?z=1", script_name="/prefix", path_info="/app/x").response()
    body = resp.json()
    assert (body["app"], body["SCRIPT_NAME"], body["PATH_INFO"]) == ("api", "/prefix/app", "/x")


@pytest.mark.parametrize("extra, scheme", [
    ({"HTTPS": "on"}, "https"),
    ({"HTTPS": "1"}, "https"),
    ({"REQUEST_SCHEME": "https"}, "https"),
    ({"HTTPS": "on", "REQUEST_SCHEME": "https"}, "https"),
    ({"REQUEST_SCHEME": "http"}, "http"),
    ({"HTTPS": "off", "REQUEST_SCHEME": "http"}, "http"),
    ({"HTTPS": ""}, "http"),
])
def test_url_scheme(fcgi, extra, scheme):
    params = fc.cgi_params("GET", "/gw/scheme")
    del params["REQUEST_SCHEME"]
    params.update(extra)
    with fcgi.connect() as conn:
        ex = conn.exchange(1, fc.request_bytes(1, params))
    assert ex.response().json()["url_scheme"] == scheme


def test_environ_validated_route(fcgi):
    """wsgiref's validator checks the environ built from params (on /hello)."""
    with fcgi.connect() as conn:
        resp = get(conn, 1, "/hello", "POST", b"ignored body").response()
    assert resp.status == 200
    assert not any("AssertionError" in line for line in fcgi.server.log_lines())


# --------------------------------------------------------------------------
# cgi-fcgi (libfcgi-bin): a real FastCGI client


@pytest.fixture(scope="session")
def cgi_fcgi():
    path = shutil.which("cgi-fcgi")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cgi-fcgi (libfcgi-bin) is required on CI but was not found on PATH")
        pytest.skip("cgi-fcgi not installed (apt install libfcgi-bin)")
    return path


def run_cgi_fcgi(cgi_fcgi, target, env, body=b""):
    proc = subprocess.run([cgi_fcgi, "-bind", "-connect", target], input=body,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc


def cgi_env(method, uri, body=b""):
    path, _, query = uri.partition("?")
    env = {"REQUEST_METHOD": method, "REQUEST_URI": uri, "SCRIPT_NAME": "", "PATH_INFO": path,
           "QUERY_STRING": query, "SERVER_NAME": "cgi-fcgi.example", "SERVER_PORT": "80",
           "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "198.51.100.7", "GATEWAY_INTERFACE": "CGI/1.1"}
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/octet-stream"
    return env


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_cgi_fcgi_get(fcgi, cgi_fcgi, unix):
    target = fcgi.unix_path if unix else "%s:%d" % fcgi.address
    proc = run_cgi_fcgi(cgi_fcgi, target, cgi_env("GET", "/environ-raw?via=cgi-fcgi"))
    resp = fc.parse_cgi_response(proc.stdout)
    assert resp.status == 200
    env = resp.json()["environ"]
    assert env["QUERY_STRING"] == "via=cgi-fcgi"
    assert env["REMOTE_ADDR"] == "198.51.100.7"
    assert env["SERVER_NAME"] == "cgi-fcgi.example"
    assert env["PATH_INFO"] == "/environ-raw"


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_cgi_fcgi_post(fcgi, cgi_fcgi, unix):
    target = fcgi.unix_path if unix else "%s:%d" % fcgi.address
    body = pattern_bytes(2 * 1024 * 1024 + 5)
    proc = run_cgi_fcgi(cgi_fcgi, target, cgi_env("POST", "/sha256", body), body)
    resp = fc.parse_cgi_response(proc.stdout)
    assert resp.status == 200
    assert resp.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert resp.json()["length"] == len(body)


def test_cgi_fcgi_stderr(fcgi, cgi_fcgi):
    proc = run_cgi_fcgi(cgi_fcgi, "%s:%d" % fcgi.address, cgi_env("GET", "/gw/errors?text=via-cgi-fcgi"))
    assert fc.parse_cgi_response(proc.stdout).body == b"ok"
    assert b"via-cgi-fcgi\n" in proc.stderr


# --------------------------------------------------------------------------
# numbers in CGI variables, wsgi.input bounded by CONTENT_LENGTH (issue 17)


BAD_NUMBERS = {
    # '\xb2' passes str.isdigit() and then int() refuses it
    "content-length-superscript": {"CONTENT_LENGTH": "1\xb2"},
    "content-length-2**63": {"CONTENT_LENGTH": str(2 ** 63)},
    "content-length-not-a-number": {"CONTENT_LENGTH": "12x"},
    "remote-port-superscript": {"REMOTE_PORT": "\xb2"},
    "server-port-superscript": {"SERVER_PORT": "8\xb2"},
    "server-port-2**63": {"SERVER_PORT": str(2 ** 63)},
}


@pytest.mark.parametrize("case", sorted(BAD_NUMBERS))
def test_bad_number_in_params_gets_400(fcgi, case):
    """A CGI variable that must be a number and is not: Status 400, one warning line,
    no traceback, and the connection (FCGI_KEEP_CONN) goes on serving."""
    params = fc.cgi_params("POST", "/gw/sha256", body_length=4, extra=BAD_NUMBERS[case])
    pid = fcgi.pid()
    mark = fcgi.server.log_mark()
    with fcgi.connect() as conn:
        ex = conn.exchange(1, fc.request_bytes(1, params, b"abcd", keep_conn=True))
        assert_complete(ex)
        assert ex.response().status == 400, ex.response()
        assert get(conn, 2, "/hello", keep_conn=True).response().body == b"Hello, world!\n"
    fcgi.server.wait_for_log(r"WARNING.*FastCGI request .* refused: invalid", timeout=5,
                             start=mark)
    lines = fcgi.server.log_lines()[mark:]
    assert not [l for l in lines if "Traceback" in l or "ERROR" in l], lines
    assert len([l for l in lines if "refused" in l]) == 1, lines
    assert_still_serving(fcgi, pid)


@pytest.mark.parametrize("stdin_piece", [65535, 3])
def test_wsgi_input_stops_at_content_length(fcgi, stdin_piece):
    """PEP 3333: the application reads no more than CONTENT_LENGTH, whatever STDIN
    carries; the rest of the stream is skipped and the connection stays in step."""
    params = fc.cgi_params("POST", "/gw/sha256", body_length=2)
    with fcgi.connect() as conn:
        ex = conn.exchange(1, fc.request_bytes(1, params, b"0123456789", keep_conn=True,
                                               stdin_piece=stdin_piece))
        assert_complete(ex)
        assert ex.response().json() == {"length": 2,
                                        "sha256": hashlib.sha256(b"01").hexdigest()}
        ex = get(conn, 2, "/gw/sha256", "POST", b"abc", keep_conn=True)
        assert ex.response().json()["length"] == 3
