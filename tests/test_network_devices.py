"""Placement: the two columns on devices 0 and 1 of the device-tagging backend.

``tests/device_backend.py`` fails any operation mixing arrays of two devices (or a device
and the host) and any operation on a device other than the current one, so a missing
transfer or a layer run outside its column's device context shows here on the CPU.
"""

import numpy
import pytest

from refnet import SGD, AlexNet
from refnet.columns import Placement
from refnet.layers import backend
from tests.device_backend import DeviceMismatch, TaggedArray, tagged


def tagged_input(x, device=0):
    with tagged.Device(device):
        return tagged.asarray(x)


@pytest.mark.parametrize(
    "options",
    [dict(), dict(lrn_mode="all"), dict(dropout_mode="inverted")],
    ids=["paper", "lrn-all", "inverted"],
)
def test_two_columns_on_two_tagged_devices_equal_numpy(options):
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((3, 3, 45, 45))
    labels = numpy.array([0, 4, 2])
    ref = AlexNet("tiny", "float64", **options).init(seed=5, scheme="he")
    net = AlexNet("tiny", "float64", backend=tagged, devices=(0, 1), **options)
    net.init(seed=5, scheme="he")
    for name, value in net.state_dict().items():  # same seed, same weights
        numpy.testing.assert_array_equal(value, ref.state_dict()[name])
    for c, params in enumerate(net.params):
        for name, w in params.items():
            assert isinstance(w, TaggedArray) and w.device_id == c, (c, name)

    logits = net.forward(tagged_input(x), train=True, rng=numpy.random.default_rng(1))
    assert isinstance(logits, TaggedArray) and logits.device_id == 0
    want = ref.forward(x, train=True, rng=numpy.random.default_rng(1))
    numpy.testing.assert_allclose(numpy.asarray(logits), want, rtol=1e-13, atol=1e-15)

    loss, cols = net.loss_and_grad_columns(tagged_input(x), labels, rng=numpy.random.default_rng(1))
    ref_loss, ref_grads = ref.loss_and_grad(x, labels, rng=numpy.random.default_rng(1))
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    for c, grads in enumerate(cols):
        assert all(g.device_id == c for g in grads.values())
    full = net.full_grads(cols)
    for name, g in full.items():
        assert g.device_id == 0
        numpy.testing.assert_allclose(
            numpy.asarray(g),
            ref_grads[name],
            rtol=1e-12,
            atol=1e-12 * float(numpy.abs(ref_grads[name]).max()),
        )

    # SGD updates each column's shards on its own device, from per-column or full grads.
    opt, ref_opt = SGD(net, lr=0.1), SGD(ref, lr=0.1)
    opt.step(cols)
    opt.step(full)
    ref_opt.step(ref_grads)
    ref_opt.step(ref_grads)
    for c, vel in enumerate(opt.velocity):
        assert all(v.device_id == c for v in vel.values())
    for name, value in net.state_dict().items():
        numpy.testing.assert_allclose(value, ref.state_dict()[name], rtol=1e-12, atol=1e-14)
    proba = net.predict_proba(tagged_input(x))
    assert proba.device_id == 0
    numpy.testing.assert_allclose(numpy.asarray(proba).sum(axis=1), 1.0, rtol=1e-12)


def test_input_on_another_device_or_host_is_moved_explicitly():
    """The input is broadcast to both columns by to_device, wherever it starts."""
    net = AlexNet("tiny", "float64", backend=tagged, devices=(0, 1)).init(seed=0)
    x = numpy.random.default_rng(0).standard_normal((2, 3, 45, 45))
    a = net.forward(tagged_input(x, device=1))
    b = net.forward(x)  # host array
    numpy.testing.assert_array_equal(numpy.asarray(a), numpy.asarray(b))


def test_the_backend_catches_mixed_devices():
    with tagged.Device(0):
        a = tagged.ones((2, 2))
    with tagged.Device(1):
        b = tagged.ones((2, 2))
    with tagged.Device(0):
        with pytest.raises(DeviceMismatch, match=r"devices \[0, 1\]"):
            a + b
        with pytest.raises(DeviceMismatch):
            a @ b
        with pytest.raises(DeviceMismatch):
            tagged.concatenate([a, b])
        with pytest.raises(DeviceMismatch):
            a[0] = b[0]
        with pytest.raises(DeviceMismatch, match="host"):
            a + numpy.ones((2, 2))
        with pytest.raises(DeviceMismatch, match="current device is 0"):
            b * 2
        moved = backend.to_device(b, tagged, 0)
        assert (a + moved).device_id == 0 and moved.device_id == 0


def test_a_missing_transfer_in_an_exchange_is_caught(monkeypatch):
    """A placement bug (an exchange that forgets to move the other column's part) fails
    at the first exchange, which it would only do on two GPUs with CuPy."""
    net = AlexNet("tiny", "float64", backend=tagged, devices=(0, 1)).init(seed=0)
    x = tagged_input(numpy.zeros((2, 3, 45, 45)))

    monkeypatch.setattr(Placement, "move", lambda self, a, src, dst: a)  # no transfer
    with pytest.raises(DeviceMismatch):
        net.forward(x)


def test_a_layer_run_outside_its_columns_device_is_caught(monkeypatch):
    """Running column 1's layers under device 0 (a forgotten device context) fails."""
    net = AlexNet("tiny", "float64", backend=tagged, devices=(0, 1)).init(seed=0)
    x = tagged_input(numpy.zeros((2, 3, 45, 45)))
    monkeypatch.setattr(Placement, "device", lambda self, c: backend.device(self.xp, 0))
    with pytest.raises(DeviceMismatch):
        net.forward(x)


def test_both_columns_on_one_device_also_work():
    net = AlexNet("tiny", "float64", backend=tagged, devices=(0, 0)).init(seed=0)
    x = numpy.random.default_rng(0).standard_normal((2, 3, 45, 45))
    loss, grads = net.loss_and_grad(tagged_input(x), numpy.array([1, 2]), train=False)
    ref_loss, _ = (
        AlexNet("tiny", "float64").init(seed=0).loss_and_grad(x, numpy.array([1, 2]), train=False)
    )
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    assert all(g.device_id == 0 for g in grads.values())


@pytest.mark.gpu
@pytest.mark.skipif(backend.gpu_count() == 0, reason="needs CuPy and a CUDA device")
def test_cupy_matches_numpy():
    """CuPy (both columns on the default devices) against NumPy: same seed, same weights;
    same loss, gradients and SGD step to float64 round-off."""
    xp, name = backend.cupy_module(), "cupy"
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((3, 3, 45, 45))
    labels = numpy.array([4, 0, 1])
    net = AlexNet("tiny", "float64", backend=name, lrn_mode="all").init(seed=2, scheme="he")
    ref = AlexNet("tiny", "float64", lrn_mode="all").init(seed=2, scheme="he")
    for key, value in net.state_dict().items():
        numpy.testing.assert_array_equal(value, ref.state_dict()[key])
    loss, grads = net.loss_and_grad_columns(xp.asarray(x), labels, rng=numpy.random.default_rng(1))
    ref_loss, ref_grads = ref.loss_and_grad(x, labels, rng=numpy.random.default_rng(1))
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for key, g in net.full_grads(grads).items():
        assert backend.get_array_module(g) is xp
        numpy.testing.assert_allclose(
            backend.asnumpy(g),
            ref_grads[key],
            rtol=1e-11,
            atol=1e-12 * float(numpy.abs(ref_grads[key]).max()),
        )
    SGD(net).step(grads)
    SGD(ref).step(ref_grads)
    for key, value in net.state_dict().items():
        numpy.testing.assert_allclose(value, ref.state_dict()[key], rtol=1e-12, atol=1e-15)
