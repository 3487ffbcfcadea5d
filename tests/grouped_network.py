"""The grouped single-device form of the network, built from layer calls: the reference
the two-column network is tested against (tests/test_network_equivalence.py) and the
function the whole-network finite-difference check differentiates
(tests/test_network_gradcheck.py).

Written independently of ``refnet.columns`` and ``refnet.exchange``: one array per layer
holding both columns' channels, conv2/conv4/conv5 as grouped convolutions (groups=2),
LRN applied per group (the authors' way) or over all channels (Caffe's); with
``head="gap"``, conv5's ReLU output -> 1x1 convolution over all channels -> global average
pooling (no pool5, no fc layers). Everything in float64.
"""
import numpy

from layers import conv, dropout, gap, linear, lrn, pool, relu, softmax
from refnet.arch import GROUPED

RTOL = 1e-12


def grouped_loss_and_grad(net, sd, x, labels, masks, train=True):
    """(logits, loss, grads, relu_inputs, pool_inputs) of the grouped single-device form.

    Configuration (arch, columns, lrn, pool, dropout, head) is read from ``net``; parameters
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
        if i in (1, 2, 5) and not (i == 5 and net.head == "gap"):
            pool_inputs.append(h)
            h = run("pool", pool.forward, h, size=net.pool[0], stride=net.pool[1])
    if net.head == "gap":
        h = run(("conv", "head"), conv.forward, h, sd["head.weight"], sd["head.bias"])
        logits = run("gap", gap.forward, h)                   # (N, K)
    else:
        logits = _fc_layers(net, sd, h, run, relu_inputs, masks, train)
    loss, lcache = softmax.forward(logits, labels)
    d = softmax.backward(numpy.float64(1), lcache)
    grads = {}
    for kind, cache in reversed(tape):
        if kind == "relu":
            d = relu.backward(d, cache)
        elif kind == "pool":
            d = pool.backward(d, cache)
        elif kind == "gap":
            d = gap.backward(d, cache)
        elif kind == "flatten":
            d = d.reshape(cache)
        elif kind == "dropout":
            d = dropout.backward(d, cache)
        elif kind == "lrn":
            parts = numpy.split(d, len(cache), axis=1)
            d = numpy.concatenate([lrn.backward(p, c) for p, c in zip(parts, cache)], axis=1)
        else:
            layer, name = kind
            back = conv.backward if layer == "conv" else linear.backward
            d, grads[f"{name}.weight"], grads[f"{name}.bias"] = back(d, cache)
    return logits, float(loss), grads, relu_inputs, pool_inputs


def _fc_layers(net, sd, h, run, relu_inputs, masks, train):
    """fc6-fc8 on pool5's maps h: (N, K) logits."""
    h = run("flatten", lambda a: (a.reshape(a.shape[0], -1), a.shape), h)  # (N, C*S*S)
    for name in ("fc6", "fc7", "fc8"):
        h = run(("linear", name), linear.forward, h, sd[f"{name}.weight"], sd[f"{name}.bias"])
        if name != "fc8":
            relu_inputs.append(h)
            h = run("relu", relu.forward, h)
            if net.dropout:
                h = run("dropout", dropout.forward, h, p=net.dropout, train=train,
                        mask=masks[name] if train else None, mode=net.dropout_mode)
    return h


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
             for name in ("fc6", "fc7") if f"{name}.bias" in net.shapes}   # none for "gap"
    return x, labels, masks


def assert_close(got, want, what):
    got, want = numpy.asarray(got), numpy.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    scale = float(numpy.max(numpy.abs(want))) if want.size else 0.0
    numpy.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale + 1e-300,
                                  err_msg=what)
