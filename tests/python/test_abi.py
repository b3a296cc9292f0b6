# SPDX-License-Identifier: Apache-2.0
"""The ctypes mirror of include/kvstash/*.h against the C compiler's view.

A small C program is generated from kvstash._lib.STRUCTS (whose fields
carry the C names), compiled against the headers with cc, and run: it
prints sizeof, alignment and every field's offset and size, and the
constants and enum values. Each must equal what ctypes and the Python
package say. A second check compares the library's exported symbols
(transport/client/libkvstash.map) with the prototypes the binding declares.
"""
import ctypes
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from kvstash import _lib
from kvstash.enums import Class, Tier
from kvstash.errors import Status

CONSTANTS = {
    "KVS_API_VERSION": _lib.API_VERSION,
    "KVS_DEFAULT_PORT": _lib.DEFAULT_PORT,
    "KVS_KEY_MAX": _lib.KEY_MAX,
    "KVS_NS_NAME_MAX": _lib.NS_NAME_MAX,
    "KVS_PARTS_MAX": _lib.PARTS_MAX,
    "KVS_CLIENT_PARAM_ADDR": _lib.PARAM_ADDR,
    "KVS_CLIENT_PARAM_PORT": _lib.PARAM_PORT,
    "KVS_CLIENT_PARAM_TOKEN": _lib.PARAM_TOKEN,
    "KVS_CLIENT_PARAM_NS": _lib.PARAM_NS,
    "KVS_CLIENT_PARAM_ELEM_SIZE": _lib.PARAM_ELEM_SIZE,
    "KVS_CLIENT_PARAM_TIMEOUT_MS": _lib.PARAM_TIMEOUT_MS,
    "KVS_CLIENT_PARAM_BUSY_POLL_US": _lib.PARAM_BUSY_POLL_US,
    "KVS_CLIENT_PARAM_SHM_SOCKET": _lib.PARAM_SHM_SOCKET,
    "KVS_CLIENT_PUT_DURABLE": _lib.PUT_DURABLE,
    "KVS_CLIENT_PUT_NO_DRAM": _lib.PUT_NO_DRAM,
    "KVS_CLIENT_MATCH_LEASE": _lib.MATCH_LEASE,
    "KVS_CLIENT_PIN_RETAIN": _lib.PIN_RETAIN,
    "KVS_STREAM_BLOCK": _lib.STREAM_BLOCK,
    "KVS_EBASE": -5000,
}
CONSTANTS.update({f"KVS_{s.name}": int(s) for s in Status})
CONSTANTS.update({f"KVS_TIER_{t.name}": int(t) for t in Tier})
CONSTANTS.update({f"KVS_CLASS_{c.name}": int(c) for c in Class})
CONSTANTS["KVS_CLASS_COUNT"] = len(Class)
CONSTANTS["KVS_ELAST"] = min(int(s) for s in Status) - 1

# Exported calls the binding leaves out, and why: the asynchronous forms
# and the progress calls need callbacks into Python from the C library's
# progress loop; the synchronous forms cover the same requests.
NOT_WRAPPED = {
    "kvs_client_put_batch_async", "kvs_client_get_batch_async",
    "kvs_client_match_async", "kvs_client_exists_async",
    "kvs_client_progress", "kvs_client_progress_wait", "kvs_client_wait",
    # Thin forms of the batch calls, done in Python on top of those.
    "kvs_client_put", "kvs_client_get",
    # Locating blocks across sidecars: C and the CLI only, for now.
    "kvs_locator_open", "kvs_locator_sync", "kvs_locate",
    "kvs_locator_blocks", "kvs_locator_close",
    # Commits without waiting (kvstash/shm.h): the status word must stay
    # put until a later call fills it in; shm_commit() covers the request.
    "kvs_shm_commit_nb", "kvs_shm_flush",
    # Streaming in place's metadata form (kvstash/stream.h): C only.
    "kvs_stream_put_open",
}


def _program():
    lines = ["#include <stddef.h>", "#include <stdio.h>",
             "#include <stdalign.h>", "#include \"kvstash/kvstash.h\"",
             "int main(void) {"]
    for name in _lib.STRUCTS:
        lines.append(f'printf("S {name} %zu %zu\\n", sizeof({name}), '
                     f'alignof({name}));')
        for f, _ in _lib.STRUCTS[name]._fields_:
            lines.append(f'printf("F {name} {f} %zu %zu\\n", '
                         f'offsetof({name}, {f}), '
                         f'sizeof((({name} *)0)->{f}));')
    for c in CONSTANTS:
        lines.append(f'printf("C {c} %lld\\n", (long long)({c}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_view(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to check the struct layouts against")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(_program())
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror",
                    "-I", str(ROOT / "include"), "-o", str(d / "abi"),
                    str(d / "abi.c")], check=True)
    out = subprocess.run([str(d / "abi")], check=True, capture_output=True,
                         text=True).stdout
    view = {}
    for line in out.splitlines():
        kind, *rest = line.split()
        if kind == "C":
            view[("C", rest[0])] = int(rest[1])
        else:
            view[(kind, *rest[:-2])] = rest[-2:]
    return view


@pytest.mark.parametrize("name", sorted(_lib.STRUCTS))
def test_struct_layout_matches_c(c_view, name):
    st = _lib.STRUCTS[name]
    size, align = c_view[("S", name)]
    assert ctypes.sizeof(st) == int(size), f"sizeof({name})"
    assert ctypes.alignment(st) == int(align), f"alignof({name})"
    for f, _ in st._fields_:
        off, fsize = c_view[("F", name, f)]
        desc = getattr(st, f)
        assert desc.offset == int(off), f"offsetof({name}, {f})"
        assert desc.size == int(fsize), f"sizeof({name}.{f})"


def test_struct_fields_are_all_mirrored():
    """Every field of every mirrored struct in the headers is in ctypes:
    a field added in C must be added here too (offsets alone would not
    catch one added at the end)."""
    text = "\n".join(p.read_text() for p in
                     (ROOT / "include" / "kvstash").glob("*.h"))
    for name, st in _lib.STRUCTS.items():
        tag = name[:-2]  # kvs_client_key_t -> struct kvs_client_key
        m = re.search(r"typedef struct %s \{(.*?)\} %s;" % (tag, name), text,
                      re.S)
        assert m, f"{name} not found in the headers"
        body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
        c_fields = re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*;", body)
        assert c_fields == [f for f, _ in st._fields_], name


@pytest.mark.parametrize("const", sorted(CONSTANTS))
def test_constant_matches_c(c_view, const):
    assert c_view[("C", const)] == CONSTANTS[const]


def test_every_exported_call_is_declared_or_left_out_on_purpose():
    mapped = set(re.findall(r"\b(kvs_\w+);",
                            (ROOT / "transport" / "client" / "libkvstash.map")
                            .read_text()))
    declared = set(_lib._PROTOS)
    assert declared <= mapped, declared - mapped
    assert mapped - declared == NOT_WRAPPED


def test_library_loads_and_agrees_on_version():
    lib = _lib.lib()
    assert lib.kvs_version() // 10000 == _lib.API_VERSION >> 16
    assert lib.kvs_strerror(Status.ENOTFOUND) == b"not found"
