"""Replay tests: real traffic between simulated pods, captured with tcpdump, then
`connscope replay` on the file. Every figure is checked twice: against what the peers
themselves report (h2load's requests and clients, grpc-go's calls and connections,
curl's and openssl's results) and against tshark on the same file (tests/lib/pcaps.py,
whose definitions are in its docstring). Where the live tool can watch the same
traffic, the live figures must be the replayed ones.

What replay prints (connscope(8): RECORDS and the replay command):
  connection  one per TCP connection in the capture, from the client's side
              ("side": "client"); "open": true for those still open at the end;
              "tls" (version, sni, alpn_offered, alpn, handshake_ms, outcome) and "h2"
              ({source: "wire" for h2c, "keylog" when decrypted with --keylog, streams,
              goaway {count, last_stream_id, error, by}, rst_stream, ...}); without the
              key log, HTTP/2 inside TLS has no h2 stream counts;
  finding     close_wait_stuck, tcp_connect_timeout, tcp_connect_refused,
              tls_handshake_failed, h2_reuse_churn, h2_goaway, peer_reset, ...
  summary     one per pod (--pods) or per IP at the end, with "pod" and "ip";
  stats       last: packets, flows, bytes, tcp_segments, decode_errors, desyncs,
              tls_decrypted, tls_no_keys, tls_bad_keys; lost and map_full as live
              (0 here: nothing is dropped), evictions apart.
Records' "ts" is packet time.

Root: the captures are made in network namespaces these tests create (simpod).
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest

import h2peers
import pcaps
import simpod
import tlspeers
from records import TS_RE, is_conn, show
from simpod import Connscope, parse_ts, wait_for_line
import workloads
from workloads import start_server

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
SERVICE = tlspeers.SERVICE
STATS_KEYS = {"packets", "flows", "bytes", "tcp_segments", "decode_errors", "desyncs",
              "tls_decrypted", "tls_no_keys", "tls_bad_keys"}
CONN_KEYS = {"type", "ts", "pod", "side", "client", "server", "start", "duration_ms", "tcp"}
TCP_KEYS = {"outcome", "connect_ms", "syn_retrans", "close", "close_wait_ms", "bytes_in",
            "bytes_out"}
TLS_KEYS = {"version", "sni", "alpn_offered", "alpn", "handshake_ms", "outcome"}
H2_KEYS = {"source", "streams", "goaway", "rst_stream", "max_concurrent_streams"}
GOAWAY_KEYS = {"count", "last_stream_id", "error", "by"}
H2_ERRORS = h2peers.H2_ERRORS
TLS_NAMES = {"TLSv1.2": "TLS1.2", "TLSv1.3": "TLS1.3"}
TLS_NAMES_REV = {v: k for k, v in TLS_NAMES.items()}


# ---------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(autouse=True)
def _binary():
    assert os.access(simpod.CONNSCOPE_BIN, os.X_OK), \
        f"{simpod.CONNSCOPE_BIN} is missing: run make (or set CONNSCOPE_BIN)"


def shop(cluster):
    return cluster.add_pod(NS, "frontend", FE_IP), cluster.add_pod(NS, "backend", BE_IP)


def write_pods(path, pods):
    Path(path).write_text(pcaps.pods_json(pods))
    return str(path)


def pod_is(rec_pod, pod):
    """A record's pod names this simulated pod (the container is the pod's only one,
    or not known from a pods list)."""
    return (isinstance(rec_pod, dict) and rec_pod.get("namespace") == pod.namespace
            and rec_pod.get("name") == pod.name and rec_pod.get("uid") == pod.uid
            and rec_pod.get("container") in (pod.container, None))


def check_replay(res, rc=0):
    """The run's exit status, stdout only JSON objects, and the contract's shape for
    every record; the stats record comes last. Returns res."""
    assert res.rc == rc, f"replay exited {res.rc} (want {rc}): {res.argv}\n{res.stderr}"
    assert not res.bad_lines, f"non-JSON lines on stdout: {res.bad_lines[:5]}"
    problems = []
    for r in res.records:
        t = r.get("type")
        if t not in ("connection", "finding", "summary", "stats"):
            problems.append(f"unknown type: {r}")
            continue
        if not isinstance(r.get("ts"), str) or not TS_RE.match(r["ts"]):
            problems.append(f"bad ts: {r}")
        if t == "connection":
            miss = (CONN_KEYS - r.keys()) | {f"tcp.{k}" for k in TCP_KEYS - r["tcp"].keys()}
            if "tls" in r:
                miss |= {f"tls.{k}" for k in TLS_KEYS - r["tls"].keys()}
            if "h2" in r:
                miss |= {f"h2.{k}" for k in H2_KEYS - r["h2"].keys()}
                miss |= {f"h2.goaway.{k}" for k in GOAWAY_KEYS - (r["h2"].get("goaway") or {}).keys()}
            if miss:
                problems.append(f"connection lacks {sorted(miss)}: {r}")
            if r.get("side") != "client":
                problems.append(f"replay counts from the client's side: {r}")
        elif t == "finding":
            if not {"kind", "severity", "pod", "message"} <= r.keys() \
                    or not str(r.get("message", "")).strip():
                problems.append(f"finding lacks kind/severity/pod/message: {r}")
        elif t == "summary":
            if "pod" not in r or "ip" not in r:
                problems.append(f"summary lacks pod/ip: {r}")
    assert not problems, "records break the contract:\n  " + "\n  ".join(problems[:10])
    st = res.of("stats")
    assert st and res.records[-1] is st[-1], f"the stats record must come last:{show(res.records[-3:])}"
    miss = (STATS_KEYS | {"evictions"}) - st[-1].keys()
    assert not miss, f"stats lacks {sorted(miss)}: {st[-1]}"
    # Replay drops nothing on these captures: lost and map_full mean what they mean
    # live (dropped edges, a full table's refusals), evictions are counted apart.
    assert st[-1]["lost"] == 0 and st[-1]["map_full"] == 0, st[-1]
    assert "evicted" not in st[-1], st[-1]
    return res


def conns_on(res, port):
    return [r for r in res.conns if r["server"]["port"] == port]


def ts_of(rec):
    return parse_ts(rec["ts"]).timestamp()


def assert_ts_in_capture(res, oracle):
    """Every record's time is packet time: within the capture's first and last packet."""
    lo = min(c["first_ts"] for c in oracle["conns"].values()) - 1e-3
    hi = oracle["last_ts"] + 1e-3
    bad = [r for r in res.records if not lo <= ts_of(r) <= hi]
    assert not bad, f"records outside the capture's time span [{lo}, {hi}]:{show(bad)}"


def tshark(path, **kw):
    t = pcaps.tshark_counts(path, **kw)
    rows = pcaps.tshark_fields(path, kw.get("keylog"), kw.get("h2c_ports", ()))
    t["last_ts"] = max(float(r["frame.time_epoch"]) for r in rows)
    return t


def compare_h2(res, oracle, port, source="wire"):
    """replay's connection records for port against tshark's connections, one by one:
    the same set of client endpoints, and per connection the same streams, GOAWAYs
    (count, sender, last stream id, error) and RST_STREAMs."""
    recs = {pcaps.conn_key(r): r for r in conns_on(res, port)}
    orc = {k: c for k, c in pcaps.by_client(oracle).items() if c["server"][1] == port}
    assert len(recs) == len(conns_on(res, port)), f"two records for one client endpoint:" \
        f"{show(conns_on(res, port), 20)}"
    assert set(recs) == set(orc), \
        f"connections: replay {sorted(recs)} vs tshark {sorted(orc)}"
    diffs = []
    for k, c in sorted(orc.items()):
        r = recs[k]
        h = r.get("h2")
        if h is None:
            diffs.append(f"{k}: no h2 object (tshark: {c['streams']} streams)")
            continue
        got = {"source": h["source"], "streams": h["streams"], "goaway": h["goaway"]["count"],
               "rst_stream": h["rst_stream"]}
        want = {"source": source, "streams": c["streams"],
                "goaway": c["goaway_c2s"] + c["goaway_s2c"], "rst_stream": c["rst_stream"]}
        if c["goaways"]:
            last = c["goaways"][-1]
            got.update(by=h["goaway"]["by"], last_stream_id=h["goaway"]["last_stream_id"],
                       error=h["goaway"]["error"])
            want.update(by=last["by"], last_stream_id=last["last_stream_id"],
                        error=H2_ERRORS.get(last["error"], last["error"]))
        if got != want:
            diffs.append(f"{k}: replay {got} vs tshark {want}")
    assert not diffs, "per-connection HTTP/2 figures differ:\n  " + "\n  ".join(diffs[:20])
    return recs, orc


def summary_for(res, ip=None, pod=None):
    s = [r for r in res.of("summary")
         if (ip is None or r.get("ip") == ip) and (pod is None or pod_is(r.get("pod"), pod))]
    assert len(s) == 1, f"want one summary for ip={ip} pod={pod}, got:{show(res.of('summary'))}"
    return s[0]


# ---------------------------------------------------------------------------
# h2c: one capture for several tests (module scope: its own cluster)

H2C_PORT = 31180
NGHTTP_RUNS = 5


@pytest.fixture(scope="module")
def h2c_capture(tmp_path_factory):
    """h2load -n 200 -c 4 -m 10 and NGHTTP_RUNS nghttp runs against nghttpd --no-tls,
    captured at once on the client's eth0 (Ethernet), and on -i any as Linux cooked v2
    and v1. Returns the paths, the peers' results and the pods."""
    d = tmp_path_factory.mktemp("h2c")
    with simpod.Cluster() as c:
        fe, be = shop(c)
        root = h2peers.docroot(d / "www")
        srv = h2peers.nghttpd_h2c(be, H2C_PORT, root)
        # Three tcpdumps on two busy CPUs can drop packets (tcpdump says so): then
        # the traffic is made again, at most three times.
        for attempt in range(3):
            caps = {"eth": pcaps.Tcpdump(d / "eth.pcap", H2C_PORT, pod=fe),
                    "sll2": pcaps.Tcpdump(d / "sll2.pcap", H2C_PORT, pod=fe, iface="any",
                                          linktype="LINUX_SLL2"),
                    "sll": pcaps.Tcpdump(d / "sll.pcap", H2C_PORT, pod=fe, iface="any",
                                         linktype="LINUX_SLL")}
            for cap in caps.values():
                cap.start()
            h2l = h2peers.h2load(fe, f"http://{be.ip}:{H2C_PORT}/index.html", n=200,
                                 clients=4, streams=10)
            runs = [h2peers.nghttp(fe, f"http://{be.ip}:{H2C_PORT}/index.html")
                    for _ in range(NGHTTP_RUNS)]
            for cap in caps.values():
                cap.stop()
            drops = {k: cap.stats.get("dropped", 0) for k, cap in caps.items()}
            if not any(drops.values()):
                break
        h2peers.stop(srv)
        pods = write_pods(d / "pods.json", [fe, be])
        info = {"dir": d, "h2load": h2l, "nghttp": runs, "pods": pods,
                "fe": {"ns": fe.namespace, "name": fe.name, "uid": fe.uid, "ip": fe.ip},
                "be": {"ns": be.namespace, "name": be.name, "uid": be.uid, "ip": be.ip},
                "drops": drops, "paths": {k: str(cap.path) for k, cap in caps.items()}}
    assert h2l["succeeded"] == 200 and h2l["clients"] == 4, h2l
    assert all(r["rc"] == 0 and r["code"] == 200 for r in runs), runs
    return info


class _P:
    """A stand-in for a simpod pod after its cluster is gone (for pod_is)."""
    def __init__(self, d):
        self.namespace, self.name, self.uid, self.ip = d["ns"], d["name"], d["uid"], d["ip"]
        self.container = "app"


def test_oracle_agrees_with_peers(h2c_capture):
    """tshark's counts on the capture are the peers' own: 4 + NGHTTP_RUNS connections,
    200 + NGHTTP_RUNS streams (h2load: 'requests: 200 total, 200 started, 200 done'),
    one client GOAWAY per connection. Everything else trusts this oracle."""
    assert h2c_capture["drops"]["eth"] == 0, h2c_capture["drops"]
    t = tshark(h2c_capture["paths"]["eth"], h2c_ports=[H2C_PORT])
    n = 4 + NGHTTP_RUNS
    assert t["connections"] == n, {k: v for k, v in t.items() if k != "conns"}
    assert t["h2_streams"] == h2c_capture["h2load"]["done"] + NGHTTP_RUNS == 200 + NGHTTP_RUNS
    per = sorted(c["streams"] for c in pcaps.by_client(t).values())
    assert per == [1] * NGHTTP_RUNS + [50] * 4, per
    assert t["goaway_c2s"] == n and t["goaway_s2c"] == 0, t


def test_h2c_counts(h2c_capture):
    """Replay of the h2c capture: the same connections, streams per connection and
    GOAWAYs as tshark (and so as h2load and nghttp); source "wire"; nghttpd's
    SETTINGS_MAX_CONCURRENT_STREAMS 100; stats match the file."""
    path = h2c_capture["paths"]["eth"]
    t = tshark(path, h2c_ports=[H2C_PORT])
    res = check_replay(pcaps.replay(path))
    recs, _ = compare_h2(res, t, H2C_PORT)
    assert len(res.conns) == 4 + NGHTTP_RUNS, show(res.conns)
    assert sum(r["h2"]["streams"] for r in res.conns) == 200 + NGHTTP_RUNS
    for r in res.conns:
        assert r["tcp"]["outcome"] == "established" and not r.get("open"), show([r])
        assert r["client"]["ip"] == FE_IP and r["server"]["ip"] == BE_IP, show([r])
        assert r["h2"]["max_concurrent_streams"] == 100, show([r])
        assert r["h2"]["goaway"]["by"] == "client" and r["h2"]["goaway"]["error"] == "NO_ERROR", show([r])
        assert r["h2"].get("desync", 0) == 0 and not r["h2"].get("joined_midway"), show([r])
        assert "tls" not in r, show([r])
    st = res.stats
    assert st["packets"] == t["packets"] == st["tcp_segments"], (st, t["packets"])
    assert st["flows"] == 4 + NGHTTP_RUNS, st
    assert st["bytes"] == os.path.getsize(path) - 24 - 16 * t["packets"], st
    assert st["decode_errors"] == 0 and st["desyncs"] == 0, st
    assert st["tls_decrypted"] == st["tls_no_keys"] == st["tls_bad_keys"] == 0, st
    assert_ts_in_capture(res, t)
    # the connection's ts is its last packet, start its first
    for k, r in recs.items():
        assert parse_ts(r["start"]) <= parse_ts(r["ts"]), show([r])
    # a GOAWAY(NO_ERROR) at the end of a connection is a goodbye; 5 one-stream
    # connections are under the churn threshold (20)
    assert not res.findings("h2_goaway"), show(res.findings("h2_goaway"))
    assert not res.findings("h2_reuse_churn"), show(res.findings("h2_reuse_churn"))


def test_h2c_summaries_per_ip_and_per_pod(h2c_capture):
    """Without --pods: one summary per IP (pod null). With --pods (kubectl-style JSON
    made from the simulated pods): records and summaries carry the pod, and the
    --pod/--namespace/--port filters select on it."""
    path, fe, be = h2c_capture["paths"]["eth"], _P(h2c_capture["fe"]), _P(h2c_capture["be"])
    n, streams = 4 + NGHTTP_RUNS, 200 + NGHTTP_RUNS
    res = check_replay(pcaps.replay(path))
    assert all(r["pod"] is None for r in res.conns), show(res.conns)
    s = summary_for(res, ip=FE_IP)
    assert s["pod"] is None, show([s])
    assert s["h2"]["connections"] == n and s["h2"]["streams"] == streams, show([s])
    assert s["tcp"]["opened"] == n, show([s])
    # every connection ended with FINs both ways (tshark): nothing is left in CLOSE_WAIT
    assert all(x["close_wait"]["current"] == 0 for x in res.of("summary")), \
        show(res.of("summary"))

    res = check_replay(pcaps.replay(path, "--pods", h2c_capture["pods"]))
    assert res.conns and all(pod_is(r["pod"], fe) for r in res.conns), show(res.conns)
    s = summary_for(res, pod=fe)
    assert s["ip"] == FE_IP, show([s])
    assert s["h2"]["connections"] == n and s["h2"]["streams"] == streams, show([s])
    assert s["h2"]["streams_per_conn"] == pytest.approx(streams / n, abs=0.01), show([s])
    # the server pod is known too (from the IP); it has no client-side connections
    assert all(r["pod"] is None or pod_is(r["pod"], fe) or pod_is(r["pod"], be)
               for r in res.of("summary")), show(res.of("summary"))

    # filters
    for args, want in ((("--pod", f"{NS}/frontend"), n), (("--namespace", NS), n),
                       (("--namespace", "other"), 0), (("--port", H2C_PORT), n),
                       (("--port", H2C_PORT + 1), 0)):
        r = check_replay(pcaps.replay(path, "--pods", h2c_capture["pods"], *args))
        assert len(r.conns) == want, (args, show(r.conns))


def _normalise(res):
    """Records for comparing two replays of the same packets: without the file's name
    (capture.file) and the stats record's file-format specific fields."""
    out = []
    for r in res.records:
        r = dict(r)
        if isinstance(r.get("capture"), dict):
            r["capture"] = {k: v for k, v in r["capture"].items() if k != "file"}
        if r["type"] == "stats":
            r.pop("bytes", None)
            r.pop("cpu_ms", None)
            r.pop("files", None)
        out.append(json.dumps(r, sort_keys=True))
    return out


def test_pcapng_and_gzip_give_identical_records(h2c_capture, tmp_path):
    """The same capture as pcap, pcapng (editcap -F pcapng), and each gzipped: the
    same records."""
    src = h2c_capture["paths"]["eth"]
    ng = pcaps.to_pcapng(src, tmp_path / "c.pcapng")
    files = [src, ng, pcaps.to_gzip(src, tmp_path / "c.pcap.gz"),
             pcaps.to_gzip(ng, tmp_path / "c.pcapng.gz")]
    base = _normalise(check_replay(pcaps.replay(src, "--pods", h2c_capture["pods"])))
    for f in files[1:]:
        got = _normalise(check_replay(pcaps.replay(f, "--pods", h2c_capture["pods"])))
        diff = [(a, b) for a, b in zip(base, got) if a != b]
        assert len(got) == len(base) and not diff, \
            f"{f}: {len(got)} records, the pcap {len(base)}; first differences:\n" + \
            "\n".join(f"  pcap: {a}\n  this: {b}" for a, b in diff[:3])


@pytest.mark.parametrize("kind", ["sll2", "sll"])
def test_linux_cooked_captures_same_counts(h2c_capture, kind):
    """The same traffic captured on -i any as Linux cooked v2 (LINUX_SLL2) and v1
    (LINUX_SLL): the same connections, streams and GOAWAYs as the Ethernet capture."""
    assert h2c_capture["drops"][kind] == 0, h2c_capture["drops"]
    path = h2c_capture["paths"][kind]
    t = tshark(path, h2c_ports=[H2C_PORT])
    assert t["connections"] == 4 + NGHTTP_RUNS and t["h2_streams"] == 200 + NGHTTP_RUNS, t
    res = check_replay(pcaps.replay(path))
    compare_h2(res, t, H2C_PORT)
    eth = check_replay(pcaps.replay(h2c_capture["paths"]["eth"]))
    key = lambda r: (pcaps.conn_key(r), r["h2"]["streams"], r["h2"]["goaway"]["count"])  # noqa: E731
    assert sorted(map(key, res.conns)) == sorted(map(key, eth.conns))


# ---------------------------------------------------------------------------
# HTTP/2 over TLS with and without the key log

TLS_PORT = 31543


def curl_h2(pod, port, keylog, *opts, urls=2):
    """curl --http2 to SERVICE (resolved to the backend), SSLKEYLOGFILE=keylog, `urls`
    requests over one connection. Returns the CompletedProcess."""
    url = f"https://{SERVICE}:{port}/index.html"
    argv = ["env", f"SSLKEYLOGFILE={keylog}", "curl", "-sS", "--http2", "-k",
            "--max-time", "10", "--resolve", f"{SERVICE}:{port}:{BE_IP}",
            "-w", "%{http_version} %{http_code}\\n", *opts]
    for _ in range(urls):
        argv += ["-o", "/dev/null", url]
    cp = pod.run(argv, timeout=20)
    assert cp.returncode == 0 and cp.stdout.split() == ["2", "200"] * urls, \
        (cp.returncode, cp.stdout, cp.stderr)
    return cp


def test_tls_h2_with_and_without_keylog(cluster, pki, tmp_path):
    """nghttpd over TLS; 3 curl --http2 connections (2 requests each) with
    SSLKEYLOGFILE, and h2load over TLS (2 clients, 20 requests; nghttp2's tools write
    no key log). With --keylog: the curl connections' streams decrypted (source "keylog"),
    the same as tshark with the key log; h2load's counted as tls_no_keys, no streams.
    Without --keylog: TLS with ALPN offered h2 and no h2 stream counts."""
    fe, be = shop(cluster)
    root = h2peers.docroot(tmp_path / "www")
    kl = str(tmp_path / "keys.log")
    srv = h2peers.nghttpd_tls(be, pki, TLS_PORT, root)
    path = tmp_path / "tls.pcap"
    with pcaps.Tcpdump(path, TLS_PORT, pod=fe) as cap:
        for _ in range(3):
            curl_h2(fe, TLS_PORT, kl)
        h2l = h2peers.h2load(fe, f"https://{be.ip}:{TLS_PORT}/index.html", n=20, clients=2,
                             streams=5)
        cap.stop()
    h2peers.stop(srv)
    assert h2l["succeeded"] == 20 and h2l["protocol"] == "h2", h2l
    assert cap.stats.get("dropped", 0) == 0, cap.stats

    tk = tshark(path, keylog=kl)
    t0 = tshark(path)
    assert tk["connections"] == t0["connections"] == 5
    # the oracle: the key log decrypts curl's 3 connections (2 streams each), not h2load's
    assert sorted(c["streams"] for c in pcaps.by_client(tk).values()) == [0, 0, 2, 2, 2]
    assert t0["h2_streams"] == 0
    # nghttpd offers only P-256: curl and h2load (X25519 first) get a HelloRetryRequest
    assert tk["client_hellos"] == t0["client_hellos"] == 10, tk["client_hellos"]
    # both definitions of a completed handshake agree here
    assert tk["tls_complete"] == t0["tls_complete"] == 5

    # with the key log
    res = check_replay(pcaps.replay(path, "--keylog", kl))
    decrypted = {k for k, c in pcaps.by_client(tk).items() if c["streams"]}
    assert len(res.conns) == 5, show(res.conns)
    diffs = []
    for r in res.conns:
        k, c = pcaps.conn_key(r), pcaps.by_client(tk)[pcaps.conn_key(r)]
        tl = r.get("tls") or {}
        if tl.get("outcome") != "ok" or tl.get("version") != "TLS1.3" \
                or "h2" not in (tl.get("alpn_offered") or []):
            diffs.append(f"{k}: tls {tl} (tshark: {c['version']}, offered {c['alpn_offered']})")
        if k in decrypted:
            h = r.get("h2") or {}
            if tl.get("sni") != SERVICE or tl.get("alpn") != "h2" or h.get("source") != "keylog" \
                    or h.get("streams") != c["streams"] or h.get("goaway", {}).get("count") != \
                    c["goaway_c2s"] + c["goaway_s2c"]:
                diffs.append(f"{k}: decrypted: tls {tl} h2 {h} vs tshark streams "
                             f"{c['streams']} goaway {c['goaway_c2s'] + c['goaway_s2c']} "
                             f"alpn {c['alpn']} sni {c['sni']}")
        elif (r.get("h2") or {}).get("streams"):
            diffs.append(f"{k}: no keys, yet h2 streams {r['h2']}")
    assert not diffs, "replay with --keylog vs tshark:\n  " + "\n  ".join(diffs)
    st = res.stats
    assert (st["tls_decrypted"], st["tls_no_keys"], st["tls_bad_keys"]) == (3, 2, 0), st

    # without the key log
    res = check_replay(pcaps.replay(path))
    assert len(res.conns) == 5, show(res.conns)
    for r in res.conns:
        tl = r.get("tls") or {}
        assert tl.get("outcome") == "ok" and "h2" in (tl.get("alpn_offered") or []), show([r])
        # TLS 1.3 sends the chosen ALPN encrypted (EncryptedExtensions): without
        # keys it can only be unknown, or inferred
        assert tl.get("alpn") in ("h2", None), show([r])
        assert not (r.get("h2") or {}).get("streams"), show([r])
    assert res.stats["tls_decrypted"] == 0, res.stats
    assert not res.findings("tls_handshake_failed"), show(res.findings())


# TLS versions and ciphers: curl against nghttpd (h2 inside, so the decryption is
# proven by the HTTP/2 stream counts) and openssl s_server/s_client (-keylogfile).
CURL_CASES = {
    "tls1.2-aes128gcm": ("TLS1.2", ["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"]),
    "tls1.2-aes256gcm": ("TLS1.2", ["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"]),
    "tls1.2-chacha20": ("TLS1.2", ["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305"]),
    "tls1.3-aes128gcm": ("TLS1.3", ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"]),
    "tls1.3-aes256gcm": ("TLS1.3", ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"]),
    "tls1.3-chacha20": ("TLS1.3", ["--tlsv1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256"]),
}


def test_tls_versions_and_ciphers_curl(cluster, pki, tmp_path):
    """One capture, one curl connection (2 requests) per TLS version and cipher, each
    with its own key log merged into one: replay with --keylog decrypts every one
    (tls_decrypted 6, h2 streams 2 each, as tshark), and reports version, SNI, ALPN."""
    fe, be = shop(cluster)
    root = h2peers.docroot(tmp_path / "www")
    kl = tmp_path / "keys.log"
    srv = h2peers.nghttpd_tls(be, pki, TLS_PORT + 1, root)
    path = tmp_path / "curl.pcap"
    want = {}
    with pcaps.Tcpdump(path, TLS_PORT + 1, pod=fe) as cap:
        for name, (version, opts) in CURL_CASES.items():
            one = tmp_path / f"{name}.keys"
            curl_h2(fe, TLS_PORT + 1, one, *opts)
            want[name] = version
        cap.stop()
    h2peers.stop(srv)
    with open(kl, "w") as out:
        for name in CURL_CASES:
            out.write((tmp_path / f"{name}.keys").read_text())
    tk = tshark(path, keylog=str(kl))
    t0 = tshark(path)
    oc = sorted(pcaps.by_client(tk).items(), key=lambda kv: kv[1]["first_ts"])
    assert [c["version"] for _, c in oc] == [TLS_NAMES_REV[v] for v in want.values()], \
        [c["version"] for _, c in oc]
    assert [c["streams"] for _, c in oc] == [2] * len(CURL_CASES), [c["streams"] for _, c in oc]
    assert tk["tls_complete"] == t0["tls_complete"] == len(CURL_CASES)
    assert tk["client_hellos"] == t0["client_hellos"]

    res = check_replay(pcaps.replay(path, "--keylog", kl))
    by = {pcaps.conn_key(r): r for r in res.conns}
    assert set(by) == {k for k, _ in oc}, show(res.conns)
    diffs = []
    for (k, c), name in zip(oc, CURL_CASES):
        r = by[k]
        tl, h = r.get("tls") or {}, r.get("h2") or {}
        got = (tl.get("version"), tl.get("sni"), tl.get("alpn"), tl.get("outcome"),
               h.get("source"), h.get("streams"))
        exp = (want[name], SERVICE, "h2", "ok", "keylog", c["streams"])
        if got != exp:
            diffs.append(f"{name} {k}: replay {got} vs expected (tshark) {exp}")
    assert not diffs, "\n  ".join(diffs)
    st = res.stats
    assert (st["tls_decrypted"], st["tls_no_keys"], st["tls_bad_keys"]) == \
        (len(CURL_CASES), 0, 0), st
    assert st["desyncs"] == 0, st


@pytest.mark.parametrize("flag,version", [("-tls1_2", "TLS1.2"), ("-tls1_3", "TLS1.3")],
                         ids=["tls1.2", "tls1.3"])
def test_tls_openssl_handshakes(cluster, pki, tmp_path, flag, version):
    """openssl s_server -www and 3 s_client -keylogfile connections (SNI, no ALPN):
    ClientHellos and completed handshakes as tshark (with and without the key log),
    tls.version/sni/alpn, and the key log decrypts every connection."""
    fe, be = shop(cluster)
    port, n = 31443, 3
    kl = tmp_path / "keys.log"
    path = tmp_path / "ossl.pcap"
    with pcaps.Tcpdump(path, port, pod=fe) as cap:
        srv = tlspeers.openssl_server(be, pki, port, flag, naccept=n)
        res_cl = [tlspeers.s_client(fe, be.ip, port, flag, "-CAfile", pki.ca,
                                    "-verify_return_error", "-keylogfile", kl)
                  for _ in range(n)]
        assert srv.wait(timeout=10) == 0
        cap.stop()
    assert all(r["rc"] == 0 and r["version"] == TLS_NAMES_REV[version] for r in res_cl), res_cl
    tk, t0 = tshark(path, keylog=str(kl)), tshark(path)
    assert tk["connections"] == n and tk["client_hellos"] == t0["client_hellos"] == n
    assert tk["tls_complete"] == t0["tls_complete"] == n
    assert all(c["sni"] == SERVICE and c["alpn_offered"] is None
               for c in pcaps.by_client(tk).values())
    for args, dec in (((), 0), (("--keylog", kl), n)):
        res = check_replay(pcaps.replay(path, *args))
        assert len(res.conns) == n, show(res.conns)
        assert {pcaps.conn_key(r) for r in res.conns} == set(pcaps.by_client(tk))
        for r in res.conns:
            tl = r.get("tls") or {}
            assert (tl.get("version"), tl.get("sni"), tl.get("alpn_offered"), tl.get("alpn"),
                    tl.get("outcome")) == (version, SERVICE, [], None, "ok"), show([r])
            assert isinstance(tl["handshake_ms"], (int, float)) and tl["handshake_ms"] >= 0
            assert "h2" not in r, show([r])
        assert res.stats["tls_decrypted"] == dec, (args, res.stats)
        assert res.stats["tls_bad_keys"] == 0, res.stats


def test_tls_handshake_failed(cluster, pki, tmp_path):
    """A client that rejects the server's certificate (TLS 1.2, s_client trusting an
    unrelated CA): tshark sees no completed handshake; replay says outcome failed and
    a tls_handshake_failed finding, failed by the client."""
    fe, be = shop(cluster)
    port = 31444
    path = tmp_path / "fail.pcap"
    with pcaps.Tcpdump(path, port, pod=fe) as cap:
        srv = tlspeers.openssl_server(be, pki, port, "-tls1_2", naccept=1)
        r = tlspeers.s_client(fe, be.ip, port, "-tls1_2", "-verify_return_error",
                              "-CAfile", pki.other_ca)
        srv.wait(timeout=10)
        cap.stop()
    assert r["rc"] != 0 and r["verify_error"], r
    t = tshark(path)
    assert t["connections"] == 1 and t["client_hellos"] == 1 and t["tls_complete"] == 0, t
    res = check_replay(pcaps.replay(path))
    assert len(res.conns) == 1 and res.conns[0]["tls"]["outcome"] == "failed", show(res.conns)
    f = res.findings("tls_handshake_failed")
    assert len(f) == 1 and f[0].get("failed_by") == "client", show(f)


# ---------------------------------------------------------------------------
# grpc-go: the server's GOAWAYs (MaxConnectionAge)

def test_grpc_max_connection_age_goaway(cluster, h2grpc, tmp_path):
    """grpc-go server with MaxConnectionAge 1 s, a client reusing one ClientConn for
    4 s: connections and calls as the client counts them and as tshark counts them;
    each connection's GOAWAYs as tshark (sent by the server, NO_ERROR); an h2_goaway
    finding for the client pod (with --pods)."""
    fe, be = shop(cluster)
    port = 31190
    path = tmp_path / "grpc.pcap"
    srv = h2peers.grpc_server(be, h2grpc, port, max_age=1, grace=1)
    with pcaps.Tcpdump(path, port, pod=fe) as cap:
        r = h2peers.grpc_client(fe, h2grpc, be.ip, port, mode="reuse", duration=4)
        time.sleep(0.5)
        cap.stop()
    h2peers.stop(srv)
    assert r["rc"] == 0 and r["failed"] == 0 and r["ok"] > 20, r
    t = tshark(path, h2c_ports=[port])
    assert t["connections"] == r["conns"] >= 3, (t["connections"], r)
    assert t["h2_streams"] == r["ok"], (t["h2_streams"], r)
    assert t["goaway_s2c"] >= r["conns"] - 1, t
    pods = write_pods(tmp_path / "pods.json", [fe, be])
    res = check_replay(pcaps.replay(path, "--pods", pods))
    recs, _ = compare_h2(res, t, port)
    assert sum(x["h2"]["streams"] for x in res.conns) == r["ok"]
    away = [x for x in res.conns if x["h2"]["goaway"]["count"]]
    assert len(away) >= r["conns"] - 1, show(res.conns)
    assert all(x["h2"]["goaway"]["by"] == "server" and x["h2"]["goaway"]["error"] == "NO_ERROR"
               for x in away), show(away)
    f = res.findings("h2_goaway")
    assert f and pod_is(f[0]["pod"], fe), show(f)
    assert f[0]["server"] == {"ip": BE_IP, "port": port}, show(f)
    assert not res.findings("h2_reuse_churn"), show(res.findings("h2_reuse_churn"))


# ---------------------------------------------------------------------------
# TCP: CLOSE_WAIT, refused, timed out

def run_client(pod, mode, ip, port, count=1, timeout_s=10.0):
    return workloads.run_client(pod, mode, ip, port, count, timeout_s)[1]


def test_close_wait_stuck(cluster, tmp_path):
    """A server that never closes its socket after the client's FIN: CLOSE_WAIT for
    ~3 s in the capture (then the server is killed and its FIN goes out).
    --close-wait-threshold 2: a close_wait_stuck finding naming the server pod (with
    --pods) or its IP (without); threshold 5: none."""
    fe, be = shop(cluster)
    port = 31083
    path = tmp_path / "cw.pcap"
    with pcaps.Tcpdump(path, port, pod=fe) as cap:
        srv = start_server(be, "hold", port, 1)
        out = run_client(fe, "send-close", be.ip, port, 1)
        wait_for_line(srv, "EOF", 10)
        time.sleep(3)
        srv.send_signal(signal.SIGKILL)
        srv.wait(timeout=10)
        cap.stop()
    t = tshark(path)
    (c,) = pcaps.by_client(t).values()
    assert c["fin_c"] and c["fin_s"], c
    pods = write_pods(tmp_path / "pods.json", [fe, be])
    res = check_replay(pcaps.replay(path, "--close-wait-threshold", 2, "--pods", pods))
    assert len(res.conns) == 1 and res.conns[0]["client"]["port"] in out["ports"], show(res.conns)
    f = res.findings("close_wait_stuck")
    assert len(f) == 1, show(res.findings())
    f = f[0]
    assert pod_is(f["pod"], be), show([f])
    assert f["server"] == {"ip": BE_IP, "port": port}, show([f])
    assert f["client"]["ip"] == FE_IP, show([f])
    assert 2 <= f["age_s"] < 10 and f["threshold_s"] == 2, show([f])
    # it happened 2 s after the client's FIN, in packet time
    res2 = check_replay(pcaps.replay(path, "--close-wait-threshold", 2))
    f2 = res2.findings("close_wait_stuck")
    assert len(f2) == 1 and f2[0]["pod"] is None and f2[0]["server"]["ip"] == BE_IP, show(f2)
    res3 = check_replay(pcaps.replay(path, "--close-wait-threshold", 5))
    assert not res3.findings("close_wait_stuck"), show(res3.findings())


def test_close_wait_open_at_end(cluster, tmp_path):
    """The capture ends while the server still sits in CLOSE_WAIT (3 s after the
    client's FIN, other traffic went on): the connection is reported with "open": true
    and the finding is there."""
    fe, be = shop(cluster)
    port = 31084
    path = tmp_path / "cw-open.pcap"
    with pcaps.Tcpdump(path, [port, port + 1], pod=fe) as cap:
        srv = start_server(be, "hold", port, 1)
        run_client(fe, "send-close", be.ip, port, 1)
        wait_for_line(srv, "EOF", 10)
        echo = start_server(be, "echo", port + 1, 3)
        for _ in range(3):          # traffic that moves packet time on
            time.sleep(1)
            run_client(fe, "echo", be.ip, port + 1, 1)
        cap.stop()
    res = check_replay(pcaps.replay(path, "--close-wait-threshold", 2))
    cw = conns_on(res, port)
    assert len(cw) == 1 and cw[0].get("open") is True, show(cw)
    assert len(conns_on(res, port + 1)) == 3 and not any(r.get("open") for r in conns_on(res, port + 1))
    f = res.findings("close_wait_stuck")
    assert len(f) == 1 and f[0]["server"]["port"] == port, show(res.findings())
    echo.wait(timeout=10)


def test_refused_and_timed_out_connects(cluster, tmp_path):
    """3 connects to a closed port (RST): outcome refused and a tcp_connect_refused
    finding (count 3); 1 connect whose SYNs the server's netns drops (nft): outcome
    timeout with syn_retrans >= 2 and a tcp_connect_timeout finding
    (--connect-timeout 2); tshark sees the same 4 SYN-started connections."""
    fe, be = shop(cluster)
    refused, dropped = 31085, 31086
    be.drop_syns(dropped)
    path = tmp_path / "tcp.pcap"
    with pcaps.Tcpdump(path, [refused, dropped], pod=fe) as cap:
        srv = start_server(be, "echo", dropped, 1)
        out = run_client(fe, "refused", be.ip, refused, 3)
        assert out["results"] == ["refused"] * 3, out
        out = run_client(fe, "timeout", be.ip, dropped, 1, 3.5)
        assert out["results"][0].startswith("timeout"), out
        cap.stop()
    t = tshark(path)
    assert t["connections"] == 4, t
    pods = write_pods(tmp_path / "pods.json", [fe, be])
    res = check_replay(pcaps.replay(path, "--pods", pods, "--connect-timeout", 2))
    rf = conns_on(res, refused)
    assert len(rf) == 3 and all(r["tcp"]["outcome"] == "refused" for r in rf), show(rf)
    assert all(pod_is(r["pod"], fe) for r in rf), show(rf)
    f = res.findings("tcp_connect_refused")
    assert f and sum(x.get("count", 1) for x in f) == 3, show(f)
    assert all(pod_is(x["pod"], fe) and x["server"] == {"ip": BE_IP, "port": refused}
               for x in f), show(f)
    to = conns_on(res, dropped)
    assert len(to) == 1 and to[0]["tcp"]["outcome"] == "timeout", show(to)
    assert to[0]["tcp"]["syn_retrans"] >= 2, show(to)
    f = res.findings("tcp_connect_timeout")
    assert len(f) == 1 and f[0]["server"] == {"ip": BE_IP, "port": dropped}, show(f)
    assert 2 <= f[0]["elapsed_s"] < 3.5, show(f)
    s = summary_for(res, pod=fe)
    assert s["tcp"]["refused"] == 3 and s["tcp"]["timeouts"] == 1, show([s])
    srv.kill()


# ---------------------------------------------------------------------------
# the live tool and replay on the same traffic

def test_live_and_replay_agree(cluster, h2grpc, tmp_path):
    """h2load (h2c, -n 200 -c 4 -m 10), 3 nghttp runs and a grpc-go client whose
    server recycles connections: connscope trace watching live and tcpdump capturing
    at once. Client side: the same connections, streams per connection and GOAWAY
    counts live and in replay."""
    fe, be = shop(cluster)
    h2c, grpc = 31280, 31290
    root = h2peers.docroot(tmp_path / "www")
    srv = h2peers.nghttpd_h2c(be, h2c, root)
    gsrv = h2peers.grpc_server(be, h2grpc, grpc, max_age=1, grace=1)
    path = tmp_path / "live.pcap"
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs, \
            pcaps.Tcpdump(path, [h2c, grpc], pod=fe) as cap:
        r = h2peers.h2load(fe, f"http://{be.ip}:{h2c}/index.html", n=200, clients=4, streams=10)
        assert r["succeeded"] == 200, r
        for _ in range(3):
            assert h2peers.nghttp(fe, f"http://{be.ip}:{h2c}/index.html")["code"] == 200
        g = h2peers.grpc_client(fe, h2grpc, be.ip, grpc, mode="reuse", duration=3)
        assert g["rc"] == 0 and g["failed"] == 0, g
        cs.wait_count(is_conn(h2c, "client"), 7, timeout=10)
        h2peers.stop(gsrv)
        cs.wait_count(is_conn(grpc, "client"), g["conns"], timeout=10)
        cap.stop()
        time.sleep(1)
        live = cs.stop()
    h2peers.stop(srv)
    pods = write_pods(tmp_path / "pods.json", [fe, be])
    res = check_replay(pcaps.replay(path, "--pods", pods))

    def figures(recs, port, mine):
        """(client port, streams, GOAWAYs) of the client pod's connections to port."""
        return sorted((x["client"]["port"], (x.get("h2") or {}).get("streams"),
                       ((x.get("h2") or {}).get("goaway") or {}).get("count"))
                      for x in recs if x.get("type") == "connection"
                      and x.get("side") == "client" and x["server"]["port"] == port
                      and mine(x.get("pod")))

    for port in (h2c, grpc):
        lv = figures(live, port, fe.matches)
        rp = figures(res.records, port, lambda p: pod_is(p, fe))
        assert lv == rp, f"port {port}: live (client port, streams, goaways) {lv}\n" \
                         f"  replay {rp}"
    assert sum(s for _, s, _ in figures(res.records, h2c, lambda p: pod_is(p, fe))) == 203


# ---------------------------------------------------------------------------
# bad input

def _small_capture(tmp_path, cluster):
    """A tiny real h2c capture: 2 nghttp runs."""
    fe, be = shop(cluster)
    root = h2peers.docroot(tmp_path / "www")
    srv = h2peers.nghttpd_h2c(be, 31380, root)
    path = tmp_path / "small.pcap"
    with pcaps.Tcpdump(path, 31380, pod=fe) as cap:
        for _ in range(2):
            assert h2peers.nghttp(fe, f"http://{be.ip}:31380/index.html")["code"] == 200
        cap.stop()
    h2peers.stop(srv)
    return path


def test_bad_input(cluster, tmp_path):
    """Missing file, a text file, an empty file: one clear "connscope: " line naming
    the file, non-zero exit, no crash. A capture cut in the middle of a record: the
    records read before it, and a line naming the file and the packet number. A
    corrupt record length: the same. A missing file next to a good one: the good one
    is replayed."""
    good = _small_capture(tmp_path, cluster)
    recs = pcaps.pcap_records(good)
    whole = check_replay(pcaps.replay(good))
    assert len(whole.conns) == 2, show(whole.conns)

    def one_line(res, name):
        assert res.rc > 0, f"exit {res.rc} for {name}: {res.stderr}"
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert lines and all(ln.startswith("connscope: ") for ln in lines), res.stderr
        assert any(str(name) in ln for ln in lines), f"{name} not named: {res.stderr}"
        assert not res.bad_lines

    missing = tmp_path / "nope.pcap"
    one_line(pcaps.replay(missing), missing)
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n" * 20)
    one_line(pcaps.replay(text), text)
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    one_line(pcaps.replay(empty), empty)
    header_only = tmp_path / "hdr.pcap"
    header_only.write_bytes(good.read_bytes()[:20])
    one_line(pcaps.replay(header_only), header_only)

    # cut in the middle of record k (1-based): k - 1 packets are read
    data = good.read_bytes()
    k = len(recs) * 2 // 3
    start, end = recs[k - 1]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:start + 16 + (end - start - 16) // 2])
    res = pcaps.replay(cut)
    assert res.rc >= 0 and not res.bad_lines, res
    assert str(cut) in res.stderr and str(k) in res.stderr, \
        f"the message must name {cut} and packet {k}: {res.stderr}"
    st = res.stats
    assert st and st["packets"] == k - 1, (st, k)
    assert res.conns, "the connections read before the cut must be reported"
    # cut inside a record header
    cut2 = tmp_path / "cut2.pcap"
    cut2.write_bytes(data[:start + 7])
    res = pcaps.replay(cut2)
    assert res.rc >= 0 and res.stats and res.stats["packets"] == k - 1, res
    assert str(cut2) in res.stderr, res.stderr

    # a corrupt record: its captured length far beyond the snap length
    bad = bytearray(data)
    bad[start + 8:start + 12] = (0x7ffffff0).to_bytes(4, "little")
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(bytes(bad))
    res = pcaps.replay(corrupt)
    assert res.rc >= 0 and not res.bad_lines, res
    assert str(corrupt) in res.stderr and str(k) in res.stderr, res.stderr
    assert res.stats and res.stats["packets"] == k - 1, res.stats

    # a missing file next to a good one: the good one is still replayed
    res = pcaps.replay([missing, good])
    assert str(missing) in res.stderr, res.stderr
    assert len(res.conns) == 2 and not res.bad_lines, res

    # a key log that is not one
    res = pcaps.replay(good, "--keylog", tmp_path / "nokeys.log")
    assert res.rc > 0 and "nokeys.log" in res.stderr and not res.bad_lines, res


def test_keylog_that_does_not_match(cluster, pki, tmp_path):
    """A TLS capture replayed with another session's key log: a clear message, every
    connection counted as tls_no_keys, no stream counts invented. With the right
    client randoms but wrong secrets: tls_bad_keys, no stream counts either."""
    fe, be = shop(cluster)
    root = h2peers.docroot(tmp_path / "www")
    srv = h2peers.nghttpd_tls(be, pki, TLS_PORT + 2, root)
    path, other = tmp_path / "a.pcap", tmp_path / "b.pcap"
    kla, klb = tmp_path / "a.keys", tmp_path / "b.keys"
    with pcaps.Tcpdump(path, TLS_PORT + 2, pod=fe) as cap:
        for _ in range(2):
            curl_h2(fe, TLS_PORT + 2, kla)
        cap.stop()
    with pcaps.Tcpdump(other, TLS_PORT + 2, pod=fe) as cap:
        curl_h2(fe, TLS_PORT + 2, klb)
        cap.stop()
    h2peers.stop(srv)
    # the right key log works
    res = check_replay(pcaps.replay(path, "--keylog", kla))
    assert [r["h2"]["streams"] for r in res.conns] == [2, 2], show(res.conns)
    # another session's
    res = check_replay(pcaps.replay(path, "--keylog", klb))
    assert res.stderr.startswith("connscope: ") and "key" in res.stderr.lower(), res.stderr
    assert len(res.conns) == 2 and not any((r.get("h2") or {}).get("streams")
                                           for r in res.conns), show(res.conns)
    st = res.stats
    assert (st["tls_decrypted"], st["tls_no_keys"]) == (0, 2), st
    # the right randoms, wrong secrets
    bad = []
    for ln in kla.read_text().splitlines():
        p = ln.split()
        if len(p) == 3:
            p[2] = ("00" * (len(p[2]) // 2))
        bad.append(" ".join(p))
    wrong = tmp_path / "wrong.keys"
    wrong.write_text("\n".join(bad) + "\n")
    res = check_replay(pcaps.replay(path, "--keylog", wrong))
    assert "connscope: " in res.stderr, res.stderr
    assert not any((r.get("h2") or {}).get("streams") for r in res.conns), show(res.conns)
    st = res.stats
    assert (st["tls_decrypted"], st["tls_bad_keys"]) == (0, 2), st
