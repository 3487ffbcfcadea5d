"""refnet against JAX, as one entry of ``verify.frameworks``: a second autodiff.

Every case of ``verify.layer_cases`` (the same inputs, parameters and upstream gradients
as against PyTorch) against ``verify.jax_twins``, whose forwards are written from the
formulas in JAX and whose backwards are ``jax.vjp``; and the whole network of
``verify.network`` (the same cases, weights, inputs and dropout masks) against
``verify.jax_network``, the paper's two-column topology written in JAX. float64 runs in
JAX's 64-bit mode; tolerances as everywhere (``verify.compare.tolerance``).

Every row's part is ``"jax"``; its case names the layer first (``conv1 11x11/4 ...``,
``lrn ...``) or, for the whole network, the architecture (``tiny N=4 train``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from numpy.typing import DTypeLike

from refnet.verify.compare import Row

NAME = "jax"
TITLE = "JAX"
PART = "jax"
PARTS = ("layers", "network")


def available() -> str | None:
    """None when JAX imports, else why not."""
    try:
        importlib.import_module("jax")
    except ImportError:
        return "JAX is not installed: pip install -e '.[verify]'"
    return None


def version() -> str:
    import jax

    return jax.__version__


def steps(
    dtype: DTypeLike,
    seed: int,
    *,
    parts: Sequence[str] = PARTS,
    sizes: Sequence[str] = ("small", "paper"),
) -> list[tuple[str, Callable[..., list[Row]]]]:
    """[(label, thunk returning report rows)]: one per layer family, one per network size
    (``parts`` other than layers and network have no JAX counterpart)."""
    from refnet.verify import jax_network, jax_twins, layer_cases, network

    out: list[tuple[str, Callable[..., list[Row]]]] = []
    if "layers" in parts:
        out += [
            (
                f"jax layers:{name}",
                lambda n=name: layer_cases.run(dtype, seed, [n], twins=jax_twins, part=PART),
            )
            for name in layer_cases.CASES
        ]
    if "network" in parts:
        out += [
            (
                f"jax network:{s}",
                lambda s=s: network.run(
                    dtype, seed, (s,), make_twin=jax_network.jax_twin_of, part=PART
                ),
            )
            for s in sizes
        ]
    return out


def run(dtype: DTypeLike = "float64", seed: int = 0) -> list[Row]:
    """Every layer case and both network sizes, as report rows."""
    return [row for _, step in steps(dtype, seed) for row in step()]
