"""256 MiB uploads and downloads, checked end to end with sha256, while the
worker's memory must stay flat (the server streams, it does not buffer)."""
import hashlib
import http.client
import json
import threading
import time

import pytest

from fgwtest import get_pid, pattern_chunks, proc_status_kib

SIZE = 256 * 1024 * 1024
MAX_GROWTH_KIB = 64 * 1024


class RssSampler:
    """Samples the worker's VmRSS while a transfer runs; combined with VmHWM
    it gives the peak reached during the transfer."""

    def __init__(self, pid):
        self.pid = pid
        self.rss_before = proc_status_kib(pid, "VmRSS")
        self.hwm_before = proc_status_kib(pid, "VmHWM")
        self.peak = self.rss_before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, proc_status_kib(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        hwm_after = proc_status_kib(self.pid, "VmHWM")
        if hwm_after > self.hwm_before:
            self.peak = max(self.peak, hwm_after)

    def check(self, what):
        growth = self.peak - self.rss_before
        assert growth <= MAX_GROWTH_KIB, (
            "worker memory grew by %.1f MiB during %s (RSS before %.1f MiB, peak %.1f MiB)"
            % (growth / 1024, what, self.rss_before / 1024, self.peak / 1024))


@pytest.fixture(scope="module")
def big_server(start_module_server):
    return start_module_server("wsgiapp:application")


def _warm_up(port, method, path, body=None):
    """Run the code path once so the RSS baseline is not the cold process."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    finally:
        conn.close()


def _counting(chunks, digest):
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_upload_256mib(big_server, framing):
    _warm_up(big_server.port, "POST", "/sha256", b"x" * 4000000)
    pid = get_pid(big_server.port)
    sent_digest = hashlib.sha256()
    body = _counting(pattern_chunks(SIZE), sent_digest)
    conn = http.client.HTTPConnection("127.0.0.1", big_server.port, timeout=120)
    with RssSampler(pid) as sampler:
        if framing == "length":
            conn.request("POST", "/sha256", body=body, headers={"Content-Length": str(SIZE)})
        else:
            conn.request("POST", "/sha256", body=body, encode_chunked=True)
        resp = conn.getresponse()
        result = resp.read()
    conn.close()
    assert resp.status == 200, result[:500]
    data = json.loads(result)
    assert data["pid"] == pid
    assert data["length"] == SIZE
    assert data["sha256"] == sent_digest.hexdigest()
    sampler.check("a 256 MiB %s upload" % framing)


def test_download_256mib(big_server):
    _warm_up(big_server.port, "GET", "/stream?n=4000000")
    pid = get_pid(big_server.port)
    expected = hashlib.sha256()
    for chunk in pattern_chunks(SIZE):
        expected.update(chunk)
    got = hashlib.sha256()
    total = 0
    conn = http.client.HTTPConnection("127.0.0.1", big_server.port, timeout=120)
    with RssSampler(pid) as sampler:
        conn.request("GET", "/stream?n=%d" % SIZE)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert resp.getheader("Content-Length") is None
        while True:
            piece = resp.read(1 << 20)
            if not piece:
                break
            got.update(piece)
            total += len(piece)
    conn.close()
    assert total == SIZE
    assert got.hexdigest() == expected.hexdigest()
    sampler.check("a 256 MiB streamed download")


def test_slow_reader_download_stays_flat(big_server):
    """A client that reads slowly must not make the server buffer the
    generator's output in memory (it should stop iterating while the socket
    is not writable)."""
    size = 160 * 1024 * 1024
    _warm_up(big_server.port, "GET", "/stream?n=4000000")
    pid = get_pid(big_server.port)
    conn = http.client.HTTPConnection("127.0.0.1", big_server.port, timeout=120)
    with RssSampler(pid) as sampler:
        conn.request("GET", "/stream?n=%d" % size)
        resp = conn.getresponse()
        total = len(resp.read(4096))
        # Observation window (not synchronisation): the client reads nothing
        # for a second. A server that keeps iterating and buffering instead
        # of waiting for the socket to become writable would pile up most of
        # the 160 MiB in memory by then; the sampler sees it.
        time.sleep(1.0)
        while True:
            piece = resp.read(1 << 20)
            if not piece:
                break
            total += len(piece)
    conn.close()
    assert total == size
    sampler.check("a download to a slow reader")
