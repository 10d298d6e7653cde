"""Fixtures for connscope's live tests.

Every test builds its own simulated node (tests/lib/simpod.py): network
namespaces, a bridge and kubelet-style cgroups that it creates and removes
itself. Nothing is skipped: without root, or without the connscope binary
(make; or CONNSCOPE_BIN=...), the tests fail and say why.
"""

import os
import sys

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import simpod  # noqa: E402


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        raise pytest.UsageError("the live tests need root (network namespaces, cgroups, BPF)")


@pytest.fixture
def cluster():
    """A fresh simulated node; torn down after the test, even when it fails."""
    with simpod.Cluster() as c:
        yield c


@pytest.fixture
def connscope_bin():
    path = simpod.CONNSCOPE_BIN
    assert os.access(path, os.X_OK), \
        f"{path} is missing: run `make` in the repository root, or set CONNSCOPE_BIN"
    return path


# The backend pod's address in every test module that serves TLS (its certificate
# names it), and session-wide builds the TLS and HTTP/2 tests share.
BE_IP = "10.244.1.20"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A throwaway CA and server certificates for the backend (tests/lib/tlspeers.py)."""
    import tlspeers
    p = tlspeers.Pki(tmp_path_factory.mktemp("pki"), BE_IP)
    p.check()
    return p


@pytest.fixture(scope="session")
def h2grpc(tmp_path_factory):
    """The grpc-go client and server (tests/lib/go/h2grpc), built once, offline."""
    import h2peers
    return h2peers.build_h2grpc(tmp_path_factory.mktemp("h2grpc"))
