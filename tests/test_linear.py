"""Fully connected layer: reference sum, finite differences, flattening of (N, ...) inputs."""

import numpy
from hypothesis import given
from hypothesis import strategies as st

from refnet.layers import backend, linear
from tests.gradient_check import assert_directional, fixture_settings
from tests.tolerance import tol


@st.composite
def linear_configs(draw):
    return dict(
        lead=(draw(st.integers(1, 4)),),
        features=draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)),
        out=draw(st.integers(1, 6)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def draw_arrays(cfg, dtype=numpy.float64):
    rng = numpy.random.default_rng(cfg["seed"])
    F = int(numpy.prod(cfg["features"]))
    x = rng.standard_normal(cfg["lead"] + cfg["features"]).astype(dtype)
    w = rng.standard_normal((cfg["out"], F)).astype(dtype)
    b = rng.standard_normal(cfg["out"]).astype(dtype)
    return x, w, b, rng


@fixture_settings
@given(cfg=linear_configs())
def test_forward_matches_explicit_sum(xp, dtype, cfg):
    x, w, b, _ = draw_arrays(cfg, dtype)
    y, _ = linear.forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    x2 = x.reshape(x.shape[0], -1).astype(float)
    ref = (x2[:, None, :] * w.astype(float)[None]).sum(axis=2) + b  # (N, O)
    scale = (abs(x2)[:, None, :] * abs(w.astype(float))[None]).sum(axis=2) + abs(b)
    assert y.dtype == dtype
    assert numpy.all(
        abs(backend.asnumpy(y) - ref) <= tol(dtype)["rtol"] * scale + tol(dtype)["atol"]
    )


@fixture_settings
@given(cfg=linear_configs())
def test_backward_matches_finite_differences(xp, cfg):
    x, w, b, rng = draw_arrays(cfg)
    args = [xp.asarray(a) for a in (x, w, b)]
    y, cache = linear.forward(*args)
    dy = xp.asarray(rng.standard_normal(y.shape))
    grads = linear.backward(dy, cache)
    for a, g in zip(args, grads, strict=True):
        assert g.shape == a.shape  # dx keeps x's (N, ...) shape
    assert_directional(lambda *a: linear.forward(*a)[0], args, grads, dy, rng)


@fixture_settings
@given(cfg=linear_configs())
def test_transposed_input_gets_its_gradient_in_the_same_order(xp, dtype, cfg):
    """x as the transpose of a contiguous (F, N) array (the network's batch-innermost maps,
    flattened): dx equals the explicit sum dy @ w and is laid out like x (dx.T
    contiguous), so the layers below read it without a transposing copy."""
    x, w, b, rng = draw_arrays(cfg, dtype)
    x2 = x.reshape(x.shape[0], -1)
    xt = xp.asarray(numpy.ascontiguousarray(x2.T)).T  # (N, F) view
    _, cache = linear.forward(xt, xp.asarray(w), xp.asarray(b))
    dy = rng.standard_normal((x2.shape[0], w.shape[0])).astype(dtype)
    dx, dw, db = (backend.asnumpy(g) for g in linear.backward(xp.asarray(dy), cache))
    if x2.shape[0] > 1 and x2.shape[1] > 1:
        assert dx.T.flags.c_contiguous and not dx.flags.c_contiguous
    ref = (dy.astype(float)[:, :, None] * w.astype(float)[None]).sum(axis=1)  # (N, F)
    scale = (abs(dy.astype(float))[:, :, None] * abs(w.astype(float))[None]).sum(axis=1)
    assert numpy.all(abs(dx - ref) <= tol(dtype)["rtol"] * scale + tol(dtype)["atol"])
    ref_w = (dy.astype(float)[:, :, None] * x2.astype(float)[:, None, :]).sum(axis=0)
    scale_w = (abs(dy.astype(float))[:, :, None] * abs(x2.astype(float))[:, None, :]).sum(axis=0)
    assert numpy.all(abs(dw - ref_w) <= tol(dtype)["rtol"] * scale_w + tol(dtype)["atol"])
