"""An outside scanner's view of an HTTPS listener with the default settings (issue 20):
testssl.sh (the Debian package's `testssl`) reports no HIGH or CRITICAL finding. The
certificate is one a public CA would issue (a year, a CRL address), so what is judged
is the server's TLS, not the test certificate."""
import json
import os
import shutil
import subprocess

import pytest

from test_https import https_port
from tlscerts import Certs

SCAN_TIMEOUT = 600


def scanner_path():
    path = shutil.which("testssl") or shutil.which("testssl.sh")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("testssl.sh is required on CI but was not found on PATH")
        pytest.skip("testssl.sh not installed")
    return path


def test_testssl_finds_nothing_high(start_server, tmp_path):
    scanner = scanner_path()
    certs = Certs(tmp_path)
    cert, key = certs.leaf("public", "/CN=localhost/O=fastgw tests",
                           "subjectAltName=IP:127.0.0.1,DNS:localhost;"
                           "crlDistributionPoints=URI:http://crl.example.org/ca.crl;"
                           "extendedKeyUsage=serverAuth", days=365)
    srv = start_server("wsgiapp:application", "--bind", "https://127.0.0.1:0",
                       "--certfile", cert, "--keyfile", key, default_bind=False)
    report = tmp_path / "testssl.json"
    proc = subprocess.run([scanner, "--quiet", "--color", "0", "--warnings", "off",
                           "--add-ca", certs.ca, "--jsonfile", str(report),
                           f"127.0.0.1:{https_port(srv)}"],
                          capture_output=True, timeout=SCAN_TIMEOUT)
    assert report.exists(), proc.stdout.decode(errors="replace")[-3000:]
    findings = json.loads(report.read_text())
    assert any(f["id"] == "TLS1_3" and f["finding"] == "offered with final" for f in findings)
    bad = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL")]
    assert bad == []
    assert "Traceback" not in srv.log_text()
