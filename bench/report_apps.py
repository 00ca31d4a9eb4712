"""The application scenarios' part of the report: latency at a fixed rate, fast
requests beside slow ones, the targets those scenarios are held to, and how
req/s scale from one worker process to two.

Strategy: report.py summarises every row the same way; this module adds the
medians over rounds of what only these runs carry (`paced`: the fixed-rate
run after the closed loop; `loads`: the fixed-rate loads that replace it),
and turns them into tables and sentences. Every comparison is between rows
of the same run, as ratios or side by side; nothing here measures.
"""
import statistics

BLOCKING_CEILING = 800        # 16 threads × (1 s ÷ 20 ms)
PERCENTILES = ("50", "99", "99.9")


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise_extra(summary, ok_runs):
    """Add the fixed-rate medians to one row's summary (in place)."""
    paced = [r["paced"] for r in ok_runs if r.get("paced")]
    if paced:
        summary["paced"] = {
            "target_rps": _median([p["target_rps"] for p in paced]),
            "rps": _median([p["rps"] for p in paced]),
            "fraction": paced[0]["fraction"],
            "latency_ms": {q: _median([p["latency_ms"].get(q) for p in paced])
                           for q in PERCENTILES},
            "errors": sum(sum(p["socket_errors"].values()) + p["non_2xx_3xx"]
                          for p in paced)}
    loads = [r["loads"] for r in ok_runs if r.get("loads")]
    if loads:
        summary["loads"] = {
            label: {"rate": loads[0][label]["rate"],
                    "rps": _median([l[label]["rps"] for l in loads]),
                    "latency_ms": {q: _median([l[label]["latency_ms"].get(q) for l in loads])
                                   for q in PERCENTILES}}
            for label in loads[0]}


def _ms(v):
    if v is None:
        return "–"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.1f} ms"


def _bold_fastgw(server, is_fastgw):
    return f"**{server}**" if is_fastgw(server) else server


def fixed_rate_tables(name, sc, is_fastgw):
    """Markdown lines: the fixed-rate run of each row, or the loads of `mixed`."""
    out = []
    paced = [r for r in sc["rows"] if r.get("paced")]
    if paced:
        frac = paced[0]["paced"]["fraction"]
        out += [f"At a fixed rate ({frac:.0%} of each server's own closed-loop req/s), "
                "latency from each request's due time:", "",
                "| server | rate asked | answered/s | p50 | p99 | p99.9 | errors |"
                + (" of the 800 req/s ceiling |" if name == "blocking_io" else ""),
                "|---|---|---|---|---|---|---|" + ("---|" if name == "blocking_io" else "")]
        for r in paced:
            p = r["paced"]
            lat = p["latency_ms"]
            line = (f"| {_bold_fastgw(r['server'], is_fastgw)} | {p['target_rps']:,.0f} | "
                    f"{p['rps']:,.0f} | {_ms(lat['50'])} | {_ms(lat['99'])} | "
                    f"{_ms(lat['99.9'])} | {p['errors'] or ''} |")
            if name == "blocking_io":
                line += f" {r['rps_median'] / BLOCKING_CEILING:.1%} (closed loop) |"
            out.append(line)
        out.append("")
    loaded = [r for r in sc["rows"] if r.get("loads")]
    if loaded:
        labels = list(loaded[0]["loads"])
        out += ["Each load at its fixed rate, latency from the due time:", "",
                "| server | " + " | ".join(f"{l} p50 | {l} p99 | {l} p99.9" for l in labels)
                + " |", "|---|" + "---|---|---|" * len(labels)]
        for r in loaded:
            cells = []
            for label in labels:
                lat = r["loads"][label]["latency_ms"]
                cells += [_ms(lat["50"]), _ms(lat["99"]), _ms(lat["99.9"])]
            out.append(f"| {_bold_fastgw(r['server'], is_fastgw)} | " + " | ".join(cells)
                       + " |")
        out.append("")
    return out


def _ok(sc):
    return [r for r in sc["rows"] if r["rounds_ok"]]


def _best_peer(rows, key, is_fastgw, higher=True):
    peers = [r for r in rows if not is_fastgw(r["server"]) and key(r) is not None]
    if not peers:
        return None
    return (max if higher else min)(peers, key=key)


def targets(summary, is_fastgw):
    """Markdown lines: each application target, met or missed, with its figures."""
    out = []

    def verdict(ok):
        return "met" if ok else "**missed**"

    def fast_and_rows(name):
        rows = _ok(summary[name]) if name in summary else []
        return next((r for r in rows if is_fastgw(r["server"])), None), rows

    fast, rows = fast_and_rows("django")
    if fast:
        best = _best_peer(rows, lambda r: r["rps_median"], is_fastgw)
        p99 = lambda r: r.get("paced", {}).get("latency_ms", {}).get("99")
        best_lat = _best_peer(rows, p99, is_fastgw, higher=False)
        if best:
            out.append(f"- `django` req/s: fastgw {fast['rps_median']:,.0f}, best peer "
                       f"{best['server']} {best['rps_median']:,.0f} → "
                       f"{fast['rps_median'] / best['rps_median']:.2f}× (target ≥ 1.0×): "
                       f"{verdict(fast['rps_median'] >= best['rps_median'])}")
        if best_lat and p99(fast) is not None:
            out.append(f"- `django` p99 at the fixed rate: fastgw {_ms(p99(fast))}, best peer "
                       f"{best_lat['server']} {_ms(p99(best_lat))} (target: no higher): "
                       f"{verdict(p99(fast) <= p99(best_lat))}")
    fast, rows = fast_and_rows("blocking_io")
    if fast:
        share = fast["rps_median"] / BLOCKING_CEILING
        out.append(f"- `blocking_io`: fastgw {fast['rps_median']:,.0f} req/s = {share:.1%} of "
                   f"the {BLOCKING_CEILING} req/s ceiling (target ≥ 95 %): "
                   f"{verdict(share >= 0.95)}")
        lat = fast.get("paced", {}).get("latency_ms", {}).get("99")
        if lat is not None:
            out.append(f"- `blocking_io` p99 at the fixed rate: fastgw {_ms(lat)} (target ≤ "
                       f"30 ms): {verdict(lat <= 30)}")
    fast, rows = fast_and_rows("mixed")
    if fast and fast.get("loads"):
        fp99 = lambda r: r.get("loads", {}).get("fast", {}).get("latency_ms", {}).get("99")
        best = _best_peer(rows, fp99, is_fastgw, higher=False)
        line = (f"- `mixed` fast requests' p99: fastgw {_ms(fp99(fast))} (target ≤ 5 ms and "
                "no higher than the best peer")
        if best:
            line += f"; best peer {best['server']} {_ms(fp99(best))}"
        met = fp99(fast) <= 5 and (not best or fp99(fast) <= fp99(best))
        out.append(line + f"): {verdict(met)}")
    rss_lines = []
    for name, sc in summary.items():
        fast, rows = fast_and_rows(name)
        guni = [r for r in rows if r["server"].startswith("gunicorn")
                and r.get("rss_worker_kib")]
        if fast and fast.get("rss_worker_kib") and guni:
            low = min(r["rss_worker_kib"] for r in guni)
            rss_lines.append(f"`{name}` {fast['rss_worker_kib'] / 1024:.1f} vs "
                             f"{low / 1024:.1f} MiB"
                             + ("" if fast["rss_worker_kib"] <= low else " (**above**)"))
    if rss_lines:
        out.append("- RSS per worker, fastgw vs the smaller gunicorn worker (target: no "
                   "larger): " + "; ".join(rss_lines))
    if not out:
        return []
    return ["## Targets of the application scenarios", ""] + out + [""]


def scaling(summary, is_fastgw):
    """Markdown lines: req/s with two workers ÷ with one, per server, same run."""
    out = []
    for one, two in (("hello", "hello_2w"), ("django", "django_2w")):
        if one not in summary or two not in summary or \
                summary[one].get("from_run") != summary[two].get("from_run"):
            continue        # only rows of the same run are compared
        single = {r["server"]: r for r in _ok(summary[one])}
        cells = []
        for r in _ok(summary[two]):
            base = single.get(r["server"])
            if base:
                cells.append(f"{_bold_fastgw(r['server'], is_fastgw)} "
                             f"{r['rps_median'] / base['rps_median']:.2f}×")
        if cells:
            out.append(f"- `{two}` ÷ `{one}` (req/s): " + ", ".join(cells))
    if not out:
        return []
    return (["Two workers ÷ one (the two-worker runs share both CPUs with wrk, so 2× is "
             "out of reach):", ""] + out + [""])
