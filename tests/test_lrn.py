"""LRN (the paper's form): the blocked fast path against ``layers.reference`` in both
layouts and any blocking, finite differences of both, special cases of both."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import backend, blocking, lrn, reference
from refnet.layers.layout import LAYOUTS, transpose
from tests.gradient_check import assert_directional, fixture_settings
from tests.tolerance import tol


@st.composite
def lrn_configs(draw):
    return dict(
        shape=(
            draw(st.integers(1, 2)),
            draw(st.integers(1, 10)),
            draw(st.integers(1, 3)),
            draw(st.integers(1, 3)),
        ),
        size=draw(st.sampled_from([1, 3, 5, 7, 9])),
        alpha=draw(st.floats(1e-3, 1.0)),
        beta=draw(st.floats(0.5, 1.0)),
        k=draw(st.floats(0.5, 3.0)),
        seed=draw(st.integers(0, 2**32 - 1)),
        layout=draw(st.sampled_from(LAYOUTS)),
    )


def hyper(cfg):
    return dict(size=cfg["size"], alpha=cfg["alpha"], beta=cfg["beta"], k=cfg["k"])


@fixture_settings
@given(data=st.data())
def test_forward_and_backward_match_reference(xp, dtype, data):
    """y and dx (random dy) in the drawn layout against ``layers.reference`` in float64:
    y elementwise, dx normwise (its two terms can cancel)."""
    cfg = data.draw(lrn_configs())
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    dy = rng.standard_normal(cfg["shape"]).astype(dtype)
    lay = cfg["layout"]
    y, cache = lrn.forward(xp.asarray(transpose(x, "NCHW", lay)), **hyper(cfg), layout=lay)
    dx = lrn.backward(xp.asarray(transpose(dy, "NCHW", lay)), cache)
    y, dx = (transpose(backend.asnumpy(a), lay, "NCHW") for a in (y, dx))
    assert y.dtype == dtype and y.shape == x.shape and dx.dtype == dtype
    x, dy = x.astype(float), dy.astype(float)
    numpy.testing.assert_allclose(y, reference.lrn_forward(x, **hyper(cfg)), **tol(dtype))
    dx_ref = reference.lrn_backward(dy, x, **hyper(cfg))
    assert abs(dx - dx_ref).max() <= tol(dtype)["rtol"] * abs(dx_ref).max() + tol(dtype)["atol"]


@fixture_settings
@given(cfg=lrn_configs())
def test_backward_matches_finite_differences(xp, cfg):
    rng = numpy.random.default_rng(cfg["seed"])
    x = xp.asarray(transpose(rng.standard_normal(cfg["shape"]), "NCHW", cfg["layout"]))
    h = dict(hyper(cfg), layout=cfg["layout"])
    y, cache = lrn.forward(x, **h)
    dy = xp.asarray(rng.standard_normal(y.shape))
    dx = lrn.backward(dy, cache)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert_directional(lambda a: lrn.forward(a, **h)[0], [x], [dx], dy, rng)


@fixture_settings
@given(cfg=lrn_configs(), budget=st.sampled_from([1, 200, 3000]))
def test_blocks_give_the_unblocked_result_exactly(xp, dtype, cfg, budget):
    """Any blocking (a row, a few rows, samples) repeats the same operations per element."""
    rng = numpy.random.default_rng(cfg["seed"])
    x = xp.asarray(rng.standard_normal(cfg["shape"]).astype(dtype))
    dy = xp.asarray(rng.standard_normal(cfg["shape"]).astype(dtype))
    h = dict(hyper(cfg), layout=cfg["layout"])
    results = []
    for bytes_ in (budget, 10**9):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(blocking, "block_bytes", lambda _, bytes_=bytes_: bytes_)
            y, cache = lrn.forward(x, **h)
            results.append([backend.asnumpy(a) for a in (y, lrn.backward(dy, cache))])
    for a, b in zip(*results, strict=True):
        numpy.testing.assert_array_equal(a, b)


@fixture_settings
@given(data=st.data())
def test_reference_backward_matches_finite_differences(xp, data):
    cfg = data.draw(lrn_configs())
    rng = numpy.random.default_rng(cfg["seed"])
    x = xp.asarray(rng.standard_normal(cfg["shape"]))
    dy = xp.asarray(rng.standard_normal(cfg["shape"]))
    dx = reference.lrn_backward(dy, x, **hyper(cfg))
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert_directional(lambda a: reference.lrn_forward(a, **hyper(cfg)), [x], [dx], dy, rng)


def fast_lrn(x, **h):
    return lrn.forward(x, **h)[0]


FORWARDS = [pytest.param(fast_lrn, id="fast"), pytest.param(reference.lrn_forward, id="reference")]


@pytest.mark.parametrize("forward", FORWARDS)
def test_alpha_zero_is_x_over_k_to_the_beta(xp, dtype, forward):
    x = numpy.random.default_rng(1).standard_normal((2, 7, 3, 3)).astype(dtype)
    y = forward(xp.asarray(x), size=5, alpha=0.0, beta=0.6, k=1.7)
    numpy.testing.assert_allclose(backend.asnumpy(y), x.astype(float) / 1.7**0.6, **tol(dtype))


@pytest.mark.parametrize("forward", FORWARDS)
def test_alpha_is_not_divided_by_size(xp, forward):
    """A single nonzero channel: s = k + alpha * a^2 exactly, whatever the window size."""
    x = numpy.zeros((1, 9, 1, 1))
    x[0, 4] = 3.0
    y = backend.asnumpy(forward(xp.asarray(x), size=9, alpha=0.5, beta=1.0, k=2.0))
    assert y[0, 4, 0, 0] == pytest.approx(3.0 / (2.0 + 0.5 * 9.0), rel=1e-15)


@pytest.mark.parametrize("forward", FORWARDS)
def test_window_is_clipped_at_channel_edges(xp, forward):
    """A window wider than all channels sums every channel for each output."""
    x = numpy.random.default_rng(2).standard_normal((1, 3, 2, 2))
    y = forward(xp.asarray(x), size=9, alpha=0.3, beta=0.8, k=1.5)
    s = 1.5 + 0.3 * numpy.sum(x**2, axis=1, keepdims=True)
    numpy.testing.assert_allclose(backend.asnumpy(y), x / s**0.8, rtol=1e-14)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_paper_beta_float32_matches_float64(xp, layout):
    """beta = 0.75 in float32 takes sqrt(sqrt(s)) / s for s^-beta (``lrn._inverse_power``):
    y and dx against the float64 reference, over values whose window sums span k to
    k + 100, so the scale runs over its whole range."""
    rng = numpy.random.default_rng(7)
    x = rng.standard_normal((3, 16, 5, 4)) * rng.uniform(0.1, 300.0, (3, 16, 1, 1))
    dy = rng.standard_normal(x.shape)
    p = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    y, cache = lrn.forward(
        xp.asarray(transpose(x.astype(numpy.float32), "NCHW", layout)), **p, layout=layout
    )
    dx = lrn.backward(xp.asarray(transpose(dy.astype(numpy.float32), "NCHW", layout)), cache)
    y, dx = (transpose(backend.asnumpy(a), layout, "NCHW") for a in (y, dx))
    s = numpy.asarray(backend.asnumpy(cache.s), dtype=float)
    assert s.min() < 2.5 and s.max() > 50  # the range the test is about
    numpy.testing.assert_allclose(y, reference.lrn_forward(x, **p), rtol=1e-6, atol=1e-6)
    dx_ref = reference.lrn_backward(dy, x, **p)
    assert abs(dx - dx_ref).max() <= 1e-6 * abs(dx_ref).max()
    scale = numpy.asarray(backend.asnumpy(cache.scale), dtype=float)
    numpy.testing.assert_allclose(scale, s**-0.75, rtol=3e-7)  # ~2 float32 ulp
