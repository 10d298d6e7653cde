"""Replay of a real capture cut at every byte offset, and with bytes flipped.

A small real capture (h2c: one nghttp run; TLS: one curl --http2 connection with
SSLKEYLOGFILE; a few KB) is cut at every offset, as pcap, pcapng and gzip, and
`connscope replay` runs on each cut file (with the key log for the pcap cuts). Every
run must end by itself within its time limit, without a signal (returncode >= 0),
print only JSON objects on stdout (the stats record last when anything is printed)
and only "connscope: " lines on stderr. A cut at a record boundary is a whole, shorter
capture: exit 0 and nothing on stderr.

The runs are independent processes, several at once (a bounded thread pool).
"""

import json
import os
import random
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import h2peers
import pcaps
import simpod
import tlspeers

NS = "shop"
FE_IP, BE_IP = "10.244.1.10", "10.244.1.20"
H2C_PORT, TLS_PORT = 31480, 31481
WORKERS = max(2, min(8, (os.cpu_count() or 2) * 2))
RUN_TIMEOUT = 20


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("cut")
    pki = tlspeers.Pki(d / "pki", BE_IP)
    kl = d / "keys.log"
    with simpod.Cluster() as c:
        fe = c.add_pod(NS, "frontend", FE_IP)
        be = c.add_pod(NS, "backend", BE_IP)
        root = h2peers.docroot(d / "www")
        s1 = h2peers.nghttpd_h2c(be, H2C_PORT, root)
        s2 = h2peers.nghttpd_tls(be, pki, TLS_PORT, root)
        path = d / "small.pcap"
        with pcaps.Tcpdump(path, [H2C_PORT, TLS_PORT], pod=fe) as cap:
            assert h2peers.nghttp(fe, f"http://{be.ip}:{H2C_PORT}/index.html")["code"] == 200
            cp = fe.run(["env", f"SSLKEYLOGFILE={kl}", "curl", "-sS", "--http2", "-k",
                         "--max-time", "10", "-o", "/dev/null", "-w", "%{http_version}",
                         f"https://{be.ip}:{TLS_PORT}/index.html"], timeout=20)
            assert cp.returncode == 0 and cp.stdout == "2", cp
            cap.stop()
        h2peers.stop(s1)
        h2peers.stop(s2)
    ng = pcaps.to_pcapng(path, d / "small.pcapng")
    gz = pcaps.to_gzip(path, d / "small.pcap.gz")
    return {"pcap": path, "pcapng": Path(ng), "gz": Path(gz), "keylog": kl, "dir": d}


def run(path, *args):
    argv = [simpod.CONNSCOPE_BIN, "replay", str(path), "-o", "json", *map(str, args)]
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"problem": f"no exit within {RUN_TIMEOUT}s"}
    out = {"rc": cp.returncode, "stderr": cp.stderr.decode(errors="replace")}
    probs = []
    if cp.returncode < 0:
        probs.append(f"killed by signal {-cp.returncode}")
    recs = []
    for ln in cp.stdout.decode(errors="replace").splitlines():
        try:
            r = json.loads(ln)
            if not isinstance(r, dict) or "type" not in r:
                raise ValueError
            recs.append(r)
        except ValueError:
            probs.append(f"not a JSON record: {ln[:200]!r}")
            break
    if recs and recs[-1]["type"] != "stats":
        probs.append(f"last record is {recs[-1]['type']}, not stats")
    elif recs and (recs[-1].get("lost") != 0 or recs[-1].get("map_full") != 0 or
                   "evictions" not in recs[-1]):
        # A damaged file is decode errors and truncation, not dropped edges.
        probs.append(f"stats: lost/map_full not 0 or no evictions: {recs[-1]}")
    bad_err = [ln for ln in out["stderr"].splitlines()
               if ln.strip() and not ln.startswith("connscope: ")]
    if bad_err:
        probs.append(f"stderr lines without 'connscope: ': {bad_err[:3]}")
    if "AddressSanitizer" in out["stderr"] or "runtime error" in out["stderr"]:
        probs.append("sanitizer report")
    out["records"] = recs
    if probs:
        out["problem"] = "; ".join(probs)
    return out


def cut_runs(src, offsets, *args):
    """Run replay on src cut at each offset; returns {offset: result}."""
    data = src.read_bytes()
    tmpd = tempfile.mkdtemp(prefix="cut-", dir=src.parent)

    def one(off):
        p = os.path.join(tmpd, f"{off}{''.join(src.suffixes)}")
        with open(p, "wb") as f:
            f.write(data[:off])
        try:
            return off, run(p, *args)
        finally:
            os.unlink(p)

    with ThreadPoolExecutor(WORKERS) as ex:
        out = dict(ex.map(one, offsets))
    os.rmdir(tmpd)
    return out


def report(results, what):
    bad = {off: r["problem"] for off, r in results.items() if "problem" in r}
    assert not bad, f"{what}: {len(bad)} of {len(results)} runs went wrong, e.g.:\n  " + \
        "\n  ".join(f"offset {o}: {p}" for o, p in sorted(bad.items())[:10])


def test_whole_small_capture(small):
    """The uncut capture (the reference for the cuts): 2 connections, 1 h2c stream,
    1 decrypted TLS stream with the key log; nothing on stderr."""
    r = run(small["pcap"], "--keylog", small["keylog"])
    assert "problem" not in r and r["rc"] == 0 and not r["stderr"], r
    conns = [x for x in r["records"] if x["type"] == "connection"]
    assert sorted((x["server"]["port"], (x.get("h2") or {}).get("streams")) for x in conns) \
        == [(H2C_PORT, 1), (TLS_PORT, 1)], conns


@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "gz"])
def test_cut_at_every_offset(small, fmt):
    """Every prefix of the capture (pcap with the key log; pcapng; gzip): no signal,
    no hang, JSON lines only."""
    src = small[fmt]
    n = src.stat().st_size
    args = ("--keylog", small["keylog"]) if fmt == "pcap" else ()
    results = cut_runs(src, range(0, n + 1), *args)
    report(results, f"{src.name} cut at every offset 0..{n}")
    if fmt == "pcap":
        # at a record boundary (past the file header) the cut file is a whole capture
        bounds = {e for _, e in pcaps.pcap_records(src)} | {24}
        noisy = {o: results[o]["stderr"] for o in bounds
                 if results[o]["rc"] != 0 or results[o]["stderr"]}
        assert not noisy, f"cuts at record boundaries complained: {dict(list(noisy.items())[:5])}"
        # the packet count of each cut is the number of whole records in it
        starts = sorted(bounds)
        for o in starts:
            st = [x for x in results[o]["records"] if x["type"] == "stats"]
            assert st and st[-1]["packets"] == starts.index(o), (o, st)


def test_flipped_bytes(small):
    """400 copies of the capture with 1-8 random bytes changed past the file header
    (fixed seed): no signal, no hang, JSON lines only."""
    data = small["pcap"].read_bytes()
    rnd = random.Random(1234)
    d = Path(tempfile.mkdtemp(prefix="flip-", dir=small["dir"]))
    files = []
    for i in range(400):
        b = bytearray(data)
        for _ in range(rnd.randint(1, 8)):
            b[rnd.randrange(24, len(b))] = rnd.randrange(256)
        p = d / f"{i}.pcap"
        p.write_bytes(bytes(b))
        files.append(p)
    with ThreadPoolExecutor(WORKERS) as ex:
        results = dict(zip(range(len(files)),
                           ex.map(lambda p: run(p, "--keylog", small["keylog"]), files)))
    report(results, "captures with flipped bytes")
    for p in files:
        p.unlink()
    d.rmdir()
