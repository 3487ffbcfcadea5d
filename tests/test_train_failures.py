"""``python -m refnet.train`` fails cleanly: every fault ends the process within seconds.

Faults are injected by running the CLI through a small driver (``DRIVER``) that patches
one function before calling ``refnet.train.main`` in a fresh interpreter, exactly as
``python -m refnet.train`` does; so a hang at interpreter exit (a loader thread left
inside HDF5) shows as a timeout here. Every subprocess has a timeout, so a hang fails
the test instead of blocking the suite.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy
import pytest

from refnet import checkpoint, run_dir
from tests.train_data import make_tiny_set

pytestmark = pytest.mark.slow

TIMEOUT = 120  # generous for a loaded CI machine; a hang would never end

# The fault ``argv[1]`` is armed, then refnet.train.main(argv[2:]) runs as in the CLI.
DRIVER = r"""
import os, sys, threading, time
import refnet.sgd, refnet.train, refnet.checkpoint, refnet.layers.relu
fault, argv = sys.argv[1], sys.argv[2:]
calls = {"n": 0}

def nth(n):
    calls["n"] += 1
    return calls["n"] == n

if fault == "step":                                  # an error in the training step
    step = refnet.sgd.SGD.step
    def failing(self, grads):
        if nth(2):
            raise RuntimeError("injected fault at step 2")
        return step(self, grads)
    refnet.sgd.SGD.step = failing
elif fault == "column":                              # an error in a column thread
    backward = refnet.layers.relu.backward
    def failing(dy, cache, **kwargs):
        if threading.current_thread().name.startswith("refnet-column") and nth(3):
            raise RuntimeError("injected fault in a column thread")
        return backward(dy, cache, **kwargs)
    refnet.layers.relu.backward = failing
elif fault == "truncate":                            # the data file cut short mid-run
    step = refnet.sgd.SGD.step
    def truncating(self, grads):
        if nth(2):
            path = os.path.join(os.environ["FAULT_DATA"], "train.h5")
            os.truncate(path, os.path.getsize(path) // 3)
        return step(self, grads)
    refnet.sgd.SGD.step = truncating
elif fault == "evaluate":                            # an error in the evaluation
    def failing(*a, **k):
        raise RuntimeError("injected fault in evaluation")
    refnet.train.evaluate = failing
elif fault == "checkpoint":                          # an error while writing a checkpoint
    write = refnet.checkpoint._write_group
    def failing(group, prefix, obj, digests):
        if prefix == "" and nth(2):
            group.attrs["partial"] = 1
            raise OSError("injected fault: disk full")
        return write(group, prefix, obj, digests)
    refnet.checkpoint._write_group = failing
elif fault == "slow-eval":                           # a long evaluation, to interrupt
    evaluate = refnet.train.evaluate
    def slow(*a, **k):
        print("EVALUATING", file=sys.stderr, flush=True)
        time.sleep(60)
        return evaluate(*a, **k)
    refnet.train.evaluate = slow
elif fault == "slow-steps":                          # a long run, to meet another
    step = refnet.sgd.SGD.step
    def slow(self, grads):
        time.sleep(0.2)
        return step(self, grads)
    refnet.sgd.SGD.step = slow
elif fault == "diverge":                             # NaN loss at step 3
    loss_and_grad = refnet.network.AlexNet.loss_and_grad_columns
    def diverging(self, *a, **k):
        loss, grads = loss_and_grad(self, *a, **k)
        return (float("nan") if nth(3) else loss), grads
    refnet.network.AlexNet.loss_and_grad_columns = diverging
sys.exit(refnet.train.main(argv))
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_set(tmp_path_factory.mktemp("tiny"), per_class=(16, 4))


def args(data_dir, out, *extra):
    return [
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
        "--quiet",
        *extra,
    ]


def train(*argv, env=None):
    return subprocess.run(
        [sys.executable, "-m", "refnet.train", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )


def with_fault(fault, *argv, env=None, popen=False):
    cmd = [sys.executable, "-c", DRIVER, fault, *argv]
    if popen:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def last_line(r):
    return r.stderr.strip().splitlines()[-1]


def assert_checkpoints_intact(out):
    """Every checkpoint file loads and verifies; no temporary is left."""
    for _, path in checkpoint.list_checkpoints(out):
        checkpoint.load(path)
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]


# -- an error anywhere ends the run, within the subprocess timeout ----------------------------


@pytest.mark.parametrize(
    "fault, status, words",
    [
        ("step", 3, ["unexpected RuntimeError", "injected fault at step 2"]),
        ("column", 3, ["unexpected RuntimeError", "column thread"]),
        ("evaluate", 3, ["unexpected RuntimeError", "evaluation"]),
        ("checkpoint", 3, ["unexpected OSError", "disk full"]),
    ],
)
def test_an_error_anywhere_ends_the_process(data_dir, tmp_path, fault, status, words):
    out = tmp_path / "run"
    r = with_fault(fault, *args(data_dir, out, "--epochs", "3", "--checkpoint-every", "1"))
    assert r.returncode == status, r.stderr
    for w in words:
        assert w in last_line(r), r.stderr
    assert_checkpoints_intact(out)


def test_a_data_file_truncated_while_training_is_a_data_error(data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    r = with_fault(
        "truncate",
        *args(data, tmp_path / "run", "--epochs", "3"),
        env={**os.environ, "FAULT_DATA": str(data)},
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    line = last_line(r)  # noticed before the next batch, or read by a worker mid-epoch
    assert "train.h5" in line and (
        "changed while the run read it" in line or "could not be read" in line
    ), line


# -- Ctrl-C -----------------------------------------------------------------------------------


def wait_for(proc, predicate, what):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert proc.poll() is None, f"ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.02)


def test_ctrl_c_during_the_final_evaluation_stops_at_once(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = with_fault(
        "slow-eval", *args(data_dir, out, "--epochs", "1", "--checkpoint-every", "5"), popen=True
    )
    seen = []

    def evaluating():
        seen.append(proc.stderr.readline())
        return "EVALUATING" in seen[-1]

    wait_for(proc, evaluating, "evaluation")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert time.monotonic() - t0 < 10  # the evaluation sleeps 60 s
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "while evaluating" in err and f"--resume --out {out}" in err
    assert_checkpoints_intact(out)


# -- one run per folder -----------------------------------------------------------------------


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(data_dir, tmp_path):
    out = tmp_path / "run"
    first = with_fault("slow-steps", *args(data_dir, out, "--epochs", "50"), popen=True)
    try:
        wait_for(first, lambda: (out / "log.jsonl").exists(), "first run's log")
        second = train(*args(data_dir, out, "--epochs", "50", "--resume"))
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr
        assert f"in use by another run (process {first.pid}" in second.stderr
    finally:
        first.kill()  # SIGKILL: the kernel drops the lock
        first.communicate(timeout=TIMEOUT)
    resumed = train(*args(data_dir, out, "--epochs", "1", "--resume"))
    assert resumed.returncode == 0, resumed.stderr  # no stale lock


def test_default_run_folders_are_unique(tmp_path):
    name = run_dir.default_name("tiny", root=tmp_path)
    claims = [run_dir.claim(name, unique=True) for _ in range(3)]
    paths = [p for p, _, _ in claims]
    assert len(set(paths)) == 3 and all(created for _, _, created in claims)
    assert paths[1].name == paths[0].name + "-2"
    for _, lock, _ in claims:
        lock.release()


def test_a_refused_start_leaves_no_folder(data_dir, tmp_path):
    out = tmp_path / "new"
    r = train(*args(data_dir, out, "--batch", "100000"))
    assert r.returncode == 2 and "larger than the training set" in r.stderr
    assert not out.exists()


# -- resume: the learning rate, the data, the leftovers -----------------------------------------


def test_divergence_names_a_resume_command_that_works(data_dir, tmp_path):
    out = tmp_path / "run"
    r = with_fault("diverge", *args(data_dir, out, "--epochs", "2", "--checkpoint-every", "1"))
    assert r.returncode == 1, r.stderr
    line = last_line(r)
    assert "loss is nan at step 3" in line and "ckpt-00000002.h5" in line, line
    command = line[line.index("python -m refnet.train") :].split()
    assert command[:4] == ["python", "-m", "refnet.train", "--out"] and "--lr" in command
    resumed = train(*command[3:], "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    [resume] = [x for x in records if x["kind"] == "resume"]
    assert resume["step"] == 2 and resume["changes"]["lr"] == [0.05, 0.005]
    assert checkpoint.load(checkpoint.list_checkpoints(out)[-1][1])["lr"] == 0.005


def test_divergence_before_any_checkpoint_names_a_restart_command(data_dir, tmp_path):
    r = with_fault("diverge", *args(data_dir, tmp_path / "run", "--epochs", "2"))
    assert r.returncode == 1
    assert "No checkpoint had been written yet" in last_line(r)
    assert last_line(r).endswith("--lr 0.005")


def test_resume_may_change_the_schedule_and_logs_it(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train(*args(data_dir, out, "--epochs", "1")).returncode == 0
    r = train(
        *args(
            data_dir, out, "--epochs", "2", "--resume", "--lr-schedule", "step", "--milestones", "2"
        )
    )
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    [resume] = [x for x in records if x["kind"] == "resume"]
    assert resume["changes"]["lr_schedule"] == ["plateau", "step"]
    tree = checkpoint.load(checkpoint.list_checkpoints(out)[-1][1])
    assert tree["schedule"]["kind"] == "step" and tree["schedule"]["epoch"] == 2
    # other settings still refuse to change
    r = train(*args(data_dir, out, "--epochs", "3", "--resume", "--momentum", "0.5"))
    assert r.returncode == 2 and "--momentum" in r.stderr


def test_resume_refuses_another_build_of_the_data_unless_told(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train(*args(data_dir, out, "--epochs", "1")).returncode == 0
    other = make_tiny_set(tmp_path / "other", per_class=(16, 4))  # same classes, new build
    r = train(*args(other, out, "--epochs", "2", "--resume"))
    assert r.returncode == 2 and "another build" in r.stderr and "--allow-other-data" in r.stderr
    r = train(*args(other, out, "--epochs", "2", "--resume", "--allow-other-data"))
    assert r.returncode == 0, r.stderr


def test_train_and_val_of_different_builds_are_refused(data_dir, tmp_path):
    other = make_tiny_set(tmp_path / "other", per_class=(16, 4))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(data_dir / "train.h5", mixed / "train.h5")
    shutil.copy(other / "val.h5", mixed / "val.h5")
    r = train(*args(mixed, tmp_path / "run"))
    assert r.returncode == 2 and "different builds" in r.stderr


def test_one_class_data_is_refused(data_dir, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(data_dir, one)
    for split in ("train", "val"):
        with h5py.File(one / f"{split}.h5", "r+") as f:
            del f["class_names"]
            f.create_dataset(
                "class_names", data=numpy.array(["only"], dtype=object), dtype=h5py.string_dtype()
            )
            f["labels"][...] = 0
    r = train(*args(one, tmp_path / "run"))
    assert r.returncode == 2 and "at least two" in r.stderr, r.stderr


def test_resume_cuts_the_log_back_and_removes_stale_temporaries(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train(*args(data_dir, out, "--epochs", "1", "--log-every", "1")).returncode == 0
    step = checkpoint.list_checkpoints(out)[-1][0]
    with open(out / "log.jsonl", "a") as fh:  # what a run killed later had logged
        fh.write(json.dumps({"kind": "interval", "step": step + 1}) + "\n")
        fh.write('{"kind": "interval", "st')  # and a line cut short
    stale = out / f".ckpt-{step + 5:08d}.h5.tmp-{2**22 + 12345}"  # no such process
    stale.write_bytes(b"half a checkpoint")
    assert (
        train(*args(data_dir, out, "--epochs", "2", "--resume", "--log-every", "1")).returncode == 0
    )
    assert not stale.exists()
    steps = [
        json.loads(x)["step"]
        for x in (out / "log.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "interval"
    ]
    assert steps == sorted(set(steps)) and steps == list(range(1, steps[-1] + 1))


# -- every bad flag is one line, exit 2 -----------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--momentum", "nan"),
        ("--lr", "inf"),
        ("--weight-decay", "nan"),
        ("--seed", "-1"),
        ("--pool", "9,9"),
        ("--lighting", "nan"),
        ("--lighting", "-1"),
        ("--dropout", "1"),
        ("--milestones", "3,1"),
        ("--batch", "0"),
        ("--keep", "0"),
        ("--epochs", "1.5"),
    ],
)
def test_bad_flags_are_one_line_naming_the_value(data_dir, tmp_path, flag, value):
    r = train(*args(data_dir, tmp_path / "run", flag, value))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert flag in line and value in line, line
    assert not (tmp_path / "run").exists()


def test_out_naming_a_file_is_refused(data_dir, tmp_path):
    target = tmp_path / "file"
    target.write_text("not a folder")
    r = train(*args(data_dir, target))
    assert r.returncode == 2 and "is a file" in r.stderr


def test_help_states_defaults_once_and_the_exit_codes():
    r = train("--help")
    assert r.returncode == 0
    assert "(default: None)" not in r.stdout
    assert "exit status:" in r.stdout and "130" in r.stdout


def test_the_loader_threads_are_joined_whatever_ends_the_epoch(data_dir, tmp_path, monkeypatch):
    """In-process: an error in a step leaves no loader thread behind, even while the
    exception (and with it every frame of the loop) is still referenced. A thread left
    inside HDF5 at interpreter exit is what hung the process after an error."""
    import threading

    from refnet import sgd
    from refnet import train as train_module
    from refnet.config import build_parser, resolve

    cfg, _ = resolve(build_parser().parse_args(args(data_dir, tmp_path / "run")))
    cfg = cfg.replace(backend="numpy", data=str(data_dir))
    calls = []

    def failing(self, grads):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected")

    monkeypatch.setattr(sgd.SGD, "step", failing)
    with train_module.Trainer(cfg) as trainer:
        trainer.fresh_start()
        with pytest.raises(RuntimeError, match="injected") as caught:
            trainer.train()
        alive = [t.name for t in threading.enumerate() if t.name.startswith("loader-")]
        assert alive == [] and caught.value is not None


def test_a_store_of_another_image_size_is_refused_naming_the_fix(tmp_path):
    """A crop of a larger image than the arch is made for would see only part of it."""
    data = make_tiny_set(tmp_path / "big", per_class=(8, 3), size=64)  # tiny stores 52
    r = train(*args(data, tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    assert "stores 64x64 images" in r.stderr and "--size 52" in r.stderr
