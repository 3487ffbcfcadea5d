"""Rectified linear unit, elementwise on any shape.

Axis legend: the layer is elementwise, so x may have any shape (N, ...) and y matches it.
"""
from typing import NamedTuple

from layers.backend import get_array_module
from layers.checks import float_dtype, require_grad

__all__ = ["forward", "backward", "ReluCache"]


class ReluCache(NamedTuple):
    y: object           # the output; y > 0 exactly where x > 0


def forward(x):
    """y = max(x, 0), elementwise (the paper's f(x) = max(0, x)); dtype and shape of x."""
    float_dtype("relu", x)
    xp = get_array_module(x)
    y = xp.maximum(x, x.dtype.type(0))
    return y, ReluCache(y)


def backward(dy, cache):
    """dx = dy where x > 0, else 0.

    The derivative at exactly x == 0 is taken as 0 (the subgradient PyTorch and Caffe use).
    """
    y = cache.y
    require_grad("relu", dy, y.shape, y.dtype)
    return dy * (y > 0)     # a product with the mask: faster than where (docs/performance.md)
