"""refnet against PyTorch, as one entry of ``verify.frameworks``: every layer, the whole
network, three SGD steps and the measured conventions; and the part ``reference``
(refnet's fast paths against ``layers.reference``), which needs no framework but has
always run with these.

Parts (``--only``): ``layers``, ``network``, ``sgd``, ``conventions``, ``reference``;
their rows keep these part names (``python -m refnet.verify`` prints them as it always has).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from numpy.typing import DTypeLike

from refnet.verify.compare import Row

PARTS = ("layers", "network", "sgd", "conventions", "reference")
NAME = "torch"
TITLE = "PyTorch"
REFERENCE = "PyTorch, or layers.reference in part reference"
INSTALL = "pip install -e '.[verify]'"


def available() -> str | None:
    """None when PyTorch imports, else why not."""
    try:
        importlib.import_module("torch")
    except ImportError:
        return f"PyTorch is not installed: {INSTALL}"
    return None


def version() -> str:
    import torch

    return torch.__version__


def steps(
    dtype: DTypeLike,
    seed: int,
    *,
    parts: Sequence[str] = PARTS,
    sizes: Sequence[str] = ("small", "paper"),
) -> list[tuple[str, Callable[..., list[Row]]]]:
    """[(label, thunk returning report rows)] for the chosen ``parts`` (torch imported
    here, by the modules that compare with it)."""
    from refnet.verify import conventions, layer_cases, network, reference_cases, sgd

    out: list[tuple[str, Callable[..., list[Row]]]] = []
    if "layers" in parts:
        out += [
            (f"layers:{name}", lambda n=name: layer_cases.run(dtype, seed, [n]))
            for name in layer_cases.CASES
        ]
    if "network" in parts:
        out += [(f"network:{s}", lambda s=s: network.run(dtype, seed, (s,))) for s in sizes]
    if "sgd" in parts:
        out.append(("sgd", lambda: sgd.run(dtype, seed)))
    if "conventions" in parts:
        out.append(("conventions", lambda: conventions.run(dtype, seed)))
    if "reference" in parts:
        out += [
            (f"reference:{name}", lambda n=name: reference_cases.run(dtype, seed, [n]))
            for name in reference_cases.CASES
        ]
    return out


def run(dtype: DTypeLike = "float64", seed: int = 0) -> list[Row]:
    """Every part's rows."""
    return [row for _, step in steps(dtype, seed) for row in step()]
