"""What every layer of the network's list is: its settings, the column it runs in, a pass.

Axis legend: N batch, C channels, H/W height/width, F features.

A layer object (``Layer``) is built with its own hyperparameters and knows what the rest
of refnet asks of it: ``param_shapes`` here, and what the summary, the exporter and the
benchmark ask (``refnet.nodes.describe``). It reads nothing of the network object.

When it runs it is given a ``Context``: the placement of the columns and each column's
``Column`` (that column's parameters, workspace, device, array module, layout, dtype and
engine). ``forward(h, pass_, ctx) -> (h, cache)`` and ``backward(d, cache, grads, ctx) ->
d`` take and give lists aligned with the columns.

Most layers compute each column's part from that column's data alone (``Local``). Such a
layer names two pairs of functions (``.forward``, ``.backward``) with one signature,
``forward(x, *weights, **settings) -> (y, cache)`` and ``backward(dy, cache,
**backward_settings) -> gradients``: ``plain`` (``layers.plain``), which
``plain_forward`` / ``plain_backward`` call, and ``fast`` (``refnet.nodes.fast``).
``engine="plain"`` runs every layer through its plain pair, one column after the other
(``run_plain``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy

from refnet.layers.backend import Array, Module
from refnet.layers.workspace import Fresh
from refnet.nodes.describe import Described
from refnet.nodes.fast import FastLayer, FastLocal

if TYPE_CHECKING:
    from refnet.columns import Placement

__all__ = ["Column", "Context", "Pass", "Layer", "Local", "run_plain", "split_pairs"]


class Column(NamedTuple):
    """What one column's layers run with."""

    index: int  # type: ignore[assignment]  # a field named index hides tuple.index
    params: dict[str, Array]  # {key: this column's shard} (``AlexNet.params[index]``)
    ws: Fresh  # where its large arrays come from (``layers.workspace``)
    xp: Module  # the array module
    device: int  # its device index
    layout: str  # of the maps: "NCHW" or "CHWN"
    dtype: numpy.dtype
    engine: str  # "fast" or "plain"


class Context(NamedTuple):
    """What a pass runs in: the placement (``refnet.columns.Placement``) and its columns."""

    placement: Placement
    columns: tuple[Column, ...]  # of Column, one per column
    layout: str
    engine: str


class Pass:
    """One forward pass besides the maps: training or not, dropout's generator or given
    masks, the batch size, and whether to keep the caches."""

    def __init__(
        self,
        train: bool,
        rng: numpy.random.Generator | None,
        masks: dict[str, Array] | None,
        keep: bool,
    ) -> None:
        self.train, self.rng, self.masks, self.keep = train, rng, masks, keep
        self.n: int | None = None
        self.context: Context | None = None  # the refnet.nodes.Context it runs in
        self.segments: Any = None  # the runs of layers the fast engine made (refnet.segments)


def split_pairs(pairs: Sequence[tuple[Array, Any]]) -> tuple[list[Array], list[Any]]:
    """[(y, cache) per column] -> ([y...], [cache...])."""
    return [y for y, _ in pairs], [c for _, c in pairs]


class Layer(Described, FastLayer):
    """A layer of the list; subclasses add their settings and override what differs."""

    gathers: bool = False  # its output is whole in every column (the input, an exchange)
    splits: bool = False  # each column computes its share of the outputs (conv, fc)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    if TYPE_CHECKING:  # every kind defines its pass (``Local``, ``Input``, ``Exchange``, ...)

        def forward(self, h: list[Array], pass_: Pass, ctx: Context) -> tuple[list[Array], Any]:
            """(its output per column, its cache)."""

        def backward(
            self, d: list[Array], cache: Any, grads: list[dict[str, Array]], ctx: Context
        ) -> list[Array] | None:
            """The gradient of its input per column (None for the image's)."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """{key: shape} of its parameters in the grouped single-device form."""
        return {}


class Local(FastLocal, Layer):
    """A layer whose every column computes its part from its own data alone."""

    plain: Any = None  # its plain pair: a layers.plain.Pair, or the module of the one
    # shared form (``layers.relu``: its forward and backward)
    keys: tuple[str, ...] = ()  # its parameters' keys, weight first: column c reads params[key]
    settings: dict[str, Any] = {}  # hyperparameters both forms take
    backward_settings: dict[str, Any] = {}

    def weights(self, col: Column) -> tuple[Array, ...]:
        return tuple(col.params[key] for key in self.keys)

    def prepare(self, pass_: Pass, ctx: Context, columns: int) -> list[dict[str, Any]]:
        """Per column, the keywords a forward takes from the pass (dropout's masks: made
        in the calling thread, in the list's order)."""
        return [{}] * columns

    def _store(self, out: Any, grads: dict[str, Array]) -> Array:
        """dx from a backward's result; the parameter gradients into ``grads``."""
        if not self.keys:
            return out
        dx, *gw = out
        for key, g in zip(self.keys, gw, strict=True):
            grads[key] = g
        return dx

    def plain_forward(
        self, col: Column, a: Array, pass_: Pass, extra: dict[str, Any]
    ) -> tuple[Array, Any]:
        return self.plain.forward(a, *self.weights(col), **self.settings, **extra)

    def plain_backward(self, col: Column, g: Array, cache: Any, grads: dict[str, Array]) -> Array:
        return self._store(self.plain.backward(g, cache, **self.backward_settings), grads)

    def forward(self, h: list[Array], pass_: Pass, ctx: Context) -> tuple[list[Array], Any]:
        run = self.plain_forward if ctx.engine == "plain" else self.column_forward
        extra = self.prepare(pass_, ctx, len(h))
        return split_pairs(
            ctx.placement.each(lambda c, a, e: run(ctx.columns[c], a, pass_, e), h, extra)
        )

    def backward(
        self, d: list[Array], cache: Any, grads: list[dict[str, Array]], ctx: Context
    ) -> list[Array] | None:
        run = self.plain_backward if ctx.engine == "plain" else self.column_backward
        return ctx.placement.each(lambda c, g, k: run(ctx.columns[c], g, k, grads[c]), d, cache)


def run_plain(
    layers: Sequence[Layer], x: Array, pass_: Pass, ctx: Context, caches: dict[str, Any]
) -> list[Array]:
    """The plain engine's forward: each layer in order, all columns, caches kept in
    ``caches`` (by layer name) when ``pass_.keep``; the last layer's output."""
    h = x
    for layer in layers:
        h, cache = layer.forward(h, pass_, ctx)
        if pass_.keep:
            caches[layer.name] = cache
    return h


def run_plain_backward(
    layers: Sequence[Layer],
    d: list[Array],
    caches: dict[str, Any],
    grads: list[dict[str, Array]],
    ctx: Context,
    on_grads: Callable[[str, list[dict[str, Array]]], None] | None = None,
) -> list[Array] | None:
    """The plain engine's backward: each layer in reverse, its cache dropped once used;
    ``on_grads(name, grads)`` after each layer with parameters."""
    for layer in reversed(layers):
        d = layer.backward(d, caches.pop(layer.name), grads, ctx)  # type: ignore[assignment]  # None only from the image's layer, the last one here
        if on_grads is not None and layer.param_shapes():
            on_grads(layer.name, grads)
    return d
