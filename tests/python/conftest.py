# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures of the Python tests: the package from the source tree,
and real kvstashd processes on 127.0.0.1 (kvstash._daemon), each with its
own data directory under KVS_TEST_DIR (CTest sets <build>/testdata)."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from kvstash._daemon import Daemon, default_dir, find_daemon  # noqa: E402


def pytest_report_header(config):
    import kvstash
    try:
        import torch
        t = f"torch {torch.__version__}"
    except ImportError:
        t = "torch absent: the model tests (test_model*.py) are skipped"
    return [f"kvstash from {Path(kvstash.__file__).parent}, "
            f"libkvstash {kvstash.find_library()}, kvstashd {find_daemon()}",
            t]


@pytest.fixture
def make_daemon(request):
    """Makes daemons with a fresh data directory named for the test; each
    is killed at the end of the test if still running."""
    made = []

    def make(tag="", **kw):
        name = "python-" + request.node.name.replace("[", "-").strip("]")
        d = Daemon(default_dir(name + tag), **kw)
        d.wipe()
        made.append(d)
        return d

    yield make
    # The data (a preallocated NVMe file each) goes; the log stays.
    for d in made:
        d.kill()
        d.wipe()


@pytest.fixture
def fresh_daemon(make_daemon):
    """A daemon of the test's own, started; stopped (or, if the test killed
    it, reaped) at the end."""
    d = make_daemon()
    d.start()
    yield d
    d.kill() if d.proc is None else d.stop()


@pytest.fixture(scope="module")
def daemon(request):
    """One daemon for a whole test module, with frames of at most 16 keys
    so that every batch call of the binding is split into frames."""
    d = Daemon(default_dir("python-" + Path(request.node.name).stem),
               extra=["--set=daemon.max_keys=16"])
    d.wipe()
    d.start()
    yield d
    d.kill() if d.proc is None else d.stop()
    d.wipe()


@pytest.fixture
def client(daemon, request):
    """A client of the module's daemon in a namespace of its own."""
    import kvstash
    ns = "test-" + request.node.name
    with kvstash.Client("127.0.0.1", daemon.port, None, ns) as c:
        yield c


def pytest_collection_modifyitems(config, items):
    """Tests not marked model (the torch ones) or hosts (the engine
    adapters' harnesses) are the binding's."""
    for it in items:
        if it.get_closest_marker("model") is None and \
                it.get_closest_marker("hosts") is None:
            it.add_marker(pytest.mark.binding)
