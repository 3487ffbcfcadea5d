"""Finite differences of the whole "tiny" network's loss, in float64, along random directions.

For every parameter tensor p and a random direction v (and for one direction over all
parameters at once), the central difference (L(p + eps v) - L(p - eps v)) / (2 eps) must
equal <dL/dp, v> from ``loss_and_grad``. The loss is the mean cross-entropy with random
labels, so the upstream gradient on the logits is a random (softmax - one-hot) / N; dropout
runs in training mode with fixed masks. The weights are He-scaled with random biases, and
the seed is chosen so that every ReLU input and every pooling window is at least
``MARGIN`` away from a kink (|z| and the gap between a window's two largest values,
for windows not all zero), far more than eps moves any activation.
"""

import numpy
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from refnet import AlexNet
from refnet.layers import softmax
from tests.grouped_network import TINY_AVGPOOL, grouped_loss_and_grad, random_batch, random_state
from tests.tolerance import FD

MARGIN = 1e-4


def pool_gap(x, size, stride):
    """Smallest gap between the largest and second largest value of any pooling window
    whose maximum is positive (an all-zero window after ReLU stays all-zero nearby)."""
    win = sliding_window_view(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]
    flat = numpy.sort(win.reshape(win.shape[:4] + (-1,)), axis=-1)  # (N, C, OH, OW, z*z)
    live = flat[..., -1] > 0
    return float(numpy.min((flat[..., -1] - flat[..., -2])[live], initial=numpy.inf))


def setup_away_from_kinks(options):
    """(net, state, x, labels, masks) for the first seed whose activations keep MARGIN."""
    for seed in range(50):
        rng = numpy.random.default_rng(seed)
        net = AlexNet(**{"arch": "tiny", **options}, dtype="float64")
        sd = random_state(net, rng, bias_scale=0.3)
        x, labels, masks = random_batch(net, rng, n=2)
        _, _, _, relu_in, pool_in = grouped_loss_and_grad(net, sd, x, labels, masks)
        relu_margin = min(float(numpy.min(numpy.abs(z))) for z in relu_in)
        gap = min(pool_gap(p, *net.pool) for p in pool_in)
        if relu_margin > MARGIN and gap > MARGIN:
            net.load_state_dict(sd)
            return net, sd, x, labels, masks
    pytest.fail("no seed with activations away from kinks")


def loss_at(net, sd, x, labels, masks):
    net.load_state_dict(sd)  # the loss alone: forward and softmax, no backward
    return float(softmax.forward(net.forward(x, train=True, masks=masks), labels)[0])


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(lrn_mode="all", pool=(2, 2)),
        dict(columns=1, dropout_mode="inverted"),
        dict(head="gap"),
        dict(arch=TINY_AVGPOOL, dropout_placement="before", dropout_mode="inverted"),
    ],
    ids=["paper", "lrn-all-pool2", "one-column-inverted", "gap-head", "avgpool-dropout-before"],
)
def test_whole_network_gradient_matches_finite_differences(options):
    net, sd, x, labels, masks = setup_away_from_kinks(options)
    loss, grads = net.loss_and_grad(x, labels, train=True, masks=masks)
    assert numpy.isfinite(loss)
    rng = numpy.random.default_rng(123)
    eps = FD["eps"]
    directions = [{name: rng.standard_normal(shape)} for name, shape in net.shapes.items()]
    directions.append({name: rng.standard_normal(shape) for name, shape in net.shapes.items()})
    for v in directions:
        plus = {n: a + eps * v[n] if n in v else a for n, a in sd.items()}
        minus = {n: a - eps * v[n] if n in v else a for n, a in sd.items()}
        fd = (loss_at(net, plus, x, labels, masks) - loss_at(net, minus, x, labels, masks)) / (
            2 * eps
        )
        analytic = sum(float(numpy.sum(grads[n] * v[n])) for n in v)
        norm = numpy.sqrt(sum(numpy.sum(grads[n] ** 2) * numpy.sum(v[n] ** 2) for n in v))
        bound = FD["atol"] + FD["rtol"] * (norm + abs(fd))
        assert abs(fd - analytic) <= bound, (
            f"direction over {sorted(v) if len(v) < 3 else 'all parameters'}: "
            f"finite difference {fd!r} vs backward {analytic!r}"
        )
        assert analytic != 0.0, f"zero gradient along {sorted(v)}"
