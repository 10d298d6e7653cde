"""Counts kept in the kernel: exact whatever the ring buffers lose, and only the
records asked for (--connections).

The lifecycle programs count every connection in per-cgroup maps; records and
problem edges cross ring buffers that a test can make tiny
(CONNSCOPE_RINGBUF_BYTES for problems, CONNSCOPE_CONN_RINGBUF_BYTES for healthy
closes) so that they overflow. The summaries must still give
the exact number of connections the workload made.
"""

import pytest

from records import conns, findings, show
from simpod import Connscope
import workloads
from workloads import start_server

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
TINY_RING = 4096     # the smallest ring the kernel takes: about 25 edges


def shop(cluster):
    return (cluster.add_pod(NS, "frontend", FE_IP), cluster.add_pod(NS, "backend", BE_IP))


def last_summary(records, pod):
    sums = [r for r in records if r["type"] == "summary" and r.get("pod")
            and r["pod"]["name"] == pod.name]
    assert sums, f"no summary for {pod.ref}"
    return sums[-1]


def end_stats(records):
    ends = [r for r in records if r["type"] == "stats" and r.get("phase") == "end"]
    assert len(ends) == 1, show(ends)
    return ends[0]


def test_counts_exact_when_records_overflow(cluster, monkeypatch):
    """--connections all with a ring of 4 KiB: most healthy closes cannot cross.
    They are counted as sampled out, never as lost, and the counts stay exact."""
    fe, be = shop(cluster)
    port, n = 30310, 1500
    monkeypatch.setenv("CONNSCOPE_CONN_RINGBUF_BYTES", str(TINY_RING))
    with Connscope(cluster, "--namespace", NS, "--connections", "all", "-i", "1") as cs:
        srv = start_server(be, "echo", port, n)
        out = workloads.run_client(fe, "echo", be.ip, port, n, 10.0)[1]
        assert out["results"] == ["echoed"] * n
        assert srv.wait(timeout=30) == 0
        cs.wait_for(lambda r: r["type"] == "summary" and r.get("pod") and
                    r["pod"]["name"] == "frontend" and r["tcp"]["closed"] == n, 15,
                    what="a frontend summary with every close")
        records = cs.stop()
    st = end_stats(records)
    recs = conns(records, port)
    print(f"\n{n} connections, ring {TINY_RING} B: {len(recs)} of {2 * n} connection "
          f"records crossed, sampled_out {st['sampled_out']}, lost {st['lost']}")
    assert st["sampled_out"] > 0, "the tiny ring must have overflowed: " + show([st])
    assert st["lost"] == 0, show([st])
    # every healthy close either crossed or was counted as sampled out (the count
    # is node-wide: other sockets' closes may be in it too)
    assert len(recs) < 2 * n and len(recs) + st["sampled_out"] >= 2 * n, show([st])
    for pod in (fe, be):
        tcp = last_summary(records, pod)["tcp"]
        assert tcp["opened"] == n and tcp["closed"] == n and tcp["active"] == 0, show([tcp])
        assert tcp["failed"] == tcp["refused"] == tcp["resets"] == 0, show([tcp])
    assert last_summary(records, fe)["tcp"]["closed_by"]["local_fin"] == n
    assert last_summary(records, be)["tcp"]["closed_by"]["peer_fin"] == n
    rem = last_summary(records, fe)["remotes"]
    assert rem and rem[0]["ip"] == BE_IP and rem[0]["port"] == port and \
        rem[0]["connections"] == n, show(rem)


def test_refused_count_exact_when_problem_edges_are_lost(cluster, monkeypatch):
    """A storm of refused connects through a 4 KiB problem ring: edges are lost
    (and said to be), the refused count is not."""
    fe, be = shop(cluster)
    port, n = 30311, 2000    # nothing listens there
    monkeypatch.setenv("CONNSCOPE_RINGBUF_BYTES", str(TINY_RING))
    with Connscope(cluster, "--namespace", NS, "-i", "1") as cs:
        out = workloads.run_client(fe, "refused", be.ip, port, n, 10.0)[1]
        assert out["results"] == ["refused"] * n
        cs.wait_for(lambda r: r["type"] == "summary" and r.get("pod") and
                    r["pod"]["name"] == "frontend" and r["tcp"]["refused"] == n, 15,
                    what="a frontend summary with every refused connect")
        records = cs.stop()
    st = end_stats(records)
    recs = conns(records, port, "client")
    print(f"\n{n} refused connects, ring {TINY_RING} B: {len(recs)} records, "
          f"lost {st['lost']}")
    assert st["lost"] > 0, "the tiny ring must have overflowed: " + show([st])
    assert len(recs) + st["lost"] >= n, show([st])
    tcp = last_summary(records, fe)["tcp"]
    assert tcp["refused"] == n and tcp["opened"] == 0, show([tcp])
    assert last_summary(records, fe)["remotes"][0]["refused"] == n


@pytest.mark.parametrize("mode,want", [("problems", "problems"), ("none", "none")])
def test_connections_modes(cluster, mode, want):
    """--connections problems writes the refused connects' records and not the
    healthy ones; none writes neither. Findings and counts are the same."""
    fe, be = shop(cluster)
    port, bad, n = 30312, 30313, 20
    with Connscope(cluster, "--namespace", NS, "--connections", mode, "-i", "1") as cs:
        srv = start_server(be, "echo", port, n)
        out = workloads.run_client(fe, "echo", be.ip, port, n, 10.0)[1]
        assert out["results"] == ["echoed"] * n
        assert srv.wait(timeout=10) == 0
        workloads.run_client(fe, "refused", be.ip, bad, 3, 10.0)
        cs.wait_for(lambda r: r["type"] == "finding" and r["kind"] == "tcp_connect_refused", 10)
        cs.wait_for(lambda r: r["type"] == "summary" and r.get("pod") and
                    r["pod"]["name"] == "frontend" and r["tcp"]["closed"] == n and
                    r["tcp"]["refused"] == 3, 15, what="the frontend's summary")
        records = cs.stop()
    assert conns(records, port) == [], show(conns(records, port))
    refused = conns(records, bad)
    assert len(refused) == (3 if want == "problems" else 0), show(refused)
    assert findings(records, "tcp_connect_refused", fe)
    st = end_stats(records)
    # healthy closes did not cross at all
    assert st["events"] < 3 + 10, show([st])


HOLD_SERVER = r'''
import socketserver, sys

class H(socketserver.BaseRequestHandler):
    def handle(self):
        while self.request.recv(4096):
            pass

class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

srv = S((sys.argv[1], int(sys.argv[2])), H)
print("READY", flush=True)
srv.serve_forever()
'''

HOLD_CLIENT = r'''
import socket, sys
ip, port, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection((ip, port), timeout=10) for _ in range(k)]
print("HELD", flush=True)
sys.stdin.readline()
for c in held:
    c.close()
print("CLOSED", flush=True)
'''


def test_lean_counts_exact_with_preexisting(cluster):
    """With only problems crossing, a healthy connection keeps no socket state in
    the kernel (socket_state on_demand): connections open before the start are
    told apart by the start-up snapshot, and the counts stay exact: opened counts
    only what was born under connscope, active comes back to 0."""
    from simpod import wait_for_line
    import subprocess
    fe, be = shop(cluster)
    held_port, port, k, n = 30314, 30315, 12, 400
    srv_hold = be.python(HOLD_SERVER, be.ip, held_port)
    holder = None
    try:
        wait_for_line(srv_hold, "READY", 10)
        holder = fe.python(HOLD_CLIENT, be.ip, held_port, k, stdin=subprocess.PIPE)
        wait_for_line(holder, "HELD", 10)
        with Connscope(cluster, "--namespace", NS, "--connections", "problems",
                       "-i", "1") as cs:
            start = cs.records[0]
            assert start.get("socket_state") == "on_demand", show([start])
            srv = start_server(be, "echo", port, n)
            out = workloads.run_client(fe, "echo", be.ip, port, n, 10.0)[1]
            assert out["results"] == ["echoed"] * n
            assert srv.wait(timeout=30) == 0
            holder.stdin.write(b"close\n")
            holder.stdin.flush()
            wait_for_line(holder, "CLOSED", 10)
            for pod in (fe, be):
                cs.wait_for(lambda r, p=pod: r["type"] == "summary" and r.get("pod") and
                            r["pod"]["name"] == p.name and r["tcp"]["closed"] == n + k and
                            r["tcp"]["active"] == 0, 15,
                            what=f"a {pod.name} summary with every close")
            records = cs.stop()
    finally:
        for p in (holder, srv_hold):
            if p and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    st = end_stats(records)
    for pod in (fe, be):
        tcp = last_summary(records, pod)["tcp"]
        assert tcp["opened"] == n and tcp["closed"] == n + k and tcp["active"] == 0, \
            show([tcp])
        assert tcp["failed"] == tcp["refused"] == tcp["resets"] == 0, show([tcp])
    assert last_summary(records, fe)["tcp"]["closed_by"]["local_fin"] == n + k
    assert last_summary(records, be)["tcp"]["closed_by"]["peer_fin"] == n + k
    # Healthy closes, old or new, are no problem records; but the held ones'
    # closes crossed (older than connscope: user space counted them active from
    # its snapshot and must hear of their end), the churn's did not.
    assert conns(records, held_port) == [] and conns(records, port) == []
    assert st["lost"] == 0 and 2 * k <= st["events"] < 2 * k + 10, show([st])


MANY_CW_SERVER = r'''
import resource, socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, max(n + 256,
                   resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(1024)
print("READY", flush=True)
held = []
for _ in range(n):
    c, _ = s.accept()
    while c.recv(4096):
        pass
    held.append(c)           # the peer closed; this side never does: CLOSE_WAIT
print("HOLDING %d" % len(held), flush=True)
sys.stdin.readline()
'''


def test_close_wait_many_exact(cluster):
    """More sockets in CLOSE_WAIT at once than the kernel's slot array has slots
    (4,096; the rest go to its hash): every one is counted while it is there,
    found stuck, and gone once its process closes it."""
    from simpod import wait_for_line
    import subprocess
    fe, be = shop(cluster)
    port, n = 30316, 5000
    with Connscope(cluster, "--namespace", NS, "--connections", "problems",
                   "--close-wait-threshold", 1, "-i", "1") as cs:
        srv = be.python(MANY_CW_SERVER, be.ip, port, n, stdin=subprocess.PIPE)
        try:
            wait_for_line(srv, "READY", 10)
            out = workloads.run_client(fe, "send-close", be.ip, port, n, 10.0)[1]
            assert out["results"] == ["sent"] * n
            wait_for_line(srv, "HOLDING", 30)
            s = cs.wait_for(lambda r: r["type"] == "summary" and r.get("pod") and
                            r["pod"]["name"] == "backend" and
                            r["close_wait"]["stuck"] == n, 20,
                            what=f"a backend summary with {n} sockets stuck")
            assert s["close_wait"]["current"] == n, show([s])
        finally:
            srv.kill()
            srv.wait(timeout=30)
        cs.wait_for(lambda r: r["type"] == "summary" and r.get("pod") and
                    r["pod"]["name"] == "backend" and r["close_wait"]["current"] == 0 and
                    r["tcp"]["closed"] == n, 20, what="a backend summary with all closed")
        records = cs.stop()
    tcp = last_summary(records, be)["tcp"]
    assert tcp["opened"] == n and tcp["active"] == 0, show([tcp])
    # each was stuck, so each close is a problem record
    assert len(conns(records, port, "server")) == n
    # Nothing overflowed. (5,000 closes at the server's exit, their peers' state
    # changes arriving in softirq on the same CPUs: the kernel may skip a few
    # nested program runs, which stats counts in lost as missed_runs.)
    st = end_stats(records)
    print(f"\n{n} sockets in CLOSE_WAIT: lost {st['lost']} (missed_runs {st['missed_runs']})")
    assert st["ringbuf_full"] == 0 and st["lost"] == st["missed_runs"], show([st])


def test_reset_storm_sampled_counts_exact(cluster, monkeypatch):
    """With only problems crossing, a storm of resets is counted exactly in the
    kernel; its records are a sample (CONNSCOPE_RESET_RATE a second per CPU, the
    rest in sampled_out), and the peer_reset finding is still made."""
    fe, be = shop(cluster)
    port, n = 30317, 1500
    monkeypatch.setenv("CONNSCOPE_RESET_RATE", "50")
    with Connscope(cluster, "--namespace", NS, "--connections", "problems", "-i", "1") as cs:
        srv = start_server(be, "wait-reset", port, n)
        out = workloads.run_client(fe, "rst", be.ip, port, n, 10.0)[1]
        assert out["results"] == ["rst_sent"] * n
        assert srv.wait(timeout=30) == 0
        for pod in (fe, be):
            cs.wait_for(lambda r, p=pod: r["type"] == "summary" and r.get("pod") and
                        r["pod"]["name"] == p.name and r["tcp"]["resets"] == n, 15,
                        what=f"a {pod.name} summary with every reset")
        cs.wait_for(lambda r: r["type"] == "finding" and r["kind"] == "peer_reset", 10)
        records = cs.stop()
    st = end_stats(records)
    recs = conns(records, port)
    print(f"\n{n} aborted connections, 50 reset records/s per CPU: {len(recs)} of {2 * n} "
          f"records crossed, sampled_out {st['sampled_out']}, lost {st['lost']}")
    assert st["lost"] == 0, show([st])
    assert len(recs) < n and len(recs) + st["sampled_out"] >= 2 * n, show([st])
    for pod in (fe, be):
        tcp = last_summary(records, pod)["tcp"]
        assert tcp["opened"] == n and tcp["closed"] == n and tcp["resets"] == n and \
            tcp["active"] == 0, show([tcp])
    assert last_summary(records, fe)["tcp"]["closed_by"]["rst_out"] == n
    assert last_summary(records, be)["tcp"]["closed_by"]["rst_in"] == n
    # a client record that crossed was amended by its RST (rst_out, not an abort)
    assert all(r["tcp"]["close"] == "rst_out" for r in conns(records, port, "client")), \
        show(conns(records, port, "client"), 4)
    assert findings(records, "peer_reset", be)


@pytest.mark.parametrize("mode", ["all", "problems"])
def test_skipped_runs_rescued(cluster, monkeypatch, mode):
    """The kernel skips a program run that starts while the same program runs on
    that CPU. CONNSCOPE_TEST_SKIP_RUNS=3 makes every third run of each lifecycle
    program return at once, before its mark, as a skipped run would: the rescue
    programs must run every one of them, so counts, causes and records are exact
    and nothing is counted as missed."""
    fe, be = shop(cluster)
    port, bad, n, m = 30318, 30319, 300, 40
    monkeypatch.setenv("CONNSCOPE_TEST_SKIP_RUNS", "3")
    with Connscope(cluster, "--namespace", NS, "--connections", mode, "-i", "1") as cs:
        srv = start_server(be, "echo", port, n)
        out = workloads.run_client(fe, "echo", be.ip, port, n, 10.0)[1]
        assert out["results"] == ["echoed"] * n
        assert srv.wait(timeout=30) == 0
        out = workloads.run_client(fe, "refused", be.ip, bad, m, 10.0)[1]
        assert out["results"] == ["refused"] * m
        cs.wait_for(lambda r: r["type"] == "summary" and r.get("pod") and
                    r["pod"]["name"] == "frontend" and r["tcp"]["closed"] == n and
                    r["tcp"]["refused"] == m, 15, what="a frontend summary with every close")
        records = cs.stop()
    st = end_stats(records)
    print(f"\n--connections {mode}, every third run skipped: rescued_runs "
          f"{st['rescued_runs']}, missed_runs {st['missed_runs']}, lost {st['lost']}")
    # each connection is about ten state changes: a third of them were skipped
    assert st["rescued_runs"] >= 3 * n, show([st])
    assert st["missed_runs"] == 0 and st["lost"] == 0, show([st])
    for pod in (fe, be):
        tcp = last_summary(records, pod)["tcp"]
        assert tcp["opened"] == n and tcp["closed"] == n and tcp["active"] == 0, show([tcp])
    assert last_summary(records, fe)["tcp"]["closed_by"]["local_fin"] == n
    assert last_summary(records, be)["tcp"]["closed_by"]["peer_fin"] == n
    assert last_summary(records, fe)["tcp"]["refused"] == m
    assert len(conns(records, bad, "client")) == m
    assert len(conns(records, port)) == (2 * n if mode == "all" else 0)
    assert findings(records, "tcp_connect_refused", fe)
