"""Every number a restructure must not change, written to one .npz file, and a comparison.

    python tools/fingerprint.py write before.npz     # on the code before the change
    python tools/fingerprint.py write after.npz      # on the code after it
    python tools/fingerprint.py compare before.npz after.npz

For each case (arch x layout x dtype, plus one-column, GAP-head and GEMM cases): the
losses of 2 SGD steps with dropout, the eval logits after them, and every parameter and
velocity. ``compare`` prints a table and exits 1 unless every array is bit-identical.
``alexnet`` runs at a 67-pixel input (its layers, widths and classes; pool5 is 1x1).
"""

import dataclasses
import sys

import numpy

from refnet import ARCHS, SGD, AlexNet

SMALL_ALEXNET = dataclasses.replace(ARCHS["alexnet"], input_size=67)

CASES = {}
for _arch in ("alexnet", "demo", "tiny"):
    for _layout in ("CHWN", "NCHW"):
        for _dtype in ("float32", "float64"):
            CASES[f"{_arch}-{_layout}-{_dtype}"] = dict(arch=_arch, layout=_layout, dtype=_dtype)
CASES["demo-columns1-float64"] = dict(arch="demo", columns=1, dtype="float64")
CASES["demo-gap-float64"] = dict(arch="demo", head="gap", dtype="float64")
CASES["demo-gemm-float32"] = dict(arch="demo", conv_algo="gemm", dtype="float32")
CASES["tiny-lrnall-float64"] = dict(arch="tiny", lrn_mode="all", dtype="float64")


def run_case(arch, batch=4, steps=2, **options):
    spec = SMALL_ALEXNET if arch == "alexnet" else ARCHS[arch]
    net = AlexNet(arch=spec, **options).init(seed=3, scheme="he")
    opt = SGD(net, lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = numpy.random.default_rng(7)
    s = spec.input_size
    out = {}
    for step in range(steps):
        x = rng.standard_normal((batch, 3, s, s)).astype(net.dtype)
        labels = rng.integers(0, net.num_classes, size=batch)
        loss, grads = net.loss_and_grad_columns(x, labels, train=True, rng=rng)
        opt.step(grads)
        out[f"loss{step}"] = numpy.array(loss)
    x = rng.standard_normal((batch, 3, s, s)).astype(net.dtype)
    out["logits"] = numpy.asarray(net.forward(x))
    for name, value in net.state_dict().items():
        out[f"param:{name}"] = value
    for name, value in net.gather(opt.velocity).items():
        out[f"velocity:{name}"] = value
    return out


def write(path):
    arrays = {}
    for case, options in CASES.items():
        for key, value in run_case(**options).items():
            arrays[f"{case}/{key}"] = value
        print(f"{case}: done", flush=True)
    numpy.savez(path, **arrays)


def compare(before_path, after_path):
    before, after = numpy.load(before_path), numpy.load(after_path)
    ok = True
    print(f"{'case':28} {'arrays':>6} {'identical':>9} {'max |diff|':>11}")
    for case in CASES:
        keys = [k for k in before.files if k.startswith(case + "/")]
        same, worst = 0, 0.0
        for k in keys:
            if k not in after.files:
                ok = False
                continue
            a, b = before[k], after[k]
            if a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes():
                same += 1
            else:
                worst = max(worst, float(numpy.max(numpy.abs(a - b))))
        ok = ok and same == len(keys) and len(keys) > 0
        print(f"{case:28} {len(keys):6d} {same:9d} {worst:11.3g}")
    print("bit-identical" if ok else "DIFFERENT")
    return ok


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(0 if compare(sys.argv[2], sys.argv[3]) else 1)
    else:
        sys.exit(__doc__)
