"""The network's workspaces: a step never sees what an earlier step left in reused
memory, and nothing the caller keeps is ever written by a later call.

The workspaces hand out every array here (thresholds patched to zero) and fill each
with garbage first (``tests.test_workspace_layers.Poisoned``). A network that has run
other batches (other sizes, training and evaluation passes) must give, bit for bit,
what a fresh network gives on the same batch.
"""

import numpy
import pytest

from refnet import SGD, AlexNet
from refnet.layers import workspace
from tests.test_workspace_layers import Poisoned

CONFIGS = [
    dict(arch="tiny", dtype="float64"),
    dict(
        arch="tiny",
        dtype="float64",
        layout="NCHW",
        conv_algo="gemm",
        lrn_mode="all",
        conv_cache="input",
    ),
    dict(arch="tiny", dtype="float32", columns=1, dropout_mode="inverted"),
    dict(arch="demo", dtype="float32"),
]


@pytest.fixture(autouse=True)
def every_array(monkeypatch):
    monkeypatch.setattr(workspace, "MIN_BYTES", 1)
    monkeypatch.setattr(workspace, "PLAN_BYTES", 8 << 10)


def _net(config, poisoned=True):
    net = AlexNet(**config).init(seed=0, scheme="he")
    if poisoned:
        net.placement.workspaces = [Poisoned() for _ in net.placement.workspaces]
    return net


def _batch(net, n, seed):
    rng = numpy.random.default_rng(seed)
    s = net.spec.input_size
    x = rng.standard_normal((n, 3, s, s)).astype(net.dtype)
    labels = rng.integers(0, net.num_classes, n)
    masks = {name: rng.random((n, width)) >= 0.5 for name, width in net.dropout_widths().items()}
    return x, labels, masks


def _results(net, batch):
    """(loss, per-column gradients, eval logits) as host copies."""
    x, labels, masks = batch
    loss, grads = net.loss_and_grad_columns(x, labels, masks=masks)
    grads = [{k: numpy.array(v) for k, v in g.items()} for g in grads]
    return loss, grads, numpy.array(net.forward(x))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_a_step_does_not_see_the_steps_before(config):
    used = _net(config)
    opt = SGD(used, lr=1e-3)
    for n, seed in ((4, 1), (6, 2), (4, 3)):  # other batches, sizes and passes first
        x, labels, masks = _batch(used, n, seed)
        opt.step(used.loss_and_grad_columns(x, labels, masks=masks)[1])
        used.forward(x)
    fresh = _net(config, poisoned=False)
    fresh.load_state_dict(used.state_dict())
    batch = _batch(used, 4, 9)
    loss, grads, logits = _results(used, batch)
    loss_f, grads_f, logits_f = _results(fresh, batch)
    assert loss == loss_f
    numpy.testing.assert_array_equal(logits, logits_f)
    for g, g_f in zip(grads, grads_f, strict=True):
        assert g.keys() == g_f.keys()
        for k in g:
            numpy.testing.assert_array_equal(g[k], g_f[k], err_msg=k)
    assert numpy.isfinite(logits).all()


@pytest.mark.parametrize("config", CONFIGS[:3], ids=lambda c: "-".join(map(str, c.values())))
def test_what_the_caller_keeps_is_never_written(config):
    net = _net(config)
    x, labels, masks = _batch(net, 4, 1)
    kept_loss, kept_grads = net.loss_and_grad_columns(x, labels, masks=masks)
    _, kept_full = net.loss_and_grad(x, labels, masks=masks)
    kept_logits = net.forward(x)
    copies = (
        [{k: v.copy() for k, v in g.items()} for g in kept_grads],
        {k: v.copy() for k, v in kept_full.items()},
        kept_logits.copy(),
    )
    for seed in (2, 3, 4):  # the same sizes: the same plan
        x, labels, masks = _batch(net, 4, seed)
        net.loss_and_grad_columns(x, labels, masks=masks)
        net.loss_and_grad(x, labels, masks=masks)
        net.forward(x)
    for g, c in zip(kept_grads, copies[0], strict=True):
        for k in g:
            numpy.testing.assert_array_equal(g[k], c[k], err_msg=k)
    for k in kept_full:
        numpy.testing.assert_array_equal(kept_full[k], copies[1][k], err_msg=k)
    numpy.testing.assert_array_equal(kept_logits, copies[2])


def test_steps_after_the_first_reuse_the_same_memory():
    net = _net(CONFIGS[0])
    opt = SGD(net, lr=1e-3)
    held = []
    for seed in range(5):
        x, labels, masks = _batch(net, 4, seed)
        opt.step(net.loss_and_grad_columns(x, labels, masks=masks)[1])
        held.append([ws.held_bytes for ws in net.placement.workspaces])
    assert held[0] == [0, 0]  # nothing kept before the first plan
    assert held[1] == held[2] == held[3] == held[4] and min(held[1]) > 0
