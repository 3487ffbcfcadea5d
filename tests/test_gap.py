"""Global average pooling: the mean over positions, its laws, finite differences, both layouts."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import backend, gap
from refnet.layers.layout import transpose
from tests.gradient_check import assert_directional, fixture_settings

dims = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6))
layouts = st.sampled_from(["NCHW", "CHWN"])


def close(a, b, dtype):
    rtol = 1e-5 if dtype == numpy.float32 else 1e-12
    numpy.testing.assert_allclose(
        backend.asnumpy(a),
        backend.asnumpy(b),
        rtol=rtol,
        atol=rtol * (1 + float(numpy.max(numpy.abs(b)))),
    )


@fixture_settings
@given(nchw=dims, layout=layouts, seed=st.integers(0, 2**32 - 1))
def test_forward_is_the_mean_over_positions_and_backward_spreads_dy(xp, dtype, nchw, layout, seed):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(nchw).astype(dtype)  # (N, C, H, W)
    y, cache = gap.forward(xp.asarray(transpose(x, "NCHW", layout)), layout=layout)
    assert y.dtype == dtype and y.shape == nchw[:2]
    close(y, x.astype(numpy.float64).mean(axis=(2, 3)), dtype)
    dy = rng.standard_normal(nchw[:2]).astype(dtype)
    dx = backend.asnumpy(gap.backward(xp.asarray(dy), cache))
    assert dx.dtype == dtype and dx.shape == cache.x_shape
    N, C, H, W = nchw
    want = numpy.broadcast_to(dy[:, :, None, None] / (H * W), nchw)
    close(transpose(dx, layout, "NCHW"), want, dtype)
    # the sum of dx over a map's positions is its dy
    close(transpose(dx, layout, "NCHW").sum(axis=(2, 3)), dy, dtype)


@fixture_settings
@given(nchw=dims, layout=layouts, seed=st.integers(0, 2**32 - 1))
def test_linear_in_x(xp, nchw, layout, seed):
    rng = numpy.random.default_rng(seed)
    a, b = (xp.asarray(transpose(rng.standard_normal(nchw), "NCHW", layout)) for _ in "ab")
    s, t = rng.standard_normal(2)
    f = lambda v: gap.forward(v, layout=layout)[0]  # noqa: E731
    close(f(s * a + t * b), s * f(a) + t * f(b), numpy.float64)


@fixture_settings
@given(nchw=dims, layout=layouts, seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences(xp, nchw, layout, seed):
    rng = numpy.random.default_rng(seed)
    x = xp.asarray(transpose(rng.standard_normal(nchw), "NCHW", layout))
    y, cache = gap.forward(x, layout=layout)
    dy = xp.asarray(rng.standard_normal(y.shape))
    assert_directional(
        lambda a: gap.forward(a, layout=layout)[0], [x], [gap.backward(dy, cache)], dy, rng
    )


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="gap: x must be 4-D"):
        gap.forward(numpy.zeros((2, 3)))
    with pytest.raises(ValueError, match="gap: layout"):
        gap.forward(numpy.zeros((1, 1, 1, 1)), layout="NHWC")
    _, cache = gap.forward(numpy.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="gap: dy has shape"):
        gap.backward(numpy.zeros((3, 2)), cache)
