"""Each layer of AlexNet timed alone: ours as the network runs it, PyTorch's grouped layer.

    cases = layer_cases(net, batch)        # [(name, kind, x shape, params)], in order
    fwd, bwd = refnet_layer(xp, kind, x, params, rng, layout)
    out = fwd(); bwd(out)                  # our layer's forward, then its backward
    rows = time_layers(ours, theirs, batch, repeats, warmup)   # both sides, interleaved

A case is one layer of the grouped single-device form (both columns in one array, as
PyTorch's twin holds them). ``kind`` is one of conv, relu, lrn, pool, linear, softmax;
the maps of conv, relu, lrn and pool (``MAP_KINDS``) are shaped (N, C, H, W) in the case
and laid out as the network lays them out (``layout``) when ours runs them; linear and
softmax take (N, F). ``column_shares`` splits a case into the shares the network's
columns compute, so ours is timed as the network runs it: each column's share through
``Placement.each`` (on the CPU concurrently, one core each).

The backward callables use the layer's own output as the upstream gradient: they time
the work, not a meaningful gradient.
"""

import statistics

import numpy

from bench.timing import SETTLE_S, settle, timed
from data.progress import Progress
from layers import conv, conv_blocks, linear, lrn, pool, relu, softmax
from layers.layout import along, channel_axis, transpose

MAP_KINDS = ("conv", "relu", "lrn", "pool")   # layers that see the net's map layout


def layer_cases(net, batch):
    """[(name, kind, x shape, params)] for every layer of the grouped form of ``net``, in
    order, at ``batch`` images, read off ``net.options`` and ``net.shapes``. params: conv
    {w (shape), stride, pad, groups, algo}; lrn {groups, size, alpha, beta, k}; pool
    {size, stride}; linear {w (shape)}."""
    opts, shapes = net.options, net.shapes
    sizes = opts.spec.sizes(opts.pool)
    cases, c_in, s = [], 3, opts.spec.input_size
    z, st = opts.pool
    for i, spec in enumerate(opts.spec.convs, start=1):
        w = shapes[net.key(f"conv{i}", "weight")]
        algo = "winograd" if opts.conv_algo == "winograd" and spec.stride == 1 else "gemm"
        cases.append((f"conv{i}", "conv", (batch, c_in, s, s),
                      dict(w=w, stride=spec.stride, pad=spec.pad, groups=c_in // w[1],
                           algo=algo)))
        c_in, s = w[0], sizes[f"conv{i}"]
        cases.append((f"relu{i}", "relu", (batch, c_in, s, s), {}))
        if i in (1, 2) and opts.lrn:
            cases.append((f"lrn{i}", "lrn", (batch, c_in, s, s),
                          dict(groups=opts.columns if opts.lrn_mode == "column" else 1,
                               **opts.lrn_params)))
        if i in (1, 2, 5):
            cases.append((f"pool{i}", "pool", (batch, c_in, s, s), dict(size=z, stride=st)))
            s = sizes[f"pool{i}"]
    f_in = c_in * s * s
    for name in ("fc6", "fc7", "fc8"):
        w = shapes[net.key(name, "weight")]
        cases.append((name, "linear", (batch, f_in), dict(w=w)))
        f_in = w[0]
    cases.append(("softmax", "softmax", (batch, f_in), {}))
    return cases


def refnet_layer(xp, kind, x, p, rng, layout="NCHW"):
    """(forward, backward) callables for one layer of ours on ``xp``, for the input ``x``
    and the case's params ``p`` (weights drawn from ``rng``); backward takes forward's
    result. Maps (``MAP_KINDS``) are given and computed in ``layout``, the network's."""
    dtype = x.dtype
    if kind == "conv":
        w = xp.asarray(rng.standard_normal(p["w"]).astype(dtype) * 0.01)
        b = xp.zeros(p["w"][0], dtype=dtype)
        kw = dict(stride=p["stride"], pad=p["pad"], groups=p["groups"], algo=p["algo"],
                  layout=layout)
        fwd = lambda: conv.forward(x, w, b, **kw)  # noqa: E731
        bwd = lambda y, c: conv.backward(y, c)     # noqa: E731
    elif kind == "lrn":
        g, hyper = p["groups"], {k: p[k] for k in ("size", "alpha", "beta", "k")}
        axis = channel_axis(layout)
        C = x.shape[axis]
        parts = [x[along(axis, slice(i * C // g, (i + 1) * C // g))] for i in range(g)]
        parts = [xp.ascontiguousarray(a) for a in parts]
        fwd = lambda: [lrn.forward(a, **hyper, layout=layout) for a in parts]  # noqa: E731
        return fwd, (lambda out: [lrn.backward(y, c) for y, c in out])
    elif kind == "pool":
        fwd = lambda: pool.forward(x, size=p["size"], stride=p["stride"],  # noqa: E731
                                   layout=layout)
        bwd = lambda y, c: pool.backward(y, c)     # noqa: E731
    elif kind == "relu":
        fwd = lambda: relu.forward(x)              # noqa: E731
        bwd = lambda y, c: relu.backward(y, c)     # noqa: E731
    elif kind == "linear":
        w = xp.asarray(rng.standard_normal(p["w"]).astype(dtype) * 0.01)
        b = xp.zeros(p["w"][0], dtype=dtype)
        fwd = lambda: linear.forward(x, w, b)      # noqa: E731
        bwd = lambda y, c: linear.backward(y, c)   # noqa: E731
    else:
        labels = rng.integers(0, x.shape[1], x.shape[0])
        fwd = lambda: softmax.forward(x, labels)   # noqa: E731
        return fwd, (lambda out: softmax.backward(xp.asarray(1.0, dtype=dtype), out[1]))
    return fwd, (lambda out: bwd(out[0], out[1]))


def torch_layer(torch, kind, x_np, p, rng, device):
    """(forward, backward) callables for PyTorch's version of one layer (the grouped
    single-device layer, NCHW) on ``device``; backward takes forward's output."""
    from verify.twins import lrn_torch
    F = torch.nn.functional
    x = torch.from_numpy(x_np).to(device).requires_grad_(True)
    dtype = x.dtype

    def weights():
        w = torch.from_numpy(rng.standard_normal(p["w"]).astype(x_np.dtype) * 0.01)
        b = torch.zeros(p["w"][0], dtype=dtype)
        return w.to(device).requires_grad_(True), b.to(device).requires_grad_(True)

    if kind == "conv":
        w, b = weights()
        op = lambda: F.conv2d(x, w, b, stride=p["stride"], padding=p["pad"],  # noqa: E731
                              groups=p["groups"])
        inputs = (x, w, b)
    elif kind == "lrn":
        op = lambda: lrn_torch(x, groups=p["groups"], **{k: p[k] for k in  # noqa: E731
                                                           ("size", "alpha", "beta", "k")})
        inputs = (x,)
    elif kind == "pool":
        op = lambda: F.max_pool2d(x, p["size"], p["stride"])  # noqa: E731
        inputs = (x,)
    elif kind == "relu":
        op = lambda: F.relu(x)  # noqa: E731
        inputs = (x,)
    elif kind == "linear":
        w, b = weights()
        op = lambda: F.linear(x, w, b)  # noqa: E731
        inputs = (x, w, b)
    else:
        labels = torch.from_numpy(rng.integers(0, x_np.shape[1], x_np.shape[0])).to(device)
        op = lambda: F.cross_entropy(x, labels)  # noqa: E731
        inputs = (x,)

    def backward(y):
        # The layer's own output as upstream gradient, as on our side (no extra work).
        torch.autograd.grad(y, inputs, grad_outputs=y.detach())
    return op, backward


def column_shares(net, name, kind, shape, p):
    """[(x shape, params)] per column of one grouped-form layer, split as the network
    splits it: conv1 and conv3 read all input channels, conv2/4/5, ReLU, LRN and pooling
    their column's own; every conv and fc layer computes its column's half of the
    outputs; fc8 and the loss live on column 0 alone. (LRN over all channels, Caffe's
    mode, is timed per column without its 2-channel halo.)"""
    G = net.options.columns
    if kind == "softmax" or name == "fc8" or G == 1:
        return [(shape, p)]
    if kind == "linear":
        return [(shape, dict(p, w=(p["w"][0] // G, p["w"][1])))] * G
    N, C, H, W = shape
    if kind == "conv":
        w = p["w"]
        return [((N, C // p["groups"], H, W), dict(p, w=(w[0] // G,) + w[1:], groups=1))] * G
    return [((N, C // G, H, W), dict(p, groups=1) if kind == "lrn" else p)] * G


def _shares_conv1(net, name, p):
    """Whether the network runs this case as its shared conv1 (``refnet.network.Conv``:
    every column on one device, im2col + GEMM)."""
    P = net.placement
    return (name == "conv1" and p["algo"] == "gemm" and net.columns > 1
            and len(set(P.devices)) == 1)


def shared_conv1(net, x, p, rng, layout):
    """(forward, backward) of conv1 as the network runs it with its columns on one
    device: one convolution by blocks (``layers.conv_blocks``) of every column's kernels,
    the output rows split between the columns' threads (``Placement.each``)."""
    P, xp, G = net.placement, net.xp, net.columns
    w = xp.asarray(rng.standard_normal(p["w"]).astype(x.dtype) * 0.01)
    b = xp.zeros(p["w"][0], dtype=x.dtype)
    axis = channel_axis(layout)
    k = p["w"][0] // G

    def forward():
        y, cache, runs = conv_blocks.forward_parts(x, w, b, stride=p["stride"], pad=p["pad"],
                                                   layout=layout, parts=G)
        P.each(lambda c, run: run(), runs)
        return [y[along(axis, slice(c * k, (c + 1) * k))] for c in range(G)], cache

    def backward(out):
        ys, cache = out
        partials = P.each(lambda c, run: run(), conv_blocks.backward_parts(ys, cache, parts=G))
        return conv_blocks.gradients(ys, partials, cache)
    return forward, backward


def _each_in_turn(fn, *per_column):
    """``Placement.each``'s contract, run one after the other on the calling thread."""
    return [fn(c, *args) for c, args in enumerate(zip(*per_column))]


def time_layers(ours, theirs, batch, repeats, warmup, form="network", pause=SETTLE_S):
    """[{layer, refnet_forward, refnet_backward[, torch_forward, torch_backward]}]: the
    median seconds of each layer's forward and backward on both sides (``theirs`` None:
    ours alone), interleaved. ``form``: "network" runs each of our layers as the network
    does, its columns' shares through ``Placement.each`` (conv1 as one convolution by
    blocks over both columns, ``shared_conv1``); "grouped" calls it once with both
    columns' channels (the grouped
    single-device layer, as PyTorch's), on the calling thread. ``pause``: seconds of
    ``bench.timing.settle`` before each timed call."""
    net, xp = ours.net, ours.xp
    dtype, net_layout = net.options.dtype, net.options.layout
    rng = numpy.random.default_rng(3)
    rows = []
    cases = layer_cases(net, batch)
    bar = Progress(total=len(cases), desc="layers", unit="layer")
    for name, kind, shape, p in cases:
        x_np = rng.standard_normal(shape).astype(dtype)
        layout = net_layout if kind in MAP_KINDS else "NCHW"
        row = {"layer": name}
        per_column = []
        shares = column_shares(net, name, kind, shape, p) if form == "network" else [(shape, p)]
        for c, (col_shape, q) in enumerate(shares):
            xc = rng.standard_normal(col_shape).astype(dtype)
            with net.placement.device(c):
                xc = xp.asarray(transpose(xc, "NCHW", layout))
                per_column.append(refnet_layer(xp, kind, xc, q, numpy.random.default_rng(4),
                                               layout))
        each = net.placement.each if form == "network" else _each_in_turn
        f = lambda: each(lambda c, fb: fb[0](), per_column)                 # noqa: E731
        b = lambda outs: each(lambda c, fb, out: fb[1](out), per_column, outs)  # noqa: E731
        if form == "network" and _shares_conv1(net, name, p):
            f, b = shared_conv1(net, xp.asarray(transpose(x_np, "NCHW", layout)), p,
                                numpy.random.default_rng(4), layout)
        sides = [("refnet", f, b, ours.sync)]
        if theirs is not None:
            tf, tb = torch_layer(theirs.torch, kind, x_np, p, numpy.random.default_rng(4),
                                 theirs.device)
            sides.append(("torch", tf, tb, theirs.sync))
        samples = {f"{s}_{part}": [] for s, *_ in sides for part in ("forward", "backward")}
        for rep in range(warmup + repeats):
            for side, fwd, bwd, sync in sides:
                settle(pause)
                tf_ = timed(fwd, sync)
                out = fwd()
                settle(pause)
                tb_ = timed(lambda: bwd(out), sync)
                if rep >= warmup:
                    samples[f"{side}_forward"].append(tf_)
                    samples[f"{side}_backward"].append(tb_)
        for key, t in samples.items():
            row[key] = statistics.median(t)
        rows.append(row)
        bar.update(1)
    bar.close()
    return rows
