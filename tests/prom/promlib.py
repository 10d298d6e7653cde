"""A real Prometheus for connscope's tests, and the deploy/ files read the way
Prometheus, promtool and Grafana read them.

  Prometheus(dir, target, rule_files)   Debian's /usr/bin/prometheus on 127.0.0.1
                                        (a free port, its own storage under dir),
                                        scraping `target` as job "connscope" every
                                        second, rules evaluated every second
  rule_groups(path, for_override)       spec.groups of deploy/rules.yaml's
                                        PrometheusRule, as promtool wants them
  dashboard_targets(path)               every panel query of deploy/dashboard.json
  grafana_expr(expr, values)            a panel query with its variables filled in
  promtool_test(...)                    a `promtool test rules` file whose input
                                        series are what Prometheus scraped

Nothing here touches the machine's own Prometheus (if any): the process is ours,
started and killed by the test.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

import simpod

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
JOB = "connscope"
SCRAPE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                             "deploy", "prometheus-scrape.yaml")
# What Kubernetes service discovery would say about the DaemonSet's pod (Debian's
# prometheus is built without it): deploy/prometheus-scrape.yaml's relabeling turns
# these into the target's labels.
POD_META = {"__meta_kubernetes_pod_label_app": "connscope",
            "__meta_kubernetes_pod_container_port_name": "metrics",
            "__meta_kubernetes_pod_name": "connscope-test",
            "__meta_kubernetes_pod_node_name": "testnode",
            "__meta_kubernetes_pod_phase": "Running"}
# ...and pods or ports it must leave alone.
DECOYS = [dict(POD_META, __meta_kubernetes_pod_label_app="other"),
          dict(POD_META, __meta_kubernetes_pod_container_port_name="health"),
          dict(POD_META, __meta_kubernetes_pod_phase="Succeeded")]
# The labels the relabeling must give the target.
TARGET_LABELS = {"node": "testnode", "connscope_pod": "connscope-test"}


def scrape_job(target, decoy_targets):
    """deploy/prometheus-scrape.yaml's job with its discovery replaced by static
    targets that carry the discovery's labels, scraped every second."""
    with open(SCRAPE_CONFIG) as f:
        job, = yaml.safe_load(f)["scrape_configs"]
    assert "kubernetes_sd_configs" in job, job
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [{"targets": [target], "labels": POD_META}] + \
        [{"targets": [t], "labels": meta} for t, meta in zip(decoy_targets, DECOYS)]
    job["scrape_interval"], job["scrape_timeout"] = "1s", "900ms"
    return job


class PromError(RuntimeError):
    pass


class Prometheus:
    """prometheus on 127.0.0.1:<free port>, scraping target (HOST:PORT) with
    deploy/prometheus-scrape.yaml's job (static targets in place of Kubernetes
    discovery, see scrape_job) every second, and evaluating rule_files every second."""

    def __init__(self, workdir, target, rule_files=()):
        self.dir = str(workdir)
        self.target = target
        self.rule_files = [str(f) for f in rule_files]
        self.decoys = [f"127.0.0.1:{simpod.free_port()}" for _ in DECOYS]
        self.port = None
        self.proc = None
        self.url = None

    def config(self):
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": [scrape_job(self.target, self.decoys)],
        }

    def start(self, timeout=30):
        os.makedirs(self.dir, exist_ok=True)
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            yaml.safe_dump(self.config(), f)
        self.port = simpod.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}",
             f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PromError(f"prometheus exited {self.proc.returncode}:\n{self.logtext()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > end:
                raise PromError(f"prometheus not ready in {timeout}s:\n{self.logtext()}")
            time.sleep(0.2)

    def logtext(self):
        try:
            with open(os.path.join(self.dir, "prometheus.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- the HTTP API -------------------------------------------------------

    def api(self, path, **params):
        q = urllib.parse.urlencode([(k[:-1] + "[]" if k.endswith("_") else k, v) for k, v in params.items()
                                    for v in (v if isinstance(v, list) else [v])])
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{q}", timeout=20) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise PromError(f"{path} {params}: HTTP {e.code}: {e.read()[:500]!r}")
        if body.get("status") != "success":
            raise PromError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr, at=None):
        """An instant query: [(labels, value)], value a float."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] != "vector":
            raise PromError(f"{expr}: {data['resultType']}, not a vector")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def value(self, expr, at=None):
        """The one sample an instant query returns (None: no sample); more than one
        is an error."""
        res = self.query(expr, at)
        if len(res) > 1:
            raise PromError(f"{expr}: {len(res)} series: {res}")
        return res[0][1] if res else None

    def query_range(self, expr, start, end, step=1.0):
        """[(labels, [(t, value)])] over [start, end]."""
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=str(step))
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
                for r in data["result"]]

    def label_values(self, label, match):
        return self.api(f"label/{label}/values", match_=[match])

    def targets_up(self):
        return self.value(f'up{{job="{JOB}"}}') == 1

    def last_scrape(self):
        """Unix time of the last successful scrape of the target."""
        for t in self.api("targets")["activeTargets"]:
            if t["labels"].get("job") == JOB and t["health"] == "up":
                return parse_rfc3339(t["lastScrape"])
        return None

    def wait_scrape_after(self, t, timeout=10):
        """Wait for a scrape that began after unix time t (its samples are in)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            last = self.last_scrape()
            if last is not None and last > t:
                time.sleep(0.2)
                return last
            time.sleep(0.2)
        raise PromError(f"no scrape after {t} within {timeout}s")

    def firing(self):
        """{(alertname, frozenset(labels))} of the alerts firing now."""
        out = set()
        for a in self.api("alerts")["alerts"]:
            if a["state"] == "firing":
                labels = dict(a["labels"])
                out.add((labels.pop("alertname"), frozenset(labels.items())))
        return out


def parse_rfc3339(s):
    from datetime import datetime
    s = re.sub(r"(\.\d{6})\d*", r"\1", s).replace("Z", "+00:00")
    return datetime.fromisoformat(s).timestamp()


# ---------------------------------------------------------------------------
# deploy/rules.yaml

def rule_groups(path, for_override=None):
    """The PrometheusRule's spec (its groups), as promtool and prometheus want a
    rules file; for_override replaces every alert's `for` (the live test's copy)."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule", doc
    spec = doc["spec"]
    if for_override is not None:
        for g in spec["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    r["for"] = for_override
    return spec


def write_rules(path, spec):
    with open(path, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False, width=1000)
    return str(path)


def alerts_of(spec):
    return {r["alert"]: r for g in spec["groups"] for r in g["rules"] if "alert" in r}


LABEL_REF = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def render(template, labels):
    """An annotation as Prometheus renders it, for the templates deploy/rules.yaml
    uses: {{ $labels.NAME }} only (anything else is refused here)."""
    out = LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)
    if "{{" in out:
        raise ValueError(f"template beyond $labels.NAME: {template!r}")
    return out


def promtool(*args, timeout=120):
    cp = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                        timeout=timeout, stdin=subprocess.DEVNULL)
    return cp


# ---------------------------------------------------------------------------
# promtool test rules, from what Prometheus scraped

def fmt_value(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if v != int(v) else str(int(v))


def series_name(labels):
    labels = dict(labels)
    name = labels.pop("__name__")
    inner = ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def esc(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def input_series(series, start, step, n):
    """promtool's input_series from query_range results sampled at `step` from
    start: one value per step, "_" where the series had no sample."""
    out = []
    for labels, values in series:
        at = {round((t - start) / step): v for t, v in values}
        vals = " ".join(fmt_value(at[i]) if i in at else "_" for i in range(n))
        out.append({"series": series_name(labels), "values": vals})
    return out


# ---------------------------------------------------------------------------
# deploy/dashboard.json

def dashboard_targets(path):
    """[(panel title, expr)] of every panel (rows' nested panels too)."""
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
    walk(dash["panels"])
    return dash, out


def grafana_expr(expr, values, rate_interval="15s", interval="5s", range_="5m"):
    """expr with the dashboard's variables filled in the way Grafana does: values
    maps a template variable to one value (regex-escaped, as Grafana's =~ wants)."""
    def var(m):
        name = m.group(1) or m.group(2)
        builtins = {"__rate_interval": rate_interval, "__interval": interval,
                    "__range": range_}
        if name in builtins:
            return builtins[name]
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr}")
        return re.escape(values[name]).replace("\\", "\\\\")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", var, expr)


def which(cmd):
    return shutil.which(cmd)
