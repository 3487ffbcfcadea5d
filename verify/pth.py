"""PyTorch's ``.pth`` weight files, read without unpickling anything but tensors.

    tensors = read_pth("alexnet-owt.pth")          # {name: NumPy array}
    net = load_pth("alexnet-owt.pth")              # torchvision's state_dict -> arch owt

A file that ``torch.save(model.state_dict(), path)`` wrote is a pickle, which can run
code when unpickled; it is read only by ``torch.load(path, weights_only=True)``,
PyTorch's restricted unpickler (tensors, dicts, lists, numbers and strings; anything else
is refused before it is built), and it must then hold a dict of tensors, nothing else.
Plain ``torch.load`` is never called. This lives beside verify's other torch code, not in
the library, which imports no framework (``pip install -e '.[verify]'``); the network
is built and loaded by ``refnet.weights.network_from_tensors``.
"""

from __future__ import annotations

import os
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy

from refnet.options import NetOptions
from refnet.weights import WeightsError, check_tensors, network_from_tensors

if TYPE_CHECKING:
    from refnet.network import AlexNet

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
# the restricted unpickler's reason: the first non-empty text after its label
_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\. |\.?$)", re.MULTILINE)


def _torch() -> ModuleType:
    try:
        import torch
    except ImportError:
        raise ImportError(
            ".pth files are PyTorch's format and need torch to be read "
            "safely (torch.load with weights_only=True): pip install torch, "
            "or convert the file to safetensors where torch is installed"
        ) from None
    return torch


def read_pth(path: str | os.PathLike[str]) -> dict[str, numpy.ndarray]:
    """``{name: NumPy array}`` from a PyTorch file holding a state_dict (module doc).

    ``refnet.weights.WeightsError`` (a ``ValueError``) naming the file for one that
    ``torch.load(weights_only=True)`` refuses (an object other than tensors and
    containers: a whole pickled model, say; the message says what, ``refusal``), that
    holds anything but a dict of tensors (a training checkpoint that nests the
    state_dict beside other entries: save its ``["state_dict"]`` alone), or whose tensors
    are not floating-point or not finite (``check_tensors``). Tensors come to the host;
    float16 and bfloat16 become float32 (NumPy has no bfloat16)."""
    torch = _torch()
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - OSError, or pickle's UnpicklingError
        raise WeightsError(f"{path}: {refusal(e)}") from None
    if not isinstance(obj, dict):
        raise WeightsError(
            f"{path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)"
        )
    bad = {
        str(k): type(v).__name__
        for k, v in obj.items()
        if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    }
    if bad:
        raise WeightsError(
            f"{path} is not a state_dict: entries that are not tensors: {bad} "
            "(a checkpoint with a nested state_dict: save that dict alone)"
        )
    out = {}
    for name, t in obj.items():
        t = t.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        out[name] = numpy.array(t.numpy())  # a copy, NumPy's own memory
    check_tensors(path, out)
    return out


def refusal(error: BaseException) -> str:
    """What ``torch.load(weights_only=True)``'s ``error`` rejected, in one line without
    terminal codes: the class of a pickled object (a whole model), or the restricted
    unpickler's own reason, or the first line of any other error. Torch's advice to load
    with ``weights_only=False`` (which runs the file's code) is never repeated."""
    text = _ANSI.sub("", str(error))
    found = _GLOBAL.search(text)
    if found:
        return (
            f"holds a pickled {found.group(1)} object, which a weights-only load refuses "
            "(a whole model saved with torch.save(model)?); save model.state_dict() instead"
        )
    found = _UNPICKLER.search(text)
    if found:
        return f"refused by the weights-only load: {found.group(1).strip()}"
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and "weights_only" not in line and "trust" not in line
    ]
    reason = lines[0] if lines else ""
    return f"not readable as a PyTorch weights file ({type(error).__name__}" + (
        f": {reason})" if reason else ")"
    )


def load_pth(
    path: str | os.PathLike[str], options: NetOptions | None = None, **changes: Any
) -> AlexNet:
    """The network whose state_dict ``path`` holds (``read_pth``): built from
    ``options``, else from the arch its names and shapes match (``match_options``:
    torchvision's AlexNet is ``owt``), with ``changes``, and loaded."""
    return network_from_tensors(path, read_pth(path), options, changes)
