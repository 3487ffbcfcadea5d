"""The plain engine (``engine="plain"``): the same training as the fast one, and the plain
and fast forms of each layer interchangeable.

The network tests run three SGD steps from the same weights and the same dropout masks
on both engines in float64 and compare every parameter; the swap tests call each layer's
plain and fast pair with the same arguments, a random upstream gradient, and feed each
one's cache to its own backward.
"""

import dataclasses

import numpy
import pytest

from refnet import ARCHS, SGD, AlexNet
from refnet.layers import adaptive_pool, conv, lrn, plain, pool
from tests.device_backend import TaggedArray, tagged

SMALL_ALEXNET = dataclasses.replace(ARCHS["alexnet"], input_size=67)
SPECS = {
    "alexnet": SMALL_ALEXNET,
    "demo": ARCHS["demo"],
    "small": ARCHS["small"],
    "tiny": ARCHS["tiny"],
}


def relative(a, b):
    a, b = numpy.asarray(a), numpy.asarray(b)
    return float(numpy.abs(a - b).max() / max(numpy.abs(b).max(), 1e-300))


def train(arch, engine, steps=3, backend="numpy", device_input=None, **options):
    spec = SPECS[arch]
    net = AlexNet(spec, "float64", engine=engine, backend=backend, **options)
    net.init(seed=2, scheme="he")
    opt = SGD(net, lr=0.02, momentum=0.9, weight_decay=5e-4)
    rng = numpy.random.default_rng(11)
    s, losses = spec.input_size, []
    for _ in range(steps):
        x = rng.standard_normal((3, 3, s, s))
        labels = rng.integers(0, net.num_classes, 3)
        masks = {k: rng.random((3, w)) >= 0.5 for k, w in net.dropout_widths().items()}
        if device_input is not None:
            x = device_input(x)
        loss, grads = net.loss_and_grad_columns(x, labels, masks=masks)
        opt.step(grads)
        losses.append(loss)
    return net, losses, opt


@pytest.mark.parametrize("arch", ["alexnet", "demo", "small", "tiny"])
@pytest.mark.parametrize(
    "options",
    [dict(columns=1), dict(columns=2), dict(head="gap")],
    ids=["columns1", "columns2", "gap"],
)
def test_three_sgd_steps_agree_on_both_engines(arch, options):
    fast, fast_losses, fast_opt = train(arch, "fast", **options)
    slow, slow_losses, slow_opt = train(arch, "plain", **options)
    assert slow.layout == "NCHW" and not slow.placement.parallel
    numpy.testing.assert_allclose(slow_losses, fast_losses, rtol=1e-12)
    want, got = fast.state_dict(), slow.state_dict()
    for name in want:
        assert relative(got[name], want[name]) <= 1e-12, name
    want, got = fast.gather(fast_opt.velocity), slow.gather(slow_opt.velocity)
    for name in want:
        assert relative(got[name], want[name]) <= 1e-12, name


@pytest.mark.parametrize(
    "options", [dict(lrn_mode="all"), dict(dropout_placement="before", dropout_mode="inverted")]
)
def test_the_plain_engine_covers_the_halo_and_torchvisions_dropout(options):
    fast, fast_losses, _ = train("tiny", "fast", steps=2, **options)
    slow, slow_losses, _ = train("tiny", "plain", steps=2, **options)
    numpy.testing.assert_allclose(slow_losses, fast_losses, rtol=1e-12)
    for name, value in fast.state_dict().items():
        assert relative(slow.state_dict()[name], value) <= 1e-12, name


def test_the_plain_engine_on_two_tagged_devices():
    def on_device(x):
        with tagged.Device(0):
            return tagged.asarray(x)

    net, losses, opt = train(
        "tiny", "plain", steps=2, backend=tagged, devices=(0, 1), device_input=on_device
    )
    ref, ref_losses, _ = train("tiny", "plain", steps=2)
    for c, params in enumerate(net.params):
        assert all(isinstance(w, TaggedArray) and w.device_id == c for w in params.values())
    for c, vel in enumerate(opt.velocity):
        assert all(v.device_id == c for v in vel.values())
    numpy.testing.assert_allclose(losses, ref_losses, rtol=1e-13)
    for name, value in ref.state_dict().items():
        assert relative(net.state_dict()[name], value) <= 1e-13, name


def test_the_plain_engine_features_and_eval():
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal((2, 3, 45, 45))
    fast = AlexNet("tiny", "float64").init(seed=1)
    slow = AlexNet("tiny", "float64", engine="plain").init(seed=1)
    assert relative(slow.forward(x), fast.forward(x)) <= 1e-12
    for upto in ("pool2", "relu_fc7"):
        assert (
            relative(slow.features(x, upto, maps=True), fast.features(x, upto, maps=True)) <= 1e-12
        )


# -- plain and fast forms of one layer, swapped -----------------------------------------


@pytest.mark.parametrize("stride,pad,groups", [(1, 1, 1), (2, 0, 2), (1, 2, 2)])
@pytest.mark.parametrize("algo", ["gemm", "winograd"])
def test_conv_plain_and_fast_swap(stride, pad, groups, algo):
    if algo == "winograd" and stride != 1:
        pytest.skip("Winograd needs stride 1")
    rng = numpy.random.default_rng(stride + pad + groups)
    x = rng.standard_normal((2, 4, 9, 9))
    w = rng.standard_normal((6, 4 // groups, 3, 3))
    b = rng.standard_normal(6)
    settings = dict(stride=stride, pad=pad, groups=groups)
    out = {}
    for name, (fwd, bwd) in {
        "plain": (plain.conv_forward, plain.conv_backward),
        "fast": (conv.forward, conv.backward),
    }.items():
        kw = dict(algo=algo) if name == "fast" else {}
        y, cache = fwd(x, w, b, **settings, **kw)
        dy = numpy.random.default_rng(9).standard_normal(y.shape)
        out[name] = (y, *bwd(dy, cache, need_dx=True))
        assert bwd(dy, cache, need_dx=False)[0] is None
    for a, b_ in zip(out["plain"], out["fast"], strict=True):
        assert relative(a, b_) <= 1e-12


@pytest.mark.parametrize("rounding", ["floor", "ceil"])
def test_pool_plain_and_fast_swap(rounding):
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal((2, 3, 10, 10))
    out = {}
    for name, (fwd, bwd) in {
        "plain": (plain.pool_forward, plain.pool_backward),
        "fast": (pool.forward, pool.backward),
    }.items():
        y, cache = fwd(x, size=3, stride=2, rounding=rounding)
        dy = numpy.random.default_rng(5).standard_normal(y.shape)
        out[name] = (y, bwd(dy, cache))
    numpy.testing.assert_array_equal(out["plain"][0], out["fast"][0])  # a max: exact
    assert relative(out["plain"][1], out["fast"][1]) <= 1e-15  # overlaps summed in turn


def test_lrn_plain_and_fast_swap():
    rng = numpy.random.default_rng(6)
    x = rng.standard_normal((2, 7, 5, 5))
    hyper = dict(size=5, alpha=1e-2, beta=0.75, k=2.0)
    out = {}
    for name, (fwd, bwd) in {
        "plain": (plain.lrn_forward, plain.lrn_backward),
        "fast": (lrn.forward, lrn.backward),
    }.items():
        y, cache = fwd(x, **hyper)
        dy = numpy.random.default_rng(7).standard_normal(y.shape)
        out[name] = (y, bwd(dy, cache))
    for a, b in zip(out["plain"], out["fast"], strict=True):
        assert relative(a, b) <= 1e-13


def test_adaptive_pool_plain_and_fast_swap():
    rng = numpy.random.default_rng(8)
    x = rng.standard_normal((2, 3, 7, 9))
    out = {}
    for name, (fwd, bwd) in {
        "plain": (plain.adaptive_pool_forward, plain.adaptive_pool_backward),
        "fast": (adaptive_pool.forward, adaptive_pool.backward),
    }.items():
        y, cache = fwd(x, out=(3, 4))
        dy = numpy.random.default_rng(9).standard_normal(y.shape)
        out[name] = (y, bwd(dy, cache))
    for a, b in zip(out["plain"], out["fast"], strict=True):
        assert relative(a, b) <= 1e-13


def test_a_network_layer_swapped_to_its_plain_form_changes_nothing_beyond_roundoff(monkeypatch):
    """The fast engine with one layer kind's fast pair replaced by its plain pair (NCHW,
    so the plain forms take the maps as they are)."""
    from refnet.nodes import Lrn, Pool

    rng = numpy.random.default_rng(10)
    x = rng.standard_normal((2, 3, 45, 45))
    labels = numpy.array([1, 3])
    options = dict(layout="NCHW", conv_algo="gemm")
    ref = AlexNet("tiny", "float64", **options).init(seed=4)
    masks = {k: rng.random((2, w)) >= 0.5 for k, w in ref.dropout_widths().items()}
    want_loss, want = ref.loss_and_grad(x, labels, masks=masks)
    for kind in (Pool, Lrn):
        monkeypatch.setattr(kind, "fast", kind.plain)
        monkeypatch.setattr(kind, "tuning", lambda self, col: {})
        monkeypatch.setattr(kind, "backward_tuning", lambda self, col: {})
    net = AlexNet("tiny", "float64", **options).init(seed=4)
    loss, got = net.loss_and_grad(x, labels, masks=masks)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for name in want:
        assert relative(got[name], want[name]) <= 1e-11, name
