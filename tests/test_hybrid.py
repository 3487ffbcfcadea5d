"""Hybrid parallel (``--parallel hybrid``): convolutions data parallel, fc6-fc8 split over
the ranks (refnet.nodes.RankGather, the sharded ``Placement.rows``).

In one process, R ranks run as R threads of a world whose collectives meet at a
barrier (``ThreadRanks``), each summing in rank order: the rank crossings against
numpy's concatenate and sum, the sharded rows against ``numpy.array_split``, and a whole
hybrid network's loss and gradients against one process's. Under ``mpiexec`` (the slow
tests): the trainer's model, validation errors and checkpoints against one process's,
resuming under the other scheme and other numbers of ranks, and the faults.
"""

import json
import os
import signal
import subprocess
import sys
import threading

import numpy
import pytest

from refnet import checkpoint, sample_draws
from refnet.agreement import check_replicas
from refnet.columns import Placement, rank_block
from refnet.distributed import DistributedError, GradientReducer, Solo, gradient_reducer
from refnet.network import AlexNet, build_network
from refnet.nodes import Dropout, Pass, RankGather
from refnet.options import NetOptions
from tests.test_distributed import (
    MPIEXEC,
    TIMEOUT,
    SimulatedRanks,
    _wait_for,
    flat_state,
    last_state,
    max_rel,
    mpirun,
    needs_mpi,
    records,
    start_job,
    train_args,
)
from tests.train_data import make_tiny_set


# -- R ranks as threads ------------------------------------------------------------------
class ThreadRanks:
    """The meeting point of ``size`` thread ranks: each collective puts this rank's value
    in a slot, waits for every rank, reads all slots, and waits again."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots = [None] * size

    def exchange(self, rank, value):
        self.slots[rank] = value
        self.barrier.wait()
        got = list(self.slots)
        self.barrier.wait()
        return got

    def run(self, fn):
        """``[fn(world of rank r) for every r]``, each rank in its own thread."""
        results, errors = [None] * self.size, []

        def one(r):
            try:
                results[r] = fn(ThreadWorld(self, r))
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append(e)
                self.barrier.abort()

        threads = [threading.Thread(target=one, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


class ThreadWorld(Solo):
    def __init__(self, ranks, rank):
        self.ranks, self.rank, self.size = ranks, rank, ranks.size

    def allgather(self, obj):
        return json.loads(json.dumps(self.ranks.exchange(self.rank, obj)))

    def allgatherv(self, buf, counts):
        assert buf.ndim == 1 and buf.size == counts[self.rank]
        bufs = self.ranks.exchange(self.rank, buf.copy())
        assert [b.size for b in bufs] == list(counts)
        return numpy.concatenate(bufs)

    def reduce_scatter(self, buf, counts):
        assert buf.ndim == 1 and buf.size == sum(counts)
        bufs = self.ranks.exchange(self.rank, buf.copy())
        total = bufs[0].copy()
        for b in bufs[1:]:
            total += b
        start = sum(counts[: self.rank])
        return total[start : start + counts[self.rank]]

    def allreduce(self, buf):
        bufs = self.ranks.exchange(self.rank, buf.copy())
        total = bufs[0].copy()
        for b in bufs[1:]:
            total += b
        buf[...] = total
        return buf

    def iallreduce(self, buf):
        self.allreduce(buf)


# -- the rank crossing ------------------------------------------------------------------
class _Ctx:
    """What RankGather reads of a Context: the placement's device and module."""

    def __init__(self):
        self.placement = Placement(numpy, 2, (0, 0), {}, parallel=False)


@pytest.mark.parametrize(
    "axis,sizes,shape",
    [(3, (3, 0, 2), (4, 2, 2, None)), (0, (1, 2, 2), (None, 3, 2, 2)), (1, (2, 2, 1), (5, None))],
)
@pytest.mark.parametrize("partial", [True, False])
def test_rank_gather_is_concatenate_and_its_backward_sums_or_keeps_the_own_block(
    axis, sizes, shape, partial
):
    rng = numpy.random.default_rng(7)
    R = len(sizes)

    def block(n):
        return rng.standard_normal(tuple(n if s is None else s for s in shape))

    xs = [[block(n) for n in sizes] for _ in range(2)]  # [column][rank]
    full = tuple(sum(sizes) if s is None else s for s in shape)
    dys = [[rng.standard_normal(full) for _ in range(2)] for _ in range(R)]  # [rank][column]
    given = None if axis == 3 else sizes  # the batch's sizes are exchanged

    def rank(world):
        layer = RankGather("g", axis, partial, world, given)
        pass_ = Pass(True, None, None, keep=True)
        pass_.n = sizes[world.rank]
        y, cache = layer.forward([xs[c][world.rank] for c in range(2)], pass_, _Ctx())
        dx = layer.backward(dys[world.rank], cache, [{}, {}], _Ctx())
        return y, dx, pass_.n

    out = ThreadRanks(R).run(rank)
    ends = numpy.cumsum((0,) + sizes)
    for r, (y, dx, n) in enumerate(out):
        assert n == (sum(sizes) if given is None else sizes[r])
        for c in range(2):
            assert numpy.array_equal(y[c], numpy.concatenate(xs[c], axis=axis))
            assert y[c].flags.c_contiguous
            own = [slice(None)] * len(full)
            own[axis] = slice(ends[r], ends[r + 1])
            want = sum(dys[q][c] for q in range(R)) if partial else dys[r][c]
            numpy.testing.assert_allclose(dx[c], want[tuple(own)], rtol=1e-15, atol=0)
            assert dx[c].shape == xs[c][r].shape


def test_rank_gather_refuses_a_block_of_the_wrong_size():
    with pytest.raises(ValueError, match="one entry per rank"):
        RankGather("g", 1, True, ThreadWorld(ThreadRanks(2), 0), (1, 2, 3))
    layer = RankGather("g", 1, True, ThreadWorld(ThreadRanks(2), 0), (2, 2))
    with pytest.raises(ValueError, match="holds 3 along axis 1, not 2"):
        layer.forward([numpy.zeros((4, 3))], Pass(False, None, None, keep=False), _Ctx())


# -- the sharded rows -------------------------------------------------------------------
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
@pytest.mark.parametrize("columns", [1, 2])
def test_sharded_rows_tile_each_columns_block_as_array_split_does(ranks, columns):
    shapes = {"fc6.weight": (16, 6), "fc6.bias": (16,), "fc8.weight": (5, 4), "c.w": (6, 2)}
    sharded = {"fc6.weight", "fc6.bias", "fc8.weight"}
    places = [
        Placement(numpy, columns, (0,) * columns, shapes, ranks=(r, ranks), sharded=sharded)
        for r in range(ranks)
    ]
    for name in shapes:
        blocks = places[0].blocks[name]
        for i, (c, lo, hi) in enumerate(blocks):
            got = [p.rows[name][i] for p in places]
            if name in sharded:
                sizes = [len(p) for p in numpy.array_split(numpy.arange(lo, hi), ranks)]
                ends = lo + numpy.cumsum([0] + sizes)
                want = [(c, int(a), int(b)) for a, b in zip(ends, ends[1:], strict=False)]
                assert got == want
                assert places[0].rank_rows(name)[i] == [g[1:] for g in got]
            else:
                assert all(g == (c, lo, hi) for g in got)
    assert rank_block(0, 2, 2, 3) == (2, 2)  # a rank may hold no row


def test_placement_refuses_a_bad_rank_or_name():
    with pytest.raises(ValueError, match=r"0 <= rank < size, got \(2, 2\)"):
        Placement(numpy, 1, (0,), {"a": (2,)}, ranks=(2, 2))
    with pytest.raises(ValueError, match=r"\['b'\] are not parameters"):
        Placement(numpy, 1, (0,), {"a": (2,)}, ranks=(0, 2), sharded={"b"})


def test_dropout_masks_of_a_rank_are_its_columns_of_the_full_mask():
    full = numpy.random.default_rng(1).random((4, 16)) >= 0.5
    place = Placement(numpy, 2, (0, 0), {}, parallel=False)
    for r, want in enumerate([(0, 3), (3, 6), (6, 8)]):
        layer = Dropout("d", "fc6", width=16, ranks=(r, 3))
        pass_ = Pass(True, None, {"fc6": full}, keep=False)
        pass_.n = 4
        m0, m1 = layer.masks(pass_, place)
        assert numpy.array_equal(m0, full[:, want[0] : want[1]])
        assert numpy.array_equal(m1, full[:, 8 + want[0] : 8 + want[1]])


# -- a hybrid network in threads ------------------------------------------------------------
def _tiny(ranks=None, **kw):
    return AlexNet("tiny", dtype="float64", conv_algo="gemm", ranks=ranks, **kw)


@pytest.mark.parametrize(
    "ranks,kw",
    [
        (2, {"engine": "fast"}),
        (3, {}),
        (3, {"layout": "NCHW", "columns": 1}),
        (3, {"dropout_placement": "before", "dropout_mode": "inverted"}),
    ],
)
def test_hybrid_network_gives_the_one_process_loss_and_gradients(ranks, kw):
    rng = numpy.random.default_rng(4)
    B = 8  # 3 + 3 + 2 over three ranks
    x, y = rng.standard_normal((B, 3, 45, 45)), rng.integers(0, 5, B)
    ref = _tiny(**{"engine": "plain", **kw}).init(seed=2, scheme="he")
    masks = sample_draws.dropout_masks(5, 1, numpy.arange(B) + 40, ref.dropout_widths(), 0.5)
    ref_loss, ref_grads = ref.loss_and_grad(x, y, masks=masks)
    ref_probs = ref.predict_proba(x)

    def rank(world):
        opts = {"engine": "plain", **kw}  # no column threads inside the rank threads
        net = _tiny(world, **opts).init(seed=2, scheme="he")
        mine = numpy.array_split(numpy.arange(B), world.size)[world.rank]
        loss, grads = net.loss_and_grad_columns(x[mine], y, masks=masks)
        reducer = gradient_reducer(world, net)
        total, (flag,) = reducer.reduce(grads, loss, len(mine), B, extras=(world.rank == 1,))
        probs = net.predict_proba(x[mine])
        return loss, total, flag, net.full_grads(grads), probs, net.state_dict()

    for loss, total, flag, grads, probs, sd in ThreadRanks(ranks).run(rank):
        assert loss == total and abs(loss - ref_loss) < 1e-13 * ref_loss and flag == 1.0
        for k, g in ref_grads.items():
            assert g.shape == grads[k].shape
            assert numpy.abs(grads[k] - g).max() <= 1e-12 * numpy.abs(g).max(), k
        assert numpy.abs(probs - ref_probs).max() < 1e-13
        assert all(numpy.array_equal(v, ref.state_dict()[k]) for k, v in sd.items())


def test_hybrid_parameters_init_load_and_gather_full_arrays():
    full = _tiny().init(seed=3, scheme="he").state_dict()
    R = 3

    def rank(world):
        net = _tiny(world).init(seed=3, scheme="he")  # drawn full, own rows kept
        held = {k: a.shape for k, a in net.params[0].items()}
        doubled = {k: 2 * v for k, v in full.items()}
        net.load_state_dict(doubled)
        check_replicas(world, net.state_dict(), 0, net)
        return held, net.state_dict(), net.replicated_layers()

    out = ThreadRanks(R).run(rank)
    for r, (held, sd, replicated) in enumerate(out):
        assert held["fc6.weight"] == (len(numpy.array_split(numpy.arange(8), R)[r]), 32)
        assert held["fc8.weight"][0] == len(numpy.array_split(numpy.arange(5), R)[r])
        assert held["conv1.weight"] == (2, 3, 3, 3)
        assert all(numpy.array_equal(sd[k], 2 * full[k]) for k in full)
        assert replicated == ["conv1", "conv2", "conv3", "conv4", "conv5"]


def test_check_replicas_sees_a_rank_whose_shard_does_not_fit():
    def rank(world):
        net = _tiny(world).init(seed=3, scheme="he")
        if world.rank == 1:
            net.params[0]["fc7.bias"] = net.params[0]["fc7.bias"][:-1]
        check_replicas(world, {}, 7, net)

    with pytest.raises(DistributedError, match=r"fc7.bias \(column 0\) at step 7"):
        ThreadRanks(2).run(rank)


def test_a_world_of_one_or_a_gap_head_is_no_hybrid_network():
    assert build_network(NetOptions(arch="tiny"), ranks=Solo()).ranks is None
    with pytest.raises(ValueError, match="head 'gap' has no fc layers"):
        _tiny(ThreadWorld(ThreadRanks(2), 0), head="gap")


def test_reducer_of_the_replicated_layers_sums_at_scale_one():
    sim = SimulatedRanks(2)
    rng = numpy.random.default_rng(5)
    grads = [[{}, {}], [{}, {}]]
    for r in (1, 0):
        net = _tiny().init(seed=1, scheme="he")
        reducer = GradientReducer(sim.world(r), net, layers=["conv2"], mean=False)
        assert list(reducer.layout) == ["conv2"]
        for c in range(2):
            for k, p in net.params[c].items():
                grads[r][c][k] = rng.standard_normal(p.shape)
        mine = [{k: v.copy() for k, v in g.items()} for g in grads[r]]
        reducer.begin(3, 8)
        reducer.ready("fc8", mine)  # not reduced: left as it is
        loss, _ = reducer.reduce(mine, 1.5, 3, 8)
    assert loss == 1.5  # rank 0's, as it is
    for c in range(2):
        for k in mine[c]:
            want = grads[0][c][k] + grads[1][c][k] if k.startswith("conv2") else grads[0][c][k]
            assert numpy.array_equal(mine[c][k], want), k


# -- under mpiexec ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_set(tmp_path_factory.mktemp("hy"), per_class=(16, 4))


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """20 steps of batch 8 (3 + 3 + 2 on three ranks): one process, and hybrid on 2
    (twice) and 3 ranks."""
    root, out = tmp_path_factory.mktemp("runs"), {}
    for name, ranks, how in (
        ("one", 1, "data"),
        ("two", 2, "hybrid"),
        ("two_again", 2, "hybrid"),
        ("three", 3, "hybrid"),
    ):
        out[name] = root / name
        args = train_args(data_dir, out[name], "--epochs", "2", "--final-views", "center")
        r = mpirun(ranks, [*args, "--parallel", how])
        assert r.returncode == 0, r.stderr
    return out


def _errors(out):
    return [(e["val_top1_error"], e["val_top5_error"]) for e in records(out, "epoch")]


@needs_mpi
@pytest.mark.slow
def test_hybrid_ranks_train_the_one_process_model(runs):
    one = last_state(runs["one"])
    assert last_state(runs["two"])["step"] == one["step"] == 20
    for name in ("two", "three"):
        assert max_rel(flat_state(last_state(runs[name])), flat_state(one)) < 1e-12
        assert _errors(runs[name]) == _errors(runs["one"])
    again, two = flat_state(last_state(runs["two_again"])), flat_state(last_state(runs["two"]))
    assert all(again[k].tobytes() == v.tobytes() for k, v in two.items())
    world = records(runs["three"], "world")[0]
    assert world["parallel"] == "hybrid" and world["batch_slices"] == [3, 3, 2]


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("ranks,how", [(1, "data"), (3, "hybrid"), (2, "data")])
def test_a_hybrid_checkpoint_resumes_on_any_ranks_and_scheme(runs, data_dir, tmp_path, ranks, how):
    out = tmp_path / "run"
    out.mkdir()
    path = dict((s, p) for s, p in checkpoint.list_checkpoints(runs["two"]))[10]  # epoch 1
    (out / path.name).write_bytes(path.read_bytes())
    (out / "log.jsonl").write_bytes((runs["two"] / "log.jsonl").read_bytes())
    args = train_args(data_dir, out, "--epochs", "2", "--resume", "--parallel", how)
    r = mpirun(ranks, args)
    assert r.returncode == 0, r.stderr
    got, want = flat_state(last_state(out)), flat_state(last_state(runs["two"]))
    assert last_state(out)["step"] == 20
    assert max_rel(got, want) < 1e-12
    assert _errors(out) == _errors(runs["two"])


def _start(data_dir, out, *extra):
    job = start_job(data_dir, out, "--parallel", "hybrid", *extra)
    started = _wait_for(
        lambda: (out / "log.jsonl").exists() and records(out, "world") and records(out, "epoch"),
        90,
    )
    return job, started


@needs_mpi
@pytest.mark.slow
def test_a_killed_hybrid_rank_ends_the_job(data_dir, tmp_path):
    out = tmp_path / "run"
    job, started = _start(data_dir, out)
    try:
        assert started, "the job did not start"
        victim = records(out, "world")[0]["ranks"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode != 0
    assert f"PID {victim}" in stdout + stderr
    assert "hybrid parallel over 2 ranks" in stdout and f"rank 1 pid {victim}" in stdout


# Rank 0 of an MPMD job runs this instead of python -m refnet.train: a Ctrl-C (SIGINT to
# itself) during its 13th SGD step, so the flag is raised while a step runs.
CTRL_C_IN_STEP_13 = r"""
import os, signal, sys
import refnet.sgd, refnet.train
step, calls = refnet.sgd.SGD.step, {"n": 0}
def patched(self, grads):
    calls["n"] += 1
    if calls["n"] == 13:
        os.kill(os.getpid(), signal.SIGINT)
    step(self, grads)
refnet.sgd.SGD.step = patched
sys.exit(refnet.train.main(sys.argv[1:]))
"""


@needs_mpi
@pytest.mark.slow
def test_ctrl_c_on_rank_0_stops_every_hybrid_rank_after_the_same_step(data_dir, tmp_path):
    out = tmp_path / "run"
    args = train_args(data_dir, out, "--epochs", "1000", "--parallel", "hybrid")
    cmd = [MPIEXEC, "-n", "1", sys.executable, "-c", CTRL_C_IN_STEP_13, *args[2:]]
    cmd += [":", "-n", "1", sys.executable, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 130, r.stderr
    assert r.stderr.count("checkpoint written to") == 1  # said once, by rank 0
    assert last_state(out)["step"] == 14  # the flag goes with step 14's reduce


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("counts", [(3, 1, 0), (2, 2, 2)])
def test_device_blocks_go_through_nccl_padded_to_the_largest(monkeypatch, counts):
    """The CuPy path of allgatherv and reduce_scatter, with NumPy arrays standing for
    device arrays and a fake NCCL communicator of three ranks (the others' buffers
    given): blocks padded to the largest go through all_gather / reduce_scatter on the
    communication stream, and come back unpadded."""
    cupy = pytest.importorskip("cupy")
    from refnet import distributed

    R, rank = len(counts), 1
    most = max(counts)
    rng = numpy.random.default_rng(8)
    blocks = [rng.standard_normal(n) for n in counts]  # every rank's allgatherv input
    sums = [rng.standard_normal(sum(counts)) for _ in range(R)]  # reduce_scatter inputs
    calls = []

    class FakeComm:
        def all_gather(self, send, recv, count, stream):
            calls.append(("all_gather", count, stream))
            assert send.size == most and recv.size == R * most and count == most
            assert numpy.array_equal(send[: counts[rank]], blocks[rank])
            for r in range(R):
                recv[r * most : (r + 1) * most] = 0.0
                recv[r * most : r * most + counts[r]] = blocks[r]

        def reduce_scatter(self, send, recv, count, op, stream):
            calls.append(("reduce_scatter", count, stream))
            assert send.size == R * most and recv.size == most and op == "sum"
            ends = numpy.cumsum((0,) + counts)
            mine = send[rank * most : rank * most + counts[rank]]
            assert numpy.array_equal(mine, sums[rank][ends[rank] : ends[rank + 1]])
            recv[:] = 0.0
            recv[: counts[rank]] = sum(s[ends[rank] : ends[rank + 1]] for s in sums)

    class FakeStream:
        def __init__(self, non_blocking=False):
            pass

        def record(self):
            return None

        def wait_event(self, event):
            pass

    monkeypatch.setattr(cupy, "zeros", numpy.zeros)
    monkeypatch.setattr(cupy, "empty", numpy.empty)
    monkeypatch.setattr(cupy, "concatenate", numpy.concatenate)
    monkeypatch.setattr(cupy.cuda, "Stream", FakeStream)
    monkeypatch.setattr(cupy.cuda, "get_current_stream", FakeStream)
    world = distributed.MpiWorld.__new__(distributed.MpiWorld)
    world.rank, world.size, world.nccl, world.stream = rank, R, FakeComm(), None
    monkeypatch.setattr(distributed, "on_host", lambda buf: False)  # a device array
    got = world.allgatherv(blocks[rank], counts)
    mine = world.reduce_scatter(sums[rank], counts)
    assert numpy.array_equal(got, numpy.concatenate(blocks))
    ends = numpy.cumsum((0,) + counts)
    numpy.testing.assert_allclose(mine, sum(sums)[ends[rank] : ends[rank + 1]], rtol=1e-15)
    assert [c[:2] for c in calls] == [("all_gather", most), ("reduce_scatter", most)]
