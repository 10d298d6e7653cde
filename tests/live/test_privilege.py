"""Least privilege: connscope with exactly the capabilities of deploy/daemonset.yaml.

Kubernetes starts a root container with `capabilities: {drop: [ALL], add: [...]}`
by limiting the bounding set; setpriv does the same here, so connscope runs as
uid 0 holding the manifest's capabilities and nothing else. Under that set the
daemon must see every lifecycle problem (a refused and a timed-out connect, a
reset, a CLOSE_WAIT made before and after it started, held by a process of
another user, its holder named and its stack symbolized) and `check` must find
every part observed. Each capability dropped alone must be named by `check`,
with what breaks. The manifest itself: not privileged, read-only root, probes on
/healthz at the metrics port.
"""

import os
import re
import signal
import subprocess
import time

import pytest
import yaml

import simpod
import workloads
from records import findings, is_conn, is_finding, show
from simpod import Connscope, wait_for_line

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MANIFEST = os.path.join(ROOT, "deploy", "daemonset.yaml")
NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
USER = 1000          # the pods' servers run as this user, as many pods do
RECORD_WAIT = 10


def container():
    with open(MANIFEST) as f:
        doc = yaml.safe_load(f)
    (c,) = doc["spec"]["template"]["spec"]["containers"]
    return doc, c


def manifest_caps():
    """The capabilities the manifest adds, as Kubernetes spells them (SYS_ADMIN)."""
    caps = container()[1]["securityContext"]["capabilities"]["add"]
    assert caps and all(re.fullmatch(r"[A-Z_]+", c) and not c.startswith("CAP_")
                        for c in caps), caps
    return caps


def wrap(caps):
    """setpriv as Kubernetes runs a root container: only these in the bounding set
    (and so in the permitted and effective sets after exec), none inheritable."""
    bounding = "-all" + "".join(f",+{c.lower()}" for c in caps)
    return ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--"]


def cap_bits(caps):
    numbers = {"NET_ADMIN": 12, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "PERFMON": 38, "BPF": 39,
               "NET_RAW": 13, "DAC_READ_SEARCH": 2, "SYS_RESOURCE": 24}
    return sum(1 << numbers[c] for c in caps)


def proc_caps(pid):
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v, 16) for k, v in (ln.split(":") for ln in f if ln.startswith("Cap"))}


def run_check(cluster, caps, *extra):
    argv = [*wrap(caps), simpod.CONNSCOPE_BIN, "check", "--pods-dir", cluster.pods_dir,
            "--cgroup", cluster.cgroup_root,
            "--conntrack-netns", f"/run/netns/{cluster.node_netns}", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------
# the manifest

def test_manifest_is_not_privileged_and_probes_healthz():
    doc, c = container()
    sc = c["securityContext"]
    assert "privileged" not in sc, sc
    assert "privileged: true" not in open(MANIFEST).read()
    assert sc["readOnlyRootFilesystem"] is True, sc
    assert sc["allowPrivilegeEscalation"] is False, sc
    assert sc["capabilities"]["drop"] == ["ALL"], sc
    assert manifest_caps()
    assert c["args"] == ["daemon", "-i", "30", "--close-wait-threshold", "30",
                         "--metrics-addr", "0.0.0.0:9469"], c["args"]
    assert {"name": "metrics", "containerPort": 9469} in c["ports"], c["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, c[probe]
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    # every hostPath read-only
    assert all(m.get("readOnly") for m in c["volumeMounts"]), c["volumeMounts"]


# ---------------------------------------------------------------------------
# the daemon under exactly that set

def as_user(pod, code, *args):
    """A peer of tests/lib/workloads.py in the pod, run as USER (not root)."""
    argv = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups",
            simpod.PYTHON, "-u", "-c", code, *map(str, args)]
    return pod.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def user_server(pod, mode, port, n=1):
    p = as_user(pod, workloads.SERVER, mode, pod.ip, port, n)
    wait_for_line(p, "READY", 10)
    return p


def client(pod, mode, ip, port, n=1, timeout_s=10.0):
    cp, out = workloads.run_client(pod, mode, ip, port, n, timeout_s)
    return out


def close_wait(fe, be, port):
    srv = user_server(be, "hold", port)
    assert client(fe, "send-close", be.ip, port)["results"] == ["sent"]
    wait_for_line(srv, "EOF", 10)
    simpod.wait_until(lambda: any(s["state"] == "CLOSE_WAIT" and s["local"] == (be.ip, port)
                                  for s in be.tcp_sockets()), 5, what="CLOSE_WAIT")
    return srv


SYMBOL = re.compile(r"^[A-Za-z_][\w.]*\+0x[0-9a-f]+ ")


def test_daemon_with_the_manifest_capabilities_sees_every_lifecycle_problem(cluster):
    caps = manifest_caps()
    fe = cluster.add_pod(NS, "frontend", FE_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    old = close_wait(fe, be, 30501)          # before connscope: only the snapshot sees it
    t0 = time.monotonic()
    with Connscope(cluster, "--namespace", NS, "--close-wait-threshold", 2, "--stacks", "all",
                   command="daemon", wrap=wrap(caps)) as cs:
        startup = time.monotonic() - t0
        got = proc_caps(cs.proc.pid)
        assert got["CapEff"] == got["CapPrm"] == got["CapBnd"] == cap_bits(caps), got
        assert got["CapInh"] == 0, got

        new = close_wait(fe, be, 30502)
        assert client(fe, "refused", be.ip, 30503, 2)["results"] == ["refused"] * 2
        for cmd in (["add", "table", "inet", "cstest"],
                    ["add", "chain", "inet", "cstest", "in",
                     "{ type filter hook input priority 0; }"],
                    ["add", "rule", "inet", "cstest", "in", "tcp", "dport", "30504", "drop"]):
            be.netns_run(["nft", *cmd])
        assert client(fe, "timeout", be.ip, 30504, 1, 3.5)["results"][0].startswith("timeout")
        rst = user_server(be, "wait-reset", 30505)
        assert client(fe, "rst", be.ip, 30505)["results"] == ["rst_sent"]
        wait_for_line(rst, "RESET", 10)

        stuck = cs.wait_count(is_finding("close_wait_stuck", be), 2, 15)
        cs.wait_for(is_finding("tcp_connect_refused", fe), RECORD_WAIT)
        cs.wait_for(is_finding("tcp_connect_timeout", fe), RECORD_WAIT)
        cs.wait_for(is_finding("peer_reset", be), RECORD_WAIT)
        for srv in (old, new):
            srv.send_signal(signal.SIGKILL)
            srv.wait(timeout=10)
        cs.wait_for(is_conn(30502, "server"), RECORD_WAIT)
        time.sleep(1)
        records = cs.stop()

    by_port = {f["server"]["port"]: f for f in stuck}
    assert set(by_port) == {30501, 30502}, show(stuck)
    for port, srv, pre in ((30501, old, True), (30502, new, False)):
        f = by_port[port]
        assert f["preexisting"] is pre, show([f])
        assert f["pid"] == srv.pid and [h["pid"] for h in f["holders"]] == [srv.pid], show([f])
    # a process of another user: its stack read through /proc/<pid>/maps and root
    assert any(SYMBOL.match(fr) for fr in by_port[30502]["stack"]), show([by_port[30502]])
    (t,) = findings(records, "tcp_connect_timeout", fe)
    assert t["server"]["port"] == 30504, show([t])
    assert findings(records, "tcp_connect_refused", fe)[0]["server"]["port"] == 30503
    assert findings(records, "peer_reset", be)[0]["server"]["port"] == 30505
    assert "CAP_" not in cs.stderr and "not permitted" not in cs.stderr, cs.stderr
    # the startup probe (liveness waits for it) allows well past a measured start-up
    sp = container()[1]["startupProbe"]
    budget = sp.get("initialDelaySeconds", 0) + sp["periodSeconds"] * sp["failureThreshold"]
    assert budget >= 5 * startup, (sp, startup)


# ---------------------------------------------------------------------------
# check: all observed with the set, each capability named when it is missing

def test_check_with_the_manifest_capabilities_observes_every_part(cluster):
    caps = manifest_caps()
    cp = run_check(cluster, caps)
    out = cp.stdout
    assert cp.returncode == 0, out + cp.stderr
    assert "NOT observed" not in out and "not probed" not in out, out
    assert "missing:" not in out and "needs CAP_" not in out + cp.stderr, out + cp.stderr
    for c in caps:
        assert re.search(rf"^  CAP_{c} +yes: ", out, re.M), out


# What breaks, in check's output, when the manifest's capability is dropped: the
# privileges line, and where a part of check itself fails, that part names it.
# SYS_ADMIN is what lets the rest load here (BPF and PERFMON are not added).
BREAKS = {
    "SYS_ADMIN": (["setns", "before start", "no BPF program loads"],
                  [r"failed to load BPF programs: not permitted: .*CAP_SYS_ADMIN"]),
    "NET_ADMIN": (["ctnetlink", "NAT"], []),
    "SYS_PTRACE": (["/proc/<pid>", "stacks"], []),
}


@pytest.mark.parametrize("cap", manifest_caps())
def test_check_names_a_dropped_capability_and_what_breaks(cluster, cap):
    rest = [c for c in manifest_caps() if c != cap]
    cp = run_check(cluster, rest)
    out = cp.stdout + cp.stderr
    m = re.search(rf"^  CAP_{cap} +missing: (.+)$", out, re.M)
    assert m, f"CAP_{cap} not named as missing:\n{out}"
    words, parts = BREAKS.get(cap, ([], []))
    for w in words:
        assert w in m.group(1), m.group(0)
    for p in parts:
        assert re.search(p, out), f"{p!r} not in:\n{out}"
    for c in rest:
        assert re.search(rf"^  CAP_{c} +yes: ", out, re.M), out


def test_ctnetlink_refusal_names_net_admin(cluster):
    """The netlink conntrack watcher without CAP_NET_ADMIN: NOT observed, and why."""
    rest = [c for c in manifest_caps() if c != "NET_ADMIN"]
    cp = run_check(cluster, rest, "--conntrack", "netlink")
    assert re.search(r"conntrack: +NOT observed.*ctnetlink needs CAP_NET_ADMIN", cp.stdout), \
        cp.stdout


# Without SYS_ADMIN (a cluster policy may forbid it) BPF and PERFMON let the rest
# load; the parts that still need a missing capability say NOT observed and name it.
@pytest.mark.parametrize("caps,names", [
    (["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"],
     [r"conntrack: +NOT observed.*enter network namespace.*needs CAP_SYS_ADMIN",
      r"uprobe attach failed: .*needs CAP_SYS_ADMIN"]),
    (["BPF", "PERFMON"],
     [r"TLS, h2c \(wire\): +NOT observed: cgroup_skb attach .*needs CAP_NET_ADMIN",
      r"conntrack: +NOT observed.*needs CAP_BPF and CAP_NET_ADMIN"]),
], ids=["no-sys-admin", "bpf-perfmon-only"])
def test_parts_that_fail_name_the_capability(cluster, caps, names):
    cp = run_check(cluster, caps)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out
    assert re.search(r"^attach type: +tp_btf", out, re.M), out
    for n in names:
        assert re.search(n, out), f"{n!r} not in:\n{out}"
    assert "no BPF program loads" not in out, out
