"""Max pooling over (H, W) windows, no padding.

Axis legend: N batch, C channels, H/W input height/width, OH/OW output height/width,
z window size (z x z), s stride, p = i*z + j a window position in row-major order,
(a, b) a phase, R = ceil(H / s) and Q = ceil(W / s) a phase plane's height and width.

How it is computed (the same comparisons and additions, in the same order, as a loop
over the z*z window positions of strided slices of x, so the results are bit-identical):
x is split once into its s*s phase planes, ``ph[a, b] = x[:, :, a::s, b::s]`` zero-padded
to (R, Q). Window position (i, j) of output (oh, ow) is then
``ph[i % s, j % s][oh + i // s, ow + j // s]``: flattened, a planes-wide array shifted by
``d = (i // s) * Q + j // s``. So each window position is ONE contiguous 1-D slice, and each
step of the max (or of the gradient scatter) is one long contiguous ufunc instead of a
strided 4-D one (about 4x faster in NumPy). The price is computing on the (R, Q) grid
instead of (OH, OW) (a few % more points; the extra ones see padding and are dropped).
On the CPU the planes go through in blocks of about ``block_bytes`` of input, so each
block's work stays in cache; on a GPU in two halves, so the copy stays under x's size.
"""
import math
from typing import NamedTuple

from layers.backend import block_bytes, get_array_module
from layers.checks import float_dtype, output_size, require_grad, require_int, require_ndim

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
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=index_dtype)
    for block in _plane_blocks(x.shape, x.itemsize, xp):
        y[block], argmax[block] = _max_block(x[block], size, stride, OH, OW, index_dtype)
    return y, PoolCache(argmax, (N, C, H, W), size, stride, dtype)


def backward(dy, cache):
    """dx[n, c, oh*s + i, ow*s + j] += dy[n, c, oh, ow] for the (i, j) that won the window.

    Ties: only the first maximum in row-major window order receives the gradient
    (PyTorch's rule; Caffe's CPU code also keeps the first). Overlapping windows (z > s)
    accumulate into the same input position, in row-major order of (i, j). So
    sum(dx) == sum(dy).
    """
    require_grad("pool", dy, cache.argmax.shape, cache.dtype)
    xp = get_array_module(dy)
    dx = xp.empty(cache.x_shape, dtype=dy.dtype)
    for block in _plane_blocks(cache.x_shape, dy.itemsize, xp):
        _scatter_block(dy[block], cache.argmax[block], cache.size, cache.stride, dx[block])
    return dx


def _plane_blocks(x_shape, itemsize, xp):
    """(n, c) index pairs covering (N, C) in blocks of about ``block_bytes`` of input planes.

    Whole samples when one fits, else balanced runs of channels of one sample. On a GPU
    (no block limit) the batch is halved, so the phase copy stays smaller than x.
    """
    N, C, H, W = x_shape
    plane = H * W * itemsize
    sample = max(1, C * plane)
    budget = block_bytes(xp) or max(1, -(-N * sample // 2))
    if sample <= budget:
        step = budget // sample
        return [(slice(n, n + step), slice(None)) for n in range(0, N, step)]
    step = -(-C // -(-sample // budget))                 # C split into equal runs
    return [(slice(n, n + 1), slice(c, c + step)) for n in range(N) for c in range(0, C, step)]


def _phases(x, s):
    """ph[a, b, n, c, r, q] = x[n, c, r*s + a, q*s + b], 0 past the edge: (s, s, N, C, R, Q)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    ph = xp.zeros((s, s, N, C, -(-H // s), -(-W // s)), dtype=x.dtype)
    for a in range(s):
        for b in range(s):
            part = x[:, :, a::s, b::s]                     # (N, C, ceil((H-a)/s), ceil((W-b)/s))
            ph[a, b, :, :, :part.shape[2], :part.shape[3]] = part
    return ph


def _unphase(ph, x):
    """The reverse of ``_phases``: x[n, c, r*s + a, q*s + b] = ph[a, b, n, c, r, q] (into x)."""
    s = ph.shape[0]
    for a in range(s):
        for b in range(s):
            part = x[:, :, a::s, b::s]                     # (N, C, ceil((H-a)/s), ceil((W-b)/s))
            part[...] = ph[a, b, :, :, :part.shape[2], :part.shape[3]]


def _on_grid(a, grid):
    """a (N, C, OH, OW) in the corner of a zero (N, C, R, Q) grid, flattened: (N*C*R*Q,)."""
    xp = get_array_module(a)
    g = xp.zeros(grid, dtype=a.dtype)
    g[:, :, :a.shape[2], :a.shape[3]] = a
    return g.reshape(-1)                                  # (N*C*R*Q,)


def _taps(z, s, Q):
    """(p, a, b, d) per window position p = i*z + j: its phase and flat shift d."""
    return [(i * z + j, i % s, j % s, (i // s) * Q + j // s)
            for i in range(z) for j in range(z)]


def _max_block(x, z, s, OH, OW, index_dtype):
    """(y, argmax) of one block of planes x (N, C, H, W), computed on the phase grid."""
    xp = get_array_module(x)
    ph = _phases(x, s)                                    # (s, s, N, C, R, Q)
    grid = ph.shape[2:]                                   # (N, C, R, Q)
    flat = ph.reshape(s, s, -1)                           # (s, s, N*C*R*Q)
    taps = _taps(z, s, grid[3])
    L = flat.shape[2] - taps[-1][3]                       # every output is below L
    y = flat[0, 0].copy()                                 # (N*C*R*Q,), position 0
    argmax = xp.zeros(y.shape, dtype=index_dtype)
    y_, argmax_ = y[:L], argmax[:L]
    for p, a, b, d in taps[1:]:
        v = flat[a, b, d:d + L]                           # (L,) position p of every window
        better = v > y_                                   # strict: earlier maxima win ties
        xp.maximum(y_, v, out=y_)
        # positions only grow, so "argmax = p where better" is a maximum with p * better
        xp.maximum(argmax_, better * index_dtype(p), out=argmax_)
    y, argmax = y.reshape(grid), argmax.reshape(grid)     # (N, C, R, Q) each
    return y[:, :, :OH, :OW], argmax[:, :, :OH, :OW]


def _scatter_block(dy, argmax, z, s, dx):
    """dx (N, C, H, W) of one block of planes: the scatter on the phase grid, unphased."""
    xp = get_array_module(dy)
    N, C, H, W = dx.shape
    grid = (N, C, -(-H // s), -(-W // s))                 # (N, C, R, Q)
    dph = xp.zeros((s, s, math.prod(grid)), dtype=dy.dtype)  # (s, s, N*C*R*Q)
    taps = _taps(z, s, grid[3])
    L = dph.shape[2] - taps[-1][3]
    # Off the outputs dy is 0 and sends +0, which leaves every sum (all start at +0) as is.
    dy, argmax = _on_grid(dy, grid)[:L], _on_grid(argmax, grid)[:L]   # (L,) each
    for p, a, b, d in taps:
        v = dph[a, b, d:d + L]                            # (L,) position p of every window
        xp.add(v, dy * (argmax == p), out=v)
    _unphase(dph.reshape((s, s) + grid), dx)              # (s, s, N, C, R, Q) -> dx
