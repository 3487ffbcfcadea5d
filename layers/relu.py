"""Rectified linear unit, elementwise on any shape.

Axis legend: the layer is elementwise, so x may have any shape (N, ...) and y matches it.
"""

from __future__ import annotations

from typing import NamedTuple

from refnet.layers import blocking
from refnet.layers.backend import Array, get_array_module
from refnet.layers.checks import float_dtype, require_grad
from refnet.layers.workspace import FRESH, Fresh

__all__ = ["forward", "backward", "ReluCache"]


class ReluCache(NamedTuple):
    y: Array  # the output; y > 0 exactly where x > 0


def forward(x: Array, *, ws: Fresh = FRESH, inplace: bool = False) -> tuple[Array, ReluCache]:
    """y = max(x, 0), elementwise (the paper's f(x) = max(0, x)); dtype and shape of x.
    ``ws``: where y comes from (``layers.workspace``). ``inplace=True`` writes y over x
    (the network does, for the layer below's output that nothing else keeps): one pass
    that reads and writes the same memory instead of a second array."""
    float_dtype("relu", x)
    xp = get_array_module(x)
    y = x if inplace else ws.empty(xp, x.shape, x.dtype)
    xp.maximum(x, x.dtype.type(0), out=y)
    return y, ReluCache(y)


def backward(dy: Array, cache: ReluCache, *, ws: Fresh = FRESH, inplace: bool = False) -> Array:
    """dx = dy where x > 0, else 0.

    The derivative at exactly x == 0 is taken as 0 (the subgradient PyTorch and Caffe use).
    ``inplace=True`` writes dx over dy. On the CPU, for contiguous arrays, the mask and
    the product run over blocks of ``layers.blocking``'s budget, so the mask never
    reaches memory; strided arrays (a view of a larger gradient) take one whole pass.
    """
    y = cache.y
    require_grad("relu", dy, y.shape, y.dtype)
    xp = get_array_module(dy)
    dx = dy if inplace else ws.empty(xp, y.shape, y.dtype)
    flat = all(a.flags.c_contiguous for a in (y, dy, dx))
    budget = blocking.block_bytes(xp) if flat else None
    y_, dy_, dx_ = (a.reshape(-1) for a in (y, dy, dx)) if flat else (y, dy, dx)
    zero = y.dtype.type(0)
    for run in blocking.runs(y_.shape[0], y.itemsize * 3, budget):
        mask = xp.greater(y_[run], zero, out=ws.empty(xp, y_[run].shape, bool))
        # a product with the mask: faster than where (docs/performance.md)
        xp.multiply(dy_[run], mask, out=dx_[run])
        del mask  # its buffer serves the next run
    return dx
