"""The layer kinds of the network's list, one module each (``refnet.nodes.base``: what
they share, the per-column context and the plain runner)."""

from __future__ import annotations

from refnet.nodes.adaptive_pool import AdaptivePool
from refnet.nodes.base import Column, Context, Layer, Local, Pass
from refnet.nodes.conv import Conv
from refnet.nodes.dropout import Dropout
from refnet.nodes.exchange import Exchange
from refnet.nodes.flatten import Flatten
from refnet.nodes.gap import Gap
from refnet.nodes.input import Input
from refnet.nodes.linear import Linear
from refnet.nodes.lrn import Lrn
from refnet.nodes.pool import Pool
from refnet.nodes.rank_gather import RankGather
from refnet.nodes.relu import Relu


def bench_kind(kind: str) -> type[Layer]:
    """The layer class whose bench cases have ``kind`` (``Layer.bench_case``)."""
    for cls in (
        AdaptivePool,
        Conv,
        Dropout,
        Exchange,
        Flatten,
        Gap,
        Input,
        Linear,
        Lrn,
        Pool,
        Relu,
    ):
        if getattr(cls, "bench_kind", None) == kind:
            return cls
    raise ValueError(f"no layer kind has bench cases of kind {kind!r}")


__all__ = [
    "bench_kind",
    "AdaptivePool",
    "Column",
    "Context",
    "Conv",
    "Dropout",
    "Exchange",
    "Flatten",
    "Gap",
    "Input",
    "Layer",
    "Linear",
    "Local",
    "Lrn",
    "Pass",
    "Pool",
    "RankGather",
    "Relu",
]
