"""Max pooling after conv1, conv2 and conv5: a z x z window every s positions.

Plain: ``layers.plain.pool_forward`` window by window. Fast: ``layers.pool`` on phase
planes in either layout.
"""

from __future__ import annotations

from typing import Any

from refnet.layers import plain, pool
from refnet.layers.backend import Array, Module
from refnet.layers.checks import window_count
from refnet.nodes.base import Column, Local
from refnet.nodes.describe import BenchCase, BenchPair, OnnxGraph


class Pool(Local):
    """``Pool(name, size=, stride=, rounding=)``: rounding "floor" or "ceil" (Caffe's)."""

    plain = plain.pool
    fast = pool
    bench_kind = "pool"  # its case in bench.layers

    def __init__(self, name: str, *, size: int, stride: int, rounding: str = "floor") -> None:
        super().__init__(name)
        self.size, self.stride, self.rounding = size, stride, rounding
        self.settings = dict(size=size, stride=stride, rounding=rounding)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = shape
        return (
            c,
            *(window_count(s, self.size, self.stride, rounding=self.rounding) for s in (h, w)),
        )

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        g.node(
            "MaxPool",
            [g.last],
            self.name,
            kernel_shape=[self.size] * 2,
            strides=[self.stride] * 2,
            ceil_mode=int(self.rounding == "ceil"),
        )

    def bench_case(self, shape: tuple[int, ...], batch: int) -> BenchCase | None:
        return self.bench_kind, (batch, *shape), dict(size=self.size, stride=self.stride)

    @staticmethod
    def bench_pair(
        xp: Module, x: Array, w: Array, b: Array, p: dict[str, Any], layout: str
    ) -> BenchPair:
        return (
            (lambda: pool.forward(x, size=p["size"], stride=p["stride"], layout=layout)),
            (lambda out: pool.backward(*out)),
        )

    @staticmethod
    def bench_torch(ops: Any, x: Any, w: Any, b: Any, p: dict[str, Any]) -> Any:
        return ops.F.max_pool2d(x, p["size"], p["stride"])

    def tuning(self, col: Column) -> dict[str, Any]:
        return dict(layout=col.layout, ws=col.ws)

    def backward_tuning(self, col: Column) -> dict[str, Any]:
        return dict(ws=col.ws)
