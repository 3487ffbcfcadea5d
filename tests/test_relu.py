"""ReLU: reference, idempotence, gradient 0 at 0, finite differences."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import backend, relu
from tests.gradient_check import assert_directional, fixture_settings

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def draw(shape, seed, dtype):
    """Random values with some exact zeros mixed in."""
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.2] = 0.0
    return x.astype(dtype), rng


@fixture_settings
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_forward_backward_reference_and_idempotent(xp, dtype, shape, seed):
    x, rng = draw(shape, seed, dtype)
    y, cache = relu.forward(xp.asarray(x))
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(backend.asnumpy(y), numpy.where(x > 0, x, 0))
    y2, _ = relu.forward(y)
    numpy.testing.assert_array_equal(backend.asnumpy(y2), backend.asnumpy(y))
    dy = rng.standard_normal(shape).astype(dtype)
    dx = backend.asnumpy(relu.backward(xp.asarray(dy), cache))
    assert dx.dtype == dtype
    numpy.testing.assert_array_equal(dx, numpy.where(x > 0, dy, 0))  # 0 where x == 0


def test_gradient_at_zero_is_zero(xp):
    _, cache = relu.forward(xp.asarray(numpy.zeros((2, 3))))
    dx = relu.backward(xp.asarray(numpy.full((2, 3), 1.5)), cache)
    numpy.testing.assert_array_equal(backend.asnumpy(dx), 0.0)


@fixture_settings
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences(xp, shape, seed):
    rng = numpy.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal(shape))
    y, cache = relu.forward(x)
    dy = xp.asarray(rng.standard_normal(shape))
    assert_directional(lambda a: relu.forward(a)[0], [x], [relu.backward(dy, cache)], dy, rng)


@fixture_settings
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), budget=st.sampled_from([None, 8, 40, 1 << 20]))
def test_in_place_and_blocked_give_the_same(xp, dtype, shape, seed, budget):
    """``inplace=True`` writes over its argument and returns it; the backward's blocks
    (any budget, ``layers.blocking``) give the reference exactly."""
    from unittest.mock import patch

    from refnet.layers import blocking

    x, rng = draw(shape, seed, dtype)
    a = xp.asarray(x.copy())
    y, cache = relu.forward(a, inplace=True)
    assert y is a
    numpy.testing.assert_array_equal(backend.asnumpy(y), numpy.where(x > 0, x, 0))
    dy = rng.standard_normal(shape).astype(dtype)
    g = xp.asarray(dy.copy())
    with patch.object(blocking, "block_bytes", lambda _: budget):
        dx = relu.backward(g, cache, inplace=True)
        dx2 = relu.backward(xp.asarray(dy), cache)
    assert dx is g
    for d in (dx, dx2):
        numpy.testing.assert_array_equal(backend.asnumpy(d), numpy.where(x > 0, dy, 0))


def test_backward_of_a_strided_gradient(xp):
    """A non-contiguous dy (a view) gives the same as a contiguous one, in place too."""
    x, rng = draw((4, 6), 3, numpy.float64)
    _, cache = relu.forward(xp.asarray(x))
    big = rng.standard_normal((4, 12))
    want = numpy.where(x > 0, big[:, ::2], 0)
    numpy.testing.assert_array_equal(
        backend.asnumpy(relu.backward(xp.asarray(big)[:, ::2], cache)), want
    )
    g = xp.asarray(big.copy())
    dx = relu.backward(g[:, ::2], cache, inplace=True)
    numpy.testing.assert_array_equal(backend.asnumpy(dx), want)
    numpy.testing.assert_array_equal(backend.asnumpy(g)[:, ::2], want)
