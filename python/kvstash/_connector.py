# SPDX-License-Identifier: Apache-2.0
"""Saving and restoring the model's paged KV cache through kvstash, the way
a vLLM KV connector does: test and benchmark code (see kvstash._model).

Block keys are chained as vLLM v1 chains them (vllm/v1/core/
kv_cache_utils.py, hash_block_tokens): the key of a full block of
block_size tokens is hash(parent block's key, the block's token ids,
extra keys), the first block's parent being a fixed NONE_HASH, and only
full blocks get keys. vLLM hashes a CBOR encoding of that triple with
SHA-256 (or the builtin hash); here the triple is encoded as the parent's
32 bytes, the token count and ids as little-endian u32, and repr() of the
extra keys (a LoRA name, multimodal hashes, a cache salt: whatever makes
the same tokens mean different KV). The same shape, so a key names a
prefix, not a block alone: two prompts share keys exactly as far as they
share tokens.

A block is stored as one part per layer: that layer's K page then V page
(2 * block_size * num_kv_heads * head_size fp32). vLLM's layout puts a
layer's K and V pages of one block in different places, so saving gathers
them into one staging tensor per layer and restoring scatters from one
staging tensor into fresh pages: one copy each way on the Python side, by
torch; the bytes between kvstash and the staging memory move without a
copy (UCX writes into the tensor).
"""
from __future__ import annotations

import array
import hashlib
import sys
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence as Seq, Tuple

import torch

from .client import Client, PutItem
from .enums import Tier
from ._model import Config, Sequence

#: The first block's parent. vLLM takes hash(PYTHONHASHSEED) or random
#: bytes per process; fixed here, so that keys are the same in every
#: process (a store shared across restarts needs that).
NONE_HASH = hashlib.sha256(b"kvstash: the parent of a first block").digest()


def hash_block_tokens(parent: Optional[bytes], token_ids: Seq[int],
                      extra_keys: Optional[Tuple[Any, ...]] = None) -> bytes:
    """The key (32 bytes) of a full block: hash of the parent's key, the
    block's token ids and its extra keys."""
    toks = array.array("I", token_ids)
    if sys.byteorder != "little":
        toks.byteswap()
    h = hashlib.sha256(parent or NONE_HASH)
    h.update(len(toks).to_bytes(4, "little"))
    h.update(toks.tobytes())
    if extra_keys:
        h.update(repr(tuple(extra_keys)).encode())
    return h.digest()


def block_keys(token_ids: Seq[int], block_size: int,
               cache_salt: Optional[str] = None) -> List[bytes]:
    """Keys of every full block of a prompt, chained. cache_salt, as in
    vLLM, is an extra key of the first block only (it isolates tenants)."""
    keys: List[bytes] = []
    parent: Optional[bytes] = None
    for b in range(len(token_ids) // block_size):
        extra = (cache_salt,) if (b == 0 and cache_salt) else None
        parent = hash_block_tokens(
            parent, token_ids[b * block_size:(b + 1) * block_size], extra)
        keys.append(parent)
    return keys


@dataclass
class Restored:
    """What restore() did."""
    blocks: int               #: blocks restored into the sequence
    tiers: Tuple[Tier, ...]   #: where match() found each of them
    nbytes: int               #: bytes fetched


class Connector:
    """Moves whole blocks of a Sequence's cache to and from kvstash."""

    def __init__(self, client: Client, cfg: Config,
                 staging: Optional[torch.Tensor] = None):
        """staging: memory to fetch blocks into, of shape (blocks,
        n_layers, 2, block_size, n_kv_heads, head_size), reused by every
        restore (a real connector keeps such a pool: first touching fresh
        pages costs more than the fetch on some VMs). None: allocated per
        restore."""
        self.client = client
        self.cfg = cfg
        self.staging = staging

    @staticmethod
    def make_staging(cfg: Config, blocks: int) -> torch.Tensor:
        """A staging pool for `blocks` blocks, its pages touched."""
        return torch.zeros(blocks, cfg.n_layers, 2, cfg.block_size,
                           cfg.n_kv_heads, cfg.head_size)

    def save(self, seq: Sequence, keys: Seq[bytes], first: int = 0) -> int:
        """Puts blocks first..len(keys)-1 of seq (full ones only), one
        part per layer, each naming its parent. Returns how many."""
        cfg = self.cfg
        n = min(len(keys), seq.num_tokens // cfg.block_size)
        if n <= first:
            return 0
        ids = torch.tensor(seq.block_table[first:n], dtype=torch.long)
        # (n, 2, block_size, kv_heads, head_size) per layer: block i's part
        # for that layer is stage[i], contiguous.
        stage = [pages[:, ids].transpose(0, 1).contiguous()
                 for pages in seq.cache.layers]
        items = [PutItem(keys[b], [s[b - first] for s in stage],
                         parent=keys[b - 1] if b else None)
                 for b in range(first, n)]
        self.client.put_batch(items)
        return n - first

    def restore(self, seq: Sequence, keys: Seq[bytes],
                max_blocks: Optional[int] = None) -> Restored:
        """Matches keys, fetches the matched prefix (at most max_blocks
        blocks) into fresh pages of an empty seq and marks those tokens
        computed. Blocks that vanish between match and get (they should
        not: the match holds a lease) end the prefix there."""
        if seq.num_tokens:
            raise ValueError("restore() fills an empty sequence")
        cfg = self.cfg
        keys = list(keys[:max_blocks] if max_blocks is not None else keys)
        m = self.client.match(keys, lease=True)
        n = m.matched
        for lid in m.lease_ids[1:]:
            self.client.release(lid)  # get_batch ends only the first
        if n == 0:
            return Restored(0, (), 0)
        if self.staging is not None and self.staging.shape[0] >= n:
            stage = self.staging[:n]
        else:
            stage = torch.empty(n, cfg.n_layers, 2, cfg.block_size,
                                cfg.n_kv_heads, cfg.head_size)
        res = self.client.get_batch(keys[:n], [stage[i] for i in range(n)],
                                    lease_id=m.lease_id)
        good = 0
        for r in res:
            if r.status != 0 or r.length != cfg.layer_block_bytes * \
                    cfg.n_layers:
                break
            good += 1
        seq.reserve(good * cfg.block_size)
        ids = torch.tensor(seq.block_table[:good], dtype=torch.long)
        for li, pages in enumerate(seq.cache.layers):
            pages[:, ids] = stage[:good, li].transpose(0, 1)
        seq.num_tokens = good * cfg.block_size
        return Restored(good, m.tiers[:good], sum(r.length for r in res[:good]))
