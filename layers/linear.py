"""Fully connected (affine) layer.

Axis legend: N batch, F input features (``in``), O output units (``out``).
x may be (N, F) or (N, ...) with the trailing axes flattened to F in C order (pool5's
(N, 256, 6, 6) -> (N, 9216), the same order as PyTorch's ``flatten(1)``).
"""

from __future__ import annotations

from typing import NamedTuple

from refnet.layers.backend import Array, get_array_module
from refnet.layers.checks import float_dtype, require_grad, require_ndim
from refnet.layers.workspace import FRESH, Fresh

__all__ = ["forward", "backward", "LinearCache"]


class LinearCache(NamedTuple):
    x2: Array  # (N, F) input, flattened
    w: Array  # (O, F)
    x_shape: tuple[int, ...]  # the input's shape, for dx


def forward(x: Array, w: Array, b: Array, *, ws: Fresh = FRESH) -> tuple[Array, LinearCache]:
    """y = x @ w.T + b;  x (N, F), w (O, F) (PyTorch's ``nn.Linear`` layout), b (O,) -> y (N, O).
    ``ws``: where y comes from (``layers.workspace``)."""
    float_dtype("linear", x, w, b)
    if x.ndim < 2:
        raise ValueError(f"linear: x must be (N, F) or (N, ...), got shape {tuple(x.shape)}")
    require_ndim("linear", "w", w, 2, "(out, in)")
    require_ndim("linear", "b", b, 1, "(out,)")
    N = x.shape[0]
    x2 = x.reshape(N, -1)  # (N, F)
    O, F = w.shape
    if x2.shape[1] != F:
        raise ValueError(
            f"linear: x has {x2.shape[1]} features (shape {tuple(x.shape)}) but w expects {F}"
        )
    if b.shape[0] != O:
        raise ValueError(f"linear: b has {b.shape[0]} entries but w has {O} outputs")
    xp = get_array_module(x, w, b)
    y = xp.matmul(x2, w.T, out=ws.empty(xp, (N, O), w.dtype))  # (N, O)
    y += b
    return y, LinearCache(x2, w, tuple(x.shape))


def backward(dy: Array, cache: LinearCache, *, ws: Fresh = FRESH) -> tuple[Array, Array, Array]:
    """dx = dy @ w (reshaped to x's shape);  dw = dy.T @ x;  db = sum_n dy[n]."""
    x2, w = cache.x2, cache.w
    require_grad("linear", dy, (x2.shape[0], w.shape[0]), w.dtype)
    xp = get_array_module(dy, w)
    N, F = x2.shape
    if x2.flags.f_contiguous and not x2.flags.c_contiguous:
        # x was the transpose of a contiguous (F, N) array (the batch-innermost maps,
        # flattened): dx in the same order, dx^T = w^T dy^T, so the layers below get
        # contiguous gradients instead of a transposing copy
        dx = xp.matmul(w.T, dy.T, out=ws.empty(xp, (F, N), w.dtype)).T  # (N, F)
    else:
        dx = xp.matmul(dy, w, out=ws.empty(xp, (N, F), w.dtype))  # (N, F)
    dx = dx.reshape(cache.x_shape)  # x's shape
    dw = xp.matmul(dy.T, x2, out=ws.empty(xp, w.shape, w.dtype))  # (O, F)
    db = dy.sum(axis=0)  # (O,)
    return dx, dw, db
