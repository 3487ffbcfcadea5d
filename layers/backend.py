"""The array-module abstraction: NumPy on the CPU, CuPy on GPUs.

This is the only file in refnet that imports CuPy. Every layer takes its array module
from its inputs (``xp = get_array_module(x)``), so one body of maths runs on both.

Three kinds of array are recognised:

- ``numpy.ndarray`` (and NumPy scalars): the module is ``numpy``;
- ``cupy.ndarray``: the module is ``cupy`` (imported lazily, only if CuPy is installed);
- any other object with ``__array_namespace__()``: the namespace it names. The test
  suite uses this hook for a device-tagging NumPy backend that catches arrays of two
  devices meeting without an explicit transfer.

Devices: ``device(xp, i)`` is the context in which new arrays of ``xp`` are made on
device ``i`` (``cupy.cuda.Device(i)`` for CuPy, nothing for NumPy), and
``to_device(a, xp, i)`` is the one explicit transfer between devices.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import numpy
from numpy.typing import DTypeLike

Array = Any
"""A NumPy or CuPy array (or a test backend's array with ``__array_namespace__``).

``Any`` rather than ``numpy.ndarray``: CuPy ships no type stubs, and every layer takes the
same body of maths over either module, so the checker cannot tell the two apart. Where an
array is NumPy only (a host copy), the annotation says ``numpy.ndarray``."""

Module = Any
"""An array module: ``numpy``, ``cupy``, or a test backend's namespace (``xp`` throughout).

``Any`` rather than ``types.ModuleType``: a test backend's namespace is an object, not a
module, and ``xp.float32`` / ``xp.cuda`` are looked up by name on either."""

FLOAT_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

_cupy = None
_cupy_checked = False


def cupy_module() -> ModuleType | None:
    """The ``cupy`` module if it is installed, else ``None`` (no GPU is needed to import)."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy
        except Exception:  # ImportError, or a broken CUDA install
            cupy = None
        _cupy = cupy
    return _cupy


def gpu_count() -> int:
    """Number of CUDA devices CuPy can use (0 without CuPy or without a GPU)."""
    cupy = cupy_module()
    if cupy is None:
        return 0
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def backend_module(name: str) -> Module:
    """The array module for a backend name: ``"numpy"`` or ``"cupy"``."""
    if name == "numpy":
        return numpy
    if name == "cupy":
        cupy = cupy_module()
        if cupy is None:
            raise ValueError(
                "backend 'cupy' requested but CuPy is not installed (pip install -e '.[gpu]')"
            )
        return cupy
    raise ValueError(f"backend must be 'numpy' or 'cupy', got {name!r}")


def get_array_module(*arrays: Any) -> Module:
    """The array module of ``arrays`` (NumPy unless one of them belongs to another)."""
    cupy = _cupy if _cupy_checked else cupy_module()
    for a in arrays:
        if isinstance(a, (numpy.ndarray, numpy.generic)) and not _has_own_namespace(a):
            continue
        if cupy is not None and isinstance(a, cupy.ndarray):
            return cupy
        if hasattr(a, "__array_namespace__"):
            return a.__array_namespace__()
    return numpy


def _has_own_namespace(a: Array) -> bool:
    """True for NumPy subclasses that name a namespace other than NumPy (test backends)."""
    return (
        type(a) is not numpy.ndarray
        and hasattr(a, "__array_namespace__")
        and a.__array_namespace__() is not numpy
    )


def asnumpy(a: Any) -> numpy.ndarray:
    """``a`` as a NumPy array on the host (a copy from the GPU when ``a`` is a CuPy array)."""
    cupy = cupy_module()
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy.asnumpy(a)
    return numpy.asarray(a)


def device(xp: Module, index: int) -> AbstractContextManager[Any]:
    """Context under which new arrays of ``xp`` live on device ``index``."""
    if xp is numpy:
        return contextlib.nullcontext()
    cupy = cupy_module()
    if cupy is not None and xp is cupy:
        return cupy.cuda.Device(index)
    return xp.Device(index)  # a test backend provides its own


def to_device(a: Any, xp: Module, index: int) -> Array:
    """An explicit transfer: ``a`` as an array of ``xp`` on device ``index``.

    A no-op for NumPy. For CuPy, a copy is made when ``a`` lives on another device
    (or on the host); an array already on ``index`` is returned as is.
    """
    if xp is numpy:
        return numpy.asarray(a)
    cupy = cupy_module()
    if cupy is not None and xp is cupy:
        if isinstance(a, cupy.ndarray) and a.device.id == index:
            return a
        with cupy.cuda.Device(index):
            out = cupy.empty(a.shape, dtype=a.dtype)
            if isinstance(a, cupy.ndarray):
                out.data.copy_from_device(cupy.ascontiguousarray(a).data, a.nbytes)
            else:
                out.set(numpy.ascontiguousarray(a))
            return out
    return xp.to_device(a, index)  # a test backend provides its own


def float_dtype(name: str, *arrays: Array) -> numpy.dtype:
    """The common floating dtype of ``arrays``; ``TypeError`` naming ``name`` otherwise.

    Integer, boolean, complex and mixed float32/float64 inputs are refused: refnet
    computes in float32 or float64 and never promotes silently.
    """
    dtypes = {numpy.dtype(a.dtype) for a in arrays}
    for dt in dtypes:
        if dt not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected float32 or float64 arrays, got dtype {dt}")
    if len(dtypes) > 1:
        names = ", ".join(sorted(str(d) for d in dtypes))
        raise TypeError(f"{name}: mixed dtypes ({names}); convert all inputs to one dtype")
    return dtypes.pop()


def as_dtype(name: DTypeLike) -> numpy.dtype:
    """``numpy.dtype`` for ``"float32"``/``"float64"`` (or a dtype); ``TypeError`` otherwise."""
    try:
        dt = numpy.dtype(name)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {name!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {name!r}")
    return dt
