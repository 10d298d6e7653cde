"""The image's runtime stage, proved without a registry or a container engine.

The package list comes from the Dockerfile's last stage (its apt-get install line).
debootstrap builds that stage's root filesystem from Debian's archive: minbase, as
debian:12-slim is, plus exactly those packages and what they depend on. The binary
built here is copied in, and run there in a chroot: `connscope check` against the
machine's kernel, and a replay of a committed capture. Every shared library that
`ldd connscope` names must come from a package installed in that root.

Run as root: /usr/bin/python3 -m pytest -q tests/image
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CONNSCOPE_BIN", os.path.join(TOP, "connscope"))
CACHE = os.path.join(TOP, ".output", "image-debs")   # downloaded .debs, kept
SUITE = "bookworm"


def runtime_packages(dockerfile=os.path.join(TOP, "Dockerfile")):
    """The packages the last stage's `apt-get install` names."""
    with open(dockerfile) as f:
        text = f.read().replace("\\\n", " ")
    stages = re.split(r"(?m)^FROM\s", text)
    last = stages[-1]
    pkgs = []
    for line in last.splitlines():
        if not line.startswith("RUN"):
            continue
        for cmd in line[3:].split("&&"):
            words = shlex.split(cmd)
            if words[:1] == ["apt-get"] and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


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


def umount_under(root):
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for m in sorted((m for m in mounts if m == root or m.startswith(root + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


@pytest.fixture(scope="module")
def root():
    assert os.geteuid() == 0, "debootstrap and chroot need root"
    assert os.path.exists(BIN), f"no connscope binary at {BIN} (make)"
    pkgs = runtime_packages()
    assert pkgs, "no apt-get install in the Dockerfile's last stage"
    os.makedirs(CACHE, exist_ok=True)
    base = tempfile.mkdtemp(prefix="connscope-image.")
    r = os.path.join(base, "root")
    try:
        cp = subprocess.run(
            ["debootstrap", "--variant=minbase", "--components=main",
             "--include=" + ",".join(pkgs), "--cache-dir=" + CACHE, SUITE, r, mirror()],
            capture_output=True, text=True, timeout=900)
        umount_under(r)
        assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
        shutil.copy2(BIN, os.path.join(r, "usr", "sbin", "connscope"))
        yield r
    finally:
        umount_under(r)
        shutil.rmtree(base, ignore_errors=True)


def chroot(root, *argv, timeout=120):
    return subprocess.run(["chroot", root, *argv], capture_output=True, text=True,
                          timeout=timeout)


def installed(root):
    cp = chroot(root, "dpkg-query", "-W", "-f", "${Package} ${Status}\\n")
    assert cp.returncode == 0, cp.stderr
    return {line.split()[0].split(":")[0] for line in cp.stdout.splitlines()
            if line.endswith("install ok installed")}


def test_the_dockerfile_names_its_runtime_packages():
    pkgs = runtime_packages()
    # The libraries the build links: each has its runtime package there.
    for p in ("libbpf1", "libelf1", "libpcap0.8", "libssl3", "libcapstone4", "libcjson1"):
        assert p in pkgs, (p, pkgs)


def test_every_library_comes_from_an_installed_package(root):
    out = subprocess.run(["ldd", BIN], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"=>\s*(/\S+)", out)
    assert libs, out
    have = installed(root)
    for lib in libs:
        cp = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True,
                            text=True)
        if cp.returncode:   # merged /usr: dpkg knows the /lib path
            cp = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        assert cp.returncode == 0, (lib, cp.stderr)
        pkg = cp.stdout.split(":")[0]
        assert pkg in have, f"{lib} is from {pkg}, which the image's runtime stage lacks"
    # And the binary finds every one of them there.
    cp = chroot(root, "ldd", "/usr/sbin/connscope")
    assert cp.returncode == 0 and "not found" not in cp.stdout, cp.stdout + cp.stderr


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    raise AssertionError("no cgroup2 mount")


def test_check_and_replay_run_in_the_image(root):
    """What a pod of the DaemonSet has: the host's /proc and /sys (BTF, cgroup2).
    check attaches its packet programs to a cgroup of the test's own, never the
    machine's cgroup2 root, and leaves conntrack's netfilter program off."""
    name = "connscope-image-test-%d" % os.getpid()
    host_cg = os.path.join(cgroup2_mount(), name)
    os.mkdir(host_cg)
    try:
        subprocess.run(["mount", "-t", "proc", "proc", os.path.join(root, "proc")], check=True)
        subprocess.run(["mount", "-t", "sysfs", "sysfs", os.path.join(root, "sys")], check=True)
        subprocess.run(["mount", "-t", "cgroup2", "cgroup2",
                        os.path.join(root, "sys", "fs", "cgroup")], check=True)
        cp = chroot(root, "/usr/sbin/connscope", "check", "--cgroup",
                    "/sys/fs/cgroup/" + name, "--conntrack", "off")
        assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
        assert "programs off" in cp.stdout, cp.stdout[-3000:]
        pcap = os.path.join(TOP, "tests", "golden", "captures", "reset.pcap")
        shutil.copy2(pcap, os.path.join(root, "tmp", "reset.pcap"))
        cp = chroot(root, "/usr/sbin/connscope", "replay", "/tmp/reset.pcap", "-o", "json")
        assert cp.returncode == 0, cp.stderr
        assert '"kind":"peer_reset"' in cp.stdout.replace(" ", ""), cp.stdout[-2000:]
    finally:
        umount_under(os.path.join(root, "sys"))
        umount_under(os.path.join(root, "proc"))
        os.rmdir(host_cg)
