"""Live TLS handshake tests: real TLS peers between simulated pods, real connscope.

Peers (tests/lib/tlspeers.py): OpenSSL's s_server/s_client, nghttpd + curl --http2,
and a Go crypto/tls client (tests/lib/go/tlsclient, built here with Debian's
golang-go, offline). Certificates are made per session with `openssl req`.
connscope runs with --cgroup <the cluster's cgroup>, so its packet programs see only
the test's pods (simpod.Connscope adds it).

What the records must say (connscope(8), RECORDS): a TLS connection's record carries
  tls {version, sni, alpn_offered, alpn, handshake_ms, outcome: ok|timeout|failed|incomplete}
(absent when the connection is not TLS); findings tls_handshake_timeout
{elapsed_s, threshold_s, sni} and tls_handshake_failed {failed_by, alert, sni};
summaries a tls {handshakes, ok, failed, timeouts, p50_ms, p99_ms, destinations}.

test_peers_* check the peers alone (no connscope): when they fail, the problem is
the peers or the machine, not connscope.
"""

import time

import pytest

import simpod
import tlspeers
from records import check_common, cgroup_matches, conns, findings, is_conn, is_finding, show
from simpod import Connscope, parse_ts, wait_for_line
from tlspeers import SERVICE, Capture
from workloads import CLIENT, SERVER, last_json

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
RECORD_WAIT = 10
SETTLE = 1.5
HS_MAX_MS = 2000         # a handshake between two pods on one bridge takes a few ms

TLS_KEYS = {"version", "sni", "alpn_offered", "alpn", "handshake_ms", "outcome"}
TLS_OUTCOMES = {"ok", "timeout", "failed", "incomplete"}
TLS_FINDING_EXTRA = {
    "tls_handshake_timeout": {"elapsed_s", "threshold_s", "sni"},
    "tls_handshake_failed": {"failed_by", "alert", "sni"},
}
SUMMARY_TLS_KEYS = {"handshakes", "ok", "failed", "timeouts", "p50_ms", "p99_ms",
                    "destinations"}


# ---------------------------------------------------------------------------
# fixtures and helpers



# trace writes every record, so every handshake crosses from the kernel; daemon
# writes problems only, and a complete handshake stays in the kernel (counted
# there, its hello bytes dropped): both must tell the same failures and counts.
@pytest.fixture(params=["trace", "daemon"])
def mode(request):
    return request.param


@pytest.fixture(scope="session")
def tlsclient(tmp_path_factory):
    return tlspeers.build_go("tlsclient", tmp_path_factory.mktemp("go"))


@pytest.fixture
def docroot(tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    (d / "index.html").write_text("<p>hello from backend</p>\n")
    return d


def shop(cluster):
    fe = cluster.add_pod(NS, "frontend", FE_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    return fe, be


def assert_pod(rec, pod):
    assert pod.matches(rec.get("pod")), f"expected pod {pod.ref}:{show([rec])}"
    assert cgroup_matches(rec, pod), f"expected cgroup {pod.cgroup_path}:{show([rec])}"


def check_tls(records):
    """The tls object of every connection record, and the TLS findings, keep the
    contract's shape."""
    problems = []
    for r in records:
        if r.get("type") == "connection" and "tls" in r:
            t = r["tls"]
            if not isinstance(t, dict) or TLS_KEYS - t.keys():
                problems.append(f"tls lacks {sorted(TLS_KEYS - set(t or {}))}: {r}")
                continue
            if t["outcome"] not in TLS_OUTCOMES:
                problems.append(f"bad tls.outcome: {r}")
            if t["version"] not in ("TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3", None):
                problems.append(f"bad tls.version: {r}")
            if not (t["sni"] is None or isinstance(t["sni"], str) and t["sni"]):
                problems.append(f"bad tls.sni: {r}")
            if not (isinstance(t["alpn_offered"], list)
                    and all(isinstance(a, str) and a for a in t["alpn_offered"])):
                problems.append(f"bad tls.alpn_offered: {r}")
            if not (t["alpn"] is None or isinstance(t["alpn"], str) and t["alpn"]):
                problems.append(f"bad tls.alpn: {r}")
            ms = t["handshake_ms"]
            if not (ms is None or isinstance(ms, (int, float)) and ms >= 0):
                problems.append(f"bad tls.handshake_ms: {r}")
            if t["outcome"] == "ok" and ms is None:
                problems.append(f"a completed handshake without handshake_ms: {r}")
        if r.get("type") == "finding" and r.get("kind") in TLS_FINDING_EXTRA:
            missing = TLS_FINDING_EXTRA[r["kind"]] - r.keys()
            if missing:
                problems.append(f"{r['kind']} lacks {sorted(missing)}: {r}")
            if r.get("kind") == "tls_handshake_failed" \
                    and r.get("failed_by") not in ("client", "server"):
                problems.append(f"bad failed_by: {r}")
        if r.get("type") == "summary" and r.get("tls") is not None:
            missing = SUMMARY_TLS_KEYS - r["tls"].keys()
            if missing:
                problems.append(f"summary tls lacks {sorted(missing)}: {r}")
    assert not problems, "TLS records break the contract:\n  " + "\n  ".join(problems[:10])


def finish(cs):
    time.sleep(SETTLE)
    records = cs.stop()
    check_common(records)
    check_tls(records)
    stats = [r for r in records if r["type"] == "stats"]
    assert all(s["lost"] == 0 for s in stats), show(stats)
    assert stats[-1]["parser_desync"] == 0, \
        f"the TLS parser lost track of a stream:{show(stats[-1:])}"
    return records


def tls_findings(records, pod=None):
    return [r for r in records if r.get("type") == "finding"
            and str(r.get("kind", "")).startswith("tls_")
            and (pod is None or pod.matches(r.get("pod")))]


def assert_ok_handshake(r, version, sni=SERVICE):
    t = r.get("tls")
    assert t is not None, f"a TLS connection without tls:{show([r])}"
    assert t["outcome"] == "ok", show([r])
    assert t["version"] == version, show([r])
    assert t["sni"] == sni, show([r])
    assert isinstance(t["handshake_ms"], (int, float)) \
        and 0 < t["handshake_ms"] < HS_MAX_MS, show([r])


# ---------------------------------------------------------------------------
# the peers alone

def test_peers_certificates_and_go_build(pki, tlsclient):
    """The session's certificates verify as intended and the Go client built."""
    cp = simpod._sh(["openssl", "x509", "-in", pki.cert, "-noout", "-ext", "subjectAltName"])
    assert f"DNS:{SERVICE}" in cp.stdout and f"IP Address:{BE_IP}" in cp.stdout, cp.stdout
    cp = simpod._sh([tlsclient, "-h"], check=False)
    assert "-insecure" in cp.stderr, cp.stderr


def test_peers_handshakes_without_connscope(cluster, pki, tlsclient, docroot):
    """Each peer pair completes (or fails) the way the connscope tests expect."""
    fe, be = shop(cluster)
    srv = tlspeers.openssl_server(be, pki, 30400, "-tls1_2", naccept=1)
    r = tlspeers.s_client(fe, be.ip, 30400, "-tls1_2", "-CAfile", pki.ca,
                          "-verify_return_error")
    assert r["rc"] == 0 and r["version"] == "TLSv1.2", r
    assert srv.wait(timeout=10) == 0

    tlspeers.nghttpd_server(be, pki, 30401, docroot)
    r = tlspeers.curl(fe, pki, 30401, be.ip)
    assert r["rc"] == 0 and r["http_version"] == "2" and r["code"] == 200, r

    srv = tlspeers.openssl_server(be, pki, 30402, naccept=2)
    r = tlspeers.go_client(fe, tlsclient, be.ip, 30402, "-ca", pki.ca, n=2)
    assert r["rc"] == 0 and r["summary"]["ok"] == 2, r
    assert {x["version"] for x in r["results"]} == {"TLS1.3"}, r
    assert len(set(r["summary"]["ports"])) == 2, r
    assert srv.wait(timeout=10) == 0

    srv = tlspeers.openssl_server(be, pki, 30403, naccept=1,
                                  cert=pki.selfsigned, key=pki.selfsigned_key)
    r = tlspeers.go_client(fe, tlsclient, be.ip, 30403)
    assert r["rc"] == 1 and "x509: certificate signed by unknown authority" \
        in r["results"][0]["error"], r
    srv.wait(timeout=10)

    srv = tlspeers.openssl_server(be, pki, 30406, naccept=1,
                                  cert=pki.selfsigned, key=pki.selfsigned_key)
    r = tlspeers.s_client(fe, be.ip, 30406, "-tls1_3", "-verify_return_error",
                          "-CAfile", pki.other_ca)
    assert r["rc"] == 1 and "self-signed certificate" in (r["verify_error"] or ""), r
    srv.wait(timeout=10)

    r = tlspeers.curl(fe, pki, 30401, be.ip, "--curves", "X25519")
    assert r["rc"] == 35 and "alert handshake failure" in r["stderr"], r

    srv = tlspeers.hang_server(be, 30404, 1)
    r = tlspeers.s_client(fe, be.ip, 30404, request=False, give_up=2)
    assert r["rc"] == 124 and r["end"] - r["start"] >= 1.9, r
    wait_for_line(srv, "DONE", 10)


def test_peers_small_mtu_splits_client_hello(cluster, pki, docroot):
    """With MTU 300 and GSO off on the client's eth0, curl's ClientHello (~520
    bytes) crosses the wire, and reaches both pods, in several TCP segments."""
    fe, be = shop(cluster)
    port = 30405
    tlspeers.small_mtu(fe, 300)
    with Capture(fe, port) as cap_fe, Capture(be, port) as cap_be:
        tlspeers.nghttpd_server(be, pki, port, docroot)
        r = tlspeers.curl(fe, pki, port, be.ip)
        cap_fe.stop()
        cap_be.stop()
    assert r["rc"] == 0 and r["http_version"] == "2", r
    assert_split_client_hello(cap_fe, cap_be, fe)


def assert_split_client_hello(cap_fe, cap_be, fe):
    sent = [s["ip_len"] for s in cap_fe.segments() if s["src"] == fe.ip]
    assert max(sent) <= 300, f"the client sent packets over the MTU (GSO?): {sent}"
    for cap in (cap_fe, cap_be):
        recs = [x for rs in cap.tls_records().values() for x in rs]
        hellos = [x for x in recs if x.get("hs") == "client_hello"]
        assert hellos, tlspeers.describe(recs)
        assert all(h["segments"] > 1 for h in hellos), tlspeers.describe(recs)


# ---------------------------------------------------------------------------
# a. openssl s_server / s_client, TLS 1.2 and 1.3

@pytest.mark.parametrize("flag,version", [("-tls1_2", "TLS1.2"), ("-tls1_3", "TLS1.3")],
                         ids=["tls1.2", "tls1.3"])
def test_openssl_handshakes(cluster, pki, flag, version):
    fe, be = shop(cluster)
    port, n = 30443, 3
    with Connscope(cluster, "--namespace", NS) as cs:
        srv = tlspeers.openssl_server(be, pki, port, flag, naccept=n)
        res = [tlspeers.s_client(fe, be.ip, port, flag, "-CAfile", pki.ca,
                                 "-verify_return_error") for _ in range(n)]
        for r in res:
            assert r["rc"] == 0 and r["version"] == version.replace("TLS", "TLSv"), r
        assert srv.wait(timeout=10) == 0
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
        records = finish(cs)

    client_recs, server_recs = conns(records, port, "client"), conns(records, port, "server")
    assert len(client_recs) == n, show(client_recs)
    assert len(server_recs) == n, show(server_recs)
    for r in client_recs:
        assert_pod(r, fe)
        assert r["comm"] == "openssl", show([r])
        assert_ok_handshake(r, version)
        assert r["tls"]["alpn_offered"] == [], show([r])   # s_client offers no ALPN
        assert r["tls"]["alpn"] is None, show([r])
    assert sorted(r["pid"] for r in client_recs) == sorted(x["pid"] for x in res)
    for r in server_recs:
        assert_pod(r, be)
        assert_ok_handshake(r, version)
    assert ({r["client"]["port"] for r in client_recs}
            == {r["client"]["port"] for r in server_recs})
    assert tls_findings(records) == [], show(tls_findings(records))


# ---------------------------------------------------------------------------
# b. curl --http2 against nghttpd: ALPN offered, SNI

CURL_CASES = [
    # id, curl options, version
    ("tls1.3-hrr", ["--tls-max", "1.3"], "TLS1.3"),
    ("tls1.3", ["--tls-max", "1.3", "--curves", "P-256"], "TLS1.3"),
    ("tls1.2", ["--tls-max", "1.2"], "TLS1.2"),
]


@pytest.mark.parametrize("curl_opts,version", [x[1:] for x in CURL_CASES],
                         ids=[x[0] for x in CURL_CASES])
def test_curl_http2_nghttpd(cluster, pki, docroot, curl_opts, version):
    """curl offers h2 and http/1.1. nghttpd's only TLS 1.3 group is P-256 while
    curl sends an X25519 key share: by default every TLS 1.3 handshake here has a
    HelloRetryRequest and a second ClientHello (tls1.3-hrr); --curves P-256 avoids
    it. ALPN's answer is in clear only in TLS 1.2."""
    fe, be = shop(cluster)
    port, n = 30444, 2
    with Connscope(cluster, "--namespace", NS) as cs:
        tlspeers.nghttpd_server(be, pki, port, docroot)
        res = [tlspeers.curl(fe, pki, port, be.ip, *curl_opts) for _ in range(n)]
        for r in res:
            assert r["rc"] == 0 and r["http_version"] == "2" and r["code"] == 200, r
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
        records = finish(cs)

    client_recs, server_recs = conns(records, port, "client"), conns(records, port, "server")
    assert len(client_recs) == n, show(client_recs)
    assert len(server_recs) == n, show(server_recs)
    assert {r["client"]["port"] for r in client_recs} == {r["local_port"] for r in res}
    for r in client_recs + server_recs:
        assert_pod(r, fe if r["side"] == "client" else be)
        assert_ok_handshake(r, version)
        assert r["tls"]["alpn_offered"] == ["h2", "http/1.1"], show([r])
        if version == "TLS1.2":
            assert r["tls"]["alpn"] == "h2", show([r])      # ServerHello, in clear
        else:
            assert r["tls"]["alpn"] in ("h2", None), show([r])  # EncryptedExtensions
    for r in client_recs:
        assert r["comm"] == "curl", show([r])
    assert sorted(r["pid"] for r in client_recs) == sorted(x["pid"] for x in res)
    assert tls_findings(records) == [], show(tls_findings(records))


# ---------------------------------------------------------------------------
# c. a Go crypto/tls client

def test_go_client(cluster, pki, tlsclient):
    fe, be = shop(cluster)
    port, n = 30445, 3
    with Connscope(cluster, "--namespace", NS) as cs:
        srv = tlspeers.openssl_server(be, pki, port, naccept=n)
        out = tlspeers.go_client(fe, tlsclient, be.ip, port, "-ca", pki.ca, n=n)
        assert out["rc"] == 0 and out["summary"]["ok"] == n, out
        assert srv.wait(timeout=10) == 0
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
        records = finish(cs)

    ports = set(out["summary"]["ports"])
    assert len(ports) == n, out
    client_recs, server_recs = conns(records, port, "client"), conns(records, port, "server")
    assert len(client_recs) == n and len(server_recs) == n, show(conns(records, port))
    assert {r["client"]["port"] for r in client_recs} == ports
    for r in client_recs:
        assert_pod(r, fe)
        assert r["pid"] == out["pid"], show([r])
        assert r["comm"] == "tlsclient", show([r])
        assert_ok_handshake(r, "TLS1.3")
        # net/http's Transport (ForceAttemptHTTP2) offers both; s_server picks neither
        assert r["tls"]["alpn_offered"] == ["h2", "http/1.1"], show([r])
        assert r["tls"]["alpn"] is None, show([r])
    for r in server_recs:
        assert_pod(r, be)
        assert_ok_handshake(r, "TLS1.3")
    assert tls_findings(records) == [], show(tls_findings(records))


# ---------------------------------------------------------------------------
# d. a server that accepts and never answers: handshake timeout

def test_handshake_timeout(cluster, mode):
    """--tls-timeout 1; the client sends its ClientHello and gives up after 3 s.
    The finding must come while the client still waits, once per connection and
    observing side (the backend's socket waits for the same handshake)."""
    fe, be = shop(cluster)
    port, n, give_up = 30446, 2, 3
    with Connscope(cluster, "--namespace", NS, "--tls-timeout", 1,
                   "--finding-window", 0, command=mode) as cs:
        srv = tlspeers.hang_server(be, port, n)
        res = []
        for _ in range(n):
            r = tlspeers.s_client(fe, be.ip, port, request=False, give_up=give_up)
            assert r["rc"] == 124, r          # killed by timeout(1): it gave up
            res.append(r)
        wait_for_line(srv, "DONE", 10)
        # the clients ran one after the other: accepted in the same order
        accepted = [int(ln.split()[1]) for ln in srv.lines if ln.startswith("ACCEPTED")]
        assert len(accepted) == n, srv.lines
        for r, p in zip(res, accepted):
            r["port"] = p
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
        records = finish(cs)

    found = findings(records, "tls_handshake_timeout", fe)
    assert len(found) == n, \
        f"want one tls_handshake_timeout per connection:{show(tls_findings(records))}"
    client_recs = conns(records, port, "client")
    assert len(client_recs) == n, show(client_recs)
    for r in res:
        (f,) = [x for x in found if x["client"]["port"] == r["port"]]
        assert_pod(f, fe)
        assert f["side"] == "client", show([f])
        assert f["server"] == {"ip": be.ip, "port": port}, show([f])
        assert f["comm"] == "openssl", show([f])
        assert f["threshold_s"] == 1, show([f])
        assert 1 <= f["elapsed_s"] < give_up, show([f])
        assert f["sni"] == SERVICE, show([f])
        # raised while the client still waited, not when it gave up
        assert r["start"] < f["_rx"] < r["end"], \
            f"finding seen {f['_rx'] - r['start']:.2f}s after the client started, " \
            f"which gave up after {r['end'] - r['start']:.2f}s:{show([f])}"
        (c,) = [x for x in client_recs if x["client"]["port"] == r["port"]]
        assert_pod(c, fe)
        assert c["tls"]["outcome"] == "timeout", show([c])
        assert c["tls"]["sni"] == SERVICE, show([c])
        assert c["tls"]["version"] is None, show([c])     # no ServerHello ever came
        assert f["_seq"] < c["_seq"] and parse_ts(f["ts"]) < parse_ts(c["ts"]), show([f, c])
    # the backend saw the same stalled handshakes: one finding and record each too
    server_recs = conns(records, port, "server")
    be_found = findings(records, "tls_handshake_timeout", be)
    assert sorted(f["client"]["port"] for f in be_found) == sorted(accepted), show(be_found)
    assert sorted(r["client"]["port"] for r in server_recs) == sorted(accepted), \
        show(server_recs)
    for f in be_found:
        assert_pod(f, be)
        assert f["side"] == "server" and f["threshold_s"] == 1, show([f])
        assert 1 <= f["elapsed_s"] < give_up and f["sni"] == SERVICE, show([f])
    for r in server_recs:
        assert_pod(r, be)
        assert r["tls"]["outcome"] == "timeout" and r["tls"]["sni"] == SERVICE, show([r])
    assert findings(records, "tls_handshake_failed") == [], show(tls_findings(records))


# ---------------------------------------------------------------------------
# e. the client rejects the server's certificate

REJECTIONS = [
    # id, client, TLS version, the alert the client sends (None: encrypted)
    # Go 1.19 sends bad_certificate; in TLS 1.3 it has switched to the handshake
    # keys already, so the alert is encrypted: CCS, then a 19-byte record.
    ("go-tls1.3", "go", "TLS1.3", None),
    ("go-tls1.2", "go", "TLS1.2", "bad_certificate"),
    # OpenSSL sends unknown_ca, in clear in both versions: in TLS 1.3 its client
    # switches its write keys only when it sends its Finished.
    ("openssl-tls1.3", "openssl", "TLS1.3", "unknown_ca"),
    ("openssl-tls1.2", "openssl", "TLS1.2", "unknown_ca"),
]


@pytest.mark.parametrize("client,version,alert", [x[1:] for x in REJECTIONS],
                         ids=[x[0] for x in REJECTIONS])
def test_certificate_rejected(cluster, pki, tlsclient, client, version, alert, mode):
    """A self-signed server certificate; the client refuses it (Go: no -ca, no
    -insecure; OpenSSL: -verify_return_error with an unrelated CA)."""
    fe, be = shop(cluster)
    port = 30447
    with Connscope(cluster, "--namespace", NS, "--finding-window", 0, command=mode) as cs:
        srv = tlspeers.openssl_server(be, pki, port, naccept=1,
                                      cert=pki.selfsigned, key=pki.selfsigned_key)
        if client == "openssl":
            flag = "-tls1_2" if version == "TLS1.2" else "-tls1_3"
            r = tlspeers.s_client(fe, be.ip, port, flag, "-verify_return_error",
                                  "-CAfile", pki.other_ca)
            assert r["rc"] != 0 and "self-signed certificate" in (r["verify_error"] or ""), r
            comm = "openssl"
        else:
            extra = ["-max-version", "1.2"] if version == "TLS1.2" else []
            r = tlspeers.go_client(fe, tlsclient, be.ip, port, *extra)
            assert r["rc"] == 1 and "unknown authority" in r["results"][0]["error"], r
            comm = "tlsclient"
        srv.wait(timeout=10)
        cs.wait_for(is_conn(port, "client"), RECORD_WAIT)
        cs.wait_for(is_conn(port, "server"), RECORD_WAIT)
        cs.wait_for(is_finding("tls_handshake_failed", fe), RECORD_WAIT)
        cs.wait_for(is_finding("tls_handshake_failed", be), RECORD_WAIT)
        records = finish(cs)

    (c,), (s,) = conns(records, port, "client"), conns(records, port, "server")
    assert_pod(c, fe)
    assert_pod(s, be)
    assert c["pid"] == r["pid"] and c["comm"] == comm, show([c])
    for x in (c, s):
        assert x["tls"]["outcome"] == "failed", show([x])
        assert x["tls"]["version"] == version, show([x])   # the ServerHello was seen
        assert x["tls"]["sni"] == SERVICE, show([x])

    # one finding per observing side, each naming the client as the one that gave up
    (f,) = findings(records, "tls_handshake_failed", fe)
    (g,) = findings(records, "tls_handshake_failed", be)
    assert_pod(f, fe)
    assert_pod(g, be)
    assert f["side"] == "client" and g["side"] == "server", show([f, g])
    for x in (f, g):
        assert x["failed_by"] == "client", show([x])
        assert x["sni"] == SERVICE, show([x])
        assert x["server"] == {"ip": be.ip, "port": port}, show([x])
        assert x["client"] == c["client"], show([x, c])
        if alert:
            assert x["alert"] == alert, show([x])
        else:
            assert x["alert"] in (None, "bad_certificate"), show([x])
        # A certificate alert in clear names the cause; an encrypted one tells none.
        assert x["cause"] == ("certificate_rejected" if x["alert"] else None), show([x])
        ev = x["evidence"]
        assert ev["failed_by"] == "client" and ev["alert"] == x["alert"], show([x])
        assert ev["sni"] == SERVICE and ev["failures_to_destination"] == 1, show([x])
        if x["cause"]:
            assert "rejected the server's certificate" in x["message"], show([x])
    assert f["_seq"] < c["_seq"] or parse_ts(f["ts"]) <= parse_ts(c["ts"]), show([f, c])
    assert findings(records, "tls_handshake_timeout") == [], show(tls_findings(records))


def test_server_rejects_client_hello(cluster, pki, docroot, mode):
    """curl offers only X25519; nghttpd takes only P-256 and answers the
    ClientHello with a fatal handshake_failure alert, in clear: the server gave up."""
    fe, be = shop(cluster)
    port = 30452
    with Connscope(cluster, "--namespace", NS, "--finding-window", 0, command=mode) as cs:
        tlspeers.nghttpd_server(be, pki, port, docroot)
        r = tlspeers.curl(fe, pki, port, be.ip, "--curves", "X25519")
        assert r["rc"] == 35 and "alert handshake failure" in r["stderr"], r
        cs.wait_for(is_conn(port, "client"), RECORD_WAIT)
        cs.wait_for(is_conn(port, "server"), RECORD_WAIT)
        cs.wait_for(is_finding("tls_handshake_failed", fe), RECORD_WAIT)
        cs.wait_for(is_finding("tls_handshake_failed", be), RECORD_WAIT)
        records = finish(cs)

    (c,), (s,) = conns(records, port, "client"), conns(records, port, "server")
    assert c["client"]["port"] == r["local_port"] and c["pid"] == r["pid"], show([c])
    for x, pod in ((c, fe), (s, be)):
        assert_pod(x, pod)
        assert x["tls"]["outcome"] == "failed", show([x])
        assert x["tls"]["version"] is None, show([x])      # no ServerHello
        assert x["tls"]["sni"] == SERVICE, show([x])
        assert x["tls"]["alpn_offered"] == ["h2", "http/1.1"], show([x])
    (f,) = findings(records, "tls_handshake_failed", fe)
    (g,) = findings(records, "tls_handshake_failed", be)
    assert f["side"] == "client" and g["side"] == "server", show([f, g])
    for x in (f, g):
        assert x["failed_by"] == "server", show([x])
        assert x["alert"] == "handshake_failure", show([x])
        assert x["sni"] == SERVICE, show([x])
        assert x["server"] == {"ip": be.ip, "port": port}, show([x])


# ---------------------------------------------------------------------------
# f. a ClientHello split over several TCP segments

def test_split_client_hello(cluster, pki, docroot):
    """MTU 300, GSO off in the client pod: curl's ClientHello (517 bytes) goes in
    3 segments (248 + 248 + 21 bytes of payload), as tcpdump confirms. The
    handshake must still be read whole. --curves P-256: no HelloRetryRequest here
    (test_curl_http2_nghttpd[tls1.3-hrr] has that), one ClientHello."""
    fe, be = shop(cluster)
    port = 30448
    tlspeers.small_mtu(fe, 300)
    with Connscope(cluster, "--namespace", NS) as cs:
        with Capture(fe, port) as cap_fe, Capture(be, port) as cap_be:
            tlspeers.nghttpd_server(be, pki, port, docroot)
            r = tlspeers.curl(fe, pki, port, be.ip, "--curves", "P-256")
            cap_fe.stop()
            cap_be.stop()
        assert r["rc"] == 0 and r["http_version"] == "2", r
        cs.wait_for(is_conn(port, "client"), RECORD_WAIT)
        cs.wait_for(is_conn(port, "server"), RECORD_WAIT)
        records = finish(cs)
    assert_split_client_hello(cap_fe, cap_be, fe)

    (c,), (s,) = conns(records, port, "client"), conns(records, port, "server")
    assert c["client"]["port"] == r["local_port"], show([c])
    for x, pod in ((c, fe), (s, be)):
        assert_pod(x, pod)
        assert_ok_handshake(x, "TLS1.3")
        assert x["tls"]["alpn_offered"] == ["h2", "http/1.1"], show([x])
    assert tls_findings(records) == [], show(tls_findings(records))


# ---------------------------------------------------------------------------
# g. summaries: tls counters and destinations; plain TCP is not TLS

def test_tls_summary(cluster, pki, mode):
    """Per-pod tls counters, per destination: the SNI, or the server's ip:port
    when the ClientHello names none. Plain TCP is neither a handshake nor tls.
    The totals are the kernel's in both modes; daemon (problems only) lets no
    complete handshake cross, so its destinations are those with failures."""
    fe, be = shop(cluster)
    ok_port, bad_port, plain_port = 30449, 30450, 30451
    n_ok, n_bad, n_nosni = 3, 2, 1

    def tls_summary(pod, handshakes):
        def pred(r):
            t = r.get("tls") if r.get("type") == "summary" else None
            return (pod.matches(r.get("pod")) and isinstance(t, dict)
                    and t.get("handshakes", 0) >= handshakes)
        pred.__name__ = f"summary for {pod.name} with tls.handshakes >= {handshakes}"
        return pred

    total = n_ok + n_bad + n_nosni
    with Connscope(cluster, "--namespace", NS, "-i", 1, "--finding-window", 0,
                   command=mode) as cs:
        srv = tlspeers.openssl_server(be, pki, ok_port, "-tls1_3", naccept=n_ok + n_nosni)
        for sni in [SERVICE] * n_ok + [None] * n_nosni:
            r = tlspeers.s_client(fe, be.ip, ok_port, "-tls1_3", "-CAfile", pki.ca, sni=sni)
            assert r["rc"] == 0, r
        assert srv.wait(timeout=10) == 0
        srv = tlspeers.openssl_server(be, pki, bad_port, "-tls1_2", naccept=n_bad,
                                      cert=pki.selfsigned, key=pki.selfsigned_key)
        for _ in range(n_bad):
            r = tlspeers.s_client(fe, be.ip, bad_port, "-tls1_2", "-verify_return_error",
                                  "-CAfile", pki.ca)
            assert r["rc"] != 0, r
        srv.wait(timeout=10)
        plain = be.python(SERVER, "echo", be.ip, plain_port, 1)
        wait_for_line(plain, "READY", 10)
        cp = fe.python(CLIENT, "echo", be.ip, plain_port, 1, 10, wait=True, timeout=30)
        assert cp.returncode == 0 and last_json(cp.stdout)["results"] == ["echoed"], cp
        cs.wait_for(tls_summary(fe, total), 15)
        cs.wait_for(tls_summary(be, total), 15)
        if mode == "trace":
            cs.wait_for(is_conn(plain_port, "client"), RECORD_WAIT)
        time.sleep(1.2)      # one more interval: the counters must not move
        records = finish(cs)

    stats = [r for r in records if r["type"] == "stats"]
    if mode == "trace":
        for r in conns(records, plain_port):
            assert "tls" not in r, f"a plain TCP connection has a tls object:{show([r])}"
        nosni = [r for r in conns(records, ok_port) if r["tls"]["sni"] is None]
        assert len(nosni) == 2 * n_nosni, show(conns(records, ok_port))
        for r in nosni:
            assert r["tls"]["outcome"] == "ok", show([r])
        assert stats[-1]["tls_handshakes"] == "all", show(stats[-1:])
    else:
        # Nothing of a complete handshake crossed: per failed handshake and
        # side, its alert (the hello bytes wait in the kernel, taken from there).
        assert conns(records, ok_port) == [] and conns(records, plain_port) == [], \
            show(conns(records, ok_port) + conns(records, plain_port))
        assert len(conns(records, bad_port)) == 2 * n_bad, show(conns(records, bad_port))
        assert stats[-1]["tls_handshakes"] == "problems", show(stats[-1:])
        assert stats[-1]["tls_events"] == 2 * n_bad, show(stats[-1:])

    for pod in (fe, be):
        sums = [r for r in records if r["type"] == "summary" and pod.matches(r.get("pod"))]
        last = sums[-1]
        s = last["tls"]
        assert_pod(last, pod)
        assert s["handshakes"] == total, show([last])
        assert s["ok"] == n_ok + n_nosni and s["failed"] == n_bad, show([last])
        assert s["timeouts"] == 0, show([last])
        for k in ("p50_ms", "p99_ms"):
            assert isinstance(s[k], (int, float)) and 0 < s[k] < HS_MAX_MS, show([last])
        assert s["p50_ms"] <= s["p99_ms"], show([last])
        dests = {d["destination"]: d for d in s["destinations"]}
        counts = {k: (d["handshakes"], d["ok"], d["failed"], d["timeouts"])
                  for k, d in dests.items()}
        if mode == "trace":
            assert counts == {SERVICE: (n_ok + n_bad, n_ok, n_bad, 0),
                              f"{be.ip}:{ok_port}": (n_nosni, n_nosni, 0, 0)}, show([last])
        else:
            assert counts == {SERVICE: (n_bad, 0, n_bad, 0)}, show([last])


# ---------------------------------------------------------------------------
# h. counts that a lost event cannot make wrong

TLS_LOOP_SERVER = r'''
import socket, ssl, sys
ip, port, n, cert, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((ip, port))
ls.listen(64)
ls.settimeout(20)
print("READY", flush=True)
for _ in range(n):
    c, _ = ls.accept()
    try:
        s = ctx.wrap_socket(c, server_side=True)
        while s.recv(64):   # until the client closes: it closes first
            pass
        s.close()
    except (ssl.SSLError, OSError):
        c.close()
print("DONE", flush=True)
'''

TLS_LOOP_CLIENT = r'''
import socket, ssl, struct, sys, time
ip, port, n, ca, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
abort = len(sys.argv) > 6 and sys.argv[6] == "rst"
ok = 0
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection((ip, port), timeout=5), server_hostname=name)
    s.sendall(b"x")
    if abort:   # close with a RST (SO_LINGER 0), once the server has its byte
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    ok += 1
print("OK", ok, flush=True)
'''


def test_tls_counts_exact_when_events_overflow(cluster, pki, mode, monkeypatch):
    """A 4 KiB TLS ring (about 6 records) and 40 handshakes in a row. trace sends
    every handshake's records, and most cannot cross: the pods' tls totals are the
    kernel's and stay exact. daemon sends none for a complete handshake at all."""
    fe, be = shop(cluster)
    port, n = 30453, 40
    monkeypatch.setenv("CONNSCOPE_TLS_RINGBUF_BYTES", "4096")
    with Connscope(cluster, "--namespace", NS, "-i", 1, command=mode) as cs:
        srv = be.python(TLS_LOOP_SERVER, be.ip, port, n, pki.cert, pki.key)
        wait_for_line(srv, "READY", 10)
        cp = fe.python(TLS_LOOP_CLIENT, be.ip, port, n, pki.ca, SERVICE, wait=True, timeout=60)
        assert cp.returncode == 0 and f"OK {n}" in cp.stdout, cp
        wait_for_line(srv, "DONE", 20)
        time.sleep(2.5)      # two summary intervals after the last handshake
        records = cs.stop()

    st = [r for r in records if r["type"] == "stats"][-1]
    if mode == "trace":
        assert st["tls_handshakes"] == "all" and st["ringbuf_full"] > 0, \
            "the tiny ring must have overflowed: " + show([st])
    else:
        assert st["tls_handshakes"] == "problems" and st["tls_events"] == 0, show([st])
        assert st["lost"] == 0, show([st])
    print(f"\n{mode}: {n} handshakes a side, TLS records sent {st['tls_events']}, "
          f"ring drops {st['ringbuf_full']}")
    # A handshake whose end was lost is not made a failure or a timeout.
    assert tls_findings(records) == [], show(tls_findings(records))
    for r in conns(records, port):
        if mode == "trace":
            # (no tls object where every record of its handshake was lost)
            assert r.get("tls", {}).get("outcome", "ok") in ("ok", "incomplete"), show([r])
        else:
            # A TCP problem of a connection whose handshake completed in the
            # kernel: what was kept of it, and no hello bytes (no SNI).
            assert r["tls"]["outcome"] == "ok" and r["tls"]["version"] == "TLS1.3", show([r])
            assert r["tls"]["sni"] is None and r["tls"]["handshake_ms"] > 0, show([r])
    print(f"records on port {port}: {len(conns(records, port))}")
    for pod in (fe, be):
        sums = [r for r in records if r["type"] == "summary" and pod.matches(r.get("pod"))]
        assert sums, f"no summary for {pod.ref}"
        t = sums[-1]["tls"]
        assert (t["handshakes"], t["ok"], t["failed"], t["timeouts"]) == (n, n, 0, 0), \
            show(sums[-1:])
        assert 0 < t["p50_ms"] <= t["p99_ms"] < HS_MAX_MS, show(sums[-1:])


def test_daemon_reset_after_handshake_keeps_tls(cluster, pki):
    """daemon: a connection whose handshake completed (nothing crossed) and that then
    ends by a RST is a problem: its record says it was TLS, with what the kernel
    kept of the handshake (version, time), the SNI not being kept."""
    fe, be = shop(cluster)
    port, n = 30454, 3
    with Connscope(cluster, "--namespace", NS, command="daemon") as cs:
        srv = be.python(TLS_LOOP_SERVER, be.ip, port, n, pki.cert, pki.key)
        wait_for_line(srv, "READY", 10)
        cp = fe.python(TLS_LOOP_CLIENT, be.ip, port, n, pki.ca, SERVICE, "rst", wait=True,
                       timeout=60)
        assert cp.returncode == 0 and f"OK {n}" in cp.stdout, cp
        wait_for_line(srv, "DONE", 20)
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        records = finish(cs)
    for r in conns(records, port, "client"):
        assert_pod(r, fe)
        assert r["tcp"]["close"] == "rst_out", show([r])
        t = r["tls"]
        assert (t["outcome"], t["version"], t["sni"], t["alpn"]) == ("ok", "TLS1.3", None, None), \
            show([r])
        assert 0 < t["handshake_ms"] < HS_MAX_MS, show([r])
    assert tls_findings(records) == [], show(tls_findings(records))
