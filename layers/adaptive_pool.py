"""Adaptive average pooling: any map side to a fixed output side, by averaging bins.

Axis legend: N batch, C channels, H/W input height/width, OH/OW output height/width.
Input (N, C, H, W) in NCHW or (C, H, W, N) in CHWN (``layers.layout``); output
(N, C, OH, OW) or (C, OH, OW, N), the same layout.

Output row i averages input rows ``start(i) = floor(i H / OH)`` to ``end(i) =
ceil((i + 1) H / OH)`` (end excluded), PyTorch's rule (``nn.AdaptiveAvgPool2d``); the same
for columns. Bins may overlap (H = 5, OH = 3: rows 0-1, 1-3, 3-4) and cover every input row
at least once; with H = OH every bin is one row and the layer is the identity (AlexNet in
torchvision's form: pool5 is already 6x6 at 224 pixels). An input side smaller than the
output repeats rows (H = 2, OH = 3: rows 0, 0-1, 1).

The average over a bin of h x w positions factorises into rows and columns: with the
(OH, H) matrix R[i, h] = 1 / (end(i) - start(i)) on the bin's rows (0 elsewhere) and the
(OW, W) matrix S likewise, y = R x S^T per map, and the backward pass is its transpose,
dx = R^T dy S.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from refnet.layers.backend import Array, DTypeLike, Module, get_array_module
from refnet.layers.checks import float_dtype, require_grad, require_int, require_ndim
from refnet.layers.layout import check_layout, dims, shape

__all__ = ["forward", "backward", "bins", "AdaptivePoolCache"]


class AdaptivePoolCache(NamedTuple):
    x_shape: tuple  # the input's shape, in ``layout``
    rows: Array  # R (OH, H), the rows' averaging matrix, x's dtype and module
    cols: Array  # S (OW, W)
    dtype: numpy.dtype
    layout: str


def bins(size: int, out: int) -> list[tuple[int, int]]:
    """[(start, end)] of the ``out`` bins over ``size`` positions (PyTorch's rule)."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _averaging(xp: Module, size: int, out: int, dtype: DTypeLike) -> Array:
    """The (out, size) matrix whose row i averages bin i's positions."""
    m = numpy.zeros((out, size))
    for i, (start, end) in enumerate(bins(size, out)):
        m[i, start:end] = 1.0 / (end - start)
    return xp.asarray(m.astype(dtype))


def forward(
    x: Array, out: int | tuple[int, int] = (6, 6), *, layout: str = "NCHW"
) -> tuple[Array, AdaptivePoolCache]:
    """y[n, c, i, j] = mean of x[n, c, start(i):end(i), start(j):end(j)] (module doc):
    ``y = R x S^T`` per map. ``out``: (OH, OW), or one int for both.

    PyTorch: ``F.adaptive_avg_pool2d(x, out)`` (it divides each bin's sum by its size;
    here the sum is weighted by 1 / size: the same up to round-off).
    """
    check_layout("adaptive_pool", layout)
    dtype = float_dtype("adaptive_pool", x)
    require_ndim("adaptive_pool", "x", x, 4, "(N, C, H, W)" if layout == "NCHW" else "(C, H, W, N)")
    oh, ow = (out, out) if not isinstance(out, (tuple, list)) else tuple(out)
    oh, ow = (require_int("adaptive_pool", "out", v, 1) for v in (oh, ow))
    xp = get_array_module(x)
    N, C, H, W = dims(x.shape, layout)
    rows, cols = _averaging(xp, H, oh, dtype), _averaging(xp, W, ow, dtype)
    cache = AdaptivePoolCache(tuple(x.shape), rows, cols, dtype, layout)
    if (H, W) == (oh, ow):
        return x.copy(), cache  # R = S = I: every bin one position
    spec = "ih,nchw,jw->ncij" if layout == "NCHW" else "ih,chwn,jw->cijn"
    y = xp.einsum(spec, rows, x, cols)  # (N, C, OH, OW) or (C, OH, OW, N)
    return xp.ascontiguousarray(y.astype(dtype, copy=False)), cache


def backward(dy: Array, cache: AdaptivePoolCache) -> Array:
    """dx = R^T dy S per map: each output's gradient shared equally among its bin's
    positions, and summed where bins overlap."""
    N, C, H, W = dims(cache.x_shape, cache.layout)
    oh, ow = cache.rows.shape[0], cache.cols.shape[0]
    require_grad("adaptive_pool", dy, shape(N, C, oh, ow, cache.layout), cache.dtype)
    xp = get_array_module(dy)
    if (H, W) == (oh, ow):
        return dy.copy()
    spec = "ih,ncij,jw->nchw" if cache.layout == "NCHW" else "ih,cijn,jw->chwn"
    dx = xp.einsum(spec, cache.rows, dy, cache.cols)  # x's shape
    return xp.ascontiguousarray(dx.astype(cache.dtype, copy=False))
