"""A network's weights as a safetensors file: no pickle, readable by PyTorch as is.

    save_safetensors(net, "alexnet.safetensors")
    net = load_safetensors("alexnet.safetensors")             # options from the metadata
    net = load_safetensors(path, backend="cupy")              # the same, on GPUs

The file holds the network's ``state_dict`` (PyTorch's parameter names, the grouped
single-device shapes, C-contiguous, the net's dtype) and, in its string metadata,
``"refnet.options"``: the network's options (``NetOptions.to_dict()``) as JSON, and
``"format"``: ``"pt"``, so ``safetensors.torch.load_file`` gives PyTorch users a dict of
tensors they can load into a model of the same shapes. A file written elsewhere (no refnet
options) loads into a network whose options are given: ``load_safetensors(path,
options=NetOptions(...))``; names and shapes are then checked by ``load_state_dict``.

A file without refnet's options (a safetensors file written elsewhere, or a PyTorch
``.pth`` read by ``verify.pth``, which needs torch) loads into the arch whose parameter
names and shapes it matches (``match_options``: e.g. torchvision's AlexNet state_dict is
``owt``, fc8's width giving the classes), or into ``options`` when given
(``network_from_tensors``).

Every weights file is checked before a network is built from it (``check_tensors``):
parameters must be floating-point arrays (an integer, boolean or complex tensor is refused
with its dtype named, never cast) with finite values. A file that cannot be used raises
``WeightsError`` (a ``UserError``: a command ends with one line naming the file, exit 2).

``safetensors`` is imported here only, inside the functions that read or write the
format (``pip install -e '.[interop]'``). The file is written atomically
(``data.files.atomic_path``), with the permissions of any other new file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy

from refnet.arch import ARCHS, param_shapes
from refnet.data.cli import UserError
from refnet.data.files import atomic_path
from refnet.network import AlexNet, build_network
from refnet.options import NetOptions

OPTIONS_KEY = "refnet.options"


class WeightsError(UserError):
    """A weights file (safetensors, ``.pth``) or checkpoint whose parameters cannot be
    used; the message is one line naming the file."""


def check_tensors(path: str | os.PathLike[str], tensors: Mapping[str, Any]) -> None:
    """Refuse parameters no network can hold: ``WeightsError`` naming ``path`` and the
    first offending name, for an array that is not floating-point (its dtype named:
    integers, booleans and complex numbers are never cast) or holds NaN or Inf."""
    for name, value in tensors.items():
        dtype = getattr(value, "dtype", None)
        if dtype is None or numpy.dtype(dtype).kind != "f":
            what = type(value).__name__ if dtype is None else f"dtype {numpy.dtype(dtype)}"
            raise WeightsError(
                f"{path}: parameter {name!r} has {what}; weights must be floating-point "
                "(float16, float32 or float64)"
            )
    for name, value in tensors.items():
        if not numpy.all(numpy.isfinite(value)):
            raise WeightsError(f"{path}: parameter {name!r} has non-finite values (NaN or Inf)")


def _safetensors_numpy() -> ModuleType:
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            "safetensors files need the safetensors package: pip install -e '.[interop]'"
        ) from None
    return safetensors.numpy


def save_safetensors(net: AlexNet, path: str | Path) -> str | Path:
    """Write ``net``'s parameters and options to ``path`` (module doc)."""
    st = _safetensors_numpy()
    tensors = {name: numpy.ascontiguousarray(a) for name, a in net.state_dict().items()}
    metadata = {"format": "pt", OPTIONS_KEY: json.dumps(net.options.to_dict())}
    with atomic_path(path) as tmp:
        st.save_file(tensors, tmp, metadata=metadata)
    return path


def read_safetensors(path: str | Path) -> tuple[dict[str, numpy.ndarray], NetOptions | None]:
    """``(tensors, options)``: the file's arrays and the refnet options in its metadata
    (None for a file written elsewhere)."""
    st = _safetensors_numpy()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = st.load_file(str(path))
    except Exception as e:  # noqa: BLE001 - OSError, or safetensors' own SafetensorError
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    text = metadata.get(OPTIONS_KEY)
    if text is None:
        return tensors, None
    try:
        return tensors, NetOptions.from_dict(json.loads(text))
    except json.JSONDecodeError as e:
        raise WeightsError(
            f"{path}: the metadata key {OPTIONS_KEY!r} is not JSON ({e.msg} at character {e.pos})"
        ) from None
    except (ValueError, TypeError, KeyError) as e:
        raise WeightsError(
            f"{path}: the metadata key {OPTIONS_KEY!r} holds bad options: {e}"
        ) from None


def load_safetensors(
    path: str | Path, options: NetOptions | None = None, **changes: Any
) -> AlexNet:
    """The network stored in ``path``: built from ``options``, else the file's options,
    else the arch its names and shapes match (``match_options``), with ``changes`` (e.g.
    ``backend="cupy"``), and its parameters loaded (names and shapes checked, values cast
    to the net's dtype)."""
    tensors, stored = read_safetensors(path)
    return network_from_tensors(path, tensors, options or stored, changes)


def match_options(tensors: Mapping[str, Any]) -> NetOptions:
    """The ``NetOptions`` of the arch whose parameter names and shapes are exactly those
    of ``tensors`` ({name: array}), at any of its column counts, with fc8's (or the gap
    head's) width as the classes; ``ValueError`` when no arch or more than one fits."""
    shapes = {name: tuple(numpy.shape(a)) for name, a in tensors.items()}
    found = []
    for spec in ARCHS.values():
        for head in ("fc", "gap"):
            last = f"{spec.param_prefix('fc8' if head == 'fc' else 'head')}.bias"
            if last not in shapes or len(shapes[last]) != 1:
                continue
            for columns in spec.columns:
                try:
                    want = param_shapes(
                        spec, columns=columns, num_classes=shapes[last][0], head=head
                    )
                except ValueError:
                    continue
                if want == shapes:
                    found.append(
                        NetOptions(
                            arch=spec.name, columns=columns, head=head, num_classes=shapes[last][0]
                        )
                    )
    if len(found) != 1:
        names = sorted(shapes)[:4]
        what = "no arch" if not found else f"{len(found)} archs"
        raise ValueError(
            f"{what} of {sorted(ARCHS)} has exactly these parameters "
            f"({len(shapes)} names: {names}...); pass options=NetOptions(...)"
        )
    return found[0]


def network_from_tensors(
    path: str | os.PathLike[str],
    tensors: dict[str, Any],
    options: NetOptions | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AlexNet:
    """The network ``tensors`` ({name: array}, read from ``path``) are the state_dict of:
    built from ``options``, else from the arch their names and shapes match
    (``match_options``), with ``changes``, and loaded."""
    changes = changes or {}
    check_tensors(path, tensors)
    if options is None:
        try:
            options = match_options(tensors)
        except ValueError as e:
            raise WeightsError(f"{path} holds no refnet options and {e}") from None
    net = build_network(options.replace(**changes) if changes else options)
    try:
        net.load_state_dict(tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"{path}: {e}") from None
    return net
