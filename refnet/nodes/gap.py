"""The "gap" head's global average: each class map averaged over its positions, (N, K)
logits (Network-in-Network, GoogLeNet). ``layers.gap`` serves both engines."""

from __future__ import annotations

from typing import Any

from refnet.layers import gap
from refnet.nodes.base import Column, Local
from refnet.nodes.describe import OnnxGraph


class Gap(Local):
    plain = fast = gap

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0],)

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        g.node("GlobalAveragePool", [g.last], f"{self.name}/maps")  # (N, K, 1, 1)
        g.node("Flatten", [g.last], self.name, axis=1)  # (N, K)

    def tuning(self, col: Column) -> dict[str, Any]:
        return dict(layout=col.layout)
