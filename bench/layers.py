"""Each layer of AlexNet timed alone: ours as the network runs it, PyTorch's grouped layer.

    cases = layer_cases(net, batch)        # [(name, kind, x shape, params)], in order
    fwd, bwd = refnet_layer(xp, kind, x, params, rng, layout)
    out = fwd(); bwd(out)                  # our layer's forward, then its backward
    rows = time_layers(ours, theirs, batch, repeats, warmup)   # both sides, interleaved
    handoff_seconds(net)                   # what each of our rows spends on Placement.each

A case is one layer of the grouped single-device form (both columns in one array, as
PyTorch's twin holds them), as the layer gives it (``refnet.nodes``: ``bench_case``,
``bench_pair``, ``bench_torch``, ``bench_share``). ``kind`` is one of conv, relu, lrn,
pool, linear (each a layer kind's ``bench_kind``) or softmax (the loss);
the maps of conv, relu, lrn and pool (``MAP_KINDS``) are shaped (N, C, H, W) in the case
and laid out as the network lays them out (``layout``) when ours runs them; linear and
softmax take (N, F). ``column_shares`` splits a case into the shares the network's
columns compute, so ours is timed as the network runs it: each column's share through
``Placement.each`` (on the CPU concurrently, one core each).

Each of our rows (as the network runs it) includes one ``Placement.each`` call per pass,
a hand-off to the column threads and back (``handoff_seconds``) that inside a step a
whole run of layers between two exchanges shares, and runs the layer alone, outside the
step's warm caches and planned memory: at the demo's sizes the rows overstate the small
layers several times over (docs/performance.md, "Where the time goes").

The backward callables use the layer's own output as the upstream gradient: they time
the work, not a meaningful gradient.
"""

from __future__ import annotations

import functools
import statistics
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy

from refnet.bench.timing import SETTLE_S, settle, timed
from refnet.data.progress import Progress
from refnet.layers import conv_blocks, softmax
from refnet.layers.backend import Array, Module
from refnet.layers.layout import along, channel_axis, transpose
from refnet.nodes import bench_kind
from refnet.nodes.describe import BenchPair

if TYPE_CHECKING:
    from refnet.bench.sides import RefnetSide, TorchSide
    from refnet.network import AlexNet

MAP_KINDS = ("conv", "relu", "lrn", "pool")  # layers that see the net's map layout


def layer_cases(net: AlexNet, batch: int) -> list[tuple[str, str, tuple[int, ...], dict[str, Any]]]:
    """[(name, kind, x shape, params)] for every layer of the grouped form of ``net`` that
    gives a bench case (``Layer.bench_case``), in order, at ``batch`` images, and the
    loss. params: conv {w (shape), stride, pad, groups, algo}; lrn {groups, size, alpha,
    beta, k}; pool {size, stride}; linear {w (shape)}."""
    s = net.spec.input_size
    shape: tuple[int, ...] = (3, s, s)
    cases: list[tuple[str, str, tuple[int, ...], dict[str, Any]]] = []
    for layer in net.layers:
        case = layer.bench_case(shape, batch)
        if case is not None:
            cases.append((layer.name, *case))
        shape = layer.output_shape(shape)
    cases.append(("softmax", "softmax", (batch, *shape), {}))
    return cases


def _weights(
    xp: Module, p: dict[str, Any], rng: numpy.random.Generator, dtype: numpy.dtype
) -> tuple[Array, ...]:
    """(w, b) of a case with weights (``p["w"]`` their shape), else ()."""
    if "w" not in p:
        return ()
    return (
        xp.asarray(rng.standard_normal(p["w"]).astype(dtype) * 0.01),
        xp.zeros(p["w"][0], dtype=dtype),
    )


def refnet_layer(
    xp: Module,
    kind: str,
    x: Array,
    p: dict[str, Any],
    rng: numpy.random.Generator,
    layout: str = "NCHW",
) -> BenchPair:
    """(forward, backward) callables for one layer of ours on ``xp``, for the input ``x``
    and the case's params ``p`` (weights drawn from ``rng``); backward takes forward's
    result. Maps (``MAP_KINDS``) are given and computed in ``layout``, the network's.
    The layer kind gives the callables (``bench_pair``); the loss is ``layers.softmax``."""
    dtype = x.dtype
    if kind == "softmax":
        labels = rng.integers(0, x.shape[1], x.shape[0])
        fwd = lambda: softmax.forward(x, labels)  # noqa: E731
        return fwd, (lambda out: softmax.backward(xp.asarray(1.0, dtype=dtype), out[1]))
    w, b = _weights(xp, p, rng, dtype) or (None, None)
    return bench_kind(kind).bench_pair(xp, x, w, b, p, layout)  # type: ignore[attr-defined]  # a kind with bench cases has it


def torch_layer(
    torch: Any,
    kind: str,
    x_np: numpy.ndarray,
    p: dict[str, Any],
    rng: numpy.random.Generator,
    device: str,
) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """(forward, backward) callables for PyTorch's version of one layer (the grouped
    single-device layer, NCHW) on ``device``; backward takes forward's output."""
    from refnet.verify.twins import lrn_torch

    F = torch.nn.functional
    x = torch.from_numpy(x_np).to(device).requires_grad_(True)
    weights: tuple[Any, ...] = ()
    if "w" in p:
        w = torch.from_numpy(rng.standard_normal(p["w"]).astype(x_np.dtype) * 0.01)
        b = torch.zeros(p["w"][0], dtype=x.dtype)
        weights = (w.to(device).requires_grad_(True), b.to(device).requires_grad_(True))
    inputs = (x, *weights)
    if kind == "softmax":
        labels = torch.from_numpy(rng.integers(0, x_np.shape[1], x_np.shape[0])).to(device)
        op = lambda: F.cross_entropy(x, labels)  # noqa: E731
    else:
        ops = types.SimpleNamespace(F=F, lrn=lrn_torch)
        node = bench_kind(kind)
        args = inputs + (None,) * (3 - len(inputs))  # (x, w, b), None without weights
        op = lambda: node.bench_torch(ops, *args, p)  # type: ignore[attr-defined]  # noqa: E731  # a kind with bench cases has it

    def backward(y: Any) -> None:
        # The layer's own output as upstream gradient, as on our side (no extra work).
        torch.autograd.grad(y, inputs, grad_outputs=y.detach())

    return op, backward


def column_shares(
    net: AlexNet, name: str, kind: str, shape: tuple[int, ...], p: dict[str, Any]
) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """[(x shape, params)] per column of one grouped-form layer, split as the network
    splits it (the layer kind's ``bench_share``): conv1 and conv3 read all input
    channels, conv2/4/5, ReLU, LRN and pooling their column's own; every conv and fc
    layer computes its column's half of the outputs; fc8 and the loss live on column 0
    alone. (LRN over all channels, Caffe's mode, is timed per column without its
    2-channel halo.)"""
    G = net.options.columns
    if kind == "softmax" or name == "fc8" or G == 1:
        return [(shape, p)]
    return [bench_kind(kind).bench_share(shape, p, G)] * G


def _shares_conv1(net: AlexNet, name: str, p: dict[str, Any]):
    """Whether the network runs this case as its shared conv1 (``refnet.network.Conv``:
    every column on one device, im2col + GEMM)."""
    P = net.placement
    return name == "conv1" and p["algo"] == "gemm" and net.columns > 1 and len(set(P.devices)) == 1


def shared_conv1(
    net: AlexNet, x: Array, p: dict[str, Any], rng: numpy.random.Generator, layout: str
) -> BenchPair:
    """(forward, backward) of conv1 as the network runs it with its columns on one
    device: one convolution by blocks (``layers.conv_blocks``) of every column's kernels,
    the output rows split between the columns' threads (``Placement.each``)."""
    P, xp, G = net.placement, net.xp, net.columns
    w = xp.asarray(rng.standard_normal(p["w"]).astype(x.dtype) * 0.01)
    b = xp.zeros(p["w"][0], dtype=x.dtype)
    axis = channel_axis(layout)
    k = p["w"][0] // G

    def forward() -> tuple[list[Array], Any]:
        y, cache, runs = conv_blocks.forward_parts(
            x, w, b, stride=p["stride"], pad=p["pad"], layout=layout, parts=G
        )
        P.each(lambda c, run: run(), runs)
        return [y[along(axis, slice(c * k, (c + 1) * k))] for c in range(G)], cache

    def backward(out: tuple[list[Array], Any]) -> Any:
        ys, cache = out
        partials = P.each(lambda c, run: run(), conv_blocks.backward_parts(ys, cache, parts=G))
        return conv_blocks.gradients(ys, partials, cache)

    return forward, backward


def _each_in_turn(fn: Callable[..., Any], *per_column: Sequence[Any]) -> list[Any]:
    """``Placement.each``'s contract, run one after the other on the calling thread."""
    return [fn(c, *args) for c, args in enumerate(zip(*per_column, strict=True))]


def handoff_seconds(net: AlexNet, calls: int = 200) -> float:
    """Median seconds of one ``Placement.each`` call that does nothing in every column:
    the hand-off to the column threads and back that each of our rows includes."""
    each, nothing = net.placement.each, [None] * net.placement.columns

    def handoff() -> None:
        each(lambda c, _: None, nothing)

    for _ in range(20):
        handoff()
    return statistics.median(timed(handoff, lambda: None) for _ in range(calls))


def time_layers(
    ours: RefnetSide,
    theirs: TorchSide | None,
    batch: int,
    repeats: int,
    warmup: int,
    form: str = "network",
    pause: float = SETTLE_S,
) -> list[dict[str, Any]]:
    """[{layer, refnet_forward, refnet_backward[, torch_forward, torch_backward]}]: the
    median seconds of each layer's forward and backward on both sides (``theirs`` None:
    ours alone), interleaved. ``form``: "network" runs each of our layers as the network
    does, its columns' shares through ``Placement.each`` (conv1 as one convolution by
    blocks over both columns, ``shared_conv1``); "grouped" calls it once with both
    columns' channels (the grouped
    single-device layer, as PyTorch's), on the calling thread. ``pause``: seconds of
    ``bench.timing.settle`` before each timed call."""
    net, xp = ours.net, ours.xp
    dtype, net_layout = net.options.dtype, net.options.layout
    rng = numpy.random.default_rng(3)
    rows = []
    cases = layer_cases(net, batch)
    bar = Progress(total=len(cases), desc="layers", unit="layer")
    for name, kind, shape, p in cases:
        x_np = rng.standard_normal(shape).astype(dtype)
        layout = net_layout if kind in MAP_KINDS else "NCHW"
        row: dict[str, Any] = {"layer": name}
        per_column = []
        shares = column_shares(net, name, kind, shape, p) if form == "network" else [(shape, p)]
        for c, (col_shape, q) in enumerate(shares):
            xc = rng.standard_normal(col_shape).astype(dtype)
            with net.placement.device(c):
                xc = xp.asarray(transpose(xc, "NCHW", layout))
                per_column.append(
                    refnet_layer(xp, kind, xc, q, numpy.random.default_rng(4), layout)
                )
        each = net.placement.each if form == "network" else _each_in_turn
        f: Callable[[], Any] = functools.partial(each, lambda c, fb: fb[0](), per_column)
        b: Callable[[Any], Any] = functools.partial(each, lambda c, fb, out: fb[1](out), per_column)
        if form == "network" and _shares_conv1(net, name, p):
            f, b = shared_conv1(
                net,
                xp.asarray(transpose(x_np, "NCHW", layout)),
                p,
                numpy.random.default_rng(4),
                layout,
            )
        sides: list[tuple[str, Callable[[], Any], Callable[[Any], Any], Callable[[], None]]] = [
            ("refnet", f, b, ours.sync)
        ]
        if theirs is not None:
            tf, tb = torch_layer(
                theirs.torch, kind, x_np, p, numpy.random.default_rng(4), theirs.device
            )
            sides.append(("torch", tf, tb, theirs.sync))
        samples: dict[str, list[float]] = {
            f"{s}_{part}": [] for s, *_ in sides for part in ("forward", "backward")
        }
        for rep in range(warmup + repeats):
            for side, fwd, bwd, sync in sides:
                settle(pause)
                tf_ = timed(fwd, sync)
                out = fwd()
                settle(pause)
                tb_ = timed(functools.partial(bwd, out), sync)
                if rep >= warmup:
                    samples[f"{side}_forward"].append(tf_)
                    samples[f"{side}_backward"].append(tb_)
        for key, t in samples.items():
            row[key] = statistics.median(t)
        rows.append(row)
        bar.update(1)
    bar.close()
    return rows
