"""Input validation shared by the public layer entry points.

Every check raises a plain ``ValueError`` (or ``TypeError`` for dtypes, through
``layers.backend.float_dtype``) whose message names the layer, the argument and the
offending value, so a caller sees what to fix without reading the code. ``assert`` is
never used for user errors.
"""

from __future__ import annotations

import numbers
from typing import Any

from refnet.layers.backend import Array, DTypeLike, float_dtype

__all__ = [
    "float_dtype",
    "require_ndim",
    "require_int",
    "require_grad",
    "output_size",
    "window_count",
]


def require_ndim(layer: str, name: str, a: Array, ndim: int, axes: str) -> None:
    """``a.ndim == ndim``, else ``ValueError`` naming the expected axes, e.g. ``(N, C, H, W)``."""
    if a.ndim != ndim:
        raise ValueError(
            f"{layer}: {name} must be {ndim}-D {axes}, got shape {tuple(a.shape)} ({a.ndim}-D)"
        )


def require_int(layer: str, name: str, value: Any, minimum: int) -> int:
    """``value`` is an integer (not a bool) and ``>= minimum``; returns it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{layer}: {name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value}")
    return int(value)


def require_grad(
    layer: str, dy: Array, shape: tuple[int, ...], dtype: DTypeLike, name: str = "dy"
) -> None:
    """The upstream gradient ``dy`` has the forward output's ``shape`` and ``dtype``."""
    if tuple(dy.shape) != tuple(shape):
        raise ValueError(
            f"{layer}: {name} has shape {tuple(dy.shape)} but the forward "
            f"output had shape {tuple(shape)}"
        )
    got = float_dtype(f"{layer} backward", dy)
    if got != dtype:
        raise TypeError(f"{layer}: {name} has dtype {got} but the forward pass ran in {dtype}")


def window_count(size: int, kernel: int, stride: int, pad: int = 0, rounding: str = "floor") -> int:
    """Windows along one axis of ``size`` (+ ``pad`` on each side): ``floor((size + 2*pad
    - kernel) / stride) + 1``, or with ``rounding="ceil"`` (Caffe's pooling, PyTorch's
    ``ceil_mode=True``) ``ceil(...) + 1`` less a last window that would start past the
    input and its leading pad (so every window starts inside; the last may be clipped).
    May be < 1 when the kernel is larger than the padded input (the caller refuses it)."""
    span = size + 2 * pad - kernel
    if rounding == "floor":
        return span // stride + 1
    if rounding != "ceil":
        raise ValueError(f"rounding must be 'floor' or 'ceil', got {rounding!r}")
    count = -(-span // stride) + 1
    if (count - 1) * stride >= size + pad:
        count -= 1
    return count


def output_size(
    layer: str,
    axis: str,
    size: int,
    kernel: int,
    stride: int,
    pad: int,
    rounding: str = "floor",
) -> int:
    """Windows along one axis: ``window_count`` (``floor((size + 2*pad - kernel) / stride)
    + 1`` unless ``rounding="ceil"``).

    ``ValueError`` when the kernel is larger than the padded input along ``axis``.
    """
    padded = size + 2 * pad
    if kernel > padded:
        raise ValueError(
            f"{layer}: kernel {axis} {kernel} is larger than the padded input "
            f"{axis} {padded} (= {size} + 2*{pad})"
        )
    return window_count(size, kernel, stride, pad, rounding)
