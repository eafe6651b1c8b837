#!/usr/bin/env python3
"""Turns the loadgen JSON lines of benches/run.sh into the BASELINE.md comparison table."""
import argparse
import json
import statistics
import sys


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return [r for r in rows if "result" in r]


def med(rows, label, fn):
    vals = []
    for r in rows:
        if r.get("label") != label:
            continue
        try:
            v = fn(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.append(v)
    if not vals:
        return None, 0
    return statistics.median(vals), len(vals)


def fmt(v, unit="", digits=1):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("--quick", default="0")
    ap.add_argument("--hold", default="60")
    ap.add_argument("--echo-secs", default="20")
    ap.add_argument("--rev", default="unknown")
    ap.add_argument("--dirty", default="?")
    a = ap.parse_args()
    rows = load(a.jsonl)

    def m(label, fn):
        return med(rows, label, fn)[0]

    idle_n = m("idle-max", lambda r: r["connected"])
    table = []

    def row(fig, ours, ours_ok, phoenix, target, note=""):
        met = "n/a" if ours_ok is None else ("yes" if ours_ok else "**no**")
        table.append(f"| {fig} | {ours} | {phoenix} | {target} | {met} | {note} |")

    for label, n in (("idle-10k", "10k"), ("idle-max", f"{fmt(idle_n, digits=0)}")):
        rps = m(label, lambda r: r["rss_per_socket_b"])
        end = m(label, lambda r: r["rss_per_socket_end_b"])
        at = m(label, lambda r: r["rss_at_secs"])
        row(
            f"RSS per idle joined socket, {n} sockets, {fmt(at, ' s', 0)} after the last join",
            fmt(rps and rps / 1000, " kB", 2),
            None if rps is None else rps <= 6000,
            "38–39 kB",
            "≤ 6 kB",
            f"end of hold: {fmt(end and end / 1000, ' kB', 2)}",
        )
    cpu_j = m("idle-10k", lambda r: r["server_cpu_per_connect_join_us"])
    rate = m("idle-10k", lambda r: r["connect_join_rate"])
    lg_j = m("idle-10k", lambda r: r["loadgen_cpu_per_connect_join_us"])
    row(
        "server CPU per connect+join (10k)",
        fmt(cpu_j, " µs"),
        None if cpu_j is None else cpu_j <= 30,
        "178 µs",
        "≤ 30 µs",
        f"loadgen {fmt(lg_j, ' µs')} per connect+join",
    )
    row(
        "connect+join rate (10k)",
        fmt(rate, "/s", 0),
        None if rate is None else rate >= 20000,
        "7.8k/s",
        "≥ 20k/s",
        "CPU-bound on 2 shared cores",
    )
    cpu_d = m("fanout-10k", lambda r: r["server_cpu_per_delivery_us"])
    lg_d = m("fanout-10k", lambda r: r["loadgen_cpu_per_delivery_us"])
    row(
        "fan-out: server CPU per delivery (10k)",
        fmt(cpu_d, " µs", 2),
        None if cpu_d is None else cpu_d <= 2,
        "17.6 µs",
        "≤ 2 µs",
        f"loadgen {fmt(lg_d, ' µs', 2)} per delivery",
    )
    p50 = m("fanout-10k", lambda r: r["time_to_last_ms"]["p50"])
    p99 = m("fanout-10k", lambda r: r["time_to_last_ms"]["p99"])
    miss = m("fanout-10k", lambda r: r["missing"])
    row(
        "fan-out to 10k: time to last delivery p50 / p99",
        f"{fmt(p50, ' ms')} / {fmt(p99, ' ms')}",
        None if p50 is None else (p50 <= 35 and p99 <= 60),
        "96 / 133 ms",
        "≤ 35 / ≤ 60 ms",
        f"missing {fmt(miss, digits=0)}",
    )
    p50k = m("fanout-1k", lambda r: r["time_to_last_ms"]["p50"])
    cpu_d1 = m("fanout-1k", lambda r: r["server_cpu_per_delivery_us"])
    row(
        "fan-out to 1k: time to last delivery p50",
        fmt(p50k, " ms", 2),
        None if p50k is None else p50k <= 4,
        "10.8 ms",
        "≤ 4 ms",
        f"server {fmt(cpu_d1, ' µs', 2)} per delivery",
    )
    cpu_e = m("echo-1k", lambda r: r["server_cpu_per_round_trip_us"])
    rt = m("echo-1k", lambda r: r["round_trips_per_s"])
    lg_e = m("echo-1k", lambda r: r["loadgen_cpu_per_round_trip_us"])
    e50 = m("echo-1k", lambda r: r["latency_ms"]["p50"])
    e99 = m("echo-1k", lambda r: r["latency_ms"]["p99"])
    row(
        "echo 1k sockets: server CPU per round trip",
        fmt(cpu_e, " µs", 2),
        None if cpu_e is None else cpu_e <= 5,
        "35.5 µs",
        "≤ 5 µs",
        f"loadgen {fmt(lg_e, ' µs', 2)} per round trip",
    )
    row(
        "echo 1k sockets: round trips/s",
        fmt(rt, "/s", 0),
        None if rt is None else rt >= 100000,
        "39.6k/s",
        "≥ 100k/s",
        f"p50 {fmt(e50, ' ms', 2)}, p99 {fmt(e99, ' ms', 2)}",
    )
    hb = m("idle-10k", lambda r: r["server_cpu_hold_pct"])
    row(
        f"idle: server CPU for 10k sockets' heartbeats (over a {a.hold} s hold)",
        fmt(hb, " % of a core", 2),
        None if hb is None else hb <= 1,
        "9 % of a core",
        "≤ 1 %",
        "heartbeats every 30 s per socket",
    )

    runs = {r.get("label") for r in rows}
    n_runs = max((med(rows, lbl, lambda r: 1)[1] for lbl in runs), default=0)
    mode = "QUICK (short holds)" if a.quick == "1" else "full"
    out = sys.stdout
    out.write(f"# phx-server vs Phoenix 1.7.24 — {mode} run, median of {n_runs} run(s)\n\n")
    out.write(
        f"Server built from commit {a.rev} ({a.dirty} uncommitted path(s) under src/ protocol/). "
        "Produced by `benches/run.sh`; raw JSON lines in `latest.jsonl`.\n\n"
    )
    out.write("| figure | phx-server | Phoenix best | target | met | note |\n")
    out.write("|---|---|---|---|---|---|\n")
    out.write("\n".join(table) + "\n\n")

    out.write("## Machine state per phase (% of one core; 2 cores = 200 %)\n\n")
    out.write("| phase | load avg at start | server CPU % | loadgen CPU % | other tenants % |\n")
    out.write("|---|---|---|---|---|\n")
    for r in rows:
        ph = r.get("publish_phase") or r.get("phase") or r.get("join_phase") or {}
        out.write(
            f"| {r.get('label')} ({r['result']}) | {r.get('machine', {}).get('loadavg_at_start', '')} | "
            f"{fmt(ph.get('server_cpu_pct'))} | {fmt(ph.get('loadgen_cpu_pct'))} | "
            f"{fmt(ph.get('other_busy_core_pct'))} |\n"
        )
    out.write("\n(idle: the connect+join phase; fanout: the publish phase; echo: the measured phase)\n")


if __name__ == "__main__":
    main()
