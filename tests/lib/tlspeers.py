"""TLS peers for connscope's live tests: certificates, real TLS servers and clients
(OpenSSL's s_server/s_client, nghttpd, curl, a Go crypto/tls client), and a packet
capture that shows what went over the wire.

Everything runs inside simulated pods (tests/lib/simpod.py) and is bounded:
servers exit after a known number of connections (or die with the cluster),
clients run with a time limit.

  Pki(dir, server_ip)       a throwaway CA, a server certificate it signed (SAN: the
                            backend's service name and IP), a self-signed certificate
                            for the same names, and an unrelated CA
  build_go("tlsclient", d)  builds tests/lib/go/tlsclient with Debian's golang-go, offline
  Capture(pod, port)        tcpdump on the pod's eth0, parsed: TCP segments and TLS records

The scenario functions (openssl_pair, curl_nghttpd, go_client, hang_server + a
client that gives up, ...) run servers and clients and return what the peers
themselves reported, so tests can check the peers without connscope first.

    /usr/bin/python3 tests/lib/tlspeers.py smoke

runs every scenario without connscope and prints the peers' results and the TLS
records seen on the wire (sizes of ClientHellos, alerts, ...).
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simpod  # noqa: E402
from simpod import wait_for_line  # noqa: E402

GO_DIR = Path(__file__).resolve().parent / "go"
SERVICE = "backend.shop.svc.cluster.local"

# TLS record content types and the alert names connscope uses (RFC 8446 §6).
CT_NAMES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
HS_NAMES = {1: "client_hello", 2: "server_hello", 4: "new_session_ticket",
            8: "encrypted_extensions", 11: "certificate", 12: "server_key_exchange",
            13: "certificate_request", 14: "server_hello_done", 15: "certificate_verify",
            16: "client_key_exchange", 20: "finished"}
ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
               40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
               44: "certificate_revoked", 45: "certificate_expired",
               46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
               50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
               80: "internal_error", 90: "user_canceled", 112: "unrecognized_name",
               116: "certificate_required", 120: "no_application_protocol"}


class PeerError(RuntimeError):
    pass


def _run(argv, timeout=60, env=None, cwd=None):
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise PeerError(f"timed out after {timeout}s: {' '.join(map(str, argv))}")
    if cp.returncode != 0:
        raise PeerError(f"failed ({cp.returncode}): {' '.join(map(str, argv))}\n"
                        f"{cp.stdout}{cp.stderr}")
    return cp


# ---------------------------------------------------------------------------
# certificates

class Pki:
    """Certificates for one test session, made with `openssl req` in directory d.

    ca.pem/ca.key            the test CA
    server.pem/server.key    signed by it; SAN DNS:<SERVICE>, IP:<server_ip>
    selfsigned.pem/.key      self-signed, same names (a client must reject it)
    other-ca.pem/.key        a CA that signed nothing here (trusting it is no help)
    """

    def __init__(self, d, server_ip, names=(SERVICE,)):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server_ip = server_ip
        self.names = list(names)
        san = ",".join([f"DNS:{n}" for n in self.names] + [f"IP:{server_ip}"])
        self.ca, self.ca_key = self._ca("ca", "connscope test CA")
        self.other_ca, _ = self._ca("other-ca", "connscope unrelated CA")
        self.cert, self.key = self._leaf("server", san, self.ca, self.ca_key)
        self.selfsigned, self.selfsigned_key = self._leaf("selfsigned", san, None, None)

    def _newkey(self):
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def _ca(self, stem, cn):
        cert, key = self.dir / f"{stem}.pem", self.dir / f"{stem}.key"
        _run(["openssl", "req", "-x509", *self._newkey(), "-keyout", key, "-out", cert,
              "-days", "2", "-subj", f"/CN={cn}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        return str(cert), str(key)

    def _leaf(self, stem, san, ca, ca_key):
        cert, key = self.dir / f"{stem}.pem", self.dir / f"{stem}.key"
        signer = ["-CA", ca, "-CAkey", ca_key] if ca else []
        _run(["openssl", "req", "-x509", *self._newkey(), "-keyout", key, "-out", cert,
              "-days", "2", "-subj", f"/CN={self.names[0]}", *signer,
              "-addext", f"subjectAltName={san}",
              "-addext", "basicConstraints=critical,CA:FALSE",
              "-addext", "extendedKeyUsage=serverAuth"])
        return str(cert), str(key)

    def check(self):
        _run(["openssl", "verify", "-CAfile", self.ca, self.cert])
        cp = subprocess.run(["openssl", "verify", "-CAfile", self.ca, self.selfsigned],
                            capture_output=True, text=True, timeout=30)
        if cp.returncode == 0:
            raise PeerError("the self-signed certificate verifies against the test CA")


# ---------------------------------------------------------------------------
# Go

def build_go(name, outdir, timeout=300):
    """Build tests/lib/go/<name>/main.go with Debian's golang-go into outdir/<name>.

    Standard library only: GO111MODULE=off, GOPROXY=off (nothing is fetched), a
    fresh GOCACHE under outdir. Returns the binary's path.
    """
    go = shutil.which("go") or "/usr/bin/go"
    if not os.access(go, os.X_OK):
        raise PeerError("no go compiler: apt-get install golang-go")
    out = Path(outdir) / name
    env = {"PATH": "/usr/bin:/bin", "HOME": str(outdir), "GO111MODULE": "off",
           "GOPROXY": "off", "GOFLAGS": "", "GOPATH": str(Path(outdir) / "gopath"),
           "GOCACHE": str(Path(outdir) / "gocache"), "CGO_ENABLED": "0"}
    _run([go, "build", "-o", str(out), "main.go"], timeout=timeout, env=env,
         cwd=GO_DIR / name)
    return str(out)


# ---------------------------------------------------------------------------
# packet capture

class Capture:
    """tcpdump on a pod's eth0 for one TCP port, read as pcap from a pipe.

    with Capture(pod, port) as cap: ...traffic...
    then cap.segments(), cap.streams(), cap.tls_records().
    """

    def __init__(self, pod, port, iface="eth0"):
        self.pod, self.port, self.iface = pod, port, iface
        self.data = b""
        self.proc = None

    def start(self):
        # -U: write each packet at once; pcap to stdout: no file permission or
        # AppArmor trouble; the process sits in the pod's cgroup and dies with it.
        # --immediate-mode: without it, packets still in the kernel's buffer block
        # when tcpdump gets SIGINT are lost.
        self.proc = self.pod.popen(["tcpdump", "-i", self.iface, "--immediate-mode", "-U",
                                    "-n", "-s", "0", "-w", "-", "tcp", "port", str(self.port)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._chunks = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err = []
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()
        simpod.wait_until(lambda: any("listening on" in e for e in self._err)
                          or self.proc.poll() is not None, 10, what="tcpdump to listen")
        if self.proc.poll() is not None:
            raise PeerError(f"tcpdump exited: {''.join(self._err)}")
        return self

    def _read(self):
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
            self._chunks.append(chunk)

    def _read_err(self):
        for line in self.proc.stderr:
            self._err.append(line.decode(errors="replace"))

    def stop(self, settle=0.3):
        time.sleep(settle)       # the last packets are still on their way
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=5)
        self.data = b"".join(self._chunks)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.stop(settle=0)
        return False

    def segments(self):
        return parse_pcap(self.data)

    def streams(self):
        """Per TCP connection (keyed by the client's port): the segments in order."""
        by = {}
        for s in self.segments():
            cport = s["sport"] if s["dport"] == self.port else s["dport"]
            by.setdefault(cport, []).append(s)
        return by

    def tls_records(self):
        """Per connection (client port): the TLS records in each direction, as
        dicts {dir: "c2s"|"s2c", type, len, hs (handshake type of a clear record),
        alert (for a clear alert), segments (how many TCP segments carried it)}."""
        return {cport: tls_records(segs, self.port) for cport, segs in self.streams().items()}


def parse_pcap(data):
    """Ethernet/IPv4/TCP segments of a classic pcap: dicts with ts, src, sport, dst,
    dport, flags, seq, payload."""
    out = []
    if len(data) < 24:
        return out
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xa1b2c3d4, 0xa1b23c4d):
        end = "<"
    elif magic in (0xd4c3b2a1, 0x4d3cb2a1):
        end = ">"
    else:
        raise PeerError(f"not a pcap: magic {magic:#x}")
    nano = magic in (0xa1b23c4d, 0x4d3cb2a1)
    linktype = struct.unpack(end + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(end + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < incl:
            break
        if linktype == 1:           # Ethernet
            if len(pkt) < 14 or pkt[12:14] != b"\x08\x00":
                continue
            ip = pkt[14:]
        elif linktype == 113:       # Linux cooked
            ip = pkt[16:]
        else:
            continue
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:tot]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        out.append({"ts": sec + frac / (1e9 if nano else 1e6),
                    "src": ".".join(map(str, ip[12:16])), "sport": sport,
                    "dst": ".".join(map(str, ip[16:20])), "dport": dport,
                    "flags": tcp[13], "seq": seq, "ip_len": tot,
                    "payload": bytes(tcp[doff:])})
    return out


def tls_records(segs, server_port):
    """Split each direction's TCP byte stream (in capture order, retransmissions
    dropped by sequence number) into TLS records."""
    recs = []
    for d in ("c2s", "s2c"):
        mine = [s for s in segs if (s["dport"] == server_port) == (d == "c2s")]
        buf, owners, next_seq = b"", [], None
        for i, s in enumerate(mine):
            p = s["payload"]
            if not p:
                continue
            if next_seq is not None and s["seq"] != next_seq:
                # retransmission or overlap: keep only bytes beyond next_seq
                skip = (next_seq - s["seq"]) & 0xffffffff
                if skip >= len(p) or skip > 1 << 30:
                    continue
                p = p[skip:]
            next_seq = (s["seq"] + len(s["payload"])) & 0xffffffff
            owners += [i] * len(p)
            buf += p
        off, after_ccs = 0, False
        while off + 5 <= len(buf):
            ct, ln = buf[off], struct.unpack("!H", buf[off + 3:off + 5])[0]
            if ct not in CT_NAMES:
                recs.append({"dir": d, "type": f"?{ct}", "len": len(buf) - off})
                break
            body = buf[off + 5:off + 5 + ln]
            r = {"dir": d, "type": CT_NAMES[ct], "len": ln, "ts": mine[owners[off]]["ts"],
                 "segments": len(set(owners[off:off + 5 + ln]))}
            if ct == 22 and len(body) >= 4:
                # after ChangeCipherSpec a TLS 1.2 handshake record (Finished) is
                # encrypted; a TLS 1.3 ClientHello after HelloRetryRequest is not
                mlen = int.from_bytes(body[1:4], "big")
                clear = body[0] in HS_NAMES and (mlen + 4 == ln
                                                 or (not after_ccs and mlen + 4 < ln))
                r["hs"] = HS_NAMES[body[0]] if clear else "encrypted"
            if ct == 21:
                if ln == 2 and len(body) == 2 and body[0] in (1, 2):
                    r["alert"] = ALERT_NAMES.get(body[1], body[1])
                    r["level"] = "fatal" if body[0] == 2 else "warning"
                else:
                    r["alert"] = "encrypted"
            if ct == 20:
                after_ccs = True
            if len(body) < ln:
                r["truncated"] = True
            recs.append(r)
            off += 5 + ln
    recs.sort(key=lambda r: r.get("ts", 0))
    return recs


def describe(recs):
    """TLS records as one short line per record, for messages and reports."""
    out = []
    for r in recs:
        what = r["type"] + (f"/{r['hs']}" if "hs" in r else "") \
            + (f"/{r['level']}:{r['alert']}" if "level" in r
               else f"/{r['alert']}" if "alert" in r else "")
        out.append(f"{r['dir']} {what} len={r['len']} segs={r.get('segments')}")
    return out


# ---------------------------------------------------------------------------
# servers

def openssl_server(pod, pki, port, *opts, naccept=None, cert=None, key=None):
    """`openssl s_server -www` on pod's IP:port; answers GET with a status page.
    naccept: exit after that many connections. opts: e.g. "-tls1_2"."""
    argv = ["openssl", "s_server", "-accept", f"{pod.ip}:{port}", "-www",
            "-cert", cert or pki.cert, "-key", key or pki.key, *opts]
    if naccept:
        argv += ["-naccept", str(naccept)]
    srv = pod.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pod.wait_listen(port)
    return srv


def nghttpd_server(pod, pki, port, docroot):
    """nghttpd (HTTP/2 over TLS, ALPN h2) on pod's IP:port serving docroot.

    Its only TLS 1.3 key exchange group is P-256: curl (key share X25519) gets a
    HelloRetryRequest and sends a second ClientHello; `curl --curves X25519` is
    refused with a clear handshake_failure alert before any ServerHello."""
    srv = pod.popen(["nghttpd", f"--address={pod.ip}", "-d", str(docroot), str(port),
                     pki.key, pki.cert],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pod.wait_listen(port)
    return srv


# Accepts TCP connections and never answers: reads (so nothing piles up) and
# waits for the client to give up. Prints READY, ACCEPTED <port>, EOF <port>.
HANG_SERVER = r'''
import socket, sys, threading
ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(16)
print("READY", flush=True)
def serve(c, peer):
    c.settimeout(60)
    n = 0
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
    except OSError:
        pass
    print("EOF %d %d" % (peer[1], n), flush=True)
    c.close()
ts = []
for i in range(count):
    c, peer = s.accept()
    print("ACCEPTED %d" % peer[1], flush=True)
    t = threading.Thread(target=serve, args=(c, peer))
    t.start()
    ts.append(t)
for t in ts:
    t.join()
print("DONE", flush=True)
'''


def hang_server(pod, port, count):
    srv = pod.python(HANG_SERVER, pod.ip, port, count)
    wait_for_line(srv, "READY", 10)
    return srv


# ---------------------------------------------------------------------------
# clients

def s_client(pod, ip, port, *opts, sni=SERVICE, request=True, give_up=None, timeout=20):
    """One `openssl s_client -brief` connection (sni=None: no SNI at all).
    request=True sends an HTTP/1.0
    GET (the -www server answers and closes first); otherwise stdin is empty.
    give_up=SEC: run under `timeout SEC` (the client gives up then; exit 124).

    Returns a dict: rc, version ("TLSv1.2"...), verify_error, stdout, stderr,
    pid (of s_client, or of `timeout` with give_up), start and end (monotonic).
    """
    argv = ["openssl", "s_client", "-brief", "-connect", f"{ip}:{port}",
            *(["-servername", sni] if sni else ["-noservername"]), *opts]
    if request:
        argv.insert(2, "-ign_eof")
    if give_up:
        argv = ["timeout", str(give_up), *argv]
    t0 = time.monotonic()
    cp = pod.run(argv, timeout=timeout,
                 input=b"GET / HTTP/1.0\r\n\r\n" if request else b"")
    t1 = time.monotonic()
    version = None
    for ln in cp.stderr.splitlines():
        if ln.startswith("Protocol version:"):
            version = ln.split(":", 1)[1].strip()
    verr = next((ln for ln in cp.stderr.splitlines() if "verify error" in ln), None)
    return {"rc": cp.returncode, "version": version, "verify_error": verr,
            "stdout": cp.stdout, "stderr": cp.stderr, "pid": cp.pid,
            "start": t0, "end": t1}


def curl(pod, pki, port, server_ip, *opts, sni=SERVICE, path="/", timeout=20):
    """One `curl --http2` request to https://<sni>:port/ resolved to server_ip.
    Returns rc, http_version, code, local_port, pid, stderr."""
    cp = pod.run(["curl", "-sS", "--http2", "--max-time", "10", "--cacert", pki.ca,
                  "--resolve", f"{sni}:{port}:{server_ip}", "-o", "/dev/null",
                  "-w", "%{http_version} %{http_code} %{local_port}", *opts,
                  f"https://{sni}:{port}{path}"], timeout=timeout)
    parts = cp.stdout.split()
    out = {"rc": cp.returncode, "pid": cp.pid, "stderr": cp.stderr}
    if len(parts) == 3:
        out.update(http_version=parts[0], code=int(parts[1]), local_port=int(parts[2]))
    return out


def go_client(pod, binary, ip, port, *flags, sni=SERVICE, n=1, timeout_s=5, timeout=60):
    """The Go client: n new connections. Returns rc, pid, results (one per
    connection), summary (the last line), stderr."""
    cp = pod.run([binary, "-addr", f"{ip}:{port}", "-sni", sni, "-n", str(n),
                  "-timeout", f"{timeout_s}s", *flags], timeout=timeout)
    lines = [json.loads(ln) for ln in cp.stdout.splitlines() if ln.strip()]
    if not lines or "pid" not in lines[-1]:
        raise PeerError(f"Go client printed no summary (rc {cp.returncode}): "
                        f"{cp.stdout!r} {cp.stderr!r}")
    return {"rc": cp.returncode, "pid": cp.pid, "results": lines[:-1],
            "summary": lines[-1], "stderr": cp.stderr}


# ---------------------------------------------------------------------------
# the client pod with a small MTU: a ClientHello cannot fit in one segment

def small_mtu(pod, mtu=300):
    """Set the pod's eth0 MTU (its MSS becomes mtu - 40) and turn GSO off
    (gso_max_segs 1), so that every TCP segment is its own packet all the way,
    including where BPF sees it. The bridge side keeps 1500; the server learns the
    small MSS from the SYN, so nothing is dropped."""
    pod.netns_run(["ip", "link", "set", "eth0", "mtu", str(mtu)])
    pod.netns_run(["ip", "link", "set", "eth0", "gso_max_segs", "1"])


# ---------------------------------------------------------------------------
# smoke: every scenario without connscope

def _smoke():
    if os.geteuid() != 0:
        sys.exit("smoke needs root")
    tmp = Path(tempfile.mkdtemp(prefix="tlspeers-"))
    ok = True

    def report(name, good, facts, recs=None):
        nonlocal ok
        ok &= bool(good)
        print(f"\n== {name}: {'OK' if good else 'FAILED'}")
        print("   " + json.dumps(facts, default=str)[:1500])
        for cport, rs in (recs or {}).items():
            print(f"   connection :{cport}")
            for ln in describe(rs):
                print("     " + ln)

    try:
        pki = Pki(tmp / "pki", "10.244.1.20")
        pki.check()
        t0 = time.monotonic()
        gocl = build_go("tlsclient", tmp / "go")
        print(f"built {gocl} in {time.monotonic() - t0:.1f}s")
        (tmp / "www").mkdir()
        (tmp / "www" / "index.html").write_text("hello\n")

        def cluster():
            c = simpod.Cluster()
            c.__enter__()
            fe = c.add_pod("shop", "frontend", "10.244.1.10")
            be = c.add_pod("shop", "backend", "10.244.1.20")
            return c, fe, be

        for ver in ("-tls1_2", "-tls1_3"):
            c, fe, be = cluster()
            try:
                port = 30443
                with Capture(be, port) as cap:
                    srv = openssl_server(be, pki, port, ver, naccept=3)
                    res = [s_client(fe, be.ip, port, ver, "-CAfile", pki.ca)
                           for _ in range(3)]
                    srv.wait(timeout=10)
                    cap.stop()
                good = all(r["rc"] == 0 for r in res) and srv.returncode == 0
                report(f"openssl {ver}", good,
                       [{k: r[k] for k in ("rc", "version", "verify_error")} for r in res],
                       cap.tls_records())
            finally:
                c.close()

        c, fe, be = cluster()
        try:
            port = 30444
            with Capture(be, port) as cap:
                nghttpd_server(be, pki, port, tmp / "www")
                res = [curl(fe, pki, port, be.ip) for _ in range(2)]
                cap.stop()
            good = all(r["rc"] == 0 and r.get("http_version") == "2" for r in res)
            report("curl --http2 / nghttpd", good, res, cap.tls_records())
        finally:
            c.close()

        c, fe, be = cluster()
        try:
            port = 30445
            with Capture(be, port) as cap:
                srv = openssl_server(be, pki, port, naccept=3)
                res = go_client(fe, gocl, be.ip, port, "-ca", pki.ca, n=3)
                srv.wait(timeout=10)
                cap.stop()
            good = res["rc"] == 0 and res["summary"]["ok"] == 3
            report("Go client / s_server -www", good, res, cap.tls_records())
        finally:
            c.close()

        c, fe, be = cluster()
        try:
            port = 30446
            with Capture(be, port) as cap:
                srv = hang_server(be, port, 2)
                res = [s_client(fe, be.ip, port, request=False, give_up=3) for _ in range(2)]
                wait_for_line(srv, "DONE", 10)
                cap.stop()
            good = all(r["rc"] == 124 and 2.9 < r["end"] - r["start"] < 4 for r in res)
            report("hanging server / s_client gives up at 3 s", good,
                   [{"rc": r["rc"], "took": round(r["end"] - r["start"], 2)} for r in res],
                   cap.tls_records())
        finally:
            c.close()

        for name, srv_opts, cl in (
                ("reject TLS1.3: Go client, self-signed server", (), "go"),
                ("reject TLS1.2: Go client, self-signed server", (), "go12"),
                ("reject TLS1.2: s_client -verify_return_error, unrelated CA", ("-tls1_2",),
                 "openssl")):
            c, fe, be = cluster()
            try:
                port = 30447
                with Capture(be, port) as cap:
                    srv = openssl_server(be, pki, port, *srv_opts, naccept=1,
                                         cert=pki.selfsigned, key=pki.selfsigned_key)
                    if cl == "openssl":
                        r = s_client(fe, be.ip, port, "-tls1_2", "-verify_return_error",
                                     "-CAfile", pki.other_ca)
                        facts = {k: r[k] for k in ("rc", "verify_error")}
                        good = r["rc"] != 0 and r["verify_error"]
                    else:
                        extra = ["-max-version", "1.2"] if cl == "go12" else []
                        r = go_client(fe, gocl, be.ip, port, *extra)
                        facts = r["results"]
                        good = r["rc"] == 1 and "x509" in r["results"][0]["error"]
                    srv.wait(timeout=10)
                    cap.stop()
                report(name, good, facts, cap.tls_records())
            finally:
                c.close()

        c, fe, be = cluster()
        try:
            port = 30448
            small_mtu(fe, 300)
            with Capture(fe, port) as cap_fe, Capture(be, port) as cap_be:
                nghttpd_server(be, pki, port, tmp / "www")
                res = curl(fe, pki, port, be.ip)
                cap_fe.stop()
                cap_be.stop()
            big = [s["ip_len"] for s in cap_fe.segments()
                   if s["src"] == fe.ip and s["ip_len"] > 300]
            ch = [r for rs in cap_be.tls_records().values() for r in rs
                  if r.get("hs") == "client_hello"]
            good = res["rc"] == 0 and not big and ch and ch[0]["segments"] > 1
            report("curl over MTU 300 (split ClientHello)", good,
                   {"curl": res, "client packets over 300 bytes": big,
                    "client_hello": ch}, cap_be.tls_records())
        finally:
            c.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nsmoke:", "all peers OK" if ok else "SOME PEERS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["smoke"]:
        sys.exit(_smoke())
    print("usage: tlspeers.py smoke   (run the TLS peers without connscope)", file=sys.stderr)
    sys.exit(2)
