"""Test certificates made at test time with the openssl command: a CA, server
certificates for 127.0.0.1/localhost signed by it, and a client certificate."""
import os
import shutil
import subprocess

import pytest


def openssl_path():
    path = shutil.which("openssl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required on CI but was not found on PATH")
        pytest.skip("openssl not installed")
    return path


def run(*args, cwd):
    subprocess.run([openssl_path(), *args], cwd=cwd, check=True, capture_output=True)


class Certs:
    """A CA in `directory` and the certificates it signs (PEM files, keys mode 600)."""

    def __init__(self, directory):
        self.dir = str(directory)
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "400",
            "-subj", "/CN=fastgw test CA", "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        self.ca = self.path("ca.pem")
        self.server_cert, self.server_key = self.leaf("server", "/CN=localhost/O=fastgw tests",
                                                       "subjectAltName=IP:127.0.0.1,DNS:localhost")
        self.client_cert, self.client_key = self.leaf("client", "/CN=alice/O=fastgw tests",
                                                       "extendedKeyUsage=clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, subject, extension, days=2):
        """A key and a certificate signed by the CA, valid for `days`: (cert path, key path);
        `extension` is the x509v3 extensions, separated by ';'."""
        run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=self.dir)
        with open(self.path(f"{name}.ext"), "w") as f:
            f.write(extension.replace(";", "\n") + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", str(days), "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=self.dir)
        os.chmod(self.path(f"{name}.key"), 0o600)
        return self.path(f"{name}.pem"), self.path(f"{name}.key")
