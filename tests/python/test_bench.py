# SPDX-License-Identifier: Apache-2.0
"""python3 -m kvstash.bench restore, small: it runs, checks the restored
logits itself, and prints kvstash-bench's JSON-lines shape."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="torch absent: the restore benchmark "
                    "is skipped (install python3-torch)")

from conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.model


def test_restore_bench_prints_figures_against_recompute(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    r = subprocess.run([sys.executable, "-m", "kvstash.bench", "restore",
                        "--json", "--contexts", "128,256", "--reps", "1",
                        "--dir", str(tmp_path / "d")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    figs = {}
    for line in r.stdout.splitlines():
        o = json.loads(line)
        assert set(o) >= {"figure", "value", "unit", "limit", "ratio"}
        figs[o["figure"]] = o
    assert figs["kv-bytes-per-token"]["value"] == 4096
    assert figs["kv-bytes-per-token"]["limit"] is None
    for n in (128, 256):
        for tier in ("dram", "nvme"):
            f = figs[f"ttft-restored-{n}-{tier}"]
            assert f["unit"] == "ms" and f["limit"] > 0
            assert f["ratio"] == pytest.approx(f["value"] / f["limit"],
                                               abs=2e-3)
    assert "in NVME before" in figs["ttft-restored-256-nvme"]["note"]
