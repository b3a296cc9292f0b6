# SPDX-License-Identifier: Apache-2.0
"""kvstash as LMCache's L2 store in multi-process mode: a native plug-in.

LMCache's MP server loads it with

    --l2-adapter '{"type": "native_plugin", "module_path": "kvstash.lmcache",
                   "class_name": "KvstashL2",
                   "adapter_params": {"port": 7370, "namespace": "lmcache"}}'

and wraps it in its NativeConnectorL2Adapter (lmcache/v1/distributed/
l2_adapters/native_plugin_l2_adapter.py and native_connector_l2_adapter.py,
read at LMCache/LMCache commit 0b43a45563fe5c25dc80ac9f8be16d3f20d86b22):
the plug-in is built as KvstashL2(**adapter_params); the adapter calls
submit_batch_set / _get / _exists / _delete under its own lock and needs
them not to block; a demux thread of the adapter polls event_fd() for
POLLIN, then calls drain_completions(), which returns
(future_id, ok, error, per-key bools or None) tuples. ok, as the adapter
reads it: exists and delete, the call succeeded (the bools say which keys);
set and get, every key succeeded.

Here every submit queues one job on a kvstash._worker.Worker (a thread
with its own Client that runs the blocking libkvstash call) and returns its
future id at once; each finished job writes the worker's eventfd, which is
what event_fd() returns, and drain_completions() reads it back to zero.
Keys are LMCache's key strings (kvstash._keymap maps long ones); buffers
are the memoryviews LMCache passes (its MemoryObj's bytes), read and
written in place by UCX.

kvstashd down or gone mid-call: the jobs complete with ok=False, the error
text and every key False; LMCache counts them as misses and failed stores.
Nothing raises out of the submit calls, nothing waits for the daemon.
A load whose block has another length than the buffer is a failed key
(never partial data).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from ._keymap import store_key
from ._lib import DEFAULT_PORT
from ._worker import Worker
from .client import Client, PutItem
from .errors import KvsError, Status

#: What drain_completions() returns per finished submit.
NativeCompletion = Tuple[int, bool, str, Optional[List[bool]]]


class KvstashL2:
    """LMCache native L2 connector over a kvstashd.

    Args (LMCache's adapter_params):
        address, port, token, namespace: the daemon and the namespace
            (default "lmcache": the keys already name the model and rank).
        timeout_ms: each libkvstash call's limit (default 10 s).
        reconnect_ms: least time between reconnection attempts.
    """

    def __init__(self, address: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 namespace: str = "lmcache", token: Optional[str] = None,
                 timeout_ms: int = 10_000, reconnect_ms: int = 1000):
        def connect() -> Client:
            return Client(address, int(port), token, namespace,
                          timeout_ms=timeout_ms)

        self._w = Worker(connect, "kvstash-lmcache", eventfd=True,
                         reconnect_ms=reconnect_ms)

    # ---- LMCache's interface ------------------------------------------

    def event_fd(self) -> int:
        """An eventfd, readable while completions wait to be drained."""
        return self._w.fileno()

    def submit_batch_get(self, keys: Sequence[str],
                         bufs: Sequence[Any]) -> int:
        """Fetches keys[i] into bufs[i] (writable memoryviews)."""
        skeys = [store_key(k) for k in keys]
        views = list(bufs)
        if len(skeys) != len(views):
            raise ValueError(f"{len(skeys)} keys but {len(views)} buffers")

        def run(c: Client) -> List[bool]:
            res = c.get_batch(skeys, views)
            bools = [r.status == 0 and r.length == memoryview(b).nbytes
                     for r, b in zip(res, views)]
            return all(bools), bools
        return self._w.submit(run)

    def submit_batch_set(self, keys: Sequence[str],
                         bufs: Sequence[Any]) -> int:
        """Stores bufs[i] under keys[i]."""
        items = [PutItem(store_key(k), b) for k, b in zip(keys, bufs)]
        if len(items) != len(keys) or len(keys) != len(bufs):
            raise ValueError(f"{len(keys)} keys but {len(bufs)} buffers")

        def run(c: Client) -> List[bool]:
            try:
                c.put_batch(items)
            except KvsError as e:
                if e.status == Status.EPEER or not any(
                        it.status for it in items):
                    raise
            bools = [it.status == 0 for it in items]
            return all(bools), bools
        return self._w.submit(run)

    def submit_batch_exists(self, keys: Sequence[str]) -> int:
        """Whether each key is present."""
        skeys = [store_key(k) for k in keys]
        return self._w.submit(lambda c: (True, c.exists_batch(skeys)))

    def submit_batch_delete(self, keys: Sequence[str]) -> int:
        """Deletes keys; per key True when it was deleted."""
        skeys = [store_key(k) for k in keys]

        def run(c: Client) -> List[bool]:
            try:
                st = c.delete_batch(skeys)
            except KvsError as e:
                if not e.statuses:
                    raise
                st = list(e.statuses)
            return True, [s == 0 for s in st]
        return self._w.submit(run)

    def drain_completions(self) -> List[NativeCompletion]:
        """Every completion since the last call; never blocks."""
        out: List[NativeCompletion] = []
        for c in self._w.drain():
            if c.ok:
                ok, bools = c.value
                out.append((c.job_id, bool(ok), "" if ok else
                            "some keys missing or failed",
                            [bool(x) for x in bools]))
            else:
                out.append((c.job_id, False, c.error, None))
        return out

    def close(self) -> None:
        """Finishes what was submitted and closes the connection."""
        self._w.close()


__all__ = ["KvstashL2"]
