"""Local response normalization across channels, the paper's form (section 3.3).

Axis legend: N batch, C channels, H/W height/width; n the window size (``size``);
A/B the batch's places in the channel-major view (C, A, H, W, B) of ``layers.layout``.
The window of channel c is the channels c - n//2 .. c + n//2, clipped at 0 and C-1.

Each pass is elementwise or a sum over neighbouring channels, so the layer runs over
blocks of positions (samples, or rows of the maps for the batch-innermost layout) of
about ``layers.blocking``'s budget: the ~10 passes of forward and backward then work in a
core's cache instead of streaming the whole array through memory each time. Every element sees the
same operations in the same order for any blocking, so the results do not depend on it.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

from refnet.layers import blocking
from refnet.layers.backend import Array, Module, get_array_module
from refnet.layers.checks import float_dtype, require_grad, require_int, require_ndim
from refnet.layers.layout import channel_major, check_layout
from refnet.layers.workspace import FRESH, Fresh

__all__ = ["forward", "backward", "channel_window_sum", "LrnCache"]


class LrnCache(NamedTuple):
    x: Array  # (N, C, H, W) input, in ``layout``
    s: Array  # k + alpha * windowsum(x^2), like x
    scale: Array  # s^-beta, so y = x * scale; like x
    size: int
    alpha: float
    beta: float
    layout: str


def channel_window_sum(a: Array, size: int, out: Array | None = None) -> Array:
    """out[c] = sum of a[c'] over |c' - c| <= size // 2 along axis 0 (channels first),
    clipped at the channel edges; into ``out`` (a's shape, not overlapping a) if given.

    ``size`` shifted slice additions, no padding and no cumulative sum (which would lose
    small terms to cancellation in float32). The window is symmetric, so this linear map
    is its own transpose: backward uses it unchanged.
    """
    if out is None:
        out = a.copy()  # (C, ...), offset 0
    else:
        out[...] = a
    C = a.shape[0]
    for d in range(1, min(size // 2, C - 1) + 1):
        out[d:] += a[:-d]  # channel c gets c - d
        out[:-d] += a[d:]  # channel c gets c + d
    return out


def _inverse_power(xp: Module, s: Array, beta: float, out: Array) -> Array:
    """out = s^-beta. For the paper's beta = 0.75 in float32, sqrt(sqrt(s)) / s: the same
    error as ``power`` here (within 1.2e-7 of the exact value, against 1.0e-7) in two
    thirds of its time (docs/performance.md); ``power`` otherwise."""
    if beta == 0.75 and s.dtype == xp.float32:
        xp.sqrt(s, out=out)
        xp.sqrt(out, out=out)
        return xp.divide(out, s, out=out)
    return xp.power(s, s.dtype.type(-beta), out=out)


def _blocks(
    x5_shape: tuple[int, ...], itemsize: int, xp: Module
) -> list[tuple[slice, slice, slice]]:
    """Index tuples covering the channel-major (C, A, H, W, B) in blocks of about
    ``blocking.block_bytes`` (all channels each): several a when one fits (NCHW:
    samples), else runs of rows of one a (CHWN: rows of the whole batch's maps, at least
    one); one block on a GPU."""
    C, A, H, W, B = x5_shape
    budget = blocking.block_bytes(xp)
    return [
        (slice(None), a, h) for a, h in blocking.nested_runs(A, H, C * W * B * itemsize, budget)
    ]


def forward(
    x: Array,
    *,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    layout: str = "NCHW",
    ws: Fresh = FRESH,
) -> tuple[Array, LrnCache]:
    """b[c] = a[c] / (k + alpha * sum_{c' = max(0, c-n/2)}^{min(C-1, c+n/2)} a[c']^2)^beta

    The paper's defaults: n=5, alpha=1e-4, beta=0.75, k=2. alpha multiplies the sum as
    is: the paper and Chainer use this form, while Caffe, PyTorch's LocalResponseNorm,
    cuda-convnet and ONNX divide alpha by n (a twin of this layer takes
    ``alpha_framework = n * alpha``, and k=2 explicitly: Caffe's and PyTorch's default k
    is 1). The window is clipped at the channel edges (the same as zero-padding a^2).
    ``size`` must be odd so the window is centred. x is (N, C, H, W), or (C, H, W, N)
    with ``layout="CHWN"``; y has x's shape. ``ws``: where y, the cached s and s^-beta
    and the blocks' temporaries come from (``layers.workspace``).
    """
    dtype = float_dtype("lrn", x)
    layout = check_layout("lrn", layout)
    require_ndim("lrn", "x", x, 4, f"({', '.join(layout)})")
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
    y, s, scale = (ws.empty(xp, x.shape, dtype) for _ in range(3))
    x5, y5, s5, scale5 = (channel_major(a, layout) for a in (x, y, s, scale))
    for blk in _blocks(x5.shape, x.itemsize, xp):
        xb, sb = x5[blk], s5[blk]  # (C, A', H', W, B)
        squares = xp.multiply(xb, xb, out=ws.empty(xp, xb.shape, dtype))
        channel_window_sum(squares, size, out=sb)  # window sums of a^2
        sb *= t(alpha)
        sb += t(k)  # s = k + alpha * sum a^2
        _inverse_power(xp, sb, beta, out=scale5[blk])  # s^-beta
        xp.multiply(xb, scale5[blk], out=y5[blk])
        del squares  # its buffer serves the next
    return y, LrnCache(x, s, scale, size, float(alpha), float(beta), layout)


def backward(dy: Array, cache: LrnCache, *, ws: Fresh = FRESH) -> Array:
    """dx[c] = dy[c] * s[c]^-beta - 2 alpha beta x[c] * sum_{c' in window(c)} dy[c'] y[c'] / s[c']

    with s = k + alpha * windowsum(x^2) and y the forward output. The second term is the
    window sum's transpose, which is the window sum itself (the window is symmetric).
    """
    x = cache.x
    require_grad("lrn", dy, x.shape, x.dtype)
    xp = get_array_module(dy)
    t = x.dtype.type
    dx = ws.empty(xp, x.shape, x.dtype)
    x5, s5, scale5, dy5, dx5 = (
        channel_major(a, cache.layout) for a in (x, cache.s, cache.scale, dy, dx)
    )
    for blk in _blocks(x5.shape, x.itemsize, xp):
        xb, dxb = x5[blk], dx5[blk]  # (C, A', H', W, B)
        dy_scale = xp.multiply(
            dy5[blk], scale5[blk], out=ws.empty(xp, xb.shape, x.dtype)
        )  # dy * s^-beta
        r = xp.multiply(dy_scale, xb, out=ws.empty(xp, xb.shape, x.dtype))
        r /= s5[blk]  # dy * y / s
        channel_window_sum(r, cache.size, out=dxb)
        dxb *= xb
        dxb *= t(-2.0 * cache.alpha * cache.beta)
        dxb += dy_scale
        del dy_scale, r  # their buffers serve the next
    return dx
