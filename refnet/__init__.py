"""refnet: AlexNet's two-column network, its options, training and evaluation.

    from refnet import AlexNet, NetOptions, build_network, SGD, ReduceOnPlateau, StepSchedule

Subpackages: ``refnet.layers`` (the maths), ``refnet.data`` (images to HDF5, the loader),
``refnet.verify`` (the comparison with other frameworks), ``refnet.bench`` (the benchmark).
The names below are imported on first use, so ``import refnet.layers`` loads no network.
"""

from __future__ import annotations

import importlib
from typing import Any

from refnet.data.cli import end_on_interrupt_while_loading

end_on_interrupt_while_loading()  # python -m refnet.X: Ctrl-C while modules load is one line

__version__ = "0.2.0"

_EXPORTS = {
    "ARCHS": "refnet.arch",
    "ArchSpec": "refnet.arch",
    "ConvSpec": "refnet.arch",
    "param_shapes": "refnet.arch",
    "AlexNet": "refnet.network",
    "build_network": "refnet.network",
    "NetOptions": "refnet.options",
    "ReduceOnPlateau": "refnet.schedule",
    "StepSchedule": "refnet.schedule",
    "SGD": "refnet.sgd",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'refnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
