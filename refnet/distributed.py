"""Data-parallel training on an existing engine: MPI ranks (mpi4py), NCCL between GPUs.

Model parallel within a replica, data parallel across replicas: each rank holds a whole
replica, its two columns on their own devices (``column_devices``); the ranks split
every global batch, and after backward one allreduce of one flat buffer sums their
gradients (``GradientReducer``, in large buckets sent as backward makes them). MPI
launches the ranks, finds them and reduces NumPy buffers; on GPUs the buffer goes
through NCCL (``cupyx.distributed``'s ``NCCLBackend``, bootstrapped by MPI).

    world = current_world()           # Solo() unless mpiexec started more than one rank
    world.rank, world.size, world.local_rank, world.local_size, world.host
    world.allgather(obj) -> [obj of every rank]   # JSON-able objects, sent as JSON bytes
    world.bcast(obj, root=0) -> obj               #   (no pickle on the wire either)
    world.allreduce(buf)                          # in-place sum of a contiguous 1-d array
    world.allgatherv(buf, counts) -> every rank's 1-d block, in rank order (hybrid)
    world.reduce_scatter(buf, counts) -> this rank's block of the sum over the ranks
    world.abort(code)                             # end every rank (a failure of one rank)

    reducer = GradientReducer(world, net)
    reducer.begin(count, total)                    # this rank's images of the global batch
    loss, grads = net.loss_and_grad_columns(x, y, ..., on_grads=reducer.ready)
    loss, extras = reducer.reduce(grads, loss, count, total, extras=(flag, ...))

Rank r takes ``numpy.array_split(batch, R)[r]`` of the B images (n_r) and its gradient
g_r is their mean; the reducer sums (n_r / B) g_r, the one-process gradient up to the
order of the sums (docs/distributed.md, "Why it is the same model as one process").
Hybrid (``--parallel hybrid``): fc6-fc8 split over the ranks (``AlexNet(ranks=world)``,
``refnet.nodes.rank_gather``); ``gradient_reducer(world, net)`` then sums the replicated
layers' gradients alone, at scale 1. ``Solo``, a world of one, imports no MPI; a launched
rank is recognised by ``PMI_SIZE`` (MPICH's Hydra) or ``OMPI_COMM_WORLD_SIZE`` (Open MPI).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy

from refnet.data.cli import UserError
from refnet.layers import backend
from refnet.layers.backend import Array, Module

if TYPE_CHECKING:
    from refnet.columns import Placement

LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")  # set by mpiexec for each rank


class Replica(Protocol):
    """What the reducer reads of a network (``refnet.network.AlexNet``, which imports
    this module: a protocol keeps the import graph one-way)."""

    columns: int
    dtype: numpy.dtype
    layers: list[Any]
    params: list[dict[str, Array]]
    shapes: dict[str, tuple[int, ...]]
    placement: Placement
    xp: Module
    ranks: Solo | None

    def key(self, layer: str, kind: str) -> str: ...

    def replicated_layers(self) -> list[str]: ...

    def shards_finite(self, per_column: list[dict[str, Array]]) -> bool: ...


class DistributedError(UserError, RuntimeError):
    """A data-parallel job that cannot start or go on (one line, names the rank)."""


def launched_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of ranks mpiexec started, from the launcher's environment (1 if none)."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE:
        if environ.get(name, "").strip():
            try:
                return max(1, int(environ[name]))
            except ValueError:
                raise DistributedError(
                    f"{name}={environ[name]!r} is not a number of ranks"
                ) from None
    return 1


def current_world() -> Solo:
    """``MpiWorld`` when launched by mpiexec with more than one rank, else ``Solo``."""
    size = launched_size()
    if size == 1:
        return Solo()
    if importlib.util.find_spec("mpi4py") is None:
        raise DistributedError(
            f"mpiexec started {size} ranks but mpi4py is not installed: pip install -e '.[dist]'"
        )
    return MpiWorld()


class Solo:
    """The world of one process: every collective is the identity."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    host = os.uname().nodename if hasattr(os, "uname") else "localhost"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allreduce(self, buf: Array) -> Array:
        return buf

    def iallreduce(self, buf: Array) -> Any:
        """Start summing ``buf`` in place; returns a request for ``wait``."""
        return None

    def allgatherv(self, buf: Array, counts: Sequence[int]) -> Array:
        """Every rank's 1-d ``buf`` joined in rank order; ``counts[r]``: rank r's size
        (a rank may send none). A world of one: ``buf`` itself."""
        _check_counts(buf, counts, self.rank, self.size)
        return buf

    def reduce_scatter(self, buf: Array, counts: Sequence[int]) -> Array:
        """This rank's block of the sum over the ranks of the 1-d ``buf`` (``sum(counts)``
        elements, rank r's block the ``counts[r]`` after the first ``sum(counts[:r])``).
        A world of one: ``buf`` itself."""
        _check_counts(buf, counts, None, self.size)
        return buf

    def wait(self, requests: Sequence[Any]) -> None:
        """Wait until the started allreduces are done."""

    def progress(self, requests: Sequence[Any]) -> None:
        """Let started allreduces move on (MPI progresses only inside its calls)."""

    def use_nccl(self, device: int) -> None:
        """Nothing to connect in a world of one."""

    def abort(self, code: int) -> None:
        raise SystemExit(code)

    def describe(self) -> list[dict[str, Any]]:
        return [{"rank": 0, "pid": os.getpid(), "host": self.host}]


def wait_until_read(fd: int, timeout: float = 2.0) -> bool:
    """Wait, at most ``timeout`` seconds, until the reader of the pipe ``fd`` writes to
    has read everything in it; True if it has (or ``fd`` is no pipe: nothing to wait for)."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return True
        import fcntl
        import termios

        end = time.monotonic() + timeout
        while True:
            unread = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)
            if unread == 0:
                return True
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
    except (OSError, ImportError):  # no FIONREAD here: nothing more to do
        return True


class MpiWorld(Solo):
    """The ranks of ``MPI.COMM_WORLD`` (mpi4py)."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)  # this node's
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.host = MPI.Get_processor_name()
        self.nccl: Any = None
        self.stream: Any = None  # a cupy.cuda.Stream once NCCL is in use

    def allgather(self, obj: Any) -> list[Any]:
        data = numpy.frombuffer(json.dumps(obj).encode(), dtype=numpy.uint8)
        counts = numpy.empty(self.size, dtype=numpy.int64)
        self.comm.Allgather(numpy.array([data.size], dtype=numpy.int64), counts)
        everything = numpy.empty(int(counts.sum()), dtype=numpy.uint8)
        self.comm.Allgatherv(data, [everything, counts])
        ends = numpy.cumsum(counts)
        return [
            json.loads(everything[e - n : e].tobytes()) for n, e in zip(counts, ends, strict=True)
        ]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        data = json.dumps(obj).encode() if self.rank == root else b""
        size = numpy.array([len(data)], dtype=numpy.int64)
        self.comm.Bcast(size, root=root)
        buf = (
            numpy.frombuffer(data, dtype=numpy.uint8).copy()
            if self.rank == root
            else numpy.empty(int(size[0]), dtype=numpy.uint8)
        )
        self.comm.Bcast(buf, root=root)
        return json.loads(buf.tobytes())

    def allreduce(self, buf: Array) -> Array:
        """Sum ``buf`` over the ranks in place: NumPy arrays by MPI, CuPy arrays by NCCL
        (after ``use_nccl``)."""
        if isinstance(buf, numpy.ndarray):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        else:
            self.wait([self.iallreduce(buf)])
        return buf

    def iallreduce(self, buf: Array) -> Any:
        """Start summing ``buf`` in place: ``MPI_Iallreduce`` for a NumPy array; for a
        CuPy array NCCL on this rank's communication stream, after the work queued so
        far on the current stream (every NCCL call goes on that one stream, in the same
        order on every rank)."""
        if isinstance(buf, numpy.ndarray):
            return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        if self.nccl is None:
            raise DistributedError("a device array needs NCCL: call use_nccl(device) first")
        import cupy

        if self.stream is None:
            self.stream = cupy.cuda.Stream(non_blocking=True)
        self.stream.wait_event(cupy.cuda.get_current_stream().record())
        self.nccl.all_reduce(buf, buf, op="sum", stream=self.stream)
        return self.stream

    def allgatherv(self, buf: Array, counts: Sequence[int]) -> Array:
        """Every rank's 1-d ``buf`` joined in rank order: ``MPI_Allgatherv`` for a NumPy
        array; NCCL's all-gather for a CuPy array, each block padded to the largest."""
        _check_counts(buf, counts, self.rank, self.size)
        counts = [int(n) for n in counts]
        if on_host(buf):
            out = numpy.empty(sum(counts), dtype=buf.dtype)
            self.comm.Allgatherv(numpy.ascontiguousarray(buf), [out, counts])
            return out
        import cupy

        most = max(counts)
        send = cupy.zeros(most, dtype=buf.dtype)  # (most,): this rank's block, padded
        send[: buf.size] = buf
        recv = cupy.empty(most * self.size, dtype=buf.dtype)  # (R * most,)
        self._nccl_call(lambda s: self.nccl.all_gather(send, recv, most, stream=s))
        return cupy.concatenate([recv[r * most : r * most + n] for r, n in enumerate(counts)])

    def reduce_scatter(self, buf: Array, counts: Sequence[int]) -> Array:
        """This rank's block of the sum of the 1-d ``buf`` over the ranks:
        ``MPI_Reduce_scatter`` for a NumPy array; NCCL's reduce-scatter for a CuPy array,
        each block padded to the largest."""
        _check_counts(buf, counts, None, self.size)
        counts = [int(n) for n in counts]
        if on_host(buf):
            out = numpy.empty(counts[self.rank], dtype=buf.dtype)
            self.comm.Reduce_scatter(
                numpy.ascontiguousarray(buf), out, recvcounts=counts, op=self.MPI.SUM
            )
            return out
        import cupy

        most, ends = max(counts), numpy.cumsum([0] + counts)
        send = cupy.zeros(most * self.size, dtype=buf.dtype)  # (R * most,): padded blocks
        for r, n in enumerate(counts):
            send[r * most : r * most + n] = buf[ends[r] : ends[r + 1]]
        recv = cupy.empty(most, dtype=buf.dtype)
        self._nccl_call(lambda s: self.nccl.reduce_scatter(send, recv, most, op="sum", stream=s))
        return recv[: counts[self.rank]]

    def _nccl_call(self, call: Any) -> None:
        """``call(stream)`` on the communication stream, after the work queued on the
        current stream, which then waits for it (the order ``iallreduce`` keeps)."""
        if self.nccl is None:
            raise DistributedError("a device array needs NCCL: call use_nccl(device) first")
        import cupy

        if self.stream is None:
            self.stream = cupy.cuda.Stream(non_blocking=True)
        self.stream.wait_event(cupy.cuda.get_current_stream().record())
        call(self.stream)
        cupy.cuda.get_current_stream().wait_event(self.stream.record())

    def wait(self, requests: Sequence[Any]) -> None:
        mpi = [r for r in requests if isinstance(r, self.MPI.Request)]
        if mpi:
            self.MPI.Request.Waitall(mpi)
        if len(mpi) < len(requests):  # NCCL's: the current stream waits
            import cupy

            cupy.cuda.get_current_stream().wait_event(self.stream.record())

    def progress(self, requests: Sequence[Any]) -> None:
        mpi = [r for r in requests if isinstance(r, self.MPI.Request)]
        if mpi:
            self.MPI.Request.Testall(mpi)

    def use_nccl(self, device: int) -> None:
        """Connect the ranks' GPUs (``device``: this rank's, where the gradient buffer
        lives) through ``cupyx.distributed``'s NCCL backend, bootstrapped by MPI."""
        import cupy
        import cupyx.distributed

        with cupy.cuda.Device(device):
            self.nccl = cupyx.distributed.init_process_group(
                self.size, self.rank, backend="nccl", use_mpi=True
            )

    def abort(self, code: int) -> None:
        """End every rank, once the launcher has taken what this rank wrote to stderr
        (``wait_until_read``): Hydra drops output still in the pipe when a rank aborts."""
        if sys.stderr is not None:
            sys.stderr.flush()
        wait_until_read(2)  # the process's stderr, whatever sys.stderr is now
        self.comm.Abort(int(code))

    def describe(self) -> list[dict[str, Any]]:
        return self.allgather({"rank": self.rank, "pid": os.getpid(), "host": self.host})


def on_host(buf: Array) -> bool:
    """Whether ``buf`` is a host (NumPy) array, which MPI moves; else a device array,
    which NCCL moves."""
    return isinstance(buf, numpy.ndarray)


def _check_counts(buf: Array, counts: Sequence[int], rank: int | None, size: int) -> None:
    """``counts``: one size per rank, none negative; ``buf`` 1-d, of ``counts[rank]``
    elements (rank None: of their sum)."""
    if len(counts) != size or any(int(n) < 0 for n in counts):
        raise ValueError(f"counts must be {size} sizes >= 0, one per rank, got {list(counts)}")
    want = sum(int(n) for n in counts) if rank is None else int(counts[rank])
    if buf.ndim != 1 or buf.size != want:
        raise ValueError(f"buffer must be 1-d of {want} elements, got shape {tuple(buf.shape)}")


# -- where each rank runs ----------------------------------------------------------------
def column_devices(local_rank: int, local_size: int, gpus: int, columns: int) -> tuple[int, ...]:
    """The GPUs of one rank's columns: 2*local_rank and 2*local_rank + 1 when the node has
    two GPUs per rank (and the net two columns), else every column on GPU local_rank."""
    if columns == 2 and gpus >= 2 * local_size:
        return (2 * local_rank, 2 * local_rank + 1)
    if gpus >= local_size:
        return (local_rank,) * columns
    raise DistributedError(f"{local_size} ranks on this node need a GPU each, but it has {gpus}")


def core_share(local_rank: int, local_size: int, cores: Iterable[int]) -> list[int]:
    """This rank's share of the node's ``cores`` (a sorted list of CPU ids): the
    local_rank-th of local_size equal blocks (the first ones one larger when they do not
    divide), at least one core."""
    cores = sorted(cores)
    if local_size <= 1:
        return cores
    blocks = numpy.array_split(numpy.arange(len(cores)), local_size)
    mine = [cores[i] for i in blocks[local_rank]]
    return mine or [cores[local_rank % len(cores)]]


def share_cores(world: Solo) -> int:
    """Pin this rank to its share of the node's cores, and its BLAS to that many threads,
    unless the launcher already gave the ranks of a node different CPU sets. Returns the
    number of cores this rank uses."""
    if not hasattr(os, "sched_getaffinity"):
        return os.cpu_count() or 1
    cores = sorted(os.sched_getaffinity(0))
    seen = world.allgather({"host": world.host, "cores": cores})
    neighbours = [s["cores"] for s in seen if s["host"] == world.host]
    if world.local_size > 1 and all(c == cores for c in neighbours):
        cores = core_share(world.local_rank, world.local_size, cores)
        os.sched_setaffinity(0, cores)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=len(cores), user_api="blas")
    except ImportError:
        pass
    return len(cores)


# -- the fused gradient allreduce ---------------------------------------------------------
BUCKET_BYTES = 25 * 2**20  # a bucket closes at the first layer that fills 25 MiB
EXTRAS = 4  # scalars reduced with the last bucket: the loss, flags, the shards' check


class GradientReducer:
    """Every gradient of every column in one flat buffer on column 0's device, reduced in
    a few large buckets per step, the last one with a few scalars (the loss, flags).

    Layout: the layers in backward order (fc8 first, conv1 last), in each layer the
    columns in order and the parameters by name, flattened; then the extras. Packing
    multiplies each local gradient by count / total (count this rank's images, total
    the global batch), so the sum over ranks is the global mean (module doc). A bucket
    is the run of layers up to the first that brings it to ``bucket_bytes``
    (``None``: the whole buffer in one allreduce).

    Overlap. ``begin(count, total)`` before the backward pass, and ``ready`` as the
    network's ``on_grads`` hook: a layer's gradients are packed as soon as the backward
    pass has made them, and a full bucket's allreduce starts at once (non-blocking:
    ``MPI_Iallreduce``, or NCCL on its own stream) while the layers below compute;
    ``reduce`` packs what is left, starts the last bucket and waits for all. AlexNet's
    fc layers hold 96% of its parameters and come first in backward, so nearly all the
    traffic can hide behind the convolutions' backward (docs/distributed.md). Without
    the hook, ``reduce`` packs and reduces everything after the backward pass. The sums
    are the same either way: each element is the sum of the same R numbers.

    Hybrid parallel (``layers``: the replicated layers alone, ``mean=False``): the fc
    layers are split over the ranks and their gradients stay where they are; the conv
    gradients already hold the rank's images' share of the global mean (the fc6 input
    gradient comes back from ``RankGather`` scaled by 1/B), so they are summed as they
    are (scale 1), and the loss, the same on every rank, is rank 0's."""

    def __init__(
        self,
        world: Solo,
        net: Replica,
        bucket_bytes: int | None = BUCKET_BYTES,
        *,
        layers: Collection[str] | None = None,
        mean: bool = True,
    ) -> None:
        self.world, self.net = world, net
        self.mean = mean
        self.layout: dict[
            str, list[tuple[int, str, tuple[int, ...], int, int]]
        ] = {}  # layer -> [(column, name, shape, offset, size)]
        self.buckets: list[
            tuple[int, int, str]
        ] = []  # (first element, end element, the layer that closes it)
        offset = start = 0
        itemsize = numpy.dtype(net.dtype).itemsize
        for layer in reversed(net.layers):
            names = [net.key(layer.name, kind) for kind in ("bias", "weight")]
            if names[1] not in net.shapes or (layers is not None and layer.name not in layers):
                continue
            entries = self.layout.setdefault(layer.name, [])
            for c in range(net.columns):
                for name in (n for n in names if n in net.params[c]):
                    shape = tuple(net.params[c][name].shape)
                    size = int(numpy.prod(shape))
                    entries.append((c, name, shape, offset, size))
                    offset += size
            if bucket_bytes is not None and (offset - start) * itemsize >= bucket_bytes:
                self.buckets.append((start, offset, layer.name))
                start = offset
        self.size = offset
        self.tail = start  # the last bucket: [tail, size) and the extras
        self.closing = {layer: (a, b) for a, b, layer in self.buckets}
        self.buffer: Array = None  # made by the first _pack
        self.scale: float | None = None
        self.packed: set[str] = set()
        self.shards_bad = 0.0  # ranks whose unreduced gradients were not finite
        self.pending: list[Any] = []

    def share(self, count: int, total: int) -> float:
        """What this rank's gradients are multiplied by: count / total, or 1 when they
        already hold their share of the global mean (``mean=False``)."""
        return count / total if self.mean else 1.0

    def begin(self, count: int, total: int) -> None:
        """A step starts: this rank has ``count`` of the ``total`` images."""
        self.scale = self.share(count, total)
        self.packed, self.pending = set(), []

    def ready(self, layer: str, grads: list[dict[str, Array]]) -> None:
        """``on_grads`` hook: pack ``layer``'s gradients; start its bucket when full."""
        if self.scale is None:
            raise RuntimeError("GradientReducer.ready before begin(count, total)")
        if layer not in self.layout:  # not reduced (hybrid: a layer split over ranks)
            self.world.progress(self.pending)
            return
        self._pack(layer, grads)
        if layer in self.closing:
            a, b = self.closing[layer]
            with self.net.placement.device(0):
                self.pending.append(self.world.iallreduce(self.buffer[a:b]))
        else:
            self.world.progress(self.pending)

    def reduce(
        self,
        grads: list[dict[str, Array]],
        loss: float,
        count: int,
        total: int,
        extras: Sequence[float] = (),
    ) -> tuple[float, list[float]]:
        """Sum ``grads`` (per column, as ``loss_and_grad_columns`` gives) over the ranks,
        replacing them in ``grads``; returns (the global mean loss, the summed ``extras``
        as floats, at most ``EXTRAS - 2``; the last slot counts the ranks whose gradients
        not reduced here, hybrid's fc shards, are not finite: ``finite``). ``count``:
        this rank's images, ``total``: the global batch."""
        if self.scale is None:
            self.begin(count, total)
        elif self.scale != self.share(count, total):
            raise ValueError(
                f"reduce: {count} of {total} images, but begin() was told a share of {self.scale}"
            )
        if len(extras) >= EXTRAS - 1:
            raise ValueError(f"reduce: at most {EXTRAS - 2} extras, got {len(extras)}")
        for layer in self.layout:  # without the hook: everything now
            if layer not in self.packed:
                self._pack(layer, grads)
        P, xp, buf = self.net.placement, self.net.xp, self.buffer
        assert self.scale is not None  # begin() set it
        values = numpy.zeros(EXTRAS)
        # the loss: each rank's share of the mean, or (mean=False: the same loss on every
        # rank) rank 0's alone, so the sum is the loss itself
        mine = float(loss) * self.scale if self.mean else float(loss) * (self.world.rank == 0)
        values[: 1 + len(extras)] = [mine] + [float(e) for e in extras]
        values[-1] = not self.net.shards_finite(grads)
        with P.device(0):
            self.pending += [
                self.world.iallreduce(buf[a:b]) for a, b, _ in self.buckets[len(self.pending) :]
            ]
            buf[self.size :] = xp.asarray(values.astype(self.net.dtype))
            self.pending.append(self.world.iallreduce(buf[self.tail :]))
            self.world.wait(self.pending)
            for entries in self.layout.values():
                for c, name, shape, offset, size in entries:
                    grads[c][name] = P.put(buf[offset : offset + size].reshape(shape), c)
            summed = backend.asnumpy(buf[self.size :]).astype(numpy.float64)
        self.scale, self.pending = None, []
        self.shards_bad = float(summed[-1])
        return float(summed[0]), [float(v) for v in summed[1 : 1 + len(extras)]]

    def _pack(self, layer: str, grads: list[dict[str, Array]]) -> None:
        P, xp = self.net.placement, self.net.xp
        if self.buffer is None:
            with P.device(0):
                self.buffer = xp.empty(self.size + EXTRAS, dtype=self.net.dtype)
        for c, name, shape, offset, size in self.layout[layer]:
            with P.device(c):  # a transfer needs a contiguous array
                g = xp.ascontiguousarray(grads[c][name])
            with P.device(0):
                part = self.buffer[offset : offset + size].reshape(shape)
                xp.multiply(P.put(g, 0), self.scale, out=part)
        self.packed.add(layer)

    def finite(self) -> bool:
        """Whether the last reduced buffer holds only finite numbers, and every rank's
        gradients not in it (hybrid: the fc shards) too (every rank sees the same buffer,
        so every rank gets the same answer)."""
        with self.net.placement.device(0):
            reduced = bool(self.net.xp.isfinite(self.net.xp.sum(self.buffer)))
        return reduced and self.shards_bad == 0


def gradient_reducer(world: Solo, net: Replica) -> GradientReducer | None:
    """The reducer of a job of more than one rank (None for one): every gradient, or
    for a hybrid network (``net.ranks``) the replicated layers' alone, at scale 1."""
    if world.size == 1:
        return None
    if net.ranks is None:
        return GradientReducer(world, net)
    return GradientReducer(world, net, layers=net.replicated_layers(), mean=False)


def checksum(arrays: Mapping[str, Array]) -> str:
    """A SHA-256 of ``{name: array}`` (host arrays), by sorted name: equal on every rank
    exactly when the replicas are bit-identical."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = numpy.ascontiguousarray(backend.asnumpy(arrays[name]))
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
