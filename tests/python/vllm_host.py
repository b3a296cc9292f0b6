# SPDX-License-Identifier: Apache-2.0
"""A vLLM instance in miniature, to drive kvstash.vllm.KvstashConnector as
vLLM drives a KV connector (test code).

Stands in for vLLM's v1 scheduler, GPU model runner and attention layers
as they call KVConnectorBase_V1 (vllm/distributed/kv_transfer/kv_connector/
v1/base.py at vllm-project/vllm commit
003df2961dd8830c317a61f9745ccd557da9fa06, and the callers in
vllm/v1/core/sched/scheduler.py, vllm/v1/worker/ and
vllm/attention/layer.py): one connector per role, SCHEDULER and WORKER,
built as cls(vllm_config, role, kv_cache_config). Per new request the
scheduler calls get_num_new_matched_tokens(request, local hits), allocates
the blocks, calls update_state_after_alloc(request, blocks, external
tokens); per step build_connector_meta(scheduler_output). The worker binds
the metadata, calls start_load_kv(forward_context), then, in every
attention layer, wait_for_layer_load(name) before and save_kv_layer(name,
kv_cache, attn_metadata) after it; then wait_for_save(),
get_finished(finished ids), get_block_ids_with_load_errors() and
clear_connector_metadata(). Failed blocks make the scheduler drop the
step's output and recompute from the first failed block (what vLLM's
_update_requests_with_invalid_blocks does for a synchronous load). At the
end request_finished(request, block_ids) gives the kv_transfer_params.

The stand-in objects have exactly the attributes of vLLM's that the
connector reads: KVTransferConfig (kv_role, kv_connector_extra_config),
CacheConfig.block_size, Request (request_id, num_tokens,
num_prompt_tokens, block_hashes, kv_transfer_params, prompt_token_ids),
KVCacheBlocks.get_block_ids(), NewRequestData (req_id, block_ids,
num_computed_tokens), CachedRequestData (req_ids, new_block_ids,
num_computed_tokens), SchedulerOutput (scheduled_new_reqs,
scheduled_cached_reqs, num_scheduled_tokens), ForwardContext
(no_compile_layers, attn_metadata, virtual_engine) and attn_metadata
(slot_mapping). The model is kvstash._model's, its cache vLLM's
FlashAttention layout; block hashes are chained as vLLM chains them
(kvstash._connector.block_keys).
"""
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from kvstash._connector import block_keys
from kvstash._model import PagedKVCache, Sequence
from kvstash.vllm import KvstashConnector


class KVConnectorRole(enum.Enum):
    SCHEDULER = 0
    WORKER = 1


@dataclass
class KVTransferConfig:
    kv_connector: str = "KvstashConnector"
    kv_connector_module_path: str = "kvstash.vllm.connector"
    kv_role: str = "kv_both"
    kv_connector_extra_config: Dict[str, Any] = field(default_factory=dict)


@dataclass
class CacheConfig:
    block_size: int = 16


@dataclass
class VllmConfig:
    kv_transfer_config: KVTransferConfig
    cache_config: CacheConfig


@dataclass
class Request:
    request_id: str
    prompt_token_ids: List[int]
    block_hashes: List[bytes]
    kv_transfer_params: Optional[Dict[str, Any]] = None

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids)


class KVCacheBlocks:
    def __init__(self, ids: List[int]):
        self._ids = list(ids)

    def get_block_ids(self) -> Tuple[List[int], ...]:
        return (list(self._ids),)


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: List[int]
    block_ids: Tuple[List[int], ...]
    num_computed_tokens: int


@dataclass
class CachedRequestData:
    req_ids: List[str]
    new_block_ids: List[Optional[Tuple[List[int], ...]]]
    num_computed_tokens: List[int]


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: List[NewRequestData]
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: Dict[str, int]


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor


@dataclass
class ForwardContext:
    no_compile_layers: Dict[str, Any]
    attn_metadata: Any
    virtual_engine: int = 0


@dataclass
class Outcome:
    """What one request did on one instance."""
    loaded_tokens: int                 # external tokens the connector gave
    prompt_logits: torch.Tensor        # of the prompt tokens computed last
    first_computed: int                # position of prompt_logits[0]
    fed: List[int]
    decode_logits: Optional[torch.Tensor]
    load_errors: List[int]             # block ids reported, in order seen
    params: Optional[Dict[str, Any]]   # from request_finished
    seq: Sequence


class Hooks:
    """The attention layers' calls into the worker's connector."""

    def __init__(self, inst: "Instance", fc: ForwardContext):
        self.inst, self.fc = inst, fc

    def before_attention(self, li: int) -> None:
        self.inst.worker.wait_for_layer_load(self.inst.names[li])

    def after_attention(self, li: int) -> None:
        name = self.inst.names[li]
        self.inst.worker.save_kv_layer(name, self.inst.cache.layers[li],
                                       self.fc.attn_metadata)


class Instance:
    """One vLLM instance: its scheduler-side and worker-side connectors,
    a paged cache, the model."""

    def __init__(self, model: Any, port: int, kv_role: str,
                 num_blocks: int = 64, **extra: Any):
        self.model = model
        self.bs = model.cfg.block_size
        cfg = VllmConfig(KVTransferConfig(kv_role=kv_role,
                                          kv_connector_extra_config={
                                              "kvstash_port": port,
                                              "kvstash_namespace": "vllm-pd",
                                              **extra}),
                         CacheConfig(self.bs))
        self.sched = KvstashConnector(cfg, KVConnectorRole.SCHEDULER, None)
        self.worker = KvstashConnector(cfg, KVConnectorRole.WORKER, None)
        self.cache = PagedKVCache(model.cfg, num_blocks, fill=math.nan)
        self.names = [f"model.layers.{i}.self_attn.attn"
                      for i in range(model.cfg.n_layers)]
        self.worker.register_kv_caches(dict(zip(self.names,
                                                self.cache.layers)))
        self._n = 0

    def _forward(self, so: SchedulerOutput, seq: Sequence, tokens: List[int],
                 start: int) -> Tuple[torch.Tensor, set]:
        meta = self.sched.build_connector_meta(so)
        w = self.worker
        table = torch.tensor(seq.block_table, dtype=torch.long)
        pos = torch.arange(start, start + len(tokens))
        fc = ForwardContext({n: None for n in self.names},
                            AttentionMetadata(table[pos // self.bs] * self.bs
                                              + pos % self.bs))
        w.bind_connector_metadata(meta)
        w.start_load_kv(fc)
        seq.num_tokens = start
        logits = self.model.forward(torch.tensor(tokens), seq,
                                    hooks=Hooks(self, fc))
        w.wait_for_save()
        errs = w.get_block_ids_with_load_errors()
        assert w.get_finished(set()) == (None, None)
        w.clear_connector_metadata()
        return logits, errs

    def run(self, prompt: List[int], n_decode: int = 0,
            params: Optional[Dict[str, Any]] = None,
            chunk: int = 4096) -> Outcome:
        self._n += 1
        rid = f"req-{self._n}"
        req = Request(rid, list(prompt), block_keys(prompt, self.bs), params)
        ext, load_async = self.sched.get_num_new_matched_tokens(req, 0)
        assert load_async is False
        seq = Sequence(self.cache)
        seq.reserve(len(prompt))
        self.sched.update_state_after_alloc(
            req, KVCacheBlocks(seq.block_table), ext)
        computed, errors, first = ext, [], True
        outs: List[torch.Tensor] = []
        out_start = computed
        while computed < len(prompt):
            n = min(chunk, len(prompt) - computed)
            if first:
                so = SchedulerOutput([NewRequestData(
                    rid, list(prompt), (list(seq.block_table),), computed)],
                    CachedRequestData([], [], []), {rid: n})
            else:
                so = SchedulerOutput([], CachedRequestData(
                    [rid], [None], [computed]), {rid: n})
            first = False
            logits, errs = self._forward(so, seq, prompt[computed:computed + n],
                                         computed)
            if errs:
                # The step's output is dropped; recompute from the first
                # failed block.
                bad = min(seq.block_table.index(b) for b in errs)
                errors += sorted(errs)
                computed = min(computed, bad * self.bs)
                outs, out_start = [], computed
                continue
            outs.append(logits)
            computed += n
        prompt_logits = torch.cat(outs) if outs else torch.empty(0)
        fed, dl = [], []
        tok = int(prompt_logits[-1].argmax()) if outs else 0
        for _ in range(n_decode):
            fed.append(tok)
            had = len(seq.block_table)
            seq.reserve(computed + 1)
            new = seq.block_table[had:]
            so = SchedulerOutput([], CachedRequestData(
                [rid], [(list(new),) if new else None], [computed]), {rid: 1})
            lg, errs = self._forward(so, seq, [tok], computed)
            assert not errs
            computed += 1
            dl.append(lg[0])
            tok = int(lg[0].argmax())
        _, p = self.sched.request_finished(req, list(seq.block_table))
        return Outcome(ext, prompt_logits, out_start, fed,
                       torch.stack(dl) if dl else None, errors, p, seq)

    def close(self) -> None:
        self.worker.shutdown()
        self.sched.shutdown()
