"""A checkpoint written by refnet before the versioned schema still loads and resumes
bit for bit.

``tests/fixtures/checkpoint_v1`` holds a run of the ``tiny`` arch (float64, seed 3,
``--checkpoint-every 3``) on a small image set (``train.h5``, ``val.h5``, also committed):
its checkpoint after epoch 1 (``ckpt-00000005.h5``, format ``refnet-checkpoint-1``) and,
in ``final.json``, the SHA-256 of every parameter and velocity, the loader position, the
schedule and the epoch records after epoch 2 of that run.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refnet import checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v1"

pytestmark = pytest.mark.slow


def _digests(state):
    out = {}
    for part, arrays in (("model", state.model), ("optimizer", state.optimizer)):
        for key, v in sorted(arrays.items()):
            out[f"{part}/{key}"] = hashlib.sha256(
                f"{v.dtype.str}{v.shape}".encode() + v.tobytes()
            ).hexdigest()
    return out


def test_version_1_checkpoint_reads_as_the_current_schema():
    state = checkpoint.read_state(FIXTURE / "ckpt-00000005.h5")
    assert state.version == checkpoint.VERSION
    assert (state.arch, state.step, state.epoch) == ("tiny", 5, 1)
    assert state.config["dtype"] == "float64"
    assert state.network["dtype"] == "float64"
    assert "conv1.weight" in state.model and "velocity/conv1.weight" in state.optimizer


def _resume(run, data):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "refnet.train",
            "--resume",
            "--out",
            str(run),
            "--data",
            str(data),
            "--device",
            "cpu",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return checkpoint.read_state(checkpoint.list_checkpoints(run)[-1][1])


def test_version_1_checkpoint_resumes_bit_for_bit(tmp_path):
    """Resumed from the version-1 file and from the same state written in today's format,
    the run ends bit for bit the same; against the original run's record, bit for bit
    where the BLAS kernel rounds as the recording machine's did, else within float64
    rounding (the losses) and with the same validation errors."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.h5", "val.h5", "build_report.json"):
        shutil.copy(FIXTURE / name, data)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    shutil.copy(FIXTURE / "ckpt-00000005.h5", old)
    checkpoint.write_state(
        new / "ckpt-00000005.h5", checkpoint.read_state(old / "ckpt-00000005.h5")
    )
    state, again = _resume(old, data), _resume(new, data)
    assert _digests(state) == _digests(again)
    want = json.loads((FIXTURE / "final.json").read_text())
    assert (state.step, state.epoch, state.loader) == (want["step"], want["epoch"], want["loader"])
    assert state.schedule == want["schedule"] and state.lr == want["lr"]
    history = [
        {k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in state.history
    ]
    if _digests(state) == want["sha256"]:
        assert history == want["history"]
    else:  # another BLAS kernel: other rounding
        for got, rec in zip(history, want["history"], strict=True):
            assert got == {**rec, "train_loss": pytest.approx(rec["train_loss"], rel=1e-9)}
