"""bench/pace.lua and bench/paths.lua under a real wrk against a real fastgw.

pace.lua is what the application benchmarks' latencies at a fixed rate come
from, so these check its two promises: the rate it is given is the rate it
sends (it neither floods nor falls behind a server that keeps up), and a
request held back by a stall is charged from the time it was due, which is
what separates it from a closed-loop measurement (coordinated omission). The
app is the benchmark's own `bench_apps:mixed`, whose /slow waits 200 ms; with
one worker thread (--threads 1, the app inline) that stall holds back every
request due meanwhile. paths.lua, the closed-loop mix of the django scenario,
must send its paths in turn. Bounds are about counts and about 200 ms stalls
against 10 ms intervals, never about speed.
"""
import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)

import measure  # noqa: E402  (bench/ is not a package)

if shutil.which("wrk") is None:  # pragma: no cover - .ci/run installs it
    if os.environ.get("CI") == "true":
        pytest.fail("wrk is not installed (apt-get install wrk; .ci/run does)", pytrace=False)
    pytest.skip("wrk is not installed", allow_module_level=True)


def serve(start_server, tmp_path, *extra):
    log = tmp_path / "access.log"
    srv = start_server("bench_apps:mixed", "--access-log", str(log), *extra, chdir=BENCH)
    return srv, log


def paced(port, seconds, rate, connections, paths):
    argv = measure.paced_wrk_command(f"http://127.0.0.1:{port}{paths[0]}", seconds, rate,
                                     connections, paths, cpu=_all_cpus())
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = measure.parse_paced(proc.stdout)
    assert out["answers"] > 0, proc.stdout
    return out, proc.stdout


def _all_cpus():
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def logged_paths(log, count):
    """The request paths of the access log, once it holds `count` lines."""
    from fgwtest import wait_until
    wait_until(lambda: len(log.read_text().splitlines()) >= count, timeout=10,
               message=f"{count} access log lines")
    return Counter(line.split('"')[1].split()[1].split("?")[0]
                   for line in log.read_text().splitlines())


def test_pace_sends_at_the_rate_asked_on_every_connection(start_server, tmp_path):
    srv, log = serve(start_server, tmp_path)
    out, text = paced(srv.port, 2, 200, 4, ["/a", "/b"])
    assert out["target_rps"] == 200.0
    # 4 schedules of 50/s: 200/s fall due while wrk runs, plus the first of each
    # schedule and one that wrk's millisecond timer lets out early at the end; a
    # server that keeps up answers nearly all. Unpaced, wrk would send thousands.
    assert 200 <= out["answers"] <= 200 * out["seconds"] + 2 * 4, text
    paths = logged_paths(log, out["answers"])
    # each connection sends /a and /b in turn
    assert abs(paths["/a"] - paths["/b"]) <= 4, paths
    assert set(paths) == {"/a", "/b"}, paths


def test_pace_counts_a_stall_against_every_request_it_held_back(start_server, tmp_path):
    srv, _ = serve(start_server, tmp_path, "--threads", "1")
    # 100 requests a second on one connection; every 50th waits 200 ms, which
    # holds back the ~20 due meanwhile: ~10% of all are then 100 ms late or more.
    # Measured from when each was sent, only the 2% that waited would be slow.
    out, text = paced(srv.port, 2, 100, 1, ["/"] * 49 + ["/slow"])
    assert out["latency_ms"]["90"] >= 80, text
    assert out["latency_ms"]["99"] >= 150, text
    assert out["latency_ms"]["100"] >= 199, text
    # with the stalls gone, the same load is answered on time
    calm, text = paced(srv.port, 2, 100, 1, ["/"])
    assert calm["latency_ms"]["90"] < 80, text


def test_pace_rejects_a_missing_rate(start_server, tmp_path):
    srv, _ = serve(start_server, tmp_path)
    argv = measure.paced_wrk_command(f"http://127.0.0.1:{srv.port}/", 1, 10, 1)
    argv[argv.index("--") + 1] = "fast"
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert "pace.lua: usage" in proc.stdout + proc.stderr


def test_paths_lua_sends_its_paths_in_turn(start_server, tmp_path):
    srv, log = serve(start_server, tmp_path)
    argv = measure.wrk_command(f"http://127.0.0.1:{srv.port}/", 1, connections=2,
                               cpu=_all_cpus(), paths=["/x", "/y", "/y"])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = measure.parse_wrk(proc.stdout)["requests"]
    assert done > 10, proc.stdout
    paths = logged_paths(log, done)
    assert set(paths) == {"/x", "/y"}, paths
    # one Lua state for the thread: /x, /y, /y over and over, whichever connection
    assert abs(2 * paths["/x"] - paths["/y"]) <= 4, paths


def test_fixed_rate_loads_run_side_by_side(start_server, tmp_path):
    """The harness's `mixed` measurement: fast and slow loads at once, each with its
    own latencies, against 8 threads, so the slow ones do not hold the fast ones."""
    import run
    import scenarios
    srv, _ = serve(start_server, tmp_path, "--threads", "8")
    sc = scenarios.Scenario("t", "t", [], cpus=_all_cpus())
    out = run.fixed_rate(sc, f"http://127.0.0.1:{srv.port}", 2,
                         [scenarios.Paced("fast", ["/"], 100, 4),
                          scenarios.Paced("slow", ["/slow"], 10, 4)])
    assert out["exit_code"] == 0, out["raw"]
    slow, fast = out["loads"]["slow"], out["loads"]["fast"]
    assert slow["latency_ms"]["50"] >= 199, out["raw"]
    assert fast["latency_ms"]["50"] < 100, out["raw"]
    assert out["latency_ms"] == fast["latency_ms"]
    assert out["requests"] == fast["answers"] + slow["answers"] > 0
