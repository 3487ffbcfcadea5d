"""Checkpoint files: exact round trip, checksum, atomic writes, newest-valid fallback."""

import os

import h5py
import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet import checkpoint


def _tree(seed=0):
    rng = numpy.random.default_rng(seed)
    gen = numpy.random.default_rng(seed + 1)
    gen.random(7)
    return {
        "format": checkpoint.FORMAT,
        "arch": "tiny",
        "step": 12,
        "config": {"lr": 0.01, "pool": [3, 2], "milestones": None, "name": "x"},
        "model": {
            "conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(numpy.float32),
            "conv1.bias": rng.standard_normal(4),
            "fc8.bias": numpy.zeros(0),
        },
        "optimizer": {
            "velocity": [rng.standard_normal(5), rng.standard_normal((2, 2))],
            "lr": numpy.float32(0.25),
            "count": numpy.int64(3),
        },
        "rng": {"augment": gen.bit_generator.state},
        "history": [{"epoch": 1, "train_loss": 1.5, "val_top1_error": float("nan")}],
        "labels": rng.integers(0, 9, 6).astype(numpy.uint8),
    }


def _assert_same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b) or sorted(a) == sorted(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, (numpy.ndarray, numpy.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def test_round_trip_is_exact(tmp_path):
    tree = _tree()
    path = checkpoint.save(checkpoint.checkpoint_path(tmp_path, 12), tree)
    assert path.name == "ckpt-00000012.h5"
    back = checkpoint.load(path)
    _assert_same(tree, back)
    # a Generator restored from the file continues the same stream
    g1 = numpy.random.default_rng(1)
    g1.random(7)
    g2 = numpy.random.default_rng()
    g2.bit_generator.state = back["rng"]["augment"]
    assert g1.random(5).tolist() == g2.random(5).tolist()
    assert list(back["model"]) == list(tree["model"])  # order kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@given(
    st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=20),
    st.sampled_from(["float32", "float64"]),
)
def test_round_trip_property(tmp_path_factory, values, dtype):
    d = tmp_path_factory.mktemp("ck")
    tree = {
        "format": checkpoint.FORMAT,
        "a": numpy.array(values, dtype=dtype),
        "nested": {"x": [numpy.array(values[:1], dtype=dtype), {"y": values[0]}]},
    }
    back = checkpoint.load(checkpoint.save(d / "ckpt-00000001.h5", tree))
    _assert_same(tree, back)


def test_flipped_byte_fails_checksum(tmp_path):
    path = checkpoint.save(tmp_path / "ckpt-00000001.h5", _tree())
    with h5py.File(path, "r+") as f:  # change one parameter value in place
        w = f["model/conv1.weight"][()]
        w.flat[5] += 1
        f["model/conv1.weight"][...] = w
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.load(path)


def test_changed_json_attr_fails_checksum(tmp_path):
    path = checkpoint.save(tmp_path / "ckpt-00000001.h5", _tree())
    with h5py.File(path, "r+") as f:
        f.attrs["step"] = "13"
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.load(path)


def test_truncated_file_is_reported(tmp_path):
    path = checkpoint.save(tmp_path / "ckpt-00000001.h5", _tree())
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(checkpoint.CheckpointError, match="unreadable|checksum"):
        checkpoint.load(path)


def test_latest_valid_falls_back_and_says_so(tmp_path):
    for step in (1, 5, 10):
        t = _tree(step)
        t["step"] = step
        checkpoint.save(checkpoint.checkpoint_path(tmp_path, step), t)
    newest = checkpoint.checkpoint_path(tmp_path, 10)
    with open(newest, "r+b") as fh:
        fh.truncate(100)
    messages = []
    path, tree = checkpoint.latest_valid(tmp_path, warn=messages.append)
    assert path == checkpoint.checkpoint_path(tmp_path, 5)
    assert tree["step"] == 5
    assert len(messages) == 1 and "ckpt-00000010.h5" in messages[0]


def test_latest_valid_empty_dir(tmp_path):
    assert checkpoint.latest_valid(tmp_path, warn=pytest.fail) == (None, None)


def test_prune_keeps_newest(tmp_path):
    for step in (3, 30, 300, 3000):
        checkpoint.save(
            checkpoint.checkpoint_path(tmp_path, step), {"format": checkpoint.FORMAT, "step": step}
        )
    checkpoint.prune(tmp_path, 2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [300, 3000]


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt-00000001.h5"
    checkpoint.save(path, _tree())
    before = path.read_bytes()
    with pytest.raises(TypeError):
        checkpoint.save(path, {"format": checkpoint.FORMAT, "bad": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(p)
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.h5")
