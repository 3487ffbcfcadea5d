"""Max pooling: the phase-plane fast path against ``layers.reference`` with ties and in
blocks, both roundings of the output size, the reference against finite differences,
gradient conservation, and ceil rounding against PyTorch's ``ceil_mode=True``."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import backend, blocking, pool, reference
from refnet.layers.layout import LAYOUTS, transpose
from tests.gradient_check import assert_directional, fixture_settings
from tests.tolerance import tol


@st.composite
def pool_configs(draw):
    size = draw(st.integers(1, 4))
    return dict(
        shape=(
            draw(st.integers(1, 2)),
            draw(st.integers(1, 3)),
            draw(st.integers(size, size + 6)),
            draw(st.integers(size, size + 6)),
        ),
        size=size,
        stride=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**32 - 1)),
        layout=draw(st.sampled_from(LAYOUTS)),
        rounding=draw(st.sampled_from(pool.ROUNDINGS)),
    )


def pool_in_layout(xp, x, dy_of_y, cfg):
    """(y, argmax, dy, dx) as NCHW host arrays from pool in the config's layout;
    ``dy_of_y`` gives the NCHW upstream gradient for the NCHW output y."""
    lay = cfg["layout"]
    y, cache = pool.forward(
        xp.asarray(transpose(x, "NCHW", lay)),
        size=cfg["size"],
        stride=cfg["stride"],
        rounding=cfg["rounding"],
        layout=lay,
    )
    y = transpose(backend.asnumpy(y), lay, "NCHW")
    argmax = transpose(backend.asnumpy(cache.argmax), lay, "NCHW")
    dy = dy_of_y(y)
    dx = pool.backward(xp.asarray(transpose(dy, "NCHW", lay)), cache)
    return y, argmax, dy, transpose(backend.asnumpy(dx), lay, "NCHW")


def reference_pool(x, dy, cfg):
    """(y, argmax, dx) of ``layers.reference`` for x and dy (NCHW)."""
    h = dict(size=cfg["size"], stride=cfg["stride"])
    y, argmax = reference.pool_forward(x, **h, rounding=cfg.get("rounding", "floor"))
    return y, argmax, reference.pool_backward(dy, argmax, x.shape, **h)


@fixture_settings
@given(data=st.data())
def test_forward_and_backward_match_reference_with_ties(xp, dtype, data):
    cfg = data.draw(pool_configs())
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.integers(-2, 3, cfg["shape"]).astype(dtype)  # few values: many ties
    y, argmax, dy, dx = pool_in_layout(
        xp, x, lambda y: rng.standard_normal(y.shape).astype(dtype), cfg
    )
    y_ref, argmax_ref, dx_ref = reference_pool(x, dy.astype(float), cfg)
    assert y.dtype == dtype and dx.dtype == dtype
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(argmax, argmax_ref)  # the same first maximum
    numpy.testing.assert_allclose(dx, dx_ref, **tol(dtype))
    # Every output sends its whole gradient to exactly one input.
    assert (
        abs(float(dx.astype(float).sum()) - dy.astype(float).sum())
        <= tol(dtype)["rtol"] * abs(dy.astype(float)).sum() + tol(dtype)["atol"]
    )


@fixture_settings
@given(data=st.data(), budget=st.sampled_from([1, 300, 2000, 10**9]))
def test_blocks_of_planes_give_the_reference_exactly(xp, dtype, data, budget):
    # Integer x (many ties) and integer dy: every sum is exact, so any blocking of the
    # (N, C) planes (one channel per block ... one block) must equal the reference bit
    # for bit.
    cfg = data.draw(pool_configs())
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.integers(-2, 3, cfg["shape"]).astype(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blocking, "block_bytes", lambda _: budget)
        y, _, dy, dx = pool_in_layout(
            xp, x, lambda y: rng.integers(-3, 4, y.shape).astype(dtype), cfg
        )
    y_ref, _, dx_ref = reference_pool(x, dy, cfg)
    numpy.testing.assert_array_equal(y, y_ref)
    numpy.testing.assert_array_equal(dx, dx_ref)


@fixture_settings
@given(data=st.data())
def test_reference_backward_matches_finite_differences(xp, data):
    cfg = data.draw(pool_configs())
    rng = numpy.random.default_rng(cfg["seed"])
    x = xp.asarray(rng.standard_normal(cfg["shape"]))  # continuous: no ties
    h = dict(size=cfg["size"], stride=cfg["stride"])
    rounding = cfg["rounding"]
    y, argmax = reference.pool_forward(x, **h, rounding=rounding)
    dy = xp.asarray(rng.standard_normal(y.shape))
    dx = reference.pool_backward(dy, argmax, x.shape, **h)
    assert_directional(
        lambda a: reference.pool_forward(a, **h, rounding=rounding)[0], [x], [dx], dy, rng
    )


@fixture_settings
@given(cfg=pool_configs())
def test_backward_matches_finite_differences(xp, cfg):
    rng = numpy.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"])  # continuous: no ties
    x = xp.asarray(transpose(x, "NCHW", cfg["layout"]))
    h = dict(size=cfg["size"], stride=cfg["stride"], layout=cfg["layout"], rounding=cfg["rounding"])
    y, cache = pool.forward(x, **h)
    dy = xp.asarray(rng.standard_normal(y.shape))
    dx = pool.backward(dy, cache)
    assert_directional(lambda a: pool.forward(a, **h)[0], [x], [dx], dy, rng)


def fast_pool(x, dy, **h):
    """(y, dx) of ``layers.pool``."""
    y, cache = pool.forward(x, **h)
    return y, pool.backward(dy, cache)


def reference_pool_pair(x, dy, **h):
    """(y, dx) of ``layers.reference``."""
    y, _, dx = reference_pool(x, dy, h)
    return y, dx


@pytest.mark.parametrize("pair", [fast_pool, reference_pool_pair])
def test_tie_gradient_goes_to_first_maximum(xp, dtype, pair):
    x = numpy.array([[[[1, 5, 5], [5, 0, 5], [2, 5, 1]]]], dtype=dtype)
    dy = numpy.full((1, 1, 1, 1), 0.75, dtype)
    y, dx = pair(xp.asarray(x), xp.asarray(dy), size=3, stride=2)
    expected = numpy.zeros_like(x)
    expected[0, 0, 0, 1] = 0.75  # row-major first of the four 5s
    assert backend.asnumpy(y)[0, 0, 0, 0] == 5
    numpy.testing.assert_array_equal(backend.asnumpy(dx), expected)


def test_output_size_rounds_down(xp):
    x = xp.asarray(numpy.zeros((1, 1, 8, 9)))
    y, _ = pool.forward(x, size=3, stride=2)
    assert y.shape == (1, 1, 3, 4)  # floor((8-3)/2)+1, floor((9-3)/2)+1


def test_output_size_rounds_up_with_ceil(xp):
    x = xp.asarray(numpy.zeros((1, 1, 8, 9)))
    y, _ = pool.forward(x, size=3, stride=2, rounding="ceil")
    assert y.shape == (1, 1, 4, 4)  # ceil((8-3)/2)+1, ceil((9-3)/2)+1
    # a window that would start past the input is dropped: 5 wide, 1-windows at stride 3
    # cover starts 0 and 3 (ceil((5-1)/3)+1 = 3 would start the third at 6 >= 5)
    y, _ = pool.forward(xp.asarray(numpy.zeros((1, 1, 5, 5))), size=1, stride=3, rounding="ceil")
    assert y.shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="rounding must be one of"):
        pool.forward(x, size=3, stride=2, rounding="up")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "shape, size, stride",
    [
        ((2, 3, 54, 54), 3, 2),  # AlexNet's 227 at 224: floor 26, ceil 27
        ((2, 4, 12, 13), 3, 2),  # pool5 at 224: floor 5, ceil 6 (and an odd side)
        ((1, 2, 10, 11), 3, 3),  # non-overlapping, clipped last window
        ((1, 2, 9, 8), 2, 2),  # the paper's 2/2 ablation on odd sides
        ((2, 2, 8, 11), 4, 3),
    ],
)
def test_ceil_matches_torch_forward_and_backward(layout, shape, size, stride):
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(sum(shape) + 10 * size + stride)
    x = rng.standard_normal(shape) - 3.0  # all negative: padding must not win
    y, cache = pool.forward(
        transpose(x, "NCHW", layout), size=size, stride=stride, rounding="ceil", layout=layout
    )
    y = transpose(y, layout, "NCHW")
    dy = rng.standard_normal(y.shape)  # random upstream gradient
    dx = transpose(pool.backward(transpose(dy, "NCHW", layout), cache), layout, "NCHW")
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, size, stride, ceil_mode=True)
    ty.backward(torch.tensor(dy))
    floor = torch.nn.functional.max_pool2d(tx, size, stride).shape
    assert y.shape == tuple(ty.shape) and y.shape[2:] != tuple(floor[2:])
    numpy.testing.assert_array_equal(y, ty.detach().numpy())
    numpy.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-13, atol=1e-15)
    y_ref, argmax_ref = reference.pool_forward(x, size=size, stride=stride, rounding="ceil")
    numpy.testing.assert_array_equal(y_ref, y)
    numpy.testing.assert_allclose(
        reference.pool_backward(dy, argmax_ref, x.shape, size=size, stride=stride),
        dx,
        rtol=1e-13,
        atol=1e-15,
    )
