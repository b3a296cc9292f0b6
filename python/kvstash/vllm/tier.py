# SPDX-License-Identifier: Apache-2.0
"""kvstash as a secondary tier of vLLM's KV offloading (SecondaryTierManager).

vLLM enables it with the OffloadingConnector:

    --kv-transfer-config '{"kv_connector": "OffloadingConnector",
      "kv_role": "kv_both", "kv_connector_extra_config": {
        "spec_name": "TieringOffloadingSpec", "cpu_bytes_to_use": ...,
        "secondary_tiers": [{"type": "kvstash",
            "module_path": "kvstash.vllm.tier", "class_name": "KvstashTier",
            "port": 7370, "namespace": "model=llama-3.1-8b;tp=0"}]}}'

Contract (vllm/v1/kv_offload/tiering/base.py, manager.py and factory.py,
read in vllm-project/vllm at 2ac005777b4f, 01bb46261e71 and 0411f953de01;
the interface moved between them, so both spellings are served): the
factory builds cls(offloading_spec= or vllm_config=, primary_kv_view=,
tier_type=, **the tier's config); every method runs in the scheduler and
must not block. The manager calls lookup(key, req_context) per block (True
present, False absent, None "ask again next step"), submit_store(job) after
a block reached the CPU tier, submit_load(job) (promotions, batched per
request at the end of a step), and polls get_finished_jobs() (older:
get_finished()) for JobResult(job_id, success). on_new_request,
on_request_finished (older: request_finished), touch, on_schedule_end,
has_pending_work, drain_jobs and shutdown complete it.

A key is vLLM's OffloadKey: the block hash and a 4-byte big-endian group
index (used as the kvstash key as it is). A job's block_ids (newer:
chunk_ids) are rows of the primary tier's CPU memory, primary_kv_view of
shape (num_blocks, row bytes); a block is one kvstash block of one row,
put from and fetched into that row in place.

Never blocking: every libkvstash call runs on a kvstash._worker.Worker
thread. lookup() answers from what earlier queries found (kept
lookup_ttl_ms) and otherwise queues the key for one batched EXISTS and
returns None; the next steps see the answer.

kvstashd down or gone mid-call: lookups answer False (a miss), stores and
loads finish with success=False; the scheduler never sees an exception.
A load whose block has another length than its row fails (never partial
data): vLLM then recomputes those tokens.

Not implemented: touch() (kvstash keeps its own LRU; a touch would be a
round trip per block for nothing the daemon needs), take_events (no
KV events), metrics (build_metric_definitions/get_stats: none).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Collection, Dict, Iterable, List, Optional, Set

from .._keymap import store_key
from .._lib import DEFAULT_PORT
from .._worker import Worker
from ..client import Client, PutItem
from ..errors import KvsError

log = logging.getLogger("kvstash")

try:  # vLLM's own types where vLLM is installed
    from vllm.v1.kv_offload.tiering.base import (  # type: ignore
        JobResult as _JobResult, SecondaryTierManager as _Base)
except ImportError:  # pragma: no cover - vLLM is not a dependency
    _Base = object
    _JobResult = None


@dataclasses.dataclass
class JobResult:
    """vLLM's JobResult, where vLLM is absent."""
    job_id: int
    success: bool
    successful_keys: Optional[Collection[bytes]] = None


def _result(job_id: int, success: bool,
            ok_keys: Optional[List[bytes]]) -> Any:
    cls = _JobResult or JobResult
    if ok_keys is not None and not success and \
            "successful_keys" in {f.name for f in dataclasses.fields(cls)}:
        return cls(job_id=job_id, success=success, successful_keys=ok_keys)
    return cls(job_id=job_id, success=success)


def _row_ids(job: Any) -> List[int]:
    ids = getattr(job, "block_ids", None)
    if ids is None:
        ids = getattr(job, "chunk_ids")
    return [int(i) for i in ids]


class KvstashTier(_Base):
    """SecondaryTierManager over a kvstashd; see the module's docstring.

    Tier config (the secondary_tiers entry): address, port, namespace
    (default "vllm"), token, timeout_ms (each call, default 10 s),
    reconnect_ms, lookup_ttl_ms (how long a lookup's answer is reused).
    """

    def __init__(self, offloading_spec: Any = None,
                 primary_kv_view: Optional[memoryview] = None,
                 tier_type: str = "kvstash", *, vllm_config: Any = None,
                 address: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 namespace: str = "vllm", token: Optional[str] = None,
                 timeout_ms: int = 10_000, reconnect_ms: int = 1000,
                 lookup_ttl_ms: int = 2000, **unknown: Any):
        if primary_kv_view is None:
            raise TypeError("KvstashTier needs primary_kv_view")
        if unknown:
            raise TypeError(f"unknown kvstash tier settings: "
                            f"{sorted(unknown)}")
        # What the base classes' __init__ sets (their signatures differ
        # between vLLM versions, so it is not called).
        self._offloading_spec = offloading_spec
        self._vllm_config = vllm_config
        self._primary_kv_view = primary_kv_view
        self.tier_type = tier_type
        self.locality = None
        flat = primary_kv_view.cast("B") if primary_kv_view.ndim != 1 or \
            primary_kv_view.format != "B" else primary_kv_view
        self._row = primary_kv_view.strides[0] if primary_kv_view.ndim > 1 \
            else primary_kv_view.nbytes
        self._rows = flat
        self.namespace = namespace
        self._ttl = lookup_ttl_ms / 1000.0

        def connect() -> Client:
            return Client(address, int(port), token, namespace,
                          timeout_ms=timeout_ms)

        self._w = Worker(connect, "kvstash-vllm-tier",
                         reconnect_ms=reconnect_ms)
        # Scheduler-thread state (the manager never calls us concurrently);
        # _lock only guards _asking, which the worker's lookup job takes.
        self._lock = threading.Lock()
        self._known: Dict[bytes, tuple] = {}     # key -> (present, when)
        self._asking: Set[bytes] = set()         # queued for the next EXISTS
        self._asked: Set[bytes] = set()          # queued or in flight
        self._lookup_seq = 0
        self._jobs: Dict[Any, str] = {}          # host job id -> "store"...
        self._pending_results: List[Any] = []    # drained, not yet handed

    @staticmethod
    def get_tier_type() -> str:
        return "kvstash"

    def _view(self, row: int) -> memoryview:
        return self._rows[row * self._row:(row + 1) * self._row]

    # ---- lookups ------------------------------------------------------

    def lookup(self, key: bytes, req_context: Any = None) -> Optional[bool]:
        """True/False from a recent answer; else None, and the key goes
        into the next batched EXISTS."""
        self._take_finished()
        k = store_key(key)
        hit = self._known.get(k)
        if hit is not None and time.monotonic() - hit[1] < self._ttl:
            return hit[0]
        if k not in self._asked:
            self._asked.add(k)
            with self._lock:
                first = not self._asking
                self._asking.add(k)
            if first:
                self._lookup_seq += 1
                self._w.submit(self._exists_job,
                               job_id=("lookup", self._lookup_seq))
        return None

    def _exists_job(self, c: Client) -> Dict[bytes, bool]:
        with self._lock:
            keys, self._asking = list(self._asking), set()
        try:
            return dict(zip(keys, c.exists_batch(keys)))
        except KvsError:
            return {k: False for k in keys}  # down: a miss, not an error

    # ---- transfers ----------------------------------------------------

    def submit_store(self, job_metadata: Any) -> None:
        """Puts each block's primary row under its key (skipping those
        kvstash has already)."""
        keys = [store_key(k) for k in job_metadata.keys]
        rows = [self._view(r) for r in _row_ids(job_metadata)]
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys but {len(rows)} rows")

        def run(c: Client) -> tuple:
            have = c.exists_batch(keys)
            items = [PutItem(k, r) for k, r, h in zip(keys, rows, have)
                     if not h]
            try:
                c.put_batch(items)
            except KvsError:
                if not any(it.status for it in items):
                    raise
            bad = {it.key for it in items if it.status}
            return not bad, [k for k in keys if k not in bad]
        self._jobs[job_metadata.job_id] = "store"
        self._w.submit(run, job_id=job_metadata.job_id)

    def submit_load(self, job_metadata: Any) -> None:
        """Fetches each block into its primary row."""
        keys = [store_key(k) for k in job_metadata.keys]
        rows = [self._view(r) for r in _row_ids(job_metadata)]
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys but {len(rows)} rows")
        row = self._row

        def run(c: Client) -> tuple:
            res = c.get_batch(keys, rows)
            ok = [k for k, r in zip(keys, res)
                  if r.status == 0 and r.length == row]
            return len(ok) == len(keys), ok
        self._jobs[job_metadata.job_id] = "load"
        self._w.submit(run, job_id=job_metadata.job_id)

    def _take_finished(self) -> None:
        """Drains the worker: lookup answers into _known, job results into
        _pending_results."""
        out = []
        now = time.monotonic()
        for c in self._w.drain():
            if isinstance(c.job_id, tuple):
                for k, present in (c.value or {}).items():
                    self._known[k] = (present, now)
                    self._asked.discard(k)
                if not c.ok:
                    # Never ran (no connection): what it was to ask is a
                    # miss, so lookups settle instead of retrying forever.
                    with self._lock:
                        missed, self._asking = self._asking, set()
                    for k in missed | self._asked:
                        self._known[k] = (False, now)
                    self._asked.clear()
                continue
            kind = self._jobs.pop(c.job_id, None)
            if c.ok:
                success, ok_keys = c.value
                if kind == "store":
                    for k in ok_keys:
                        self._known[k] = (True, now)
                out.append(_result(c.job_id, success, list(ok_keys)))
            else:
                log.warning("kvstash: %s job %s failed: %s", kind, c.job_id,
                            c.error)
                out.append(_result(c.job_id, False, []))
        self._pending_results.extend(out)

    def get_finished_jobs(self) -> Iterable[Any]:
        """JobResults of the stores and loads finished since the last
        call."""
        self._take_finished()
        out, self._pending_results = self._pending_results, []
        return out

    #: The name in earlier vLLM versions.
    get_finished = get_finished_jobs

    # ---- requests and steps -------------------------------------------

    def on_new_request(self, req_context: Any) -> Any:
        """Block-level offloading: only new blocks are sent here."""
        try:
            from vllm.v1.kv_offload.base import (  # type: ignore
                OffloadPolicy, RequestOffloadingContext)
            return RequestOffloadingContext(policy=OffloadPolicy.BLOCK_LEVEL)
        except ImportError:
            return None

    def on_request_finished(self, req_context: Any) -> None:
        return None

    #: The name in earlier vLLM versions.
    request_finished = on_request_finished

    def touch(self, keys: Collection[bytes], req_context: Any = None) -> None:
        return None

    def on_schedule_end(self, context: Any = None) -> None:
        self._take_finished()

    def has_pending_work(self) -> bool:
        return self._w.pending > 0 or bool(self._pending_results)

    def drain_jobs(self) -> None:
        """Blocks until every submitted job finished; their results come
        with the next get_finished_jobs()."""
        self._w.wait_idle()
        self._take_finished()

    def shutdown(self) -> None:
        self._w.close()


__all__ = ["KvstashTier", "JobResult"]
