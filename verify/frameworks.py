"""The frameworks refnet is compared with (``python -m refnet.verify --against``), by name.

Each entry is a module of ``verify/`` with

    NAME                      the name given to --against
    available() -> str|None   None when the framework can run here, else why not
    run(dtype, seed)          every comparison, as a list of ``verify.compare.Row``

and, optionally, ``TITLE`` (a display name), ``version()``, and
``steps(dtype, seed, *, parts, sizes) -> [(label, thunk returning rows)]``: the same work
in steps (for the progress bar) that honour ``--only`` and ``--size``.

Modules are imported only when asked for. A module that does not exist in this checkout
(``ImportError`` of the module itself) is reported "skipped (not built)"; one that fails
to import for another reason is skipped with that reason.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Sequence

from numpy.typing import DTypeLike

from refnet.verify.compare import Row

MODULES = {
    "torch": "refnet.verify.against_torch",
    "onnxruntime": "refnet.verify.against_onnxruntime",
    "jax": "refnet.verify.against_jax",
}
DEFAULT = ("torch",)

Framework = types.ModuleType | types.SimpleNamespace
"""A framework's entry: its module, or the stand-in of ``unavailable``."""


def parse(text: str) -> list[str]:
    """The framework names of a comma-separated ``--against`` value, in the given order;
    ``ValueError`` naming any unknown one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODULES]
    if unknown or not names:
        raise ValueError(
            f"--against: unknown framework(s) {unknown or text!r}, choose from {','.join(MODULES)}"
        )
    return list(dict.fromkeys(names))


def unavailable(name: str, reason: str) -> types.SimpleNamespace:
    """A stand-in entry for a framework that cannot run: ``available()`` gives ``reason``."""
    return types.SimpleNamespace(
        NAME=name, TITLE=name, available=lambda: reason, run=lambda dtype, seed: []
    )


def load(name: str) -> Framework:
    """The module of framework ``name`` (or a stand-in saying why it cannot run)."""
    if name not in MODULES:
        raise ValueError(f"frameworks: unknown framework {name!r}, choose from {','.join(MODULES)}")
    path = MODULES[name]
    try:
        return importlib.import_module(path)
    except ImportError as e:
        if e.name == path:
            return unavailable(name, "not built")
        return unavailable(name, f"{path} does not import: {e}")


def title(module: Framework) -> str:
    """Display name and version, e.g. 'PyTorch 2.13.0'."""
    name = getattr(module, "TITLE", module.NAME)
    version = getattr(module, "version", None)
    return f"{name} {version()}" if version else name


def steps(
    module: Framework, dtype: DTypeLike, seed: int, *, parts: Sequence[str], sizes: Sequence[str]
) -> list[tuple[str, Callable[..., list[Row]]]]:
    """The module's work as [(label, thunk)]: its own ``steps`` or one ``run`` call."""
    if hasattr(module, "steps"):
        return module.steps(dtype, seed, parts=parts, sizes=sizes)
    return [(module.NAME, lambda: module.run(dtype, seed))]
