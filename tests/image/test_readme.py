"""The README's two commands on a fresh, minimal Debian 12, and the image's build stage.

debootstrap makes a minbase root from Debian's archive (what debian:12-slim is: no
make, no compiler, no package lists). The repository's tracked files are copied to
/src, and the README's first command, as its first code block spells it, runs there
in a chroot as root: its set-up part and `make run`, with ARGS that make the `top`
it starts watch a cgroup of the test's own and stop after 2 seconds. The binary it
built then runs `connscope check` and replays a golden capture. The second command
must share the set-up part, and what `make test` starts with must hold there: its
recipe, and the packages it installs, which apt-get resolves (simulated).

The same root then proves the Dockerfile's build stage: `make run` installed exactly
that stage's packages (its apt-get install line is scripts/deps.sh's build list),
and the stage's RUN commands, run there literally, build a connscope that runs.

The chroot's apt-get keeps its .debs in .output/image-debs (debootstrap's cache,
bind-mounted as /var/cache/apt/archives): only the first run downloads them.

Run as root: /usr/bin/python3 -m pytest -q tests/image/test_readme.py
"""

import os
import re
import shlex
import subprocess
import time

import pytest

from rootfs import TOP, chroot, debootstrap, dockerfile_packages, dockerfile_runs, golden, \
    installed, node_mounts, own_cgroup, scratch

SRC = "/src"
GOLDEN = "reset"     # the golden case replayed with the binaries built in the root


def readme_commands():
    """The commands of the README's first code block (comments dropped), each
    as (set-up part, last part): split at its last &&."""
    with open(os.path.join(TOP, "README.md")) as f:
        m = re.search(r"^```[^\n]*\n(.*?)^```", f.read(), re.S | re.M)
    assert m, "no code block in README.md"
    cmds = []
    for line in m.group(1).splitlines():
        cmd = line.split("#", 1)[0].strip()
        if cmd:
            setup, _, last = cmd.rpartition("&&")
            cmds.append((setup.strip(), last.strip()))
    return cmds


def test_the_readme_commands_share_their_set_up():
    cmds = readme_commands()
    assert [last for _, last in cmds] == ["make run", "make test"], cmds
    assert cmds[0][0] and cmds[0][0] == cmds[1][0], cmds


def test_one_package_list_per_stage():
    """scripts/dockerfile-pkgs.sh (which scripts/deps.sh and tests/vm/build.sh
    read) finds in the Dockerfile the lists these tests find."""
    for stage, i in (("build", 0), ("runtime", -1)):
        cp = subprocess.run(["sh", os.path.join(TOP, "scripts", "dockerfile-pkgs.sh"), stage],
                            capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.split() == dockerfile_packages(i), (stage, cp.stdout)
        assert dockerfile_packages(i), stage


def tracked_files():
    out = subprocess.run(["git", "-C", TOP, "ls-files", "-z"], capture_output=True,
                         check=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.lexists(os.path.join(TOP, p))]


def manual(root):
    cp = chroot(root, "apt-mark", "showmanual")
    assert cp.returncode == 0, cp.stderr
    return set(cp.stdout.split())


@pytest.fixture(scope="module")
def fresh():
    """(root, cgroup name, packages marked manual before the README ran)."""
    assert os.geteuid() == 0, "debootstrap and chroot need root"
    with scratch("connscope-fresh.") as base:
        r = os.path.join(base, "root")
        t0 = time.monotonic()
        debootstrap(r)
        print(f"debootstrap minbase: {time.monotonic() - t0:.1f} s")
        # As debian:12-slim has it: dpkg does not sync every file it unpacks.
        with open(os.path.join(r, "etc", "dpkg", "dpkg.cfg.d", "unsafe-io"), "w") as f:
            f.write("force-unsafe-io\n")
        os.makedirs(r + SRC)
        files = "\0".join(tracked_files()).encode()
        subprocess.run(f"tar -C {shlex.quote(TOP)} --null -T - -cf - | tar -C {r + SRC} -xf -",
                       shell=True, input=files, check=True)
        assert not os.path.exists(os.path.join(r + SRC, "connscope"))
        before = manual(r)
        assert "make" not in installed(r), "a minimal root has no make"
        with own_cgroup("fresh-test") as cg, node_mounts(r, dev=True, apt_cache=True):
            yield r, cg, before


@pytest.fixture(scope="module")
def readme_run(fresh):
    """The README's first command, run as written, its `make run` with ARGS."""
    root, cg, _ = fresh
    setup, last = readme_commands()[0]
    args = f"--cgroup /sys/fs/cgroup/{cg} -d 2 -i 1 --conntrack off"
    t0 = time.monotonic()
    cmd = f"{last} ARGS={shlex.quote(args)}"
    cp = chroot(root, f"{setup} && {cmd}" if setup else cmd, cwd=SRC, timeout=1500)
    print(f"README's set-up and make run: {time.monotonic() - t0:.1f} s")
    return cp


def check_and_replay(root, cg, binary):
    cp = chroot(root, binary, "check", "--cgroup", "/sys/fs/cgroup/" + cg, "--conntrack", "off")
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    assert "programs off" in cp.stdout, cp.stdout[-3000:]
    argv, compare = golden(GOLDEN)
    cp = chroot(root, binary, *argv, cwd=SRC + "/tests/golden", env={"TZ": "UTC"})
    assert cp.returncode == 0, cp.stderr[-3000:]
    diff = compare(cp.stdout, cp.stderr)
    assert diff is None, diff


def test_make_run_installs_builds_and_starts_top(fresh, readme_run):
    root, cg, _ = fresh
    cp = readme_run
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    assert re.search(r"^connscope top - .*\(final\)$", cp.stdout, re.M), cp.stdout[-3000:]
    check_and_replay(root, cg, SRC + "/connscope")


def test_make_test_starts_there(fresh, readme_run):
    """Not the suite itself (an hour): its recipe, and its dependencies, which
    apt-get resolves from Debian 12's archive on this minimal system."""
    root, _, _ = fresh
    assert readme_run.returncode == 0, readme_run.stderr[-3000:]
    cp = chroot(root, "make -n test", cwd=SRC)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "scripts/deps.sh all" in cp.stdout and "scripts/test.sh" in cp.stdout, cp.stdout
    cp = chroot(root, "sh scripts/deps.sh -n all", cwd=SRC, timeout=300)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    assert "python3-pytest" in cp.stdout, cp.stdout   # missing here, and installable


def test_the_dockerfile_build_stage(fresh, readme_run):
    root, cg, before = fresh
    assert readme_run.returncode == 0, readme_run.stderr[-3000:]
    pkgs = dockerfile_packages(0)
    assert "make" in pkgs and "clang" in pkgs, pkgs
    # What `make run` installed on the minimal system is the build stage's list.
    got = manual(root) - before
    assert got == set(pkgs), (f"make run installed {sorted(got - set(pkgs))} beyond the "
                              f"build stage's list, and not {sorted(set(pkgs) - got)}")
    runs = dockerfile_runs(0)
    assert runs[-1] == "make clean && make", runs
    for run in runs:
        t0 = time.monotonic()
        cp = chroot(root, run, cwd=SRC, timeout=900)
        print(f"RUN {run[:40]}: {time.monotonic() - t0:.1f} s")
        assert cp.returncode == 0, (run, cp.stdout[-3000:] + cp.stderr[-3000:])
    check_and_replay(root, cg, SRC + "/connscope")
