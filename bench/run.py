#!/usr/bin/env python3
"""Benchmark fastgw side by side with the WSGI servers users would pick instead.

    python3 bench/run.py [--rounds N] [--duration S] [--scenarios a,b] [--servers x,y]

Two stages in one command. The first (any python3) installs nginx/wrk from apt
when missing, creates bench/.venv and installs fastgw and the peers there
(setup_env.py); it then re-executes this file with the venv's python for the
second stage, which measures: for each scenario, round after round, every
server in turn (A B C ... A B C ...), each with one worker pinned to CPU 0 and
wrk pinned to CPU 1. Results go to bench/RESULTS.md, bench/results.json and
bench/results.png (report.py). See bench/README.md.

This is a measuring tool, never a test: it asserts nothing about speed.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
VENV = os.path.join(BENCH_DIR, ".venv")
STAGE_ENV = "FASTGW_BENCH_STAGE"
ALL_SERVERS = ["fastgw", "gunicorn-sync", "gunicorn-gthread", "bjoern", "meinheld", "granian",
               "uwsgi", "waitress", "fastwsgi", "flup", "nginx", "mod_wsgi"]


def parse_args(argv=None):
    sys.path.insert(0, BENCH_DIR)
    from scenarios import DEFAULT_SCENARIOS, SCENARIOS
    parser = argparse.ArgumentParser(
        description="Benchmark fastgw against peer WSGI servers (see bench/README.md).")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per scenario; each round runs every server once "
                             "(default 3)")
    parser.add_argument("--duration", type=int, default=5,
                        help="seconds each wrk measurement lasts (default 5)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="seconds of load before each measurement (default 1)")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS),
                        help=f"comma-separated, from: {', '.join(ALL_SERVERS)} (default: all)")
    parser.add_argument("--skip-install", action="store_true",
                        help="reuse bench/.venv as it is (no pip or apt)")
    parser.add_argument("--fastgw-from", choices=["head", "worktree"], default="head",
                        help="build fastgw from the committed HEAD (default) or from the "
                             "working tree as it is")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the scenarios of the results.json in --output that this "
                             "run does not measure (marked with the run they come from)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rewrite RESULTS.md and results.png from the "
                             "results.json in --output")
    parser.add_argument("--output", default=BENCH_DIR,
                        help="directory for RESULTS.md, results.json, results.png "
                             "(default: bench/)")
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    unknown += [s for s in args.servers if s not in ALL_SERVERS]
    if unknown:
        parser.error(f"unknown scenario or server: {', '.join(unknown)}")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds must be >= 1, --duration > 0 and --warmup >= 0")
    return args


# --- stage 1: install ---------------------------------------------------------

def install_then_reexec(args):
    import setup_env
    status = setup_env.prepare(VENV, REPO, skip_install=args.skip_install,
                               fastgw_from=args.fastgw_from)
    if status["apt"]["wrk"]:
        sys.exit("bench: wrk is required: apt-get install -y wrk")
    python = os.path.join(VENV, "bin", "python")
    env = dict(os.environ, **{STAGE_ENV: "measure"})
    os.execve(python, [python, os.path.abspath(__file__), *sys.argv[1:]], env)


# --- stage 2: measure ----------------------------------------------------------

def peer_availability(status, wanted):
    """{server name: None if it can run, else why not} for the servers asked for."""
    from servers import HTTP_SERVERS
    dists = {name: dist for name, (_, dist) in HTTP_SERVERS.items()}
    dists["flup"] = "flup"
    out = {}
    for name in wanted:
        if name == "nginx":
            out[name] = status["apt"]["nginx"] and "unavailable: " + status["apt"]["nginx"]
            continue
        dist = dists[name]
        info = status["fastgw"] if dist == "fastgw" else status["peers"].get(dist, {})
        out[name] = ("unavailable: " + info["unavailable"]) if "unavailable" in info else None
    return out


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"
    return {
        "cpu_model": model, "cores": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "python_impl": platform.python_implementation(),
        "nginx": version(["nginx", "-v"]), "wrk": version(["wrk", "-v"]),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def make_django_site(ctx, status):
    """Make the Django project with the venv's Django, or say why it cannot be made."""
    import django_site
    django = status["peers"].get("django", {"unavailable": "not installed"})
    if "unavailable" in django:
        ctx.django_unavailable = "Django: " + django["unavailable"]
        return
    try:
        ctx.django_site = django_site.make(os.path.join(ctx.scratch, "site"), ctx.python)
    except (RuntimeError, OSError) as e:
        ctx.django_unavailable = f"the Django project could not be made: {e}"


def make_static_files(directory):
    # bytes that vary, so nothing in the path can shortcut a run of one byte
    block = bytes(range(256)) * 16
    with open(os.path.join(directory, "4k.bin"), "wb") as f:
        f.write(block)
    with open(os.path.join(directory, "1m.bin"), "wb") as f:
        f.write(block * 256)
    with open(os.path.join(directory, "64m.bin"), "wb") as f:  # what stalled readers ask for
        f.write(block * (256 * 64))


PROBLEM = re.compile(r"Traceback|\[(?:WARNING|ERROR|CRITICAL)\]|\[(?:error|crit|alert|emerg)\]|"
                     r"Segmentation fault|core dumped|\bDAMN\b|!!! ", re.I)
# what any server may log when wrk stops with responses in flight: counted apart
DISCONNECT = re.compile(r"BrokenPipe|Broken pipe|Connection reset|ECONNRESET|EPIPE|"
                        r"went away|uwsgi_response_write", re.I)


def smoke_check(scenario, host, port, deadline_s=10.0):
    """None, or what was wrong with the answer to one request.

    A server whose port accepts may still be starting its worker (granian's main
    process listens before its worker runs), so a connection error is retried
    until the deadline; a wrong answer is final.
    """
    deadline = time.monotonic() + deadline_s
    delay = 0.01
    while True:
        try:
            return scenario.check(host, port, scenario.path)
        except OSError as e:
            if time.monotonic() > deadline:
                return f"smoke request failed for {deadline_s:g} s: {e}"
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def closed_loop(scenario, url, seconds):
    """wrk as fast as the server answers: each connection sends when answered."""
    from measure import run_wrk, wrk_command
    return run_wrk(wrk_command(url, seconds, scenario.connections, close=scenario.close,
                               script=scenario.script, paths=scenario.paths,
                               cpu=_wrk_cpus(scenario)), timeout=seconds + 60)


def _wrk_cpus(scenario):
    return "1" if scenario.cpus == "0" else scenario.cpus


def fixed_rate(scenario, base_url, seconds, loads):
    """The loads (Paced) at once, one wrk each; wrk's counts summed, and the latency
    from the due time of the first load (the one a scenario reports)."""
    from measure import paced_wrk_command, parse_paced, parse_wrk
    procs = [subprocess.Popen(paced_wrk_command(base_url + load.paths[0], seconds, load.rate,
                                                load.connections, load.paths,
                                                cpu=_wrk_cpus(scenario)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for load in loads]
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=seconds + 60)[0])
        except subprocess.TimeoutExpired:
            proc.kill()
            outputs.append(proc.communicate()[0])
    out = {"raw": "\n".join(outputs), "requests": 0, "rps": 0.0, "bytes_read": 0,
           "non_2xx_3xx": 0, "socket_errors": {}, "loads": {},
           "exit_code": max(p.returncode for p in procs)}
    for load, text in zip(loads, outputs):
        own, paced = parse_wrk(text), parse_paced(text)
        out["loads"][load.label] = dict(paced, rate=load.rate, connections=load.connections,
                                        paths=load.paths, socket_errors=own["socket_errors"],
                                        non_2xx_3xx=own["non_2xx_3xx"])
        for key in ("requests", "rps", "bytes_read", "non_2xx_3xx"):
            out[key] += own[key]
        for kind, n in own["socket_errors"].items():
            out["socket_errors"][kind] = out["socket_errors"].get(kind, 0) + n
    out["latency_ms"] = out["loads"][loads[0].label]["latency_ms"]
    return out


def run_once(scenario, row, args, url_host):
    """Start the row's stack, check one answer, warm up, measure, stop. One result dict."""
    from measure import IdleConnections, StalledReaders, StartError
    from scenarios import Paced
    result = {"scenario": scenario.name, "server": row.server, "ok": False}
    tmp = tempfile.mkdtemp(prefix=f"fastgw-bench-{scenario.name}-")
    stack = row.build(tmp)
    result["commands"] = stack.commands
    idle = stalled = None
    try:
        try:
            stack.start()
        except StartError as e:
            result["error"] = f"did not start: {e}"
            return result
        base = f"http://{url_host}:{stack.port}"
        url = base + scenario.path
        problem = smoke_check(scenario, url_host, stack.port)
        if problem:
            result["error"] = f"wrong answer before the run: {problem}"
            return result
        log_marks = {name: len(text) for name, text in stack.logs().items()}
        if scenario.idle:
            idle = IdleConnections(url_host, stack.port, scenario.idle, scenario.path)
        if scenario.stalled:
            stalled = StalledReaders(url_host, stack.port, scenario.stalled,
                                     scenario.stalled_path)
        if scenario.fixed:
            wrk = lambda seconds: fixed_rate(scenario, base, seconds, scenario.fixed)
        else:
            wrk = lambda seconds: closed_loop(scenario, url, seconds)
        if args.warmup > 0:
            wrk(args.warmup)
        tree_before = stack.pids()
        user0, sys0 = stack.cpu()
        measured = wrk(args.duration)
        user1, sys1 = stack.cpu()
        tree_after = stack.pids()
        workers_rss, total_rss = stack.rss()
        result.update({k: measured[k] for k in ("requests", "rps", "latency_ms",
                                                  "socket_errors", "non_2xx_3xx",
                                                  "bytes_read", "exit_code")})
        result["wrk_output"] = measured["raw"]
        if "loads" in measured:
            result["loads"] = measured["loads"]
        if scenario.paced and measured["rps"] > 0:
            load = Paced("paced", scenario.paths or [scenario.path],
                         round(measured["rps"] * scenario.paced, 1), scenario.paced_connections)
            paced = fixed_rate(scenario, base, args.duration, [load])
            result["paced"] = dict(paced["loads"]["paced"], fraction=scenario.paced,
                                   wrk_output=paced["raw"], exit_code=paced["exit_code"])
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        requests = max(measured["requests"], 1)
        result.update({
            "cpu_user_us_per_req": (user1 - user0) * tick_us / requests,
            "cpu_sys_us_per_req": (sys1 - sys0) * tick_us / requests,
            "cpu_us_per_req": (user1 - user0 + sys1 - sys0) * tick_us / requests,
            "cpu_seconds": (user1 - user0 + sys1 - sys0) * tick_us / 1e6,
            "rss_worker_kib": max(workers_rss) if workers_rss else None,
            "rss_total_kib": total_rss,
            "process_tree": stack.describe_tree(),
        })
        gone, new = set(tree_before) - set(tree_after), set(tree_after) - set(tree_before)
        if gone or new:
            result["tree_changed"] = (f"processes exited during the run: {sorted(gone)}; "
                                      f"new: {sorted(new)}")
        if idle:
            result["idle"] = {"requested": scenario.idle, "answered": idle.answered,
                              "unanswered": idle.pending, "refused": idle.refused,
                              "open_at_end": idle.still_open()}
        if stalled:
            result["stalled"] = {"requested": scenario.stalled, "started": stalled.started,
                                 "open_at_end": stalled.still_open()}
        exited = stack.exited()
        if exited:
            result["exited"] = exited
        problems, disconnects = [], 0
        for name, text in stack.logs().items():
            for line in text[log_marks.get(name, 0):].splitlines():
                if DISCONNECT.search(line):
                    disconnects += 1
                elif PROBLEM.search(line):
                    problems.append(f"{name}: {line.strip()[:300]}")
        result["log_problems"] = problems[:20]
        result["log_problem_count"] = len(problems)
        result["log_disconnects"] = disconnects
        result["ok"] = measured["requests"] > 0 and measured["exit_code"] == 0
        if not result["ok"]:
            result["error"] = (f"wrk completed no requests in {args.duration} s (exit "
                               f"{measured['exit_code']}, socket errors "
                               f"{measured['socket_errors']})")
            if idle:
                result["error"] += (f"; of {scenario.idle} idle connections the server had "
                                    f"answered {idle.answered} within 10 s")
        return result
    except Exception as e:          # one broken row must not end the whole run
        result["error"] = f"harness error: {type(e).__name__}: {e}"
        return result
    finally:
        if idle:
            idle.close()
        if stalled:
            stalled.close()
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args):
    sys.path.insert(0, BENCH_DIR)
    import report
    from servers import Context, fastgw_features

    with open(os.path.join(VENV, "bench-status.json")) as f:
        status = json.load(f)
    peers = peer_availability(status, args.servers)
    earlier = earlier_results(args.output) if args.keep_others else None
    scratch = tempfile.mkdtemp(prefix="fastgw-bench-")
    os.chmod(scratch, 0o755)          # mod_wsgi's processes run as www-data
    try:
        static_dir = os.path.join(scratch, "static")
        os.mkdir(static_dir)
        make_static_files(static_dir)
        ctx = Context(bench_dir=BENCH_DIR, venv_bin=os.path.join(VENV, "bin"),
                      static_dir=static_dir, scratch=scratch)
        if {"django", "django_2w"} & set(args.scenarios):
            make_django_site(ctx, status)
        features = fastgw_features(ctx) if peers.get("fastgw", "x") is None else set()
        data = {"machine": machine_info(), "install": status,
                "fastgw_features": sorted(features),
                "settings": {"rounds": args.rounds, "duration_s": args.duration,
                             "warmup_s": args.warmup, "wrk": "taskset -c 1 wrk -t1 -c50 "
                             f"-d{args.duration:g}s --latency", "server_cpu": "taskset -c 0",
                             "argv": sys.argv[1:]},
                "scenarios": []}
        started = time.monotonic()
        with contextlib.ExitStack() as opened:
            if peers.get("mod_wsgi", "x") is None and os.geteuid() == 0:
                import setup_env
                dirs = opened.enter_context(setup_env.python_reachable_by_others())
                if dirs:
                    status["peers"]["mod_wsgi"]["note"] = (
                        "its processes run as www-data: during the run, others could "
                        f"search {', '.join(dirs)} to reach the Python installation")
            run_scenarios(args, ctx, peers, features, data, started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    data["elapsed_s"] = round(time.monotonic() - started, 1)
    data["machine"]["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    if args.keep_others:
        keep_other_scenarios(data, earlier)
    report.write_all(data, args.output)
    print(f"wrote {os.path.join(args.output, 'RESULTS.md')}, results.json, results.png "
          f"in {data['elapsed_s']:.0f} s")


def run_scenarios(args, ctx, peers, features, data, started):
    """Round after round, every row of each scenario in turn; results.json after each."""
    import report
    from scenarios import SCENARIOS
    for name in args.scenarios:
        scenario = SCENARIOS[name](ctx, peers, features)
        entry = {"name": scenario.name, "title": scenario.title, "notes": scenario.notes,
                 "unavailable": {r.server: r.unavailable for r in scenario.rows
                                 if r.unavailable},
                 "runs": []}
        data["scenarios"].append(entry)
        rows = [r for r in scenario.rows if not r.unavailable]
        for r in scenario.rows:
            if r.unavailable:
                print(f"{scenario.name:12} {r.server:32} {r.unavailable}", flush=True)
        for round_no in range(1, args.rounds + 1):
            for row in rows:
                result = run_once(scenario, row, args, "127.0.0.1")
                result["round"] = round_no
                entry["runs"].append(result)
                print(_progress_line(result, time.monotonic() - started), flush=True)
        report.write_json(data, args.output)     # keep what is done if a later one dies


def _progress_line(r, elapsed):
    head = f"[{elapsed:6.0f}s] {r['scenario']:12} round {r['round']} {r['server']:32}"
    if not r["ok"]:
        return f"{head} FAILED: {r.get('error', '')[:300]}"
    errors = sum(r["socket_errors"].values())
    text = (f"{head} {r['rps']:>10,.0f} req/s  p99 {r['latency_ms'].get('99', 0):7.2f} ms  "
            f"cpu {r['cpu_us_per_req']:6.1f} us/req  rss {r['rss_worker_kib'] or 0:>7} KiB")
    if errors or r["non_2xx_3xx"]:
        text += f"  socket errors {r['socket_errors']} non-2xx {r['non_2xx_3xx']}"
    if "idle" in r:
        text += f"  idle open {r['idle']['open_at_end']}/{r['idle']['requested']}"
    if "stalled" in r:
        text += (f"  stalled readers answered {r['stalled']['started']}, "
                 f"open {r['stalled']['open_at_end']}/{r['stalled']['requested']}")
    if r.get("log_problem_count"):
        text += f"  log problems {r['log_problem_count']}"
    if r.get("tree_changed"):
        text += f"  {r['tree_changed']}"
    return text


def earlier_results(out_dir):
    """The previous results.json, read before this run overwrites it (it is rewritten
    after each scenario), or None."""
    path = os.path.join(out_dir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def keep_other_scenarios(data, old):
    """Put the scenarios of the previous results (`old`) that this run did not measure
    first, each marked with the date and fastgw commit of the run that measured it."""
    if old is None:
        return
    measured = {sc["name"] for sc in data["scenarios"]}
    kept = []
    for sc in old.get("scenarios", []):
        if sc["name"] in measured:
            continue
        sc.setdefault("from_run", f"{old['machine']['date']}, fastgw "
                                  f"{old['install']['git']['commit']}")
        kept.append(sc)
    data["scenarios"] = kept + data["scenarios"]


def rewrite_report(args):
    import report
    with open(os.path.join(args.output, "results.json")) as f:
        data = json.load(f)
    data.pop("summary", None)
    report.write_all(data, args.output)
    print(f"rewrote {os.path.join(args.output, 'RESULTS.md')} and results.png")


def main():
    args = parse_args()
    if args.report_only and (os.environ.get(STAGE_ENV) == "measure" or not os.path.exists(
            os.path.join(VENV, "bin", "python"))):
        rewrite_report(args)       # the chart needs the venv's matplotlib, if there is one
    elif args.report_only:
        python = os.path.join(VENV, "bin", "python")
        env = dict(os.environ, **{STAGE_ENV: "measure"})
        os.execve(python, [python, os.path.abspath(__file__), *sys.argv[1:]], env)
    elif os.environ.get(STAGE_ENV) == "measure":
        measure(args)
    else:
        install_then_reexec(args)


if __name__ == "__main__":
    main()
