"""Live tests: who holds a socket stuck in CLOSE_WAIT, and the code path that made it.

Each test builds its own node (tests/lib/simpod.py), makes real sockets leak in
CLOSE_WAIT, and checks the close_wait_stuck findings: every holder named with its
pid, comm and fd (accept-after-close, a forked server, a holder in a PID namespace
of its own), and the user stack of the connect() that made a leaked socket, for a
C client built with frame pointers and a Go client. The last test starts
connscope under `ip netns exec`, which hides the cgroup2 mount.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import h2peers
import simpod
from records import check_common, conns, findings, is_finding, show
from simpod import Connscope, wait_for_line

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
LIB = Path(__file__).resolve().parent.parent / "lib"

# A server that waits until `count` connections are queued, then accepts them
# all and holds them. With fork=1 it forks once they are accepted: parent and
# child both hold every socket. It prints one JSON line: its pid, as it sees it
# (1 or so inside a PID namespace of its own), and the fds.
HOLD_SERVER = r'''
import json, os, socket, sys, time
ip, port, count, fork = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(64)
print("READY", flush=True)
sys.stdin.readline()                  # the clients have connected and closed
held = [s.accept()[0] for _ in range(count)]
fds = [c.fileno() for c in held]
child = os.fork() if fork else -1
if child != 0:
    print(json.dumps({"pid": os.getpid(), "child": child, "fds": fds}), flush=True)
for _ in range(600):
    time.sleep(1)
'''

# Accepts and closes at once: the client's end then sits in CLOSE_WAIT unless
# the client closes it.
CLOSING_SERVER = r'''
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("READY", flush=True)
for _ in range(int(sys.argv[3])):
    s.accept()[0].close()
'''

CONNECT_CLOSE = r'''
import socket, sys
for _ in range(int(sys.argv[3])):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    c.sendall(b"x")
    c.close()
print("DONE", flush=True)
'''


def shop(cluster):
    return cluster.add_pod(NS, "frontend", FE_IP), cluster.add_pod(NS, "backend", BE_IP)


def stuck(records, pod, port, side):
    return [f for f in findings(records, "close_wait_stuck", pod)
            if f[side]["port"] == port]


def hold_server(be, port, count, fork=False, argv_prefix=()):
    srv = be.popen([*argv_prefix, simpod.PYTHON, "-u", "-c", HOLD_SERVER, be.ip, port, count,
                    "1" if fork else "0"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(srv, "READY", 10)
    return srv


def connect_close(fe, be, port, count):
    cp = fe.run([simpod.PYTHON, "-u", "-c", CONNECT_CLOSE, be.ip, port, count], timeout=30)
    assert cp.returncode == 0 and "DONE" in cp.stdout, cp.stderr


def release(srv):
    """Tell a HOLD_SERVER its clients are gone; returns its JSON line."""
    srv.stdin.write(b"go\n")
    srv.stdin.flush()
    line = wait_for_line(srv, "{", 10)
    return json.loads(line[line.index("{"):])


def wait_queued(be, port, count):
    simpod.wait_until(lambda: sum(1 for s in be.tcp_sockets()
                                  if s["state"] == "CLOSE_WAIT" and s["local"][1] == port)
                      >= count, 10, what=f"{count} sockets in CLOSE_WAIT on port {port}")


def cgroup2_mounts():
    return sum(" - cgroup2 " in ln for ln in Path("/proc/self/mountinfo").read_text().splitlines())


def finish(cs):
    records = cs.stop()
    check_common(records)
    return records


# ---------------------------------------------------------------------------
# holders

def test_accept_after_close_names_every_holder(cluster):
    """Five clients connect and close before the server accepts: the sockets
    reach CLOSE_WAIT with no owner and no inode. All five are named."""
    fe, be = shop(cluster)
    port = 30301
    with Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2) as cs:
        srv = hold_server(be, port, 5)
        connect_close(fe, be, port, 5)
        wait_queued(be, port, 5)
        info = release(srv)
        cs.wait_count(is_finding("close_wait_stuck", be), 5, timeout=15)
        records = finish(cs)
    fs = stuck(records, be, port, "server")
    assert len(fs) == 5, show(fs)
    fds = set()
    for f in fs:
        assert f["pid"] == srv.pid == info["pid"], show([f])
        assert f["comm"].startswith("python"), show([f])
        assert len(f["holders"]) == 1, show([f])
        h = f["holders"][0]
        assert h["pid"] == srv.pid and h["fd"] in info["fds"], show([f])
        fds.add(h["fd"])
        assert f"(pid {srv.pid})" in f["message"], show([f])
        assert "could not name" not in f["message"], show([f])
    assert fds == set(info["fds"]), f"each fd named once: {fds} vs {info['fds']}"


def test_forked_server_has_two_holders(cluster):
    fe, be = shop(cluster)
    port = 30302
    with Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2) as cs:
        srv = hold_server(be, port, 2, fork=True)
        connect_close(fe, be, port, 2)
        wait_queued(be, port, 2)
        info = release(srv)
        child = info["child"]
        cs.wait_count(is_finding("close_wait_stuck", be), 2, timeout=15)
        records = finish(cs)
    try:
        os.kill(child, signal.SIGKILL)
    except ProcessLookupError:
        pass
    fs = stuck(records, be, port, "server")
    assert len(fs) == 2, show(fs)
    for f in fs:
        pids = sorted(h["pid"] for h in f["holders"])
        assert pids == sorted([srv.pid, child]), show([f])
        assert len({h["fd"] for h in f["holders"]}) == 1, "fork keeps the fd number"
        assert "and 1 other process" in f["message"], show([f])


def _child_of(pid):
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            return int(d)
    return None


def test_holder_in_its_own_pid_namespace(cluster):
    """The holder runs in a new PID namespace: it sees itself as pid 1, the
    finding names it by the host's pid."""
    fe, be = shop(cluster)
    port = 30303
    with Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2) as cs:
        srv = hold_server(be, port, 1, argv_prefix=("unshare", "--pid", "--fork", "--kill-child"))
        host_pid = simpod.wait_until(lambda: _child_of(srv.pid), 5, what="unshare's child")
        connect_close(fe, be, port, 1)
        wait_queued(be, port, 1)
        info = release(srv)
        assert info["pid"] != host_pid, "the server must be in a PID namespace of its own"
        cs.wait_for(is_finding("close_wait_stuck", be), 15)
        records = finish(cs)
    fs = stuck(records, be, port, "server")
    assert len(fs) == 1, show(fs)
    assert [h["pid"] for h in fs[0]["holders"]] == [host_pid], show(fs)
    assert fs[0]["pid"] == host_pid, show(fs)


def test_outside_the_host_pid_namespace_says_why(cluster):
    """connscope itself in a PID namespace of its own sees none of the pod's
    processes: the finding says so, and that hostPID is the cure."""
    fe, be = shop(cluster)
    port = 30309
    cs = Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2)
    cs.argv = ["unshare", "--pid", "--fork", "--mount-proc", *cs.argv]
    with cs:
        srv = hold_server(be, port, 1)
        connect_close(fe, be, port, 1)
        wait_queued(be, port, 1)
        release(srv)
        f = cs.wait_for(is_finding("close_wait_stuck", be), 15)
        # unshare ignores SIGINT while it waits: stop connscope itself.
        os.kill(_child_of(cs.proc.pid), signal.SIGINT)
        records = finish(cs)
    assert f["holders"] == [] and "hostPID" in f["holders_note"], show([f])
    assert "hostPID" in f["message"], show([f])
    st = [r for r in records if r["type"] == "stats" and r.get("phase") == "end"][0]
    assert "not in the host PID namespace" in st["holders"], st


# ---------------------------------------------------------------------------
# stacks

@pytest.fixture(scope="module")
def leakclient_c(tmp_path_factory):
    out = tmp_path_factory.mktemp("leakc") / "leakclient"
    subprocess.run(["cc", "-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o", str(out),
                    str(LIB / "leakclient.c")], check=True, timeout=60)
    return str(out)


@pytest.fixture(scope="module")
def leakclient_go(tmp_path_factory):
    go = shutil.which("go") or "/usr/bin/go"
    outdir = tmp_path_factory.mktemp("leakgo")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(outdir), "GO111MODULE": "off",
           "GOPROXY": "off", "GOFLAGS": "", "GOPATH": h2peers.GOCODE,
           "GOCACHE": str(outdir / "gocache"), "CGO_ENABLED": "0"}
    out = outdir / "leakclient"
    subprocess.run([go, "build", "-o", str(out), "main.go"], check=True, timeout=300, env=env,
                   cwd=LIB / "go" / "leakclient")
    return str(out)


def leak(fe, argv):
    p = fe.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = wait_for_line(p, "LEAKED", 15)
    return p, int(line.split()[1])


def closing_server(be, port, count):
    srv = be.python(CLOSING_SERVER, be.ip, port, count)
    wait_for_line(srv, "READY", 10)
    return srv


def leak_all(cluster, port, count, argv_of):
    """A client in the frontend leaks `count` sockets to a server that closes,
    under `--stacks all`; returns the client, the records and its findings."""
    fe, be = shop(cluster)
    with Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2,
                   "--stacks", "all") as cs:
        closing_server(be, port, count)
        cli, n = leak(fe, argv_of(be, port))
        assert n == count
        cs.wait_count(is_finding("close_wait_stuck", fe), count, timeout=15)
        records = finish(cs)
    fs = stuck(records, fe, port, "server")
    assert len(fs) == count, show(fs)
    return cli, records, fs


@pytest.mark.parametrize("threads", ["single", "multi"])
def test_c_client_stack_names_the_leaking_function(cluster, leakclient_c, threads):
    """glibc's connect() sets up no frame: single-threaded it goes straight to the
    syscall, multi-threaded it lowers the stack pointer first. Either way the
    caller a frame-pointer walk skips is put back."""
    cli, records, fs = leak_all(cluster, 30304, 3, lambda be, port: [
        leakclient_c, be.ip, port, 3] + (["mt"] if threads == "multi" else []))
    for f in fs:
        assert [h["pid"] for h in f["holders"]] == [cli.pid], show([f])
        assert f["stack_origin"] == "connect", show([f])
        assert any(fr.startswith("leak_connection+0x") and fr.endswith("(leakclient)")
                   for fr in f["stack"]), show([f])
        assert any(fr.startswith("main+0x") for fr in f["stack"]), show([f])
        assert "leak_connection+0x" in f["message"], show([f])
    st = [r for r in records if r["type"] == "stats" and r.get("phase") == "end"][0]
    assert st["stacks"]["mode"] == "all" and st["stacks"]["captured"] >= 3, st


def test_go_client_stack_names_the_leaking_function(cluster, leakclient_go):
    cli, records, fs = leak_all(cluster, 30305, 2, lambda be, port: [
        leakclient_go, f"{be.ip}:{port}", 2])
    for f in fs:
        assert [h["pid"] for h in f["holders"]] == [cli.pid], show([f])
        assert any(fr.startswith("main.leakConn+0x") for fr in f["stack"]), show([f])
        assert any(fr.startswith("net.") for fr in f["stack"]), show([f])


def test_stacks_auto_starts_in_a_flagged_pod(cluster, leakclient_c):
    """--stacks auto (the default): the pod's first leak has no stack, since its
    pod was not flagged yet; leaks made after it passed half the threshold do."""
    fe, be = shop(cluster)
    port = 30306
    with Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2) as cs:
        closing_server(be, port, 3)
        first, _ = leak(fe, [leakclient_c, be.ip, port, 1])
        f1 = cs.wait_for(is_finding("close_wait_stuck", fe), 15)
        second, n = leak(fe, [leakclient_c, be.ip, port, 2])
        assert n == 2
        cs.wait_count(is_finding("close_wait_stuck", fe), 3, timeout=15)
        records = finish(cs)
    assert f1["stack"] is None and "flagged" in f1["stack_note"], show([f1])
    later = [f for f in stuck(records, fe, port, "server") if f["pid"] == second.pid]
    assert len(later) == 2, show(later)
    for f in later:
        assert any(fr.startswith("leak_connection+0x") for fr in f["stack"]), show([f])
    st = [r for r in records if r["type"] == "stats" and r.get("phase") == "end"][0]
    assert st["stacks"]["mode"] == "auto" and st["stacks"]["captured"] == 2, st


def test_stacks_off_takes_none(cluster, leakclient_c):
    fe, be = shop(cluster)
    port = 30307
    with Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2,
                   "--stacks", "off") as cs:
        closing_server(be, port, 1)
        leak(fe, [leakclient_c, be.ip, port, 1])
        f = cs.wait_for(is_finding("close_wait_stuck", fe), 15)
        records = finish(cs)
    assert f["stack"] is None and "off" in f["stack_note"], show([f])
    assert f["holders"] and f["holders"][0]["comm"] == "leakclient", show([f])
    st = [r for r in records if r["type"] == "stats" and r.get("phase") == "end"][0]
    assert st["stacks"] == {"mode": "off", "captured": 0, "dropped": 0}, st


# ---------------------------------------------------------------------------
# start-up under `ip netns exec`

def test_starts_under_ip_netns_exec(cluster):
    """`ip netns exec` mounts a fresh /sys without cgroup2: connscope mounts its
    own view in a private mount namespace, says so in check, and reports a
    connection made inside that namespace."""
    fe, be = shop(cluster)
    port = 30308
    rel = simpod.cgroup_relpath(cluster.cgroup_root)
    before = cgroup2_mounts()
    cp = subprocess.run(["ip", "netns", "exec", be.netns, simpod.CONNSCOPE_BIN, "check",
                         "--conntrack", "off", "--cgroup", "/sys/fs/cgroup" + rel],
                        capture_output=True, text=True, timeout=120)
    assert "failed to find the cgroup2 mount" not in cp.stderr, cp.stderr
    cg = [ln for ln in cp.stdout.splitlines() if ln.startswith("cgroup2:")]
    assert cg and "mounted by connscope in a private mount namespace" in cg[0], cp.stdout
    # The mount stays private: the machine's own mount table did not grow.
    assert cgroup2_mounts() == before, "connscope's cgroup2 mount leaked out"

    cs = Connscope(cluster, "--namespace", NS, "--conntrack", "off")
    i = cs.argv.index("--cgroup")
    cs.argv[i + 1] = "/sys/fs/cgroup" + rel
    cs.argv = ["ip", "netns", "exec", be.netns, *cs.argv]
    with cs:
        srv = be.python(CLOSING_SERVER, be.ip, port, 1)
        wait_for_line(srv, "READY", 10)
        connect_close(fe, be, port, 1)
        cs.wait_for(lambda r: r["type"] == "connection" and r["server"]["port"] == port
                    and r["side"] == "server", 10)
        records = finish(cs)
    recs = conns(records, port, "server")
    assert len(recs) == 1 and be.matches(recs[0]["pod"]), show(recs)
