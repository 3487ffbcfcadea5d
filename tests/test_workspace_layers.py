"""Every layer with its large arrays from a workspace: against ``layers.reference``.

The workspace here hands out every array (thresholds patched to zero), and fills each
one with garbage first (NaN, all bits set), so a layer that reads memory before writing
it, or relies on fresh memory being zero, gives NaN or wrong numbers. Each layer runs
twice on different inputs through the same workspace (the second time from memory the
first one used), and the second run must equal the layer without a workspace bit for
bit and ``layers.reference`` (float64) to round-off.
"""

import numpy
import pytest

from refnet.layers import conv, dropout, linear, lrn, pool, reference, relu, workspace
from refnet.layers.layout import LAYOUTS, transpose
from refnet.layers.workspace import FRESH, Workspace
from tests.tolerance import tol


class Poisoned(Workspace):
    """A workspace whose arrays come filled with garbage."""

    def empty(self, xp, shape, dtype):
        a = super().empty(xp, shape, dtype)
        dtype = numpy.dtype(dtype)
        if dtype.kind == "f":
            a.fill(numpy.nan)
        elif dtype.kind == "b":
            a.fill(True)
        else:
            a.fill(numpy.iinfo(dtype).max)
        return a


@pytest.fixture
def ws(monkeypatch):
    monkeypatch.setattr(workspace, "MIN_BYTES", 1)  # every array from the workspace
    monkeypatch.setattr(workspace, "PLAN_BYTES", 8 << 10)  # most of them from the arena
    return Poisoned()


def _twice(ws, run, make):
    """``run(ws, *make(seed))`` for two seeds through ``ws``, a pass each; the second
    result, checked bit for bit against ``run(FRESH, ...)`` on the same inputs."""
    for seed in (1, 2):
        ws.new_pass()
        inputs = make(seed)
        got = [numpy.array(a) for a in run(ws, *inputs)]  # copies: the pass may reuse
    want = run(FRESH, *inputs)
    for g, w in zip(got, want, strict=True):
        assert numpy.array_equal(g, numpy.asarray(w)), "workspace and fresh arrays differ"
    return inputs, got


def _close(got, want, normwise=False):
    """Equal to round-off: elementwise, or (Winograd, whose transforms round differently)
    relative to the largest entry."""
    if normwise:
        assert abs(got - want).max() <= 1e-12 * abs(want).max()
    else:
        numpy.testing.assert_allclose(got, want, **tol(numpy.float64))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "algo, kernel, stride, pad, groups",
    [("gemm", 3, 2, 1, 2), ("winograd", 3, 1, 1, 2), ("winograd", 5, 1, 2, 1)],
)
@pytest.mark.parametrize("keep_cols", [True, False])
def test_conv(ws, layout, algo, kernel, stride, pad, groups, keep_cols):
    hyper = dict(stride=stride, pad=pad, groups=groups)

    def make(seed):
        rng = numpy.random.default_rng(seed)
        x = rng.standard_normal((3, 4, 11, 9))
        w = rng.standard_normal((6, 4 // groups, kernel, kernel))
        b = rng.standard_normal(6)
        oh, ow = ((s + 2 * pad - kernel) // stride + 1 for s in (11, 9))
        return x, w, b, rng.standard_normal((3, 6, oh, ow))

    def run(ws, x, w, b, dy):
        y, cache = conv.forward(
            transpose(x, "NCHW", layout),
            w,
            b,
            **hyper,
            algo=algo,
            keep_cols=keep_cols,
            layout=layout,
            ws=ws,
        )
        dx, dw, db = conv.backward(transpose(dy, "NCHW", layout), cache, ws=ws)
        return transpose(y, layout, "NCHW"), transpose(dx, layout, "NCHW"), dw, db

    (x, w, b, dy), (y, dx, dw, db) = _twice(ws, run, make)
    normwise = algo == "winograd"
    _close(y, reference.conv_forward(x, w, b, **hyper), normwise)
    for g, want in zip((dx, dw, db), reference.conv_backward(dy, x, w, **hyper), strict=True):
        _close(g, want, normwise)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rounding, H", [("floor", 13), ("ceil", 12)])
def test_pool(ws, layout, rounding, H):
    def make(seed):
        rng = numpy.random.default_rng(seed)
        x = rng.integers(0, 4, (3, 5, H, H)).astype(float)  # ties
        oh = len(range(0, H - 3 + (2 if rounding == "ceil" else 1), 2))
        return x, rng.standard_normal((3, 5, oh, oh))

    def run(ws, x, dy):
        y, cache = pool.forward(
            transpose(x, "NCHW", layout), rounding=rounding, layout=layout, ws=ws
        )
        dx = pool.backward(transpose(dy, "NCHW", layout), cache, ws=ws)
        return transpose(y, layout, "NCHW"), transpose(dx, layout, "NCHW")

    (x, dy), (y, dx) = _twice(ws, run, make)
    y_ref, argmax = reference.pool_forward(x, rounding=rounding)
    _close(y, y_ref)
    _close(dx, reference.pool_backward(dy, argmax, x.shape))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lrn(ws, layout):
    hyper = dict(size=5, alpha=0.3, beta=0.75, k=2.0)  # alpha large: every term counts

    def make(seed):
        rng = numpy.random.default_rng(seed)
        return rng.standard_normal((4, 9, 6, 7)), rng.standard_normal((4, 9, 6, 7))

    def run(ws, x, dy):
        y, cache = lrn.forward(transpose(x, "NCHW", layout), **hyper, layout=layout, ws=ws)
        dx = lrn.backward(transpose(dy, "NCHW", layout), cache, ws=ws)
        return transpose(y, layout, "NCHW"), transpose(dx, layout, "NCHW")

    (x, dy), (y, dx) = _twice(ws, run, make)
    _close(y, reference.lrn_forward(x, **hyper))
    _close(dx, reference.lrn_backward(dy, x, **hyper))


def test_relu_linear_dropout(ws):
    def make(seed):
        rng = numpy.random.default_rng(seed)
        x, w, b = (rng.standard_normal(s) for s in ((16, 40), (24, 40), (24,)))
        mask = rng.random((16, 24)) >= 0.5
        return x, w, b, mask, rng.standard_normal((16, 24))

    def run(ws, x, w, b, mask, dy):
        h, c1 = linear.forward(x, w, b, ws=ws)
        r, c2 = relu.forward(h, ws=ws)
        d, c3 = dropout.forward(r, p=0.5, train=True, mask=mask, mode="inverted", ws=ws)
        e, _ = dropout.forward(r, p=0.5, train=False, mode="paper", ws=ws)
        g = relu.backward(dropout.backward(dy, c3, ws=ws), c2, ws=ws)
        dx, dw, db = linear.backward(g, c1, ws=ws)
        return d, e, dx, dw, db

    (x, w, b, mask, dy), (d, e, dx, dw, db) = _twice(ws, run, make)
    h = x @ w.T + b
    _close(d, numpy.maximum(h, 0) * mask * 2.0)
    _close(e, numpy.maximum(h, 0) * 0.5)
    g = dy * mask * 2.0 * (h > 0)
    for got, want in zip((dx, dw, db), (g @ w, g.T @ x, g.sum(axis=0)), strict=True):
        _close(got, want)
