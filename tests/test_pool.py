"""Max pooling: naive-loop reference with ties, gradient conservation, finite differences."""
import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layers import backend, blocking, pool
from layers.layout import LAYOUTS, transpose
from tests.gradient_check import assert_directional, fixture_settings
from tests.tolerance import tol


def naive_pool(x, dy, size, stride):
    """(y, dx) by loops: the first maximum in row-major window order takes the gradient."""
    N, C, H, W = x.shape
    OH, OW = (H - size) // stride + 1, (W - size) // stride + 1
    y = numpy.empty((N, C, OH, OW))
    dx = numpy.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    win = x[n, c, oh * stride:oh * stride + size, ow * stride:ow * stride + size]
                    p = int(numpy.argmax(win))           # numpy returns the first maximum
                    i, j = divmod(p, size)
                    y[n, c, oh, ow] = win[i, j]
                    dx[n, c, oh * stride + i, ow * stride + j] += dy[n, c, oh, ow]
    return y, dx


@st.composite
def pool_configs(draw):
    size = draw(st.integers(1, 4))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)),
                       draw(st.integers(size, size + 6)), draw(st.integers(size, size + 6))),
                size=size, stride=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**32 - 1)),
                layout=draw(st.sampled_from(LAYOUTS)))


def pool_in_layout(xp, x, dy_of_y, cfg):
    """(y, dx) as NCHW host arrays from pool in the config's layout; ``dy_of_y`` gives
    the NCHW upstream gradient for the NCHW output y."""
    lay = cfg["layout"]
    y, cache = pool.forward(xp.asarray(transpose(x, "NCHW", lay)), size=cfg["size"],
                            stride=cfg["stride"], layout=lay)
    y = transpose(backend.asnumpy(y), lay, "NCHW")
    dy = dy_of_y(y)
    dx = pool.backward(xp.asarray(transpose(dy, "NCHW", lay)), cache)
    return y, dy, transpose(backend.asnumpy(dx), lay, "NCHW")


@fixture_settings
@given(cfg=pool_configs())
def test_forward_and_backward_match_naive_loop_with_ties(xp, dtype, cfg):
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.integers(-2, 3, cfg["shape"]).astype(dtype)    # few values: many ties
    h = dict(size=cfg["size"], stride=cfg["stride"])
    y, dy, dx = pool_in_layout(xp, x, lambda y: rng.standard_normal(y.shape).astype(dtype),
                               cfg)
    y_ref, dx_ref = naive_pool(x, dy.astype(float), **h)
    assert y.dtype == dtype and dx.dtype == dtype
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_allclose(dx, dx_ref, **tol(dtype))
    # Every output sends its whole gradient to exactly one input.
    assert abs(float(dx.astype(float).sum()) - dy.astype(float).sum()) \
        <= tol(dtype)["rtol"] * abs(dy.astype(float)).sum() + tol(dtype)["atol"]


@fixture_settings
@given(cfg=pool_configs(), budget=st.sampled_from([1, 300, 2000, 10**9]))
def test_blocks_of_planes_give_the_naive_loop_exactly(xp, dtype, cfg, budget):
    # Integer x (many ties) and integer dy: every sum is exact, so any blocking of the
    # (N, C) planes (one channel per block ... one block) must equal the loop bit for bit.
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.integers(-2, 3, cfg["shape"]).astype(dtype)
    h = dict(size=cfg["size"], stride=cfg["stride"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blocking, "block_bytes", lambda _: budget)
        y, dy, dx = pool_in_layout(xp, x, lambda y: rng.integers(-3, 4, y.shape).astype(dtype),
                                   cfg)
    y_ref, dx_ref = naive_pool(x, dy.astype(float), **h)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(dx, dx_ref)


@fixture_settings
@given(cfg=pool_configs())
def test_backward_matches_finite_differences(xp, cfg):
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"])                 # continuous: no ties
    x = xp.asarray(transpose(x, "NCHW", cfg["layout"]))
    h = dict(size=cfg["size"], stride=cfg["stride"], layout=cfg["layout"])
    y, cache = pool.forward(x, **h)
    dy = xp.asarray(rng.standard_normal(y.shape))
    dx = pool.backward(dy, cache)
    assert_directional(lambda a: pool.forward(a, **h)[0], [x], [dx], dy, rng)


def test_tie_gradient_goes_to_first_maximum(xp, dtype):
    x = numpy.array([[[[1, 5, 5],
                       [5, 0, 5],
                       [2, 5, 1]]]], dtype=dtype)
    y, cache = pool.forward(xp.asarray(x), size=3, stride=2)
    dx = backend.asnumpy(pool.backward(xp.asarray(numpy.full((1, 1, 1, 1), 0.75, dtype)), cache))
    expected = numpy.zeros_like(x)
    expected[0, 0, 0, 1] = 0.75                           # row-major first of the four 5s
    numpy.testing.assert_array_equal(dx, expected)


def test_output_size_rounds_down(xp):
    x = xp.asarray(numpy.zeros((1, 1, 8, 9)))
    y, _ = pool.forward(x, size=3, stride=2)
    assert y.shape == (1, 1, 3, 4)                        # floor((8-3)/2)+1, floor((9-3)/2)+1
