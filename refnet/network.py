"""AlexNet as the paper ran it: two columns, explicit forward and backward, layer by layer.

Axis legend: N batch, C channels of one column, S side of a square map, F features,
K classes. A column's layers are plain calls of ``layers.*`` under its device
(``refnet.columns.Placement``); the only crossings between columns are the layers of
``refnet.exchange``.

One column, in order (the paper: conv -> ReLU -> LRN -> pool in layers 1 and 2); the
network is this list (``AlexNet.layers``), run forward in order and backward in reverse:

    input  conv1 relu lrn1 pool1  conv2 relu lrn2 pool2  =exchange=>  conv3 relu
    conv4 relu  conv5 relu pool5  =exchange=>  flatten  fc6 relu dropout  =exchange=>
    fc7 relu dropout  =exchange to column 0=>  fc8  softmax cross-entropy (column 0)

With ``head="gap"`` (Network-in-Network / GoogLeNet's head) the end of the list is instead

    conv5 relu  =exchange to column 0=>  head (1x1 conv to the K classes)  gap  softmax

reading conv5's ReLU output before pool5 (as those networks read their last conv maps
unpooled). The 1x1 convolution needs every channel of both columns, like conv3, so it
takes one exchange either way; it lives whole on column 0, like fc8, where the loss is
(per-column halves of the classes would need the same exchange to both columns plus a
second one to gather the logits).

With ``columns=1`` (the paper's single-GPU comparison) the same layers run in one column
with the same total widths and no grouping: conv2, conv4 and conv5 then see all channels
of the previous layer (their weights are twice as wide as in the grouped form).

torchvision's AlexNet (arch ``owt``, one column, no LRN) runs the same list with an
average pooling after pool5 and dropout moved onto fc6's and fc7's inputs
(``dropout_placement="before"``, its default):

    conv5 relu pool5 avgpool  =exchange=>  flatten dropout  fc6 relu dropout
    =exchange=>  fc7 relu  =exchange to column 0=>  fc8

The layers keep their names (conv1 ... fc8); parameters are named by the arch
(``AlexNet.key``: conv1's weight is ``conv1.weight``, for ``owt`` torchvision's
``features.0.weight``) in ``shapes``, ``params``, gradients and ``state_dict`` alike.

Every option is a field of ``refnet.options.NetOptions`` (validated there, once);
``AlexNet(**kwargs)`` and ``build_network(options)`` build the same network;
``AlexNet(conventions="caffe", **kwargs)`` starts from a named preset
(``refnet.conventions``; the fields given win, and ``init`` draws with the preset's scheme).
Switches for the paper's ablations: ``lrn`` on/off, ``pool=(3, 2)`` (overlapping, the
paper) or ``(2, 2)``, ``pool_rounding`` (``"floor"``, or Caffe's ``"ceil"``), dropout
``p`` and ``dropout_mode`` (``"paper"``: no scaling in training and outputs times
(1 - p) at test; ``"inverted"``: PyTorch/Caffe's 1/(1 - p) in training), ``lrn_mode``
(``"column"``: each column normalises over its own kernel maps only, as the authors'
cuda-convnet2 did; ``"all"``: Caffe's one LRN over all channels of the grouped form,
which needs a halo of ``size // 2`` channels from the other column at their shared
boundary, exchanged by ``refnet.exchange.halo_forward``).

Convolutions: ``conv_algo="winograd"`` (default) computes the stride-1 layers (conv2-5)
by Winograd's minimal filtering (``layers.winograd``: 2-4x fewer multiplications, float32
relative error ~1e-5 instead of ~1e-6) and conv1 by im2col + GEMM; ``"gemm"`` uses
im2col + GEMM everywhere (the reference form; the two agree to float64 round-off).

Layout: the maps from the input to pool5 are kept as (C, H, W, N), the batch innermost
(``layout="CHWN"``, the default and the layout of the authors' cuda-convnet), which makes
every copy of conv, Winograd, pooling and LRN move runs of N contiguous values; the input
image (N, 3, S, S) is transposed once, and fc6 reads pool5's (C*S*S, N) maps as the
transpose of torch.flatten's (N, F). ``layout="NCHW"`` runs the same layers in PyTorch's
layout (the same numbers; slower copies).

Memory: ``conv_cache="unfolded"`` (default, fastest) keeps what each convolution's backward
reads (the im2col matrix, or Winograd's transformed input tiles); ``"input"`` keeps only its
input and recomputes them (same numbers either way; figures in docs/performance.md).
conv1 with both columns on one device keeps only the image whatever the setting
(``Conv``: its columns are made block by block in cache, in forward and in backward).
Every large array comes from the column's workspace (``Placement.workspaces``,
``layers.workspace``): memory kept from pass to pass and planned after the first, and
handed out again only once nothing refers to it. What the network returns is the
caller's: gradients, logits and features stay as they are whatever runs next (holding
them keeps their memory out of the next pass's plan, nothing more).
"""

import math
from typing import NamedTuple

import numpy

from layers import adaptive_pool, backend, conv, conv_blocks, dropout, gap, linear, lrn, pool
from layers import relu, softmax
from layers import layout as layouts
from layers.backend import backend_module
from refnet import arch as arch_table
from refnet.conventions import init_scheme as preset_init
from refnet import exchange, segments
from refnet import init as init_schemes
from refnet.columns import Placement, default_devices
from refnet.options import NetOptions


class AlexNet:
    """The paper's network on NumPy or CuPy, in one or two columns.

    ``AlexNet(arch, dtype, backend, **options)`` takes the fields of
    ``refnet.options.NetOptions`` (``build_network(options)`` takes the object);
    ``self.options`` holds them. ``backend``: ``"numpy"``, ``"cupy"``, or an array
    namespace object (the test suite's device-tagging backend). ``devices``: one device
    index per column; by default CuPy uses devices 0 and 1 with two GPUs, else 0 for
    both (and NumPy the CPU). Parameters are unset until ``init`` or ``load_state_dict``:
    ``forward`` (and what calls it) and ``state_dict`` raise ``RuntimeError`` until then.
    Input images are ``spec.input_size`` square (227 for ``alexnet``: the paper's 224
    gives no integer 55x55 conv1 output; see ``refnet.arch``). ``conventions``: a name of
    ``refnet.conventions.CONVENTIONS``; the options are then ``NetOptions.preset(name,
    **given)`` (``arch`` None: the preset's arch, else ``"alexnet"``), and ``init``'s
    default scheme is the preset's.
    """

    def __init__(self, arch=None, dtype="float32", backend="numpy", conventions=None,
                 **options):
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
        self.xp = (backend_module(opts.backend) if isinstance(opts.backend, str)
                   else opts.backend)
        self.columns, self.pool, self.layout = opts.columns, opts.pool, opts.layout
        self.lrn, self.lrn_mode, self.lrn_params = opts.lrn, opts.lrn_mode, opts.lrn_params
        self.dropout, self.dropout_mode = opts.dropout, opts.dropout_mode
        self.dropout_placement = opts.dropout_placement
        self.conv_algo, self.keep_cols = opts.conv_algo, opts.conv_cache == "unfolded"
        self.head = opts.head
        self.pool_rounding = opts.pool_rounding
        self.shapes = arch_table.param_shapes(self.spec, columns=self.columns,
                                              num_classes=opts.num_classes, pool=self.pool,
                                              head=self.head,
                                              pool_rounding=self.pool_rounding)
        last = "fc8" if self.head == "fc" else "head"
        self.num_classes = self.shapes[self.key(last, "bias")][0]
        devices = opts.devices or default_devices(self.xp, self.columns)
        self.placement = Placement(self.xp, self.columns, devices, self.shapes,
                                   whole=(self.key(last, "weight"), self.key(last, "bias")))
        self.devices = self.placement.devices
        # params[c]: {name: shard of column c}; fc8 (or head) only in column 0.
        self.params = [dict() for _ in range(self.columns)]
        for name, shape in self.shapes.items():
            for c, r0, r1 in self.placement.rows[name]:
                with self.placement.device(c):
                    self.params[c][name] = self.xp.zeros((r1 - r0,) + shape[1:], self.dtype)
        self._params_set = False                         # by load_state_dict (and init)
        self.layers = self._layer_list()

    def _layer_list(self):
        """The network as a list of steps (module doc), each run in every column."""
        axis = layouts.channel_axis(self.layout)       # channels of the conv maps
        seq = [Input("input")]
        for i in (1, 2):
            seq += [Conv(f"conv{i}"), Relu(f"relu{i}")]
            seq += [Lrn(f"lrn{i}")] if self.lrn else []
            seq += [Pool(f"pool{i}")]
        seq += [Exchange("to_conv3", axis)]            # both columns' pool2 maps
        for i in (3, 4, 5):
            seq += [Conv(f"conv{i}"), Relu(f"relu{i}")]
        if self.head == "gap":                         # conv5's maps, unpooled
            return seq + [Exchange("to_head", axis, (0,)), Conv("head"), Gap("gap")]
        seq += [Pool("pool5")]
        seq += [AdaptivePool("avgpool")] if self.spec.avgpool else []
        seq += [Exchange("to_fc6", axis), Flatten("flatten")]
        # the outputs dropout acts on: the paper's fc6 and fc7, or torchvision's inputs of
        # fc6 and fc7 (the flattened maps, whole in every column, and fc6's output)
        dropped = ("fc6", "fc7") if self.dropout_placement == "after" else ("flatten", "fc6")
        seq += [Dropout("dropout_flatten", "flatten")] if "flatten" in dropped else []
        for name, nxt, to in (("fc6", "fc7", None), ("fc7", "fc8", (0,))):
            seq += [Linear(name), Relu(f"relu_{name}")]
            seq += [Dropout(f"dropout_{name}", name)] if name in dropped else []
            seq += [Exchange(f"to_{nxt}", 1, to)]       # (N, F) features
        seq += [Linear("fc8")]                         # (N, K) on column 0
        if not self.dropout:
            seq = [layer for layer in seq if not isinstance(layer, Dropout)]
        return seq

    def dropout_widths(self):
        """``{name: width}`` of the dropout masks, in the order they are drawn
        (``masks=`` of ``forward`` takes these names: "fc6", "fc7", or "flatten" and
        "fc6" with dropout before the fc layers)."""
        return {layer.source: self.mask_width(layer.source)
                for layer in self.layers if isinstance(layer, Dropout)}

    def mask_width(self, name):
        """The width of layer ``name``'s outputs, which a dropout mask covers."""
        if name == "flatten":
            return self.shapes[self.key("fc6", "weight")][1]
        return self.shapes[self.key(name, "bias")][0]

    def key(self, layer, kind):
        """The name of ``layer``'s ``kind`` ("weight" or "bias") parameter in ``shapes``,
        ``params`` and ``state_dict``: ``conv1.weight``, or the arch's name for it
        (``owt``: torchvision's ``features.0.weight``)."""
        return f"{self.spec.param_prefix(layer)}.{kind}"

    def conv_spec(self, name):
        """The ``ConvSpec`` of conv1..conv5, or of the "gap" head (1x1, stride 1, no pad)."""
        if name == "head":
            return arch_table.ConvSpec(1, 1, 0, self.num_classes)
        return self.spec.convs[int(name[-1]) - 1]

    # -- parameters ------------------------------------------------------------------
    def init(self, seed=0, scheme=None):
        """Draw the initial parameters (``refnet.init.SCHEMES``: "paper", "caffe",
        "cuda-convnet2", "pytorch" or "he"; None: ``self.init_scheme``, the preset's
        scheme when built with ``conventions``, else "paper"). The schemes read the
        layers' own names, conv1 ... fc8, whatever the arch calls them."""
        scheme = self.init_scheme if scheme is None else scheme
        shapes = arch_table.param_shapes(self.spec, columns=self.columns,
                                         num_classes=self.num_classes, pool=self.pool,
                                         head=self.head, pool_rounding=self.pool_rounding,
                                         refnet_names=True)
        drawn = init_schemes.initial_params(shapes, seed=seed, scheme=scheme,
                                            dtype=self.dtype)
        self.load_state_dict({arch_table.param_key(self.spec, n): a
                              for n, a in drawn.items()})
        return self

    def state_dict(self):
        """``{name: NumPy array}`` in PyTorch's names (``conv1.weight``; for ``owt``
        torchvision's, ``features.0.weight``) and the grouped single-device shapes (copies
        on the host)."""
        self._require_params()
        return self.gather(self.params)

    def gather(self, per_column):
        """Per-column dicts keyed and split like ``params`` (the parameters, their
        gradients or an optimizer's velocities) as one dict of full host NumPy arrays
        keyed like ``state_dict`` (copies)."""
        return {name: self.placement.gather(name, self._shards(per_column, name))
                for name in self.shapes}

    def scatter(self, full):
        """A dict of full host arrays keyed like ``state_dict`` as per-column dicts of
        shards on each column's device (copies), the inverse of ``gather``."""
        out = [dict() for _ in range(self.columns)]
        for name in self.shapes:
            for c, shard in self.placement.split(name, full[name]):
                out[c][name] = shard
        return out

    def load_state_dict(self, sd):
        """Set every parameter from ``sd`` (as ``state_dict`` gives). Wrong or missing
        names and wrong shapes are refused with ``ValueError`` naming them; values are
        copied and cast to the net's dtype."""
        if not isinstance(sd, dict):
            raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
        missing = [n for n in self.shapes if n not in sd]
        extra = [n for n in sd if n not in self.shapes]
        if missing or extra:
            raise ValueError(f"state_dict does not match arch {self.spec.name!r} "
                             f"(columns={self.columns}): missing {missing}, unexpected {extra}")
        bad = {n: tuple(numpy.shape(sd[n])) for n in self.shapes
               if tuple(numpy.shape(sd[n])) != self.shapes[n]}
        if bad:
            want = {n: self.shapes[n] for n in bad}
            raise ValueError(f"state_dict shapes do not match: got {bad}, expected {want}")
        host = {}
        for name in self.shapes:
            host[name] = numpy.asarray(backend.asnumpy(sd[name]), dtype=self.dtype)
            if not numpy.all(numpy.isfinite(host[name])):
                raise ValueError(f"state_dict[{name!r}] has non-finite values")
        for params, shards in zip(self.params, self.scatter(host)):
            params.update(shards)
        self._params_set = True

    def _require_params(self):
        if not self._params_set:
            raise RuntimeError("AlexNet: parameters are not set; call net.init(seed=...) "
                               "or net.load_state_dict(...) first")

    def num_params(self):
        """Number of parameters (60,965,224 for ``alexnet``)."""
        return sum(math.prod(shape) for shape in self.shapes.values())

    def param_counts(self):
        """``{layer: number of parameters}`` per layer of ``layers`` that has any (weights
        and biases), by the layers' names (conv1 ... fc8, or head)."""
        return {layer.name: sum(math.prod(self.shapes[self.key(layer.name, kind)])
                                for kind in ("weight", "bias"))
                for layer in self.layers if isinstance(layer, (Conv, Linear))}

    def _shards(self, per_column, name):
        return {c: per_column[c][name] for c, _, _ in self.placement.rows[name]}

    def full_grads(self, grads):
        """Per-column gradients (as ``loss_and_grad_columns`` gives) as one dict keyed
        like ``state_dict``, full shapes, on column 0's device."""
        return {name: self.placement.gather_on_device(name, self._shards(grads, name))
                for name in self.shapes}

    def column_grads(self, grads):
        """A full gradient dict (keyed like ``state_dict``) split into per-column shards."""
        out = [dict() for _ in range(self.columns)]
        for name in self.shapes:
            for c, shard in self.placement.split_on_device(name, grads[name]):
                out[c][name] = shard
        return out

    # -- forward and backward --------------------------------------------------------
    def forward(self, x, train=False, rng=None, masks=None):
        """Logits (N, K) on column 0's device for images x (N, 3, S, S), mean-subtracted.

        ``train=True`` applies dropout with masks drawn from ``rng`` (a
        ``numpy.random.Generator``; one full (N, width) mask per dropout layer, in the
        list's order, so the draws do not depend on the number of columns or the backend)
        or given in ``masks``, arrays of 0/1 keyed by the layer whose output is dropped:
        ``{"fc6": (N, 4096), "fc7": (N, 4096)}`` with ``dropout_placement="after"``,
        ``{"flatten": (N, 9216), "fc6": (N, 4096)}`` with "before".
        """
        logits, _ = self._forward(x, _Pass(train, rng, masks, keep=False))
        return logits

    def predict_proba(self, x):
        """Softmax probabilities (N, K) in eval mode (no dropout), on column 0's device."""
        logits = self.forward(x, train=False)
        with self.placement.device(0):
            return softmax.probabilities(logits)

    def loss_and_grad(self, x, labels, train=True, rng=None, masks=None):
        """(mean cross-entropy as a float, gradients keyed like ``state_dict`` with full
        shapes, arrays of the net's module on column 0's device)."""
        loss, grads = self.loss_and_grad_columns(x, labels, train=train, rng=rng,
                                                 masks=masks)
        return loss, self.full_grads(grads)

    def loss_and_grad_columns(self, x, labels, train=True, rng=None, masks=None,
                              on_grads=None):
        """(loss, per-column gradients): ``grads[c]`` holds column c's shards on its
        device, keyed and split like ``params[c]``; what ``SGD.step`` takes without
        assembling full arrays. ``on_grads(name, grads)``, if given, is called as soon
        as the backward pass has made layer ``name``'s parameter gradients (fc8 first,
        conv1 last): a data-parallel reducer starts sending them while the layers below
        are still computing (``refnet.distributed``)."""
        run = _Pass(train, rng, masks, keep=True)
        logits, caches = self._forward(x, run)
        with self.placement.device(0):
            labels = self._labels(labels, logits.shape[0])
            loss, lcache = softmax.forward(logits, labels)
            dlogits = softmax.backward(self.dtype.type(1), lcache)
        grads = [dict() for _ in range(self.columns)]
        # Each cache is dropped as its layer is done, so what a layer kept is freed
        # before the layers below it allocate (the step's peak memory).
        segments.backward(self, run, caches, [dlogits], grads, on_grads)
        return float(loss), grads

    def features(self, x, upto="relu_fc7", maps=False):
        """The output (N, F) of layer ``upto`` (a name in ``self.layers``) for images x,
        in eval mode, on column 0's device: each column's part concatenated in column
        order (fc6 and fc7 split their F outputs in halves over two columns). The default
        is fc7's ReLU, the last hidden layer (4096 features for ``alexnet``); in the
        paper's dropout mode fc8 reads these times (1 - p). ``ValueError`` for a name
        not in the list or, unless ``maps``, a layer whose output is not (N, F) (the conv
        maps). ``maps=True`` gives those as (N, C, H, W) whatever the layout, the
        columns' channels side by side (the grouped single-device form). Where every
        column holds all of them (after an exchange, until the next layer with weights)
        column 0's are returned."""
        names = [layer.name for layer in self.layers]
        if upto not in names:
            raise ValueError(f"features: no layer {upto!r}; the layers are {names}")
        self._require_params()
        self._check_input(x)
        self.placement.new_pass()
        run = _Pass(False, None, None, keep=False)
        run.n, h = x.shape[0], x
        whole = True             # every column holds all of h, not its part
        for layer in self.layers[:names.index(upto) + 1]:
            h, _ = layer.forward(self, h, run)
            splits = isinstance(layer, (Conv, Linear))         # a column's share of outputs
            whole = isinstance(layer, (Input, Exchange)) or (whole and not splits)
        if any(a.ndim != 2 for a in h) and not maps:
            raise ValueError(f"features: {upto!r} gives maps of shape {h[0].shape} per "
                             "column, not (N, F) features")
        if whole:
            h = h[:1]
        P = self.placement
        with P.device(0):
            h = [P.put(a, 0) for a in h]
            if h[0].ndim == 4:
                h = [layouts.transpose(a, self.layout, "NCHW") for a in h]
            return self.xp.concatenate(h, axis=1)           # (N, F) or (N, C, H, W)

    def _forward(self, x, run):
        """(logits, {layer name: cache}); with ``run.keep`` False no cache is kept."""
        self._require_params()
        self._check_input(x)
        self.placement.new_pass()
        run.n = x.shape[0]
        caches = {}
        (logits,) = segments.forward(self, self.layers, x, run, caches)
        return logits, caches

    # -- checks and dropout masks ------------------------------------------------------
    def _check_input(self, x):
        s = self.spec.input_size
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4 or shape[1:] != (3, s, s) or shape[0] < 1:
            raise ValueError(f"AlexNet({self.spec.name!r}): x must have shape "
                             f"(N, 3, {s}, {s}), got {shape}")
        if numpy.dtype(x.dtype) != self.dtype:
            raise TypeError(f"AlexNet: x has dtype {x.dtype} but the net computes in "
                            f"{self.dtype}; convert it first")

    def _labels(self, labels, n):
        host = None
        if isinstance(labels, numpy.ndarray) or not hasattr(labels, "__array_namespace__"):
            host = numpy.asarray(labels)
        shape = tuple(getattr(labels, "shape", numpy.shape(labels)))
        if shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {shape}")
        if host is not None:
            if host.dtype.kind not in "iu":
                raise TypeError(f"labels must be integers, got dtype {host.dtype}")
            if n and (host.min() < 0 or host.max() >= self.num_classes):
                raise ValueError(f"labels must be in [0, {self.num_classes}), got "
                                 f"[{host.min()}, {host.max()}]")
        return self.placement.put(labels, 0)

    def dropout_masks(self, name, run):
        """Column shards of a full (N, width) keep-mask for layer ``name``'s outputs (from
        ``run.masks`` or drawn from ``run.rng``), or None outside training. fc6's and
        fc7's outputs are split over the columns; the flattened maps, fc6's input, are
        whole in every column, and so is each column's copy of their mask."""
        if not run.train:
            return None
        n, width = run.n, self.mask_width(name)
        if run.masks is not None and name in run.masks:
            full = backend.asnumpy(run.masks[name])      # to the host, then to each column
            if tuple(full.shape) != (n, width):
                raise ValueError(f"masks[{name!r}] must have shape ({n}, {width}), "
                                 f"got {tuple(full.shape)}")
        else:
            rng = numpy.random.default_rng() if run.rng is None else run.rng
            full = rng.random((n, width)) >= self.dropout   # keep-mask, as layers.dropout
        if name == "flatten":
            return [self.placement.put(full, c) for c in range(self.columns)]  # (N, width)
        w = width // self.columns
        return [self.placement.put(numpy.ascontiguousarray(full[:, c * w:(c + 1) * w]), c)
                for c in range(self.columns)]                # (N, width / columns) each


def build_network(options):
    """The ``AlexNet`` that ``options`` (a ``refnet.options.NetOptions``) describes: the
    one way the commands, the benchmark and ``verify`` build a network."""
    if not isinstance(options, NetOptions):
        raise TypeError(f"build_network takes a NetOptions, got {type(options).__name__}")
    return AlexNet(**options.kwargs())


class _Pass:
    """What one forward pass needs besides the maps: training or not, dropout's
    generator or given masks, the batch size, and whether to keep the caches."""

    def __init__(self, train, rng, masks, keep):
        self.train, self.rng, self.masks, self.keep, self.n = train, rng, masks, keep, None
        self.segments = None    # the runs of layers forward made (refnet.segments)


# -- the layers of the list -----------------------------------------------------------------
# Each runs one layer in every column that has an input (fc8: column 0 only) through
# ``Placement.each``, under that column's device, on the CPU concurrently: forward(net,
# h, run) -> (h, cache) and backward(net, d, cache, grads) -> d, with h and d lists
# aligned with the columns and the cache a list of the layer's per-column caches.
# Column-local layers (``_Local``: each column's part from that column's data alone)
# also give their per-column functions, so that a run of them goes through one
# ``Placement.each`` call instead of one per layer (``refnet.segments``).

class _Layer:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"

    def fusable(self, net, h):
        """Whether this call (on h, or on a column-local layer's output when h is None)
        is column-local; only ``_Local`` layers can be."""
        return False


def _split(pairs):
    """[(y, cache) per column] -> ([y...], [cache...])."""
    return [y for y, _ in pairs], [c for _, c in pairs]


class _Local(_Layer):
    """A layer whose every column computes its part from its own data alone:
    ``column_forward(net, c, a, run, extra) -> (y, cache)`` and ``column_backward(net,
    c, g, cache, grads) -> dx`` for column c (parameter gradients go into ``grads[c]``).
    ``prepare`` makes, in the calling thread, what the columns need besides their data
    (dropout's masks: drawn in the list's order whatever the threads do)."""

    def fusable(self, net, h):
        return True

    def prepare(self, net, run, columns):
        """One extra argument of ``column_forward`` per column."""
        return [None] * columns

    def forward(self, net, h, run):
        extra = self.prepare(net, run, len(h))
        return _split(net.placement.each(
            lambda c, a, e: self.column_forward(net, c, a, run, e), h, extra))

    def backward(self, net, d, cache, grads):
        return net.placement.each(
            lambda c, g, k: self.column_backward(net, c, g, k, grads), d, cache)


class Input(_Layer):
    """The images (N, 3, S, S) in the net's layout, on every column's device: transposed
    once on column 0's and given to the others from there (with every column on one
    device, the column threads copy a band of rows each). No gradient flows back."""

    def forward(self, net, x, run):
        P = net.placement
        with P.device(0):
            x = P.put(x, 0)
            if net.layout == "CHWN" and len(set(P.devices)) == 1 and net.columns > 1:
                y = P.workspaces[0].empty(net.xp, layouts.shape(*x.shape, net.layout),
                                          x.dtype)
                s = x.shape[2]
                bands = [slice(s * c // net.columns, s * (c + 1) // net.columns)
                         for c in range(net.columns)]
                P.each(lambda c, rows: self._copy(x, y, rows), bands)
                x = y
            else:
                x = layouts.transpose(x, "NCHW", net.layout, ws=P.workspaces[0])
        return [P.put(x, c) for c in range(net.columns)], None

    @staticmethod
    def _copy(x, y, rows):
        """Rows ``rows`` of the images x (N, C, H, W) into y (C, H, W, N)."""
        y[:, rows] = x[:, :, rows].transpose(1, 2, 3, 0)

    def backward(self, net, d, cache, grads):
        return None


class Conv(_Local):
    """A column's share of conv1-5 (``layers.conv``), or the "gap" head's 1x1 convolution
    on column 0: Winograd for stride-1 layers with kernels over 1x1 with
    ``conv_algo="winograd"``, else im2col + GEMM (a 1x1 convolution is one GEMM).

    conv1 with every column on one device (all read the same image): one convolution
    by blocks of output positions (``layers.conv_blocks``) with the columns' kernels
    stacked, its output rows split between the column threads; each column's output is
    its channels of the result, and only the image is kept for backward."""

    def _algo(self, net):
        spec = net.conv_spec(self.name)
        return "winograd" if (net.conv_algo == "winograd" and spec.stride == 1
                              and spec.kernel > 1) else "gemm"

    def _shared(self, net, h):
        return (h is not None and self.name == "conv1" and self._algo(net) == "gemm"
                and net.placement.shared_input(h))

    def fusable(self, net, h):
        return not self._shared(net, h)

    def forward(self, net, h, run):
        if self._shared(net, h):
            return self._forward_shared(net, h[0], net.conv_spec(self.name))
        return super().forward(net, h, run)

    def column_forward(self, net, c, a, run, extra):
        spec = net.conv_spec(self.name)
        p = net.params[c]
        return conv.forward(a, p[net.key(self.name, "weight")], p[net.key(self.name, "bias")],
                            stride=spec.stride, pad=spec.pad, keep_cols=net.keep_cols,
                            algo=self._algo(net), layout=net.layout,
                            ws=net.placement.workspaces[c])

    def _forward_shared(self, net, x, spec):
        P, xp, columns = net.placement, net.xp, range(net.columns)
        with P.device(0):
            w = xp.concatenate([net.params[c][net.key(self.name, "weight")] for c in columns])
            b = xp.concatenate([net.params[c][net.key(self.name, "bias")] for c in columns])
            y, cache, runs = conv_blocks.forward_parts(
                x, w, b, stride=spec.stride, pad=spec.pad, layout=net.layout,
                parts=net.columns, ws=P.workspaces[0])       # w: (K of all columns, ...)
        P.each(lambda c, fill: fill(), runs)
        axis = layouts.channel_axis(net.layout)
        k = y.shape[axis] // net.columns
        ys = [y[layouts.along(axis, slice(c * k, (c + 1) * k))] for c in columns]
        return ys, _Shared(cache, k)

    def backward(self, net, d, cache, grads):
        if isinstance(cache, _Shared):
            return self._backward_shared(net, d, cache, grads)
        return super().backward(net, d, cache, grads)

    def column_backward(self, net, c, g, k, grads):
        # conv1's input is the image: no gradient needed there.
        dx, grads[c][net.key(self.name, "weight")], grads[c][net.key(self.name, "bias")] \
            = conv.backward(g, k, need_dx=self.name != "conv1", ws=net.placement.workspaces[c])
        return dx

    def _backward_shared(self, net, d, cache, grads):
        P = net.placement
        runs = conv_blocks.backward_parts(d, cache.cache, parts=net.columns)
        partials = P.each(lambda c, run: run(), runs)           # dw^T of each band of rows
        with P.device(0):
            dw, db = conv_blocks.gradients(d, partials, cache.cache)
        k = cache.kernels
        for c in range(net.columns):                            # column c's kernels
            grads[c][net.key(self.name, "weight")] = dw[c * k:(c + 1) * k]
            grads[c][net.key(self.name, "bias")] = db[c * k:(c + 1) * k]
        return None                                             # the image has no gradient


class _Shared(NamedTuple):
    cache: object       # layers.conv_blocks.BlocksCache of all columns' kernels
    kernels: int        # each column's


class Linear(_Local):
    """A column's share of fc6 and fc7 (half of the outputs each), or fc8 on column 0."""

    def column_forward(self, net, c, a, run, extra):
        p = net.params[c]
        return linear.forward(a, p[net.key(self.name, "weight")], p[net.key(self.name, "bias")],
                              ws=net.placement.workspaces[c])

    def column_backward(self, net, c, g, k, grads):
        dx, grads[c][net.key(self.name, "weight")], grads[c][net.key(self.name, "bias")] \
            = linear.backward(g, k, ws=net.placement.workspaces[c])
        return dx


class Relu(_Local):
    def column_forward(self, net, c, a, run, extra):
        # in place: the layer below's output is this layer's alone (module doc)
        return relu.forward(a, ws=net.placement.workspaces[c], inplace=True)

    def column_backward(self, net, c, g, k, grads):
        return relu.backward(g, k, ws=net.placement.workspaces[c], inplace=True)


class Pool(_Local):
    def column_forward(self, net, c, a, run, extra):
        z, s = net.pool
        return pool.forward(a, size=z, stride=s, rounding=net.pool_rounding,
                            layout=net.layout, ws=net.placement.workspaces[c])

    def column_backward(self, net, c, g, k, grads):
        return pool.backward(g, k, ws=net.placement.workspaces[c])


class Lrn(_Local):
    """LRN over each column's own maps (column-local), or (``lrn_mode="all"`` with two
    columns) over its maps extended by a halo of the other column's
    (``refnet.exchange``)."""

    def fusable(self, net, h):
        return net.lrn_mode != "all" or net.columns == 1

    def forward(self, net, h, run):
        if self.fusable(net, h):
            return super().forward(net, h, run)
        P, axis = net.placement, layouts.channel_axis(net.layout)
        n = min(net.lrn_params["size"] // 2, h[0].shape[axis])
        h, halo = exchange.halo_forward(h, place=P, n=n, axis=axis)    # C + n channels
        h, caches = _split(P.each(lambda c, a: self.column_forward(net, c, a, run, None), h))
        return exchange.trim_forward(h, halo), _Halo(halo, caches)     # C channels

    def column_forward(self, net, c, a, run, extra):
        return lrn.forward(a, **net.lrn_params, layout=net.layout,
                           ws=net.placement.workspaces[c])

    def backward(self, net, d, cache, grads):
        if not isinstance(cache, _Halo):
            return super().backward(net, d, cache, grads)
        P = net.placement
        d = exchange.trim_backward(d, cache.halo, place=P)
        d = P.each(lambda c, g, k: self.column_backward(net, c, g, k, grads), d, cache.caches)
        return exchange.halo_backward(d, cache.halo, place=P)

    def column_backward(self, net, c, g, k, grads):
        return lrn.backward(g, k, ws=net.placement.workspaces[c])


class _Halo(NamedTuple):
    halo: object        # refnet.exchange.HaloCache
    caches: list        # each column's layers.lrn cache


class Dropout(_Local):
    """Dropout on the outputs of layer ``source`` (fc6, fc7 or the flattened maps), one
    keep-mask drawn for both columns."""

    def __init__(self, name, source):
        super().__init__(name)
        self.source = source

    def prepare(self, net, run, columns):
        return net.dropout_masks(self.source, run) or [None] * columns

    def column_forward(self, net, c, a, run, mask):
        return dropout.forward(a, p=net.dropout, train=run.train, mask=mask,
                               mode=net.dropout_mode, ws=net.placement.workspaces[c])

    def column_backward(self, net, c, g, k, grads):
        return dropout.backward(g, k, ws=net.placement.workspaces[c])


class Exchange(_Layer):
    """Every column's output concatenated on the columns ``to`` (all by default),
    along ``axis`` (``refnet.exchange``)."""

    def __init__(self, name, axis, to=None):
        super().__init__(name)
        self.axis, self.to = axis, to

    def forward(self, net, h, run):
        return exchange.forward(h, place=net.placement, axis=self.axis, to=self.to)

    def backward(self, net, d, cache, grads):
        return exchange.backward(d, cache, place=net.placement)


class AdaptivePool(_Local):
    """Average pooling of pool5's maps to the arch's ``avgpool`` side (``owt``: 6x6, the
    identity at 224 pixels), each column its own maps."""

    def column_forward(self, net, c, a, run, extra):
        return adaptive_pool.forward(a, net.spec.avgpool, layout=net.layout)

    def column_backward(self, net, c, g, k, grads):
        return adaptive_pool.backward(g, k)


class Gap(_Local):
    """The "gap" head's average of each class map over its positions: (N, K) logits."""

    def column_forward(self, net, c, a, run, extra):
        return gap.forward(a, layout=net.layout)

    def column_backward(self, net, c, g, k, grads):
        return gap.backward(g, k)


class Flatten(_Local):
    """pool5's maps as fc6's input (N, F), F in (C, S, S) order (``torch.flatten``):
    for CHWN the (C, S, S, N) maps are (F, N) and fc6 reads their transpose (a view)."""

    def column_forward(self, net, c, a, run, extra):
        if net.layout == "NCHW":
            return a.reshape(a.shape[0], -1), a.shape
        return a.reshape(-1, a.shape[-1]).T, a.shape

    def column_backward(self, net, c, g, shape, grads):
        if net.layout == "NCHW":
            return g.reshape(shape)
        return g.T.reshape(shape)                                   # (C, S, S, N) views
