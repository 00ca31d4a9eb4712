"""SIGTERM loses no request whose bytes have arrived (issue 17). An inline
application call that takes long keeps the loop from seeing a connection's request
until it returns; a graceful stop must then read and serve that request, not close
the connection as idle. For HTTP and the FastCGI, SCGI and uwsgi listeners, inline
and with threads."""
import os
import signal
import socket
import struct
import uuid

import pytest

import fcgiclient as fc
from fgwtest import RawConnection, raw_request, request, wait_for_line
from test_slow_readers import gateway_request, read_until_closed

PROTOS = ("http", "fastcgi", "scgi", "uwsgi")


def addresses(server):
    found = {}
    for listener in server.listeners:
        proto, _, rest = listener.partition("://")
        host, _, port = rest.rpartition(":")
        found[proto] = (host, int(port))
    return found


def fastcgi_stdout(raw):
    """The STDOUT stream of the records in `raw` (one request)."""
    out, pos = b"", 0
    while pos + 8 <= len(raw):
        _, rtype, _, clen, plen = struct.unpack(">BBHHBx", raw[pos:pos + 8])
        if rtype == fc.STDOUT:
            out += raw[pos + 8:pos + 8 + clen]
        pos += 8 + clen + plen
    return out


@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize("proto", PROTOS)
def test_request_that_arrived_during_a_long_call_is_served_on_sigterm(start_server, test_dir,
                                                                       proto, threads):
    binds = [] if proto == "http" else ["--bind", f"{proto}://127.0.0.1:0"]
    server = start_server("wsgiapp:application", "--threads", threads, *binds)
    address = addresses(server)[proto]
    # the waiting connection: accepted (a request on another connection made after it
    # was answered, and the listen queue is served in order), then quiet for > 1 s
    waiting = socket.create_connection(address)
    waiting.settimeout(15)
    assert raw_request(server.port, "GET", "/hello").status == 200
    tag = uuid.uuid4().hex
    with RawConnection(server.port) as busy:
        busy.send(request("GET", f"/sleep?s=1.5&id={tag}"))
        wait_for_line(os.path.join(test_dir, "events.log"), "start " + tag)
        # its request arrives while the inline call holds the loop, then SIGTERM
        if proto == "http":
            waiting.sendall(request("GET", "/hello"))
        else:
            waiting.sendall(gateway_request(proto, "/hello"))
        server.send_signal(signal.SIGTERM)
        assert busy.read_response().status == 200
    raw = read_until_closed(waiting)
    waiting.close()
    assert raw, f"the {proto} request sent before SIGTERM got no response"
    if proto == "fastcgi":
        raw = fastcgi_stdout(raw)
    if proto in ("http", "uwsgi"):
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    else:
        assert fc.parse_cgi_response(raw).status == 200
    assert server.wait_exit() == 0
