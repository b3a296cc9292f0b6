# SPDX-License-Identifier: Apache-2.0
"""kvstash as vLLM's KV connector for prefill -> decode disaggregation.

vLLM enables it with

    --kv-transfer-config '{"kv_connector": "KvstashConnector",
      "kv_connector_module_path": "kvstash.vllm.connector",
      "kv_role": "kv_producer",            # prefill; "kv_consumer": decode
      "kv_connector_extra_config": {"kvstash_port": 7370,
          "kvstash_namespace": "model=llama-3.1-8b;tp=0",
          "kvstash_peer": "prefill"}}'    # decode: the prefill's sidecar

Contract (vllm/distributed/kv_transfer/kv_connector/v1/base.py, read in
vllm-project/vllm at 003df2961dd8830c317a61f9745ccd557da9fa06): vLLM makes
one instance per role, KvstashConnector(vllm_config, role,
kv_cache_config), the SCHEDULER one in the scheduler and a WORKER one per
worker. Scheduler: get_num_new_matched_tokens(request, num_computed_tokens)
-> (tokens, load_async) without side effects, update_state_after_alloc(
request, blocks, num_external_tokens), build_connector_meta(
scheduler_output) once per step, request_finished(request, block_ids) ->
(free later?, kv_transfer_params). Worker, per forward:
bind_connector_metadata, start_load_kv(forward_context), per attention
layer wait_for_layer_load(name) before it and save_kv_layer(name,
kv_layer, attn_metadata) after it, wait_for_save(), get_finished(ids),
get_block_ids_with_load_errors(), clear_connector_metadata().

How it moves KV:
- The prefill side (kv_producer) streams every full prompt block into its
  own sidecar as the layers are computed: a StreamPut per block of one
  part per layer (the layer's K page then V page); save_kv_layer sends
  part i without waiting, wait_for_save seals. request_finished returns
  {"do_remote_prefill": True, "kvstash_blocks": n, "kvstash_peer": ...}
  for the proxy to hand to the decode request.
- The decode side (kv_consumer) reads those params: n blocks can be loaded
  (never more than the prompt's full blocks before its last token). Its
  start_load_kv asks its own sidecar to fetch them from the prefill's
  sidecar (the peer named in "kvstash_peer" or the params, from its
  [peer] config) into host staging memory; wait_for_layer_load(layer i)
  waits for part i of every block and copies it into that layer's pages.
  Loads are synchronous within the forward (load_async False): vLLM's
  layer-by-layer pipelining.
- A block whose part does not arrive (the peer or a sidecar died, a
  timeout) is never copied from then on; its block id is reported by
  get_block_ids_with_load_errors() and vLLM recomputes it. A layer vLLM did
  not wait for also fails the blocks (their pages were not filled).

Block keys: request.block_hashes (vLLM's chained hashes), which both sides
compute alike for the same tokens.

kvstashd down: the prefill side skips saving (its blocks are reported by
the decode side as load errors and recomputed); the decode side reports
every block it was to load. Nothing raises into vLLM's loop.

Not implemented: asynchronous loads between steps (get_finished returns
(None, None)), HMA (request_finished_all_groups), KV events, stats, and
layouts other than FlashAttention's (2, num_blocks, block_size, heads,
head_size) and FlashInfer's (num_blocks, 2, ...).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from .._keymap import store_key
from .._lib import DEFAULT_PORT
from .._reconnect import Connection
from ..client import Client
from ..errors import KvsError, Status

log = logging.getLogger("kvstash")

try:  # vLLM's base classes where vLLM is installed
    from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # type: ignore
        KVConnectorBase_V1 as _Base, KVConnectorMetadata as _MetaBase)
    _HAVE_VLLM = True
except ImportError:  # pragma: no cover - vLLM is not a dependency
    _HAVE_VLLM = False

    class _MetaBase:  # type: ignore[no-redef]
        pass

    class _Base:  # type: ignore[no-redef]
        """What KVConnectorBase_V1 gives a connector, where vLLM is
        absent: the metadata binding."""

        def __init__(self, vllm_config: Any, role: Any,
                     kv_cache_config: Any = None):
            self._connector_metadata = None
            self._vllm_config = vllm_config
            self._kv_transfer_config = vllm_config.kv_transfer_config
            self._kv_cache_config = kv_cache_config
            self._role = role

        def bind_connector_metadata(self, connector_metadata: Any) -> None:
            self._connector_metadata = connector_metadata

        def clear_connector_metadata(self) -> None:
            self._connector_metadata = None

        def _get_connector_metadata(self) -> Any:
            assert self._connector_metadata is not None
            return self._connector_metadata

        def has_connector_metadata(self) -> bool:
            return self._connector_metadata is not None

        @property
        def role(self) -> Any:
            return self._role

#: Blocks per stream fetch (one message holds about 60 keys).
FETCH_CHUNK = 32


@dataclass
class LoadSpec:
    """Blocks of one request to fetch from a peer into pages."""
    req_id: str
    keys: List[bytes]
    block_ids: List[int]
    peer: str


@dataclass
class SaveSpec:
    """Blocks of one request to stream into the sidecar this step."""
    req_id: str
    keys: List[bytes]
    block_ids: List[int]


@dataclass
class KvstashConnectorMetadata(_MetaBase):
    """What the scheduler side tells the workers for one step."""
    loads: List[LoadSpec] = field(default_factory=list)
    saves: List[SaveSpec] = field(default_factory=list)


@dataclass
class _ReqState:
    """Scheduler side, per request."""
    request: Any
    block_ids: List[int] = field(default_factory=list)
    computed: int = 0
    saved: int = 0          # leading full blocks handed to save


@dataclass
class _Fetch:
    """Worker side: one LoadSpec being fetched."""
    spec: LoadSpec
    staging: Any                          # (n, layers, 2, bs, heads, hd)
    chunks: List[Tuple[Any, int, int]]    # (StreamFetch or None, first, n)
    failed: Set[int] = field(default_factory=set)   # indices into spec
    layers_done: Set[int] = field(default_factory=set)


class KvstashConnector(_Base):
    """KVConnectorBase_V1 over kvstash streaming; see the module's
    docstring.

    kv_connector_extra_config: kvstash_address, kvstash_port,
    kvstash_token, kvstash_namespace (default "vllm"), kvstash_peer (decode:
    the prefill's sidecar, a [peer] name or "ip:port"), kvstash_advertise
    (prefill: what decode should name it by, sent in the params),
    kvstash_timeout_ms (per layer wait, default 10 s), kvstash_wait_ms
    (how long the prefill's sidecar waits for a block not begun yet,
    default 0: the decode starts after the prefill).
    """

    def __init__(self, vllm_config: Any, role: Any,
                 kv_cache_config: Any = None):
        super().__init__(vllm_config, role, kv_cache_config)
        ktc = vllm_config.kv_transfer_config
        extra = dict(getattr(ktc, "kv_connector_extra_config", None) or {})
        kv_role = getattr(ktc, "kv_role", None) or "kv_both"
        self.is_producer = kv_role in ("kv_producer", "kv_both")
        self.is_consumer = kv_role in ("kv_consumer", "kv_both")
        self.block_size = int(vllm_config.cache_config.block_size)
        self._address = str(extra.get("kvstash_address", "127.0.0.1"))
        self._port = int(extra.get("kvstash_port", DEFAULT_PORT))
        self._token = extra.get("kvstash_token")
        self.namespace = str(extra.get("kvstash_namespace", "vllm"))
        self.peer = extra.get("kvstash_peer")
        self.advertise = extra.get("kvstash_advertise")
        self._timeout_ms = int(extra.get("kvstash_timeout_ms", 10_000))
        self._wait_ms = int(extra.get("kvstash_wait_ms", 0))
        # Scheduler side.
        self._reqs: Dict[str, _ReqState] = {}
        self._loads: List[LoadSpec] = []
        # Worker side (the model runner's thread only).
        address, port, token, ns = (self._address, self._port, self._token,
                                    self.namespace)
        self._c = Connection(lambda: Client(address, port, token, ns,
                                            timeout_ms=self._timeout_ms),
                             int(extra.get("kvstash_reconnect_ms", 1000)))
        self._layers: List[Tuple[str, Any]] = []
        self._index: Dict[str, int] = {}
        self._fetches: List[_Fetch] = []
        self._puts: Optional[List[Any]] = None
        self._keep: List[Any] = []
        self._load_errors: Set[int] = set()
        self._gone: Optional[Exception] = None   # EPEER seen, see _lost

    # ================= scheduler side =================================

    def _loadable_blocks(self, request: Any) -> int:
        """Leading blocks the decode side may load for request: what the
        prefill reported sealed, within the prompt's full blocks before
        its last token. A pure function of the request."""
        if not self.is_consumer:
            return 0
        p = getattr(request, "kv_transfer_params", None) or {}
        if not p.get("do_remote_prefill") or not (p.get("kvstash_peer") or
                                                   self.peer):
            return 0
        n = int(p.get("kvstash_blocks", 0))
        last = (int(request.num_tokens) - 1) // self.block_size
        return max(0, min(n, len(request.block_hashes), last))

    def get_num_new_matched_tokens(self, request: Any,
                                   num_computed_tokens: int
                                   ) -> Tuple[Optional[int], bool]:
        matched = self._loadable_blocks(request) * self.block_size
        return max(0, matched - num_computed_tokens), False

    def update_state_after_alloc(self, request: Any, blocks: Any,
                                 num_external_tokens: int) -> None:
        rid = request.request_id
        st = self._reqs.setdefault(rid, _ReqState(request))
        if num_external_tokens <= 0:
            return
        n = self._loadable_blocks(request)
        first = n - num_external_tokens // self.block_size
        ids = list(blocks.get_block_ids()[0])
        p = request.kv_transfer_params or {}
        self._loads.append(LoadSpec(
            rid, [store_key(bytes(h)) for h in request.block_hashes[first:n]],
            ids[first:n], str(p.get("kvstash_peer") or self.peer)))
        st.saved = n   # the fetch stores them in this side's sidecar

    def build_connector_meta(self, scheduler_output: Any
                             ) -> KvstashConnectorMetadata:
        meta = KvstashConnectorMetadata(loads=self._loads)
        self._loads = []
        if not self.is_producer:
            return meta
        for new in scheduler_output.scheduled_new_reqs:
            st = self._reqs.get(new.req_id)
            if st is not None:
                st.block_ids = list(new.block_ids[0])
                st.computed = int(new.num_computed_tokens)
        cached = scheduler_output.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            st = self._reqs.get(rid)
            if st is None:
                continue
            nb = cached.new_block_ids[i]
            if nb:
                st.block_ids.extend(nb[0])
            st.computed = int(cached.num_computed_tokens[i])
        for rid, n in scheduler_output.num_scheduled_tokens.items():
            st = self._reqs.get(rid)
            if st is None:
                continue
            req = st.request
            done = min(st.computed + int(n), int(req.num_prompt_tokens))
            full = min(done // self.block_size, len(req.block_hashes),
                       len(st.block_ids))
            if full > st.saved:
                meta.saves.append(SaveSpec(
                    rid, [store_key(bytes(h))
                          for h in req.block_hashes[st.saved:full]],
                    st.block_ids[st.saved:full]))
                st.saved = full
        return meta

    def request_finished(self, request: Any, block_ids: List[int]
                         ) -> Tuple[bool, Optional[Dict[str, Any]]]:
        st = self._reqs.pop(request.request_id, None)
        if not self.is_producer or st is None or not st.saved:
            return False, None
        params: Dict[str, Any] = {"do_remote_prefill": True,
                                  "kvstash_blocks": st.saved}
        if self.advertise:
            params["kvstash_peer"] = self.advertise
        return False, params

    # ================= worker side ====================================

    def _conn(self) -> Optional[Client]:
        return self._c.get()

    def _lost(self, e: Exception) -> None:
        """Logs e; after KVS_EPEER the connection is gone, and is dropped
        by _settle() once no stream made with it is left (destroying a
        client under its streams would free what they use)."""
        log.warning("kvstash: %s", e)
        if isinstance(e, KvsError) and e.status == Status.EPEER:
            self._gone = e

    def _settle(self) -> None:
        if self._gone is not None and not self._puts and not self._fetches:
            self._c.lost(self._gone)
            self._gone = None

    def register_kv_caches(self, kv_caches: Dict[str, Any]) -> None:
        """The layers, in the model's order; each (2, num_blocks, bs,
        heads, head_size) or (num_blocks, 2, bs, heads, head_size)."""
        self._layers = list(kv_caches.items())
        self._index = {name: i for i, (name, _) in enumerate(self._layers)}
        for name, t in self._layers:
            if t.dim() != 5 or 2 not in (t.shape[0], t.shape[1]):
                raise ValueError(f"kvstash: layer {name} has a KV cache of "
                                 f"shape {tuple(t.shape)}; expected (2, "
                                 f"blocks, block_size, heads, head_size)")

    @staticmethod
    def _gather(kv: Any, ids: List[int]) -> Any:
        """(n, 2, bs, heads, hd) of blocks ids, a new tensor."""
        import torch
        idx = torch.tensor(ids, dtype=torch.long, device=kv.device)
        if kv.shape[0] == 2:
            return kv[:, idx].transpose(0, 1).contiguous()
        return kv[idx].contiguous()

    @staticmethod
    def _scatter(kv: Any, ids: List[int], src: Any) -> None:
        import torch
        idx = torch.tensor(ids, dtype=torch.long, device=kv.device)
        if kv.shape[0] == 2:
            kv[:, idx] = src.transpose(0, 1).to(kv.device)
        else:
            kv[idx] = src.to(kv.device)

    def _page_shape(self) -> Tuple[int, ...]:
        kv = self._layers[0][1]
        return (2,) + tuple(kv.shape[2:])

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        """Starts fetching this step's loads from their peers."""
        if not self.has_connector_metadata():
            return
        meta = self._get_connector_metadata()
        if not meta.loads or not self._layers:
            return
        import torch
        kv0 = self._layers[0][1]
        for spec in meta.loads:
            n = len(spec.keys)
            staging = torch.empty((n, len(self._layers)) + self._page_shape(),
                                  dtype=kv0.dtype)
            fe = _Fetch(spec, staging, [])
            c = self._conn()
            for first in range(0, n, FETCH_CHUNK):
                cnt = min(FETCH_CHUNK, n - first)
                f = None
                if c is not None:
                    try:
                        f = c.stream_fetch(
                            spec.peer, [(spec.keys[first + j],
                                         staging[first + j])
                                        for j in range(cnt)], self._wait_ms)
                    except KvsError as e:
                        self._lost(e)
                if f is None:
                    fe.failed.update(range(first, first + cnt))
                fe.chunks.append((f, first, cnt))
            self._fetches.append(fe)

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Waits for this layer's part of every block being loaded and
        copies the parts that came into the layer's pages."""
        li = self._index.get(layer_name)
        if li is None or not self._fetches:
            return
        kv = self._layers[li][1]
        for fe in self._fetches:
            good = []
            for f, first, cnt in fe.chunks:
                for j in range(cnt):
                    b = first + j
                    if f is None or b in fe.failed:
                        continue
                    try:
                        f.wait(j, li, timeout_ms=self._timeout_ms)
                        good.append(b)
                    except KvsError as e:
                        log.warning("kvstash: block %d of %s, layer %s: %s",
                                    b, fe.spec.req_id, layer_name, e)
                        fe.failed.add(b)
            if good:
                self._scatter(kv, [fe.spec.block_ids[b] for b in good],
                              fe.staging[good, li])
            fe.layers_done.add(li)
        if li == len(self._layers) - 1:
            self._finish_fetches()

    def _finish_fetches(self) -> None:
        """Closes the fetches; failed blocks, and every block of a fetch a
        layer of which was never waited for, become load errors."""
        for fe in self._fetches:
            if len(fe.layers_done) < len(self._layers):
                fe.failed.update(range(len(fe.spec.keys)))
            for f, _, _ in fe.chunks:
                if f is not None:
                    f.close()
            self._load_errors.update(fe.spec.block_ids[b] for b in fe.failed)
        self._fetches = []
        self._settle()

    def save_kv_layer(self, layer_name: str, kv_layer: Any,
                      attn_metadata: Any, **kwargs: Any) -> None:
        """Streams this layer's part of every block being saved."""
        if not self.is_producer or not self.has_connector_metadata():
            return
        meta = self._get_connector_metadata()
        li = self._index.get(layer_name)
        if not meta.saves or li is None:
            return
        if self._puts is None:
            self._begin_puts(meta.saves, kv_layer)
        ids = [b for s in meta.saves for b in s.block_ids]
        stage = self._gather(kv_layer, ids).cpu()
        self._keep.append(stage)
        for j, put in enumerate(self._puts):
            if put is None:
                continue
            try:
                put.part_nb(li, stage[j])
            except KvsError as e:
                self._lost(e)
                put.abort()
                self._puts[j] = None

    def _begin_puts(self, saves: List[SaveSpec], kv_layer: Any) -> None:
        part = 1
        for d in self._page_shape():
            part *= d
        part *= kv_layer.element_size()
        lens = [part] * len(self._layers)
        self._puts = []
        c = self._conn()
        for s in saves:
            for k in s.keys:
                put = None
                if c is not None:
                    try:
                        put = c.stream_put(k, lens)
                    except KvsError as e:
                        self._lost(e)
                self._puts.append(put)

    def wait_for_save(self) -> None:
        """Seals this step's blocks (they become visible, and fetchable)."""
        for put in self._puts or []:
            if put is None:
                continue
            try:
                put.seal()
            except KvsError as e:
                log.warning("kvstash: sealing a block failed: %s", e)
                self._lost(e)
        self._puts = None
        self._keep = []
        if self._fetches:
            self._finish_fetches()
        self._settle()

    def get_finished(self, finished_req_ids: Set[str]
                     ) -> Tuple[Optional[Set[str]], Optional[Set[str]]]:
        return None, None

    def get_block_ids_with_load_errors(self) -> Set[int]:
        out, self._load_errors = self._load_errors, set()
        return out

    def shutdown(self) -> None:
        for put in self._puts or []:
            if put is not None:
                put.abort()
        self._puts = None
        if self._fetches:
            self._finish_fetches()
        self._c.close()


__all__ = ["KvstashConnector", "KvstashConnectorMetadata", "LoadSpec",
           "SaveSpec"]
