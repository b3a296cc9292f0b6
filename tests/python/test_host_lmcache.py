# SPDX-License-Identifier: Apache-2.0
"""kvstash.lmcache.KvstashL2 driven as LMCache's MP server drives a native
L2 plug-in, against a real kvstashd.

Stands in for LMCache's _create_native_plugin_l2_adapter and
NativeConnectorL2Adapter (lmcache/v1/distributed/l2_adapters/
native_plugin_l2_adapter.py at commit 68c638a6a8e86d9ec0867ff51fe445b4b3e75503
and native_connector_l2_adapter.py at 0b43a45563fe5c25dc80ac9f8be16d3f20d86b22):
the class is built as cls(**adapter_params) and checked for the required
methods; submit_batch_* are called with the adapter's lock held, with key
strings "<model>@<rank hex>@<group hex>@<chunk hash hex>" and byte
memoryviews over ctypes memory (a MemoryObj's byte_array); a demux thread
polls event_fd() for POLLIN with a 500 ms timeout and only then calls
drain_completions(), routing each (future_id, ok, error, bools) by the
future id registered at submit time. If the plug-in did not signal its fd,
nothing would ever be drained and these tests would time out.
"""
import ctypes
import hashlib
import importlib
import select
import threading
import time

import pytest

from procs import freeze, thaw  # noqa: E402

pytestmark = pytest.mark.hosts

REQUIRED = ["event_fd", "submit_batch_get", "submit_batch_set",
            "submit_batch_exists", "drain_completions", "close"]
CHUNK = 64 * 1024


def lmcache_key(i: int, model: str = "meta-llama/Llama-3.1-8B") -> str:
    h = hashlib.sha256(i.to_bytes(8, "little")).digest()
    return f"{model}@{0:08x}@{0:x}@{h.hex()}"


def chunk(i: int) -> memoryview:
    """A MemoryObj's byte_array: a writable byte memoryview over ctypes."""
    buf = (ctypes.c_ubyte * CHUNK)()
    mv = memoryview(buf).cast("B")
    mv[:] = (i.to_bytes(4, "little") * (CHUNK // 4))
    return mv


class Host:
    """NativeConnectorL2Adapter's side: the lock, the pending map, the
    demux thread."""

    def __init__(self, adapter_params):
        module = importlib.import_module("kvstash.lmcache")
        self.client = getattr(module, "KvstashL2")(**adapter_params)
        for m in REQUIRED:
            assert callable(getattr(self.client, m, None)), m
        self.fd = int(self.client.event_fd())
        self.lock = threading.Lock()
        self.pending = {}
        self.done = {}
        self.cv = threading.Condition(self.lock)
        self.polled_in = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._demux, daemon=True)
        self.t.start()

    def submit(self, op, *args):
        with self.lock:
            fid = int(getattr(self.client, "submit_batch_" + op)(*args))
            assert fid not in self.pending and fid not in self.done
            self.pending[fid] = op
        return fid

    def _demux(self):
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self.stop.is_set():
            if not poller.poll(500):
                continue
            self.polled_in += 1
            comps = self.client.drain_completions()
            with self.lock:
                for fid, ok, err, bools in comps:
                    assert self.pending.pop(int(fid), None) is not None
                    self.done[int(fid)] = (bool(ok), str(err), bools)
                self.cv.notify_all()

    def result(self, fid, timeout_s=30.0):
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while fid not in self.done:
                left = deadline - time.monotonic()
                assert left > 0, f"future {fid} never completed"
                self.cv.wait(left)
            return self.done.pop(fid)

    def close(self):
        self.stop.set()
        self.t.join(5)
        self.client.close()


@pytest.fixture
def daemon(fresh_daemon):
    return fresh_daemon


def test_store_lookup_load_delete_through_the_event_fd(daemon):
    h = Host({"port": daemon.port, "namespace": "lmcache-test"})
    try:
        keys = [lmcache_key(i) for i in range(40)]
        assert len(keys[0]) > 64   # mapped by kvstash._keymap
        bufs = [chunk(i) for i in range(40)]
        ok, err, bools = h.result(h.submit("set", keys[:30], bufs[:30]))
        assert ok and bools == [True] * 30, err
        ok, _, bools = h.result(h.submit("exists", keys))
        assert ok and bools == [True] * 30 + [False] * 10
        dst = [memoryview((ctypes.c_ubyte * CHUNK)()).cast("B")
               for _ in range(32)]
        ok, _, bools = h.result(h.submit("get", keys[:32], dst))
        assert bools == [True] * 30 + [False] * 2
        assert all(dst[i] == bufs[i] for i in range(30))
        assert not any(dst[30])   # a miss leaves the buffer untouched
        # A buffer of another size than the block: a failed key.
        small = memoryview((ctypes.c_ubyte * (CHUNK // 2))()).cast("B")
        assert h.result(h.submit("get", [keys[0]], [small]))[2] == [False]
        ok, _, bools = h.result(h.submit("delete", keys[:2] + [keys[35]]))
        assert bools == [True, True, False]
        assert h.result(h.submit("exists", keys[:3]))[2] == \
            [False, False, True]
        assert h.polled_in > 0
    finally:
        h.close()


def test_submit_never_waits_for_the_daemon(daemon):
    """With the daemon stopped (SIGSTOP) no reply can come, yet every
    submit returns; the completions come once it runs again."""
    h = Host({"port": daemon.port, "namespace": "lmcache-test"})
    try:
        keys = [lmcache_key(i) for i in range(8)]
        assert h.result(h.submit("set", keys, [chunk(i) for i in range(8)]))[0]
        freeze(daemon)
        try:
            fids = [h.submit("exists", keys) for _ in range(5)]
            dst = [memoryview((ctypes.c_ubyte * CHUNK)()).cast("B")
                   for _ in range(8)]
            fids.append(h.submit("get", keys, dst))
            with h.lock:
                assert not h.done   # nothing could have completed
        finally:
            thaw(daemon)
        for f in fids:
            assert h.result(f)[0]
    finally:
        h.close()


def test_daemon_killed_mid_load_fails_the_keys_and_nothing_hangs(daemon):
    h = Host({"port": daemon.port, "namespace": "lmcache-test",
              "timeout_ms": 5000, "reconnect_ms": 200})
    try:
        keys = [lmcache_key(i) for i in range(16)]
        src = [chunk(i) for i in range(16)]
        assert h.result(h.submit("set", keys, src))[0]
        freeze(daemon)
        dsts = []
        fids = []
        for _ in range(4):
            dst = [memoryview((ctypes.c_ubyte * CHUNK)()).cast("B")
                   for _ in range(16)]
            dsts.append(dst)
            fids.append(h.submit("get", keys, dst))
        daemon.kill()            # SIGKILL while the first load is on the wire
        t0 = time.monotonic()
        for f, dst in zip(fids, dsts):
            ok, err, bools = h.result(f, timeout_s=20)
            assert not ok and err
            # Never wrong data: any key reported loaded holds its bytes.
            for i, b in enumerate(bools or []):
                if b:
                    assert dst[i] == src[i]
        assert time.monotonic() - t0 < 20
        # The daemon stays down: every call is a prompt failure, not a hang.
        ok, err, _ = h.result(h.submit("exists", keys[:1]), timeout_s=20)
        assert not ok and "kvstashd" in err
    finally:
        h.close()


def test_daemon_down_at_start(make_daemon):
    d = make_daemon()
    d.start()
    port = d.port
    d.stop()
    h = Host({"port": port, "namespace": "lmcache-test"})
    try:
        ok, err, _ = h.result(h.submit("exists", [lmcache_key(1)]))
        assert not ok and "unreachable" in err
    finally:
        h.close()
