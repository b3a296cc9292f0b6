# SPDX-License-Identifier: Apache-2.0
"""kvstash.estimate: the arithmetic, the presets' KV sizes, and a bandwidth
measured with a real daemon's own counters."""
import pytest

import kvstash
from kvstash import PutItem
from kvstash import estimate as est


def test_kv_bytes_of_the_presets():
    assert est.LLAMA_31_8B.kv_bytes_per_token == 131072
    assert est.LLAMA_31_70B_TP8.kv_bytes_per_token == 327680
    assert est.DEEPSEEK_R1.kv_bytes_per_token == 61 * 576 * 2


def test_estimate_arithmetic():
    e = est.estimate(1000, 4096, bandwidth=1e9, prefill_tokens_per_s=4096,
                     latency_s=0.001)
    assert e.nbytes == 4_096_000
    assert e.restore_s == pytest.approx(0.001 + 0.004096)
    assert e.recompute_s == pytest.approx(1.0)
    assert e.restore_wins and e.ratio == pytest.approx(1 / e.speedup)
    with pytest.raises(ValueError):
        est.estimate(1, 1, 0, 1)


def test_prefill_gets_slower_per_token_with_context():
    m = est.LLAMA_31_8B
    assert est.prefill_rate(m, 1024) > est.prefill_rate(m, 16384)
    # The linear layers alone: 989e12 * 0.5 / (2 * 8.03e9) tokens/s.
    flat = est.ModelSpec("x", 1, 2 * 8.03e9, 0.0)
    assert est.prefill_rate(flat, 1) == pytest.approx(989e12 * 0.5 / 16.06e9)


def test_bandwidth_from_the_daemons_counters(client):
    keys = [f"bw-{i}".encode() for i in range(32)]
    client.put_batch([PutItem(k, bytes(65536)) for k in keys])
    bw = est.measure_bandwidth(client, keys, [bytearray(65536) for _ in keys])
    assert bw > 1e6  # bytes/s, counted by the daemon: 2 MiB moved
    assert est.bandwidth_from_stat({"get_bytes_sent": 0},
                                   {"get_bytes_sent": 10}, 2.0) == 5.0
    with pytest.raises(ValueError):
        est.measure_bandwidth(client, [b"absent"], [bytearray(8)])


def test_table_has_a_row_per_case():
    t = est.table([est.LLAMA_31_8B], [1024, 4096], {"a": 1e10, "b": 1e9})
    assert len(t.splitlines()) == 2 + 4
