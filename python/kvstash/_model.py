# SPDX-License-Identifier: Apache-2.0
"""A small Llama-shaped transformer in torch, with a paged KV cache laid out
as vLLM lays it out: test and benchmark code, not a product.

It lives inside the package (with a leading underscore: not API) because
`python3 -m kvstash.bench restore` runs it from an installed package too;
the tests import it from here.

The model: token embedding, then per layer RMSNorm -> attention with rotary
position embeddings (RoPE, rotate-half form) and grouped-query attention
(n_kv_heads < n_heads) -> residual -> RMSNorm -> SwiGLU MLP -> residual;
a final RMSNorm and an output projection. Weights are random from a fixed
seed, fp32, on the CPU.

The cache, per layer, is one tensor of shape
    (2, num_blocks, block_size, num_kv_heads, head_size)
(K pages at [0], V pages at [1]), which is vLLM's FlashAttention layout. A
Sequence owns a block table (page ids in order): token t lives in page
block_table[t // block_size] at slot t % block_size. forward() writes the
new tokens' K and V into their slots, then attends over the pages, so a
prefix whose pages were filled by someone else (restored from kvstash) is
used exactly as if it had been computed here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional

import torch


@dataclass(frozen=True)
class Config:
    """Shape of the model. The defaults make a 16k-token prefill take
    seconds, not minutes, on two CPU cores."""
    vocab: int = 1024
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    head_size: int = 64
    ffn_dim: int = 704
    rope_theta: float = 10000.0
    eps: float = 1e-5
    block_size: int = 16
    max_tokens: int = 32768
    seed: int = 1234

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of every layer for one token, fp32."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_size * 4

    @property
    def layer_block_bytes(self) -> int:
        """One layer's K and V pages of one block: one part in kvstash."""
        return 2 * self.block_size * self.n_kv_heads * self.head_size * 4


class PagedKVCache:
    """Per-layer page tensors and a free list of page ids."""

    def __init__(self, cfg: Config, num_blocks: int,
                 fill: float = 0.0):
        """fill: what fresh pages hold (NaN in tests: a page read before
        it was written, or restored, poisons every logit after it)."""
        self.cfg = cfg
        self.num_blocks = num_blocks
        shape = (2, num_blocks, cfg.block_size, cfg.n_kv_heads, cfg.head_size)
        self.layers: List[torch.Tensor] = [torch.full(shape, fill)
                                           for _ in range(cfg.n_layers)]
        self.free: List[int] = list(range(num_blocks))[::-1]

    def allocate(self) -> int:
        if not self.free:
            raise MemoryError("KV cache full: no free page")
        return self.free.pop()

    def release(self, ids: List[int]) -> None:
        self.free.extend(reversed(ids))


class Sequence:
    """One request: its tokens so far and the pages that hold their KV."""

    def __init__(self, cache: PagedKVCache):
        self.cache = cache
        self.block_table: List[int] = []
        self.num_tokens = 0          # tokens whose KV is in the cache

    def reserve(self, n_tokens: int) -> None:
        """Pages for n_tokens in all."""
        bs = self.cache.cfg.block_size
        while len(self.block_table) * bs < n_tokens:
            self.block_table.append(self.cache.allocate())

    def free(self) -> None:
        self.cache.release(self.block_table)
        self.block_table = []
        self.num_tokens = 0


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Model:
    """The transformer; see the module's docstring."""

    def __init__(self, cfg: Config = Config()):
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)

        def w(*shape: int, fan_in: Optional[int] = None) -> torch.Tensor:
            std = 1.0 / math.sqrt(fan_in if fan_in else shape[-1])
            return torch.randn(*shape, generator=g) * std

        d, hd = cfg.dim, cfg.head_size
        self.embed = torch.randn(cfg.vocab, d, generator=g)
        self.layers = []
        for _ in range(cfg.n_layers):
            self.layers.append({
                "attn_norm": 1.0 + 0.1 * torch.randn(d, generator=g),
                "wq": w(cfg.n_heads * hd, d),
                "wk": w(cfg.n_kv_heads * hd, d),
                "wv": w(cfg.n_kv_heads * hd, d),
                "wo": w(d, cfg.n_heads * hd),
                "mlp_norm": 1.0 + 0.1 * torch.randn(d, generator=g),
                "w_gate": w(cfg.ffn_dim, d),
                "w_up": w(cfg.ffn_dim, d),
                "w_down": w(d, cfg.ffn_dim),
            })
        self.norm = torch.ones(d)
        self.lm_head = w(cfg.vocab, d)
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(cfg.max_tokens).float(), inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.cos, self.sin = ang.cos(), ang.sin()

    def _qkv(self, L: dict, x: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor) -> tuple:
        """Attention's RMSNorm, projections and RoPE: q (T, H, hd), k and
        v (T, KVH, hd)."""
        cfg = self.cfg
        T = x.shape[0]
        h = _rms_norm(x, L["attn_norm"], cfg.eps)
        q = (h @ L["wq"].T).view(T, cfg.n_heads, cfg.head_size)
        k = (h @ L["wk"].T).view(T, cfg.n_kv_heads, cfg.head_size)
        v = (h @ L["wv"].T).view(T, cfg.n_kv_heads, cfg.head_size)
        return (q * cos + _rotate_half(q) * sin,
                k * cos + _rotate_half(k) * sin, v)

    def _mlp(self, L: dict, x: torch.Tensor) -> torch.Tensor:
        """x plus the SwiGLU MLP of its RMSNorm."""
        h = _rms_norm(x, L["mlp_norm"], self.cfg.eps)
        gate = torch.nn.functional.silu(h @ L["w_gate"].T)
        return x + (gate * (h @ L["w_up"].T)) @ L["w_down"].T

    def _attend(self, layer: int, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor, seq: Sequence, p0: int) -> torch.Tensor:
        """Writes k, v at positions p0.. into the pages, attends q over
        positions 0..p0+T-1 of the sequence (causal), returns (T, H*hd)."""
        cfg = self.cfg
        bs, T = cfg.block_size, q.shape[0]
        pages = seq.cache.layers[layer]
        pos = torch.arange(p0, p0 + T)
        table = torch.tensor(seq.block_table, dtype=torch.long)
        blk, off = table[pos // bs], pos % bs
        pages[0, blk, off] = k
        pages[1, blk, off] = v
        ctx = p0 + T
        nb = (ctx + bs - 1) // bs
        keys = pages[0, table[:nb]].reshape(nb * bs, cfg.n_kv_heads, -1)[:ctx]
        vals = pages[1, table[:nb]].reshape(nb * bs, cfg.n_kv_heads, -1)[:ctx]
        group = cfg.n_heads // cfg.n_kv_heads
        # Query head h uses KV head h // group. The group's queries are
        # stacked along the rows, so each KV head is one large matmul.
        qg = (q * (1.0 / math.sqrt(cfg.head_size))).view(
            T, cfg.n_kv_heads, group, cfg.head_size).permute(1, 2, 0, 3)
        qg = qg.reshape(cfg.n_kv_heads, group * T, cfg.head_size)
        scores = torch.bmm(qg, keys.permute(1, 2, 0))   # (KVH, G*T, ctx)
        # Causal: every query sees the whole prefix before p0; within the
        # chunk, query t sees keys p0..p0+t.
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        scores.view(cfg.n_kv_heads, group, T, ctx)[..., p0:].masked_fill_(
            causal, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = torch.bmm(probs, vals.permute(1, 0, 2))   # (KVH, G*T, hd)
        out = out.view(cfg.n_kv_heads, group, T, cfg.head_size)
        return out.permute(2, 0, 1, 3).reshape(T, cfg.n_heads * cfg.head_size)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, seq: Sequence,
                hooks: Optional[Any] = None) -> torch.Tensor:
        """Runs tokens (1-D long) at positions seq.num_tokens.. and returns
        their logits (T, vocab). Their K and V go into seq's pages.

        hooks, if given, is called around each layer's attention as vLLM
        calls a KV connector: hooks.before_attention(layer) before it reads
        the pages (wait_for_layer_load), hooks.after_attention(layer) once
        the layer's new K and V are in them (save_kv_layer)."""
        cfg = self.cfg
        T, p0 = tokens.shape[0], seq.num_tokens
        if p0 + T > cfg.max_tokens:
            raise ValueError(f"{p0 + T} tokens > max_tokens {cfg.max_tokens}")
        seq.reserve(p0 + T)
        cos, sin = self.cos[p0:p0 + T, None, :], self.sin[p0:p0 + T, None, :]
        x = self.embed[tokens]
        for li, L in enumerate(self.layers):
            q, k, v = self._qkv(L, x, cos, sin)
            if hooks is not None:
                hooks.before_attention(li)
            a = self._attend(li, q, k, v, seq, p0)
            if hooks is not None:
                hooks.after_attention(li)
            x = self._mlp(L, x + a @ L["wo"].T)
        seq.num_tokens = p0 + T
        return _rms_norm(x, self.norm, cfg.eps) @ self.lm_head.T

    def prefill(self, tokens: torch.Tensor, seq: Sequence,
                chunk: int = 512) -> torch.Tensor:
        """forward() in chunks of at most `chunk` tokens (chunked prefill:
        bounded memory for the attention scores); returns every new
        token's logits."""
        outs = [self.forward(tokens[i:i + chunk], seq)
                for i in range(0, tokens.shape[0], chunk)]
        return torch.cat(outs) if outs else torch.empty(0, self.cfg.vocab)

    def decode(self, seq: Sequence, first: int, n: int) -> tuple:
        """Greedy decoding: feeds `first`, then each argmax, n steps.
        Returns (tokens fed, logits of each step (n, vocab))."""
        fed, logits = [], []
        tok = first
        for _ in range(n):
            fed.append(tok)
            lg = self.forward(torch.tensor([tok]), seq)[0]
            logits.append(lg)
            tok = int(lg.argmax())
        return fed, torch.stack(logits)

    def teacher_forced(self, seq: Sequence, tokens: List[int]) -> torch.Tensor:
        """Logits of feeding tokens one by one (decode steps, no choice)."""
        return torch.stack([self.forward(torch.tensor([t]), seq)[0]
                            for t in tokens])

    @torch.no_grad()
    def dense_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """The same model without pages or chunks: one causal pass over
        all tokens with K and V kept in plain tensors. For testing the
        paged path."""
        cfg = self.cfg
        T = tokens.shape[0]
        cos, sin = self.cos[:T, None, :], self.sin[:T, None, :]
        x = self.embed[tokens]
        group = cfg.n_heads // cfg.n_kv_heads
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        for L in self.layers:
            q, k, v = self._qkv(L, x, cos, sin)
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
            s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(cfg.head_size)
            p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
            a = torch.einsum("hts,shd->thd", p, v).reshape(T, -1)
            x = self._mlp(L, x + a @ L["wo"].T)
        return _rms_norm(x, self.norm, cfg.eps) @ self.lm_head.T
