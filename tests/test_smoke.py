"""Smoke test of an installed fastgw: what every wheel must get right first.

cibuildwheel runs this file (with test_http_basic.py) against each wheel it
builds, from a directory that holds a copy of tests/ and nothing else, so all
of fastgw comes from the installed wheel: the compiled modules load, the
version agrees everywhere it is reported, and the server answers real
requests over a socket and stops cleanly on SIGTERM.  It is also part of the
ordinary suite, where it checks the same things of `pip install .`.
"""
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import os
import shutil
import subprocess
import sys

import pytest

import fastgw
from fgwtest import RawConnection, http_request, request

COMPILED_MODULES = ["fastgw._stream", "fastgw._loop", "fastgw._request", "fastgw._lifecycle",
                    "fastgw._http", "fastgw._httphead", "fastgw._httpbody", "fastgw._fcgi",
                    "fastgw._scgi"]


@pytest.mark.parametrize("name", COMPILED_MODULES)
def test_compiled_module_is_an_extension(name):
    module = importlib.import_module(name)
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert module.__file__.endswith(suffixes), (
        "%s was loaded from %s, not from a compiled extension (%s)"
        % (name, module.__file__, ", ".join(suffixes)))


def test_version_agrees_with_distribution_metadata():
    assert importlib.metadata.version("fastgw") == fastgw.__version__


def test_console_script_prints_the_version():
    script = shutil.which("fastgw") or os.path.join(os.path.dirname(sys.executable), "fastgw")
    assert os.path.exists(script), "the fastgw console script is not installed"
    proc = subprocess.run([script, "--version"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert proc.stdout.decode().strip() == "fastgw " + fastgw.__version__


def test_server_answers_requests_and_stops_cleanly(start_server):
    server = start_server("wsgiapp:application", "--workers", "2")

    resp = http_request(server.port, "GET", "/hello")
    assert (resp.status, resp.body) == (200, b"Hello, world!\n")

    body = bytes(range(256)) * 4096  # 1 MiB
    resp = http_request(server.port, "POST", "/sha256", body=body)
    assert resp.status == 200, resp.body
    assert resp.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert resp.json()["length"] == len(body)

    # keep-alive and pipelining on one connection
    with RawConnection(server.port) as conn:
        conn.send(request("GET", "/hello") + request("GET", "/no/such/route"))
        first = conn.read_response()
        second = conn.read_response()
        third = conn.roundtrip(request("GET", "/hello", headers=[("Connection", "close")]))
    assert (first.status, first.body) == (200, b"Hello, world!\n")
    assert (second.status, second.body) == (404, b"no such route: /no/such/route")
    assert third.status == 200

    assert server.stop() == 0
