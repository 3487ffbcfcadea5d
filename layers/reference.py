"""``layers.plain``'s forms under their older signatures (the tests' and ``verify``'s oracle).

Axis legend as in ``layers.plain``. Each function here hands its arguments to the plain
pair and returns what the older signature returned (the output alone, or the gradient
from the input instead of a cache); the maths is ``layers.plain``'s.
"""

from __future__ import annotations

from refnet.layers import plain
from refnet.layers.backend import Array
from refnet.layers.plain import sgd_update

__all__ = [
    "conv_forward",
    "conv_backward",
    "pool_forward",
    "pool_backward",
    "adaptive_pool_forward",
    "adaptive_pool_backward",
    "lrn_forward",
    "lrn_backward",
    "sgd_update",
]


def conv_forward(
    x: Array, w: Array, b: Array, *, stride: int = 1, pad: int = 0, groups: int = 1
) -> Array:
    """y (N, K, OH, OW) of ``layers.plain.conv_forward``."""
    return plain.conv_forward(x, w, b, stride=stride, pad=pad, groups=groups)[0]


def conv_backward(
    dy: Array, x: Array, w: Array, *, stride: int = 1, pad: int = 0, groups: int = 1
) -> tuple[Array | None, Array, Array]:
    """(dx, dw, db) of ``layers.plain.conv_backward`` for the input x and weights w."""
    return plain.conv_backward(dy, plain.ConvCache(x, w, stride, pad, groups))


def pool_forward(
    x: Array, *, size: int = 3, stride: int = 2, rounding: str = "floor"
) -> tuple[Array, Array]:
    """(y, argmax) of ``layers.plain.pool_forward``: argmax (N, C, OH, OW) the window
    position p = i*z + j of each window's first maximum."""
    return plain.max_windows(x, size, stride, rounding)


def pool_backward(
    dy: Array, argmax: Array, x_shape: tuple[int, ...], *, size: int = 3, stride: int = 2
) -> Array:
    """dx of ``layers.plain.pool_backward`` from ``pool_forward``'s argmax."""
    return plain.pool_backward(dy, plain.PoolCache(argmax, tuple(x_shape), size, stride))


def adaptive_pool_forward(x: Array, out: int | tuple[int, int]) -> Array:
    """y of ``layers.plain.adaptive_pool_forward``."""
    return plain.adaptive_pool_forward(x, out)[0]


def adaptive_pool_backward(dy: Array, x_shape: tuple[int, ...]) -> Array:
    """dx of ``layers.plain.adaptive_pool_backward``."""
    return plain.adaptive_pool_backward(dy, tuple(x_shape))


def lrn_forward(
    x: Array, *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> Array:
    """y of ``layers.plain.lrn_forward``."""
    return plain.lrn_forward(x, size=size, alpha=alpha, beta=beta, k=k)[0]


def lrn_backward(
    dy: Array,
    x: Array,
    *,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
) -> Array:
    """dx of ``layers.plain.lrn_backward`` for the input x."""
    s = plain.lrn_denominator(x, size, alpha, k)
    return plain.lrn_backward(dy, plain.LrnCache(x, s, size, alpha, beta))
