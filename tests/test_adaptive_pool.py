"""Adaptive average pooling: PyTorch's bins, the plain loops, PyTorch itself, finite
differences, both layouts."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import adaptive_pool, backend, reference
from refnet.layers.layout import transpose
from tests.gradient_check import assert_directional, fixture_settings

# (N, C, H, W) and (OH, OW): sides below, at and above the output side
dims = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 14), st.integers(1, 14))
outs = st.tuples(st.integers(1, 7), st.integers(1, 7))
layouts = st.sampled_from(["NCHW", "CHWN"])


def close(a, b, dtype):
    rtol = 1e-5 if dtype == numpy.float32 else 1e-13
    numpy.testing.assert_allclose(
        backend.asnumpy(a),
        backend.asnumpy(b),
        rtol=rtol,
        atol=rtol * (1 + float(numpy.max(numpy.abs(b)))),
    )


def test_bins_follow_pytorchs_rule():
    # start floor(i H / OH), end ceil((i + 1) H / OH): overlapping where H / OH is not whole
    assert adaptive_pool.bins(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert adaptive_pool.bins(13, 6) == [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13)]
    assert adaptive_pool.bins(6, 6) == [(i, i + 1) for i in range(6)]
    assert adaptive_pool.bins(2, 3) == [(0, 1), (0, 2), (1, 2)]


@fixture_settings
@given(nchw=dims, out=outs, layout=layouts, seed=st.integers(0, 2**32 - 1))
def test_forward_and_backward_equal_the_plain_loops(xp, dtype, nchw, out, layout, seed):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(nchw).astype(dtype)  # (N, C, H, W)
    y, cache = adaptive_pool.forward(xp.asarray(transpose(x, "NCHW", layout)), out, layout=layout)
    assert y.dtype == dtype
    want = reference.adaptive_pool_forward(x.astype(numpy.float64), out)
    close(transpose(backend.asnumpy(y), layout, "NCHW"), want, dtype)
    dy = rng.standard_normal(want.shape).astype(dtype)  # (N, C, OH, OW)
    dx = adaptive_pool.backward(xp.asarray(transpose(dy, "NCHW", layout)), cache)
    assert dx.dtype == dtype and dx.shape == cache.x_shape
    close(
        transpose(backend.asnumpy(dx), layout, "NCHW"),
        reference.adaptive_pool_backward(dy.astype(numpy.float64), nchw),
        dtype,
    )


@fixture_settings
@given(nchw=dims, out=outs, layout=layouts, seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences(xp, nchw, out, layout, seed):
    rng = numpy.random.default_rng(seed)
    x = xp.asarray(transpose(rng.standard_normal(nchw), "NCHW", layout))
    y, cache = adaptive_pool.forward(x, out, layout=layout)
    dy = xp.asarray(rng.standard_normal(y.shape))
    assert_directional(
        lambda a: adaptive_pool.forward(a, out, layout=layout)[0],
        [x],
        [adaptive_pool.backward(dy, cache)],
        dy,
        rng,
    )


@pytest.mark.parametrize(
    "nchw, out",
    [
        ((2, 3, 13, 13), (6, 6)),
        ((2, 3, 6, 6), (6, 6)),
        ((1, 2, 5, 11), (3, 4)),
        ((2, 2, 4, 3), (6, 6)),
    ],
)
def test_equals_pytorchs_adaptive_avg_pool2d(nchw, out):
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal(nchw)
    dy = rng.standard_normal(nchw[:2] + out)
    y, cache = adaptive_pool.forward(x, out)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, out)
    yt.backward(torch.tensor(dy))
    close(y, yt.detach().numpy(), numpy.float64)
    close(adaptive_pool.backward(dy, cache), xt.grad.numpy(), numpy.float64)


def test_the_same_side_is_the_identity():
    x = numpy.random.default_rng(2).standard_normal((2, 3, 6, 6))
    y, cache = adaptive_pool.forward(x, 6)
    assert numpy.array_equal(y, x) and y is not x
    assert numpy.array_equal(adaptive_pool.backward(x, cache), x)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="adaptive_pool: x must be 4-D"):
        adaptive_pool.forward(numpy.zeros((2, 3)))
    with pytest.raises(ValueError, match="adaptive_pool: layout"):
        adaptive_pool.forward(numpy.zeros((1, 1, 1, 1)), layout="NHWC")
    with pytest.raises(ValueError, match="adaptive_pool: out must be >= 1, got 0"):
        adaptive_pool.forward(numpy.zeros((1, 1, 4, 4)), (0, 2))
    _, cache = adaptive_pool.forward(numpy.zeros((2, 3, 8, 8)), 4)
    with pytest.raises(ValueError, match="adaptive_pool: dy has shape"):
        adaptive_pool.backward(numpy.zeros((2, 3, 8, 8)), cache)
