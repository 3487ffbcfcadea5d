"""The whole network against its PyTorch twin: logits, loss and every parameter gradient.

For each size (``small``: the ``tiny`` and ``demo`` archs, batch 4; ``paper``: ``alexnet``
at 227x227, batch 2), both modes are compared with the same weights and inputs:

- eval: ``train=False`` (paper dropout multiplies by 1 - p);
- train: ``train=True`` with the SAME dropout keep-masks given to both sides.

Weights are drawn here, not by refnet's init: N(0, 1/fan_in) weights and N(0, 0.1)
biases, so about half of every ReLU is active and every layer shapes the result (the
paper's N(0, 0.01) init shrinks the signal ~100x per layer and leaves the gradients
dominated by the biases). The small size also runs Caffe's all-channel LRN, the
inverted dropout mode, and the global-average-pooling head (``head="gap"``), against
matching twins.

``run(..., make_twin=, part=)`` compares with another framework's network instead
(``verify.jax_network.jax_twin_of``: the same cases, weights and masks; PyTorch is
imported only for its own twin).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy
from numpy.typing import DTypeLike

from refnet import NetOptions, build_network
from refnet.arch import ArchSpec, get_arch
from refnet.verify.compare import Row, judged, tolerance

if TYPE_CHECKING:
    from refnet.network import AlexNet
    from refnet.verify.twin_network import TwinAlexNet

PART = "network"
SIZES = {"small": (("tiny", 4), ("demo", 4)), "paper": (("alexnet", 2),)}


def random_state(
    shapes: Mapping[str, tuple[int, ...]], rng: numpy.random.Generator, dtype: DTypeLike
) -> dict[str, numpy.ndarray]:
    """{name: array}: weights N(0, 1/fan_in), biases N(0, 0.1), for ``{name: shape}``."""
    state = {}
    for name, shape in shapes.items():
        if name.endswith(".weight"):
            fan_in = int(numpy.prod(shape[1:]))
            state[name] = (rng.standard_normal(shape) / numpy.sqrt(fan_in)).astype(dtype)
        else:
            state[name] = (0.1 * rng.standard_normal(shape)).astype(dtype)
    return state


def geometry(arch: str | ArchSpec) -> tuple[tuple[int, int], ...]:
    """(stride, pad) of conv1..conv5 for an arch name (kernels come from the weights)."""
    return tuple((c.stride, c.pad) for c in get_arch(arch).convs)


def dropout_masks(
    net_sd: Mapping[str, numpy.ndarray],
    n: int,
    p: float,
    rng: numpy.random.Generator,
    dtype: DTypeLike,
) -> dict[str, numpy.ndarray]:
    """Keep-masks (1 keep, 0 drop) for fc6 and fc7 outputs, shapes (N, D6) and (N, D7)."""
    return {
        name: (rng.random((n, net_sd[f"{name}.weight"].shape[0])) >= p).astype(dtype)
        for name in ("fc6", "fc7")
        if f"{name}.weight" in net_sd
    }  # none for "gap"


# Options every refnet network of verify is built with besides its own
# (``python -m refnet.verify --engine plain`` sets {"engine": "plain"}).
NET_DEFAULTS: dict[str, object] = {}


def make_pair(
    arch: str,
    dtype: DTypeLike,
    rng: numpy.random.Generator,
    *,
    make_twin: Callable[[NetOptions, dict[str, numpy.ndarray]], Any] | None = None,
    **options: Any,
) -> tuple[AlexNet, Any, dict[str, numpy.ndarray]]:
    """A refnet network with random weights and its twin holding the same weights
    (``make_twin(opts, state)``, default ``twin_of``: PyTorch's)."""
    opts = NetOptions(arch=arch, dtype=numpy.dtype(dtype).name, **{**NET_DEFAULTS, **options})
    net = build_network(opts)
    state = random_state(net.shapes, rng, dtype)
    net.load_state_dict(state)
    return net, (make_twin or twin_of)(opts, state), state


def twin_of(opts: NetOptions, state: Mapping[str, numpy.ndarray]) -> TwinAlexNet:
    """The PyTorch twin of the network ``opts`` (a ``NetOptions``) holding ``state``.
    ``ValueError`` for what the twin does not mirror: the ``owt`` arch's layout
    (torchvision's names, the average pooling, dropout before fc6 and fc7), which is
    checked against torchvision's own class instead (tests/test_owt.py)."""
    spec = opts.spec
    if spec.param_names or spec.avgpool or opts.dropout_placement != "after":
        raise ValueError(
            f"the PyTorch twin mirrors the paper's network, not arch "
            f"{spec.name!r} with dropout_placement="
            f"{opts.dropout_placement!r}"
        )
    from refnet.verify.twin_network import TwinAlexNet  # torch, only for this twin

    p = opts.lrn_params
    return TwinAlexNet(
        state,
        geometry(opts.arch),
        columns=opts.columns,
        lrn=opts.lrn,
        lrn_mode=opts.lrn_mode,
        lrn_params=(p["size"], p["alpha"], p["beta"], p["k"]),
        pool=opts.pool,
        pool_rounding=opts.pool_rounding,
        dropout=opts.dropout,
        dropout_mode=opts.dropout_mode,
        head=opts.head,
    )


def compare_modes(
    case: str,
    net: AlexNet,
    twin: Any,
    state: Mapping[str, numpy.ndarray],
    x: numpy.ndarray,
    labels: numpy.ndarray,
    masks: dict[str, numpy.ndarray],
    tol: float,
    modes: Sequence[str] = ("eval", "train"),
    part: str = PART,
) -> list[Row]:
    """Rows for logits, loss and every parameter gradient in each of ``modes``."""
    rows = []
    for mode in modes:
        train = mode == "train"
        m = masks if train else None
        loss, grads = net.loss_and_grad(x, labels, train=train, masks=m)
        logits = net.forward(x, train=train, masks=m)
        t_loss, t_logits, t_grads = twin.loss_and_grad(x, labels, train=train, masks=m)
        name = f"{case} {mode}"
        rows.append(judged(part, name, "logits", logits, t_logits, tol))
        rows.append(
            judged(part, name, "loss", numpy.asarray(loss, dtype=t_loss.dtype), t_loss, tol)
        )
        for key in state:
            rows.append(judged(part, name, f"d {key}", grads[key], t_grads[key], tol))
    return rows


def run(
    dtype: DTypeLike = "float64",
    seed: int = 0,
    sizes: Sequence[str] = ("small", "paper"),
    make_twin: Callable[[NetOptions, dict[str, numpy.ndarray]], Any] | None = None,
    part: str = PART,
) -> list[Row]:
    """Network comparisons at the given sizes, as report rows: against ``make_twin(opts,
    state)`` (default ``twin_of``, PyTorch's) under the part name ``part``."""
    dtype = numpy.dtype(dtype)
    tol = tolerance(dtype, "network")
    rows = []
    for size in sizes:
        if size not in SIZES:
            raise ValueError(f"network: size must be one of {list(SIZES)}, got {size!r}")
        variants: list[dict[str, Any]] = [{}]
        if size == "small":
            variants += [{"lrn_mode": "all"}, {"dropout_mode": "inverted"}, {"head": "gap"}]
        for i, (arch, n) in enumerate(SIZES[size]):
            for j, options in enumerate(variants):
                if arch == "demo" and options:
                    continue
                rng = numpy.random.default_rng([seed, 100 + 10 * i + j])
                net, twin, state = make_pair(arch, dtype, rng, make_twin=make_twin, **options)
                s = get_arch(arch).input_size
                x = rng.standard_normal((n, 3, s, s)).astype(dtype)
                labels = rng.integers(0, net.num_classes, size=n)
                masks = dropout_masks(state, n, 0.5, rng, dtype)
                label = f"{arch} N={n}" + "".join(f" {k}={v}" for k, v in options.items())
                rows += compare_modes(label, net, twin, state, x, labels, masks, tol, part=part)
                del net, twin, state
    return rows
