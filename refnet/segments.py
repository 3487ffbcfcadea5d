"""Segments: runs of column-local layers, each column's part in one call (the fast engine).

The network is a list of layers, each running in every column (``refnet.network``). A
layer is column-local (``fusable``) when each column computes its part from its own
data alone: conv (but conv1 on one device, which the columns share), ReLU, LRN within a
column, pooling, dropout, the fully-connected layers. Between two exchanges the layers
are all column-local, and each column can run the whole run of them at once: one
``Placement.each`` call per segment instead of one per layer. On the CPU each call hands
work to the column thread and waits for it, so fewer calls cost less (the figures:
docs/performance.md). The arithmetic is the same: each column runs the same layer
functions in the same order.

``forward(ctx, layers, h, pass_, caches)`` runs the list and returns its output; the
segments it made are kept in ``pass_.segments`` for ``backward(ctx, pass_, caches, d,
grads, on_grads)``, which goes through the same segments in reverse. Every layer's cache
ends in ``caches[name]`` as the layer itself would keep it (a list of per-column caches); in
backward each cache is dropped as soon as its layer is done, inside the run too, so the
memory a layer kept is free before the layers below allocate theirs. With ``on_grads``
(a data-parallel reducer's hook, called after each layer with weights) backward runs
layer by layer, so that each layer's gradients are sent as soon as they exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from refnet.layers.backend import Array
from refnet.nodes.base import Context, Layer, Local, Pass

__all__ = ["forward", "backward"]


def forward(
    ctx: Context, layers: Sequence[Layer], h: Array, pass_: Pass, caches: dict[str, Any]
) -> list[Array]:
    """The output of ``layers`` for h (a list aligned with the columns), in the context
    ``ctx`` (``refnet.nodes.Context``); caches kept in ``caches`` when ``pass_.keep``; the
    segments in ``pass_.segments``."""
    pass_.segments, i = [], 0
    while i < len(layers):
        j = i + 1
        if layers[i].fusable(ctx, h):
            while j < len(layers) and layers[j].fusable(ctx, None):
                j += 1
        pass_.segments.append(layers[i:j])
        if j == i + 1:
            h, cache = layers[i].forward(h, pass_, ctx)
            if pass_.keep:
                caches[layers[i].name] = cache
            del cache  # eval: freed before the next layer runs
        else:
            h = _forward_segment(ctx, layers[i:j], h, pass_, caches)  # type: ignore[arg-type]  # fusable: Local
        i = j
    return h


def _forward_segment(
    ctx: Context, segment: list[Local], h: list[Array], pass_: Pass, caches: dict[str, Any]
) -> list[Array]:
    extras = [layer.prepare(pass_, ctx, len(h)) for layer in segment]  # in the list's order

    def column(c: int, a: Array, *extra: Any) -> tuple[Array, list[Any]]:
        col, kept = ctx.columns[c], []
        for layer, e in zip(segment, extra, strict=True):
            a, cache = layer.column_forward(col, a, pass_, e)
            kept.append(cache if pass_.keep else None)
        return a, kept

    out = ctx.placement.each(column, h, *extras)
    if pass_.keep:
        for k, layer in enumerate(segment):
            caches[layer.name] = [kept[k] for _, kept in out]
    return [a for a, _ in out]


def backward(
    ctx: Context,
    pass_: Pass,
    caches: dict[str, Any],
    d: list[Array],
    grads: list[dict[str, Array]],
    on_grads: Callable[[str, list[dict[str, Array]]], None] | None = None,
) -> list[Array]:
    """The gradient of the first layer's input (None for the image), through the
    segments of ``pass_.segments`` in reverse; parameter gradients into ``grads``."""
    for segment in reversed(pass_.segments):
        if len(segment) == 1 or on_grads is not None:
            for layer in reversed(segment):
                d = layer.backward(d, caches.pop(layer.name), grads, ctx)
                if on_grads is not None and layer.param_shapes():
                    on_grads(layer.name, grads)
            continue
        layers = segment[::-1]
        # each column's caches, last layer first, in a list its thread empties as it goes
        stacks: list[list[Any]] = [[] for _ in d]
        for layer in layers:
            for c, cache in enumerate(caches.pop(layer.name)):
                stacks[c].append(cache)

        def column(c: int, g: Array, stack: list[Any], layers: list[Local] = layers) -> Array:
            col = ctx.columns[c]
            for layer in layers:
                g = layer.column_backward(col, g, stack[0], grads[c])
                del stack[0]  # this layer's cache is free now
            return g

        d = ctx.placement.each(column, d, stacks)
        del stacks
    return d
