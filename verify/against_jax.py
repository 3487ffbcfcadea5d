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

import importlib

NAME = "jax"
TITLE = "JAX"
PART = "jax"
PARTS = ("layers", "network")


def available():
    """None when JAX imports, else why not."""
    try:
        importlib.import_module("jax")
    except ImportError:
        return "JAX is not installed: pip install -e '.[verify]'"
    return None


def version():
    import jax

    return jax.__version__


def steps(dtype, seed, *, parts=PARTS, sizes=("small", "paper")):
    """[(label, thunk returning report rows)]: one per layer family, one per network size
    (``parts`` other than layers and network have no JAX counterpart)."""
    from refnet.verify import jax_network, jax_twins, layer_cases, network

    out = []
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


def run(dtype="float64", seed=0):
    """Every layer case and both network sizes, as report rows."""
    return [row for _, step in steps(dtype, seed) for row in step()]
