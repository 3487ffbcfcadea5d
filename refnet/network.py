"""AlexNet as the paper ran it: two columns, explicit forward and backward, layer by layer.

Axis legend: N batch, C channels of one column, S side of a square map, F features,
K classes.

The network is a list of layer objects (``AlexNet.layers``, ``refnet.nodes``), each
built here with its own settings, run forward in order and backward in reverse, every
layer in every column that has an input:

    input  conv1 relu lrn1 pool1  conv2 relu lrn2 pool2  =exchange=>  conv3 relu
    conv4 relu  conv5 relu pool5  =exchange=>  flatten  fc6 relu dropout  =exchange=>
    fc7 relu dropout  =exchange to column 0=>  fc8  softmax cross-entropy (column 0)

The variants (``head="gap"``, arch ``owt``, ``columns=1``) and the parameters' names
(``conv1.weight``, or the arch's) are in docs/architecture.md.

Every option is a field of ``refnet.options.NetOptions`` (docs/architecture.md);
``AlexNet(**kwargs)`` and ``build_network(options)`` build the same network.
``engine="plain"`` runs each layer's plain form, NCHW, one column after the other, layer
by layer (``refnet.nodes.base.run_plain``); ``"fast"`` (the default) the fast forms with
each column's workspace and threads (``refnet.segments``). What the network returns is
the caller's: gradients, logits and features stay as they are whatever runs next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from refnet import arch as arch_table
from refnet import segments
from refnet.columns import Placement, default_devices
from refnet.conventions import init_scheme as preset_init
from refnet.distributed import Solo
from refnet.layers import layout as layouts
from refnet.layers import softmax
from refnet.layers.backend import Array, DTypeLike, Module, backend_module
from refnet.network_checks import InputChecks
from refnet.nodes import (
    AdaptivePool,
    Column,
    Context,
    Conv,
    Dropout,
    Exchange,
    Flatten,
    Gap,
    Input,
    Layer,
    Linear,
    Lrn,
    Pass,
    Pool,
    Relu,
)
from refnet.nodes.base import run_plain, run_plain_backward
from refnet.nodes.rank_gather import hybrid_layers, hybrid_world
from refnet.options import NetOptions
from refnet.parameters import Parameters
from refnet.readouts import Readouts

__all__ = [
    "AlexNet",
    "build_network",
    "AdaptivePool",
    "Conv",
    "Dropout",
    "Exchange",
    "Flatten",
    "Gap",
    "Input",
    "Linear",
    "Lrn",
    "Pool",
    "Relu",
]


class AlexNet(Readouts, InputChecks, Parameters):
    """The paper's network on NumPy or CuPy, in one or two columns.

    ``AlexNet(arch, dtype, backend, **options)`` takes the fields of
    ``refnet.options.NetOptions`` (``build_network(options)`` takes the object);
    ``self.options`` holds them. ``backend``: ``"numpy"``, ``"cupy"``, or an array
    namespace object (the test suite's device-tagging backend). ``devices``: one device
    index per column; by default CuPy uses devices 0 and 1 with two GPUs, else 0 for
    both (and NumPy the CPU). ``ranks``: the world whose ranks split fc6-fc8 (hybrid
    parallel, ``refnet.nodes.rank_gather``). Parameters are unset until ``init`` or
    ``load_state_dict``: ``forward`` and ``state_dict`` raise ``RuntimeError`` until then.
    Input images are ``spec.input_size`` square (``refnet.arch``). ``conventions``: a name of
    ``refnet.conventions.CONVENTIONS``; the options are then ``NetOptions.preset(name,
    **given)`` (``arch`` None: the preset's arch, else ``"alexnet"``), and ``init``'s
    default scheme is the preset's.
    """

    def __init__(
        self,
        arch: str | arch_table.ArchSpec | None = None,
        dtype: DTypeLike = "float32",
        backend: str | Module = "numpy",
        conventions: str | None = None,
        ranks: Solo | None = None,
        **options: Any,
    ) -> None:
        given = dict(options, dtype=dtype, backend=backend)
        if arch is not None:
            given["arch"] = arch
        if conventions is None:
            opts = NetOptions(**given)
            self.init_scheme = "paper"
        else:
            opts = NetOptions.preset(conventions, **given)
            self.init_scheme = preset_init(conventions)
        self.conventions = conventions
        self.options = opts
        self.spec = opts.spec
        self.dtype = numpy.dtype(opts.dtype)
        self.xp = backend_module(opts.backend) if isinstance(opts.backend, str) else opts.backend
        self.engine = opts.engine
        # the plain engine knows one layout, NCHW
        self.layout = "NCHW" if self.engine == "plain" else opts.layout
        self.columns, self.pool = opts.columns, opts.pool
        self.lrn, self.lrn_mode, self.lrn_params = opts.lrn, opts.lrn_mode, opts.lrn_params
        self.dropout, self.dropout_mode = opts.dropout, opts.dropout_mode
        self.dropout_placement = opts.dropout_placement
        self.conv_algo, self.keep_cols = opts.conv_algo, opts.conv_cache == "unfolded"
        self.head = opts.head
        self.pool_rounding = opts.pool_rounding
        self.shapes = arch_table.param_shapes(
            self.spec,
            columns=self.columns,
            num_classes=opts.num_classes,
            pool=self.pool,
            head=self.head,
            pool_rounding=self.pool_rounding,
        )
        self.ranks = hybrid_world(ranks, self.head)  # None: every layer whole
        last = "fc8" if self.head == "fc" else "head"
        self.num_classes = self.shapes[self.key(last, "bias")][0]
        devices = opts.devices or default_devices(self.xp, self.columns)
        plain = self.engine == "plain"  # no column threads, no kept workspace
        self.placement = Placement(
            self.xp,
            self.columns,
            devices,
            self.shapes,
            whole=(self.key(last, "weight"), self.key(last, "bias")),
            parallel=False if plain else None,
            pooled=not plain,
            **self.rank_split(),
        )
        self.devices = self.placement.devices
        # params[c]: {name: shard of column c}; fc8 (or head) only in column 0.
        self.params: list[dict[str, Array]] = [dict() for _ in range(self.columns)]
        for name, shape in self.shapes.items():
            for c, r0, r1 in self.placement.rows[name]:
                with self.placement.device(c):
                    self.params[c][name] = self.xp.zeros((r1 - r0,) + shape[1:], self.dtype)
        self._params_set = False  # by load_state_dict (and init)
        self.layers = self._layer_list()

    def _layer_list(self) -> list[Layer]:
        """The network as a list of layers (module doc), each built with its settings."""
        axis = layouts.channel_axis(self.layout)  # channels of the conv maps

        def conv(name: str) -> Conv:
            spec = self.conv_spec(name)
            return Conv(
                name,
                kernel=spec.kernel,
                stride=spec.stride,
                pad=spec.pad,
                shapes=self._param_shapes(name),
                algo=self.conv_algo,
                cache=self.options.conv_cache,
                first=name == "conv1",
            )

        def pool(name: str) -> Pool:
            return Pool(name, size=self.pool[0], stride=self.pool[1], rounding=self.pool_rounding)

        seq: list[Layer] = [Input("input")]
        for i in (1, 2):
            seq += [conv(f"conv{i}"), Relu(f"relu{i}")]
            seq += (
                [Lrn(f"lrn{i}", **self.lrn_params, mode=self.lrn_mode, columns=self.columns)]
                if self.lrn
                else []
            )
            seq += [pool(f"pool{i}")]
        seq += [Exchange("to_conv3", axis)]  # both columns' pool2 maps
        for i in (3, 4, 5):
            seq += [conv(f"conv{i}"), Relu(f"relu{i}")]
        if self.head == "gap":  # conv5's maps, unpooled
            return seq + [Exchange("to_head", axis, (0,)), conv("head"), Gap("gap")]
        seq += [pool("pool5")]
        seq += [AdaptivePool("avgpool", side=self.spec.avgpool)] if self.spec.avgpool else []
        seq += [Exchange("to_fc6", axis), Flatten("flatten")]
        # the outputs dropout acts on: the paper's fc6 and fc7, or torchvision's inputs of
        # fc6 and fc7 (the flattened maps, whole in every column, and fc6's output)
        dropped = ("fc6", "fc7") if self.dropout_placement == "after" else ("flatten", "fc6")

        def dropout(source: str) -> Dropout:
            return Dropout(
                f"dropout_{source}",
                source,
                p=self.dropout,
                mode=self.dropout_mode,
                width=self.mask_width(source),
                whole=source == "flatten",
            )

        seq += [dropout("flatten")] if "flatten" in dropped else []
        for name, nxt, to in (("fc6", "fc7", None), ("fc7", "fc8", (0,))):
            seq += [Linear(name, shapes=self._param_shapes(name)), Relu(f"relu_{name}")]
            seq += [dropout(name)] if name in dropped else []
            seq += [Exchange(f"to_{nxt}", 1, to)]  # (N, F) features
        seq += [Linear("fc8", shapes=self._param_shapes("fc8"))]  # (N, K) on column 0
        if not self.dropout:
            seq = [layer for layer in seq if not isinstance(layer, Dropout)]
        if self.ranks is None:
            return seq
        return hybrid_layers(seq, self.ranks, self.placement, self.key, self.layout)

    # -- forward and backward --------------------------------------------------------
    def forward(
        self,
        x: Array,
        train: bool = False,
        rng: numpy.random.Generator | None = None,
        masks: dict[str, Array] | None = None,
    ) -> Array:
        """Logits (N, K) on column 0's device for images x (N, 3, S, S), mean-subtracted.

        ``train=True`` applies dropout with masks drawn from ``rng`` (a
        ``numpy.random.Generator``; one full (N, width) mask per dropout layer, in the
        list's order, so the draws do not depend on the number of columns or the backend)
        or given in ``masks``, arrays of 0/1 keyed by the layer whose output is dropped:
        ``{"fc6": (N, 4096), "fc7": (N, 4096)}`` with ``dropout_placement="after"``,
        ``{"flatten": (N, 9216), "fc6": (N, 4096)}`` with "before".
        """
        logits, _ = self._forward(x, Pass(train, rng, masks, keep=False))
        return logits

    def loss_and_grad_columns(
        self,
        x: Array,
        labels: Array,
        train: bool = True,
        rng: numpy.random.Generator | None = None,
        masks: dict[str, Array] | None = None,
        on_grads: Callable[[str, list[dict[str, Array]]], None] | None = None,
    ) -> tuple[float, list[dict[str, Array]]]:
        """(loss, per-column gradients): ``grads[c]`` holds column c's shards on its
        device, keyed and split like ``params[c]``; what ``SGD.step`` takes without
        assembling full arrays. ``on_grads(name, grads)``, if given, is called as soon
        as the backward pass has made layer ``name``'s parameter gradients (fc8 first,
        conv1 last): a data-parallel reducer starts sending them while the layers below
        are still computing (``refnet.distributed``)."""
        pass_ = Pass(train, rng, masks, keep=True)
        logits, caches = self._forward(x, pass_)
        with self.placement.device(0):
            labels = self._labels(labels, logits.shape[0])
            loss, lcache = softmax.forward(logits, labels)
            dlogits = softmax.backward(self.dtype.type(1), lcache)
        grads: list[dict[str, Array]] = [dict() for _ in range(self.columns)]
        # Each cache is dropped as its layer is done, so what a layer kept is freed
        # before the layers below it allocate (the step's peak memory).
        assert pass_.context is not None  # set by _forward
        if self.engine == "plain":
            run_plain_backward(self.layers, [dlogits], caches, grads, pass_.context, on_grads)
        else:
            segments.backward(pass_.context, pass_, caches, [dlogits], grads, on_grads)
        return float(loss), grads

    def context(self) -> Context:
        """The ``refnet.nodes.Context`` the layers run in: the placement and each
        column's parameters, workspace, device, array module, layout, dtype and engine."""
        P = self.placement
        columns = tuple(
            Column(
                c,
                self.params[c],
                P.workspaces[c],
                self.xp,
                P.devices[c],
                self.layout,
                self.dtype,
                self.engine,
            )
            for c in range(self.columns)
        )
        return Context(P, columns, self.layout, self.engine)

    def _forward(self, x: Array, pass_: Pass) -> tuple[Array, dict[str, Any]]:
        """(logits, {layer name: cache}) through the engine's runner (the plain one:
        ``refnet.nodes.base.run_plain``; the fast one: ``refnet.segments``); with
        ``pass_.keep`` False no cache is kept."""
        self._require_params()
        self._check_input(x)
        self.placement.new_pass()
        pass_.n = x.shape[0]
        pass_.context = ctx = self.context()
        caches: dict[str, Any] = {}
        if self.engine == "plain":
            (logits,) = run_plain(self.layers, x, pass_, ctx, caches)
        else:
            (logits,) = segments.forward(ctx, self.layers, x, pass_, caches)
        return logits, caches


def build_network(options: NetOptions, ranks: Solo | None = None) -> AlexNet:
    """The ``AlexNet`` that ``options`` (a ``refnet.options.NetOptions``) describes: the
    one way the commands, the benchmark and ``verify`` build a network (``ranks``:
    hybrid parallel, ``AlexNet``)."""
    if not isinstance(options, NetOptions):
        raise TypeError(f"build_network takes a NetOptions, got {type(options).__name__}")
    return AlexNet(**options.kwargs(), ranks=ranks)
