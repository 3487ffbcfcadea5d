"""Runs of column-local layers, each column's part in one call: the network's passes.

The network is a list of layers, each running in every column (``refnet.network``). A
layer is column-local (``fusable``) when each column computes its part from its own
data alone: conv (but conv1 on one device, which the columns share), ReLU, LRN within a
column, pooling, dropout, the fully-connected layers. Between two exchanges the layers
are all column-local, and each column can run the whole run of them at once: one
``Placement.each`` call per run instead of one per layer. On the CPU each call hands
work to the column thread and waits for it (about 50 us on two cores); the demo
network's step makes about 45 such calls a step, a run each about 13
(docs/performance.md). The arithmetic is the same: each column runs the same layer
functions in the same order.

``forward(net, layers, h, run, caches)`` runs the list and returns its output; the runs
it made are kept in ``run.segments`` for ``backward(net, run, caches, d, grads,
on_grads)``, which goes through the same runs in reverse. Every layer's cache ends in
``caches[name]`` as the layer itself would keep it (a list of per-column caches); in
backward each cache is dropped as soon as its layer is done, inside the run too, so the
memory a layer kept is free before the layers below allocate theirs. With ``on_grads``
(a data-parallel reducer's hook, called after each layer with weights) backward runs
layer by layer, so that each layer's gradients are sent as soon as they exist.
"""

__all__ = ["forward", "backward"]


def forward(net, layers, h, run, caches):
    """The output of ``layers`` for h (a list aligned with the columns); caches kept in
    ``caches`` when ``run.keep``; the runs in ``run.segments``."""
    run.segments, i = [], 0
    while i < len(layers):
        j = i + 1
        if layers[i].fusable(net, h):
            while j < len(layers) and layers[j].fusable(net, None):
                j += 1
        run.segments.append(layers[i:j])
        if j == i + 1:
            h, cache = layers[i].forward(net, h, run)
            if run.keep:
                caches[layers[i].name] = cache
            del cache                          # eval: freed before the next layer runs
        else:
            h = _forward_run(net, layers[i:j], h, run, caches)
        i = j
    return h


def _forward_run(net, segment, h, run, caches):
    extras = [layer.prepare(net, run, len(h)) for layer in segment]   # in the list's order

    def column(c, a, *extra):
        kept = []
        for layer, e in zip(segment, extra):
            a, cache = layer.column_forward(net, c, a, run, e)
            kept.append(cache if run.keep else None)
        return a, kept
    out = net.placement.each(column, h, *extras)
    if run.keep:
        for k, layer in enumerate(segment):
            caches[layer.name] = [kept[k] for _, kept in out]
    return [a for a, _ in out]


def backward(net, run, caches, d, grads, on_grads=None):
    """The gradient of the first layer's input (None for the image), through the runs
    of ``run.segments`` in reverse; parameter gradients into ``grads``."""
    for segment in reversed(run.segments):
        if len(segment) == 1 or on_grads is not None:
            for layer in reversed(segment):
                d = layer.backward(net, d, caches.pop(layer.name), grads)
                if on_grads is not None and net.key(layer.name, "weight") in net.shapes:
                    on_grads(layer.name, grads)
            continue
        layers = segment[::-1]
        # each column's caches, last layer first, in a list its thread empties as it goes
        stacks = [[] for _ in d]
        for layer in layers:
            for c, cache in enumerate(caches.pop(layer.name)):
                stacks[c].append(cache)

        def column(c, g, stack):
            for layer in layers:
                g = layer.column_backward(net, c, g, stack[0], grads)
                del stack[0]                   # this layer's cache is free now
            return g
        d = net.placement.each(column, d, stacks)
        del stacks
    return d
