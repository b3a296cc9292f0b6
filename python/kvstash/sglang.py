# SPDX-License-Identifier: Apache-2.0
"""kvstash as SGLang's HiCache storage (L3) backend.

SGLang loads it with

    --enable-hierarchical-cache --hicache-mem-layout page_first
    --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "kvstash",
        "module_path": "kvstash.sglang", "class_name": "KvstashHiCache",
        "kvstash_port": 7370}'

Contract (python/sglang/srt/mem_cache/hicache_storage.py and
storage/backend_factory.py, read at sgl-project/sglang commit
001067fffe33427bee0ed2f007fb7551a1d76b44): the factory builds the class as
cls(storage_config, kwargs), storage_config a HiCacheStorageConfig whose
extra_config is the JSON above; the cache controller then calls
register_mem_pool_host(pool); its prefetch thread calls batch_exists(keys,
extra_info) (how many leading pages are stored) and batch_get_v1(keys,
host_indices, extra_info), its backup thread batch_set_v1(keys,
host_indices, extra_info), both expecting one bool per key. Those threads
may block; this class calls libkvstash synchronously on them (one Client,
its calls serialised by the binding's lock).

Page-first layout: host_indices are page_size token slots per key; the
pool's get_page_buffer_meta(indices) gives, per page, the pointers and
sizes of its buffers: K and V across every layer for MHA (two), one for
MLA. Each buffer is one kvstash block "<key>" (MLA) or "<key>.k" /
"<key>.v" (MHA), put from and fetched into the pool's memory in place (UCX
reads and writes it; no Python copy). A layer-first pool is refused at
register_mem_pool_host (a page there is one small buffer per layer).

kvstashd down: batch_exists returns 0, batch_get_v1 and batch_set_v1 all
False, get None, set False, exists False; each logs the error once per
reconnect attempt and never raises into SGLang's threads. A page whose
stored length differs from its buffer is a miss (never partial data).

Namespace: extra_config "kvstash_namespace", else
"sglang;model=<model>;tp=<rank>/<size>" (MLA: no rank: every rank holds
the same latent cache).
"""
from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any, List, Optional, Sequence

from ._keymap import store_key
from ._lib import DEFAULT_PORT
from ._reconnect import Connection
from .client import Client, PutItem
from .errors import KvsError

try:  # subclass SGLang's base class where SGLang is installed
    from sglang.srt.mem_cache.hicache_storage import HiCacheStorage as _Base
except ImportError:  # pragma: no cover - SGLang is not a dependency
    _Base = object

log = logging.getLogger("kvstash")

#: The layouts whose pages are whole buffers across layers.
PAGE_FIRST = ("page_first", "page_first_direct")


def _region(ptr: int, size: int) -> Any:
    """size bytes at ptr as a writable buffer (the pool's own memory)."""
    return (ctypes.c_ubyte * size).from_address(ptr)


class KvstashHiCache(_Base):
    """HiCacheStorage over a kvstashd; see the module's docstring."""

    def __init__(self, storage_config: Any, kwargs: Optional[dict] = None):
        extra = dict(getattr(storage_config, "extra_config", None) or {})
        self._address = str(extra.get("kvstash_address", "127.0.0.1"))
        self._port = int(extra.get("kvstash_port", DEFAULT_PORT))
        self._token = extra.get("kvstash_token")
        self._timeout_ms = int(extra.get("kvstash_timeout_ms", 10_000))
        ns = extra.get("kvstash_namespace")
        if not ns:
            model = getattr(storage_config, "model_name", None) or "model"
            ns = f"sglang;model={model}"
            if not getattr(storage_config, "is_mla_model", False):
                ns += (f";tp={storage_config.tp_rank}/"
                       f"{storage_config.tp_size}")
            if getattr(storage_config, "pp_size", 1) > 1:
                ns += f";pp={storage_config.pp_rank}/{storage_config.pp_size}"
        self.namespace = ns
        self.mem_pool_host: Any = None
        self._per = 1             # buffers per page, from the pool
        self._lock = threading.Lock()     # serialises _c's use
        address, port, token = self._address, self._port, self._token
        self._c = Connection(lambda: Client(address, port, token, ns,
                                            timeout_ms=self._timeout_ms),
                             int(extra.get("kvstash_reconnect_ms", 1000)))
        self._stats = {"get_pages": 0, "get_hits": 0, "set_pages": 0,
                       "set_ok": 0, "errors": 0}

    # ---- connection ---------------------------------------------------

    def _conn(self) -> Optional[Client]:
        """The client; None while the daemon is unreachable."""
        with self._lock:
            return self._c.get()

    def _failed(self, op: str, e: Exception) -> None:
        self._stats["errors"] += 1
        log.warning("kvstash: %s failed: %s", op, e)
        with self._lock:
            self._c.lost(e)

    # ---- the pool's pages ---------------------------------------------

    def register_mem_pool_host(self, mem_pool_host: Any) -> None:
        layout = getattr(mem_pool_host, "layout", None)
        if layout not in PAGE_FIRST:
            raise ValueError(
                f"kvstash's HiCache backend needs a page-first host pool, not "
                f"{layout!r}: start SGLang with --hicache-mem-layout "
                f"page_first")
        self.mem_pool_host = mem_pool_host
        ptrs, _ = mem_pool_host.get_page_buffer_meta(
            _indices(range(mem_pool_host.page_size)))
        self._per = len(ptrs)

    def _pages(self, keys: Sequence[str], host_indices: Any):
        """(kvstash keys, regions) of every buffer of every page, and how
        many buffers a page has."""
        pool = self.mem_pool_host
        if pool is None:
            raise ValueError("register_mem_pool_host() was not called")
        if len(host_indices) != len(keys) * pool.page_size:
            raise ValueError(f"{len(keys)} keys but {len(host_indices)} "
                             f"host slots (page size {pool.page_size})")
        ptrs, sizes = pool.get_page_buffer_meta(host_indices)
        per = len(ptrs) // max(1, len(keys))
        if per * len(keys) != len(ptrs) or len(sizes) != len(ptrs):
            raise ValueError("the pool's buffer meta does not match the keys")
        skeys = self._keys(keys, per)
        regions = [_region(int(p), int(n)) for p, n in zip(ptrs, sizes)]
        return skeys, regions, per

    # ---- HiCacheStorage: the v1 (zero-copy, page-first) calls ----------

    def batch_exists(self, keys: List[str], extra_info: Any = None) -> int:
        """How many leading pages are stored whole."""
        if not keys:
            return 0
        c = self._conn()
        if c is None:
            return 0
        per = self._per
        skeys = self._keys(keys, per)
        try:
            present = c.exists_batch(skeys)
        except KvsError as e:
            self._failed("batch_exists", e)
            return 0
        for i in range(len(keys)):
            if not all(present[i * per:(i + 1) * per]):
                return i
        return len(keys)

    @staticmethod
    def _keys(keys: Sequence[str], per: int) -> List[bytes]:
        """The kvstash keys of every buffer of every page."""
        suffix = [""] if per == 1 else [".k", ".v"] if per == 2 else \
            [f".{j}" for j in range(per)]
        return [store_key(k + s) for k in keys for s in suffix]

    def batch_get_v1(self, keys: List[str], host_indices: Any,
                     extra_info: Any = None) -> List[bool]:
        """Fetches each page into its host slots; one bool per key."""
        n = len(keys)
        if n == 0:
            return []
        skeys, regions, per = self._pages(keys, host_indices)
        self._stats["get_pages"] += n
        c = self._conn()
        if c is None:
            return [False] * n
        try:
            res = c.get_batch(skeys, regions)
        except KvsError as e:
            self._failed("batch_get_v1", e)
            return [False] * n
        ok = [r.status == 0 and r.length == ctypes.sizeof(b)
              for r, b in zip(res, regions)]
        out = [all(ok[i * per:(i + 1) * per]) for i in range(n)]
        self._stats["get_hits"] += sum(out)
        return out

    def batch_set_v1(self, keys: List[str], host_indices: Any,
                     extra_info: Any = None) -> List[bool]:
        """Stores each page from its host slots; one bool per key."""
        n = len(keys)
        if n == 0:
            return []
        skeys, regions, per = self._pages(keys, host_indices)
        self._stats["set_pages"] += n
        c = self._conn()
        if c is None:
            return [False] * n
        items = [PutItem(k, r) for k, r in zip(skeys, regions)]
        try:
            c.put_batch(items)
        except KvsError as e:
            if not any(it.status for it in items):
                self._failed("batch_set_v1", e)
                return [False] * n
        ok = [it.status == 0 for it in items]
        out = [all(ok[i * per:(i + 1) * per]) for i in range(n)]
        self._stats["set_ok"] += sum(out)
        return out

    # ---- HiCacheStorage: the per-key calls (a page as one flat tensor) --

    def get(self, key: str, target_location: Any = None,
            target_sizes: Any = None) -> Any:
        """Fetches key into target_location (a flat CPU tensor or writable
        buffer); returns it, or None when absent or on error."""
        if target_location is None:
            return None
        r = self.batch_get([key], [target_location])
        return r[0]

    def batch_get(self, keys: List[str], target_locations: Any = None,
                  target_sizes: Any = None) -> List[Any]:
        if target_locations is None:
            return [None] * len(keys)
        c = self._conn()
        if c is None:
            return [None] * len(keys)
        bufs = list(target_locations)
        try:
            res = c.get_batch([store_key(k) for k in keys], bufs)
        except KvsError as e:
            self._failed("batch_get", e)
            return [None] * len(keys)
        from ._buffer import nbytes
        return [b if r.status == 0 and r.length == nbytes(b) else None
                for r, b in zip(res, bufs)]

    def set(self, key: str, value: Any = None, target_location: Any = None,
            target_sizes: Any = None) -> bool:
        """Stores value (a CPU tensor or buffer) under key."""
        return self.batch_set([key], [value])

    def batch_set(self, keys: List[str], values: Any = None,
                  target_locations: Any = None,
                  target_sizes: Any = None) -> bool:
        if values is None:
            return False
        c = self._conn()
        if c is None:
            return False
        try:
            c.put_batch([PutItem(store_key(k), v)
                         for k, v in zip(keys, values)])
            return True
        except KvsError as e:
            self._failed("batch_set", e)
            return False

    def exists(self, key: str) -> bool:
        c = self._conn()
        if c is None:
            return False
        try:
            return c.exists(store_key(key))
        except KvsError as e:
            self._failed("exists", e)
            return False

    def clear(self) -> None:
        """Not done: kvstash has no "drop the namespace" call, and SGLang
        calls this on a cache reset, which must not wipe a shared store."""
        return None

    def get_stats(self) -> None:
        """None: SGLang's storage metrics expect its own StorageMetrics
        object; the counters are in stats()."""
        return None

    def stats(self) -> dict:
        """This backend's page counters."""
        return dict(self._stats)

    def close(self) -> None:
        with self._lock:
            self._c.close()


def _indices(r: range) -> Any:
    """host indices for get_page_buffer_meta(): a torch tensor where torch
    is present (the pools call .tolist() on it), else a list."""
    try:
        import torch
        return torch.tensor(list(r), dtype=torch.int64)
    except ImportError:
        return list(r)


__all__ = ["KvstashHiCache"]
