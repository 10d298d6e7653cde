#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Generate tests/unit/data/tlsdec/tlsdec_vectors.h: real TLS connections, as an
on-path observer sees them, with the key log that decrypts them.

Each connection is openssl s_client talking to openssl s_server -rev (it sends
every line back reversed) on loopback, recorded by tcpdump; the client writes
its key log (-keylogfile). The pcap is read here (Ethernet, IPv4, TCP) and each
direction's payload put back in sequence order, which gives the two byte
streams the replay code hands to user/replay/tlsdec.c.

The expectations do not come from a decryptor: the client-to-server plaintext
is exactly the lines given to s_client (minus its command lines, "K" asks for a
KeyUpdate), and the server-to-client plaintext holds those lines reversed.

Needs root (tcpdump on lo). The output differs on every run (randoms, keys, the
throwaway certificate); the committed header is test data. Regenerate with:

    python3 tests/unit/data/tlsdec/gen.py > tests/unit/data/tlsdec/tlsdec_vectors.h

With --corpus DIR it also writes seeds for tests/fuzz/fuzz_tlsdec.c there.
"""
import os
import struct
import subprocess
import sys
import tempfile
import time

PORT0 = 47110

# name, s_server options, s_client options, lines for s_client's stdin
SESSIONS = [
    ("tls12_aes128", ["-tls1_2"], ["-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
     ["hello aes128 gcm", "second line"]),
    ("tls12_aes256", ["-tls1_2"], ["-cipher", "ECDHE-RSA-AES256-GCM-SHA384"],
     ["hello aes256 gcm sha384"]),
    ("tls12_chacha", ["-tls1_2"], ["-cipher", "ECDHE-RSA-CHACHA20-POLY1305"],
     ["hello chacha20 poly1305", "x" * 300]),
    ("tls13_aes128", [], ["-ciphersuites", "TLS_AES_128_GCM_SHA256"],
     ["hello tls13 aes128", "second line"]),
    ("tls13_aes256", [], ["-ciphersuites", "TLS_AES_256_GCM_SHA384"],
     ["hello tls13 aes256 sha384"]),
    ("tls13_chacha", [], ["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
     ["hello tls13 chacha20"]),
    # The client's first key share (X25519) is not one the server takes.
    ("tls13_hrr", ["-groups", "P-256"], ["-groups", "X25519:P-256"],
     ["hello after a HelloRetryRequest"]),
    # "K": the client sends KeyUpdate(update_requested), so both sides update.
    ("tls13_keyupdate", [], ["-ciphersuites", "TLS_AES_128_GCM_SHA256"],
     ["before the key update", "K", "after the key update", "K", "after two"]),
]


def make_cert(d):
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=test", "-days", "1", "-keyout", key, "-out", crt],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return crt, key


def run_session(d, crt, key, port, sopts, copts, lines):
    pcap = os.path.join(d, "cap%d.pcap" % port)
    keys = os.path.join(d, "keys%d.txt" % port)
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-s", "0", "-w", pcap,
                             "tcp port %d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Wait until tcpdump listens.
    dump.stderr.readline()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
                            "-cert", crt, "-key", key, "-naccept", "1", "-rev"] + sopts,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    cli = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-keylogfile", keys] + copts,
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    for ln in lines:
        cli.stdin.write(ln.encode() + b"\n")
        cli.stdin.flush()
        time.sleep(0.3)
    time.sleep(0.3)
    cli.stdin.close()
    cli.wait(timeout=10)
    srv.wait(timeout=10)
    # Without immediate mode the kernel hands packets over in blocks, and
    # tcpdump exits without the last one; and a little time all the same.
    time.sleep(1)
    dump.terminate()
    dump.wait()
    with open(pcap, "rb") as f:
        raw = f.read()
    with open(keys) as f:
        keylog = f.read()
    return raw, keylog


def tcp_streams(raw, port):
    """The payload of each direction, in sequence order: (c2s, s2c)."""
    magic, = struct.unpack("<I", raw[:4])
    assert magic == 0xa1b2c3d4, "pcap in host order, microseconds"
    linktype, = struct.unpack("<I", raw[20:24])
    assert linktype == 1, "Ethernet"
    off = 24
    segs = {0: {}, 1: {}}
    isn = {}
    while off + 16 <= len(raw):
        _, _, caplen, _ = struct.unpack("<IIII", raw[off:off + 16])
        pkt = raw[off + 16:off + 16 + caplen]
        off += 16 + caplen
        if struct.unpack("!H", pkt[12:14])[0] != 0x0800:
            continue
        ip = pkt[14:]
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:tot]
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        flags = tcp[13]
        doff = (tcp[12] >> 4) * 4
        d = 1 if sport == port else 0
        if flags & 0x02:
            isn[d] = seq
        data = tcp[doff:]
        if data:
            segs[d].setdefault(seq, data)
    out = []
    for d in (0, 1):
        s = b""
        nxt = (isn[d] + 1) & 0xffffffff
        while nxt in segs[d]:
            s += segs[d][nxt]
            nxt = (nxt + len(segs[d][nxt])) & 0xffffffff
        out.append(s)
    return out


def records(s):
    recs, off = [], 0
    while off + 5 <= len(s):
        n = struct.unpack("!H", s[off + 3:off + 5])[0]
        recs.append((off, 5 + n, s[off]))
        off += 5 + n
    assert off == len(s), "the stream ends with a whole record"
    return recs


def hello_info(c2s, s2c):
    """The cipher suite and version from the last ServerHello (it follows a
    HelloRetryRequest, if any): the expectations for tlsdec_hello_params."""
    cr = c2s[11:43]
    off, body = 0, b""
    for o, n, t in records(s2c):
        if t == 22:
            body += s2c[o + 5:o + n]
        elif t != 20:
            break
    sr = suite = ver = None
    hrr = False
    while off + 4 <= len(body) and body[off] == 2:
        mlen = int.from_bytes(body[off + 1:off + 4], "big")
        m = body[off + 4:off + 4 + mlen]
        r = m[2:34]
        sid = m[34]
        p = 35 + sid
        sr, suite, ver = r, struct.unpack("!H", m[p:p + 2])[0], struct.unpack("!H", m[0:2])[0]
        ext = m[p + 5:]
        while len(ext) >= 4:
            et, el = struct.unpack("!HH", ext[:4])
            if et == 43:
                ver = struct.unpack("!H", ext[4:6])[0]
            ext = ext[4 + el:]
        if r.hex().upper().startswith("CF21AD74E59A6111"):
            hrr = True
        off += 4 + mlen
    return cr, sr, suite, ver, hrr


def c_bytes(name, data):
    out = ["static const unsigned char %s[%d] = {" % (name, max(len(data), 1))]
    for i in range(0, len(data), 16):
        out.append("\t" + ", ".join("0x%02x" % b for b in data[i:i + 16]) + ",")
    if not data:
        out.append("\t0,")
    out.append("};")
    return "\n".join(out)


def c_str(s):
    o = '"'
    for ch in s:
        if ch == "\n":
            o += '\\n"\n\t"'
        elif ch in '"\\':
            o += "\\" + ch
        else:
            o += ch
    return o + '"'


def main():
    corpus = None
    if len(sys.argv) == 3 and sys.argv[1] == "--corpus":
        corpus = sys.argv[2]
    ver = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    body = []
    table = []
    with tempfile.TemporaryDirectory() as d:
        crt, key = make_cert(d)
        for i, (name, sopts, copts, lines) in enumerate(SESSIONS):
            port = PORT0 + i
            raw, keylog = run_session(d, crt, key, port, sopts, copts, lines)
            c2s, s2c = tcp_streams(raw, port)
            records(c2s)
            records(s2c)
            cr, sr, suite, version, hrr = hello_info(c2s, s2c)
            sent = "".join(ln + "\n" for ln in lines if ln not in ("K", "k"))
            back = [ln[::-1] for ln in lines if ln not in ("K", "k")]
            # Only this connection's lines: OpenSSL also logs the secrets after
            # each KeyUpdate (*_TRAFFIC_SECRET_N), which the decryptor derives.
            keylog = "".join(ln + "\n" for ln in keylog.splitlines()
                             if not ln or ln.startswith("#") or cr.hex() in ln.lower())
            body.append("/* %s: s_server %s, s_client %s */" % (name, " ".join(sopts),
                                                                 " ".join(copts)))
            body.append(c_bytes(name + "_c2s", c2s))
            body.append(c_bytes(name + "_s2c", s2c))
            body.append(c_bytes(name + "_cr", cr))
            body.append(c_bytes(name + "_sr", sr))
            body.append("static const char %s_keylog[] =\n\t%s;" % (name, c_str(keylog)))
            body.append("static const char *const %s_back[] = {\n%s\tNULL,\n};" % (
                name, "".join("\t%s,\n" % c_str(b) for b in back)))
            body.append("")
            table.append("\t{ \"%s\", %s_c2s, %d, %s_s2c, %d, %s_cr, %s_sr, 0x%04x, 0x%04x, %d,\n"
                         "\t  %s_keylog, %s, %s_back },"
                         % (name, name, len(c2s), name, len(s2c), name, name, version, suite,
                            1 if hrr else 0, name, c_str(sent), name))
            if corpus:
                # fuzz_tlsdec input: key log length (2, big endian), key log,
                # c2s length (4), c2s, then s2c.
                kl = keylog.encode()
                with open(os.path.join(corpus, name), "wb") as f:
                    f.write(struct.pack("!H", len(kl)) + kl + struct.pack("!I", len(c2s))
                            + c2s + s2c)
    sys.stdout.write(
        "/* Generated by tests/unit/data/tlsdec/gen.py (%s). Do not edit.\n"
        " * Regenerate: python3 tests/unit/data/tlsdec/gen.py > "
        "tests/unit/data/tlsdec/tlsdec_vectors.h */\n"
        "#ifndef TLSDEC_VECTORS_H\n#define TLSDEC_VECTORS_H\n\n"
        "struct tlsdec_vec {\n"
        "\tconst char *name;\n"
        "\tconst unsigned char *c2s;\n\tunsigned c2s_len;\n"
        "\tconst unsigned char *s2c;\n\tunsigned s2c_len;\n"
        "\tconst unsigned char *cr, *sr;  /* client and server random, 32 bytes */\n"
        "\tunsigned version, suite;        /* from the (last) ServerHello */\n"
        "\tint hrr;                        /* a HelloRetryRequest came first */\n"
        "\tconst char *keylog;             /* s_client -keylogfile, this connection's lines */\n"
        "\tconst char *sent;               /* the client's application data */\n"
        "\tconst char *const *back;        /* lines the server sent back (reversed) */\n"
        "};\n\n" % ver)
    sys.stdout.write("\n".join(body))
    sys.stdout.write("\nstatic const struct tlsdec_vec tlsdec_vecs[] = {\n%s\n};\n\n#endif\n"
                     % "\n".join(table))


if __name__ == "__main__":
    main()
