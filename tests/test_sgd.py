"""SGD: each step equal to its formula computed independently here, in both forms.

Gradients are random arrays (not the network's), so the update rule is tested alone;
hyperparameters are chosen so every term (momentum, weight decay, lr) is visible.
"""
import numpy
import pytest

from layers import blocking
from refnet import SGD, AlexNet

LR, MOMENTUM, WD = 0.05, 0.7, 0.03


def setup(form, decay_biases=False, columns=2, seed=0):
    net = AlexNet("tiny", "float64", columns=columns).init(seed=seed, scheme="he")
    opt = SGD(net, lr=LR, momentum=MOMENTUM, weight_decay=WD, form=form,
              decay_biases=decay_biases)
    return net, opt


def random_grads(net, rng):
    return {name: rng.standard_normal(shape) for name, shape in net.shapes.items()}


def decay_of(name, decay_biases):
    return WD if name.endswith(".weight") or decay_biases else 0.0


@pytest.mark.parametrize("budget", [None, 1, 500])
@pytest.mark.parametrize("decay_biases", [False, True])
@pytest.mark.parametrize("form", ["paper", "pytorch"])
def test_two_steps_equal_the_formula(monkeypatch, form, decay_biases, budget):
    """``budget``: the update's block size in bytes (None: the default); 1 and 500 bytes
    update one row or a few rows at a time."""
    if budget is not None:
        monkeypatch.setattr(blocking, "block_bytes", lambda xp: budget)
    rng = numpy.random.default_rng(1)
    net, opt = setup(form, decay_biases)
    w = net.state_dict()
    v = {n: numpy.zeros_like(a) for n, a in w.items()}
    for _ in range(2):                      # the second step exercises the momentum term
        g = random_grads(net, rng)
        opt.step(g)
        for n in w:
            wd = decay_of(n, decay_biases)
            if form == "paper":
                v[n] = MOMENTUM * v[n] - wd * LR * w[n] - LR * g[n]
                w[n] = w[n] + v[n]
            else:
                v[n] = MOMENTUM * v[n] + (g[n] + wd * w[n])
                w[n] = w[n] - LR * v[n]
        got = net.state_dict()
        vel = opt.state_dict()
        for n in w:
            numpy.testing.assert_allclose(got[n], w[n], rtol=1e-13, atol=1e-15, err_msg=n)
            numpy.testing.assert_allclose(vel[f"velocity/{n}"], v[n], rtol=1e-13,
                                          atol=1e-15, err_msg=n)


def test_biases_are_not_decayed_by_default():
    net, opt = setup("paper")
    before = net.state_dict()
    zero = {n: numpy.zeros(s) for n, s in net.shapes.items()}
    opt.step(zero)                          # only weight decay moves anything
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
        numpy.testing.assert_allclose(a, w[n] - LR * (g[n] + decay_of(n, False) * w[n]),
                                      rtol=1e-13, atol=1e-15)


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
    opt.step(random_grads(net, rng))                    # non-zero velocities
    before = net.state_dict(), opt.state_dict()
    cols = net.column_grads(random_grads(net, rng))
    cols[1]["fc7.bias"] = numpy.zeros(3)
    with pytest.raises(ValueError, match="fc7.bias"):
        opt.step(cols)
    for old, new in zip(before, (net.state_dict(), opt.state_dict())):
        for key in old:
            numpy.testing.assert_array_equal(old[key], new[key])
