"""Every function the code takes from the array module exists in CuPy.

CuPy imports without a GPU (only allocating fails), so this runs on any machine with
``cupy-cuda12x`` installed and catches a NumPy-only call (``xp.foo`` that CuPy lacks)
before it reaches a GPU. The attribute chains are read from the source with ``ast``:
every ``xp.a.b...`` in ``layers/``, ``refnet/`` and ``data/``, except ``layers/backend.py``,
which dispatches on the module explicitly (its ``xp.Device`` is a test backend's).
"""

import ast
import pathlib

import numpy
import pytest

from refnet.layers import backend

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("layers", "refnet", "data")
EXCLUDED = {"layers/backend.py"}


def _chain(node):
    """``xp.lib.stride_tricks.as_strided`` -> ("xp", "lib", "stride_tricks", "as_strided")."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return None


def xp_attribute_uses():
    """{("lib", "stride_tricks", "as_strided"): ["layers/conv.py:12", ...], ...}"""
    uses = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if str(path.relative_to(ROOT)) in EXCLUDED:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Attribute):
                    continue
                chain = _chain(node)
                if chain and chain[0] == "xp" and len(chain) > 1:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    uses.setdefault(chain[1:], []).append(where)
    # Keep only the longest chains: ("lib",) is covered by ("lib", "stride_tricks", ...).
    longest = {
        c: w for c, w in uses.items() if not any(o[: len(c)] == c and len(o) > len(c) for o in uses)
    }
    return longest


def _resolve(module, chain):
    obj = module
    for name in chain:
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def test_scanner_finds_uses_and_can_fail():
    uses = xp_attribute_uses()
    assert uses, "no xp.* uses found: the scanner is broken"
    # A name CuPy lacks must be reported missing by the same resolver.
    assert not _resolve(numpy, ("no_such_function",))


def test_every_xp_function_exists_in_numpy_and_cupy():
    cupy = backend.cupy_module()
    if cupy is None:
        pytest.skip("CuPy is not installed (pip install -e '.[gpu]')")
    missing = {
        mod.__name__: sorted(
            f"xp.{'.'.join(c)} ({w[0]})"
            for c, w in xp_attribute_uses().items()
            if not _resolve(mod, c)
        )
        for mod in (numpy, cupy)
    }
    assert missing == {"numpy": [], "cupy": []}
