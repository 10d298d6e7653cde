"""Selecting and checking connscope JSON records (the contract in connscope(8), RECORDS)."""

import json
import re

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$")
TYPES = {"connection", "finding", "summary", "stats"}
OUTCOMES = {"established", "refused", "timeout", "reset", "failed"}
CLOSES = {"local_fin", "peer_fin", "rst_in", "rst_out", "none"}
CONN_KEYS = {"type", "ts", "pod", "cgroup", "pid", "comm", "side", "client", "server",
             "start", "duration_ms", "preexisting", "tcp"}
TCP_KEYS = {"outcome", "connect_ms", "syn_retrans", "close", "close_wait_ms",
            "bytes_in", "bytes_out"}
FINDING_KEYS = {"type", "ts", "kind", "severity", "pod", "cgroup", "pid", "comm", "side",
                "client", "server", "message"}
FINDING_EXTRA = {
    "close_wait_stuck": {"age_s", "threshold_s", "preexisting", "holders", "stack"},
    "tcp_connect_timeout": {"elapsed_s", "syn_retrans"},
    "tcp_connect_refused": {"count"},
    "peer_reset": {"count", "cause", "evidence"},
    # HTTP/2 findings name a cause (null when the evidence tells none) and its figures.
    "h2_goaway": {"goaway_by", "last_stream_id", "error", "debug", "streams", "cause",
                  "evidence"},
    "tls_handshake_failed": {"failed_by", "alert", "cause", "evidence"},
    "tls_handshake_timeout": {"cause", "evidence"},
    "h2_reuse_churn": {"window", "threshold_conns", "threshold_streams_per_conn", "source",
                       "cause", "evidence"},
    "h2_stream_cancels": {"cancels", "window_s", "threshold", "cause", "evidence"},
}
STATS_KEYS = {"events", "lost", "map_full", "parser_desync", "cpu_ms", "phase"}


def show(recs, limit=6):
    """Records for an assertion message, without the test's bookkeeping keys."""
    recs = list(recs)
    out = [json.dumps({k: v for k, v in r.items() if not k.startswith("_")})
           for r in recs[:limit]]
    if len(recs) > limit:
        out.append(f"... {len(recs) - limit} more")
    return "\n  " + "\n  ".join(out) if out else " (none)"


def conns(records, port, side=None):
    """connection records whose server port is port (optionally one side)."""
    return [r for r in records if r.get("type") == "connection"
            and (r.get("server") or {}).get("port") == port
            and (side is None or r.get("side") == side)]


def is_conn(port, side=None):
    def pred(r):
        return bool(conns([r], port, side))
    pred.__name__ = f"connection records (server port {port}, side {side or 'any'})"
    return pred


def findings(records, kind, pod=None):
    return [r for r in records if r.get("type") == "finding" and r.get("kind") == kind
            and (pod is None or pod.matches(r.get("pod")))]


def is_finding(kind, pod=None, extra=None):
    def pred(r):
        return bool(findings([r], kind, pod)) and (extra is None or extra(r))
    pred.__name__ = f"finding {kind}" + (f" for {pod.namespace}/{pod.name}" if pod else "")
    return pred


def cgroup_matches(rec, pod):
    """The record's cgroup path names the pod's container cgroup. connscope may
    print it relative to the cgroup2 root or with the mount point in front."""
    cg = rec.get("cgroup")
    return isinstance(cg, str) and cg.rstrip("/").endswith(pod.cgroup_path)


def check_common(records):
    """Every record: known type, ts in RFC 3339 UTC with microseconds, and the
    fields the contract names for its type."""
    problems = []
    for r in records:
        t = r.get("type")
        if t not in TYPES:
            problems.append(f"unknown type: {r}")
            continue
        if not isinstance(r.get("ts"), str) or not TS_RE.match(r["ts"]):
            problems.append(f"bad ts {r.get('ts')!r} in {t}")
        if t == "connection":
            missing = CONN_KEYS - r.keys()
            tcp = r.get("tcp") or {}
            missing |= {f"tcp.{k}" for k in TCP_KEYS - tcp.keys()}
            if missing:
                problems.append(f"connection lacks {sorted(missing)}: {r}")
            if tcp.get("outcome") not in OUTCOMES:
                problems.append(f"bad tcp.outcome: {r}")
            if tcp.get("close") not in CLOSES:
                problems.append(f"bad tcp.close: {r}")
            if r.get("side") not in ("client", "server"):
                problems.append(f"bad side: {r}")
            # a connection that was open before connscope started has no known
            # start; nor has one whose birth the kernel no longer holds (on-demand
            # socket state, its slot taken by a later socket): then its connect
            # time is unknown too
            if not (TS_RE.match(str(r.get("start")))
                    or (r.get("start") is None and (r.get("preexisting") is True or
                                                    tcp.get("connect_ms") is None))):
                problems.append(f"bad start: {r}")
        elif t == "finding":
            missing = (FINDING_KEYS | FINDING_EXTRA.get(r.get("kind"), set())) - r.keys()
            if missing:
                problems.append(f"finding lacks {sorted(missing)}: {r}")
            if not (isinstance(r.get("message"), str) and r["message"].strip()):
                problems.append(f"finding without a message: {r}")
        elif t == "stats":
            missing = STATS_KEYS - r.keys()
            if missing:
                problems.append(f"stats lacks {sorted(missing)}: {r}")
    assert not problems, "records break the contract:\n  " + "\n  ".join(problems[:10])


def sample(text, series):
    """The value of one sample, `name{labels}` as written, in a /metrics
    exposition, or None."""
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None
