# SPDX-License-Identifier: Apache-2.0
"""Whether restoring a prefix's KV cache from kvstash beats recomputing it,
and by how much, from three numbers:

  - the model's KV bytes per token (kv_bytes_per_token(),
    mla_kv_bytes_per_token(), or a preset below);
  - a tier's bandwidth into the inference worker, measured with the
    daemon's own counters (measure_bandwidth(), bandwidth_from_stat());
  - the worker's prefill rate for that model, tokens per second
    (prefill_rate() from peak FLOP/s and an MFU, or a measured figure).

    restore   = latency + tokens * kv_bytes_per_token / bandwidth
    recompute = tokens / prefill_rate(tokens)

A sketch, not a simulator: it ignores that a worker can overlap restoring
layer i+1 with computing layer i (which only helps restoring) and that
prefill of a long prompt gets slower per token as attention grows (which
prefill_rate() models with the attention term). docs/python.md works it
out for Llama-3.1-8B, Llama-3.1-70B at TP8 and DeepSeek-R1 and gives the
sources of the rates.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence


def kv_bytes_per_token(n_layers: int, n_kv_heads: int, head_dim: int,
                       dtype_bytes: int = 2) -> int:
    """K and V of every layer for one token (grouped-query attention)."""
    return 2 * n_layers * n_kv_heads * head_dim * dtype_bytes


def mla_kv_bytes_per_token(n_layers: int, kv_lora_rank: int, rope_dim: int,
                           dtype_bytes: int = 2) -> int:
    """Multi-head latent attention (DeepSeek-V2/V3/R1): one compressed
    latent of kv_lora_rank plus the decoupled RoPE key per layer."""
    return n_layers * (kv_lora_rank + rope_dim) * dtype_bytes


@dataclass(frozen=True)
class ModelSpec:
    """What the estimate needs of a model. flops_per_token counts the
    linear layers (2 x the parameters a token goes through);
    attn_flops_per_ctx the attention's extra FLOPs per token per token of
    context before it (QK^T and PV: 4 x layers x heads x head dim)."""
    name: str
    kv_bytes_per_token: int
    flops_per_token: float
    attn_flops_per_ctx: float
    gpus: int = 1               #: tensor-parallel degree serving one copy


# Shapes from each model's published config.json.
LLAMA_31_8B = ModelSpec(
    "Llama-3.1-8B (bf16)", kv_bytes_per_token(32, 8, 128),
    2 * 8.03e9, 4 * 32 * 32 * 128)
LLAMA_31_70B_TP8 = ModelSpec(
    "Llama-3.1-70B (bf16, TP8)", kv_bytes_per_token(80, 8, 128),
    2 * 70.6e9, 4 * 80 * 64 * 128, gpus=8)
DEEPSEEK_R1 = ModelSpec(
    # 61 layers, kv_lora_rank 512, qk_rope_head_dim 64; 37e9 parameters
    # active per token; prefill attention over 128 heads of 192 (QK) and
    # 128 (V) dimensions.
    "DeepSeek-R1 (MLA, bf16 cache, 8 GPUs)", mla_kv_bytes_per_token(61, 512, 64),
    2 * 37e9, 2 * 61 * 128 * (192 + 128), gpus=8)
PRESETS = {m.name: m for m in (LLAMA_31_8B, LLAMA_31_70B_TP8, DEEPSEEK_R1)}

#: Dense BF16 tensor throughput of one GPU, FLOP/s: NVIDIA's H100 SXM and
#: H200 SXM datasheets both give 989 TFLOPS (1979 "with sparsity"); the
#: H200 differs in memory (141 GB HBM3e, 4.8 TB/s), not in compute.
H100_BF16_FLOPS = 989e12
H200_BF16_FLOPS = 989e12


def prefill_rate(model: ModelSpec, tokens: int,
                 peak_flops: float = H100_BF16_FLOPS,
                 mfu: float = 0.5) -> float:
    """Tokens per second of prefilling a prompt of `tokens` tokens on
    model.gpus GPUs at mfu of their peak (0.5 is an assumption: prefill is
    compute-bound, and well-tuned kernels reach about half of peak). Each
    token attends to tokens/2 earlier ones on average."""
    per_token = model.flops_per_token + model.attn_flops_per_ctx * tokens / 2
    return peak_flops * mfu * model.gpus / per_token


@dataclass(frozen=True)
class Estimate:
    """restore vs recompute of one prefix."""
    tokens: int
    nbytes: int                 #: KV bytes to move
    restore_s: float
    recompute_s: float

    @property
    def ratio(self) -> float:
        """restore / recompute, as kvstash-bench's ratio: < 1 wins."""
        return self.restore_s / self.recompute_s

    @property
    def speedup(self) -> float:
        """How many times sooner the restore is done."""
        return self.recompute_s / self.restore_s

    @property
    def restore_wins(self) -> bool:
        return self.restore_s < self.recompute_s


def estimate(kv_bytes: int, tokens: int, bandwidth: float,
             prefill_tokens_per_s: float, latency_s: float = 0.0
             ) -> Estimate:
    """Restore vs recompute of `tokens` tokens of kv_bytes each, the
    restore at `bandwidth` bytes/s after latency_s (a MATCH round trip,
    say), the recompute at prefill_tokens_per_s."""
    if bandwidth <= 0 or prefill_tokens_per_s <= 0:
        raise ValueError("bandwidth and prefill rate must be positive")
    nbytes = kv_bytes * tokens
    return Estimate(tokens, nbytes, latency_s + nbytes / bandwidth,
                    tokens / prefill_tokens_per_s)


def estimate_model(model: ModelSpec, tokens: int, bandwidth: float,
                   peak_flops: float = H100_BF16_FLOPS, mfu: float = 0.5,
                   latency_s: float = 0.0) -> Estimate:
    """estimate() with the prefill rate from prefill_rate(). bandwidth is
    what the node's sidecar delivers to all of model.gpus together."""
    return estimate(model.kv_bytes_per_token, tokens, bandwidth,
                    prefill_rate(model, tokens, peak_flops, mfu), latency_s)


def bandwidth_from_stat(before: Mapping[str, int], after: Mapping[str, int],
                        seconds: float, counter: str = "get_bytes_sent"
                        ) -> float:
    """Bytes per second by the daemon's own counter between two
    Client.stat() snapshots taken `seconds` apart. get_bytes_sent counts
    what GETs sent (any tier); bytes_read what was read from the data
    file (the NVMe tier)."""
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    return (after[counter] - before[counter]) / seconds


def measure_bandwidth(client: Any, keys: Sequence[bytes],
                      bufs: Sequence[Any], lease_id: int = 0,
                      counter: str = "get_bytes_sent") -> float:
    """Times one get_batch of keys into bufs and returns the bytes per
    second the daemon counted for it (its counter, over the call's wall
    time). Blocks in DRAM measure the DRAM tier; right after a restart,
    the NVMe tier."""
    before: Dict[str, int] = client.stat()
    t0 = time.perf_counter()
    res = client.get_batch(keys, bufs, lease_id=lease_id)
    dt = time.perf_counter() - t0
    after: Dict[str, int] = client.stat()
    missing = sum(1 for r in res if not r.found)
    if missing:
        raise ValueError(f"{missing} of {len(keys)} blocks missing: the "
                         "bandwidth would be wrong")
    return bandwidth_from_stat(before, after, dt, counter)


def table(models: Sequence[ModelSpec], contexts: Sequence[int],
          bandwidths: Mapping[str, float],
          peak_flops: float = H100_BF16_FLOPS, mfu: float = 0.5,
          latency_s: float = 0.0) -> str:
    """A Markdown table of estimate_model() for every model, context and
    named bandwidth (bytes/s)."""
    rows = ["| model | tokens | KV bytes | tier | restore ms | recompute ms "
            "| ratio |", "|---|---:|---:|---|---:|---:|---:|"]
    for m in models:
        for n in contexts:
            for tier, bw in bandwidths.items():
                e = estimate_model(m, n, bw, peak_flops, mfu, latency_s)
                rows.append(f"| {m.name} | {n} | {_mib(e.nbytes)} | {tier} "
                            f"| {e.restore_s * 1e3:.1f} "
                            f"| {e.recompute_s * 1e3:.1f} | {e.ratio:.3f} |")
    return "\n".join(rows)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n} B"


if __name__ == "__main__":
    print(table(list(PRESETS.values()), [1024, 4096, 16384],
                {"DRAM 16 GB/s": 16e9, "NVMe 6 GB/s": 6e9}))
