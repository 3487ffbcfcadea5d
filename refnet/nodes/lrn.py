"""Local response normalisation after conv1's and conv2's ReLU (the paper's section 3.3).

    b[c] = a[c] / (k + alpha * sum_{c' in c - size//2 .. c + size//2} a[c']^2)^beta

``mode="column"``: each column normalises over its own kernel maps only (the authors'
cuda-convnet2). ``mode="all"`` with two columns: Caffe's one LRN over all channels of the
grouped form, each column's maps extended by a halo of ``size // 2`` channels of the
other column (``refnet.exchange.halo_forward``), trimmed after. Plain:
``layers.plain.lrn_forward``. Fast: ``layers.lrn`` in cache blocks, in either layout.

ONNX's LRN divides alpha by ``size``: it is written with ``alpha * size`` and ``bias = k``
(``refnet.export`` documents the float32 rounding of that attribute).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from refnet import exchange
from refnet.layers import layout as layouts
from refnet.layers import lrn, plain
from refnet.layers.backend import Array, Module
from refnet.layers.layout import along, channel_axis
from refnet.nodes.base import Column, Context, Local, Pass, split_pairs
from refnet.nodes.describe import BenchCase, BenchPair, OnnxGraph


def onnx_attributes(params: Mapping[str, float]) -> dict[str, float]:
    """ONNX LRN's attributes for refnet's ``{size, alpha, beta, k}``."""
    return dict(
        size=params["size"],
        alpha=params["alpha"] * params["size"],
        beta=params["beta"],
        bias=params["k"],
    )


class Lrn(Local):
    """``Lrn(name, size=, alpha=, beta=, k=, mode=, columns=)``."""

    plain = plain.lrn
    fast = lrn
    bench_kind = "lrn"  # its case in bench.layers

    def __init__(
        self,
        name: str,
        *,
        size: int,
        alpha: float,
        beta: float,
        k: float,
        mode: str = "column",
        columns: int = 1,
    ) -> None:
        super().__init__(name)
        self.settings = dict(size=size, alpha=alpha, beta=beta, k=k)
        self.mode, self.columns = mode, columns
        self.across = mode == "all" and columns > 1  # a halo from the other column

    def groups(self) -> int:
        """Channel groups each normalised on their own in the grouped form."""
        return self.columns if self.mode == "column" else 1

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        attrs = onnx_attributes(self.settings)
        if self.groups() == 1:
            g.node("LRN", [g.last], self.name, **attrs)
            return
        parts = [f"{self.name}/column{c}" for c in range(self.groups())]
        g.split(g.last, parts, f"{self.name}/split", axis=1)  # equal halves (N, C/2, H, W)
        for part in parts:
            g.node("LRN", [part], f"{part}/lrn", **attrs)
        g.node("Concat", [f"{p}/lrn" for p in parts], self.name, axis=1)

    def bench_case(self, shape: tuple[int, ...], batch: int) -> BenchCase | None:
        return self.bench_kind, (batch, *shape), dict(groups=self.groups(), **self.settings)

    @staticmethod
    def bench_pair(
        xp: Module, x: Array, w: Array, b: Array, p: dict[str, Any], layout: str
    ) -> BenchPair:
        g, hyper = p["groups"], {k: p[k] for k in ("size", "alpha", "beta", "k")}
        axis = channel_axis(layout)
        C = x.shape[axis]
        parts = [
            xp.ascontiguousarray(x[along(axis, slice(i * C // g, (i + 1) * C // g))])
            for i in range(g)
        ]
        return (
            (lambda: [lrn.forward(a, **hyper, layout=layout) for a in parts]),
            (lambda out: [lrn.backward(y, c) for y, c in out]),
        )

    @staticmethod
    def bench_share(
        shape: tuple[int, ...], p: dict[str, Any], columns: int
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        """Each column its own maps, normalised as one group (the halo of Caffe's mode
        left out)."""
        N, C, H, W = shape
        return (N, C // columns, H, W), dict(p, groups=1)

    @staticmethod
    def bench_torch(ops: Any, x: Any, w: Any, b: Any, p: dict[str, Any]) -> Any:
        return ops.lrn(x, groups=p["groups"], **{k: p[k] for k in ("size", "alpha", "beta", "k")})

    def tuning(self, col: Column) -> dict[str, Any]:
        return dict(layout=col.layout, ws=col.ws)

    def backward_tuning(self, col: Column) -> dict[str, Any]:
        return dict(ws=col.ws)

    def fusable(self, ctx: Context, h: list[Array] | None) -> bool:
        return not self.across

    def forward(self, h: list[Array], pass_: Pass, ctx: Context) -> tuple[list[Array], Any]:
        if not self.across:
            return super().forward(h, pass_, ctx)
        run = self.plain_forward if ctx.engine == "plain" else self.column_forward
        P, axis = ctx.placement, layouts.channel_axis(ctx.layout)
        n = min(self.settings["size"] // 2, h[0].shape[axis])
        h, halo = exchange.halo_forward(h, place=P, n=n, axis=axis)  # C + n channels
        h, caches = split_pairs(P.each(lambda c, a: run(ctx.columns[c], a, pass_, {}), h))
        return exchange.trim_forward(h, halo), HaloCache(halo, caches)  # C channels

    def backward(
        self, d: list[Array], cache: Any, grads: list[dict[str, Array]], ctx: Context
    ) -> list[Array] | None:
        if not isinstance(cache, HaloCache):
            return super().backward(d, cache, grads, ctx)
        run = self.plain_backward if ctx.engine == "plain" else self.column_backward
        P = ctx.placement
        d = exchange.trim_backward(d, cache.halo, place=P)
        d = P.each(lambda c, g, k: run(ctx.columns[c], g, k, grads[c]), d, cache.caches)
        return exchange.halo_backward(d, cache.halo, place=P)


class HaloCache(NamedTuple):
    halo: exchange.HaloCache  # refnet.exchange.HaloCache
    caches: list[Any]  # each column's LRN cache
