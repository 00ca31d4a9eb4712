"""--forwarded-allow-ips: X-Forwarded-For/-Proto/-Host and Forwarded are believed from
trusted peers only, and set REMOTE_ADDR, wsgi.url_scheme, HTTP_HOST/SERVER_NAME/PORT."""
import subprocess

import pytest

from fgwtest import fastgw_command, raw_request, read_lines, subprocess_env, wait_until
from fastgw._request import Request
from fastgw.cgiparams import request_from_params
from fastgw.errors import ConfigError
from fastgw.proxyheaders import TrustedProxies, parse_networks


def trusted(*items):
    return TrustedProxies.from_config(items)


def make_request(headers, peer=("127.0.0.1", 40000)):
    req = Request()
    req.method, req.target, req.path, req.query, req.version = "GET", "/", "/", "", "HTTP/1.1"
    req.headers = list(headers)
    req.peer = peer
    req.params = None
    req.scheme = "http"
    return req


def host_of(req):
    return [v for n, v in req.headers if n.lower() == "host"]


# --------------------------------------------------------------------------
# in process


def test_untrusted_peer_headers_ignored():
    req = make_request([("Host", "h"), ("X-Forwarded-For", "1.2.3.4"),
                        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example")],
                       peer=("192.0.2.9", 1234))
    assert trusted("127.0.0.1").apply(req) is False
    assert (req.peer, req.scheme, host_of(req)) == (("192.0.2.9", 1234), "http", ["h"])


def test_x_forwarded_chain_walks_past_trusted_proxies():
    req = make_request([("Host", "internal:8000"),
                        ("X-Forwarded-For", "203.0.113.7, 198.51.100.1"),
                        ("X-Forwarded-For", "10.0.0.2"),
                        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "www.example.com")])
    assert trusted("127.0.0.1", "10.0.0.0/8").apply(req)
    # 10.0.0.2 is a trusted proxy, 198.51.100.1 is not: it is the client; anything left
    # of it was written by the client itself and is not believed
    assert req.peer == ("198.51.100.1", 0)
    assert req.scheme == "https"
    assert host_of(req) == ["www.example.com"]


def test_proto_and_host_lined_up_with_the_client_hop():
    req = make_request([("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
                        ("X-Forwarded-Proto", "https, http"),
                        ("X-Forwarded-Host", "public.example, lb.internal")])
    trusted("127.0.0.0/8, 10.0.0.0/8").apply(req)
    assert (req.peer[0], req.scheme, host_of(req)) == ("203.0.113.7", "https", ["public.example"])


def test_forwarded_header_rfc7239():
    req = make_request([("Forwarded", 'for="[2001:db8::17]:4711";proto=https;host="a.example:8443", '
                                      "for=10.0.0.3;proto=http")])
    trusted("127.0.0.1,10.0.0.0/8").apply(req)
    assert req.peer == ("2001:db8::17", 4711)
    assert req.scheme == "https"
    assert host_of(req) == ["a.example:8443"]


def test_x_forwarded_wins_over_forwarded():
    req = make_request([("Forwarded", "for=203.0.113.99;proto=https"),
                        ("X-Forwarded-For", "203.0.113.5")])
    trusted("127.0.0.1").apply(req)
    assert req.peer[0] == "203.0.113.5" and req.scheme == "http"


@pytest.mark.parametrize("headers, peer, scheme, host", [
    ([("X-Forwarded-For", "not-an-ip")], "127.0.0.1", "http", ["h"]),
    ([("X-Forwarded-Proto", "gopher")], "127.0.0.1", "http", ["h"]),
    ([("X-Forwarded-Host", "bad host/x")], "127.0.0.1", "http", ["h"]),
    ([("Forwarded", "for=_hidden;proto=https")], "127.0.0.1", "https", ["h"]),
    ([("X-Forwarded-For", "::ffff:203.0.113.8")], "203.0.113.8", "http", ["h"]),
])
def test_values_that_do_not_parse_are_ignored(headers, peer, scheme, host):
    req = make_request([("Host", "h")] + headers)
    trusted("127.0.0.1").apply(req)
    assert (req.peer[0], req.scheme, host_of(req)) == (peer, scheme, host)


def test_star_and_unix():
    assert trusted("*").trusts("203.0.113.1") and trusted("*").trusts(None)
    only_unix = trusted("unix")
    assert only_unix.trusts(None) and not only_unix.trusts("127.0.0.1")
    assert not trusted("127.0.0.1").trusts(None)
    assert TrustedProxies.from_config(()) is None
    with pytest.raises(ConfigError, match="'10.0.0.300'"):
        parse_networks(["127.0.0.1,10.0.0.300"])


def test_fastcgi_params_request():
    params = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/x", "REMOTE_ADDR": "10.0.0.9",
              "REMOTE_PORT": "5000", "SERVER_NAME": "backend", "SERVER_PORT": "9000",
              "HTTP_HOST": "backend:9000", "HTTP_X_FORWARDED_FOR": "203.0.113.50",
              "HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "[2001:db8::1]:8443"}
    req = request_from_params(params, None)
    assert trusted("10.0.0.0/8").apply(req)
    assert params["REMOTE_ADDR"] == "203.0.113.50" and req.peer[0] == "203.0.113.50"
    assert (req.scheme, params["HTTPS"]) == ("https", "on")
    assert (params["HTTP_HOST"], params["SERVER_NAME"], params["SERVER_PORT"]) == \
        ("[2001:db8::1]:8443", "2001:db8::1", "8443")


# --------------------------------------------------------------------------
# against the server


FORWARDED = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
             ("X-Forwarded-Host", "www.example.com")]


def test_trusted_peer_sets_the_environ(start_server, tmp_path):
    log = str(tmp_path / "access.log")
    srv = start_server("wsgiapp:application", "--forwarded-allow-ips", "127.0.0.1",
                       "--access-log", log)
    env = raw_request(srv.port, "GET", "/environ-raw", headers=FORWARDED).json()["environ"]
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == \
        ("www.example.com", "www.example.com", "443")
    # the access log names the client, not the proxy
    wait_until(lambda: any(l.startswith("203.0.113.7 ") for l in read_lines(log)), 10,
               message="access line with the forwarded client")


def test_untrusted_peer_environ_untouched(start_server):
    srv = start_server("wsgiapp:application", "--forwarded-allow-ips", "10.0.0.0/8,::1")
    env = raw_request(srv.port, "GET", "/environ-raw", headers=FORWARDED).json()["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "127.0.0.1" and env["SERVER_NAME"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # still visible, just not believed


def test_without_the_flag_nothing_is_trusted(start_server):
    srv = start_server("wsgiapp:application")
    env = raw_request(srv.port, "GET", "/environ-raw", headers=FORWARDED).json()["environ"]
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_bad_network_refused():
    proc = subprocess.run(fastgw_command() + ["check", "wsgiapp:application",
                                              "--forwarded-allow-ips", "127.0.0.1,foo"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=subprocess_env(), timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "--forwarded-allow-ips 'foo': not an IP address" in err, err
