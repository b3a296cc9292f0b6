# SPDX-License-Identifier: Apache-2.0
"""kvstash.sglang.KvstashHiCache driven as SGLang's HiCache drives an L3
storage backend, against a real kvstashd.

Stands in for SGLang's StorageBackendFactory._create_dynamic_backend and
HiCacheController's storage threads (python/sglang/srt/mem_cache/storage/
backend_factory.py and hicache_storage.py at sgl-project/sglang commit
001067fffe33427bee0ed2f007fb7551a1d76b44): the class is loaded from the
extra config's module_path/class_name and built as cls(storage_config,
kwargs); register_mem_pool_host(pool) follows; the backup thread calls
batch_set_v1(keys, host_indices, extra_info) and the prefetch thread
batch_exists(keys, extra_info) then batch_get_v1(...) in batches of at most
128 pages, each on its own thread. Keys are SHA-256 hex page hashes,
chained as SGLang chains them (each over its parent's hash and the page's
tokens). The host pool stand-in has what the backend uses of SGLang's
MHATokenToKVPoolHost / MLATokenToKVPoolHost in page-first layout: layout,
page_size, and get_page_buffer_meta(indices) computing pointers and sizes
from kv_buffer exactly as those pools do.
"""
import hashlib
import importlib
import threading
import time
from dataclasses import dataclass
from typing import Optional

import pytest

from procs import freeze  # noqa: E402

pytestmark = pytest.mark.hosts

torch = pytest.importorskip("torch", reason="torch absent: the SGLang "
                            "harness is skipped (its host pool is torch)")

STORAGE_BATCH_SIZE = 128
PAGE = 16


@dataclass
class HiCacheStorageConfig:
    tp_rank: int
    tp_size: int
    pp_rank: int
    pp_size: int
    attn_cp_rank: int
    attn_cp_size: int
    is_mla_model: bool
    enable_storage_metrics: bool
    is_page_first_layout: bool
    model_name: Optional[str]
    dp_rank: int = 0
    dp_size: int = 1
    tp_lcm_size: Optional[int] = None
    should_split_heads: bool = False
    extra_config: Optional[dict] = None


class MHAPagePool:
    """kv_buffer (2, size, layers, heads, dim): per page a K and a V
    buffer, each contiguous across layers."""

    def __init__(self, pages=64, layers=4, heads=2, dim=32, layout="page_first"):
        self.layout, self.page_size = layout, PAGE
        self.layer_num, self.head_num, self.head_dim = layers, heads, dim
        self.size = pages * PAGE
        self.dtype = torch.bfloat16
        self.kv_buffer = torch.zeros(2, self.size, layers, heads, dim,
                                     dtype=self.dtype)

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        idx = indices.tolist()
        item = torch.empty(0, dtype=self.dtype).element_size()
        base = self.kv_buffer.data_ptr()
        v_off = self.layer_num * self.size * self.head_num * self.head_dim * item
        ptrs = []
        for i in range(0, len(idx), self.page_size):
            k = base + idx[i] * self.layer_num * self.head_num * \
                self.head_dim * item
            ptrs += [k, k + v_off]
        size = self.layer_num * item * self.page_size * self.head_num * \
            self.head_dim
        return ptrs, [size] * len(ptrs)

    def page(self, slot):
        return self.kv_buffer[:, slot:slot + PAGE]


class MLAPagePool:
    """kv_buffer (size, layers, 1, latent dim): one buffer per page."""

    def __init__(self, pages=64, layers=4, dim=96):
        self.layout, self.page_size = "page_first", PAGE
        self.layer_num, self.kv_cache_dim = layers, dim
        self.dtype = torch.float16
        self.kv_buffer = torch.zeros(pages * PAGE, layers, 1, dim,
                                     dtype=self.dtype)

    def get_page_buffer_meta(self, indices):
        idx = indices.tolist()
        item = torch.empty(0, dtype=self.dtype).element_size()
        base = self.kv_buffer.data_ptr()
        ptrs = [base + idx[i] * self.layer_num * self.kv_cache_dim * item
                for i in range(0, len(idx), self.page_size)]
        size = self.layer_num * self.kv_cache_dim * item * self.page_size
        return ptrs, [size] * len(ptrs)

    def page(self, slot):
        return self.kv_buffer[slot:slot + PAGE]


def page_hashes(n, seed=0):
    out, parent = [], b""
    for i in range(n):
        toks = torch.arange(i * PAGE, (i + 1) * PAGE) + seed
        h = hashlib.sha256(parent + toks.numpy().tobytes()).hexdigest()
        out.append(h)
        parent = bytes.fromhex(h)
    return out


def slots(first_page, n):
    return torch.arange(first_page * PAGE, (first_page + n) * PAGE,
                        dtype=torch.int64)


def create_backend(port, mla=False, **extra):
    cfg = HiCacheStorageConfig(0, 1, 0, 1, 0, 1, mla, False, True,
                               "meta-llama/Llama-3.1-8B",
                               extra_config={"backend_name": "kvstash",
                                             "module_path": "kvstash.sglang",
                                             "class_name": "KvstashHiCache",
                                             "kvstash_port": port, **extra})
    ec = cfg.extra_config
    cls = getattr(importlib.import_module(ec["module_path"]), ec["class_name"])
    return cls(cfg, {})


def on_thread(fn, *args):
    """Runs fn on a thread of its own (SGLang's storage threads); returns
    (result, seconds)."""
    out = {}

    def run():
        t = time.monotonic()
        out["r"] = fn(*args)
        out["s"] = time.monotonic() - t
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(60)
    assert not th.is_alive(), "the backend hung"
    return out["r"], out["s"]


def backup(backend, keys, first_page):
    ok = []
    for i in range(0, len(keys), STORAGE_BATCH_SIZE):
        b = keys[i:i + STORAGE_BATCH_SIZE]
        ok += backend.batch_set_v1(b, slots(first_page + i, len(b)), None)
    return ok


def prefetch(backend, keys, first_page):
    hit = backend.batch_exists(keys, None)
    ok = []
    for i in range(0, hit, STORAGE_BATCH_SIZE):
        b = keys[i:min(hit, i + STORAGE_BATCH_SIZE)]
        ok += backend.batch_get_v1(b, slots(first_page + i, len(b)), None)
    return hit, ok


@pytest.fixture
def daemon(fresh_daemon):
    return fresh_daemon


@pytest.mark.parametrize("mla", [False, True])
def test_pages_round_trip_in_place(daemon, mla):
    pool = MLAPagePool() if mla else MHAPagePool()
    pool.kv_buffer[:] = torch.randn(pool.kv_buffer.shape).to(pool.dtype)
    be = create_backend(daemon.port, mla)
    be.register_mem_pool_host(pool)
    keys = page_hashes(20)
    ok, _ = on_thread(backup, be, keys[:12], 0)
    assert ok == [True] * 12
    saved = [pool.page(p * PAGE).clone() for p in range(12)]
    # Pages 30.. are where the prefetch lands: different slots.
    (hit, got), _ = on_thread(prefetch, be, keys, 30)
    assert hit == 12 and got == [True] * 12
    for p in range(12):
        assert torch.equal(pool.page((30 + p) * PAGE), saved[p])
    assert be.batch_exists(keys[12:], None) == 0
    assert be.exists(keys[0] + (".k" if not mla else ""))
    be.close()


def test_a_layer_first_pool_is_refused_with_a_clear_error(daemon):
    be = create_backend(daemon.port)
    with pytest.raises(ValueError, match="page_first"):
        be.register_mem_pool_host(MHAPagePool(layout="layer_first"))


def test_daemon_killed_mid_load_fails_the_pages_and_nothing_hangs(daemon):
    pool = MHAPagePool(pages=256)
    pool.kv_buffer[:] = 1
    be = create_backend(daemon.port, kvstash_timeout_ms=5000,
                        kvstash_reconnect_ms=200)
    be.register_mem_pool_host(pool)
    keys = page_hashes(100, seed=7)
    assert on_thread(backup, be, keys, 0)[0] == [True] * 100
    freeze(daemon)
    out = {}
    th = threading.Thread(target=lambda: out.setdefault(
        "r", be.batch_get_v1(keys, slots(128, 100), None)), daemon=True)
    th.start()
    time.sleep(0.2)            # the GET is on the wire, the daemon frozen
    daemon.kill()
    th.join(30)
    assert not th.is_alive(), "batch_get_v1 hung after the daemon died"
    assert out["r"] == [False] * 100
    # Down: misses at once, no exception into SGLang's threads.
    (hit, got), _ = on_thread(prefetch, be, keys, 128)
    assert hit == 0 and got == []
    assert on_thread(backup, be, keys[:3], 0)[0] == [False] * 3
    assert be.get(keys[0], torch.empty(10)) is None
    assert be.set(keys[0], torch.ones(10)) is False
