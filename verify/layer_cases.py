"""Every layer of ``layers/`` against its PyTorch twin, at the paper's settings and at stress.

The same cases run against another framework's twins (``verify.jax_twins``: the same
functions, written in JAX) with ``run(..., twins=, part=)``; each case function takes
an ``Against`` (the twins module and the report's part name).

Each case draws inputs and parameters from one seeded generator, runs our forward and
backward with a random upstream gradient (never all ones), runs the twin with the same
arrays, and yields one report row per quantity (y, dx, dw, db; loss and dlogits for the
softmax). Paper cases use the paper's kernel/stride/pad/groups and channel counts with
smaller spatial sizes (the maths does not depend on them); stress cases pick settings
where every term matters:

- conv: groups 1/2/4 x stride 1/2/4 x pad 0/1/2 on a non-square input, and a
  non-square kernel; Winograd (``algo="winograd"``) for the paper's stride-1 layers at
  their default tiles, and every tile 1-4 of 3x3 and 5x5 kernels with groups and padding;
- LRN: alpha 0.1/0.5/1 x size 3/5/7 x k 1/2 (the alpha term is of the order of k, so a
  wrong alpha/size or k is visible), and beta 0.5/1;
- global average pooling: ZFNet/AlexNet-sized class maps (1000 classes at 6x6) in both
  layouts, against ``F.adaptive_avg_pool2d``;
- pooling: odd and even sizes (floor rounding), the 2/2 ablation, and integer-valued
  inputs with many tied maxima (the gradient goes to the first maximum in row-major
  window order, PyTorch's rule);
- dropout: both modes, training and test, p 0.5 and 0.2, with the same keep-mask;
- linear and softmax cross-entropy: fc8's size, and large logits (30x) for stability.

Axis legend: N batch, C channels, K kernels, H/W height/width, D features.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any, NamedTuple

import numpy
from numpy.typing import ArrayLike, DTypeLike

from refnet import NetOptions, layers
from refnet.layers import gap, linear, lrn, relu, softmax  # noqa: F401  # read as layers.X
from refnet.options import CHOICES
from refnet.verify.compare import Row, draw, judged, judged_rows, run_cases

PART = "layers"
PAPER_LRN = NetOptions().lrn_params  # n=5, alpha=1e-4, beta=0.75, k=2
PAPER_CONVS = [  # name, x (N, C, H, W), w (K, C/G, kh, kw), stride, pad, groups
    ("conv1 11x11/4 pad 0, 3->96", (2, 3, 63, 55), (96, 3, 11, 11), 4, 0, 1),
    ("conv2 5x5/1 pad 2 g2, 96->256", (2, 96, 13, 11), (256, 48, 5, 5), 1, 2, 2),
    ("conv3 3x3/1 pad 1, 256->384", (2, 256, 7, 6), (384, 256, 3, 3), 1, 1, 1),
    ("conv4 3x3/1 pad 1 g2, 384->384", (2, 384, 7, 6), (384, 192, 3, 3), 1, 1, 2),
    ("conv5 3x3/1 pad 1 g2, 384->256", (2, 384, 7, 6), (256, 192, 3, 3), 1, 1, 2),
]  # the paper's channels and kernels at smaller spatial sizes


class Against(NamedTuple):
    """What the cases compare with: a module of twins (``verify.twins``' functions) and
    the part name of the report rows."""

    twins: ModuleType
    part: str


def _rows(
    against: Against,
    case: str,
    ours: Mapping[str, Any],
    ref: Mapping[str, ArrayLike],
    tol: float,
    note: str = "",
):
    return judged_rows(against.part, case, ours, ref, tol, note)


def conv_case(
    rng: numpy.random.Generator,
    dtype: DTypeLike,
    tol: float,
    against: Against,
    case: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    *,
    stride: int,
    pad: int,
    groups: int,
    **algo: Any,
) -> list[Row]:
    x = draw(rng, x_shape, dtype)
    w = draw(rng, w_shape, dtype, 0.1)
    b = draw(rng, w_shape[:1], dtype)
    y, cache = layers.conv.forward(x, w, b, stride=stride, pad=pad, groups=groups, **algo)
    dy = draw(rng, y.shape, dtype)
    dx, dw, db = layers.conv.backward(dy, cache)
    ref = against.twins.conv(x, w, b, dy, stride=stride, pad=pad, groups=groups)
    return _rows(against, case, {"y": y, "dx": dx, "dw": dw, "db": db}, ref, tol)


def conv_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    rows = []
    for name, xs, ws, s, p, g in PAPER_CONVS:
        rows += conv_case(
            rng, dtype, tol, against, f"{name} (paper)", xs, ws, stride=s, pad=p, groups=g
        )
        if s == 1:  # the tile the paper's network uses on this layer's full-size maps
            tile = layers.conv.WINOGRAD_TILES.get((numpy.dtype(dtype).name, ws[2]), 2)
            rows += conv_case(
                rng,
                dtype,
                tol,
                against,
                f"{name} winograd",
                xs,
                ws,
                stride=s,
                pad=p,
                groups=g,
                algo="winograd",
                tile=tile,
            )
    for kernel, tiles in ((3, (1, 2, 3, 4)), (5, (1, 2, 3))):
        for tile in tiles:
            name = f"conv {kernel}x{kernel}/1 pad 2 g2 winograd F({tile}, {kernel}), 8->12"
            rows += conv_case(
                rng,
                dtype,
                tol,
                against,
                name,
                (2, 8, 13, 10),
                (12, 4, kernel, kernel),
                stride=1,
                pad=2,
                groups=2,
                algo="winograd",
                tile=tile,
            )
    for groups in (1, 2, 4):
        for stride in (1, 2, 4):
            for pad in (0, 1, 2):
                kernel = 3 if stride < 4 else 5
                name = f"conv {kernel}x{kernel}/{stride} pad {pad} g{groups}, 8->12 on 13x10"
                rows += conv_case(
                    rng,
                    dtype,
                    tol,
                    against,
                    name,
                    (2, 8, 13, 10),
                    (12, 8 // groups, kernel, kernel),
                    stride=stride,
                    pad=pad,
                    groups=groups,
                )
    rows += conv_case(
        rng,
        dtype,
        tol,
        against,
        "conv 3x5/2 pad 1 g2 (non-square kernel)",
        (3, 4, 11, 14),
        (6, 2, 3, 5),
        stride=2,
        pad=1,
        groups=2,
    )
    return rows


def relu_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    x = draw(rng, (2, 16, 7, 5), dtype)
    x[rng.random(x.shape) < 0.2] = 0  # exact zeros: the gradient at 0 is 0 in both
    y, cache = layers.relu.forward(x)
    dy = draw(rng, y.shape, dtype)
    dx = layers.relu.backward(dy, cache)
    return _rows(
        against, "relu (20% exact zeros)", {"y": y, "dx": dx}, against.twins.relu(x, dy), tol
    )


def gap_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    rows = []
    for name, shape, layout in (
        ("gap 1000 classes 6x6 -> (N, 1000)", (2, 1000, 6, 6), "NCHW"),
        ("gap 7x5 (non-square), CHWN", (3, 16, 7, 5), "CHWN"),
    ):
        x = draw(rng, shape, dtype)  # (N, C, H, W)
        xl = layers.layout.transpose(x, "NCHW", layout)
        y, cache = layers.gap.forward(xl, layout=layout)
        dy = draw(rng, y.shape, dtype)
        dx = layers.layout.transpose(layers.gap.backward(dy, cache), layout, "NCHW")
        rows += _rows(against, name, {"y": y, "dx": dx}, against.twins.gap(x, dy), tol)
    return rows


def lrn_case(
    rng: numpy.random.Generator,
    dtype: DTypeLike,
    tol: float,
    against: Against,
    case: str,
    x_shape: tuple[int, ...],
    *,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    scale: float = 2.0,
) -> list[Row]:
    x = draw(rng, x_shape, dtype, scale)
    y, cache = layers.lrn.forward(x, size=size, alpha=alpha, beta=beta, k=k)
    dy = draw(rng, y.shape, dtype)
    dx = layers.lrn.backward(dy, cache)
    ref = against.twins.lrn(x, dy, size=size, alpha=alpha, beta=beta, k=k)
    return _rows(against, case, {"y": y, "dx": dx}, ref, tol)


def lrn_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    rows = lrn_case(
        rng,
        dtype,
        tol,
        against,
        "lrn n=5 alpha=1e-4 beta=0.75 k=2, 96 ch (paper)",
        (2, 96, 7, 6),
        scale=20.0,
        **PAPER_LRN,
    )
    for alpha in (0.1, 0.5, 1.0):
        for size in (3, 5, 7):
            for k in (1.0, 2.0):
                rows += lrn_case(
                    rng,
                    dtype,
                    tol,
                    against,
                    f"lrn n={size} alpha={alpha} beta=0.75 k={k:g}, 10 ch",
                    (2, 10, 5, 4),
                    size=size,
                    alpha=alpha,
                    beta=0.75,
                    k=k,
                )
    for beta in (0.5, 1.0):
        rows += lrn_case(
            rng,
            dtype,
            tol,
            against,
            f"lrn n=5 alpha=1 beta={beta} k=1, 10 ch",
            (2, 10, 5, 4),
            size=5,
            alpha=1.0,
            beta=beta,
            k=1.0,
        )
    return rows


def _tied_windows(x: numpy.ndarray, size: int, stride: int):
    """How many pooling windows hold their maximum more than once (floor rounding)."""
    N, C, H, W = x.shape
    count = 0
    for i in range(0, H - size + 1, stride):
        for j in range(0, W - size + 1, stride):
            win = x[:, :, i : i + size, j : j + size].reshape(N, C, -1)  # (N, C, size*size)
            top = win.max(axis=2, keepdims=True)
            count += int(numpy.sum((win == top).sum(axis=2) > 1))
    return count


def pool_case(
    rng: numpy.random.Generator,
    dtype: DTypeLike,
    tol: float,
    against: Against,
    case: str,
    x: numpy.ndarray,
    *,
    size: int,
    stride: int,
) -> list[Row]:
    y, cache = layers.pool.forward(x, size=size, stride=stride)
    dy = draw(rng, y.shape, dtype)
    dx = layers.pool.backward(dy, cache)
    ref = against.twins.pool(x, dy, size=size, stride=stride)
    ties = _tied_windows(x, size, stride)
    note = f"{ties} windows with tied maxima" if ties else ""
    return _rows(against, case, {"y": y, "dx": dx}, ref, tol, note)


def pool_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    rows = []
    for name, shape, size, stride in [
        ("maxpool 3/2 on 27x27 -> 13 (paper)", (2, 96, 27, 27), 3, 2),
        ("maxpool 3/2 on 54x54 -> 26 (floor)", (2, 8, 54, 54), 3, 2),
        ("maxpool 3/2 on 13x10 (non-square)", (2, 8, 13, 10), 3, 2),
        ("maxpool 2/2 on 12x9 (ablation, floor)", (2, 8, 12, 9), 2, 2),
    ]:
        rows += pool_case(
            rng, dtype, tol, against, name, draw(rng, shape, dtype), size=size, stride=stride
        )
    for size, stride in ((3, 2), (2, 2), (3, 1)):
        x = rng.integers(0, 3, size=(2, 8, 13, 11)).astype(dtype)  # many ties
        rows += pool_case(
            rng,
            dtype,
            tol,
            against,
            f"maxpool {size}/{stride} ties (ints 0-2)",
            x,
            size=size,
            stride=stride,
        )
    return rows


def dropout_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    rows = []
    for p in (0.5, 0.2):
        for mode in CHOICES["dropout_mode"]:
            for train in (True, False):
                x = draw(rng, (4, 64), dtype)
                mask = (rng.random(x.shape) >= p).astype(dtype)  # 1 keep, 0 drop
                y, cache = layers.dropout.forward(x, p=p, train=train, mask=mask, mode=mode)  # type: ignore[arg-type]  # a mode's name
                dy = draw(rng, y.shape, dtype)
                dx = layers.dropout.backward(dy, cache)
                ref = against.twins.dropout(x, dy, p=p, train=train, mask=mask, mode=mode)
                name = f"dropout p={p} {mode} {'train' if train else 'test'}"
                rows += _rows(against, name, {"y": y, "dx": dx}, ref, tol)
    return rows


def linear_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    rows = []
    for name, n, d_in, d_out in [
        ("linear 4096->1000 (fc8)", 2, 4096, 1000),
        ("linear 37->23", 5, 37, 23),
    ]:
        x = draw(rng, (n, d_in), dtype)
        w = draw(rng, (d_out, d_in), dtype, 0.05)
        b = draw(rng, (d_out,), dtype)
        y, cache = layers.linear.forward(x, w, b)
        dy = draw(rng, y.shape, dtype)
        dx, dw, db = layers.linear.backward(dy, cache)
        ref = against.twins.linear(x, w, b, dy)
        rows += _rows(against, name, {"y": y, "dx": dx, "dw": dw, "db": db}, ref, tol)
    return rows


def softmax_cases(
    rng: numpy.random.Generator, dtype: DTypeLike, tol: float, against: Against
) -> list[Row]:
    rows = []
    for name, n, classes, scale in [
        ("softmax CE, 1000 classes", 2, 1000, 3.0),
        ("softmax CE, logits x30", 7, 10, 30.0),
    ]:
        z = draw(rng, (n, classes), dtype, scale)
        labels = rng.integers(0, classes, size=n)
        loss, cache = layers.softmax.forward(z, labels)
        dloss = float(rng.uniform(0.5, 2.0))
        dz = layers.softmax.backward(dloss, cache)
        ref = against.twins.softmax_cross_entropy(z, labels, dloss)
        rows += [
            judged(against.part, name, "loss", numpy.asarray(loss, dtype=dtype), ref["loss"], tol),
            judged(against.part, name, "dlogits", dz, ref["dlogits"], tol),
        ]
    return rows


CASES = {
    "conv": conv_cases,
    "relu": relu_cases,
    "lrn": lrn_cases,
    "pool": pool_cases,
    "dropout": dropout_cases,
    "linear": linear_cases,
    "softmax": softmax_cases,
    "gap": gap_cases,  # last: each case's seed is its index here
}


def run(
    dtype: DTypeLike = "float64",
    seed: int = 0,
    which: Iterable[str] | None = None,
    twins: ModuleType | None = None,
    part: str = PART,
) -> list[Row]:
    """All layer comparisons (or those named in ``which``) as report rows, against
    ``twins`` (a module with ``verify.twins``' functions; default PyTorch's, imported
    here) under the part name ``part``."""
    if twins is None:
        from refnet.verify import twins as torch_twins  # PyTorch, only when it is the reference

        twins = torch_twins
    against = Against(twins, part)
    cases = {name: functools.partial(fn, against=against) for name, fn in CASES.items()}
    return run_cases(cases, "layer cases", dtype, seed, which)
