# SPDX-License-Identifier: Apache-2.0
"""Zero copy with a daemon on the same host (include/kvstash/shm.h).

A Client made with shm_socket= (or with KVSTASH_SHM_SOCKET set) maps the
daemon's DRAM arena when the daemon offers it (Client.shm_status is then
0). Three ways to use it, all methods of Client:

  - shm_put() / shm_get_into() / shm_get(): one copy between the caller's
    buffer or CPU tensor and the arena, done in C (kvs_shm_put,
    kvs_shm_get); no Python-side copy. Not attached, they fall back to the
    ordinary PUT and GET over UCX, so code written against them runs
    everywhere.
  - shm_reserve() -> ShmReservation: its .data is a writable memoryview of
    the block's bytes in the arena; write them, then commit() (or abort()).
  - shm_view() -> ShmView: .data is a read-only memoryview of a block in
    the arena, held by a lease; release() ends it and says whether the
    lease held until then (False: the bytes may have been reused while
    they were read, so whatever was read must be discarded).

Lifetime of the memoryviews: a .data memoryview is valid only until
commit(), abort() or release(), which release it (reading it afterwards
raises ValueError), and until Client.close(), which releases those still
open. What is derived from it is not invalidated, and Python gives no way
to: slices (view.data[a:b]), memoryview(view.data), numpy.frombuffer and
torch.frombuffer arrays keep pointing into the arena. Never use one past
the end of its reservation or lease: the bytes may belong to another block
by then, and after the client closes the memory is unmapped (reading it
crashes the process). Copy out what must outlive the lease. A buffer
export of .data itself that is still held (PyObject_GetBuffer by a C
extension, or by a kvstash call in flight in another thread) makes
commit, abort and release raise BufferError and leave the reservation or
lease as it was, until the export is released.

Ownership: each object belongs to the Client that made it and uses its
lock; one that is dropped while open is aborted or released, best effort.
"""
from __future__ import annotations

import ctypes
from ctypes import c_int, c_ssize_t, c_void_p, py_object
from typing import TYPE_CHECKING, Any, Optional, Tuple

from . import _lib
from .enums import Class, Tier
from .errors import Status, check, error

if TYPE_CHECKING:
    from .client import Client

_PyBUF_READ = 0x100
_PyBUF_WRITE = 0x200
_from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
_from_memory.argtypes = [c_void_p, c_ssize_t, c_int]
_from_memory.restype = py_object


def _arena_view(addr: int, length: int, writable: bool) -> memoryview:
    """A memoryview of length bytes of the mapping at addr (format B)."""
    if length == 0:
        return memoryview(bytearray() if writable else b"")
    return _from_memory(addr, length, _PyBUF_WRITE if writable else
                        _PyBUF_READ)


class _Block:
    """What reservations and views share: the block, its memoryview."""

    _op_end = ""
    _drop_fn = ""  #: the C call that ends it when dropped unended

    def __init__(self, client: "Client", b: Any, part_lens: Tuple[int, ...],
                 writable: bool):
        self._client = client
        self.id: int = b.id
        self.length: int = b.len
        self.part_lens = part_lens
        self._mv: Optional[memoryview] = _arena_view(b.data or 0, b.len,
                                                     writable)
        client._shm_open.add(self)

    @property
    def data(self) -> memoryview:
        """The block's bytes in the arena, parts back to back."""
        if self._mv is None:
            raise ValueError(f"shm block {self.id} is over: its memoryview "
                             "was released")
        return self._mv

    @property
    def open(self) -> bool:
        return self._mv is not None

    def _invalidate(self) -> None:
        """Releases the memoryview; BufferError while it is exported."""
        if self._mv is None:
            raise ValueError(f"shm block {self.id} is already over")
        try:
            self._mv.release()
        except BufferError as e:
            raise BufferError(
                f"{self._op_end}: the block's memoryview is still exported "
                "(a C extension holds it): let it go first"
                ) from e
        self._mv = None
        self._client._shm_open.discard(self)

    def _end(self, fn: Any) -> int:
        with self._client._lock:
            self._invalidate()
            return fn(self._client._handle(), self.id)

    def _drop(self) -> None:
        """At Client.close() or garbage collection: ends it, best effort."""
        if self._mv is None:
            return
        try:
            self._mv.release()
        except BufferError:
            pass  # exported: the caller keeps what the docstring warns of
        self._mv = None
        self._client._shm_open.discard(self)
        if not self._client.closed:
            try:
                self._end_quietly()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass

    def _end_quietly(self) -> None:
        with self._client._lock:
            getattr(self._client._c, self._drop_fn)(self._client._handle(),
                                                    self.id)

    def __enter__(self) -> Any:
        return self

    def __del__(self) -> None:
        if getattr(self, "_mv", None) is not None:
            self._drop()


class ShmReservation(_Block):
    """A reserved block: write .data, then commit() or abort().

    As a context manager: commits on a clean exit, aborts on an exception.
    """

    _op_end = "shm commit/abort"
    _drop_fn = "kvs_shm_abort"

    def commit(self) -> None:
        """Makes the block visible (durable with PUT_DURABLE). The daemon
        checksums the bytes the arena holds now; raises KvsError when it
        refused the block (the reservation is spent either way)."""
        check(self._end(self._client._c.kvs_shm_commit), "shm_commit")

    def abort(self) -> None:
        """Drops the reservation and frees its space."""
        check(self._end(self._client._c.kvs_shm_abort), "shm_abort")

    def __exit__(self, typ: Any, *exc: object) -> None:
        if not self.open:
            return
        if typ is None:
            self.commit()
        else:
            self.abort()


class ShmView(_Block):
    """A leased, read-only view of a block: read .data, then release().

    As a context manager: releases on exit, and raises KvsError
    KVS_EEXPIRED when the lease had run out (what was read is void).
    """

    _op_end = "shm release"
    _drop_fn = "kvs_shm_release"

    def __init__(self, client: "Client", b: Any, part_lens: Tuple[int, ...]):
        super().__init__(client, b, part_lens, writable=False)
        self.tier = Tier(b.tier)
        self.cls = Class(b.cls)
        #: CLOCK_MONOTONIC ns (time.monotonic_ns()) at which the lease ends.
        self.lease_end_ns: int = b.lease_end_ns

    def release(self) -> bool:
        """Ends the lease: True when it held until now, False when it had
        expired (the bytes read may belong to another block: discard)."""
        ret = self._end(self._client._c.kvs_shm_release)
        if ret == Status.EEXPIRED:
            return False
        check(ret, "shm_release")
        return True

    def __exit__(self, typ: Any, *exc: object) -> None:
        if self.open and not self.release() and typ is None:
            raise error(Status.EEXPIRED, "shm_view")


def reserve(client: "Client", put: Any,
            part_lens: Tuple[int, ...]) -> ShmReservation:
    """kvs_shm_reserve for a filled kvs_client_put_t (see Client)."""
    b = _lib.kvs_shm_block_t()
    with client._lock:
        check(client._c.kvs_shm_reserve(client._handle(), ctypes.byref(put),
                                        ctypes.byref(b)), "shm_reserve")
        return ShmReservation(client, b, part_lens, writable=True)


def view(client: "Client", key: bytes, lease_ms: int) -> Optional[ShmView]:
    """kvs_shm_view: the leased block, or None when absent."""
    b = _lib.kvs_shm_block_t()
    lens = (ctypes.c_uint32 * _lib.PARTS_MAX)()
    with client._lock:
        ret = client._c.kvs_shm_view(client._handle(), key, len(key),
                                     lease_ms, lens, _lib.PARTS_MAX,
                                     ctypes.byref(b))
        if ret == Status.ENOTFOUND:
            return None
        check(ret, "shm_view")
        return ShmView(client, b, tuple(lens[:b.nparts]))
