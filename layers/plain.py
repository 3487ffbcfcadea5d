"""The plain engine's layers: the obvious form of every layer, for reading and as the oracle.

Axis legend: N batch, C input channels, K kernels, G groups (C = G * Cg, K = G * Kg),
H/W input height/width, kh/kw kernel height/width, OH/OW output height/width, s stride,
z pooling window size, F features.

Each pair has the signature of its fast twin without the fast-only keywords (layout,
workspace, algorithm): ``*_forward(x, ..., hyperparameters) -> (y, cache)`` and
``*_backward(dy, cache, ...) -> gradients``, so either can stand in for the other. NCHW
only, any array module (taken from the inputs), nothing blocked, chunked, transformed or
copied into a cleverer layout. The fast twins: ``layers.conv`` (im2col or Winograd),
``layers.pool`` (phase planes), ``layers.lrn`` (cache blocks), ``layers.adaptive_pool``
(two averaging matrices) and the row-blocked update of ``refnet.sgd``.

ReLU, the fully-connected layer, dropout, global average pooling and the softmax loss
have no clever fast path: both engines call the same functions (``layers.relu``,
``layers.linear``, ``layers.dropout``, ``layers.gap``, ``layers.softmax``), re-exported
here under the plain engine's names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from refnet.layers import dropout, gap, linear, relu, softmax
from refnet.layers.backend import Array, get_array_module
from refnet.layers.checks import window_count

# the plain pairs by layer, each as *_forward and *_backward, and the update
_PLAIN = ("conv", "pool", "lrn", "adaptive_pool", "flatten")
_SHARED = ("relu", "linear", "dropout", "gap", "softmax")  # re-exported, below
__all__ = [f"{name}_{way}" for name in _PLAIN + _SHARED for way in ("forward", "backward")]
__all__ += ["sgd_update"]


class Pair(NamedTuple):
    """A layer's (forward, backward), as ``refnet.nodes`` names a layer's plain form."""

    forward: Callable[..., Any]
    backward: Callable[..., Any]


# the layers whose one form serves both engines
relu_forward, relu_backward = relu.forward, relu.backward
linear_forward, linear_backward = linear.forward, linear.backward
dropout_forward, dropout_backward = dropout.forward, dropout.backward
gap_forward, gap_backward = gap.forward, gap.backward
softmax_forward, softmax_backward = softmax.forward, softmax.backward


# -- convolution ------------------------------------------------------------------------
class ConvCache(NamedTuple):
    x: Array  # (N, C, H, W) the input
    w: Array  # (K, Cg, kh, kw)
    stride: int
    pad: int
    groups: int


def _window(offset: int, count: int, stride: int) -> slice:
    """The slice offset, offset + stride, ..., offset + stride * (count - 1)."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def _by_group(x: Array, w: Array, stride: int, pad: int, groups: int):
    """(xpad, xpad by group, w by group, (OH, OW)): x zero-padded by ``pad`` on each side
    of H and W, and both split along their channels into the groups."""
    xp = get_array_module(x)
    xpad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # (N, C, Hp, Wp)
    N = x.shape[0]
    K, Cg, kh, kw = w.shape
    xg = xpad.reshape(N, groups, Cg, *xpad.shape[2:])  # (N, G, Cg, Hp, Wp)
    wg = w.reshape(groups, K // groups, Cg, kh, kw)  # (G, Kg, Cg, kh, kw)
    out = ((xpad.shape[2] - kh) // stride + 1, (xpad.shape[3] - kw) // stride + 1)
    return xpad, xg, wg, out


def conv_forward(
    x: Array, w: Array, b: Array, *, stride: int = 1, pad: int = 0, groups: int = 1
) -> tuple[Array, ConvCache]:
    """y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] xpad[n, g*Cg + c, oh*s + i, ow*s + j]

    with g = k // Kg the group of kernel k and xpad x with ``pad`` zeros on each side
    (cross-correlation; OH = (H + 2*pad - kh) // s + 1). Computed as one sum per kernel
    position (i, j): y_g += w_g[:, :, i, j] . xpad_g[..., i::s, j::s], for every group g.
    Shapes: x (N, C, H, W); w (K, C // groups, kh, kw); b (K,) -> y (N, K, OH, OW).
    """
    xp = get_array_module(x, w, b)
    _, xg, wg, (OH, OW) = _by_group(x, w, stride, pad, groups)
    G, Kg, _, kh, kw = wg.shape
    N = x.shape[0]
    y = xp.zeros((N, G, Kg, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            xs = xg[..., _window(i, OH, stride), _window(j, OW, stride)]  # (N, G, Cg, OH, OW)
            y += xp.einsum("gkc,ngchw->ngkhw", wg[..., i, j], xs)
    y = y.reshape(N, G * Kg, OH, OW) + b.reshape(1, -1, 1, 1)  # (N, K, OH, OW)
    return y, ConvCache(x, w, stride, pad, groups)


def conv_backward(
    dy: Array, cache: ConvCache, *, need_dx: bool = True
) -> tuple[Array | None, Array, Array]:
    """(dx, dw, db) of ``conv_forward`` for the upstream gradient dy (N, K, OH, OW):

        db[k]          = sum_{n, oh, ow} dy[n, k, oh, ow]
        dw[k, c, i, j] = sum_{n, oh, ow} dy[n, k, oh, ow] xpad[n, g*Cg + c, oh*s + i, ow*s + j]
        dxpad[n, g*Cg + c, oh*s + i, ow*s + j] += sum_k w[k, c, i, j] dy[n, k, oh, ow]

    (k over the kernels of group g), then dx is dxpad without its padding; ``need_dx``
    False (a first layer, whose input is the image): dx is None.
    """
    x, w, stride, pad, groups = cache
    xp = get_array_module(dy, x, w)
    xpad, xg, wg, (OH, OW) = _by_group(x, w, stride, pad, groups)
    N, (G, Kg) = x.shape[0], wg.shape[:2]
    dyg = dy.reshape(N, G, Kg, OH, OW)  # (N, G, Kg, OH, OW)
    dxg = xp.zeros(xg.shape, dtype=x.dtype)  # (N, G, Cg, Hp, Wp)
    dwg = xp.zeros(wg.shape, dtype=w.dtype)  # (G, Kg, Cg, kh, kw)
    for i in range(wg.shape[3]):
        for j in range(wg.shape[4]):
            at = (Ellipsis, _window(i, OH, stride), _window(j, OW, stride))
            dwg[..., i, j] = xp.einsum("ngkhw,ngchw->gkc", dyg, xg[at])
            if need_dx:
                dxg[at] += xp.einsum("gkc,ngkhw->ngchw", wg[..., i, j], dyg)
    db = dy.sum(axis=(0, 2, 3))  # (K,)
    if not need_dx:
        return None, dwg.reshape(w.shape), db
    H, W = x.shape[2:]
    dx = dxg.reshape(xpad.shape)[:, :, pad : pad + H, pad : pad + W]  # (N, C, H, W)
    return xp.ascontiguousarray(dx), dwg.reshape(w.shape), db


# -- max pooling ------------------------------------------------------------------------
class PoolCache(NamedTuple):
    argmax: Array  # (N, C, OH, OW) window position p = i*z + j of the first maximum
    x_shape: tuple[int, ...]  # (N, C, H, W)
    size: int
    stride: int


def max_windows(x: Array, size: int, stride: int, rounding: str) -> tuple[Array, Array]:
    """(y, argmax) of ``pool_forward``, window by window."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH = window_count(H, size, stride, rounding=rounding)
    OW = window_count(W, size, stride, rounding=rounding)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=xp.int64)
    for oh in range(OH):
        for ow in range(OW):
            win = x[:, :, oh * stride : oh * stride + size, ow * stride : ow * stride + size]
            h, w = win.shape[2:]  # size x size unless clipped
            i, j = divmod(win.reshape(N, C, h * w).argmax(axis=2), w)  # the first maximum
            argmax[:, :, oh, ow] = i * size + j
            y[:, :, oh, ow] = win.max(axis=(2, 3))
    return y, argmax


def pool_forward(
    x: Array, *, size: int = 3, stride: int = 2, rounding: str = "floor"
) -> tuple[Array, PoolCache]:
    """y[n, c, oh, ow] = max_{0 <= i, j < z} x[n, c, oh*s + i, ow*s + j]

    no padding. ``rounding="floor"``: OH = (H - z) // s + 1, every window whole;
    ``"ceil"``: OH = ceil((H - z) / s) + 1 less a window that would start at or past H,
    the last window clipped to the input (positions past the edge take no part). The
    cache holds the window position p = i*z + j of the first maximum in row-major window
    order (p counts the whole z x z window, clipped or not).
    """
    y, argmax = max_windows(x, size, stride, rounding)
    return y, PoolCache(argmax, tuple(x.shape), size, stride)


def pool_backward(dy: Array, cache: PoolCache) -> Array:
    """dx[n, c, oh*s + i, ow*s + j] += dy[n, c, oh, ow] for (i, j) = divmod(argmax, z):
    each window sends its gradient to its first maximum; overlapping windows accumulate.
    Windows clipped at the edge (ceil rounding) are handled on a grid grown to hold them
    whole, cut back to x's shape at the end."""
    argmax, x_shape, size, stride = cache
    xp = get_array_module(dy)
    N, C, OH, OW = dy.shape
    H = max(x_shape[2], (OH - 1) * stride + size)
    W = max(x_shape[3], (OW - 1) * stride + size)
    dx = xp.zeros((N, C, H, W), dtype=dy.dtype)
    positions = xp.arange(size * size)
    for oh in range(OH):
        for ow in range(OW):
            winner = argmax[:, :, oh, ow, None] == positions  # (N, C, z*z) one-hot
            sent = (winner * dy[:, :, oh, ow, None]).reshape(N, C, size, size)
            dx[:, :, oh * stride : oh * stride + size, ow * stride : ow * stride + size] += sent
    return dx[:, :, : x_shape[2], : x_shape[3]]


# -- local response normalisation ---------------------------------------------------------
class LrnCache(NamedTuple):
    x: Array  # (N, C, H, W) the input
    s: Array  # its denominator's base, like x
    size: int
    alpha: float
    beta: float


def lrn_denominator(x: Array, size: int, alpha: float, k: float) -> Array:
    """s[n, c] = k + alpha * sum_{c' = max(0, c - size//2)}^{min(C-1, c + size//2)} x[n, c']^2"""
    xp = get_array_module(x)
    C, half = x.shape[1], size // 2
    s = xp.empty_like(x)
    for c in range(C):
        window = x[:, max(0, c - half) : min(C, c + half + 1)]  # (N, <= size, H, W)
        s[:, c] = k + alpha * (window * window).sum(axis=1)
    return s


def lrn_forward(
    x: Array, *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> tuple[Array, LrnCache]:
    """b[c] = a[c] / (k + alpha * sum_{c' in window(c)} a[c']^2)^beta

    The paper's form: alpha multiplies the sum as is (not divided by ``size``), and the
    window of channel c is c - size//2 .. c + size//2 clipped at the channel edges.
    """
    s = lrn_denominator(x, size, alpha, k)
    return x / s**beta, LrnCache(x, s, size, alpha, beta)


def lrn_backward(dy: Array, cache: LrnCache) -> Array:
    """dx[c] = dy[c] s[c]^-beta
              - 2 alpha beta x[c] sum_{c' in window(c)} dy[c'] x[c'] s[c']^(-beta-1)

    with s the denominator of ``lrn_forward``: channel c' depends on x[c] through s[c']
    exactly when c is in the window of c' (the window is symmetric).
    """
    x, s, size, alpha, beta = cache
    C, half = x.shape[1], size // 2
    r = dy * x * s ** (-beta - 1)  # dy[c'] x[c'] s[c']^(-beta-1)
    dx = dy * s**-beta
    for c in range(C):
        window = r[:, max(0, c - half) : min(C, c + half + 1)]  # (N, <= size, H, W)
        dx[:, c] -= 2 * alpha * beta * x[:, c] * window.sum(axis=1)
    return dx


# -- adaptive average pooling -----------------------------------------------------------
def _bin(i: int, size: int, out: int) -> slice:
    """Positions floor(i size / out) to ceil((i + 1) size / out), end excluded."""
    return slice(i * size // out, -(-(i + 1) * size // out))


def adaptive_pool_forward(
    x: Array, out: int | tuple[int, int] = (6, 6)
) -> tuple[Array, tuple[int, ...]]:
    """(y, x's shape): y[n, c, i, j] = the mean of x[n, c] over the rows of bin i and the
    columns of bin j (``_bin``), (OH, OW) = ``out`` (or one int for both). Bin by bin."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = (out, out) if isinstance(out, int) else tuple(out)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = x[:, :, _bin(i, H, OH), _bin(j, W, OW)].mean(axis=(2, 3))
    return y, tuple(x.shape)


def adaptive_pool_backward(dy: Array, x_shape: tuple[int, ...]) -> Array:
    """dx[n, c, bin i, bin j] += dy[n, c, i, j] / (positions in the bin): overlapping
    bins accumulate."""
    xp = get_array_module(dy)
    N, C, H, W = x_shape
    OH, OW = dy.shape[2:]
    dx = xp.zeros(x_shape, dtype=dy.dtype)
    for i in range(OH):
        for j in range(OW):
            rows, cols = _bin(i, H, OH), _bin(j, W, OW)
            count = (rows.stop - rows.start) * (cols.stop - cols.start)
            dx[:, :, rows, cols] += dy[:, :, i, j, None, None] / count
    return dx


# -- flattening -------------------------------------------------------------------------
def flatten_forward(x: Array) -> tuple[Array, tuple[int, ...]]:
    """(y, x's shape): the maps (N, C, H, W) as features (N, C*H*W) in (C, H, W) order
    (``torch.flatten(x, 1)``)."""
    return x.reshape(x.shape[0], -1), tuple(x.shape)


def flatten_backward(dy: Array, x_shape: tuple[int, ...]) -> Array:
    """dx = dy (N, F) reshaped back to the maps' shape."""
    return dy.reshape(x_shape)


# -- the update -------------------------------------------------------------------------
def sgd_update(
    w: Array,
    v: Array,
    g: Array,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    form: str = "paper",
) -> tuple[Array, Array]:
    """(w', v') after one step of momentum SGD on one parameter array, in a new pair:

        form="paper":    v' = m v - wd lr w - lr g;    w' = w + v'
        form="pytorch":  v' = m v + g + wd w;          w' = w - lr v'

    with learning rate lr, momentum m and weight decay wd.
    """
    if form == "paper":
        v = momentum * v - weight_decay * lr * w - lr * g
        return w + v, v
    if form == "pytorch":
        v = momentum * v + g + weight_decay * w
        return w - lr * v, v
    raise ValueError(f"sgd_update: form must be 'paper' or 'pytorch', got {form!r}")


# each plain pair by layer (the shared forms are their modules, ``layers.relu`` ...)
conv = Pair(conv_forward, conv_backward)
pool = Pair(pool_forward, pool_backward)
lrn = Pair(lrn_forward, lrn_backward)
adaptive_pool = Pair(adaptive_pool_forward, adaptive_pool_backward)
flatten = Pair(flatten_forward, flatten_backward)
