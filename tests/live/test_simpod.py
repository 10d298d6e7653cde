"""Tests of the pod simulator itself (no connscope needed).

If these fail, the connscope live tests cannot be trusted.
"""

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import simpod
from simpod import Cluster, proc_cgroup2, wait_for_line
from workloads import CLIENT, SERVER, last_json

HEX64 = "[0-9a-f]{64}"


def root_net_state():
    """What the root network namespace looks like: links, addresses, routes."""
    out = []
    for args in (["-o", "link"], ["-o", "addr"], ["route"], ["-6", "route"]):
        cp = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        # drop counters and timers that change by themselves
        out.append(re.sub(r"(valid_lft|preferred_lft) \S+", "", cp.stdout))
    return out


def residue(cid, cgroup_root, tmpdir):
    """Everything a cluster with id cid could have left behind."""
    left = []
    if Path("/run/netns").is_dir():
        left += [n for n in os.listdir("/run/netns") if n.startswith(f"cs{cid}-")]
    left += [n for n in os.listdir("/sys/class/net") if cid in n]
    if cgroup_root and os.path.exists(cgroup_root):
        left.append(cgroup_root)
    if tmpdir and os.path.exists(tmpdir):
        left.append(tmpdir)
    if (simpod.REGISTRY / f"{cid}.json").exists():
        left.append(f"registry {cid}")
    return left


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def expected_cgroup_re(pod):
    u, u_ = re.escape(pod.uid), re.escape(pod.uid.replace("-", "_"))
    if pod.driver == "systemd":
        scope = {"containerd": "cri-containerd", "crio": "crio", "docker": "docker"}[pod.runtime]
        if pod.qos == "guaranteed":
            pod_part = rf"kubepods\.slice/kubepods-pod{u_}\.slice"
        else:
            pod_part = (rf"kubepods\.slice/kubepods-{pod.qos}\.slice/"
                        rf"kubepods-{pod.qos}-pod{u_}\.slice")
        ctr = rf"{scope}-{HEX64}\.scope"
    else:
        pod_part = "kubepods/" + ("" if pod.qos == "guaranteed" else pod.qos + "/") + f"pod{u}"
        ctr = (f"crio-{HEX64}" if pod.runtime == "crio" else HEX64)
    return re.compile(rf"^/connscope-test-[0-9a-f]{{6}}/{pod_part}/{ctr}$")


def test_cluster_pods_traffic_and_teardown():
    before = root_net_state()
    with Cluster() as c:
        cid, cgroup_root, tmpdir = c.id, c.cgroup_root, c.tmpdir
        assert re.fullmatch(r"[0-9a-f]{6}", cid)
        # cgroup2 found through mountinfo, wherever it is mounted
        assert Path(c.cgroup_root).parent == Path(simpod.cgroup2_mount()[0])
        assert Path(c.pods_dir).parent == Path(c.containers_dir).parent == Path(tmpdir)

        fe = c.add_pod("shop", "frontend", "10.244.1.10")                     # systemd, containerd
        be = c.add_pod("shop", "backend", "10.244.2.20", driver="cgroupfs",   # other /24: routed
                       runtime="crio", qos="besteffort")
        db = c.add_pod("data", "db", "10.244.1.30", runtime="docker", qos="guaranteed",
                       container="postgres")
        gd = c.add_pod("data", "cache", "10.244.1.31", driver="cgroupfs", qos="guaranteed",
                       runtime="docker", container="redis")

        for pod in (fe, be, db, gd):
            assert str(uuid.UUID(pod.uid)) == pod.uid and uuid.UUID(pod.uid).version == 4
            assert expected_cgroup_re(pod).match(pod.cgroup_path), pod.cgroup_path
            assert os.path.isdir(pod.cgroup_dir)
            assert pod.cgroup_id == os.stat(pod.cgroup_dir).st_ino
            # kubelet log layout
            d = Path(c.pods_dir, f"{pod.namespace}_{pod.name}_{pod.uid}", pod.container)
            assert (d / "0.log").is_file()
            link = Path(c.containers_dir,
                        f"{pod.name}_{pod.namespace}_{pod.container}-{pod.container_id}.log")
            assert link.resolve() == (d / "0.log").resolve()
            assert Path("/run/netns", pod.netns).exists()
            assert len(pod.veth) <= 15
            addrs = pod.netns_run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
            assert f"inet {pod.ip}/24" in addrs
        assert len({p.cgroup_id for p in (fe, be, db, gd)}) == 4

        # veths live only in the node namespace, never in the root namespace
        assert not [n for n in os.listdir("/sys/class/net") if cid in n]
        assert root_net_state() == before

        # a process started in a pod is in its cgroup and its network namespace
        sleeper = fe.popen(["sleep", "30"])
        simpod.wait_until(lambda: proc_cgroup2(sleeper.pid) == fe.cgroup_path, 5,
                          what="sleeper in the frontend cgroup")
        assert os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino == \
            os.stat(f"/run/netns/{fe.netns}").st_ino
        assert Path(f"/proc/{sleeper.pid}/comm").read_text().strip() == "sleep"

        # traffic across /24s (through the node bridge) and within one /24
        port = 34001
        srv = be.python(SERVER, "echo", be.ip, port, 3)
        wait_for_line(srv, "READY", 10)
        be.wait_listen(port)
        assert proc_cgroup2(srv.pid) == be.cgroup_path
        assert Path(f"/proc/{srv.pid}/comm").read_text().strip() == "python3"
        cli = fe.python(CLIENT, "echo", be.ip, port, 3, wait=True)
        assert cli.returncode == 0, cli.stderr
        out = last_json(cli.stdout)
        assert out["results"] == ["echoed"] * 3
        assert out["pid"] == cli.pid                  # popen's pid is the program's pid
        assert srv.wait(timeout=10) == 0
        srv_out = srv.stdout.read().decode()
        assert srv_out.count(f"ACCEPTED {fe.ip} ") == 3   # no NAT on the way
        assert last_json(srv_out)["peer_ports"] == out["ports"]

        srv2 = db.python(SERVER, "echo", db.ip, port, 1)
        wait_for_line(srv2, "READY", 10)
        cli2 = gd.python(CLIENT, "echo", db.ip, port, 1, wait=True)
        assert cli2.returncode == 0 and last_json(cli2.stdout)["results"] == ["echoed"]
        assert srv2.wait(timeout=10) == 0

        # a stuck CLOSE_WAIT is visible through tcp_sockets()
        srv3 = be.python(SERVER, "hold", be.ip, port + 1, 1)
        wait_for_line(srv3, "READY", 10)
        cli3 = fe.python(CLIENT, "send-close", be.ip, port + 1, 1, wait=True)
        assert cli3.returncode == 0, cli3.stderr
        wait_for_line(srv3, "EOF", 10)
        assert any(s["state"] == "CLOSE_WAIT" and s["local"] == (be.ip, port + 1)
                   for s in be.tcp_sockets())
        started = [sleeper.pid, srv3.pid]

    assert all(not pid_alive(p) for p in started)
    assert residue(cid, cgroup_root, tmpdir) == []
    assert root_net_state() == before


def test_pod_sees_only_its_own_network():
    with Cluster() as c:
        a = c.add_pod("t", "a", "10.244.3.10")
        cp = a.run(["ip", "-o", "link"], timeout=10, check=True)
        names = sorted(re.findall(r"^\d+: ([^:@]+)", cp.stdout, re.M))
        assert names == ["eth0", "lo"]
        cp = a.run(["ip", "route"], timeout=10, check=True)
        assert "default via 10.244.3.1 dev eth0" in cp.stdout


def test_nft_drop_makes_connect_time_out():
    with Cluster() as c:
        cl = c.add_pod("t", "client", "10.244.4.10")
        sv = c.add_pod("t", "server", "10.244.4.20")
        port = 34010
        sv.netns_run(["nft", "add", "table", "inet", "cstest"])
        sv.netns_run(["nft", "add", "chain", "inet", "cstest", "in",
                      "{ type filter hook input priority 0; }"])
        sv.netns_run(["nft", "add", "rule", "inet", "cstest", "in", "tcp", "dport",
                      str(port), "drop"])
        srv = sv.python(SERVER, "echo", sv.ip, port, 1)
        wait_for_line(srv, "READY", 10)
        t0 = time.monotonic()
        out = cl.python(CLIENT, "timeout", sv.ip, port, 1, 1.5, wait=True)
        assert out.returncode == 0, out.stderr
        assert last_json(out.stdout)["results"][0].startswith("timeout")
        assert 1.4 < time.monotonic() - t0 < 10


def test_teardown_after_failure_kills_everything():
    """A failing test body must not leak processes, cgroups or namespaces,
    including a process that escaped its session (setsid) but not its cgroup."""
    state = {}
    with pytest.raises(RuntimeError, match="boom"):
        with Cluster() as c:
            state.update(cid=c.id, cg=c.cgroup_root, tmp=c.tmpdir)
            p = c.add_pod("t", "leaky", "10.244.5.10", driver="cgroupfs")
            sh = p.popen(["sh", "-c", "setsid sleep 300 & echo $!; sleep 300"],
                         stdout=subprocess.PIPE)
            escaped = int(sh.stdout.readline())
            assert proc_cgroup2(escaped) == p.cgroup_path
            state["pids"] = [sh.pid, escaped]
            raise RuntimeError("boom")
    simpod.wait_until(lambda: not any(pid_alive(x) for x in state["pids"]), 5,
                      what="processes to die")
    assert residue(state["cid"], state["cg"], state["tmp"]) == []


def test_cleanup_of_a_killed_test_run():
    """A test run killed with SIGKILL leaves a record that `simpod.py cleanup` uses."""
    lib = os.path.dirname(simpod.__file__)
    code = ("import sys, time; sys.path.insert(0, %r); import simpod\n"
            "c = simpod.Cluster().__enter__()\n"
            "p = c.add_pod('t', 'orphan', '10.244.6.10')\n"
            "s = p.popen(['sleep', '300'])\n"
            "simpod.wait_until(lambda: simpod.proc_cgroup2(s.pid) == p.cgroup_path, 5)\n"
            "print(c.id, c.cgroup_root, c.tmpdir, flush=True)\n"
            "time.sleep(300)\n" % lib)
    owner = subprocess.Popen([simpod.PYTHON, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = owner.stdout.readline().split()
        assert len(line) == 3, owner.stderr.read() if owner.poll() is not None else line
        cid, cg, tmp = line
        assert residue(cid, cg, tmp)          # it exists
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
    assert cid in simpod.cleanup_stale(verbose=False)
    assert residue(cid, cg, tmp) == []
