"""Dropout on the outputs of fc6 and fc7 (the paper), or on fc6's and fc7's inputs
(torchvision's placement): one keep-mask drawn for all columns.

``mode="paper"``: no scaling in training, outputs times (1 - p) at test; ``"inverted"``:
1 / (1 - p) in training (PyTorch, Caffe). ``layers.dropout`` serves both engines. The
mask is a full (N, width) array drawn in the list's order (or given by name of the layer
whose output it covers), so the draws depend on neither the columns nor the backend:
fc6's and fc7's outputs are split over the columns, the flattened maps whole in each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from refnet.columns import rank_block
from refnet.layers import backend, dropout
from refnet.layers.backend import Array
from refnet.nodes.base import Column, Context, Local, Pass
from refnet.nodes.describe import OnnxGraph

if TYPE_CHECKING:
    from refnet.columns import Placement


class Dropout(Local):
    """``Dropout(name, source, p=, mode=, width=, whole=, ranks=)``: ``source`` the
    layer whose outputs it covers ("fc6", "fc7" or "flatten"), ``width`` their number
    (both columns), ``whole``: every column holds all of them; ``ranks=(r, R)``: hybrid
    parallel, rank r holds its ``refnet.columns.rank_block`` of each column's share."""

    plain = fast = dropout

    def __init__(
        self,
        name: str,
        source: str,
        *,
        p: float = 0.5,
        mode: str = "paper",
        width: int | None = None,
        whole: bool = False,
        ranks: tuple[int, int] = (0, 1),
    ) -> None:
        super().__init__(name)
        self.source, self.p, self.mode = source, p, mode
        self.width, self.whole, self.ranks = width, whole, ranks
        self.settings = dict(p=p, mode=mode)

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        if self.mode == "paper":  # the test-time factor 1 - p
            g.node("Mul", [g.last, g.constant(f"{self.name}.scale", 1.0 - self.p)], self.name)
        else:
            g.node("Identity", [g.last], self.name)

    def masks(self, pass_: Pass, placement: Placement) -> list[Array] | None:
        """Column shards of a full (N, width) keep-mask (from ``pass_.masks`` or drawn
        from ``pass_.rng``), or None outside training."""
        if not pass_.train:
            return None
        n, width, name = pass_.n, self.width, self.source
        assert n is not None and width is not None  # set by the network before a pass
        if pass_.masks is not None and name in pass_.masks:
            full = backend.asnumpy(pass_.masks[name])  # to the host, then to each column
            if tuple(full.shape) != (n, width):
                raise ValueError(
                    f"masks[{name!r}] must have shape ({n}, {width}), got {tuple(full.shape)}"
                )
        else:
            rng = numpy.random.default_rng() if pass_.rng is None else pass_.rng
            full = rng.random((n, width)) >= self.p  # keep-mask, as layers.dropout
        columns = placement.columns
        if self.whole:
            return [placement.put(full, c) for c in range(columns)]  # (N, width)
        w = width // columns
        blocks = [rank_block(c * w, (c + 1) * w, *self.ranks) for c in range(columns)]
        return [
            placement.put(numpy.ascontiguousarray(full[:, lo:hi]), c)
            for c, (lo, hi) in enumerate(blocks)
        ]  # (N, width / columns) each, or this rank's share of it

    def prepare(self, pass_: Pass, ctx: Context, columns: int) -> list[dict[str, Any]]:
        masks = self.masks(pass_, ctx.placement) or [None] * columns
        return [dict(train=pass_.train, mask=m) for m in masks]

    def tuning(self, col: Column) -> dict[str, Any]:
        return dict(ws=col.ws)

    backward_tuning = tuning
