"""``layers.plain``'s forms under their older signatures (the tests' and ``verify``'s oracle).

Axis legend as in ``layers.plain``. Each function here hands its arguments to the plain
pair and returns what the older signature returned (the output alone, or the gradient
from the input instead of a cache); the maths is ``layers.plain``'s.
"""

from refnet.layers import plain
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


def conv_forward(x, w, b, *, stride=1, pad=0, groups=1):
    """y (N, K, OH, OW) of ``layers.plain.conv_forward``."""
    return plain.conv_forward(x, w, b, stride=stride, pad=pad, groups=groups)[0]


def conv_backward(dy, x, w, *, stride=1, pad=0, groups=1):
    """(dx, dw, db) of ``layers.plain.conv_backward`` for the input x and weights w."""
    return plain.conv_backward(dy, plain.ConvCache(x, w, stride, pad, groups))


def pool_forward(x, *, size=3, stride=2, rounding="floor"):
    """(y, argmax) of ``layers.plain.pool_forward``: argmax (N, C, OH, OW) the window
    position p = i*z + j of each window's first maximum."""
    return plain.max_windows(x, size, stride, rounding)


def pool_backward(dy, argmax, x_shape, *, size=3, stride=2):
    """dx of ``layers.plain.pool_backward`` from ``pool_forward``'s argmax."""
    return plain.pool_backward(dy, plain.PoolCache(argmax, tuple(x_shape), size, stride))


def adaptive_pool_forward(x, out):
    """y of ``layers.plain.adaptive_pool_forward``."""
    return plain.adaptive_pool_forward(x, out)[0]


def adaptive_pool_backward(dy, x_shape):
    """dx of ``layers.plain.adaptive_pool_backward``."""
    return plain.adaptive_pool_backward(dy, tuple(x_shape))


def lrn_forward(x, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """y of ``layers.plain.lrn_forward``."""
    return plain.lrn_forward(x, size=size, alpha=alpha, beta=beta, k=k)[0]


def lrn_backward(dy, x, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """dx of ``layers.plain.lrn_backward`` for the input x."""
    s = plain.lrn_denominator(x, size, alpha, k)
    return plain.lrn_backward(dy, plain.LrnCache(x, s, size, alpha, beta))
