"""SGD: the blocked update equal to ``layers.reference.sgd_update`` bit for bit, in both
forms; the reference's forms against each other and the closed form of a first step.

Gradients are random arrays (not the network's), so the update rule is tested alone;
hyperparameters are chosen so every term (momentum, weight decay, lr) is visible.
"""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet import SGD, AlexNet
from refnet.layers import blocking, reference
from tests.gradient_check import fixture_settings

LR, MOMENTUM, WD = 0.05, 0.7, 0.03


def setup(form, decay_biases=False, columns=2, seed=0):
    net = AlexNet("tiny", "float64", columns=columns).init(seed=seed, scheme="he")
    opt = SGD(net, lr=LR, momentum=MOMENTUM, weight_decay=WD, form=form, decay_biases=decay_biases)
    return net, opt


def random_grads(net, rng):
    return {name: rng.standard_normal(shape) for name, shape in net.shapes.items()}


def decay_of(name, decay_biases):
    return WD if name.endswith(".weight") or decay_biases else 0.0


@fixture_settings
@given(data=st.data())
def test_steps_equal_the_reference_update_bit_for_bit(dtype, data):
    """Two steps (the second exercises momentum) of the blocked update, with blocks of
    ``budget`` bytes (None: the default; 1 and 500: one row or a few rows at a time),
    against ``reference.sgd_update`` on the full arrays: the same operations per element
    in the same order, so the same bits."""
    form = data.draw(st.sampled_from(["paper", "pytorch"]), label="form")
    decay_biases = data.draw(st.booleans(), label="decay_biases")
    budget = data.draw(st.sampled_from([None, 1, 500, 5000]), label="budget")
    lr, momentum, wd = (
        data.draw(st.floats(lo, hi), label=name)
        for name, lo, hi in (("lr", 1e-3, 0.5), ("momentum", 0.1, 0.99), ("wd", 1e-3, 0.1))
    )
    rng = numpy.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    net = AlexNet("tiny", dtype.name).init(seed=0, scheme="he")
    opt = SGD(net, lr=lr, momentum=momentum, weight_decay=wd, form=form, decay_biases=decay_biases)
    w = net.state_dict()
    v = {n: numpy.zeros_like(a) for n, a in w.items()}
    with pytest.MonkeyPatch.context() as patch:
        if budget is not None:
            patch.setattr(blocking, "block_bytes", lambda xp: budget)
        for _ in range(2):
            g = {n: rng.standard_normal(s).astype(dtype) for n, s in net.shapes.items()}
            opt.step(g)
            for n in w:
                w[n], v[n] = reference.sgd_update(
                    w[n], v[n], g[n], lr=lr, momentum=momentum, weight_decay=opt.decay(n), form=form
                )
    got, vel = net.state_dict(), opt.state_dict()
    for n in w:
        assert got[n].dtype == dtype
        numpy.testing.assert_array_equal(got[n], w[n], err_msg=n)
        numpy.testing.assert_array_equal(vel[f"velocity/{n}"], v[n], err_msg=n)


def test_reference_update_forms_and_first_step():
    """From v = 0 both forms step to w - lr (g + wd w); at constant lr they keep the same
    w with v_paper = -lr v_pytorch; after lr changes from lr1 to lr2 they differ by
    m (lr2 - lr1) v_pytorch (the velocity before that step)."""
    rng = numpy.random.default_rng(2)
    w0, g1, g2, g3 = (rng.standard_normal((5, 7)) for _ in range(4))
    h = dict(momentum=MOMENTUM, weight_decay=WD)
    wa, va = wb, vb = w0, numpy.zeros_like(w0)
    for i, g in enumerate((g1, g2)):
        wa, va = reference.sgd_update(wa, va, g, lr=LR, form="paper", **h)
        wb, vb = reference.sgd_update(wb, vb, g, lr=LR, form="pytorch", **h)
        if i == 0:
            numpy.testing.assert_allclose(wa, w0 - LR * (g1 + WD * w0), rtol=1e-14)
        numpy.testing.assert_allclose(wa, wb, rtol=1e-13)
        numpy.testing.assert_allclose(va, -LR * vb, rtol=1e-13)
    lr2 = 0.2
    wa3, _ = reference.sgd_update(wa, va, g3, lr=lr2, form="paper", **h)
    wb3, _ = reference.sgd_update(wb, vb, g3, lr=lr2, form="pytorch", **h)
    numpy.testing.assert_allclose(wa3 - wb3, MOMENTUM * (lr2 - LR) * vb, rtol=1e-9)
    with pytest.raises(ValueError, match="form must be 'paper' or 'pytorch', got 'adam'"):
        reference.sgd_update(w0, vb, g1, lr=LR, form="adam", **h)


def test_biases_are_not_decayed_by_default():
    net, opt = setup("paper")
    before = net.state_dict()
    zero = {n: numpy.zeros(s) for n, s in net.shapes.items()}
    opt.step(zero)  # only weight decay moves anything
    after = net.state_dict()
    for n in before:
        if n.endswith(".bias"):
            numpy.testing.assert_array_equal(after[n], before[n])
        else:
            numpy.testing.assert_allclose(after[n], before[n] * (1 - WD * LR), rtol=1e-14)


def test_forms_agree_at_constant_lr_and_differ_by_the_predicted_amount_after_a_change():
    """With w1 the same after step 1 in both forms, after step 2 at a new lr:
    w2_paper - w2_pytorch = m (lr2 - lr1) (g1 + wd w0)."""
    rng = numpy.random.default_rng(3)
    net_a, opt_a = setup("paper")
    net_b, opt_b = setup("pytorch")
    w0 = net_a.state_dict()
    g1, g2 = random_grads(net_a, rng), random_grads(net_a, rng)
    opt_a.step(g1)
    opt_b.step(g1)
    for n, a in net_a.state_dict().items():
        numpy.testing.assert_allclose(a, net_b.state_dict()[n], rtol=1e-13, atol=1e-15)
    lr2 = 0.2
    opt_a.lr = opt_b.lr = lr2
    opt_a.step(g2)
    opt_b.step(g2)
    wa, wb = net_a.state_dict(), net_b.state_dict()
    for n in w0:
        want = MOMENTUM * (lr2 - LR) * (g1[n] + decay_of(n, False) * w0[n])
        numpy.testing.assert_allclose(wa[n] - wb[n], want, rtol=1e-9, atol=1e-14, err_msg=n)
        assert numpy.abs(want).max() > 1e-3


def test_column_grads_and_full_grads_give_the_same_step():
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal((2, 3, 45, 45))
    labels = numpy.array([1, 3])
    net_a, opt_a = setup("paper")
    net_b, opt_b = setup("paper")
    _, cols = net_a.loss_and_grad_columns(x, labels, rng=numpy.random.default_rng(0))
    _, full = net_b.loss_and_grad(x, labels, rng=numpy.random.default_rng(0))
    opt_a.step(cols)
    opt_b.step(full)
    for n, a in net_a.state_dict().items():
        numpy.testing.assert_array_equal(a, net_b.state_dict()[n])


def test_one_column_net():
    rng = numpy.random.default_rng(5)
    net, opt = setup("pytorch", columns=1)
    w = net.state_dict()
    g = random_grads(net, rng)
    opt.step(g)
    for n, a in net.state_dict().items():
        numpy.testing.assert_allclose(
            a, w[n] - LR * (g[n] + decay_of(n, False) * w[n]), rtol=1e-13, atol=1e-15
        )


def test_float32_stays_float32():
    net = AlexNet("tiny", "float32").init(seed=0)
    opt = SGD(net)
    opt.step({n: numpy.ones(s, numpy.float32) for n, s in net.shapes.items()})
    assert all(a.dtype == numpy.float32 for p in net.params for a in p.values())
    assert all(v.dtype == numpy.float32 for vel in opt.velocity for v in vel.values())


def test_state_dict_round_trip_resumes_exactly():
    rng = numpy.random.default_rng(6)
    net_a, opt_a = setup("paper")
    g1, g2 = random_grads(net_a, rng), random_grads(net_a, rng)
    opt_a.step(g1)
    net_b, opt_b = setup("paper")
    net_b.load_state_dict(net_a.state_dict())
    opt_b.load_state_dict(opt_a.state_dict())
    opt_a.step(g2)
    opt_b.step(g2)
    for n, a in net_a.state_dict().items():
        numpy.testing.assert_array_equal(a, net_b.state_dict()[n])


def test_bad_states_and_options_are_refused():
    net, opt = setup("paper")
    sd = opt.state_dict()
    assert set(sd) == {f"velocity/{n}" for n in net.shapes}
    with pytest.raises(ValueError, match="velocity/fc8.bias"):
        opt.load_state_dict({k: v for k, v in sd.items() if k != "velocity/fc8.bias"})
    with pytest.raises(ValueError, match="velocity/conv1.weight"):
        opt.load_state_dict({**sd, "velocity/conv1.weight": numpy.zeros((1, 2))})
    with pytest.raises(ValueError, match="momentum_buffer"):
        opt.load_state_dict({**sd, "momentum_buffer": numpy.zeros(1)})
    with pytest.raises(ValueError, match="form"):
        SGD(net, form="adam")
    with pytest.raises(ValueError, match="lr"):
        SGD(net, lr=-1.0)
    with pytest.raises(ValueError, match="shape"):
        g = {n: numpy.zeros(s) for n, s in net.shapes.items()}
        cols = net.column_grads(g)
        cols[1]["conv1.weight"] = numpy.zeros((3, 3))
        opt.step(cols)


def test_a_bad_gradient_leaves_every_parameter_and_velocity_unchanged():
    """The gradients are all checked before any update: a wrong shape in column 1's last
    layer must not leave column 0 (or column 1's earlier layers) already stepped."""
    net, opt = setup("paper")
    rng = numpy.random.default_rng(7)
    opt.step(random_grads(net, rng))  # non-zero velocities
    before = net.state_dict(), opt.state_dict()
    cols = net.column_grads(random_grads(net, rng))
    cols[1]["fc7.bias"] = numpy.zeros(3)
    with pytest.raises(ValueError, match="fc7.bias"):
        opt.step(cols)
    for old, new in zip(before, (net.state_dict(), opt.state_dict()), strict=True):
        for key in old:
            numpy.testing.assert_array_equal(old[key], new[key])
