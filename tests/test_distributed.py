"""Data parallel (refnet.distributed): the pieces in one process, the job under mpiexec.

The unit tests check the parts a multi-rank job is made of against plain references: the
per-sample draws do not depend on the batch a sample is in, a loader's shards tile each
batch, the fused reducer's sum over simulated ranks is the one-process gradient (also on
two tagged devices, the NCCL path's packing), and the rank-to-GPU mapping. The slow tests
start ``mpiexec`` (the mpich wheel's) with a timeout, so a hang fails instead of blocking.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy
import pytest

from refnet import checkpoint, distributed, sample_draws
from refnet.data.loader import Loader
from refnet.distributed import (
    DistributedError,
    GradientReducer,
    Solo,
    column_devices,
    core_share,
    launched_size,
)
from refnet.network import AlexNet
from tests import device_backend
from tests.train_data import make_tiny_set

TIMEOUT = 180


# -- one process ----------------------------------------------------------------------
def test_launched_size_reads_the_launchers_environment():
    assert launched_size({}) == 1
    assert launched_size({"PMI_SIZE": "4"}) == 4
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    with pytest.raises(DistributedError, match="PMI_SIZE='x'"):
        launched_size({"PMI_SIZE": "x"})


def test_a_world_of_one_needs_no_mpi(monkeypatch):
    for name in distributed.LAUNCHER_SIZE:
        monkeypatch.delenv(name, raising=False)
    world = distributed.current_world()
    assert isinstance(world, Solo) and world.size == 1 and world.is_root
    buf = numpy.arange(3.0)
    assert world.allreduce(buf) is buf and world.allgather({"a": 1}) == [{"a": 1}]


def test_mpiexec_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DistributedError, match=r"2 ranks but mpi4py .*\[dist\]"):
        distributed.current_world()


@pytest.mark.parametrize(
    "local_rank,local_size,gpus,columns,want",
    [
        (0, 1, 2, 2, (0, 1)),
        (1, 2, 4, 2, (2, 3)),
        (1, 2, 2, 2, (1, 1)),
        (0, 1, 1, 2, (0, 0)),
        (2, 4, 8, 1, (2,)),
        (3, 4, 4, 2, (3, 3)),
    ],
)
def test_column_devices(local_rank, local_size, gpus, columns, want):
    assert column_devices(local_rank, local_size, gpus, columns) == want


def test_column_devices_refuses_a_node_short_of_gpus():
    with pytest.raises(DistributedError, match="3 ranks .* has 2"):
        column_devices(2, 3, 2, 2)


def test_core_share_tiles_the_cores():
    cores = list(range(7))
    shares = [core_share(r, 3, cores) for r in range(3)]
    assert shares == [[0, 1, 2], [3, 4], [5, 6]]
    assert core_share(2, 4, [0, 1]) == [0]  # more ranks than cores: one each
    assert core_share(0, 1, [3, 1]) == [1, 3]


def test_sample_draws_depend_on_the_sample_not_the_batch():
    idx = numpy.array([7, 2, 11, 5])
    whole = sample_draws.augmentation(4, 3, idx, 52, 45, lighting_std=0.1)
    for i, k in enumerate(idx):
        one = sample_draws.augmentation(4, 3, [k], 52, 45, lighting_std=0.1)
        for a, b in zip(whole, one, strict=True):
            assert numpy.array_equal(a[i : i + 1], b)
    later = sample_draws.augmentation(4, 4, idx, 52, 45, lighting_std=0.1)
    assert not numpy.array_equal(whole.alphas, later.alphas)  # another epoch
    masks = sample_draws.dropout_masks(4, 3, idx, {"fc6": 64, "fc7": 32}, 0.5)
    part = sample_draws.dropout_masks(4, 3, idx[2:], {"fc6": 64, "fc7": 32}, 0.5)
    assert masks["fc6"].shape == (4, 64) and masks["fc7"].shape == (4, 32)
    assert numpy.array_equal(masks["fc6"][2:], part["fc6"])
    assert numpy.array_equal(masks["fc7"][2:], part["fc7"])
    assert not numpy.array_equal(masks["fc6"][0], masks["fc6"][1])
    big = sample_draws.dropout_masks(0, 0, numpy.arange(200), {"fc6": 100}, 0.3)
    assert abs(big["fc6"].mean() - 0.7) < 0.01


def test_sample_draws_refuse_bad_indices():
    with pytest.raises(ValueError, match="1-d integer"):
        sample_draws.augmentation(0, 0, numpy.zeros((2, 2), int), 52, 45)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_set(tmp_path_factory.mktemp("dp"), per_class=(16, 4))


@pytest.mark.parametrize("ranks", [2, 3])
def test_loader_shards_tile_every_batch(data_dir, ranks):
    path = str(data_dir / "train.h5")
    whole = Loader(path, 8, seed=5, workers=0, position=(1, 16), with_indices=True)
    parts = [
        Loader(path, 8, seed=5, workers=0, position=(1, 16), shard=(r, ranks), with_indices=True)
        for r in range(ranks)
    ]
    for batch, *shards in zip(whole, *parts, strict=True):
        images, labels, indices = batch
        assert numpy.array_equal(numpy.concatenate([s[2] for s in shards]), indices)
        assert numpy.array_equal(numpy.concatenate([s[1] for s in shards]), labels)
        assert numpy.array_equal(numpy.concatenate([s[0] for s in shards]), images)
        assert max(len(s[2]) for s in shards) - min(len(s[2]) for s in shards) <= 1
    assert all(p.position == whole.position == (2, 0) for p in parts)


def test_loader_refuses_a_bad_shard(data_dir):
    with pytest.raises(ValueError, match=r"shard \(2, 2\)"):
        Loader(str(data_dir / "train.h5"), 8, shard=(2, 2))
    with pytest.raises(ValueError, match="ranks <= batch_size"):
        Loader(str(data_dir / "train.h5"), 2, shard=(0, 3))


class SimulatedRanks:
    """R worlds in one process, run one after the other, rank 0 last: the other ranks'
    allreduces keep a copy of their buffer, and rank 0's k-th allreduce adds the others'
    k-th buffers to its own (so rank 0 ends with the sums)."""

    def __init__(self, size):
        self.size, self.sent = size, {r: [] for r in range(size)}

    def world(self, rank):
        sim = self

        class World(Solo):
            def iallreduce(self, buf):
                mine = sim.sent[self.rank]
                if self.rank != 0:
                    mine.append(buf.copy())
                else:
                    for r in range(1, sim.size):
                        buf += sim.sent[r][len(mine)]
                    mine.append(None)
                return ("request", len(mine))

            def allreduce(self, buf):
                self.iallreduce(buf)
                return buf

        w = World()
        w.rank, w.size = rank, self.size
        return w


def _net(backend="numpy", devices=None, seed=1):
    net = AlexNet("tiny", dtype="float64", backend=backend, devices=devices, conv_algo="gemm")
    net.init(seed=seed, scheme="he")
    return net


def _batch(rng, n, put=numpy.asarray):
    x = rng.standard_normal((n, 3, 45, 45))
    return put(x), rng.integers(0, 5, n)


@pytest.mark.parametrize("bucket_bytes", [None, 1, 600])
@pytest.mark.parametrize("hook", [False, True])
@pytest.mark.parametrize("sizes", [(5, 5), (4, 3, 3)])
def test_reducer_sum_over_ranks_is_the_global_gradient(sizes, hook, bucket_bytes):
    rng = numpy.random.default_rng(0)
    x, y = _batch(rng, sum(sizes))
    idx = numpy.arange(sum(sizes)) + 100
    masks = sample_draws.dropout_masks(9, 2, idx, _net().dropout_widths(), 0.5)
    ref_net = _net()
    ref_loss, ref = ref_net.loss_and_grad(x, y, masks=masks)
    sim = SimulatedRanks(len(sizes))
    bounds = numpy.cumsum((0,) + sizes)
    order = list(range(1, len(sizes))) + [0]  # rank 0 last: it sees the sum
    for r in order:
        lo, hi = bounds[r], bounds[r + 1]
        net = _net()
        part = {k: v[lo:hi] for k, v in masks.items()}
        reducer = GradientReducer(sim.world(r), net, bucket_bytes=bucket_bytes)
        if hook:
            reducer.begin(hi - lo, sum(sizes))
        loss, grads = net.loss_and_grad_columns(
            x[lo:hi], y[lo:hi], masks=part, on_grads=reducer.ready if hook else None
        )
        total_loss, (flag,) = reducer.reduce(grads, loss, hi - lo, sum(sizes), extras=(r == 2,))
    full = net.full_grads(grads)
    for k in ref:
        err = numpy.abs(full[k] - ref[k]).max() / numpy.abs(ref[k]).max()
        assert err < 1e-12, (k, err)
    assert abs(total_loss - ref_loss) < 1e-12 * abs(ref_loss)
    assert flag == (1.0 if len(sizes) == 3 else 0.0)  # an extra is summed too
    assert reducer.finite()
    reducer.buffer[0] = numpy.nan
    assert not reducer.finite()


def test_buckets_start_during_backward_in_backward_order():
    """With the hook, a full bucket's allreduce starts before the layers below it have
    run backward: every layer its own bucket (1 byte) gives one start per layer, fc8's
    first, each right after that layer's gradients exist."""
    events = []

    class Recording(Solo):
        def iallreduce(self, buf):
            events.append(("start", buf.size))

    net = _net()
    reducer = GradientReducer(Recording(), net, bucket_bytes=1)

    def hook(layer, grads):
        events.append(("grads", layer))
        reducer.ready(layer, grads)

    rng = numpy.random.default_rng(2)
    x, y = _batch(rng, 4)
    reducer.begin(4, 8)
    loss, grads = net.loss_and_grad_columns(x, y, train=False, on_grads=hook)
    reducer.reduce(grads, loss, 4, 8)
    layers = [e[1] for e in events if e[0] == "grads"]
    assert layers == ["fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1"]
    sizes = {layer: sum(e[4] for e in entries) for layer, entries in reducer.layout.items()}
    for i, layer in enumerate(layers):
        assert events[2 * i : 2 * i + 2] == [("grads", layer), ("start", sizes[layer])]
    assert events[16:] == [("start", distributed.EXTRAS)]  # the loss and flags
    with pytest.raises(ValueError, match="share"):
        reducer.begin(4, 8)
        reducer.reduce(grads, loss, 3, 8)


def test_reducer_packs_on_column_zeros_device_and_unpacks_to_each_column():
    """The NCCL path's plumbing on two tagged devices: the flat buffer lives on column 0's
    device (the rank's NCCL device), each column's gradients go back to its own device;
    a transfer left out raises DeviceMismatch."""
    tagged = device_backend.tagged
    rng = numpy.random.default_rng(3)
    nets = [_net(tagged, (0, 1)) for _ in range(2)]
    with tagged.Device(0):
        x, y = _batch(rng, 6, tagged.asarray)
    sim = SimulatedRanks(2)
    results = []
    for r in (1, 0):
        net = nets[r]
        with tagged.Device(0):
            xs = x[3 * r : 3 * r + 3]
        loss, grads = net.loss_and_grad_columns(xs, y[3 * r : 3 * r + 3], train=False)
        reducer = GradientReducer(sim.world(r), net)
        reducer.reduce(grads, loss, 3, 6)
        assert reducer.buffer.device_id == 0
        for c in range(2):
            for name, g in grads[c].items():
                assert g.device_id == net.devices[c], (c, name)
        results.append(grads)
    ref = _net().loss_and_grad(numpy.asarray(x), y, train=False)[1]
    full = nets[0].full_grads(results[-1])
    for k in ref:
        got = numpy.asarray(full[k])
        assert numpy.abs(got - ref[k]).max() <= 1e-12 * numpy.abs(ref[k]).max(), k


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_nccl_bootstrap_goes_through_cupyx_with_mpi(monkeypatch):
    """use_nccl asks cupyx.distributed for an NCCL communicator bootstrapped by MPI,
    under the rank's device; device buffers then go to it on one communication stream
    that first waits for the compute stream, and the compute stream waits for it."""
    cupy = pytest.importorskip("cupy")
    import cupyx.distributed

    calls = []

    class FakeComm:
        def all_reduce(self, a, b, op, stream):
            calls.append(("all_reduce", a is b, op, stream.name))

    class FakeDevice:
        def __init__(self, i):
            self.i = i

        def __enter__(self):
            calls.append(("device", self.i))

        def __exit__(self, *exc):
            return False

    class FakeStream:
        def __init__(self, name="comm", non_blocking=False):
            self.name = name

        def record(self):
            return f"event of {self.name}"

        def wait_event(self, event):
            calls.append((self.name, "waits for", event))

    def init(n, rank, **kw):
        calls.append(("init", n, rank, kw))
        return FakeComm()

    compute = FakeStream("compute")
    monkeypatch.setattr(cupyx.distributed, "init_process_group", init)
    monkeypatch.setattr(cupy.cuda, "Device", FakeDevice)
    monkeypatch.setattr(cupy.cuda, "Stream", FakeStream)
    monkeypatch.setattr(cupy.cuda, "get_current_stream", lambda: compute)
    world = distributed.MpiWorld.__new__(distributed.MpiWorld)
    world.rank, world.size, world.nccl, world.stream = 1, 2, None, None
    world.MPI = SimpleNamespace(Request=type("Request", (), {}))
    world.use_nccl(3)
    assert calls[:2] == [("device", 3), ("init", 2, 1, {"backend": "nccl", "use_mpi": True})]
    world.allreduce(SimpleNamespace(shape=(4,)))  # a device array
    assert calls[2:] == [
        ("comm", "waits for", "event of compute"),
        ("all_reduce", True, "sum", "comm"),
        ("compute", "waits for", "event of comm"),
    ]


def test_checksum_sees_one_changed_bit():
    a = {"w": numpy.arange(6.0).reshape(2, 3), "b": numpy.zeros(2)}
    b = {k: v.copy() for k, v in a.items()}
    assert distributed.checksum(a) == distributed.checksum(b)
    b["w"].view(numpy.uint64)[1, 1] ^= 1
    assert distributed.checksum(a) != distributed.checksum(b)


# -- under mpiexec ----------------------------------------------------------------------
MPIEXEC = shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None, reason="mpiexec not found (pip install -e '.[dist]')"
)


def train_args(data_dir, out, *extra):
    return [
        "-m",
        "refnet.train",
        "--data",
        str(data_dir),
        "--arch",
        "tiny",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--seed",
        "3",
        "--batch",
        "8",
        "--lr",
        "0.01",
        "--dtype",
        "float64",
        "--quiet",
        *extra,
    ]


def mpirun(ranks, args, timeout=TIMEOUT, **kw):
    cmd = (
        [MPIEXEC, "-n", str(ranks), sys.executable, *args] if ranks > 1 else [sys.executable, *args]
    )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def last_state(out):
    return checkpoint.latest_valid(out, warn=pytest.fail)[1]


def max_rel(a, b):
    return max(numpy.abs(a[k] - b[k]).max() / numpy.abs(b[k]).max() for k in b)


def flat_state(tree):
    from refnet.checkpoint import _flatten

    return {**tree["model"], **{f"v/{k}": v for k, v in _flatten(tree["optimizer"]).items()}}


def records(out, kind):
    return [
        r
        for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
        if r["kind"] == kind
    ]


@needs_mpi
@pytest.mark.slow
def test_ranks_train_the_one_process_model(data_dir, tmp_path):
    runs = {}
    for name, ranks in (("one", 1), ("two", 2), ("two_again", 2), ("three", 3)):
        out = tmp_path / name
        r = mpirun(ranks, train_args(data_dir, out, "--epochs", "2"))
        assert r.returncode == 0, r.stderr
        runs[name] = out
    one, two = last_state(runs["one"]), last_state(runs["two"])
    assert two["step"] == one["step"] == 20
    assert max_rel(flat_state(two), flat_state(one)) < 1e-12
    assert max_rel(flat_state(last_state(runs["three"])), flat_state(one)) < 1e-12
    again = flat_state(last_state(runs["two_again"]))
    assert all(again[k].tobytes() == v.tobytes() for k, v in flat_state(two).items())
    # the validation errors: counts summed over the ranks' blocks, the same numbers
    for name in ("two", "three"):
        got = [(e["val_top1_error"], e["val_top5_error"]) for e in records(runs[name], "epoch")]
        want = [(e["val_top1_error"], e["val_top5_error"]) for e in records(runs["one"], "epoch")]
        assert got == want
    world = records(runs["three"], "world")[0]
    assert world["world_size"] == 3 and [d["rank"] for d in world["ranks"]] == [0, 1, 2]
    assert world["batch_slices"] == [3, 3, 2]
    cores = sorted(os.sched_getaffinity(0))
    assert world["cores_per_rank"] == len(core_share(0, 3, cores))
    assert all(r["world_size"] == 3 for r in records(runs["three"], "epoch"))


@needs_mpi
@pytest.mark.slow
def test_resume_on_the_same_and_on_another_number_of_ranks(data_dir, tmp_path):
    whole = tmp_path / "whole"
    assert mpirun(2, train_args(data_dir, whole, "--epochs", "2")).returncode == 0
    for ranks in (2, 3):
        out = tmp_path / f"resumed{ranks}"
        r = mpirun(2, train_args(data_dir, out, "--epochs", "1"))
        assert r.returncode == 0, r.stderr
        r = mpirun(ranks, train_args(data_dir, out, "--epochs", "2", "--resume"))
        assert r.returncode == 0, r.stderr
        got, want = flat_state(last_state(out)), flat_state(last_state(whole))
        if ranks == 2:
            assert all(got[k].tobytes() == v.tobytes() for k, v in want.items())
        else:
            assert max_rel(got, want) < 1e-12


def start_job(data_dir, out, *extra):
    """A long two-rank training job on ``data_dir`` into ``out``, started and not waited
    for (its progress lines on, for the start line's PIDs)."""
    cmd = [
        MPIEXEC,
        "-n",
        "2",
        sys.executable,
        *train_args(data_dir, out, "--epochs", "1000", *extra),
    ]
    cmd.remove("--quiet")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@needs_mpi
@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    job = start_job(data_dir, out, "--checkpoint-every", "5")
    try:
        assert _wait_for(
            lambda: (
                (out / "log.jsonl").exists()
                and checkpoint.list_checkpoints(out)
                and records(out, "world")
            ),
            90,
        ), "the job did not start"
        victim = records(out, "world")[0]["ranks"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = job.communicate(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode != 0
    assert f"PID {victim}" in stdout + stderr  # mpiexec names the process
    assert f"rank 1 pid {victim}" in stdout  # and the start line its rank
    state = last_state(out)  # intact: resumes
    r = mpirun(1, train_args(data_dir, out, "--resume", "--epochs", str(state["epoch"] + 1)))
    assert r.returncode == 0, r.stderr


@needs_mpi
@pytest.mark.slow
def test_a_rank_that_cannot_open_its_data_fails_the_start(data_dir, tmp_path):
    out = tmp_path / "run"
    bad = tmp_path / "missing"
    bad.mkdir()
    cmd = [
        MPIEXEC,
        "-n",
        "1",
        sys.executable,
        *train_args(data_dir, out),
        ":",
        "-n",
        "1",
        sys.executable,
        *train_args(bad, out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2, r.stderr
    assert "rank 1" in r.stderr and str(bad) in r.stderr
    assert "rank 0 (" not in r.stderr  # rank 0's data was fine
    assert not out.exists()  # a refused start leaves nothing


# Rank 1 of an MPMD job runs this instead of python -m refnet.train: the training step
# with a fault on its third call, "raise" (an error on that rank alone) or "drift" (its
# replica moves away from the others).
ONE_FAULTY_RANK = r"""
import sys
import refnet.sgd, refnet.train
fault, argv = sys.argv[1], sys.argv[2:]
step = refnet.sgd.SGD.step
calls = {"n": 0}
def patched(self, grads):
    calls["n"] += 1
    if calls["n"] == 3 and fault == "raise":
        raise RuntimeError("injected fault in the SGD step")
    step(self, grads)
    if calls["n"] == 3 and fault == "drift":
        w = self.net.params[0][sorted(self.net.params[0])[0]]
        w.reshape(-1)[0] += 1e-9
refnet.sgd.SGD.step = patched
sys.exit(refnet.train.main(argv))
"""


def with_faulty_rank_1(fault, args):
    """mpiexec of 2 ranks: rank 0 as usual, rank 1 with ``fault`` (ONE_FAULTY_RANK)."""
    return [
        MPIEXEC,
        "-n",
        "1",
        sys.executable,
        *args,
        ":",
        "-n",
        "1",
        sys.executable,
        "-c",
        ONE_FAULTY_RANK,
        fault,
        *args[2:],
    ]


@needs_mpi
@pytest.mark.slow
def test_an_error_on_one_rank_aborts_every_rank(data_dir, tmp_path):
    out = tmp_path / "run"
    cmd = with_faulty_rank_1("raise", train_args(data_dir, out, "--epochs", "50"))
    start = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert time.monotonic() - start < 60
    assert r.returncode != 0
    assert "injected fault" in r.stderr and "[rank 1 of 2" in r.stderr


def test_wait_until_read_waits_for_the_pipes_reader(tmp_path):
    r, w = os.pipe()
    try:
        os.write(w, b"x" * 5000)
        start = time.monotonic()
        assert not distributed.wait_until_read(w, timeout=0.2)  # nobody reads
        assert time.monotonic() - start >= 0.2
        got = []
        reader = threading.Timer(0.3, lambda: got.append(os.read(r, 10000)))
        reader.start()
        start = time.monotonic()
        assert distributed.wait_until_read(w, timeout=5)
        assert 0.25 < time.monotonic() - start < 4 and len(got[0]) == 5000
        reader.join()
    finally:
        os.close(r)
        os.close(w)
    with open(tmp_path / "f", "wb") as f:  # a file: nothing to wait for
        assert distributed.wait_until_read(f.fileno(), timeout=0)


# A rank that says a lot on stderr and aborts: Hydra drops what is still in the pipe
# unless the abort waits until the launcher has read it.
LONG_REPORT = r"""
import sys
from refnet.distributed import current_world
world = current_world()
if world.rank == 1:
    for i in range(3000):
        print(f"line {i} of a long report", file=sys.stderr)
    print("the last line", file=sys.stderr)
    world.abort(3)
world.allgather(0)
"""


@needs_mpi
@pytest.mark.slow
def test_an_abort_loses_nothing_the_rank_wrote():
    for _ in range(5):
        cmd = [MPIEXEC, "-n", "2", sys.executable, "-c", LONG_REPORT]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 3
        assert "the last line" in r.stderr


@needs_mpi
@pytest.mark.slow
def test_divergence_stops_every_rank_together(data_dir, tmp_path):
    out = tmp_path / "run"
    r = mpirun(2, train_args(data_dir, out, "--epochs", "3", "--lr", "1e12"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("diverged") == 1  # said once, by rank 0


@needs_mpi
@pytest.mark.slow
def test_replicas_that_drift_apart_stop_the_job_before_a_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    cmd = with_faulty_rank_1(
        "drift", train_args(data_dir, out, "--epochs", "2", "--checkpoint-every", "5")
    )
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2, r.stderr
    assert "replicas differ at step 5" in r.stderr and "rank(s) [1]" in r.stderr
    assert checkpoint.list_checkpoints(out) == []  # nothing written
