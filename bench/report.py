"""Turn the runs into bench/results.json, bench/RESULTS.md and bench/results.png.

Each row of a scenario is summarised over its rounds: the median, min and max
of req/s, the medians of the latency percentiles, CPU per request and RSS, and
every error wrk or the server's log showed, summed. fastgw's ratios are taken
between medians: req/s (fastgw ÷ peer, above 1 means fastgw served more) and
requests per server CPU-second (peer's CPU µs/request ÷ fastgw's, above 1
means fastgw spent less CPU per request). The application scenarios' extras
(latency at a fixed rate, targets, scaling with workers) are in report_apps.py.
The chart puts each scenario's req/s and CPU µs per request side by side: with
one wrk thread the fastest servers' req/s meet the same ceiling, and CPU per
request still tells them apart.
"""
import json
import os
import statistics

import report_apps


def write_json(data, out_dir):
    data = dict(data, summary=summarise(data))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1, sort_keys=False)
    os.replace(path + ".tmp", path)


def write_all(data, out_dir):
    write_json(data, out_dir)
    summary = summarise(data)
    with open(os.path.join(out_dir, "RESULTS.md"), "w") as f:
        f.write(markdown(data, summary))
    try:
        chart(summary, os.path.join(out_dir, "results.png"))
    except ImportError as e:
        print(f"no chart: {e} (pip install matplotlib into bench/.venv)")


# --- summary ---------------------------------------------------------------------

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(data):
    """{scenario: {"rows": [row summary...], "unavailable": {...}}}, rows in run order."""
    out = {}
    for sc in data["scenarios"]:
        rows = {}
        for run in sc["runs"]:
            rows.setdefault(run["server"], []).append(run)
        summaries = [summarise_row(server, runs) for server, runs in rows.items()]
        fast = next((s for s in summaries if is_fastgw(s["server"]) and s["rounds_ok"]), None)
        for s in summaries:
            if fast and s is not fast and s["rounds_ok"]:
                s["fastgw_rps_ratio"] = fast["rps_median"] / s["rps_median"] \
                    if s["rps_median"] else None
                s["fastgw_cpu_ratio"] = s["cpu_us_per_req"] / fast["cpu_us_per_req"] \
                    if fast["cpu_us_per_req"] else None
        notes = sc.get("notes", [])
        if sc.get("from_run"):
            notes = [f"Kept from an earlier run ({sc['from_run']}; `--keep-others`): "
                     "compare its rows with each other, not with this run's."] + notes
        out[sc["name"]] = {"title": sc["title"], "notes": notes, "from_run": sc.get("from_run"),
                           "rows": summaries, "unavailable": sc.get("unavailable", {})}
    return out


def is_fastgw(server):
    return server == "fastgw" or server.startswith("nginx → fastgw")


def summarise_row(server, runs):
    ok = [r for r in runs if r["ok"]]
    rps = [r["rps"] for r in ok]
    s = {"server": server, "rounds": len(runs), "rounds_ok": len(ok),
         "failures": [r.get("error", "") for r in runs if not r["ok"]],
         "commands": runs[0].get("commands", [])}
    if ok:
        s.update({
            "rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "rps_all": rps,
            "p50_ms": _median([r["latency_ms"].get("50") for r in ok]),
            "p99_ms": _median([r["latency_ms"].get("99") for r in ok]),
            "cpu_us_per_req": _median([r["cpu_us_per_req"] for r in ok]),
            "cpu_user_us_per_req": _median([r["cpu_user_us_per_req"] for r in ok]),
            "cpu_sys_us_per_req": _median([r["cpu_sys_us_per_req"] for r in ok]),
            "rss_worker_kib": _median([r["rss_worker_kib"] for r in ok]),
            "rss_total_kib": _median([r["rss_total_kib"] for r in ok]),
        })
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    for r in ok:
        for k, v in r["socket_errors"].items():
            errors[k] += v
    s["socket_errors"] = errors
    s["non_2xx_3xx"] = sum(r["non_2xx_3xx"] for r in ok)
    s["requests_total"] = sum(r["requests"] for r in ok)
    s["log_problems"] = sorted({p for r in runs for p in r.get("log_problems", [])})[:10]
    s["log_problem_count"] = sum(r.get("log_problem_count", 0) for r in runs)
    s["log_disconnects"] = sum(r.get("log_disconnects", 0) for r in runs)
    s["tree_changes"] = [r["tree_changed"] for r in runs if r.get("tree_changed")]
    s["exited"] = [r["exited"] for r in runs if r.get("exited")]
    report_apps.summarise_extra(s, ok)
    idle = [r["idle"] for r in ok if "idle" in r]
    if idle:
        s["idle_open_at_end"] = [i["open_at_end"] for i in idle]
        s["idle_answered"] = [i["answered"] for i in idle]
    return s


# --- markdown --------------------------------------------------------------------

def _num(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


def _ms(v):
    if v is None:
        return "–"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def _ratio(v):
    return "–" if v is None else f"{v:.2f}×"


def _mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def markdown(data, summary):
    m, st = data["machine"], data["settings"]
    inst = data["install"]
    command = " ".join(["python3 bench/run.py", *st["argv"]])
    lines = ["# fastgw benchmark results", "",
             f"Produced by `{command}` (see [README.md](README.md)). Absolute numbers depend on this machine and on "
             "whatever else ran on it; the ratios between servers measured in the same run "
             "are the result.", "", "![req/s per scenario](results.png)", "",
             "## Machine and run", "",
             f"- CPU: {m['cpu_model']}, {m['cores']} cores; kernel {m['kernel']}",
             f"- Python {m['python']} ({m['python_impl']}); {m['nginx']}; {m['wrk']}",
             f"- Date: {m['date']}; load average at start: {' '.join(m['loadavg_at_start'])}"
             + (f", at the end: {' '.join(m['loadavg_at_end'])}" if m.get("loadavg_at_end")
                else "") + "; "
             f"whole run took {data.get('elapsed_s', 0):.0f} s",
             f"- fastgw {inst['fastgw'].get('version', '?')} built from commit "
             f"{inst['git']['commit']}" + (
                 f" plus the working tree's uncommitted changes to "
                 f"{', '.join(inst['git']['uncommitted'])}"
                 if inst['fastgw'].get('source') == "worktree" and inst['git']['uncommitted']
                 else " (the committed tree)"),
             f"- Each server: one worker process, `{st['server_cpu']}` (the whole process "
             f"tree). Load: `{st['wrk']}` (wrk on the other CPU); `hello_2w` and `django_2w`: "
             "two worker processes, server and wrk both on CPUs 0 and 1. "
             f"{st['rounds']} rounds; in "
             f"each round every server runs once, in turn, after {st['warmup_s']:g} s of "
             "warm-up load.",
             "- CPU µs/request: utime+stime of every process of the server (from "
             "/proc/PID/stat, reaped children included) during the measured run, divided by "
             "the requests wrk completed. RSS: VmRSS of the worker process after the run.",
             "- Ratios are fastgw ÷ peer between medians: **req/s** (above 1: fastgw served "
             "more) and **requests per CPU-second** (peer's CPU/request ÷ fastgw's; above 1: "
             "fastgw spent less CPU per request).", ""]
    lines += ["## Peers", "", "| peer | version | note |", "|---|---|---|"]
    for dist, info in inst["peers"].items():
        if "unavailable" in info:
            lines.append(f"| {dist} | unavailable | {info['unavailable']} |")
        else:
            lines.append(f"| {dist} | {info.get('version')} | {info.get('note', '')} |")
    for tool, why in inst["apt"].items():
        lines.append(f"| {tool} (apt) | {'unavailable' if why else 'installed'} | {why or ''} |")
    lines.append("")

    from scenarios import DEFAULT_SCENARIOS
    unmeasured = [n for n in DEFAULT_SCENARIOS if n not in summary]
    if unmeasured:
        lines += [f"Not measured in this run: {', '.join(f'`{n}`' for n in unmeasured)}.", ""]
    lines += headline(summary)
    for name, sc in summary.items():
        lines += scenario_section(name, sc)
    lines += problems_section(summary)
    lines += commands_section(summary)
    return "\n".join(lines) + "\n"


def headline(summary):
    measured = [n for n, sc in summary.items() if _fast_row(sc)]
    peers = []
    for name in measured:
        for row in summary[name]["rows"]:
            if not is_fastgw(row["server"]) and row["server"] not in peers:
                peers.append(row["server"])
    out = ["## Headline: fastgw ÷ each peer", "",
           "Each cell: **req/s ratio / requests-per-CPU-second ratio** (between medians). "
           "Above 1 is better for fastgw. With one wrk thread as the load, req/s of the "
           "fastest servers is capped by wrk and by whatever else runs on the machine; "
           "CPU per request is the steadier comparison.", "",
           "| peer | " + " | ".join(f"`{n}`" for n in measured) + " |",
           "|---|" + "---|" * len(measured)]
    for peer in peers:
        cells = []
        for name in measured:
            r = next((r for r in summary[name]["rows"] if r["server"] == peer), None)
            if r is None:
                cells.append("")
            elif not r["rounds_ok"]:
                cells.append("peer failed")
            else:
                cpu = r.get("fastgw_cpu_ratio")
                cells.append(f"{r['fastgw_rps_ratio']:.2f} / " +
                             (f"{cpu:.2f}" if cpu is not None else "–"))
        out.append(f"| {peer} | " + " | ".join(cells) + " |")
    for name, sc in summary.items():
        if name not in measured:
            why = next((v for k, v in sc["unavailable"].items() if is_fastgw(k)), None)
            fast = next((r for r in sc["rows"] if is_fastgw(r["server"])), None)
            if why is None and fast is not None:
                why = "failed: " + _first(fast["failures"])
            out += ["", f"`{name}`: no fastgw result — {why or 'fastgw not selected'}."]
    if "idle1000" in summary and "hello" in summary:
        f_idle = _fast_row(summary["idle1000"])
        f_hello = _fast_row(summary["hello"])
        if f_idle and f_hello:
            out += ["", "fastgw with 1,000 idle connections (`idle1000`) ÷ fastgw without them "
                        f"(`hello`): req/s {f_idle['rps_median'] / f_hello['rps_median']:.2f}×, "
                        "requests per CPU-second "
                        f"{f_hello['cpu_us_per_req'] / f_idle['cpu_us_per_req']:.2f}×"]
    if "hello" in summary:
        rss = {r["server"]: r.get("rss_worker_kib") for r in summary["hello"]["rows"]}
        if rss.get("fastgw"):
            others = ", ".join(f"{k} {_mib(v)}" for k, v in rss.items()
                               if k != "fastgw" and v is not None)
            out += ["", f"RSS per worker after `hello`: **fastgw {_mib(rss['fastgw'])}**; "
                        f"{others}"]
    out.append("")
    return out + report_apps.targets(summary, is_fastgw) + report_apps.scaling(summary,
                                                                               is_fastgw)


def _fast_row(sc):
    return next((r for r in sc["rows"] if is_fastgw(r["server"]) and r["rounds_ok"]), None)


def scenario_section(name, sc):
    out = [f"## `{name}`: {sc['title']}", ""]
    out += ["| server | req/s median (min–max) | p50 | p99 | CPU µs/req (user+sys) | user | "
            "sys | RSS/worker | fastgw ÷ (req/s) | fastgw ÷ (req/CPU-s) | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sc["rows"]:
        if not r["rounds_ok"]:
            out.append(f"| {r['server']} | failed: {_first(r['failures'])} | | | | | | | | | |")
            continue
        rng = f"{_num(r['rps_median'])} ({_num(r['rps_min'])}–{_num(r['rps_max'])})"
        if r["rounds_ok"] < r["rounds"]:
            rng += f" [{r['rounds_ok']}/{r['rounds']} rounds]"
        out.append(
            f"| {'**' + r['server'] + '**' if is_fastgw(r['server']) else r['server']} | {rng} | "
            f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_num(r['cpu_us_per_req'], '{:.1f}')} | "
            f"{_num(r['cpu_user_us_per_req'], '{:.1f}')} | "
            f"{_num(r['cpu_sys_us_per_req'], '{:.1f}')} | {_mib(r['rss_worker_kib'])} | "
            f"{_ratio(r.get('fastgw_rps_ratio'))} | {_ratio(r.get('fastgw_cpu_ratio'))} | "
            f"{_errors_cell(r)} |")
    for server, why in sc["unavailable"].items():
        out.append(f"| {server} | {why} | | | | | | | | | |")
    out.append("")
    out += report_apps.fixed_rate_tables(name, sc, is_fastgw)
    idle_rows = [r for r in sc["rows"] if r.get("idle_open_at_end")]
    if idle_rows:
        out += ["Idle connections (answered before the run / still open at its end, per "
                "round): " + "; ".join(
                    f"{r['server']} {'/'.join(map(str, r['idle_answered']))} → "
                    f"{'/'.join(map(str, r['idle_open_at_end']))}" for r in idle_rows), ""]
    for note in sc["notes"]:
        out += [note, ""]
    return out


def _errors_cell(r):
    parts = [f"{k} {v:,}" for k, v in r["socket_errors"].items() if v]
    if r["non_2xx_3xx"]:
        parts.append(f"non-2xx {r['non_2xx_3xx']:,}")
    if r["log_problem_count"]:
        parts.append(f"log {r['log_problem_count']}")
    if r["tree_changes"]:
        parts.append("process died")
    return ", ".join(parts)


def _first(items):
    return (items[0] if items else "").replace("|", "/")[:300]


def problems_section(summary):
    out = ["## Errors and misbehaviour seen", "",
           "wrk's socket errors and non-2xx/3xx counts are summed over the rounds. uWSGI's "
           "`--http-socket` closes the connection after every response without saying "
           "`Connection: close`, which wrk counts as a read error per request; gunicorn's "
           "sync worker also closes every connection but announces it.", ""]
    any_problem = False
    for name, sc in summary.items():
        for r in sc["rows"]:
            items = []
            errs = {k: v for k, v in r["socket_errors"].items() if v}
            if errs:
                items.append(f"socket errors {errs} in {r['requests_total']:,} requests")
            if r["non_2xx_3xx"]:
                items.append(f"{r['non_2xx_3xx']:,} non-2xx/3xx responses")
            if r["failures"]:
                kinds = {}
                for f in r["failures"]:
                    kinds[f[:300]] = kinds.get(f[:300], 0) + 1
                items.append(f"{len(r['failures'])} of {r['rounds']} rounds failed: " + "; ".join(
                    f + (f" (×{n})" if n > 1 else "") for f, n in kinds.items()))
            if r["tree_changes"]:
                items.append("; ".join(r["tree_changes"]))
            if r["exited"]:
                items.append(f"exited during the run: {r['exited']}")
            if r["log_problem_count"]:
                items.append(f"{r['log_problem_count']} problem lines in its log during load, "
                             "e.g. " + " ‖ ".join(p.replace("|", "/")[:200]
                                                  for p in r["log_problems"][:3]))
            if r.get("log_disconnects"):
                items.append(f"{r['log_disconnects']} log lines about clients that went away "
                             "(wrk closing connections with responses in flight when it "
                             "stops; not counted as problems)")
            if items:
                any_problem = True
                out.append(f"- `{name}` {r['server']}: " + "; ".join(items))
    if not any_problem:
        out.append("- none")
    return out + [""]


def commands_section(summary):
    out = ["## Exact commands", "",
           "Each line is one process of the row, started in this order; wrk runs as "
           "`taskset -c 1 wrk -t1 -c50 -dDURATIONs --latency URL` (plus `-H 'Connection: "
           "close'` for hello_close, `-s bench/post1m.lua` for post1m, `-c100` for "
           "blocking_io, `-s bench/paths.lua URL -- PATH...` for the django mix); the "
           "fixed-rate runs as `wrk -tN -cN -dDURATIONs --latency -s bench/pace.lua URL -- "
           "RATE N [PATH...]`.", ""]
    for name, sc in summary.items():
        out += [f"<details><summary><code>{name}</code></summary>", "", "```"]
        for r in sc["rows"]:
            out.append(f"# {r['server']}")
            out += r["commands"]
        out += ["```", "", "</details>", ""]
    return out


# --- chart ---------------------------------------------------------------------------

def chart(summary, path):
    """One line per scenario: req/s (median, min–max) on the left, server CPU µs per
    request on the right; failed and unavailable rows as empty bars with the reason."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import textwrap
    panels = [(n, sc) for n, sc in summary.items() if sc["rows"] or sc["unavailable"]]
    if not panels:
        return
    heights = [max(len(sc["rows"]) + len(sc["unavailable"]), 2) * 0.28 + 0.9
               for _, sc in panels]
    fig, axes = plt.subplots(len(panels), 2, figsize=(13, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for (ax_rps, ax_cpu), (name, sc) in zip(axes, panels):
        labels, colors, rps, lo, hi, cpu, texts = [], [], [], [], [], [], []
        for r in sc["rows"]:
            labels.append(r["server"])
            colors.append("#d62728" if is_fastgw(r["server"]) else "#7f9fbf")
            if r["rounds_ok"]:
                rps.append(r["rps_median"])
                lo.append(r["rps_median"] - r["rps_min"])
                hi.append(r["rps_max"] - r["rps_median"])
                cpu.append(r["cpu_us_per_req"] or 0)
                texts.append(None)
            else:
                rps.append(0), lo.append(0), hi.append(0), cpu.append(0)
                texts.append(" failed: " + _first(r["failures"]).split("(")[0].strip()[:45])
        for server, why in sc["unavailable"].items():
            labels.append(server)
            colors.append("#d62728" if is_fastgw(server) else "#7f9fbf")
            rps.append(0), lo.append(0), hi.append(0), cpu.append(0)
            texts.append(" " + why.split("(")[0].strip()[:45])
        y = list(range(len(labels)))
        title = "\n".join(textwrap.wrap(f"{name}: {sc['title'].replace('`', '')}", 75))
        for ax, values, err, unit in ((ax_rps, rps, [lo, hi], "req/s (median, min–max)"),
                                      (ax_cpu, cpu, None, "server CPU µs per request "
                                                          "(median; shorter is better)")):
            ax.barh(y, values, xerr=err, color=colors, capsize=3 if err else 0)
            ax.set_yticks(y)
            ax.set_yticklabels(labels if ax is ax_rps else [""] * len(labels), fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel(unit, fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
            for yi, v, t in zip(y, values, texts):
                label = t if t is not None else (f" {v:,.0f}" if ax is ax_rps else f" {v:,.1f}")
                ax.text(v + (hi[yi] if ax is ax_rps else 0), yi, label, va="center",
                        fontsize=7)
            ax.margins(x=0.3)
            if max(values, default=0) == 0:
                ax.set_xlim(0, 1)
        ax_rps.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
