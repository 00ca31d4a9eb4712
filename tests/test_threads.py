"""--threads N: the application runs in a pool of N threads per worker while the
loop thread keeps serving other connections; --threads 1 runs it inline.

Slow requests are /gate requests of tests/apps/procapp.py: they block until the
test creates a release file, so "the fast request finished while the slow one
was still running" is an ordering fact, not a timing guess.
"""
import hashlib
import os
import signal
import threading

import pytest

from fgwtest import RawConnection, chunked, http_request, read_lines, request, wait_for_line
from procapp_helpers import APP, events_path, new_id, release



class Background:
    """One http.client request in a thread; ``.done`` is set when it finished."""

    def __init__(self, port, target, timeout=90):
        self.response = None
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(port, target, timeout), daemon=True)
        self.thread.start()

    def _run(self, port, target, timeout):
        try:
            self.response = http_request(port, "GET", target, timeout=timeout)
        except Exception as exc:  # reported by result()
            self.error = exc
        finally:
            self.done.set()

    def result(self, timeout=60):
        assert self.done.wait(timeout), "request still running after %ds" % timeout
        assert self.error is None, "request failed: %r" % (self.error,)
        return self.response


def start_gated(srv, test_dir, ident):
    """Start /gate?id=ident and wait until the application is running it."""
    req = Background(srv.port, "/gate?id=" + ident)
    wait_for_line(events_path(test_dir), "start " + ident)
    return req


def test_blocked_request_does_not_delay_fast_one(start_server, test_dir):
    srv = start_server(APP, "--threads", "4")
    slow_id = new_id("slow")
    slow = start_gated(srv, test_dir, slow_id)
    fast = http_request(srv.port, "GET", "/pid")
    assert fast.status == 200
    # The fast request completed while the slow one is still inside the app.
    assert not slow.done.is_set()
    assert "end " + slow_id not in read_lines(events_path(test_dir))
    release(test_dir, slow_id)
    resp = slow.result()
    assert resp.status == 200 and resp.body == ("released " + slow_id).encode()
    # Both were served by the one worker.
    assert srv.worker_pids() == [int(fast.body)]


def test_sleeping_request_does_not_delay_fast_one(start_server, test_dir):
    """The issue's wording: a request that sleeps 2 s, a fast request on another
    connection of the same worker completes first."""
    srv = start_server(APP, "--threads", "4")
    slow_id = new_id("sleep2")
    slow = Background(srv.port, "/sleep?s=2&id=" + slow_id)
    wait_for_line(events_path(test_dir), "start " + slow_id)
    fast = http_request(srv.port, "GET", "/pid")
    assert fast.status == 200
    slow_finished_first = slow.done.is_set()
    assert not slow_finished_first, "the fast request waited for the sleeping one"
    resp = slow.result()
    assert resp.status == 200 and resp.body == ("slept " + slow_id).encode()
    assert srv.worker_pids() == [int(fast.body)]


def test_requests_block_concurrently_in_one_worker(start_server, test_dir):
    srv = start_server(APP, "--threads", "4")
    ids = [new_id("conc%d" % i) for i in range(3)]
    reqs = [start_gated(srv, test_dir, ident) for ident in ids]
    # All three are inside the application at the same time, none has ended.
    lines = read_lines(events_path(test_dir))
    assert all("start " + i in lines for i in ids)
    assert not any("end " + i in lines for i in ids)
    # The fourth thread is still free for a fast request.
    assert http_request(srv.port, "GET", "/pid").status == 200
    # Release them in reverse order: each completes independently.
    for ident, req in reversed(list(zip(ids, reqs))):
        release(test_dir, ident)
        assert req.result().body == ("released " + ident).encode()
    assert len(srv.worker_pids()) == 1


def test_pool_size_bounds_concurrency(start_server, test_dir):
    """With --threads 2 and two blocked requests, a third one waits in the queue and
    is served as soon as one thread is free, before the other is released."""
    srv = start_server(APP, "--threads", "2")
    first, second = new_id("busy1"), new_id("busy2")
    busy1 = start_gated(srv, test_dir, first)
    busy2 = start_gated(srv, test_dir, second)
    queued = Background(srv.port, "/pid")
    # A correct server cannot answer it now (both threads are blocked), so this
    # wait never fails spuriously; it would only miss an unbounded pool.
    assert not queued.done.wait(0.5), "a third request ran with both threads blocked"
    release(test_dir, first)
    assert busy1.result().status == 200
    assert queued.result().status == 200
    assert not busy2.done.is_set()
    release(test_dir, second)
    assert busy2.result().status == 200


@pytest.mark.parametrize("threads, multithread", [("1", False), ("4", True)])
def test_wsgi_multithread_flag(start_server, threads, multithread):
    srv = start_server(APP, "--threads", threads)
    env = http_request(srv.port, "GET", "/environ").json()
    assert env["wsgi.multithread"] is multithread
    assert env["wsgi.multiprocess"] is False  # --workers 1
    assert env["wsgi.run_once"] is False


def test_threads_one_runs_app_on_the_loop_thread(start_server):
    srv = start_server(APP, "--threads", "1")
    pid, _, where = http_request(srv.port, "GET", "/tid").body.decode().split()
    assert where == "main"
    assert int(pid) == srv.worker_pids()[0]


def test_threads_run_app_in_pool_threads(start_server, test_dir):
    srv = start_server(APP, "--threads", "3")
    # Two requests blocked at once must be in two different pool threads.
    ids = [new_id("pool%d" % i) for i in range(2)]
    reqs = [start_gated(srv, test_dir, ident) for ident in ids]
    seen = set()
    for _ in range(5):
        pid, tid, where = http_request(srv.port, "GET", "/tid").body.decode().split()
        assert where == "other"
        seen.add(tid)
    for ident, req in zip(ids, reqs):
        release(test_dir, ident)
        assert req.result().status == 200
    # The only thread free for the /tid requests was the third one.
    assert len(seen) == 1


def test_keepalive_and_pipelining_with_threads(start_server, test_dir):
    """Responses on one connection stay in request order when each request runs in
    a pool thread, even when the first one is the slowest."""
    srv = start_server(APP, "--threads", "4")
    ident = new_id("pipe")
    with RawConnection(srv.port) as conn:
        conn.send(request("GET", "/sleep?s=0.3&id=" + ident) + request("GET", "/pid")
                  + request("GET", "/version") + request("GET", "/tid"))
        first = conn.read_response()
        assert first.status == 200 and first.body == ("slept " + ident).encode()
        pid = conn.read_response().body.decode()
        assert conn.read_response().body.decode() == "unversioned " + pid
        assert conn.read_response().body.decode().startswith(pid + " ")
        # The connection is still usable afterwards.
        for _ in range(3):
            assert conn.roundtrip(request("GET", "/pid")).body.decode() == pid


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_request_body_read_in_app_thread(start_server, framing):
    srv = start_server(APP, "--threads", "4")
    body = os.urandom(3 * 1024 * 1024 + 17)
    with RawConnection(srv.port) as conn:
        if framing == "length":
            data = request("POST", "/echo", [("Content-Length", str(len(body)))], body)
        else:
            pieces = [body[i:i + 100000] for i in range(0, len(body), 100000)]
            data = request("POST", "/echo", [("Transfer-Encoding", "chunked")], chunked(*pieces))
        resp = conn.roundtrip(data)
        assert resp.status == 200
        assert resp.body.decode() == "%d %s" % (len(body), hashlib.sha256(body).hexdigest())
        # keep-alive continues after a body read by another thread
        assert conn.roundtrip(request("GET", "/pid")).status == 200


def test_streamed_response_from_app_thread(start_server):
    srv = start_server(APP, "--threads", "4")
    n = 96  # 6 MiB: more than socket buffers hold, so the writer must wait for the client
    with RawConnection(srv.port) as conn:
        resp = conn.roundtrip(request("GET", "/stream?n=%d" % n))
        assert resp.status == 200
        assert resp.framing == "chunked"
        expected = b"".join(bytes([i % 256]) * 65536 for i in range(n))
        assert resp.body == expected
        assert conn.roundtrip(request("GET", "/pid")).status == 200


def test_many_concurrent_clients_with_threads(start_server):
    srv = start_server(APP, "--threads", "4", "--workers", "2")
    errors = []
    served = []
    lock = threading.Lock()

    def client(n):
        try:
            with RawConnection(srv.port) as conn:
                for i in range(15):
                    resp = conn.roundtrip(request("POST", "/echo",
                                                  [("Content-Length", "4")], b"%04d" % i))
                    expected = "4 " + hashlib.sha256(b"%04d" % i).hexdigest()
                    if resp.status != 200 or resp.body.decode() != expected:
                        raise AssertionError("client %d request %d: %r" % (n, i, resp))
                    with lock:
                        served.append(n)
        except Exception as exc:
            with lock:
                errors.append(exc)

    clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(24)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(60)
    assert not any(t.is_alive() for t in clients), "clients still running"
    assert errors == []
    assert len(served) == 24 * 15


def test_threads_config_file_key(start_server, tmp_path):
    config = tmp_path / "threads.toml"
    config.write_text("[server]\nthreads = 4\n")
    srv = start_server(APP, "--config", str(config))
    assert http_request(srv.port, "GET", "/environ").json()["wsgi.multithread"] is True


def test_threads_graceful_stop_waits_for_app_threads(start_server, test_dir):
    """SIGTERM while every pool thread is blocked: the worker still stops cleanly once
    they are released, and each response is delivered."""
    srv = start_server(APP, "--threads", "2")
    ids = [new_id("stopthr%d" % i) for i in range(2)]
    reqs = [start_gated(srv, test_dir, ident) for ident in ids]
    srv.send_signal(signal.SIGTERM)
    srv.wait_for_log(r"stopping gracefully")
    for ident in ids:
        release(test_dir, ident)
    for ident, req in zip(ids, reqs):
        assert req.result().body == ("released " + ident).encode()
    assert srv.wait_exit(40) == 0
    srv.assert_no_workers_left()
