"""LRN (the paper's form): naive-loop reference, finite differences, special cases."""
import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layers import backend, blocking, lrn
from layers.layout import LAYOUTS, transpose
from tests.gradient_check import assert_directional, fixture_settings
from tests.tolerance import tol


def naive_lrn(x, size, alpha, beta, k):
    """b[c] = a[c] / (k + alpha * sum_{clipped window} a^2)^beta, one channel at a time."""
    y = numpy.empty_like(x)
    C, half = x.shape[1], size // 2
    for c in range(C):
        lo, hi = max(0, c - half), min(C - 1, c + half)
        s = k + alpha * numpy.sum(x[:, lo:hi + 1] ** 2, axis=1)
        y[:, c] = x[:, c] / s ** beta
    return y


@st.composite
def lrn_configs(draw):
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 10)),
                       draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                size=draw(st.sampled_from([1, 3, 5, 7, 9])),
                alpha=draw(st.floats(1e-3, 1.0)), beta=draw(st.floats(0.5, 1.0)),
                k=draw(st.floats(0.5, 3.0)), seed=draw(st.integers(0, 2**32 - 1)),
                layout=draw(st.sampled_from(LAYOUTS)))


def hyper(cfg):
    return dict(size=cfg["size"], alpha=cfg["alpha"], beta=cfg["beta"], k=cfg["k"])


@fixture_settings
@given(cfg=lrn_configs())
def test_forward_matches_naive_loop(xp, dtype, cfg):
    x = numpy.random.default_rng(cfg["seed"]).standard_normal(cfg["shape"]).astype(dtype)
    lay = cfg["layout"]
    y, _ = lrn.forward(xp.asarray(transpose(x, "NCHW", lay)), **hyper(cfg), layout=lay)
    y = transpose(backend.asnumpy(y), lay, "NCHW")
    assert y.dtype == dtype and y.shape == x.shape
    numpy.testing.assert_allclose(y, naive_lrn(x.astype(float), **hyper(cfg)), **tol(dtype))


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
            patch.setattr(blocking, "block_bytes", lambda _: bytes_)
            y, cache = lrn.forward(x, **h)
            results.append([backend.asnumpy(a) for a in (y, lrn.backward(dy, cache))])
    for a, b in zip(*results):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_backward_matches_finite_differences_of_naive_loop(xp, size):
    """The backward formula against the naive loop itself (paper's beta and k, big alpha)."""
    rng = numpy.random.default_rng(size)
    x = rng.standard_normal((2, 6, 2, 3))
    h = dict(size=size, alpha=0.7, beta=0.75, k=2.0)
    y, cache = lrn.forward(xp.asarray(x), **h)
    dy = rng.standard_normal(y.shape)
    dx = backend.asnumpy(lrn.backward(xp.asarray(dy), cache))
    assert_directional(lambda a: naive_lrn(a, **h), [x], [dx], dy, rng)


def test_alpha_zero_is_x_over_k_to_the_beta(xp, dtype):
    x = numpy.random.default_rng(1).standard_normal((2, 7, 3, 3)).astype(dtype)
    y, _ = lrn.forward(xp.asarray(x), size=5, alpha=0.0, beta=0.6, k=1.7)
    numpy.testing.assert_allclose(backend.asnumpy(y), x.astype(float) / 1.7 ** 0.6,
                                  **tol(dtype))


def test_alpha_is_not_divided_by_size(xp):
    """A single nonzero channel: s = k + alpha * a^2 exactly, whatever the window size."""
    x = numpy.zeros((1, 9, 1, 1))
    x[0, 4] = 3.0
    y, _ = lrn.forward(xp.asarray(x), size=9, alpha=0.5, beta=1.0, k=2.0)
    y = backend.asnumpy(y)
    assert y[0, 4, 0, 0] == pytest.approx(3.0 / (2.0 + 0.5 * 9.0), rel=1e-15)


def test_window_is_clipped_at_channel_edges(xp):
    """A window wider than all channels sums every channel for each output."""
    x = numpy.random.default_rng(2).standard_normal((1, 3, 2, 2))
    y, _ = lrn.forward(xp.asarray(x), size=9, alpha=0.3, beta=0.8, k=1.5)
    s = 1.5 + 0.3 * numpy.sum(x ** 2, axis=1, keepdims=True)
    numpy.testing.assert_allclose(backend.asnumpy(y), x / s ** 0.8, rtol=1e-14)
