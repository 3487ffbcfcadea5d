"""A crossing between ranks as a layer (hybrid parallel): every rank's block of each
column's array joined along ``axis``, on every rank.

Axis legend: N batch, C channels of one column, H/W height/width, F features; R ranks,
n_r rank r's block along ``axis``.

Hybrid parallel (docs/distributed.md, "Hybrid parallel"): convolutions data parallel,
fc6-fc8 model parallel, joined by three kinds of ``RankGather``, one per column:

    pool5's maps     (C, H, W, n_r) CHWN  -> (C, H, W, N)  axis 3 (0 for NCHW), partial
    fc6/fc7 outputs  (N, F_r)             -> (N, F)        axis 1, partial
    fc8's logits     (N, K_r)             -> (N, K)        axis 1, not partial

forward:   y = concatenate([x_0, ..., x_{R-1}], axis)                  (an all-gather)
backward:  partial:     dx_r = (sum over ranks q of dy_q)[block r]     (a reduce-scatter)
           not partial: dx_r = dy[block r]

``partial``: the layers after the crossing are split over the ranks, so each rank's dy
is its part of the gradient and the parts are summed (the fc layers read every rank's
rows); otherwise every rank computes the same dy (the loss on the whole logits) and
keeps its block. A rank may hold no rows of the array (n_r = 0). The blocks' sizes along
``axis`` are ``sizes`` (one per rank), or, when None (the batch), are exchanged at each
forward pass, which then sets the pass's batch size to their sum (the dropout masks
after it cover the whole batch). Each block travels as one contiguous buffer
(``world.allgatherv`` / ``world.reduce_scatter``). In the grouped single-device form
(summary, ONNX) there is one rank: the identity.

``hybrid_layers`` puts them into the network's list (``refnet.network``): pool5's
before the exchange to fc6, fc6's and fc7's (after their dropout) before the exchanges
to fc7 and fc8, fc8's last; the dropouts of fc6 and fc7 then draw every image's mask
and keep this rank's units (``Dropout``'s ``ranks``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from refnet.layers.backend import Array, Module
from refnet.layers.layout import along
from refnet.nodes.base import Context, Layer, Pass
from refnet.nodes.dropout import Dropout
from refnet.nodes.exchange import Exchange

if TYPE_CHECKING:
    from refnet.columns import Placement
    from refnet.distributed import Solo


class RankGather(Layer):
    """``RankGather(name, axis, partial, world, sizes=None)``: ``world`` the ranks
    (``refnet.distributed``), ``sizes`` every rank's block along ``axis`` (None: the
    batch, exchanged at each forward pass)."""

    def __init__(
        self,
        name: str,
        axis: int,
        partial: bool,
        world: Solo,
        sizes: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(name)
        if sizes is not None and len(sizes) != world.size:
            raise ValueError(f"{name}: sizes {sizes} must have one entry per rank ({world.size})")
        self.axis, self.partial, self.world = axis, partial, world
        self.sizes = None if sizes is None else tuple(int(s) for s in sizes)

    def __repr__(self) -> str:
        return f"RankGather({self.name!r}, axis={self.axis}, partial={self.partial})"

    def block_sizes(self, n: int) -> tuple[int, ...]:
        """Every rank's block along the axis; this rank's is ``n``."""
        if self.sizes is not None:
            if self.sizes[self.world.rank] != n:
                raise ValueError(
                    f"{self.name}: this rank holds {n} along axis {self.axis}, "
                    f"not {self.sizes[self.world.rank]}"
                )
            return self.sizes
        return tuple(int(s) for s in self.world.allgather(int(n)))

    def forward(self, h: list[Array], pass_: Pass, ctx: Context) -> tuple[list[Array], Any]:
        sizes = self.block_sizes(int(h[0].shape[self.axis]))
        if self.sizes is None:
            pass_.n = sum(sizes)  # the whole batch from here on
        xp, world, axis = ctx.placement.xp, self.world, self.axis
        out = [  # every rank goes through the columns in order
            _via_column_0(ctx, c, lambda b: gather(xp, world, b, axis, sizes), a)
            for c, a in enumerate(h)
        ]
        return out, sizes

    def backward(
        self, d: list[Array], cache: Any, grads: list[dict[str, Array]], ctx: Context
    ) -> list[Array] | None:
        sizes, xp, world, axis = cache, ctx.placement.xp, self.world, self.axis
        if not self.partial:
            return ctx.placement.each(lambda c, g: own_block(xp, world.rank, g, axis, sizes), d)
        return [
            _via_column_0(ctx, c, lambda b: scatter_sum(xp, world, b, axis, sizes), g)
            for c, g in enumerate(d)
        ]


def _via_column_0(ctx: Context, c: int, collective: Any, a: Array) -> Array:
    """``collective(a)`` for column ``c``'s array, run on column 0's device (where a
    rank's NCCL communicator lives; nothing moves when the columns share a device), the
    result back on column c's."""
    P = ctx.placement
    with P.device(0):
        result = collective(P.move(a, c, 0))
    return P.move(result, 0, c)


def gather(xp: Module, world: Solo, a: Array, axis: int, sizes: tuple[int, ...]) -> Array:
    """Every rank's ``a`` (``sizes[r]`` along ``axis``) joined along ``axis``."""
    block = xp.ascontiguousarray(xp.moveaxis(a, axis, 0))  # (n_r, ...) contiguous
    rest = tuple(block.shape[1:])
    per = math.prod(rest)
    full = world.allgatherv(block.reshape(-1), [s * per for s in sizes])
    full = full.reshape((sum(sizes),) + rest)  # (N, ...)
    return xp.ascontiguousarray(xp.moveaxis(full, 0, axis))


def scatter_sum(xp: Module, world: Solo, g: Array, axis: int, sizes: tuple[int, ...]) -> Array:
    """This rank's block along ``axis`` of the sum over the ranks of ``g``."""
    whole = xp.ascontiguousarray(xp.moveaxis(g, axis, 0))  # (N, ...) contiguous
    rest = tuple(whole.shape[1:])
    per = math.prod(rest)
    mine = world.reduce_scatter(whole.reshape(-1), [s * per for s in sizes])
    mine = mine.reshape((sizes[world.rank],) + rest)  # (n_r, ...)
    return xp.ascontiguousarray(xp.moveaxis(mine, 0, axis))


def own_block(xp: Module, rank: int, g: Array, axis: int, sizes: tuple[int, ...]) -> Array:
    """Rank ``rank``'s block of ``g`` along ``axis`` (a contiguous copy)."""
    start = sum(sizes[:rank])
    return xp.ascontiguousarray(g[along(axis, slice(start, start + sizes[rank]))])


def hybrid_world(ranks: Solo | None, head: str) -> Solo | None:
    """``ranks`` when it holds more than one rank (hybrid parallel), else None;
    ``ValueError`` for a head without fc layers to split."""
    if ranks is None or ranks.size == 1:
        return None
    if head != "fc":
        raise ValueError(
            f"hybrid parallel splits fc6, fc7 and fc8 over the ranks; head {head!r} has "
            "no fc layers (use data parallel)"
        )
    return ranks


def hybrid_layers(
    seq: list[Layer], world: Solo, placement: Placement, key: Callable[[str, str], str], layout: str
) -> list[Layer]:
    """The layer list ``seq`` with the rank gathers of hybrid parallel (module doc); fc6-fc8
    hold this rank's share of their outputs (``placement``; ``key(layer, "bias")`` names a
    parameter, ``layout`` that of the maps)."""

    def sizes(name: str) -> tuple[int, ...]:  # every rank's share of layer name's outputs
        return tuple(hi - lo for lo, hi in placement.rank_rows(key(name, "bias"))[0])

    out: list[Layer] = []
    for layer in seq:
        if isinstance(layer, Exchange) and layer.name == "to_fc6":  # the batch axis
            out.append(RankGather("gather_pool5", layout.index("N"), True, world))
        elif isinstance(layer, Exchange) and layer.name in ("to_fc7", "to_fc8"):
            name = "fc6" if layer.name == "to_fc7" else "fc7"
            out.append(RankGather(f"gather_{name}", 1, True, world, sizes(name)))
        if isinstance(layer, Dropout) and not layer.whole:
            layer.ranks = (world.rank, world.size)
        out.append(layer)
    return out + [RankGather("gather_fc8", 1, False, world, sizes("fc8"))]
