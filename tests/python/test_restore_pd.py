# SPDX-License-Identifier: Apache-2.0
"""The restore proof of test_restore.py, again through vLLM's connector
slot: kvstash.vllm.KvstashConnector between a "prefill" instance and a
"decode" instance, each with its own kvstashd, the decode's sidecar
fetching from the prefill's over the [peer] config (streaming, one part
per layer), both driven as vLLM drives a connector (vllm_host.py).

Turn 1 (290 prompt tokens, 30 decoded) runs on the prefill side, which
streams its 18 full prompt blocks into its sidecar as each layer is
computed and hands the decode side the kv_transfer_params. Turn 2 (the
history plus 45 new tokens) runs on the decode side: the connector loads
the 18 blocks layer by layer (wait_for_layer_load) into pages filled with
NaN, the rest of the prompt is prefilled and 8 tokens decoded. The logits
must equal a full recompute of turn 2 within TOL = 1e-4, for the reason
test_restore.py gives (the restored K/V are the bytes turn 1 computed;
only the recompute's grouping of fp32 sums differs).
"""
import math

import pytest

torch = pytest.importorskip("torch", reason="torch absent: the restore "
                            "proof through the vLLM connector is skipped")

import kvstash  # noqa: E402
from kvstash._connector import block_keys  # noqa: E402
from kvstash._model import Config, Model, PagedKVCache, Sequence  # noqa: E402
from vllm_host import Instance  # noqa: E402

pytestmark = pytest.mark.model

TOL = 1e-4
TURN1, ANSWER, TURN2, N_DECODE = 290, 30, 45, 8
PEER = ["--set=peer.secret=pd-s3cret", "--set=peer.timeout_ms=3000"]


def _tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, Config().vocab, (n,), generator=g).tolist()


def test_turn2_on_the_decode_side_equals_recompute(make_daemon):
    model = Model(Config())
    p = make_daemon("-prefill", extra=PEER)
    p.start()
    d = make_daemon("-decode", extra=PEER + [
        f"--set=peer.list=prefill=127.0.0.1:{p.port}"])
    d.start()
    prefill = Instance(model, p.port, "kv_producer")
    decode = Instance(model, d.port, "kv_consumer", kvstash_peer="prefill")

    prompt1 = _tokens(TURN1, 10)
    t1 = prefill.run(prompt1, n_decode=ANSWER, chunk=128)
    assert t1.params == {"do_remote_prefill": True, "kvstash_blocks": 18}
    history = prompt1 + t1.fed
    prompt2 = history + _tokens(TURN2, 11)

    t2 = decode.run(prompt2, n_decode=N_DECODE, params=t1.params)
    assert t2.loaded_tokens == 18 * 16 and t2.load_errors == []
    assert t2.first_computed == 18 * 16
    # The decode side's pages hold the prefill side's bytes.
    for li in range(model.cfg.n_layers):
        assert torch.equal(
            prefill.cache.layers[li][:, t1.seq.block_table[:18]],
            decode.cache.layers[li][:, t2.seq.block_table[:18]])
    # And its sidecar has the blocks now (a third turn would hit there).
    with kvstash.Client("127.0.0.1", d.port, None, "vllm-pd") as c:
        assert c.match(block_keys(prompt2, 16)).matched == 18

    # The reference: turn 2 recomputed in full in a fresh cache.
    seq = Sequence(PagedKVCache(model.cfg, 64, fill=math.nan))
    ref_prompt = model.prefill(torch.tensor(prompt2), seq, chunk=100)
    ref_decode = model.teacher_forced(seq, t2.fed)
    assert torch.isfinite(t2.prompt_logits).all()
    assert (t2.prompt_logits - ref_prompt[18 * 16:]).abs().max() < TOL
    assert (t2.decode_logits - ref_decode).abs().max() < TOL
    assert t2.fed[1:] == [int(x) for x in ref_decode[:-1].argmax(-1)]
    prefill.close()
    decode.close()
    d.stop()
    p.stop()
