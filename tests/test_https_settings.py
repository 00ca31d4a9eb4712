"""HTTPS settings (issue 20): protocol versions, ALPN, session resumption across
workers and close_notify seen by `openssl s_client`; certificate and flag mistakes
(exit 2), a key readable by others, the config file's keys, HTTPS on a UNIX socket
with curl; mutual TLS accepted and refused; SIGHUP with a renewed certificate under
load (0 failed requests) and with a broken one (the old workers keep serving)."""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading

import pytest

from fgwtest import fastgw_command, subprocess_env, wait_until
from test_https import https_get, https_port
from tlscerts import Certs, openssl_path

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
REQUEST = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """Certificates of a CA the server does not know."""
    return Certs(tmp_path_factory.mktemp("other-ca"))


def start_https(start_server, certs, *args, workers="1", **options):
    srv = start_server("wsgiapp:application", "--bind", "https://127.0.0.1:0",
                       "--certfile", certs.server_cert, "--keyfile", certs.server_key,
                       "--workers", workers, *args, default_bind=False,
                       default_workers=False, **options)
    srv.tls_port = https_port(srv)
    return srv


def s_client(port, certs, *args, send=b""):
    """openssl s_client's output (stdout and stderr) for one connection."""
    proc = subprocess.run([openssl_path(), "s_client", "-connect", f"127.0.0.1:{port}",
                           "-CAfile", certs.ca, "-servername", "localhost", "-ign_eof", *args],
                          input=send, capture_output=True, timeout=30)
    return proc.stdout.decode("latin-1") + proc.stderr.decode("latin-1")


@pytest.mark.parametrize("poller", ["epoll", "poll"])
def test_versions_alpn_and_close_notify(start_server, certs, poller):
    srv = start_https(start_server, certs, env={"FASTGW_POLLER": poller})
    weak = "DEFAULT@SECLEVEL=0"  # lets the client offer TLS 1.0/1.1 at all
    for old in ("-tls1", "-tls1_1"):
        out = s_client(srv.tls_port, certs, old, "-cipher", weak)
        assert "alert protocol version" in out, out
    for version, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        out = s_client(srv.tls_port, certs, version, "-alpn", "http/1.1", send=REQUEST)
        assert f"New, {name}, Cipher is ECDHE" in out or f"New, {name}, Cipher is TLS_" in out
        assert "ALPN protocol: http/1.1" in out
        assert "Verify return code: 0 (ok)" in out
        assert "Hello, world!" in out
        # the server says close_notify before it closes: no truncation to report
        assert "unexpected eof" not in out, out
    out = s_client(srv.tls_port, certs, "-tls1_2", "-cipher", "AES128-SHA")  # no forward secrecy
    assert "alert handshake failure" in out, out
    assert "Traceback" not in srv.log_text()


def test_session_resumption_across_workers(start_server, certs, tmp_path):
    """One SSLContext made in the master: every worker takes every worker's tickets."""
    srv = start_https(start_server, certs, workers="2")
    for version in ("-tls1_2", "-tls1_3"):
        session = str(tmp_path / f"session{version}")
        out = s_client(srv.tls_port, certs, version, "-sess_out", session, send=REQUEST)
        assert "New, TLSv1." in out
        for _ in range(6):
            out = s_client(srv.tls_port, certs, version, "-sess_in", session, send=REQUEST)
            assert "Reused, TLSv1." in out, out
    assert "Traceback" not in srv.log_text()


def run_serve(*args):
    return subprocess.run(fastgw_command() + ["serve", "wsgiapp:application", "--chdir", APPS,
                                              "--workers", "1", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                          env=subprocess_env())


def test_mistakes_exit_2_with_a_message(certs, tmp_path):
    bind = ["--bind", "https://127.0.0.1:0"]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (bind, "an HTTPS listener needs --certfile"),
        (bind + ["--certfile", str(tmp_path / "missing.pem")], "cannot read"),
        (bind + ["--certfile", str(garbage)], "cannot load the certificate and key"),
        # a key that is not the certificate's
        (bind + ["--certfile", certs.server_cert, "--keyfile", certs.client_key],
         "cannot load the certificate and key"),
        (bind + ["--certfile", certs.server_cert, "--keyfile", certs.server_key,
                 "--ssl-ciphers", "NOSUCHCIPHER"], "--ssl-ciphers 'NOSUCHCIPHER'"),
        (bind + ["--certfile", certs.server_cert, "--keyfile", certs.server_key,
                 "--cert-reqs", "required"], "give --ca-certs"),
        (bind + ["--certfile", certs.server_cert, "--keyfile", certs.server_key,
                 "--ca-certs", str(garbage), "--cert-reqs", "required"], "--ca-certs"),
        (bind + ["--ssl-min-version", "1.1"], "invalid choice"),
    ]
    for args, needle in cases:
        proc = run_serve(*args)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (args, err)
        assert needle in err, (args, err)
        assert "Traceback" not in err


def test_key_readable_by_others_warns(start_server, certs, tmp_path):
    key = tmp_path / "open.key"
    shutil.copy(certs.server_key, key)
    os.chmod(key, 0o644)
    srv = start_server("wsgiapp:application", "--bind", "https://127.0.0.1:0",
                       "--certfile", certs.server_cert, "--keyfile", str(key),
                       default_bind=False)
    assert f"the private key {key} is readable by every user" in srv.log_text()
    srv.tls_port = https_port(srv)
    assert https_get(srv, certs, "/hello") == (200, b"Hello, world!\n")
    private = start_https(start_server, certs)
    assert "readable by every user" not in private.log_text()


def test_config_file_and_unix_socket(start_server, certs, tmp_path, curl_path):
    """[server] keys, paths relative to the file; https://unix:/path served to curl."""
    for name in ("server.pem", "server.key", "ca.pem"):
        shutil.copy(os.path.join(certs.dir, name), tmp_path / name)
    sock = tmp_path / "tls.sock"
    config = tmp_path / "fastgw.toml"
    config.write_text(f'[server]\nbind = ["https://unix:{sock}"]\ncertfile = "server.pem"\n'
                      f'keyfile = "server.key"\nssl_min_version = "1.3"\n')
    srv = start_server("wsgiapp:application", "--config", str(config), default_bind=False)
    out = subprocess.run([curl_path, "-sS", "--unix-socket", str(sock), "--cacert", certs.ca,
                          "https://localhost/environ-raw/x"], capture_output=True, timeout=30)
    env = json.loads(out.stdout)["environ"]
    assert env["HTTPS"] == "on" and env["SSL_PROTOCOL"] == "TLSv1.3"
    out = subprocess.run([curl_path, "-sS", "--unix-socket", str(sock), "--cacert", certs.ca,
                          "--tls-max", "1.2", "https://localhost/hello"],
                         capture_output=True, timeout=30)
    assert out.returncode != 0  # ssl_min_version = "1.3" refuses TLS 1.2
    assert "Traceback" not in srv.log_text()


@pytest.mark.parametrize("reqs", ["optional", "required"])
def test_mutual_tls(start_server, certs, stranger, reqs):
    srv = start_https(start_server, certs, "--ca-certs", certs.ca, "--cert-reqs", reqs)
    status, body = https_get(srv, certs, "/environ-raw/x", certfile=certs.client_cert,
                             keyfile=certs.client_key)
    env = json.loads(body)["environ"]
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == "O=fastgw tests,CN=alice"
    with open(certs.client_cert) as f:
        assert env["SSL_CLIENT_CERT"].split() == f.read().split()
    if reqs == "optional":
        env = json.loads(https_get(srv, certs, "/environ-raw/x")[1])["environ"]
        assert env["SSL_CLIENT_VERIFY"] == "NONE" and "SSL_CLIENT_S_DN" not in env
    else:
        # TLS 1.3: the refusal comes after the client's side of the handshake
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            https_get(srv, certs, "/hello")
    # a certificate from another CA is refused in both modes
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        https_get(srv, certs, "/hello", certfile=stranger.client_cert,
                  keyfile=stranger.client_key)
    assert "Traceback" not in srv.log_text()


def served_certificate(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw) as sock:
            return sock.getpeercert(True)


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_sighup_reloads_certificates_under_load(start_server, certs, tmp_path):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs.server_cert, cert)
    shutil.copy(certs.server_key, key)
    srv = start_https(start_server, certs, "--certfile", str(cert), "--keyfile", str(key),
                      workers="2")
    assert served_certificate(srv.tls_port) == der(certs.server_cert)
    new_cert, new_key = certs.leaf("renewed", "/CN=localhost/O=renewed",
                                   "subjectAltName=IP:127.0.0.1,DNS:localhost")
    done = threading.Event()
    results = {"ok": 0, "failed": []}

    def load():
        while not done.is_set():
            try:
                status, body = https_get(srv, certs, "/hello", timeout=10)
                assert (status, body) == (200, b"Hello, world!\n")
                results["ok"] += 1
            except Exception as e:  # every failure counts, whatever it is
                results["failed"].append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: results["ok"] >= 20, message="requests before the reload")
        shutil.copy(new_key, key)
        shutil.copy(new_cert, cert)
        mark = srv.log_mark()
        srv.send_signal(signal.SIGHUP)
        srv.wait_for_log(r"reload done", timeout=30, start=mark)
        wait_until(lambda: served_certificate(srv.tls_port) == der(new_cert),
                   message="the renewed certificate")
        before = results["ok"]
        wait_until(lambda: results["ok"] >= before + 20, message="requests after the reload")
        # a broken renewal: the old workers keep serving the renewed certificate
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\ntruncated\n")
        mark = srv.log_mark()
        srv.send_signal(signal.SIGHUP)
        srv.wait_for_log(r"reload failed: --certfile .*cannot load the certificate.*"
                         r"the running workers keep serving", timeout=30, start=mark)
        before = results["ok"]
        wait_until(lambda: results["ok"] >= before + 20, message="requests after the failure")
        assert served_certificate(srv.tls_port) == der(new_cert)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert results["failed"] == []
    assert "Traceback" not in srv.log_text()
