"""simpod: simulated Kubernetes pods for connscope's live tests.

A Cluster lays pods out the way the kubelet does, without Kubernetes:

  network   a "node" network namespace holding a Linux bridge (the CNI bridge),
            one network namespace per pod, joined to the bridge by a veth pair
            (eth0 inside the pod). The bridge holds 10.244.<x>.1 for each /24 in
            use and forwards between them, so pods on different /24s can talk.
  cgroups   <cgroup2>/connscope-test-<id>/kubepods.slice/... (systemd driver) or
            <cgroup2>/connscope-test-<id>/kubepods/...       (cgroupfs driver)
  logs      <tmp>/pods/<ns>_<name>_<uid>/<container>/0.log           (/var/log/pods)
            <tmp>/containers/<name>_<ns>_<container>-<id>.log -> 0.log (/var/log/containers)

Processes started with Pod.popen() run inside the pod's network namespace and
container cgroup, so every socket they open carries the pod's cgroup id.

Nothing is created in the root network namespace: veths are created directly
inside the node namespace, and addresses and routes only inside test namespaces.
Teardown removes everything, even after failures, and every wait is bounded.

Connscope runs the connscope binary in `trace -o json` mode against a Cluster's
pods directory and collects its JSON lines.

Stale clusters (left behind by a killed test run) are recorded under
/run/simpod/ and can be removed with:  /usr/bin/python3 tests/lib/simpod.py cleanup
"""

import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

# Debian's interpreter, not whatever "python3" is first on PATH (pyenv on the
# development machine). Used for processes started inside pods.
PYTHON = os.environ.get("SIMPOD_PYTHON", "/usr/bin/python3")

REPO = Path(__file__).resolve().parents[2]
CONNSCOPE_BIN = os.environ.get("CONNSCOPE_BIN", str(REPO / "connscope"))

REGISTRY = Path("/run/simpod")
NETNS_DIR = Path("/run/netns")
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")

QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
DRIVERS = ("systemd", "cgroupfs")
RUNTIMES = ("containerd", "crio", "docker")


class SimpodError(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# small helpers

def _sh(argv, timeout=20, check=True):
    """Run an administrative command (in the test's own namespaces) with a timeout."""
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SimpodError(f"timed out after {timeout}s: {' '.join(argv)}")
    if check and cp.returncode != 0:
        raise SimpodError(f"failed ({cp.returncode}): {' '.join(argv)}: "
                          f"{cp.stderr.strip()}")
    return cp


def _unescape_mountinfo(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def cgroup2_mount():
    """Return (mount point, mount root) of the first cgroup2 mount in /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0] if right else ""
            if fstype == "cgroup2":
                fields = left.split()
                return _unescape_mountinfo(fields[4]), _unescape_mountinfo(fields[3])
    raise SimpodError("no cgroup2 filesystem in /proc/self/mountinfo")


def cgroup_relpath(cgroup_dir):
    """The path of a cgroup as /proc/<pid>/cgroup shows it (0::<path>)."""
    mnt, root = cgroup2_mount()
    rel = os.path.relpath(cgroup_dir, mnt)
    return os.path.normpath(os.path.join(root, rel))


def proc_cgroup2(pid):
    """The cgroup2 path of a process, from its '0::' line in /proc/<pid>/cgroup."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def _deadline(timeout):
    return time.monotonic() + timeout


def wait_until(cond, timeout, interval=0.05, what="condition"):
    """Poll cond() until it returns something truthy; raise TimeoutError after timeout."""
    end = _deadline(timeout)
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= end:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# TCP states as /proc/net/tcp writes them.
TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}


def tcp_sockets(pid):
    """IPv4 TCP sockets of the network namespace that process pid lives in.

    /proc/<pid>/net/tcp shows the namespace of <pid>, so no process has to be
    started inside the namespace. Returns dicts with local/remote (ip, port) and state.
    """
    out = []
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                out.append({
                    "local": _hexaddr(p[1]), "remote": _hexaddr(p[2]),
                    "state": TCP_STATES.get(p[3], p[3]), "inode": int(p[9]),
                })
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def fd_links(pid):
    """{fd: what it points at} for process pid's open descriptors; one closed
    between the listing and its readlink is left out."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
    return out


def bpf_links(pid):
    """The BPF links process pid holds, from their fdinfo: [{"id": int,
    "type": "cgroup" | "tracing" | ..., and the rest of the fdinfo lines}]."""
    out = []
    for fd, target in fd_links(pid).items():
        if target != "anon_inode:bpf_link":
            continue
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
        except FileNotFoundError:
            continue
        info = {k.strip(): v.strip() for k, v in info.items()}
        out.append(dict(info, id=int(info["link_id"]), type=info["link_type"]))
    return out


def free_port():
    """A loopback port nobody listens on now (other worktrees' tests run alongside)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hexaddr(s):
    a, p = s.split(":")
    ip = ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(a), "little"))
    return str(ip), int(p, 16)


def wait_for_line(proc, text, timeout=10):
    """Wait until proc's stdout (a binary pipe) has printed a line containing text.

    Lines read so far are kept in proc.lines (decoded) so later calls see them too.
    Raises TimeoutError (with what the process printed) when it does not appear.
    """
    if not hasattr(proc, "lines"):
        proc.lines, proc._partial = [], b""
    end = _deadline(timeout)
    fd = proc.stdout.fileno()
    while True:
        for ln in proc.lines:
            if text in ln:
                return ln
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # EOF: the process closed stdout (exited)
            if proc._partial:
                proc.lines.append(proc._partial.decode(errors="replace"))
                proc._partial = b""
                continue
            break
        data = proc._partial + chunk
        *full, proc._partial = data.split(b"\n")
        proc.lines.extend(x.decode(errors="replace") for x in full)
    err = ""
    if proc.poll() is not None and proc.stderr is not None:
        try:
            err = proc.stderr.read().decode(errors="replace")
        except Exception:
            pass
    raise TimeoutError(f"pid {proc.pid} did not print {text!r} within {timeout}s; "
                       f"exit={proc.poll()} stdout={proc.lines!r} stderr={err!r}")


# ---------------------------------------------------------------------------
# pods

class Pod:
    """One simulated pod: a network namespace, a container cgroup, log files."""

    def __init__(self, cluster, namespace, name, ip, driver, runtime, qos, container):
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.ip = str(ip)
        self.driver = driver
        self.runtime = runtime
        self.qos = qos
        self.container = container
        self.uid = str(uuid.uuid4())
        self.container_id = secrets.token_hex(32)
        self.index = len(cluster.pods)
        self.netns = f"cs{cluster.id}-p{self.index}"
        self.veth = f"v{cluster.id}p{self.index}"  # node side, <= 15 chars
        self.cgroup_dir = None
        self.cgroup_id = None
        self.cgroup_path = None
        self.log_dir = None
        self.log_file = None
        self.container_log = None
        self.procs = []

    # ---- layout -------------------------------------------------------

    def _cgroup_parts(self):
        uid_, cid = self.uid.replace("-", "_"), self.container_id
        if self.driver == "systemd":
            if self.qos == "guaranteed":
                parts = ["kubepods.slice", f"kubepods-pod{uid_}.slice"]
            else:
                parts = ["kubepods.slice", f"kubepods-{self.qos}.slice",
                         f"kubepods-{self.qos}-pod{uid_}.slice"]
            scope = {"containerd": "cri-containerd", "crio": "crio",
                     "docker": "docker"}[self.runtime]
            parts.append(f"{scope}-{cid}.scope")
        else:
            parts = ["kubepods"]
            if self.qos != "guaranteed":
                parts.append(self.qos)
            parts.append(f"pod{self.uid}")
            # CRI-O prefixes its cgroupfs container cgroups; containerd and docker do not.
            parts.append(f"crio-{cid}" if self.runtime == "crio" else cid)
        return parts

    def _setup(self):
        c = self.cluster
        ns = self.netns
        # network: veth created inside the node namespace with its peer moved
        # straight into the pod namespace; nothing touches the root namespace.
        c._add_netns(ns)
        _sh(["ip", "-n", c.node_netns, "link", "add", self.veth, "type", "veth",
             "peer", "name", "eth0", "netns", ns])
        _sh(["ip", "-n", c.node_netns, "link", "set", self.veth, "master", c.bridge, "up"])
        _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        _sh(["ip", "-n", ns, "addr", "add", f"{self.ip}/24", "dev", "eth0"])
        _sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        gw = c._gateway_for(self.ip)
        _sh(["ip", "-n", ns, "route", "add", "default", "via", gw, "dev", "eth0"])

        # cgroup
        d = Path(c.cgroup_root, *self._cgroup_parts())
        d.mkdir(parents=True, exist_ok=True)
        self.cgroup_dir = str(d)
        self.cgroup_id = os.stat(d).st_ino
        self.cgroup_path = cgroup_relpath(d)

        # kubelet log layout
        self.log_dir = Path(c.pods_dir, f"{self.namespace}_{self.name}_{self.uid}",
                            self.container)
        self.log_dir.mkdir(parents=True)
        self.log_file = self.log_dir / "0.log"
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        self.log_file.write_text(f"{stamp} stdout F simpod pod {self.namespace}/{self.name} started\n")
        self.container_log = Path(
            c.containers_dir,
            f"{self.name}_{self.namespace}_{self.container}-{self.container_id}.log")
        os.symlink(self.log_file, self.container_log)

    # ---- identity -------------------------------------------------------

    @property
    def ref(self):
        """The pod object connscope should print for this pod."""
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid,
                "container": self.container}

    def matches(self, pod_json):
        """True if a record's "pod" field names this pod (and container)."""
        if not isinstance(pod_json, dict):
            return False
        return all(pod_json.get(k) == v for k, v in self.ref.items())

    def __repr__(self):
        return f"<Pod {self.namespace}/{self.name} {self.ip} uid={self.uid}>"

    # ---- processes ------------------------------------------------------

    def popen(self, argv, **kw):
        """Start argv inside this pod's network namespace and container cgroup.

        The shell wrapper moves itself into the cgroup, then execs nsenter, which
        execs argv: the returned Popen's pid is the pid of argv itself. Each
        process gets its own session so teardown can kill its process group.
        """
        if isinstance(argv, str):
            raise TypeError("argv must be a list")
        wrapper = ('echo $$ > "$0" || exit 125; ns=$1; shift; '
                   'exec nsenter --net="$ns" -- "$@"')
        full = ["/bin/sh", "-c", wrapper, os.path.join(self.cgroup_dir, "cgroup.procs"),
                str(NETNS_DIR / self.netns), *map(str, argv)]
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(full, **kw)
        self.procs.append(p)
        self.cluster._procs.append(p)
        return p

    def run(self, argv, timeout=30, check=False, input=None, **kw):
        """Run a short command in the pod; returns CompletedProcess (text) with .pid."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            kw["stdin"] = subprocess.PIPE
        p = self.popen(argv, **kw)
        try:
            out, err = p.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_proc(p)
            raise SimpodError(f"{argv!r} in {self} timed out after {timeout}s")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        cp = subprocess.CompletedProcess(argv, p.returncode, out, err)
        cp.pid = p.pid
        if check and p.returncode != 0:
            raise SimpodError(f"{argv!r} in {self} exited {p.returncode}: {err}")
        return cp

    def python(self, code, *args, wait=False, timeout=30, **kw):
        """Run a Python snippet in the pod (python3 -u -c code args...).

        wait=False (default): returns the Popen, stdout/stderr piped (binary) unless
        given. wait=True: runs to completion like run() and returns CompletedProcess.
        """
        argv = [PYTHON, "-u", "-c", code, *map(str, args)]
        if wait:
            return self.run(argv, timeout=timeout, **kw)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return self.popen(argv, **kw)

    def netns_run(self, argv, timeout=20, check=True):
        """Run an administrative command in the pod's network namespace only
        (not in its cgroup), e.g. nft."""
        return _sh(["ip", "netns", "exec", self.netns, *map(str, argv)],
                   timeout=timeout, check=check)

    def drop_syns(self, port):
        """Drop what arrives for `port` (nft, in the pod's namespace): a connect
        to it retransmits its SYN and times out."""
        self.netns_run(["nft", "add", "table", "inet", "cstest"])
        self.netns_run(["nft", "add", "chain", "inet", "cstest", "in",
                        "{ type filter hook input priority 0; }"])
        self.netns_run(["nft", "add", "rule", "inet", "cstest", "in", "tcp", "dport",
                        str(port), "drop"])

    def tcp_sockets(self):
        """IPv4 TCP sockets in this pod's network namespace."""
        with self.cluster._anchor_lock:
            anchor = self.cluster._anchor(self)
        return tcp_sockets(anchor.pid)

    def wait_listen(self, port, timeout=10):
        """Wait until something listens on TCP port in this pod (no probe traffic)."""
        return wait_until(
            lambda: any(s["state"] == "LISTEN" and s["local"][1] == port
                        for s in self.tcp_sockets()),
            timeout, what=f"a listener on {self.ip}:{port}")


def _kill_proc(p, timeout=5):
    """SIGKILL a Popen's process group (and the process), then reap it."""
    if p.poll() is None:
        for target in (lambda: os.killpg(p.pid, signal.SIGKILL),
                       lambda: p.kill()):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    for f in (p.stdin, p.stdout, p.stderr):
        try:
            if f:
                f.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# the cluster

class Cluster:
    """A node: bridge netns, pods dir, containers dir and a test cgroup root.

    with Cluster() as c:
        a = c.add_pod("shop", "frontend", "10.244.1.10")
    """

    def __init__(self, prefix="connscope-test"):
        self.id = secrets.token_hex(3)          # 6 hex chars: names stay < IFNAMSIZ
        self.prefix = prefix
        self.node_netns = f"cs{self.id}-node"
        self.bridge = f"cbr{self.id}"
        self.netns_names = []
        self.pods = []
        self._procs = []
        self._gateways = {}
        self._anchors = {}
        self._anchor_lock = threading.Lock()
        self.tmpdir = None
        self.pods_dir = None
        self.containers_dir = None
        self.cgroup_mount = None
        self.cgroup_root = None
        self._entered = False

    # ---- lifecycle ------------------------------------------------------

    def __enter__(self):
        if os.geteuid() != 0:
            raise SimpodError("simpod needs root (network namespaces, cgroups)")
        self._entered = True
        try:
            self.cgroup_mount, _ = cgroup2_mount()
            self.tmpdir = tempfile.mkdtemp(prefix=f"{self.prefix}-{self.id}-")
            self.pods_dir = os.path.join(self.tmpdir, "pods")
            self.containers_dir = os.path.join(self.tmpdir, "containers")
            os.mkdir(self.pods_dir)
            os.mkdir(self.containers_dir)
            self.cgroup_root = os.path.join(self.cgroup_mount, f"{self.prefix}-{self.id}")
            os.mkdir(self.cgroup_root)
            self._record()
            self._add_netns(self.node_netns)
            n = self.node_netns
            _sh(["ip", "-n", n, "link", "set", "lo", "up"])
            _sh(["ip", "-n", n, "link", "add", self.bridge, "type", "bridge"])
            _sh(["ip", "-n", n, "link", "set", self.bridge, "up"])
            _sh(["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(raise_errors=exc_type is None)
        return False

    def close(self, raise_errors=False):
        """Tear everything down. Safe to call more than once."""
        errors = []
        for p in self._procs:
            try:
                _kill_proc(p)
            except Exception as e:  # keep going: the rest must still go
                errors.append(f"kill {p.pid}: {e}")
        with self._anchor_lock:
            for a in self._anchors.values():
                _kill_proc(a)
            self._anchors.clear()
        errors += destroy(self.netns_names, self.cgroup_root, self.tmpdir)
        self.netns_names = []
        self.cgroup_root = None
        self.tmpdir = None
        try:
            (REGISTRY / f"{self.id}.json").unlink()
        except FileNotFoundError:
            pass
        if errors:
            msg = "simpod teardown: " + "; ".join(errors)
            if raise_errors:
                raise SimpodError(msg)
            print(msg, file=sys.stderr)

    def _record(self):
        """Write what this cluster owns to /run/simpod, for stale cleanup."""
        REGISTRY.mkdir(parents=True, exist_ok=True)
        tmp = REGISTRY / f".{self.id}.tmp"
        tmp.write_text(json.dumps({
            "owner": os.getpid(),
            "owner_start": _proc_start(os.getpid()),
            "netns": self.netns_names, "cgroup_root": self.cgroup_root,
            "tmpdir": self.tmpdir}))
        tmp.replace(REGISTRY / f"{self.id}.json")

    def _add_netns(self, name):
        # Recorded before creation, so a half-made namespace is removed too.
        self.netns_names.append(name)
        self._record()
        _sh(["ip", "netns", "add", name])
        # IPv6 off: no router solicitations or DAD noise in what connscope sees.
        _sh(["ip", "netns", "exec", name, "sh", "-c",
             "for f in all default; do "
             "p=/proc/sys/net/ipv6/conf/$f/disable_ipv6; [ -e $p ] && echo 1 > $p; "
             "done; true"])

    def _gateway_for(self, ip):
        net = ipaddress.ip_network(f"{ip}/24", strict=False)
        gw = str(net.network_address + 1)
        if net not in self._gateways:
            _sh(["ip", "-n", self.node_netns, "addr", "add", f"{gw}/24", "dev", self.bridge])
            self._gateways[net] = gw
        return gw

    def _anchor(self, pod):
        """A sleeping process in pod's netns (not its cgroup), to read /proc/<pid>/net."""
        a = self._anchors.get(pod.netns)
        if a is None or a.poll() is not None:
            a = subprocess.Popen(["ip", "netns", "exec", pod.netns, "sleep", "3600"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            # ip netns exec keeps the pid; wait until it has switched namespaces.
            target = os.stat(NETNS_DIR / pod.netns).st_ino
            wait_until(lambda: _netns_ino(a.pid) == target, 5,
                       what=f"helper to enter {pod.netns}")
            self._anchors[pod.netns] = a
        return a

    def dnat(self, vip, vport, ip, port):
        """kube-proxy's part, in the node namespace: vip:vport -> ip:port."""
        rules = (f"table ip kube {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n"
                 f"  ip daddr {vip} tcp dport {vport} dnat to {ip}:{port}\n }}\n}}\n")
        cp = subprocess.run(["ip", "netns", "exec", self.node_netns, "nft", "-f", "-"],
                            input=rules, capture_output=True, text=True, timeout=20)
        assert cp.returncode == 0, cp.stderr

    # ---- pods -----------------------------------------------------------

    def add_pod(self, namespace, name, ip, driver="systemd", runtime="containerd",
                qos="burstable", container="app"):
        if not self._entered:
            raise SimpodError("use Cluster as a context manager")
        if driver not in DRIVERS or runtime not in RUNTIMES or qos not in QOS_CLASSES:
            raise ValueError(f"bad driver/runtime/qos: {driver}/{runtime}/{qos}")
        addr = ipaddress.ip_address(ip)
        if addr not in POD_CIDR:
            raise ValueError(f"pod IPs must be in {POD_CIDR}, got {ip}")
        if int(addr) & 0xFF in (0, 1, 255):
            raise ValueError(f"{ip}: .0, .1 (the bridge gateway) and .255 are reserved")
        if any(p.ip == str(addr) for p in self.pods):
            raise ValueError(f"{ip} already used")
        pod = Pod(self, namespace, name, addr, driver, runtime, qos, container)
        self.pods.append(pod)
        pod._setup()
        return pod

    def pod(self, namespace, name):
        for p in self.pods:
            if p.namespace == namespace and p.name == name:
                return p
        raise KeyError(f"{namespace}/{name}")


def _netns_ino(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except FileNotFoundError:
        return None


def _proc_start(pid):
    """Start time of pid (field 22 of /proc/<pid>/stat): pid + start names a process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def destroy(netns_names, cgroup_root, tmpdir):
    """Remove a cluster's resources. Returns a list of error strings (empty: clean)."""
    errors = []
    if cgroup_root and os.path.isdir(cgroup_root):
        errors += _destroy_cgroup(cgroup_root)
    # Pods first, node last; a veth goes away with either of its namespaces.
    for name in sorted(netns_names, key=lambda n: n.endswith("-node")):
        if (NETNS_DIR / name).exists():
            cp = _sh(["ip", "netns", "del", name], check=False)
            if cp.returncode != 0:
                errors.append(f"ip netns del {name}: {cp.stderr.strip()}")
    if tmpdir and os.path.isdir(tmpdir):
        try:
            shutil.rmtree(tmpdir)
        except OSError as e:
            errors.append(f"rm {tmpdir}: {e}")
    return errors


def _cgroup_populated(d):
    try:
        with open(os.path.join(d, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except FileNotFoundError:
        return False


def _kill_cgroup(root):
    """SIGKILL every process in root and below (cgroup.kill, or cgroup.procs on
    kernels before 5.14)."""
    kill = os.path.join(root, "cgroup.kill")
    if os.path.exists(kill):
        try:
            with open(kill, "w") as f:
                f.write("1")
            return
        except OSError:
            pass
    for dirpath, _, _ in os.walk(root):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except (FileNotFoundError, ValueError):
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _destroy_cgroup(root, timeout=15):
    """Kill everything in the cgroup tree and rmdir it, deepest first.

    Kill and rmdir are repeated until the tree is gone: a process can still be
    on its way in (a wrapper that has not yet written cgroup.procs), and a killed
    process whose parent is slow to reap it can keep rmdir at EBUSY for a while.
    """
    end = _deadline(timeout)
    last = []
    while True:
        _kill_cgroup(root)
        try:
            wait_until(lambda: not _cgroup_populated(root), 2, what=f"{root} to empty")
        except TimeoutError:
            pass
        last = []
        for dirpath, _, _ in os.walk(root, topdown=False):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as e:
                last.append(f"rmdir {dirpath}: {e}")
                break  # its parents cannot go either
        if not last or not os.path.exists(root):
            return []
        if time.monotonic() >= end:
            return last
        time.sleep(0.1)


def cleanup_stale(verbose=True):
    """Remove clusters recorded in /run/simpod whose owning process is gone."""
    removed = []
    if not REGISTRY.is_dir():
        return removed
    for f in sorted(REGISTRY.glob("*.json")):
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        owner = info.get("owner")
        if owner and _proc_start(owner) == info.get("owner_start"):
            continue  # still running
        errs = destroy(info.get("netns", []), info.get("cgroup_root"), info.get("tmpdir"))
        if verbose:
            print(f"removed stale cluster {f.stem}" + (f": {errs}" if errs else ""))
        if not errs:
            f.unlink()
        removed.append(f.stem)
    return removed


# ---------------------------------------------------------------------------
# connscope

def parse_ts(s):
    """RFC 3339 time stamp (as connscope prints it) to an aware datetime."""
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


_CGROUP_OPTION = {}


def supports_cgroup_option(binary=None, option="--cgroup"):
    """True if this connscope build knows --cgroup, or another option taking a
    path (cached per binary, mtime and option).

    Asked in a way that can never start tracing: as nobody, without capabilities,
    with --cgroup followed by an impossible --port. A build without --cgroup stops
    at it ("unknown option"); a build with it stops at the port. (`trace --help`
    is no probe: before 5cec29e argp's help was silenced and tracing started.)
    """
    binary = binary or CONNSCOPE_BIN
    try:
        key = (binary, os.stat(binary).st_mtime_ns, option)
    except OSError:
        return False
    if key not in _CGROUP_OPTION:
        probe = [binary, "trace", option, "/nonexistent", "--port", "70000"]
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                  "--inh-caps=-all"]
        err = ""
        # as nobody first; as ourselves if nobody cannot reach the binary
        for argv in (nobody + probe, probe):
            try:
                err = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                     text=True, timeout=10).stderr
            except subprocess.TimeoutExpired:
                err = ""
            if err.startswith("connscope"):
                break
        _CGROUP_OPTION[key] = "--port" in err and "unknown option" not in err
    return _CGROUP_OPTION[key]


class Connscope:
    """connscope trace -o json, collecting its JSON lines.

    with Connscope(cluster, "--namespace", "shop") as cs:
        ...traffic...
        cs.wait_for(lambda r: r["type"] == "connection", timeout=10)
        records = cs.stop()
    """

    READY_TIMEOUT = 30
    STOP_TIMEOUT = 10

    def __init__(self, cluster, *args, binary=None, command="trace", wrap=()):
        self.binary = binary or CONNSCOPE_BIN
        # wrap: argv that execs connscope, e.g. setpriv with a capability set.
        self.argv = [*wrap, self.binary, command, "-o", "json", "--pods-dir", cluster.pods_dir,
                     *map(str, args)]
        # The packet programs must never attach to the machine's cgroup2 root:
        # confine them to this cluster's own cgroup tree.
        if supports_cgroup_option(self.binary):
            self.argv += ["--cgroup", cluster.cgroup_root]
        # Likewise conntrack's netfilter program: in this cluster's node netns,
        # never in the machine's own (unless the test says where, or off).
        if "--conntrack-netns" not in self.argv and \
                supports_cgroup_option(self.binary, "--conntrack-netns"):
            self.argv += ["--conntrack-netns", f"/run/netns/{cluster.node_netns}"]
        # CONNSCOPE_ATTACH=raw_tp runs the same tests on the fallback attach path.
        if os.environ.get("CONNSCOPE_ATTACH"):
            self.argv += ["--attach", os.environ["CONNSCOPE_ATTACH"]]
        self.records = []
        self.bad_lines = []
        self._stderr = []
        self._lock = threading.Lock()
        self.proc = None
        self.returncode = None

    # ---- start / stop ---------------------------------------------------

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise AssertionError(f"connscope binary not found or not executable: "
                                 f"{self.binary} (run make, or set CONNSCOPE_BIN)")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()
        try:
            first = self.wait_for(lambda r: True, timeout=self.READY_TIMEOUT,
                                  what="the first record (stats phase=start)")
            assert first.get("type") == "stats" and first.get("phase") == "start", \
                f"first record must be stats phase=start, got {first}"
            if "--cgroup" in self.argv and "tls_cgroup" in first:
                want = self.argv[self.argv.index("--cgroup") + 1]
                assert first["tls_cgroup"] in (want, None), \
                    f"packet programs attached at {first['tls_cgroup']}, not {want}"
        except BaseException:
            self.kill()
            raise
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if self.proc and self.proc.poll() is None:
            self.kill()
        return False

    def kill(self):
        if self.proc:
            _kill_proc(self.proc)
            self._join()
            self.returncode = self.proc.returncode

    def stop(self):
        """SIGINT, wait (bounded), assert a clean exit; returns all records."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"connscope did not exit within {self.STOP_TIMEOUT}s "
                                 f"of SIGINT; stderr:\n{self.stderr}")
        self._join()
        self.returncode = self.proc.returncode
        assert self.returncode == 0, \
            f"connscope exited {self.returncode}; stderr:\n{self.stderr}"
        assert not self.bad_lines, f"non-JSON lines on stdout: {self.bad_lines[:5]}"
        return self.snapshot()

    def _join(self):
        for t in getattr(self, "_threads", []):
            t.join(timeout=5)

    # ---- reading --------------------------------------------------------

    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError:
                with self._lock:
                    self.bad_lines.append(line)
                continue
            rec["_seq"] = len(self.records)     # position in the stream
            rec["_rx"] = time.monotonic()       # when the test saw it
            with self._lock:
                self.records.append(rec)

    def _read_stderr(self):
        for raw in self.proc.stderr:
            with self._lock:
                self._stderr.append(raw.decode(errors="replace"))

    @property
    def stderr(self):
        with self._lock:
            return "".join(self._stderr)

    def snapshot(self):
        with self._lock:
            return list(self.records)

    # ---- waiting --------------------------------------------------------

    def _check_alive(self, what):
        if self.proc.poll() is not None:
            self._join()
            raise AssertionError(
                f"connscope exited ({self.proc.returncode}) while waiting for {what}; "
                f"stderr:\n{self.stderr}\nlast records: {self.snapshot()[-5:]}")

    def wait_for(self, predicate, timeout=10, what=None):
        """Return the first record (in stream order) matching predicate, polling
        until timeout; AssertionError with context when none arrives."""
        what = what or getattr(predicate, "__name__", "a record")
        end = _deadline(timeout)
        seen = 0
        while True:
            recs = self.snapshot()
            for r in recs[seen:]:
                if predicate(r):
                    return r
            seen = len(recs)
            if time.monotonic() >= end:
                self._check_alive(what)
                raise AssertionError(
                    f"no {what} within {timeout}s; {len(recs)} records, last: "
                    f"{recs[-5:]}\nstderr:\n{self.stderr}")
            self._check_alive(what)
            time.sleep(0.05)

    def wait_count(self, predicate, n, timeout=10, what=None):
        """Wait until at least n records match; returns the matching records."""
        what = what or getattr(predicate, "__name__", "records")
        end = _deadline(timeout)
        while True:
            got = [r for r in self.snapshot() if predicate(r)]
            if len(got) >= n:
                return got
            if time.monotonic() >= end:
                self._check_alive(what)
                raise AssertionError(
                    f"only {len(got)} of {n} {what} within {timeout}s: {got[-3:]}\n"
                    f"last records: {self.snapshot()[-5:]}\nstderr:\n{self.stderr}")
            self._check_alive(what)
            time.sleep(0.05)


def main(argv):
    if argv[1:] == ["cleanup"]:
        cleanup_stale()
        return 0
    print("usage: simpod.py cleanup   (remove clusters left by dead test runs)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
