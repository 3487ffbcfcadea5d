"""torchvision's own AlexNet class (``torchvision.models.alexnet``), also beside a CPU torch.

    module, how = torchvision_alexnet()        # ImportError with the reason if it cannot
    model = module.alexnet(weights=None)       # torchvision's AlexNet, PyTorch's init

The arch ``owt`` is checked against this class itself, not against a copy written here.

Why the fallback: the torchvision wheels on PyPI are built for PyTorch's CUDA build.
Their compiled operators (``torchvision/_C.so``) link ``libtorch_cuda.so`` and
``libc10_cuda.so``, which the CPU build of torch (``torch==2.13.0+cpu``) does not ship,
so torchvision skips loading them; but its package ``__init__`` then still registers
fake kernels for those operators (``torchvision/_meta_registrations.py``), and ``import
torchvision`` fails with ``RuntimeError: operator torchvision::nms does not exist``
(measured with torchvision 0.28.0, the release paired with torch 2.13, beside torch
2.13.0+cpu). The model's module needs none of that: ``torchvision/models/alexnet.py``
builds the network from ``torch.nn`` and imports only pure-Python helpers of
``torchvision.models``, ``torchvision.transforms`` and ``torchvision.utils``.

So: when ``import torchvision.models.alexnet`` works (a matching torch), it is used as
is (``how == "import"``). Otherwise the half-imported ``torchvision`` modules are
dropped from ``sys.modules``, the packages ``torchvision`` and ``torchvision.models`` are
stood in by empty package modules whose ``__path__`` is the installed folders (their
``__init__`` files, which import every model, the datasets and the operators, are not
run), ``torchvision.models.alexnet`` is imported from the installed file, and the
``torchvision`` entries are removed from ``sys.modules`` again, so a later ``import
torchvision`` elsewhere behaves as it did before (``how == "package folders"``). Only
the installed file is run; nothing of torchvision's is copied here.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pathlib
import sys
import types

MODULE = "torchvision.models.alexnet"


def _drop_torchvision_modules():
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def _from_package_folders():
    """``torchvision.models.alexnet`` imported under stand-in parent packages (module doc)."""
    spec = importlib.util.find_spec("torchvision")
    root = pathlib.Path(spec.origin).parent  # type: ignore[union-attr, arg-type]  # found by the caller
    _drop_torchvision_modules()
    for name, folder in (("torchvision", root), ("torchvision.models", root / "models")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]  # a package whose __init__ is not run
        sys.modules[name] = package
    try:
        return importlib.import_module(MODULE)
    finally:
        _drop_torchvision_modules()


@functools.cache
def torchvision_alexnet() -> tuple[types.ModuleType, str]:
    """(module ``torchvision.models.alexnet``, how it was loaded); ``ImportError`` naming
    the reason when torch or torchvision is missing or the module cannot be loaded."""
    importlib.import_module("torch")  # ImportError without torch
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError("torchvision is not installed (pip install -e '.[test]')")
    try:
        return importlib.import_module(MODULE), "import"
    except Exception as e:  # noqa: BLE001 - RuntimeError from its operators, or OSError
        first = f"{type(e).__name__}: {e}"
    try:
        return _from_package_folders(), "package folders"
    except Exception as e:  # noqa: BLE001 - reported with the first failure
        raise ImportError(
            f"torchvision's AlexNet cannot be loaded: import failed "
            f"({first}), and from its folders ({type(e).__name__}: {e})"
        ) from None
