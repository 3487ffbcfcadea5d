"""A network's weights as a safetensors file: no pickle, readable by PyTorch as is; and
PyTorch's own ``.pth`` files, read without unpickling anything but tensors.

    save_safetensors(net, "alexnet.safetensors")
    net = load_safetensors("alexnet.safetensors")             # options from the metadata
    net = load_safetensors(path, backend="cupy")              # the same, on GPUs
    net = load_pth("alexnet-owt.pth")                         # torchvision's state_dict

The file holds the network's ``state_dict`` (PyTorch's parameter names, the grouped
single-device shapes, C-contiguous, the net's dtype) and, in its string metadata,
``"refnet.options"``: the network's options (``NetOptions.to_dict()``) as JSON, and
``"format"``: ``"pt"``, so ``safetensors.torch.load_file`` gives PyTorch users a dict of
tensors they can load into a model of the same shapes. A file written elsewhere (no refnet
options) loads into a network whose options are given: ``load_safetensors(path,
options=NetOptions(...))``; names and shapes are then checked by ``load_state_dict``.

A file without refnet's options (a ``.pth``, or a safetensors file written elsewhere)
loads into the arch whose parameter names and shapes it matches (``match_options``: e.g.
torchvision's AlexNet state_dict is ``owt``, fc8's width giving the classes), or into
``options`` when given.

``.pth``: a file that ``torch.save(model.state_dict(), path)`` wrote is a pickle, which
can run code when unpickled; it is read only by ``torch.load(path, weights_only=True)``,
PyTorch's restricted unpickler (tensors, dicts, lists, numbers and strings; anything else
is refused before it is built), and it must then hold a dict of tensors, nothing else.
Plain ``torch.load`` is never called. torch is needed for this format only.

``safetensors`` and ``torch`` are imported here only, inside the functions that read or
write their formats (``pip install -e '.[interop]'``; torch: ``'.[verify]'``). The file is
written atomically (``data.files.atomic_path``).
"""

import json

import numpy

from data.files import atomic_path
from refnet.arch import ARCHS, param_shapes
from refnet.network import build_network
from refnet.options import NetOptions

OPTIONS_KEY = "refnet.options"


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: "
                          "pip install -e '.[interop]'") from None
    return safetensors.numpy


def save_safetensors(net, path):
    """Write ``net``'s parameters and options to ``path`` (module doc)."""
    st = _safetensors_numpy()
    tensors = {name: numpy.ascontiguousarray(a) for name, a in net.state_dict().items()}
    metadata = {"format": "pt", OPTIONS_KEY: json.dumps(net.options.to_dict())}
    with atomic_path(path) as tmp:
        st.save_file(tensors, tmp, metadata=metadata)
    return path


def read_safetensors(path):
    """``(tensors, options)``: the file's arrays and the refnet options in its metadata
    (None for a file written elsewhere)."""
    st = _safetensors_numpy()
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = st.load_file(str(path))
    except Exception as e:  # noqa: BLE001 - OSError, or safetensors' own SafetensorError
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    text = metadata.get(OPTIONS_KEY)
    return tensors, None if text is None else NetOptions.from_dict(json.loads(text))


def load_safetensors(path, options=None, **changes):
    """The network stored in ``path``: built from ``options``, else the file's options,
    else the arch its names and shapes match (``match_options``), with ``changes`` (e.g.
    ``backend="cupy"``), and its parameters loaded (names and shapes checked, values cast
    to the net's dtype)."""
    tensors, stored = read_safetensors(path)
    return _loaded(path, tensors, options or stored, changes)


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(".pth files are PyTorch's format and need torch to be read "
                          "safely (torch.load with weights_only=True): pip install torch, "
                          "or convert the file to safetensors where torch is installed") \
            from None
    return torch


def read_pth(path):
    """``{name: NumPy array}`` from a PyTorch file holding a state_dict (module doc).

    ``ValueError`` naming the file for one that ``torch.load(weights_only=True)``
    refuses (an object other than tensors and containers: a whole pickled model, say) or
    that holds anything but a dict of tensors (a training checkpoint that nests the
    state_dict beside other entries: save its ``["state_dict"]`` alone). Tensors come to
    the host; float16 and bfloat16 become float32 (NumPy has no bfloat16)."""
    torch = _torch()
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - OSError, or pickle's UnpicklingError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not readable as weights only by torch.load(weights_only="
                         f"True) ({type(e).__name__}: {first})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict (a dict "
                         "of tensors)")
    bad = {str(k): type(v).__name__ for k, v in obj.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)}
    if bad:
        raise ValueError(f"{path} is not a state_dict: entries that are not tensors: {bad} "
                         "(a checkpoint with a nested state_dict: save that dict alone)")
    out = {}
    for name, t in obj.items():
        t = t.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        out[name] = numpy.array(t.numpy())                 # a copy, NumPy's own memory
    return out


def load_pth(path, options=None, **changes):
    """The network whose state_dict ``path`` holds (``read_pth``): built from
    ``options``, else from the arch its names and shapes match (``match_options``:
    torchvision's AlexNet is ``owt``), with ``changes``, and loaded."""
    return _loaded(path, read_pth(path), options, changes)


def match_options(tensors):
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
                    want = param_shapes(spec, columns=columns, num_classes=shapes[last][0],
                                        head=head)
                except ValueError:
                    continue
                if want == shapes:
                    found.append(NetOptions(arch=spec.name, columns=columns, head=head,
                                            num_classes=shapes[last][0]))
    if len(found) != 1:
        names = sorted(shapes)[:4]
        what = "no arch" if not found else f"{len(found)} archs"
        raise ValueError(f"{what} of {sorted(ARCHS)} has exactly these parameters "
                         f"({len(shapes)} names: {names}...); pass options=NetOptions(...)")
    return found[0]


def _loaded(path, tensors, options, changes):
    if options is None:
        try:
            options = match_options(tensors)
        except ValueError as e:
            raise ValueError(f"{path} holds no refnet options and {e}") from None
    net = build_network(options.replace(**changes) if changes else options)
    net.load_state_dict(tensors)
    return net
