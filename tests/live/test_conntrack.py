"""Conntrack and NAT: which backend a Service connection really reached.

A simulated node (tests/lib/simpod.py) with a client pod and a backend pod on two
subnets, so their traffic is routed by the node's network namespace, where an nft
DNAT rule plays kube-proxy: the Service address 10.96.0.10:80 leads to the backend's
10.244.2.20:8080. connscope watches conntrack in that node namespace only
(--conntrack-netns, added by simpod.Connscope), never in the machine's own.

Each test runs once per watcher: the BPF netfilter-link program (--conntrack bpf)
and the ctnetlink fallback (--conntrack netlink); both must give the same join.
"""

import subprocess
import time

import pytest

import simpod
from records import findings, show
from simpod import Connscope
from workloads import run_client, start_server

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.2.20"
VIP, VIP_PORT, BE_PORT = "10.96.0.10", 80, 8080
RST_SRC_PORT = 61500  # above the default ephemeral range (32768-60999)

WATCHERS = ["bpf", "netlink"]


def pods(cluster):
    fe = cluster.add_pod(NS, "frontend", FE_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    cluster.dnat(VIP, VIP_PORT, BE_IP, BE_PORT)
    return fe, be


def ep(r, k):
    return (r[k]["ip"], r[k]["port"])


@pytest.mark.parametrize("watcher", WATCHERS)
def test_service_connections_carry_the_backend(cluster, watcher):
    fe, be = pods(cluster)
    n = 3
    with Connscope(cluster, "--namespace", NS, "--conntrack", watcher) as cs:
        first = cs.records[0]
        assert first["conntrack"]["watcher"].startswith(
            "BPF netfilter link" if watcher == "bpf" else "ctnetlink"), first
        srv = start_server(be, "echo", BE_PORT, n)
        out = run_client(fe, "echo", VIP, VIP_PORT, n)[1]
        assert out["results"] == ["echoed"] * n, out
        cs.wait_count(lambda r: r["type"] == "connection", 2 * n, timeout=15)
        records = cs.stop()
    srv.wait(timeout=10)
    conns = [r for r in records if r["type"] == "connection"]
    client = [r for r in conns if r["side"] == "client"]
    server = [r for r in conns if r["side"] == "server"]
    assert len(client) == n and len(server) == n, show(conns)
    for r in client + server:
        assert "nat" in r, show([r] + [x for x in records if x["type"] == "stats"])
        assert ep(r["nat"], "orig_dst") == (VIP, VIP_PORT), show([r])
        assert ep(r["nat"], "reply_src") == (BE_IP, BE_PORT), show([r])
        assert r["nat"]["source"] == watcher, show([r])
    # The client dialled the Service; the backend saw the client itself.
    assert all(ep(r, "server") == (VIP, VIP_PORT) for r in client), show(client)
    assert all(ep(r, "server") == (BE_IP, BE_PORT) for r in server), show(server)
    # The backend pod is named once its sockets were seen (its own records).
    assert all(r["nat"]["reply_src"]["pod"] == f"{NS}/backend" for r in server), show(server)
    assert sorted(ep(r, "client")[1] for r in client) == sorted(out["ports"])
    stats = [r for r in records if r["type"] == "stats"][-1]
    assert stats["conntrack"]["events"] > 0 and stats["conntrack"]["lost"] == 0, stats


@pytest.mark.parametrize("command", ["trace", "daemon"])
@pytest.mark.parametrize("watcher", WATCHERS)
def test_backend_that_never_closes_shows_conntrack_close_wait(cluster, watcher, command):
    """The client sends and closes; the backend keeps its socket: conntrack's entry
    sits in CLOSE_WAIT, and the backend's stuck finding names the Service it served
    (daemon: from the few edges that cross, the entry's start and CLOSE_WAIT)."""
    fe, be = pods(cluster)
    with Connscope(cluster, "--namespace", NS, "--conntrack", watcher,
                   "--close-wait-threshold", "1", command=command) as cs:
        srv = start_server(be, "hold", BE_PORT, 1)
        run_client(fe, "send-close", VIP, VIP_PORT, 1)
        simpod.wait_for_line(srv, "EOF", 10)
        cs.wait_for(lambda r: r["type"] == "finding" and r["kind"] == "close_wait_stuck",
                    timeout=15)
        records = cs.stop()
    srv.kill()
    srv.wait(timeout=10)
    stuck = findings(records, "close_wait_stuck")
    assert len(stuck) == 1, show(stuck)
    f = stuck[0]
    assert f["pod"]["name"] == "backend" and f["side"] == "server", show([f])
    assert "nat" in f, show([f])
    assert ep(f["nat"], "orig_dst") == (VIP, VIP_PORT), show([f])
    assert ep(f["nat"], "reply_src") == (BE_IP, BE_PORT), show([f])
    assert f["nat"]["state"] == "CLOSE_WAIT", show([f])
    assert f["nat"]["reply_src"]["pod"] == f"{NS}/backend", show([f])
    assert f"{VIP}:{VIP_PORT}" in f["message"] and f"{BE_IP}:{BE_PORT}" in f["message"], f
    assert f"pod {NS}/backend" in f["message"], f


def test_check_says_which_watcher(cluster):
    """check names the conntrack path in use, for each choice."""
    node = f"/run/netns/{cluster.node_netns}"
    want = {"bpf": "BPF netfilter link", "netlink": "ctnetlink", "off": "off"}
    for choice, text in want.items():
        cp = subprocess.run([simpod.CONNSCOPE_BIN, "check", "--cgroup", cluster.cgroup_root,
                             "--conntrack", choice, "--conntrack-netns", node],
                            capture_output=True, text=True, timeout=60)
        line = [ln for ln in cp.stdout.splitlines() if ln.startswith("conntrack:")]
        assert line and text in line[0], (choice, cp.stdout, cp.stderr)


HOLDER = r'''
import socket, sys, time
ip, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = [socket.create_connection((ip, port), timeout=5) for _ in range(n)]
print("OPEN", len(socks), flush=True)
time.sleep(secs)
'''

ACCEPTOR = r'''
import socket, sys, time
ip, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port)); s.listen(256); s.settimeout(0.2)
print("READY", flush=True)
held, end = [], time.monotonic() + secs
while time.monotonic() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
'''


@pytest.mark.parametrize("watcher", WATCHERS)
def test_conntrack_pressure(cluster, watcher):
    """30 connections held open through the Service against a table of 20 (the
    kernel's nf_conntrack_max is global and read-only in a namespace, so the test
    sets the size connscope measures against): conntrack_pressure, with the fill."""
    fe, be = pods(cluster)
    with Connscope(cluster, "--namespace", NS, "--conntrack", watcher,
                   "--conntrack-max", "20", "--conntrack-pressure", "90") as cs:
        acc = be.python(ACCEPTOR, BE_IP, BE_PORT, 15)
        simpod.wait_for_line(acc, "READY", 10)
        holder = fe.python(HOLDER, VIP, VIP_PORT, 30, 6)
        simpod.wait_for_line(holder, "OPEN", 15)
        f = cs.wait_for(lambda r: r["type"] == "finding" and r["kind"] == "conntrack_pressure",
                        timeout=10)
        records = cs.stop()
    holder.kill()
    acc.kill()
    holder.wait(timeout=10)
    acc.wait(timeout=10)
    assert f["max"] == 20 and f["count"] >= 18 and f["percent"] >= 90, f
    assert "full" in f["message"] and "20" in f["message"], f
    # Once per window, not once a second.
    assert len(findings(records, "conntrack_pressure")) == 1, show(findings(records,
                                                                           "conntrack_pressure"))


def test_local_close_wait_is_not_reported_as_forwarded(cluster):
    """Without a pod filter, conntrack's CLOSE_WAIT of a flow whose backend socket is
    on this node is the socket's finding, not a second one for a "forwarded" flow."""
    fe, be = pods(cluster)
    with Connscope(cluster, "--conntrack", "bpf", "--close-wait-threshold", "1") as cs:
        srv = start_server(be, "hold", BE_PORT, 1)
        run_client(fe, "send-close", VIP, VIP_PORT, 1)
        simpod.wait_for_line(srv, "EOF", 10)
        cs.wait_for(lambda r: r["type"] == "finding" and r["kind"] == "close_wait_stuck"
                    and (r.get("pod") or {}).get("name") == "backend", timeout=15)
        time.sleep(2.5)  # a second finding would come within a tick of the first
        records = cs.stop()
    srv.kill()
    srv.wait(timeout=10)
    mine = [f for f in findings(records, "close_wait_stuck")
            if (f.get("nat") or {}).get("orig_dst", {}).get("ip") == VIP]
    assert len(mine) == 1 and mine[0]["side"] == "server", show(mine)
    fwd = [r for r in records if r.get("side") == "forwarded"
           and r.get("server", {}).get("ip") == BE_IP]
    assert not fwd, show(fwd)


def test_daemon_healthy_flows_stay_in_the_kernel(cluster):
    """daemon (problem records only): healthy flows through the Service and straight
    to the backend make no record, not even a forwarded one, and send conntrack
    nothing; a refused connect and a reset through the Service still carry their
    NAT, looked up in what the kernel kept when conntrack saw the RST."""
    fe, be = pods(cluster)
    n = 3
    with Connscope(cluster, "--namespace", NS, "--conntrack", "bpf", command="daemon") as cs:
        srv = start_server(be, "echo", BE_PORT, 2 * n + 1)
        out = run_client(fe, "echo", VIP, VIP_PORT, n)[1]
        assert out["results"] == ["echoed"] * n, out
        out = run_client(fe, "echo", BE_IP, BE_PORT, n)[1]
        assert out["results"] == ["echoed"] * n, out
        # From a port no direct connection can have used: their lingering entries'
        # reply tuples would otherwise make NAT remap it, and the ends differ.
        rst = run_client(fe, "rst", VIP, VIP_PORT, 1, src_port=RST_SRC_PORT)[1]
        assert rst["results"] == ["rst_sent"], rst
        srv.wait(timeout=10)
        refused = run_client(fe, "echo", VIP, VIP_PORT, 1)[1]
        assert refused["results"] == ["refused"], refused
        cs.wait_count(lambda r: r["type"] == "connection", 3, timeout=15)
        time.sleep(6.5)     # past conntrack's 5 s linger: no forwarded records come
        records = cs.stop()
    conns = [r for r in records if r["type"] == "connection"]
    assert len(conns) == 3, show(conns)
    (c,) = [r for r in conns if r["tcp"]["outcome"] == "refused"]
    assert c["side"] == "client", show(conns)
    # The reset one, from both ends: the client's socket is the entry's original
    # tuple, the backend's its reply tuple.
    (rc,) = [r for r in conns if r["tcp"]["close"] == "rst_out"]
    (rs,) = [r for r in conns if r["tcp"]["close"] == "rst_in"]
    assert rc["side"] == "client" and rs["side"] == "server", show(conns)
    assert ep(rs, "client") == ep(rc, "client"), show(conns)
    for r in (c, rc, rs):
        assert ep(r["nat"], "orig_dst") == (VIP, VIP_PORT), show([r])
        assert ep(r["nat"], "reply_src") == (BE_IP, BE_PORT), show([r])
        assert r["nat"]["source"] == "bpf", show([r])
    stats = [r for r in records if r["type"] == "stats"][-1]
    # Healthy flows send nothing and leave nothing in the kernel; the ends by a RST
    # cross, and kept the NAT that their records found (no GET was needed).
    ev = stats["conntrack"]["events"]
    assert ev == 2, show([stats])
    assert stats["conntrack"]["nat_gets"] == 0, show([stats])
    assert stats["conntrack"]["lost"] == 0, show([stats])
    print(f"\nconntrack events for {n} translated + {n} direct healthy flows, a reset and a "
          f"refused one: {ev}")


def test_daemon_problem_flows_find_their_nat(cluster, pki):
    """daemon: what the kernel keeps of a translated flow is only what turned into a
    problem that conntrack sees. A connect through the Service that times out
    (its SYN sent again) is kept in the kernel; a TLS handshake that the client
    rejects ends by FINs, which conntrack sees as healthy, so user space asks
    conntrack for the entry (a ctnetlink GET) when the records need it. Both
    sides of both carry the NAT."""
    import tlspeers
    fe, be = pods(cluster)
    drop_port = BE_PORT + 1
    rule = ["nft", "add", "rule", "ip", "kube", "pre", "ip", "daddr", VIP, "tcp", "dport",
            str(VIP_PORT + 1), "dnat", "to", f"{BE_IP}:{drop_port}"]
    cp = subprocess.run(["ip", "netns", "exec", cluster.node_netns, *rule],
                        capture_output=True, text=True, timeout=20)
    assert cp.returncode == 0, cp.stderr
    be.netns_run(["nft", "add", "table", "inet", "cstest"])
    be.netns_run(["nft", "add", "chain", "inet", "cstest", "in",
                  "{ type filter hook input priority 0; }"])
    be.netns_run(["nft", "add", "rule", "inet", "cstest", "in", "tcp", "dport",
                  str(drop_port), "drop"])
    with Connscope(cluster, "--namespace", NS, "--conntrack", "bpf", "--connect-timeout", 2,
                   "--finding-window", 0, command="daemon") as cs:
        srv = tlspeers.openssl_server(be, pki, BE_PORT, naccept=1,
                                      cert=pki.selfsigned, key=pki.selfsigned_key)
        r = tlspeers.s_client(fe, VIP, VIP_PORT, "-verify_return_error", "-CAfile", pki.other_ca)
        assert r["rc"] != 0 and "self-signed certificate" in (r["verify_error"] or ""), r
        srv.wait(timeout=10)
        hang = start_server(be, "echo", drop_port, 1)   # it listens; SYNs never reach it
        out = run_client(fe, "timeout", VIP, VIP_PORT + 1, 1, 3.5)[1]
        assert out["results"][0].startswith("timeout"), out
        cs.wait_count(lambda r: r["type"] == "connection", 3, timeout=15)
        records = cs.stop()
    hang.kill()
    hang.wait(timeout=10)
    conns = [r for r in records if r["type"] == "connection"]
    (tc,) = [r for r in conns if r.get("tls") and r["side"] == "client"]
    (ts,) = [r for r in conns if r.get("tls") and r["side"] == "server"]
    (to,) = [r for r in conns if r["tcp"]["outcome"] == "timeout"]
    assert tc["tls"]["outcome"] == ts["tls"]["outcome"] == "failed", show(conns)
    (f,) = findings(records, "tcp_connect_timeout")
    for x, port, source in ((tc, VIP_PORT, "netlink"), (ts, VIP_PORT, "netlink"),
                            (to, VIP_PORT + 1, "bpf"), (f, VIP_PORT + 1, "bpf")):
        assert x.get("nat"), show([x])
        assert ep(x["nat"], "orig_dst") == (VIP, port), show([x])
        assert ep(x["nat"], "reply_src") == (BE_IP, BE_PORT + port - VIP_PORT), show([x])
        assert x["nat"]["source"] == source, show([x])
    stats = [r for r in records if r["type"] == "stats"][-1]
    ct = stats["conntrack"]
    # One GET: the entry it returned serves the other socket's record and the findings.
    assert ct["nat_gets"] == 1 and ct["nat_gets_skipped"] == 0, show([stats])
    assert ct["lost"] == 0, show([stats])
