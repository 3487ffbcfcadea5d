"""CuPy against NumPy: every layer and the whole two-column network, same inputs.

    python tools/gpu_agreement.py [--arch demo] [--batch 8] [--backend cupy]

For each layer of the grouped single-device form (shapes from ``bench.layers``' layer
table; conv, ReLU, LRN and pooling in both map layouts, NCHW and the network's CHWN) and
for the whole network (loss, logits and all 16 gradients, train mode with the
same host-drawn dropout masks), runs refnet on NumPy and on ``--backend`` and prints the
largest relative difference, max|a - b| / max|b|, against a tolerance: float64 1e-12
(round-off of a different summation order), float32 1e-4 (cuBLAS/TF32-free float32
GEMMs sum in another order; the depth of the network's reductions, ~10^4 terms, times a
float32 ulp of 6e-8, stays well under it). The network's two columns run in two device
contexts (devices 0 and 1 with two GPUs, both 0 with one: the same code path).

``--backend numpy`` compares NumPy with itself: the CPU-safe dry run of this script.
Exit status 1 if anything exceeds its tolerance.
"""

import argparse
import sys

import numpy

from refnet import NetOptions, build_network
from refnet.bench.layers import MAP_KINDS, layer_cases, refnet_layer
from refnet.layers import backend
from refnet.layers.layout import LAYOUTS, transpose
from refnet.options import CHOICES
from refnet.verify.compare import errors

TOLERANCE = {"float64": 1e-12, "float32": 1e-4}


def rel(a, b):
    """verify's relative error, max|a - b| / max|b|, of host copies."""
    return errors(backend.asnumpy(a), backend.asnumpy(b))[1]


def flatten(out):
    """Arrays of a layer's forward or backward result (caches dropped)."""
    if isinstance(out, (list, tuple)):
        arrays = []
        for item in out:
            arrays += flatten(item)
        return arrays
    return [out] if hasattr(out, "shape") else []


def layer_rows(xp, arch, batch, dtype):
    net = build_network(NetOptions(arch=arch, dtype=dtype))
    rows = []
    rng = numpy.random.default_rng(0)
    for name, kind, shape, p in layer_cases(net, batch):
        x = rng.standard_normal(shape).astype(dtype)
        for layout in LAYOUTS if kind in MAP_KINDS else ("NCHW",):
            xl = transpose(x, "NCHW", layout)
            results = []
            for mod in (numpy, xp):
                fwd, bwd = refnet_layer(
                    mod, kind, mod.asarray(xl), p, numpy.random.default_rng(1), layout
                )
                out = fwd()
                results.append(
                    (flatten(out[0] if kind != "lrn" else [y for y, _ in out]), flatten(bwd(out)))
                )
            (y0, g0), (y1, g1) = results
            label = name if layout == "NCHW" else f"{name} {layout}"
            rows.append((label, "forward", max(rel(a, b) for a, b in zip(y1, y0, strict=True))))
            rows.append((label, "backward", max(rel(a, b) for a, b in zip(g1, g0, strict=True))))
    return rows


def network_rows(backend_name, arch, batch, dtype):
    opts = NetOptions(arch=arch, dtype=dtype)
    ref = build_network(opts).init(seed=3, scheme="he")
    net = build_network(opts.replace(backend=backend_name)).init(seed=3, scheme="he")
    rng = numpy.random.default_rng(5)
    s = ref.spec.input_size
    x = rng.standard_normal((batch, 3, s, s)).astype(dtype)
    labels = rng.integers(0, ref.num_classes, batch)
    loss0, g0 = ref.loss_and_grad(x, labels, train=True, rng=numpy.random.default_rng(7))
    loss1, g1 = net.loss_and_grad(
        net.xp.asarray(x), labels, train=True, rng=numpy.random.default_rng(7)
    )
    rows = [
        ("network", "loss", rel(numpy.float64(loss1), numpy.float64(loss0))),
        ("network", "logits", rel(net.forward(net.xp.asarray(x)), ref.forward(x))),
    ]
    rows += [("network", f"d{name}", rel(g1[name], g0[name])) for name in g0]
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="demo", choices=CHOICES["arch"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--backend", default="cupy", choices=CHOICES["backend"])
    args = p.parse_args(argv)
    xp = backend.backend_module(args.backend)
    failed = 0
    for dtype in ("float64", "float32"):
        tol = TOLERANCE[dtype]
        rows = layer_rows(xp, args.arch, args.batch, dtype)
        rows += network_rows(args.backend, args.arch, args.batch, dtype)
        for layer, quantity, err in rows:
            ok = err <= tol
            failed += not ok
            print(
                f"{dtype:8s} {layer:13s} {quantity:14s} {err:10.2e} {tol:8.0e} "
                f"{'PASS' if ok else 'FAIL'}"
            )
    print(
        f"{args.backend} vs numpy ({args.arch}, batch {args.batch}): "
        f"{'all PASS' if not failed else f'{failed} FAIL'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
