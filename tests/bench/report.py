#!/usr/bin/env python3
"""Summarise a scripts/bench.sh run: medians, ratios, targets, record counts.

Reads the work directory bench.sh filled:
  runs-<close>/r<round>-<slot>-<config>/    part 1, per close style (fin, rst); configs
                                            baseline daemon top trace tcpstates tcplife
                               /load.json   connload's result line
                               /last        the tracer's last stdout line
                               /top_last    top's last frame title (events, lost)
                               /cpu_ms      the tracer's CPU time (ms) before SIGINT
                               /tracer_cpu0, /tracer_cpu1   ... when the load began, ended
                               /out_bytes0, /out_bytes1     its output's size, same times
                               /busy0, /busy1   machine busy and steal ms, same times
                               /progs0..2   BPF programs loaded: before the tracer, after it
                                            attached, after the load
                               /err         the tracer's stderr
  runs-<close>/detail-<mode>/               one more run per connscope mode with
                                            kernel.bpf_stats_enabled=1: as above, and
                               /prog_stats0.json, /prog_stats1.json  `bpftool -j prog
                                            show` when the load began, ended
                               /tracer_prog_ids   the ids of connscope's programs
  rate/load.json, rate/trace.jsonl          the fixed-rate run (trace)
  rate-daemon/load.json, daemon.jsonl       the same rate with `connscope daemon`:
                               /out_bytes0, /out_bytes2  its output's size when the load
                                            began and 1 s after it ended
  tls/<mode>/r<round>-<slot>-<config>/      the TLS runs (mode bulk or handshakes):
                               load.json    tlsload's result line
                               first, last  connscope's first and last lines
                               records.json the handshake runs' record counts (below)
  tls/detail-<mode>/prog_stats.json         `bpftool -j prog show` with
                                            kernel.bpf_stats_enabled=1, and
                   /tracer_prog_ids         the ids of connscope's programs
  h2/<mode>/r<round>-<slot>-<config>/       the HTTP/2 runs (mode h2c or tls):
                               load.json    h2load's summary (--parse-h2load below)
                               first, last  connscope's first and last lines
                               records.json connscope's connection records on the
                                            server port (--count-h2 below)
Only the parts named by --parts are read. Exits 1 only when results are missing or
unreadable.

  report.py --count-tls TRACE.jsonl --port P
counts connscope's connection records for 127.0.0.1:P in TRACE (by side and TLS
outcome) and prints them as one JSON object; bench.sh keeps that instead of the trace.

  report.py --count-h2 TRACE.jsonl --port P
the same for HTTP/2: connection records for 127.0.0.1:P, those with an "h2" object,
and the sums of their h2.streams, h2.goaway.count and h2.rst_stream, by side.

  report.py --parse-h2load OUTPUT --mode h2c|tls --seconds S --cpu-ms MS
turns h2load's output into one JSON line (req_per_s, succeeded, failed, clients, ...).

  report.py --count-replay CONNSCOPE.jsonl --tshark-out TSHARK.txt --port P
the replay part's agreement check: connscope replay's connection records (all, on
server port P, with h2, with tls), the sum of h2.streams on port P and its last stats
record, against tshark's client HEADERS on port P (first HEADERS per odd stream id and
tcp.stream, from tshark's `-T fields -e tcp.stream -e tcp.srcport -e http2.type
-e http2.streamid` lines); one JSON object.

The replay part's directory: replay/gen.json (replay_gen.sh's line), counts.json (above),
connscope.err, r<round>-<slot>-<tool>/time.txt (/usr/bin/time -v) and rc.

The DNAT part's: dnat/<mode>/r<round>-<slot>-<config>/ (mode bulk or rate) with
load.json (bulk's or connload's line), first and last (connscope's first and last
lines: its end stats record has the conntrack counters), as in the TLS part; and
dnat/detail-<mode>/prog_stats.json and tracer_prog_ids (kernel.bpf_stats_enabled=1).
"""
import argparse
import json
import os
import re
import statistics
import sys

# Part 1, per close style: each connscope mode's median rate / the bare median.
TCP_TARGETS = {"daemon": 0.97, "top": 0.97, "trace": 0.92}
ANCHORS = ("tcpstates", "tcplife")        # ratios reported, no target
DAEMON_BYTES_TARGET = 2000                # daemon output, bytes/s at 20,000 healthy conns/s
TLS_BULK_TARGET = 0.98
TLS_HANDSHAKE_TARGET = 0.97
H2C_TARGET = 0.97
H2_TLS_TARGET = 0.97
H2_PROBES_TARGET = 0.80   # TLS with the TLS library probes on (--h2-plaintext)
# The h2 part's configurations, as bench.sh names them, and as the report does.
H2_CONFIGS = ("baseline", "floor", "walking", "daemon", "top", "connscope", "probes")
H2_NAMES = {"baseline": "bare", "floor": "floor", "walking": "walking", "daemon": "daemon",
            "top": "top", "connscope": "trace", "probes": "probes"}
H2_NOTES = {"floor": "what any program on these hooks costs",
            "walking": "the least work an exact HTTP/2 frame count takes on every packet: "
                       "each header's length read, nothing else (floor.bpf.c)"}
H2_JUDGED = ("daemon", "top", "connscope")
REPLAY_VS_TSHARK_TARGET = 50.0     # connscope at least this many times faster
REPLAY_VS_BARE_TARGET = 3.0        # at most this many times the bare libpcap loop
REPLAY_RSS_TARGET = 0.1            # peak RSS at most this share of tshark's
DNAT_BULK_TARGET = 0.98
DNAT_RATE_TARGET = 0.95


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


def verdict(ok):
    return "met" if ok else "MISS"


# The targets of part 1 and of the daemon's output, gathered for one table at the end:
# (measure, value, per-round range or "", target, met).
TARGETS = []


def print_targets():
    if not TARGETS:
        return
    print()
    print("Targets (part 1 and the daemon's output; medians, per-round ranges):")
    print("  %-52s %12s %12s %10s  %s" % ("measure", "value", "rounds", "target", ""))
    for what, value, rounds, target, ok in TARGETS:
        print("  %-52s %12s %12s %10s  %s" % (what, value, rounds, target, verdict(ok)))


def spread(xs, fmt="%.2f"):
    """A per-round range, min-max."""
    return (fmt + "-" + fmt) % (min(xs), max(xs)) if xs else "-"


CONNSCOPE_CONFIGS = ("connscope", "stacksoff", "stacksall", "daemon", "trace")
TOP_TITLE = re.compile(r"events (\d+), lost (\d+), map_full (\d+)")


def top_counters(path):
    """events, lost and map_full from top's last frame title, or None."""
    try:
        with open(path) as f:
            m = TOP_TITLE.search(f.read())
    except OSError:
        return None
    return {"events": int(m[1]), "lost": int(m[2]), "map_full": int(m[3])} if m else None


def stacks(a):
    """--stacks all against --stacks off on the same churn: the cost of taking a
    user stack at every connect and accept."""
    med, _ = throughput(a, ["baseline", "stacksoff", "stacksall"], "stacks_runs",
                        "Stacks (connscope trace --stacks off | all)")
    if med.get("stacksoff") and med.get("stacksall"):
        print("  --stacks all / --stacks off: %.3f (median rates %.0f / %.0f conns/s)" % (
            med["stacksall"] / med["stacksoff"], med["stacksall"], med["stacksoff"]))
    base = os.path.join(a.work, "stacks_runs")
    rates = {}
    for name in os.listdir(base):
        m = re.fullmatch(r"r(\d+)-(\d+)-(\w+)", name)
        if m and m[3] in ("stacksoff", "stacksall"):
            rates.setdefault(int(m[1]), {})[m[3]] = load_json(
                os.path.join(base, name, "load.json"))["conns_per_s"]
    per = ["%.3f" % (r["stacksall"] / r["stacksoff"]) for _, r in sorted(rates.items())
           if r.get("stacksoff") and r.get("stacksall")]
    if per:
        print("  --stacks all / --stacks off per round: " + " ".join(per))
    caps = []
    for name in sorted(os.listdir(base)):
        if name.endswith("stacksall"):
            st = last_stats(os.path.join(base, name, "last"))
            if st and "stacks" in st:
                caps.append("captured %d dropped %d" % (st["stacks"]["captured"],
                                                         st["stacks"]["dropped"]))
    if caps:
        print("  --stacks all per round: " + "; ".join(caps))


def throughput(a, configs, subdir="runs", title="Throughput", targets=None, what=None):
    """One interleaved closed-loop part: the per-round table, then per config its median,
    ratio to the bare median, per-round ratio range, tracer CPU per connection, lost
    events and the target (from targets, config -> minimum ratio). Returns the medians
    and the runs by config."""
    targets = targets or {}
    runs = {c: [] for c in configs}
    order = {}
    base = os.path.join(a.work, subdir)
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
            "top": top_counters(os.path.join(d, "top_last")),
            "stderr_lost": lost_in_stderr(os.path.join(d, "err")),
        }
        runs[cfg].append(run)
        order.setdefault(rnd, []).append((slot, cfg))

    print()
    print("%s: loopback %s, closed loop, %d rounds x %gs, "
          "%d CPUs (medians, interleaved in one run)" % (
              title, what or "connect/send/close", a.rounds, a.seconds, a.cpus))
    hdr = "  %-6s %-44s" % ("round", "order") + "".join("%12s" % c for c in configs)
    if "baseline" in configs:
        hdr += "".join("%16s" % (c + "/base") for c in configs if c != "baseline")
    print(hdr)
    paired = {c: [] for c in configs}
    for rnd in sorted(order):
        by = {c: next((r for r in runs[c] if r["round"] == rnd), None) for c in configs}
        line = "  %-6d %-44s" % (rnd, ",".join(c for _, c in sorted(order[rnd])))
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
    print("  %-10s %12s %8s %11s %20s %10s %8s  %s" % (
        "config", "median c/s", "ratio", "rounds", "CPU us/conn (rounds)", "lost", "failed",
        "target"))
    for c in configs:
        rs = runs[c]
        if not rs:
            continue
        failed = sum(r["failed"] for r in rs)
        if c == "baseline":
            print("  %-10s %12.0f %8s %11s %20s %10s %8d" % (c, med[c], "1.000", "", "-", "-",
                                                            failed))
            continue
        ratio = med[c] / med["baseline"] if "baseline" in med else None
        # The tracer's own CPU time (utime + stime from /proc/PID/stat, 10 ms ticks) over
        # the timed window, per connection made in it: the median round and the range.
        cpu = [1000.0 * r["tracer_cpu_ms"] / r["conns"] for r in rs
               if r["tracer_cpu_ms"] is not None and r["conns"]]
        cpu_s = ("%.2f (%s)" % (statistics.median(cpu), spread(cpu)) if len(cpu) == len(rs)
                 else "-")
        if c in CONNSCOPE_CONFIGS:
            lost = [r["stats"]["lost"] if r["stats"] else None for r in rs]
        elif c == "top":
            lost = [r["top"]["lost"] if r["top"] else None for r in rs]
        else:
            lost = [r["stderr_lost"] for r in rs]
        lost_s = str(sum(lost)) if all(x is not None for x in lost) else "?"
        if c in targets:
            v = "%s (>= %.2f)" % (verdict(ratio is not None and ratio >= targets[c]), targets[c])
        elif c in ANCHORS:
            v = "(anchor, no target)"
        elif c == "floor":
            v = "(do-nothing programs on the same hooks: the limit)"
        elif c == "counting":
            v = COUNTING_NOTE
        else:
            v = "(comparison)"
        print("  %-10s %12.0f %8s %11s %20s %10s %8d  %s" % (
            c, med[c], fmt_ratio(ratio), spread(paired[c]), cpu_s, lost_s, failed, v))
        if c in targets and ratio is not None:
            TARGETS.append(("%s: %s / bare, conns/s" % (title, c), fmt_ratio(ratio),
                            spread(paired[c]), ">= %.2f" % targets[c], ratio >= targets[c]))
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
    for c in configs:
        if c not in CONNSCOPE_CONFIGS or not runs[c]:
            continue
        st = [r["stats"] for r in runs[c] if r["stats"]]
        if st:
            print("  %s per round (end stats): " % c + "; ".join(
                "events %d lost %d rescued_runs %s map_full %d cpu_ms %d" % (
                    s["events"], s["lost"], s.get("rescued_runs", "?"), s["map_full"],
                    s["cpu_ms"]) for s in st))
        else:
            print("  %s: no end stats record seen (it did not stop cleanly?)" % c)
    return med, runs


def window_prog_stats(d):
    """connscope's programs' run count and time over the timed window: the difference
    of two bpftool listings (kernel.bpf_stats_enabled=1). (runs, ns) or None."""
    ours = set(int(x) for x in read_words(os.path.join(d, "tracer_prog_ids")))
    tot = []
    for i in (0, 1):
        try:
            with open(os.path.join(d, "prog_stats%d.json" % i)) as f:
                progs = json.load(f)
        except (OSError, ValueError):
            return None
        tot.append({p["id"]: (p.get("run_cnt", 0), p.get("run_time_ns", 0))
                    for p in progs if p.get("id") in ours})
    if not ours or not tot[1]:
        return None
    runs = sum(v[0] - tot[0].get(k, (0, 0))[0] for k, v in tot[1].items())
    ns = sum(v[1] - tot[0].get(k, (0, 0))[1] for k, v in tot[1].items())
    return runs, ns


CLOSE_WHAT = {
    "fin": "connect/send/close, FIN closes (client active close, server reads EOF and closes)",
    "rst-client": "connect/send/close, RST closes (the client closes with SO_LINGER 0)",
    "rst-server": "connect/send/close, RST closes (the server answers the client's FIN "
                  "with close() under SO_LINGER 0)",
}


def tcp(a, style):
    """Part 1 for one close style: ratios to bare, CPU and BPF time per connection,
    the daemon's lost events."""
    configs = a.configs.split()
    flavour = "fin" if style == "fin" else "rst-" + a.rst_side
    med, runs = throughput(a, configs, "runs-" + style, "TCP churn, %s closes" % style.upper(),
                           TCP_TARGETS, CLOSE_WHAT[flavour])
    print("  modes: daemon > file (its default interval), top -i %g > file (no terminal), "
          "trace -o json > file, all with --conntrack off; tcpstates and tcplife > file "
          "(anchors)" % (a.top_interval or 2))
    # Per connection: user space from the interleaved rounds, BPF from the detail runs.
    print()
    print("  Per connection, each connscope mode: user-space CPU = utime + stime of the "
          "connscope process (/proc/PID/stat) over the timed window / connections made in it "
          "(median round, range); BPF = run time of its programs over the window of one more "
          "run with kernel.bpf_stats_enabled=1 / connections made in it")
    print("  %-10s %22s %14s %12s %12s" % ("mode", "user us/conn (rounds)", "BPF us/conn",
                                         "BPF runs/conn", "detail c/s"))
    for c in ("daemon", "top", "trace"):
        if c not in runs:
            continue
        cpu = [1000.0 * r["tracer_cpu_ms"] / r["conns"] for r in runs[c]
               if r["tracer_cpu_ms"] is not None and r["conns"]]
        user = "%.2f (%s)" % (statistics.median(cpu), spread(cpu)) if cpu else "-"
        d = os.path.join(a.work, "runs-" + style, "detail-" + c)
        bpf = runs_per = rate = "-"
        if os.path.isdir(d):
            try:
                load = load_json(os.path.join(d, "load.json"))
            except (OSError, ValueError):
                load = None
            ps = window_prog_stats(d)
            if load:
                rate = "%.0f" % load["conns_per_s"]
            if load and load["connections"] and ps:
                bpf = "%.2f" % (ps[1] / 1e3 / load["connections"])
                runs_per = "%.1f" % (ps[0] / load["connections"])
            elif load:
                bpf = "? (no run times: is kernel.bpf_stats_enabled honoured?)"
        print("  %-10s %22s %14s %12s %12s" % (c, user, bpf, runs_per, rate))
    # Lost events at the maximum rate, daemon mode: its end stats record.
    if runs.get("daemon"):
        st = [r["stats"] for r in runs["daemon"]]
        if all(st):
            lost = sum(s["lost"] for s in st)
            print("  daemon at the maximum closed-loop rate, end stats per round: %s; lost %d:"
                  " %s (lost == 0)" % (
                      ", ".join("events %d lost %d (rescued %s)" % (
                          s["events"], s["lost"], s.get("rescued_runs", "?")) for s in st),
                      lost, verdict(lost == 0)))
            TARGETS.append(("TCP churn, %s closes: daemon lost events" % style.upper(),
                            str(lost), spread([s["lost"] for s in st], "%d"), "== 0",
                            lost == 0))
        else:
            print("  daemon at the maximum closed-loop rate: a round has no end stats record "
                  "(it did not stop cleanly?): MISS (lost == 0)")
            TARGETS.append(("TCP churn, %s closes: daemon lost events" % style.upper(),
                            "?", "", "== 0", False))
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


def daemon_rate(a):
    """Bytes per second of `connscope daemon > file` under RATE healthy connections/s:
    what the file grew by from the start of the load to 1 s after its end (the start
    and end records left out), over the load's seconds; and which records made them."""
    d = os.path.join(a.work, "rate-daemon")
    load = load_json(os.path.join(d, "load.json"))
    b0, b2 = read_int(os.path.join(d, "out_bytes0")), read_int(os.path.join(d, "out_bytes2"))
    print()
    print("Daemon output: %d connections/s for %gs, connscope daemon > file (the log a "
          "DaemonSet keeps)" % (a.rate, a.rate_seconds))
    print("  load       achieved %.0f conns/s: %d made, %d failed of %d attempted "
          "(%d started > 10 ms late, max %.1f ms)" % (
              load["conns_per_s"], load["connections"], load["failed"], load["attempted"],
              load.get("late_10ms", 0), load.get("max_late_ms", 0)))
    short = load["conns_per_s"] < 0.95 * a.rate
    if short:
        print("  note       the load fell short of %d conns/s (a busy machine?): the bytes/s "
              "below are at the achieved rate, not the target's" % a.rate)
    if b0 is None or b2 is None or not load["seconds"]:
        print("  daemon     output size not recorded: MISS")
        TARGETS.append(("daemon output at %d conns/s, bytes/s" % a.rate, "?", "",
                        "< %d" % DAEMON_BYTES_TARGET, False))
        return
    kinds = {}
    stats_end = None
    with open(os.path.join(d, "daemon.jsonl"), "rb") as f:
        f.seek(b0)
        window = f.read(b2 - b0)
        for line in f:  # after the window: the final summaries and the end stats
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("type") == "stats" and rec.get("phase") == "end":
                stats_end = rec
    for line in window.splitlines(keepends=True):
        try:
            t = json.loads(line).get("type", "?")
        except ValueError:
            t = "(a line cut at the window's edge)"
        k = kinds.setdefault(t, [0, 0])
        k[0] += 1
        k[1] += len(line)
    bps = (b2 - b0) / load["seconds"]
    print("  daemon     %d bytes written from the load's start to 1 s after its end, over "
          "%.2fs: %.0f bytes/s, %.1f bytes per connection" % (
              b2 - b0, load["seconds"], bps,
              (b2 - b0) / load["connections"] if load["connections"] else 0))
    print("             by record type: " + (", ".join(
        "%s %d records %d bytes" % (t, v[0], v[1]) for t, v in sorted(
            kinds.items(), key=lambda kv: -kv[1][1])) or "none"))
    c0, c1 = read_int(os.path.join(d, "tracer_cpu0")), read_int(os.path.join(d, "tracer_cpu1"))
    if c0 is not None and c1 is not None and load["connections"]:
        print("             CPU while the load ran: %d ms, %.2f us per connection" % (
            c1 - c0, 1000.0 * (c1 - c0) / load["connections"]))
    if stats_end:
        print("             end stats: events %d, lost %d, map_full %d" % (
            stats_end["events"], stats_end["lost"], stats_end["map_full"]))
    c = None if c0 is None or c1 is None else c1 - c0
    env = run_env(d, load, c, a.cpus)
    if env["foreign"] or (env["other_pct"] or 0) > 10:
        print("  noise      other BPF programs: %s; rest of the machine used %.0f%% CPU" % (
            ",".join(env["foreign"]) or "none", env["other_pct"] or 0))
    note = "" if a.rate == 20000 else " (the target is set at 20,000 conns/s; this run: %d)" % a.rate
    if short:
        note += " (achieved %.0f conns/s only)" % load["conns_per_s"]
    print("  target     < %d bytes/s: %s%s" % (DAEMON_BYTES_TARGET,
                                              verdict(bps < DAEMON_BYTES_TARGET), note))
    TARGETS.append(("daemon output at %d conns/s, bytes/s" % a.rate, "%.0f" % bps, "",
                    "< %d" % DAEMON_BYTES_TARGET, bps < DAEMON_BYTES_TARGET))


def count_tls(path, port):
    """Connection records on 127.0.0.1:port by side and TLS outcome, and the end stats."""
    out = {"records": 0, "client": 0, "server": 0, "tls_ok": 0, "tls_ok_client": 0,
           "tls_ok_server": 0, "outcomes": {}, "other_lines": 0, "stats_end": None,
           "stats_start": None}
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                out["other_lines"] += 1
                continue
            t = rec.get("type")
            if t == "stats":
                out["stats_" + rec.get("phase", "?")] = rec
                continue
            if t != "connection":
                continue
            srv = rec.get("server") or {}
            if srv.get("ip") != "127.0.0.1" or srv.get("port") != port:
                continue  # someone else's connection
            side = rec.get("side", "?")
            out["records"] += 1
            out[side] = out.get(side, 0) + 1
            tls = rec.get("tls")
            outcome = tls.get("outcome", "?") if isinstance(tls, dict) else "no_tls"
            key = "%s/%s" % (side, outcome)
            out["outcomes"][key] = out["outcomes"].get(key, 0) + 1
            if outcome == "ok":
                out["tls_ok"] += 1
                if side in ("client", "server"):
                    out["tls_ok_" + side] += 1
    out.pop("stats_interval", None)
    return out


def prog_stats(d):
    """The bench connscope's programs in bpftool's listing: (type, name) -> [runs, ns]."""
    try:
        with open(os.path.join(d, "prog_stats.json")) as f:
            progs = json.load(f)
        ours = set(int(x) for x in read_words(os.path.join(d, "tracer_prog_ids")))
    except (OSError, ValueError):
        return None
    res = {}
    for p in progs:
        if p.get("id") not in ours:
            continue  # someone else's program
        r = res.setdefault((p.get("type", "?"), p.get("name", "?")), [0, 0])
        r[0] += p.get("run_cnt", 0)
        r[1] += p.get("run_time_ns", 0)
    return res


# The configs of the TLS and DNAT parts, as bench.sh names them, and as reported.
CONFIG_LABEL = {"baseline": "bare", "floor": "floor", "counting": "counting", "daemon": "daemon",
                "connscope": "trace"}
# Configs that are not connscope: no stats record of their own.
FLOORS = ("floor", "counting")
COUNTING_NOTE = ("(the least exact counting in the kernel: opened and closed per cgroup, a "
                 "connect-time histogram, closes per remote, CLOSE_WAIT times, a rescue's mark)")


def tls_runs(a, mode):
    base = os.path.join(a.work, "tls", mode)
    runs = {"baseline": [], "floor": [], "counting": [], "daemon": [], "connscope": []}
    order = {}
    for name in sorted(os.listdir(base)):
        m = re.fullmatch(r"r(\d+)-(\d+)-(\w+)", name)
        if not m:
            continue
        rnd, slot, cfg = int(m[1]), int(m[2]), m[3]
        d = os.path.join(base, name)
        load = load_json(os.path.join(d, "load.json"))
        c0, c1 = read_int(os.path.join(d, "tracer_cpu0")), read_int(os.path.join(d, "tracer_cpu1"))
        tracer_cpu = c1 - c0 if c0 is not None and c1 is not None else None
        first = None
        try:
            with open(os.path.join(d, "first")) as f:
                first = json.loads(f.readline())
        except (OSError, ValueError):
            pass
        records = None
        if os.path.exists(os.path.join(d, "records.json")):
            records = load_json(os.path.join(d, "records.json"))
        work = (load["received"] / 1e6 if mode == "bulk" else load["handshakes"])
        cpu_s = (load["cpu_ms"] + (tracer_cpu or 0)) / 1e3
        runs[cfg].append({
            "round": rnd,
            "value": load["mb_per_s"] if mode == "bulk" else load["handshakes_per_s"],
            # work per CPU second of the load and the tracer together: what connscope
            # costs, whatever else the machine was running
            "per_cpu": work / cpu_s if cpu_s > 0 else 0,
            "load": load,
            "tracer_cpu_ms": tracer_cpu,
            "env": run_env(d, load, tracer_cpu, a.cpus),
            "stats": last_stats(os.path.join(d, "last")),
            "first": first,
            "records": records,
        })
        order.setdefault(rnd, []).append((slot, cfg))
    return runs, order


def ratio_table(runs, order, unit, target):
    """Rounds, medians and ratios of each connscope config to the bare runs; the
    target is the daemon's (trace's is reported). Returns (daemon's ratio or None,
    the configs that ran)."""
    cfgs = [c for c in ("floor", "counting", "daemon", "connscope") if runs.get(c)]
    print("  %-6s %-28s %12s%s%s" % (
        "round", "order", "bare", "".join("%12s" % CONFIG_LABEL[c] for c in cfgs),
        "".join("%14s" % (CONFIG_LABEL[c] + "/bare") for c in cfgs)))
    paired = {c: [] for c in cfgs}
    for rnd in sorted(order):
        by = {c: next((r for r in runs[c] if r["round"] == rnd), None) for c in runs}
        line = "  %-6d %-28s" % (rnd, ",".join(CONFIG_LABEL.get(c, c)
                                               for _, c in sorted(order[rnd])))
        for c in ["baseline"] + cfgs:
            line += ("%11.1f%s" % (by[c]["value"], "*" if by[c]["env"]["foreign"] else " ")
                     if by[c] else "%12s" % "-")
        for c in cfgs:
            if by["baseline"] and by[c]:
                paired[c].append(by[c]["value"] / by["baseline"]["value"])
                line += "%14.3f" % paired[c][-1]
            else:
                line += "%14s" % "-"
        print(line)
    if not runs["baseline"] or not cfgs:
        print("  (no complete pair of runs)")
        return None, cfgs
    mb = statistics.median(r["value"] for r in runs["baseline"])
    result = None
    for c in cfgs:
        mc = statistics.median(r["value"] for r in runs[c])
        ratio = mc / mb
        verdict = ("%s (>= %.2f)" % ("PASS" if ratio >= target else "MISS", target)
                   if c == "daemon" else
                   "(do-nothing programs on the same hooks: what any program there costs)"
                   if c == "floor" else COUNTING_NOTE if c == "counting" else
                   "(reported; the target is the daemon's)")
        print("  median: bare %.1f %s, %s %.1f %s, ratio %.3f (per-round ratios %.3f-%.3f)  %s"
              % (mb, unit, CONFIG_LABEL[c], mc, unit, ratio,
                 min(paired[c] or [0]), max(paired[c] or [0]), verdict))
        if c == "daemon" or result is None:
            result = ratio if c == "daemon" else result
    base = [r["value"] for r in runs["baseline"]]
    print("  bare runs spread %.1f-%.1f %s (%.0f%% of their median): the machine's own "
          "run-to-run noise" % (min(base), max(base), unit, 100.0 * (max(base) - min(base)) / mb))
    return result, cfgs


def per_cpu_lines(runs, cfgs, note, what):
    """Work per CPU second of the load and connscope, each config against bare."""
    eb = statistics.median(r["per_cpu"] for r in runs["baseline"])
    for c in cfgs:
        ec = statistics.median(r["per_cpu"] for r in runs[c])
        print("  per CPU second of the load %s: bare %.1f, %s %.1f %s, ratio %.3f" % (
            note, eb, CONFIG_LABEL[c], ec, what, ec / eb if eb else 0))


def tracer_cpu_lines(runs, cfgs, per):
    """Each config's own CPU while loaded, per round, and per unit of work (per:
    (the load.json count, its name), or None for bulk)."""
    for c in cfgs:
        cpu = [r["tracer_cpu_ms"] for r in runs[c]]
        if not all(x is not None for x in cpu):
            continue
        line = "  %s CPU while loaded: %s ms per round" % (
            CONFIG_LABEL[c], " ".join(str(x) for x in cpu))
        if per:
            made = sum(r["load"][per[0]] for r in runs[c])
            line += ", %.1f us per %s" % (1000.0 * sum(cpu) / made if made else 0, per[1])
        print(line)


def tls_table(a, mode, target):
    runs, order = tls_runs(a, mode)
    unit = "MB/s" if mode == "bulk" else "hs/s"
    if mode == "bulk":
        print("  Bulk: one TLS 1.3 connection, the client writes 16 KiB records for %gs "
              "(MB/s received)" % a.tls_seconds)
    else:
        print("  Handshakes: connect + full TLS 1.3 handshake + close, back to back, %d "
              "client + %d server threads, %gs (handshakes/s)" % (
                  a.tls_workers, a.tls_workers, a.tls_seconds))
    ratio, cfgs = ratio_table(runs, order, unit, target)
    if ratio is None and not cfgs:
        return None
    failed = sum(r["load"].get("failed", 0) for rs in runs.values() for r in rs)
    per_cpu_lines(runs, cfgs, "and connscope (other processes' CPU use does not count; "
                  "the host's speed still does)", "MB" if mode == "bulk" else "handshakes")
    if mode == "handshakes":
        print("  load: %d handshakes failed over all runs, %d resumed (must be 0)" % (
            failed, sum(r["load"].get("resumed", 0) for rs in runs.values() for r in rs)))
    tracer_cpu_lines(runs, cfgs, None if mode == "bulk" else
                     ("handshakes", "handshake (client + server side)"))
    for c in [c for c in cfgs if c not in FLOORS]:
        for r in runs[c]:
            s = r["stats"]
            cg = (r["first"] or {}).get("tls_cgroup")
            if s is None:
                print("    round %d %s: no end stats record (it did not stop cleanly?)" %
                      (r["round"], CONFIG_LABEL[c]))
                continue
            print("    round %d %s end stats: events %d lost %d parser_desync %d "
                  "map_full %d cpu_ms %d%s" % (
                      r["round"], CONFIG_LABEL[c], s["events"], s["lost"],
                      s.get("parser_desync", -1), s["map_full"], s["cpu_ms"],
                      "" if cg == a.cgroup or c == "daemon" and cg is None
                      else "  tls_cgroup %s (expected %s)" % (cg, a.cgroup)))
    if mode == "handshakes":
        tot_ok = tot_made = 0
        for r in runs["connscope"]:
            rec = r["records"]
            made_c, made_s = r["load"]["handshakes"], r["load"]["server"]["handshakes"]
            if rec is None:
                print("    round %d records: not counted" % r["round"])
                continue
            made = made_c + made_s
            tot_ok += rec["tls_ok"]
            tot_made += made
            others = ", ".join("%s %d" % kv for kv in sorted(rec["outcomes"].items())
                               if not kv[0].endswith("/ok"))
            print("    round %d records: tls ok %d (client %d, server %d) of %d on port %d; "
                  "handshakes made %d (client %d + server %d): %s%s" % (
                      r["round"], rec["tls_ok"], rec["tls_ok_client"], rec["tls_ok_server"],
                      rec["records"], a.tls_port, made, made_c, made_s,
                      "PASS" if rec["tls_ok"] == made else "MISS (%+d)" % (rec["tls_ok"] - made),
                      "; other outcomes: " + others if others else ""))
        print("  records: %d connection records with tls outcome ok, %d handshakes made "
              "(client + server side): %s" % (
                  tot_ok, tot_made, "PASS" if tot_ok == tot_made else "MISS"))
    notes = []
    for c in runs:
        for r in runs[c]:
            e = r["env"]
            if e["foreign"] or (e["other_pct"] or 0) > 10 or (e["steal_pct"] or 0) > 5:
                notes.append("    round %d %-10s other BPF programs: %s; rest of the machine "
                             "used %.0f%% CPU, steal %.0f%%" % (
                                 r["round"], c, ",".join(e["foreign"]) or "none",
                                 e["other_pct"] or 0, e["steal_pct"] or 0))
    if notes:
        print("  Noise (* above; every round still counts in the medians):")
        print("\n".join(notes))
    return ratio


def tls_detail(a, mode):
    d = os.path.join(a.work, "tls", "detail-" + mode)
    if not os.path.isdir(d):
        return
    allp = prog_stats(d)
    load = load_json(os.path.join(d, "load.json"))
    st = {k[1]: v for k, v in (allp or {}).items() if k[0] == "cgroup_skb"}
    value = ("%.1f MB/s" % load["mb_per_s"] if mode == "bulk"
             else "%.0f handshakes/s" % load["handshakes_per_s"])
    if not st:
        print("  %-10s (%s): connscope's cgroup_skb programs not found in bpftool's "
              "listing" % (mode, value))
        return
    runs = sum(v[0] for v in st.values())
    ns = sum(v[1] for v in st.values())
    other_ns = sum(v[1] for k, v in allp.items() if k[0] != "cgroup_skb")
    print("  %-10s (%s): %s; all %.0f ns/packet" % (
        mode, value, "; ".join("%s %d runs, %.0f ns/run" % (n, v[0], v[1] / v[0] if v[0] else 0)
                               for n, v in sorted(st.items())), ns / runs if runs else 0))
    if mode == "bulk" and load.get("received"):
        mb = load["received"] / 1e6
        print("             %.1f packets and %.1f us of cgroup_skb time per MB, %.2f%% of the "
              "run's %d CPUs; connscope's other programs %.1f us per MB" % (
                  runs / mb, ns / 1e3 / mb,
                  100.0 * ns / 1e9 / (load["seconds"] * a.cpus) if load["seconds"] else 0,
                  a.cpus, other_ns / 1e3 / mb))
    elif mode == "handshakes" and load.get("handshakes"):
        n = load["handshakes"]
        print("             %.1f packets and %.1f us of cgroup_skb time per handshake (both "
              "sides); connscope's other programs %.1f us per handshake" % (
                  runs / n, ns / 1e3 / n, other_ns / 1e3 / n))


def tls(a):
    print()
    print("TLS: connscope daemon (the DaemonSet's mode: the targets) and trace -o json, "
          "their cgroup_skb programs attached to %s (the load runs inside it), %d rounds, "
          "medians, interleaved with bare runs" % (a.cgroup, a.tls_rounds))
    tls_table(a, "bulk", TLS_BULK_TARGET)
    print()
    tls_table(a, "handshakes", TLS_HANDSHAKE_TARGET)
    print()
    print("  Per packet, measured apart (one more connscope run of each load with "
          "kernel.bpf_stats_enabled=1; run counts and times as bpftool reports them):")
    tls_detail(a, "bulk")
    tls_detail(a, "handshakes")


def dnat_runs(a, mode):
    base = os.path.join(a.work, "dnat", mode)
    runs = {"baseline": [], "floor": [], "counting": [], "daemon": [], "connscope": []}
    order = {}
    for name in sorted(os.listdir(base)):
        m = re.fullmatch(r"r(\d+)-(\d+)-(\w+)", name)
        if not m:
            continue
        rnd, slot, cfg = int(m[1]), int(m[2]), m[3]
        d = os.path.join(base, name)
        load = load_json(os.path.join(d, "load.json"))
        c0, c1 = read_int(os.path.join(d, "tracer_cpu0")), read_int(os.path.join(d, "tracer_cpu1"))
        tracer_cpu = c1 - c0 if c0 is not None and c1 is not None else None
        work = load["received"] / 1e6 if mode == "bulk" else load["connections"]
        cpu_s = (load["cpu_ms"] + (tracer_cpu or 0)) / 1e3
        runs[cfg].append({
            "round": rnd,
            "value": load["mb_per_s"] if mode == "bulk" else load["conns_per_s"],
            "per_cpu": work / cpu_s if cpu_s > 0 else 0,
            "load": load,
            "tracer_cpu_ms": tracer_cpu,
            "env": run_env(d, load, tracer_cpu, a.cpus),
            "stats": last_stats(os.path.join(d, "last")),
        })
        order.setdefault(rnd, []).append((slot, cfg))
    return runs, order


def dnat_table(a, mode, target):
    """One load's table; returns (ratio or None, every connscope run's conntrack ok)."""
    runs, order = dnat_runs(a, mode)
    unit = "MB/s" if mode == "bulk" else "conns/s"
    if mode == "bulk":
        print("  Bulk: one TCP connection client -> VIP:80 -> backend:8080, 64 KiB writes for "
              "%gs (MB/s received)" % a.dnat_seconds)
    else:
        print("  Rate: connect + 16 bytes + close, closed loop, %d client + %d server threads, "
              "16 client addresses -> VIP:81-88 -> backend:8081-8088, %gs (conns/s)" % (
                  a.dnat_workers, a.dnat_workers, a.dnat_seconds))
    ratio, cfgs = ratio_table(runs, order, unit, target)
    if ratio is None and not cfgs:
        return None, False
    per_cpu_lines(runs, cfgs, "process and connscope (softirq work charged to them "
                  "counts; other processes' does not)", "MB" if mode == "bulk" else "connections")
    if mode == "rate":
        failed = sum(r["load"].get("failed", 0) for rs in runs.values() for r in rs)
        print("  load: %d connections failed over all runs (must be 0)" % failed)
    tracer_cpu_lines(runs, cfgs, None if mode == "bulk" else ("connections", "connection"))
    ok_all = True
    for c in [c for c in cfgs if c not in FLOORS]:
        for r in runs[c]:
            s = r["stats"]
            if s is None:
                print("    round %d %s: no end stats record (it did not stop cleanly?)  MISS"
                      % (r["round"], CONFIG_LABEL[c]))
                ok_all = False
                continue
            ct = s.get("conntrack") or {}
            # trace sends every conntrack edge; daemon (problems only) none for
            # healthy flows: the watcher must be on (its events counter read), and
            # lose nothing.
            ok = (ct.get("events", 0) > 0 if c != "daemon" else ct.get("events", -1) >= 0) \
                and ct.get("lost", -1) == 0
            ok_all = ok_all and ok
            print("    round %d %s end stats: events %d lost %d map_full %d; conntrack: "
                  "events %d lost %d map_full %d evictions %d  %s" % (
                      r["round"], CONFIG_LABEL[c], s["events"], s["lost"], s["map_full"],
                      ct.get("events", -1), ct.get("lost", -1), ct.get("map_full", -1),
                      ct.get("evictions", -1), "PASS" if ok else "MISS"))
    watchers = sorted(set((r["stats"].get("conntrack") or {}).get("watcher", "?")
                          for c in cfgs if c not in FLOORS for r in runs[c] if r["stats"]))
    for w in watchers:
        print("    conntrack watcher: %s" % w)
    notes = []
    for c in runs:
        for r in runs[c]:
            e = r["env"]
            if e["foreign"] or (e["other_pct"] or 0) > 10 or (e["steal_pct"] or 0) > 5:
                notes.append("    round %d %-10s other BPF programs: %s; rest of the machine "
                             "used %.0f%% CPU, steal %.0f%%" % (
                                 r["round"], c, ",".join(e["foreign"]) or "none",
                                 e["other_pct"] or 0, e["steal_pct"] or 0))
    if notes:
        print("  Noise (* above; every round still counts in the medians):")
        print("\n".join(notes))
    return ratio, ok_all


def dnat_detail(a, mode):
    d = os.path.join(a.work, "dnat", "detail-" + mode)
    if not os.path.isdir(d):
        return
    allp = prog_stats(d)
    load = load_json(os.path.join(d, "load.json"))
    # bpftool 7.1 does not know BPF_PROG_TYPE_NETFILTER by name: the program's name
    # (ct_hook, or ct_hook_probe) tells it apart.
    st = {k: v for k, v in (allp or {}).items()
          if k[0] == "netfilter" or k[1].startswith("ct_hook")}
    value = ("%.1f MB/s" % load["mb_per_s"] if mode == "bulk"
             else "%.0f conns/s" % load["conns_per_s"])
    if not st:
        print("  %-5s (%s): connscope's netfilter program not found in bpftool's listing "
              "(is kernel.bpf_stats_enabled honoured?)" % (mode, value))
        return
    runs = sum(v[0] for v in st.values())
    ns = sum(v[1] for v in st.values())
    other_ns = sum(v[1] for k, v in allp.items() if k not in st)
    print("  %-5s (%s): %s" % (mode, value, "; ".join(
        "%s (%s) %d runs, %.0f ns/run" % (k[1], k[0], v[0], v[1] / v[0] if v[0] else 0)
        for k, v in sorted(st.items()))))
    cpu_pct = 100.0 * ns / 1e9 / (load["seconds"] * a.cpus) if load["seconds"] else 0
    if mode == "bulk" and load.get("received"):
        mb = load["received"] / 1e6
        print("         %.1f packets and %.1f us of netfilter-program time per MB (%.2f%% of "
              "the run's %d CPUs, %.1f ms in all); connscope's other programs %.1f us per MB"
              % (runs / mb, ns / 1e3 / mb, cpu_pct, a.cpus, ns / 1e6, other_ns / 1e3 / mb))
    elif mode == "rate" and load.get("connections"):
        n = load["connections"]
        print("         %.1f packets and %.2f us of netfilter-program time per connection "
              "(%.2f%% of the run's %d CPUs, %.1f ms in all); connscope's other programs "
              "%.2f us per connection" % (runs / n, ns / 1e3 / n, cpu_pct, a.cpus, ns / 1e6,
                                          other_ns / 1e3 / n))


def dnat(a):
    print()
    print("DNAT: connscope daemon (the DaemonSet's mode: the targets) and trace -o json, "
          "each with --conntrack bpf --conntrack-netns %s (BPF netfilter link, "
          "prerouting/output, priority -99) --cgroup %s; client and backend namespaces "
          "routed by that node namespace, %d rounds, medians, interleaved with bare runs; "
          "loads outside the cgroup" % (a.dnat_node, a.cgroup, a.dnat_rounds))
    rb, okb = dnat_table(a, "bulk", DNAT_BULK_TARGET)
    print()
    rr, okr = dnat_table(a, "rate", DNAT_RATE_TARGET)
    print("  conntrack lost == 0 in every connscope run, and events > 0 under trace (daemon "
          "sends none for healthy flows): %s" % (
        "PASS" if okb and okr else "MISS"))
    print()
    print("  The netfilter program's own cost, measured apart (one more connscope run of "
          "each load with kernel.bpf_stats_enabled=1; run counts and times as bpftool "
          "reports them):")
    dnat_detail(a, "bulk")
    dnat_detail(a, "rate")


H2LOAD_REQ = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
H2LOAD_FIN = re.compile(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.M)
H2LOAD_SPAWN = re.compile(r"^spawning thread #\d+: (\d+) total client\(s\)", re.M)
H2LOAD_PROTO = re.compile(r"^Application protocol: (\S+)", re.M)


def parse_h2load(path, mode, seconds, cpu_ms):
    """h2load's summary (a timed run) as bench.sh's load.json."""
    with open(path, errors="replace") as f:
        text = f.read()
    m = H2LOAD_REQ.search(text)
    fin = H2LOAD_FIN.search(text)
    if not m or not fin:
        raise ValueError("no h2load summary in %s" % path)
    out = dict(zip(("total", "started", "done", "succeeded", "failed", "errored",
                    "timeout"), map(int, m.groups())))
    proto = H2LOAD_PROTO.search(text)
    out.update(mode=mode, req_per_s=float(fin[3]),
               elapsed_s=float(fin[1]) / {"us": 1e6, "ms": 1e3, "s": 1}[fin[2]],
               clients=sum(int(x) for x in H2LOAD_SPAWN.findall(text)),
               protocol=proto[1] if proto else None, seconds=seconds, cpu_ms=cpu_ms)
    return out


def count_h2(path, port):
    """Connection records on 127.0.0.1:port: by side, those with an "h2" object, and
    the sums of h2.streams, h2.goaway.count and h2.rst_stream (per side)."""
    out = {"records": 0, "h2": 0, "streams": 0, "goaway": 0, "rst_stream": 0,
           "sides": {}, "other_lines": 0, "stats_end": None, "stats_start": None}
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                out["other_lines"] += 1
                continue
            t = rec.get("type")
            if t == "stats":
                out["stats_" + rec.get("phase", "?")] = rec
                continue
            if t != "connection":
                continue
            srv = rec.get("server") or {}
            if srv.get("ip") != "127.0.0.1" or srv.get("port") != port:
                continue  # someone else's connection
            side = out["sides"].setdefault(rec.get("side", "?"), {
                "records": 0, "h2": 0, "streams": 0, "goaway": 0, "rst_stream": 0})
            out["records"] += 1
            side["records"] += 1
            h2 = rec.get("h2")
            if not isinstance(h2, dict):
                continue
            goaway = h2.get("goaway")
            vals = {"h2": 1, "streams": h2.get("streams") or 0,
                    "goaway": (goaway.get("count") or 0) if isinstance(goaway, dict) else 0,
                    "rst_stream": h2.get("rst_stream") or 0}
            for k, v in vals.items():
                out[k] += v
                side[k] += v
    out.pop("stats_interval", None)
    return out


def h2_runs(a, mode):
    base = os.path.join(a.work, "h2", mode)
    runs = {c: [] for c in H2_CONFIGS}
    order = {}
    for name in sorted(os.listdir(base)):
        m = re.fullmatch(r"r(\d+)-(\d+)-(\w+)", name)
        if not m or m[3] not in runs:
            continue
        rnd, slot, cfg = int(m[1]), int(m[2]), m[3]
        d = os.path.join(base, name)
        load = load_json(os.path.join(d, "load.json"))
        c0, c1 = read_int(os.path.join(d, "tracer_cpu0")), read_int(os.path.join(d, "tracer_cpu1"))
        tracer_cpu = c1 - c0 if c0 is not None and c1 is not None else None
        first = None
        try:
            with open(os.path.join(d, "first")) as f:
                first = json.loads(f.readline())
        except (OSError, ValueError):
            pass
        records = None
        if os.path.exists(os.path.join(d, "records.json")):
            records = load_json(os.path.join(d, "records.json"))
        cpu_s = (load["cpu_ms"] + (tracer_cpu or 0)) / 1e3
        runs[cfg].append({
            "round": rnd,
            "cfg": H2_NAMES[cfg],
            "value": load["req_per_s"],
            "per_cpu": load["succeeded"] / cpu_s if cpu_s > 0 else 0,
            "load": load,
            "tracer_cpu_ms": tracer_cpu,
            "env": run_env(d, load, tracer_cpu, a.cpus),
            "stats": last_stats(os.path.join(d, "last")),
            "first": first,
            "records": records,
        })
        order.setdefault(rnd, []).append((slot, cfg))
    return runs, order


def h2_table(a, mode, target):
    runs, order = h2_runs(a, mode)
    port = a.h2_port if mode == "h2c" else a.h2_tls_port
    print("  %s: nghttpd%s on 127.0.0.1:%d, h2load -c %d -m %d -t 1 -D %g (requests/s)" % (
        "h2c (prior knowledge)" if mode == "h2c" else "TLS (ALPN h2)",
        " --no-tls" if mode == "h2c" else "", port, a.h2_clients, a.h2_streams,
        a.h2_seconds))
    cfgs = [c for c in H2_CONFIGS if runs[c]]
    print("  %-6s %-38s" % ("round", "order") + "".join(
        "%11s" % H2_NAMES[c] for c in cfgs) + "   ratios")
    paired = {c: [] for c in cfgs}
    for rnd in sorted(order):
        by = {c: next((r for r in runs[c] if r["round"] == rnd), None) for c in cfgs}
        line = "  %-6d %-38s" % (rnd, ",".join(H2_NAMES[c] for _, c in sorted(order[rnd])))
        for c in cfgs:
            line += ("%10.0f%s" % (by[c]["value"], "*" if by[c]["env"]["foreign"] else " ")
                     if by[c] else "%11s" % "-")
        rs = []
        for c in cfgs[1:]:
            if by["baseline"] and by[c]:
                paired[c].append(by[c]["value"] / by["baseline"]["value"])
                rs.append("%.3f" % paired[c][-1])
        print(line + "   " + " ".join(rs))
    if not runs["baseline"] or not runs["connscope"]:
        print("  (no complete set of runs)")
        return None
    mb = statistics.median(r["value"] for r in runs["baseline"])
    ratio = None
    for c in cfgs[1:]:
        mc = statistics.median(r["value"] for r in runs[c])
        judged = c in H2_JUDGED
        want = target if judged else H2_PROBES_TARGET if c == "probes" else None
        print("  %-7s median %.0f req/s, ratio %.3f (per-round %.3f-%.3f)%s" % (
            H2_NAMES[c], mc, mc / mb, min(paired[c]), max(paired[c]),
            ("  %s (>= %.2f)" % ("PASS" if mc / mb >= want else "MISS", want))
            if want else "  (%s)" % H2_NOTES[c]))
        if judged:
            ratio = mc / mb if ratio is None else min(ratio, mc / mb)
    print("  baseline median %.0f req/s" % mb)
    base = [r["value"] for r in runs["baseline"]]
    print("  baseline runs spread %.0f-%.0f req/s (%.0f%% of their median): the machine's "
          "own run-to-run noise" % (min(base), max(base), 100.0 * (max(base) - min(base)) / mb))
    eb = statistics.median(r["per_cpu"] for r in runs["baseline"])
    print("  per CPU second of nghttpd + h2load + the tool, against bare: " + ", ".join(
        "%s %.3f" % (H2_NAMES[c], statistics.median(r["per_cpu"] for r in runs[c]) / eb)
        for c in cfgs[1:]) if eb else "")
    allr = [r for c in cfgs for r in runs[c]]
    print("  load: %d requests failed, %d errored over all runs; h2load clients per run %s, "
          "protocol %s" % (
              sum(r["load"]["failed"] for r in allr), sum(r["load"]["errored"] for r in allr),
              "/".join(sorted(set(str(r["load"]["clients"]) for r in allr))),
              "/".join(sorted(set(str(r["load"]["protocol"]) for r in allr)))))
    cpu = [r["tracer_cpu_ms"] for r in runs["connscope"]]
    if all(x is not None for x in cpu):
        print("  connscope CPU while loaded: %s ms per round" % " ".join(str(x) for x in cpu))
    tot = {"h2": 0, "streams": 0, "records": 0, "started": 0}
    for r in runs["connscope"] + runs["probes"]:
        s = r["stats"]
        cg = (r["first"] or {}).get("tls_cgroup")
        if s is None:
            print("    round %d %s: no end stats record (it did not stop cleanly?)" %
                  (r["round"], r["cfg"]))
        else:
            print("    round %d %s end stats: events %d lost %d parser_desync %d "
                  "map_full %d cpu_ms %d%s" % (
                      r["round"], r["cfg"], s["events"], s["lost"], s.get("parser_desync", -1),
                      s["map_full"], s["cpu_ms"],
                      "" if cg == a.cgroup else "  tls_cgroup %s (expected %s)" % (
                          cg, a.cgroup)))
        rec = r["records"]
        if rec is None:
            print("    round %d records: not counted" % r["round"])
            continue
        ld = r["load"]
        tot["h2"] += rec["h2"]
        tot["streams"] += rec["streams"]
        tot["records"] += rec["records"]
        tot["started"] += ld["started"]
        print("    round %d %s records on port %d: %d connection records, %d with h2 (%s); "
              "h2.streams %d (%s), goaway %d, rst_stream %d; h2load: %d connections, "
              "%d requests started, %d done" % (
                  r["round"], r["cfg"], port, rec["records"], rec["h2"],
                  ", ".join("%s %d" % (k, v["h2"]) for k, v in sorted(rec["sides"].items()))
                  or "-", rec["streams"],
                  ", ".join("%s %d" % (k, v["streams"]) for k, v in sorted(rec["sides"].items()))
                  or "-", rec["goaway"], rec["rst_stream"], ld["clients"], ld["started"],
                  ld["done"]))
    print("  records (not checked yet): %d connection records, %d with an h2 object, "
          "h2.streams summed %d; h2load started %d requests (each side should count "
          "about that many streams)" % (tot["records"], tot["h2"], tot["streams"],
                                         tot["started"]))
    notes = []
    for c in runs:
        for r in runs[c]:
            e = r["env"]
            if e["foreign"] or (e["other_pct"] or 0) > 10 or (e["steal_pct"] or 0) > 5:
                notes.append("    round %d %-10s other BPF programs: %s; rest of the machine "
                             "used %.0f%% CPU, steal %.0f%%" % (
                                 r["round"], c, ",".join(e["foreign"]) or "none",
                                 e["other_pct"] or 0, e["steal_pct"] or 0))
    if notes:
        print("  Noise (* above; every round still counts in the medians):")
        print("\n".join(notes))
    return ratio


def h2_detail(a, mode):
    d = os.path.join(a.work, "h2", "detail-" + mode)
    if not os.path.isdir(d):
        return None
    allp = prog_stats(d)
    load = load_json(os.path.join(d, "load.json"))
    if not allp:
        print("  %-4s (%.0f req/s): connscope's programs not found in bpftool's listing" % (
            mode, load["req_per_s"]))
        return
    n = load["succeeded"] or 1
    wall = load["seconds"] * a.cpus
    tot_ns = sum(v[1] for v in allp.values())
    print("  %-4s (%.0f req/s, %d requests): all of %s programs %.0f ns per request, "
          "%.1f%% of the run's %d CPUs" % (
              mode, load["req_per_s"], load["succeeded"],
              "the walking floor's" if mode.endswith("-walking") else "connscope's",
              tot_ns / n, 100.0 * tot_ns / 1e9 / wall, a.cpus))
    for (typ, name), (runs, ns) in sorted(allp.items(), key=lambda kv: -kv[1][1]):
        if not runs:
            continue
        print("       %-14s %-22s %10d runs %6.0f ns/run  %6.2f runs/request %6.0f ns/request" % (
            typ, name, runs, ns / runs, runs / n, ns / n))
    # uprobes at a function's entry: each run is a breakpoint trap (a return probe
    # shares the entry's trap, and returns through a trampoline).
    traps = sum(runs for (typ, name), (runs, _) in allp.items()
                if typ == "kprobe" and name.startswith("h2u_") and name != "h2u_ssl_ret")
    return {"bpf_ns": tot_ns / n, "traps": traps / n}


def h2_probe_price(a, detail):
    """What a uprobe trap costs here, from the interleaved TLS rounds: CPU per request
    with the probes, less bare's and the BPF programs' own time, over the traps per
    request; and the ratio that cost allows at all."""
    if not detail or not detail["traps"]:
        return
    runs, _ = h2_runs(a, "tls")
    if not runs["baseline"] or not runs["probes"]:
        return
    eb = statistics.median(r["per_cpu"] for r in runs["baseline"])
    ep = statistics.median(r["per_cpu"] for r in runs["probes"])
    if not eb or not ep:
        return
    bare_us, probes_us = 1e6 / eb, 1e6 / ep
    trap_us = (probes_us - bare_us - detail["bpf_ns"] / 1e3) / detail["traps"]
    print("  TLS library probes: %.2f uprobe traps per request (SSL_read, SSL_write entries); "
          "CPU per request %.2f us bare, %.2f us probed, of which BPF %.2f us: a trap costs "
          "about %.1f us on this machine" % (detail["traps"], bare_us, probes_us,
                                             detail["bpf_ns"] / 1e3, trap_us))
    if trap_us > 0:
        print("  at that price %.2f traps per request allow at best %.2f of bare; %.2f (the "
              "target) would take a trap of %.1f us or less, or %.3f traps per request" % (
                  detail["traps"], bare_us / (bare_us + detail["traps"] * trap_us),
                  H2_PROBES_TARGET,
                  bare_us * (1 / H2_PROBES_TARGET - 1) / detail["traps"],
                  bare_us * (1 / H2_PROBES_TARGET - 1) / trap_us))


def h2(a):
    print()
    print("HTTP/2: nghttpd and h2load inside %s (connscope's cgroup_skb programs attached "
          "there), %d rounds, medians, interleaved" % (a.cgroup, a.h2_rounds))
    h2_table(a, "h2c", H2C_TARGET)
    print()
    h2_table(a, "tls", H2_TLS_TARGET)
    print()
    print("  Per request, measured apart (one more connscope run of each with "
          "kernel.bpf_stats_enabled=1; bpftool's run counts and times):")
    h2_detail(a, "h2c")
    h2_detail(a, "h2c-walking")
    h2_detail(a, "tls")
    h2_probe_price(a, h2_detail(a, "tls-probes"))


def count_replay(path, tshark_out, port):
    out = {"connscope": {"records": 0, "on_port": 0, "h2": 0, "tls": 0, "streams": 0,
                         "goaway": 0, "open": 0, "other_lines": 0, "stats": None},
           "tshark": {"lines": 0, "streams": 0, "server_lines": 0}}
    c = out["connscope"]
    with open(path, errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                c["other_lines"] += 1
                continue
            if rec.get("type") == "stats":
                c["stats"] = rec
            if rec.get("type") != "connection":
                continue
            c["records"] += 1
            c["tls"] += "tls" in rec
            c["open"] += rec.get("open") is True
            if (rec.get("server") or {}).get("port") != port:
                continue
            c["on_port"] += 1
            h2 = rec.get("h2")
            if isinstance(h2, dict):
                c["h2"] += 1
                c["streams"] += h2.get("streams") or 0
                c["goaway"] += (h2.get("goaway") or {}).get("count") or 0
    seen = set()
    t = out["tshark"]
    with open(tshark_out, errors="replace") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 4 or not p[1]:
                continue
            t["lines"] += 1
            if int(p[1]) == port:
                t["server_lines"] += 1
                continue
            for typ, sid in zip(p[2].split(","), p[3].split(",")):
                if typ == "1" and sid and int(sid) % 2 == 1:
                    seen.add((p[0], int(sid)))
    t["streams"] = len(seen)
    return out


def parse_time_v(path):
    """/usr/bin/time -v's wall time (s) and peak RSS (KiB)."""
    wall = rss = None
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().rpartition(": ")
            if k.startswith("Elapsed (wall clock) time"):
                sec = 0.0
                for part in v.split(":"):
                    sec = sec * 60 + float(part)
                wall = sec
            elif k == "Maximum resident set size (kbytes)":
                rss = int(v)
    if wall is None or rss is None:
        raise ValueError("no wall time or peak RSS in %s" % path)
    return wall, rss


def replay(a):
    base = os.path.join(a.work, "replay")
    gen = load_json(os.path.join(base, "gen.json"))
    counts = load_json(os.path.join(base, "counts.json"))
    print()
    print("Replay: a %.0f MB capture (%d packets, MTU %s, %d dropped by tcpdump) of h2c (%d requests "
          "over %d connections on port %d) and TLS churn (%d openssl s_time connections, "
          "%d h2load TLS connections); %d rounds, interleaved, medians" % (
              gen["bytes"] / 1e6, gen["packets"], gen.get("mtu", "?"), gen["dropped"],
              gen["h2c_requests"],
              gen["h2c_conns"], gen["h2c_port"], gen["tls_s_time_conns"],
              gen["tls_h2load_conns"], a.replay_rounds))
    runs = {}
    print("  %-6s %-28s %10s %10s %10s" % ("round", "order", "connscope", "tshark", "pcapread"))
    order = {}
    for name in sorted(os.listdir(base)):
        m = re.fullmatch(r"r(\d+)-(\d+)-(\w+)", name)
        if not m:
            continue
        d = os.path.join(base, name)
        wall, rss = parse_time_v(os.path.join(d, "time.txt"))
        try:
            with open(os.path.join(d, "wall_s")) as f:
                wall = float(f.read())      # finer than time -v's 10 ms steps
        except (OSError, ValueError):
            pass
        rc = read_int(os.path.join(d, "rc"))
        runs.setdefault(m[3], []).append({"round": int(m[1]), "wall": wall, "rss": rss,
                                          "rc": rc})
        order.setdefault(int(m[1]), []).append((int(m[2]), m[3]))
    for rnd in sorted(order):
        line = "  %-6d %-28s" % (rnd, ",".join(c for _, c in sorted(order[rnd])))
        for c in ("connscope", "tshark", "pcapread"):
            r = next((x for x in runs.get(c, []) if x["round"] == rnd), None)
            line += "%9.3fs%s" % (r["wall"], "!" if r["rc"] else " ") if r else "%10s" % "-"
        print(line)
    med = {c: {"wall": statistics.median(x["wall"] for x in v),
               "rss": statistics.median(x["rss"] for x in v)} for c, v in runs.items()}
    for c, v in sorted(med.items()):
        print("  %-10s median %.3f s wall (%.0f MB/s), peak RSS %.1f MB%s" % (
            c, v["wall"], gen["bytes"] / 1e6 / v["wall"] if v["wall"] else 0, v["rss"] / 1024,
            "  (non-zero exits: %d)" % sum(1 for x in runs[c] if x["rc"])
            if any(x["rc"] for x in runs[c]) else ""))
    cs = med.get("connscope")
    if cs and "tshark" in med:
        sp = med["tshark"]["wall"] / cs["wall"] if cs["wall"] else float("inf")
        print("  speed: connscope %.1fx tshark's  %s (>= %.0fx)" % (
            sp, "PASS" if sp >= REPLAY_VS_TSHARK_TARGET else "MISS", REPLAY_VS_TSHARK_TARGET))
        rr = cs["rss"] / med["tshark"]["rss"]
        print("  peak RSS: connscope %.1f MB, tshark %.1f MB, ratio %.3f  %s (<= %.2f)" % (
            cs["rss"] / 1024, med["tshark"]["rss"] / 1024, rr,
            "PASS" if rr <= REPLAY_RSS_TARGET else "MISS", REPLAY_RSS_TARGET))
    if cs and "pcapread" in med:
        br = cs["wall"] / med["pcapread"]["wall"] if med["pcapread"]["wall"] else float("inf")
        print("  vs the bare libpcap loop: connscope takes %.2fx its time  %s (<= %.1fx)" % (
            br, "PASS" if br <= REPLAY_VS_BARE_TARGET else "MISS", REPLAY_VS_BARE_TARGET))
    elif cs:
        print("  vs the bare libpcap loop: not measured (tests/bench/pcapread.c missing)")
    c, t = counts["connscope"], counts["tshark"]
    agree = c["streams"] == t["streams"]
    print("  HTTP/2 streams on port %d: connscope %d (over %d connection records with h2), "
          "tshark %d, h2c requests made %d  %s" % (
              a.replay_port, c["streams"], c["h2"], t["streams"], gen["h2c_requests"],
              "AGREE" if agree else "DISAGREE"))
    st = c["stats"] or {}
    print("  connscope: %d connection records (%d TLS, %d open at the end); stats packets %s "
          "flows %s decode_errors %s desyncs %s tls_no_keys %s" % (
              c["records"], c["tls"], c["open"], st.get("packets"), st.get("flows"),
              st.get("decode_errors"), st.get("desyncs"), st.get("tls_no_keys")))
    try:
        with open(os.path.join(base, "connscope.err"), errors="replace") as f:
            err = [ln.rstrip() for ln in f if ln.strip()]
    except OSError:
        err = []
    if err:
        print("  connscope stderr (%d lines): %s" % (len(err), " | ".join(err[:3])))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--count-tls", metavar="TRACE")
    p.add_argument("--count-h2", metavar="TRACE")
    p.add_argument("--parse-h2load", metavar="OUTPUT")
    p.add_argument("--mode")
    p.add_argument("--cpu-ms", type=int)
    p.add_argument("--work")
    p.add_argument("--parts", default="tcp stacks rate tls h2 replay dnat")
    p.add_argument("--rounds", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--rate", type=int)
    p.add_argument("--rate-seconds", type=float)
    p.add_argument("--port", type=int)
    p.add_argument("--nports", type=int)
    p.add_argument("--cpus", type=int)
    p.add_argument("--configs")
    p.add_argument("--closes", default="fin rst")
    p.add_argument("--rst-side", default="client")
    p.add_argument("--top-interval", type=float)
    p.add_argument("--tls-rounds", type=int)
    p.add_argument("--tls-seconds", type=float)
    p.add_argument("--tls-port", type=int)
    p.add_argument("--tls-workers", type=int)
    p.add_argument("--h2-rounds", type=int)
    p.add_argument("--h2-seconds", type=float)
    p.add_argument("--h2-port", type=int)
    p.add_argument("--h2-tls-port", type=int)
    p.add_argument("--h2-clients", type=int)
    p.add_argument("--h2-streams", type=int)
    p.add_argument("--cgroup")
    p.add_argument("--count-replay", metavar="CONNSCOPE_JSONL")
    p.add_argument("--tshark-out")
    p.add_argument("--replay-rounds", type=int)
    p.add_argument("--replay-port", type=int)
    p.add_argument("--dnat-rounds", type=int)
    p.add_argument("--dnat-seconds", type=float)
    p.add_argument("--dnat-workers", type=int)
    p.add_argument("--dnat-node")
    a = p.parse_args()
    if a.count_replay:
        if a.port is None or a.tshark_out is None:
            p.error("--count-replay needs --tshark-out and --port")
        try:
            print(json.dumps(count_replay(a.count_replay, a.tshark_out, a.port)))
        except (OSError, ValueError) as e:
            print("bench: failed to read %s: %s" % (a.count_replay, e), file=sys.stderr)
            return 1
        return 0
    if a.parse_h2load:
        if a.mode is None or a.seconds is None or a.cpu_ms is None:
            p.error("--parse-h2load needs --mode, --seconds and --cpu-ms")
        try:
            print(json.dumps(parse_h2load(a.parse_h2load, a.mode, a.seconds, a.cpu_ms)))
        except (OSError, ValueError) as e:
            print("bench: failed to read %s: %s" % (a.parse_h2load, e), file=sys.stderr)
            return 1
        return 0
    if a.count_h2:
        if a.port is None:
            p.error("--count-h2 needs --port")
        try:
            print(json.dumps(count_h2(a.count_h2, a.port)))
        except OSError as e:
            print("bench: failed to read %s: %s" % (a.count_h2, e), file=sys.stderr)
            return 1
        return 0
    if a.count_tls:
        if a.port is None:
            p.error("--count-tls needs --port")
        try:
            print(json.dumps(count_tls(a.count_tls, a.port)))
        except OSError as e:
            print("bench: failed to read %s: %s" % (a.count_tls, e), file=sys.stderr)
            return 1
        return 0
    need = ["work", "cpus"]
    parts = a.parts.split()
    if "tcp" in parts:
        need += ["rounds", "seconds", "configs"]
    if "stacks" in parts:
        need += ["rounds", "seconds"]
    if "rate" in parts:
        need += ["rate", "rate_seconds", "port", "nports"]
    if "tls" in parts:
        need += ["tls_rounds", "tls_seconds", "tls_port", "tls_workers", "cgroup"]
    if "h2" in parts:
        need += ["h2_rounds", "h2_seconds", "h2_port", "h2_tls_port", "h2_clients",
                 "h2_streams", "cgroup"]
    if "replay" in parts:
        need += ["replay_rounds", "replay_port"]
    if "dnat" in parts:
        need += ["dnat_rounds", "dnat_seconds", "dnat_workers", "dnat_node", "cgroup"]
    missing = [n for n in need if getattr(a, n) is None]
    if missing:
        p.error("missing: " + " ".join("--" + n.replace("_", "-") for n in missing))
    verified = os.path.join(a.work, "verified.txt")
    if os.path.exists(verified):
        with open(verified) as f:
            text = f.read().strip()
        if text:
            print()
            print(text)
    startup = os.path.join(a.work, "startup.txt")
    if os.path.exists(startup):
        with open(startup) as f:
            ms = [int(l.split()[1]) for l in f if len(l.split()) == 2]
        if ms:
            print()
            print(f"connscope start-up (launch to its stats start record, top: to its first "
                  f"frame; polled every 50 ms): "
                  f"median {statistics.median(ms) / 1000:.2f} s, "
                  f"range {min(ms) / 1000:.2f}-{max(ms) / 1000:.2f} s over {len(ms)} starts")
    try:
        if "tcp" in parts:
            for style in a.closes.split():
                tcp(a, style)
        if "stacks" in parts:
            stacks(a)
        if "rate" in parts:
            fixed_rate(a)
            daemon_rate(a)
        if "tls" in parts:
            tls(a)
        if "h2" in parts:
            h2(a)
        if "replay" in parts:
            replay(a)
        if "dnat" in parts:
            dnat(a)
        print_targets()
    except (OSError, KeyError, ValueError, ZeroDivisionError) as e:
        print("bench: failed to read the results: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
