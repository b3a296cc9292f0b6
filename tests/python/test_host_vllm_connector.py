# SPDX-License-Identifier: Apache-2.0
"""kvstash.vllm.KvstashConnector driven as vLLM drives a KV connector
(tests/python/vllm_host.py says which vLLM code it stands in for and at
which commit), between two real kvstashd: a prefill side P and a decode
side D whose [peer] config names P."""
import math
import time

import pytest

pytestmark = pytest.mark.hosts

torch = pytest.importorskip("torch", reason="torch absent: the vLLM "
                            "connector harness is skipped")

from kvstash import Client  # noqa: E402
from kvstash._connector import block_keys  # noqa: E402
from kvstash._model import Config, Model, Sequence  # noqa: E402
from vllm_host import (CachedRequestData, Instance, KVCacheBlocks,  # noqa: E402
                       NewRequestData, Request, SchedulerOutput)

SECRET = ["--set=peer.secret=vllm-s3cret", "--set=peer.timeout_ms=2000"]
TOL = 1e-4   # as tests/python/test_restore.py, and for the same reason


@pytest.fixture(scope="module")
def model():
    return Model(Config())


@pytest.fixture
def pd(make_daemon):
    p = make_daemon("-p", extra=SECRET)
    p.start()
    d = make_daemon("-d", extra=SECRET + [
        f"--set=peer.list=prefill=127.0.0.1:{p.port}"])
    d.start()
    yield p, d
    for x in (d, p):
        x.kill() if x.proc is None else x.stop()


def tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, Config().vocab, (n,), generator=g).tolist()


def test_prefill_streams_and_decode_loads_layer_by_layer(model, pd):
    p, d = pd
    P = Instance(model, p.port, "kv_producer")
    D = Instance(model, d.port, "kv_consumer", kvstash_peer="prefill")
    prompt = tokens(100, 1)                         # 6 full blocks
    op = P.run(prompt, n_decode=1, chunk=40)        # chunked prefill
    assert op.params == {"do_remote_prefill": True, "kvstash_blocks": 6}
    od = D.run(prompt, n_decode=4, params=op.params)
    assert od.loaded_tokens == 96 and od.load_errors == []
    # The restored pages are P's bytes.
    for li in range(model.cfg.n_layers):
        a = P.cache.layers[li][:, op.seq.block_table[:6]]
        b = D.cache.layers[li][:, od.seq.block_table[:6]]
        assert torch.equal(a, b)
    # D computed only the last 4 prompt tokens, with P's logits for them.
    assert od.prompt_logits.shape[0] == 4
    assert (od.prompt_logits - op.prompt_logits[-4:]).abs().max() < TOL
    # The fetched blocks are stored in D's own sidecar too.
    with Client("127.0.0.1", d.port, None, "vllm-pd") as c:
        assert c.exists_batch(block_keys(prompt, 16)) == [True] * 6
    P.close()
    D.close()


def test_matched_tokens_are_pure_and_capped(model, pd):
    _, d = pd
    D = Instance(model, d.port, "kv_consumer", kvstash_peer="prefill")
    prompt = tokens(64, 2)                          # exactly 4 blocks
    req = Request("r", prompt, block_keys(prompt, 16),
                  {"do_remote_prefill": True, "kvstash_blocks": 9})
    # The last token is always computed: at most 3 blocks; asking twice
    # gives the same answer, and nothing was queued.
    assert D.sched.get_num_new_matched_tokens(req, 0) == (48, False)
    assert D.sched.get_num_new_matched_tokens(req, 0) == (48, False)
    assert D.sched.get_num_new_matched_tokens(req, 32) == (16, False)
    assert D.sched._loads == []
    assert D.sched.get_num_new_matched_tokens(
        Request("q", prompt, block_keys(prompt, 16)), 0) == (0, False)
    D.sched.update_state_after_alloc(req, KVCacheBlocks([7, 8, 9, 10]), 0)
    assert D.sched.build_connector_meta(None).loads == []
    D.close()


def test_prefill_killed_mid_load_fails_those_blocks_and_nothing_hangs(
        model, pd):
    """P has streamed layers 0 and 1 of 4 blocks (its prefill is still
    running) when its daemon is killed: D gets layers 0 and 1, then the
    blocks fail; D reports them, recomputes, and its logits are right."""
    p, d = pd
    P = Instance(model, p.port, "kv_producer")
    D = Instance(model, d.port, "kv_consumer", kvstash_peer="prefill",
                 kvstash_timeout_ms=8000)
    prompt = tokens(70, 3)                          # 4 full blocks
    ref = Instance(model, d.port, "kv_consumer")    # no peer: recomputes
    want = ref.run(prompt, n_decode=2)

    # P: one prefill step, stopped after layer 1 (layers 2, 3 not yet run).
    req = Request("p1", prompt, block_keys(prompt, 16))
    seq = Sequence(P.cache)
    seq.reserve(len(prompt))
    P.sched.update_state_after_alloc(req, KVCacheBlocks(seq.block_table), 0)
    meta = P.sched.build_connector_meta(SchedulerOutput(
        [NewRequestData("p1", prompt, (list(seq.block_table),), 0)],
        CachedRequestData([], [], []), {"p1": len(prompt)}))
    assert [len(s.keys) for s in meta.saves] == [4]
    P.worker.bind_connector_metadata(meta)
    model.forward(torch.tensor(prompt), seq)       # the pages P would have
    for li in (0, 1):
        P.worker.save_kv_layer(P.names[li], P.cache.layers[li], None)

    params = {"do_remote_prefill": True, "kvstash_blocks": 4}

    class KillAfterLayer1:
        """Kills P's daemon once D has layer 1 of every block."""
        def __init__(self, inner):
            self.inner = inner

        def wait_for_layer_load(self, name):
            self.inner.wait_for_layer_load(name)
            if name == D.names[1] and p.proc is not None:
                # Layers 0 and 1 of every block came, streamed from P.
                assert [f.failed for f in self.inner._fetches] == [set()]
                assert all(f.layers_done == {0, 1}
                           for f in self.inner._fetches)
                p.kill()
                self.t_kill = time.monotonic()

        def __getattr__(self, a):
            return getattr(self.inner, a)

    real = D.worker
    D.worker = KillAfterLayer1(real)
    t0 = time.monotonic()
    od = D.run(prompt, n_decode=2, params=params)
    took = time.monotonic() - D.worker.t_kill
    print(f"failed {took:.2f} s after the kill")
    D.worker = real
    assert od.loaded_tokens == 64
    # The 4 blocks were reported (vLLM would recompute them) ...
    assert sorted(od.load_errors) == sorted(od.seq.block_table[:4])
    # ... within the peers' timeout plus a second, not a hang.
    assert took < 2.0 + 1.0 + 5.0, took
    # After the recompute everything equals a plain recompute.
    assert (od.prompt_logits - want.prompt_logits).abs().max() < TOL
    assert od.fed == want.fed
    assert (od.decode_logits - want.decode_logits).abs().max() < TOL
    # P's worker: sealing against a dead daemon fails, quietly.
    P.worker.wait_for_save()
    assert time.monotonic() - t0 < 60
    for x in (P, D, ref):
        x.close()


def test_decode_sidecar_down_means_recompute(model, pd):
    p, d = pd
    P = Instance(model, p.port, "kv_producer")
    prompt = tokens(50, 4)
    op = P.run(prompt, n_decode=1)
    d.stop()
    D = Instance(model, d.port, "kv_consumer", kvstash_peer="prefill")
    od = D.run(prompt, n_decode=2, params=op.params)
    assert od.loaded_tokens == 48
    assert sorted(od.load_errors) == sorted(od.seq.block_table[:3])
    assert not math.isnan(float(od.prompt_logits.abs().max()))
    assert (od.prompt_logits[-2:] - op.prompt_logits[-2:]).abs().max() < TOL
    P.close()
    D.close()
