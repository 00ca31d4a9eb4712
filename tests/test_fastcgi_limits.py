"""What one FastCGI connection may hold (issue 17): a bounded number of request ids at
once, advertised as FCGI_MAX_REQS and refused past it with FCGI_OVERLOADED, and a
bounded amount of PARAMS + STDIN buffered for the requests that wait, past which the
connection is closed. A fresh server per test (inline and ``--threads 4``) so the
worker's memory is measured from its own start; an HTTP listener tells its pid.
"""
import socket

import pytest

import fcgiclient as fc
from fgwtest import get_pid, proc_status_kib

MIB = 1024 * 1024


class Gateway:
    def __init__(self, server):
        self.server = server
        tcp = [l for l in server.listeners if l.startswith("fastcgi://127.0.0.1:")]
        self.address = ("127.0.0.1", int(tcp[0].rsplit(":", 1)[1]))

    def pid(self):
        return get_pid(self.server.port)

    def hello(self):
        with fc.FcgiConnection(self.address) as conn:
            ex = conn.exchange(1, fc.request_bytes(1, fc.cgi_params("GET", "/hello")))
        assert ex.protocol_status == fc.REQUEST_COMPLETE
        return ex.response().body


@pytest.fixture(params=["inline", "threads"])
def gateway(request, start_server):
    args = ["--bind", "fastcgi://127.0.0.1:0"]
    if request.param == "threads":
        args += ["--threads", "4"]
    return Gateway(start_server("gatewayapp:application", *args))


def max_reqs(conn):
    conn.send(fc.record(fc.GET_VALUES, 0, fc.encode_pairs([("FCGI_MAX_REQS", "")])))
    rec = conn.read_record()
    assert rec.type == fc.GET_VALUES_RESULT, rec
    return int(fc.decode_pairs(rec.content)["FCGI_MAX_REQS"])


def test_ids_past_fcgi_max_reqs_are_overloaded(gateway):
    """A web server that opens more ids on one connection than FCGI_MAX_REQS says gets
    END_REQUEST(FCGI_OVERLOADED) for the extra ones; the others are served."""
    pid = gateway.pid()
    mark = gateway.server.log_mark()
    params = fc.encode_pairs(fc.cgi_params("GET", "/uri?multiplexed"))
    with fc.FcgiConnection(gateway.address, timeout=10) as conn:
        limit = max_reqs(conn)
        assert 1 <= limit <= 256, "FCGI_MAX_REQS %d is not a per-connection bound" % limit
        # every id begun, none with its PARAMS ended: all of them are open at once
        conn.send(b"".join(fc.begin_request(rid, keep_conn=True) + fc.record(fc.PARAMS, rid, params)
                           for rid in range(1, limit + 4)))
        refused = [conn.read_record() for _ in range(3)]
        assert [(r.type, r.rid, r.content[4]) for r in refused] == [
            (fc.END_REQUEST, rid, fc.OVERLOADED) for rid in range(limit + 1, limit + 4)]
        # the ids within the bound are still served
        conn.send(fc.record(fc.PARAMS, 1) + fc.record(fc.STDIN, 1))
        ex = conn.read_until_end(1)[1]
        assert ex.response().body == b"/uri?multiplexed"
    lines = gateway.server.log_lines()[mark:]
    assert len([l for l in lines if "FCGI_OVERLOADED" in l]) == 1, lines
    assert not [l for l in lines if "Traceback" in l], lines
    assert gateway.pid() == pid


def test_many_ids_with_large_stdin_keep_memory_bounded(gateway):
    """300 request ids on one connection, 1 MiB of STDIN each (no STDIN ends, so the
    first request's body never finishes while the others pile up): the worker's memory
    stays bounded, one warning line, no traceback, and the worker keeps serving."""
    pid = gateway.pid()
    before = proc_status_kib(pid, "VmHWM")
    mark = gateway.server.log_mark()
    params = fc.encode_pairs(fc.cgi_params("POST", "/gw/ignore", body_length=MIB))
    piece = b"x" * 65528
    sent = 0
    with fc.FcgiConnection(gateway.address, timeout=30) as conn:
        try:
            for rid in range(1, 301):
                one = (fc.begin_request(rid, keep_conn=True) + fc.stream(fc.PARAMS, rid, params)
                       + b"".join(fc.record(fc.STDIN, rid, piece) for _ in range(16)))
                conn.sock.sendall(one)
                sent += len(one)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed = conn.wait_closed(timeout=10)
    grown = proc_status_kib(pid, "VmHWM") - before
    assert grown < 48 * 1024, "worker peak memory grew by %d KiB after %d bytes" % (grown, sent)
    assert closed, "the connection holding too much input was left open"
    assert gateway.pid() == pid
    assert gateway.hello() == b"Hello, world!\n"
    lines = gateway.server.log_lines()[mark:]
    assert len([l for l in lines if "FastCGI protocol error" in l]) == 1, lines
    assert not [l for l in lines if "Traceback" in l or "ERROR" in l], lines
