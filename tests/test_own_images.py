"""Your own images: a folder of images trains in one command, at the arch's size.

Each run is a real subprocess with its own empty cache (``REFNET_CACHE``), on trees of
shapes in several sizes and colour modes (tests/own_images.py).
"""

import json
import math
import os
import subprocess
import sys

import pytest
from PIL import Image

from refnet import checkpoint
from refnet.arch import ARCHS
from refnet.config import (
    AUTO_MAX_STEPS,
    AUTO_STOP_EPOCHS,
    AUTO_STOP_IMAGES,
    OWN_DATA_ARCHS,
    OWN_DATA_DEFAULTS,
    UsageError,
    build_parser,
    own_data_arch,
    resolve,
    resolve_auto,
)
from refnet.data.sources import typical_side
from refnet.schedule import ReduceOnPlateau
from tests.own_images import write_image_tree

pytestmark = pytest.mark.slow


def run(module, *argv, cache):
    env = {**os.environ, "REFNET_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=300, env=env
    )


def tiny(tree, out, *extra):
    return [
        "--data",
        str(tree),
        "--arch",
        "tiny",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--batch",
        "8",
        "--epochs",
        "1",
        "--seed",
        "1",
        *extra,
    ]


def stores(cache):
    folder = cache / "stores"
    return (
        sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if folder.exists()
        else []
    )


@pytest.mark.parametrize("split", [False, True], ids=["classes", "train-val"])
def test_a_folder_of_images_trains_in_one_command(tmp_path, split):
    tree, cache = tmp_path / "photos", tmp_path / "cache"
    write_image_tree(tree, classes=3, per_class=16, split=split)
    r = run("refnet.train", *tiny(tree, tmp_path / "a"), cache=cache)
    assert r.returncode == 0, r.stderr
    assert "building the store of" in r.stdout and "at 52x52" in r.stdout
    assert "were upscaled" in r.stdout  # the 24- and 40-pixel images
    assert len(stores(cache)) == 1
    tree_ckpt = checkpoint.load(checkpoint.list_checkpoints(tmp_path / "a")[-1][1])
    assert tree_ckpt["inputs"]["store_size"] == 52
    # built once: a second run reuses it; a new image rebuilds it
    r = run("refnet.train", *tiny(tree, tmp_path / "b"), cache=cache)
    assert r.returncode == 0 and "building the store" not in r.stdout
    write_image_tree(tree / ("train" if split else ""), classes=1, per_class=1, seed=9)
    r = run("refnet.train", *tiny(tree, tmp_path / "c"), cache=cache)
    assert r.returncode == 0 and "building the store" in r.stdout
    # evaluate and predict take the run directory; evaluate the image folder too
    r = run(
        "refnet.evaluate",
        "--checkpoint",
        str(tmp_path / "c"),
        "--data",
        str(tree),
        "--device",
        "cpu",
        "--json",
        cache=cache,
    )
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == {"center", "ten"}
    image = next(p for p in sorted((tree / ("val" if split else "")).rglob("*.jpg")))
    r = run(
        "refnet.predict",
        "--checkpoint",
        str(tmp_path / "c"),
        str(image),
        "--top",
        "2",
        "--device",
        "cpu",
        cache=cache,
    )
    assert r.returncode == 0 and str(image) in r.stdout, r.stderr


def test_the_held_out_fraction_is_a_flag(tmp_path):
    tree, cache = tmp_path / "photos", tmp_path / "cache"
    write_image_tree(tree, classes=2, per_class=20)
    r = run("refnet.train", *tiny(tree, tmp_path / "a", "--val-fraction", "0.5"), cache=cache)
    assert r.returncode == 0, r.stderr
    report = json.loads((cache / "stores" / stores(cache)[0] / "build_report.json").read_text())
    assert report["layout"] == "classes-split" and 12 <= report["val"] <= 28


def test_a_folder_that_is_not_a_data_set_is_one_line(tmp_path):
    tree = tmp_path / "one"
    write_image_tree(tree, classes=1, per_class=4)
    r = run("refnet.train", *tiny(tree, tmp_path / "a"), cache=tmp_path / "cache")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "needs at least 2" in r.stderr and not (tmp_path / "a").exists()


def test_own_data_adapts_its_length_to_the_data():
    cfg, _ = resolve(build_parser().parse_args(["--data", "somewhere"]))
    assert {k: cfg[k] for k in OWN_DATA_DEFAULTS} == OWN_DATA_DEFAULTS
    small = resolve_auto(cfg, steps_per_epoch=10)  # 320 images at batch 32
    large = cfg.resolved(steps_per_epoch=5000)  # 160,000 images
    stop = math.ceil(AUTO_STOP_IMAGES / 320)  # the images' patience is the longer
    assert (small["stop_patience"], small["patience"]) == (stop, stop // 2)
    assert small["epochs"] == AUTO_MAX_STEPS // 10
    assert (large["stop_patience"], large["patience"]) == (AUTO_STOP_EPOCHS, AUTO_STOP_EPOCHS // 2)
    assert large["epochs"] == 2  # no floor of epochs: 6000 steps are 1.2 epochs
    cfg, _ = resolve(build_parser().parse_args(["--data", "x", "--epochs", "5"]))
    assert cfg["epochs"] == 5 and cfg["early_stop"]  # flags given win
    cfg, _ = resolve(build_parser().parse_args(["--data", "x", "--stop-patience", "3"]))
    assert (cfg.resolved(10)["stop_patience"], cfg.resolved(10)["patience"]) == (3, 1)
    cfg, _ = resolve(build_parser().parse_args([]))  # the demo set: its recipe
    assert cfg["lr_schedule"] == "step" and not cfg["early_stop"]
    cfg, _ = resolve(build_parser().parse_args(["--data", "x"]), arch="small")
    assert cfg["arch"] == "small" and cfg["early_stop"] and cfg.store_size == 28
    cfg, _ = resolve(build_parser().parse_args(["--data", "x", "--arch", "demo"]), arch="small")
    assert cfg["arch"] == "demo"  # --arch wins over the picked arch


@pytest.mark.parametrize(
    "side,arch", [(8, "small"), (25, "small"), (28, "small"), (47, "small"), (48, "demo")]
)
def test_the_arch_nearest_the_images_is_picked(side, arch):
    stored = {a: ARCHS[a].store_size for a in OWN_DATA_ARCHS}
    # the reference: fewest pixels made up or thrown away, as a ratio of sides
    ratio = {a: max(s, side) / min(s, side) for a, s in stored.items()}
    assert own_data_arch(side) == min(ratio, key=ratio.get) == arch


def test_typical_side_is_the_median_of_the_headers(tmp_path):
    write_image_tree(tmp_path / "t", classes=2, per_class=9, sizes=(24, 40, 80), split=True)
    sides = []
    for path in sorted((tmp_path / "t" / "train").rglob("*.*")):
        with Image.open(path) as im:
            sides.append(min(im.size))
    assert typical_side(str(tmp_path / "t"), val_fraction=0.0) == sorted(sides)[len(sides) // 2]


def test_size_is_checked_against_the_crop():
    with pytest.raises(UsageError, match="size"):
        resolve(build_parser().parse_args(["--data", "x", "--arch", "small", "--size", "20"]))
    cfg, _ = resolve(build_parser().parse_args(["--data", "x", "--arch", "small", "--size", "40"]))
    assert cfg.store_size == 40


def test_plateau_schedule_is_spent_after_its_reductions():
    s = ReduceOnPlateau(lr=1.0, patience=0, max_reductions=2)
    errors = [0.5, 0.6, 0.6, 0.6]  # better, then reduce, reduce, and stale
    spent = []
    for e in errors:
        s.step(e)
        spent.append(s.spent)
    assert s.reductions == 2 and spent == [False, False, False, True]


def test_early_stop_ends_a_run_whose_error_no_longer_improves(tmp_path):
    tree, cache = tmp_path / "photos", tmp_path / "cache"
    write_image_tree(tree, classes=2, per_class=12)
    out = tmp_path / "a"
    argv = tiny(
        tree, out, "--early-stop", "--patience", "0", "--lr", "1e-9", "--lr-schedule", "plateau"
    )
    argv[argv.index("--epochs") + 1] = "30"
    r = run("refnet.train", *argv, cache=cache)
    assert r.returncode == 0, r.stderr
    assert "stopped early after epoch" in r.stdout
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    epochs = [x for x in records if x["kind"] == "epoch"]
    [best] = [x for x in records if x["kind"] == "best"]
    assert len(epochs) < 30 and epochs[-1]["early_stop"] and best["val_views"] == "ten"
    assert all(x["val_views"] == "center" for x in epochs)  # compared with each other
    tree_ckpt = checkpoint.load(checkpoint.list_checkpoints(out)[-1][1])
    assert tree_ckpt["config"]["epochs"] == len(epochs)  # what a resume continues to
    assert checkpoint.load(out / "best.h5")["step"] == best["step"]


def test_a_small_image_folder_gets_the_small_arch(tmp_path):
    tree, cache = tmp_path / "digits", tmp_path / "cache"
    write_image_tree(tree, classes=2, per_class=12, sizes=(16, 20, 28))
    argv = ["--data", str(tree), "--out", str(tmp_path / "a"), "--device", "cpu"]
    r = run("refnet.train", *argv, "--batch", "8", "--epochs", "1", cache=cache)
    assert r.returncode == 0, r.stderr
    first = next(x for x in r.stdout.splitlines() if x.startswith("training "))
    assert "arch small (24x24 crops of 28x28 images; picked for images of side 20" in first
    assert "--arch demo" in first
    assert checkpoint.load(checkpoint.list_checkpoints(tmp_path / "a")[-1][1])["arch"] == "small"
    # --size: the store's side, the arch's crops of it
    argv = ["--data", str(tree), "--out", str(tmp_path / "b"), "--device", "cpu", "--size", "32"]
    r = run("refnet.train", *argv, "--batch", "8", "--epochs", "1", cache=cache)
    assert r.returncode == 0, r.stderr
    assert "24x24 crops of 32x32 images" in r.stdout


def test_a_recipe_batch_larger_than_a_small_folder_is_halved_with_its_rate(tmp_path):
    # the small arch's recipe is batch 64, lr 0.03; ~38 training images take batch 32 at
    # lr 0.015 (the same rate per image); a --batch given by the user is refused instead
    tree, cache = tmp_path / "digits", tmp_path / "cache"
    write_image_tree(tree, classes=2, per_class=24, sizes=(16, 20, 28))
    argv = ["--data", str(tree), "--device", "cpu", "--epochs", "1"]
    r = run("refnet.train", *argv, "--out", str(tmp_path / "a"), cache=cache)
    assert r.returncode == 0, r.stderr
    first = next(x for x in r.stdout.splitlines() if x.startswith("training "))
    assert "arch small" in first and "batch 32, lr 0.015," in first
    r = run("refnet.train", *argv, "--out", str(tmp_path / "b"), "--batch", "64", cache=cache)
    assert r.returncode == 2 and "--batch 64 is larger than the training set" in r.stderr
