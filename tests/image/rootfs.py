"""Shared helpers of the image tests: Debian 12 roots made with debootstrap from
Debian's archive, the Dockerfile's package lists, chroot runs and their mounts."""

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
import simpod  # noqa: E402  (the live tests' cgroup2 lookup)
CACHE = os.path.join(TOP, ".output", "image-debs")   # downloaded .debs, kept
SUITE = "bookworm"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def dockerfile_packages(stage, dockerfile=os.path.join(TOP, "Dockerfile")):
    """The packages the `apt-get install` of a stage names: stage 0 is the
    first (build), -1 the last (runtime)."""
    with open(dockerfile) as f:
        text = f.read().replace("\\\n", " ")
    stages = re.split(r"(?m)^FROM\s", text)[1:]
    pkgs = []
    for line in stages[stage].splitlines():
        if not line.startswith("RUN"):
            continue
        for cmd in line[3:].split("&&"):
            words = shlex.split(cmd)
            if words[:1] == ["apt-get"] and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def dockerfile_runs(stage, dockerfile=os.path.join(TOP, "Dockerfile")):
    """The RUN commands of a stage, continuation lines joined."""
    with open(dockerfile) as f:
        text = f.read().replace("\\\n", " ")
    stages = re.split(r"(?m)^FROM\s", text)[1:]
    return [line[3:].strip() for line in stages[stage].splitlines() if line.startswith("RUN")]


def mirror():
    """The Debian mirror the host's apt uses, as tests/vm/build.sh picks it."""
    d = "/etc/apt/sources.list.d"
    paths = ["/etc/apt/sources.list"] + (
        [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith((".list", ".sources"))]
        if os.path.isdir(d) else [])
    for p in paths:
        try:
            with open(p) as f:
                for m in re.finditer(r"(?:URIs:|^deb)\s*(?:\[[^]]*\]\s*)?(https?://\S*/debian)/?(?:\s|$)",
                                     f.read(), re.M):
                    return m.group(1)
        except OSError:
            pass
    return "http://deb.debian.org/debian"


def mounts_under(root):
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f]
    return sorted((m for m in mounts if m == root or m.startswith(root + "/")), reverse=True)


def umount_under(root):
    for m in mounts_under(root):
        subprocess.run(["umount", "-l", m], check=False)


def debootstrap(root, include=(), timeout=900):
    """A minbase root (what debian:12-slim is) plus `include` and their
    dependencies; the .debs are kept in CACHE for the next run."""
    os.makedirs(CACHE, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", "--components=main", "--cache-dir=" + CACHE]
    if include:
        argv.append("--include=" + ",".join(include))
    try:
        cp = subprocess.run(argv + [SUITE, root, mirror()], capture_output=True, text=True,
                            timeout=timeout)
    finally:
        umount_under(root)   # debootstrap mounts /proc and /sys in its target
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]


@contextlib.contextmanager
def scratch(prefix):
    """A temporary directory for a root; whatever is still mounted under it is
    unmounted before it is removed."""
    base = tempfile.mkdtemp(prefix=prefix)
    try:
        yield base
    finally:
        umount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def chroot(root, *argv, timeout=120, cwd="/", env=None):
    """Run argv in the root (a shell command when argv is one string), with a
    clean environment: root's, as a login shell would have it."""
    if len(argv) == 1:
        argv = ("sh", "-c", argv[0])
    e = {"PATH": PATH, "HOME": "/root", "LC_ALL": "C", "TERM": "dumb"}
    e.update(env or {})
    return subprocess.run(["chroot", root, "env", "-C", cwd, *argv], capture_output=True,
                          text=True, timeout=timeout, env=e, stdin=subprocess.DEVNULL)


def installed(root):
    cp = chroot(root, "dpkg-query", "-W", "-f", "${Package} ${Status}\\n")
    assert cp.returncode == 0, cp.stderr
    return {line.split()[0].split(":")[0] for line in cp.stdout.splitlines()
            if line.endswith("install ok installed")}


@contextlib.contextmanager
def own_cgroup(tag):
    """A cgroup of the test's own: connscope attaches its packet programs
    there, never to the machine's cgroup2 root. Yields its name."""
    name = "connscope-%s-%d" % (tag, os.getpid())
    path = os.path.join(simpod.cgroup2_mount()[0], name)
    os.mkdir(path)
    try:
        yield name
    finally:
        os.rmdir(path)


def mount(*argv):
    subprocess.run(["mount", *argv], check=True)


@contextlib.contextmanager
def node_mounts(root, dev=False, apt_cache=False):
    """What a pod of the DaemonSet has from the host: /proc and /sys (BTF,
    cgroup2). dev: the host's /dev too (apt and the compilers want /dev/null)
    and the root a mount point of its own (`ip netns exec` remounts /sys, which
    needs one). apt_cache: CACHE as the root's /var/cache/apt/archives, so its
    apt-get downloads each package once across runs. All unmounted at the end,
    also when something failed."""
    try:
        if dev:
            # Private: nothing mounted or unmounted under the root reaches the
            # host's mounts where they are shared (systemd makes them so).
            mount("--bind", root, root)
            mount("--make-rprivate", root)
        mount("-t", "proc", "proc", os.path.join(root, "proc"))
        mount("-t", "sysfs", "sysfs", os.path.join(root, "sys"))
        mount("-t", "cgroup2", "cgroup2", os.path.join(root, "sys", "fs", "cgroup"))
        if dev:   # not --rbind: /dev/pts and /dev/shm stay the host's alone
            mount("--bind", "/dev", os.path.join(root, "dev"))
            mount("--make-private", os.path.join(root, "dev"))
        if apt_cache:
            os.makedirs(CACHE, exist_ok=True)
            archives = os.path.join(root, "var", "cache", "apt", "archives")
            mount("--bind", CACHE, archives)
            mount("--make-private", archives)
        yield
    finally:
        umount_under(root)


def golden(name):
    """The case `name` of tests/golden/manifest.txt: (its replay argv, relative
    to tests/golden, and a function that compares replay's stdout and stderr with
    the expected files and returns what differs, or None)."""
    sys.path.insert(0, os.path.join(TOP, "tests", "golden"))
    try:
        import run as g
    finally:
        sys.path.pop(0)
    case = next(c for c in g.read_manifest() if c["name"] == name)
    argv = ["replay", "captures/" + case["capture"], "-o", "json", *case["opts"]]

    def compare(stdout, stderr):
        lines = g.sort_summaries([json.dumps(g.normalize(json.loads(ln)), sort_keys=True)
                                  for ln in stdout.splitlines()])
        got = "".join(ln + "\n" for ln in lines)
        out = []
        for kind, text in (("jsonl", got), ("stderr", stderr)):
            path = g.EXPECTED / f"{name}.{kind}"
            d = g.compare(name, kind, path.read_text() if path.exists() else "", text)
            if d:
                out.append(d)
        return "\n".join(out) or None
    return argv, compare
