"""What ``refnet.network.AlexNet`` gives besides a training step's per-column gradients.

Axis legend: N batch, K classes, F features, C/H/W channels and side of conv maps.

``predict_proba`` (softmax probabilities), ``loss_and_grad`` (the gradients as full
arrays, keyed like ``state_dict``), ``features`` (a layer's output, for the nearest
neighbours and the exporter's layer-by-layer comparison) and ``dropout_masks`` (a
dropout layer's column shards of a keep-mask); all through the network's layer list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy

from refnet.layers import layout as layouts
from refnet.layers import softmax
from refnet.layers.backend import Array, Module
from refnet.nodes import Context, Dropout, Layer, Pass

if TYPE_CHECKING:
    from refnet.columns import Placement


class Readouts:
    """The read-out methods of ``refnet.network.AlexNet`` (which defines what is
    declared here)."""

    layers: list[Layer]
    placement: Placement
    xp: Module
    layout: str

    if TYPE_CHECKING:  # AlexNet's and its other mixins' methods

        def forward(
            self,
            x: Array,
            train: bool = False,
            rng: numpy.random.Generator | None = None,
            masks: dict[str, Array] | None = None,
        ) -> Array: ...

        def loss_and_grad_columns(
            self,
            x: Array,
            labels: Array,
            train: bool = True,
            rng: numpy.random.Generator | None = None,
            masks: dict[str, Array] | None = None,
            on_grads: Callable[[str, list[dict[str, Array]]], None] | None = None,
        ) -> tuple[float, list[dict[str, Array]]]: ...

        def full_grads(self, grads: list[dict[str, Array]]) -> dict[str, Array]: ...
        def context(self) -> Context: ...
        def _require_params(self) -> None: ...
        def _check_input(self, x: Array) -> None: ...

    def predict_proba(self, x: Array) -> Array:
        """Softmax probabilities (N, K) in eval mode (no dropout), on column 0's device."""
        logits = self.forward(x, train=False)
        with self.placement.device(0):
            return softmax.probabilities(logits)

    def loss_and_grad(
        self,
        x: Array,
        labels: Array,
        train: bool = True,
        rng: numpy.random.Generator | None = None,
        masks: dict[str, Array] | None = None,
    ) -> tuple[float, dict[str, Array]]:
        """(mean cross-entropy as a float, gradients keyed like ``state_dict`` with full
        shapes, arrays of the net's module on column 0's device)."""
        loss, grads = self.loss_and_grad_columns(x, labels, train=train, rng=rng, masks=masks)
        return loss, self.full_grads(grads)

    def features(self, x: Array, upto: str = "relu_fc7", maps: bool = False) -> Array:
        """The output (N, F) of layer ``upto`` (a name in ``self.layers``) for images x,
        in eval mode, on column 0's device: each column's part concatenated in column
        order (fc6 and fc7 split their F outputs in halves over two columns). The default
        is fc7's ReLU, the last hidden layer (4096 features for ``alexnet``); in the
        paper's dropout mode fc8 reads these times (1 - p). ``ValueError`` for a name
        not in the list or, unless ``maps``, a layer whose output is not (N, F) (the conv
        maps). ``maps=True`` gives those as (N, C, H, W) whatever the layout, the
        columns' channels side by side (the grouped single-device form). Where every
        column holds all of them (after an exchange, until the next layer with weights)
        column 0's are returned."""
        names = [layer.name for layer in self.layers]
        if upto not in names:
            raise ValueError(f"features: no layer {upto!r}; the layers are {names}")
        self._require_params()
        self._check_input(x)
        self.placement.new_pass()
        pass_, ctx = Pass(False, None, None, keep=False), self.context()
        pass_.n, h = x.shape[0], x
        whole = True  # every column holds all of h, not its part
        for layer in self.layers[: names.index(upto) + 1]:
            h, _ = layer.forward(h, pass_, ctx)
            whole = layer.gathers or (whole and not layer.splits)
        if any(a.ndim != 2 for a in h) and not maps:
            raise ValueError(
                f"features: {upto!r} gives maps of shape {h[0].shape} per "
                "column, not (N, F) features"
            )
        if whole:
            h = h[:1]
        P = self.placement
        with P.device(0):
            h = [P.put(a, 0) for a in h]
            if h[0].ndim == 4:
                h = [layouts.transpose(a, self.layout, "NCHW") for a in h]
            return self.xp.concatenate(h, axis=1)  # (N, F) or (N, C, H, W)

    def dropout_masks(self, name: str, pass_: Pass) -> list[Array] | None:
        """Column shards of a full (N, width) keep-mask for layer ``name``'s outputs (from
        ``pass_.masks`` or drawn from ``pass_.rng``), or None outside training
        (``refnet.nodes.Dropout.masks``)."""
        for layer in self.layers:
            if isinstance(layer, Dropout) and layer.source == name:
                return layer.masks(pass_, self.placement)
        raise ValueError(f"dropout_masks: no dropout on {name!r}'s outputs")
