"""Local response normalization across channels, the paper's form (section 3.3).

Axis legend: N batch, C channels, H/W height/width; n the window size (``size``).
The window of channel c is the channels c - n//2 .. c + n//2, clipped at 0 and C-1.
"""
import numbers
from typing import NamedTuple

from layers.backend import get_array_module
from layers.checks import float_dtype, require_grad, require_int, require_ndim

__all__ = ["forward", "backward", "channel_window_sum", "LrnCache"]


class LrnCache(NamedTuple):
    x: object           # (N, C, H, W) input
    s: object           # (N, C, H, W) k + alpha * windowsum(x^2)
    scale: object       # (N, C, H, W) s^-beta, so y = x * scale
    size: int
    alpha: float
    beta: float


def channel_window_sum(a, size):
    """out[:, c] = sum of a[:, c'] over |c' - c| <= size // 2, clipped at the channel edges.

    ``size`` shifted slice additions, no padding and no cumulative sum (which would lose
    small terms to cancellation in float32). The window is symmetric, so this linear map
    is its own transpose: backward uses it unchanged.
    """
    out = a.copy()                                          # (N, C, H, W), offset 0
    C = a.shape[1]
    for d in range(1, min(size // 2, C - 1) + 1):
        out[:, d:] += a[:, :-d]                             # channel c gets c - d
        out[:, :-d] += a[:, d:]                             # channel c gets c + d
    return out


def forward(x, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """b[c] = a[c] / (k + alpha * sum_{c' = max(0, c-n/2)}^{min(C-1, c+n/2)} a[c']^2)^beta

    The paper's defaults: n=5, alpha=1e-4, beta=0.75, k=2. alpha multiplies the sum as
    is: the paper and Chainer use this form, while Caffe, PyTorch's LocalResponseNorm,
    cuda-convnet and ONNX divide alpha by n (a twin of this layer takes
    ``alpha_framework = n * alpha``, and k=2 explicitly: Caffe's and PyTorch's default k
    is 1). The window is clipped at the channel edges (the same as zero-padding a^2).
    ``size`` must be odd so the window is centred.
    """
    dtype = float_dtype("lrn", x)
    require_ndim("lrn", "x", x, 4, "(N, C, H, W)")
    size = require_int("lrn", "size", size, 1)
    if size % 2 == 0:
        raise ValueError(f"lrn: size must be odd (a centred window), got {size}")
    for name, value in (("alpha", alpha), ("k", k), ("beta", beta)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"lrn: {name} must be a real number, got {value!r}")
    if alpha < 0:
        raise ValueError(f"lrn: alpha must be >= 0, got {alpha}")
    if k <= 0:
        raise ValueError(f"lrn: k must be > 0 (so the denominator is positive), got {k}")
    xp = get_array_module(x)
    t = dtype.type
    s = channel_window_sum(x * x, size)                     # (N, C, H, W) window sums
    s *= t(alpha)
    s += t(k)                                               # s = k + alpha * sum a^2
    scale = xp.power(s, t(-beta))                           # s^-beta
    y = x * scale
    return y, LrnCache(x, s, scale, size, float(alpha), float(beta))


def backward(dy, cache):
    """dx[c] = dy[c] * s[c]^-beta - 2 alpha beta x[c] * sum_{c' in window(c)} dy[c'] y[c'] / s[c']

    with s = k + alpha * windowsum(x^2) and y the forward output. The second term is the
    window sum's transpose, which is the window sum itself (the window is symmetric).
    """
    x, s, scale = cache.x, cache.s, cache.scale
    require_grad("lrn", dy, x.shape, x.dtype)
    t = x.dtype.type
    dy_scale = dy * scale                                   # dy * s^-beta
    r = dy_scale * x
    r /= s                                                  # dy * y / s
    dx = channel_window_sum(r, cache.size)                  # (N, C, H, W)
    dx *= x
    dx *= t(-2.0 * cache.alpha * cache.beta)
    dx += dy_scale
    return dx
