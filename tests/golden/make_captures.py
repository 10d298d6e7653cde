#!/usr/bin/python3
"""Make the golden captures in tests/golden/captures/ (run as root; not part of the
test: the committed files are what tests/golden/run.py replays).

    sudo /usr/bin/python3 tests/golden/make_captures.py [--out DIR] [NAME...]

makes every scenario (or those named) into captures/ (or DIR, to compare a new
run with the committed files first).

Each scenario runs real peers between two simulated pods (tests/lib/simpod.py:
network namespaces, veth, cgroups) and captures the frontend pod's eth0 with
tcpdump (Ethernet, full snap length). The pods, addresses and server ports are
fixed, and so are the client ports wherever the client lets us bind one (our
Python clients, curl --local-port); nghttp2's tools and grpc-go pick their own.
Times, sequence numbers, MAC addresses and TLS secrets differ on every run, so
regenerating a capture means regenerating its expected output (run.py --update)
and reviewing the diff.

Scenarios (NAME: what the capture holds):
  h2c           h2load (2 connections, 8 requests) and one nghttp run against
                nghttpd --no-tls
  tls-keylog    curl --http2 against nghttpd over TLS: one TLS 1.3 connection and
                one TLS 1.2 connection, 2 requests each; tls-keylog.keys is their
                SSLKEYLOGFILE
  refused       3 connects to a port nobody listens on (RST in answer to each SYN)
  connect-timeout  one connect whose SYNs the server's namespace drops (nft): the
                client retransmits its SYN and gives up after 3.5 s
  reset         one connection the server resets (SO_LINGER 0) and one the client
                resets
  close-wait    the client sends and closes; the server never closes for 3 s
                (CLOSE_WAIT), then is killed and its FIN goes out
  grpc-goaway   grpc-go client reusing one ClientConn for 3.5 s against a grpc-go
                server with MaxConnectionAge 1 s: every connection ends with the
                server's GOAWAY
  joined-midway a long h2c connection to nghttpd whose first stream went before the
                capture started: the capture holds no SYN, then 3 more streams and
                the client's GOAWAY
  h2-goaway-error  an h2c client that sends a GOAWAY nghttpd must reject (its last
                stream id is one of the client's own streams): nghttpd answers with
                GOAWAY(PROTOCOL_ERROR)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))

import h2peers  # noqa: E402
import pcaps  # noqa: E402
import simpod  # noqa: E402
import tlspeers  # noqa: E402
import workloads  # noqa: E402
from simpod import wait_for_line  # noqa: E402

CAPS = HERE / "captures"
WORK = HERE.parent.parent / ".output" / "golden"
NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
# kubectl-style identities for pods.json: fixed, so the expected output is stable
UIDS = {"frontend": "6f1c2a4e-0b1d-4c55-9a77-1e2f3a4b5c6d",
        "backend": "8d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5"}

PORT = {"h2c": 32080, "tls": 32443, "refused": 32001, "connect-timeout": 32005, "rst-by-server": 32002,
        "rst-by-client": 32003, "close-wait": 32004, "grpc": 32050, "midway": 32081,
        "bad-goaway": 32082}
LOCAL = {"tls13": 40443, "tls12": 40444, "refused": 40001, "connect-timeout": 40005, "rst-by-server": 40002,
         "rst-by-client": 40003, "close-wait": 40004, "midway": 40081,
         "bad-goaway": 40082}

# A TCP client that binds a fixed local port. Modes (the server side is
# tests/lib/workloads.py's SERVER):
#   refused N     N connects from local ports lport, lport+1, ... that must be refused
#   timeout       one connect that gets no answer; the client gives up after 3.5 s
#   send-close    send 64 bytes and close without reading
#   rst           send, read the echo, close with SO_LINGER {1,0} (the client resets)
#   wait-reset    send, read the echo, send "g", wait for the server's RST
CLIENT = r'''
import json, socket, struct, sys
mode, ip, port, lport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
payload = bytes(range(64))
out = []
for i in range(count):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("", lport + i))
    c.settimeout(3.5 if mode == "timeout" else 10)
    try:
        c.connect((ip, port))
    except ConnectionRefusedError:
        out.append("refused")
        c.close()
        continue
    except (TimeoutError, socket.timeout):
        out.append("timeout")
        c.close()
        continue
    c.sendall(payload)
    if mode == "send-close":
        c.close()
        out.append("sent")
        continue
    got = b""
    while len(got) < len(payload):
        d = c.recv(len(payload) - len(got))
        if not d:
            break
        got += d
    if mode == "rst":
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        out.append("rst_sent")
    elif mode == "wait-reset":
        c.sendall(b"g")
        try:
            out.append("no_reset %r" % c.recv(4096))
        except ConnectionResetError:
            out.append("reset")
        c.close()
print(json.dumps(out), flush=True)
'''

# An HTTP/2 client with prior knowledge (h2c) on one connection. Mode midway:
# stream 1, then "STARTED" on stdout and a wait for a line on stdin (the capture
# starts then), then streams 3, 5, 7 one after the other, a GOAWAY(NO_ERROR) with
# last stream id 0 and close. Mode bad-goaway: streams 1 and 3, then a GOAWAY whose
# last stream id is 3, one of the client's own streams, which RFC 9113 §6.8 does
# not allow (it names streams the sender may still process: a client's are the
# server's pushes); nghttpd answers with GOAWAY(PROTOCOL_ERROR).
# Requests are HPACK without Huffman or indexing: :method GET, :scheme http,
# :path /index.html, :authority ip:port.
H2_CLIENT = r'''
import json, socket, struct, sys
mode, ip, port, lport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def frame(typ, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + \
        struct.pack(">I", sid) + payload

def lit(idx, value):
    v = value.encode()
    return bytes([idx, len(v)]) + v

block = b"\x82\x86" + lit(4, "/index.html") + lit(1, "%s:%d" % (ip, port))
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
c.bind(("", lport))
c.settimeout(10)
c.connect((ip, port))
c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
buf = b""

def read_frame():
    global buf
    while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
        d = c.recv(65536)
        if not d:
            raise EOFError("server closed")
        buf += d
    n = int.from_bytes(buf[:3], "big")
    typ, flags, sid = buf[3], buf[4], struct.unpack(">I", buf[5:9])[0] & 0x7fffffff
    buf = buf[9 + n:]
    return typ, flags, sid

def request(sid):
    c.sendall(frame(1, 0x5, sid, block))      # HEADERS, END_STREAM | END_HEADERS
    while True:
        typ, flags, s = read_frame()
        if typ == 4 and not flags & 1:
            c.sendall(frame(4, 1, 0))         # SETTINGS ACK
        if s == sid and typ in (0, 1) and flags & 1:
            return

request(1)
if mode == "midway":
    print("STARTED", flush=True)
    sys.stdin.readline()
    for sid in (3, 5, 7):
        request(sid)
    c.sendall(frame(7, 0, 0, struct.pack(">II", 0, 0)))
else:
    request(3)
    c.sendall(frame(7, 0, 0, struct.pack(">II", 3, 0)))
c.shutdown(socket.SHUT_WR)
try:
    while c.recv(65536):
        pass
except OSError:
    pass
c.close()
print(json.dumps({"done": mode}), flush=True)
'''


class FixedPod:
    """What pods.json needs of a pod, with a fixed uid."""

    def __init__(self, name, ip):
        self.namespace, self.name, self.ip = NS, name, ip
        self.uid, self.container = UIDS[name], "app"


def client(pod, mode, port, lport, count=1):
    cp = pod.python(CLIENT, mode, BE_IP, port, lport, count, wait=True, timeout=60)
    if cp.returncode != 0:
        raise RuntimeError(f"client {mode}: {cp.stderr}")
    return json.loads(cp.stdout.splitlines()[-1])


def capture(fe, name, ports):
    """tcpdump on the frontend's eth0 into captures/<name>.pcap."""
    return pcaps.Tcpdump(CAPS / f"{name}.pcap", ports, pod=fe)


def check_drops(cap):
    if cap.stats.get("dropped", 0):
        raise RuntimeError(f"{cap.path}: tcpdump dropped packets: {cap.stats}")


# ---------------------------------------------------------------------------
# scenarios: each takes (fe, be) and writes captures/<name>.pcap

def h2c(fe, be):
    root = h2peers.docroot(WORK / "www")
    srv = h2peers.nghttpd_h2c(be, PORT["h2c"], root)
    with capture(fe, "h2c", PORT["h2c"]) as cap:
        url = f"http://{BE_IP}:{PORT['h2c']}/index.html"
        r = h2peers.h2load(fe, url, n=8, clients=2, streams=4)
        assert r["succeeded"] == 8 and r["clients"] == 2, r
        assert h2peers.nghttp(fe, url)["code"] == 200
        cap.stop()
    h2peers.stop(srv)
    check_drops(cap)


def tls_keylog(fe, be):
    pki = tlspeers.Pki(WORK / "pki", BE_IP)
    root = h2peers.docroot(WORK / "www")
    keys = CAPS / "tls-keylog.keys"
    keys.unlink(missing_ok=True)
    srv = h2peers.nghttpd_tls(be, pki, PORT["tls"], root)
    url = f"https://{tlspeers.SERVICE}:{PORT['tls']}/index.html"
    cases = (("tls13", ["--tlsv1.3"]),
             ("tls12", ["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"]))
    with capture(fe, "tls-keylog", PORT["tls"]) as cap:
        for name, opts in cases:
            cp = fe.run(["env", f"SSLKEYLOGFILE={keys}", "curl", "-sS", "--http2",
                         "--cacert", pki.ca, "--max-time", "10",
                         "--local-port", str(LOCAL[name]),
                         "--resolve", f"{tlspeers.SERVICE}:{PORT['tls']}:{BE_IP}",
                         "-w", "%{http_version} %{http_code}\\n", *opts,
                         "-o", "/dev/null", url, "-o", "/dev/null", url], timeout=30)
            assert cp.returncode == 0 and cp.stdout.split() == ["2", "200"] * 2, \
                (cp.returncode, cp.stdout, cp.stderr)
        cap.stop()
    h2peers.stop(srv)
    check_drops(cap)


def refused(fe, be):
    with capture(fe, "refused", PORT["refused"]) as cap:
        assert client(fe, "refused", PORT["refused"], LOCAL["refused"], 3) == ["refused"] * 3
        cap.stop()
    check_drops(cap)


def connect_timeout(fe, be):
    port = PORT["connect-timeout"]
    for rule in (["add", "table", "inet", "golden"],
                 ["add", "chain", "inet", "golden", "in",
                  "{ type filter hook input priority 0; }"],
                 ["add", "rule", "inet", "golden", "in", "tcp", "dport", str(port), "drop"]):
        be.netns_run(["nft", *rule])
    with capture(fe, "connect-timeout", port) as cap:
        assert client(fe, "timeout", port, LOCAL["connect-timeout"]) == ["timeout"]
        cap.stop()
    check_drops(cap)


def reset(fe, be):
    ports = [PORT["rst-by-server"], PORT["rst-by-client"]]
    with capture(fe, "reset", ports) as cap:
        srv = workloads.start_server(be, "rst", PORT["rst-by-server"])
        assert client(fe, "wait-reset", PORT["rst-by-server"], LOCAL["rst-by-server"]) == \
            ["reset"]
        wait_for_line(srv, "RST_SENT", 10)
        srv.wait(timeout=10)
        srv = workloads.start_server(be, "wait-reset", PORT["rst-by-client"])
        assert client(fe, "rst", PORT["rst-by-client"], LOCAL["rst-by-client"]) == \
            ["rst_sent"]
        wait_for_line(srv, "RESET", 10)
        srv.wait(timeout=10)
        cap.stop()
    check_drops(cap)


def close_wait(fe, be):
    with capture(fe, "close-wait", PORT["close-wait"]) as cap:
        srv = workloads.start_server(be, "hold", PORT["close-wait"])
        assert client(fe, "send-close", PORT["close-wait"], LOCAL["close-wait"]) == ["sent"]
        wait_for_line(srv, "EOF", 10)
        time.sleep(3)
        srv.send_signal(signal.SIGKILL)      # the kernel closes the socket: FIN
        srv.wait(timeout=10)
        cap.stop()
    check_drops(cap)


def grpc_goaway(fe, be):
    binary = h2peers.build_h2grpc(WORK / "h2grpc")
    srv = h2peers.grpc_server(be, binary, PORT["grpc"], max_age=1, grace=1)
    with capture(fe, "grpc-goaway", PORT["grpc"]) as cap:
        r = h2peers.grpc_client(fe, binary, BE_IP, PORT["grpc"], mode="reuse",
                                duration=3.5, interval=0.2)
        assert r["rc"] == 0 and r["failed"] == 0, r
        time.sleep(0.5)
        cap.stop()
    h2peers.stop(srv)
    check_drops(cap)


def joined_midway(fe, be):
    root = h2peers.docroot(WORK / "www")
    srv = h2peers.nghttpd_h2c(be, PORT["midway"], root)
    cl = fe.python(H2_CLIENT, "midway", BE_IP, PORT["midway"], LOCAL["midway"],
                   stdin=subprocess.PIPE)
    wait_for_line(cl, "STARTED", 10)
    with capture(fe, "joined-midway", PORT["midway"]) as cap:
        cl.stdin.write(b"go\n")
        cl.stdin.flush()
        wait_for_line(cl, "done", 10)
        cl.wait(timeout=10)
        cap.stop()
    h2peers.stop(srv)
    check_drops(cap)


def h2_goaway_error(fe, be):
    root = h2peers.docroot(WORK / "www")
    srv = h2peers.nghttpd_h2c(be, PORT["bad-goaway"], root)
    with capture(fe, "h2-goaway-error", PORT["bad-goaway"]) as cap:
        cp = fe.python(H2_CLIENT, "bad-goaway", BE_IP, PORT["bad-goaway"],
                       LOCAL["bad-goaway"], wait=True, timeout=20)
        assert cp.returncode == 0 and "done" in cp.stdout, (cp.stdout, cp.stderr)
        cap.stop()
    h2peers.stop(srv)
    check_drops(cap)


SCENARIOS = {"h2c": h2c, "tls-keylog": tls_keylog, "refused": refused,
             "connect-timeout": connect_timeout, "reset": reset,
             "close-wait": close_wait, "grpc-goaway": grpc_goaway,
             "joined-midway": joined_midway, "h2-goaway-error": h2_goaway_error}


def main(argv):
    global CAPS
    names = list(argv)
    if names[:1] == ["--out"] and len(names) > 1:
        CAPS = Path(names[1]).resolve()
        names = names[2:]
    if os.geteuid() != 0:
        sys.exit("make_captures.py needs root (network namespaces, tcpdump)")
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        sys.exit(f"unknown scenario(s) {bad}; known: {' '.join(SCENARIOS)}")
    CAPS.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    (HERE / "pods.json").write_text(pcaps.pods_json(
        [FixedPod("frontend", FE_IP), FixedPod("backend", BE_IP)]) + "\n")
    for name in names or SCENARIOS:
        # a fresh cluster per scenario: nothing one leaves behind (TIME_WAIT on a
        # fixed port, a lingering server) reaches the next
        with simpod.Cluster(prefix="connscope-golden") as c:
            fe = c.add_pod(NS, "frontend", FE_IP)
            be = c.add_pod(NS, "backend", BE_IP)
            SCENARIOS[name](fe, be)
        p = CAPS / f"{name}.pcap"
        print(f"{p}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
