"""The grouped single-device form of the network, built from layer calls: the reference
the two-column network is tested against (tests/test_network_equivalence.py) and the
function the whole-network finite-difference check differentiates
(tests/test_network_gradcheck.py).

Written independently of ``refnet.columns`` and ``refnet.exchange``: one array per layer
holding both columns' channels, conv2/conv4/conv5 as grouped convolutions (groups=2),
LRN applied per group (the authors' way) or over all channels (Caffe's); the arch's
adaptive average pooling after pool5 where it has one; dropout after fc6's and fc7's ReLU
or (``dropout_placement="before"``) on fc6's and fc7's inputs; with ``head="gap"``,
conv5's ReLU output -> 1x1 convolution over all channels -> global average pooling (no
pool5, no fc layers). Everything in float64.
"""

import dataclasses

import numpy

from refnet.arch import ARCHS, GROUPED
from refnet.layers import adaptive_pool, conv, dropout, gap, linear, lrn, pool, relu, softmax

RTOL = 1e-12

# the tiny arch with an adaptive average pooling that is not the identity (owt's is, at
# 224): pool5's 2x2 maps averaged up to 3x3 over overlapping bins
TINY_AVGPOOL = dataclasses.replace(ARCHS["tiny"], name="tiny-avgpool", avgpool=3)


def grouped_loss_and_grad(net, sd, x, labels, masks, train=True):
    """(logits, loss, grads, relu_inputs, pool_inputs) of the grouped single-device form.

    Configuration (arch, columns, lrn, pool, dropout, head) is read from ``net``; parameters
    from ``sd`` (full grouped shapes); ``masks``: full (N, width) keep-masks keyed by the
    dropped layer's name (``random_batch``).
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
        h = run(
            ("conv", name),
            conv.forward,
            h,
            sd[f"{name}.weight"],
            sd[f"{name}.bias"],
            stride=cs.stride,
            pad=cs.pad,
            groups=groups,
        )
        relu_inputs.append(h)
        h = run("relu", relu.forward, h)
        if i in (1, 2) and net.lrn:
            h = lrn_grouped(h)
        if i in (1, 2, 5) and not (i == 5 and net.head == "gap"):
            pool_inputs.append(h)
            h = run("pool", pool.forward, h, size=net.pool[0], stride=net.pool[1])
    if spec.avgpool and net.head == "fc":
        h = run("avgpool", adaptive_pool.forward, h, spec.avgpool)
    if net.head == "gap":
        h = run(("conv", "head"), conv.forward, h, sd["head.weight"], sd["head.bias"])
        logits = run("gap", gap.forward, h)  # (N, K)
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
        elif kind == "avgpool":
            d = adaptive_pool.backward(d, cache)
        elif kind == "flatten":
            d = d.reshape(cache)
        elif kind == "dropout":
            d = dropout.backward(d, cache)
        elif kind == "lrn":
            parts = numpy.split(d, len(cache), axis=1)
            d = numpy.concatenate(
                [lrn.backward(p, c) for p, c in zip(parts, cache, strict=True)], axis=1
            )
        else:
            layer, name = kind
            back = conv.backward if layer == "conv" else linear.backward
            d, grads[f"{name}.weight"], grads[f"{name}.bias"] = back(d, cache)
    return logits, float(loss), grads, relu_inputs, pool_inputs


def _fc_layers(net, sd, h, run, relu_inputs, masks, train):
    """fc6-fc8 on pool5's maps h: (N, K) logits."""

    def drop(h, name):
        if not net.dropout or name not in dropped:
            return h
        return run(
            "dropout",
            dropout.forward,
            h,
            p=net.dropout,
            train=train,
            mask=masks[name] if train else None,
            mode=net.dropout_mode,
        )

    dropped = dropped_outputs(net)
    h = run("flatten", lambda a: (a.reshape(a.shape[0], -1), a.shape), h)  # (N, C*S*S)
    h = drop(h, "flatten")
    for name in ("fc6", "fc7", "fc8"):
        h = run(("linear", name), linear.forward, h, sd[f"{name}.weight"], sd[f"{name}.bias"])
        if name != "fc8":
            relu_inputs.append(h)
            h = run("relu", relu.forward, h)
            h = drop(h, name)
    return h


def dropped_outputs(net):
    """{layer whose output dropout acts on: its width}: fc6's and fc7's outputs (the
    paper), or fc6's input and fc6's output (torchvision); none for the "gap" head."""
    if net.head == "gap":
        return {}
    if net.dropout_placement == "after":
        return {"fc6": net.shapes["fc6.bias"][0], "fc7": net.shapes["fc7.bias"][0]}
    return {"flatten": net.shapes["fc6.weight"][1], "fc6": net.shapes["fc6.bias"][0]}


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
    masks = {
        name: rng.random((n, width)) >= net.dropout for name, width in dropped_outputs(net).items()
    }
    return x, labels, masks


def assert_close(got, want, what):
    got, want = numpy.asarray(got), numpy.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    scale = float(numpy.max(numpy.abs(want))) if want.size else 0.0
    numpy.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale + 1e-300, err_msg=what)
