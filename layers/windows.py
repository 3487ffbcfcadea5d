"""Sliding windows over (H, W): im2col, its exact adjoint col2im, and strided slices.

Axis legend: N batch, C input channels, G groups (C = G * Cg), H/W input height/width,
kh/kw kernel height/width, OH/OW output height/width, P = N * OH * OW output positions.

The column layout (used by ``layers.conv`` and documented only here)::

    cols[g, (c, i, j), (n, oh, ow)] = xpad[n, g*Cg + c, oh*stride + i, ow*stride + j]
    cols.shape == (G, Cg * kh * kw, N * OH * OW)

The row index runs over (c, i, j) in C order, matching ``w[k, c, i, j]`` reshaped to
(G, K/G, Cg*kh*kw); the column index folds the whole batch into one GEMM dimension, so a
grouped convolution is ONE batched matmul over G with large GEMMs inside.

im2col builds a strided view of the padded input and copies it once. col2im adds the
kh*kw strided slices back (a loop over kernel positions, never over samples), so
``<im2col(x), c> == <x, col2im(c)>`` exactly in exact arithmetic. On the CPU col2im runs
over blocks of channels whose padded maps fit in a core's L2 cache (``block_bytes``), so
the kh*kw additions hit the cache instead of memory; the order of additions into each
element, and so the result, is the same for any block size.
"""
from layers.backend import block_bytes, get_array_module


def strided_slice(offset, count, stride):
    """The slice ``offset, offset + stride, ..., offset + stride * (count - 1)``."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def padded(x, pad):
    """``x`` (N, C, H, W) with ``pad`` zeros on each side of H and W (``x`` itself if 0)."""
    if pad == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    out[:, :, pad:pad + H, pad:pad + W] = x
    return out


def window_view(xpad, kh, kw, stride, OH, OW):
    """The (C, kh, kw, N, OH, OW) strided view ``xpad[n, c, oh*stride + i, ow*stride + j]``.

    ``xpad`` (N, C, Hp, Wp) is already padded; no copy is made.
    """
    xp = get_array_module(xpad)
    N, C = xpad.shape[:2]
    sN, sC, sH, sW = xpad.strides
    return xp.lib.stride_tricks.as_strided(
        xpad, shape=(C, kh, kw, N, OH, OW),
        strides=(sC, sH, sW, sN, sH * stride, sW * stride))  # (C, kh, kw, N, OH, OW)


def im2col(x, kh, kw, *, stride=1, pad=0, groups=1):
    """Columns of ``x`` (N, C, H, W) -> (G, C/G * kh * kw, N * OH * OW); layout in the module doc.

    ``OH = (H + 2*pad - kh) // stride + 1`` (rounds down, like PyTorch and Caffe).
    Callers validate arguments (``layers.conv.forward`` does); this is the raw kernel.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH = (H + 2 * pad - kh) // stride + 1
    OW = (W + 2 * pad - kw) // stride + 1
    view = window_view(padded(x, pad), kh, kw, stride, OH, OW)  # (C, kh, kw, N, OH, OW)
    cols = xp.ascontiguousarray(view)                     # the one copy
    return cols.reshape(groups, C // groups * kh * kw, N * OH * OW)  # (G, Cg*kh*kw, P)


def col2im(cols, x_shape, kh, kw, *, stride=1, pad=0):
    """The adjoint of ``im2col``: (G, C/G * kh * kw, N * OH * OW) -> (N, C, H, W).

    Every column entry is added back to the input position it was read from; positions
    read by several overlapping windows accumulate, and the padding is dropped.
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    OH = (H + 2 * pad - kh) // stride + 1
    OW = (W + 2 * pad - kw) // stride + 1
    c6 = cols.reshape(C, kh, kw, N, OH, OW)              # (C, kh, kw, N, OH, OW)
    xpad = xp.zeros((C, N, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)  # channel-major
    add_windows(c6, xpad, stride)
    x = xpad[:, :, pad:pad + H, pad:pad + W]              # (C, N, H, W)
    return xp.ascontiguousarray(x.transpose(1, 0, 2, 3))  # (N, C, H, W)


def add_windows(c6, xpad, stride):
    """``xpad[c, n, oh*stride + i, ow*stride + j] += c6[c, i, j, n, oh, ow]``, in place.

    The adjoint of ``window_view`` for a channel-major accumulator ``xpad`` (C, N, Hp, Wp).
    Runs over blocks of channels whose maps fit in L2 (``block_bytes``); each element
    receives its additions in the same (i, j) order for any block size.
    """
    xp = get_array_module(c6)
    C, kh, kw, N, OH, OW = c6.shape
    budget = block_bytes(xp)
    block = C if budget is None else max(1, budget // (xpad[0].size * xpad.itemsize))
    rows = [strided_slice(i, OH, stride) for i in range(kh)]
    cols_ = [strided_slice(j, OW, stride) for j in range(kw)]
    for c0 in range(0, C, block):
        xb, cb = xpad[c0:c0 + block], c6[c0:c0 + block]  # (B, N, Hp, Wp), (B, kh, kw, N, OH, OW)
        for i in range(kh):
            for j in range(kw):
                xb[:, :, rows[i], cols_[j]] += cb[:, i, j]  # (B, N, OH, OW)
