# SPDX-License-Identifier: Apache-2.0
"""The torch model (kvstash._model) and its block keys (kvstash._connector)
on their own, before any daemon: the paged cache holds what vLLM's layout
says, chunked prefill and decoding give the dense model's logits, and the
keys chain as vLLM's do."""
import math

import pytest

torch = pytest.importorskip("torch", reason="torch absent: model tests "
                            "skipped (install python3-torch)")

from kvstash._connector import NONE_HASH, block_keys, hash_block_tokens  # noqa: E402
from kvstash._model import Config, Model, PagedKVCache, Sequence  # noqa: E402

pytestmark = pytest.mark.model

# Paged and dense paths do the same arithmetic in different matrix shapes;
# fp32 sums of a few hundred terms in another order differ by ~1e-6 of
# their magnitude. Logits are O(1), so 1e-4 is ~100x that, and far below
# what any wrong K/V does (see test_restore.py's negative control).
TOL = 1e-4


@pytest.fixture(scope="module")
def model():
    return Model(Config())


def tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, Config().vocab, (n,), generator=g)


def test_shapes_follow_the_llama_recipe(model):
    cfg = model.cfg
    assert cfg.n_heads % cfg.n_kv_heads == 0 and cfg.n_kv_heads < cfg.n_heads
    assert cfg.n_heads * cfg.head_size == cfg.dim
    L = model.layers[0]
    assert L["wk"].shape == (cfg.n_kv_heads * cfg.head_size, cfg.dim)
    assert L["w_gate"].shape == L["w_up"].shape == (cfg.ffn_dim, cfg.dim)
    # Same seed, same weights: another process restores into this model.
    assert torch.equal(Model(cfg).lm_head, model.lm_head)
    assert cfg.kv_bytes_per_token == 2 * 4 * 2 * 64 * 4


def test_cache_layout_is_vllms(model):
    """(2, num_blocks, block_size, num_kv_heads, head_size) per layer, and
    token t's K is in page block_table[t // 16], slot t % 16."""
    cfg = model.cfg
    cache = PagedKVCache(cfg, 8)
    assert cache.layers[0].shape == (2, 8, 16, cfg.n_kv_heads, cfg.head_size)
    seq = Sequence(cache)
    toks = tokens(40, 1)
    model.prefill(toks, seq)
    assert seq.num_tokens == 40 and len(seq.block_table) == 3
    # Layer 0's K of token t, computed by hand: RMSNorm, projection, RoPE.
    L = model.layers[0]
    x = model.embed[toks]
    h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.eps) \
        * L["attn_norm"]
    k = (h @ L["wk"].T).view(40, cfg.n_kv_heads, cfg.head_size)
    half = cfg.head_size // 2
    rot = torch.cat((-k[..., half:], k[..., :half]), -1)
    k = k * model.cos[:40, None] + rot * model.sin[:40, None]
    for t in (0, 15, 16, 39):
        page = seq.block_table[t // 16]
        assert torch.allclose(cache.layers[0][0, page, t % 16], k[t],
                              atol=1e-5)


@pytest.mark.parametrize("chunk", [1000, 64, 17])
def test_chunked_paged_prefill_equals_the_dense_model(model, chunk):
    toks = tokens(300, 2)
    dense = model.dense_logits(toks)
    seq = Sequence(PagedKVCache(model.cfg, 32, fill=math.nan))
    paged = model.prefill(toks, seq, chunk=chunk)
    assert torch.isfinite(paged).all()
    assert (paged - dense).abs().max() < TOL
    assert dense.std() > 0.5  # logits with room for a wrong answer


def test_decoding_equals_prefill_of_the_same_tokens(model):
    toks = tokens(100, 3)
    seq = Sequence(PagedKVCache(model.cfg, 16))
    first = model.prefill(toks, seq)
    fed, logits = model.decode(seq, int(first[-1].argmax()), 20)
    full = model.dense_logits(torch.cat([toks, torch.tensor(fed)]))
    assert (logits - full[100:]).abs().max() < TOL
    assert fed[1:] == [int(x) for x in full[100:-1].argmax(-1)]


def test_pages_are_not_contiguous_per_sequence(model):
    """Two sequences interleave their pages; each still sees only its own."""
    cache = PagedKVCache(model.cfg, 16, fill=math.nan)
    a, b = Sequence(cache), Sequence(cache)
    ta, tb = tokens(64, 4), tokens(64, 5)
    for i in range(0, 64, 16):
        model.forward(ta[i:i + 16], a)
        model.forward(tb[i:i + 16], b)
    assert a.block_table == [0, 2, 4, 6] and b.block_table == [1, 3, 5, 7]
    la = model.forward(tokens(5, 6), a)
    seq = Sequence(PagedKVCache(model.cfg, 8))
    model.prefill(ta, seq)
    assert (model.forward(tokens(5, 6), seq) - la).abs().max() < TOL


def test_block_keys_chain_like_vllm():
    toks = list(range(100, 180))                     # 5 full blocks
    keys = block_keys(toks, 16)
    assert len(keys) == 5 and all(len(k) == 32 for k in keys)
    assert keys[0] == hash_block_tokens(None, toks[:16])
    assert keys[0] == hash_block_tokens(NONE_HASH, toks[:16])
    assert keys[1] == hash_block_tokens(keys[0], toks[16:32])
    # A partial block has no key; a longer prompt keeps the prefix's keys.
    assert block_keys(toks + [1, 2, 3], 16) == keys
    assert block_keys(toks + list(range(16)), 16)[:5] == keys
    # One token changed in block 2: blocks 0..1 keep their keys, every
    # later block changes (its parent changed), as in vLLM.
    other = list(toks)
    other[40] += 1
    ok = block_keys(other, 16)
    assert ok[:2] == keys[:2] and all(a != b for a, b in zip(ok[2:], keys[2:]))
    # The same tokens after another prefix get other keys.
    assert block_keys(toks[16:], 16)[0] != keys[1]
    # A cache salt (an extra key of the first block) changes the chain.
    salted = block_keys(toks, 16, cache_salt="tenant-a")
    assert all(a != b for a, b in zip(salted, keys))
    assert hash_block_tokens(None, toks[:16], ("lora-x",)) != keys[0]
