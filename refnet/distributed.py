"""Data-parallel training on an existing engine: MPI ranks (mpi4py), NCCL between GPUs.

Model parallel within a replica, data parallel across replicas. Each rank holds a whole
replica of the network, whose two columns keep their own devices as in one process
(``column_devices``); the ranks split every global batch between them, and after each
backward pass their gradients are summed by one allreduce of one flat buffer
(``GradientReducer``). Nothing here opens a socket or writes a collective: MPI (through
mpi4py) launches the ranks, finds them, and reduces NumPy buffers; on GPUs the gradient
buffer goes through NCCL (``cupyx.distributed``'s ``NCCLBackend``, bootstrapped by MPI).

    world = current_world()           # Solo() unless mpiexec started more than one rank
    world.rank, world.size, world.local_rank, world.local_size, world.host
    world.allgather(obj) -> [obj of every rank]   # JSON-able objects, sent as JSON bytes
    world.bcast(obj, root=0) -> obj               #   (no pickle on the wire either)
    world.allreduce(buf)                          # in-place sum of a contiguous 1-d array
    world.abort(code)                             # end every rank (a failure of one rank)

    reducer = GradientReducer(world, net)
    loss, extras = reducer.reduce(grads, loss, count, total, extras=(flag, ...))

A world of one (``Solo``) imports nothing: a plain ``python -m refnet.train`` runs as it
always did, without mpi4py. ``mpiexec -n R python -m refnet.train ...`` is detected from
the launcher's environment (``PMI_SIZE`` of MPICH's Hydra, ``OMPI_COMM_WORLD_SIZE`` of
Open MPI).

Why the model is the same as one process's. The global batch of B images is cut into
R slices (rank r takes ``numpy.array_split(batch, R)[r]``, ``data.loader``); rank r's
gradient g_r is the mean over its n_r images. The reducer sums (n_r / B) g_r over the
ranks, which is the mean over all B images, the one-process gradient up to the order
of the sums. Weight decay and momentum are then applied by each rank's ``SGD`` to the
same gradient, so the replicas stay identical (checked by a checksum at every
checkpoint, ``checksum``). Every sample's crop, flip, lighting and dropout masks are
drawn from (seed, epoch, sample index) alone (``refnet.sample_draws``).
"""

import hashlib
import importlib.util
import json
import os

import numpy

from layers import backend

LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")      # set by mpiexec for each rank


class DistributedError(RuntimeError):
    """A data-parallel job that cannot start or go on (one line, names the rank)."""


def launched_size(environ=None):
    """The number of ranks mpiexec started, from the launcher's environment (1 if none)."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE:
        if environ.get(name, "").strip():
            try:
                return max(1, int(environ[name]))
            except ValueError:
                raise DistributedError(f"{name}={environ[name]!r} is not a number of "
                                       "ranks") from None
    return 1


def current_world():
    """``MpiWorld`` when launched by mpiexec with more than one rank, else ``Solo``."""
    size = launched_size()
    if size == 1:
        return Solo()
    if importlib.util.find_spec("mpi4py") is None:
        raise DistributedError(f"mpiexec started {size} ranks but mpi4py is not installed: "
                               "pip install -e '.[dist]'")
    return MpiWorld()


class Solo:
    """The world of one process: every collective is the identity."""
    rank, size, local_rank, local_size = 0, 1, 0, 1
    host = os.uname().nodename if hasattr(os, "uname") else "localhost"
    pid = os.getpid()

    @property
    def is_root(self):
        return self.rank == 0

    def allgather(self, obj):
        return [obj]

    def bcast(self, obj, root=0):
        return obj

    def allreduce(self, buf):
        return buf

    def use_nccl(self, device):
        """Nothing to connect in a world of one."""

    def abort(self, code):
        raise SystemExit(code)

    def describe(self):
        return [{"rank": 0, "pid": os.getpid(), "host": self.host}]


class MpiWorld(Solo):
    """The ranks of ``MPI.COMM_WORLD`` (mpi4py)."""

    def __init__(self, comm=None):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)  # this node's
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.host = MPI.Get_processor_name()
        self.nccl = None

    def allgather(self, obj):
        data = numpy.frombuffer(json.dumps(obj).encode(), dtype=numpy.uint8)
        counts = numpy.empty(self.size, dtype=numpy.int64)
        self.comm.Allgather(numpy.array([data.size], dtype=numpy.int64), counts)
        everything = numpy.empty(int(counts.sum()), dtype=numpy.uint8)
        self.comm.Allgatherv(data, [everything, counts])
        ends = numpy.cumsum(counts)
        return [json.loads(everything[e - n:e].tobytes()) for n, e in zip(counts, ends)]

    def bcast(self, obj, root=0):
        data = json.dumps(obj).encode() if self.rank == root else b""
        size = numpy.array([len(data)], dtype=numpy.int64)
        self.comm.Bcast(size, root=root)
        buf = (numpy.frombuffer(data, dtype=numpy.uint8).copy() if self.rank == root
               else numpy.empty(int(size[0]), dtype=numpy.uint8))
        self.comm.Bcast(buf, root=root)
        return json.loads(buf.tobytes())

    def allreduce(self, buf):
        """Sum ``buf`` over the ranks in place: NumPy arrays by MPI, CuPy arrays by NCCL
        (after ``use_nccl``)."""
        if isinstance(buf, numpy.ndarray):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        elif self.nccl is not None:
            self.nccl.all_reduce(buf, buf, op="sum")
        else:
            raise DistributedError("a device array needs NCCL: call use_nccl(device) first")
        return buf

    def use_nccl(self, device):
        """Connect the ranks' GPUs (``device``: this rank's, where the gradient buffer
        lives) through ``cupyx.distributed``'s NCCL backend, bootstrapped by MPI."""
        import cupy
        import cupyx.distributed
        with cupy.cuda.Device(device):
            self.nccl = cupyx.distributed.init_process_group(
                self.size, self.rank, backend="nccl", use_mpi=True)

    def abort(self, code):
        self.comm.Abort(int(code))

    def describe(self):
        return self.allgather({"rank": self.rank, "pid": os.getpid(), "host": self.host})


# -- where each rank runs ----------------------------------------------------------------
def column_devices(local_rank, local_size, gpus, columns):
    """The GPUs of one rank's columns: 2*local_rank and 2*local_rank + 1 when the node has
    two GPUs per rank (and the net two columns), else every column on GPU local_rank."""
    if columns == 2 and gpus >= 2 * local_size:
        return (2 * local_rank, 2 * local_rank + 1)
    if gpus >= local_size:
        return (local_rank,) * columns
    raise DistributedError(f"{local_size} ranks on this node need a GPU each, but it has "
                           f"{gpus}")


def core_share(local_rank, local_size, cores):
    """This rank's share of the node's ``cores`` (a sorted list of CPU ids): the
    local_rank-th of local_size equal blocks (the first ones one larger when they do not
    divide), at least one core."""
    cores = sorted(cores)
    if local_size <= 1:
        return cores
    blocks = numpy.array_split(numpy.arange(len(cores)), local_size)
    mine = [cores[i] for i in blocks[local_rank]]
    return mine or [cores[local_rank % len(cores)]]


def share_cores(world):
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
class GradientReducer:
    """Every gradient of every column in one flat buffer on column 0's device, reduced by
    one allreduce per step together with a few scalars (the loss, flags).

    Layout: the columns in order, each column's gradients by sorted name, flattened;
    then the extras. Packing multiplies each local gradient by count / total (count
    this rank's images, total the global batch), so the sum over ranks is the global
    mean (module doc)."""

    def __init__(self, world, net):
        self.world, self.net = world, net
        self.layout = []
        offset = 0
        for c in range(net.columns):
            for name in sorted(net.params[c]):
                shape = tuple(net.params[c][name].shape)
                size = int(numpy.prod(shape))
                self.layout.append((c, name, shape, offset, size))
                offset += size
        self.size = offset
        self.buffer = None

    def reduce(self, grads, loss, count, total, extras=()):
        """Sum ``grads`` (per column, as ``loss_and_grad_columns`` gives) over the ranks,
        replacing them in ``grads``; returns (the global mean loss, the summed ``extras``
        as floats). ``count``: this rank's images, ``total``: the global batch."""
        P, xp = self.net.placement, self.net.xp
        scale = count / total
        extras = [float(loss) * scale] + [float(e) for e in extras]
        with P.device(0):
            if self.buffer is None or self.buffer.size != self.size + len(extras):
                self.buffer = xp.empty(self.size + len(extras), dtype=self.net.dtype)
            buf = self.buffer
            for c, name, shape, offset, size in self.layout:
                with P.device(c):                   # a transfer needs a contiguous array
                    g = xp.ascontiguousarray(grads[c][name])
                part = buf[offset:offset + size].reshape(shape)
                xp.multiply(P.put(g, 0), scale, out=part)
            buf[self.size:] = xp.asarray(numpy.array(extras, dtype=self.net.dtype))
            self.world.allreduce(buf)
            for c, name, shape, offset, size in self.layout:
                grads[c][name] = P.put(buf[offset:offset + size].reshape(shape), c)
            summed = backend.asnumpy(buf[self.size:]).astype(numpy.float64)
        return float(summed[0]), [float(v) for v in summed[1:]]

    def finite(self):
        """Whether the last reduced buffer holds only finite numbers (every rank sees the
        same buffer, so every rank gets the same answer)."""
        with self.net.placement.device(0):
            return bool(self.net.xp.isfinite(self.net.xp.sum(self.buffer)))


def checksum(arrays):
    """A SHA-256 of ``{name: array}`` (host arrays), by sorted name: equal on every rank
    exactly when the replicas are bit-identical."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = numpy.ascontiguousarray(backend.asnumpy(arrays[name]))
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
