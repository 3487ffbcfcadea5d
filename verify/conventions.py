"""Where the paper, PyTorch, Caffe and refnet differ, measured.

Each measurement is a report row. PASS/FAIL rows check what refnet claims (a translation
makes two conventions agree, a shape is what the paper's table says, the channels that
differ are the ones predicted); INFO rows show how large a difference is when the
translation is left out. docs/conventions.md quotes these numbers.

- LRN: alpha taken literally by PyTorch (it divides by n), PyTorch's and Caffe's k=1;
  the authors' per-column LRN against Caffe's all-channel LRN (channels 46-49 of 96 and
  126-129 of 256 differ, as the window crosses the column boundary).
- Input 224 vs 227; pooling rounding (floor, PyTorch, refnet; ceil, Caffe).
- Ties in max pooling: first maximum (PyTorch, refnet) against "every tied maximum gets
  the gradient".
- Dropout: ``F.dropout`` is the inverted form; paper-mode weights equal inverted-mode
  weights with fc7 and fc8 scaled by 1 - p; torchvision's placement before fc6/fc7.
- ReLU's gradient at exactly 0.

Axis legend: N batch, C channels, H/W height/width, D features.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy
import torch
import torch.nn.functional as F
from numpy.typing import DTypeLike

from refnet import layers
from refnet.arch import ARCHS, param_shapes
from refnet.verify import twins
from refnet.verify.compare import Row, check, info, judged, tolerance
from refnet.verify.twin_network import TwinAlexNet

PART = "conventions"
PAPER_LRN: dict[str, Any] = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)


def lrn_rows(rng: numpy.random.Generator, dtype: DTypeLike, tol: float) -> list[Row]:
    rows = []
    # post-ReLU activations at the scale where alpha=1e-4 matters (sum of 5 squares ~ 1e4)
    x = numpy.abs(rng.standard_normal((2, 96, 6, 5)) * 50).astype(dtype)
    y, _ = layers.lrn.forward(x, **PAPER_LRN)
    tx = twins.tensor(x)
    n, alpha, beta, k = PAPER_LRN["size"], PAPER_LRN["alpha"], PAPER_LRN["beta"], PAPER_LRN["k"]
    translated = F.local_response_norm(tx, n, alpha=alpha * n, beta=beta, k=k).numpy()
    literal = F.local_response_norm(tx, n, alpha=alpha, beta=beta, k=k).numpy()
    torch_k1 = F.local_response_norm(tx, n, alpha=alpha * n, beta=beta).numpy()
    caffe = F.local_response_norm(tx, n, alpha=alpha, beta=beta, k=1.0).numpy()
    case = "lrn paper params, |x|~50"
    rows.append(judged(PART, case, "ours vs torch alpha*n, k=2", y, translated, tol))
    rows.append(
        info(PART, case, "ours vs torch alpha as is", y, literal, "PyTorch divides alpha by n")
    )
    rows.append(info(PART, case, "ours vs torch default k=1", y, torch_k1))
    rows.append(info(PART, case, "ours vs Caffe bvlc (alpha/n, k=1)", y, caffe))
    for channels in (96, 256):
        x = rng.standard_normal((2, channels, 5, 4)).astype(dtype) * 30
        half = channels // 2
        column = numpy.concatenate(
            [
                layers.lrn.forward(x[:, :half], **PAPER_LRN)[0],
                layers.lrn.forward(x[:, half:], **PAPER_LRN)[0],
            ],
            axis=1,
        )
        every, _ = layers.lrn.forward(x, **PAPER_LRN)
        differ = numpy.flatnonzero(numpy.any(column != every, axis=(0, 2, 3)))
        expect = numpy.arange(half - 2, half + 2)
        ok = numpy.array_equal(differ, expect)
        case = f"lrn column vs all, {channels} ch"
        rows.append(
            check(
                PART,
                case,
                "channels that differ",
                ok,
                f"ours: {_ranges(differ)}; predicted {_ranges(expect)}",
            )
        )
        rows.append(
            info(
                PART,
                case,
                "column vs all channels",
                column,
                every,
                "Caffe's LRN crosses the column boundary",
            )
        )
        t_column = twins.lrn_torch(twins.tensor(x), groups=2, **PAPER_LRN).numpy()
        rows.append(judged(PART, case, "ours column vs torch per-group", column, t_column, tol))
    return rows


def _ranges(idx: Iterable[int]):
    idx = list(int(i) for i in idx)
    if not idx:
        return "none"
    out: list[str] = []
    start: int | None = idx[0]
    for a, b in zip(idx, idx[1:] + [None], strict=True):
        if b != a + 1:
            out.append(f"{start}-{a}" if a != start else f"{a}")
            start = b
    return ", ".join(out)


def size_rows(dtype: DTypeLike) -> list[Row]:
    rows = []
    w = numpy.zeros((1, 3, 11, 11), dtype=dtype)
    b = numpy.zeros(1, dtype=dtype)
    for side, pad, expect in ((227, 0, 55), (224, 0, 54), (224, 2, 55)):
        x = numpy.zeros((1, 3, side, side), dtype=dtype)
        ours = layers.conv.forward(x, w, b, stride=4, pad=pad)[0].shape[2]
        theirs = twins.conv_out_shape(x.shape, w.shape, stride=4, pad=pad)[2]
        rows.append(
            check(
                PART,
                f"conv1 11x11/4 pad {pad} on {side}",
                "output side",
                ours == theirs == expect,
                f"ours {ours}, torch {theirs}, expected {expect}",
            )
        )
    # the whole chain at 224 without padding: fc6 would need 6400 inputs, not 9216
    spec = ARCHS["alexnet"]
    shapes = param_shapes(spec)
    count = sum(int(numpy.prod(s)) for s in shapes.values())
    rows.append(
        check(
            PART,
            "alexnet arch",
            "parameters",
            count == 60_965_224,
            f"{count:,} (paper table 60,965,224)",
        )
    )
    paper = ((11, 4, 0, 96), (5, 1, 2, 256), (3, 1, 1, 384), (3, 1, 1, 384), (3, 1, 1, 256))
    ours = tuple((c.kernel, c.stride, c.pad, c.width) for c in spec.convs)
    rows.append(
        check(
            PART,
            "alexnet arch",
            "conv kernel/stride/pad/width",
            ours == paper,
            f"sizes {spec.sizes()}",
        )
    )
    h = 54
    for _ in range(2):
        h = (h - 3) // 2 + 1
    h = (h - 3) // 2 + 1
    rows.append(
        check(
            PART,
            "input 224, pad 0",
            "fc6 inputs",
            256 * h * h != 9216,
            f"{256 * h * h} (pool5 {h}x{h}); 227 gives {spec.fc6_inputs()}",
        )
    )
    return rows


def pool_rows(rng: numpy.random.Generator, dtype: DTypeLike, tol: float) -> list[Row]:
    rows = []
    for side in (55, 27, 13, 54, 26, 12):
        x = rng.standard_normal((1, 1, side, side)).astype(dtype)
        ours = layers.pool.forward(x, size=3, stride=2)[0].shape[2]
        floor = F.max_pool2d(twins.tensor(x), 3, 2).shape[2]
        ceil = F.max_pool2d(twins.tensor(x), 3, 2, ceil_mode=True).shape[2]
        rows.append(
            check(
                PART,
                f"maxpool 3/2 on {side}",
                "output side (floor)",
                ours == floor,
                f"ours {ours}, torch floor {floor}, Caffe ceil {ceil}",
            )
        )
    x = rng.integers(0, 3, size=(2, 8, 13, 13)).astype(dtype)  # integers: many ties
    y, cache = layers.pool.forward(x, size=3, stride=2)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layers.pool.backward(dy, cache)
    ref = twins.pool(x, dy, size=3, stride=2)
    split = _pool_backward_all_maxima(x, dy, 3, 2)
    rows.append(judged(PART, "maxpool 3/2 ties", "dx first-max vs torch", dx, ref["dx"], tol))
    rows.append(
        info(
            PART,
            "maxpool 3/2 ties",
            "dx first-max vs every-max rule",
            dx,
            split,
            "a rule giving each tied maximum the gradient",
        )
    )
    return rows


def _pool_backward_all_maxima(x: numpy.ndarray, dy: numpy.ndarray, size: int, stride: int):
    """Naive loop: every position equal to its window's maximum gets the window's dy."""
    N, C, H, W = x.shape
    dx = numpy.zeros_like(x)
    for oh in range(dy.shape[2]):
        for ow in range(dy.shape[3]):
            win = x[:, :, oh * stride : oh * stride + size, ow * stride : ow * stride + size]
            hit = win == win.max(axis=(2, 3), keepdims=True)  # (N, C, size, size)
            dx[:, :, oh * stride : oh * stride + size, ow * stride : ow * stride + size] += (
                hit * dy[:, :, oh : oh + 1, ow : ow + 1]
            )
    return dx


def dropout_rows(rng: numpy.random.Generator, dtype: DTypeLike, tol: float) -> list[Row]:
    rows = []
    p = 0.5
    x = (rng.standard_normal((64, 256)) + 3).astype(dtype)  # no zeros in x
    torch.manual_seed(int(rng.integers(2**31)))
    y = F.dropout(twins.tensor(x), p=p, training=True).numpy()
    kept = y != 0
    ratio = y[kept] / x[kept]
    rows.append(
        check(
            PART,
            "torch F.dropout p=0.5 train",
            "y/x on kept units",
            bool(numpy.allclose(ratio, 1 / (1 - p), rtol=tol, atol=0)),
            f"min {ratio.min():.6g}, max {ratio.max():.6g}; kept {kept.mean():.3f}",
        )
    )
    y_eval = F.dropout(twins.tensor(x), p=p, training=False).numpy()
    rows.append(judged(PART, "torch F.dropout p=0.5 eval", "y vs x (identity)", y_eval, x, tol))
    return rows


def network_dropout_rows(rng: numpy.random.Generator, dtype: DTypeLike, tol: float) -> list[Row]:
    """Paper vs inverted dropout on a tiny network, and torchvision's placement."""
    from refnet.verify.network import dropout_masks, make_pair

    rows = []
    p = 0.5
    net_paper, twin, state = make_pair("tiny", dtype, rng)
    net_inv, _, _ = make_pair("tiny", dtype, rng, dropout_mode="inverted")
    scaled = dict(state)
    for name in ("fc7.weight", "fc8.weight"):  # each layer after a dropout sees 1 - p
        scaled[name] = (state[name] * (1 - p)).astype(dtype)
    net_inv.load_state_dict(scaled)
    n, s = 4, ARCHS["tiny"].input_size
    x = rng.standard_normal((n, 3, s, s)).astype(dtype)
    masks = dropout_masks(state, n, p, rng, dtype)
    for train in (False, True):
        m = masks if train else None
        a = net_paper.forward(x, train=train, masks=m)
        b = net_inv.forward(x, train=train, masks=m)
        mode = "train" if train else "eval"
        rows.append(
            judged(
                PART,
                f"tiny dropout paper(W) vs inverted(W'), {mode}",
                "logits",
                a,
                b,
                tolerance(dtype, "network"),
                "W' = W with fc7, fc8 weights x (1-p)",
            )
        )
    net_inv.load_state_dict(state)
    rows.append(
        info(
            PART,
            "tiny dropout paper vs inverted, same W, eval",
            "logits",
            net_paper.forward(x, train=False),
            net_inv.forward(x, train=False),
        )
    )
    # torchvision: dropout on fc6's input and fc7's input (inverted), not on their outputs
    tx = twins.tensor(x)
    with torch.no_grad():
        h = torch.flatten(twin.pool(relu_conv_features(twin, tx)), 1)  # (N, D5)
        tv_eval = twin.fc8(torch.relu(twin.fc7(torch.relu(twin.fc6(h))))).numpy()
        drop6 = torch.rand(h.shape, generator=torch.Generator().manual_seed(0)) >= p
        g = torch.relu(twin.fc6(h * drop6 / (1 - p)))
        drop7 = torch.from_numpy(masks["fc6"].astype(bool))
        tv_train = twin.fc8(torch.relu(twin.fc7(g * drop7 / (1 - p)))).numpy()
    paper_place_inverted_eval = net_inv.forward(x, train=False)
    rows.append(
        judged(
            PART,
            "tiny torchvision placement, eval",
            "logits vs ours inverted",
            tv_eval,
            paper_place_inverted_eval,
            tolerance(dtype, "network"),
            "inverted dropout is the identity at test, wherever it sits",
        )
    )
    rows.append(
        info(
            PART,
            "tiny torchvision placement, train",
            "logits vs ours inverted",
            tv_train,
            net_inv.forward(x, train=True, masks=masks),
            "dropout on pool5 and fc6 outputs vs fc6 and fc7 outputs",
        )
    )
    return rows


def lrn_network_rows(rng: numpy.random.Generator, dtype: DTypeLike) -> list[Row]:
    """The demo network with the authors' per-column LRN against Caffe's all-channel LRN."""
    from refnet.verify.network import make_pair

    net_column, _, state = make_pair("demo", dtype, rng)
    net_all, _, _ = make_pair("demo", dtype, rng, lrn_mode="all")
    net_all.load_state_dict(state)
    s = ARCHS["demo"].input_size
    x = (50 * rng.standard_normal((2, 3, s, s))).astype(dtype)  # pixel-like scale
    return [
        info(
            PART,
            "demo net lrn column vs all, |x|~50",
            "logits",
            net_column.forward(x),
            net_all.forward(x),
            "same weights; LRN outputs differ in channels 10-13 of 24, 30-33 of 64",
        )
    ]


def relu_conv_features(twin: TwinAlexNet, tx: torch.Tensor) -> torch.Tensor:
    """The twin's conv stack up to conv5's ReLU (before pool5)."""
    h = twin.pool(twin._lrn(torch.relu(twin.conv1(tx))))
    h = twin.pool(twin._lrn(torch.relu(twin.conv2(h))))
    h = torch.relu(twin.conv3(h))
    h = torch.relu(twin.conv4(h))
    return torch.relu(twin.conv5(h))


def run(dtype: DTypeLike = "float64", seed: int = 0) -> list[Row]:
    dtype = numpy.dtype(dtype)
    tol = tolerance(dtype, "layer")
    rng = numpy.random.default_rng([seed, 400])
    return (
        lrn_rows(rng, dtype, tol)
        + size_rows(dtype)
        + pool_rows(rng, dtype, tol)
        + dropout_rows(rng, dtype, tol)
        + network_dropout_rows(rng, dtype, tol)
        + lrn_network_rows(rng, dtype)
    )
