"""Top-k error against a naive per-image loop, and 10-view averaging."""

import json as _json
import os
import subprocess
import sys

import h5py
import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refnet import metrics
from refnet.evaluate import load_network
from tests.train_data import trained_tiny_run


def _naive_topk(scores, labels, k):
    wrong = 0
    for row, label in zip(scores, labels, strict=True):
        order = sorted(range(len(row)), key=lambda c: -row[c])
        wrong += label not in order[:k]
    return wrong / len(labels)


@given(st.data())
def test_topk_matches_naive_loop(data):
    n = data.draw(st.integers(1, 30))
    k_classes = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = numpy.random.default_rng(seed)
    scores = rng.standard_normal((n, k_classes))  # continuous: no ties
    labels = rng.integers(0, k_classes, n)
    got = metrics.topk_errors(scores, labels, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert got[k] == pytest.approx(_naive_topk(scores, labels, k), abs=0)


def test_ties_count_for_the_label():
    scores = numpy.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert metrics.topk_errors(scores, numpy.array([1, 2]), ks=(1,))[1] == 0.0


def test_average_views():
    rng = numpy.random.default_rng(0)
    p = rng.random((10, 4, 3))
    numpy.testing.assert_array_equal(metrics.average_views(p), p.sum(axis=0) / 10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="labels"):
        metrics.topk_errors(numpy.zeros((3, 4)), numpy.array([0, 1, 4]))
    with pytest.raises(ValueError, match="shape"):
        metrics.topk_errors(numpy.zeros((3, 4)), numpy.array([0, 1]))


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_tiny_run(tmp_path_factory.mktemp("eval"), "--epochs", "2", "--lr", "0.05")


def _direct_errors(ckpt, data, views):
    """Top-1/top-5 error computed image by image with plain NumPy slicing."""
    net, cfg, tree = load_network(ckpt, "cpu")
    with h5py.File(data / "train.h5", "r") as f:
        mean, std = f["mean_image"][()], f["pixel_std"][()]
    with h5py.File(data / "val.h5", "r") as f:
        images, labels = f["images"][()], f["labels"][()]
    s, c = images.shape[1], net.spec.input_size
    e, m = s - c, (s - c) // 2
    corners = [(m, m)] if views == "center" else [(0, 0), (0, e), (e, 0), (e, e), (m, m)]
    flips = [False] if views == "center" else [False, True]
    wrong1 = wrong5 = 0
    for img, label in zip(images, labels, strict=True):
        probs = []
        for flip in flips:
            for oy, ox in corners:
                x = (
                    img[oy : oy + c, ox : ox + c].astype(numpy.float64)
                    - mean[oy : oy + c, ox : ox + c]
                )
                x = x / std
                if flip:
                    x = x[:, ::-1]
                x = x.transpose(2, 0, 1)[None].astype(numpy.float32)  # (1, 3, c, c)
                probs.append(numpy.asarray(net.predict_proba(x))[0])
        p = numpy.mean(probs, axis=0)
        order = list(numpy.argsort(-p))
        wrong1 += label not in order[:1]
        wrong5 += label not in order[:5]
    return wrong1 / len(labels), wrong5 / len(labels)


@pytest.mark.slow
def test_evaluate_cli_equals_direct_computation(trained):
    data, ckpt = trained
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "refnet.evaluate",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(data),
            "--device",
            "cpu",
            "--json",
            "--batch",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    got = _json.loads(r.stdout)
    for views in ("center", "ten"):
        top1, top5 = _direct_errors(ckpt, data, views)
        assert got[views]["top1"] == pytest.approx(top1, abs=1e-12)
        assert got[views]["top5"] == pytest.approx(top5, abs=1e-12)
        assert got[views]["n"] == 15


def test_evaluate_cli_errors(trained, tmp_path):
    data, ckpt = trained
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"nope")
    for args in (
        ["--checkpoint", str(bad), "--data", str(data)],
        ["--checkpoint", str(ckpt), "--data", str(tmp_path)],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "refnet.evaluate", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "0"], "argument --batch: must be >= 1, got '0'"),
        (["--batch", "-2"], "argument --batch: must be >= 1, got '-2'"),
        (
            ["--checkpoint", "{tmp}/missing.h5"],
            "argument --checkpoint: '{tmp}/missing.h5' does not exist",
        ),
        (
            ["--checkpoint", "{tmp}"],
            "argument --checkpoint: '{tmp}' holds no checkpoint (ckpt-<step>.h5)",
        ),
    ],
)
def test_evaluate_refuses_bad_values_when_parsing(tmp_path, capsys, args, message):
    from refnet.evaluate import main

    ckpt = tmp_path / "c.h5"
    ckpt.write_bytes(b"never read")
    argv = ["--checkpoint", str(ckpt), *[a.format(tmp=tmp_path) for a in args]]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert (
        capsys.readouterr().err
        == f"python -m refnet.evaluate: error: {message.format(tmp=tmp_path)} (see --help)\n"
    )


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_evaluate_ctrl_c_mid_evaluation(trained, tmp_path):
    """Interrupted while evaluating 4000 images (well past start-up: 2 s of CPU time,
    about 5 times what imports and loading take): exit 130 and one line."""
    from refnet.data.store import StoreReader, StoreWriter
    from tests.interrupts import Command, cpu_seconds, ends_cleanly, without_cupy

    data, ckpt = trained
    big = tmp_path / "data"
    big.mkdir()
    os.link(data / "train.h5", big / "train.h5")
    with StoreReader(data / "val.h5") as store:
        m = store.metadata
    n = 4000
    w = StoreWriter(
        str(big),
        "val.h5",
        capacity=n,
        size=m.size,
        split="val",
        class_names=m.class_names,
        wnids=m.wnids,
        build_id=m.build_id,
        settings=m.settings,
    )
    images = numpy.random.default_rng(0).integers(
        0, 256, (16, m.size, m.size, 3), dtype=numpy.uint8
    )
    for i in range(n):
        w.append(images[i % 16], i % len(m.class_names), f"{i}.png")
    w.finish()
    w.commit()
    cmd = Command(
        [
            "-m",
            "refnet.evaluate",
            "--checkpoint",
            ckpt,
            "--data",
            big,
            "--device",
            "cpu",
            "--views",
            "ten",
            "--batch",
            8,
        ],
        env=without_cupy(tmp_path),
    )
    cmd.wait_until(lambda: cpu_seconds(cmd.proc.pid) > 2.0)
    out, err = ends_cleanly(cmd, "refnet.evaluate")
    assert out == [] and err == ["refnet.evaluate: interrupted"]
