"""The command line as an SRE meets it: check, errors, each command's own options,
stop by itself, top.

Real binary, real kernel. Errors must be one line on stderr and a non-zero exit,
never a crash or a libbpf wall of text.
"""

import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import time

import pytest

import simpod
from workloads import CLIENT, SERVER

BIN = simpod.CONNSCOPE_BIN


def run(*args, timeout=30, **kw):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def cg(path):
    """--cgroup PATH for a command that traces: its packet programs attach there,
    never to the machine's cgroup2 root (and conntrack's netfilter program not in
    the machine's netns: off here). Empty for a build without --cgroup."""
    args = ["--cgroup", str(path)] if simpod.supports_cgroup_option(BIN) else []
    if simpod.supports_cgroup_option(BIN, "--conntrack-netns"):
        args += ["--conntrack", "off"]
    return args


@pytest.fixture
def test_cgroup():
    """An empty cgroup2 directory of the test's own, removed afterwards."""
    mnt, _ = simpod.cgroup2_mount()
    d = os.path.join(mnt, f"connscope-test-cli-{secrets.token_hex(3)}")
    os.mkdir(d)
    try:
        yield d
    finally:
        errs = simpod._destroy_cgroup(d)
        assert not errs, errs


def one_line_error(cp, code, *words):
    assert cp.returncode == code, (cp.returncode, cp.stdout, cp.stderr)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, f"want one line on stderr, got: {cp.stderr!r}"
    assert lines[0].startswith("connscope: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert cp.stdout == "", cp.stdout


def test_check_reports_attach_points(test_cgroup):
    cp = run("check", *cg(test_cgroup))
    assert cp.returncode == 0, cp.stderr
    out = cp.stdout
    assert "attach type:      tp_btf (preferred)" in out, out
    for tp in ("inet_sock_set_state", "tcp_receive_reset", "tcp_send_reset",
               "tcp_retransmit_skb"):
        line = next(l for l in out.splitlines() if l.startswith(tp))
        assert line.split()[1:3] == ["yes", "tp_btf"], line
    assert "cgroup2:" in out and "NOT FOUND" not in out
    if cg(test_cgroup):
        assert test_cgroup in out, f"the packet programs must attach at {test_cgroup}:\n{out}"


@pytest.mark.parametrize("attach", ["auto", "raw_tp"])
def test_check_every_part_within_the_verifier_budget(test_cgroup, attach):
    """On whatever kernel this runs (the host, the 6.1 VM): every part is observed,
    by its own programs or a fallback that check names with what replaces it or
    what is lost, and no program costs the verifier more than half its budget
    (the raw_tp variants too)."""
    cp = run("check", "-v", "--attach", attach, *cg(test_cgroup), timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr[-2000:]
    out = cp.stdout
    assert "NOT observed" not in out, out
    lines = out.splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("programs off:"))
    off = []
    for l in lines[at + 1:]:
        if not l.startswith("  "):
            break
        off.append(l)
    named = [l.split()[0] for l in off if l[2] != " "]
    explained = [l for l in off if l.strip().startswith(("instead:", "lost:"))]
    assert len(explained) >= len(named), "every program off says what replaces it or is lost:\n" + "\n".join(off)
    head = next(i for i, l in enumerate(lines) if l.startswith("PROGRAM "))
    rows = [l.split() for l in lines[head + 1:] if l.strip()]
    assert len(rows) >= 10, out
    for r in rows:
        assert r[-1].endswith("%") and float(r[-1][:-1]) <= 50.0, f"over half the budget: {r}"
    # The programs check names as off did not load; every other part's did.
    loaded = {r[0] for r in rows}
    for name in named:
        assert name[:15] not in loaded, (name, loaded)


def test_check_forced_fallback_says_why(test_cgroup):
    cp = run("check", "--attach", "raw_tp", *cg(test_cgroup))
    assert cp.returncode == 0, cp.stderr
    assert "attach type:      raw_tp, fallback because: raw_tp forced by --attach" in cp.stdout
    line = next(l for l in cp.stdout.splitlines() if l.startswith("inet_sock_set_state"))
    assert line.split()[2] == "raw_tp", line


def test_bad_command_line(test_cgroup):
    # --cgroup at the end: should a parse check ever let one through, it
    # still cannot attach to the cgroup2 root
    one_line_error(run("trace", "--bogus", *cg(test_cgroup)), 2, "--bogus")
    one_line_error(run("trace", "-d", "abc", *cg(test_cgroup)), 2, "-d", "abc")
    one_line_error(run("trace", "-d", "-1", *cg(test_cgroup)), 2, "-d")
    one_line_error(run("trace", "--port", "70000", *cg(test_cgroup)), 2, "--port")
    one_line_error(run("trace", "--port", "12x", *cg(test_cgroup)), 2, "--port")
    one_line_error(run("trace", "-o", "yaml", *cg(test_cgroup)), 2, "-o")
    one_line_error(run("trace", "--close-wait-threshold", "nan", *cg(test_cgroup)), 2,
                   "--close-wait-threshold")
    one_line_error(run("frobnicate"), 2, "unknown command")
    one_line_error(run("trace", "stray", *cg(test_cgroup)), 2, "stray")


def test_not_root_is_one_line(test_cgroup):
    cp = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         "--inh-caps=-all", BIN, "trace", "-d", "1", *cg(test_cgroup)],
                        capture_output=True, text=True, timeout=30)
    one_line_error(cp, 1, "root", "CAP_BPF")


def test_duration_and_sigterm_stop_cleanly(test_cgroup):
    t0 = time.monotonic()
    cp = run("trace", "-o", "json", "-d", "1", "--no-snapshot", *cg(test_cgroup))
    assert cp.returncode == 0, cp.stderr
    assert time.monotonic() - t0 < 15
    recs = [json.loads(l) for l in cp.stdout.splitlines()]
    assert recs[0]["type"] == "stats" and recs[0]["phase"] == "start"
    assert recs[-1]["type"] == "stats" and recs[-1]["phase"] == "end"

    p = subprocess.Popen([BIN, "trace", "-o", "json", *cg(test_cgroup)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    assert json.loads(first)["phase"] == "start"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["phase"] == "end"


def test_top_shows_the_stuck_pod_first(cluster):
    """top, not on a terminal: a table per interval, the pod with a stuck
    CLOSE_WAIT socket on the first row, its finding in the recent panel."""
    fe = cluster.add_pod("shop", "frontend", "10.244.1.10")
    be = cluster.add_pod("shop", "backend", "10.244.1.20")
    quiet = cluster.add_pod("shop", "quiet", "10.244.1.30")
    srv = be.python(SERVER, "hold", be.ip, 30990, 1)
    simpod.wait_for_line(srv, "READY", 10)
    qsrv = quiet.python(SERVER, "echo", quiet.ip, 30991, 3)
    simpod.wait_for_line(qsrv, "READY", 10)
    top = subprocess.Popen([BIN, "top", "-i", "1", "-d", "5", "--close-wait-threshold", "1",
                            "--pods-dir", cluster.pods_dir, "--namespace", "shop",
                            *cg(cluster.cgroup_root)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The traffic starts once top is attached (its first frame): a connection
    # made before that is not connscope's to count.
    first = top.stdout.readline()
    assert first.startswith("connscope top - "), first + top.stderr.read()
    cp = fe.python(CLIENT, "echo", quiet.ip, 30991, 3, 10, wait=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    cp = fe.python(CLIENT, "send-close", be.ip, 30990, 1, 10, wait=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    out, err = top.communicate(timeout=20)
    out = first + out
    assert top.returncode == 0, err
    final = out.split("connscope top - ")[-1]
    assert "(final)" in final.splitlines()[0], final
    rows = [l for l in final.splitlines()[2:] if l.startswith("shop/")]
    assert rows and rows[0].startswith("shop/backend"), final
    cols = rows[0].split()
    assert cols[7] == "1" and cols[8] == "1", f"CW and STUCK of backend: {rows[0]}"
    assert any(r.startswith("shop/quiet") for r in rows), final
    assert "close_wait_stuck" in final, final


def test_daemon_json_lines_and_metrics(cluster):
    """daemon: JSON lines with per-interval summaries, and a Prometheus endpoint
    whose per-pod counters agree with the traffic."""
    import urllib.request

    fe = cluster.add_pod("shop", "frontend", "10.244.1.10")
    be = cluster.add_pod("shop", "backend", "10.244.1.20")
    srv = be.python(SERVER, "echo", be.ip, 30995, 4)
    simpod.wait_for_line(srv, "READY", 10)
    port = 39000 + os.getpid() % 1000
    d = subprocess.Popen([BIN, "daemon", "-i", "1", "--pods-dir", cluster.pods_dir,
                          "--namespace", "shop", "--metrics-addr", f"127.0.0.1:{port}",
                          *cg(cluster.cgroup_root)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(d.stdout.readline())
        assert first["type"] == "stats" and first["phase"] == "start", first
        cp = fe.python(CLIENT, "echo", be.ip, 30995, 4, 10, wait=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            if 'connscope_tcp_closed_total{namespace="shop",pod="frontend"} 4' in text:
                break
            time.sleep(0.3)
        assert 'connscope_tcp_opened_total{namespace="shop",pod="frontend"} 4' in text, text
        assert 'connscope_tcp_closed_total{namespace="shop",pod="frontend"} 4' in text, text
        assert 'connscope_tcp_opened_total{namespace="shop",pod="backend"} 4' in text, text
        assert "connscope_lost_total 0" in text, text
        assert "connscope_map_full_total 0" in text, text
        assert "connscope_parser_desync_total 0" in text, text
        time.sleep(1.5)
    finally:
        d.send_signal(signal.SIGTERM)
        out, err = d.communicate(timeout=10)
    assert d.returncode == 0, err
    recs = [json.loads(l) for l in out.splitlines()]
    assert recs[-1]["type"] == "stats" and recs[-1]["phase"] == "end"
    # /metrics' self-health series count what the stats record's fields of the same
    # names count (a quiet run: both 0).
    assert recs[-1]["lost"] == 0 and recs[-1]["map_full"] == 0, recs[-1]
    sums = [r for r in recs if r["type"] == "summary" and r["pod"] and r["pod"]["name"] == "frontend"]
    assert sums and sums[-1]["tcp"]["opened"] == 4 and sums[-1]["tcp"]["closed"] == 4, sums[-1:]
    # daemon writes problems only by default: these healthy connections are
    # counted (above), not logged one by one
    conns = [r for r in recs if r["type"] == "connection"]
    assert len(conns) == 0, conns


# ---------------------------------------------------------------------------
# Each command takes, lists and accepts only its own options.

LIVE_OWN = {"pod", "namespace", "port", "close-wait-threshold", "connect-timeout",
            "tls-timeout", "finding-window", "idle-cut", "h2-window", "h2-churn-conns",
            "h2-churn-streams", "h2-goaway-runs", "conntrack-pressure", "conntrack-max",
            "interval", "duration", "pods-dir", "cgroup", "attach", "no-snapshot",
            "conntrack", "conntrack-netns", "stacks", "h2-plaintext", "h2-plaintext-for",
            "verbose", "help", "usage"}
OWN = {
    "top": LIVE_OWN,
    "trace": LIVE_OWN | {"output", "output-queue", "connections"},
    "daemon": LIVE_OWN | {"output", "output-queue", "metrics-addr", "metrics-remotes",
               "connections"},
    "replay": {"pod", "namespace", "port", "close-wait-threshold", "connect-timeout",
               "tls-timeout", "finding-window", "idle-cut", "h2-window", "h2-churn-conns",
               "h2-churn-streams", "h2-goaway-runs", "output", "keylog", "pods", "verbose",
               "connections", "help", "usage"},
    "check": {"pods-dir", "cgroup", "attach", "conntrack", "conntrack-netns", "stacks",
              "h2-plaintext", "h2-plaintext-for", "verbose", "help", "usage"},
}

def listed(text):
    return set(re.findall(r"--([a-z0-9][a-z0-9-]*)", text))


@pytest.mark.parametrize("command", sorted(OWN))
def test_help_lists_only_own_options(command):
    """--help and --usage of a command list its options and no other command's
    (trace --help has no --keylog), on stdout, exit 0."""
    for flag in ("--help", "--usage"):
        cp = run(command, flag)
        assert cp.returncode == 0 and cp.stderr == "", (flag, cp.returncode, cp.stderr)
        got = listed(cp.stdout)
        assert got == OWN[command], (
            f"{command} {flag}: missing {sorted(OWN[command] - got)}, "
            f"foreign {sorted(got - OWN[command])}\n{cp.stdout}")


def test_top_level_help_lists_the_commands():
    cp = run("--help")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    for command in OWN:
        assert re.search(rf"^  {command} ", cp.stdout, re.M), (command, cp.stdout)
    assert not listed(cp.stdout) - {"help"}, cp.stdout


# (command, argv, words the error line must hold): an option valid for another
# command, or for none, is one line on stderr and exit status 2.
FOREIGN = [
    ("trace", ["--keylog", "F"], ["--keylog", "replay"]),
    ("trace", ["--keylog=F"], ["--keylog", "replay"]),
    # in full, not read as an abbreviation of trace's --pods-dir
    ("trace", ["--pods", "F"], ["--pods", "replay"]),
    ("trace", ["--metrics-addr", "127.0.0.1:1"], ["--metrics-addr", "daemon"]),
    ("top", ["-o", "json"], ["-o", "trace"]),
    ("top", ["-ojson"], ["-o", "trace"]),
    ("top", ["--metrics-addr", "127.0.0.1:1"], ["--metrics-addr", "daemon"]),
    ("top", ["--keylog", "F"], ["--keylog", "replay"]),
    ("daemon", ["--pods", "F"], ["--pods", "replay"]),
    ("daemon", ["-o", "text"], ["-o", "text"]),
    ("replay", ["x.pcap", "--attach", "raw_tp"], ["--attach", "check"]),
    ("replay", ["x.pcap", "-i", "1"], ["-i", "top"]),
    ("replay", ["x.pcap", "-d", "1"], ["-d", "trace"]),
    ("replay", ["x.pcap", "--no-snapshot"], ["--no-snapshot", "trace"]),
    ("replay", ["x.pcap", "--cgroup", "/sys/fs/cgroup"], ["--cgroup", "trace"]),
    ("replay", ["x.pcap", "--conntrack", "off"], ["--conntrack", "trace"]),
    ("replay", ["x.pcap", "--conntrack-max", "10"], ["--conntrack-max", "trace"]),
    ("replay", ["x.pcap", "--metrics-addr", "127.0.0.1:1"], ["--metrics-addr", "daemon"]),
    ("check", ["--keylog", "F"], ["--keylog", "replay"]),
    ("check", ["--pod", "shop/x"], ["--pod", "trace"]),
    ("check", ["--port", "80"], ["--port", "trace"]),
    ("check", ["-o", "json"], ["-o", "trace"]),
    ("check", ["-d", "1"], ["-d", "trace"]),
    ("check", ["--close-wait-threshold", "1"], ["--close-wait-threshold", "replay"]),
    ("check", ["--no-snapshot"], ["--no-snapshot", "trace"]),
    ("check", ["stray"], ["stray"]),
    ("top", ["--bogus"], ["--bogus", "unknown"]),
    ("daemon", ["-x"], ["-x", "unknown"]),
    ("replay", ["x.pcap", "--bogus"], ["--bogus", "unknown"]),
    ("check", ["--bogus"], ["--bogus", "unknown"]),
    ("trace", ["--port"], ["--port", "value"]),
]


@pytest.mark.parametrize("command,argv,words", FOREIGN,
                         ids=[" ".join([c, *a]) for c, a, _ in FOREIGN])
def test_foreign_option_is_one_line(test_cgroup, command, argv, words):
    # Should the option ever be let through, a live command still cannot attach
    # at the cgroup2 root and stops by itself.
    guard = {"replay": [], "check": cg(test_cgroup)}.get(
        command, [*cg(test_cgroup), "-d", "1"])
    if argv == ["--port"]:
        guard = []
    one_line_error(run(command, *argv, *guard), 2, *words)


def test_valid_command_lines_keep_working(test_cgroup, tmp_path):
    """A command line per command, with options of every kind it takes, runs as
    before: the documented and scripted ones included (deploy's daemon line)."""
    port = 39000 + (os.getpid() + 500) % 1000
    cases = [
        ["top", "-i", "0.5", "-d", "1", "--close-wait-threshold", "1", "--namespace",
         "shop", "--pod", "shop/x", "--port", "80", "--pods-dir", str(tmp_path),
         "--no-snapshot", "--stacks", "off", "--attach", "auto", "--conntrack-max", "1000",
         "--conntrack-pressure", "80", *cg(test_cgroup)],
        ["trace", "-o", "json", "-i", "0.5", "-d", "1", "--connect-timeout", "2",
         "--tls-timeout", "5", "--finding-window", "0", "--h2-window", "10",
         "--h2-churn-conns", "5", "--h2-churn-streams", "2", "--h2-goaway-runs", "2",
         "--stacks", "auto", *cg(test_cgroup)],
        ["daemon", "-i", "30", "--close-wait-threshold", "30", "--metrics-addr",
         f"127.0.0.1:{port}", "-o", "json", "-d", "1", *cg(test_cgroup)],
    ]
    for argv in cases:
        cp = run(*argv, timeout=60)
        assert cp.returncode == 0, (argv, cp.stderr)
        if argv[0] == "top":
            assert "connscope top - " in cp.stdout, cp.stdout
            continue
        recs = [json.loads(l) for l in cp.stdout.splitlines()]
        assert recs[0]["type"] == "stats" and recs[0]["phase"] == "start", recs[:1]
        assert recs[-1]["type"] == "stats" and recs[-1]["phase"] == "end", recs[-1:]
        # -i: trace writes interval summaries when asked; daemon's 30 s did not come
        phases = [r.get("phase") for r in recs if r["type"] == "stats"]
        assert ("interval" in phases) == (argv[0] == "trace"), (argv, phases)

    cp = run("check", "-v", "--pods-dir", str(tmp_path), "--stacks", "off",
             "--attach", "raw_tp", *cg(test_cgroup), timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert f"pods dir:         {tmp_path}" in cp.stdout, cp.stdout
    assert "raw_tp forced by --attach" in cp.stdout, cp.stdout

    cap = tmp_path / "syn.pcap"
    cap.write_bytes(_syn_synack_pcap())
    pods = tmp_path / "pods.json"
    pods.write_text('{"apiVersion": "v1", "kind": "List", "items": []}')
    keys = tmp_path / "keys.log"
    keys.write_text("")
    common = [str(cap), "--pods", str(pods), "--keylog", str(keys),
              "--close-wait-threshold", "2", "--connect-timeout", "2", "--tls-timeout", "2",
              "--finding-window", "0", "--h2-window", "5", "--h2-churn-conns", "2",
              "--h2-churn-streams", "1", "--h2-goaway-runs", "2", "-v"]
    for port_filter, want in (("80", 1), ("81", 0)):
        cp = run("replay", *common, "-o", "json", "--port", port_filter)
        assert cp.returncode == 0, cp.stderr
        recs = [json.loads(l) for l in cp.stdout.splitlines()]
        assert len([r for r in recs if r["type"] == "connection"]) == want, recs
        assert recs[-1]["type"] == "stats", recs[-1:]
    cp = run("replay", *common)
    assert cp.returncode == 0 and cp.stdout and not cp.stdout.startswith("{"), cp


def _syn_synack_pcap():
    """A classic pcap of one SYN and its SYN-ACK (10.0.0.1:40000 -> 10.0.0.2:80)."""
    def packet(src, dst, sport, dport, flags, seq, ack):
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp

    out = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
    for i, p in enumerate((packet("10.0.0.1", "10.0.0.2", 40000, 80, 0x02, 1000, 0),
                           packet("10.0.0.2", "10.0.0.1", 80, 40000, 0x12, 5000, 1001))):
        out += struct.pack("<IIII", 1700000000, i * 1000, len(p), len(p)) + p
    return out
