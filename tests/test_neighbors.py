"""``AlexNet.features`` and ``refnet.neighbors`` (the paper's Figure 4)."""

import dataclasses
import shutil
import subprocess
import sys

import numpy
import pytest
from PIL import Image

from refnet.data import views as crops
from refnet.data.store import StoreReader
from refnet.evaluate import load_network
from refnet.neighbors import NEIGHBORS, NearestSearch, search_training_set
from refnet.network import AlexNet, build_network
from refnet.plots import neighbors_figsize
from refnet.train_inputs import InputPipeline
from tests.train_data import trained_tiny_run


def _images(net, n, seed=0):
    s = net.spec.input_size
    return numpy.random.default_rng(seed).standard_normal((n, 3, s, s))


@pytest.mark.parametrize("columns", [1, 2])
@pytest.mark.parametrize("mode", ["paper", "inverted"])
def test_fc8_of_the_features_gives_the_logits(columns, mode):
    net = AlexNet("tiny", dtype="float64", columns=columns, dropout_mode=mode).init(seed=3)
    x = _images(net, 4)
    feats = net.features(x)  # (N, 16): fc7's ReLU
    assert feats.shape == (4, net.spec.fc[1]) and (feats >= 0).all()
    scale = 1 - net.dropout if mode == "paper" else 1.0  # dropout at test time
    sd = net.state_dict()
    logits = (scale * feats) @ sd["fc8.weight"].T + sd["fc8.bias"]
    numpy.testing.assert_allclose(logits, net.forward(x), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(net.features(x, upto="to_fc8"), scale * feats, rtol=1e-12, atol=0)


def test_features_of_fc6_are_relu_of_fc6():
    net = AlexNet("tiny", dtype="float64").init(seed=1)
    x = _images(net, 3)
    sd = net.state_dict()
    flat = net.features(x, upto="flatten")  # (N, 32): pool5's maps
    fc6 = numpy.maximum(flat @ sd["fc6.weight"].T + sd["fc6.bias"], 0)
    numpy.testing.assert_allclose(net.features(x, upto="relu_fc6"), fc6, rtol=1e-12, atol=1e-12)


def test_features_refuses_maps_and_unknown_layers():
    net = AlexNet("tiny", dtype="float64").init(seed=1)
    with pytest.raises(ValueError, match="not \\(N, F\\)"):
        net.features(_images(net, 2), upto="pool5")
    with pytest.raises(ValueError, match="no layer 'fc9'"):
        net.features(_images(net, 2), upto="fc9")


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_running_search_equals_one_sort(batch):
    rng = numpy.random.default_rng(0)
    train = rng.standard_normal((40, 8))
    train[17] = train[3]  # a tie: the earlier wins
    queries = numpy.concatenate([rng.standard_normal((3, 8)), train[3:4]])
    search = NearestSearch(queries, k=6)
    for i in range(0, 40, batch):
        search.add(train[i : i + batch], numpy.arange(i, min(i + batch, 40)))
    dist = numpy.linalg.norm(queries[:, None] - train[None], axis=2)  # (Q, 40)
    order = numpy.argsort(dist, axis=1, kind="stable")[:, :6]
    numpy.testing.assert_array_equal(search.index, order)
    numpy.testing.assert_allclose(search.dist, numpy.take_along_axis(dist, order, 1))
    assert list(search.index[3, :2]) == [3, 17]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_tiny_run(tmp_path_factory.mktemp("neighbors"), "--epochs", "1")


def test_store_search_equals_brute_force(trained):
    data, ckpt = trained
    net32, cfg, _ = load_network(ckpt, "cpu")
    # in float64, so that features of a batch do not depend on what else is in it
    net = build_network(dataclasses.replace(net32.options, dtype="float64"))
    net.load_state_dict(net32.state_dict())
    cfg = cfg.replace(dtype="float64")
    pipeline = InputPipeline(cfg)
    try:
        queries = net.features(pipeline.eval_views(next(pipeline.val_batches(3))[0]))
        dist, index = search_training_set(net, pipeline, queries, batch=7, progress=False)
    finally:
        pipeline.close()
    with StoreReader(data / "train.h5") as store:  # all at once
        images = store.take(numpy.arange(store.count))
        mean, std = store.metadata.mean_image, store.metadata.pixel_std
    scale = 1 / std if cfg["input_scale"] == "pixel_std" else None
    feats = net.features(
        crops.center_view(images, mean, net.spec.input_size, scale=scale, dtype=cfg["dtype"])
    )
    full = numpy.linalg.norm(numpy.float64(queries)[:, None] - feats[None], axis=2)
    order = numpy.argsort(full, axis=1, kind="stable")[:, :NEIGHBORS]
    numpy.testing.assert_array_equal(index, order)
    numpy.testing.assert_allclose(dist, numpy.take_along_axis(full, order, 1), rtol=1e-12)


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "refnet.neighbors", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_the_grid(trained, tmp_path):
    data, ckpt = trained
    out = tmp_path / "grid.png"
    r = _run("--checkpoint", ckpt.parent, "--count", 3, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    w, h = neighbors_figsize(3, NEIGHBORS)
    assert Image.open(out).size == (round(100 * w), round(100 * h))
    image = data.parent / "src" / "val" / "disk" / "0.png"
    r = _run("--checkpoint", ckpt, "--images", image, image, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    w, h = neighbors_figsize(2, NEIGHBORS)
    assert Image.open(out).size == (round(100 * w), round(100 * h))
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporaries


def test_cli_writes_into_the_run_folder_without_out(trained, tmp_path):
    _, ckpt = trained
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ckpt, run / ckpt.name)
    r = _run("--checkpoint", run, "--count", 2, "--quiet")
    assert r.returncode == 0, r.stderr
    assert (run / "neighbors.png").is_file()
    assert r.stdout.strip() == f"wrote {run / 'neighbors.png'}"
    (run / "neighbors.png").unlink()
    r = _run("--checkpoint", run / ckpt.name, "--count", 2, "--quiet")  # a file: its folder
    assert r.returncode == 0 and (run / "neighbors.png").is_file(), r.stderr


def test_cli_errors(trained, tmp_path):
    data, ckpt = trained
    image = data.parent / "src" / "val" / "disk" / "0.png"
    for args in (
        ["--count", 2, "--images", image],  # both: refused
        ["--count", 0],
        ["--out", tmp_path / "no" / "g.png"],
        ["--count", 1000],
        ["--images", tmp_path / "missing.png"],
    ):
        argv = ["--checkpoint", ckpt, "--out", tmp_path / "g.png", *args]
        r = _run(*argv[: argv.index("--out")], *args) if "--out" in args else _run(*argv)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "g.png").exists()
