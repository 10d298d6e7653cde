"""The image's runtime stage, proved without a registry or a container engine.

The package list comes from the Dockerfile's last stage (its apt-get install line).
debootstrap builds that stage's root filesystem from Debian's archive: minbase, as
debian:12-slim is, plus exactly those packages and what they depend on. The binary
built here is copied in, and run there in a chroot: `connscope check` against the
machine's kernel, and a replay of a committed capture. Every shared library that
`ldd connscope` names must come from a package installed in that root.

Run as root: /usr/bin/python3 -m pytest -q tests/image/test_image.py
"""

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from rootfs import TOP, chroot, debootstrap, dockerfile_packages, golden, installed, \
    mount, node_mounts, own_cgroup, scratch

BIN = os.environ.get("CONNSCOPE_BIN", os.path.join(TOP, "connscope"))


def runtime_packages():
    """The packages the last stage's `apt-get install` names."""
    return dockerfile_packages(-1)


@pytest.fixture(scope="module")
def root():
    assert os.geteuid() == 0, "debootstrap and chroot need root"
    assert os.path.exists(BIN), f"no connscope binary at {BIN} (make)"
    pkgs = runtime_packages()
    assert pkgs, "no apt-get install in the Dockerfile's last stage"
    with scratch("connscope-image.") as base:
        r = os.path.join(base, "root")
        debootstrap(r, pkgs)
        shutil.copy2(BIN, os.path.join(r, "usr", "sbin", "connscope"))
        yield r


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


def test_check_and_replay_run_in_the_image(root):
    """What a pod of the DaemonSet has: the host's /proc and /sys (BTF, cgroup2).
    check attaches its packet programs to a cgroup of the test's own, never the
    machine's cgroup2 root, and leaves conntrack's netfilter program off."""
    with own_cgroup("image-test") as cg, node_mounts(root):
        cp = chroot(root, "/usr/sbin/connscope", "check", "--cgroup", "/sys/fs/cgroup/" + cg,
                    "--conntrack", "off")
        assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
        assert "programs off" in cp.stdout, cp.stdout[-3000:]
        # A golden case (tests/golden), replayed there: the same records.
        shutil.copytree(os.path.join(TOP, "tests", "golden"), os.path.join(root, "tmp", "golden"))
        argv, compare = golden("reset")
        cp = chroot(root, "/usr/sbin/connscope", *argv, cwd="/tmp/golden", env={"TZ": "UTC"})
        assert cp.returncode == 0, cp.stderr
        assert '"kind":"peer_reset"' in cp.stdout.replace(" ", ""), cp.stdout[-2000:]
        diff = compare(cp.stdout, cp.stderr)
        assert diff is None, diff


def manifest_container():
    with open(os.path.join(TOP, "deploy", "daemonset.yaml")) as f:
        (c,) = yaml.safe_load(f)["spec"]["template"]["spec"]["containers"]
    return c


def test_the_daemon_runs_as_the_manifest_says(root):
    """The DaemonSet's pod, as near as a chroot comes: the image's root read-only
    (readOnlyRootFilesystem), only the manifest's capabilities (setpriv in the
    image, as the container runtime bounds a root container's), the manifest's
    args with its metrics port moved to a free one. The daemon must start, answer
    /healthz "ok" (the probes' path) and /metrics, then stop cleanly on SIGTERM."""
    c = manifest_container()
    sc = c["securityContext"]
    assert sc.get("readOnlyRootFilesystem") is True and "privileged" not in sc, sc
    caps = sc["capabilities"]["add"]
    assert sc["capabilities"]["drop"] == ["ALL"] and caps, sc
    probe = c["livenessProbe"]["httpGet"]["path"]
    port = 39700 + os.getpid() % 200
    args = [a if not a.startswith("0.0.0.0:") else f"127.0.0.1:{port}" for a in c["args"]]
    bounding = "-all" + "".join(f",+{x.lower()}" for x in caps)
    with own_cgroup("image-daemon") as cg, node_mounts(root, dev=True):
        mount("-o", "remount,bind,ro", root)
        probe_file = os.path.join(root, "tmp", "written")
        try:
            open(probe_file, "w").close()
            raise AssertionError("the root is not read-only")
        except OSError:
            pass
        d = subprocess.Popen(
            ["chroot", root, "setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--",
             "/usr/sbin/connscope", *args, "--cgroup", "/sys/fs/cgroup/" + cg,
             "--conntrack", "off"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            first = d.stdout.readline()
            assert '"phase": "start"' in first or '"phase":"start"' in first, \
                first + d.stderr.read() if d.poll() is not None else first
            deadline, got = time.monotonic() + 10, None
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}",
                                                timeout=2) as r:
                        got = (r.status, r.read().decode())
                        break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.3)
            assert got == (200, "ok\n"), got
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            assert "connscope_programs_attached" in text and "connscope_build_info{" in text
        finally:
            d.terminate()
            out, err = d.communicate(timeout=15)
        assert d.returncode == 0, err[-3000:]
        assert '"phase": "end"' in out or '"phase":"end"' in out, out[-2000:]
