"""The two-column network equals the grouped single-device network, forward and backward.

The reference below is written independently of ``refnet.columns``: one array per layer
holding both columns' channels, conv2/conv4/conv5 as grouped convolutions (groups=2),
LRN applied per group (the authors' way) or over all channels (Caffe's), built directly
from layer calls. Everything in float64; agreement to round-off (a sum split over two
columns adds in another order, so the tolerance is relative to each array's magnitude).
"""
import numpy
import pytest

from layers import conv, dropout, linear, lrn, pool, relu, softmax
from refnet import AlexNet
from refnet.arch import GROUPED
from refnet.network import _Pass

RTOL = 1e-12


def grouped_loss_and_grad(net, sd, x, labels, masks, train=True):
    """(logits, loss, grads, relu_inputs, pool_inputs) of the grouped single-device form.

    Configuration (arch, columns, lrn, pool, dropout) is read from ``net``; parameters
    from ``sd`` (full grouped shapes); ``masks``: full (N, width) keep-masks for fc6/fc7.
    """
    spec, G = net.spec, net.columns
    tape = []
    relu_inputs, pool_inputs = [], []

    def run(kind, fwd, *args, **kw):
        y, cache = fwd(*args, **kw)
        tape.append((kind, cache))
        return y

    def lrn_grouped(h):
        parts = numpy.split(h, G, axis=1) if net.lrn_mode == "column" else [h]
        outs, caches = [], []
        for part in parts:
            y, c = lrn.forward(part, **net.lrn_params)
            outs.append(y)
            caches.append(c)
        tape.append(("lrn", caches))
        return numpy.concatenate(outs, axis=1)

    h = x
    for i, cs in enumerate(spec.convs, start=1):
        name = f"conv{i}"
        groups = G if name in GROUPED else 1
        h = run(("conv", name), conv.forward, h, sd[f"{name}.weight"], sd[f"{name}.bias"],
                stride=cs.stride, pad=cs.pad, groups=groups)
        relu_inputs.append(h)
        h = run("relu", relu.forward, h)
        if i in (1, 2) and net.lrn:
            h = lrn_grouped(h)
        if i in (1, 2, 5):
            pool_inputs.append(h)
            h = run("pool", pool.forward, h, size=net.pool[0], stride=net.pool[1])
    shape5 = h.shape
    h = h.reshape(h.shape[0], -1)                             # (N, C*S*S), torch.flatten
    for name in ("fc6", "fc7", "fc8"):
        h = run(("linear", name), linear.forward, h, sd[f"{name}.weight"], sd[f"{name}.bias"])
        if name != "fc8":
            relu_inputs.append(h)
            h = run("relu", relu.forward, h)
            if net.dropout:
                h = run("dropout", dropout.forward, h, p=net.dropout, train=train,
                        mask=masks[name] if train else None, mode=net.dropout_mode)
    logits = h
    loss, lcache = softmax.forward(logits, labels)
    d = softmax.backward(numpy.float64(1), lcache)
    grads = {}
    for kind, cache in reversed(tape):
        if kind == "relu":
            d = relu.backward(d, cache)
        elif kind == "pool":
            d = pool.backward(d, cache)
        elif kind == "dropout":
            d = dropout.backward(d, cache)
        elif kind == "lrn":
            parts = numpy.split(d, len(cache), axis=1)
            d = numpy.concatenate([lrn.backward(p, c) for p, c in zip(parts, cache)], axis=1)
        else:
            layer, name = kind
            back = conv.backward if layer == "conv" else linear.backward
            d, grads[f"{name}.weight"], grads[f"{name}.bias"] = back(d, cache)
            if name == "fc6":
                d = d.reshape(shape5)
    return logits, float(loss), grads, relu_inputs, pool_inputs


def random_state(net, rng, bias_scale=0.1):
    """He-scaled random weights and random biases (so every bias term matters)."""
    sd = {}
    for name, shape in net.shapes.items():
        if name.endswith(".weight"):
            fan = numpy.prod(shape[1:])
            sd[name] = rng.standard_normal(shape) * numpy.sqrt(2.0 / fan)
        else:
            sd[name] = bias_scale * rng.standard_normal(shape)
    return sd


def random_batch(net, rng, n=3):
    s = net.spec.input_size
    x = rng.standard_normal((n, 3, s, s))
    labels = rng.integers(0, net.num_classes, n)
    masks = {name: rng.random((n, net.shapes[f"{name}.bias"][0])) >= net.dropout
             for name in ("fc6", "fc7")}
    return x, labels, masks


def assert_close(got, want, what):
    got, want = numpy.asarray(got), numpy.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    scale = float(numpy.max(numpy.abs(want))) if want.size else 0.0
    numpy.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale + 1e-300,
                                  err_msg=what)


CONFIGS = [
    dict(),
    dict(lrn_mode="all"),
    dict(lrn=False, pool=(2, 2)),
    dict(dropout_mode="inverted", dropout=0.3),
    dict(columns=1),
    dict(columns=1, lrn_mode="all", dropout=0.0),
    dict(layout="NCHW"),                      # the default is CHWN (batch innermost)
    dict(layout="NCHW", lrn_mode="all"),
    dict(layout="NCHW", columns=1, conv_algo="gemm"),
]


@pytest.mark.parametrize("options", CONFIGS, ids=[str(c) or "paper" for c in CONFIGS])
def test_columns_equal_grouped_single_device(options):
    rng = numpy.random.default_rng(7)
    net = AlexNet("tiny", "float64", **options)
    sd = random_state(net, rng)
    net.load_state_dict(sd)
    x, labels, masks = random_batch(net, rng)
    ref_logits, ref_loss, ref_grads, _, _ = grouped_loss_and_grad(net, sd, x, labels, masks)
    assert_close(net.forward(x, train=True, masks=masks), ref_logits, "logits")
    loss, grads = net.loss_and_grad(x, labels, train=True, masks=masks)
    assert_close(loss, ref_loss, "loss")
    assert sorted(grads) == sorted(ref_grads)
    for name in ref_grads:
        assert grads[name].dtype == numpy.float64
        assert_close(grads[name], ref_grads[name], name)


def test_columns_equal_grouped_in_eval_mode_and_demo_size():
    """The demo architecture (3x3 pool5 maps, 32 channels per column) in eval mode."""
    rng = numpy.random.default_rng(3)
    net = AlexNet("demo", "float64")
    sd = random_state(net, rng)
    net.load_state_dict(sd)
    x, labels, masks = random_batch(net, rng, n=2)
    ref_logits, ref_loss, ref_grads, _, _ = grouped_loss_and_grad(net, sd, x, labels, masks,
                                                                  train=False)
    assert_close(net.forward(x), ref_logits, "logits")
    loss, grads = net.loss_and_grad(x, labels, train=False)
    assert_close(loss, ref_loss, "loss")
    for name in ("conv1.weight", "conv3.weight", "fc6.weight", "fc8.bias"):
        assert_close(grads[name], ref_grads[name], name)


def test_lrn_mode_all_changes_the_output():
    """Caffe's all-channel LRN differs from the per-column one near the boundary between
    the columns, so the two modes give different logits from the same weights (the
    switch is live; each mode's exact values are checked against the reference above)."""
    rng = numpy.random.default_rng(5)
    nets = [AlexNet("demo", "float64", lrn_mode=m) for m in ("column", "all")]
    sd = random_state(nets[0], rng)
    for net in nets:
        net.load_state_dict(sd)
    x, _, _ = random_batch(nets[0], rng, n=1)
    a, b = (net.forward(x) for net in nets)
    assert not numpy.allclose(a, b, rtol=1e-6, atol=0)


def test_concurrent_and_sequential_columns_give_identical_results():
    """On the CPU the columns run in two threads (refnet.columns); one after the other
    (``placement.parallel = False``) gives the same numbers bit for bit."""
    rng = numpy.random.default_rng(11)
    x = rng.standard_normal((3, 3, 45, 45))
    labels = numpy.array([0, 3, 4])
    results = []
    for parallel in (True, False):
        net = AlexNet("tiny", "float64", lrn_mode="all").init(seed=4, scheme="he")
        if parallel and not net.placement.parallel:
            pytest.skip("columns run concurrently only with >= 2 cores and threadpoolctl")
        net.placement.parallel = parallel
        loss, grads = net.loss_and_grad(x, labels, rng=numpy.random.default_rng(2))
        results.append((loss, grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == loss_b
    for name in grads_a:
        numpy.testing.assert_array_equal(grads_a[name], grads_b[name])


def test_conv_cache_input_gives_identical_results():
    rng = numpy.random.default_rng(12)
    x = rng.standard_normal((2, 3, 45, 45))
    labels = numpy.array([1, 2])
    out = []
    for mode in ("columns", "input"):
        net = AlexNet("tiny", "float64", conv_cache=mode).init(seed=5, scheme="he")
        out.append(net.loss_and_grad(x, labels, rng=numpy.random.default_rng(3)))
    assert out[0][0] == out[1][0]
    for name, g in out[0][1].items():
        numpy.testing.assert_array_equal(g, out[1][1][name])
    with pytest.raises(ValueError, match="conv_cache"):
        AlexNet("tiny", conv_cache="nothing")


def test_columns_on_one_device_share_conv1_columns():
    """Both columns' conv1 read the same image: on one device they share one im2col."""
    rng = numpy.random.default_rng(13)
    net = AlexNet("tiny", "float64").init(seed=5, scheme="he")
    x = rng.standard_normal((2, 3, 45, 45))
    _, caches = net._forward(x, _Pass(train=False, rng=None, masks=None, keep=True))
    assert caches["conv1"][0].cols is caches["conv1"][1].cols
    assert caches["conv2"][0].v is not caches["conv2"][1].v
