"""HTTP/2 reuse over TLS from the wire alone: no TLS library is probed.

A TLS connection whose ClientHello offers h2 (ALPN) joins its pod's HTTP/2 reuse
window with its lifetime and how it ended; its streams are not seen and stay null.
The server's choice is in clear in a TLS 1.2 ServerHello: h2 offered and HTTP/1.1
chosen is a downgrade. trace reads the hellos in user space; daemon (quiet: a
complete handshake stays in the kernel) reads the ALPN in the kernel and lets only
such connections' closes cross. Both must say the same.
"""

import time

import pytest

import h2peers
import tlspeers
from records import check_common, conns, findings, is_finding, show
from simpod import Connscope

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
CALLS = 22          # above --h2-churn-conns' default, 20


@pytest.fixture
def docroot(tmp_path):
    return h2peers.docroot(tmp_path / "www")


def shop(cluster):
    return cluster.add_pod(NS, "frontend", FE_IP), cluster.add_pod(NS, "backend", BE_IP)


def curl_calls(fe, pki, port, n=CALLS, *opts):
    """n curl --http2 processes one after the other: a new client per call."""
    out = [tlspeers.curl(fe, pki, port, BE_IP, *opts) for _ in range(n)]
    assert all(r["rc"] == 0 and r.get("code") == 200 for r in out), out
    return out


def finish(cs):
    time.sleep(1.5)
    records = cs.stop()
    check_common(records)
    stats = [r for r in records if r["type"] == "stats"]
    assert all(s["lost"] == 0 for s in stats), show(stats)
    return records


def last_summary(records, pod):
    s = [r for r in records if r["type"] == "summary" and pod.matches(r.get("pod"))]
    assert s, f"no summary for {pod.ref}"
    return s[-1]


@pytest.mark.parametrize("command", ["trace", "daemon"])
def test_tls_churn_from_the_wire_names_the_cause(cluster, pki, docroot, command):
    """curl --http2 per call against nghttpd over TLS 1.3: 22 connections that offered
    h2, each closed by the client: h2_reuse_churn from the wire, source tls_alpn,
    streams null (never a count made up), cause client_per_call."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_tls(be, pki, 31543, docroot)
    with Connscope(cluster, "--namespace", NS, "-i", 60, command=command) as cs:
        calls = curl_calls(fe, pki, 31543)
        assert all(r["http_version"] == "2" for r in calls), calls
        cs.wait_for(is_finding("h2_reuse_churn", fe), timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    (f,) = findings(records, "h2_reuse_churn", fe)
    assert f["server"]["port"] == 31543 and f["source"] == "tls_alpn", show([f])
    win = f["window"]
    assert win["closed"] >= 20 and win["tls_alpn"] == win["closed"], show([f])
    assert win["streams"] is None and win["streams_per_conn"] is None, show([f])
    assert win["http1_chosen"] == 0, show([f])
    assert f["cause"] == "client_per_call", show([f])
    ev = f["evidence"]
    assert ev["streams_per_conn"] is None and ev["tls_alpn_conns"] == win["closed"], show([f])
    assert (ev["ended_by_local_fin"] + ev["ended_by_local_rst"]) * 5 >= ev["closed"] * 4, \
        show([f])
    assert "streams not seen" in f["message"] and "ClientConn" in f["message"], show([f])
    # The pod's summary: every connection counted, streams unknown, not zero.
    s = last_summary(records, fe)["h2"]
    assert s["connections"] == CALLS and s["tls_alpn"] == CALLS, s
    assert s["streams"] is None and s["streams_per_conn"] is None, s
    if command == "trace":
        # Every connection's record: HTTP/2 by its ALPN, no frame counts.
        cl = [c for c in conns(records, 31543, "client") if fe.matches(c.get("pod"))]
        assert len(cl) == CALLS, show(cl)
        for c in cl:
            assert "h2" in c["tls"]["alpn_offered"] and c["tls"]["outcome"] == "ok", show([c])
            h = c["h2"]
            assert h["source"] == "tls_alpn" and h["streams"] is None, show([c])
            assert h["goaway"]["count"] is None and h["rst_stream"] is None, show([c])


@pytest.mark.parametrize("command", ["trace", "daemon"])
def test_alpn_downgrade_names_the_cause(cluster, pki, command):
    """The client offers h2 and a TLS 1.2 server chooses HTTP/1.1 (in clear in its
    ServerHello): the churn finding's cause is alpn_downgrade, and no connection
    is called HTTP/2."""
    fe, be = shop(cluster)
    srv = tlspeers.openssl_server(be, pki, 31544, "-tls1_2", "-alpn", "http/1.1")
    with Connscope(cluster, "--namespace", NS, "-i", 60, command=command) as cs:
        calls = curl_calls(fe, pki, 31544)
        assert all(r["http_version"] in ("1", "1.1") for r in calls), calls
        cs.wait_for(is_finding("h2_reuse_churn", fe), timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    (f,) = findings(records, "h2_reuse_churn", fe)
    assert f["cause"] == "alpn_downgrade", show([f])
    assert f["evidence"]["http1_chosen"] == f["window"]["closed"] >= 20, show([f])
    assert "HTTP/1.1" in f["message"] and "ALPN h2" in f["message"], show([f])
    # HTTP/1.1 connections: in the window that names the cause, not in the pod's
    # HTTP/2 connections.
    assert last_summary(records, fe)["h2"] is None, last_summary(records, fe)
    if command == "trace":
        cl = [c for c in conns(records, 31544, "client") if fe.matches(c.get("pod"))]
        assert len(cl) == CALLS, show(cl)
        for c in cl:
            assert c["tls"]["alpn_offered"][0] == "h2" and c["tls"]["alpn"] == "http/1.1", \
                show([c])
            assert "h2" not in c, show([c])


@pytest.mark.parametrize("command", ["trace", "daemon"])
def test_tls_reuse_from_the_wire_is_not_churn(cluster, pki, docroot, command):
    """h2load over TLS on 3 connections, 300 requests: 3 connections counted from
    the wire, and no churn."""
    fe, be = shop(cluster)
    srv = h2peers.nghttpd_tls(be, pki, 31545, docroot)
    with Connscope(cluster, "--namespace", NS, "-i", 60, command=command) as cs:
        r = h2peers.h2load(fe, f"https://{be.ip}:31545/index.html", n=300, clients=3,
                           streams=10)
        assert r["succeeded"] == 300 and r["clients"] == 3 and r["protocol"] == "h2", r
        time.sleep(1)
        h2peers.stop(srv)
        records = finish(cs)
    assert not findings(records, "h2_reuse_churn", fe), show(findings(records,
                                                                       "h2_reuse_churn", fe))
    s = last_summary(records, fe)["h2"]
    assert s["connections"] == 3 and s["tls_alpn"] == 3 and s["closed"] == 3, s
    (remote,) = s["remotes"]
    assert remote["port"] == 31545 and remote["tls_alpn"] == 3, s
    assert remote["median_lifetime_ms"] is not None, s
