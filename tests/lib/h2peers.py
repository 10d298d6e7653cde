"""HTTP/2 peers for connscope's live tests: nghttpd (h2c and TLS), h2load, nghttp,
and a grpc-go server and client (tests/lib/go/h2grpc), plus an HTTP/2 frame reader
for packet captures.

Everything runs inside simulated pods (tests/lib/simpod.py) and is bounded: clients
run with time limits, servers are stopped by stop() (SIGTERM, then SIGKILL) or die
with the cluster; the gRPC server also exits by itself after max_run seconds.

  build_h2grpc(d)             builds tests/lib/go/h2grpc with Debian's golang-go and
                              golang-google-grpc-dev, offline; cached in d (rebuilt
                              when main.go changes)
  nghttpd_h2c(pod, port, docroot)         nghttpd --no-tls (h2c, prior knowledge)
  nghttpd_tls(pod, pki, port, docroot)    nghttpd with a tlspeers.Pki certificate
  h2load(pod, url, n=, clients=, streams=, duration=)   parsed summary
  nghttp(pod, url)            one nghttp -ns run
  grpc_server(pod, binary, port, pki=None, max_age=None)  h2grpc server
  grpc_client(pod, binary, ip, port, mode="reuse"|"percall", pki=None, ...)
  stop(proc)                  end a server; returns its stdout lines
  h2_frames(segments, port)   HTTP/2 frames of an h2c capture, per connection

    /usr/bin/python3 tests/lib/h2peers.py smoke

runs every scenario in a simulated cluster without connscope and prints what the
peers reported and the HTTP/2 frames seen on the wire (h2c) or the TLS records (TLS).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simpod  # noqa: E402
import tlspeers  # noqa: E402
from simpod import wait_for_line  # noqa: E402
from tlspeers import PeerError, Pki, Capture, SERVICE  # noqa: E402,F401

GO_DIR = Path(__file__).resolve().parent / "go"
GOCODE = "/usr/share/gocode"            # Debian's Go library sources (golang-*-dev)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
               5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE",
               9: "CONTINUATION"}
H2_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR",
             3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED",
             6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
             9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
             12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


# ---------------------------------------------------------------------------
# building the gRPC peer

def build_h2grpc(outdir, timeout=300):
    """Build tests/lib/go/h2grpc into outdir/h2grpc, offline, with Debian's Go
    packages (GOPATH mode, GOPATH=outdir/gopath:/usr/share/gocode, GOPROXY=off,
    GOCACHE under outdir). Cached: nothing is done when outdir/h2grpc was built
    from the same main.go. Returns the binary's path."""
    go = shutil.which("go") or "/usr/bin/go"
    if not os.access(go, os.X_OK):
        raise PeerError("no go compiler: apt-get install golang-go")
    if not os.path.isdir(f"{GOCODE}/src/google.golang.org/grpc/health/grpc_health_v1"):
        raise PeerError("no grpc-go sources: apt-get install golang-google-grpc-dev")
    src = GO_DIR / "h2grpc"
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out, stamp = outdir / "h2grpc", outdir / "h2grpc.src-sha256"
    digest = hashlib.sha256((src / "main.go").read_bytes()).hexdigest()
    if out.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return str(out)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(outdir), "GO111MODULE": "off",
           "GOPROXY": "off", "GOFLAGS": "", "GOPATH": f"{outdir / 'gopath'}:{GOCODE}",
           "GOCACHE": str(outdir / "gocache"), "CGO_ENABLED": "0"}
    tmp = outdir / "h2grpc.tmp"
    tlspeers._run([go, "build", "-o", str(tmp), "main.go"], timeout=timeout, env=env,
                  cwd=src)
    tmp.replace(out)
    stamp.write_text(digest + "\n")
    return str(out)


# ---------------------------------------------------------------------------
# servers

def stop(proc, timeout=5):
    """SIGTERM a server started here (its process group), wait (bounded), SIGKILL if
    it lingers. Returns the lines it printed on stdout (if piped)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=timeout)
    lines = list(getattr(proc, "lines", []))
    if proc.stdout is not None:
        try:
            rest = proc.stdout.read() or b""
            if isinstance(rest, bytes):
                rest = (getattr(proc, "_partial", b"") + rest).decode(errors="replace")
            lines += [ln for ln in rest.splitlines() if ln.strip()]
        except (OSError, ValueError):
            pass
    return lines


def docroot(d, size=64):
    """A document root with index.html (size bytes) for nghttpd; returns its path."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    body = (b"connscope h2 test\n" * (size // 18 + 1))[:size]
    (d / "index.html").write_bytes(body)
    return str(d)


def nghttpd_h2c(pod, port, root, *opts, ip=None):
    """nghttpd --no-tls on pod's IP:port (HTTP/2 with prior knowledge, "h2c")."""
    srv = pod.popen(["nghttpd", "--no-tls", f"--address={ip or pod.ip}", "-d", str(root),
                     *opts, str(port)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pod.wait_listen(port)
    return srv


def nghttpd_tls(pod, pki, port, root, *opts, ip=None):
    """nghttpd over TLS (ALPN h2) on pod's IP:port with pki's server certificate."""
    srv = pod.popen(["nghttpd", f"--address={ip or pod.ip}", "-d", str(root), *opts,
                     str(port), pki.key, pki.cert],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pod.wait_listen(port)
    return srv


def grpc_server(pod, binary, port, pki=None, max_age=None, grace=None, max_run=120,
                ip=None):
    """h2grpc server on pod's IP:port: h2c, or TLS (Go crypto/tls) with pki's server
    certificate. max_age (seconds): MaxConnectionAge, so connections older than that
    get GOAWAY. Exits by itself after max_run seconds. stop(srv) returns its lines,
    the last one JSON: {"conns", "rpcs", ...}."""
    argv = [binary, "server", "-addr", f"{ip or pod.ip}:{port}", "-max-run", f"{max_run}s"]
    if pki:
        argv += ["-cert", pki.cert, "-key", pki.key]
    if max_age:
        argv += ["-max-age", f"{max_age}s"]
    if grace:
        argv += ["-max-age-grace", f"{grace}s"]
    srv = pod.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(srv, "listening", 10)
    return srv


def server_summary(lines):
    """The JSON summary a stopped h2grpc server printed last (or None)."""
    for ln in reversed(lines):
        if ln.startswith("{"):
            return json.loads(ln)
    return None


# ---------------------------------------------------------------------------
# clients

def grpc_client(pod, binary, ip, port, mode="reuse", pki=None, sni=SERVICE, duration=4,
                interval=0.05, call_timeout=2, timeout=None):
    """h2grpc client: Health/Check every interval for duration seconds over one
    ClientConn (mode reuse) or a new one per call (percall), or Health/Watch streams
    cancelled by their call_timeout deadline (deadline); TLS when pki is given
    (trusting pki.ca, SNI sni). Returns its JSON summary plus rc, pid, stderr."""
    argv = [binary, "client", "-addr", f"{ip}:{port}", "-mode", mode,
            "-duration", f"{duration}s", "-interval", f"{int(interval * 1000)}ms",
            "-timeout", f"{int(call_timeout * 1000)}ms"]
    if pki:
        argv += ["-ca", pki.ca, "-servername", sni]
    cp = pod.run(argv, timeout=timeout or duration + 4 * call_timeout + 10)
    last = next((ln for ln in reversed(cp.stdout.splitlines()) if ln.startswith("{")), None)
    if last is None:
        raise PeerError(f"h2grpc client printed no summary (rc {cp.returncode}): "
                        f"{cp.stdout!r} {cp.stderr!r}")
    out = json.loads(last)
    out.update(rc=cp.returncode, client_pid=cp.pid, stderr=cp.stderr)
    return out


H2LOAD_REQ = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
H2LOAD_FIN = re.compile(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.M)
H2LOAD_SPAWN = re.compile(r"^spawning thread #\d+: (\d+) total client\(s\)", re.M)
H2LOAD_PROTO = re.compile(r"^Application protocol: (\S+)", re.M)


def parse_h2load(text):
    """h2load's summary as a dict: total, started, done, succeeded, failed, errored,
    timeout, clients (over all threads), req_per_s, seconds, protocol (h2 / h2c)."""
    out = {}
    m = H2LOAD_REQ.search(text)
    if m:
        out.update(zip(("total", "started", "done", "succeeded", "failed", "errored",
                        "timeout"), map(int, m.groups())))
    m = H2LOAD_FIN.search(text)
    if m:
        out["seconds"] = float(m[1]) / {"us": 1e6, "ms": 1e3, "s": 1}[m[2]]
        out["req_per_s"] = float(m[3])
    out["clients"] = sum(int(x) for x in H2LOAD_SPAWN.findall(text))
    m = H2LOAD_PROTO.search(text)
    out["protocol"] = m[1] if m else None
    return out


def h2load(pod, url, *opts, n=100, clients=1, streams=1, threads=1, duration=None,
           timeout=None):
    """One h2load run in pod: n requests (or, with duration, as many as fit in that
    many seconds), over `clients` connections with `streams` concurrent streams each.
    opts: more h2load options. Returns parse_h2load()'s dict plus rc, pid, output."""
    argv = ["h2load", "-n", str(n), "-c", str(clients), "-m", str(streams),
            "-t", str(threads), *map(str, opts)]
    if duration:
        argv += ["-D", str(duration)]
    argv.append(url)
    cp = pod.run(argv, timeout=timeout or (duration or 0) + 30)
    out = parse_h2load(cp.stdout)
    if "total" not in out:
        raise PeerError(f"h2load printed no summary (rc {cp.returncode}): "
                        f"{cp.stdout[-2000:]!r} {cp.stderr[-2000:]!r}")
    out.update(rc=cp.returncode, pid=cp.pid, output=cp.stdout)
    return out


def nghttp(pod, url, *opts, timeout=20):
    """One `nghttp -ns` request (HTTP/2 with prior knowledge for http://, ALPN for
    https://; new connection). Returns rc, pid, code (HTTP status, from -s's table),
    stdout, stderr."""
    cp = pod.run(["nghttp", "-ns", "--timeout=10", *map(str, opts), url], timeout=timeout)
    code = None
    for ln in cp.stdout.splitlines():
        p = ln.split()
        # "id  responseEnd requestStart  process code size request path"
        if len(p) >= 7 and p[0].isdigit() and p[4].isdigit():
            code = int(p[4])
    return {"rc": cp.returncode, "pid": cp.pid, "code": code, "stdout": cp.stdout,
            "stderr": cp.stderr}


# ---------------------------------------------------------------------------
# reading HTTP/2 off the wire (h2c)

def _stream_bytes(segs, to_server, port):
    """One direction's TCP payload in order, retransmissions dropped by sequence
    number. Stops at the first hole (a segment the capture missed): returns
    (bytes, True) then, else (bytes, False)."""
    buf, next_seq = b"", None
    for s in segs:
        if (s["dport"] == port) != to_server or not s["payload"]:
            continue
        p = s["payload"]
        if next_seq is not None and s["seq"] != next_seq:
            skip = (next_seq - s["seq"]) & 0xffffffff
            if skip > 1 << 30:
                return buf, True        # ahead of what we have: bytes are missing
            if skip >= len(p):
                continue                # all old: a retransmission
            p = p[skip:]
        next_seq = (s["seq"] + len(s["payload"])) & 0xffffffff
        buf += p
    return buf, False


def parse_frames(buf):
    """HTTP/2 frames in one direction's byte stream (the client preface, if first, is
    skipped): dicts type, flags, stream, len; GOAWAY adds last_stream_id and error."""
    out, off = [], 0
    if buf.startswith(PREFACE):
        off = len(PREFACE)
    while off + 9 <= len(buf):
        ln = int.from_bytes(buf[off:off + 3], "big")
        typ, flags = buf[off + 3], buf[off + 4]
        sid = struct.unpack("!I", buf[off + 5:off + 9])[0] & 0x7fffffff
        body = buf[off + 9:off + 9 + ln]
        f = {"type": FRAME_NAMES.get(typ, f"?{typ}"), "flags": flags, "stream": sid,
             "len": ln}
        if typ == 7 and len(body) >= 8:
            f["last_stream_id"] = struct.unpack("!I", body[:4])[0] & 0x7fffffff
            f["error"] = H2_ERRORS.get(struct.unpack("!I", body[4:8])[0], "?")
        if len(body) < ln:
            f["truncated"] = True
        out.append(f)
        off += 9 + ln
    return out


def h2_frames(segments, port):
    """Per connection (client port): {"c2s": [frames], "s2c": [frames], "gap": bool}
    of an h2c capture (tlspeers.Capture(...).segments() or tlspeers.parse_pcap()).
    gap: the capture missed segments (tcpdump drops some under heavy load); the
    frames then stop at the first hole."""
    by = {}
    for s in segments:
        if port not in (s["sport"], s["dport"]):
            continue
        cport = s["sport"] if s["dport"] == port else s["dport"]
        by.setdefault(cport, []).append(s)
    out = {}
    for cport, segs in by.items():
        conn = {"gap": False}
        for d in ("c2s", "s2c"):
            buf, gap = _stream_bytes(segs, d == "c2s", port)
            conn[d] = parse_frames(buf)
            conn["gap"] |= gap
        out[cport] = conn
    return out


def frame_counts(frames):
    """Totals over h2_frames()'s result: connections, client streams (HEADERS from
    the client on new odd stream ids), GOAWAY and RST_STREAM frames per direction,
    and how many connections' captures have holes (their counts are then short)."""
    out = {"connections": len(frames), "streams": 0, "goaway_s2c": 0, "goaway_c2s": 0,
           "rst_stream": 0, "with_gaps": 0}
    for conn in frames.values():
        out["with_gaps"] += bool(conn.get("gap"))
        out["streams"] += len({f["stream"] for f in conn["c2s"] if f["type"] == "HEADERS"})
        for d in ("c2s", "s2c"):
            out["goaway_" + d] += sum(f["type"] == "GOAWAY" for f in conn[d])
            out["rst_stream"] += sum(f["type"] == "RST_STREAM" for f in conn[d])
    return out


# ---------------------------------------------------------------------------
# smoke: every scenario without connscope

def _smoke():
    if os.geteuid() != 0:
        sys.exit("smoke needs root")
    tmp = Path(tempfile.mkdtemp(prefix="h2peers-"))
    ok = True
    be_ip = "10.244.1.20"

    def report(name, good, facts, frames=None, recs=None):
        nonlocal ok
        ok &= bool(good)
        print(f"\n== {name}: {'OK' if good else 'FAILED'}")
        print("   " + json.dumps(facts, default=str)[:1500])
        if frames is not None:
            print("   wire: " + json.dumps(frame_counts(frames)))
            for cport, conn in list(frames.items())[:3]:
                for d in ("c2s", "s2c"):
                    kinds = {}
                    for f in conn[d]:
                        kinds[f["type"]] = kinds.get(f["type"], 0) + 1
                    gw = [f"GOAWAY(last={f.get('last_stream_id')},{f.get('error')})"
                          for f in conn[d] if f["type"] == "GOAWAY"]
                    print(f"     :{cport} {d} {kinds} {' '.join(gw)}")
            if len(frames) > 3:
                print(f"     ... {len(frames) - 3} more connections")
        if recs is not None:
            kinds = {}
            for rs in recs.values():
                for r in rs:
                    k = r["type"] + ("/" + r["hs"] if "hs" in r else "")
                    kinds[k] = kinds.get(k, 0) + 1
            print(f"   wire: {len(recs)} TLS connections, records {kinds}")

    def brief(r, *keys):
        return {k: r.get(k) for k in keys}

    try:
        pki = Pki(tmp / "pki", be_ip)
        root = docroot(tmp / "www")
        t0 = time.monotonic()
        binary = build_h2grpc(tmp / "go")
        t1 = time.monotonic()
        build_h2grpc(tmp / "go")        # cached: returns at once
        print(f"built {binary} in {t1 - t0:.1f}s (cached rebuild "
              f"{time.monotonic() - t1:.2f}s)")

        def scenario(name, port, body, tls=False):
            with simpod.Cluster() as c:
                fe = c.add_pod("shop", "frontend", "10.244.1.10")
                be = c.add_pod("shop", "backend", be_ip)
                with Capture(be, port) as cap:
                    good, facts = body(fe, be)
                    cap.stop()
                if tls:
                    report(name, good, facts, recs=cap.tls_records())
                else:
                    report(name, good, facts, frames=h2_frames(cap.segments(), port))

        lkeys = ("rc", "protocol", "clients", "total", "succeeded", "failed", "req_per_s")

        def h2load_h2c(fe, be):
            srv = nghttpd_h2c(be, 31080, root)
            r = h2load(fe, f"http://{be.ip}:31080/", n=200, clients=2, streams=4)
            stop(srv)
            return (r["rc"] == 0 and r["succeeded"] == 200 and r["clients"] == 2
                    and r["protocol"] == "h2c"), brief(r, *lkeys)
        scenario("h2load -n 200 -c 2 -m 4 / nghttpd --no-tls (h2c)", 31080, h2load_h2c)

        def h2load_timed(fe, be):
            srv = nghttpd_h2c(be, 31081, root)
            r = h2load(fe, f"http://{be.ip}:31081/", n=10**8, clients=3, streams=10,
                       duration=1)
            stop(srv)
            return (r["rc"] == 0 and r["succeeded"] > 100 and r["failed"] == 0
                    and r["clients"] == 3), brief(r, *lkeys, "seconds")
        # (at this rate tcpdump misses packets: the wire counts stop at the holes)
        scenario("h2load -c 3 -m 10 -D 1 (timed) / nghttpd h2c", 31081, h2load_timed)

        def h2load_tls(fe, be):
            srv = nghttpd_tls(be, pki, 31443, root)
            r = h2load(fe, f"https://{be.ip}:31443/", n=200, clients=2, streams=4)
            stop(srv)
            return (r["rc"] == 0 and r["succeeded"] == 200 and r["clients"] == 2
                    and r["protocol"] == "h2"), brief(r, *lkeys)
        scenario("h2load / nghttpd over TLS", 31443, h2load_tls, tls=True)

        def nghttp_h2c(fe, be):
            srv = nghttpd_h2c(be, 31082, root)
            r = [nghttp(fe, f"http://{be.ip}:31082/") for _ in range(2)]
            stop(srv)
            return all(x["rc"] == 0 and x["code"] == 200 for x in r), \
                [brief(x, "rc", "code") for x in r]
        scenario("nghttp x2 / nghttpd h2c", 31082, nghttp_h2c)

        def nghttp_tls(fe, be):
            srv = nghttpd_tls(be, pki, 31444, root)
            r = nghttp(fe, f"https://{be.ip}:31444/")
            stop(srv)
            return r["rc"] == 0 and r["code"] == 200, brief(r, "rc", "code")
        scenario("nghttp / nghttpd over TLS", 31444, nghttp_tls, tls=True)

        def grpc(mode, tls, max_age, port, check):
            def body(fe, be):
                srv = grpc_server(be, binary, port, pki=pki if tls else None,
                                  max_age=max_age)
                r = grpc_client(fe, binary, be.ip, port, mode=mode,
                                pki=pki if tls else None, duration=4 if max_age else 2)
                s = server_summary(stop(srv))
                facts = {"client": brief(r, "rc", "mode", "tls", "calls", "ok", "failed",
                                         "conns", "first_error"), "server": s}
                return r["rc"] == 0 and r["failed"] == 0 and check(r, s), facts
            return body

        scenario("gRPC h2c reuse, server MaxConnectionAge 1s, 4 s of calls", 31090,
                 grpc("reuse", False, 1, 31090,
                      lambda r, s: r["calls"] > 40 and 3 <= r["conns"] <= 6
                      and s["conns"] == r["conns"]))
        scenario("gRPC h2c reuse, no max age, 2 s", 31091,
                 grpc("reuse", False, None, 31091, lambda r, s: r["conns"] == 1))
        scenario("gRPC h2c percall, 2 s", 31092,
                 grpc("percall", False, None, 31092, lambda r, s: r["conns"] == r["calls"]))
        scenario("gRPC TLS (Go crypto/tls) reuse, MaxConnectionAge 1s, 4 s", 31445,
                 grpc("reuse", True, 1, 31445, lambda r, s: r["conns"] >= 3), tls=True)
        scenario("gRPC TLS percall, 2 s", 31446,
                 grpc("percall", True, None, 31446, lambda r, s: r["conns"] == r["calls"]),
                 tls=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nsmoke:", "all peers OK" if ok else "SOME PEERS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["smoke"]:
        sys.exit(_smoke())
    print("usage: h2peers.py smoke   (run the HTTP/2 peers without connscope)",
          file=sys.stderr)
    sys.exit(2)
