"""AlexNet as the paper ran it: two columns, explicit forward and backward, layer by layer.

Axis legend: N batch, C channels of one column, S side of a square map, F features,
K classes. A column's layers are plain calls of ``layers.*`` under its device; the only
crossings between columns are ``Placement.exchange`` (and its backward) in
``refnet.columns``.

One column, in order (the paper: conv -> ReLU -> LRN -> pool in layers 1 and 2):

    conv1 relu lrn1 pool1  conv2 relu lrn2 pool2  =exchange=>  conv3 relu  conv4 relu
    conv5 relu pool5  flatten  =exchange=>  fc6 relu dropout  =exchange=>  fc7 relu
    dropout  =exchange to column 0=>  fc8  softmax cross-entropy (column 0)

With ``columns=1`` (the paper's single-GPU comparison) the same layers run in one column
with the same total widths and no grouping: conv2, conv4 and conv5 then see all channels
of the previous layer (their weights are twice as wide as in the grouped form).

Switches for the paper's ablations: ``lrn`` on/off, ``pool=(3, 2)`` (overlapping, the
paper) or ``(2, 2)``, dropout ``p`` and ``dropout_mode`` (``"paper"``: no scaling in
training and outputs times (1 - p) at test; ``"inverted"``: PyTorch/Caffe's 1/(1 - p) in
training), ``lrn_mode`` (``"column"``: each column normalises over its own kernel maps
only, as the authors' cuda-convnet2 did; ``"all"``: Caffe's one LRN over all channels of
the grouped form, which needs a halo of ``size // 2`` channels from the other column at
their shared boundary, exchanged in ``refnet.columns``).

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

Memory: ``conv_cache="columns"`` (default, fastest) keeps what each convolution's backward
reads (im2col columns, or Winograd's transformed input tiles); ``"input"`` keeps only its
input and recomputes them (same numbers either way; figures in docs/performance.md).
"""

import math

import numpy

from layers import backend, conv, dropout, linear, lrn, pool, relu, softmax
from layers import layout as layouts
from refnet import arch as arch_table
from refnet import init as init_schemes
from refnet.columns import Placement, default_devices

LRN_MODES = ("column", "all")
DROPOUT_MODES = dropout.MODES
CONV_CACHES = ("columns", "input")   # what a conv keeps for backward (layers.conv keep_cols)
CONV_ALGOS = ("winograd", "gemm")    # winograd: stride-1 layers by layers.winograd


class AlexNet:
    """The paper's network on NumPy or CuPy, in one or two columns.

    ``backend``: ``"numpy"``, ``"cupy"``, or an array namespace object (the test suite's
    device-tagging backend). ``devices``: one device index per column; by default CuPy
    uses devices 0 and 1 with two GPUs, else 0 for both (and NumPy the CPU).
    Parameters are zero until ``init`` or ``load_state_dict``. Input images are
    ``spec.input_size`` square (227 for ``alexnet``: the paper's 224 gives no integer
    55x55 conv1 output; see ``refnet.arch``).
    """

    def __init__(self, arch="alexnet", dtype="float32", backend="numpy", *, num_classes=None,
                 columns=2, lrn=True, lrn_mode="column", lrn_size=5, lrn_alpha=1e-4,
                 lrn_beta=0.75, lrn_k=2.0, pool=(3, 2), dropout=0.5, dropout_mode="paper",
                 devices=None, conv_cache="columns", conv_algo="winograd", layout="CHWN"):
        self.spec = arch_table.get_arch(arch)
        self.dtype = backend_dtype(dtype)
        self.xp = backend_namespace(backend)
        if lrn_mode not in LRN_MODES:
            raise ValueError(f"lrn_mode must be one of {LRN_MODES}, got {lrn_mode!r}")
        if dropout_mode not in DROPOUT_MODES:
            raise ValueError(f"dropout_mode must be one of {DROPOUT_MODES}, "
                             f"got {dropout_mode!r}")
        if conv_cache not in CONV_CACHES:
            raise ValueError(f"conv_cache must be one of {CONV_CACHES}, got {conv_cache!r}")
        self.keep_cols = conv_cache == "columns"
        if conv_algo not in CONV_ALGOS:
            raise ValueError(f"conv_algo must be one of {CONV_ALGOS}, got {conv_algo!r}")
        self.conv_algo = conv_algo
        self.layout = layouts.check_layout("AlexNet", layout)
        self._axis = layouts.channel_axis(self.layout)      # channels of the conv maps
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        pool = tuple(pool)
        if len(pool) != 2 or any(int(v) != v or v < 1 for v in pool):
            raise ValueError(f"pool must be (window, stride) of positive integers, "
                             f"got {pool!r}")
        self.pool = (int(pool[0]), int(pool[1]))
        self.columns = columns
        self.shapes = arch_table.param_shapes(self.spec, columns=columns,
                                              num_classes=num_classes, pool=self.pool)
        self.num_classes = self.shapes["fc8.bias"][0]
        self.lrn = bool(lrn)
        self.lrn_mode = lrn_mode
        if int(lrn_size) != lrn_size or lrn_size < 1 or lrn_size % 2 == 0:
            raise ValueError(f"lrn_size must be a positive odd integer, got {lrn_size!r}")
        self.lrn_params = dict(size=int(lrn_size), alpha=float(lrn_alpha),
                               beta=float(lrn_beta), k=float(lrn_k))
        self.dropout = float(dropout)
        self.dropout_mode = dropout_mode
        if devices is None:
            devices = default_devices(self.xp, columns)
        self.placement = Placement(self.xp, columns, devices, self.shapes)
        self.devices = self.placement.devices
        # params[c]: {name: shard of column c}; fc8 only in column 0.
        self.params = [dict() for _ in range(columns)]
        for name, shape in self.shapes.items():
            for c, r0, r1 in self.placement.rows[name]:
                with self.placement.device(c):
                    self.params[c][name] = self.xp.zeros((r1 - r0,) + shape[1:], self.dtype)

    # -- parameters ------------------------------------------------------------------
    def init(self, seed=0, scheme="paper"):
        """Draw the initial parameters (``refnet.init``: "paper", "caffe" or "he")."""
        self.load_state_dict(init_schemes.initial_params(
            self.shapes, seed=seed, scheme=scheme, dtype=self.dtype))
        return self

    def state_dict(self):
        """``{name: NumPy array}`` in PyTorch's names and the grouped single-device
        shapes (copies on the host)."""
        return {name: self.placement.gather(name, self._shards(self.params, name))
                for name in self.shapes}

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
        for name in self.shapes:
            host = numpy.asarray(backend.asnumpy(sd[name]), dtype=self.dtype)
            if not numpy.all(numpy.isfinite(host)):
                raise ValueError(f"state_dict[{name!r}] has non-finite values")
            for c, shard in self.placement.split(name, host):
                self.params[c][name] = shard

    def num_params(self):
        """Number of parameters (60,965,224 for ``alexnet``)."""
        return sum(math.prod(shape) for shape in self.shapes.values())

    def param_counts(self):
        """``{layer: number of parameters}`` per layer (weights and biases)."""
        out = {}
        for name, shape in self.shapes.items():
            layer = name.rsplit(".", 1)[0]
            out[layer] = out.get(layer, 0) + math.prod(shape)
        return out

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
        ``numpy.random.Generator``; one full (N, width) mask for fc6 then fc7, so the
        draws do not depend on the number of columns or the backend) or given in
        ``masks`` (``{"fc6": (N, 4096), "fc7": (N, 4096)}``, arrays of 0/1).
        """
        logits, _ = self._forward(x, train, rng, masks, keep=False)
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

    def loss_and_grad_columns(self, x, labels, train=True, rng=None, masks=None):
        """(loss, per-column gradients): ``grads[c]`` holds column c's shards on its
        device, keyed and split like ``params[c]``; what ``SGD.step`` takes without
        assembling full arrays."""
        logits, caches = self._forward(x, train, rng, masks)
        P = self.placement
        with P.device(0):
            labels = self._labels(labels, logits.shape[0])
            loss, lcache = softmax.forward(logits, labels)
            dlogits = softmax.backward(self.dtype.type(1), lcache)
        grads = self._backward(dlogits, caches)
        return float(loss), grads

    # -- internals -------------------------------------------------------------------
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

    def _dropout_mask(self, name, n, train, rng, masks):
        """Column shards of a full (N, width) dropout mask, or None to let nothing drop."""
        if not train or self.dropout == 0:
            return None
        width = self.shapes[f"{name}.bias"][0]
        if masks is not None and name in masks:
            full = backend.asnumpy(masks[name])          # to the host, then to each column
            if tuple(full.shape) != (n, width):
                raise ValueError(f"masks[{name!r}] must have shape ({n}, {width}), "
                                 f"got {tuple(full.shape)}")
        else:
            if rng is None:
                rng = numpy.random.default_rng()
            full = rng.random((n, width)) >= self.dropout   # keep-mask, as layers.dropout
        w = width // self.columns
        return [self.placement.put(numpy.ascontiguousarray(full[:, c * w:(c + 1) * w]), c)
                for c in range(self.columns)]                # (N, width / columns) each

    def _forward(self, x, train, rng, masks, keep=True):
        """(logits, caches); with ``keep=False`` no layer cache outlives its layer."""
        self._check_input(x)
        P, cols = self.placement, range(self.columns)
        caches = [dict() if keep else _Discard() for _ in cols]
        n = x.shape[0]
        # maps in the net's layout from here to pool5: (C, S, S, N) for CHWN, transposed
        # once on column 0's device and given to every column from there
        with P.device(0):
            x = layouts.transpose(P.put(x, 0), "NCHW", self.layout)
        h = P.broadcast(x)
        for i in (1, 2):
            h = self._conv_relu(h, f"conv{i}", caches)
            if self.lrn:
                h = self._lrn_forward(h, f"lrn{i}", caches)
            h = self._pool_forward(h, f"pool{i}", caches)
        h = P.exchange(h, axis=self._axis)                   # both columns' C2 channels
        for i in (3, 4, 5):
            h = self._conv_relu(h, f"conv{i}", caches)
        h = self._pool_forward(h, "pool5", caches)           # (C5, S5, S5, N) per column
        # flattened, pool5's features sit where its channels were: (N, F) or (F, N)
        h = P.exchange(self._flatten(h, n), axis=self._axis)
        h = [a.T for a in h] if self._axis == 0 else h       # (N, F6) per column (views)
        for name in ("fc6", "fc7"):
            h = self._fc_forward(h, name, caches)
            h = self._relu_forward(h, name, caches)
            mask = self._dropout_mask(name, n, train, rng, masks)
            h = self._dropout_forward(h, name, caches, train, mask)
            h = P.exchange(h, dst=[0] if name == "fc7" else None)
        (logits,) = self._fc_forward(h, "fc8", caches)       # (N, K) on column 0
        return logits, caches

    def _backward(self, dlogits, caches):
        P, cols = self.placement, range(self.columns)
        grads = [dict() for _ in cols]
        d = self._fc_backward([dlogits], "fc8", caches, grads)        # (N, F8) on column 0
        half = self.shapes["fc7.bias"][0] // self.columns
        d = P.exchange_backward(d, [half] * self.columns, dst=[0])    # (N, F7/cols) each
        for name, prev in (("fc7", "fc6"), ("fc6", None)):
            d = self._dropout_backward(d, name, caches)
            d = self._relu_backward(d, name, caches)
            d = self._fc_backward(d, name, caches, grads)
            if prev is not None:
                half = self.shapes[f"{prev}.bias"][0] // self.columns
                d = P.exchange_backward(d, [half] * self.columns)
        shapes5 = [caches[c]["pool5"].argmax.shape for c in cols]     # pool5's output
        if self._axis == 0:
            d = [g.T for g in d]                                      # (F6, N) views
        widths = [math.prod(layouts.dims(s, self.layout)[1:]) for s in shapes5]  # C*S*S
        d = P.exchange_backward(d, widths, axis=self._axis)
        d = [d[c].reshape(shapes5[c]) for c in cols]                  # (C5, S5, S5, N)
        d = self._pool_backward(d, "pool5", caches)
        for i in (5, 4, 3):
            d = self._conv_relu_backward(d, f"conv{i}", caches, grads)
        width2 = self.shapes["conv2.bias"][0] // self.columns
        d = P.exchange_backward(d, [width2] * self.columns, axis=self._axis)
        for i in (2, 1):
            d = self._pool_backward(d, f"pool{i}", caches)
            if self.lrn:
                d = self._lrn_backward(d, f"lrn{i}", caches)
            d = self._conv_relu_backward(d, f"conv{i}", caches, grads)
        return grads

    def _flatten(self, h, n):
        """pool5's maps as (N, F) for NCHW or (F, N) for CHWN, F in (C, S, S) order."""
        return [a.reshape(n, -1) if self.layout == "NCHW" else a.reshape(-1, n) for a in h]

    # Each helper runs one layer in every column (or column 0 only, for fc8) through
    # ``Placement.each``: under that column's device, keeping the caches per column.
    def _conv_relu(self, h, name, caches):
        spec = self.spec.convs[int(name[-1]) - 1]
        winograd = self.conv_algo == "winograd" and spec.stride == 1
        algo = "winograd" if winograd else "gemm"

        cols = None
        if algo == "gemm" and self.placement.shared_input(h):
            # conv1: both columns read the same image on one device: one im2col for both,
            # its bands of rows copied by the columns' threads
            with self.placement.device(0):
                cols, fills = conv.im2col_parts(h[0], spec.kernel, spec.kernel,
                                                stride=spec.stride, pad=spec.pad,
                                                layout=self.layout, parts=self.columns)
            self.placement.each(lambda c, fill: fill(), fills)

        def column(c, a):
            w, b = self.params[c][f"{name}.weight"], self.params[c][f"{name}.bias"]
            y, caches[c][name] = conv.forward(a, w, b, stride=spec.stride, pad=spec.pad,
                                              keep_cols=self.keep_cols, algo=algo,
                                              cols=cols, layout=self.layout)
            y, caches[c][f"{name}.relu"] = relu.forward(y)
            return y
        return self.placement.each(column, h)

    # Backward pops each cache as its layer is done, so what a layer kept is freed
    # before the layers below it allocate (the step's peak memory).
    def _conv_relu_backward(self, d, name, caches, grads):
        def column(c, g):
            g = relu.backward(g, caches[c].pop(f"{name}.relu"))
            # conv1's input is the image: no gradient needed there.
            dx, grads[c][f"{name}.weight"], grads[c][f"{name}.bias"] = \
                conv.backward(g, caches[c].pop(name), need_dx=name != "conv1")
            return dx
        return self.placement.each(column, d)

    def _pool_forward(self, h, name, caches):
        z, s = self.pool

        def column(c, a):
            y, caches[c][name] = pool.forward(a, size=z, stride=s, layout=self.layout)
            return y
        return self.placement.each(column, h)

    def _pool_backward(self, d, name, caches):
        return self.placement.each(lambda c, g: pool.backward(g, caches[c].pop(name)), d)

    def _lrn_halo(self, name):
        if self.lrn_mode == "column" or self.columns == 1:
            return 0
        width = self.shapes[f"conv{name[-1]}.bias"][0] // self.columns
        return min(self.lrn_params["size"] // 2, width)

    def _lrn_forward(self, h, name, caches):
        n, axis = self._lrn_halo(name), self._axis
        h = self.placement.halo_extend(h, n, axis)           # C + n channels with a halo

        def column(c, a):
            y, caches[c][name] = lrn.forward(a, **self.lrn_params, layout=self.layout)
            return y
        return self.placement.halo_own(self.placement.each(column, h), n, axis)  # C channels

    def _lrn_backward(self, d, name, caches):
        n, axis = self._lrn_halo(name), self._axis
        d = self.placement.halo_pad(d, n, axis)
        out = self.placement.each(lambda c, g: lrn.backward(g, caches[c].pop(name)), d)
        return self.placement.halo_backward(out, n, axis)

    def _fc_forward(self, h, name, caches):
        def column(c, a):
            w, b = self.params[c][f"{name}.weight"], self.params[c][f"{name}.bias"]
            y, caches[c][name] = linear.forward(a, w, b)
            return y
        return self.placement.each(column, h)

    def _fc_backward(self, d, name, caches, grads):
        def column(c, g):
            dx, grads[c][f"{name}.weight"], grads[c][f"{name}.bias"] = \
                linear.backward(g, caches[c].pop(name))
            return dx
        return self.placement.each(column, d)

    def _relu_forward(self, h, name, caches):
        def column(c, a):
            y, caches[c][f"{name}.relu"] = relu.forward(a)
            return y
        return self.placement.each(column, h)

    def _relu_backward(self, d, name, caches):
        return self.placement.each(
            lambda c, g: relu.backward(g, caches[c].pop(f"{name}.relu")), d)

    def _dropout_forward(self, h, name, caches, train, mask):
        if self.dropout == 0:
            return h

        def column(c, a):
            m = None if mask is None else mask[c]
            y, caches[c][f"{name}.dropout"] = dropout.forward(
                a, p=self.dropout, train=train, mask=m, mode=self.dropout_mode)
            return y
        return self.placement.each(column, h)

    def _dropout_backward(self, d, name, caches):
        if self.dropout == 0:
            return d
        return self.placement.each(
            lambda c, g: dropout.backward(g, caches[c].pop(f"{name}.dropout")), d)


class _Discard(dict):
    """A cache store for forward-only passes: drops what it is given."""

    def __setitem__(self, key, value):
        pass


def backend_namespace(name):
    """The array module for ``"numpy"``/``"cupy"``, or a namespace object given as is."""
    if isinstance(name, str):
        return backend.backend_module(name)
    if name is numpy or hasattr(name, "Device") and hasattr(name, "to_device"):
        return name
    cupy = backend.cupy_module()
    if cupy is not None and name is cupy:
        return name
    raise ValueError(f"backend must be 'numpy', 'cupy' or an array namespace, got {name!r}")


def backend_dtype(dtype):
    return backend.as_dtype(dtype)
