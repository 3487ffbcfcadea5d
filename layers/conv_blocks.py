"""Convolution by blocks of output positions: each block's im2col made, used and dropped.

Axis legend: N batch, C input channels, K kernels, H/W input height/width, kh/kw kernel
height/width, OH/OW output height/width, Pb the output positions of one block; A/B the
batch's places in the channel-major view (``layers.layout``).

The same convolution as ``layers.conv`` with ``algo="gemm"`` and one group, computed
differently: the output positions are cut into blocks whose unfolded input (the im2col
matrix, (C*kh*kw, Pb)) stays in a core's caches (``_blocks``; runs of output columns
within a row, or of whole rows), and for each block that matrix is copied out of the
input and multiplied at once:

    y[:, block] = w (K, C*kh*kw) @ cols(block) (C*kh*kw, Pb) + b
    dw         += (cols(block) @ dy[:, block]^T)^T            (summed over the blocks)

So the unfolded input never travels to memory and is never kept: the cache holds only
x, and backward unfolds each block again. For a first layer (the image, 3 channels, an
11x11 window) that is kh*kw/stride^2 times less memory than keeping the whole unfolded
input, and each block's GEMM reads its operand from cache (figures:
docs/performance.md). No dx: this form serves the
network's first layer, whose input is the image.

The network's two columns both read the image: their kernels are stacked into one w
(K = both columns' kernels, one GEMM per block) and the output rows are split into
``parts`` bands computed concurrently (``forward_parts``, ``backward_parts``); the
gradient ``dy`` comes as the columns' pieces along K (``dys``). The blocks depend only
on the shapes, so the sums, and the results, do not depend on the threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

from refnet.layers import blocking
from refnet.layers.backend import Array, DTypeLike, Module, get_array_module
from refnet.layers.conv import checked_args
from refnet.layers.layout import channel_major, dims, shape
from refnet.layers.windows import padded, window_view
from refnet.layers.workspace import FRESH, Fresh

__all__ = ["forward", "backward", "forward_parts", "backward_parts", "BlocksCache"]


class BlocksCache(NamedTuple):
    x: Array  # (N, C, H, W) the input, in ``layout``
    w: Array  # (K, C, kh, kw)
    y_shape: tuple[int, ...]  # (N, K, OH, OW) in ``layout``
    stride: int
    pad: int
    layout: str


def forward(
    x: Array,
    w: Array,
    b: Array,
    *,
    stride: int = 1,
    pad: int = 0,
    layout: str = "NCHW",
    ws: Fresh = FRESH,
) -> tuple[Array, BlocksCache]:
    """(y, cache): y = conv(x, w, stride, pad) + b, as ``layers.conv.forward`` (one
    group); shapes x (N, C, H, W), w (K, C, kh, kw), b (K,) -> y (N, K, OH, OW) in
    ``layout``. The blocks run one after the other."""
    y, cache, runs = forward_parts(x, w, b, stride=stride, pad=pad, layout=layout, parts=1, ws=ws)
    for run in runs:
        run()
    return y, cache


def backward(dy: Array, cache: BlocksCache) -> tuple[None, Array, Array]:
    """(None, dw, db) of ``forward``: no dx (module doc)."""
    partials = [run() for run in backward_parts([dy], cache, parts=1)]
    return (None, *gradients([dy], partials, cache))


def forward_parts(
    x: Array,
    w: Array,
    b: Array,
    *,
    stride: int = 1,
    pad: int = 0,
    layout: str = "NCHW",
    parts: int = 2,
    ws: Fresh = FRESH,
) -> tuple[Array, BlocksCache, list[Callable[[], None]]]:
    """(y, cache, runs): y allocated (from ``ws``) and the ``parts`` callables that each
    compute one band of its output rows (in any order, or concurrently: they write
    disjoint parts of y). Once all have run, y equals ``forward``'s."""
    a = checked_args(x, w, b, stride, pad, layout)  # groups 1
    dtype, layout, stride, pad = a.dtype, a.layout, a.stride, a.pad
    N, C, H, W = a.x_dims
    K, _, kh, kw = w.shape
    OH, OW = a.out_hw
    xp = get_array_module(x, w, b)
    y = ws.empty(xp, shape(N, K, OH, OW, layout), dtype)
    cache = BlocksCache(x, w, tuple(y.shape), stride, pad, layout)
    view = _windows(x, kh, kw, stride, pad, layout, OH, OW, ws)  # (C, kh, kw, A, OH, OW, B)
    wm = w.reshape(K, C * kh * kw)  # (K, C*kh*kw)
    b5 = b.reshape(K, 1, 1, 1, 1)
    y5 = channel_major(y, layout)  # (K, A, OH, OW, B)

    def run(rows: slice) -> None:
        blocks = _blocks(view, rows, xp)
        scratch = _Scratch(xp, view, blocks, (K,), dtype)
        for r, c in blocks:
            cols = scratch.unfolded(view, r, c)  # (C*kh*kw, Pb)
            prod = xp.matmul(wm, cols, out=scratch.take(0, (K, cols.shape[1])))  # (K, Pb)
            xp.add(prod.reshape(y5[:, :, r, c].shape), b5, out=y5[:, :, r, c])

    return y, cache, [partial(run, rows) for rows in _bands(OH, parts)]


def backward_parts(
    dys: Sequence[Array], cache: BlocksCache, *, parts: int = 2
) -> list[Callable[[], Array]]:
    """The ``parts`` callables of the backward pass, one per band of output rows as in
    forward; each returns its band's share of dw^T (C*kh*kw, K), whose sum over the
    bands ``gradients`` turns into dw. ``dys``: dy (N, K, OH, OW) in ``layout``, whole
    or as pieces along K (the columns' gradients, in order)."""
    x, w, layout = cache.x, cache.w, cache.layout
    K, C, kh, kw = w.shape
    if sum(dims(d.shape, layout)[1] for d in dys) != K or any(d.dtype != w.dtype for d in dys):
        raise ValueError(
            f"conv: dy pieces {[tuple(d.shape) for d in dys]} do not make "
            f"the output {cache.y_shape} of dtype {w.dtype}"
        )
    xp = get_array_module(*dys)
    _, _, OH, OW = dims(cache.y_shape, layout)
    view = _windows(x, kh, kw, cache.stride, cache.pad, layout, OH, OW, FRESH)
    d5s = [channel_major(d, layout) for d in dys]  # (K_i, A, OH, OW, B) each

    def run(rows: slice) -> Array:
        dwt = xp.zeros((C * kh * kw, K), dtype=w.dtype)  # dw^T of this band
        part = xp.empty_like(dwt)
        blocks = _blocks(view, rows, xp)
        scratch = _Scratch(xp, view, blocks, (K,), w.dtype)
        for r, c in blocks:
            cols = scratch.unfolded(view, r, c)  # (C*kh*kw, Pb)
            d = scratch.take(0, (K, cols.shape[1]))  # dy of the block
            k = 0
            for d5 in d5s:  # the pieces' kernels
                piece = d5[:, :, r, c]  # (K_i, A, rb, cb, B)
                d[k : k + piece.shape[0]].reshape(piece.shape)[...] = piece
                k += piece.shape[0]
            dwt += xp.matmul(cols, d.T, out=part)  # (C*kh*kw, K)
        return dwt

    return [partial(run, rows) for rows in _bands(OH, parts)]


def gradients(
    dys: Sequence[Array], partials: Sequence[Array], cache: BlocksCache
) -> tuple[Array, Array]:
    """(dw, db) from the bands' dw^T shares (``backward_parts``) and dy's pieces."""
    w, layout = cache.w, cache.layout
    dwt = partials[0]
    for p in partials[1:]:
        dwt = dwt + p
    dw = dwt.T.reshape(w.shape)  # (K, C, kh, kw), a copy
    xp = get_array_module(*dys)
    db = xp.concatenate([channel_major(d, layout).sum(axis=(1, 2, 3, 4)) for d in dys])
    return dw, db  # db: (K,)


def _windows(
    x: Array, kh: int, kw: int, stride: int, pad: int, layout: str, OH: int, OW: int, ws: Fresh
) -> Array:
    """The (C, kh, kw, A, OH, OW, B) window view of x padded by ``pad``."""
    x5 = channel_major(padded(x, pad, layout, ws), layout)  # (C, A, Hp, Wp, B)
    return window_view(x5, kh, kw, stride, OH, OW)


def _bands(OH: int, parts: int) -> list[slice]:
    """``parts`` slices of the output rows, as even as can be."""
    return [slice(OH * i // parts, OH * (i + 1) // parts) for i in range(parts)]


def _blocks(view: Array, rows: slice, xp: Module) -> list[tuple[slice, slice]]:
    """(row slice, column slice) blocks of the band ``rows``: whole rows while their
    columns fit in ``blocking.GEMM_BLOCK_BYTES`` (the fastest block measured,
    docs/performance.md: the GEMM's packing reads them from L2 and L3), else even runs
    of output columns."""
    C, kh, kw, A, OH, OW, B = view.shape
    budget = blocking.GEMM_BLOCK_BYTES if blocking.block_bytes(xp) else None
    per_column = C * kh * kw * A * B * view.itemsize  # one output column
    out = []
    for r, c in blocking.nested_runs(rows.stop - rows.start, OW, per_column, budget, balanced=True):
        out.append((slice(rows.start + r.start, rows.start + r.stop), c))
    return out


class _Scratch:
    """A band's working arrays, made once for its largest block and reused by every
    block (each block's columns, and arrays of (rows, Pb) for ``rows`` in ``widths``):
    no allocation per block."""

    def __init__(
        self,
        xp: Module,
        view: Array,
        blocks: list[tuple[slice, slice]],
        widths: tuple[int, ...],
        dtype: DTypeLike,
    ) -> None:
        C, kh, kw, A, _, _, B = view.shape
        most = max((r.stop - r.start) * (c.stop - c.start) for r, c in blocks) * A * B
        self.rows = C * kh * kw
        self.cols = xp.empty(self.rows * most, dtype=dtype)
        self.others = [xp.empty(w * most, dtype=dtype) for w in widths]

    def unfolded(self, view: Array, r: slice, c: slice) -> Array:
        """The unfolded input (im2col matrix) of one block: (C*kh*kw, Pb), copied into
        the scratch."""
        block = view[:, :, :, :, r, c]  # (C, kh, kw, A, rb, cb, B)
        cols = self.cols[: block.size].reshape(block.shape)
        cols[...] = block
        return cols.reshape(self.rows, -1)

    def take(self, i: int, shape: tuple[int, ...]) -> Array:
        """Scratch array ``i`` as ``shape``."""
        return self.others[i][: shape[0] * shape[1]].reshape(shape)
