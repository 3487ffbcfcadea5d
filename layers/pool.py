"""Max pooling over (H, W) windows, no padding; the output size rounded down or up.

Axis legend: N batch, C channels, H/W input height/width, OH/OW output height/width,
z window size (z x z), s stride, p = i*z + j a window position in row-major order,
(a, b) a phase, R >= ceil(H / s) and Q >= ceil(W / s) a phase plane's height and width;
A/B the batch's places in the channel-major view (C, A, H, W, B) of ``layers.layout``.

How it is computed (the same comparisons and additions, in the same order, as a loop
over the z*z window positions of strided slices of x, so the results are bit-identical):
x is split once into its s*s phase planes, ``ph[a, b] = x[..., a::s, b::s, ...]``
padded to (R, Q). Window position (i, j) of output (oh, ow) is then
``ph[i % s, j % s][oh + i // s, ow + j // s]``: flattened, a planes-wide array shifted by
``d = ((i // s) * Q + j // s) * B``. So each window position is ONE contiguous 1-D slice,
and each step of the max (or of the gradient scatter) is one long contiguous ufunc
instead of a strided 4-D one (docs/performance.md has the timings). The price is
computing on the (R, Q) grid instead of (OH, OW) (a few % more points; the extra ones
see padding and are dropped). The padding is 0 while every window is whole (no output
reads it); with ``rounding="ceil"`` and a last window clipped at the edge it is -inf,
and the grid grows to OH + (z - 1) // s rows (OW + (z - 1) // s columns) so that the
clipped window's missing positions lie on it: they are -inf and never win (a window's
first position always lies inside). On the CPU the planes go through in blocks of
input of about a core's cache (``layers.blocking``), so each block's work stays in
cache; on a GPU in two halves, so the copy stays under x's size. Both layouts
(``layout="NCHW"`` or ``"CHWN"``) run this same code on the channel-major view; in CHWN
the phase copies move runs of N contiguous values.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy

from refnet.layers import blocking
from refnet.layers.backend import Array, Module, get_array_module
from refnet.layers.checks import float_dtype, output_size, require_grad, require_int, require_ndim
from refnet.layers.layout import channel_major, check_layout, dims, shape
from refnet.layers.workspace import FRESH, Fresh

__all__ = ["forward", "backward", "PoolCache", "ROUNDINGS"]

ROUNDINGS = ("floor", "ceil")  # output size: PyTorch's default, or Caffe's (ceil_mode=True)


class PoolCache(NamedTuple):
    argmax: Array  # (N, C, OH, OW) in ``layout``, uint8/int32: the window position p
    # of the first maximum
    x_shape: tuple[int, ...]  # (N, C, H, W) in ``layout``
    size: int
    stride: int
    dtype: numpy.dtype
    layout: str


def forward(
    x: Array,
    *,
    size: int = 3,
    stride: int = 2,
    rounding: str = "floor",
    layout: str = "NCHW",
    ws: Fresh = FRESH,
) -> tuple[Array, PoolCache]:
    """y[n, c, oh, ow] = max_{0 <= i, j < z} x[n, c, oh*s + i, ow*s + j]  (inside x only)

    The paper's overlapping pooling is z=3, s=2 (z=2, s=2 is its non-overlapping ablation).
    ``rounding="floor"`` (default): ``OH = (H - z) // s + 1``, every window whole, like
    PyTorch's default (``ceil_mode=False``). ``"ceil"``: ``OH = ceil((H - z) / s) + 1``,
    less a last window that would start at or past H (PyTorch's ``ceil_mode=True``,
    Caffe's default, cuda-convnet's), so the last window may be clipped at the edge. The
    two agree whenever s divides H - z (AlexNet's 55 -> 27 -> 13 -> 6); on 54 floor
    gives 26, ceil 27. The window position p = i*z + j of the first maximum in row-major
    order is kept for backward. ``layout="CHWN"`` takes x as (C, H, W, N) and gives y as
    (C, OH, OW, N). ``ws``: where y, the cached argmax and the blocks' phase planes come
    from (``layers.workspace``).
    """
    dtype = float_dtype("pool", x)
    layout = check_layout("pool", layout)
    require_ndim("pool", "x", x, 4, f"({', '.join(layout)})")
    size = require_int("pool", "size", size, 1)
    stride = require_int("pool", "stride", stride, 1)
    if rounding not in ROUNDINGS:
        raise ValueError(f"pool: rounding must be one of {ROUNDINGS}, got {rounding!r}")
    N, C, H, W = dims(x.shape, layout)
    OH = output_size("pool", "height", H, size, stride, 0, rounding)
    OW = output_size("pool", "width", W, size, stride, 0, rounding)
    xp = get_array_module(x)
    index_dtype = xp.uint8 if size * size <= 256 else xp.int32
    y = ws.empty(xp, shape(N, C, OH, OW, layout), x.dtype)
    argmax = ws.empty(xp, y.shape, index_dtype)
    x5, y5, a5 = (channel_major(a, layout) for a in (x, y, argmax))  # (C, A, ., ., B)
    for block in _plane_blocks(x5.shape, x.itemsize, xp):
        y5[block], a5[block] = _max_block(x5[block], size, stride, OH, OW, index_dtype, ws)
    return y, PoolCache(argmax, tuple(x.shape), size, stride, dtype, layout)


def backward(dy: Array, cache: PoolCache, *, ws: Fresh = FRESH) -> Array:
    """dx[n, c, oh*s + i, ow*s + j] += dy[n, c, oh, ow] for the (i, j) that won the window.

    Ties: only the first maximum in row-major window order receives the gradient
    (PyTorch's rule; Caffe's CPU code also keeps the first). Overlapping windows (z > s)
    accumulate into the same input position, in row-major order of (i, j). So
    sum(dx) == sum(dy).
    """
    require_grad("pool", dy, cache.argmax.shape, cache.dtype)
    xp = get_array_module(dy)
    dx = ws.empty(xp, cache.x_shape, dy.dtype)
    dy5, a5, dx5 = (channel_major(a, cache.layout) for a in (dy, cache.argmax, dx))
    for block in _plane_blocks(dx5.shape, dy.itemsize, xp):
        _scatter_block(dy5[block], a5[block], cache.size, cache.stride, dx5[block], ws)
    return dx


def _plane_blocks(
    x5_shape: tuple[int, ...], itemsize: int, xp: Module
) -> list[tuple[slice, slice]]:
    """(c, a) index pairs covering the channel-major (C, A, H, W, B) in blocks of about
    ``blocking.copy_block_bytes`` of input: all channels of one or more a (NCHW: whole
    samples) when they fit, else balanced runs of channels of one a (CHWN: runs of
    whole-batch channel planes). On a GPU, halves of x, so the phase copy stays smaller
    than x."""
    C, A, H, W, B = x5_shape
    plane = H * W * B * itemsize
    budget = blocking.copy_block_bytes(xp, A * max(1, C * plane))
    return [(c, a) for a, c in blocking.nested_runs(A, C, plane, budget, balanced=True)]


def _grid(x5_shape: tuple[int, ...], z: int, s: int, OH: int, OW: int) -> tuple[int, ...]:
    """(C, A, R, Q, B): the phase grid of a channel-major block (C, A, H, W, B) with
    (OH, OW) outputs: every input position and every tap of every output lies on it."""
    C, A, H, W, B = x5_shape
    reach = (z - 1) // s  # taps past an output's own cell
    return (C, A, max(-(-H // s), OH + reach), max(-(-W // s), OW + reach), B)


def _phases(x: Array, s: int, grid: tuple[int, ...], fill: float, ws: Fresh) -> Array:
    """ph[a, b, c, a', r, q, b'] = x[c, a', r*s + a, q*s + b, b'], ``fill`` past the edge:
    (s, s, C, A, R, Q, B) from a channel-major block x (C, A, H, W, B)."""
    xp = get_array_module(x)
    ph = ws.empty(xp, (s, s) + grid, x.dtype)
    ph.fill(fill)
    for a in range(s):
        for b in range(s):
            part = x[:, :, a::s, b::s]  # (C, A, ceil((H-a)/s), ceil((W-b)/s), B)
            ph[a, b, :, :, : part.shape[2], : part.shape[3]] = part
    return ph


def _unphase(ph: Array, x: Array) -> None:
    """The reverse of ``_phases``: x[c, a', r*s + a, q*s + b, b'] = ph[a, b, c, a', r, q, b']."""
    s = ph.shape[0]
    for a in range(s):
        for b in range(s):
            part = x[:, :, a::s, b::s]  # (C, A, ceil((H-a)/s), ceil((W-b)/s), B)
            part[...] = ph[a, b, :, :, : part.shape[2], : part.shape[3]]


def _on_grid(a: Array, grid: tuple[int, ...], ws: Fresh) -> Array:
    """a (C, A, OH, OW, B) in the corner of a zero (C, A, R, Q, B) grid, flattened."""
    xp = get_array_module(a)
    g = ws.zeros(xp, grid, a.dtype)
    g[:, :, : a.shape[2], : a.shape[3]] = a
    return g.reshape(-1)  # (C*A*R*Q*B,)


def _taps(z: int, s: int, Q: int, B: int):
    """(p, a, b, d) per window position p = i*z + j: its phase and flat shift d."""
    return [
        (i * z + j, i % s, j % s, ((i // s) * Q + j // s) * B) for i in range(z) for j in range(z)
    ]


def _max_block(
    x: Array, z: int, s: int, OH: int, OW: int, index_dtype: type[numpy.integer], ws: Fresh
) -> tuple[Array, Array]:
    """(y, argmax) of one channel-major block x (C, A, H, W, B), computed on the phase grid.
    Past the input the planes hold 0 when every window is whole (floor: no output reads
    it), else -inf (ceil: clipped windows read it, and -inf never wins)."""
    xp = get_array_module(x)
    H, W = x.shape[2:4]
    whole = (OH - 1) * s + z <= H and (OW - 1) * s + z <= W
    grid = _grid(x.shape, z, s, OH, OW)  # (C, A, R, Q, B)
    ph = _phases(x, s, grid, 0 if whole else -numpy.inf, ws)  # (s, s, C, A, R, Q, B)
    flat = ph.reshape(s, s, -1)  # (s, s, C*A*R*Q*B)
    taps = _taps(z, s, grid[3], grid[4])
    L = flat.shape[2] - taps[-1][3]  # every output is below L
    y = ws.copy(xp, flat[0, 0])  # (C*A*R*Q*B,), position 0
    argmax = ws.zeros(xp, y.shape, index_dtype)
    y_, argmax_ = y[:L], argmax[:L]
    better = ws.empty(xp, (L,), bool)
    chosen = ws.empty(xp, (L,), index_dtype)
    for p, a, b, d in taps[1:]:
        v = flat[a, b, d : d + L]  # (L,) position p of every window
        xp.greater(v, y_, out=better)  # strict: earlier maxima win ties
        xp.maximum(y_, v, out=y_)
        # positions only grow, so "argmax = p where better" is a maximum with p * better
        xp.maximum(argmax_, xp.multiply(better, index_dtype(p), out=chosen), out=argmax_)
    y, argmax = y.reshape(grid), argmax.reshape(grid)  # (C, A, R, Q, B) each
    return y[:, :, :OH, :OW], argmax[:, :, :OH, :OW]


def _scatter_block(dy: Array, argmax: Array, z: int, s: int, dx: Array, ws: Fresh) -> None:
    """dx (C, A, H, W, B) of one channel-major block: the scatter on the phase grid, unphased."""
    xp = get_array_module(dy)
    grid = _grid(dx.shape, z, s, dy.shape[2], dy.shape[3])  # (C, A, R, Q, B), as forward's
    dph = ws.zeros(xp, (s, s, math.prod(grid)), dy.dtype)  # (s, s, C*A*R*Q*B)
    taps = _taps(z, s, grid[3], grid[4])
    L = dph.shape[2] - taps[-1][3]
    # Off the outputs dy is 0 and sends +0, which leaves every sum (all start at +0) as is.
    dy, argmax = _on_grid(dy, grid, ws)[:L], _on_grid(argmax, grid, ws)[:L]  # (L,) each
    won = ws.empty(xp, (L,), bool)
    sent = ws.empty(xp, (L,), dy.dtype)
    for p, a, b, d in taps:
        v = dph[a, b, d : d + L]  # (L,) position p of every window
        xp.equal(argmax, argmax.dtype.type(p), out=won)
        xp.add(v, xp.multiply(dy, won, out=sent), out=v)
    _unphase(dph.reshape((s, s) + grid), dx)  # (s, s, C, A, R, Q, B) -> dx
