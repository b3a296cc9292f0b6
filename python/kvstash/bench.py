# SPDX-License-Identifier: Apache-2.0
"""Benchmarks from Python, printed as kvstash-bench prints them.

    python3 -m kvstash.bench restore [--json] [--contexts 1024,4096,16384]

restore: time to first token of a conversation turn whose history of N
tokens is restored from kvstash, against recomputing it, on the torch
model of kvstash._model (fp32, CPU). For each N the same run measures:

  ttft-recomputed   prefill of history + new message in a fresh cache,
                    chunked, to the first token's logits (the limit);
  ttft-restored-N-dram
                    match (with a lease), get of every full block of the
                    history into staging, scatter into fresh pages,
                    prefill of the new message only, first token's logits;
                    the blocks in the daemon's DRAM (median of --reps);
  ttft-restored-N-nvme
                    the same after the daemon was restarted, so every
                    block is read from its data file (median of --reps
                    restarts: a read promotes the blocks to DRAM);
  kv-bytes-per-token
                    the model's K and V for one token, all layers.

ratio = restored / recomputed: below 1 restoring wins. The first token and
the new message's logits of every restored run are checked against the
recompute (max difference 1e-4); a mismatch fails the benchmark. The
daemon is started by the benchmark on 127.0.0.1 with its data under
--dir. The model is tiny: the ratio depends on a model's KV bytes per
token against its compute per token, so for real models see
kvstash.estimate (docs/python.md).

JSON lines: {"figure", "value", "unit", "limit", "ratio", "note"}, as
tools/bench/bench_util.c prints them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch

from .client import Client
from ._connector import Connector, block_keys
from ._daemon import Daemon
from ._model import Config, Model, PagedKVCache, Sequence

TOL = 1e-4


def figure(name: str, value: float, unit: str, limit: Optional[float],
           note: Optional[str], as_json: bool) -> None:
    """One figure, in kvstash-bench's two formats."""
    if as_json:
        obj = {"figure": name, "value": round(value, 3), "unit": unit,
               "limit": round(limit, 3) if limit and limit > 0 else None,
               "ratio": round(value / limit, 3) if limit and limit > 0
               else None}
        if note:
            obj["note"] = note
        print(json.dumps(obj, separators=(",", ":")))
    else:
        line = f"{name:<28} {value:12.1f} {unit:<6}"
        if limit and limit > 0:
            line += f" limit {limit:10.1f}  ratio {value / limit:.3f}"
        if note:
            line += "  " + note
        print(line)
    sys.stdout.flush()


class _Case:
    """One context length: its tokens, keys and recomputed answer."""

    def __init__(self, model: Model, n: int, new: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.n = n
        self.tokens = torch.randint(0, model.cfg.vocab, (n + new,),
                                    generator=g)
        bs = model.cfg.block_size
        self.nblocks = n // bs
        self.keys = block_keys(self.tokens.tolist(), bs)[:self.nblocks]
        self.ref: Optional[torch.Tensor] = None   # logits of tokens after
        self.ttft_recompute = 0.0                 # the restored prefix


def _recompute(model: Model, case: _Case, chunk: int) -> Sequence:
    seq = Sequence(PagedKVCache(model.cfg, len(case.tokens) // 16 + 2))
    t0 = time.perf_counter()
    logits = model.prefill(case.tokens, seq, chunk=chunk)
    int(logits[-1].argmax())
    case.ttft_recompute = time.perf_counter() - t0
    case.ref = logits[case.nblocks * model.cfg.block_size:]
    return seq


def _restored(model: Model, conn: Connector, case: _Case, chunk: int):
    """One restored turn; returns (seconds, tiers seen, restore seconds)."""
    cfg = model.cfg
    seq = Sequence(PagedKVCache(cfg, len(case.tokens) // 16 + 2))
    t0 = time.perf_counter()
    r = conn.restore(seq, case.keys)
    t1 = time.perf_counter()
    logits = model.prefill(case.tokens[seq.num_tokens:], seq, chunk=chunk)
    first = int(logits[-1].argmax())
    t2 = time.perf_counter()
    if r.blocks != case.nblocks:
        raise RuntimeError(f"{case.n} tokens: restored {r.blocks} of "
                           f"{case.nblocks} blocks")
    diff = float((logits - case.ref).abs().max())
    if diff > TOL or first != int(case.ref[-1].argmax()):
        raise RuntimeError(f"{case.n} tokens: restored logits differ from "
                           f"the recompute by {diff:g} (> {TOL:g})")
    return t2 - t0, r.tiers, t1 - t0


def run_restore(args: argparse.Namespace) -> int:
    cfg = Config()
    model = Model(cfg)
    if args.threads:
        torch.set_num_threads(args.threads)
    contexts = [int(x) for x in args.contexts.split(",")]
    need = max(contexts) + args.new
    if need > cfg.max_tokens:
        print(f"bench: contexts up to {cfg.max_tokens - args.new} tokens",
              file=sys.stderr)
        return 2
    total_kv = sum(contexts) * cfg.kv_bytes_per_token
    dram = max(64, 2 * total_kv // (1 << 20) + 32)
    d = Daemon(Path(args.dir), dram_mib=dram, nvme_mib=2 * dram)
    d.wipe()
    d.start()
    print(f"# model: {cfg.n_layers} layers, dim {cfg.dim}, {cfg.n_heads} "
          f"heads / {cfg.n_kv_heads} KV heads of {cfg.head_size}, fp32, "
          f"{torch.get_num_threads()} torch threads; kvstashd on port "
          f"{d.port}, {dram} MiB DRAM", file=sys.stderr)
    figure("kv-bytes-per-token", cfg.kv_bytes_per_token, "B", None,
           f"block of {cfg.block_size} tokens: {cfg.n_layers} parts of "
           f"{cfg.layer_block_bytes} B", args.json)
    cases: List[_Case] = []
    staging = Connector.make_staging(cfg, need // cfg.block_size)
    try:
        with Client("127.0.0.1", d.port, None, args.namespace) as c:
            conn = Connector(c, cfg, staging)
            for i, n in enumerate(contexts):
                case = _Case(model, n, args.new, 1000 + i)
                seq = _recompute(model, case, args.chunk)
                conn.save(seq, case.keys)
                cases.append(case)
                times = []
                for _ in range(args.reps):
                    t, tiers, fetch = _restored(model, conn, case, args.chunk)
                    times.append((t, fetch, tiers))
                t, fetch, tiers = sorted(times)[len(times) // 2]
                figure(f"ttft-restored-{n}-dram", t * 1e3, "ms",
                       case.ttft_recompute * 1e3,
                       f"limit: recomputed; restore {fetch * 1e3:.1f} ms of "
                       f"it, {case.nblocks} blocks "
                       f"{_tiers(tiers)}, median of {args.reps}", args.json)
        # From NVMe: each round restarts the daemon (a read promotes the
        # blocks to DRAM), then restores every context once.
        nvme = {case.n: [] for case in cases}
        for _ in range(args.reps):
            d.restart()
            with Client("127.0.0.1", d.port, None, args.namespace) as c:
                conn = Connector(c, cfg, staging)
                for case in cases:
                    seen = c.match(case.keys).tiers  # no lease: no read
                    t, _, fetch = _restored(model, conn, case, args.chunk)
                    nvme[case.n].append((t, fetch, seen))
        for case in cases:
            t, fetch, seen = sorted(nvme[case.n])[len(nvme[case.n]) // 2]
            figure(f"ttft-restored-{case.n}-nvme", t * 1e3, "ms",
                   case.ttft_recompute * 1e3,
                   f"limit: recomputed; restore {fetch * 1e3:.1f} ms of it, "
                   f"{case.nblocks} blocks {_tiers(seen)} before, median of "
                   f"{args.reps} restarts", args.json)
        d.stop()
    finally:
        d.kill()
    return 0


def _tiers(tiers) -> str:
    names = sorted({t.name for t in tiers})
    return "in " + "+".join(names) if names else ""


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m kvstash.bench",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("restore", help="TTFT restored vs recomputed")
    r.add_argument("--json", action="store_true",
                   help="one JSON object per figure")
    r.add_argument("--contexts", default="1024,4096,16384",
                   help="history lengths in tokens (1024,4096,16384)")
    r.add_argument("--new", type=int, default=64,
                   help="tokens of the new message (64)")
    r.add_argument("--reps", type=int, default=3,
                   help="restored runs per context and tier (3)")
    r.add_argument("--chunk", type=int, default=512,
                   help="chunked-prefill size (512)")
    r.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default)")
    r.add_argument("--dir", default="var/bench-restore",
                   help="the daemon's data directory (var/bench-restore)")
    r.add_argument("--namespace", default="model=kvstash-tiny;dtype=fp32")
    args = p.parse_args(argv)
    if args.cmd == "restore":
        return run_restore(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
