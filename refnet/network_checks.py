"""The checks ``refnet.network.AlexNet`` makes of its inputs at its public entry points.

Axis legend: N batch, S side of the square input, K classes. Images are (N, 3, S, S) in
the net's dtype; labels (N,) integers in [0, K). A wrong one is a plain ``ValueError``
(or ``TypeError`` for a wrong dtype) that names what was expected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from refnet.layers.backend import Array

if TYPE_CHECKING:
    from refnet.arch import ArchSpec
    from refnet.columns import Placement


class InputChecks:
    """The input checks of ``refnet.network.AlexNet`` (which sets what is declared here)."""

    spec: ArchSpec
    dtype: numpy.dtype
    num_classes: int
    placement: Placement

    def _check_input(self, x: Array) -> None:
        """``ValueError`` unless x is (N, 3, S, S) with N >= 1; ``TypeError`` unless it is
        in the net's dtype."""
        s = self.spec.input_size
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4 or shape[1:] != (3, s, s) or shape[0] < 1:
            raise ValueError(
                f"AlexNet({self.spec.name!r}): x must have shape (N, 3, {s}, {s}), got {shape}"
            )
        if numpy.dtype(x.dtype) != self.dtype:
            raise TypeError(
                f"AlexNet: x has dtype {x.dtype} but the net computes in "
                f"{self.dtype}; convert it first"
            )

    def _labels(self, labels: Array, n: int) -> Array:
        """The labels (n,) on column 0's device, checked (their range only when they are
        on the host: a check on the device would wait for it)."""
        host = None
        if isinstance(labels, numpy.ndarray) or not hasattr(labels, "__array_namespace__"):
            host = numpy.asarray(labels)
        shape = tuple(getattr(labels, "shape", numpy.shape(labels)))
        if shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {shape}")
        if host is not None:
            if host.dtype.kind not in "iu":
                raise TypeError(f"labels must be integers, got dtype {host.dtype}")
            if n and (host.min() < 0 or host.max() >= self.num_classes):
                raise ValueError(
                    f"labels must be in [0, {self.num_classes}), got [{host.min()}, {host.max()}]"
                )
        return self.placement.put(labels, 0)
