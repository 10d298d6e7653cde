# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Live test of the ctnetlink fallback (user/live/ctnl.c) and the conntrack
pressure reader (user/live/ctstat.c), through the driver tests/live/ct_nl_dump.c.

Topology, all made and removed here (root; nothing of the root namespace is
changed):

    client ns  10.78.1.10 --veth-- 10.78.1.1  node ns  10.78.2.1 --veth-- 10.78.2.20  backend ns
                                   ip_forward=1, nft DNAT
                                   10.96.0.10:80 -> 10.78.2.20:8080

Conntrack runs in the node namespace (the DNAT rule turns it on there), which
is the one watched.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TAG = "%d" % (os.getpid() % 100000)
NODE, CLI, BE = "ctn-node-" + TAG, "ctn-cli-" + TAG, "ctn-be-" + TAG
CLI_IP, BE_IP, VIP = "10.78.1.10", "10.78.2.20", "10.96.0.10"
DST_NAT = 1 << 5

NFT_RULES = """
table ip kube {
    chain pre {
        type nat hook prerouting priority dstnat;
        ip daddr %s tcp dport 80 dnat to %s:8080
    }
}
""" % (VIP, BE_IP)

# The backend: answers "ok" to the first bytes, then holds every connection
# open and never closes it, so a client FIN leaves it in CLOSE_WAIT.
SERVER = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("%s", 8080)); s.listen(1024)
print("listening", flush=True)
held = []
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        c.recv(100); c.sendall(b"ok")
    except OSError:
        pass
    held.append(c)
""" % BE_IP

# A client: n connections to the VIP, each says hi and reads "ok"; with fin,
# each then sends its FIN. It prints "up" and holds the sockets until killed.
CLIENT = r"""
import socket, sys, time
n, fin = int(sys.argv[1]), sys.argv[2] == "fin"
held = []
for i in range(n):
    c = socket.create_connection(("%s", 80), timeout=5)
    c.sendall(b"hi"); assert c.recv(10) == b"ok"
    if fin:
        c.shutdown(socket.SHUT_WR)
    held.append(c)
    print("port", c.getsockname()[1], flush=True)
print("up", flush=True)
time.sleep(120)
""" % VIP

# Flush the namespace's IPv4 conntrack table: IPCTNL_MSG_CT_DELETE with no
# tuple deletes every entry, and the kernel reports each as a destroy event.
FLUSH = r"""
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
msg = struct.pack("=IHHII", 20, (1 << 8) | 2, 1 | 4, 1, 0) + struct.pack("=BBH", 2, 0, 0)
s.sendto(msg, (0, 0))
r = s.recv(4096)
err = struct.unpack_from("=i", r, 16)[0]
assert err == 0, err
"""


def run(*cmd, ns=None, check=True, timeout=20):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True, text=True)


def spawn(code, *args, ns):
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_line(p, want, timeout=15):
    """Read p's stdout until a line starting with want; return the lines read.
    Raw reads with our own buffer: a buffered readline would hide lines from
    select()."""
    import selectors
    if not hasattr(p, "pending"):
        p.pending = b""
        os.set_blocking(p.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    lines, end = [], time.monotonic() + timeout
    try:
        while True:
            while b"\n" in p.pending:
                line, p.pending = p.pending.split(b"\n", 1)
                lines.append(line.decode())
                if lines[-1].startswith(want):
                    return lines
            left = end - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                break
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            p.pending += chunk
    finally:
        sel.close()
    raise AssertionError("no %r from %s; got %r; stderr %r"
                         % (want, p.args, lines, p.stderr.read() if p.poll() is not None else ""))


def read_all(p):
    """Stop p and return every line it printed that wait_line did not take."""
    stop(p)
    os.set_blocking(p.stdout.fileno(), True)
    rest = getattr(p, "pending", b"") + p.stdout.read()
    return rest.decode().splitlines()


def stop(p, timeout=10):
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=timeout)


@pytest.fixture(scope="module")
def driver():
    assert os.geteuid() == 0, "needs root"
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler"
    d = tempfile.mkdtemp(prefix="ctnl-")
    out = os.path.join(d, "ct_nl_dump")
    subprocess.run([cc, "-std=gnu11", "-D_GNU_SOURCE", "-O1", "-g", "-Wall", "-Wextra",
                    "-Wno-unused-parameter", "-I" + ROOT + "/user/live", "-I" + ROOT + "/user/lib",
                    "-I" + ROOT + "/bpf",
                    ROOT + "/tests/live/ct_nl_dump.c", ROOT + "/user/live/ctnl.c",
                    ROOT + "/user/live/ctstat.c", ROOT + "/user/lib/util.c",
                    "-lpthread", "-lm", "-o", out], check=True, timeout=120)
    yield out
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def topo():
    """The three namespaces; removed afterwards, whatever happened."""
    procs = []
    try:
        for ns in (NODE, CLI, BE):
            run("ip", "netns", "del", ns, check=False)
            run("ip", "netns", "add", ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
        # Both veth pairs are made inside the node namespace, then one end
        # moved out: no interface ever appears in the root namespace.
        for peer, ifn, net, ip in ((CLI, "vc", "10.78.1", CLI_IP), (BE, "vb", "10.78.2", BE_IP)):
            run("ip", "link", "add", ifn + "0", "type", "veth", "peer", "name", ifn + "1", ns=NODE)
            run("ip", "link", "set", ifn + "1", "netns", peer, ns=NODE)
            run("ip", "addr", "add", net + ".1/24", "dev", ifn + "0", ns=NODE)
            run("ip", "link", "set", ifn + "0", "up", ns=NODE)
            run("ip", "addr", "add", ip + "/24", "dev", ifn + "1", ns=peer)
            run("ip", "link", "set", ifn + "1", "up", ns=peer)
            run("ip", "route", "add", "default", "via", net + ".1", ns=peer)
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NODE)
        subprocess.run(["ip", "netns", "exec", NODE, "nft", "-f", "-"], input=NFT_RULES,
                       check=True, timeout=20, capture_output=True, text=True)
        srv = spawn(SERVER, ns=BE)
        procs.append(srv)
        wait_line(srv, "listening")
        yield procs
    finally:
        for p in procs:
            stop(p)
        for ns in (CLI, BE, NODE):
            run("ip", "netns", "del", ns, check=False)


def events(lines):
    return [json.loads(x) for x in lines if x.startswith("{")]


def test_lifecycle_nat_close_wait_destroy(driver, topo):
    # A connection made before the watcher starts: the dump must list it.
    early = spawn(CLIENT, "1", "hold", ns=CLI)
    topo.append(early)
    early_port = int(wait_line(early, "up")[0].split()[1])

    drv = subprocess.Popen([driver, "/run/netns/" + NODE, "--dump", "--seconds", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    topo.append(drv)
    head = wait_line(drv, '{"kind":"dumped"')
    ready = json.loads(head[0])
    assert "nf_conntrack_events=" in ready["describe"], ready

    cli = spawn(CLIENT, "1", "fin", ns=CLI)
    topo.append(cli)
    port = int(wait_line(cli, "up")[0].split()[1])
    time.sleep(1.0)  # the backend's ACK of the FIN: CLOSE_WAIT
    run(sys.executable, "-c", FLUSH, ns=NODE)
    time.sleep(0.5)
    lines = head + read_all(drv)
    evs = [e for e in events(lines) if e.get("kind") == "event"]

    dumped = [e for e in evs if e["dump"] and e["orig"]["sport"] == early_port]
    assert dumped, "the connection made before start is not in the dump: %r" % lines
    assert dumped[0]["type"] == "new" and dumped[0]["state"] == "ESTABLISHED", dumped

    mine = [e for e in evs if not e["dump"] and e["orig"]["sport"] == port]
    assert mine, "no event for the client's connection: %r" % lines
    new = mine[0]
    assert new["type"] == "new", mine
    assert new["source"] == 2 and new["netns"] != 0
    assert new["orig"] == {"src": CLI_IP, "sport": port, "dst": VIP, "dport": 80,
                           "l3": 2, "l4": 6}, new
    assert new["reply"] == {"src": BE_IP, "sport": 8080, "dst": CLI_IP, "dport": port,
                            "l3": 2, "l4": 6}, new
    assert all(e["id"] == new["id"] for e in mine), mine
    assert any(e["status"] & DST_NAT for e in mine), mine
    states = [e["state"] for e in mine]
    for want in ("SYN_SENT", "ESTABLISHED", "CLOSE_WAIT"):
        assert want in states, (want, states)
    assert states.index("ESTABLISHED") < states.index("CLOSE_WAIT"), states
    cw = next(e for e in mine if e["state"] == "CLOSE_WAIT")
    assert cw["type"] == "update" and cw["old_state"] not in ("NONE", "CLOSE_WAIT"), cw
    assert mine[-1]["type"] == "destroy", mine
    assert mine[-1]["state"] == "CLOSE_WAIT", mine[-1]
    end = json.loads([x for x in lines if '"kind":"end"' in x][-1])
    assert end["lost"] == 0, end


def test_pressure(driver, topo):
    # nf_conntrack_max is global: writable only from the root namespace, which
    # this test never touches. The reader's override stands in for a low limit.
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
        real_max = int(f.read())
    mode = run("stat", "-c", "%a", "/proc/sys/net/netfilter/nf_conntrack_max", ns=NODE)
    print("nf_conntrack_max in a child netns: mode", mode.stdout.strip())

    drv = subprocess.Popen([driver, "/run/netns/" + NODE, "--stat-ms", "100", "--max", "64",
                            "--no-events", "--seconds", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    topo.append(drv)
    first = wait_line(drv, '{"kind":"stat"')
    s0 = json.loads(first[-1])
    assert s0["max"] == 64 and s0["count"] < 8, s0

    cli = spawn(CLIENT, "80", "hold", ns=CLI)
    topo.append(cli)
    wait_line(cli, "up", timeout=30)
    time.sleep(0.5)
    out = events(first + read_all(drv))
    stats = [e for e in out if e.get("kind") == "stat"]
    top = max(stats, key=lambda e: e["count"])
    assert top["count"] >= 64, "count never reached the (override) max: %r" % stats[-5:]
    # The real table is far from full, so nothing was dropped.
    assert top["drop"] == 0 and top["early_drop"] == 0, top

    # Without the override the reader reports the real, global limit.
    drv2 = subprocess.Popen([driver, "/run/netns/" + NODE, "--stat-ms", "100", "--no-events",
                             "--seconds", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    topo.append(drv2)
    s = json.loads(wait_line(drv2, '{"kind":"stat"')[-1])
    assert s["max"] == real_max, (s, real_max)
    assert s["count"] >= 80, s
    # Events were read all along; none may have been lost to an overrun.
    end = [e for e in out if e.get("kind") == "end"][-1]
    assert end["events"] >= 80 * 3 and end["lost"] == 0, end


def test_overrun_counted_and_survived(driver, topo):
    """A stalled reader with a tiny buffer: the kernel drops events and says
    ENOBUFS; the reader counts it as lost and goes on with later events."""
    drv = subprocess.Popen([driver, "/run/netns/" + NODE, "--rcvbuf", "4096", "--seconds", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    topo.append(drv)
    head = wait_line(drv, '{"kind":"ready"')
    os.kill(drv.pid, signal.SIGSTOP)
    try:
        burst = spawn(CLIENT, "30", "hold", ns=CLI)
        topo.append(burst)
        wait_line(burst, "up", timeout=30)
    finally:
        os.kill(drv.pid, signal.SIGCONT)
    time.sleep(0.5)
    after = spawn(CLIENT, "1", "hold", ns=CLI)
    topo.append(after)
    port = int(wait_line(after, "up")[0].split()[1])
    time.sleep(0.5)
    lines = head + read_all(drv)
    out = events(lines)
    end = [e for e in out if e.get("kind") == "end"][-1]
    assert end["lost"] >= 1, end
    assert any(e.get("kind") == "event" and e["type"] == "new" and e["orig"]["sport"] == port
               for e in out), "no event after the overrun: %r" % lines[-5:]
