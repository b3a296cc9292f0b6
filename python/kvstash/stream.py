# SPDX-License-Identifier: Apache-2.0
"""Streaming between sidecars (include/kvstash/stream.h).

Prefill/decode disaggregation: the prefill worker puts a block part by part
(layer by layer) into its own sidecar with a StreamPut; the decode worker
asks its own sidecar to fetch a chain of blocks from the prefill side's
sidecar (a peer named in the sidecar's config, or "ip:port") with a
StreamFetch, and waits for part i of block k with wait(k, i), the shape of
vLLM's wait_for_layer_load. Parts land in the caller's buffers, written
once by UCX. A block being put or fetched is invisible to match, get and
exists until it is complete and sealed.

In place (a Client attached to its sidecar's arena, kvstash.shm): a
StreamPut begun with inplace=True hands out each part's bytes in the
prefill sidecar's arena with buf(i), to be written and then commit(i)ed;
a StreamFetch given None for a block's buffer reads it where it landed in
the decode sidecar's arena with data(). Not attached, the same calls work
on buffers of the library's. The memoryviews they return follow
kvstash.shm's rules: valid until seal()/abort() (buf) or close() (data),
which release them (BufferError while one is still exported); what is
derived from them (slices, numpy or torch arrays) is not invalidated and
must not be used after that.

Both objects belong to the Client they were made with (same thread rules,
calls serialised with the client's lock) and must be finished before the
client is closed: seal() or abort() a StreamPut, close() a StreamFetch (or
use them as context managers). They hold the exports of every buffer given
to them until then, so the memory stays valid and unresized.
"""
from __future__ import annotations

import ctypes
from ctypes import byref, c_size_t, c_uint32, c_void_p
from typing import (TYPE_CHECKING, Any, List, NamedTuple, Optional, Sequence,
                    Tuple)

from . import _lib
from ._buffer import Views
from .enums import Class
from .errors import check, error
from .shm import _arena_view

if TYPE_CHECKING:
    from .client import Client, Key


def _release_all(mvs: List[memoryview]) -> List[memoryview]:
    """Releases every memoryview of mvs (into the arena, given out by buf()
    or data()) and returns []. BufferError while one is exported (those
    before it are released): the caller leaves its put or fetch open."""
    for mv in mvs:
        try:
            mv.release()
        except BufferError:
            raise BufferError("a memoryview of the stream's bytes is still "
                              "exported; release it first") from None
    return []


class StreamInfo(NamedTuple):
    """What is known of one block of a fetch (kvs_stream_info_t)."""
    status: int          #: 0, or why the block failed
    complete: bool       #: every part in, stored on the sidecar
    nparts: int          #: 0 until the peer announced the block
    parts_in: int        #: parts landed in the buffer
    length: int          #: bytes of the block
    first_part_ns: int   #: CLOCK_MONOTONIC when the first part landed; 0
    complete_ns: int     #: CLOCK_MONOTONIC when complete; 0: not yet


class StreamPut:
    """One block put part by part: part() or part_nb() for each part in any
    order, then seal() to make it visible (and pushed, with push_peer).

    In place (inplace=True): buf(i), write it, commit(i), for each part.

    Use Client.stream_put() to make one. As a context manager it aborts the
    block when left without seal() (on an exception, say).
    """

    def __init__(self, client: "Client", key: "Key",
                 part_lens: Sequence[int], cls: Class = Class.SCRATCH,
                 flags: int = 0, push_peer: Optional[str] = None,
                 inplace: bool = False):
        from .client import key_bytes
        self._client = client
        self._views = Views()
        self._mvs: List[memoryview] = []
        self._key = key_bytes(key)
        self.part_lens = tuple(int(n) for n in part_lens)
        k = _lib.kvs_client_key_t(ctypes.cast(self._key, c_void_p),
                                  len(self._key))
        lens = (c_uint32 * max(1, len(self.part_lens)))(*self.part_lens)
        h = c_void_p()
        begin = (client._c.kvs_stream_put_begin_inplace if inplace else
                 client._c.kvs_stream_put_begin)
        with client._lock:
            check(begin(client._handle(), byref(k), lens, len(self.part_lens),
                        int(cls), flags,
                        push_peer.encode() if push_peer is not None else None,
                        byref(h)), "stream_put_begin")
        self._h: Optional[int] = h.value

    def _live(self) -> int:
        if self._h is None:
            raise ValueError("the streamed put is already sealed or aborted")
        return self._h

    def part(self, i: int, buf: Any) -> None:
        """Sends part i (a buffer or CPU tensor); buf may change again when
        this returns."""
        with Views() as v:
            addr, n = v.add(buf)
            with self._client._lock:
                check(self._client._c.kvs_stream_put_part(self._live(), i,
                                                          addr, n),
                      "stream_put_part")

    def part_nb(self, i: int, buf: Any) -> None:
        """Posts part i and returns at once, so that several parts are in
        flight (a prefill saving layer after layer). buf is held (exported)
        until seal() or abort(), and must not change until then."""
        addr, n = self._views.add(buf)
        with self._client._lock:
            check(self._client._c.kvs_stream_put_part_nb(self._live(), i,
                                                         addr, n),
                  "stream_put_part_nb")

    def buf(self, i: int) -> memoryview:
        """Where part i's bytes go (a put begun with inplace=True): a
        writable memoryview, in the sidecar's arena when the client is
        attached, else in a buffer of the library's. The first call waits
        for the sidecar's answer to the begin (begin the next block before
        writing this one and it is hidden). Write it, then commit(i)."""
        addr, n = c_void_p(), c_size_t()
        with self._client._lock:
            check(self._client._c.kvs_stream_put_buf(self._live(), i,
                                                     byref(addr), byref(n)),
                  "stream_put_buf")
        mv = _arena_view(addr.value or 0, n.value, True)
        self._mvs.append(mv)
        return mv

    def commit(self, i: int) -> None:
        """Part i's bytes are written (at buf(i)): the sidecar streams it
        on. Returns once posted."""
        with self._client._lock:
            check(self._client._c.kvs_stream_put_commit(self._live(), i),
                  "stream_put_commit")

    def seal(self) -> None:
        """Waits until the block is stored (and pushed), making it visible.
        Raises KvsError: KVS_EINCOMPLETE when parts are missing, or what
        the begin or the push failed with; BufferError (nothing done) while
        a memoryview from buf() is still exported."""
        h = self._live()
        self._mvs = _release_all(self._mvs)
        with self._client._lock:
            ret = self._client._c.kvs_stream_put_seal(h)
        self._h = None
        self._views.release()
        check(ret, "stream_put_seal")

    def abort(self) -> None:
        """Drops the block. A no-op once sealed or aborted."""
        if self._h is not None:
            self._mvs = _release_all(self._mvs)
            with self._client._lock:
                self._client._c.kvs_stream_put_abort(self._h)
            self._h = None
        self._views.release()

    def __enter__(self) -> "StreamPut":
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class StreamFetch:
    """A chain of blocks fetched from a peer into the caller's buffers
    (None for a block: read in place with data()).

    Use Client.stream_fetch() to make one; close() it (or use it as a
    context manager) when done: that cancels what is still coming and
    waits until nothing writes into the buffers any more.
    """

    def __init__(self, client: "Client", peer: str,
                 blocks: Sequence[Tuple["Key", Any]], wait_ms: int = 0):
        from .client import key_bytes
        self._client = client
        self._views = Views()
        self._mvs: List[memoryview] = []
        n = len(blocks)
        self._keys = [key_bytes(k) for k, _ in blocks]
        arr = (_lib.kvs_stream_block_t * max(1, n))()
        try:
            for i, (k, (_, buf)) in enumerate(zip(self._keys, blocks)):
                arr[i].key.data = ctypes.cast(k, c_void_p)
                arr[i].key.len = len(k)
                if buf is not None:
                    arr[i].buf, arr[i].cap = self._views.add(buf,
                                                             writable=True)
            h = c_void_p()
            with client._lock:
                check(client._c.kvs_stream_fetch(client._handle(),
                                                 peer.encode(), arr, n,
                                                 wait_ms, byref(h)),
                      "stream_fetch")
        except BaseException:
            self._views.release()
            raise
        self._h: Optional[int] = h.value
        self.nblocks = n

    def _live(self) -> int:
        if self._h is None:
            raise ValueError("the fetch is closed")
        return self._h

    def wait(self, block: int, part: Optional[int] = None,
             timeout_ms: int = -1) -> None:
        """Waits until part `part` of block `block` is in its buffer, or
        with part=None until the whole block is in and stored on the
        sidecar. Raises KvsError: the block's error if it failed first,
        -ETIMEDOUT after timeout_ms (-1: no limit), KVS_EPEER when the
        sidecar is gone."""
        p = _lib.STREAM_BLOCK if part is None else part
        with self._client._lock:
            ret = self._client._c.kvs_stream_wait(self._live(), block, p,
                                                  timeout_ms)
        if ret < 0:
            raise error(ret, f"stream_wait(block {block}, part {part})")

    def info(self, block: int) -> StreamInfo:
        """What is known of block now (no progress is made)."""
        i = _lib.kvs_stream_info_t()
        with self._client._lock:
            check(self._client._c.kvs_stream_info(self._live(), block,
                                                  byref(i)), "stream_info")
        return StreamInfo(i.status, bool(i.complete), i.nparts, i.parts_in,
                          i.len, i.first_part_ns, i.complete_ns)

    def data(self, block: int, part: Optional[int] = None) -> memoryview:
        """Part `part` of a block given without a buffer (part=None: the
        whole block, once complete), read-only, where it lies: in the
        sidecar's arena when the client is attached (no copy), else in a
        buffer of the library's. Raises KvsError: -EAGAIN when it is not in
        yet (wait() first), or the block's error."""
        addr, n = c_void_p(), c_size_t()
        p = _lib.STREAM_BLOCK if part is None else part
        with self._client._lock:
            check(self._client._c.kvs_stream_data(self._live(), block, p,
                                                  byref(addr), byref(n)),
                  f"stream_data(block {block}, part {part})")
        mv = _arena_view(addr.value or 0, n.value, False)
        self._mvs.append(mv)
        return mv

    def close(self) -> None:
        """Cancels what is still coming and frees the fetch; the buffers
        are the caller's again when this returns, and the memoryviews
        data() gave are released (BufferError, nothing done, while one is
        still exported). Idempotent."""
        if self._h is not None:
            self._mvs = _release_all(self._mvs)
            with self._client._lock:
                self._client._c.kvs_stream_fetch_destroy(self._h)
            self._h = None
        self._views.release()

    def __enter__(self) -> "StreamFetch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
