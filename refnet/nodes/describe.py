"""What the summary, the exporter and the benchmark ask of a layer, with its defaults.

Axis legend: N batch, C channels, H/W height/width, F features. Shapes are per image, in
the grouped single-device form (both columns together): maps (C, H, W), features (F,).

``output_shape`` and ``flops`` (``refnet.summary``), ``onnx`` (its graph nodes through
``refnet.export``'s builder), ``bench_case`` and ``bench_share`` (what ``bench.layers``
times); every layer kind of ``refnet.nodes`` overrides what differs from the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OnnxGraph = Any
"""``refnet.export``'s graph builder (``node``, ``constant``, ``last``): the exporter stands
on the library, so the library names no type of it."""

BenchCase = tuple[str, tuple[int, ...], dict[str, Any]]
"""(kind, x shape, settings) of a layer's case in ``bench.layers``."""

BenchPair = tuple[Callable[[], Any], Callable[[Any], Any]]
"""(forward, backward) callables of a bench case: ``backward(forward())``."""


class Described:
    """The description methods of ``refnet.nodes.base.Layer`` (which sets ``name``)."""

    name: str

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Its output's shape per image for an input of ``shape`` (grouped form)."""
        return shape

    def flops(self, shape: tuple[int, ...]) -> int:
        """Forward FLOPs per image for an input of ``shape`` (a multiply-add is 2)."""
        return 0

    def onnx(self, g: OnnxGraph, shape: tuple[int, ...]) -> None:
        """Add its ONNX nodes to the builder ``g`` (``refnet.export``): by default the
        identity, a tensor named after the layer."""
        g.node("Identity", [g.last], self.name)

    def bench_case(self, shape: tuple[int, ...], batch: int) -> BenchCase | None:
        """(kind, x shape, settings) that ``bench.layers`` times, or None: not timed."""
        return None

    @staticmethod
    def bench_share(
        shape: tuple[int, ...], p: dict[str, Any], columns: int
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        """(x shape, settings) of one column's share of a bench case: maps split along
        their channels (each column its own)."""
        N, C, H, W = shape
        return (N, C // columns, H, W), p
