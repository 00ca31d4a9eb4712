"""--metrics: Prometheus text summed over the workers, /healthz and /readyz, the drain
window of --drain-seconds, and no connection of the listen backlog lost on SIGTERM."""
import os
import re
import signal
import socket
import uuid

import pytest

from fgwtest import (IncompleteResponse, RawConnection, http_request, raw_request, request,
                     wait_until)
from fastgw.config import Mount
from fastgw.metrics import (CLASSES, MAX_LABELS, REQUESTS, MetricsPage)

METRICS_RE = r"Metrics, /healthz and /readyz at: http://127\.0\.0\.1:(\d+)"


def metrics_port(srv):
    return int(srv.wait_for_log(METRICS_RE).group(1))


def scrape(port):
    resp = http_request(port, "GET", "/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in resp.body.decode("utf-8").splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


# A request whose application blocks reading its body until the test sends the rest: the
# app is mounted at /stream with request_buffering = false (start_metrics_server), so it
# is called before the body is whole (the body is larger than the loop waits for).
BODY_SIZE = 200000
BLOCKING_HEAD = request("POST", "/stream/body/read", [("Content-Length", str(BODY_SIZE))],
                        b"x" * 5)
REST_OF_BODY = b"x" * (BODY_SIZE - 5)
STREAM_MOUNT = """
[[mount]]
path = "/stream"
app = "wsgiapp:application"
request_buffering = false
"""


def requests_total(mount, status):
    return 'fastgw_requests_total{mount="%s",status="%s"}' % (mount, status)


def start_metrics_server(start_server, *args, **options):
    """A server with --metrics, once /readyz says it is ready (503 "starting" before the
    first worker has imported the application)."""
    config = os.path.join(start_server.test_dir, f"metrics-{uuid.uuid4().hex}.toml")
    with open(config, "w") as f:
        f.write(STREAM_MOUNT)
    srv = start_server("wsgiapp:application", "--metrics", "127.0.0.1:0", "--config", config,
                       *args, **options)
    port = metrics_port(srv)
    wait_until(lambda: http_request(port, "GET", "/readyz").status == 200, 15,
               message="/readyz 200")
    return srv, port


# --------------------------------------------------------------------------
# in process


def test_page_keeps_counts_of_reaped_workers_and_labels_mounts():
    page = MetricsPage(4)
    mounts = [Mount(path="/", app="a:b"), Mount(path="/api", app="a:c")]
    page.take(0, mounts)
    page.take(1, mounts)
    one = page.worker_view(0, mounts)
    two = page.worker_view(1, mounts)
    one.begin()
    one.end("/api", True, 201, 10, 700)
    two.begin()
    two.end("", True, 404, 5, 3000000)
    two.begin()
    two.end("/nothing", False, 0, 0, 20)
    two.begin()  # still running
    page.release(1)  # the worker exited: its counts stay, its gauges go
    page.take(1, mounts)
    text = page.render(ready=True, draining=False)
    assert requests_total("/api", "2xx") + " 1\n" in text
    assert requests_total("/", "4xx") + " 1\n" in text
    assert requests_total("none", "none") + " 1\n" in text
    assert 'fastgw_request_duration_seconds_bucket{le="0.0005"} 1\n' in text
    assert 'fastgw_request_duration_seconds_bucket{le="0.001"} 2\n' in text
    assert 'fastgw_request_duration_seconds_bucket{le="2.5"} 2\n' in text
    assert 'fastgw_request_duration_seconds_bucket{le="5"} 3\n' in text
    assert "fastgw_request_duration_seconds_count 3\n" in text
    assert "fastgw_request_duration_seconds_sum 3.000720\n" in text
    assert "fastgw_response_body_bytes_total 15\n" in text
    assert "fastgw_requests_in_flight 0\n" in text
    assert "fastgw_workers 2\n" in text
    # more mounts than labels: the rest share "other"
    many = [Mount(path="/m%d" % i, app="a:b") for i in range(MAX_LABELS + 5)]
    index, _ = page.labels_for(many)
    assert max(index.values()) == MAX_LABELS - 1 and page.labels[-1] == "other"
    assert len(page.labels) == MAX_LABELS
    assert REQUESTS + MAX_LABELS * len(CLASSES) <= 512


# --------------------------------------------------------------------------
# against the server


def test_counters_match_requests_across_workers(start_server):
    srv, mport = start_metrics_server(start_server, "--workers", "2",
                                      "--mount", "/api=mounts:api")
    sent = {("/", "2xx"): 0, ("/", "4xx"): 0, ("/", "5xx"): 0, ("/api", "2xx"): 0}
    body_bytes = 0
    for i in range(12):
        for path, key in (("/hello", ("/", "2xx")), ("/nope", ("/", "4xx")),
                          ("/api/x", ("/api", "2xx"))):
            resp = http_request(srv.port, "GET", "%s?i=%d" % (path, i))
            sent[key] += 1
            body_bytes += len(resp.body)
    assert http_request(srv.port, "GET", "/raise?when=before").status == 500
    sent[("/", "5xx")] += 1
    body_bytes += len(b"Internal Server Error\n")
    total = sum(sent.values())

    def counted():
        values = scrape(mport)
        return values.get("fastgw_request_duration_seconds_count") == total and values

    values = wait_until(counted, 10, message="%d requests counted" % total)
    for (mount, status), count in sent.items():
        assert values[requests_total(mount, status)] == count, (mount, status)
    assert values[requests_total("/api", "5xx")] == 0
    assert values['fastgw_request_duration_seconds_bucket{le="+Inf"}'] == total
    assert values["fastgw_request_duration_seconds_sum"] > 0
    assert values["fastgw_response_body_bytes_total"] == body_bytes
    assert values["fastgw_requests_in_flight"] == 0
    assert values["fastgw_workers"] == 2
    assert values["fastgw_ready"] == 1 and values["fastgw_draining"] == 0
    assert values["fastgw_worker_restarts_total"] == 0


def test_health_endpoints(start_server):
    srv, mport = start_metrics_server(start_server)
    assert http_request(mport, "GET", "/healthz").body == b"ok\n"
    ready = http_request(mport, "GET", "/readyz")
    assert (ready.status, ready.body) == (200, b"ready\n")
    head = raw_request(mport, "HEAD", "/readyz")
    assert (head.status, head.body) == (200, b"")
    assert http_request(mport, "GET", "/other").status == 404
    post = http_request(mport, "POST", "/metrics", body=b"x")
    assert post.status == 405 and post.headers["Allow"] == "GET, HEAD"


def test_gauges_in_flight_and_connections(start_server):
    srv, mport = start_metrics_server(start_server)
    idle = [RawConnection(srv.port) for _ in range(3)]
    for conn in idle:
        assert conn.roundtrip(request("GET", "/hello")).status == 200
    # each worker reports its connections once a second
    wait_until(lambda: scrape(mport)["fastgw_connections"] == 3, 10, message="3 connections")
    for conn in idle:
        conn.close()
    blocked = RawConnection(srv.port)
    blocked.send(BLOCKING_HEAD)
    wait_until(lambda: scrape(mport)["fastgw_requests_in_flight"] == 1, 10,
               message="one request in flight")
    blocked.send(REST_OF_BODY)
    assert blocked.read_response().status == 200
    wait_until(lambda: scrape(mport)["fastgw_requests_in_flight"] == 0, 10,
               message="no request in flight")
    blocked.close()


def test_worker_restart_keeps_counts(start_server):
    srv, mport = start_metrics_server(start_server)
    for _ in range(3):
        assert http_request(srv.port, "GET", "/hello").status == 200
    with pytest.raises((IncompleteResponse, ConnectionError)):
        raw_request(srv.port, "GET", "/exit")
    srv.wait_for_workers(2)

    def restarted():
        values = scrape(mport)
        return values["fastgw_worker_restarts_total"] == 1 and values["fastgw_workers"] == 1 \
            and values

    values = wait_until(restarted, 15, message="worker restart counted")
    assert values[requests_total("/", "2xx")] == 3  # what the dead worker counted stays
    assert values["fastgw_requests_in_flight"] == 0  # its /exit request is gone with it
    assert http_request(srv.port, "GET", "/hello").status == 200
    wait_until(lambda: scrape(mport)[requests_total("/", "2xx")] == 4, 10, message="4 requests")


def test_recycled_worker_counted_as_a_restart(start_server):
    srv, mport = start_metrics_server(start_server, "--max-requests", "3")
    for _ in range(4):
        assert http_request(srv.port, "GET", "/hello").status == 200
    srv.wait_for_log(r"worker \d+ replaced by worker \d+")
    wait_until(lambda: scrape(mport)["fastgw_worker_restarts_total"] == 1, 15,
               message="the replacement counted")


def test_worker_timeout_counted(start_server):
    srv, mport = start_metrics_server(start_server, "--timeout", "1")
    with pytest.raises((IncompleteResponse, ConnectionError)):
        raw_request(srv.port, "GET", "/sleep?s=60")
    # the timeout is counted when the master kills the worker, the restart when it has
    # reaped it and started another
    wait_until(lambda: (lambda v: v["fastgw_worker_timeouts_total"] == 1
                        and v["fastgw_worker_restarts_total"] == 1)(scrape(mport)), 15,
               message="timeout and restart counted")


def test_upstream_errors_counted(start_server):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the upstream is down
    srv, mport = start_metrics_server(start_server, "--fastcgi",
                                      "/php=tcp://127.0.0.1:%d" % port)
    assert http_request(srv.port, "GET", "/php/index.php").status == 502
    assert http_request(srv.port, "GET", "/hello").status == 200
    values = wait_until(lambda: (lambda v: v["fastgw_upstream_errors_total"] == 1 and v)(
        scrape(mport)), 10, message="upstream error counted")
    assert values[requests_total("/php", "5xx")] == 1


def test_drain_window_keeps_serving_while_not_ready(start_server):
    srv, mport = start_metrics_server(start_server, "--drain-seconds", "120")
    assert http_request(mport, "GET", "/readyz").status == 200
    srv.send_signal(signal.SIGTERM)
    srv.wait_for_log(r"SIGTERM: draining for 120 s")
    not_ready = http_request(mport, "GET", "/readyz")
    assert (not_ready.status, not_ready.body) == (503, b"draining\n")
    assert http_request(mport, "GET", "/healthz").status == 200
    # still accepting and serving, new connections included
    for _ in range(3):
        assert http_request(srv.port, "GET", "/hello").status == 200
    values = scrape(mport)
    assert values["fastgw_draining"] == 1 and values["fastgw_ready"] == 0
    # a second SIGTERM ends the window: the normal graceful stop
    srv.send_signal(signal.SIGTERM)
    srv.wait_for_log(r"SIGTERM: stopping gracefully")
    assert srv.wait_exit() == 0


def test_sigterm_takes_the_listen_backlog_first(start_server):
    """A worker busy with a request cannot accept; a connection that arrives meanwhile
    waits in the backlog. SIGTERM then must not close the listener under it."""
    srv, mport = start_metrics_server(start_server)
    busy = RawConnection(srv.port)
    busy.send(BLOCKING_HEAD)
    wait_until(lambda: scrape(mport)["fastgw_requests_in_flight"] == 1, 10,
               message="the worker is inside the application")
    waiting = RawConnection(srv.port)  # handshake done by the kernel: in the backlog
    waiting.send(request("GET", "/hello"))
    mark = srv.log_mark()
    srv.send_signal(signal.SIGTERM)
    srv.wait_for_log(r"connections wait in the listen backlog; taking them before stopping",
                     start=mark)
    busy.send(REST_OF_BODY)
    assert busy.read_response().status == 200
    resp = waiting.read_response()
    assert (resp.status, resp.body) == (200, b"Hello, world!\n")
    busy.close()
    waiting.close()
    assert srv.wait_exit() == 0
    refused = socket.socket()
    with pytest.raises(ConnectionRefusedError):
        refused.connect(("127.0.0.1", srv.port))
    refused.close()
