"""The fully-connected layers fc6, fc7, fc8: y = x W^T + b on (N, F) features.

fc6 and fc7 compute half of their outputs in each column; fc8 lives on column 0.
``layers.linear`` has no clever fast path: both engines call it (the fast one with the
column's workspace).
"""

from __future__ import annotations

from typing import Any

from refnet.layers import linear
from refnet.layers.backend import Array, Module
from refnet.nodes.base import Column, Local
from refnet.nodes.describe import BenchCase, BenchPair, OnnxGraph


class Linear(Local):
    """``Linear(name, shapes=)``: {weight key: (F_out, F_in), bias key: (F_out,)}."""

    plain = fast = linear
    bench_kind = "linear"  # its case in bench.layers
    splits = True

    def __init__(self, name: str, *, shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__(name)
        self.shapes = dict(shapes)
        self.keys = tuple(self.shapes)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.shapes)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        out, inp = self.shapes[self.keys[0]]
        if tuple(shape) != (inp,):
            raise ValueError(f"{self.name} takes {inp} features, gets {tuple(shape)}")
        return (out,)

    def flops(self, shape: tuple[int, ...]) -> int:
        out, inp = self.shapes[self.keys[0]]
        return 2 * out * inp

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        wkey, bkey = self.keys
        g.node("Gemm", [g.last, g.param(wkey), g.param(bkey)], self.name, transB=1)

    def bench_case(self, shape: tuple[int, ...], batch: int) -> BenchCase | None:
        return self.bench_kind, (batch, *shape), dict(w=self.shapes[self.keys[0]])

    @staticmethod
    def bench_pair(
        xp: Module, x: Array, w: Array, b: Array, p: dict[str, Any], layout: str
    ) -> BenchPair:
        return (lambda: linear.forward(x, w, b)), (lambda out: linear.backward(*out))

    @staticmethod
    def bench_share(
        shape: tuple[int, ...], p: dict[str, Any], columns: int
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        """Each column its share of the outputs, from all of the input."""
        return shape, dict(p, w=(p["w"][0] // columns, p["w"][1]))

    @staticmethod
    def bench_torch(ops: Any, x: Any, w: Any, b: Any, p: dict[str, Any]) -> Any:
        return ops.F.linear(x, w, b)

    def tuning(self, col: Column) -> dict[str, Any]:
        return dict(ws=col.ws)

    backward_tuning = tuning
