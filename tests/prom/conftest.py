"""connscope's metrics in a real Prometheus (tests/prom/test_prometheus.py).

Needs root (simulated pods, BPF) and Debian's prometheus package (prometheus,
promtool); nothing is skipped: without them the tests fail and say why.
"""

import os
import sys

import pytest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        raise pytest.UsageError("tests/prom needs root (network namespaces, cgroups, BPF)")
