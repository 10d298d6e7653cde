#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Generate tests/unit/tls_vectors.h: real TLS handshakes as C byte arrays.

Client and server are Python ssl.SSLObject instances joined by memory BIOs in one
process, so the bytes are exactly what OpenSSL puts on the wire, with no network.
Every chunk one side writes is recorded in the order it was handed to the peer,
and split into TLS records, which gives each direction's byte stream and the
interleaving an on-path observer sees.

The expectations are written next to the bytes and come from OpenSSL itself, not
from the parser under test: the negotiated version (SSLObject.version()), the ALPN
the server selected, and the record at which the handshake is complete (the last
record written by the do_handshake() call that finished the handshake: the
server's Finished in TLS 1.2 full handshakes, the client's Finished in TLS 1.3 and
in TLS 1.2 resumption) or failed (the alert a side wrote when its handshake raised).

The output differs on every run (randoms, keys, the throwaway certificate); the
committed header is test data. Regenerate with:

    python3 tests/unit/tls_vectors.py > tests/unit/tls_vectors.h
"""
import os
import ssl
import subprocess
import sys
import tempfile

SNI = "backend.shop.svc.cluster.local"
ALPN = ["h2", "http/1.1"]


def make_cert(d):
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=test", "-days", "1", "-keyout", key, "-out", crt],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return crt, key


class Session:
    """One connection: client and server SSLObjects over memory BIOs."""

    def __init__(self, cctx, sctx, session=None):
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.c = cctx.wrap_bio(self.c_in, self.c_out, server_side=False,
                               server_hostname=SNI, session=session)
        self.s = sctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        self.chunks = []        # (dir, bytes); dir 0 = client->server, 1 = server->client
        self.complete_chunk = None
        self.failed_chunk = None

    def pump(self, d):
        src, dst = (self.c_out, self.s_in) if d == 0 else (self.s_out, self.c_in)
        data = src.read()
        if data:
            self.chunks.append((d, data))
            dst.write(data)
        return len(data)

    def step(self, obj, d, done):
        """Run one side's handshake once; returns (done, failed)."""
        if done:
            return True, False
        try:
            obj.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            self.pump(d)
            return False, False
        except ssl.SSLError:
            if self.pump(d) and self.failed_chunk is None:
                self.failed_chunk = len(self.chunks) - 1
            return True, True
        if self.pump(d) and self.complete_chunk is None:
            self.complete_chunk = len(self.chunks) - 1
        return True, False

    def handshake(self):
        cdone = sdone = False
        failed = False
        for _ in range(20):
            cdone, cf = self.step(self.c, 0, cdone)
            sdone, sf = self.step(self.s, 1, sdone)
            failed = failed or cf or sf
            if failed:
                # Let the peer read the alert, as it would on a wire.
                try:
                    (self.s if cf else self.c).do_handshake()
                except ssl.SSLError:
                    pass
                self.pump(1 if cf else 0)
                return False
            if cdone and sdone:
                return True
        raise RuntimeError("handshake did not finish")

    def exchange(self):
        """Some application data both ways, then the client's close_notify."""
        self.c.write(b"GET / HTTP/1.1\r\nHost: " + SNI.encode() + b"\r\n\r\n")
        self.pump(0)
        self.s.read(4096)
        self.pump(1)           # TLS 1.3: the server's tickets may only go now
        self.s.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        self.pump(1)
        self.c.read(4096)
        self.pump(0)
        try:
            self.c.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.pump(0)


def records(sess):
    """Split the chunks into records: (dir, offset in that direction's stream,
    total length incl. header, type, chunk index)."""
    streams = [bytearray(), bytearray()]
    out = []
    for ci, (d, data) in enumerate(sess.chunks):
        base = len(streams[d])
        streams[d] += data
        off = 0
        while off < len(data):
            if len(data) - off < 5:
                raise RuntimeError("record header split across chunks")
            rlen = int.from_bytes(data[off + 3:off + 5], "big")
            if off + 5 + rlen > len(data):
                raise RuntimeError("record split across chunks")
            out.append((d, base + off, 5 + rlen, data[off], ci))
            off += 5 + rlen
    return bytes(streams[0]), bytes(streams[1]), out


def c_array(name, data):
    lines = [f"static const unsigned char {name}[{len(data)}] = {{"]
    for i in range(0, len(data), 16):
        lines.append("\t" + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
    lines.append("};")
    return "\n".join(lines)


VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def emit(name, sess, ok, desc):
    c2s, s2c, recs = records(sess)
    last = {}
    for i, r in enumerate(recs):
        last[r[4]] = i     # last record of each chunk
    complete = last[sess.complete_chunk] if ok else -1
    failed = last[sess.failed_chunk] if (not ok and sess.failed_chunk is not None) else -1
    p = [f"/* {name}: {desc} */",
         c_array(f"{name}_c2s", c2s), c_array(f"{name}_s2c", s2c),
         f"static const struct vec_rec {name}_recs[] = {{"]
    for d, off, ln, typ, _ci in recs:
        p.append(f"\t{{ {d}, {off}, {ln}, {typ} }},")
    p.append("};")
    ver = VERSIONS.get(sess.c.version() or "", 0) if ok else 0
    alpn = (sess.s.selected_alpn_protocol() or "") if ok else ""
    p.append(f"static const struct vec_session {name} = {{\n"
             f"\t\"{name}\", {name}_c2s, sizeof({name}_c2s), {name}_s2c, sizeof({name}_s2c),\n"
             f"\t{name}_recs, sizeof({name}_recs) / sizeof({name}_recs[0]),\n"
             f"\t0x{ver:04x}, \"{alpn}\", {complete}, {failed},\n}};\n")
    return "\n".join(p)


def main():
    tmp = tempfile.TemporaryDirectory()
    crt, key = make_cert(tmp.name)

    def server(maxv=None, ciphers=None):
        s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        s.load_cert_chain(crt, key)
        s.set_alpn_protocols(ALPN)
        if maxv:
            s.maximum_version = maxv
        if ciphers:
            s.set_ciphers(ciphers)
        return s

    def client(verify=False, maxv=None, ciphers=None):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not verify:
            c.check_hostname = False
            c.verify_mode = ssl.CERT_NONE
        c.set_alpn_protocols(ALPN)
        if maxv:
            c.maximum_version = maxv
        if ciphers:
            c.set_ciphers(ciphers)
        return c

    out = []
    c13, s13 = client(), server()
    a = Session(c13, s13)
    assert a.handshake()
    a.exchange()
    out.append(emit("tls13", a, True, "TLS 1.3 full handshake, then data and close_notify"))

    c12, s12 = client(), server(ssl.TLSVersion.TLSv1_2)
    b = Session(c12, s12)
    assert b.handshake()
    b.exchange()
    out.append(emit("tls12", b, True, "TLS 1.3-capable client, TLS 1.2 server"))

    b2 = Session(c12, s12, session=b.c.session)
    assert b2.handshake() and b2.c.session_reused
    b2.exchange()
    out.append(emit("tls12_resume", b2, True, "TLS 1.2 abbreviated handshake (session ticket)"))

    a2 = Session(c13, s13, session=a.c.session)
    assert a2.handshake() and a2.c.session_reused
    a2.exchange()
    out.append(emit("tls13_resume", a2, True, "TLS 1.3 resumption (pre_shared_key)"))

    r13 = Session(client(verify=True), server())
    assert not r13.handshake()
    out.append(emit("reject13", r13, False,
                    "TLS 1.3 client rejects the self-signed certificate (encrypted alert)"))

    r12 = Session(client(verify=True), server(ssl.TLSVersion.TLSv1_2))
    assert not r12.handshake()
    out.append(emit("reject12", r12, False,
                    "TLS 1.2 client rejects the self-signed certificate (alert in clear)"))

    hf = Session(client(maxv=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA256"),
                 server(ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-CHACHA20-POLY1305"))
    assert not hf.handshake()
    out.append(emit("nocipher12", hf, False,
                    "TLS 1.2 server shares no cipher suite: handshake_failure in clear"))

    sys.stdout.write(
        "/* Generated by tests/unit/tls_vectors.py (" + ssl.OPENSSL_VERSION + "). Do not edit.\n"
        " * Regenerate: python3 tests/unit/tls_vectors.py > tests/unit/tls_vectors.h */\n"
        "#ifndef TLS_VECTORS_H\n#define TLS_VECTORS_H\n\n"
        "#define VEC_SNI \"" + SNI + "\"\n"
        "#define VEC_ALPN_OFFERED \"" + ",".join(ALPN) + "\"\n\n"
        "struct vec_rec {\n\tint dir;          /* 0: client to server, 1: server to client */\n"
        "\tunsigned off;     /* offset of the record header in that direction's stream */\n"
        "\tunsigned len;     /* header + body */\n\tint type;\n};\n\n"
        "struct vec_session {\n\tconst char *name;\n"
        "\tconst unsigned char *c2s;\n\tunsigned c2s_len;\n"
        "\tconst unsigned char *s2c;\n\tunsigned s2c_len;\n"
        "\tconst struct vec_rec *recs;\n\tunsigned nrecs;\n"
        "\tunsigned version;      /* negotiated, per OpenSSL; 0 if the handshake failed */\n"
        "\tconst char *alpn;      /* selected by the server, per OpenSSL */\n"
        "\tint complete_rec;      /* index in recs where the handshake completes, or -1 */\n"
        "\tint failed_rec;        /* index in recs of the alert that fails it, or -1 */\n"
        "};\n\n" + "\n".join(out) + "\n#endif\n")


if __name__ == "__main__":
    main()
