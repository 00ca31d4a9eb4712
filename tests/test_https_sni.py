"""SNI (issue 20): --sni-cert picks the certificate by the server name the client
asks for (exact, then a `*.` wildcard), --certfile serves every other name; checked
with Python's ssl (verifying each name against the CA) and openssl s_client."""
import socket
import ssl
import subprocess

import pytest

from test_https import https_port
from tlscerts import Certs, openssl_path


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    certs = Certs(tmp_path_factory.mktemp("sni"))
    certs.a = certs.leaf("a", "/CN=a.test", "subjectAltName=DNS:a.test")
    certs.wild = certs.leaf("wild", "/CN=*.b.test", "subjectAltName=DNS:*.b.test")
    return certs


def common_name(port, certs, server_name):
    """The CN of the certificate served for `server_name`, verified for that name."""
    ctx = ssl.create_default_context(cafile=certs.ca)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as sock:
            subject = dict(rdn[0] for rdn in sock.getpeercert()["subject"])
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            return subject["commonName"]


@pytest.mark.parametrize("poller", ["epoll", "poll"])
def test_certificate_by_server_name(start_server, sites, poller):
    a_cert, a_key = sites.a
    srv = start_server("wsgiapp:application", "--bind", "https://127.0.0.1:0",
                       "--certfile", sites.server_cert, "--keyfile", sites.server_key,
                       "--sni-cert", f"A.test={a_cert},{a_key}",
                       "--sni-cert", f"*.b.test={sites.wild[0]},{sites.wild[1]}",
                       default_bind=False, env={"FASTGW_POLLER": poller})
    port = https_port(srv)
    assert common_name(port, sites, "a.test") == "a.test"
    assert common_name(port, sites, "www.b.test") == "*.b.test"
    assert common_name(port, sites, "localhost") == "localhost"  # the default
    out = subprocess.run([openssl_path(), "s_client", "-connect", f"127.0.0.1:{port}",
                          "-servername", "a.test", "-CAfile", sites.ca,
                          "-verify_hostname", "a.test"],
                         input=b"", capture_output=True, timeout=30).stdout.decode()
    assert "subject=CN = a.test" in out and "Verify return code: 0 (ok)" in out
    assert "Traceback" not in srv.log_text()


def test_bad_sni_cert_exits_2(sites):
    from test_https_settings import run_serve
    for value, needle in (("a.test", "expected SERVER_NAME=CERTFILE"),
                          (f"a.test={sites.server_cert},{sites.client_key}",
                           "cannot load the certificate and key")):
        proc = run_serve("--bind", "https://127.0.0.1:0", "--certfile", sites.server_cert,
                         "--keyfile", sites.server_key, "--sni-cert", value)
        assert proc.returncode == 2 and needle in proc.stderr.decode(), proc.stderr
