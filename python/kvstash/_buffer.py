# SPDX-License-Identifier: Apache-2.0
"""Memory of Python objects handed to libkvstash without a copy.

Two kinds of objects are accepted wherever the API takes data:
  - anything with the buffer protocol (bytes, bytearray, memoryview,
    array.array, mmap, numpy arrays ...), which must be C-contiguous; and
  - torch tensors, through data_ptr() and numel() * element_size(), which
    must be contiguous and in CPU memory.

A buffer is exported with PyObject_GetBuffer (through ctypes.pythonapi, so
read-only objects such as bytes work too) and released by Views.release():
while exported, the exporter cannot be resized or freed (a bytearray
refuses to grow, numpy refuses a resize), which is what makes handing the
raw address to C safe. A torch tensor is kept referenced instead; the caller
must not resize it in place while a call is in flight.

Ownership: a Views object owns its exports; whoever creates one releases it
once the C call (or, for streaming, the C object) is done with the memory.
"""
from __future__ import annotations

import ctypes
from ctypes import POINTER, Structure, c_int, c_ssize_t, c_void_p, py_object
from typing import Any, List, Tuple

PyBUF_WRITABLE = 0x0001
PyBUF_FORMAT = 0x0004
PyBUF_ND = 0x0008
PyBUF_STRIDES = 0x0010 | PyBUF_ND
PyBUF_C_CONTIGUOUS = 0x0020 | PyBUF_STRIDES


class _Py_buffer(Structure):
    # Py_buffer of Include/pybuffer.h (part of the stable ABI since 3.11,
    # unchanged since 3.3).
    _fields_ = [
        ("buf", c_void_p),
        ("obj", c_void_p),
        ("len", c_ssize_t),
        ("itemsize", c_ssize_t),
        ("readonly", c_int),
        ("ndim", c_int),
        ("format", c_void_p),
        ("shape", c_void_p),
        ("strides", c_void_p),
        ("suboffsets", c_void_p),
        ("internal", c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [py_object, POINTER(_Py_buffer), c_int]
_get_buffer.restype = c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [POINTER(_Py_buffer)]
_release_buffer.restype = None


def is_tensor(obj: Any) -> bool:
    """A torch tensor, recognised without importing torch."""
    return (type(obj).__module__.startswith("torch")
            and hasattr(obj, "data_ptr") and hasattr(obj, "element_size"))


class Views:
    """Exports of the memory of several objects, released together."""

    def __init__(self) -> None:
        self._views: List[_Py_buffer] = []
        self._keep: List[Any] = []

    def add(self, obj: Any, writable: bool = False) -> Tuple[int, int]:
        """Exports obj; returns (address, bytes). Raises TypeError for an
        object without memory, BufferError for a non-contiguous or (when
        writable) read-only one, ValueError for a tensor off the CPU."""
        if is_tensor(obj):
            if obj.device.type != "cpu":
                raise ValueError(f"tensor on {obj.device}: libkvstash reads "
                                 "and writes host memory; move it to the "
                                 "CPU first")
            if not obj.is_contiguous():
                raise BufferError("tensor is not contiguous: call "
                                  ".contiguous() first")
            self._keep.append(obj)
            return obj.data_ptr(), obj.numel() * obj.element_size()
        view = _Py_buffer()
        flags = PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0)
        # Raises (ctypes.pythonapi checks the error indicator) on failure;
        # exporters differ in what (numpy: ValueError), so say BufferError.
        try:
            _get_buffer(obj, ctypes.byref(view), flags)
        except ValueError as e:
            raise BufferError(str(e)) from e
        self._views.append(view)
        return view.buf or 0, view.len

    def release(self) -> None:
        """Releases every export; the objects may change again after."""
        while self._views:
            _release_buffer(ctypes.byref(self._views.pop()))
        self._keep.clear()

    def __enter__(self) -> "Views":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def nbytes(obj: Any) -> int:
    """Bytes of obj's memory (as Views.add would see them)."""
    with Views() as v:
        return v.add(obj)[1]
