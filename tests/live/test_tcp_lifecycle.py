"""Live TCP lifecycle tests: real sockets between simulated pods, real connscope.

Each test builds its own node (tests/lib/simpod.py), starts
`connscope trace -o json --pods-dir <node's pods dir> --namespace shop ...`,
makes traffic whose every FIN and RST is known in advance (tests/lib/workloads.py),
and checks the records exactly. Nothing here is skipped: if connscope is
missing or wrong, these fail.
"""

import signal
import subprocess
import time

import pytest

import simpod
from records import (check_common, cgroup_matches, conns, findings, is_conn, is_finding,
                     show)
from simpod import Connscope, parse_ts, wait_for_line
import workloads
from workloads import start_server

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
RECORD_WAIT = 10     # records arrive ~1 s after the event; this is the bound
SETTLE = 1.5         # after the expected records: time for unexpected extra ones

# Every problem below crosses whatever records are asked for; with problems only,
# the kernel keeps no socket state for healthy connections (lean), so each runs
# both ways.
CONNECTIONS = pytest.mark.parametrize("connections", ["all", "problems"])


def shop(cluster, fe_layout=(), be_layout=()):
    """The two pods every test uses: shop/frontend (client), shop/backend (server)."""
    fe = cluster.add_pod(NS, "frontend", FE_IP, **dict(fe_layout))
    be = cluster.add_pod(NS, "backend", BE_IP, **dict(be_layout))
    return fe, be


def run_client(pod, mode, ip, port, count=1, timeout_s=10.0):
    cp, out = workloads.run_client(pod, mode, ip, port, count, timeout_s)
    assert out["pid"] == cp.pid
    return out


def finish(cs):
    """Give unexpected extra records a moment to show up, then stop connscope."""
    time.sleep(SETTLE)
    records = cs.stop()
    check_common(records)
    return records


def assert_pod(rec, pod):
    assert pod.matches(rec.get("pod")), \
        f"expected pod {pod.ref}, got {rec.get('pod')}:{show([rec])}"
    assert cgroup_matches(rec, pod), \
        f"expected cgroup ending in {pod.cgroup_path}:{show([rec])}"


def assert_endpoints(rec, client_ip, server_ip, server_port, client_ports=None):
    assert rec["client"]["ip"] == client_ip and rec["server"]["ip"] == server_ip, show([rec])
    assert rec["server"]["port"] == server_port, show([rec])
    if client_ports is not None:
        assert rec["client"]["port"] in client_ports, show([rec])


# ---------------------------------------------------------------------------
# a. attribution

def test_attribution_20_connections(cluster):
    fe, be = shop(cluster)
    port, n = 30080, 20
    with Connscope(cluster, "--namespace", NS) as cs:
        srv = start_server(be, "echo", port, n)
        out = run_client(fe, "echo", be.ip, port, n)
        assert out["results"] == ["echoed"] * n
        assert srv.wait(timeout=10) == 0
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
        records = finish(cs)

    ports = set(out["ports"])
    assert len(ports) == n
    client_recs, server_recs = conns(records, port, "client"), conns(records, port, "server")
    assert len(client_recs) == n, f"want {n} client records:{show(client_recs)}"
    assert len(server_recs) == n, f"want {n} server records:{show(server_recs)}"
    assert len(conns(records, port)) == 2 * n

    for r in client_recs:
        assert_pod(r, fe)
        assert_endpoints(r, fe.ip, be.ip, port, ports)
        assert r["pid"] == out["pid"], show([r])
        assert r["comm"] == "python3", show([r])
        assert r["preexisting"] is False, show([r])
        t = r["tcp"]
        assert t["outcome"] == "established", show([r])
        # the client reads the echo, then closes first
        assert t["close"] == "local_fin", show([r])
        assert t["bytes_out"] > 0 and t["bytes_in"] > 0, show([r])
        assert t["syn_retrans"] == 0, show([r])
        assert isinstance(r["duration_ms"], (int, float)) and r["duration_ms"] >= 0
    for r in server_recs:
        assert_pod(r, be)
        assert_endpoints(r, fe.ip, be.ip, port, ports)
        # an accepted socket's owner: the process that listens on the port
        assert r["pid"] == srv.pid and r["comm"] == "python3", show([r])
        t = r["tcp"]
        assert t["outcome"] == "established", show([r])
        assert t["close"] == "peer_fin", show([r])
        assert t["bytes_out"] > 0 and t["bytes_in"] > 0, show([r])
    # each connection seen once from each side
    assert {r["client"]["port"] for r in client_recs} == ports
    assert {r["client"]["port"] for r in server_recs} == ports


def reset_by_client(cs, fe, be, port, n, *servers):
    """n connections from fe to be:port, each reset by the client once its echo is
    back: the server's socket then closes in the network's context, where only
    its listener names its process. Waits for the servers to exit and for the n
    server records; returns the records and the client's output."""
    out = run_client(fe, "rst", be.ip, port, n)
    assert out["results"] == ["rst_sent"] * n
    for srv in servers:
        assert srv.wait(timeout=10) == 0
    cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
    return finish(cs), out


def assert_server_owner(records, port, n, pid):
    """The n server records on port name process pid (python3)."""
    server_recs = conns(records, port, "server")
    assert len(server_recs) == n, show(server_recs)
    for r in server_recs:
        assert r["pid"] == pid and r["comm"] == "python3", show([r])


def test_accepted_sockets_owned_by_a_listener_older_than_connscope(cluster):
    """A server that listened before connscope started: its accepted sockets are
    named after it (found at start-up), though nothing runs on sends and receives."""
    fe, be = shop(cluster)
    port, n = 30081, 3
    srv = start_server(be, "wait-reset", port, n)
    with Connscope(cluster, "--namespace", NS) as cs:
        records, out = reset_by_client(cs, fe, be, port, n, srv)
    assert_server_owner(records, port, n, srv.pid)
    for r in conns(records, port, "client"):
        assert r["pid"] == out["pid"], show([r])


# A server for the owner tests. how "reuseport": listens at once with
# SO_REUSEPORT and says READY (with count 0, then waits for a line on stdin and
# exits). how "late": binds with SO_REUSEADDR, says BOUND, listens once a line
# comes on stdin, and says LISTENING, or FAILED (a second one bound to the port:
# EADDRINUSE) and exits. Then it accepts count connections, echoes SIZE bytes
# on each and waits for the client's RST.
LISTENER = r"""
import socket, sys
how, ip, port, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5])
s = socket.socket()
if how == "reuseport":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((ip, port))
    s.listen(16)
    print("READY", flush=True)
    if count == 0:
        sys.stdin.readline()
else:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    print("BOUND", flush=True)
    sys.stdin.readline()
    try:
        s.listen(16)
    except OSError as e:
        print("FAILED %d" % e.errno, flush=True)
        sys.exit(0)
    print("LISTENING", flush=True)
for _ in range(count):
    c, _ = s.accept()
    data = b""
    while len(data) < size:
        data += c.recv(size - len(data))
    c.sendall(data)
    try:
        c.recv(1)
    except ConnectionResetError:
        pass
    c.close()
"""


def test_accepted_sockets_owned_while_a_reuseport_listener_remains(cluster):
    """Two processes listen on one port with SO_REUSEPORT, one of them stops: the
    port still has a listener, so the other's accepted sockets are still named."""
    fe, be = shop(cluster)
    port, n = 30082, 3
    with Connscope(cluster, "--namespace", NS) as cs:
        size = workloads.PAYLOAD_SIZE
        gone = be.python(LISTENER, "reuseport", be.ip, port, 0, size, stdin=subprocess.PIPE)
        wait_for_line(gone, "READY", 10)
        stays = be.python(LISTENER, "reuseport", be.ip, port, n, size)
        wait_for_line(stays, "READY", 10)
        gone.communicate(b"bye\n", timeout=10)   # its listener closes
        records, _ = reset_by_client(cs, fe, be, port, n, stays)
    assert_server_owner(records, port, n, stays.pid)


def test_a_listen_that_fails_takes_no_port(cluster):
    """A second process whose listen() on a port in use fails (EADDRINUSE) does
    not become the owner of the connections the first one accepts."""
    fe, be = shop(cluster)
    port, n = 30083, 3
    size = workloads.PAYLOAD_SIZE
    with Connscope(cluster, "--namespace", NS) as cs:
        first = be.python(LISTENER, "late", be.ip, port, n, size, stdin=subprocess.PIPE)
        wait_for_line(first, "BOUND", 10)
        second = be.python(LISTENER, "late", be.ip, port, n, size, stdin=subprocess.PIPE)
        wait_for_line(second, "BOUND", 10)
        first.stdin.write(b"go\n")
        first.stdin.flush()
        wait_for_line(first, "LISTENING", 10)
        second.stdin.write(b"go\n")
        second.stdin.flush()
        wait_for_line(second, "FAILED", 10)
        assert second.wait(timeout=10) == 0
        first.stdin.close()
        records, _ = reset_by_client(cs, fe, be, port, n, first)
    assert_server_owner(records, port, n, first.pid)


LAYOUTS = [
    ("systemd", "containerd", "burstable"),
    ("systemd", "crio", "besteffort"),
    ("systemd", "docker", "guaranteed"),
    ("cgroupfs", "containerd", "guaranteed"),
    ("cgroupfs", "crio", "burstable"),
    ("cgroupfs", "docker", "besteffort"),
]


@pytest.mark.parametrize("driver,runtime,qos", LAYOUTS,
                         ids=["-".join(x) for x in LAYOUTS])
def test_attribution_kubelet_layouts(cluster, driver, runtime, qos):
    """Every cgroup driver x runtime x QoS layout resolves to the right pod and container."""
    layout = dict(driver=driver, runtime=runtime, qos=qos)
    fe, be = shop(cluster, dict(layout, container="web"), dict(layout, container="api"))
    port, n = 30090, 3
    with Connscope(cluster, "--namespace", NS) as cs:
        srv = start_server(be, "echo", port, n)
        out = run_client(fe, "echo", be.ip, port, n)
        assert srv.wait(timeout=10) == 0
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
        records = finish(cs)
    client_recs, server_recs = conns(records, port, "client"), conns(records, port, "server")
    assert len(client_recs) == n and len(server_recs) == n, show(conns(records, port), 10)
    for r in client_recs:
        assert_pod(r, fe)
        assert r["pid"] == out["pid"]
    for r in server_recs:
        assert_pod(r, be)


# ---------------------------------------------------------------------------
# b. refused

@CONNECTIONS
def test_connect_refused(cluster, connections):
    fe, be = shop(cluster)
    port, n = 30081, 5          # nothing listens there
    with Connscope(cluster, "--namespace", NS, "--connections", connections) as cs:
        out = run_client(fe, "refused", be.ip, port, n)
        assert out["results"] == ["refused"] * n
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_for(is_finding("tcp_connect_refused", fe), RECORD_WAIT)
        records = finish(cs)

    client_recs = conns(records, port, "client")
    assert len(client_recs) == n, show(client_recs, 10)
    assert conns(records, port, "server") == [], "no server socket exists to observe"
    for r in client_recs:
        assert_pod(r, fe)
        assert_endpoints(r, fe.ip, be.ip, port)
        assert r["pid"] == out["pid"], show([r])
        assert r["tcp"]["outcome"] == "refused", show([r])
        assert r["tcp"]["bytes_out"] == 0 and r["tcp"]["bytes_in"] == 0, show([r])
    found = findings(records, "tcp_connect_refused", fe)
    assert found
    for f in found:
        assert isinstance(f["count"], int) and 1 <= f["count"] <= n, show([f])
        assert f["server"]["ip"] == be.ip and f["server"]["port"] == port, show([f])
    assert sum(f["count"] for f in found) <= n


# ---------------------------------------------------------------------------
# c. timeout


@CONNECTIONS
def test_connect_timeout(cluster, connections):
    fe, be = shop(cluster)
    port = 30082
    be.drop_syns(port)
    with Connscope(cluster, "--namespace", NS, "--connections", connections, "--connect-timeout", 2) as cs:
        srv = start_server(be, "echo", port, 1)    # it listens, but SYNs never reach it
        # SYN at 0 s, retransmitted at ~1 s and ~3 s; the client gives up at 3.5 s
        out = run_client(fe, "timeout", be.ip, port, 1, 3.5)
        client_done = time.monotonic()
        assert out["results"][0].startswith("timeout"), out
        cs.wait_for(is_conn(port, "client"), RECORD_WAIT)
        records = finish(cs)
        assert srv.poll() is None      # never accepted anything

    client_recs = conns(records, port, "client")
    assert len(client_recs) == 1, show(client_recs)
    conn = client_recs[0]
    assert_pod(conn, fe)
    assert_endpoints(conn, fe.ip, be.ip, port)
    assert conn["pid"] == out["pid"]
    assert conn["tcp"]["outcome"] == "timeout", show([conn])
    assert conn["tcp"]["syn_retrans"] >= 2, show([conn])
    assert conns(records, port, "server") == []

    found = findings(records, "tcp_connect_timeout", fe)
    assert len(found) >= 1, show([r for r in records if r["type"] == "finding"])
    f = found[0]
    assert f["server"]["ip"] == be.ip and f["server"]["port"] == port, show([f])
    assert f["pid"] == out["pid"], show([f])
    assert 2 <= f["elapsed_s"] < 3.5, show([f])
    assert f["syn_retrans"] >= 1, show([f])
    # raised while the connect was still hanging, not when it ended
    assert f["_seq"] < conn["_seq"], "finding must come before the connection record"
    assert parse_ts(f["ts"]) < parse_ts(conn["ts"]), show([f, conn])
    assert f["_rx"] < client_done, "finding must be printed while the connect still hangs"


# ---------------------------------------------------------------------------
# d. CLOSE_WAIT that the server never closes

def make_close_wait(fe, be, port):
    """The server reads to EOF and never closes: its socket sits in CLOSE_WAIT."""
    srv = start_server(be, "hold", port, 1)
    out = run_client(fe, "send-close", be.ip, port, 1)
    assert out["results"] == ["sent"]
    wait_for_line(srv, "EOF", 10)
    simpod.wait_until(lambda: any(s["state"] == "CLOSE_WAIT" and s["local"] == (be.ip, port)
                                  for s in be.tcp_sockets()), 5, what="CLOSE_WAIT")
    return srv, out


@CONNECTIONS
def test_close_wait_stuck(cluster, connections):
    fe, be = shop(cluster)
    port = 30083
    with Connscope(cluster, "--namespace", NS, "--connections", connections, "--close-wait-threshold", 2) as cs:
        srv, out = make_close_wait(fe, be, port)
        f = cs.wait_for(is_finding("close_wait_stuck", be), 15)
        assert srv.poll() is None, "the finding must come while the socket is still stuck"
        assert f["pid"] == srv.pid, show([f])
        assert f["side"] == "server", show([f])
        assert 2 <= f["age_s"] < 10, show([f])
        assert f["threshold_s"] == 2, show([f])
        assert f["preexisting"] is False, show([f])
        assert f["server"]["ip"] == be.ip and f["server"]["port"] == port, show([f])
        assert f["client"]["ip"] == fe.ip and f["client"]["port"] in out["ports"], show([f])
        assert_pod(f, be)

        srv.send_signal(signal.SIGKILL)   # the process exits: the kernel sends the FIN
        srv.wait(timeout=10)
        cs.wait_for(is_conn(port, "server"), RECORD_WAIT)
        records = finish(cs)

    server_recs = conns(records, port, "server")
    assert len(server_recs) == 1, show(server_recs)
    r = server_recs[0]
    assert_pod(r, be)
    assert r["tcp"]["outcome"] == "established", show([r])
    assert r["tcp"]["close"] == "peer_fin", show([r])
    assert r["tcp"]["close_wait_ms"] >= 2000, show([r])
    # the finding came before the socket closed
    assert f["_seq"] < r["_seq"]


# ---------------------------------------------------------------------------
# e. CLOSE_WAIT that existed before connscope started

@CONNECTIONS
def test_close_wait_preexisting(cluster, connections):
    fe, be = shop(cluster)
    port = 30084
    srv, out = make_close_wait(fe, be, port)
    time.sleep(3)
    with Connscope(cluster, "--namespace", NS, "--connections", connections, "--close-wait-threshold", 2) as cs:
        f = cs.wait_for(is_finding("close_wait_stuck", be), 15)
        assert srv.poll() is None
        assert f["pid"] == srv.pid, show([f])
        assert f["side"] == "server", show([f])
        assert f["preexisting"] is True, show([f])
        assert f["server"]["ip"] == be.ip and f["server"]["port"] == port, show([f])
        assert_pod(f, be)

        srv.send_signal(signal.SIGKILL)
        srv.wait(timeout=10)
        cs.wait_for(is_conn(port, "server"), RECORD_WAIT)
        records = finish(cs)
    server_recs = conns(records, port, "server")
    assert len(server_recs) == 1, show(server_recs)
    assert_pod(server_recs[0], be)
    assert server_recs[0]["preexisting"] is True, show(server_recs)


# ---------------------------------------------------------------------------
# f. resets

@CONNECTIONS
def test_reset_by_client(cluster, connections):
    fe, be = shop(cluster)
    port = 30085
    with Connscope(cluster, "--namespace", NS, "--connections", connections) as cs:
        srv = start_server(be, "wait-reset", port, 1)
        out = run_client(fe, "rst", be.ip, port, 1)      # SO_LINGER {1,0}, close
        assert out["results"] == ["rst_sent"]
        wait_for_line(srv, "RESET", 10)
        cs.wait_for(is_conn(port, "client"), RECORD_WAIT)
        cs.wait_for(is_conn(port, "server"), RECORD_WAIT)
        cs.wait_for(is_finding("peer_reset", be), RECORD_WAIT)
        records = finish(cs)

    (c,), (s,) = conns(records, port, "client"), conns(records, port, "server")
    assert_pod(c, fe)
    assert_pod(s, be)
    assert c["tcp"]["outcome"] == s["tcp"]["outcome"] == "established", show([c, s])
    assert c["tcp"]["close"] == "rst_out", show([c])
    assert s["tcp"]["close"] == "rst_in", show([s])
    f = findings(records, "peer_reset", be)[0]
    assert f["count"] >= 1 and f["server"]["port"] == port, show([f])
    assert findings(records, "peer_reset", fe) == [], "the client received no reset"


@CONNECTIONS
def test_reset_by_server(cluster, connections):
    fe, be = shop(cluster)
    port = 30086
    with Connscope(cluster, "--namespace", NS, "--connections", connections) as cs:
        srv = start_server(be, "rst", port, 1)          # echo, then SO_LINGER {1,0}, close
        out = run_client(fe, "wait-reset", be.ip, port, 1)
        assert out["results"] == ["reset"]
        wait_for_line(srv, "RST_SENT", 10)
        cs.wait_for(is_conn(port, "client"), RECORD_WAIT)
        cs.wait_for(is_conn(port, "server"), RECORD_WAIT)
        cs.wait_for(is_finding("peer_reset", fe), RECORD_WAIT)
        records = finish(cs)

    (c,), (s,) = conns(records, port, "client"), conns(records, port, "server")
    assert_pod(c, fe)
    assert_pod(s, be)
    assert s["tcp"]["close"] == "rst_out", show([s])
    assert c["tcp"]["close"] == "rst_in", show([c])
    assert c["pid"] == out["pid"]
    f = findings(records, "peer_reset", fe)[0]
    assert f["count"] >= 1 and f["server"]["port"] == port, show([f])
    assert findings(records, "peer_reset", be) == [], "the server received no reset"


# ---------------------------------------------------------------------------
# g. curl against python's http.server

def test_curl_http_server(cluster, tmp_path):
    fe, be = shop(cluster)
    port, n = 30087, 3
    (tmp_path / "index.html").write_text("<p>hello from backend</p>\n")
    with Connscope(cluster, "--namespace", NS) as cs:
        srv = be.popen([simpod.PYTHON, "-m", "http.server", port, "--bind", be.ip,
                        "--directory", tmp_path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        be.wait_listen(port)
        curl_pids = []
        for _ in range(n):
            cp = fe.run(["curl", "-s", "-o", "/dev/null", "--max-time", "5",
                         f"http://{be.ip}:{port}/"], timeout=15)
            assert cp.returncode == 0, cp.stderr
            curl_pids.append(cp.pid)
        cs.wait_count(is_conn(port, "client"), n, RECORD_WAIT)
        cs.wait_count(is_conn(port, "server"), n, RECORD_WAIT)
        records = finish(cs)
        assert srv.poll() is None

    client_recs, server_recs = conns(records, port, "client"), conns(records, port, "server")
    assert len(client_recs) == n, show(client_recs)
    assert len(server_recs) == n, show(server_recs)
    for r in client_recs:
        assert_pod(r, fe)
        assert r["comm"] == "curl", show([r])
        assert r["tcp"]["outcome"] == "established", show([r])
        assert r["tcp"]["bytes_in"] > 0 and r["tcp"]["bytes_out"] > 0, show([r])
        assert r["tcp"]["close"] in ("local_fin", "peer_fin"), show([r])
    assert sorted(r["pid"] for r in client_recs) == sorted(curl_pids)
    for r in server_recs:
        assert_pod(r, be)
        assert r["tcp"]["outcome"] == "established", show([r])
        assert r["tcp"]["close"] in ("local_fin", "peer_fin"), show([r])
    assert ({r["client"]["port"] for r in client_recs}
            == {r["client"]["port"] for r in server_recs})


# ---------------------------------------------------------------------------
# h. summaries and stats

def test_summary_and_stats(cluster):
    fe, be = shop(cluster)
    port, n = 30088, 20

    def summary_for(pod, opened, closed):
        def pred(r):
            tcp = r.get("tcp") or {}
            return (r.get("type") == "summary" and pod.matches(r.get("pod"))
                    and tcp.get("opened", 0) >= opened and tcp.get("closed", 0) >= closed)
        pred.__name__ = f"summary for {pod.name} with tcp.opened>={opened}"
        return pred

    with Connscope(cluster, "--namespace", NS, "-i", 1) as cs:
        srv = start_server(be, "echo", port, n)
        run_client(fe, "echo", be.ip, port, n)
        assert srv.wait(timeout=10) == 0
        s_fe = cs.wait_for(summary_for(fe, n, n), 10)
        s_be = cs.wait_for(summary_for(be, n, n), 10)
        cs.wait_for(lambda r: r.get("type") == "stats" and r.get("phase") == "interval",
                    5, what="an interval stats record")
        records = cs.stop()
    check_common(records)

    for s in (s_fe, s_be):
        assert {"opened", "closed", "active", "refused", "timeouts", "resets"} <= s["tcp"].keys()
        assert {"current", "stuck", "max_age_s"} <= s["close_wait"].keys()
        assert s["tcp"]["refused"] == s["tcp"]["timeouts"] == s["tcp"]["resets"] == 0, show([s])
        assert cgroup_matches(s, fe if s is s_fe else be), show([s])
    stats = [r for r in records if r["type"] == "stats"]
    assert stats[0]["phase"] == "start"
    assert any(r["phase"] == "interval" for r in stats)
    assert stats[-1]["phase"] == "end", show(stats[-3:])
    assert all(r["lost"] == 0 for r in stats), show(stats)
    assert stats[-1]["events"] > 0, show(stats[-1:])
