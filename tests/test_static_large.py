"""A file over 200 MiB through the static handler: sha256 end to end (curl and a raw
socket), ranges deep inside it, and a worker whose memory does not grow with the file
(the body goes out with sendfile, never through Python)."""
import hashlib
import os
import socket
import subprocess

import pytest

from fgwtest import proc_status_kib, raw_request, request

MIB = 1 << 20
SIZE = 200 * MIB + 12345  # not a multiple of any block size
MARK_EVERY = 8 * MIB


def marker(i):
    """4 KiB that differ at every offset, so a misplaced block changes the hash."""
    seed = hashlib.sha256(b"fastgw-large-%d" % i).digest()
    return (seed * 128)[:4096]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """Sparse: holes of zeros with a distinct marker every 8 MiB and at the very end."""
    root = str(tmp_path_factory.mktemp("large-tree"))
    path = os.path.join(root, "big.bin")
    with open(path, "wb") as fh:
        fh.truncate(SIZE)
        for i, offset in enumerate(range(0, SIZE - 4096, MARK_EVERY)):
            fh.seek(offset + (i * 977) % 4096)
            fh.write(marker(i))
        fh.seek(SIZE - 4096)
        fh.write(marker(-1))
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * MIB), b""):
            digest.update(block)
    return {"root": root, "path": path, "sha256": digest.hexdigest()}


@pytest.fixture(scope="module")
def srv(start_module_server, big):
    return start_module_server("mounts:main", "--static", "/files=" + big["root"])


def file_bytes(path, first, last):
    with open(path, "rb") as fh:
        fh.seek(first)
        return fh.read(last - first + 1)


def socket_get_sha256(port, target):
    """Read one Content-Length response straight off a socket, hashing as it arrives."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request("GET", target))
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            assert data, "connection closed inside the head"
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK", lines[0]
        length = int(next(l.split(":", 1)[1] for l in lines if l.lower().startswith("content-length:")))
        digest = hashlib.sha256(rest)
        remaining = length - len(rest)
        chunk = bytearray(4 * MIB)
        view = memoryview(chunk)
        while remaining > 0:
            n = sock.recv_into(view, min(len(chunk), remaining))
            assert n, "connection closed with %d bytes missing" % remaining
            digest.update(view[:n])
            remaining -= n
        return length, digest.hexdigest()


def test_sha256_over_socket(srv, big):
    length, digest = socket_get_sha256(srv.port, "/files/big.bin")
    assert length == SIZE
    assert digest == big["sha256"]


def test_sha256_with_curl(srv, big, curl_path):
    proc = subprocess.Popen([curl_path, "--silent", "--show-error", "--fail", "--max-time", "60",
                             srv.url + "/files/big.bin"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    digest = hashlib.sha256()
    total = 0
    for block in iter(lambda: proc.stdout.read(4 * MIB), b""):
        digest.update(block)
        total += len(block)
    assert proc.wait(60) == 0, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert total == SIZE
    assert digest.hexdigest() == big["sha256"]


@pytest.mark.parametrize("first,last", [
    (150 * MIB - 100, 150 * MIB + 8191),
    (SIZE - 5000, SIZE - 1),
    (0, 4095),
])
def test_range_deep_inside(srv, big, first, last):
    resp = raw_request(srv.port, "GET", "/files/big.bin", [("Range", "bytes=%d-%d" % (first, last))])
    assert resp.status == 206
    assert resp.header("Content-Range") == "bytes %d-%d/%d" % (first, last, SIZE)
    assert resp.body == file_bytes(big["path"], first, last)


def test_multirange_far_apart(srv, big):
    spec = "bytes=%d-%d,%d-%d" % (10, 20, 190 * MIB, 190 * MIB + 4200)
    resp = raw_request(srv.port, "GET", "/files/big.bin", [("Range", spec)])
    assert resp.status == 206
    assert file_bytes(big["path"], 10, 20) in resp.body
    assert file_bytes(big["path"], 190 * MIB, 190 * MIB + 4200) in resp.body
    assert int(resp.header("Content-Length")) == len(resp.body)


def test_head_of_large_file(srv):
    resp = raw_request(srv.port, "HEAD", "/files/big.bin")
    assert resp.status == 200
    assert resp.header("Content-Length") == str(SIZE)


def test_worker_memory_stays_small(srv, big):
    """After serving the file the worker's peak RSS is far below its size."""
    assert socket_get_sha256(srv.port, "/files/big.bin") == (SIZE, big["sha256"])
    (pid,) = srv.live_worker_pids()
    peak_kib = proc_status_kib(pid, "VmHWM")
    assert peak_kib < 120 * 1024, "worker peak RSS %d KiB while serving a %d MiB file" % (
        peak_kib, SIZE // MIB)
