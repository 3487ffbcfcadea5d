"""Every fast path of ``layers/`` against its plain form ``layers.reference``, at paper-like
settings.

The fast paths are clever (im2col and Winograd's transforms, pooling on phase planes, LRN
and the SGD update in cache blocks, and all of them in the batch-innermost layout the
network runs); the reference computes the same formula the obvious way. Each case draws
its arrays from one seeded generator, runs the fast path in each layout (NCHW and CHWN,
converted back to NCHW for the comparison) and the reference once, with a random upstream
gradient, and yields one row per quantity, judged at the layer tolerance of
``verify.compare``. No PyTorch here: these rows check refnet against itself.

- conv: alexnet's five layers (their kernels, strides, pads, groups and channel counts on
  smaller maps), by im2col and, for the stride-1 layers, by Winograd at its default tiles;
- pooling: pool1's 3/2 windows on 55x55 maps (larger than a cache block, so the planes run
  in blocks) and integer inputs with many tied maxima;
- LRN: lrn1's shape (the maps span several cache blocks in both layouts) at the paper's
  settings with inputs large enough for the alpha term to matter, and at alpha = 0.5;
- SGD: three steps of the demo network in both forms, the learning rate changed before
  the third (its fc layers span several row blocks), weights and velocities.

Axis legend: N batch, C channels, K kernels, H/W height/width.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy
from numpy.typing import ArrayLike, DTypeLike

from refnet import SGD, AlexNet, layers
from refnet.layers import (
    lrn,  # noqa: F401  # read as layers.lrn
    reference,
)
from refnet.layers.backend import Array
from refnet.layers.layout import LAYOUTS, transpose
from refnet.verify.compare import Row, draw, judged_rows, run_cases, worst
from refnet.verify.layer_cases import PAPER_CONVS, PAPER_LRN

PART = "reference"


def _rows(
    case: str,
    ours: Mapping[str, ArrayLike],
    ref: Mapping[str, ArrayLike],
    tol: float,
    note: str = "",
):
    return judged_rows(PART, case, ours, ref, tol, note)


def _nchw(a: Array, layout: str):
    return transpose(a, layout, "NCHW")


def conv_cases(rng: numpy.random.Generator, dtype: DTypeLike, tol: float) -> list[Row]:
    rows = []
    for name, xs, ws, stride, pad, groups in PAPER_CONVS:
        h: dict[str, Any] = dict(stride=stride, pad=pad, groups=groups)
        x, w, b = draw(rng, xs, dtype), draw(rng, ws, dtype, 0.1), draw(rng, ws[:1], dtype)
        y = reference.conv_forward(x, w, b, **h)
        dy = draw(rng, y.shape, dtype)
        dx, dw, db = reference.conv_backward(dy, x, w, **h)
        ref = {"y": y, "dx": dx, "dw": dw, "db": db}
        # the tile the paper's network uses on this layer's full-size maps
        tiles = layers.conv.WINOGRAD_TILES.get((numpy.dtype(dtype).name, ws[2]), 2)
        algos: list[tuple[str, dict[str, Any]]] = [("im2col", {})] + (
            [(f"winograd F({tiles}, {ws[2]})", dict(algo="winograd", tile=tiles))]
            if stride == 1
            else []
        )
        for algo, opts in algos:
            for layout in LAYOUTS:
                ours_y, cache = layers.conv.forward(
                    transpose(x, "NCHW", layout), w, b, **h, layout=layout, **opts
                )
                ours_dx, ours_dw, ours_db = layers.conv.backward(
                    transpose(dy, "NCHW", layout), cache
                )
                ours = {
                    "y": _nchw(ours_y, layout),
                    "dx": _nchw(ours_dx, layout),
                    "dw": ours_dw,
                    "db": ours_db,
                }
                rows += _rows(f"{name} {algo} {layout}", ours, ref, tol)
    return rows


def pool_cases(rng: numpy.random.Generator, dtype: DTypeLike, tol: float) -> list[Row]:
    rows = []
    inputs = [
        ("maxpool 3/2 on 55x55, 96 ch (pool1)", draw(rng, (2, 96, 55, 55), dtype)),
        (
            "maxpool 3/2 on 27x27, ties (ints 0-2)",
            rng.integers(0, 3, size=(2, 96, 27, 27)).astype(dtype),
        ),
    ]
    for name, x in inputs:
        y, argmax = reference.pool_forward(x, size=3, stride=2)
        dy = draw(rng, y.shape, dtype)
        dx = reference.pool_backward(dy, argmax, x.shape, size=3, stride=2)
        for layout in LAYOUTS:
            ours_y, cache = layers.pool.forward(
                transpose(x, "NCHW", layout), size=3, stride=2, layout=layout
            )
            ours_dx = layers.pool.backward(transpose(dy, "NCHW", layout), cache)
            ours = {"y": _nchw(ours_y, layout), "dx": _nchw(ours_dx, layout)}
            rows += _rows(f"{name} {layout}", ours, {"y": y, "dx": dx}, tol)
    return rows


def lrn_cases(rng: numpy.random.Generator, dtype: DTypeLike, tol: float) -> list[Row]:
    rows = []
    for name, h, scale in [
        ("lrn n=5 alpha=1e-4 beta=0.75 k=2 (paper), 55x55", PAPER_LRN, 20.0),
        ("lrn n=7 alpha=0.5 beta=0.75 k=1, 55x55", dict(size=7, alpha=0.5, beta=0.75, k=1.0), 2.0),
    ]:
        x = draw(rng, (2, 96, 55, 55), dtype, scale)
        dy = draw(rng, x.shape, dtype)
        ref = {"y": reference.lrn_forward(x, **h), "dx": reference.lrn_backward(dy, x, **h)}
        for layout in LAYOUTS:
            ours_y, cache = layers.lrn.forward(transpose(x, "NCHW", layout), **h, layout=layout)
            ours_dx = layers.lrn.backward(transpose(dy, "NCHW", layout), cache)
            ours = {"y": _nchw(ours_y, layout), "dx": _nchw(ours_dx, layout)}
            rows += _rows(f"{name} {layout}", ours, ref, tol)
    return rows


def _worst(
    case: str,
    quantity: str,
    ours: Mapping[str, ArrayLike],
    ref: Mapping[str, ArrayLike],
    tol: float,
):
    return worst(PART, case, quantity, ours, ref, tol)


def sgd_cases(
    rng: numpy.random.Generator,
    dtype: DTypeLike,
    tol: float,
    lrs: Sequence[float] = (0.01, 0.01, 0.001),
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> list[Row]:
    rows = []
    for form in ("paper", "pytorch"):
        net = AlexNet("demo", numpy.dtype(dtype).name).init(seed=0)
        opt = SGD(net, lr=lrs[0], momentum=momentum, weight_decay=weight_decay, form=form)
        w = net.state_dict()
        v = {n: numpy.zeros_like(a) for n, a in w.items()}
        for t, lr in enumerate(lrs, start=1):
            g = {n: draw(rng, s, dtype) for n, s in net.shapes.items()}
            opt.lr = lr
            opt.step(g)
            for n in w:
                w[n], v[n] = reference.sgd_update(
                    w[n], v[n], g[n], lr=lr, momentum=momentum, weight_decay=opt.decay(n), form=form
                )
            case = f"sgd {form} form, demo net, step {t} lr={lr:g}"
            velocity = opt.state_dict()
            rows += [
                _worst(case, "w", net.state_dict(), w, tol),
                _worst(case, "v", {n: velocity[f"velocity/{n}"] for n in v}, v, tol),
            ]
    return rows


CASES = {"conv": conv_cases, "pool": pool_cases, "lrn": lrn_cases, "sgd": sgd_cases}


def run(
    dtype: DTypeLike = "float64", seed: int = 0, which: Iterable[str] | None = None
) -> list[Row]:
    """All fast-path comparisons (or those named in ``which``) as report rows."""
    return run_cases(CASES, "reference cases", dtype, seed, which, offset=100)
