"""Saving and loading an ``SGD``'s velocities (what a checkpoint keeps of the optimiser).

Axis legend: R rows of a parameter. ``state_dict`` is ``{"velocity/<key>": NumPy array}``
in the net's full (grouped single-device) shapes, whatever the number of columns;
``load_state_dict`` checks every key and shape before it changes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from refnet.layers.backend import Array

if TYPE_CHECKING:
    from refnet.network import AlexNet


class SGDState:
    """The state methods of ``refnet.sgd.SGD`` (which sets ``net`` and ``velocity``)."""

    net: AlexNet
    velocity: list[dict[str, Array]]  # velocity[c]: {key: array like net.params[c][key]}

    def state_dict(self) -> dict[str, numpy.ndarray]:
        """``{"velocity/<name>": NumPy array}`` with the net's full (grouped) shapes."""
        return {f"velocity/{name}": v for name, v in self.net.gather(self.velocity).items()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Set the velocities from ``state_dict()``'s form; ``ValueError`` on wrong,
        missing or extra keys and wrong shapes."""
        shapes = {f"velocity/{n}": s for n, s in self.net.shapes.items()}
        missing = [k for k in shapes if k not in sd]
        extra = [k for k in sd if k not in shapes]
        if missing or extra:
            raise ValueError(
                f"SGD state does not match the net: missing {missing}, unexpected {extra}"
            )
        bad = {
            k: tuple(numpy.shape(sd[k])) for k in shapes if tuple(numpy.shape(sd[k])) != shapes[k]
        }
        if bad:
            raise ValueError(
                f"SGD state shapes do not match: got {bad}, expected "
                f"{ {k: shapes[k] for k in bad} }"
            )
        full = {
            key[len("velocity/") :]: numpy.asarray(sd[key], dtype=self.net.dtype) for key in shapes
        }
        for velocity, shards in zip(self.velocity, self.net.scatter(full), strict=True):
            velocity.update(shards)
