"""A connection cut while idle: the reset names the cause.

The node's network namespace routes between the pods' subnets, and its conntrack
forgets an established flow after 2 s idle (nf_conntrack_tcp_timeout_established,
per network namespace), with loose pickup off: the client's next segment on the
forgotten flow is invalid, and the node answers it with a reset, as a stateful
firewall, NAT or cloud load balancer does once its idle timeout has passed. The
client's socket ends by a reset that came after seconds without anything received:
peer_reset with cause idle_cut and its idle time. A reset right after an answer is
not an idle cut. Conntrack watched over ctnetlink says more: the flow's entry was
destroyed while established (expired) by the time of the reset.
"""

import subprocess
import textwrap

import pytest

from records import check_common, findings, is_finding, show
from simpod import Connscope

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.2.20"   # two subnets: routed by the node
PORT = 31601
CT_IDLE_S = 2

SERVER = textwrap.dedent(f"""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("{BE_IP}", {PORT})); s.listen(8); s.settimeout(30)
    print("ready", flush=True)
    conns = []
    for _ in range(2):
        c, _ = s.accept(); conns.append(c)
        c.settimeout(30)
        data = c.recv(64)
        if data == b"abort":
            # An abortive close right after the answer: a reset, no idle.
            c.sendall(b"ok")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\1\\0\\0\\0\\0\\0\\0\\0")
            c.close()
        else:
            c.sendall(b"ok")
    sys.stdin.read()
""")

CLIENT = textwrap.dedent(f"""
    import socket, sys, time
    mode, idle = sys.argv[1], float(sys.argv[2])
    s = socket.create_connection(("{BE_IP}", {PORT}), timeout=10)
    s.sendall(mode.encode()); assert s.recv(64) == b"ok"
    time.sleep(idle)
    try:
        s.sendall(b"again")
        print("reset" if s.recv(64) == b"" and mode == "abort" else "answered")
    except ConnectionResetError:
        print("reset")
""")


def node(cluster, *argv, stdin=None):
    cp = subprocess.run(["ip", "netns", "exec", cluster.node_netns, *argv], input=stdin,
                        capture_output=True, text=True, timeout=20)
    assert cp.returncode == 0, (argv, cp.stderr)


def cut_and_abort(cluster, command, *args):
    """The idle cut, then the abortive close: their two peer_reset findings."""
    fe = cluster.add_pod(NS, "frontend", FE_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    # The node's conntrack, as a stateful middlebox: the table first (it loads
    # conntrack for this namespace), then its idle timeout and strict pickup.
    node(cluster, "nft", "-f", "-", stdin=textwrap.dedent("""
        table inet idlecut {
          chain cut {
            type filter hook forward priority 0;
            ct state invalid tcp flags & (syn | rst) == 0 reject with tcp reset
          }
        }
    """))
    node(cluster, "sysctl", "-qw",
         f"net.netfilter.nf_conntrack_tcp_timeout_established={CT_IDLE_S}",
         "net.netfilter.nf_conntrack_tcp_loose=0")
    srv = be.popen(["/usr/bin/python3", "-c", SERVER], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, text=True)
    assert srv.stdout.readline().strip() == "ready"
    with Connscope(cluster, "--namespace", NS, "-i", 60, "--idle-cut", 1.5, *args,
                   command=command) as cs:
        # Idle 3.5 s, past the node's 2 s: the next write is answered by a reset.
        cut = fe.run(["/usr/bin/python3", "-c", CLIENT, "idle", "3.5"], timeout=20)
        assert cut.returncode == 0 and cut.stdout.strip() == "reset", (cut.stdout, cut.stderr)
        cs.wait_for(is_finding("peer_reset", fe), timeout=10)
        # The server resets right after its answer: a reset, not an idle cut.
        ab = fe.run(["/usr/bin/python3", "-c", CLIENT, "abort", "0.3"], timeout=20)
        assert ab.returncode == 0 and ab.stdout.strip() == "reset", (ab.stdout, ab.stderr)
        cs.wait_count(is_finding("peer_reset", fe), 2, timeout=15)
        records = cs.stop()
    srv.kill()
    check_common(records)
    return findings(records, "peer_reset", fe)[:2]


@pytest.mark.parametrize("command", ["trace", "daemon"])
def test_reset_after_idle_names_idle_cut(cluster, command):
    first, second = cut_and_abort(cluster, command)
    assert first["cause"] == "idle_cut", show([first])
    ev = first["evidence"]
    assert 3.0 <= ev["idle_s"] < 6 and ev["threshold_s"] == 1.5, show([first])
    assert ev["lifetime_s"] >= ev["idle_s"] - 0.02, show([first])   # jiffies
    # The default watcher: the BPF one, which cannot tell an expiry (null); on a
    # kernel without netfilter links, ctnetlink (the test below).
    assert ev["conntrack_entry"] in (None, "expired"), show([first])
    assert "keepalive" in first["message"], show([first])
    assert ("idle timeout" if ev["conntrack_entry"] is None else
            "nf_conntrack_tcp_timeout_established") in first["message"], show([first])
    # The abortive close: the reset came with the answer's ACK still fresh.
    assert second["cause"] is None and second["evidence"]["idle_s"] < 1.5, show([second])


@pytest.mark.parametrize("command", ["trace", "daemon"])
def test_conntrack_expiry_is_evidence(cluster, command):
    """Watched over ctnetlink, conntrack's destroy of the flow's entry while it was
    established is evidence of its own: conntrack_entry "expired", and the message
    names conntrack's timeout. The abortive close's entry was closed by its reset,
    never expired ("kept", or null when its netlink edges were not read yet as the
    reset's record was made). (The BPF watcher never sees a timeout: null, in the
    test above.)"""
    first, second = cut_and_abort(cluster, command, "--conntrack", "netlink")
    assert first["cause"] == "idle_cut", show([first])
    ev = first["evidence"]
    assert ev["conntrack_entry"] == "expired" and 3.0 <= ev["idle_s"] < 6, show([first])
    assert "nf_conntrack_tcp_timeout_established" in first["message"], show([first])
    assert "keepalive" in first["message"], show([first])
    assert second["cause"] is None and second["evidence"]["conntrack_entry"] in (None, "kept"), \
        show([second])
