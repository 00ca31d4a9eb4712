"""--proxy-protocol: HTTP listeners read a PROXY protocol header (v1 text, v2 binary)
before the first request; the client it names becomes REMOTE_ADDR/REMOTE_PORT."""
import json
import socket
import struct

import pytest

from fgwtest import RawConnection, request

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.fixture(scope="module")
def srv(start_module_server):
    return start_module_server("wsgiapp:application", "--proxy-protocol")


def environ_after(srv, header):
    with RawConnection(srv.port) as conn:
        resp = conn.roundtrip(header + request("GET", "/environ"))
        assert resp.status == 200
        first = json.loads(resp.body)["environ"]
        # the header comes once per connection: a second request keeps the same peer
        again = json.loads(conn.roundtrip(request("GET", "/environ")).body)["environ"]
    assert (again["REMOTE_ADDR"], again["REMOTE_PORT"]) == (first["REMOTE_ADDR"],
                                                            first["REMOTE_PORT"])
    return first


def v2(command, family, address):
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(address)) + address


def test_v1_tcp4_names_the_client(srv):
    env = environ_after(srv, b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "51234")


def test_v1_tcp6_names_the_client(srv):
    env = environ_after(srv, b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::7", "40000")


def test_v1_unknown_keeps_the_socket_peer(srv):
    env = environ_after(srv, b"PROXY UNKNOWN\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_v2_proxy_ipv4(srv):
    address = socket.inet_aton("198.51.100.9") + socket.inet_aton("192.0.2.1") + struct.pack("!HH", 6000, 443)
    env = environ_after(srv, v2(1, 0x11, address))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.9", "6000")


def test_v2_proxy_ipv6(srv):
    address = (socket.inet_pton(socket.AF_INET6, "2001:db8::9")
               + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 7000, 443))
    env = environ_after(srv, v2(1, 0x21, address))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::9", "7000")


def test_v2_local_keeps_the_socket_peer(srv):
    env = environ_after(srv, v2(0, 0x00, b""))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_header_split_across_reads(srv):
    with RawConnection(srv.port) as conn:
        conn.send(b"PROXY TCP4 203.0.113.8 19")
        resp = conn.roundtrip(b"2.0.2.1 1000 80\r\n" + request("GET", "/environ"))
        assert json.loads(resp.body)["environ"]["REMOTE_ADDR"] == "203.0.113.8"


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                      # no header at all
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n",              # a field missing
    b"PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 80\r\n",           # port out of range
    b"PROXY " + b"x" * 200 + b"\r\n",                           # longer than 107 bytes
    V2_SIGNATURE + b"\x31\x11\x00\x00",                         # version 3
])
def test_bad_or_missing_header_closes_the_connection(srv, data):
    with RawConnection(srv.port) as conn:
        conn.send(data)
        assert conn.wait_closed()
        assert conn.buf == b""
    # and the worker still serves
    env = environ_after(srv, b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n")
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_header_from_a_peer_outside_proxy_allow_ips_is_refused(start_server):
    srv = start_server("wsgiapp:application", "--proxy-protocol",
                       "--proxy-allow-ips", "10.0.0.0/8,192.0.2.1")
    with RawConnection(srv.port) as conn:
        conn.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n" + request("GET", "/environ"))
        assert conn.wait_closed()
        assert conn.buf == b""
    srv.wait_for_log(r"not in --proxy-allow-ips")


def test_proxy_allow_ips_star_trusts_every_peer(start_server):
    srv = start_server("wsgiapp:application", "--proxy-protocol", "--proxy-allow-ips", "*")
    env = environ_after(srv, b"PROXY TCP4 203.0.113.9 192.0.2.1 5000 443\r\n")
    assert env["REMOTE_ADDR"] == "203.0.113.9"
