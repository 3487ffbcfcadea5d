"""Pixel statistics with a zero std: the scaling rule, and training on such data.

The rule (``data.pixel_stats.input_scale``): a channel whose std is below one grey level
is left unscaled. Checked against a loop over the channels written from the rule's
statement, on the stores built from image folders whose statistics have a zero std
(tests/own_images.py: a constant channel, a constant image set, a one-colour class,
grayscale saved as RGB), and through a real training run on each.
"""

import json
import math
import os
import subprocess
import sys

import numpy
import pytest

from refnet import train as train_module
from refnet.config import TrainConfig
from refnet.data.build import build
from refnet.data.pixel_stats import MIN_PIXEL_STD, flat_channels, input_scale
from refnet.data.store import StoreReader
from tests.own_images import FLAT_KINDS, write_flat_tree
from tests.train_data import make_tiny_set


def reference_scale(std):
    """The rule as stated: 1/std for a channel of std >= 1 grey level, else 1."""
    return [1.0 / s if s >= MIN_PIXEL_STD else 1.0 for s in std]


@pytest.mark.parametrize(
    "std",
    [
        (50.0, 60.0, 70.0),
        (0.0, 60.0, 70.0),
        (5e-324, 1e-300, 0.999),  # denormal and tiny
        (1.0, float("nan"), 255.0),
        (0.0, 0.0, 0.0),
    ],
)
def test_the_scale_never_amplifies_a_flat_channel(std):
    scale = input_scale(std)
    assert numpy.all(numpy.isfinite(scale)) and numpy.all(scale <= 1.0)
    numpy.testing.assert_array_equal(scale, reference_scale(std))
    assert flat_channels(std) == [c for c, s in zip("RGB", std, strict=True) if not s >= 1]


@pytest.mark.parametrize("kind", FLAT_KINDS)
def test_built_statistics_and_report(tmp_path, kind):
    write_flat_tree(tmp_path / "src", kind)
    build(str(tmp_path / "src"), str(tmp_path / "data"), size=24, workers=0, progress=False)
    with StoreReader(tmp_path / "data" / "train.h5") as store:
        images, std = store.take(numpy.arange(store.count)), store.metadata.pixel_std
    # the std from the images themselves, in float64
    expected = images.reshape(-1, 3).astype(numpy.float64).std(axis=0)
    numpy.testing.assert_allclose(std, expected, rtol=1e-9, atol=1e-9)
    flat = {"channel": ["B"], "constant": ["R", "G", "B"], "one-colour-class": []}
    report = json.loads((tmp_path / "data" / "build_report.json").read_text())
    assert report["unscaled_channels"] == flat.get(kind, [])
    assert numpy.all(numpy.isfinite(input_scale(std)))
    if kind == "gray-rgb":  # three equal channels, each scaled by the same factor
        assert std[0] == std[1] == std[2] > MIN_PIXEL_STD


def _train(tree, out, cache, *extra):
    env = {**os.environ, "REFNET_CACHE": str(cache)}
    argv = ["--data", str(tree), "--arch", "tiny", "--device", "cpu", "--out", str(out)]
    argv += ["--batch", "8", "--epochs", "2", "--seed", "1", *extra]
    return subprocess.run(
        [sys.executable, "-m", "refnet.train", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", FLAT_KINDS)
def test_training_on_flat_statistics_proceeds(tmp_path, kind):
    write_flat_tree(tmp_path / "photos", kind)
    r = _train(tmp_path / "photos", tmp_path / "run", tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr and "nan" not in r.stdout.lower(), r.stderr
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [x["train_loss"] for x in records if x["kind"] == "epoch"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    said = r.stdout.count("unscaled")
    # once in the build's notice, once in the run's start line
    assert said == (0 if kind in ("one-colour-class", "gray-rgb") else 2), r.stdout


# -- a NaN/Inf loss named by its cause ------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_set(tmp_path_factory.mktemp("tiny"), per_class=(8, 2))


def trainer_for(data_dir):
    cfg = TrainConfig(arch="tiny", data=str(data_dir), backend="numpy", batch=8, epochs=1)
    trainer = train_module.Trainer(cfg)
    trainer.fresh_start()
    return trainer


def test_bad_statistics_are_named_not_the_learning_rate(data_dir):
    with trainer_for(data_dir) as trainer:
        trainer.pipeline.scale = numpy.array([numpy.inf, 1.0, 1.0])
        with numpy.errstate(all="ignore"):
            with pytest.raises(train_module.Untrainable, match="pixel statistics") as caught:
                trainer.train()
        assert "--lr" not in str(caught.value) and "learning rate cannot" not in str(caught.value)


def test_bad_weights_are_named(data_dir):
    with trainer_for(data_dir) as trainer:
        for column in trainer.net.params:  # what a bad init would leave
            for w in column.values():
                w[...] = numpy.nan
        with numpy.errstate(all="ignore"):
            with pytest.raises(train_module.Untrainable, match="weights"):
                trainer.train()


def test_a_nan_before_any_update_is_not_a_learning_rate_problem(data_dir, monkeypatch):
    with trainer_for(data_dir) as trainer:
        monkeypatch.setattr(
            type(trainer.net),
            "loss_and_grad_columns",
            lambda self, x, y, **k: (float("nan"), None),
        )
        with pytest.raises(train_module.Untrainable, match="before any update") as caught:
            trainer.train()
        assert "cannot help" in str(caught.value)


def test_a_nan_after_updates_is_divergence(data_dir, monkeypatch):
    with trainer_for(data_dir) as trainer:
        real = type(trainer.net).loss_and_grad_columns
        calls = []

        def nan_second(self, *a, **k):
            calls.append(1)
            loss, grads = real(self, *a, **k)
            return (float("nan") if len(calls) == 2 else loss), grads

        monkeypatch.setattr(type(trainer.net), "loss_and_grad_columns", nan_second)
        with pytest.raises(train_module.Diverged, match="at step 2"):
            trainer.train()
