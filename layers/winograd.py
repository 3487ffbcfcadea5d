"""Stride-1 convolution by Winograd's minimal filtering, F(m x m, r x r): fewer multiplications.

Axis legend: N batch, C input channels, K kernels, G groups (C = G * Cg, K = G * Kg),
H/W input height/width, r kernel size (r x r), OH/OW output height/width, m output tile
size, n = m + r - 1 input tile size, T/S tiles down/across (T = ceil(OH / m)),
P = N * T * S tiles (ordered like im2col's positions: ``layers.windows``), Pc the tiles of
one chunk of tile rows, A/B the batch's places in the channel-major view
(``layers.layout``), xi an index over the n*n transform-domain positions.

One output tile (m x m) of a cross-correlation with an r x r kernel g, from the n x n
input tile d that covers it (Lavin & Gray 2016, "Fast algorithms for convolutional
neural networks")::

    Y = A^T [ (G g G^T) * (B^T d B) ] A          * elementwise, Y (m, m), d (n, n)

With U = G g G^T and V = B^T d B flattened to n*n positions, the channel sums become one
GEMM per position: M[xi] = U[xi] (Kg, Cg) @ V[xi] (Cg, P). A direct convolution spends
r*r multiply-adds per output and input channel; this spends n*n per m*m outputs, e.g.
16/4 = 4 instead of 9 for F(2x2, 3x3) and 36/4 = 9 instead of 25 for F(2x2, 5x5). The
transforms are small matrix products, done here as GEMMs with Kronecker-product matrices.

Backward is the exact adjoint of those linear maps (it is not an approximation: the
forward equals the convolution, so its adjoint equals the convolution's):

    dM[xi]  = (A kron A) dY                dY: the output gradient cut into m x m tiles
    dU[xi]  = dM[xi] @ V[xi]^T             ->  dw = (G kron G)^T dU
    dV[xi]  = U[xi]^T @ dM[xi]             ->  dd = (B kron B) dV, overlap-added into dx

The matrices come from Toom-Cook: evaluating polynomials at n points (``POINTS``, e.g.
0, 1, -1 and infinity for F(2, 3)) and interpolating, computed exactly in fractions
(``transforms``). Rounding differs from im2col + GEMM; the error grows with m and r
(tests/test_winograd.py measures it against float64), which is why the tile is a choice.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from math import gcd, lcm
from typing import NamedTuple

import numpy

from refnet.layers import blocking
from refnet.layers.backend import Array, DTypeLike, Module, get_array_module
from refnet.layers.layout import batch_places, channel_major, dims, shape
from refnet.layers.windows import add_windows, cropped, strided_slice, window_view
from refnet.layers.workspace import FRESH, Fresh

__all__ = ["forward", "backward", "transforms", "WinogradCache", "POINTS", "MAX_POINTS"]

# The finite interpolation points of F(m, r), by their number m + r - 2 (infinity is
# always added last). Any distinct points give exact algorithms; these are the ones with
# the smallest float32 error on alexnet-sized layers among small integers, halves and
# thirds (the search: docs/performance.md; tests/test_winograd.py keeps the bounds).
POINTS = {
    0: (),
    1: (0,),
    2: (0, 1),
    3: (0, 1, -1),
    4: (0, -1, 2, Fraction(1, 2)),
    5: (0, 1, -1, 2, Fraction(-1, 2)),
    6: (0, 1, -1, 2, Fraction(-3, 2), Fraction(1, 3)),
    7: (0, 1, -1, Fraction(1, 2), -2, Fraction(3, 2), Fraction(-2, 3)),
    8: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3),
    9: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), 3, -3),
}
MAX_POINTS = max(POINTS)


class WinogradCache(NamedTuple):
    v: tuple[Array, ...] | None  # per chunk of tile rows, (C, n*n, Pc) transformed input tiles,
    # for dw (None: recompute them from x)
    x: Array | None  # the input when v is None, else None
    u: Array  # (n*n, G, Kg, Cg) transformed kernels, for dx
    w_shape: tuple[int, ...]  # (K, Cg, r, r)
    x_shape: tuple[int, ...]  # (N, C, H, W) in ``layout``
    y_shape: tuple[int, ...]  # (N, K, OH, OW) in ``layout``
    pad: int
    tile: int  # m
    chunks: tuple[slice, ...]  # slices of the tile rows that forward ran one after the other
    layout: str


def _vandermonde(points: list[Fraction], k: int) -> list[list[Fraction]]:
    """Rows (1, a, a^2, ..., a^(k-1)) for each finite point a, then (0, ..., 0, 1) for infinity."""
    rows = [[a**i for i in range(k)] for a in points]
    return rows + [[Fraction(0)] * (k - 1) + [Fraction(1)]]


def _inverse(a: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
    n = len(a)
    aug = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        scale = aug[col][col]
        aug[col] = [v / scale for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [v - f * p for v, p in zip(aug[r], aug[col], strict=True)]
    return [row[n:] for row in aug]


@cache
def transforms(
    m: int, r: int
) -> tuple[
    tuple[tuple[Fraction, ...], ...],
    tuple[tuple[Fraction, ...], ...],
    tuple[tuple[Fraction, ...], ...],
]:
    """Exact (AT, G, BT) of F(m, r) as tuples of Fraction rows: AT (m, n), G (n, r), BT (n, n).

    For 1-D data d (n,) and kernel g (r,): ``AT @ ((G @ g) * (BT @ d))`` equals
    ``y[i] = sum_k g[k] * d[i + k]`` for i < m. Derivation: linear convolution of an m- and
    an r-term polynomial is evaluation at n points, a product, and interpolation,
    c = Vn^-1 ((Vm a) * (Vr g)); correlation is its transpose in a, so AT = Vm^T, G = Vr,
    BT = Vn^-T. Each row of BT is then scaled to coprime integers and G's row divided to match.
    """
    if m < 1 or r < 1:
        raise ValueError(f"winograd: tile m={m} and kernel r={r} must be >= 1")
    n = m + r - 1
    if n - 1 > MAX_POINTS:
        raise ValueError(
            f"winograd: F({m}, {r}) needs {n - 1} finite points, at most {MAX_POINTS} are defined"
        )
    points = [Fraction(a) for a in POINTS[n - 1]]
    vm, vr, vn = _vandermonde(points, m), _vandermonde(points, r), _vandermonde(points, n)
    at = [list(col) for col in zip(*vm, strict=True)]  # (m, n)
    g = [list(row) for row in vr]  # (n, r)
    bt = [list(col) for col in zip(*_inverse(vn), strict=True)]  # (n, n) = Vn^-T
    for j, row in enumerate(bt):
        s = Fraction(lcm(*(v.denominator for v in row)), gcd(*(v.numerator for v in row)))
        bt[j] = [v * s for v in row]
        g[j] = [v / s for v in g[j]]
    return tuple(map(tuple, at)), tuple(map(tuple, g)), tuple(map(tuple, bt))


OUTPUT, KERNEL, INPUT = range(3)  # which of ``transforms(m, r)``: AT, G, BT


@cache
def _kron_host(m: int, r: int, which: int, dtype_name: str) -> numpy.ndarray:
    """M kron M for M = ``transforms(m, r)[which]``: a read-only NumPy array, made once."""
    mat = numpy.array(
        [[float(v) for v in row] for row in transforms(m, r)[which]], dtype=dtype_name
    )
    k = numpy.kron(mat, mat)
    k.flags.writeable = False
    return k


def _kron(xp: Module, m: int, r: int, which: int, dtype: DTypeLike) -> Array:
    """``_kron_host`` as an array of ``xp`` (no copy for NumPy) of ``dtype``."""
    return xp.asarray(_kron_host(m, r, which, numpy.dtype(dtype).name))


def tiles(OH: int, OW: int, m: int) -> tuple[int, int]:
    """(T, S): the number of m x m output tiles down and across."""
    return -(-OH // m), -(-OW // m)


def _padded(x: Array, pad: int, m: int, r: int, layout: str, ws: Fresh) -> Array:
    """x as a contiguous channel-major (C, A, Hp, Wp, B) array zero-padded by ``pad`` on
    the top/left and as far as the last tile needs on the bottom/right (tiles may run
    past the output by up to m - 1 rows and columns)."""
    xp = get_array_module(x)
    N, C, H, W = dims(x.shape, layout)
    A, B = batch_places(N, layout)
    T, S = tiles(H + 2 * pad - r + 1, W + 2 * pad - r + 1, m)
    xpad = ws.zeros(xp, (C, A, T * m + r - 1, S * m + r - 1, B), x.dtype)
    xpad[:, :, pad : pad + H, pad : pad + W] = channel_major(x, layout)
    return xpad


def _transform_input(xpad: Array, rows: slice, m: int, r: int, ws: Fresh) -> Array:
    """V = (B^T kron B^T) d for the input tiles d of tile rows ``rows`` (a slice):
    (C, n*n, Pc), Pc = A * rows * S * B tiles in the layout's order."""
    xp = get_array_module(xpad)
    n = m + r - 1
    C, A, Hp, Wp, B = xpad.shape
    S = (Wp - r + 1) // m
    part = xpad[:, :, rows.start * m : rows.stop * m + r - 1]  # (C, A, rows*m + r-1, Wp, B)
    d = ws.copy(xp, window_view(part, n, n, m, rows.stop - rows.start, S))
    d = d.reshape(C, n * n, -1)  # (C, n*n, Pc) tiles
    bt = _kron(xp, m, r, INPUT, xpad.dtype)  # (n*n, n*n)
    return xp.matmul(bt, d, out=ws.empty(xp, d.shape, d.dtype))  # (C, n*n, Pc)


def _by_position(v: Array, groups: int) -> Array:
    """(C, n*n, P) -> a (n*n, G, Cg, P) view: one (Cg, P) matrix per position and group."""
    C, nn, P = v.shape
    return v.reshape(groups, C // groups, nn, P).transpose(2, 0, 1, 3)


def row_chunks(T: int, per_row_bytes: int) -> list[slice]:
    """Slices of the T tile rows, each chunk's largest temporary (the product M or its
    gradient, ``per_row_bytes`` per tile row) near ``blocking.CHUNK_BYTES``: the
    transform-domain arrays are n*n/m^2 times the size of the output, so a whole batch
    would make the largest temporaries of the network, while a chunk of tile rows of the
    whole batch still gives large GEMMs (at least one row: S * N tiles)."""
    return blocking.runs(T, per_row_bytes, blocking.CHUNK_BYTES)


def _chunk_positions(OH: int, OW: int, m: int, rows: slice):
    """``(i, j, out_rows, out_cols, count, S')`` for each position (i, j) of an m x m
    output tile in the chunk of tile rows ``rows``: the chunk's outputs
    ``y[..., out_rows, out_cols]`` are that position in its first ``count`` tile rows
    and S' tile columns. Position (i, j) exists in the first T' = ceil((OH - i) / m)
    tile rows and S' = ceil((OW - j) / m) tile columns (the last tile row and column may
    run past the output)."""
    out = []
    for i in range(m):
        count = min(rows.stop, -(-(OH - i) // m)) - rows.start  # of this row's T'
        if count <= 0:
            continue
        out_rows = strided_slice(rows.start * m + i, count, m)
        for j in range(m):
            s = -(-(OW - j) // m)  # S'
            out.append((i, j, out_rows, strided_slice(j, s, m), count, s))
    return out


def forward(
    x: Array,
    w: Array,
    b: Array,
    *,
    pad: int,
    groups: int,
    tile: int,
    keep_transformed: bool = True,
    layout: str = "NCHW",
    ws: Fresh = FRESH,
) -> tuple[Array, WinogradCache]:
    """y = conv(x, w, stride=1, pad) + b by F(tile x tile, r x r); see the module doc.

    Shapes: x (N, C, H, W); w (K, C // groups, r, r); b (K,) -> y (N, K, OH, OW) with
    OH = H + 2*pad - r + 1; x and y in ``layout`` (``layers.layout``: "CHWN" takes
    (C, H, W, N) and gives (K, OH, OW, N)). Arguments are validated by
    ``layers.conv.forward``, which is the public entry point (``algo="winograd"``). The
    tile rows run in chunks (``row_chunks``). ``keep_transformed``: the cache keeps each
    chunk's V (n*n/m^2 times the input's size) or, with False, only x (V recomputed,
    chunk by chunk). ``ws``: where y, V and the temporaries come from
    (``layers.workspace``).
    """
    xp = get_array_module(x, w, b)
    N, C, H, W = dims(x.shape, layout)
    A, B = batch_places(N, layout)
    K, Cg, r, _ = w.shape
    G, Kg, m = groups, K // groups, tile
    n = m + r - 1
    OH, OW = H + 2 * pad - r + 1, W + 2 * pad - r + 1
    T, S = tiles(OH, OW, m)
    gk = _kron(xp, m, r, KERNEL, x.dtype)  # (n*n, r*r)
    u = xp.matmul(
        gk, w.reshape(K * Cg, r * r).T, out=ws.empty(xp, (n * n, K * Cg), x.dtype)
    )  # (n*n, K*Cg)
    u = u.reshape(n * n, G, Kg, Cg)  # (n*n, G, Kg, Cg)
    atk = _kron(xp, m, r, OUTPUT, x.dtype)  # (m*m, n*n)
    y = ws.empty(xp, shape(N, K, OH, OW, layout), x.dtype)
    y5 = channel_major(y, layout)  # (K, A, OH, OW, B) view
    bias = b.reshape(K, 1, 1, 1, 1)
    xpad = _padded(x, pad, m, r, layout, ws)  # (C, A, Hp, Wp, B)
    chunks = row_chunks(T, n * n * max(K, C) * N * S * x.itemsize)
    vs = []
    for rows in chunks:
        v = _transform_input(xpad, rows, m, r, ws)  # (C, n*n, Pc)
        pc = v.shape[2]
        mm = xp.matmul(
            u, _by_position(v, G), out=ws.empty(xp, (n * n, G, Kg, pc), x.dtype)
        )  # (n*n, G, Kg, Pc)
        yt = xp.matmul(
            atk, mm.reshape(n * n, -1), out=ws.empty(xp, (m * m, K * pc), x.dtype)
        )  # (m*m, K*Pc)
        yt = yt.reshape(m, m, K, A, -1, S, B)  # (m, m, K, A, Tc, S, B)
        for i, j, oh, ow, t, s in _chunk_positions(OH, OW, m, rows):
            xp.add(yt[i, j, :, :, :t, :s], bias, out=y5[:, :, oh, ow])  # (K, A, t, s, B)
        vs.append(v)
        del mm, yt  # free for the next chunk's (the same buffers)
    kept: tuple[tuple[Array, ...] | None, Array | None] = (
        (tuple(vs), None) if keep_transformed else (None, x)
    )
    return y, WinogradCache(
        *kept, u, w.shape, tuple(x.shape), tuple(y.shape), pad, m, tuple(chunks), layout
    )


def backward(
    dy: Array, cache: WinogradCache, *, need_dx: bool = True, ws: Fresh = FRESH
) -> tuple[Array | None, Array, Array]:
    """(dx, dw, db) of ``forward``: the adjoint of each of its linear steps (module doc),
    over the same chunks of tile rows; dU sums the chunks' contributions. ``ws``: where
    dx and the temporaries come from (``layers.workspace``)."""
    xp = get_array_module(dy)
    layout = cache.layout
    N, C, _, _ = dims(cache.x_shape, layout)
    A, B = batch_places(N, layout)
    K, Cg, r, _ = cache.w_shape
    _, _, OH, OW = dims(cache.y_shape, layout)
    m = cache.tile
    n = m + r - 1
    G = C // Cg
    Kg = K // G
    T, S = tiles(OH, OW, m)
    atk, btk = _kron(xp, m, r, OUTPUT, dy.dtype), _kron(xp, m, r, INPUT, dy.dtype)
    dy5 = channel_major(dy, layout)  # (K, A, OH, OW, B) view
    db = dy5.sum(axis=(1, 2, 3, 4))  # (K,)
    dut = ws.zeros(xp, (n * n, G, Cg, Kg), dy.dtype)  # dU^T, summed over chunks
    xpad = None if cache.v is not None else _padded(cache.x, cache.pad, m, r, layout, ws)
    dxpad = None  # like _padded's xpad
    if need_dx:
        dxpad = ws.zeros(xp, (C, A, T * m + r - 1, S * m + r - 1, B), dy.dtype)
    for k, rows in enumerate(cache.chunks):
        v = cache.v[k] if cache.v is not None else _transform_input(xpad, rows, m, r, ws)
        tc, pc = rows.stop - rows.start, v.shape[2]  # v: (C, n*n, Pc)
        dyt = ws.zeros(xp, (m, m, K, A, tc, S, B), dy.dtype)  # dy cut into m x m tiles
        for i, j, oh, ow, t, s in _chunk_positions(OH, OW, m, rows):
            dyt[i, j, :, :, :t, :s] = dy5[:, :, oh, ow]  # (K, A, t, s, B)
        dm = xp.matmul(
            atk.T, dyt.reshape(m * m, -1), out=ws.empty(xp, (n * n, K * pc), dy.dtype)
        )  # (n*n, K*Pc)
        dm = dm.reshape(n * n, G, Kg, -1)  # (n*n, G, Kg, Pc)
        # dU^T = V @ dM^T: the long P axis as the reduction of a non-transposed left operand
        dut += xp.matmul(
            _by_position(v, G), dm.transpose(0, 1, 3, 2), out=ws.empty(xp, dut.shape, dy.dtype)
        )  # (n*n, G, Cg, Kg)
        if need_dx:
            dv = xp.matmul(
                cache.u.transpose(0, 1, 3, 2), dm, out=ws.empty(xp, (n * n, G, Cg, pc), dy.dtype)
            )  # (n*n, G, Cg, Pc)
            dv = dv.reshape(n * n, C, -1).transpose(1, 0, 2)  # (C, n*n, Pc) view
            dd = xp.matmul(btk.T, dv, out=ws.empty(xp, (C, n * n, pc), dy.dtype))
            add_windows(
                dd.reshape(C, n, n, A, tc, S, B),  # dd: (C, n*n, Pc)
                dxpad[:, :, rows.start * m : rows.stop * m + r - 1],  # type: ignore[index]  # need_dx: made
                m,
            )
            del dv, dd
        del v, dyt, dm  # free for the next chunk's (the same buffers)
    gk = _kron(xp, m, r, KERNEL, dy.dtype)  # (n*n, r*r)
    dwt = xp.matmul(gk.T, dut.reshape(n * n, -1))  # (r*r, G*Cg*Kg)
    dw = dwt.reshape(r, r, G, Cg, Kg).transpose(2, 4, 3, 0, 1)  # (G, Kg, Cg, r, r) view
    dw = dw.reshape(K, Cg, r, r)  # a copy
    if not need_dx:
        return None, dw, db
    return cropped(dxpad, cache.x_shape, cache.pad, layout, ws), dw, db
