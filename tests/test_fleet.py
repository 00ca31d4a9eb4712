"""A fleet: three fastgw nodes behind a real nginx, configured by examples/nginx/fastgw.conf
(its upstream pointed at the nodes, its listener at a UNIX socket). While a bounded load
runs through nginx, each node in turn gets SIGTERM (its /readyz turns 503 while it drains)
and is started again on its port: the client sees no failed request. Then the nodes'
metrics count exactly the requests sent through nginx.
"""
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from fgwtest import RawConnection, http_request, request, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX_EXAMPLE = os.path.join(ROOT, "examples", "nginx", "fastgw.conf")
METRICS_RE = r"Metrics, /healthz and /readyz at: http://127\.0\.0\.1:(\d+)"
NODE_ARGS = ("--drain-seconds", "2", "--graceful-timeout", "10", "--metrics", "127.0.0.1:0",
             "--forwarded-allow-ips", "127.0.0.1")
MAX_LOAD_REQUESTS = 200000
MAX_LOAD_SECONDS = 60.0


def find_nginx():
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    return path if os.path.exists(path) else None


class Node:
    def __init__(self, start_server, port=0):
        bind = "127.0.0.1:%d" % port
        self.srv = start_server("wsgiapp:application", "--bind", bind, *NODE_ARGS,
                                default_bind=False)
        self.port = self.srv.port
        self.metrics = int(self.srv.wait_for_log(METRICS_RE).group(1))
        wait_until(lambda: self.readyz() == 200, 15, message="node ready")

    def readyz(self):
        return http_request(self.metrics, "GET", "/readyz").status

    def served(self):
        text = http_request(self.metrics, "GET", "/metrics").body.decode()
        return int(float(re.search(r"^fastgw_request_duration_seconds_count (\S+)$", text,
                                   re.M).group(1)))


class Nginx:
    def __init__(self, tmp_path, ports):
        nginx = find_nginx()
        self.socket = str(tmp_path / "nginx.sock")
        text = open(NGINX_EXAMPLE, encoding="utf-8").read()
        servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+ [^;]*;$", text, re.M)
        assert len(servers) == 3, "the example's upstream lists three nodes"
        for line, port in zip(servers, ports):
            text = text.replace(line, re.sub(r":\d+ ", ":%d " % port, line), 1)
        text = re.sub(r"listen \d+;", "listen unix:%s;" % self.socket, text)
        site = tmp_path / "site.conf"
        site.write_text(text, encoding="utf-8")
        temp = tmp_path / "nginx-temp"
        temp.mkdir()
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = tmp_path / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
""", encoding="utf-8")
        self.proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-g",
                                      "daemon off;"], stdin=subprocess.DEVNULL)
        wait_until(self.answers, 15, message="nginx answering on " + self.socket)

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("nginx exited with %s" % self.proc.returncode)
        try:
            with RawConnection(unix_path=self.socket) as conn:
                return conn.roundtrip(request("GET", "/hello")).status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Load(threading.Thread):
    """GET requests through nginx on a kept-alive connection until told to stop."""

    def __init__(self, socket_path, name):
        super().__init__(daemon=True, name=name)
        self.socket_path = socket_path
        self.stopping = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        conn = None
        while (not self.stopping.is_set() and self.ok + len(self.failures) < MAX_LOAD_REQUESTS
               and time.monotonic() < deadline):
            try:
                if conn is None:
                    conn = RawConnection(unix_path=self.socket_path)
                resp = conn.roundtrip(request("GET", "/hello?n=%d" % self.ok))
                if resp.status == 200 and resp.body == b"Hello, world!\n":
                    self.ok += 1
                else:
                    self.failures.append("%d %r" % (resp.status, resp.body[:100]))
                if resp.header("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, AssertionError) as e:
                self.failures.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def test_rolling_restart_behind_nginx_loses_no_request(start_server, tmp_path):
    if find_nginx() is None:
        pytest.skip("nginx is not installed")
    nodes = [Node(start_server) for _ in range(3)]
    nginx = Nginx(tmp_path, [node.port for node in nodes])
    try:
        check_fleet(start_server, nodes, nginx)
    finally:
        nginx.stop()
    # stop the fleet at once: SIGTERM starts the drains, a second one ends them
    for node in nodes:
        node.srv.send_signal(signal.SIGTERM)
    for node in nodes:
        node.srv.wait_for_log(r"SIGTERM: draining")
        node.srv.send_signal(signal.SIGTERM)
    for node in nodes:
        assert node.srv.wait_exit() == 0


def check_fleet(start_server, nodes, nginx):
    loads = [Load(nginx.socket, "load-%d" % i) for i in range(2)]
    try:
        for load in loads:
            load.start()
        wait_until(lambda: all(load.ok >= 50 for load in loads) or any(
            load.failures for load in loads), 30, message="load running")
        for i, node in enumerate(nodes):
            before = sum(load.ok for load in loads)
            mark = node.srv.log_mark()
            node.srv.send_signal(signal.SIGTERM)
            node.srv.wait_for_log(r"SIGTERM: draining for 2 s", start=mark)
            # readiness turns 503 at once, while the node goes on serving
            assert node.readyz() == 503
            assert node.srv.wait_exit() == 0, node.srv.log_text()
            nodes[i] = Node(start_server, node.port)
            # the load went on meanwhile
            wait_until(lambda: sum(load.ok for load in loads) > before + 50, 30,
                       message="requests after restarting node %d" % i)
    finally:
        for load in loads:
            load.stopping.set()
        for load in loads:
            load.join(30)
    failures = [f for load in loads for f in load.failures]
    total = sum(load.ok for load in loads)
    print("fleet: %d requests through nginx during the rolling restart" % total)
    assert not failures, "%d of %d requests failed: %r" % (len(failures), total, failures[:5])
    assert total > 300
    # the metrics of the nodes count exactly what went through nginx
    served_before = sum(node.served() for node in nodes)
    sent = 60
    with RawConnection(unix_path=nginx.socket) as conn:
        for n in range(sent):
            assert conn.roundtrip(request("GET", "/hello?count=%d" % n)).status == 200
    wait_until(lambda: sum(node.served() for node in nodes) - served_before == sent, 10,
               message="%d requests counted by the nodes" % sent)
