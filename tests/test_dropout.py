"""Dropout: a given mask is deterministic; both modes agree with their test pass in expectation."""

import numpy
import pytest

from refnet.layers import backend, dropout
from tests.gradient_check import assert_directional
from tests.tolerance import tol


@pytest.mark.parametrize("mode, scale", [("paper", 1.0), ("inverted", 1 / (1 - 0.3))])
@pytest.mark.parametrize("mask_dtype", ["bool", "same"])
def test_given_mask_is_used_as_is_and_deterministic(xp, dtype, mode, scale, mask_dtype):
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(dtype)
    keep = rng.random((4, 6)) >= 0.3
    mask = keep if mask_dtype == "bool" else keep.astype(dtype)
    y1, c1 = dropout.forward(xp.asarray(x), p=0.3, train=True, mask=xp.asarray(mask), mode=mode)
    y2, _ = dropout.forward(xp.asarray(x), p=0.3, train=True, mask=xp.asarray(mask), mode=mode)
    assert y1.dtype == dtype
    numpy.testing.assert_array_equal(backend.asnumpy(y1), backend.asnumpy(y2))
    numpy.testing.assert_allclose(
        backend.asnumpy(y1), numpy.where(keep, x * scale, 0), **tol(dtype)
    )
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = backend.asnumpy(dropout.backward(xp.asarray(dy), c1))
    assert dx.dtype == dtype
    numpy.testing.assert_allclose(dx, numpy.where(keep, dy * scale, 0), **tol(dtype))


def test_mask_drawn_from_rng_matches_host_draw_and_seed(xp):
    x = xp.asarray(numpy.ones((3, 50)))
    y1, _ = dropout.forward(x, p=0.4, train=True, rng=numpy.random.default_rng(7))
    y2, _ = dropout.forward(x, p=0.4, train=True, rng=numpy.random.default_rng(7))
    keep = numpy.random.default_rng(7).random((3, 50)) >= 0.4
    numpy.testing.assert_array_equal(backend.asnumpy(y1), keep.astype(float))
    numpy.testing.assert_array_equal(backend.asnumpy(y1), backend.asnumpy(y2))


@pytest.mark.parametrize("mode", ["paper", "inverted"])
def test_test_pass(xp, dtype, mode):
    x = numpy.random.default_rng(1).standard_normal((3, 4)).astype(dtype)
    y, cache = dropout.forward(xp.asarray(x), p=0.25, train=False, mode=mode)
    factor = 0.75 if mode == "paper" else 1.0
    numpy.testing.assert_allclose(backend.asnumpy(y), x * factor, **tol(dtype))
    dy = numpy.random.default_rng(2).standard_normal((3, 4)).astype(dtype)
    numpy.testing.assert_allclose(
        backend.asnumpy(dropout.backward(xp.asarray(dy), cache)), dy * factor, **tol(dtype)
    )


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_modes_agree_in_expectation_with_their_test_pass(xp, p):
    """mean over n units of y_train / y_test -> 1 for both modes.

    With x = 1 the training output is m * c for a keep-mask m ~ Bernoulli(1-p), so the
    mean of y_train / y_test is (keep fraction) / (1-p), whose standard deviation is
    sqrt(p / ((1-p) n)). With n = 200,000 that is at most 0.0067 (p = 0.9); the
    tolerance is 5 standard deviations (a false failure has probability ~6e-7, and the
    seed is fixed, so the test is repeatable).
    """
    n = 200_000
    x = xp.asarray(numpy.ones(n))
    sigma = numpy.sqrt(p / ((1 - p) * n))
    for mode in ("paper", "inverted"):
        y_train, _ = dropout.forward(
            x, p=p, train=True, rng=numpy.random.default_rng(11), mode=mode
        )
        y_test, _ = dropout.forward(x, p=p, train=False, mode=mode)
        ratio = float(backend.asnumpy(y_train).mean() / backend.asnumpy(y_test).mean())
        assert abs(ratio - 1) < 5 * sigma, (mode, ratio)


def test_p_zero_keeps_everything(xp):
    x = xp.asarray(numpy.random.default_rng(3).standard_normal((5, 5)))
    for mode in ("paper", "inverted"):
        y, _ = dropout.forward(x, p=0.0, train=True, rng=numpy.random.default_rng(0), mode=mode)
        numpy.testing.assert_array_equal(backend.asnumpy(y), backend.asnumpy(x))


@pytest.mark.parametrize("mode", ["paper", "inverted"])
def test_backward_matches_finite_differences(xp, mode):
    rng = numpy.random.default_rng(4)
    x = xp.asarray(rng.standard_normal((3, 7)))
    mask = xp.asarray(rng.random((3, 7)) >= 0.5)
    y, cache = dropout.forward(x, p=0.5, train=True, mask=mask, mode=mode)
    dy = xp.asarray(rng.standard_normal(y.shape))
    f = lambda a: dropout.forward(a, p=0.5, train=True, mask=mask, mode=mode)[0]  # noqa: E731
    assert_directional(f, [x], [dropout.backward(dy, cache)], dy, rng)
