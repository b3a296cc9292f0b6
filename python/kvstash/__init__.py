# SPDX-License-Identifier: Apache-2.0
"""kvstash from Python: a client of kvstashd over libkvstash (ctypes).

    import kvstash
    with kvstash.Client("127.0.0.1", 7370, None, "model=tiny") as c:
        c.put(b"block-0", layer_bytes)
        m = c.match([b"block-0", b"block-1"], lease=True)

Standard library only; numpy arrays and torch tensors are accepted where
data is (no copy on the Python side). See docs/python.md.

With the daemon on the same host, Client(..., shm_socket=...) maps its
DRAM arena: shm_put/shm_get copy once in C, shm_reserve/shm_view hand out
memoryviews of the arena itself (kvstash.shm).
"""
from ._lib import (DEFAULT_PORT, KEY_MAX, PARTS_MAX, PIN_RETAIN, PUT_DURABLE,
                   PUT_NO_DRAM, find_library)
from .client import (Client, GetResult, Limits, MatchResult, PutItem,
                     ScanEntry, key_bytes)
from .enums import Class, Tier
from .errors import KvsError, NotFoundError, Status, status_name, strerror
from .shm import ShmReservation, ShmView
from .stream import StreamFetch, StreamInfo, StreamPut


def version() -> str:
    """The loaded libkvstash's version, "major.minor.patch"."""
    from ._lib import lib
    return lib().kvs_version_string().decode()


__all__ = [
    "Client", "GetResult", "Limits", "MatchResult", "PutItem", "ScanEntry",
    "StreamPut", "StreamFetch", "StreamInfo", "ShmReservation", "ShmView",
    "Class", "Tier", "KvsError",
    "NotFoundError", "Status", "status_name", "strerror", "key_bytes",
    "find_library", "version", "DEFAULT_PORT", "KEY_MAX", "PARTS_MAX",
    "PIN_RETAIN", "PUT_DURABLE", "PUT_NO_DRAM",
]
