"""Every bad input at a public layer entry point raises with the offending value named."""

import re

import numpy
import pytest

from refnet.layers import conv, dropout, linear, lrn, pool, relu, softmax

f64 = numpy.float64


def arr(*shape, dtype=f64):
    return numpy.ones(shape, dtype=dtype)


def conv_args(**over):
    args = dict(x=arr(2, 4, 6, 6), w=arr(6, 2, 3, 3), b=arr(6))
    args.update(over)
    return args


@pytest.mark.parametrize(
    "kwargs, hyper, error, message",
    [
        (conv_args(x=arr(4, 6, 6)), {}, ValueError, r"x must be 4-D .* got shape \(4, 6, 6\)"),
        (conv_args(w=arr(6, 2, 3)), {}, ValueError, r"w must be 4-D .* got shape \(6, 2, 3\)"),
        (conv_args(b=arr(6, 1)), {}, ValueError, r"b must be 1-D .* got shape \(6, 1\)"),
        (conv_args(b=arr(5)), {"groups": 2}, ValueError, r"b has 5 entries but w has K=6"),
        (conv_args(), {}, ValueError, r"x has 4 channels but w expects 2 \* groups 1 = 2"),
        (
            conv_args(w=arr(6, 1, 3, 3)),
            {"groups": 3},
            ValueError,
            r"input channels C=4 not divisible by groups=3",
        ),
        (
            conv_args(w=arr(5, 2, 3, 3), b=arr(5)),
            {"groups": 2},
            ValueError,
            r"kernels K=5 not divisible by groups=2",
        ),
        (
            conv_args(w=arr(6, 2, 9, 3)),
            {"groups": 2, "pad": 1},
            ValueError,
            r"kernel height 9 is larger than the padded input height 8",
        ),
        (
            conv_args(w=arr(6, 2, 3, 9)),
            {"groups": 2},
            ValueError,
            r"kernel width 9 is larger than the padded input width 6",
        ),
        (conv_args(), {"groups": 2, "stride": 0}, ValueError, r"stride must be >= 1, got 0"),
        (conv_args(), {"groups": 2, "stride": 1.5}, ValueError, r"stride must be an integer.*1\.5"),
        (conv_args(), {"groups": 2, "pad": -1}, ValueError, r"pad must be >= 0, got -1"),
        (conv_args(), {"groups": 0}, ValueError, r"groups must be >= 1, got 0"),
        (
            conv_args(x=arr(2, 4, 6, 6, dtype=numpy.int64)),
            {"groups": 2},
            TypeError,
            r"expected float32 or float64 .* int64",
        ),
        (
            conv_args(w=arr(6, 2, 3, 3, dtype=numpy.float32)),
            {"groups": 2},
            TypeError,
            r"mixed dtypes \(float32, float64\)",
        ),
    ],
)
def test_conv_forward_errors(kwargs, hyper, error, message):
    with pytest.raises(error, match=message):
        conv.forward(kwargs["x"], kwargs["w"], kwargs["b"], **hyper)


def test_backward_rejects_wrong_dy_shape_and_dtype():
    cases = [
        (
            conv.backward,
            conv.forward(arr(2, 4, 6, 6), arr(6, 2, 3, 3), arr(6), groups=2)[1],
            (2, 6, 4, 4),
        ),
        (relu.backward, relu.forward(arr(2, 3))[1], (2, 3)),
        (lrn.backward, lrn.forward(arr(2, 3, 4, 4))[1], (2, 3, 4, 4)),
        (pool.backward, pool.forward(arr(2, 3, 5, 5))[1], (2, 3, 2, 2)),
        (dropout.backward, dropout.forward(arr(2, 3), train=False)[1], (2, 3)),
        (linear.backward, linear.forward(arr(2, 3), arr(4, 3), arr(4))[1], (2, 4)),
    ]
    for backward, cache, shape in cases:
        wrong = tuple(s + 1 for s in shape)
        with pytest.raises(
            ValueError,
            match=re.escape(f"dy has shape {wrong} but the forward output had shape {shape}"),
        ):
            backward(arr(*wrong), cache)
        with pytest.raises(
            TypeError, match="dy has dtype float32 but the forward pass ran in float64"
        ):
            backward(arr(*shape, dtype=numpy.float32), cache)
        with pytest.raises(TypeError, match="int32"):
            backward(arr(*shape, dtype=numpy.int32), cache)


@pytest.mark.parametrize(
    "hyper, message",
    [
        ({"size": 4}, r"size must be odd .* got 4"),
        ({"size": 0}, r"size must be >= 1, got 0"),
        ({"alpha": -0.1}, r"alpha must be >= 0, got -0.1"),
        ({"k": 0.0}, r"k must be > 0 .* got 0.0"),
        ({"beta": "0.75"}, r"beta must be a real number, got '0.75'"),
    ],
)
def test_lrn_errors(hyper, message):
    with pytest.raises(ValueError, match=message):
        lrn.forward(arr(1, 3, 2, 2), **hyper)


@pytest.mark.parametrize(
    "name, call",
    [
        ("conv", lambda x, **k: conv.forward(x, arr(3, 2, 3, 3), arr(3), **k)),
        ("pool", lambda x, **k: pool.forward(x, **k)),
        ("lrn", lambda x, **k: lrn.forward(x, **k)),
    ],
)
def test_layouts_are_named_and_checked(name, call):
    with pytest.raises(
        ValueError,
        match=rf"{name}: layout must be one of "
        r"\('NCHW', 'CHWN'\), got 'NHWC'",
    ):
        call(arr(1, 2, 5, 5), layout="NHWC")
    # a wrong number of axes is reported with the layout's own axis names
    with pytest.raises(
        ValueError,
        match=rf"{name}: x must be 4-D \(C, H, W, N\), "
        r"got shape \(5, 5\)",
    ):
        call(arr(5, 5), layout="CHWN")


def test_lrn_pool_relu_input_errors():
    with pytest.raises(ValueError, match=r"lrn: x must be 4-D .* got shape \(3, 2\)"):
        lrn.forward(arr(3, 2))
    with pytest.raises(TypeError, match=r"lrn: expected float32 or float64 .* int64"):
        lrn.forward(arr(1, 3, 2, 2, dtype=numpy.int64))
    with pytest.raises(ValueError, match=r"pool: x must be 4-D .* got shape \(3, 5, 5\)"):
        pool.forward(arr(3, 5, 5))
    with pytest.raises(ValueError, match=r"pool: size must be >= 1, got 0"):
        pool.forward(arr(1, 1, 5, 5), size=0)
    with pytest.raises(ValueError, match=r"pool: stride must be >= 1, got 0"):
        pool.forward(arr(1, 1, 5, 5), stride=0)
    with pytest.raises(
        ValueError,
        match=r"pool: kernel width 3 is larger than the padded "
        r"input width 2",
    ):
        pool.forward(arr(1, 1, 5, 2))
    with pytest.raises(TypeError, match=r"pool: expected float32 or float64 .* uint8"):
        pool.forward(arr(1, 1, 5, 5, dtype=numpy.uint8))
    with pytest.raises(TypeError, match=r"relu: expected float32 or float64 .* bool"):
        relu.forward(arr(2, 2, dtype=bool))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"p": 1.0}, ValueError, r"p must be a number in \[0, 1\), got 1.0"),
        ({"p": -0.1}, ValueError, r"p must be a number in \[0, 1\), got -0.1"),
        ({"mode": "caffe"}, ValueError, r"mode must be one of .* got 'caffe'"),
        ({"rng": None}, ValueError, r"training needs rng .* got rng=None"),
        (
            {"mask": numpy.ones((2, 4), bool)},
            ValueError,
            r"mask has shape \(2, 4\) but x has shape \(2, 3\)",
        ),
        (
            {"mask": numpy.ones((2, 3), numpy.int8)},
            TypeError,
            r"mask dtype must be bool or float64, got int8",
        ),
    ],
)
def test_dropout_errors(kwargs, error, message):
    args = dict(p=0.5, train=True, rng=numpy.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        dropout.forward(arr(2, 3), **args)


def test_dropout_rejects_integer_input():
    with pytest.raises(TypeError, match=r"dropout: expected float32 or float64 .* int64"):
        dropout.forward(arr(2, 3, dtype=numpy.int64), train=False)


@pytest.mark.parametrize(
    "x, w, b, error, message",
    [
        (arr(3), arr(4, 3), arr(4), ValueError, r"x must be \(N, F\) .* got shape \(3,\)"),
        (arr(2, 5), arr(4, 3), arr(4), ValueError, r"x has 5 features .* but w expects 3"),
        (arr(2, 3), arr(4, 3, 1), arr(4), ValueError, r"w must be 2-D .* got shape \(4, 3, 1\)"),
        (arr(2, 3), arr(4, 3), arr(5), ValueError, r"b has 5 entries but w has 4 outputs"),
        (arr(2, 3, dtype=numpy.float32), arr(4, 3), arr(4), TypeError, r"mixed dtypes"),
    ],
)
def test_linear_errors(x, w, b, error, message):
    with pytest.raises(error, match=message):
        linear.forward(x, w, b)


@pytest.mark.parametrize(
    "logits, labels, error, message",
    [
        (arr(3, 4), numpy.array([0, 4, 1]), ValueError, r"label 4 out of range \[0, 4\)"),
        (arr(3, 4), numpy.array([0, -1, 1]), ValueError, r"label -1 out of range \[0, 4\)"),
        (
            arr(3, 4),
            numpy.array([0, 1]),
            ValueError,
            r"labels must have shape \(3,\) .* got \(2,\)",
        ),
        (arr(3, 4), numpy.zeros((3, 1), int), ValueError, r"got \(3, 1\)"),
        (arr(3, 4), numpy.zeros(3), TypeError, r"labels must be an integer array, got float64"),
        (arr(3, 4), [0, 1, 2], TypeError, r"labels must be an integer array, got list"),
        (arr(3), numpy.array([0, 1, 2]), ValueError, r"logits must be 2-D .* got shape \(3,\)"),
        (arr(3, 4, dtype=numpy.int64), numpy.array([0, 1, 2]), TypeError, r"int64"),
    ],
)
def test_softmax_errors(logits, labels, error, message):
    with pytest.raises(error, match=message):
        softmax.forward(logits, labels)


def test_softmax_backward_needs_a_scalar():
    _, cache = softmax.forward(arr(2, 3), numpy.array([0, 2]))
    with pytest.raises(ValueError, match=r"dloss must be a scalar .* got shape \(2,\)"):
        softmax.backward(numpy.ones(2), cache)
