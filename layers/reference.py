"""The plain form of the layers whose fast paths are clever: for reading, and as the oracle.

Axis legend: N batch, C input channels, K kernels, G groups (C = G * Cg, K = G * Kg),
H/W input height/width, kh/kw kernel height/width, OH/OW output height/width, s stride,
z pooling window size.

Each function is the obvious computation of its formula: NCHW only, float32 or float64,
any array module (taken from the inputs), nothing blocked, chunked, transformed or
copied into a cleverer layout. The fast paths beside them (``layers.conv`` by im2col or
Winograd, ``layers.pool`` on phase planes, ``layers.adaptive_pool`` as two averaging
matrices, ``layers.lrn`` in cache blocks, the SGD update of ``refnet.sgd`` in row blocks)
are tested against these.
"""
from layers.backend import get_array_module
from layers.checks import window_count

__all__ = ["conv_forward", "conv_backward", "pool_forward", "pool_backward",
           "adaptive_pool_forward", "adaptive_pool_backward", "lrn_forward", "lrn_backward",
           "sgd_update"]


def _window(offset, count, stride):
    """The slice offset, offset + stride, ..., offset + stride * (count - 1)."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def _conv_shapes(x, w, stride, pad, groups):
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    OH, OW = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    return N, groups, Cg, K // groups, kh, kw, OH, OW


def _by_group(x, w, pad, groups):
    """(xpad, xpad by group, w by group): x zero-padded by ``pad`` on each side of H and
    W, and both split along their channels into the groups."""
    xp = get_array_module(x)
    xpad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))     # (N, C, Hp, Wp)
    N, C = x.shape[:2]
    K, Cg, kh, kw = w.shape
    xg = xpad.reshape(N, groups, Cg, *xpad.shape[2:])               # (N, G, Cg, Hp, Wp)
    wg = w.reshape(groups, K // groups, Cg, kh, kw)                 # (G, Kg, Cg, kh, kw)
    return xpad, xg, wg


def conv_forward(x, w, b, *, stride=1, pad=0, groups=1):
    """y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] xpad[n, g*Cg + c, oh*s + i, ow*s + j]

    with g = k // Kg the group of kernel k and xpad x with ``pad`` zeros on each side
    (cross-correlation; OH = (H + 2*pad - kh) // s + 1). Computed as one sum per kernel
    position (i, j): y_g += w_g[:, :, i, j] . xpad_g[..., i::s, j::s], for every group g.
    Shapes: x (N, C, H, W); w (K, C // groups, kh, kw); b (K,) -> y (N, K, OH, OW).
    """
    xp = get_array_module(x, w, b)
    N, G, Cg, Kg, kh, kw, OH, OW = _conv_shapes(x, w, stride, pad, groups)
    _, xg, wg = _by_group(x, w, pad, groups)
    y = xp.zeros((N, G, Kg, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            xs = xg[..., _window(i, OH, stride), _window(j, OW, stride)]   # (N, G, Cg, OH, OW)
            y += xp.einsum("gkc,ngchw->ngkhw", wg[..., i, j], xs)
    return y.reshape(N, G * Kg, OH, OW) + b.reshape(1, -1, 1, 1)   # (N, K, OH, OW)


def conv_backward(dy, x, w, *, stride=1, pad=0, groups=1):
    """(dx, dw, db) of ``conv_forward`` for the upstream gradient dy (N, K, OH, OW):

        db[k]          = sum_{n, oh, ow} dy[n, k, oh, ow]
        dw[k, c, i, j] = sum_{n, oh, ow} dy[n, k, oh, ow] xpad[n, g*Cg + c, oh*s + i, ow*s + j]
        dxpad[n, g*Cg + c, oh*s + i, ow*s + j] += sum_k w[k, c, i, j] dy[n, k, oh, ow]

    (k over the kernels of group g), then dx is dxpad without its padding.
    """
    xp = get_array_module(dy, x, w)
    N, G, Cg, Kg, kh, kw, OH, OW = _conv_shapes(x, w, stride, pad, groups)
    xpad, xg, wg = _by_group(x, w, pad, groups)
    dyg = dy.reshape(N, G, Kg, OH, OW)                              # (N, G, Kg, OH, OW)
    dxg = xp.zeros(xg.shape, dtype=x.dtype)                         # (N, G, Cg, Hp, Wp)
    dwg = xp.zeros(wg.shape, dtype=w.dtype)                         # (G, Kg, Cg, kh, kw)
    for i in range(kh):
        for j in range(kw):
            at = (Ellipsis, _window(i, OH, stride), _window(j, OW, stride))
            dwg[..., i, j] = xp.einsum("ngkhw,ngchw->gkc", dyg, xg[at])
            dxg[at] += xp.einsum("gkc,ngkhw->ngchw", wg[..., i, j], dyg)
    H, W = x.shape[2:]
    dx = dxg.reshape(xpad.shape)[:, :, pad:pad + H, pad:pad + W]    # (N, C, H, W)
    return xp.ascontiguousarray(dx), dwg.reshape(w.shape), dy.sum(axis=(0, 2, 3))


def pool_forward(x, *, size=3, stride=2, rounding="floor"):
    """(y, argmax): y[n, c, oh, ow] = max_{0 <= i, j < z} x[n, c, oh*s + i, ow*s + j]

    no padding. ``rounding="floor"``: OH = (H - z) // s + 1, every window whole;
    ``"ceil"``: OH = ceil((H - z) / s) + 1 less a window that would start at or past H,
    the last window clipped to the input (positions past the edge take no part).
    argmax (N, C, OH, OW) holds the window position p = i*z + j of the first maximum in
    row-major window order (p counts the whole z x z window, clipped or not). Window by
    window.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH = window_count(H, size, stride, rounding=rounding)
    OW = window_count(W, size, stride, rounding=rounding)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=xp.int64)
    for oh in range(OH):
        for ow in range(OW):
            win = x[:, :, oh * stride:oh * stride + size, ow * stride:ow * stride + size]
            h, w = win.shape[2:]                                   # size x size unless clipped
            i, j = divmod(win.reshape(N, C, h * w).argmax(axis=2), w)  # the first maximum
            argmax[:, :, oh, ow] = i * size + j
            y[:, :, oh, ow] = win.max(axis=(2, 3))
    return y, argmax


def pool_backward(dy, argmax, x_shape, *, size=3, stride=2):
    """dx[n, c, oh*s + i, ow*s + j] += dy[n, c, oh, ow] for (i, j) = divmod(argmax, z):
    each window sends its gradient to its first maximum; overlapping windows accumulate.
    Windows clipped at the edge (ceil rounding) are handled on a grid grown to hold them
    whole, cut back to x's shape at the end."""
    xp = get_array_module(dy)
    N, C, OH, OW = dy.shape
    H, W = max(x_shape[2], (OH - 1) * stride + size), max(x_shape[3], (OW - 1) * stride + size)
    dx = xp.zeros((N, C, H, W), dtype=dy.dtype)
    positions = xp.arange(size * size)
    for oh in range(OH):
        for ow in range(OW):
            winner = argmax[:, :, oh, ow, None] == positions       # (N, C, z*z) one-hot
            sent = (winner * dy[:, :, oh, ow, None]).reshape(N, C, size, size)
            dx[:, :, oh * stride:oh * stride + size, ow * stride:ow * stride + size] += sent
    return dx[:, :, :x_shape[2], :x_shape[3]]


def _bin(i, size, out):
    """Positions floor(i size / out) to ceil((i + 1) size / out), end excluded."""
    return slice(i * size // out, -(-(i + 1) * size // out))


def adaptive_pool_forward(x, out):
    """y[n, c, i, j] = the mean of x[n, c] over the rows of bin i and the columns of bin j
    (``_bin``), (OH, OW) = ``out``. Bin by bin."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = out
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = x[:, :, _bin(i, H, OH), _bin(j, W, OW)].mean(axis=(2, 3))
    return y


def adaptive_pool_backward(dy, x_shape):
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


def _lrn_denominator(x, size, alpha, k):
    """s[n, c] = k + alpha * sum_{c' = max(0, c - size//2)}^{min(C-1, c + size//2)} x[n, c']^2"""
    xp = get_array_module(x)
    C, half = x.shape[1], size // 2
    s = xp.empty_like(x)
    for c in range(C):
        window = x[:, max(0, c - half):min(C, c + half + 1)]       # (N, <= size, H, W)
        s[:, c] = k + alpha * (window * window).sum(axis=1)
    return s


def lrn_forward(x, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """b[c] = a[c] / (k + alpha * sum_{c' in window(c)} a[c']^2)^beta

    The paper's form: alpha multiplies the sum as is (not divided by ``size``), and the
    window of channel c is c - size//2 .. c + size//2 clipped at the channel edges.
    """
    return x / _lrn_denominator(x, size, alpha, k) ** beta


def lrn_backward(dy, x, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """dx[c] = dy[c] s[c]^-beta
              - 2 alpha beta x[c] sum_{c' in window(c)} dy[c'] x[c'] s[c']^(-beta-1)

    with s the denominator of ``lrn_forward``: channel c' depends on x[c] through s[c']
    exactly when c is in the window of c' (the window is symmetric).
    """
    C, half = x.shape[1], size // 2
    s = _lrn_denominator(x, size, alpha, k)
    r = dy * x * s ** (-beta - 1)                                   # dy[c'] x[c'] s[c']^(-beta-1)
    dx = dy * s ** -beta
    for c in range(C):
        window = r[:, max(0, c - half):min(C, c + half + 1)]       # (N, <= size, H, W)
        dx[:, c] -= 2 * alpha * beta * x[:, c] * window.sum(axis=1)
    return dx


def sgd_update(w, v, g, *, lr, momentum, weight_decay, form="paper"):
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
