"""One-rank smoke run of the NCCL path (tools/gpu_check.sh, step ``nccl``).

    mpiexec -n 1 python tools/nccl_smoke.py [--arch demo --batch 8]

NCCL cannot put two ranks on one GPU, so on a one-GPU machine this is the whole job the
NCCL path can run: MPI starts one rank, ``refnet.distributed.MpiWorld.use_nccl``
bootstraps NCCL through ``cupyx.distributed`` with MPI, and one training step of a CuPy
network sends its gradient buckets during backward (``GradientReducer`` with the hook)
and the last bucket after it. With one rank the sum is the rank's own gradient, so the
reduced gradients must equal the local ones bit for bit; the run prints OK, or what is
missing (mpi4py, the NCCL library) and exits 1.
"""

import argparse
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="demo")
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    try:
        import cupy
        from mpi4py import MPI  # MPI starts here
    except ImportError as e:
        print(f"nccl smoke: cannot run: {e}", file=sys.stderr)
        return 1
    import numpy

    from refnet import NetOptions
    from refnet.distributed import GradientReducer, MpiWorld
    from refnet.network import build_network

    world = MpiWorld()
    print(f"nccl smoke: {MPI.Get_library_version().splitlines()[0]}")
    net = build_network(NetOptions(arch=args.arch, backend="cupy", dtype="float32"))
    net.init(seed=0, scheme="he")
    try:
        world.use_nccl(net.devices[0])
    except Exception as e:  # noqa: BLE001 - reported: the NCCL library may be missing
        print(f"nccl smoke: NCCL did not start: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    rng = numpy.random.default_rng(0)
    s = net.spec.input_size
    x = cupy.asarray(rng.standard_normal((args.batch, 3, s, s)).astype("float32"))
    y = rng.integers(0, net.num_classes, args.batch)
    masks = {k: rng.random((args.batch, w)) >= net.dropout for k, w in net.dropout_widths().items()}
    _, local = net.loss_and_grad_columns(x, y, masks=masks)
    local = [{k: cupy.asnumpy(v) for k, v in g.items()} for g in local]
    reducer = GradientReducer(world, net, bucket_bytes=1 << 20)
    reducer.begin(args.batch, args.batch * world.size)
    loss, grads = net.loss_and_grad_columns(x, y, masks=masks, on_grads=reducer.ready)
    total, _ = reducer.reduce(grads, loss, args.batch, args.batch * world.size)
    cupy.cuda.Device().synchronize()
    bad = [
        k
        for c, g in enumerate(grads)
        for k, v in g.items()
        if not numpy.array_equal(cupy.asnumpy(v), local[c][k])
    ]
    print(
        f"nccl smoke: rank {world.rank} of {world.size} on device {net.devices}, "
        f"{len(reducer.buckets) + 1} allreduces, loss {total:.4f}: "
        f"{'OK' if not bad else f'FAILED, gradients differ: {bad[:4]}'}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
