"""Softmax cross-entropy: direct log-sum-exp formula, row sums, shift invariance, FD."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import backend, softmax
from tests.gradient_check import assert_directional, fixture_settings
from tests.tolerance import tol


@st.composite
def problems(draw):
    N, M = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return 3 * rng.standard_normal((N, M)), rng.integers(0, M, N), rng


@fixture_settings
@given(problem=problems())
def test_loss_and_probabilities_match_direct_formula(xp, dtype, problem):
    z, labels, _ = problem
    z = z.astype(dtype)
    loss, _ = softmax.forward(xp.asarray(z), xp.asarray(labels))
    zf = z.astype(float)
    direct = numpy.mean(numpy.log(numpy.exp(zf).sum(axis=1)) - zf[numpy.arange(len(z)), labels])
    assert loss.shape == () and loss.dtype == dtype
    numpy.testing.assert_allclose(
        float(loss), direct, rtol=tol(dtype)["rtol"] * 10, atol=tol(dtype)["atol"] * 10
    )
    p = backend.asnumpy(softmax.probabilities(xp.asarray(z)))
    assert p.dtype == dtype
    numpy.testing.assert_allclose(
        p, numpy.exp(zf) / numpy.exp(zf).sum(axis=1, keepdims=True), **tol(dtype)
    )


@fixture_settings
@given(problem=problems(), dloss=st.floats(-3, 3))
def test_gradient_rows_sum_to_zero_and_match_finite_differences(xp, problem, dloss):
    z, labels, rng = problem
    zx = xp.asarray(z)
    loss, cache = softmax.forward(zx, xp.asarray(labels))
    g = softmax.backward(dloss, cache)
    assert g.shape == z.shape and g.dtype == z.dtype
    numpy.testing.assert_allclose(backend.asnumpy(g).sum(axis=1), 0.0, atol=1e-15)
    assert_directional(
        lambda a: softmax.forward(a, xp.asarray(labels))[0], [zx], [g], xp.asarray(dloss), rng
    )


@fixture_settings
@given(problem=problems())
def test_invariant_to_adding_a_constant_per_row(xp, problem):
    z, labels, rng = problem
    shifted = z + 50 * rng.standard_normal((z.shape[0], 1))
    l1, c1 = softmax.forward(xp.asarray(z), labels)
    l2, c2 = softmax.forward(xp.asarray(shifted), labels)
    numpy.testing.assert_allclose(float(l2), float(l1), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(
        backend.asnumpy(softmax.backward(1.0, c2)),
        backend.asnumpy(softmax.backward(1.0, c1)),
        atol=1e-13,
    )


def test_huge_logits_do_not_overflow(xp, dtype):
    z = numpy.array([[1000.0, 0.0], [-1000.0, 0.0]], dtype=dtype)
    loss, cache = softmax.forward(xp.asarray(z), numpy.array([0, 0]))
    assert float(loss) == 500.0  # (0 + 1000) / 2
    assert numpy.all(numpy.isfinite(backend.asnumpy(softmax.backward(1.0, cache))))
