"""``python -m refnet.train`` on tiny data: loss goes down, outputs, exact resume, faults.

Every run is a real subprocess of the CLI on the ``tiny`` arch and a 5-class image set
built with ``data.build`` (tests/train_data.py), so these tests see what a user sees.
"""

import json
import signal
import subprocess
import sys
import time

import h5py
import numpy
import pytest

from refnet import checkpoint
from refnet.checkpoint import _flatten as _flat
from tests.train_data import make_tiny_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_set(tmp_path_factory.mktemp("tiny"), per_class=(16, 4))


def train_cmd(data_dir, out, *extra):
    return [
        sys.executable,
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
        "0.05",
        *extra,
    ]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def epoch_records(out):
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "epoch"]


def final_state(out):
    _, tree = checkpoint.latest_valid(out, warn=pytest.fail)
    return tree


def assert_bit_identical(a, b):
    for part in ("model", "optimizer"):
        fa, fb = _flat(a[part]), _flat(b[part])
        assert sorted(fa) == sorted(fb)
        for k in fa:
            assert fa[k].dtype == fb[k].dtype and fa[k].tobytes() == fb[k].tobytes(), (part, k)
    assert a["loader"] == b["loader"] and a["step"] == b["step"]
    assert a["schedule"] == b["schedule"]


def test_short_run_lowers_loss_and_writes_outputs(data_dir, tmp_path):
    out = tmp_path / "run"
    # without dropout and lighting noise the tiny net learns these images in 10 epochs
    r = run(
        train_cmd(
            data_dir,
            out,
            "--epochs",
            "10",
            "--keep",
            "2",
            "--lr",
            "0.01",
            "--dropout",
            "0",
            "--lighting",
            "0",
        )
    )
    assert r.returncode == 0, r.stderr
    recs = epoch_records(out)
    assert [x["epoch"] for x in recs] == list(range(1, 11))
    for x in recs:
        for key in (
            "train_loss",
            "val_top1_error",
            "val_top5_error",
            "lr",
            "seconds",
            "images_per_s",
        ):
            assert numpy.isfinite(x[key]), (key, x)
    losses = [x["train_loss"] for x in recs]
    assert numpy.mean(losses[-3:]) < losses[0] - 0.1, losses
    assert len(checkpoint.list_checkpoints(out)) == 2  # --keep
    assert (out / "curves.png").stat().st_size > 0
    assert (out / "conv1_filters.png").stat().st_size > 0
    assert "epoch 10/10: train loss" in r.stdout
    assert str(out) in r.stdout.splitlines()[-1]  # where outputs are
    intervals = [
        json.loads(x)
        for x in (out / "log.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "interval"
    ]
    assert intervals and all("loss" in x for x in intervals)


def test_sigkill_and_resume_is_bit_identical(data_dir, tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    args = ("--epochs", "12", "--checkpoint-every", "3", "--quiet")
    r = run(train_cmd(data_dir, ref, *args))
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(
        train_cmd(data_dir, killed, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not checkpoint.list_checkpoints(killed):
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = [s for s, _ in checkpoint.list_checkpoints(killed)]
    total = final_state(ref)["step"]
    assert max(steps) < total, "killed too late to test anything"
    r = run(train_cmd(data_dir, killed, "--resume", *args))
    assert r.returncode == 0, r.stderr
    assert_bit_identical(final_state(ref), final_state(killed))
    a, b = epoch_records(ref), epoch_records(killed)
    assert [x["val_top1_error"] for x in a] == [x["val_top1_error"] for x in b[-len(a) :]]


def test_resume_extends_to_new_total(data_dir, tmp_path):
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert run(train_cmd(data_dir, full, "--epochs", "3", "--quiet")).returncode == 0
    assert run(train_cmd(data_dir, parts, "--epochs", "1", "--quiet")).returncode == 0
    r = run(train_cmd(data_dir, parts, "--epochs", "3", "--resume"))
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout
    assert_bit_identical(final_state(full), final_state(parts))
    assert [x["epoch"] for x in epoch_records(parts)] == [1, 2, 3]


def test_corrupt_newest_checkpoint_falls_back(data_dir, tmp_path):
    out = tmp_path / "run"
    assert run(train_cmd(data_dir, out, "--epochs", "2", "--quiet")).returncode == 0
    (_, older), (_, newest) = checkpoint.list_checkpoints(out)[-2:]
    with open(newest, "r+b") as fh:
        fh.truncate(newest.stat().st_size // 3)
    r = run(train_cmd(data_dir, out, "--epochs", "3", "--resume"))
    assert r.returncode == 0, r.stderr
    assert newest.name in r.stderr and "previous" in r.stderr
    assert f"resuming from {older}" in r.stdout


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    cmd = train_cmd(data_dir, out, "--epochs", "3", "--checkpoint-every", "1")
    cmd[cmd.index("--lr") + 1] = "1e6"
    r = run(cmd)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    msg = [x for x in r.stderr.splitlines() if "error" in x]
    assert len(msg) == 1 and "step" in msg[0] and "--lr" in msg[0], r.stderr
    for _, path in checkpoint.list_checkpoints(out):  # every file left is usable
        tree = checkpoint.load(path)
        assert all(numpy.isfinite(v).all() for v in tree["model"].values())


def test_sigint_writes_checkpoint_and_exits_cleanly(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        train_cmd(data_dir, out, "--epochs", "40", "--log-every", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "log.jsonl").exists() or checkpoint.list_checkpoints(out) == []:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # a checkpoint written for the interrupt, or (Ctrl-C while evaluating) the last one
    assert "Traceback" not in err and f"--resume --out {out}" in err
    step, path = checkpoint.list_checkpoints(out)[-1]
    tree = checkpoint.load(path)
    assert tree["step"] == step and step < 40 * 10
    r = run(train_cmd(data_dir, out, "--epochs", "40", "--resume", "--quiet"))
    assert r.returncode == 0, r.stderr


def _one_error_line(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_user_errors_are_one_line(data_dir, tmp_path):
    _one_error_line(run(train_cmd(data_dir, tmp_path / "a", "--batch", "0")), "--batch")
    _one_error_line(run(train_cmd(data_dir, tmp_path / "a", "--pool", "3x2")), "--pool")
    _one_error_line(run(train_cmd(tmp_path / "missing", tmp_path / "a")), "does not exist")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.h5").write_bytes(b"garbage")
    (bad / "val.h5").write_bytes(b"garbage")
    _one_error_line(run(train_cmd(bad, tmp_path / "a")), "malformed")
    with h5py.File(bad / "train.h5", "w") as f:  # HDF5 but not a store
        f["images"] = numpy.zeros((2, 3))
    _one_error_line(run(train_cmd(bad, tmp_path / "a")), "malformed")


def test_checkpoint_of_another_arch_is_refused(data_dir, tmp_path):
    out = tmp_path / "run"
    assert run(train_cmd(data_dir, out, "--epochs", "1", "--quiet")).returncode == 0
    cmd = train_cmd(data_dir, out, "--resume")
    cmd[cmd.index("--arch") + 1] = "demo"
    _one_error_line(run(cmd), "arch")
    # a checkpoint edited to claim another arch, with a valid checksum
    _, path = checkpoint.list_checkpoints(out)[-1]
    tree = checkpoint.load(path)
    tree["arch"] = "demo"
    tree["config"]["arch"] = "demo"
    checkpoint.save(path, tree)
    _one_error_line(run(train_cmd(data_dir, out, "--resume")), "arch")


def test_existing_run_dir_needs_resume(data_dir, tmp_path):
    out = tmp_path / "run"
    assert run(train_cmd(data_dir, out, "--epochs", "1", "--quiet")).returncode == 0
    _one_error_line(run(train_cmd(data_dir, out, "--epochs", "2")), "--resume")


KILLED_AT_EPOCH_END = r"""
import os, sys
import refnet.train
refnet.train.Trainer.end_epoch = lambda self, *a: os._exit(9)   # killed before the epoch ends
sys.exit(refnet.train.main(sys.argv[1:]))
"""


def test_resume_from_a_checkpoint_taken_after_an_epochs_last_batch(data_dir, tmp_path):
    """A checkpoint written after the last batch of an epoch but before its end (its
    loader already in the next epoch) resumes: the epoch has no batches left, only its
    evaluation."""
    out = tmp_path / "run"
    args = train_cmd(data_dir, out, "--epochs", "1", "--checkpoint-every", "10")[1:]
    r = run([sys.executable, "-c", KILLED_AT_EPOCH_END, *args[2:]])
    assert r.returncode == 9, r.stderr
    tree = final_state(out)
    assert tree["step"] == 10 and tree["epoch"] == 0 and tree["loader"] == [1, 0]
    r = run(train_cmd(data_dir, out, "--epochs", "1", "--resume"))
    assert r.returncode == 0, r.stderr
    assert [x["epoch"] for x in epoch_records(out)] == [1]
    assert final_state(out)["step"] == 10


def test_validation_runs_in_batches_of_eval_batch(data_dir, tmp_path, monkeypatch):
    """Per-epoch and final validation go through forward passes of ``--eval-batch``
    images (default 128, whatever ``--batch``), the last one the rest of the set."""
    from refnet import evaluate
    from refnet.train import train_run

    seen = []
    predict = evaluate.predict_views
    monkeypatch.setattr(
        evaluate, "predict_views", lambda net, v: seen.append(v.shape[:-3]) or predict(net, v)
    )
    for name, extra, batches in (
        ("default", (), [(20,), (10, 20)]),
        ("seven", ("--eval-batch", "7"), [(7,), (7,), (6,), (10, 7), (10, 7), (10, 6)]),
    ):
        seen.clear()
        argv = train_cmd(data_dir, tmp_path / name, "--epochs", "2", "--quiet", *extra)[3:]
        train_run(argv, stdout=lambda *a, **k: None)
        assert seen == batches, name
