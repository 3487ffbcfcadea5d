"""2-D convolution (cross-correlation) with stride, zero padding and groups: im2col + GEMM.

Axis legend: N batch, C input channels, K kernels (output channels), G groups
(C = G * Cg, K = G * Kg), H/W input height/width, kh/kw kernel height/width,
OH/OW output height/width, P = N * OH * OW output positions.

The column layout of ``im2col`` / ``col2im`` is documented once, in ``layers.windows``;
both are re-exported here because they are this layer's core. ``algo="winograd"`` computes
the same stride-1 convolution with fewer multiplications (``layers.winograd``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from refnet.layers import winograd
from refnet.layers.backend import Array, DTypeLike, get_array_module
from refnet.layers.checks import float_dtype, output_size, require_grad, require_int, require_ndim
from refnet.layers.layout import batch_places, channel_major, check_layout, dims, shape
from refnet.layers.windows import col2im, im2col, im2col_parts
from refnet.layers.workspace import FRESH, Fresh

__all__ = [
    "forward",
    "backward",
    "im2col",
    "im2col_parts",
    "col2im",
    "ConvCache",
    "ALGOS",
    "WINOGRAD_TILES",
    "winograd_tile",
]

ALGOS = ("gemm", "winograd")
# The largest Winograd output tile m per (dtype, kernel size r): the fastest F(m, r) on
# alexnet's layers in the batch-innermost layout whose float32 error stays within what
# conv2 needs anyway; float64 takes the same tiles. Other sizes use m = 2. A layer takes
# the tile up to this one that fits its output best (``winograd_tile``). The timings and
# errors behind the choice: docs/performance.md.
WINOGRAD_TILES = {("float32", 3): 5, ("float32", 5): 4, ("float64", 3): 5, ("float64", 5): 4}


def winograd_tile(r: int, OH: int, OW: int, dtype: DTypeLike) -> int:
    """The default output tile m of Winograd's F(m x m, r x r) for an OH x OW output:
    among 2 .. ``WINOGRAD_TILES[(dtype, r)]`` (smaller tiles round off less), the one
    with the least transform-domain work n^2 * ceil(OH / m) * ceil(OW / m), n = m + r - 1
    (the products' multiplications per channel pair; a tile that does not divide the
    output also computes the rest of its last row and column), the larger on ties.
    alexnet's layers keep ``WINOGRAD_TILES``; the demo's 8x8 maps take F(4x4, 3x3)."""
    top = WINOGRAD_TILES.get((numpy.dtype(dtype).name, r), 2)
    return min(
        range(2, max(2, top) + 1), key=lambda m: ((m + r - 1) ** 2 * -(-OH // m) * -(-OW // m), -m)
    )


class ConvCache(NamedTuple):
    cols: Array | None  # (G, Cg*kh*kw, P) im2col of the input, for dw (None: recompute)
    x: Array | None  # (N, C, H, W) the input when cols is None, else None
    w: Array  # (K, Cg, kh, kw), for dx
    x_shape: tuple[int, ...]  # (N, C, H, W) in ``layout``
    y_shape: tuple[int, ...]  # (N, K, OH, OW) in ``layout``
    stride: int
    pad: int
    layout: str


class ConvArgs(NamedTuple):
    dtype: numpy.dtype
    layout: str
    stride: int
    pad: int
    groups: int
    x_dims: tuple[int, ...]  # (N, C, H, W)
    out_hw: tuple[int, int]  # (OH, OW)


def checked_args(
    x: Array, w: Array, b: Array, stride: int, pad: int, layout: str, groups: int = 1
) -> ConvArgs:
    """The checks of a convolution's arguments (``forward`` and ``layers.conv_blocks``),
    each failure a ``ValueError`` naming the value; the normalised arguments."""
    dtype = float_dtype("conv", x, w, b)
    layout = check_layout("conv", layout)
    require_ndim("conv", "x", x, 4, f"({', '.join(layout)})")
    require_ndim("conv", "w", w, 4, "(K, C // groups, kh, kw)")
    require_ndim("conv", "b", b, 1, "(K,)")
    stride = require_int("conv", "stride", stride, 1)
    pad = require_int("conv", "pad", pad, 0)
    groups = require_int("conv", "groups", groups, 1)
    N, C, H, W = dims(x.shape, layout)
    K, Cg, kh, kw = w.shape
    if C % groups:
        raise ValueError(f"conv: input channels C={C} not divisible by groups={groups}")
    if K % groups:
        raise ValueError(f"conv: kernels K={K} not divisible by groups={groups}")
    if C != Cg * groups:
        raise ValueError(
            f"conv: x has {C} channels but w expects {Cg} * groups {groups} = {Cg * groups}"
        )
    if b.shape[0] != K:
        raise ValueError(f"conv: b has {b.shape[0]} entries but w has K={K} kernels")
    OH = output_size("conv", "height", H, kh, stride, pad)
    OW = output_size("conv", "width", W, kw, stride, pad)
    return ConvArgs(dtype, layout, stride, pad, groups, (N, C, H, W), (OH, OW))


def forward(
    x: Array,
    w: Array,
    b: Array,
    *,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
    keep_cols: bool = True,
    algo: str = "gemm",
    tile: int | None = None,
    cols: Array | None = None,
    layout: str = "NCHW",
    ws: Fresh = FRESH,
) -> tuple[Array, ConvCache | winograd.WinogradCache]:
    """y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xpad[n, g*Cg + c, oh*s + i, ow*s + j]

    where g = k // Kg is the group of kernel k, s the stride and xpad the input with
    ``pad`` zeros on each side. Kernel k sees only the Cg = C/G channels of its group
    (the paper's two columns in one array: conv2, conv4 and conv5 use ``groups=2``).
    This is cross-correlation (no kernel flip), as in PyTorch ``conv2d`` and Caffe;
    output size rounds down, ``OH = (H + 2*pad - kh) // stride + 1``, as in both.

    Shapes: x (N, C, H, W); w (K, C // groups, kh, kw); b (K,) -> y (N, K, OH, OW).
    Computed as one batched GEMM over groups: (G, Kg, Cg*kh*kw) @ (G, Cg*kh*kw, P).
    ``layout="CHWN"`` takes x as (C, H, W, N) and gives y as (K, OH, OW, N), the batch
    innermost (``layers.layout``): the same arithmetic, faster copies, and the GEMM's
    output is y itself.

    ``keep_cols``: the cache keeps the unfolded input, the im2col matrix (fastest
    backward), or, with False, only ``x`` (kh*kw/stride^2 times smaller) and backward
    unfolds it again, as
    Caffe and PyTorch do: less memory for a slower backward (docs/performance.md). The
    results are identical.

    ``algo="winograd"`` (stride 1, square kernels only): Winograd's F(tile x tile, kh x kh)
    (``layers.winograd``), the same convolution with 2-4x fewer multiplications and a
    different rounding, whose error grows with the tile (measured in docs/performance.md).
    ``tile`` is its output tile, default ``winograd_tile(kh, OH, OW, dtype)``.
    ``keep_cols`` then chooses between keeping the transformed input tiles and ``x``.

    ``cols``: ``im2col(x, kh, kw, stride=stride, pad=pad, groups=groups, layout=layout)``
    when the caller already has it (the network's two columns run conv1 on the same image:
    on one device they share one im2col and one cached copy). Used as is, never written to.

    ``ws``: where y and the large temporaries come from (``layers.workspace``).
    """
    a = checked_args(x, w, b, stride, pad, layout, groups)
    dtype, layout, stride, pad, groups = a.dtype, a.layout, a.stride, a.pad, a.groups
    N, C, H, W = a.x_dims
    K, Cg, kh, kw = w.shape
    OH, OW = a.out_hw
    if algo not in ALGOS:
        raise ValueError(f"conv: algo must be one of {ALGOS}, got {algo!r}")
    if algo == "winograd":
        if cols is not None:
            raise ValueError("conv: cols (the unfolded input) applies only to algo='gemm'")
        tile = _winograd_tile(stride, kh, kw, tile, dtype, OH, OW)
        return winograd.forward(
            x,
            w,
            b,
            pad=pad,
            groups=groups,
            tile=tile,
            keep_transformed=keep_cols,
            layout=layout,
            ws=ws,
        )
    if tile is not None:
        raise ValueError(
            f"conv: tile applies only to algo='winograd', got tile={tile!r} with algo={algo!r}"
        )

    xp = get_array_module(x, w, b)
    G, Kg = groups, K // groups
    if cols is None:
        # (G, Cg*kh*kw, P)
        cols = im2col(x, kh, kw, stride=stride, pad=pad, groups=G, layout=layout, ws=ws)
    elif tuple(cols.shape) != (G, Cg * kh * kw, N * OH * OW) or cols.dtype != dtype:
        raise ValueError(
            f"conv: cols has shape {tuple(cols.shape)} and dtype {cols.dtype}, "
            f"im2col of x gives {(G, Cg * kh * kw, N * OH * OW)} {dtype}"
        )
    wg = w.reshape(G, Kg, Cg * kh * kw)  # (G, Kg, Cg*kh*kw)
    A, B = batch_places(N, layout)
    y = ws.empty(xp, shape(N, K, OH, OW, layout), dtype)
    if layout == "CHWN":  # the GEMM's (G, Kg, P) output is y's memory order
        xp.matmul(wg, cols, out=y.reshape(G, Kg, -1))  # (G, Kg, P)
        y += b.reshape(K, 1, 1, 1)
    else:  # bias + layout in one pass
        yg = xp.matmul(wg, cols, out=ws.empty(xp, (G, Kg, N * OH * OW), dtype))  # (G, Kg, P)
        xp.add(yg.reshape(K, A, OH, OW, B), b.reshape(K, 1, 1, 1, 1), out=channel_major(y, layout))
    cached: tuple[Array | None, Array | None] = (cols, None) if keep_cols else (None, x)
    return y, ConvCache(*cached, w, tuple(x.shape), tuple(y.shape), stride, pad, layout)


def _winograd_tile(
    stride: int, kh: int, kw: int, tile: int | None, dtype: DTypeLike, OH: int, OW: int
) -> int:
    """The Winograd output tile for these arguments, or ``ValueError`` saying what rules it out."""
    if stride != 1:
        raise ValueError(f"conv: algo='winograd' needs stride 1, got stride={stride}")
    if kh != kw:
        raise ValueError(f"conv: algo='winograd' needs a square kernel, got {kh}x{kw}")
    if tile is None:
        return winograd_tile(kh, OH, OW, dtype)
    tile = require_int("conv", "tile", tile, 1)
    if tile + kh - 2 > winograd.MAX_POINTS:
        raise ValueError(
            f"conv: tile={tile} with a {kh}x{kw} kernel needs "
            f"{tile + kh - 2} interpolation points, at most "
            f"{winograd.MAX_POINTS} are defined"
        )
    return tile


def backward(
    dy: Array,
    cache: ConvCache | winograd.WinogradCache,
    *,
    need_dx: bool = True,
    ws: Fresh = FRESH,
) -> tuple[Array | None, Array, Array]:
    """Gradients of ``forward`` for an upstream gradient ``dy`` (N, K, OH, OW).

        db[k]          = sum_{n, oh, ow} dy[n, k, oh, ow]
        dw[g]          = (cols[g] @ dy_g^T)^T      (Cg*kh*kw, P) @ (P, Kg), transposed
        dcols[g]       = w_g^T @ dy_g             (Cg*kh*kw, Kg) @ (Kg, P)
        dx             = col2im(dcols)            (the adjoint of im2col)

    where dy_g (Kg, P) is dy for the kernels of group g with the batch folded into P.
    Returns ``(dx, dw, db)`` with the shapes and dtype of ``(x, w, b)``. With
    ``need_dx=False`` (a first layer, whose input is the image) ``dx`` is ``None`` and its
    GEMM and col2im are skipped. A cache from ``algo="winograd"`` takes that algorithm's
    backward (``layers.winograd.backward``), the exact adjoint of its forward. ``ws``:
    where the gradients and the large temporaries come from (``layers.workspace``).
    """
    if isinstance(cache, winograd.WinogradCache):
        require_grad("conv", dy, cache.y_shape, cache.u.dtype)
        return winograd.backward(dy, cache, need_dx=need_dx, ws=ws)
    w = cache.w
    require_grad("conv", dy, cache.y_shape, w.dtype)
    xp = get_array_module(dy)
    K, Cg, kh, kw = w.shape
    layout = cache.layout
    G = dims(cache.x_shape, layout)[1] // Cg
    cols = cache.cols
    if cols is None:  # keep_cols=False
        cols = im2col(
            cache.x, kh, kw, stride=cache.stride, pad=cache.pad, groups=G, layout=layout, ws=ws
        )
    dy5 = channel_major(dy, layout)  # (K, A, OH, OW, B)
    if layout == "NCHW":  # made contiguous, so P is one axis (CHWN: as is)
        dy5 = ws.copy(xp, dy5)
    dyg = dy5.reshape(G, K // G, -1)  # (G, Kg, P), a view
    db = dyg.sum(axis=2).reshape(K)  # (K,)
    # dw^T = cols @ dy_g^T rather than dy_g @ cols^T: NumPy's batched matmul is faster
    # when the long P axis is not in a transposed operand (docs/performance.md).
    dwt = xp.matmul(cols, dyg.transpose(0, 2, 1))  # (G, Cg*kh*kw, Kg)
    dw = dwt.transpose(0, 2, 1)  # (G, Kg, Cg*kh*kw) view
    dw = dw.reshape(w.shape)  # (K, Cg, kh, kw), a copy
    if not need_dx:
        return None, dw, db
    wg = w.reshape(G, K // G, Cg * kh * kw)  # (G, Kg, Cg*kh*kw)
    dcols = xp.matmul(
        wg.transpose(0, 2, 1), dyg, out=ws.empty(xp, cols.shape, dy.dtype)
    )  # (G, Cg*kh*kw, P)
    dx = col2im(
        dcols, cache.x_shape, kh, kw, stride=cache.stride, pad=cache.pad, layout=layout, ws=ws
    )
    return dx, dw, db
