"""Dropout with a keep-mask that is drawn on the host or given by the caller.

Axis legend: elementwise, so x may have any shape (N, ...); the mask has x's shape.
p is the DROP probability; a unit is kept with probability 1 - p.

The mask is a keep-mask: 1 (True) keeps a unit, 0 (False) drops it. Its dtype is bool
or x's dtype (values 0/1). When ``mask`` is None it is drawn from ``rng``, a host
``numpy.random.Generator``, as ``rng.random(x.shape) >= p`` and moved to x's array
module, so NumPy and CuPy runs from the same seed drop the same units. Given a mask,
it is used as is (a PyTorch twin can share it); the layer applies any 1/(1-p) scaling.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy

from refnet.layers.backend import Array, get_array_module
from refnet.layers.checks import float_dtype, require_grad
from refnet.layers.workspace import FRESH, Fresh

__all__ = ["forward", "backward", "MODES", "DropoutCache"]

MODES = ("paper", "inverted")


class DropoutCache(NamedTuple):
    mask: Array | None  # keep-mask (bool or x.dtype), or None outside training
    scale: float  # the factor applied besides the mask
    shape: tuple[int, ...]
    dtype: numpy.dtype


def forward(
    x: Array,
    *,
    p: float = 0.5,
    train: bool,
    rng: numpy.random.Generator | None = None,
    mask: Array | None = None,
    mode: str = "paper",
    ws: Fresh = FRESH,
) -> tuple[Array, DropoutCache]:
    """Training: y = x * m * c; test: y = x * c', where m is the keep-mask and

        mode="paper"     c = 1,          c' = 1 - p   (the paper: "multiply by 0.5 at test")
        mode="inverted"  c = 1 / (1-p),  c' = 1       (PyTorch, Caffe, cuda-convnet2 dropout)

    Both give E[y_train] = y_test. The paper drops with p = 0.5 after fc6's and fc7's
    ReLU; torchvision's AlexNet puts dropout before fc6 and fc7 instead. ``ws``: where y
    comes from (``layers.workspace``).
    """
    dtype = float_dtype("dropout", x)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"dropout: p must be a number in [0, 1), got {p!r}")
    if mode not in MODES:
        raise ValueError(f"dropout: mode must be one of {MODES}, got {mode!r}")
    xp = get_array_module(x)
    shape = tuple(x.shape)
    y = ws.empty(xp, shape, dtype)
    if not train:
        if mode == "paper":
            return xp.multiply(x, dtype.type(1 - p), out=y), DropoutCache(None, 1 - p, shape, dtype)
        y[...] = x
        return y, DropoutCache(None, 1.0, shape, dtype)
    if mask is None:
        if rng is None or not hasattr(rng, "random"):
            raise ValueError(
                f"dropout: training needs rng (a numpy.random.Generator) or a mask, got rng={rng!r}"
            )
        mask = xp.asarray(rng.random(shape) >= p)  # bool, drawn on the host
    else:
        if tuple(mask.shape) != shape:
            raise ValueError(f"dropout: mask has shape {tuple(mask.shape)} but x has shape {shape}")
        if mask.dtype != bool and mask.dtype != dtype:
            raise TypeError(f"dropout: mask dtype must be bool or {dtype}, got {mask.dtype}")
        mask = xp.asarray(mask)
    scale = 1.0 / (1 - p) if mode == "inverted" else 1.0
    xp.multiply(x, mask, out=y)
    if scale != 1.0:
        y *= dtype.type(scale)
    return y, DropoutCache(mask, scale, shape, dtype)


def backward(dy: Array, cache: DropoutCache, *, ws: Fresh = FRESH) -> Array:
    """dx = dy * m * c in training, dy * c' at test (the same factors as forward)."""
    require_grad("dropout", dy, cache.shape, cache.dtype)
    xp = get_array_module(dy)
    dx = ws.empty(xp, cache.shape, cache.dtype)
    if cache.mask is not None:
        xp.multiply(dy, cache.mask, out=dx)
    else:
        dx[...] = dy
    if cache.scale != 1.0:
        dx *= cache.dtype.type(cache.scale)
    return dx
