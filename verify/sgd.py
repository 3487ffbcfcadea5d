"""Three SGD steps of refnet against ``torch.optim.SGD`` on the same batches and masks.

The two forms of momentum SGD, with learning rate eps, momentum mu, weight decay lam:

    paper:   v <- mu * v - lam * eps * w - eps * g;     w <- w + v
    pytorch: b <- mu * b + (g + lam * w);               w <- w - eps * b

While eps is constant, v = -eps * b at every step and the weights agree. When eps
changes from eps_old to eps_new before a step, with b the buffer before that step:

    w_paper - w_pytorch = -mu * eps_old * b + mu * eps_new * b = mu * (eps_new - eps_old) * b

The schedule here is eps = 0.01, 0.01, 0.001: steps 1-2 must agree to the network
tolerance, step 3 must differ by exactly that amount, with b read from PyTorch's own
momentum buffer after step 2 (an independent source for the prediction).

Biases are not decayed (``decay_biases=False``, the paper's rule as Caffe applies it):
PyTorch gets two parameter groups, weight_decay=lam for weights and 0 for biases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy
import torch
from numpy.typing import DTypeLike

from refnet import SGD, build_network
from refnet.arch import get_arch
from refnet.verify.compare import Row, errors, tolerance, worst
from refnet.verify.network import dropout_masks, make_pair
from refnet.verify.twin_network import TwinAlexNet

PART = "sgd"
LRS = (0.01, 0.01, 0.001)
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


def torch_optimizer(twin: TwinAlexNet, lr: float) -> Any:
    weights = [p for n, p in twin.named_parameters() if n.endswith(".weight")]
    biases = [p for n, p in twin.named_parameters() if n.endswith(".bias")]
    return torch.optim.SGD(
        [
            {"params": weights, "weight_decay": WEIGHT_DECAY},
            {"params": biases, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=MOMENTUM,
    )


def _worst(
    case: str,
    quantity: str,
    ours: Mapping[str, numpy.ndarray],
    theirs: Mapping[str, numpy.ndarray],
    tol: float,
):
    return worst(PART, case, quantity, ours, theirs, tol)


def run(
    dtype: DTypeLike = "float64", seed: int = 0, arch: str = "tiny", batch: int = 4
) -> list[Row]:
    """Rows: refnet (both forms) vs torch.optim.SGD over three steps with an lr change."""
    dtype = numpy.dtype(dtype)
    tol = tolerance(dtype, "network")
    rng = numpy.random.default_rng([seed, 300])
    net_p, twin, state = make_pair(arch, dtype, rng)  # refnet, pytorch form
    net_a = build_network(net_p.options)  # refnet, paper form
    net_a.load_state_dict(state)
    s = get_arch(arch).input_size
    batches = []
    for _ in LRS:
        x = rng.standard_normal((batch, 3, s, s)).astype(dtype)
        labels = rng.integers(0, state["fc8.weight"].shape[0], size=batch)
        batches.append((x, labels, dropout_masks(state, batch, 0.5, rng, dtype)))

    opt_torch = torch_optimizer(twin, LRS[0])
    opt_p = SGD(
        net_p,
        lr=LRS[0],
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        form="pytorch",
        decay_biases=False,
    )
    opt_a = SGD(
        net_a,
        lr=LRS[0],
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        form="paper",
        decay_biases=False,
    )
    rows = []
    for t, (lr, (x, labels, masks)) in enumerate(zip(LRS, batches, strict=True), start=1):
        buffers = {
            n: opt_torch.state[p]["momentum_buffer"].detach().numpy().copy()
            for n, p in twin.named_parameters()
            if p in opt_torch.state
        }
        before = twin.numpy_state()
        for group in opt_torch.param_groups:
            group["lr"] = lr
        opt_p.lr = lr
        opt_a.lr = lr
        twin.loss_and_grad(x, labels, train=True, masks=masks)
        opt_torch.step()
        for net, opt in ((net_p, opt_p), (net_a, opt_a)):
            _, grads = net.loss_and_grad(x, labels, train=True, masks=masks)
            opt.step(grads)
        ref = twin.numpy_state()
        case = f"{arch} step {t} lr={lr:g}"
        rows.append(_worst(case, "w, pytorch form vs torch", net_p.state_dict(), ref, tol))
        w_paper = net_a.state_dict()
        if t == 1 or LRS[t - 1] == LRS[t - 2]:
            rows.append(_worst(case, "w, paper form vs torch", w_paper, ref, tol))
            continue
        # lr changed: predicted w_paper - w_torch = mu * (lr_new - lr_old) * b
        lr_old = LRS[t - 2]
        worst = None
        for k in ref:
            measured = w_paper[k].astype(numpy.float64) - ref[k]
            predicted = MOMENTUM * (lr - lr_old) * buffers[k].astype(numpy.float64)
            max_abs, rel_to_diff = errors(measured, predicted)
            # the difference of two nearly equal weights carries their round-off, so the
            # error is measured against the scale of the weights that were subtracted
            scale = max(float(numpy.max(numpy.abs(ref[k]))), float(numpy.max(numpy.abs(before[k]))))
            max_rel = max_abs / scale
            size_of_diff = float(numpy.max(numpy.abs(predicted))) / scale
            row = Row(
                PART,
                case,
                "w_paper - w_torch vs mu*(lr_new-lr_old)*b",
                max_abs,
                max_rel,
                tol,
                "PASS" if max_rel <= tol and size_of_diff >= 100 * max_rel else "FAIL",
                f"{k}: |diff|/|w| = {size_of_diff:.2e}, err/|diff| = {rel_to_diff:.1e}",
            )
            if worst is None or (
                (row.status == "FAIL", row.max_rel) > (worst.status == "FAIL", worst.max_rel)
            ):
                worst = row
        rows.append(worst)
    return rows
