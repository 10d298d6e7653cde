"""Capture files for connscope's replay tests: tcpdump into a file, an independent
oracle (tshark) for what is in it, and `connscope replay` run on it.

  Tcpdump(path, ports, pod=None, iface=None, linktype=None)
        tcpdump -U --immediate-mode -s 0 -w <path> on a pod's eth0 (inside its network
        namespace) or, without a pod, on the root namespace's lo; started and confirmed
        listening ("listening on" on stderr) before it returns, stopped with SIGINT so
        the file ends on a whole record; every wait bounded. A context manager.
  tshark_counts(path, keylog=None, h2c_ports=())
        what tshark (a dissector connscope shares no code with) finds in the file, per
        TCP connection (tcp.stream) and in total; the definitions are below.
  replay(path..., *args)  `connscope replay -o json` on files: records, stderr, rc.
  pods_json(pods)         `kubectl get pods -A -o json`-style text for simpod pods.

tshark_counts: the definitions
  connection      a tcp.stream in which a SYN without ACK was seen (a connection whose
                  handshake the capture holds). The client is the SYN's sender.
  h2 streams      client-to-server HTTP/2 HEADERS frames on an odd stream id, counted
                  once per stream id (trailers and CONTINUATION do not open streams);
                  HEADERS from the server (responses) are never counted.
  goaway          GOAWAY frames per direction (c2s: sent by the client).
  rst_stream      RST_STREAM frames, both directions.
  client_hellos   TLS handshake messages of type 1 from the client (two with a
                  HelloRetryRequest).
  server_hellos   type 2 from the server (a HelloRetryRequest is one too).
  version         the server's choice: supported_versions in the ServerHello (TLS 1.3)
                  or its legacy version (TLS 1.2): "TLSv1.2" / "TLSv1.3".
  tls_complete    with a key log (records decrypted): a Finished (type 20) from both
                  sides. Without one, from what is in the clear:
                    TLS 1.2  a ChangeCipherSpec from both sides, and no fatal alert in
                             the clear (the client rejecting the certificate sends its
                             alert before its own ChangeCipherSpec);
                    TLS 1.3  a ServerHello, then an application_data record from the
                             client (its Finished, or an encrypted alert), then one
                             more application_data record from the server after that
                             (a session ticket or a response: a server that got an
                             alert sends nothing more).
  Both are checked against the peers in the tests (the two must agree when both exist).
"""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simpod  # noqa: E402

TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
TCPDUMP = shutil.which("tcpdump") or "/usr/bin/tcpdump"
EDITCAP = shutil.which("editcap") or "/usr/bin/editcap"


class CaptureError(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# tcpdump

class Tcpdump:
    """tcpdump writing a capture file, for TCP traffic on the given port(s).

    pod: capture inside that simulated pod's network namespace (iface default eth0);
         None: in this (root) namespace, iface default lo.
    linktype: tcpdump -y value (e.g. LINUX_SLL2 with iface "any").
    The file is written by tcpdump itself (-w - with stdout on the file: no
    privilege-drop or AppArmor trouble with the path), packet-buffered (-U).
    After stop(): .stats = {"captured", "received", "dropped"} from tcpdump's last words.
    """

    START_TIMEOUT = 10
    STOP_TIMEOUT = 10

    def __init__(self, path, ports, pod=None, iface=None, linktype=None, snaplen=0,
                 extra=None):
        self.path = str(path)
        self.ports = [ports] if isinstance(ports, int) else list(ports)
        self.pod = pod
        self.iface = iface or ("eth0" if pod is not None else "lo")
        self.linktype = linktype
        self.snaplen = snaplen
        self.extra = extra
        self.proc = None
        self.stats = {}
        self._err = []

    def filter(self):
        f = "tcp and (" + " or ".join(f"port {p}" for p in self.ports) + ")"
        if self.extra:
            f = f"({f}) and ({self.extra})"
        return f

    def argv(self):
        a = [TCPDUMP, "-i", self.iface, "-U", "--immediate-mode", "-n",
             "-s", str(self.snaplen), "-B", "8192"]
        if self.linktype:
            a += ["-y", self.linktype]
        return a + ["-w", "-", self.filter()]

    def start(self):
        self._out = open(self.path, "wb")
        try:
            if self.pod is not None:
                self.proc = self.pod.popen(self.argv(), stdout=self._out,
                                           stderr=subprocess.PIPE)
            else:
                self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                             stdout=self._out, stderr=subprocess.PIPE,
                                             start_new_session=True)
        except BaseException:
            self._out.close()
            raise
        self._reader = threading.Thread(target=self._read_err, daemon=True)
        self._reader.start()
        try:
            simpod.wait_until(lambda: any("listening on" in e for e in self._err)
                              or self.proc.poll() is not None, self.START_TIMEOUT,
                              what="tcpdump to listen")
        except TimeoutError:
            self._kill()
            raise CaptureError(f"tcpdump did not start: {''.join(self._err)}")
        if self.proc.poll() is not None:
            self._reader.join(timeout=2)
            self._out.close()
            raise CaptureError(f"tcpdump exited ({self.proc.returncode}): "
                               f"{''.join(self._err)}")
        return self

    def _read_err(self):
        for line in self.proc.stderr:
            self._err.append(line.decode(errors="replace"))

    def _kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()

    def stop(self, settle=0.3):
        """Let the last packets arrive, SIGINT, wait: the file then ends on a whole
        record. Returns self."""
        if self.proc is None:
            return self
        time.sleep(settle)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill()
            raise CaptureError(f"tcpdump ignored SIGINT for {self.STOP_TIMEOUT}s")
        self._reader.join(timeout=5)
        self._out.close()
        for ln in self._err:
            p = ln.split()
            if len(p) >= 3 and p[1] == "packets":
                key = {"captured": "captured", "received": "received",
                       "dropped": "dropped"}.get(p[2])
                if key:
                    self.stats[key] = int(p[0])
        if os.path.getsize(self.path) < 24:
            raise CaptureError(f"{self.path}: tcpdump wrote no capture: {''.join(self._err)}")
        return self

    @property
    def stderr(self):
        return "".join(self._err)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(settle=0)
            except CaptureError:
                pass
        return False


def capture(pod, ports, path, **kw):
    """Tcpdump(path, ports, pod) as a context manager: `with capture(...) as cap:`."""
    return Tcpdump(path, ports, pod=pod, **kw)


# ---------------------------------------------------------------------------
# file conversions

def to_pcapng(src, dst):
    """The same packets as pcapng (editcap -F pcapng)."""
    cp = subprocess.run([EDITCAP, "-F", "pcapng", str(src), str(dst)], capture_output=True,
                        text=True, timeout=60)
    if cp.returncode != 0:
        raise CaptureError(f"editcap failed: {cp.stderr}")
    return str(dst)


def to_gzip(src, dst):
    with open(src, "rb") as f, gzip.open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return str(dst)


def pcap_records(path):
    """Byte offsets of the records of a classic pcap file: [(start, end)], for cutting
    files at a record boundary or in the middle of one."""
    data = Path(path).read_bytes()
    if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "little"
    elif data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = "big"
    else:
        raise CaptureError(f"{path}: not a classic pcap")
    out, off = [], 24
    while off + 16 <= len(data):
        incl = int.from_bytes(data[off + 8:off + 12], end)
        out.append((off, off + 16 + incl))
        off += 16 + incl
    return out


# ---------------------------------------------------------------------------
# tshark, the oracle

FIELDS = ["frame.number", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst",
          "ipv6.dst", "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin",
          "tcp.flags.reset", "tcp.len", "http2.type", "http2.streamid",
          "http2.goaway.last_stream_id", "http2.goaway.error", "tls.record.content_type",
          "tls.record.opaque_type", "tls.handshake.type", "tls.handshake.extensions_server_name",
          "tls.handshake.extensions_alpn_str", "tls.handshake.extensions.supported_version",
          "tls.handshake.version", "tls.alert_message.level", "frame.time_epoch"]

TLS_VERSIONS = {0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}


def _ints(s):
    out = []
    for x in s.split(",") if s else []:
        x = x.strip()
        if not x:
            continue
        try:
            out.append(int(x, 0))
        except ValueError:
            pass
    return out


def tshark_fields(path, keylog=None, h2c_ports=(), timeout=300):
    """tshark's per-packet fields (FIELDS) of a capture, as dicts of strings."""
    argv = [TSHARK, "-r", str(path), "-n",
            "-o", "tcp.desegment_tcp_streams:TRUE",
            "-o", "tcp.analyze_sequence_numbers:TRUE",
            "-o", "tls.desegment_ssl_records:TRUE",
            "-o", "tls.desegment_ssl_application_data:TRUE"]
    if keylog:
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    for p in h2c_ports:
        argv += ["-d", f"tcp.port=={p},http2"]
    argv += ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        argv += ["-e", f]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        raise CaptureError(f"tshark failed ({cp.returncode}) on {path}: {cp.stderr[-2000:]}")
    rows = []
    for ln in cp.stdout.splitlines():
        vals = ln.split("\t")
        vals += [""] * (len(FIELDS) - len(vals))
        rows.append(dict(zip(FIELDS, vals)))
    return rows


def _new_conn(sid):
    return {"stream": sid, "client": None, "server": None, "syn": False, "synack": False,
            "rst": False, "fin_c": False, "fin_s": False, "first_ts": None,
            "h2_streams": set(), "h2_frames": 0, "goaway_c2s": 0, "goaway_s2c": 0,
            "goaways": [], "rst_stream": 0,
            "client_hellos": 0, "server_hellos": 0, "sni": None, "alpn_offered": None,
            "alpn": None, "version": None, "finished_c": 0, "finished_s": 0,
            "ccs_c": False, "ccs_s": False, "fatal_alert": False, "tls_seq": []}


def tshark_counts(path, keylog=None, h2c_ports=(), timeout=300):
    """Per TCP connection and in total, what tshark finds in a capture (definitions in
    this module's docstring). Returns {"conns": {tcp.stream: {...}}, "connections",
    "h2_streams", "goaway_c2s", "goaway_s2c", "rst_stream", "client_hellos",
    "tls_complete", "packets"}. Connections are keyed by tcp.stream; each has
    "client"/"server" as (ip, port) (from the SYN; without one, the side whose port
    is in h2c_ports or the lower port is the server)."""
    rows = tshark_fields(path, keylog, h2c_ports, timeout)
    conns = {}
    for r in rows:
        if not r["tcp.stream"]:
            continue
        sid = int(r["tcp.stream"])
        c = conns.setdefault(sid, _new_conn(sid))
        src = (r["ip.src"] or r["ipv6.src"], int(r["tcp.srcport"]))
        dst = (r["ip.dst"] or r["ipv6.dst"], int(r["tcp.dstport"]))
        if c["first_ts"] is None:
            c["first_ts"] = float(r["frame.time_epoch"] or 0)
        syn, ack = r["tcp.flags.syn"] in ("1", "True"), r["tcp.flags.ack"] in ("1", "True")
        if syn and not ack:
            c["syn"] = True
            c["client"], c["server"] = src, dst
        elif syn and ack:
            c["synack"] = True
            if c["client"] is None:
                c["client"], c["server"] = dst, src
        if c["client"] is None:
            # no handshake seen: the well-known side is the server
            if src[1] in h2c_ports or (dst[1] not in h2c_ports and src[1] < dst[1]):
                c["client"], c["server"] = dst, src
            else:
                c["client"], c["server"] = src, dst
        c2s = src == c["client"]
        if r["tcp.flags.reset"] in ("1", "True"):
            c["rst"] = True
        if r["tcp.flags.fin"] in ("1", "True"):
            c["fin_c" if c2s else "fin_s"] = True
        # HTTP/2
        types, sids = _ints(r["http2.type"]), _ints(r["http2.streamid"])
        if len(types) != len(sids):
            raise CaptureError(f"{path}: frame {r['frame.number']}: http2.type {types} and "
                               f"http2.streamid {sids} do not pair up")
        last_ids, errs = _ints(r["http2.goaway.last_stream_id"]), _ints(r["http2.goaway.error"])
        gi = 0
        for t, s in zip(types, sids):
            c["h2_frames"] += 1
            if t == 1 and c2s and s % 2 == 1:
                c["h2_streams"].add(s)
            elif t == 7:
                c["goaway_c2s" if c2s else "goaway_s2c"] += 1
                c["goaways"].append({"by": "client" if c2s else "server",
                                     "last_stream_id": last_ids[gi] if gi < len(last_ids) else None,
                                     "error": errs[gi] if gi < len(errs) else None})
                gi += 1
            elif t == 3:
                c["rst_stream"] += 1
        # TLS
        # TLS 1.3 names the outer type of its protected records "opaque_type"
        cts = _ints(r["tls.record.content_type"]) + _ints(r["tls.record.opaque_type"])
        hts = _ints(r["tls.handshake.type"])
        for ct in cts:
            c["tls_seq"].append(("c" if c2s else "s", ct))
            if ct == 20:
                c["ccs_c" if c2s else "ccs_s"] = True
        for ht in hts:
            if ht == 1 and c2s:
                c["client_hellos"] += 1
                c["tls_seq"].append(("c", "CH"))
            elif ht == 2 and not c2s:
                c["server_hellos"] += 1
                c["tls_seq"].append(("s", "SH"))
            elif ht == 20:
                c["finished_c" if c2s else "finished_s"] += 1
        if 1 in hts and c2s:
            if r["tls.handshake.extensions_server_name"]:
                c["sni"] = r["tls.handshake.extensions_server_name"].split(",")[0]
            if r["tls.handshake.extensions_alpn_str"]:
                c["alpn_offered"] = r["tls.handshake.extensions_alpn_str"].split(",")
        if 2 in hts and not c2s:
            sv = _ints(r["tls.handshake.extensions.supported_version"])
            hv = _ints(r["tls.handshake.version"])
            v = sv[-1] if sv else (hv[-1] if hv else None)
            if v is not None:
                c["version"] = TLS_VERSIONS.get(v, hex(v))
            if r["tls.handshake.extensions_alpn_str"]:
                c["alpn"] = r["tls.handshake.extensions_alpn_str"].split(",")[-1]
        if "2" in r["tls.alert_message.level"].split(","):
            c["fatal_alert"] = True
    for c in conns.values():
        c["tls_complete"] = _tls_complete(c, keylog is not None)
        c["streams"] = len(c["h2_streams"])
    tot = {"conns": conns, "packets": len(rows),
           "connections": sum(c["syn"] for c in conns.values())}
    for k in ("goaway_c2s", "goaway_s2c", "rst_stream", "client_hellos", "server_hellos"):
        tot[k] = sum(c[k] for c in conns.values())
    tot["h2_streams"] = sum(c["streams"] for c in conns.values())
    tot["tls_complete"] = sum(bool(c["tls_complete"]) for c in conns.values())
    return tot


def _tls_complete(c, decrypted):
    if not c["client_hellos"]:
        return None
    if decrypted and c["finished_c"] and c["finished_s"]:
        return True
    if c["version"] == "TLSv1.2":
        return c["ccs_c"] and c["ccs_s"] and not c["fatal_alert"]
    if c["version"] == "TLSv1.3":
        seq = c["tls_seq"]
        try:
            i = seq.index(("s", "SH"))
            j = seq.index(("c", 23), i)
            return ("s", 23) in seq[j + 1:]
        except ValueError:
            return False
    return False


def by_client(counts):
    """tshark_counts()'s connections (those with a SYN) keyed by client (ip, port)."""
    return {c["client"]: c for c in counts["conns"].values() if c["syn"]}


# ---------------------------------------------------------------------------
# connscope replay

class Replay:
    """The result of one `connscope replay` run."""

    def __init__(self, argv, rc, stdout, stderr, seconds):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr
        self.seconds = seconds
        self.records, self.bad_lines = [], []
        for ln in stdout.splitlines():
            if not ln.strip():
                continue
            try:
                r = json.loads(ln)
                if not isinstance(r, dict):
                    raise ValueError
                self.records.append(r)
            except ValueError:
                self.bad_lines.append(ln)

    def of(self, typ):
        return [r for r in self.records if r.get("type") == typ]

    @property
    def conns(self):
        return self.of("connection")

    @property
    def stats(self):
        s = self.of("stats")
        return s[-1] if s else None

    def findings(self, kind=None):
        return [r for r in self.of("finding") if kind is None or r.get("kind") == kind]

    def __repr__(self):
        return (f"<Replay rc={self.rc} records={len(self.records)} "
                f"stderr={self.stderr[-500:]!r}>")


def replay(files, *args, binary=None, timeout=120):
    """connscope replay FILES... -o json ARGS; never raises on a bad exit (the caller
    checks .rc), only on a timeout."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    argv = [binary or simpod.CONNSCOPE_BIN, "replay", *map(str, files), "-o", "json",
            *map(str, args)]
    t0 = time.monotonic()
    cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return Replay(argv, cp.returncode, cp.stdout.decode(errors="replace"),
                  cp.stderr.decode(errors="replace"), time.monotonic() - t0)


def conn_key(rec):
    """(client ip, client port) of a connection record."""
    return (rec["client"]["ip"], rec["client"]["port"])


# ---------------------------------------------------------------------------
# kubectl get pods -A -o json

def pods_json(pods, extra=()):
    """A `kubectl get pods -A -o json` document naming simpod pods (and extra dicts
    already in kubectl's shape)."""
    items = []
    for p in pods:
        items.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "uid": p.uid,
                         "labels": {"app": p.name}},
            "spec": {"containers": [{"name": p.container, "image": "busybox"}],
                     "nodeName": "node1"},
            "status": {"phase": "Running", "podIP": p.ip, "podIPs": [{"ip": p.ip}],
                       "hostIP": "192.168.0.10"},
        })
    items += list(extra)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items,
                       "metadata": {"resourceVersion": ""}}, indent=1)
