# SPDX-License-Identifier: Apache-2.0
"""libkvstash through ctypes: where the library is found, the C structs of
include/kvstash/*.h mirrored field for field, and the prototypes.

Every struct below carries the C names of its fields, in the C order, so
that tests/python/test_abi.py can compile a small C program that prints
sizeof and offsetof for each one and compare them with ctypes' view. Change
a header and that test fails until this file follows.

The library is looked up, in order:
  1. the path in the environment variable KVSTASH_LIB;
  2. the source tree's build: <repo>/build/transport/libkvstash.so when this
     package is imported from <repo>/python/kvstash;
  3. ctypes.util.find_library("kvstash") (an installed libkvstash.so.0).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_int, c_size_t,
                    c_uint, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)
from pathlib import Path
from typing import Optional

# ---- constants (kvstash.h, client.h, stream.h, shm.h, types.h) -----------------

#: The API version the structs below mirror: KVS_VERSION_MAJOR << 16 |
#: KVS_VERSION_MINOR of include/kvstash/kvstash.h.
API_VERSION = (0 << 16) | 1
DEFAULT_PORT = 7370
KEY_MAX = 64
NS_NAME_MAX = 255
PARTS_MAX = 1024

PARAM_ADDR = 1 << 0
PARAM_PORT = 1 << 1
PARAM_TOKEN = 1 << 2
PARAM_NS = 1 << 3
PARAM_ELEM_SIZE = 1 << 4
PARAM_TIMEOUT_MS = 1 << 5
PARAM_BUSY_POLL_US = 1 << 6
PARAM_SHM_SOCKET = 1 << 7

PUT_DURABLE = 1 << 0
PUT_NO_DRAM = 1 << 1
MATCH_LEASE = 1 << 0
PIN_RETAIN = 1 << 0
STREAM_BLOCK = 0xFFFFFFFF


# ---- structs -------------------------------------------------------------

class kvs_client_params_t(Structure):
    _fields_ = [
        ("field_mask", c_uint64),
        ("addr", c_char_p),
        ("port", c_uint16),
        ("token", c_char_p),
        ("ns", c_char_p),
        ("elem_size", c_uint32),
        ("timeout_ms", c_uint32),
        ("busy_poll_us", c_uint32),
        ("shm_socket", c_char_p),
    ]


class kvs_client_limits_t(Structure):
    _fields_ = [
        ("max_keys", c_uint32),
        ("max_payload", c_uint32),
        ("max_inflight", c_uint32),
        ("lease_max_ms", c_uint32),
        ("features", c_uint32),
        ("session", c_uint64),
    ]


class kvs_client_key_t(Structure):
    _fields_ = [("data", c_void_p), ("len", c_uint32)]


class kvs_iov_t(Structure):
    _fields_ = [("base", c_void_p), ("len", c_size_t)]


class kvs_client_put_t(Structure):
    _fields_ = [
        ("key", kvs_client_key_t),
        ("parent", kvs_client_key_t),
        ("parts", POINTER(kvs_iov_t)),
        ("nparts", c_uint32),
        ("flags", c_uint32),
        ("cls", c_uint8),
        ("elem_size", c_uint8),
        ("ttl_ms", c_uint64),
        ("group", c_uint64),
        ("status", c_int),
    ]


class kvs_client_get_t(Structure):
    _fields_ = [
        ("key", kvs_client_key_t),
        ("buf", c_void_p),
        ("cap", c_size_t),
        ("mr", c_void_p),
        ("part_lens", POINTER(c_uint32)),
        ("part_cap", c_uint32),
        ("status", c_int),
        ("len", c_uint64),
        ("nparts", c_uint32),
        ("tier", c_uint8),
        ("cls", c_uint8),
    ]


class kvs_client_match_result_t(Structure):
    _fields_ = [("matched", c_size_t), ("lease_id", c_uint64)]


class kvs_client_stat_t(Structure):
    _fields_ = [("name", c_char * 64), ("value", c_uint64)]


class kvs_client_scan_ent_t(Structure):
    _fields_ = [
        ("key", c_uint8 * KEY_MAX),
        ("key_len", c_uint32),
        ("parent", c_uint8 * KEY_MAX),
        ("parent_len", c_uint32),
        ("tier", c_uint8),
        ("cls", c_uint8),
        ("nparts", c_uint32),
        ("len", c_uint64),
        ("group", c_uint64),
        ("expiry_ms", c_uint64),
    ]


class kvs_stream_block_t(Structure):
    _fields_ = [("key", kvs_client_key_t), ("buf", c_void_p),
                ("cap", c_size_t)]


class kvs_stream_info_t(Structure):
    _fields_ = [
        ("status", c_int),
        ("complete", c_int),
        ("nparts", c_uint32),
        ("parts_in", c_uint32),
        ("len", c_uint64),
        ("first_part_ns", c_uint64),
        ("complete_ns", c_uint64),
    ]


class kvs_shm_block_t(Structure):
    _fields_ = [
        ("id", c_uint64),
        ("data", c_void_p),
        ("len", c_uint64),
        ("nparts", c_uint32),
        ("tier", c_uint8),
        ("cls", c_uint8),
        ("lease_end_ns", c_uint64),
    ]


#: Every mirrored struct, by its C name: what the ABI test checks.
STRUCTS = {cls.__name__: cls for cls in (
    kvs_client_params_t, kvs_client_limits_t, kvs_client_key_t, kvs_iov_t,
    kvs_client_put_t, kvs_client_get_t, kvs_client_match_result_t,
    kvs_client_stat_t, kvs_client_scan_ent_t, kvs_stream_block_t,
    kvs_stream_info_t, kvs_shm_block_t)}

_P = POINTER
# name: (restype, argtypes). Handles (kvs_client_t *, kvs_mr_t *, stream
# objects) are opaque and passed as void *.
_PROTOS = {
    "kvs_version": (c_uint, []),
    "kvs_version_string": (c_char_p, []),
    "kvs_strerror": (c_char_p, [c_int]),
    "kvs_client_create_v": (c_int, [c_uint, _P(kvs_client_params_t),
                                    _P(c_void_p)]),
    "kvs_client_destroy": (None, [c_void_p]),
    "kvs_client_limits": (None, [c_void_p, _P(kvs_client_limits_t)]),
    "kvs_client_mem_reg": (c_int, [c_void_p, c_void_p, c_size_t,
                                   _P(c_void_p)]),
    "kvs_client_mem_dereg": (None, [c_void_p, c_void_p]),
    "kvs_client_put_batch": (c_int, [c_void_p, _P(kvs_client_put_t),
                                     c_size_t]),
    "kvs_client_get_batch": (c_int, [c_void_p, _P(kvs_client_get_t),
                                     c_size_t, c_uint64]),
    "kvs_client_match": (c_int, [c_void_p, _P(kvs_client_key_t), c_size_t,
                                 c_uint32, c_uint32, _P(c_uint8),
                                 _P(kvs_client_match_result_t)]),
    "kvs_client_release": (c_int, [c_void_p, c_uint64]),
    "kvs_client_exists": (c_int, [c_void_p, _P(kvs_client_key_t), c_size_t,
                                  _P(c_uint8)]),
    "kvs_client_delete": (c_int, [c_void_p, _P(kvs_client_key_t), c_size_t,
                                  _P(c_int)]),
    "kvs_client_pin": (c_int, [c_void_p, _P(kvs_client_key_t), c_size_t,
                               c_uint32, _P(c_int)]),
    "kvs_client_unpin": (c_int, [c_void_p, _P(kvs_client_key_t), c_size_t,
                                 c_uint32, _P(c_int)]),
    "kvs_client_prefetch": (c_int, [c_void_p, _P(kvs_client_key_t), c_size_t,
                                    _P(c_uint64)]),
    "kvs_client_stat": (c_int, [c_void_p, _P(kvs_client_stat_t), c_size_t,
                                _P(c_size_t)]),
    "kvs_client_verify": (c_int, [c_void_p, _P(c_uint64), _P(c_uint64)]),
    "kvs_client_scan": (c_int, [c_void_p, c_uint64, c_uint32,
                                _P(kvs_client_scan_ent_t), c_size_t,
                                _P(c_size_t), _P(c_uint32)]),
    "kvs_stream_put_begin": (c_int, [c_void_p, _P(kvs_client_key_t),
                                     _P(c_uint32), c_uint32, c_uint8,
                                     c_uint32, c_char_p, _P(c_void_p)]),
    "kvs_stream_put_begin_inplace": (c_int, [c_void_p, _P(kvs_client_key_t),
                                             _P(c_uint32), c_uint32, c_uint8,
                                             c_uint32, c_char_p,
                                             _P(c_void_p)]),
    "kvs_stream_put_buf": (c_int, [c_void_p, c_uint32, _P(c_void_p),
                                   _P(c_size_t)]),
    "kvs_stream_put_commit": (c_int, [c_void_p, c_uint32]),
    "kvs_stream_put_part": (c_int, [c_void_p, c_uint32, c_void_p, c_size_t]),
    "kvs_stream_put_part_nb": (c_int, [c_void_p, c_uint32, c_void_p,
                                       c_size_t]),
    "kvs_stream_put_seal": (c_int, [c_void_p]),
    "kvs_stream_put_abort": (None, [c_void_p]),
    "kvs_stream_fetch": (c_int, [c_void_p, c_char_p, _P(kvs_stream_block_t),
                                 c_size_t, c_uint32, _P(c_void_p)]),
    "kvs_stream_wait": (c_int, [c_void_p, c_uint32, c_uint32, c_int]),
    "kvs_stream_info": (c_int, [c_void_p, c_uint32, _P(kvs_stream_info_t)]),
    "kvs_stream_data": (c_int, [c_void_p, c_uint32, c_uint32, _P(c_void_p),
                                _P(c_size_t)]),
    "kvs_stream_fetch_destroy": (None, [c_void_p]),
    "kvs_shm_status": (c_int, [c_void_p]),
    "kvs_shm_reserve": (c_int, [c_void_p, _P(kvs_client_put_t),
                                _P(kvs_shm_block_t)]),
    "kvs_shm_commit": (c_int, [c_void_p, c_uint64]),
    "kvs_shm_abort": (c_int, [c_void_p, c_uint64]),
    "kvs_shm_view": (c_int, [c_void_p, c_void_p, c_uint32, c_uint32,
                             _P(c_uint32), c_uint32, _P(kvs_shm_block_t)]),
    "kvs_shm_release": (c_int, [c_void_p, c_uint64]),
    "kvs_shm_get": (c_int, [c_void_p, c_void_p, c_uint32, c_void_p, c_size_t,
                            _P(c_size_t)]),
    "kvs_shm_put": (c_int, [c_void_p, c_void_p, c_uint32, c_void_p, c_size_t,
                            c_uint32]),
    "kvs_shm_get_batch": (c_int, [c_void_p, _P(kvs_client_get_t), c_size_t]),
    "kvs_shm_put_batch": (c_int, [c_void_p, _P(kvs_client_put_t), c_size_t]),
}


def _source_tree_lib() -> Optional[Path]:
    """The library built in the source tree this package sits in, if any."""
    repo = Path(__file__).resolve().parent.parent.parent
    cand = repo / "build" / "transport" / "libkvstash.so"
    if (repo / "include" / "kvstash" / "kvstash.h").is_file() and cand.is_file():
        return cand
    return None


def find_library() -> str:
    """Where libkvstash will be loaded from (see the module's docstring).

    Raises OSError naming what was tried when it is nowhere.
    """
    env = os.environ.get("KVSTASH_LIB")
    if env:
        return env
    tree = _source_tree_lib()
    if tree is not None:
        return str(tree)
    found = ctypes.util.find_library("kvstash")
    if found:
        return found
    raise OSError(
        "libkvstash not found: set KVSTASH_LIB to its path, build it in the "
        "source tree (make build: build/transport/libkvstash.so), or install "
        "it where the dynamic linker looks (ldconfig)")


_lib: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """The loaded library with every prototype set; loaded on first use."""
    global _lib
    if _lib is None:
        path = find_library()
        try:
            dll = ctypes.CDLL(path)
        except OSError as e:
            raise OSError(f"cannot load libkvstash from {path}: {e}") from e
        for name, (res, args) in _PROTOS.items():
            try:
                fn = getattr(dll, name)
            except AttributeError as e:
                raise OSError(f"{path} has no {name}: the library is older "
                              "than this package; rebuild it") from e
            fn.restype = res
            fn.argtypes = args
        if (dll.kvs_version() // 10000) != (API_VERSION >> 16):
            raise OSError(f"{path} is libkvstash "
                          f"{dll.kvs_version_string().decode()}, this package "
                          f"speaks major version {API_VERSION >> 16}")
        _lib = dll
    return _lib
