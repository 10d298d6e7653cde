"""Small TCP peers for the live tests, run inside simulated pods with Pod.python().

Both peers speak the same tiny protocol: the client sends PAYLOAD bytes, the
server echoes them back. What happens next depends on the mode, so every test
knows exactly which side sends the first FIN or RST.

server:  SERVER  mode ip port [count]
  echo        echo, read to EOF, close (the client closes first), `count` times
  hold        read to EOF and never close: the socket stays in CLOSE_WAIT
  wait-reset  echo, then block in recv until the client's RST arrives
  rst         echo, wait for the client's 1-byte "go", then close with SO_LINGER {1,0}

client:  CLIENT  mode ip port [count] [timeout_s] [src_port]
  echo        count sequential connections: send, read the echo, close
  refused     count connects that must be refused
  timeout     one connect that must time out after timeout_s
  send-close  send, close without reading (the server never answers)
  rst         send, read the echo, close with SO_LINGER {1,0}
  wait-reset  send, read the echo, send "go", block in recv until the server's RST

With src_port, the client's i-th connection binds that port plus i instead of an
ephemeral one: a port above the ephemeral range cannot meet a conntrack entry an
earlier connection left (whose reply tuple would clash, and make NAT remap it).

Both print one JSON object on their last line (the client: its pid, local
ports and per-connection results) and milestones ("READY", "EOF", ...) before it.
"""

PAYLOAD_SIZE = 64

SERVER = r'''
import json, os, socket, struct, sys, time
mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
SIZE = %(size)d

def recv_exact(c, k):
    buf = b""
    while len(buf) < k:
        d = c.recv(k - len(buf))
        if not d:
            raise EOFError("EOF after %%d of %%d bytes" %% (len(buf), k))
        buf += d
    return buf

def drain_to_eof(c):
    while c.recv(4096):
        pass

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(128)
print("READY", flush=True)
held = []
peers = []
for i in range(count):
    c, peer = s.accept()
    c.settimeout(60)
    peers.append(peer[1])
    print("ACCEPTED %%s %%d" %% peer, flush=True)
    if mode == "echo":
        c.sendall(recv_exact(c, SIZE))
        drain_to_eof(c)
        c.close()
    elif mode == "hold":
        drain_to_eof(c)
        held.append(c)               # keep it open: CLOSE_WAIT
        print("EOF", flush=True)
    elif mode == "wait-reset":
        c.sendall(recv_exact(c, SIZE))
        try:
            d = c.recv(4096)
            print("NO_RESET %%r" %% d, flush=True)
        except ConnectionResetError:
            print("RESET", flush=True)
        c.close()
    elif mode == "rst":
        c.sendall(recv_exact(c, SIZE))
        recv_exact(c, 1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        print("RST_SENT", flush=True)
    else:
        sys.exit("unknown mode " + mode)
print(json.dumps({"pid": os.getpid(), "peer_ports": peers}), flush=True)
while held:
    time.sleep(3600)
''' % {"size": PAYLOAD_SIZE}

CLIENT = r'''
import json, os, socket, struct, sys, time
mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
src_port = int(sys.argv[6]) if len(sys.argv) > 6 else 0
SIZE = %(size)d
payload = bytes(range(SIZE))

def recv_exact(c, k):
    buf = b""
    while len(buf) < k:
        d = c.recv(k - len(buf))
        if not d:
            raise EOFError("EOF after %%d of %%d bytes" %% (len(buf), k))
        buf += d
    return buf

ports, results = [], []
for i in range(count):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(timeout)
    if src_port:
        c.bind(("0.0.0.0", src_port + i))
    t0 = time.monotonic()
    try:
        c.connect((ip, port))
    except ConnectionRefusedError:
        results.append("refused")
        c.close()
        continue
    except (TimeoutError, socket.timeout):
        results.append("timeout %%.3f" %% (time.monotonic() - t0))
        c.close()
        continue
    ports.append(c.getsockname()[1])
    if mode == "send-close":
        c.sendall(payload)
        c.close()
        results.append("sent")
        continue
    c.sendall(payload)
    assert recv_exact(c, SIZE) == payload
    if mode == "echo":
        c.close()
        results.append("echoed")
    elif mode == "rst":
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        results.append("rst_sent")
    elif mode == "wait-reset":
        c.sendall(b"g")
        try:
            d = c.recv(4096)
            results.append("no_reset %%r" %% d)
        except ConnectionResetError:
            results.append("reset")
        c.close()
    else:
        sys.exit("unknown mode " + mode)
print(json.dumps({"pid": os.getpid(), "ports": ports, "results": results}), flush=True)
''' % {"size": PAYLOAD_SIZE}


def start_server(pod, mode, port, count=1):
    """SERVER in `mode` inside `pod`, once it listens (its "READY" line)."""
    from simpod import wait_for_line
    srv = pod.python(SERVER, mode, pod.ip, port, count)
    wait_for_line(srv, "READY", 10)
    return srv


def run_client(pod, mode, ip, port, count=1, timeout_s=10.0, src_port=0):
    """CLIENT in `mode` inside `pod`, to the end; returns the process and its JSON."""
    cp = pod.python(CLIENT, mode, ip, port, count, timeout_s, src_port, wait=True, timeout=60)
    assert cp.returncode == 0, f"client failed: {cp.stderr}"
    return cp, last_json(cp.stdout)


def last_json(text):
    """The JSON object on the last non-empty line of a peer's stdout."""
    import json
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("no output")
    return json.loads(lines[-1])
