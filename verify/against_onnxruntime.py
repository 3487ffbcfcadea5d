"""refnet's network against its ONNX export (``refnet.export``), layer by layer, forward.

    from refnet.verify import against_onnxruntime as ort_part
    ort_part.available()            # None, or why it cannot run ("onnxruntime not installed")
    rows = ort_part.run("float32", seed=0)

The network is exported with every layer's result as an extra graph output, run on the
same images, and each output compared with refnet's ``net.features(x, upto=NAME,
maps=True)`` (maps in NCHW, the columns side by side), then the logits and softmax
probabilities with ``net.forward`` and ``net.predict_proba``. ONNX has no backward, so
this is forward only, in eval mode.

Runtimes: float32 runs on ONNX Runtime's CPU provider; float64 (no LRN kernel there) on
onnx's reference evaluator (``onnx.reference``, NumPy) with its LRN replaced by
``spec_lrn``, written from the operator's spec (the stock one of onnx 1.23 normalises only
the first N channels: docs/conventions.md, "ONNX"). The case names say which runtime ran.

Networks: ``small`` (``tiny`` and ``demo``, batch 3, and on ``tiny`` every option that
changes the graph: one column, no LRN, Caffe's all-channel LRN, pooling 2/2, inverted
dropout, the "gap" head, the NCHW layout) and ``paper`` (``alexnet`` at 227, batch 2).
Weights N(0, 1/fan_in), biases N(0, 0.1), LRN with alpha 0.02 (and the paper's other
values) so that LRN changes the maps by a few percent and a wrong alpha, k or window is
seen; dropout 0.3, so the test-time factor is not 1/2.

Tolerances (``verify.compare.tolerance``): each layer's row, a prefix of the network, at
the layer tolerance; the logits and probabilities at the network's (measured figures in
docs/conventions.md). ONNX's LRN attributes are float32: alpha is chosen so that alpha *
size is a float32 number; with the paper's alpha the float64 difference is an INFO row
(``float32_attributes_row``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy
from numpy.typing import DTypeLike

from refnet import NetOptions, build_network
from refnet.verify.compare import Row, info, judged, tolerance

if TYPE_CHECKING:
    from refnet.network import AlexNet

NAME = "onnxruntime"
PART = "onnxruntime"
SIZES = {"small": (("tiny", 3), ("demo", 3)), "paper": (("alexnet", 2),)}
BASE = dict(lrn_alpha=0.025, dropout=0.3)  # every term of LRN and dropout matters
VARIANTS: dict[str, dict[str, Any]] = {
    "columns=1": dict(columns=1),
    "lrn=False": dict(lrn=False),
    "lrn_mode=all": dict(lrn_mode="all"),
    "pool=(2,2)": dict(pool=(2, 2)),
    "dropout_mode=inverted": dict(dropout_mode="inverted"),
    "head=gap": dict(head="gap"),
    "layout=NCHW": dict(layout="NCHW"),
    "pool=(2,2) ceil": dict(pool=(2, 2), pool_rounding="ceil"),
}


def available() -> str | None:
    """None when onnx and onnxruntime import, else the reason this part cannot run."""
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            return f"{name} not installed (pip install -e '.[interop]')"
    return None


def random_weights(
    shapes: Mapping[str, tuple[int, ...]], rng: numpy.random.Generator, dtype: DTypeLike
) -> dict[str, numpy.ndarray]:
    """{name: array}: weights N(0, 1/fan_in), biases N(0, 0.1) (as ``verify.network``'s,
    which cannot be imported without torch)."""
    out = {}
    for name, shape in shapes.items():
        fan_in = int(numpy.prod(shape[1:]))
        scale = 1 / numpy.sqrt(fan_in) if name.endswith(".weight") else 0.1
        out[name] = (scale * rng.standard_normal(shape)).astype(dtype)
    return out


def spec_lrn() -> type[Any]:
    """onnx's reference-evaluator op class for LRN as its spec defines it (module doc):
    y = x / (bias + alpha / size * square_sum)^beta, square_sum over channels
    c - floor((size-1)/2) .. c + ceil((size-1)/2), clipped at the edges."""
    from onnx.reference.op_run import OpRun

    class LRN(OpRun):
        op_domain = ""

        def _run(
            self,
            x: numpy.ndarray,
            alpha: Any = None,
            beta: Any = None,
            bias: Any = None,
            size: Any = None,
        ) -> tuple[numpy.ndarray]:
            C = x.shape[1]  # x (N, C, ...)
            # the attributes are float32 scalars; the spec computes in x's type
            alpha, beta, bias = (x.dtype.type(v) for v in (alpha, beta, bias))
            before, after = (size - 1) // 2, size // 2  # floor and ceil of (size-1)/2
            squares = x * x
            square_sum = numpy.zeros_like(x)
            for c in range(C):
                square_sum[:, c] = squares[:, max(0, c - before) : min(C, c + after + 1)].sum(1)
            return ((x / (bias + (alpha / size) * square_sum) ** beta).astype(x.dtype),)

    return LRN


def run_model(model: Any, x: numpy.ndarray) -> dict[str, numpy.ndarray]:
    """``{output name: array}`` of the ONNX ``model`` on images ``x`` (N, 3, S, S): ONNX
    Runtime's CPU provider for float32, onnx's reference evaluator (with ``spec_lrn``)
    for float64."""
    names = [o.name for o in model.graph.output]
    if x.dtype == numpy.float32:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        outs = session.run(names, {"input": x})
    else:
        from onnx.reference import ReferenceEvaluator

        outs = ReferenceEvaluator(model, new_ops=[spec_lrn()]).run(names, {"input": x})
    return dict(zip(names, outs, strict=True))


def runtime_name(dtype: DTypeLike) -> str:
    return "onnxruntime" if numpy.dtype(dtype) == numpy.float32 else "reference evaluator"


def make_net(arch: str, dtype: DTypeLike, rng: numpy.random.Generator, **changes: Any) -> AlexNet:
    """A refnet network of ``arch`` with ``BASE`` and ``changes``, random weights."""
    from refnet.verify.network import NET_DEFAULTS  # python -m refnet.verify --engine

    net = build_network(
        NetOptions(arch=arch, dtype=numpy.dtype(dtype).name, **{**NET_DEFAULTS, **BASE, **changes})
    )
    net.load_state_dict(random_weights(net.shapes, rng, dtype))
    return net


def compare(case: str, net: AlexNet, x: numpy.ndarray) -> list[Row]:
    """Rows for every layer's output, the logits and the probabilities of ``net`` on
    ``x`` against its ONNX export run by ``run_model``."""
    from refnet.export import onnx_model, output_names

    names = output_names(net)
    got = run_model(onnx_model(net, outputs=names), x)
    layer_tol, net_tol = tolerance(x.dtype, "layer"), tolerance(x.dtype, "network")
    rows = [
        judged(
            PART,
            case,
            name,
            got[name],
            numpy.asarray(net.features(x, upto=name, maps=True)),
            layer_tol,
        )
        for name in names
    ]
    rows.append(judged(PART, case, "logits", got["logits"], net.forward(x), net_tol))
    rows.append(
        judged(PART, case, "probabilities", got["probabilities"], net.predict_proba(x), net_tol)
    )
    return rows


def run(dtype: DTypeLike, seed: int, sizes: Sequence[str] = ("small", "paper")) -> list[Row]:
    """Report rows for the networks of ``sizes`` (module doc), drawn from ``seed``."""
    dtype = numpy.dtype(dtype)
    cases: list[tuple[str, int, dict[str, Any]]] = [
        (arch, n, {}) for size in sizes for arch, n in SIZES[size]
    ]
    if "small" in sizes:
        cases += [("tiny", 3, changes) for changes in VARIANTS.values()]
    rows = []
    for k, (arch, n, changes) in enumerate(cases):
        rng = numpy.random.default_rng([seed, k])
        net = make_net(arch, dtype, rng, **changes)
        s = net.spec.input_size
        x = rng.standard_normal((n, 3, s, s)).astype(dtype)
        label = " ".join([arch, f"b{n}"] + [f"{key}={v}" for key, v in changes.items()])
        rows += compare(f"{label} {runtime_name(dtype)}", net, x)
    if "small" in sizes and dtype == numpy.float64:
        rows.append(float32_attributes_row(seed))
    return rows


def steps(
    dtype: DTypeLike,
    seed: int,
    *,
    parts: Sequence[str] = ("network",),
    sizes: Sequence[str] = ("small", "paper"),
) -> list[tuple[str, Callable[..., list[Row]]]]:
    """[(label, thunk returning report rows)], one per network size (ONNX has no
    backward and no layer cases of its own: its rows are the network's layer outputs,
    so it runs with the network part)."""
    if "network" not in parts:
        return []
    return [
        (f"onnxruntime network:{size}", lambda size=size: run(dtype, seed, (size,)))
        for size in sizes
    ]


def float32_attributes_row(seed: int) -> Row:
    """An INFO row: ONNX stores LRN's alpha, beta and bias as float32 attributes, so the
    paper's alpha (1e-4, 5e-4 once times size, not a float32 number) moves a float64
    export's LRN output by a few 1e-11 relative, past the layer tolerance (the runs above
    use alpha 0.025, whose alpha * size = 1/8 is exact)."""
    from refnet.export import onnx_model

    rng = numpy.random.default_rng([seed, 99])
    net = make_net("tiny", numpy.float64, rng, lrn_alpha=1e-4)
    x = rng.standard_normal((3, 3, 45, 45))
    got = run_model(onnx_model(net, outputs=["lrn1"]), x)["lrn1"]
    return info(
        PART,
        "tiny b3 lrn_alpha=1e-4 reference evaluator",
        "lrn1",
        got,
        numpy.asarray(net.features(x, upto="lrn1", maps=True)),
        note="ONNX's float32 LRN attributes; no bound",
    )
