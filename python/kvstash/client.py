# SPDX-License-Identifier: Apache-2.0
"""kvstash.Client: one connection to one kvstashd, in one namespace.

A thin layer over libkvstash's synchronous calls (include/kvstash/client.h):
every call returns when the daemon's reply is in. Data goes to and from the
caller's own memory: anything with the buffer protocol, or a CPU torch
tensor (see kvstash._buffer); the only copy of block bytes is the one UCX
makes. Keys are bytes (or str, encoded as UTF-8), 1 to 64 bytes.

Errors raise kvstash.KvsError (kvs_strerror()'s text and the status). A
missing block is not an error where a cache would not call it one: get()
returns None, exists() False, match() a shorter prefix. get_batch() reports
misses per item and raises for anything else.

Threads: the C client is not thread-safe; each Client serialises its calls
with a lock, so sharing one between threads is safe but not parallel. Use
one Client per thread for parallel traffic. After the daemon goes away
every call raises KVS_EPEER: close the client and make a new one.
"""
from __future__ import annotations

import ctypes
import errno
import threading
import weakref
from ctypes import byref, c_int, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, NamedTuple,
                    Optional, Sequence, Tuple, Union)

from . import _lib
from ._buffer import Views
from .enums import Class, Tier
from .errors import Status, check, error

if TYPE_CHECKING:
    from .shm import ShmReservation, ShmView
    from .stream import StreamFetch, StreamPut

Key = Union[bytes, bytearray, memoryview, str]
#: One block's data: a buffer or tensor, or a sequence of them (its parts).
Data = Any


def key_bytes(key: Key) -> bytes:
    """A key as the bytes sent on the wire (str is encoded as UTF-8)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a key is bytes or str, not {type(key).__name__}")


class _Keys:
    """A kvs_client_key_t array over Python bytes (kept alive here)."""

    def __init__(self, keys: Sequence[Key]):
        self.raw = [key_bytes(k) for k in keys]
        self.arr = (_lib.kvs_client_key_t * max(1, len(self.raw)))()
        for i, k in enumerate(self.raw):
            self.arr[i].data = ctypes.cast(k, c_void_p)
            self.arr[i].len = len(k)

    def at(self, start: int) -> Any:
        """A pointer to entry start (for calls split into frames)."""
        return ctypes.cast(
            ctypes.byref(self.arr, start * ctypes.sizeof(_lib.kvs_client_key_t)),
            ctypes.POINTER(_lib.kvs_client_key_t))


def _set_key(dst: Any, k: bytes) -> None:
    dst.data = ctypes.cast(k, c_void_p)
    dst.len = len(k)


class Limits(NamedTuple):
    """The daemon's limits, from the handshake (kvs_client_limits_t)."""
    max_keys: int      #: entries in one frame
    max_payload: int   #: bytes of blocks in one PUT frame
    max_inflight: int  #: requests in flight
    lease_max_ms: int
    features: int      #: KVS_WIRE_FEAT_* agreed
    session: int       #: the daemon's connection id


@dataclass
class PutItem:
    """One block for put_batch().

    parts is a buffer or tensor (one part) or a sequence of them (the block
    part by part, e.g. layer by layer); parent is the previous block's key
    of a chain (None: the first block).
    """
    key: Key
    parts: Data
    parent: Optional[Key] = None
    cls: Class = Class.SCRATCH
    flags: int = 0          #: PUT_DURABLE, PUT_NO_DRAM
    ttl_ms: int = 0         #: user class; 0: none
    group: int = 0          #: conversation or user id; 0: none
    elem_size: int = 0      #: bytes per element; 0: the namespace's
    status: int = 0         #: out: this block's result


class GetResult(NamedTuple):
    """One block of get_batch()."""
    status: int               #: 0, KVS_ENOTFOUND, -ENOBUFS ...
    length: int               #: block bytes (also on -ENOBUFS)
    nparts: int
    tier: Tier                #: where it was served from
    cls: Class
    part_lens: Tuple[int, ...]  #: when asked for, else ()

    @property
    def found(self) -> bool:
        return self.status == 0


class MatchResult(NamedTuple):
    """What match() found.

    matched: how many leading keys are present; tiers: where each of them
    lives; lease_ids: the leases taken (one per frame of max_keys keys;
    empty without lease=True). A GET that names lease_ids[0] ends it; end
    the others with release(), or they end at their time.
    """
    matched: int
    tiers: Tuple[Tier, ...]
    lease_ids: Tuple[int, ...]

    @property
    def lease_id(self) -> int:
        """The first lease (0: none): pass it to get_batch()."""
        return self.lease_ids[0] if self.lease_ids else 0


class ScanEntry(NamedTuple):
    """One block listed by scan()."""
    key: bytes
    parent: Optional[bytes]
    tier: Tier
    cls: Class
    nparts: int
    length: int
    group: int
    expiry_ms: int


def _parts_of(data: Data) -> List[Any]:
    if isinstance(data, (list, tuple)):
        return list(data)
    return [data]


class Client:
    """A connection to kvstashd; use it as a context manager.

    Args:
        address: numeric IP of the daemon (127.0.0.1).
        port: its port (7370).
        token: the tenant's token, or None.
        namespace: the namespace every call of this client works in
            (required), e.g. "model=llama-3.1-8b;dtype=bf16".
        timeout_ms: connecting, and each call; None: the library's default
            (10 s to connect, calls wait forever).
        busy_poll_us: spin this long before sleeping while waiting.
        elem_size: bytes per tensor element (the codec's byte planes).
        shm_socket: the daemon's daemon.shm_socket, to map its DRAM arena
            when on the same host (see kvstash.shm); None: the environment
            variable KVSTASH_SHM_SOCKET, if set. Not attaching is not an
            error: shm_status says why, and the shm_* calls fall back.

    Raises KvsError: KVS_EAUTH (token refused), KVS_EPEER (nobody answered),
    KVS_EPROTO_VERSION (another protocol version).
    """

    def __init__(self, address: str = "127.0.0.1",
                 port: int = _lib.DEFAULT_PORT, token: Optional[str] = None,
                 namespace: Optional[str] = None, *,
                 timeout_ms: Optional[int] = None,
                 busy_poll_us: Optional[int] = None,
                 elem_size: Optional[int] = None,
                 shm_socket: Optional[str] = None):
        if not namespace:
            raise TypeError("Client needs a namespace")
        self._c = _lib.lib()
        self._lock = threading.RLock()
        self._h: Optional[int] = None
        #: Open shm reservations and views (kvstash.shm), ended at close().
        self._shm_open: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.namespace = namespace
        self.address = address
        self.port = port
        p = _lib.kvs_client_params_t()
        p.field_mask = (_lib.PARAM_ADDR | _lib.PARAM_PORT | _lib.PARAM_NS)
        p.addr = address.encode()
        p.port = port
        p.ns = namespace.encode()
        if token is not None:
            p.field_mask |= _lib.PARAM_TOKEN
            p.token = token.encode()
        if timeout_ms is not None:
            p.field_mask |= _lib.PARAM_TIMEOUT_MS
            p.timeout_ms = timeout_ms
        if busy_poll_us is not None:
            p.field_mask |= _lib.PARAM_BUSY_POLL_US
            p.busy_poll_us = busy_poll_us
        if elem_size is not None:
            p.field_mask |= _lib.PARAM_ELEM_SIZE
            p.elem_size = elem_size
        if shm_socket is not None:
            p.field_mask |= _lib.PARAM_SHM_SOCKET
            p.shm_socket = shm_socket.encode()
        h = c_void_p()
        check(self._c.kvs_client_create_v(_lib.API_VERSION, byref(p),
                                          byref(h)), "connect")
        self._h = h.value
        lim = _lib.kvs_client_limits_t()
        self._c.kvs_client_limits(self._h, byref(lim))
        self._limits = Limits(lim.max_keys, lim.max_payload,
                              lim.max_inflight, lim.lease_max_ms,
                              lim.features, lim.session)

    # ---- life ----------------------------------------------------------

    def close(self) -> None:
        """Closes the connection (the daemon drops this client's leases
        and pins). Stream objects made with it must be done first. Closing
        twice is a no-op."""
        with self._lock:
            for blk in list(self._shm_open):
                blk._drop()
            if self._h is not None:
                self._c.kvs_client_destroy(self._h)
                self._h = None

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_h", None) is not None:
            self.close()

    def _handle(self) -> int:
        if self._h is None:
            raise ValueError("the client is closed")
        return self._h

    @property
    def limits(self) -> Limits:
        """The daemon's limits, from the handshake."""
        return self._limits

    def _frames(self, n: int) -> Iterator[Tuple[int, int]]:
        step = max(1, self._limits.max_keys)
        for i in range(0, n, step):
            yield i, min(step, n - i)

    # ---- PUT -----------------------------------------------------------

    def put(self, key: Key, data: Data, *, parent: Optional[Key] = None,
            cls: Class = Class.SCRATCH, flags: int = 0, ttl_ms: int = 0,
            group: int = 0, elem_size: int = 0) -> None:
        """Stores one block.

        data is a buffer or CPU tensor, or a sequence of them: the block's
        parts (e.g. one per layer), read in place. flags: PUT_DURABLE
        (acknowledged once on disk), PUT_NO_DRAM (straight to disk).
        """
        self.put_batch([PutItem(key, data, parent, cls, flags, ttl_ms, group,
                                elem_size)])

    def put_batch(self, items: Sequence[PutItem]) -> None:
        """Stores several blocks in as few frames as the limits allow.

        With the arena mapped (shm_socket=), each block is copied once into
        its reservation in C, up to 8 reservations requested ahead.

        Sets each item's status; raises KvsError (its statuses say which
        blocks failed) unless every block was stored.
        """
        if not items:
            return
        n = len(items)
        arr = (_lib.kvs_client_put_t * n)()
        keep: List[Any] = []
        with Views() as views:
            for i, it in enumerate(items):
                k = key_bytes(it.key)
                keep.append(k)
                _set_key(arr[i].key, k)
                if it.parent is not None:
                    pk = key_bytes(it.parent)
                    keep.append(pk)
                    _set_key(arr[i].parent, pk)
                parts = _parts_of(it.parts)
                iov = (_lib.kvs_iov_t * max(1, len(parts)))()
                for j, p in enumerate(parts):
                    iov[j].base, iov[j].len = views.add(p)
                keep.append(iov)
                arr[i].parts = iov
                arr[i].nparts = len(parts)
                arr[i].flags = it.flags
                arr[i].cls = int(it.cls)
                arr[i].elem_size = it.elem_size
                arr[i].ttl_ms = it.ttl_ms
                arr[i].group = it.group
            with self._lock:
                # In place when the arena is mapped, requests posted ahead
                # of the copies; else (and as its fallback) over UCX.
                ret = self._c.kvs_shm_put_batch(self._handle(), arr, n)
        statuses = [arr[i].status for i in range(n)]
        for it, st in zip(items, statuses):
            it.status = st
        if ret < 0:
            raise error(ret, "put", statuses)

    # ---- GET -----------------------------------------------------------

    def get_into(self, key: Key, buf: Any) -> Optional[int]:
        """Fetches one block into buf (writable buffer or CPU tensor).

        Returns the block's length, or None when it is absent (buf is then
        untouched). Raises KvsError -ENOBUFS when buf is too small; its
        attribute length is the block's size.
        """
        r = self.get_batch([key], [buf])[0]
        if r.status == Status.ENOTFOUND:
            return None
        if r.status:
            e = error(r.status, "get")
            e.length = r.length  # type: ignore[attr-defined]
            raise e
        return r.length

    def get(self, key: Key, size_hint: int = 1 << 16) -> Optional[bytearray]:
        """Fetches one block into a new bytearray; None when absent.

        A block larger than size_hint takes a second round trip (the first
        reply tells its size). For repeated reads use get_into() on a
        buffer of your own.
        """
        buf = bytearray(size_hint)
        r = self.get_batch([key], [buf])[0]
        if r.status == -errno.ENOBUFS:
            buf = bytearray(r.length)
            r = self.get_batch([key], [buf])[0]
        if r.status == Status.ENOTFOUND:
            return None
        if r.status:
            raise error(r.status, "get")
        del buf[r.length:]
        return buf

    def get_batch(self, keys: Sequence[Key], bufs: Sequence[Any], *,
                  lease_id: int = 0, part_lens: bool = False
                  ) -> List[GetResult]:
        """Fetches keys[i] into bufs[i] (writable buffers or CPU tensors).

        With the arena mapped (shm_socket=) and no lease_id, each block is
        copied once out of the arena in C, up to 8 views requested ahead.

        lease_id (from match(lease=True)) holds the blocks until this call,
        which ends the lease. With part_lens, each result also has its
        parts' lengths. Missing blocks come back with status KVS_ENOTFOUND
        and a too-small buffer with -ENOBUFS; any other failure raises
        KvsError.
        """
        n = len(keys)
        if len(bufs) != n:
            raise ValueError(f"{n} keys but {len(bufs)} buffers")
        if n == 0:
            return []
        kk = _Keys(keys)
        arr = (_lib.kvs_client_get_t * n)()
        lens = []
        with Views() as views:
            for i in range(n):
                arr[i].key = kk.arr[i]
                arr[i].buf, arr[i].cap = views.add(bufs[i], writable=True)
                if part_lens:
                    pl = (c_uint32 * _lib.PARTS_MAX)()
                    lens.append(pl)
                    arr[i].part_lens = pl
                    arr[i].part_cap = _lib.PARTS_MAX
            with self._lock:
                if lease_id:
                    ret = self._c.kvs_client_get_batch(self._handle(), arr,
                                                       n, lease_id)
                else:  # from the mapped arena, else over UCX
                    ret = self._c.kvs_shm_get_batch(self._handle(), arr, n)
        out = []
        for i in range(n):
            g = arr[i]
            pl = tuple(lens[i][:min(g.nparts, _lib.PARTS_MAX)]) \
                if part_lens and g.status == 0 else ()
            out.append(GetResult(g.status, g.len, g.nparts, Tier(g.tier),
                                 Class(g.cls) if g.status == 0 else
                                 Class.SCRATCH, pl))
        bad = [r.status for r in out
               if r.status not in (0, Status.ENOTFOUND, -errno.ENOBUFS)]
        if bad or (ret < 0 and all(r.status == 0 for r in out)):
            raise error(bad[0] if bad else ret, "get",
                        [r.status for r in out])
        return out

    # ---- MATCH and friends --------------------------------------------

    def match(self, keys: Sequence[Key], *, lease: bool = False,
              lease_ms: int = 0) -> MatchResult:
        """How many leading keys of a chain are present, and where.

        One round trip per max_keys keys. With lease=True the matched
        blocks are held until a GET names the lease, release(), lease_ms
        (0: the daemon's default) or this client's end.
        """
        n = len(keys)
        if n == 0:
            return MatchResult(0, (), ())
        kk = _Keys(keys)
        tiers = (c_uint8 * n)()
        matched = 0
        leases: List[int] = []
        flags = _lib.MATCH_LEASE if lease else 0
        for start, cnt in self._frames(n):
            res = _lib.kvs_client_match_result_t()
            with self._lock:
                ret = self._c.kvs_client_match(
                    self._handle(), kk.at(start), cnt, flags, lease_ms,
                    ctypes.cast(byref(tiers, start), ctypes.POINTER(c_uint8)),
                    byref(res))
            if ret < 0:
                for lid in leases:
                    self.release(lid)
                raise error(ret, "match")
            if res.lease_id:
                leases.append(res.lease_id)
            matched += res.matched
            if res.matched < cnt:
                break
        return MatchResult(matched, tuple(Tier(t) for t in tiers[:matched]),
                           tuple(leases))

    def release(self, lease_id: int) -> bool:
        """Ends a lease early; False when it had already ended."""
        with self._lock:
            ret = self._c.kvs_client_release(self._handle(), lease_id)
        if ret == Status.ENOTFOUND:
            return False
        check(ret, "release")
        return True

    def exists(self, key: Key) -> bool:
        """Whether key is present."""
        return self.exists_batch([key])[0]

    def exists_batch(self, keys: Sequence[Key]) -> List[bool]:
        """Whether each key is present."""
        n = len(keys)
        if n == 0:
            return []
        kk = _Keys(keys)
        present = (c_uint8 * n)()
        for start, cnt in self._frames(n):
            with self._lock:
                check(self._c.kvs_client_exists(
                    self._handle(), kk.at(start), cnt,
                    ctypes.cast(byref(present, start),
                                ctypes.POINTER(c_uint8))), "exists")
        return [bool(p) for p in present]

    def _keyed(self, fn: Any, op: str, keys: Sequence[Key],
               flags: Optional[int], ok: Tuple[int, ...]) -> List[int]:
        """DELETE, PIN, UNPIN: per-key statuses; raises for any not in ok."""
        n = len(keys)
        if n == 0:
            return []
        kk = _Keys(keys)
        st = (c_int * n)()
        for start, cnt in self._frames(n):
            args = [self._handle(), kk.at(start), cnt]
            if flags is not None:
                args.append(flags)
            args.append(ctypes.cast(byref(st, start * ctypes.sizeof(c_int)),
                                    ctypes.POINTER(c_int)))
            with self._lock:
                ret = fn(*args)
            if ret < 0 and not any(st[start:start + cnt]):
                raise error(ret, op, list(st))
        statuses = list(st)
        bad = [s for s in statuses if s not in ok]
        if bad:
            raise error(bad[0], op, statuses)
        return statuses

    def delete(self, key: Key) -> bool:
        """Deletes one block; False when it was not there."""
        return self.delete_batch([key])[0] == 0

    def delete_batch(self, keys: Sequence[Key]) -> List[int]:
        """Deletes blocks; each key's status (0 or KVS_ENOTFOUND). Other
        failures (e.g. KVS_EBUSY) raise KvsError with the statuses."""
        return self._keyed(self._c.kvs_client_delete, "delete", keys, None,
                           (0, Status.ENOTFOUND))

    def pin(self, key: Key, *, retain: bool = False) -> None:
        """Pins one block: see pin_batch()."""
        self.pin_batch([key], retain=retain)

    def pin_batch(self, keys: Sequence[Key], *, retain: bool = False) -> None:
        """Holds the blocks in DRAM for this client's lifetime; with
        retain=True makes their class "pinned" in the store instead, which
        outlives the client. Raises KvsError (with each key's status)
        unless every key was pinned."""
        self._keyed(self._c.kvs_client_pin, "pin", keys,
                    _lib.PIN_RETAIN if retain else 0, (0,))

    def unpin(self, key: Key, *, retain: bool = False) -> None:
        """Undoes pin(): see unpin_batch()."""
        self.unpin_batch([key], retain=retain)

    def unpin_batch(self, keys: Sequence[Key], *, retain: bool = False
                    ) -> None:
        """Drops this client's pins (or, with retain=True, the pinned
        class). Raises KvsError unless every key was unpinned."""
        self._keyed(self._c.kvs_client_unpin, "unpin", keys,
                    _lib.PIN_RETAIN if retain else 0, (0,))

    def prefetch(self, keys: Sequence[Key]) -> int:
        """Brings blocks from NVMe into DRAM ahead of need; returns how
        many were promoted."""
        n = len(keys)
        if n == 0:
            return 0
        kk = _Keys(keys)
        total = 0
        for start, cnt in self._frames(n):
            promoted = c_uint64()
            with self._lock:
                check(self._c.kvs_client_prefetch(
                    self._handle(), kk.at(start), cnt, byref(promoted)),
                    "prefetch")
            total += promoted.value
        return total

    # ---- administration ------------------------------------------------

    def stat(self) -> Dict[str, int]:
        """The daemon's counters and gauges, by name."""
        cap = 256
        out = (_lib.kvs_client_stat_t * cap)()
        n = c_size_t()
        with self._lock:
            check(self._c.kvs_client_stat(self._handle(), out, cap, byref(n)),
                  "stat")
        return {out[i].name.decode(): out[i].value for i in range(n.value)}

    def verify(self) -> Tuple[int, int]:
        """Checks every block on the daemon's disk (can take long);
        returns (checked, bad)."""
        checked, bad = c_uint64(), c_uint64()
        with self._lock:
            check(self._c.kvs_client_verify(self._handle(), byref(checked),
                                            byref(bad)), "verify")
        return checked.value, bad.value

    def scan(self, group: int = 0) -> Iterator[ScanEntry]:
        """Every block of this namespace (or of group), page by page. A
        namespace that changes meanwhile may have blocks missed or
        repeated: meant for offline tools."""
        cap = max(1, self._limits.max_keys)
        out = (_lib.kvs_client_scan_ent_t * cap)()
        cursor = 0
        while True:
            n, nxt = c_size_t(), c_uint32()
            with self._lock:
                check(self._c.kvs_client_scan(self._handle(), group, cursor,
                                              out, cap, byref(n), byref(nxt)),
                      "scan")
            for i in range(n.value):
                e = out[i]
                yield ScanEntry(bytes(e.key[:e.key_len]),
                                bytes(e.parent[:e.parent_len])
                                if e.parent_len else None,
                                Tier(e.tier), Class(e.cls), e.nparts, e.len,
                                e.group, e.expiry_ms)
            if nxt.value == 0:
                return
            cursor = nxt.value

    # ---- shared memory (kvstash/shm.h) --------------------------------

    @property
    def shm_status(self) -> int:
        """0 when the daemon's arena is mapped; else why not: -EOPNOTSUPP
        (no socket, or not offered to this tenant), KVS_EAUTH, or the
        -errno of the socket or the mapping."""
        with self._lock:
            return self._c.kvs_shm_status(self._handle())

    @property
    def shm_attached(self) -> bool:
        return self.shm_status == 0

    def shm_put(self, key: Key, data: Any, *, flags: int = 0) -> None:
        """Stores one block of one part (a buffer or CPU tensor): copied
        once, in C, into the arena; a plain put() when not attached."""
        k = key_bytes(key)
        with Views() as views:
            addr, n = views.add(data)
            with self._lock:
                ret = self._c.kvs_shm_put(self._handle(), k, len(k), addr, n,
                                          flags)
        check(ret, "shm_put")

    def shm_get_into(self, key: Key, buf: Any) -> Optional[int]:
        """Copies one block from the arena into buf (writable buffer or CPU
        tensor), in C; a plain get over UCX when not attached. Returns its
        length, None when absent; KvsError -ENOBUFS (attribute length)
        when buf is too small."""
        k = key_bytes(key)
        got = c_size_t()
        with Views() as views:
            addr, cap = views.add(buf, writable=True)
            with self._lock:
                ret = self._c.kvs_shm_get(self._handle(), k, len(k), addr, cap,
                                          byref(got))
        if ret == Status.ENOTFOUND:
            return None
        if ret:
            e = error(ret, "shm_get")
            e.length = got.value  # type: ignore[attr-defined]
            raise e
        return got.value

    def shm_get(self, key: Key, size_hint: int = 1 << 16
                ) -> Optional[bytearray]:
        """shm_get_into() a new bytearray; None when absent."""
        buf = bytearray(size_hint)
        try:
            n = self.shm_get_into(key, buf)
        except Exception as e:  # noqa: BLE001 - re-raised unless ENOBUFS
            if getattr(e, "status", 0) != -errno.ENOBUFS:
                raise
            buf = bytearray(e.length)  # type: ignore[attr-defined]
            n = self.shm_get_into(key, buf)
        if n is None:
            return None
        del buf[n:]
        return buf

    def shm_reserve(self, key: Key, part_lens: Union[int, Sequence[int]], *,
                    parent: Optional[Key] = None, cls: Class = Class.SCRATCH,
                    flags: int = 0, ttl_ms: int = 0, group: int = 0,
                    elem_size: int = 0) -> "ShmReservation":
        """Reserves a block in the arena (part_lens: its size, or each
        part's); write its .data, then commit(). KvsError -EOPNOTSUPP when
        not attached; KVS_EFULL, KVS_ETOOBIG, KVS_EBUSY as put()."""
        from . import shm
        lens = (part_lens,) if isinstance(part_lens, int) \
            else tuple(part_lens)
        k = key_bytes(key)
        pk = key_bytes(parent) if parent is not None else None
        put = _lib.kvs_client_put_t()
        _set_key(put.key, k)
        if pk is not None:
            _set_key(put.parent, pk)
        iov = (_lib.kvs_iov_t * max(1, len(lens)))()
        for j, n in enumerate(lens):
            iov[j].len = n
        put.parts = iov
        put.nparts = len(lens)
        put.flags = flags
        put.cls = int(cls)
        put.elem_size = elem_size
        put.ttl_ms = ttl_ms
        put.group = group
        return shm.reserve(self, put, lens)

    def shm_view(self, key: Key, lease_ms: int = 0) -> Optional["ShmView"]:
        """A leased read-only view of a block in the arena (lease_ms 0: the
        daemon's default); None when absent. Read its .data, then
        release(). KvsError -EOPNOTSUPP when not attached."""
        from . import shm
        return shm.view(self, key_bytes(key), lease_ms)

    # ---- streaming (kvstash/stream.h) ---------------------------------

    def stream_put(self, key: Key, part_lens: Sequence[int], *,
                   cls: Class = Class.SCRATCH, flags: int = 0,
                   push_peer: Optional[str] = None,
                   inplace: bool = False) -> "StreamPut":
        """Begins a block of len(part_lens) parts, put part by part (with
        inplace, written where buf() says and committed); see
        kvstash.stream.StreamPut."""
        from .stream import StreamPut
        return StreamPut(self, key, part_lens, cls, flags, push_peer,
                         inplace)

    def stream_fetch(self, peer: str, blocks: Sequence[Tuple[Key, Any]],
                     wait_ms: int = 0) -> "StreamFetch":
        """Asks this client's sidecar to fetch a chain from peer into the
        given (key, buffer) pairs (buffer None: read in place with
        data()); see kvstash.stream.StreamFetch."""
        from .stream import StreamFetch
        return StreamFetch(self, peer, blocks, wait_ms)
