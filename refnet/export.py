"""``python -m refnet.export``: the network as an ONNX graph, from refnet's own weights.

    python -m refnet.export --checkpoint RUN_DIR --onnx alexnet.onnx   # best.h5, else the newest
    python -m refnet.export --checkpoint CKPT --onnx net.onnx --outputs conv1,lrn1,pool5

    model = onnx_model(net, outputs=("conv1", "relu1"))   # an onnx.ModelProto, in memory
    to_onnx(net, "alexnet.onnx")                          # written atomically

The graph is written node by node with onnx's helper API (``onnx.helper.make_node``, ...,
``onnx.numpy_helper.from_array``) from ``net.state_dict()``: no other framework is
involved. It follows ``net.layers`` in the grouped single-device form (every map NCHW,
both columns' channels side by side), each layer kind writing its own nodes (its ``onnx``
method: Conv, Relu, LRN, MaxPool, Flatten, Gemm, ...; the table in docs/interop.md), and
each layer's result is the tensor named after the layer, so ``outputs=`` can expose any
of them for a comparison with ``net.features(x, upto=NAME, maps=True)``. The input is
``input`` (N, 3, S, S), N symbolic, in the net's dtype (float32 or float64); the outputs
are ``logits`` (N, K) and ``probabilities`` = Softmax(logits, axis=1).

LRN: refnet's b = a / (k + alpha * sum_{window} a^2)^beta is ONNX's
y = x / (bias + (alpha / size) * square_sum)^beta with ``alpha = refnet's alpha * size``
and ``bias = k``, one LRN per column (Split, LRN, Concat) with ``lrn_mode="column"``.
ONNX stores these attributes as float32, and ONNX Runtime has no float64 LRN kernel
(a float64 export is for onnx's reference evaluator): docs/conventions.md, "ONNX".

The model's ``metadata_props`` hold ``refnet.options`` (``net.options.to_dict()`` as JSON)
and ``refnet.version``. ``onnx`` is imported only inside the functions that use it
(``pip install -e '.[interop]'``).

Exit status: 0 written, 2 for a bad option, a checkpoint that cannot be used, an output
path that cannot be written or onnx not installed (one line says which), 130 when
interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy

from refnet.data.cli import Parser, UserError, exit_status, new_file, run_command
from refnet.data.files import atomic_path
from refnet.evaluate import add_network_arguments, load_network
from refnet.layers.backend import DTypeLike
from refnet.nodes import Input
from refnet.nodes.lrn import onnx_attributes

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

    from refnet.network import AlexNet

OPSET = 17  # every operator used here is unchanged in opsets 13-17
OPTIONS_KEY = "refnet.options"
VERSION_KEY = "refnet.version"


def _onnx() -> ModuleType:
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError:
        raise ImportError(
            "ONNX export needs the onnx package: pip install -e '.[interop]'"
        ) from None
    return onnx


def refnet_version() -> str:
    """The installed refnet's version ("unknown" when it runs from a bare checkout)."""
    from importlib import metadata

    try:
        return metadata.version("refnet")
    except metadata.PackageNotFoundError:
        return "unknown"


def output_names(net: AlexNet) -> list[str]:
    """The names ``outputs=`` accepts: every layer of ``net.layers`` after the input."""
    return [layer.name for layer in net.layers if not isinstance(layer, Input)]


def lrn_attributes(params: Mapping[str, float]) -> dict[str, float]:
    """ONNX LRN's attributes for refnet's ``{size, alpha, beta, k}`` (module doc)."""
    return onnx_attributes(params)


def lrn_groups(net: AlexNet) -> int:
    """Channel groups each normalised on their own: the columns with ``lrn_mode="column"``,
    one group with ``"all"`` (Caffe's LRN across the column boundary) or one column."""
    return net.columns if net.lrn_mode == "column" else 1


def dropout_scale(net: AlexNet) -> float | None:
    """The test-time factor of dropout: 1 - p in the paper's mode, None (identity) else."""
    return 1.0 - net.dropout if net.dropout_mode == "paper" else None


class _Graph:
    """The nodes and initializers of the graph being built, as each layer's ``onnx``
    method asks for them; ``last`` is the newest tensor, named after the layer that made
    it; ``sd`` the weights (``net.state_dict()``)."""

    def __init__(
        self, onnx: ModuleType, dtype: numpy.dtype, sd: Mapping[str, numpy.ndarray]
    ) -> None:
        self.onnx, self.dtype, self.sd = onnx, dtype, sd
        self.nodes: list[NodeProto] = []
        self.weights: list[TensorProto] = []
        self.last = "input"

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: object) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attrs))
        self.last = output
        return output

    def split(self, source: str, outputs: Sequence[str], name: str, axis: int) -> None:
        """A Split of ``source`` into equal parts ``outputs`` along ``axis``."""
        self.nodes.append(
            self.onnx.helper.make_node("Split", [source], list(outputs), name=name, axis=axis)
        )

    def weight(self, name: str, array: numpy.ndarray) -> str:
        self.weights.append(
            self.onnx.numpy_helper.from_array(
                numpy.ascontiguousarray(array, dtype=self.dtype), name
            )
        )
        return name

    def param(self, key: str) -> str:
        """The initializer of parameter ``key`` of the net."""
        return self.weight(key, self.sd[key])

    def constant(self, name: str, value: float) -> str:
        """A scalar initializer."""
        return self.weight(name, numpy.asarray(value))


def onnx_model(
    net: AlexNet, outputs: str | Iterable[str] = (), dtype: DTypeLike | None = None
) -> ModelProto:
    """The ``onnx.ModelProto`` of ``net`` (module doc), checked by ``onnx.checker``.

    ``outputs``: names of layers (``output_names(net)``) whose results become graph
    outputs too, after "logits" and "probabilities". ``dtype``: "float32" or "float64"
    (default the net's); the weights are cast to it. ``RuntimeError`` when the net's
    parameters are not set; ``ValueError`` for an unknown output name or dtype.
    """
    onnx = _onnx()
    helper = onnx.helper
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    known = output_names(net)
    unknown = [n for n in outputs if n not in known]
    if unknown:
        raise ValueError(
            f"export: outputs {unknown} are not layers of the network; choose from {known}"
        )
    dtype = numpy.dtype(net.dtype if dtype is None else dtype)
    if dtype.name not in ("float32", "float64"):
        raise ValueError(f"export: dtype must be float32 or float64, got {dtype.name!r}")
    sd = net.state_dict()
    g = _Graph(onnx, dtype, sd)
    s = net.spec.input_size
    shape: tuple[int, ...] = (3, s, s)  # per image, the grouped form
    for layer in net.layers:
        layer.onnx(g, shape)
        shape = layer.output_shape(shape)
    g.node("Identity", [g.last], "logits")
    g.node("Softmax", ["logits"], "probabilities", axis=1)

    elem = helper.np_dtype_to_tensor_dtype(dtype)
    s = net.spec.input_size
    graph = helper.make_graph(
        g.nodes,
        f"refnet-{net.spec.name}",
        [helper.make_tensor_value_info("input", elem, ["N", 3, s, s])],
        [
            helper.make_tensor_value_info(n, elem, ["N", net.num_classes])
            for n in ("logits", "probabilities")
        ],
        initializer=g.weights,
        doc_string="refnet's network (refnet.export): NCHW images, mean-subtracted, "
        "to logits and softmax probabilities",
    )
    opset = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(
        graph,
        opset_imports=opset,
        producer_name="refnet",
        producer_version=refnet_version(),
        ir_version=helper.find_min_ir_version_for(opset),
    )
    helper.set_model_props(
        model, {OPTIONS_KEY: json.dumps(net.options.to_dict()), VERSION_KEY: refnet_version()}
    )
    if outputs:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        types = {v.name: v for v in inferred.graph.value_info}
        model.graph.output.extend(types[n] for n in dict.fromkeys(outputs))
    onnx.checker.check_model(model)
    return model


def to_onnx(
    net: AlexNet,
    path: str | Path,
    outputs: str | Iterable[str] = (),
    dtype: DTypeLike | None = None,
) -> str | Path:
    """Write ``onnx_model(net, outputs, dtype)`` to ``path`` atomically; returns ``path``."""
    onnx = _onnx()
    model = onnx_model(net, outputs=outputs, dtype=dtype)
    with atomic_path(path) as tmp:
        onnx.save_model(model, tmp)
    return path


# -- the command line -------------------------------------------------------------------


def name_list(text: str) -> list[str]:
    """An ``argparse`` type: comma-separated names (checked against the net later)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names, got {text!r}")
    return names


EXIT_CODES = {
    0: "written",
    2: "a bad option value, a checkpoint that cannot be used, an output path "
    "that cannot be written, or onnx not installed (pip install -e "
    "'.[interop]'); one line says which",
}


def build_parser() -> Parser:
    p = Parser(
        prog="python -m refnet.export",
        exit_codes=EXIT_CODES,
        description="Write a checkpoint's network as an ONNX model: NCHW images in, "
        "logits and softmax probabilities out, and any named layer's result "
        "as an extra output.",
    )
    add_network_arguments(p)
    p.add_argument(
        "--onnx",
        required=True,
        metavar="OUT",
        type=new_file,
        help="the .onnx file to write (atomically; required)",
    )
    p.add_argument(
        "--outputs",
        type=name_list,
        default=[],
        metavar="NAMES",
        help="comma-separated layer names (conv1,relu1,lrn1,pool1,...,fc8) "
        "whose results become graph outputs too (default none)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="the graph's float type (default: the checkpoint's; ONNX "
        "Runtime runs float32 only, having no float64 LRN)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        net, _cfg, _state = load_network(args.checkpoint, args.device)
        try:
            to_onnx(net, args.onnx, outputs=args.outputs, dtype=args.dtype)
        except (ValueError, ImportError, OSError) as e:  # an output or dtype refused
            raise UserError(str(e)) from None
        size = os.path.getsize(args.onnx) / 2**20
        extra = f", outputs {','.join(args.outputs)}" if args.outputs else ""
        print(
            f"wrote {args.onnx} ({size:.1f} MiB, {net.spec.name}, opset {OPSET}, "
            f"{args.dtype or net.dtype.name}{extra})"
        )

    return exit_status("refnet.export", body)


if __name__ == "__main__":
    sys.exit(run_command(main, "refnet.export"))
