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

``safetensors`` is imported here only, inside the functions that read or write the
format (``pip install -e '.[interop]'``). The file is written atomically
(``data.files.atomic_path``).
"""

import json

import numpy

from refnet.arch import ARCHS, param_shapes
from refnet.data.files import atomic_path
from refnet.network import build_network
from refnet.options import NetOptions

OPTIONS_KEY = "refnet.options"


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            "safetensors files need the safetensors package: pip install -e '.[interop]'"
        ) from None
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
    return network_from_tensors(path, tensors, options or stored, changes)


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


def network_from_tensors(path, tensors, options=None, changes=None):
    """The network ``tensors`` ({name: array}, read from ``path``) are the state_dict of:
    built from ``options``, else from the arch their names and shapes match
    (``match_options``), with ``changes``, and loaded."""
    changes = changes or {}
    if options is None:
        try:
            options = match_options(tensors)
        except ValueError as e:
            raise ValueError(f"{path} holds no refnet options and {e}") from None
    net = build_network(options.replace(**changes) if changes else options)
    net.load_state_dict(tensors)
    return net
