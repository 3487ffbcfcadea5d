"""Runs of column-local layers in one call per column (``refnet.segments``): the runs the
network makes, and the same numbers bit for bit as running layer by layer."""

import numpy
import pytest

from refnet import AlexNet
from refnet.nodes import Local, Pass


def _runs(net, x):
    run = Pass(train=True, rng=numpy.random.default_rng(0), masks=None, keep=True)
    net._forward(x, run)
    return [[layer.name for layer in segment] for segment in run.segments]


def test_the_runs_lie_between_the_exchanges():
    net = AlexNet("tiny", "float64").init(seed=0)
    x = numpy.zeros((2, 3, 45, 45))
    assert _runs(net, x) == [
        ["input"],
        ["conv1"],  # conv1: both columns read the image
        ["relu1", "lrn1", "pool1", "conv2", "relu2", "lrn2", "pool2"],
        ["to_conv3"],
        ["conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5"],
        ["to_fc6"],
        ["flatten", "fc6", "relu_fc6", "dropout_fc6"],
        ["to_fc7"],
        ["fc7", "relu_fc7", "dropout_fc7"],
        ["to_fc8"],
        ["fc8"],
    ]
    halo = AlexNet("tiny", "float64", lrn_mode="all").init(seed=0)
    assert ["lrn1"] in _runs(halo, x)  # the halo exchange ends a run


def _results(net, x, labels, masks, calls):
    place = net.placement
    each = place.each

    def counted(*args):
        calls.append(1)
        return each(*args)

    place.each = counted
    loss, grads = net.loss_and_grad_columns(x, labels, masks=masks)
    logits = net.forward(x)
    return loss, grads, logits


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(layout="NCHW", conv_algo="gemm"),
        dict(dropout_placement="before", lrn_mode="all"),
    ],
)
def test_runs_give_what_layer_by_layer_gives(monkeypatch, options):
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal((3, 3, 45, 45))
    labels = rng.integers(0, 5, 3)
    net = AlexNet("tiny", "float64", **options).init(seed=1, scheme="he")
    masks = {k: rng.random((3, w)) >= 0.5 for k, w in net.dropout_widths().items()}
    fused_calls, single_calls = [], []
    fused = _results(net, x, labels, masks, fused_calls)
    monkeypatch.setattr(Local, "fusable", lambda self, ctx, h: False)
    single = _results(
        AlexNet("tiny", "float64", **options).init(seed=1, scheme="he"),
        x,
        labels,
        masks,
        single_calls,
    )
    assert fused[0] == single[0]
    numpy.testing.assert_array_equal(fused[2], single[2])
    for g, h in zip(fused[1], single[1], strict=True):
        assert g.keys() == h.keys()
        for k in g:
            numpy.testing.assert_array_equal(g[k], h[k], err_msg=k)
    assert len(fused_calls) < len(single_calls) / 2


def test_a_reducer_hook_still_sees_each_layer_in_backward_order():
    net = AlexNet("tiny", "float64").init(seed=0)
    rng = numpy.random.default_rng(1)
    seen = []
    net.loss_and_grad_columns(
        rng.standard_normal((2, 3, 45, 45)),
        rng.integers(0, 5, 2),
        rng=rng,
        on_grads=lambda name, grads: seen.append(name),
    )
    assert seen == ["fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1"]
