"""``python -m refnet.predict`` on a JPEG: the dataset's preprocessing, 10-crop top-5."""

import json
import os
import subprocess
import sys

import numpy
import pytest
from PIL import Image

from refnet.data.decode import decode_image
from refnet.evaluate import load_network
from tests.train_data import CLASSES, trained_tiny_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pred")
    return (root, *trained_tiny_run(root, "--epochs", "1"))


def _jpeg(path, seed):
    rng = numpy.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=numpy.uint8)).save(path, "JPEG")
    return path


def _direct_top5(ckpt, path):
    net, cfg, tree = load_network(ckpt, "cpu")
    inputs = tree.inputs
    img = decode_image(path, int(inputs["store_size"])).astype(numpy.float64)
    img -= inputs["mean_image"]
    img *= inputs["scale"]
    s, c = img.shape[0], int(inputs["crop"])
    e, m = s - c, (s - c) // 2
    probs = []
    for flip in (False, True):
        for oy, ox in [(0, 0), (0, e), (e, 0), (e, e), (m, m)]:
            x = img[oy : oy + c, ox : ox + c]
            x = x[:, ::-1] if flip else x
            x = x.transpose(2, 0, 1)[None].astype(numpy.float32)
            probs.append(numpy.asarray(net.predict_proba(x))[0])
    p = numpy.mean(probs, axis=0)
    order = numpy.argsort(-p)[:5]
    return [(inputs["class_names"][k], float(p[k])) for k in order]


def predict(ckpt, *args):
    """``python -m refnet.predict --checkpoint CKPT --device cpu ARGS...``, completed."""
    cmd = ["-m", "refnet.predict", "--checkpoint", ckpt, "--device", "cpu", *args]
    return subprocess.run(
        [sys.executable, *map(str, cmd)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_predict_jpeg_top5(trained, tmp_path):
    root, data, ckpt = trained
    images = [_jpeg(tmp_path / "a.jpg", 1), root / "src" / "val" / "disk" / "1.jpg"]
    r = predict(ckpt, "--json", *images)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["image"] for row in rows] == list(map(str, images))
    for row, path in zip(rows, images, strict=True):
        expect = _direct_top5(ckpt, path)
        assert [n for n, _ in row["top"]] == [n for n, _ in expect]
        numpy.testing.assert_allclose([p for _, p in row["top"]], [p for _, p in expect], rtol=1e-5)
        assert set(n for n, _ in row["top"]) == set(CLASSES)  # 5 classes -> all shown
    r = predict(ckpt, images[0])
    assert r.returncode == 0 and "%" in r.stdout


def test_predict_bad_image_and_checkpoint(trained, tmp_path):
    root, data, ckpt = trained
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not an image")
    r = predict(ckpt, bad)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "x.jpg" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "refnet.predict", "--checkpoint", str(bad), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_predict_refuses_bad_values_when_parsing(tmp_path, capsys):
    from refnet.predict import main

    ckpt = tmp_path / "c.h5"
    ckpt.write_bytes(b"never read")
    for argv, message in [
        (
            ["--checkpoint", str(ckpt), "--top", "0", "x.jpg"],
            "argument --top: must be >= 1, got '0'",
        ),
        (
            ["--checkpoint", str(tmp_path / "none.h5"), "x.jpg"],
            f"argument --checkpoint: '{tmp_path / 'none.h5'}' does not exist",
        ),
        (
            ["--checkpoint", str(tmp_path), "x.jpg"],
            f"argument --checkpoint: '{tmp_path}' holds no checkpoint (ckpt-<step>.h5)",
        ),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert (
            capsys.readouterr().err == f"python -m refnet.predict: error: {message} (see --help)\n"
        )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predict_ctrl_c_mid_run(trained, tmp_path):
    """The second image is a FIFO that predict opens and then waits on for data: it is
    interrupted there, after the first image's answer."""
    from tests.interrupts import Command, ends_cleanly, without_cupy

    root, data, ckpt = trained
    fifo = tmp_path / "waits.jpg"
    os.mkfifo(fifo)
    cmd = Command(
        [
            "-m",
            "refnet.predict",
            "--checkpoint",
            ckpt,
            "--device",
            "cpu",
            _jpeg(tmp_path / "a.jpg", 1),
            fifo,
        ],
        env=without_cupy(tmp_path),
    )
    writer = []

    def reading():  # opens once predict has opened the FIFO
        try:
            writer.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: no reader yet
            return False
        return True

    try:
        cmd.wait_until(reading)
        out, err = ends_cleanly(cmd, "refnet.predict")
    finally:
        for fd in writer:
            os.close(fd)
    assert out[0] == str(tmp_path / "a.jpg") and len(out) == 6  # its top 5
    assert err == ["refnet.predict: interrupted"]
