"""/metrics and /healthz of a real daemon over simulated pods.

- The bounded remote label: with --metrics-remotes 1, the pod's most troubled
  remote (the one refusing) has a label of its own and the other remote counts
  under "other"; the connect histogram counts every established connection;
  `promtool check metrics` finds nothing to say about the exposition.
- /healthz: 200 "ok" while the programs are attached; after `bpftool link
  detach` of the packet programs' cgroup link, 503 naming the link, and
  connscope_programs_detached 1.
"""

import os
import re
import subprocess
import urllib.error
import urllib.request

from records import sample as value
from simpod import Connscope, bpf_links, wait_until
from workloads import run_client, start_server

NS = "shop"
FE_IP, BE_IP, DB_IP = "10.244.1.10", "10.244.1.20", "10.244.1.30"
BE_PORT, DB_PORT, CLOSED_PORT = 31200, 31201, 31202


def port():
    return 39100 + os.getpid() % 400


def get(path, timeout=5):
    """(status, body) of GET path on the daemon's metrics port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port()}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()




def test_remote_label_is_bounded_and_histogram_counts(cluster):
    fe = cluster.add_pod(NS, "frontend", FE_IP)
    be = cluster.add_pod(NS, "backend", BE_IP)
    db = cluster.add_pod(NS, "db", DB_IP)
    fel = f'namespace="{NS}",pod="frontend"'
    with Connscope(cluster, "--namespace", NS, "--metrics-addr", f"127.0.0.1:{port()}",
                   "--metrics-remotes", "1", command="daemon"):
        srv_be = start_server(be, "echo", BE_PORT, 3)
        srv_db = start_server(db, "echo", DB_PORT, 2)
        assert run_client(fe, "echo", BE_IP, BE_PORT, 3)[1]["results"] == ["echoed"] * 3
        assert run_client(fe, "echo", DB_IP, DB_PORT, 2)[1]["results"] == ["echoed"] * 2
        out = run_client(fe, "refused", DB_IP, CLOSED_PORT, 4)[1]
        assert out["results"] == ["refused"] * 4, out
        srv_be.wait(timeout=10)
        srv_db.wait(timeout=10)

        def settled():
            st, text = get("/metrics")
            ok = st == 200 and value(
                text, f'connscope_tcp_remote_refused_total{{{fel},remote="{DB_IP}:{CLOSED_PORT}"}}') == 4 \
                and value(text, f"connscope_tcp_closed_total{{{fel}}}") == 5
            return text if ok else None
        text = wait_until(settled, 15, interval=0.3, what="the refused remote's label with 4")
    labelled = re.findall(
        r'^connscope_tcp_remote_connections_total\{' + re.escape(fel) + r',remote="([^"]+)"\} (\S+)$',
        text, re.M)
    remotes = dict((r, float(v)) for r, v in labelled)
    # One label (the most troubled), and the rest under other: 5 connections to
    # two servers that answered, plus the refused remote's own 4.
    assert set(remotes) == {f"{DB_IP}:{CLOSED_PORT}", "other"}, labelled
    assert remotes[f"{DB_IP}:{CLOSED_PORT}"] == 4 and remotes["other"] == 5, labelled
    # Every established connect in the histogram, under +Inf and in _count.
    assert value(text, f'connscope_tcp_connect_duration_seconds_bucket{{{fel},le="+Inf"}}') == 5
    assert value(text, f"connscope_tcp_connect_duration_seconds_count{{{fel}}}") == 5
    assert value(text, f"connscope_tcp_connect_duration_seconds_sum{{{fel}}}") > 0
    cp = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode == 0 and not cp.stdout.strip() and not cp.stderr.strip(), \
        cp.stdout + cp.stderr


def test_healthz_fails_when_a_program_is_detached(cluster):
    cluster.add_pod(NS, "frontend", FE_IP)
    with Connscope(cluster, "--namespace", NS, "--metrics-addr", f"127.0.0.1:{port()}",
                   command="daemon") as cs:
        st, body = get("/healthz")
        assert (st, body) == (200, "ok\n"), (st, body)
        st, text = get("/metrics")
        assert value(text, "connscope_programs_detached") == 0, text
        assert value(text, "connscope_programs_attached") >= 6, text
        links = [ln["id"] for ln in bpf_links(cs.proc.pid) if ln["type"] == "cgroup"]
        assert links, "connscope holds no cgroup link"
        subprocess.run(["bpftool", "link", "detach", "id", str(links[0])], check=True,
                       timeout=30)
        st, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(get("/healthz")),
                              6, interval=0.3, what="/healthz to fail")
        assert "detached" in body and f"cgroup link {links[0]}" in body, body
        st, text = get("/metrics")
        assert st == 200 and value(text, "connscope_programs_detached") == 1, text
        cs.stop()
