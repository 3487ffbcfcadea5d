"""Convolution: both fast paths (im2col, Winograd) against ``layers.reference``, the
reference against a naive loop and finite differences, linearity, groups, im2col
adjointness."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import backend, blocking, conv, reference
from refnet.layers.layout import LAYOUTS, transpose
from tests.conv_cases import (
    CONFIGS,
    conv_args,
    conv_configs,
    draw_arrays,
    from_layout,
    growth,
    hyper,
    in_layout,
)
from tests.gradient_check import assert_directional, fixture_settings
from tests.tolerance import tol


def naive_conv(x, w, b, stride, pad, groups):
    """y[n, k, oh, ow] by explicit loops over every output element (float64, host)."""
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    Kg = K // groups
    xpad = numpy.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH = (H + 2 * pad - kh) // stride + 1
    OW = (W + 2 * pad - kw) // stride + 1
    y = numpy.empty((N, K, OH, OW))
    for n in range(N):
        for k in range(K):
            g = k // Kg
            for oh in range(OH):
                for ow in range(OW):
                    patch = xpad[
                        n,
                        g * Cg : (g + 1) * Cg,
                        oh * stride : oh * stride + kh,
                        ow * stride : ow * stride + kw,
                    ]
                    y[n, k, oh, ow] = numpy.sum(patch * w[k]) + b[k]
    return y


@pytest.mark.parametrize("algo", conv.ALGOS)
@fixture_settings
@given(data=st.data())
def test_forward_and_backward_match_reference(xp, dtype, algo, data):
    """y, dx, dw, db of the fast path in the drawn layout against ``layers.reference`` in
    float64 on the same inputs and a random dy: within the dtype's tolerance of the sum
    of |terms| (the reference on |x|, |w|, |b|, |dy|; its largest for Winograd), times
    the algorithm's ``growth``."""
    cfg = data.draw(CONFIGS[algo])
    x, w, b, rng = draw_arrays(cfg, dtype)
    x64, w64, b64 = (a.astype(float) for a in (x, w, b))
    y_ref = reference.conv_forward(x64, w64, b64, **hyper(cfg))
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    refs = (y_ref, *reference.conv_backward(dy.astype(float), x64, w64, **hyper(cfg)))
    scales = (
        reference.conv_forward(abs(x64), abs(w64), abs(b64), **hyper(cfg)),
        *reference.conv_backward(abs(dy.astype(float)), abs(x64), abs(w64), **hyper(cfg)),
    )
    y, cache = conv.forward(
        xp.asarray(in_layout(x, cfg)),
        xp.asarray(w),
        xp.asarray(b),
        **conv_args(cfg, algo),
        layout=cfg["layout"],
    )
    dx, dw, db = conv.backward(xp.asarray(in_layout(dy, cfg)), cache)
    got = (from_layout(y, cfg), from_layout(dx, cfg), backend.asnumpy(dw), backend.asnumpy(db))
    bound = tol(dtype)["rtol"] * growth(algo, cfg)
    for name, a, ref, scale in zip(("y", "dx", "dw", "db"), got, refs, scales, strict=True):
        assert a.dtype == dtype and a.shape == ref.shape, name
        if algo == "winograd":  # a tile's transforms mix its elements' round-off
            scale = scale.max()
        assert numpy.all(abs(a - ref) <= bound * scale + tol(dtype)["atol"]), name


@fixture_settings
@given(cfg=conv_configs())
def test_reference_forward_matches_naive_loop(xp, dtype, cfg):
    x, w, b, _ = draw_arrays(cfg, dtype)
    y = backend.asnumpy(
        reference.conv_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), **hyper(cfg))
    )
    ref = naive_conv(x.astype(float), w.astype(float), b.astype(float), **hyper(cfg))
    assert y.dtype == dtype and y.shape == ref.shape
    # Round-off is bounded by the sum of |terms|: the same conv on |x|, |w|, |b|.
    scale = naive_conv(
        abs(x.astype(float)), abs(w.astype(float)), abs(b.astype(float)), **hyper(cfg)
    )
    err = abs(y - ref)
    assert numpy.all(err <= tol(dtype)["rtol"] * scale + tol(dtype)["atol"])


@fixture_settings
@given(cfg=conv_configs())
def test_reference_backward_matches_finite_differences(xp, cfg):
    x, w, b, rng = draw_arrays(cfg)
    args = [xp.asarray(a) for a in (x, w, b)]
    y = reference.conv_forward(*args, **hyper(cfg))
    dy = xp.asarray(rng.standard_normal(y.shape))
    grads = reference.conv_backward(dy, args[0], args[1], **hyper(cfg))
    for a, g in zip(args, grads, strict=True):
        assert g.shape == a.shape and g.dtype == a.dtype
    assert_directional(lambda *a: reference.conv_forward(*a, **hyper(cfg)), args, grads, dy, rng)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(N=2, C=4, K=6, H=5, W=6, kh=3, kw=2, stride=2, pad=1, groups=2, seed=3),
        dict(N=1, C=3, K=2, H=4, W=4, kh=4, kw=1, stride=1, pad=0, groups=1, seed=4),
    ],
)
def test_reference_backward_matches_finite_differences_of_naive_loop(xp, cfg):
    """The reference's backward against the naive loop itself, independent of its forward."""
    x, w, b, rng = draw_arrays(cfg)
    y = naive_conv(x, w, b, **hyper(cfg))
    dy = rng.standard_normal(y.shape)
    grads = [
        backend.asnumpy(g)
        for g in reference.conv_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(w), **hyper(cfg))
    ]
    assert_directional(lambda *a: naive_conv(*a, **hyper(cfg)), [x, w, b], grads, dy, rng)


@pytest.mark.parametrize("algo", conv.ALGOS)
@fixture_settings
@given(data=st.data())
def test_backward_matches_finite_differences(xp, algo, data):
    """The fast path's own backward against float64 finite differences of its forward,
    in the drawn layout, with a random upstream gradient."""
    cfg = data.draw(CONFIGS[algo])
    x, w, b, rng = draw_arrays(cfg)
    opts = dict(conv_args(cfg, algo), layout=cfg["layout"])
    args = [xp.asarray(a) for a in (in_layout(x, cfg), w, b)]
    y, cache = conv.forward(*args, **opts)
    dy = xp.asarray(rng.standard_normal(y.shape))
    grads = conv.backward(dy, cache)
    for a, g in zip(args, grads, strict=True):
        assert g.shape == a.shape and g.dtype == a.dtype
    assert_directional(lambda *a: conv.forward(*a, **opts)[0], args, grads, dy, rng)


@fixture_settings
@given(cfg=conv_configs(max_kernel=5), a=st.floats(-3, 3), c=st.floats(-3, 3))
def test_linear_in_x_and_in_w(xp, cfg, a, c):
    x, w, b, rng = draw_arrays(cfg)
    x2, w2 = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    zero = xp.zeros_like(xp.asarray(b))

    def f(xx, ww):
        return backend.asnumpy(conv.forward(xp.asarray(xx), xp.asarray(ww), zero, **hyper(cfg))[0])

    # Round-off bound: the conv of absolute values, times the coefficients' size.
    bound = 1e-12 * (abs(a) + abs(c) + 1) * (f(abs(x) + abs(x2), abs(w) + abs(w2)) + 1)
    assert numpy.all(abs(f(a * x + c * x2, w) - (a * f(x, w) + c * f(x2, w))) <= bound)
    assert numpy.all(abs(f(x, a * w + c * w2) - (a * f(x, w) + c * f(x, w2))) <= bound)


@fixture_settings
@given(cfg=conv_configs())
def test_grouped_equals_per_group_convs_concatenated(xp, dtype, cfg):
    x, w, b, _ = draw_arrays(cfg, dtype)
    G, Cg, Kg = cfg["groups"], cfg["C"] // cfg["groups"], cfg["K"] // cfg["groups"]
    h = dict(stride=cfg["stride"], pad=cfg["pad"])
    y, _ = conv.forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), groups=G, **h)
    parts = [
        backend.asnumpy(
            conv.forward(
                xp.asarray(x[:, g * Cg : (g + 1) * Cg]),
                xp.asarray(w[g * Kg : (g + 1) * Kg]),
                xp.asarray(b[g * Kg : (g + 1) * Kg]),
                **h,
            )[0]
        )
        for g in range(G)
    ]
    numpy.testing.assert_allclose(
        backend.asnumpy(y), numpy.concatenate(parts, axis=1), **tol(dtype)
    )


@fixture_settings
@given(cfg=conv_configs())
def test_col2im_is_the_adjoint_of_im2col(xp, cfg):
    x, w, _, rng = draw_arrays(cfg)
    x = in_layout(x, cfg)
    h = dict(stride=cfg["stride"], pad=cfg["pad"], layout=cfg["layout"])
    cols = conv.im2col(xp.asarray(x), cfg["kh"], cfg["kw"], groups=cfg["groups"], **h)
    OH = (cfg["H"] + 2 * cfg["pad"] - cfg["kh"]) // cfg["stride"] + 1
    OW = (cfg["W"] + 2 * cfg["pad"] - cfg["kw"]) // cfg["stride"] + 1
    G = cfg["groups"]
    assert cols.shape == (G, cfg["C"] // G * cfg["kh"] * cfg["kw"], cfg["N"] * OH * OW)
    c = rng.standard_normal(cols.shape)
    back = backend.asnumpy(conv.col2im(xp.asarray(c), x.shape, cfg["kh"], cfg["kw"], **h))
    assert back.shape == x.shape
    lhs = numpy.sum(backend.asnumpy(cols) * c)
    rhs = numpy.sum(x * back)
    assert abs(lhs - rhs) <= 1e-12 * numpy.sum(abs(backend.asnumpy(cols) * c)) + 1e-13


@fixture_settings
@given(cfg=conv_configs(max_kernel=5), budget=st.sampled_from([1, 100, 1000]))
def test_col2im_in_blocks_of_channels_is_bit_identical(xp, cfg, budget):
    """Each element receives its kh*kw additions in the same order for any block size."""
    x, _, _, rng = draw_arrays(cfg)
    x = in_layout(x, cfg)
    h = dict(stride=cfg["stride"], pad=cfg["pad"], layout=cfg["layout"])
    shape = conv.im2col(xp.asarray(x), cfg["kh"], cfg["kw"], groups=cfg["groups"], **h).shape
    c = xp.asarray(rng.standard_normal(shape))
    results = []
    for bytes_ in (budget, None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(blocking, "block_bytes", lambda _, bytes_=bytes_: bytes_)
            results.append(backend.asnumpy(conv.col2im(c, x.shape, cfg["kh"], cfg["kw"], **h)))
    numpy.testing.assert_array_equal(*results)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_im2col_in_parts_equals_im2col(xp, layout, parts):
    """The bands of rows, filled in reverse order, give exactly ``im2col`` (7 parts of 4
    output rows: some bands are empty)."""
    x = xp.asarray(numpy.random.default_rng(4).standard_normal((2, 4, 9, 7)))
    h = dict(stride=2, pad=1, groups=2, layout=layout)
    cols, fills = conv.im2col_parts(x, 3, 2, parts=parts, **h)
    assert len(fills) == parts
    for fill in reversed(fills):
        fill()
    numpy.testing.assert_array_equal(
        backend.asnumpy(cols), backend.asnumpy(conv.im2col(x, 3, 2, **h))
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_im2col_layout_is_documented_one(xp, layout):
    """cols[g, (c, i, j), p] = xpad[n, g*Cg + c, oh*s + i, ow*s + j] with p over
    (n, oh, ow) for NCHW and (oh, ow, n) for CHWN."""
    rng = numpy.random.default_rng(5)
    x = rng.standard_normal((2, 4, 5, 6))
    s, p, kh, kw, G = 2, 1, 3, 2, 2
    cols = backend.asnumpy(
        conv.im2col(
            xp.asarray(transpose(x, "NCHW", layout)),
            kh,
            kw,
            stride=s,
            pad=p,
            groups=G,
            layout=layout,
        )
    )
    xpad = numpy.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    OH, OW = (5 + 2 * p - kh) // s + 1, (6 + 2 * p - kw) // s + 1
    for g, c, i, j, n, oh, ow in [
        (0, 1, 2, 1, 1, 2, 3),
        (1, 0, 0, 0, 0, 0, 0),
        (1, 1, 1, 1, 1, OH - 1, OW - 1),
    ]:
        row = (c * kh + i) * kw + j
        col = (n * OH + oh) * OW + ow if layout == "NCHW" else (oh * OW + ow) * 2 + n
        assert cols[g, row, col] == xpad[n, g * 2 + c, oh * s + i, ow * s + j]


def test_non_contiguous_input_gives_the_same_result(xp):
    rng = numpy.random.default_rng(6)
    big = rng.standard_normal((2, 3, 9, 14))
    view = big[:, :, 1:8, ::2]  # strided, not contiguous
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    for pad in (0, 1):
        y1, _ = conv.forward(xp.asarray(big)[:, :, 1:8, ::2], xp.asarray(w), xp.asarray(b), pad=pad)
        y2, _ = conv.forward(
            xp.asarray(numpy.ascontiguousarray(view)), xp.asarray(w), xp.asarray(b), pad=pad
        )
        numpy.testing.assert_array_equal(backend.asnumpy(y1), backend.asnumpy(y2))


def test_backward_without_dx_gives_the_same_dw_and_db(xp, dtype):
    cfg = dict(N=2, C=3, K=4, H=13, W=11, kh=5, kw=3, stride=2, pad=1, groups=1, seed=8)
    x, w, b, rng = draw_arrays(cfg, dtype)
    y, cache = conv.forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), **hyper(cfg))
    dy = xp.asarray(rng.standard_normal(y.shape).astype(dtype))
    dx, dw, db = conv.backward(dy, cache)
    none, dw2, db2 = conv.backward(dy, cache, need_dx=False)
    assert dx is not None and none is None
    numpy.testing.assert_array_equal(backend.asnumpy(dw2), backend.asnumpy(dw))
    numpy.testing.assert_array_equal(backend.asnumpy(db2), backend.asnumpy(db))


def test_backward_recomputing_columns_equals_cached_columns(xp, dtype):
    cfg = dict(N=2, C=4, K=6, H=9, W=8, kh=3, kw=3, stride=2, pad=1, groups=2, seed=9)
    x, w, b, rng = draw_arrays(cfg, dtype)
    args = (xp.asarray(x), xp.asarray(w), xp.asarray(b))
    y1, kept = conv.forward(*args, **hyper(cfg))
    y2, lean = conv.forward(*args, **hyper(cfg), keep_cols=False)
    assert kept.x is None and lean.cols is None
    numpy.testing.assert_array_equal(backend.asnumpy(y1), backend.asnumpy(y2))
    dy = xp.asarray(rng.standard_normal(y1.shape).astype(dtype))
    for a, b_ in zip(conv.backward(dy, kept), conv.backward(dy, lean), strict=True):
        numpy.testing.assert_array_equal(backend.asnumpy(a), backend.asnumpy(b_))


def test_precomputed_cols_are_used_as_given_and_checked(xp, dtype):
    cfg = dict(N=2, C=4, K=6, H=9, W=8, kh=3, kw=3, stride=2, pad=1, groups=2, seed=10)
    x, w, b, rng = draw_arrays(cfg, dtype)
    args = (xp.asarray(x), xp.asarray(w), xp.asarray(b))
    cols = conv.im2col(args[0], 3, 3, stride=2, pad=1, groups=2)
    y1, c1 = conv.forward(*args, **hyper(cfg))
    y2, c2 = conv.forward(*args, **hyper(cfg), cols=cols)
    assert c2.cols is cols  # kept as given, not copied
    numpy.testing.assert_array_equal(backend.asnumpy(y1), backend.asnumpy(y2))
    with pytest.raises(ValueError, match=r"cols has shape \(2, 18, 41\).*gives \(2, 18, 40\)"):
        conv.forward(*args, stride=2, pad=1, groups=2, cols=xp.zeros((2, 18, 41), dtype=dtype))
