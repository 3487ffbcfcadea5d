"""Rectified linear unit, elementwise on any shape.

Axis legend: the layer is elementwise, so x may have any shape (N, ...) and y matches it.
"""
from typing import NamedTuple

from layers import blocking
from layers.backend import get_array_module
from layers.checks import float_dtype, require_grad
from layers.workspace import FRESH

__all__ = ["forward", "backward", "ReluCache"]


class ReluCache(NamedTuple):
    y: object           # the output; y > 0 exactly where x > 0


def forward(x, *, ws=FRESH, inplace=False):
    """y = max(x, 0), elementwise (the paper's f(x) = max(0, x)); dtype and shape of x.
    ``ws``: where y comes from (``layers.workspace``). ``inplace=True`` writes y over x
    (the network does, for the layer below's output that nothing else keeps): one pass
    that reads and writes the same memory instead of a second array."""
    float_dtype("relu", x)
    xp = get_array_module(x)
    y = x if inplace else ws.empty(xp, x.shape, x.dtype)
    xp.maximum(x, x.dtype.type(0), out=y)
    return y, ReluCache(y)


def backward(dy, cache, *, ws=FRESH, inplace=False):
    """dx = dy where x > 0, else 0.

    The derivative at exactly x == 0 is taken as 0 (the subgradient PyTorch and Caffe use).
    ``inplace=True`` writes dx over dy. On the CPU the mask and the product run over
    blocks of about a core's L2 (``layers.blocking``), so the mask never reaches memory.
    """
    y = cache.y
    require_grad("relu", dy, y.shape, y.dtype)
    xp = get_array_module(dy)
    dx = dy if inplace else ws.empty(xp, y.shape, y.dtype)
    if not (y.flags.c_contiguous and dy.flags.c_contiguous and dx.flags.c_contiguous):
        y, dy, dx_ = (xp.ascontiguousarray(a) for a in (y, dy, dx))
        _masked(xp, y.reshape(-1), dy.reshape(-1), dx_.reshape(-1), None, ws)
        if dx_ is not dx:
            dx[...] = dx_
        return dx
    _masked(xp, y.reshape(-1), dy.reshape(-1), dx.reshape(-1),
            blocking.block_bytes(xp), ws)
    return dx


def _masked(xp, y, dy, dx, budget, ws):
    """dx = dy * (y > 0) over flat arrays, in runs of ``budget`` bytes of y (None: one)."""
    zero = y.dtype.type(0)
    for run in blocking.runs(y.size, y.itemsize * 3, budget):
        mask = xp.greater(y[run], zero, out=ws.empty(xp, (run.stop - run.start,), bool))
        # a product with the mask: faster than where (docs/performance.md)
        xp.multiply(dy[run], mask, out=dx[run])
        del mask                               # its buffer serves the next run
