"""``python -m bench``: refnet's training step against a PyTorch twin, side by side.

Times, interleaved in one process, refnet and PyTorch on the same architecture, batch,
dtype and weights: the whole training step (forward, backward, SGD), forward only, and
each layer (forward and backward apart; PyTorch's as the grouped single-device layer with
its threads, NCHW; ours as the network runs it, each column's share on its own core in
the network's layout, batch innermost by default). Reports the
median and min/max over the timed repeats (after warm-up), images/s, the ratio
refnet/PyTorch (> 1 means refnet is faster), the effective GFLOP/s against this
machine's GEMM peak (measured here), and the peak resident memory of each side's
training step (each measured in a fresh subprocess).

Environment, printed with the results:
- The BLAS library, kernel and threads (threadpoolctl). On machines that set
  ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (older OpenBLAS needed them), the bench
  re-executes itself once with BOTH unset so OpenBLAS picks its native kernel, and says
  so; ``--keep-env`` turns that off. Tests and CI never change them.
- glibc returns large freed buffers to the kernel and re-faults them on every call,
  which halves PyTorch's speed here; the bench sets ``MALLOC_MMAP_THRESHOLD_`` and
  ``MALLOC_TRIM_THRESHOLD_`` for both sides (in the same re-exec), and
  ``MALLOC_ARENA_MAX=1`` so refnet's second column thread shares that heap
  (``refnet.cpu``; PyTorch's step measured the same with and without it).
- ``OPENBLAS_THREAD_TIMEOUT=4`` so idle BLAS threads stop spinning.
- PyTorch gets ``torch.set_num_threads`` equal to the BLAS threads.

Without torch installed the bench still runs and reports refnet alone. On a GPU
(``--device gpu``) PyTorch runs with cuDNN on the same card; ``--tf32`` allows TF32 on
both sides (CuPy's ``CUPY_TF32=1`` and PyTorch's matmul/cuDNN flags).

The PyTorch network twin is ``verify.twin_network.TwinAlexNet``, imported lazily, so the
bench runs without torch.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy

from data.progress import Progress
from layers import backend, conv, linear, lrn, pool, relu, softmax
from layers.layout import along, channel_axis, transpose
from refnet.arch import get_arch
from refnet.network import AlexNet
from refnet.sgd import SGD

REEXEC_FLAG = "REFNET_BENCH_REEXEC"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "17179869184",
              "MALLOC_ARENA_MAX": "1"}


# -- environment ---------------------------------------------------------------------
def reexec_if_needed(argv, keep_env):
    """Re-run this command once with the OpenBLAS overrides unset and the malloc settings."""
    if keep_env or os.environ.get(REEXEC_FLAG):
        return
    env = dict(os.environ)
    changed = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in env]
    missing = [k for k, v in MALLOC_ENV.items() if env.get(k) != v]
    if not changed and not missing and env.get("OPENBLAS_THREAD_TIMEOUT"):
        return
    for k in changed:
        del env[k]
    env.update(MALLOC_ENV)
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    env[REEXEC_FLAG] = "1"
    print(f"bench: re-executing with {', '.join(changed) or 'OPENBLAS_CORETYPE/L2_SIZE (not set)'} unset "
          f"and {', '.join(MALLOC_ENV)} set (both sides)", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "bench", *argv], env)


def blas_info():
    """[{library, version, kernel, threads}] from threadpoolctl (empty if not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                    "filepath")}
            for d in threadpool_info() if d.get("user_api") == "blas"]


def blas_threads():
    info = blas_info()
    return info[0]["num_threads"] if info else os.cpu_count()


def load_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# -- FLOPs --------------------------------------------------------------------------------
def step_flops(net):
    """(forward FLOPs, training-step FLOPs) per image, counted from the layer shapes.

    A multiply-add is 2 FLOPs. Forward: every conv and fc GEMM. Backward: dW for every
    layer and dX for every layer but conv1 (its input is the image).
    """
    sizes = net.spec.sizes(net.pool)
    fwd = bwd = 0
    for i in range(1, 6):
        k, cg, kh, kw = net.shapes[f"conv{i}.weight"]
        macs = k * cg * kh * kw * sizes[f"conv{i}"] ** 2
        fwd += 2 * macs
        bwd += 2 * macs * (1 if i == 1 else 2)
    for name in ("fc6", "fc7", "fc8"):
        out, inp = net.shapes[f"{name}.weight"]
        fwd += 2 * out * inp
        bwd += 4 * out * inp
    return fwd, fwd + bwd


# -- timing -------------------------------------------------------------------------------
def timed(fn, sync):
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def summary(times):
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": len(times)}


def interleave(cases, repeats, warmup, sync, desc):
    """Run each named callable ``warmup`` times, then ``repeats`` rounds, alternating."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    out = {name: [] for name in cases}
    bar = Progress(total=repeats * len(cases), desc=desc, unit="run")
    for _ in range(repeats):
        for name, fn in cases.items():
            out[name].append(timed(fn, sync))
            bar.update(1)
    bar.close()
    return {name: summary(t) for name, t in out.items()}


def gemm_peak(xp, dtype, sync, n=2048, repeats=10):
    """GFLOP/s of an n x n x n GEMM in ``dtype``: the fastest of ``repeats`` (a peak; the
    median moved by up to 30% between runs here, and a high peak is the conservative
    reference for the fraction-of-peak figures)."""
    rng = numpy.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    b = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    xp.matmul(a, b)
    times = [timed(lambda: xp.matmul(a, b), sync) for _ in range(repeats)]
    return 2 * n ** 3 / min(times) / 1e9


# -- the two sides --------------------------------------------------------------------------
class RefnetSide:
    def __init__(self, arch, batch, dtype, backend_name, seed=0, conv_cache="columns",
                 conv_algo="winograd"):
        self.net = AlexNet(arch, dtype, backend_name, conv_cache=conv_cache,
                           conv_algo=conv_algo).init(seed)
        self.xp = self.net.xp
        self.opt = SGD(self.net, lr=1e-4)
        rng = numpy.random.default_rng(seed)
        s = self.net.spec.input_size
        self.x = self.xp.asarray(rng.standard_normal((batch, 3, s, s)).astype(dtype))
        self.labels = rng.integers(0, self.net.num_classes, batch)
        self.rng = numpy.random.default_rng(seed + 1)

    def step(self):
        _, grads = self.net.loss_and_grad_columns(self.x, self.labels, train=True,
                                                  rng=self.rng)
        self.opt.step(grads)

    def forward(self):
        self.net.forward(self.x, train=False)

    def sync(self):
        cupy = backend.cupy_module()
        if cupy is not None and self.xp is cupy:
            cupy.cuda.Device().synchronize()


class TorchSide:
    def __init__(self, torch, refnet_side, device):
        from verify.twin_network import TwinAlexNet
        net = refnet_side.net
        geometry = [(c.stride, c.pad) for c in net.spec.convs]
        self.torch = torch
        self.device = device
        self.model = TwinAlexNet(net.state_dict(), geometry, pool=net.pool).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9,
                                   weight_decay=5e-4)
        x = backend.asnumpy(refnet_side.x)
        self.x = torch.from_numpy(x).to(device)
        self.labels = torch.from_numpy(numpy.asarray(refnet_side.labels)).to(device)
        n = x.shape[0]
        rng = numpy.random.default_rng(2)
        self.masks = {name: torch.from_numpy(rng.random((n, net.shapes[f"{name}.bias"][0]))
                                             >= net.dropout).to(device)
                      for name in ("fc6", "fc7")}

    def step(self):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(self.x, train=True, masks=self.masks)
        torch.nn.functional.cross_entropy(logits, self.labels).backward()
        self.opt.step()

    def forward(self):
        with self.torch.no_grad():
            self.model(self.x, train=False)

    def sync(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()


# -- per-layer cases (the grouped single-device form) -------------------------------------
def layer_cases(net, batch):
    """[(name, kind, x shape, params)] for every layer of the grouped form, in order."""
    sizes, shapes = net.spec.sizes(net.pool), net.shapes
    cases, c_in, s = [], 3, net.spec.input_size
    z, st = net.pool
    for i, spec in enumerate(net.spec.convs, start=1):
        w = shapes[f"conv{i}.weight"]
        algo = "winograd" if net.conv_algo == "winograd" and spec.stride == 1 else "gemm"
        cases.append((f"conv{i}", "conv", (batch, c_in, s, s),
                      dict(w=w, stride=spec.stride, pad=spec.pad, groups=c_in // w[1],
                           algo=algo)))
        c_in, s = w[0], sizes[f"conv{i}"]
        cases.append((f"relu{i}", "relu", (batch, c_in, s, s), {}))
        if i in (1, 2):
            cases.append((f"lrn{i}", "lrn", (batch, c_in, s, s),
                          dict(groups=net.columns if net.lrn_mode == "column" else 1,
                               **net.lrn_params)))
        if i in (1, 2, 5):
            cases.append((f"pool{i}", "pool", (batch, c_in, s, s), dict(size=z, stride=st)))
            s = sizes[f"pool{i}"]
    f_in = c_in * s * s
    for name in ("fc6", "fc7", "fc8"):
        w = shapes[f"{name}.weight"]
        cases.append((name, "linear", (batch, f_in), dict(w=w)))
        f_in = w[0]
    cases.append(("softmax", "softmax", (batch, f_in), {}))
    return cases


MAP_KINDS = ("conv", "relu", "lrn", "pool")   # layers that see the net's map layout


def refnet_layer(xp, kind, x, p, rng, layout="NCHW"):
    """(forward, backward) callables for one layer of ours; backward takes forward's
    output and uses the layer's output as its upstream gradient (timing only). Maps
    (``MAP_KINDS``) are given and computed in ``layout``, the network's."""
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
    """(forward, backward) callables for PyTorch's version of one layer."""
    from verify.twins import lrn_torch
    F = torch.nn.functional
    x = torch.from_numpy(x_np).to(device).requires_grad_(True)
    dtype = x.dtype
    if kind == "conv":
        w = torch.from_numpy(rng.standard_normal(p["w"]).astype(x_np.dtype) * 0.01).to(device)
        b = torch.zeros(p["w"][0], dtype=dtype, device=device)
        w.requires_grad_(True)
        b.requires_grad_(True)
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
        w = torch.from_numpy(rng.standard_normal(p["w"]).astype(x_np.dtype) * 0.01).to(device)
        b = torch.zeros(p["w"][0], dtype=dtype, device=device)
        w.requires_grad_(True)
        b.requires_grad_(True)
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
    G = net.columns
    if kind == "softmax" or name == "fc8" or G == 1:
        return [(shape, p)]
    if kind == "linear":
        return [(shape, dict(p, w=(p["w"][0] // G, p["w"][1])))] * G
    N, C, H, W = shape
    if kind == "conv":
        w = p["w"]
        return [((N, C // p["groups"], H, W), dict(p, w=(w[0] // G,) + w[1:], groups=1))] * G
    return [((N, C // G, H, W), dict(p, groups=1) if kind == "lrn" else p)] * G


def _each_here(fn, *per_column):
    """``Placement.each``'s contract, run one after the other on the calling thread."""
    return [fn(c, *args) for c, args in enumerate(zip(*per_column))]


def bench_layers(ours, theirs, batch, repeats, warmup, form="network"):
    """Per-layer forward and backward times of both sides, interleaved. ``form``:
    "network" runs each of our layers as the network does, its columns' shares through
    ``Placement.each`` (on the CPU concurrently, one core each; conv1 without the
    network's shared im2col); "grouped" calls it once with both columns' channels (the
    grouped single-device layer, as PyTorch's), on the calling thread."""
    net, xp = ours.net, ours.xp
    rng = numpy.random.default_rng(3)
    rows = []
    cases = layer_cases(net, batch)
    bar = Progress(total=len(cases), desc="layers", unit="layer")
    for name, kind, shape, p in cases:
        x_np = rng.standard_normal(shape).astype(net.dtype)
        layout = net.layout if kind in MAP_KINDS else "NCHW"
        row = {"layer": name}
        per_column = []
        shares = column_shares(net, name, kind, shape, p) if form == "network" else [(shape, p)]
        for c, (col_shape, q) in enumerate(shares):
            xc = rng.standard_normal(col_shape).astype(net.dtype)
            with net.placement.device(c):
                xc = xp.asarray(transpose(xc, "NCHW", layout))
                per_column.append(refnet_layer(xp, kind, xc, q, numpy.random.default_rng(4),
                                               layout))
        each = net.placement.each if form == "network" else _each_here
        f = lambda: each(lambda c, fb: fb[0](), per_column)                 # noqa: E731
        b = lambda outs: each(lambda c, fb, out: fb[1](out), per_column, outs)  # noqa: E731
        sides = [("refnet", f, b, ours.sync)]
        if theirs is not None:
            tf, tb = torch_layer(theirs.torch, kind, x_np, p, numpy.random.default_rng(4),
                                 theirs.device)
            sides.append(("torch", tf, tb, theirs.sync))
        samples = {f"{s}_{part}": [] for s, *_ in sides for part in ("forward", "backward")}
        for rep in range(warmup + repeats):
            for side, fwd, bwd, sync in sides:
                tf_ = timed(fwd, sync)
                out = fwd()
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


# -- peak memory (a fresh subprocess per side) ------------------------------------------------
def peak_memory(args, side):
    """Peak RSS (bytes) of a subprocess that builds one side and runs training steps."""
    cmd = [sys.executable, "-m", "bench", "--memory-probe", side, "--arch", args.arch,
           "--batch", str(args.batch), "--dtype", args.dtype, "--device", args.device,
           "--conv-cache", args.conv_cache, "--conv-algo", args.conv_algo, "--keep-env"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss():
    """This process's peak resident set in bytes (VmHWM from /proc; ``None`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Return freed heap memory to the kernel and restart the peak count from the current
    resident set (Linux: ``malloc_trim`` and /proc/self/clear_refs); False if impossible."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def memory_probe(args):
    """Build one side, drop what only set-up needed, then report the peak resident set
    over two training steps (the model, its libraries and the step's working memory)."""
    ours = RefnetSide(args.arch, args.batch, args.dtype, backend_name(args.device),
                      conv_cache=args.conv_cache, conv_algo=args.conv_algo)
    side = ours
    if args.memory_probe == "torch":
        torch = load_torch()
        torch.set_num_threads(blas_threads())
        side = TorchSide(torch, ours, torch_device(args.device))
        del ours
    reset = reset_peak_rss()
    before = peak_rss()
    for _ in range(2):
        side.step()
    print(json.dumps({"peak_rss_bytes": peak_rss(), "rss_before_steps_bytes": before,
                      "peak_reset": reset}))


# -- the command ------------------------------------------------------------------------
def backend_name(device):
    return "cupy" if device == "gpu" else "numpy"


def torch_device(device):
    return "cuda" if device == "gpu" else "cpu"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="alexnet", help="architecture (default alexnet)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1)")
    p.add_argument("--parts", default="step,forward,layers,memory",
                   help="comma list of step, forward, layers, memory (default all)")
    p.add_argument("--no-torch", action="store_true", help="time refnet alone")
    p.add_argument("--conv-cache", default="columns", choices=("columns", "input"),
                   help="what refnet's convs keep for backward (AlexNet conv_cache)")
    p.add_argument("--conv-algo", default="winograd", choices=("winograd", "gemm"),
                   help="refnet's stride-1 convolutions (AlexNet conv_algo)")
    p.add_argument("--layers-as", default="network", choices=("network", "grouped"),
                   help="per-layer rows: our layers as the network runs them (each "
                        "column's share, concurrently; default) or as one grouped call")
    p.add_argument("--tf32", action="store_true", help="GPU: allow TF32 on both sides")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--keep-env", action="store_true",
                   help="do not re-execute with the OpenBLAS overrides unset")
    p.add_argument("--memory-probe", choices=("refnet", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        p.error(f"--batch and --repeats must be >= 1 and --warmup >= 0, got "
                f"{args.batch}, {args.repeats}, {args.warmup}")
    try:
        get_arch(args.arch)
    except ValueError as e:
        p.error(str(e))
    args.parts = set(args.parts.split(","))
    bad = args.parts - {"step", "forward", "layers", "memory"}
    if bad:
        p.error(f"unknown --parts {sorted(bad)}")
    return args


def run(args):
    if args.device == "gpu" and backend.gpu_count() == 0:
        raise SystemExit("bench: --device gpu needs CuPy and a CUDA device")
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"
    torch = None if args.no_torch else load_torch()
    threads = blas_threads()
    results = {"arch": args.arch, "batch": args.batch, "dtype": args.dtype,
               "conv_cache": args.conv_cache, "conv_algo": args.conv_algo,
               "device": args.device, "blas": blas_info(), "threads": threads,
               "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                      *MALLOC_ENV, "OPENBLAS_THREAD_TIMEOUT")},
               "torch": None if torch is None else torch.__version__}
    if "memory" in args.parts and args.device == "cpu":
        # first, while this process holds no network: each probe is a fresh process
        results["memory"] = {"refnet": peak_memory(args, "refnet")}
        if torch is not None:
            results["memory"]["torch"] = peak_memory(args, "torch")
    ours = RefnetSide(args.arch, args.batch, args.dtype, backend_name(args.device),
                      conv_cache=args.conv_cache, conv_algo=args.conv_algo)
    theirs = None
    if torch is not None:
        torch.set_num_threads(threads)
        if args.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        theirs = TorchSide(torch, ours, torch_device(args.device))
        if args.device == "gpu":
            results["gpu"] = torch.cuda.get_device_name(0)
    fwd_flops, step_fl = step_flops(ours.net)
    peak = gemm_peak(ours.xp, numpy.dtype(args.dtype), ours.sync)
    results["gemm_peak_gflops"] = peak
    results["flops_per_image"] = {"forward": fwd_flops, "step": step_fl}

    def sync():
        ours.sync()
        if theirs is not None:
            theirs.sync()

    for part, flops in (("step", step_fl), ("forward", fwd_flops)):
        if part not in args.parts:
            continue
        cases = {"refnet": getattr(ours, part)}
        if theirs is not None:
            cases["torch"] = getattr(theirs, part)
        res = interleave(cases, args.repeats, args.warmup, sync, part)
        for side in res.values():
            side["images_per_s"] = args.batch / side["median_s"]
            side["gflops"] = flops * args.batch / side["median_s"] / 1e9
            side["fraction_of_gemm_peak"] = side["gflops"] / peak
        if "torch" in res:
            res["speedup_vs_torch"] = res["torch"]["median_s"] / res["refnet"]["median_s"]
        results[part] = res
    if "layers" in args.parts:
        results["layers"] = bench_layers(ours, theirs, args.batch, max(1, args.repeats // 2),
                                         args.warmup, args.layers_as)
        results["layers_as"] = args.layers_as
    return results


def report(r):
    lines = [f"bench: {r['arch']} batch {r['batch']} {r['dtype']} on {r['device']}"
             f" (conv_cache={r['conv_cache']}, conv_algo={r.get('conv_algo', 'gemm')})"
             + (f" ({r['gpu']})" if r.get("gpu") else ""),
             "BLAS: " + "; ".join(f"{b['internal_api']} {b['version']} kernel "
                                   f"{b['architecture']} threads {b['num_threads']}"
                                   for b in r["blas"]) + f"; torch {r['torch']}",
             f"env: {r['env']}",
             f"GEMM peak ({r['dtype']}, 2048^3): {r['gemm_peak_gflops']:.0f} GFLOP/s"]
    for part in ("step", "forward"):
        if part not in r:
            continue
        for side in ("refnet", "torch"):
            if side in r[part]:
                s = r[part][side]
                lines.append(f"{part:8s} {side:7s} median {s['median_s']:.3f} s "
                             f"[{s['min_s']:.3f}, {s['max_s']:.3f}]  {s['images_per_s']:7.1f} img/s"
                             f"  {s['gflops']:6.0f} GFLOP/s ({100 * s['fraction_of_gemm_peak']:.0f}%"
                             f" of GEMM peak)")
        if "speedup_vs_torch" in r[part]:
            lines.append(f"{part:8s} refnet speed / PyTorch speed = "
                         f"{r[part]['speedup_vs_torch']:.2f}x")
    if "layers" in r:
        ours_as = ("as the network runs it (each column's share on its core, concurrently)"
                   if r.get("layers_as", "network") == "network" else
                   "as one grouped call on the BLAS threads")
        lines.append(f"per layer: ours {ours_as}, PyTorch's grouped layer on its threads")
        lines.append(f"{'layer':8s} {'ours fwd':>9s} {'ours bwd':>9s} {'torch fwd':>9s} "
                     f"{'torch bwd':>9s} {'torch/ours (fwd+bwd)':>21s}   (ms)")
        for row in r["layers"]:
            ours = row["refnet_forward"] + row["refnet_backward"]
            t = [row.get("torch_forward"), row.get("torch_backward")]
            ratio = f"{(t[0] + t[1]) / ours:21.2f}" if t[0] is not None else ""
            tf = "".join(f" {1e3 * v:9.1f}" if v is not None else " " * 10 for v in t)
            lines.append(f"{row['layer']:8s} {1e3 * row['refnet_forward']:9.1f} "
                         f"{1e3 * row['refnet_backward']:9.1f}{tf} {ratio}")
    if "memory" in r:
        for side, m in r["memory"].items():
            if m:
                lines.append(f"peak RSS {side:7s} {m['peak_rss_bytes'] / 2**30:.2f} GiB")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.memory_probe:
        return memory_probe(args)
    reexec_if_needed(argv, args.keep_env)
    results = run(args)
    print(report(results))
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.json)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
