"""Live HTTP/2 tests: real HTTP/2 peers between simulated pods, real connscope.

Peers (tests/lib/h2peers.py): nghttpd (h2c and TLS), h2load, nghttp, and a grpc-go
server and client (tests/lib/go/h2grpc, built here from Debian's golang-go and
golang-google-grpc-dev, offline). connscope runs with --cgroup <the cluster's
cgroup> (simpod.Connscope adds it), so its packet programs see only the test's pods.

What the records must say (connscope(8), RECORDS): an HTTP/2 connection's record carries
  h2 {streams, goaway: {count, last_stream_id, error}, rst_stream, max_concurrent_streams}
(absent when the connection is not HTTP/2); findings h2_reuse_churn and h2_goaway;
summaries an h2 {connections, streams, streams_per_conn, goaway, rst_stream}.

Figures are exact where the peers make them exact (h2load's connections and
requests), and checked against what the peers themselves report.
"""

import json
import struct
import subprocess
import time

import pytest

import h2peers
from records import check_common, conns, findings, is_conn, is_finding, show
from simpod import Connscope, fd_links

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
SETTLE = 1.5
H2_KEYS = {"streams", "goaway", "rst_stream", "max_concurrent_streams"}
GOAWAY_KEYS = {"count", "last_stream_id", "error"}
SUMMARY_H2_KEYS = {"connections", "streams", "streams_per_conn", "goaway", "rst_stream"}






@pytest.fixture
def docroot(tmp_path):
    return h2peers.docroot(tmp_path / "www")


def shop(cluster):
    return cluster.add_pod(NS, "frontend", FE_IP), cluster.add_pod(NS, "backend", BE_IP)


def check_h2(records):
    """The h2 object of every connection record and the HTTP/2 summaries keep the
    contract's shape."""
    problems = []
    for r in records:
        if r.get("type") == "connection" and "h2" in r:
            h = r["h2"]
            if isinstance(h, dict) and h.get("source") == "tls_alpn":
                # TLS seen on the wire (ALPN h2): no frame was seen, none counted.
                g = h.get("goaway") or {}
                if H2_KEYS - h.keys() or GOAWAY_KEYS - g.keys() \
                        or any(h[k] is not None for k in H2_KEYS - {"goaway"}) \
                        or any(v is not None for v in g.values()) \
                        or h.get("joined_midway") is not False \
                        or "h2" not in r.get("tls", {}).get("alpn_offered", []):
                    problems.append(f"a wire-only TLS connection with counts: {r}")
                continue
            if not isinstance(h, dict) or H2_KEYS - h.keys() \
                    or GOAWAY_KEYS - (h.get("goaway") or {}).keys():
                problems.append(f"h2 lacks fields: {r}")
                continue
            if h.get("joined_midway") is True:
                if h["streams"] is not None or h["desync"] < 1:
                    problems.append(f"a connection joined midway with counts: {r}")
            elif not (isinstance(h["streams"], int) and h["streams"] >= 0):
                problems.append(f"bad h2.streams: {r}")
            if h["goaway"]["count"] == 0 and h["goaway"]["error"] is not None:
                problems.append(f"a GOAWAY error without a GOAWAY: {r}")
        if r.get("type") == "summary" and r.get("h2") is not None:
            missing = SUMMARY_H2_KEYS - r["h2"].keys()
            if missing:
                problems.append(f"summary h2 lacks {sorted(missing)}: {r}")
    assert not problems, "HTTP/2 records break the contract:\n  " + "\n  ".join(problems[:10])


def finish(cs, desync_ok=False):
    time.sleep(SETTLE)
    records = cs.stop()
    check_common(records)
    check_h2(records)
    stats = [r for r in records if r["type"] == "stats"]
    assert all(s["lost"] == 0 for s in stats), show(stats)
    if not desync_ok:
        assert stats[-1]["parser_desync"] == 0, f"a parser lost its place:{show(stats[-1:])}"
    return records


def h2_conns(records, port, side, pod):
    return [r for r in conns(records, port, side) if pod.matches(r.get("pod"))]


def summary_of(records, pod):
    s = [r for r in records if r["type"] == "summary" and pod.matches(r.get("pod"))]
    assert s, f"no summary for {pod.ref}"
    return s[-1]


# ---------------------------------------------------------------------------
# h2c on the wire

def test_h2load_h2c_exact_counts(cluster, docroot):
    """h2load -n 600 -c 6 -m 10 against nghttpd --no-tls: each side sees exactly 6
    HTTP/2 connections and 600 streams, from the wire."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_h2c(be, 31080, docroot)
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        r = h2peers.h2load(fe, f"http://{be.ip}:31080/index.html", n=600, clients=6,
                           streams=10)
        assert r["succeeded"] == 600 and r["clients"] == 6, r
        cs.wait_count(is_conn(31080, "client"), 6, timeout=10)
        cs.wait_count(is_conn(31080, "server"), 6, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    for side, pod in (("client", fe), ("server", be)):
        cl = h2_conns(records, 31080, side, pod)
        assert len(cl) == 6, show(cl)
        assert all("h2" in c for c in cl), f"{side}: a connection without h2:{show(cl)}"
        assert sum(c["h2"]["streams"] for c in cl) == 600, show(cl)
        assert all(c["h2"]["source"] == "wire" for c in cl), show(cl)
        # nghttpd announces SETTINGS_MAX_CONCURRENT_STREAMS 100
        assert all(c["h2"]["max_concurrent_streams"] == 100 for c in cl), show(cl)
        # h2load ends each connection with a GOAWAY(NO_ERROR)
        assert all(c["h2"]["goaway"]["count"] >= 1 and c["h2"]["goaway"]["by"] == "client"
                   and c["h2"]["goaway"]["error"] == "NO_ERROR" for c in cl), show(cl)
        assert all(c["h2"]["desync"] == 0 for c in cl), show(cl)
        s = summary_of(records, pod)["h2"]
        assert s["connections"] == 6 and s["streams"] == 600 and s["streams_per_conn"] == 100, s
    assert not findings(records, "h2_reuse_churn"), show(findings(records, "h2_reuse_churn"))
    # h2load's closing GOAWAY(NO_ERROR) is a goodbye, not a recycle
    assert not findings(records, "h2_goaway"), show(findings(records, "h2_goaway"))


def test_nghttp_runs_are_churn(cluster, docroot):
    """40 separate nghttp runs: 40 connections of one stream each, and an
    h2_reuse_churn finding for the client pod (none for the server)."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_h2c(be, 31081, docroot)
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        for _ in range(40):
            r = h2peers.nghttp(fe, f"http://{be.ip}:31081/index.html")
            assert r["rc"] == 0 and r["code"] == 200, r
        cs.wait_count(is_conn(31081, "client"), 40, timeout=10)
        cs.wait_for(is_finding("h2_reuse_churn", fe), timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    cl = h2_conns(records, 31081, "client", fe)
    assert len(cl) == 40 and all(c.get("h2", {}).get("streams") == 1 for c in cl), show(cl)
    f = findings(records, "h2_reuse_churn", fe)
    assert len(f) == 1, show(f)
    assert f[0]["server"] == {"ip": BE_IP, "port": 31081}, show(f)
    assert f[0]["window"]["closed"] >= 20 and f[0]["window"]["streams_per_conn"] == 1, show(f)
    assert not findings(records, "h2_reuse_churn", be), "the server side is not the churner"
    s = summary_of(records, fe)["h2"]
    assert s["connections"] == 40 and s["streams"] == 40 and s["streams_per_conn"] == 1, s


def test_h2load_reuse_is_not_churn(cluster, docroot):
    """Few connections with many streams each: no churn finding even with a low
    connection threshold."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_h2c(be, 31082, docroot)
    with Connscope(cluster, "--namespace", NS, "-i", 60, "--h2-churn-conns", 2) as cs:
        for _ in range(3):
            r = h2peers.h2load(fe, f"http://{be.ip}:31082/index.html", n=50, clients=1,
                               streams=5)
            assert r["succeeded"] == 50, r
        cs.wait_count(is_conn(31082, "client"), 3, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    cl = h2_conns(records, 31082, "client", fe)
    assert [c["h2"]["streams"] for c in cl] == [50, 50, 50], show(cl)
    assert not findings(records, "h2_reuse_churn"), show(findings(records, "h2_reuse_churn"))


# ---------------------------------------------------------------------------
# grpc-go

def test_grpc_max_connection_age_goaway(cluster, h2grpc):
    """A grpc-go server with MaxConnectionAge 1 s and a client reusing one ClientConn
    for 4 s: the server's GOAWAYs and the client's reconnects are counted, and the
    run of GOAWAYs is an h2_goaway finding."""
    fe, be = shop(cluster)
    srv = h2peers.grpc_server(be, h2grpc, 31090, max_age=1, grace=1)
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        r = h2peers.grpc_client(fe, h2grpc, be.ip, 31090, mode="reuse", duration=4)
        assert r["rc"] == 0 and r["failed"] == 0 and r["ok"] > 20, r
        cs.wait_for(is_finding("h2_goaway", fe), timeout=10)
        h2peers.stop(srv)
        time.sleep(SETTLE)
        records = finish(cs)
    # (a connection grpc-go opens as the client stops may close before its
    # preface: no HTTP/2 to count in it)
    cl = [c for c in h2_conns(records, 31090, "client", fe) if "h2" in c]
    assert len(cl) >= 3, show(cl)
    # every connection but the last one open when the client stopped was recycled
    away = [c for c in cl if c["h2"]["goaway"]["count"] >= 1]
    assert len(away) >= len(cl) - 1, show(cl)
    assert all(c["h2"]["goaway"]["by"] == "server" and c["h2"]["goaway"]["error"] == "NO_ERROR"
               for c in away), show(away)
    # the calls went over these connections, one stream each
    assert sum(c["h2"]["streams"] for c in cl) == r["ok"], (r, show(cl))
    f = findings(records, "h2_goaway", fe)
    assert f and f[0]["severity"] == "warning" and f[0]["goaway_connections"] >= 3, show(f)
    # Graceful GOAWAYs at a steady age: the cause, with the lifetimes behind it.
    assert f[0]["cause"] == "max_connection_age", show(f)
    ev = f[0]["evidence"]
    assert ev["error"] == "NO_ERROR" and ev["ended_connections"] >= 2, show(f)
    assert 800 <= ev["lifetime_p10_ms"] <= ev["median_lifetime_ms"] <= ev["lifetime_p90_ms"] \
        < 3500, show(f)
    assert "MaxConnectionAge" in f[0]["message"], show(f)
    print("\n" + json.dumps({k: f[0][k] for k in ("cause", "evidence", "message")}))
    if "conns" in r:
        assert len(cl) == r["conns"], (r, show(cl))
    assert not findings(records, "h2_reuse_churn", fe), "reconnects every second are not churn"


def test_grpc_keepalive_too_frequent_names_the_cause(cluster, h2grpc):
    """A client that pings a grpc-go server (its default enforcement: no pings while
    no stream is open) several times in a row: the server answers GOAWAY
    ENHANCE_YOUR_CALM with debug data "too_many_pings". Read from the wire (h2c),
    both ends' findings name the cause and show the figures behind it; the records
    carry the debug data."""
    fe, be = shop(cluster)
    port = 31092
    srv = h2peers.grpc_server(be, h2grpc, port)
    pings = [_frame(6, 0, 0, b"%08d" % i) for i in range(6)]
    code = f"""
import socket, time
s = socket.create_connection(("{be.ip}", {port}))
s.sendall({h2peers.PREFACE + _frame(4, 0, 0)!r})
time.sleep(0.2)
s.sendall({_frame(4, 1, 0)!r})
for p in {pings!r}:
    try:
        s.sendall(p)
    except OSError:
        break
    time.sleep(0.05)
s.settimeout(5)
got = b""
while True:
    try:
        d = s.recv(65536)
    except OSError:
        break
    if not d:
        break
    got += d
s.close()
print("GOAWAY" if b"too_many_pings" in got else "none", flush=True)
"""
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        cp = fe.run(["/usr/bin/python3", "-c", code], timeout=20)
        assert cp.returncode == 0 and cp.stdout.strip() == "GOAWAY", (cp.stdout, cp.stderr)
        cs.wait_for(is_finding("h2_goaway", fe), timeout=10)
        cs.wait_for(is_finding("h2_goaway", be), timeout=10)
        cs.wait_count(is_conn(port, "client"), 1, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    for pod, by in ((fe, "received"), (be, "sent")):
        (f,) = findings(records, "h2_goaway", pod)
        assert f["severity"] == "error" and f["error"] == "ENHANCE_YOUR_CALM", show([f])
        assert f["goaway_by"] == "server" and f["debug"] == "too_many_pings", show([f])
        assert f["cause"] == "keepalive_too_frequent", show([f])
        ev = f["evidence"]
        # grpc-go strikes a ping without streams from the second on, and sends the
        # GOAWAY past its second strike: 3 or 4 pings, whichever the walk has seen.
        assert ev["debug"] == "too_many_pings" and 3 <= ev["pings"] <= 6, show([f])
        assert ev["streams"] == 0, show([f])
        assert by in f["message"] and "keepalive" in f["message"], show([f])
        print("\n" + json.dumps({k: f[k] for k in ("cause", "evidence", "message")}))
    (c,) = h2_conns(records, port, "client", fe)
    g = c["h2"]["goaway"]
    assert g["count"] == 1 and g["by"] == "server" and g["error"] == "ENHANCE_YOUR_CALM" \
        and g["debug"] == "too_many_pings", show([c])


def test_grpc_client_conn_per_call_is_churn(cluster, h2grpc):
    """The same client creating a ClientConn per call: h2_reuse_churn."""
    fe, be = shop(cluster)
    srv = h2peers.grpc_server(be, h2grpc, 31091)
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        r = h2peers.grpc_client(fe, h2grpc, be.ip, 31091, mode="percall", duration=4)
        assert r["rc"] == 0 and r["failed"] == 0 and r["ok"] >= 20, r
        cs.wait_for(is_finding("h2_reuse_churn", fe), timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    cl = h2_conns(records, 31091, "client", fe)
    assert len(cl) == r["ok"], (r, show(cl))
    assert all(c["h2"]["streams"] == 1 for c in cl), show(cl)
    f = findings(records, "h2_reuse_churn", fe)
    assert len(f) == 1 and f[0]["server"]["port"] == 31091, show(f)
    # The client closed each connection itself after one call: the cause, and why.
    assert f[0]["cause"] == "client_per_call", show(f)
    ev = f[0]["evidence"]
    own = ev["ended_by_local_fin"] + ev["ended_by_local_rst"]
    assert ev["streams_per_conn"] == 1 and own * 5 >= ev["closed"] * 4, \
        show(f)
    assert "ClientConn" in f[0]["message"], show(f)


def test_grpc_deadline_cancels_name_the_cause(cluster, h2grpc):
    """A grpc-go client whose call deadline (100 ms) is shorter than the server's
    answer (a Health/Watch stream the server never ends): grpc-go cancels each call
    with RST_STREAM CANCEL on one reused connection. The client pod gets one
    h2_stream_cancels finding, cause deadline_cancels, with the cancels counted;
    the server pod, which cancelled nothing, gets none."""
    fe, be = shop(cluster)
    port = 31095
    srv = h2peers.grpc_server(be, h2grpc, port)
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        r = h2peers.grpc_client(fe, h2grpc, be.ip, port, mode="deadline", duration=3,
                                interval=0.05, call_timeout=0.1)
        assert r["rc"] == 0 and r["failed"] == 0 and r["ok"] >= 18 and r["conns"] == 1, r
        cs.wait_for(is_finding("h2_stream_cancels", fe), timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    f = findings(records, "h2_stream_cancels", fe)
    assert len(f) == 1 and f[0]["server"]["port"] == port, show(f)
    assert f[0]["cause"] == "deadline_cancels", show(f)
    ev = f[0]["evidence"]
    assert ev["cancels"] >= 10 and ev["cancels"] <= r["calls"], (r, show(f))
    assert f[0]["cancels"] == ev["cancels"] and f[0]["threshold"] == 10, show(f)
    assert "deadline" in f[0]["message"], show(f)
    assert not findings(records, "h2_stream_cancels", be), show(records)
    # The connection's record: every call one stream; the cancels among its
    # RST_STREAMs (grpc-go sends none for a call its stream had already ended).
    cl = h2_conns(records, port, "client", fe)
    assert len(cl) == 1, show(cl)
    assert cl[0]["h2"]["streams"] == r["calls"], (r, show(cl))
    assert ev["cancels"] <= cl[0]["h2"]["rst_stream"], (r, show(cl), show(f))


# ---------------------------------------------------------------------------
# desync: joined mid-connection

def _frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


# A request header block in HPACK (RFC 7541): indexed :method GET (2), :scheme http
# (6), :path / (4), and :authority as a literal without indexing (name index 1).
def _request(stream, authority=b"backend"):
    block = bytes([0x82, 0x86, 0x84, 0x01, len(authority)]) + authority
    return _frame(1, 0x05, stream, block)  # END_STREAM | END_HEADERS


def test_joined_mid_connection_invents_nothing(cluster, docroot):
    """An HTTP/2 connection that started before connscope: its later requests are
    not counted as streams of a connection connscope never saw begin; the record
    says it was pre-existing, joined midway, and counts a desync."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_h2c(be, 31083, docroot)
    later = b"".join(_request(sid) for sid in (3, 5, 7))
    code = f"""
import socket, sys, time
s = socket.create_connection(("{be.ip}", 31083))
s.sendall({h2peers.PREFACE + _frame(4, 0, 0) + _request(1)!r})
time.sleep(0.3); s.recv(65536)
print("READY", flush=True)
sys.stdin.readline()
s.sendall({later!r})
time.sleep(0.3); s.recv(65536)
s.close()
print("DONE", flush=True)
"""
    cli = fe.popen(["/usr/bin/python3", "-c", code], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, text=True)
    assert cli.stdout.readline().strip() == "READY"
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        cli.stdin.write("go\n")
        cli.stdin.flush()
        assert cli.stdout.readline().strip() == "DONE"
        cli.wait(timeout=10)
        cs.wait_count(is_conn(31083, "client"), 1, timeout=10)
        h2peers.stop(srv)
        records = finish(cs, desync_ok=True)
    cl = h2_conns(records, 31083, "client", fe)
    assert len(cl) == 1 and cl[0]["preexisting"] is True, show(cl)
    h = cl[0].get("h2")
    # Recognised as HTTP/2 from its frames, the lost boundary said out loud, and
    # no stream counted from the middle.
    assert h is not None and h["joined_midway"] is True and h["desync"] >= 1 \
        and h["streams"] is None, show(cl)
    stats = [r for r in records if r["type"] == "stats"]
    assert stats[-1]["parser_desync"] >= 1, show(stats[-1:])


# ---------------------------------------------------------------------------
# HTTP/2 inside TLS, at the TLS library

def test_h2load_tls_openssl_exact_counts(cluster, pki, docroot):
    """The same h2load run over TLS with --h2-plaintext all: the same figures, from
    the OpenSSL probes in both processes (h2load and nghttpd use the system libssl)."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_tls(be, pki, 31443, docroot)
    with Connscope(cluster, "--namespace", NS, "-i", 60, "--h2-plaintext", "all") as cs:
        r = h2peers.h2load(fe, f"https://{be.ip}:31443/index.html", n=600, clients=6,
                           streams=10)
        assert r["succeeded"] == 600 and r["clients"] == 6 and r["protocol"] == "h2", r
        cs.wait_count(is_conn(31443, "client"), 6, timeout=10)
        cs.wait_count(is_conn(31443, "server"), 6, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    for side, pod in (("client", fe), ("server", be)):
        cl = h2_conns(records, 31443, side, pod)
        assert len(cl) == 6, show(cl)
        assert all(c.get("tls", {}).get("outcome") == "ok" for c in cl), show(cl)
        assert all(c.get("h2", {}).get("source") == "openssl" for c in cl), show(cl)
        assert sum(c["h2"]["streams"] for c in cl) == 600, show(cl)
        assert all(c["h2"]["max_concurrent_streams"] == 100 for c in cl), show(cl)
        s = summary_of(records, pod)["h2"]
        assert s["connections"] == 6 and s["streams"] == 600, s


def test_tls_default_probes_nothing(cluster, pki, docroot):
    """By default no TLS call is probed: connscope holds no uprobe (each one a
    perf event), its stats say h2_plaintext off, and the TLS connections of an
    h2load run are still there, handshakes judged on the wire, with no stream
    counts made up."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_tls(be, pki, 31445, docroot)
    with Connscope(cluster, "--namespace", NS, "-i", 60) as cs:
        perf = [f for f, link in fd_links(cs.proc.pid).items() if "perf_event" in link]
        r = h2peers.h2load(fe, f"https://{be.ip}:31445/index.html", n=60, clients=3,
                           streams=10)
        assert r["succeeded"] == 60 and r["clients"] == 3 and r["protocol"] == "h2", r
        cs.wait_count(is_conn(31445, "server"), 3, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    assert perf == [], f"perf events (uprobes) held by default: {len(perf)}"
    stats = [x for x in records if x["type"] == "stats"]
    assert all(x["h2_plaintext"] == "off" for x in stats), show(stats)
    for side, pod in (("client", fe), ("server", be)):
        cl = h2_conns(records, 31445, side, pod)
        assert len(cl) == 3, show(cl)
        assert all(c.get("tls", {}).get("outcome") == "ok" for c in cl), show(cl)
        # HTTP/2 by the ALPN on the wire, with no stream count made up.
        assert all(c["h2"]["source"] == "tls_alpn" for c in cl), show(cl)
        assert all(c["h2"]["streams"] is None for c in cl), show(cl)


def test_grpc_go_tls_goaway_and_churn(cluster, pki, h2grpc):
    """grpc-go over Go's crypto/tls: with MaxConnectionAge 1 s the server's GOAWAYs
    are seen in what the Go server writes (an h2_goaway finding for its pod), the
    client's reconnects and calls in what the Go client writes; the same client with
    a ClientConn per call is churn."""
    fe, be = shop(cluster)
    # Started before connscope, so its executable (the client's too) is probed
    # from the start.
    srv = h2peers.grpc_server(be, h2grpc, 31493, pki=pki, max_age=1, grace=1)
    # A second service for the per-call client: the window is per remote, and the
    # reused connections' streams would water its figures down.
    srv2 = h2peers.grpc_server(be, h2grpc, 31494, pki=pki)
    with Connscope(cluster, "--namespace", NS, "-i", 60, "--h2-plaintext", "all") as cs:
        r = h2peers.grpc_client(fe, h2grpc, be.ip, 31493, mode="reuse", pki=pki, duration=4)
        assert r["rc"] == 0 and r["failed"] == 0 and r["ok"] > 20, r
        cs.wait_for(is_finding("h2_goaway", be), timeout=10)
        p = h2peers.grpc_client(fe, h2grpc, be.ip, 31494, mode="percall", pki=pki,
                                duration=3)
        assert p["rc"] == 0 and p["failed"] == 0 and p["ok"] >= 20, p
        cs.wait_for(is_finding("h2_reuse_churn", fe), timeout=10)
        h2peers.stop(srv)
        h2peers.stop(srv2)
        records = finish(cs)
    everything = h2_conns(records, 31493, "client", fe)
    # The transports grpc-go established (its ConnBegin): a reconnect after the
    # last GOAWAY may still be in its handshake when the client closes; such a
    # connection carries no HTTP/2 and must say its TLS never finished.
    cl = [c for c in everything if c["client"]["port"] in r["local_ports"]]
    cut = [c for c in everything if c["client"]["port"] not in r["local_ports"]]
    assert all(c["tcp"]["bytes_in"] == 0 or c.get("tls", {}).get("outcome") != "ok"
               for c in cut), show(cut)
    assert all("h2" not in c or c["h2"].get("streams") in (None, 0) for c in cut), show(cut)
    assert all(c.get("h2", {}).get("source") == "go" for c in cl), show(cl)
    assert len(cl) == r["conns"], (r, show(cl))
    assert sum(c["h2"]["streams"] for c in cl) == r["ok"], show(cl)
    # The client's reads are walked too (probes on Read's RET instructions): it
    # sees the server's GOAWAYs that recycle its connections, and its SETTINGS.
    seen = [c for c in cl if c["h2"]["goaway"]["count"] >= 1]
    assert len(seen) >= r["conns"] - 1, show(cl)
    assert all(c["h2"]["goaway"]["by"] == "server" and c["h2"]["goaway"]["error"] == "NO_ERROR"
               for c in seen), show(seen)
    assert all(c["h2"]["desync"] == 0 for c in cl), show(cl)
    # grpc-go's BDP pings, both ways: the client's writes and its reads of the acks.
    assert all(c["h2"]["pings"] > 0 for c in cl if c["h2"]["streams"]), show(cl)
    pc = h2_conns(records, 31494, "client", fe)
    assert len(pc) == p["conns"] == p["ok"], (p, show(pc))
    assert all(c.get("h2", {}).get("streams") == 1 for c in pc), show(pc)
    sv = h2_conns(records, 31493, "server", be)
    away = [c for c in sv if c.get("h2", {}).get("goaway", {}).get("count", 0) >= 1]
    assert len(away) >= r["conns"] - 1, show(sv)
    assert all(c["h2"]["goaway"]["by"] == "server" for c in away), show(away)
    f = findings(records, "h2_goaway", be)
    assert f and f[0]["goaway_connections"] >= 3, show(f)
    f = findings(records, "h2_reuse_churn", fe)
    assert len(f) == 1 and f[0]["server"]["port"] == 31494, show(f)
