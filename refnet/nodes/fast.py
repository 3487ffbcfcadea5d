"""The fast engine's side of a layer: its fast pair, with the keywords only it takes.

Axis legend: N batch, C channels, H/W height/width, F features.

A column-local layer (``refnet.nodes.base.Local``) names its fast pair in ``fast`` (a
module such as ``layers.conv``), with the signature of its plain pair plus the keywords
of ``tuning`` (forward) and ``backward_tuning`` (backward): layout, the column's
workspace, the convolution algorithm and what it keeps. ``column_forward`` /
``column_backward`` call it for one column. ``fusable`` says whether ``refnet.segments``
may run a layer with its column-local neighbours in one call per column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refnet.layers.backend import Array

# refnet.nodes.base's Column, Context and Pass: base imports this module, so these name
# them without importing them back (no import cycle); the kinds' overrides use the types
Column = Any
Context = Any
Pass = Any


class FastLayer:
    """The fast-engine methods of ``refnet.nodes.base.Layer``."""

    def fusable(self, ctx: Context, h: list[Array] | None) -> bool:
        """Whether this call (on h, or on a column-local layer's output when h is None)
        is column-local, so that ``refnet.segments`` may run it with its neighbours."""
        return False


class FastLocal(FastLayer):
    """The fast-engine methods of ``refnet.nodes.base.Local``."""

    fast: Any = None  # the module of the fast pair (``layers.conv``), same signatures
    settings: dict[str, Any]
    backward_settings: dict[str, Any]

    if TYPE_CHECKING:  # defined by Local

        def weights(self, col: Column) -> tuple[Array, ...]: ...
        def _store(self, out: Any, grads: dict[str, Array]) -> Array: ...

    def tuning(self, col: Column) -> dict[str, Any]:
        """What the fast forward takes besides the settings (layout, workspace, ...)."""
        return {}

    def backward_tuning(self, col: Column) -> dict[str, Any]:
        """What the fast backward takes besides ``backward_settings``."""
        return {}

    def fusable(self, ctx: Context, h: list[Array] | None) -> bool:
        return True

    def column_forward(
        self, col: Column, a: Array, pass_: Pass, extra: dict[str, Any]
    ) -> tuple[Array, Any]:
        return self.fast.forward(
            a, *self.weights(col), **self.settings, **extra, **self.tuning(col)
        )

    def column_backward(self, col: Column, g: Array, cache: Any, grads: dict[str, Array]) -> Array:
        return self._store(
            self.fast.backward(g, cache, **self.backward_settings, **self.backward_tuning(col)),
            grads,
        )
