# SPDX-License-Identifier: Apache-2.0
"""kvstash._buffer: what reaches the C library is the object's own memory
(no copy on the Python side), held while exported, with clear errors for
memory the library cannot use."""
import array
import ctypes
import mmap

import pytest

from kvstash._buffer import Views, is_tensor


def _addr_of_bytes(b):
    return ctypes.cast(b, ctypes.c_void_p).value


def test_bytes_is_passed_in_place():
    b = b"x" * 1000
    with Views() as v:
        addr, n = v.add(b)
    assert (addr, n) == (_addr_of_bytes(b), 1000)


def test_bytearray_and_memoryview_slices_are_passed_in_place():
    ba = bytearray(4096)
    base = ctypes.addressof(ctypes.c_char.from_buffer(ba))
    with Views() as v:
        assert v.add(ba, writable=True) == (base, 4096)
        assert v.add(memoryview(ba)[100:200], writable=True) == (base + 100,
                                                                  100)


def test_export_pins_the_object_until_released():
    ba = bytearray(16)
    v = Views()
    v.add(ba, writable=True)
    with pytest.raises(BufferError):
        ba.extend(b"more")  # a resize would move the memory under C
    v.release()
    ba.extend(b"more")
    assert len(ba) == 20


def test_read_only_memory_is_refused_where_written():
    with Views() as v, pytest.raises(BufferError):
        v.add(b"read only", writable=True)


def test_non_contiguous_memory_is_refused():
    mv = memoryview(bytearray(64)).cast("B")[::2]
    with Views() as v, pytest.raises(BufferError):
        v.add(mv)


def test_array_and_mmap():
    a = array.array("f", range(10))
    m = mmap.mmap(-1, 8192)
    with Views() as v:
        assert v.add(a)[1] == 40
        assert v.add(m, writable=True)[1] == 8192
    m.close()


def test_objects_without_memory_are_refused():
    with Views() as v, pytest.raises(TypeError):
        v.add([1, 2, 3])


def test_numpy_arrays_in_place():
    np = pytest.importorskip("numpy")
    a = np.arange(100, dtype=np.float32)
    with Views() as v:
        assert v.add(a, writable=True) == (a.ctypes.data, 400)
        with pytest.raises(BufferError):
            v.add(np.zeros((4, 4))[:, 1])  # a column: strided


def test_torch_tensors_through_data_ptr():
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, 8, dtype=torch.float16)
    assert is_tensor(t)
    with Views() as v:
        assert v.add(t, writable=True) == (t.data_ptr(), 32)
        assert v.add(t[1]) == (t.data_ptr() + 16, 16)
        with pytest.raises(BufferError):
            v.add(t.t())  # a transposed view is not contiguous
