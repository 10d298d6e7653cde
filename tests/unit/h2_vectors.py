#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Generate tests/unit/h2_vectors.h: real cleartext HTTP/2 (h2c) connections as C
byte arrays, for tests/unit/test_h2.c.

Each vector is one TCP connection between real peers on loopback: nghttpd (the
nghttp2 server, --no-tls) and a client, nghttp or h2load. tcpdump records it; the
pcap is read here by hand (struct, no scapy), each direction's TCP payload is put
back in sequence order from the SYN's initial sequence number, and the segments
are listed in the order they crossed lo (retransmissions included), which gives
the interleaving an on-path observer sees.

The expected figures are derived here, independently of bpf/h2.h: this script
parses every frame of both directions itself (RFC 9113 §3.4, §4.1, §6) and counts
new client streams (HEADERS from the client on an odd stream id above every one
before it), frames, PINGs that are not ACKs, GOAWAY and RST_STREAM per sender
with the last one's fields, and SETTINGS_MAX_CONCURRENT_STREAMS per sender.

It also says what a walker that joins the client's stream at each offset k > 0
must conclude, from the frame rules alone (RFC 9113 §3.4, §4.2, §6): 'N' (not
HTTP/2: the first bytes are neither the preface nor a SETTINGS frame), 'D' (they
look like a SETTINGS frame, but a later frame header breaks a rule: desync), 'W'
(every header up to the end keeps the rules, as at the start of the client's own
SETTINGS frame: the bytes cannot be told from a server's side) or 'U' (too few
bytes to say). Only the offsets that are not 'N' are listed.

Needs root (tcpdump), nghttpd, nghttp and h2load (Debian: nghttp2-server,
nghttp2-client). The output differs on every run (ports, timing, segmentation);
the committed header is test data. Regenerate with:

    python3 tests/unit/h2_vectors.py > tests/unit/h2_vectors.h
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
ACK = 0x01
UNSET = 0xffffffff


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listen(port, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def capture(tmp, name, server_args, clients):
    """Run nghttpd and the client commands ({url} is the server's base URL) under
    tcpdump; return the pcap's path. Every process is stopped by its own pid."""
    port = free_port()
    pcap = os.path.join(tmp, name + ".pcap")
    srv = subprocess.Popen(["nghttpd", "--no-tls", "-d", os.path.join(tmp, "www")] +
                           server_args + [str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dump = None
    try:
        wait_listen(port)  # this probe connection is made before tcpdump runs
        dump = subprocess.Popen(["timeout", "-s", "INT", "60", "tcpdump", "-i", "lo", "-U", "--immediate-mode",
                                 "-s", "0", "-n", "-w", pcap, f"tcp port {port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on lo" once the capture is open.
        dump.stderr.readline()
        time.sleep(0.3)
        base = f"http://127.0.0.1:{port}"
        for cmd in clients:
            if callable(cmd):
                cmd(port)
                continue
            subprocess.run([a.format(url=base) for a in cmd], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        time.sleep(0.5)
    finally:
        if dump:
            dump.send_signal(signal.SIGINT)
            dump.wait(10)
        srv.terminate()
        srv.wait(10)
    return pcap


def frame(typ, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([typ, flags]) + sid.to_bytes(4, "big") + payload


def bad_client(port):
    """A client on a plain socket: the preface, SETTINGS, a GET on stream 1, a PING,
    then HEADERS on stream 2 (a client may only open odd streams, RFC 9113 §5.1.1),
    which nghttpd answers with GOAWAY(PROTOCOL_ERROR). Reads until the server
    closes."""
    # HPACK (RFC 7541): indexed :method GET (2), :scheme http (6), :path / (4),
    # then :authority (1) as a literal without indexing.
    get = bytes([0x82, 0x86, 0x84, 0x01, 9]) + b"127.0.0.1"
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, (3).to_bytes(2, "big") + (50).to_bytes(4, "big")))
    time.sleep(0.2)
    s.sendall(frame(HEADERS, 0x05, 1, get))             # END_STREAM | END_HEADERS
    time.sleep(0.2)
    s.sendall(frame(PING, 0, 0, b"connscop"))
    time.sleep(0.2)
    s.sendall(frame(HEADERS, 0x05, 2, get))
    try:
        while s.recv(65536):
            pass
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()


def read_pcap(path):
    """Yield the IPv4 packets of a pcap (linktypes EN10MB, LINUX_SLL, LINUX_SLL2)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xa1b2c3d4, 0xa1b23c4d):
        e = "<"
    elif magic in (0xd4c3b2a1, 0x4d3cb2a1):
        e = ">"
    else:
        raise RuntimeError("not a pcap")
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0fffffff
    off = 24
    while off + 16 <= len(data):
        _sec, _frac, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if incl != orig:
            raise RuntimeError("truncated packet in capture")
        if linktype == 1:
            proto, l2 = struct.unpack(">H", pkt[12:14])[0], 14
        elif linktype == 113:
            proto, l2 = struct.unpack(">H", pkt[14:16])[0], 16
        elif linktype == 276:
            proto, l2 = struct.unpack(">H", pkt[0:2])[0], 20
        else:
            raise RuntimeError(f"linktype {linktype}")
        if proto == 0x0800:
            yield pkt[l2:]


def tcp_streams(path):
    """The one TCP connection in a capture: (client->server bytes, server->client
    bytes, segments in capture order as (dir, offset, length))."""
    conns = {}
    for ip in read_pcap(path):
        ihl = (ip[0] & 0x0f) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        if ip[9] != 6:
            continue
        src, dst = ip[12:16], ip[16:20]
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        thl = (tcp[12] >> 4) * 4
        flags = tcp[13]
        payload = tcp[thl:]
        key = (src, sport, dst, dport)
        rkey = (dst, dport, src, sport)
        if flags & 0x02 and not flags & 0x10:  # SYN: a new connection, key is the client
            conns[key] = {"isn": [seq, None], "streams": [{}, {}], "segs": []}
            continue
        if key in conns:
            c, d = conns[key], 0
        elif rkey in conns:
            c, d = conns[rkey], 1
        else:
            continue
        if flags & 0x02:                       # SYN-ACK
            c["isn"][1] = seq
            continue
        if not payload:
            continue
        off = (seq - c["isn"][d] - 1) & 0xffffffff
        c["segs"].append((d, off, len(payload)))
        for i, b in enumerate(payload):
            old = c["streams"][d].setdefault(off + i, b)
            if old != b:
                raise RuntimeError("retransmission with different bytes")
    if len(conns) != 1:
        raise RuntimeError(f"{len(conns)} connections in {path}, want 1")
    c = next(iter(conns.values()))
    out = []
    for d in (0, 1):
        m = c["streams"][d]
        if sorted(m) != list(range(len(m))):
            raise RuntimeError("hole in a direction's bytes")
        out.append(bytes(m[i] for i in range(len(m))))
    return out[0], out[1], c["segs"]


def frames(stream, start):
    """Split a direction's bytes (from start) into frames: (offset, length, type,
    flags, stream id, payload). The capture must end on a frame boundary."""
    out, off = [], start
    while off < len(stream):
        if off + 9 > len(stream):
            raise RuntimeError("direction ends inside a frame header")
        ln = int.from_bytes(stream[off:off + 3], "big")
        typ, flg = stream[off + 3], stream[off + 4]
        sid = int.from_bytes(stream[off + 5:off + 9], "big") & 0x7fffffff
        if off + 9 + ln > len(stream):
            raise RuntimeError("direction ends inside a frame")
        out.append((off, ln, typ, flg, sid, stream[off + 9:off + 9 + ln]))
        off += 9 + ln
    return out


def expect(c2s, s2c):
    """The figures a correct walker reaches, from this script's own parse."""
    if not c2s.startswith(PREFACE):
        raise RuntimeError("client did not send the preface")
    fr = [frames(c2s, len(PREFACE)), frames(s2c, 0)]
    if fr[0][0][2] != SETTINGS or fr[1][0][2] != SETTINGS:
        raise RuntimeError("a side's first frame is not SETTINGS")
    e = {"streams": 0, "max_stream_id": 0, "frames": len(fr[0]) + len(fr[1]), "pings": 0,
         "goaway": [0, 0], "goaway_last_id": [0, 0], "goaway_error": [0, 0],
         "rst": [0, 0], "rst_error": [0, 0], "max_concurrent": [UNSET, UNSET],
         "max_frame": [16384, 16384], "biggest": [0, 0], "types": set()}
    for d in (0, 1):
        for _off, ln, typ, flg, sid, p in fr[d]:
            e["types"].add(typ)
            e["biggest"][d] = max(e["biggest"][d], ln)
            if typ == HEADERS and d == 0 and sid % 2 == 1 and sid > e["max_stream_id"]:
                e["streams"] += 1
                e["max_stream_id"] = sid
            elif typ == PING and not flg & ACK:
                e["pings"] += 1
            elif typ == GOAWAY:
                e["goaway"][d] += 1
                e["goaway_last_id"][d] = int.from_bytes(p[0:4], "big") & 0x7fffffff
                e["goaway_error"][d] = int.from_bytes(p[4:8], "big")
            elif typ == RST_STREAM:
                e["rst"][d] += 1
                e["rst_error"][d] = int.from_bytes(p[0:4], "big")
            elif typ == SETTINGS and not flg & ACK:
                for i in range(0, ln, 6):
                    ident = int.from_bytes(p[i:i + 2], "big")
                    val = int.from_bytes(p[i + 2:i + 6], "big")
                    if ident == 3:
                        e["max_concurrent"][d] = val
                    elif ident == 5:
                        e["max_frame"][1 - d] = val   # what the other side may send
    for d in (0, 1):
        if e["biggest"][d] > e["max_frame"][d]:
            raise RuntimeError("a frame exceeds what its receiver announced")
    if e["max_frame"][0] != 16384:
        raise RuntimeError("the server raised the client's frame limit: join model too simple")
    e["join"] = [(k, st) for k in range(1, len(c2s)) for st in [join_state(c2s[k:])]
                 if st != "N"]
    if (len(PREFACE), "W") not in e["join"]:
        raise RuntimeError("joined at the client's SETTINGS, the walk should go on")
    return e


def frame_ok(ln, typ, flg, sid, max_frame=16384):
    """May a frame header with these fields appear at all? (RFC 9113 §4.2, §6)"""
    if ln > max_frame:
        return False
    if typ in (DATA, HEADERS, CONTINUATION):
        return sid != 0
    if typ == PRIORITY:
        return sid != 0 and ln == 5
    if typ == RST_STREAM:
        return sid != 0 and ln == 4
    if typ == SETTINGS:
        return sid == 0 and ln % 6 == 0 and (not flg & ACK or ln == 0)
    if typ == PUSH_PROMISE:
        return sid != 0 and ln >= 4
    if typ == PING:
        return sid == 0 and ln == 8
    if typ == GOAWAY:
        return sid == 0 and ln >= 8
    if typ == WINDOW_UPDATE:
        return ln == 4
    return True                                 # extension types are ignored (§5.5)


def join_state(rest):
    """What a walker that starts at rest[0] must end in: N, D, W or U (above)."""
    if rest[0] == PREFACE[0]:
        n = min(len(rest), len(PREFACE))
        if rest[:n] != PREFACE[:n]:
            return "N"
        raise RuntimeError("a second preface")
    if len(rest) < 9:
        return "U"
    off, first = 0, True
    while off + 9 <= len(rest):
        ln = int.from_bytes(rest[off:off + 3], "big")
        typ, flg = rest[off + 3], rest[off + 4]
        sid = int.from_bytes(rest[off + 5:off + 9], "big") & 0x7fffffff
        if first and (typ != SETTINGS or flg & ACK or not frame_ok(ln, typ, flg, sid)):
            return "N"
        if not frame_ok(ln, typ, flg, sid):
            return "D"
        first = False
        off += 9 + ln
    return "W"


def c_array(name, data):
    lines = [f"static const unsigned char {name}[{len(data)}] = {{"]
    for i in range(0, len(data), 16):
        lines.append("\t" + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
    lines.append("};")
    return "\n".join(lines)


def pair(v):
    return "{ " + ", ".join(f"0x{x:x}" if x == UNSET else str(x) for x in v) + " }"


def emit(name, desc, pcap):
    c2s, s2c, segs = tcp_streams(pcap)
    e = expect(c2s, s2c)
    names = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE",
             "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
    types = ", ".join(names[t] if t < len(names) else f"0x{t:x}" for t in sorted(e["types"]))
    join = e["join"]
    p = [f"/* {name}: {desc}\n * frame types: {types}; largest frame client {e['biggest'][0]}, "
         f"server {e['biggest'][1]} */",
         c_array(f"{name}_c2s", c2s), c_array(f"{name}_s2c", s2c),
         f"static const struct h2_vec_seg {name}_segs[] = {{"]
    for i in range(0, len(segs), 6):
        p.append("\t" + " ".join(f"{{ {d}, {o}, {n} }}," for d, o, n in segs[i:i + 6]))
    p.append("};")
    p.append(f"static const struct h2_vec_join {name}_join[] = {{")
    for i in range(0, len(join), 8):
        p.append("\t" + " ".join(f"{{ {o}, '{st}' }}," for o, st in join[i:i + 8]))
    p.append("\t{ 0, 0 },\n};")
    p.append(f"static const struct h2_vec {name} = {{\n"
             f"\t\"{name}\", {name}_c2s, sizeof({name}_c2s), {name}_s2c, sizeof({name}_s2c),\n"
             f"\t{name}_segs, sizeof({name}_segs) / sizeof({name}_segs[0]),\n"
             f"\t{name}_join, {len(join)},\n"
             f"\t.streams = {e['streams']}, .max_stream_id = {e['max_stream_id']}, "
             f".frames = {e['frames']}, .pings = {e['pings']},\n"
             f"\t.goaway = {pair(e['goaway'])}, .goaway_last_id = {pair(e['goaway_last_id'])}, "
             f".goaway_error = {pair(e['goaway_error'])},\n"
             f"\t.rst = {pair(e['rst'])}, .rst_error = {pair(e['rst_error'])},\n"
             f"\t.max_concurrent = {pair(e['max_concurrent'])}, "
             f".max_frame = {pair(e['max_frame'])},\n}};\n")
    print(f"{name}: c2s {len(c2s)} s2c {len(s2c)} segs {len(segs)} streams {e['streams']} "
          f"frames {e['frames']} goaway {e['goaway']} rst {e['rst']} pings {e['pings']} "
          f"max_concurrent {e['max_concurrent']} max_frame {e['max_frame']} "
          f"biggest {e['biggest']} join {join[:12]}{'...' if len(join) > 12 else ''}",
          file=sys.stderr)
    return "\n".join(p)


HEADER = """\
struct h2_vec_seg {
	unsigned char dir;  /* 0: client to server, 1: server to client */
	unsigned off;       /* offset of the segment's payload in that direction's stream */
	unsigned len;
};

/* Joined at off in the client's stream, the walk ends in state: 'D' desync,
 * 'W' walking (the bytes keep every frame rule to the end), 'U' undecided (too few
 * bytes). Offsets not listed: 'N', not HTTP/2. */
struct h2_vec_join {
	unsigned off;
	char state;
};

/* One connection and what a walker must count in it. Per-direction figures are
 * indexed by sender (0: client, 1: server); last_id and error are of that
 * sender's last GOAWAY / RST_STREAM. */
struct h2_vec {
	const char *name;
	const unsigned char *c2s;
	unsigned c2s_len;
	const unsigned char *s2c;
	unsigned s2c_len;
	const struct h2_vec_seg *segs;  /* in capture order, retransmissions included */
	unsigned nsegs;
	const struct h2_vec_join *join; /* ascending, ended by { 0, 0 } */
	unsigned njoin;
	unsigned streams, max_stream_id, frames, pings;
	unsigned goaway[2], goaway_last_id[2], goaway_error[2];
	unsigned rst[2], rst_error[2];
	unsigned max_concurrent[2];     /* 0xffffffff: never announced */
	unsigned max_frame[2];          /* the largest frame each sender may send, in the end */
};
"""


def main():
    tmp = tempfile.TemporaryDirectory()
    www = os.path.join(tmp.name, "www")
    os.mkdir(www)
    with open(os.path.join(www, "index.html"), "wb") as f:
        f.write(b"<html><body>connscope h2 vector</body></html>\n")
    with open(os.path.join(www, "big.bin"), "wb") as f:
        f.write(bytes(range(256)) * 66 + b"!" * 104)  # 17000 bytes: 2 DATA frames
    small = os.path.join(tmp.name, "small.bin")
    with open(small, "wb") as f:
        f.write(b"s" * 500)
    upload = os.path.join(tmp.name, "upload.bin")
    with open(upload, "wb") as f:
        f.write(b"u" * 30000)

    runs = [
        ("nghttp_m5", "nghttp -n -m 5: one URL five times on one connection", [],
         [["nghttp", "-n", "-m", "5", "{url}/index.html"]]),
        ("nghttp_urls", "nghttp -n: three URLs (a page, 17000 bytes, a 404)", [],
         [["nghttp", "-n", "{url}/index.html", "{url}/big.bin", "{url}/missing"]]),
        ("nghttp_post", "nghttp -n --continuation -d: a POST whose headers need "
         "CONTINUATION", [],
         [["nghttp", "-n", "--continuation", "-d", small, "{url}/index.html"]]),
        ("nghttp_rst", "nghttpd --early-response -w 14, nghttp -d 30000 bytes: the "
         "server answers before the upload ends, then RST_STREAM(NO_ERROR)",
         ["--early-response", "-w", "14"],
         [["nghttp", "-n", "-d", upload, "{url}/index.html"]]),
        ("h2load", "h2load -n 20 -c 1 -m 4: 20 requests, 4 at a time, then GOAWAY", [],
         [["h2load", "-n", "20", "-c", "1", "-m", "4", "{url}/"]]),
        ("h2load_m2", "nghttpd -m 2, h2load -n 12 -m 8: the server allows 2 streams at "
         "a time", ["-m", "2"],
         [["h2load", "-n", "12", "-c", "1", "-m", "8", "{url}/"]]),
        ("h2load_bigframe", "h2load -f 65536: the client announces "
         "SETTINGS_MAX_FRAME_SIZE", [],
         [["h2load", "-n", "2", "-c", "1", "-m", "1", "-f", "65536", "{url}/"]]),
        ("server_goaway", "a socket client (a GET, a PING, then HEADERS on stream 2): "
         "nghttpd answers PING and sends GOAWAY(PROTOCOL_ERROR)", [], [bad_client]),
    ]
    out = []
    for name, desc, server_args, clients in runs:
        out.append(emit(name, desc, capture(tmp.name, name, server_args, clients)))

    ver = subprocess.run(["nghttpd", "--version"], capture_output=True, text=True).stdout.strip()
    names = [r[0] for r in runs]
    sys.stdout.write(
        "/* Generated by tests/unit/h2_vectors.py (" + ver + ", tcpdump on lo). Do not edit.\n"
        " * Regenerate: python3 tests/unit/h2_vectors.py > tests/unit/h2_vectors.h */\n"
        "#ifndef H2_VECTORS_H\n#define H2_VECTORS_H\n\n" + HEADER + "\n" + "\n".join(out) +
        "\nstatic const struct h2_vec *const h2_vecs[] = {\n"
        + "".join(f"\t&{n},\n" for n in names) + "};\n\n#endif\n")


if __name__ == "__main__":
    main()
