"""Rectified linear unit, elementwise on any shape.

Axis legend: the layer is elementwise, so x may have any shape (N, ...) and y matches it.
"""
from typing import NamedTuple

from layers.backend import get_array_module
from layers.checks import float_dtype, require_grad
from layers.workspace import FRESH

__all__ = ["forward", "backward", "ReluCache"]


class ReluCache(NamedTuple):
    y: object           # the output; y > 0 exactly where x > 0


def forward(x, *, ws=FRESH):
    """y = max(x, 0), elementwise (the paper's f(x) = max(0, x)); dtype and shape of x.
    ``ws``: where y comes from (``layers.workspace``)."""
    float_dtype("relu", x)
    xp = get_array_module(x)
    y = xp.maximum(x, x.dtype.type(0), out=ws.empty(xp, x.shape, x.dtype))
    return y, ReluCache(y)


def backward(dy, cache, *, ws=FRESH):
    """dx = dy where x > 0, else 0.

    The derivative at exactly x == 0 is taken as 0 (the subgradient PyTorch and Caffe use).
    """
    y = cache.y
    require_grad("relu", dy, y.shape, y.dtype)
    xp = get_array_module(dy)
    mask = xp.greater(y, y.dtype.type(0), out=ws.empty(xp, y.shape, bool))
    # a product with the mask: faster than where (docs/performance.md)
    return xp.multiply(dy, mask, out=ws.empty(xp, y.shape, y.dtype))
