#!/usr/bin/env python3
"""Summarise a scripts/bench.sh run: medians, ratios, targets, record counts.

Reads the work directory bench.sh filled:
  runs/r<round>-<slot>-<config>/load.json   connload's result line
                               /last        the tracer's last stdout line
                               /cpu_ms      the tracer's CPU time (ms) before SIGINT
                               /tracer_cpu0, /tracer_cpu1   ... when the load began, ended
                               /busy0, /busy1   machine busy and steal ms, same times
                               /progs0..2   BPF programs loaded: before the tracer, after it
                                            attached, after the load
                               /err         the tracer's stderr
  rate/load.json, rate/trace.jsonl          the fixed-rate run
Exits 1 only when results are missing or unreadable.
"""
import argparse
import json
import os
import re
import statistics
import sys

RATIO_TARGET = 0.97


def load_json(path):
    with open(path) as f:
        return json.loads(f.readline())


def last_stats(path):
    """The tracer's last line if it is connscope's end stats record, else None."""
    try:
        with open(path) as f:
            line = f.read().strip().splitlines()
    except OSError:
        return None
    if not line:
        return None
    try:
        rec = json.loads(line[-1])
    except ValueError:
        return None
    if rec.get("type") == "stats" and rec.get("phase") == "end":
        return rec
    return None


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


def lost_in_stderr(path):
    """libbpf-tools print 'lost N events on CPU #C' for perf buffer overruns."""
    try:
        with open(path, errors="replace") as f:
            return sum(int(m) for m in re.findall(r"lost (\d+) events", f.read()))
    except OSError:
        return None


def read_words(path):
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def run_env(d, load, tracer_cpu, cpus):
    """Foreign BPF programs, and the CPU the rest of the machine used, during a run."""
    p0, p1, p2 = (set(read_words(os.path.join(d, "progs%d" % i))) for i in range(3))
    ours = p1 - p0
    foreign = sorted(p0 | (p2 - ours), key=lambda x: int(x.split(":")[0]))
    names = sorted(set(x.split(":", 1)[1] for x in foreign))
    b0, b1 = read_words(os.path.join(d, "busy0")), read_words(os.path.join(d, "busy1"))
    other = steal = None
    if len(b0) == 2 and len(b1) == 2:
        wall = load["seconds"] * 1000 * cpus
        busy = int(b1[0]) - int(b0[0])
        other = 100.0 * (busy - load["cpu_ms"] - (tracer_cpu or 0)) / wall
        steal = 100.0 * (int(b1[1]) - int(b0[1])) / wall
    return {"foreign": names, "other_pct": other, "steal_pct": steal}


def fmt_ratio(x):
    return "-" if x is None else "%.3f" % x


def throughput(a, configs):
    runs = {c: [] for c in configs}
    order = {}
    base = os.path.join(a.work, "runs")
    for name in sorted(os.listdir(base)):
        m = re.fullmatch(r"r(\d+)-(\d+)-(\w+)", name)
        if not m:
            continue
        rnd, slot, cfg = int(m[1]), int(m[2]), m[3]
        d = os.path.join(base, name)
        load = load_json(os.path.join(d, "load.json"))
        c0, c1 = read_int(os.path.join(d, "tracer_cpu0")), read_int(os.path.join(d, "tracer_cpu1"))
        tracer_cpu = c1 - c0 if c0 is not None and c1 is not None else None
        run = {
            "round": rnd,
            "rate": load["conns_per_s"],
            "failed": load["failed"],
            "conns": load["connections"],
            "secs": load["seconds"],
            "load_cpu_ms": load["cpu_ms"],
            "tracer_cpu_ms": tracer_cpu,
            "env": run_env(d, load, tracer_cpu, a.cpus),
            "stats": last_stats(os.path.join(d, "last")),
            "stderr_lost": lost_in_stderr(os.path.join(d, "err")),
        }
        runs[cfg].append(run)
        order.setdefault(rnd, []).append((slot, cfg))

    print()
    print("Throughput: loopback connect/send/close, closed loop, %d rounds x %gs, "
          "%d CPUs (medians, interleaved in one run)" % (a.rounds, a.seconds, a.cpus))
    hdr = "  %-6s %-32s" % ("round", "order") + "".join("%12s" % c for c in configs)
    if "baseline" in configs:
        hdr += "".join("%16s" % (c + "/base") for c in configs if c != "baseline")
    print(hdr)
    paired = {c: [] for c in configs}
    for rnd in sorted(order):
        by = {c: next((r for r in runs[c] if r["round"] == rnd), None) for c in configs}
        line = "  %-6d %-32s" % (rnd, ",".join(c for _, c in sorted(order[rnd])))
        line += "".join("%11.0f%s" % (by[c]["rate"], "*" if by[c]["env"]["foreign"] else " ")
                        if by[c] else "%12s" % "-" for c in configs)
        for c in configs:
            if c == "baseline":
                continue
            if by[c] and by.get("baseline"):
                ratio = by[c]["rate"] / by["baseline"]["rate"]
                paired[c].append(ratio)
                line += "%16.3f" % ratio
            else:
                line += "%16s" % "-"
        print(line)

    print("  (* = other BPF programs were loaded during the run; see the notes below)")
    med = {c: statistics.median(r["rate"] for r in runs[c]) for c in configs if runs[c]}
    print()
    print("  %-10s %12s %8s %8s %18s %10s %8s  %s" % (
        "config", "median c/s", "ratio", "min-max", "tracer CPU/1k conn", "lost", "failed",
        "target"))
    for c in configs:
        rs = runs[c]
        if not rs:
            continue
        failed = sum(r["failed"] for r in rs)
        conns = sum(r["conns"] for r in rs)
        if c == "baseline":
            print("  %-10s %12.0f %8s %8s %18s %10s %8d" % (c, med[c], "1.000", "", "-", "-",
                                                            failed))
            continue
        ratio = med[c] / med["baseline"] if "baseline" in med else None
        spread = ("%.2f-%.2f" % (min(paired[c]), max(paired[c]))) if paired[c] else "-"
        # The tracer's own CPU time while the load ran (from /proc, 10 ms ticks).
        cpu = [r["tracer_cpu_ms"] for r in rs]
        cpu_k = ("%.2f ms" % (sum(cpu) / conns * 1000)
                 if conns and all(x is not None for x in cpu) else "-")
        if c == "connscope":
            lost = [r["stats"]["lost"] if r["stats"] else None for r in rs]
        else:
            lost = [r["stderr_lost"] for r in rs]
        lost_s = str(sum(lost)) if all(x is not None for x in lost) else "?"
        if c == "connscope":
            verdict = "%s (>= %.2f)" % ("PASS" if ratio is not None and ratio >= RATIO_TARGET
                                        else "MISS", RATIO_TARGET)
        else:
            verdict = "(comparison)"
        print("  %-10s %12.0f %8s %8s %18s %10s %8d  %s" % (
            c, med[c], fmt_ratio(ratio), spread, cpu_k, lost_s, failed, verdict))
    for c in configs:
        for r in runs[c]:
            if r["tracer_cpu_ms"] is not None and c != "baseline":
                r["tracer_pct"] = 100.0 * r["tracer_cpu_ms"] / 1000 / r["secs"]
    print("  tracer CPU while loaded (% of one CPU, per round): " + "; ".join(
        "%s %s" % (c, " ".join("%.0f%%" % r.get("tracer_pct", 0) for r in runs[c]))
        for c in configs if c != "baseline"))
    notes = []
    for c in configs:
        for r in runs[c]:
            e = r["env"]
            if e["foreign"] or (e["other_pct"] or 0) > 10 or (e["steal_pct"] or 0) > 5:
                notes.append("    round %d %-10s other BPF programs: %s; rest of the machine "
                             "used %.0f%% CPU, steal %.0f%%" % (
                                 r["round"], c, ",".join(e["foreign"]) or "none",
                                 e["other_pct"] or 0, e["steal_pct"] or 0))
    if notes:
        print("  Noise: these runs shared the machine with other work (all rounds still "
              "count in the medians):")
        print("\n".join(notes))
        clean = {c: [r["rate"] for r in runs[c] if not r["env"]["foreign"]] for c in configs}
        if "baseline" in clean and all(clean[c] for c in configs):
            mb = statistics.median(clean["baseline"])
            print("  Rounds without other BPF programs only: " + ", ".join(
                "%s %.0f (%s)" % (c, statistics.median(v), fmt_ratio(statistics.median(v) / mb))
                for c, v in clean.items()))
    if "connscope" in runs and runs["connscope"]:
        st = [r["stats"] for r in runs["connscope"] if r["stats"]]
        if st:
            print("  connscope per round (end stats): " + "; ".join(
                "events %d lost %d map_full %d cpu_ms %d" % (
                    s["events"], s["lost"], s["map_full"], s["cpu_ms"]) for s in st))
        else:
            print("  connscope: no end stats record seen (it did not stop cleanly?)")
    return med


def fixed_rate(a):
    d = os.path.join(a.work, "rate")
    load = load_json(os.path.join(d, "load.json"))
    ports = set(range(a.port, a.port + a.nports))
    stats_end = None
    recs = {"client": 0, "server": 0}
    outcomes = {}
    other = 0
    with open(os.path.join(d, "trace.jsonl")) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                other += 1
                continue
            t = rec.get("type")
            if t == "stats" and rec.get("phase") == "end":
                stats_end = rec
            if t != "connection":
                continue
            srv = rec.get("server") or {}
            if srv.get("ip") != "127.0.0.1" or srv.get("port") not in ports:
                continue  # someone else's connection
            side = rec.get("side")
            recs[side] = recs.get(side, 0) + 1
            key = "%s/%s/%s" % (side, rec["tcp"]["outcome"], rec["tcp"]["close"])
            outcomes[key] = outcomes.get(key, 0) + 1

    c0, c1 = read_int(os.path.join(d, "tracer_cpu0")), read_int(os.path.join(d, "tracer_cpu1"))
    tracer_cpu = c1 - c0 if c0 is not None and c1 is not None else None
    env = run_env(d, load, tracer_cpu, a.cpus)
    made = load["connections"]
    expected = 2 * made
    got = recs["client"] + recs["server"]
    print()
    print("Fixed rate: %d connections/s for %gs, connscope trace -o json > file" % (
        a.rate, a.rate_seconds))
    print("  load       achieved %.0f conns/s: %d made, %d failed of %d attempted "
          "(%d started > 10 ms late, max %.1f ms)" % (
              load["conns_per_s"], made, load["failed"], load["attempted"],
              load.get("late_10ms", 0), load.get("max_late_ms", 0)))
    if stats_end is None:
        print("  connscope  no end stats record in its output: MISS")
        return
    runtime = stats_end.get("uptime_s") or 0
    print("  connscope  events %d, lost %d, map_full %d, cpu_ms %d (%.0f%% of one CPU over "
          "%.1fs), bpf_ms %s" % (
              stats_end["events"], stats_end["lost"], stats_end["map_full"],
              stats_end["cpu_ms"], 100.0 * stats_end["cpu_ms"] / 1000 / runtime if runtime
              else 0, runtime, stats_end.get("bpf_ms", "?")))
    if tracer_cpu is not None:
        print("             while the load ran: %d ms CPU = %.0f%% of one CPU, %.1f us per "
              "connection" % (tracer_cpu, 100.0 * tracer_cpu / 1000 / load["seconds"],
                              1000.0 * tracer_cpu / made if made else 0))
    if made and stats_end.get("bpf_ms"):
        print("             BPF run time %.0f ns per connection (both sides, "
              "kernel.bpf_stats_enabled=1)" % (stats_end["bpf_ms"] * 1e6 / made))
    print("  records    %d connection records for the load's ports (client %d, server %d); "
          "expected 2 x %d = %d: %s%s" % (
              got, recs["client"], recs["server"], made, expected,
              "PASS" if got == expected else "MISS",
              "" if got == expected else " (%+d)" % (got - expected)))
    print("             by side/outcome/close: " + ", ".join(
        "%s %d" % kv for kv in sorted(outcomes.items())))
    if env["foreign"] or (env["other_pct"] or 0) > 10:
        print("  noise      other BPF programs: %s; rest of the machine used %.0f%% CPU" % (
            ",".join(env["foreign"]) or "none", env["other_pct"] or 0))
    print("  targets    lost == 0: %s    map_full == 0: %s" % (
        "PASS" if stats_end["lost"] == 0 else "MISS",
        "PASS" if stats_end["map_full"] == 0 else "MISS"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--rate", type=int, required=True)
    p.add_argument("--rate-seconds", type=float, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--nports", type=int, required=True)
    p.add_argument("--cpus", type=int, required=True)
    p.add_argument("--configs", required=True)
    a = p.parse_args()
    try:
        throughput(a, a.configs.split())
        fixed_rate(a)
    except (OSError, KeyError, ValueError) as e:
        print("bench: failed to read the results: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
