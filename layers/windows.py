"""Sliding windows over (H, W): im2col, its exact adjoint col2im, and strided slices.

Axis legend: N batch, C input channels, G groups (C = G * Cg), H/W input height/width,
kh/kw kernel height/width, OH/OW output height/width, P = N * OH * OW output positions;
A and B the batch's two places in the channel-major view (``layers.layout``).

The column layout (used by ``layers.conv`` and documented only here)::

    cols[g, (c, i, j), p] = xpad[n, g*Cg + c, oh*stride + i, ow*stride + j]
    cols.shape == (G, Cg * kh * kw, N * OH * OW)
    p runs over (n, oh, ow) in C order for layout "NCHW", over (oh, ow, n) for "CHWN"

The row index runs over (c, i, j) in C order, matching ``w[k, c, i, j]`` reshaped to
(G, K/G, Cg*kh*kw); the column index folds the whole batch into one GEMM dimension, so a
grouped convolution is ONE batched matmul over G with large GEMMs inside. The order of p
follows the input's memory order, so the one copy reads runs of the layout's innermost
axis (W for NCHW, a stride apart when the stride is > 1; N for CHWN, always contiguous),
and the GEMM's (K, P) output is already a CHWN array.

im2col builds a strided view of the padded input and copies it once. col2im adds the
kh*kw strided slices back (a loop over kernel positions, never over samples), so
``<im2col(x), c> == <x, col2im(c)>`` exactly in exact arithmetic. On the CPU col2im runs
over blocks of channels whose padded maps fit in a core's L2 cache (``layers.blocking``), so
the kh*kw additions hit the cache instead of memory; the order of additions into each
element, and so the result, is the same for any block size.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from refnet.layers import blocking
from refnet.layers.backend import Array, get_array_module
from refnet.layers.layout import batch_places, channel_major, dims, shape
from refnet.layers.workspace import FRESH, Fresh


def strided_slice(offset: int, count: int, stride: int) -> slice:
    """The slice ``offset, offset + stride, ..., offset + stride * (count - 1)``."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def padded(x: Array, pad: int, layout: str = "NCHW", ws: Fresh = FRESH) -> Array:
    """``x`` (in ``layout``) with ``pad`` zeros on each side of H and W (``x`` itself if
    0); a new array from ``ws`` (``layers.workspace``) otherwise."""
    if pad == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = dims(x.shape, layout)
    out = ws.zeros(xp, shape(N, C, H + 2 * pad, W + 2 * pad, layout), x.dtype)
    channel_major(out, layout)[:, :, pad : pad + H, pad : pad + W] = channel_major(x, layout)
    return out


def window_view(x5: Array, kh: int, kw: int, stride: int, OH: int, OW: int) -> Array:
    """The (C, kh, kw, A, OH, OW, B) strided view ``x5[c, a, oh*stride + i, ow*stride + j, b]``.

    ``x5`` (C, A, Hp, Wp, B) is an already padded channel-major view; no copy is made.
    """
    xp = get_array_module(x5)
    C, A, _, _, B = x5.shape
    sC, sA, sH, sW, sB = x5.strides
    return xp.lib.stride_tricks.as_strided(
        x5, shape=(C, kh, kw, A, OH, OW, B), strides=(sC, sH, sW, sA, sH * stride, sW * stride, sB)
    )  # (C, kh, kw, A, OH, OW, B)


def im2col(
    x: Array,
    kh: int,
    kw: int,
    *,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
    layout: str = "NCHW",
    ws: Fresh = FRESH,
) -> Array:
    """Columns of ``x`` (in ``layout``) -> (G, C/G * kh * kw, N * OH * OW), laid out as
    the module doc says.

    ``OH = (H + 2*pad - kh) // stride + 1`` (rounds down, like PyTorch and Caffe).
    Callers validate arguments (``layers.conv.forward`` does); this is the raw kernel.
    ``ws``: where the unfolded matrix (and the padded input) come from
    (``layers.workspace``).
    """
    cols, fills = im2col_parts(
        x, kh, kw, stride=stride, pad=pad, groups=groups, layout=layout, parts=1, ws=ws
    )
    fills[0]()
    return cols


def im2col_parts(
    x: Array,
    kh: int,
    kw: int,
    *,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
    layout: str = "NCHW",
    parts: int = 2,
    ws: Fresh = FRESH,
) -> tuple[Array, list[Callable[[], None]]]:
    """``im2col`` split for concurrent work: ``(cols, fills)`` where ``cols`` is allocated
    but not yet written and each of the ``parts`` callables copies one band of output
    rows into it. Once every fill has run, in any order or concurrently (they write
    disjoint parts), ``cols`` equals ``im2col(x, ...)``.
    """
    xp = get_array_module(x)
    N, C, H, W = dims(x.shape, layout)
    OH = (H + 2 * pad - kh) // stride + 1
    OW = (W + 2 * pad - kw) // stride + 1
    x5 = channel_major(padded(x, pad, layout, ws), layout)  # (C, A, Hp, Wp, B)
    view = window_view(x5, kh, kw, stride, OH, OW)  # (C, kh, kw, A, OH, OW, B)
    cols = ws.empty(xp, view.shape, x.dtype)

    def fill(rows: slice) -> None:
        cols[:, :, :, :, rows] = view[:, :, :, :, rows]  # the one copy, a band of OH

    bands = [slice(OH * i // parts, OH * (i + 1) // parts) for i in range(parts)]
    fills: list[Callable[[], None]] = [partial(fill, rows) for rows in bands]
    return cols.reshape(groups, C // groups * kh * kw, N * OH * OW), fills  # (G, Cg*kh*kw, P)


def col2im(
    cols: Array,
    x_shape: tuple[int, ...],
    kh: int,
    kw: int,
    *,
    stride: int = 1,
    pad: int = 0,
    layout: str = "NCHW",
    ws: Fresh = FRESH,
) -> Array:
    """The adjoint of ``im2col``: (G, C/G * kh * kw, N * OH * OW) -> x_shape (in ``layout``).

    Every column entry is added back to the input position it was read from; positions
    read by several overlapping windows accumulate, and the padding is dropped. ``ws``:
    where the result and the accumulator come from (``layers.workspace``).
    """
    xp = get_array_module(cols)
    N, C, H, W = dims(x_shape, layout)
    A, B = batch_places(N, layout)
    OH = (H + 2 * pad - kh) // stride + 1
    OW = (W + 2 * pad - kw) // stride + 1
    c7 = cols.reshape(C, kh, kw, A, OH, OW, B)  # (C, kh, kw, A, OH, OW, B)
    acc = ws.zeros(xp, (C, A, H + 2 * pad, W + 2 * pad, B), cols.dtype)  # channel-major
    add_windows(c7, acc, stride)
    return cropped(acc, x_shape, pad, layout, ws)


def cropped(
    acc: Array, x_shape: tuple[int, ...], pad: int, layout: str, ws: Fresh = FRESH
) -> Array:
    """A new array of ``x_shape`` (in ``layout``, from ``ws``) holding ``acc[:, :, pad:pad
    + H, pad:pad + W]``: a padded channel-major accumulator (C, A, Hp, Wp, B) without its
    padding (``pad`` rows and columns before the map, any number after it)."""
    xp = get_array_module(acc)
    _, _, H, W = dims(x_shape, layout)
    x = ws.empty(xp, tuple(x_shape), acc.dtype)
    channel_major(x, layout)[...] = acc[:, :, pad : pad + H, pad : pad + W]
    return x


def add_windows(c7: Array, acc: Array, stride: int) -> None:
    """``acc[c, a, oh*stride + i, ow*stride + j, b] += c7[c, i, j, a, oh, ow, b]``, in place.

    The adjoint of ``window_view`` for a contiguous channel-major accumulator ``acc``
    (C, A, Hp, Wp, B). Runs over blocks of channels whose maps take about four times
    ``blocking.block_bytes`` (the shared L3's share of a core rather than L2: each of the
    kh*kw additions touches only 1/stride^2 of a block, so L2-sized blocks made calls too
    small to pay for their overhead; docs/performance.md); each element receives its
    additions in the same (i, j) order for any block size.
    """
    xp = get_array_module(c7)
    C, kh, kw, A, OH, OW, B = c7.shape
    rows = [strided_slice(i, OH, stride) for i in range(kh)]
    cols_ = [strided_slice(j, OW, stride) for j in range(kw)]
    budget = blocking.block_bytes(xp)
    for block in blocking.runs(C, acc[0].nbytes, budget and 4 * budget):
        ab = acc[block]  # (Cb, A, Hp, Wp, B)
        cb = c7[block]  # (Cb, kh, kw, A, OH, OW, B)
        for i in range(kh):
            for j in range(kw):
                ab[:, :, rows[i], cols_[j]] += cb[:, i, j]  # (Cb, A, OH, OW, B)
