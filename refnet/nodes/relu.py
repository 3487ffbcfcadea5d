"""ReLU after every convolution and after fc6 and fc7: y = max(x, 0).

``layers.relu`` serves both engines; the fast one writes in place over the layer
below's output (nothing else keeps it) and takes the column's workspace.
"""

from __future__ import annotations

from typing import Any

from refnet.layers import relu
from refnet.layers.backend import Array, Module
from refnet.nodes.base import Column, Local
from refnet.nodes.describe import BenchCase, BenchPair, OnnxGraph


class Relu(Local):
    plain = fast = relu
    bench_kind = "relu"  # its case in bench.layers

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        g.node("Relu", [g.last], self.name)

    def bench_case(self, shape: tuple[int, ...], batch: int) -> BenchCase | None:
        if len(shape) != 3:
            return None  # the bench times the ReLUs of the maps, not of features
        return self.bench_kind, (batch, *shape), {}

    @staticmethod
    def bench_pair(
        xp: Module, x: Array, w: Array, b: Array, p: dict[str, Any], layout: str
    ) -> BenchPair:
        return (lambda: relu.forward(x)), (lambda out: relu.backward(*out))

    @staticmethod
    def bench_torch(ops: Any, x: Any, w: Any, b: Any, p: dict[str, Any]) -> Any:
        return ops.F.relu(x)

    def tuning(self, col: Column) -> dict[str, Any]:
        # in place: the layer below's output is this layer's alone
        return dict(ws=col.ws, inplace=True)

    backward_tuning = tuning
