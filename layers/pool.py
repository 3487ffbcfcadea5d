"""Max pooling over (H, W) windows, no padding.

Axis legend: N batch, C channels, H/W input height/width, OH/OW output height/width,
z window size (z x z), s stride, p = i*z + j a window position in row-major order.
"""
from typing import NamedTuple

from layers.backend import get_array_module
from layers.checks import float_dtype, output_size, require_grad, require_int, require_ndim
from layers.windows import strided_slice

__all__ = ["forward", "backward", "PoolCache"]


class PoolCache(NamedTuple):
    argmax: object      # (N, C, OH, OW) uint8/int32: window position p of the first maximum
    x_shape: tuple      # (N, C, H, W)
    size: int
    stride: int
    dtype: object


def forward(x, *, size=3, stride=2):
    """y[n, c, oh, ow] = max_{0 <= i, j < z} x[n, c, oh*s + i, ow*s + j]

    The paper's overlapping pooling is z=3, s=2 (z=2, s=2 is its non-overlapping ablation).
    Output size rounds down, ``OH = (H - z) // s + 1``, like PyTorch's default
    (``ceil_mode=False``); Caffe rounds up, so its pooled maps can be one larger.
    The window position of the first maximum in row-major order is kept for backward.
    """
    dtype = float_dtype("pool", x)
    require_ndim("pool", "x", x, 4, "(N, C, H, W)")
    size = require_int("pool", "size", size, 1)
    stride = require_int("pool", "stride", stride, 1)
    N, C, H, W = x.shape
    OH = output_size("pool", "height", H, size, stride, 0)
    OW = output_size("pool", "width", W, size, stride, 0)
    xp = get_array_module(x)
    index_dtype = xp.uint8 if size * size <= 256 else xp.int32
    rows0, cols0 = strided_slice(0, OH, stride), strided_slice(0, OW, stride)
    y = x[:, :, rows0, cols0].copy()                        # (N, C, OH, OW), position 0
    argmax = xp.zeros((N, C, OH, OW), dtype=index_dtype)
    for i in range(size):
        rows = strided_slice(i, OH, stride)
        for j in range(size):
            if i == 0 and j == 0:
                continue
            v = x[:, :, rows, strided_slice(j, OW, stride)]   # (N, C, OH, OW) view
            better = v > y                                  # strict: earlier maxima win ties
            xp.maximum(y, v, out=y)
            # positions only grow, so "argmax = p where better" is a maximum with p * better
            xp.maximum(argmax, better * index_dtype(i * size + j), out=argmax)
    return y, PoolCache(argmax, (N, C, H, W), size, stride, dtype)


def backward(dy, cache):
    """dx[n, c, oh*s + i, ow*s + j] += dy[n, c, oh, ow] for the (i, j) that won the window.

    Ties: only the first maximum in row-major window order receives the gradient
    (PyTorch's rule; Caffe's CPU code also keeps the first). Overlapping windows (z > s)
    accumulate into the same input position. So sum(dx) == sum(dy).
    """
    require_grad("pool", dy, cache.argmax.shape, cache.dtype)
    xp = get_array_module(dy)
    z, s = cache.size, cache.stride
    _, _, OH, OW = dy.shape
    dx = xp.zeros(cache.x_shape, dtype=dy.dtype)
    for i in range(z):
        rows = strided_slice(i, OH, s)
        for j in range(z):
            won = cache.argmax == (i * z + j)               # (N, C, OH, OW) bool
            dx[:, :, rows, strided_slice(j, OW, s)] += dy * won
    return dx
