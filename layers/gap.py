"""Global average pooling: each channel's map averaged over all its positions.

Axis legend: N batch, C channels, H/W height/width. Input (N, C, H, W) in NCHW or
(C, H, W, N) in CHWN (``layers.layout``); output (N, C) in both layouts (a classifier's
logits when C is the number of classes, as in Network-in-Network and GoogLeNet).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from refnet.layers.backend import Array, get_array_module
from refnet.layers.checks import float_dtype, require_grad, require_ndim
from refnet.layers.layout import check_layout, dims

__all__ = ["forward", "backward", "GapCache"]


class GapCache(NamedTuple):
    x_shape: tuple[int, ...]  # the input's shape, in ``layout``
    dtype: numpy.dtype
    layout: str


def forward(x: Array, layout: str = "NCHW") -> tuple[Array, GapCache]:
    """y[n, c] = (1 / (H W)) sum_{h, w} x[n, c, h, w]; (N, C), dtype of x.

    PyTorch: ``F.adaptive_avg_pool2d(x, 1).flatten(1)``, or ``x.mean((2, 3))``.
    """
    check_layout("gap", layout)
    float_dtype("gap", x)
    require_ndim("gap", "x", x, 4, "(N, C, H, W)" if layout == "NCHW" else "(C, H, W, N)")
    xp = get_array_module(x)
    if layout == "NCHW":
        y = xp.mean(x, axis=(2, 3))  # (N, C)
    else:
        y = xp.ascontiguousarray(xp.mean(x, axis=(1, 2)).T)  # (C, N) -> (N, C)
    return y.astype(x.dtype, copy=False), GapCache(tuple(x.shape), x.dtype, layout)


def backward(dy: Array, cache: GapCache) -> Array:
    """dx[n, c, h, w] = dy[n, c] / (H W): every position of a map gets an equal share."""
    N, C, H, W = dims(cache.x_shape, cache.layout)
    require_grad("gap", dy, (N, C), cache.dtype)
    xp = get_array_module(dy)
    share = dy * dy.dtype.type(1.0 / (H * W))  # (N, C)
    if cache.layout == "NCHW":
        spread = share[:, :, None, None]  # (N, C, 1, 1)
    else:
        spread = share.T[:, None, None, :]  # (C, 1, 1, N)
    return xp.ascontiguousarray(xp.broadcast_to(spread, cache.x_shape))
