"""Live tests of --h2-plaintext NS/POD and auto: HTTP/2-in-TLS probes on the
processes of some pods only.

A probe attached for one process puts its breakpoint in that process's memory
alone: another process running the same libssl.so.3 takes no trap. The tests show
it three ways: the connection records (streams counted for the probed pod's client,
none for the other's), the breakpoint itself (the int3 byte the kernel writes at
SSL_write_ex, read through /proc/<pid>/mem), and the run count of connscope's
OpenSSL programs (bpf_stats, switched on through BPF_ENABLE_STATS for the test's
own duration), which must not move while only the unprobed pod talks.

The TLS clients are Python's ssl module speaking HTTP/2 frames by hand (it calls
SSL_write_ex and SSL_read_ex of the system libssl.so.3): each starts, loads libssl,
and waits for a line on stdin, so that connscope's rescan (once a second) has found
it before its first connection.
"""

import ctypes
import json
import os
import subprocess
import time

import pytest

import h2peers
from records import check_common, conns, findings, is_conn, is_finding, show
from simpod import Connscope, fd_links, wait_for_line, wait_until

NS = "shop"
A_IP, B_IP, BE_IP = "10.244.1.11", "10.244.1.12", "10.244.1.20"
STREAMS = 5

# A TLS HTTP/2 client: CONNS connections of STREAMS GET streams each, once told to go.
CLIENT = r"""
import socket, ssl, struct, sys
ip, port, ca, sni, conns, streams = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    int(sys.argv[5]), int(sys.argv[6])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2"])
def frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + payload
def request(sid):
    block = bytes([0x82, 0x87, 0x84, 0x01, 7]) + b"backend"   # GET https / :authority
    return frame(1, 0x05, sid, block)
print("READY", flush=True)
while sys.stdin.readline().strip() == "go":
    for _ in range(conns):
        s = ctx.wrap_socket(socket.create_connection((ip, port), timeout=10), server_hostname=sni)
        assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
        for i in range(streams):
            s.sendall(request(2 * i + 1))
        done, buf = set(), b""
        while len(done) < streams:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                t, fl, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff
                if t == 4 and not fl & 1:
                    s.sendall(frame(4, 1, 0))            # SETTINGS ACK
                if t in (0, 1) and fl & 1:
                    done.add(sid)
                buf = buf[9 + n:]
        s.sendall(frame(7, 0, 0, struct.pack(">II", 0, 0)))   # GOAWAY NO_ERROR
        s.close()
        assert len(done) == streams, done
    print("DONE", flush=True)
"""

# A process that has libssl.so.3 mapped and does nothing with it.
IDLE = "import ssl, sys\nprint('READY', flush=True)\nsys.stdin.readline()\n"


# ---------------------------------------------------------------------------
# what the kernel did

def _libssl_base(pid):
    """Where libssl.so.3's first mapping starts in pid (None if it maps none)."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            p = line.split()
            if len(p) >= 6 and os.path.basename(p[5]).startswith("libssl.so.3") \
                    and int(p[2], 16) == 0:
                return int(p[0].split("-")[0], 16)
    return None


def _ssl_write_ex_offset():
    """SSL_write_ex's offset in the system libssl.so.3, from this process's own copy."""
    lib = ctypes.CDLL("libssl.so.3")
    addr = ctypes.cast(lib.SSL_write_ex, ctypes.c_void_p).value
    return addr - _libssl_base(os.getpid())


def breakpoint_in(pid):
    """True if the first byte of SSL_write_ex in pid's memory is the int3 a uprobe
    writes (the kernel writes it only into the memory of a process it probes)."""
    base = _libssl_base(pid)
    assert base is not None, f"pid {pid} maps no libssl.so.3"
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(base + _ssl_write_ex_offset())
        return f.read(1) == b"\xcc"


@pytest.fixture
def sentinel():
    """A process with libssl.so.3 in no pod: no probe of ours ever goes there. Another
    tool's probe for every process of the node (a connscope with --h2-plaintext all
    in another test run, say) puts its breakpoint there too: then a breakpoint in an
    unprobed process says nothing about ours (the run counts still do)."""
    p = subprocess.Popen([h2peers.simpod.PYTHON, "-u", "-c", IDLE], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        wait_for_line(p, "READY", 10)
        yield p.pid
    finally:
        p.kill()
        p.wait(timeout=5)


def no_breakpoint_in(pid, sentinel):
    """No int3 at SSL_write_ex in pid, unless a foreign probe for every process
    put one in the sentinel as well."""
    return not breakpoint_in(pid) or breakpoint_in(sentinel)


class BpfStats:
    """BPF run counts (bpf_stats) while the test holds the fd of BPF_ENABLE_STATS:
    the kernel counts again when the last holder closes it, so the machine's
    kernel.bpf_stats_enabled is never touched."""

    def __enter__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        attr = ctypes.create_string_buffer(16)   # enable_stats.type = BPF_STATS_RUN_TIME (0)
        self.fd = libc.syscall(321, 32, attr, 4)  # __NR_bpf, BPF_ENABLE_STATS
        assert self.fd >= 0, f"BPF_ENABLE_STATS: {os.strerror(ctypes.get_errno())}"
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
        return False

    @staticmethod
    def openssl_runs(pid):
        """Runs of connscope's (pid's) OpenSSL uprobe programs, summed: the programs
        whose descriptors it holds (/proc/<pid>/fdinfo names their ids)."""
        ids = set()
        for fd, link in fd_links(pid).items():
            if link != "anon_inode:bpf-prog":
                continue
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    ids |= {int(ln.split()[1]) for ln in f if ln.startswith("prog_id:")}
            except OSError:
                continue
        runs, names = 0, []
        for i in sorted(ids):
            out = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(i)],
                                 capture_output=True, text=True, timeout=20, check=True).stdout
            p = json.loads(out)
            if p.get("name", "").startswith("h2u_ssl"):
                names.append(p["name"])
                runs += p.get("run_cnt", 0)
        assert names, f"connscope's OpenSSL programs are not among its {len(ids)} programs"
        return runs


# ---------------------------------------------------------------------------

@pytest.fixture
def docroot(tmp_path):
    return h2peers.docroot(tmp_path / "www")


def start(pod, code, *args):
    p = pod.popen([h2peers.simpod.PYTHON, "-u", "-c", code, *map(str, args)],
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(p, "READY", 10)
    return p


def go(p):
    """The client's connections; waits for them."""
    p.stdin.write(b"go\n")
    p.stdin.flush()
    wait_for_line(p, "DONE", 15)


def probes(cs, pred, after=None, timeout=10, what="h2_probes"):
    """The first stats record (after the record `after`) whose h2_probes satisfies pred."""
    seq = after["_seq"] if after else -1
    return cs.wait_for(lambda r: r["_seq"] > seq and r["type"] == "stats"
                       and "h2_probes" in r and pred(r["h2_probes"]),
                       timeout=timeout, what=what)


def finish(cs):
    time.sleep(1.5)
    records = cs.stop()
    check_common(records)
    return records


def test_pods_probes_only_the_named_pod(cluster, pki, docroot, sentinel):
    """--h2-plaintext shop/client-a: client-a's HTTP/2 over TLS is counted stream by
    stream; client-b, running the same libssl, has no breakpoint, runs none of
    connscope's programs, and its records carry no streams."""
    a = cluster.add_pod(NS, "client-a", A_IP)
    b = cluster.add_pod(NS, "client-b", B_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    port = 31460
    srv = h2peers.nghttpd_tls(be, pki, port, docroot)
    args = (BE_IP, port, pki.ca, h2peers.SERVICE, 2, STREAMS)
    ca, cb = start(a, CLIENT, *args), start(b, CLIENT, *args)
    with BpfStats(), Connscope(cluster, "--namespace", NS, "-i", 1,
                               "--h2-plaintext", f"{NS}/client-a") as cs:
        first = cs.snapshot()[0]
        assert first["h2_plaintext"] == "pods", show([first])
        p = probes(cs, lambda h: h["processes"] >= 1)
        assert p["h2_probes"]["names"] == [f"{NS}/client-a"] and p["h2_probes"]["pods"] == 1 \
            and p["h2_probes"]["links"] >= 8 and p["h2_probes"]["over_cap"] == 0, show([p])
        assert breakpoint_in(ca.pid), "client-a's SSL_write_ex carries no breakpoint"
        assert no_breakpoint_in(cb.pid, sentinel), "client-b's SSL_write_ex has a breakpoint"
        assert no_breakpoint_in(srv.pid, sentinel), "the server's SSL_write_ex has one"

        runs0 = BpfStats.openssl_runs(cs.proc.pid)
        go(cb)
        runs1 = BpfStats.openssl_runs(cs.proc.pid)
        go(ca)
        runs2 = BpfStats.openssl_runs(cs.proc.pid)
        cs.wait_count(is_conn(port, "client"), 4, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    assert runs1 == runs0, f"client-b's TLS calls ran connscope's programs: {runs0} -> {runs1}"
    assert runs2 > runs1, f"client-a's TLS calls ran no program: {runs1} -> {runs2}"
    ra = [c for c in conns(records, port, "client") if a.matches(c.get("pod"))]
    rb = [c for c in conns(records, port, "client") if b.matches(c.get("pod"))]
    assert len(ra) == 2 and len(rb) == 2, show(ra + rb)
    assert all(c.get("h2", {}).get("source") == "openssl" and c["h2"]["streams"] == STREAMS
               for c in ra), show(ra)
    assert all((c.get("h2") or {}).get("streams") is None for c in rb), show(rb)
    assert all(c.get("tls", {}).get("outcome") == "ok" for c in ra + rb), show(ra + rb)
    # the server's side was not probed either
    sv = conns(records, port, "server")
    assert all((c.get("h2") or {}).get("streams") is None for c in sv), show(sv)
    for p in (ca, cb):
        h2peers.stop(p)


def test_pods_follows_new_and_exited_processes(cluster):
    """A process that starts in the named pod later gets probes at the next rescan;
    one that exits gives its links back."""
    a = cluster.add_pod(NS, "client-a", A_IP)
    with Connscope(cluster, "--namespace", NS, "-i", 1, "--h2-plaintext", f"{NS}/client-a") as cs:
        p = probes(cs, lambda h: True)
        assert p["h2_probes"]["processes"] == 0 and p["h2_probes"]["links"] == 0, show([p])
        one = start(a, IDLE)
        p = probes(cs, lambda h: h["processes"] == 1, p, what="the new process probed")
        assert breakpoint_in(one.pid)
        two = start(a, IDLE)
        p = probes(cs, lambda h: h["processes"] == 2, p, what="the second process probed")
        links = p["h2_probes"]["links"]
        assert links >= 16 and breakpoint_in(two.pid), show([p])
        h2peers.stop(one)
        p = probes(cs, lambda h: h["processes"] == 1, p, what="the exited process's links gone")
        assert p["h2_probes"]["links"] == links // 2, show([p])
        h2peers.stop(two)
        probes(cs, lambda h: h["processes"] == 0 and h["links"] == 0, p, what="no links left")
        finish(cs)


def test_pods_release_does_not_hold_the_loop(cluster):
    """Releasing a uprobe waits for the kernel (tens of ms a link): when a pod's 12
    OpenSSL processes exit at once, their 108 links go without stalling the event
    loop (a stats record every second) and a signal right after still ends the run
    cleanly, with its end record."""
    a = cluster.add_pod(NS, "client-a", A_IP)
    with Connscope(cluster, "--namespace", NS, "-i", 1, "--h2-plaintext", f"{NS}/client-a") as cs:
        ps = [start(a, IDLE) for _ in range(12)]
        p = probes(cs, lambda h: h["processes"] == 12, timeout=15, what="12 processes probed")
        assert p["h2_probes"]["links"] == 108, show([p])
        for x in ps:
            h2peers.stop(x)
        p = probes(cs, lambda h: h["processes"] == 0, p, what="their links released")
        p = probes(cs, lambda h: True, p)
        records = cs.stop()
    stats = [r for r in records if r["type"] == "stats"]
    assert stats[-1]["phase"] == "end", show(stats[-1:])
    up = [r["uptime_s"] for r in stats if r["phase"] == "interval"]
    gaps = [b - a for a, b in zip(up, up[1:])]
    assert max(gaps) < 1.6, f"the event loop stalled: stats {up}"


def test_auto_probes_a_flagged_pod_for_a_while(cluster, docroot, sentinel):
    """--h2-plaintext auto: nothing probed at start; an h2_reuse_churn finding over
    h2c for the frontend pod puts its processes under the probes (not the
    backend's), for --h2-plaintext-for seconds, then they come off."""
    fe = cluster.add_pod(NS, "frontend", A_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    port = 31461
    srv = h2peers.nghttpd_h2c(be, port, docroot)
    idle_fe, idle_be = start(fe, IDLE), start(be, IDLE)
    with Connscope(cluster, "--namespace", NS, "-i", 1, "--h2-plaintext", "auto",
                   "--h2-plaintext-for", 3, "--h2-churn-conns", 10) as cs:
        first = cs.snapshot()[0]
        assert first["h2_plaintext"] == "auto", show([first])
        assert first["h2_probes"] == {"pods": 0, "names": [], "processes": 0, "links": 0,
                                      "over_cap": 0}, show([first])
        assert no_breakpoint_in(idle_fe.pid, sentinel)
        for _ in range(12):
            r = h2peers.nghttp(fe, f"http://{be.ip}:{port}/index.html")
            assert r["rc"] == 0 and r["code"] == 200, r
        f = cs.wait_for(is_finding("h2_reuse_churn", fe), timeout=10)
        p = probes(cs, lambda h: h["processes"] >= 1, f, what="the frontend's processes probed")
        flagged = time.monotonic()
        assert p["h2_probes"]["names"] == [f"{NS}/frontend"], show([f, p])
        assert breakpoint_in(idle_fe.pid), "the flagged pod's process has no breakpoint"
        assert no_breakpoint_in(idle_be.pid, sentinel), "the backend was probed"
        p = probes(cs, lambda h: h["pods"] == 0, p, timeout=10, what="the probes' time up")
        assert p["h2_probes"]["links"] == 0 and p["h2_probes"]["processes"] == 0, show([p])
        assert 2.0 <= time.monotonic() - flagged <= 6, "probed for the wrong time"
        # the links are released by a thread of connscope's, ~30 ms each
        wait_until(lambda: no_breakpoint_in(idle_fe.pid, sentinel), 5,
                   what="the breakpoint gone with the probes")
        assert "probing the processes of pod shop/frontend for 3 s" in cs.stderr, cs.stderr
        h2peers.stop(srv)
        records = finish(cs)
    assert not findings(records, "h2_reuse_churn", be)
    for p in (idle_fe, idle_be):
        h2peers.stop(p)


def test_check_and_bad_values(cluster, connscope_bin):
    """check says what the mode would probe; malformed pod lists are refused."""
    a = cluster.add_pod(NS, "client-a", A_IP)
    idle = start(a, IDLE)
    cp = subprocess.run([connscope_bin, "check", "--pods-dir", cluster.pods_dir,
                         "--cgroup", cluster.cgroup_root, "--conntrack", "off",
                         "--h2-plaintext", f"{NS}/client-a,{NS}/nothere"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode in (0, 1), cp.stderr
    line = next((ln for ln in cp.stdout.splitlines() if "--h2-plaintext:" in ln), "")
    assert f"1 pods found now ({NS}/client-a), 1 processes in them" in line, cp.stdout
    assert "no other process takes a trap" in line, line
    for bad in ("shop", "/x", "shop/a,", "Shop/a", "shop/a/b"):
        cp = subprocess.run([connscope_bin, "trace", "--h2-plaintext", bad], capture_output=True,
                            text=True, timeout=10)
        assert cp.returncode == 2 and "bad value for --h2-plaintext" in cp.stderr, (bad, cp.stderr)
    h2peers.stop(idle)


def test_pods_keep_quiet_tls_in_daemon(cluster, pki, docroot):
    """daemon (only problems cross) with --h2-plaintext NS/POD: complete handshakes
    still stay in the kernel (tls_handshakes problems), yet the probed sockets'
    closes reach user space (the probes mark them), so the pod's one-stream TLS
    connections close there and make an h2_reuse_churn finding."""
    a = cluster.add_pod(NS, "client-a", A_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    port = 31462
    srv = h2peers.nghttpd_tls(be, pki, port, docroot)
    cli = start(a, CLIENT, BE_IP, port, pki.ca, h2peers.SERVICE, 12, 1)
    with Connscope(cluster, "--namespace", NS, "-i", 1, "--h2-plaintext", f"{NS}/client-a",
                   "--h2-churn-conns", 10, command="daemon") as cs:
        first = cs.snapshot()[0]
        assert first["h2_plaintext"] == "pods" and first["tls_handshakes"] == "problems", \
            show([first])
        probes(cs, lambda h: h["processes"] == 1)
        go(cli)
        f = cs.wait_for(is_finding("h2_reuse_churn", a), timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    assert f["window"]["streams_per_conn"] == 1 and f["server"]["port"] == port, show([f])
    s = [r for r in records if r["type"] == "summary" and a.matches(r.get("pod"))]
    assert s and s[-1]["h2"]["connections"] == 12 and s[-1]["h2"]["closed"] == 12, show(s[-1:])
    stats = [r for r in records if r["type"] == "stats"]
    assert all(x["tls_handshakes"] == "problems" for x in stats), show(stats[-1:])
    assert stats[-1]["lost"] == 0 and stats[-1]["parser_desync"] == 0, show(stats[-1:])
    h2peers.stop(cli)


def test_pods_go_server_probed_alone(cluster, pki, h2grpc):
    """A grpc-go server over Go's crypto/tls in the named pod: its executable is
    probed for its pid (Write's entry, Read's entry and each of Read's RETs), its
    connections counted from what it reads and writes; the grpc-go client in the
    other pod, the same executable, is not probed."""
    fe = cluster.add_pod(NS, "frontend", A_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    port = 31463
    srv = h2peers.grpc_server(be, h2grpc, port, pki=pki)
    with Connscope(cluster, "--namespace", NS, "-i", 1, "--h2-plaintext", f"{NS}/backend") as cs:
        p = probes(cs, lambda h: h["processes"] == 1)
        assert p["h2_probes"]["links"] >= 3 and p["h2_probes"]["names"] == [f"{NS}/backend"], \
            show([p])
        r = h2peers.grpc_client(fe, h2grpc, be.ip, port, mode="reuse", pki=pki, duration=2)
        assert r["rc"] == 0 and r["failed"] == 0 and r["ok"] >= 10, r
        cs.wait_count(is_conn(port, "server"), 1, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    sv = [c for c in conns(records, port, "server") if be.matches(c.get("pod"))]
    assert sv and all(c.get("h2", {}).get("source") == "go" for c in sv), show(sv)
    # a Go server's streams: the client's HEADERS, as it reads them
    assert sum(c["h2"]["streams"] for c in sv) == r["ok"], (r, show(sv))
    assert all(c["h2"]["desync"] == 0 for c in sv), show(sv)
    cl = [c for c in conns(records, port, "client") if fe.matches(c.get("pod"))]
    assert cl and all((c.get("h2") or {}).get("streams") is None for c in cl), show(cl)


def test_auto_tls_churn_from_the_wire_brings_the_probes(cluster, pki, docroot):
    """auto over TLS: nothing probed, a client pod opening a TLS connection per call
    is churn from the wire (source tls_alpn, streams null); that finding puts its
    process under the probes, and its next connections carry exact stream counts
    (source openssl)."""
    fe = cluster.add_pod(NS, "frontend", A_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    port = 31464
    srv = h2peers.nghttpd_tls(be, pki, port, docroot)
    cli = start(fe, CLIENT, BE_IP, port, pki.ca, h2peers.SERVICE, 12, STREAMS)
    with Connscope(cluster, "--namespace", NS, "-i", 1, "--h2-plaintext", "auto",
                   "--h2-plaintext-for", 30, "--h2-churn-conns", 10) as cs:
        go(cli)
        f = cs.wait_for(is_finding("h2_reuse_churn", fe), timeout=10)
        assert f["source"] == "tls_alpn" and f["window"]["streams"] is None, show([f])
        probes(cs, lambda h: h["processes"] >= 1, f, what="the frontend's process probed")
        go(cli)
        cs.wait_count(is_conn(port, "client"), 24, timeout=10)
        h2peers.stop(srv)
        records = finish(cs)
    h2peers.stop(cli)
    cl = [c for c in conns(records, port, "client") if fe.matches(c.get("pod"))]
    wire = [c for c in cl if c["h2"]["source"] == "tls_alpn"]
    probed = [c for c in cl if c["h2"]["source"] == "openssl"]
    assert len(wire) == 12 and all(c["h2"]["streams"] is None for c in wire), show(cl)
    assert len(probed) == 12 and all(c["h2"]["streams"] == STREAMS for c in probed), show(cl)
