"""The training configuration, the way a command ends, and who reads checkpoints.

- ``TrainConfig`` validates once, naming the setting and the value; its defaults come
  from the tables, and ``--help`` states them from there;
- ``data.cli.exit_status`` maps every error class of the commands to its exit status;
- a version-1 checkpoint without the items that came later reads as the current schema;
- no module but ``refnet.checkpoint`` reads the stored tree by key.
"""

import re
from pathlib import Path

import numpy
import pytest

from refnet import checkpoint
from refnet.agreement import StartFailed
from refnet.config import (
    COMMON_DEFAULTS,
    TRAIN_DEFAULTS,
    TrainConfig,
    UsageError,
    build_parser,
    default_text,
    resolve,
)
from refnet.data.build import BuildError, NothingUsable
from refnet.data.cli import UserError, exit_status
from refnet.data.decode import BadImage
from refnet.data.sources import VAL_FRACTION
from refnet.data.store import StoreError
from refnet.distributed import DistributedError
from refnet.network import build_network
from refnet.options import NetOptions
from refnet.run_dir import RunDirBusy
from refnet.stopping import Diverged, Interrupted
from refnet.train_inputs import DataError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "field, value",
    [
        ("arch", "vgg"),
        ("batch", 0),
        ("batch", 2.5),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("epochs", -1),
        ("momentum", -0.1),
        ("seed", -3),
        ("keep", 0),
        ("log_every", 0),
        ("lr_schedule", "cosine"),
        ("eval_views", "five"),
        ("device", "tpu"),
        ("val_fraction", 1.0),
        ("early_stop", "yes"),
        ("milestones", (3, 2)),
        ("init", "xavier"),
        ("dtype", "float16"),
        ("lrn_mode", "every"),
        ("dropout", 1.5),
        ("pool", (2, 9)),
        ("columns", 3),
        ("data", 3),
    ],
)
def test_each_invalid_value_is_named_with_the_setting(field, value):
    with pytest.raises((ValueError, TypeError)) as caught:
        TrainConfig(arch="tiny", **{field: value})
    text = str(caught.value)
    assert field in text and (
        repr(value) in text
        or str(value) in text
        or ",".join(map(str, value if isinstance(value, tuple) else ())) in text
    ), text


def test_defaults_come_from_the_tables_and_round_trip():
    cfg = TrainConfig(arch="owt")
    assert (cfg.batch, cfg.milestones, cfg.sgd_form) == (256, (30, 60), "pytorch")
    assert (cfg.columns, cfg.lrn, cfg.dropout_mode) == (1, False, "inverted")  # the arch's
    assert cfg.momentum == COMMON_DEFAULTS["momentum"]
    assert cfg.val_fraction == VAL_FRACTION
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(lr=0.5).lr == 0.5 and cfg.lr == TRAIN_DEFAULTS["owt"]["lr"]
    assert cfg["batch"] == cfg.batch and cfg.get("nothing", 7) == 7
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"arch": "tiny", "colour": "red"})
    with pytest.raises(dataclasses_frozen()):
        cfg.lr = 1.0


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_help_states_the_tables_defaults():
    helps = {a.dest: a.help for a in build_parser()._actions}
    assert f"default {VAL_FRACTION:g}" in helps["val_fraction"]
    assert default_text("batch") in helps["batch"] and "tiny 8" in helps["batch"]
    assert "default 0.0005" in helps["weight_decay"] or "owt 0.0001" in helps["weight_decay"]


def test_small_images_train_at_batch_64_with_the_demos_rate_per_image():
    """The own-data recipe of the ``small`` arch, as a folder of 28x28 digits gets it
    with no flag but --data; the demo's main job keeps its own."""
    cfg, _ = resolve(build_parser().parse_args(["--data", "digits"]), arch="small")
    demo, _ = resolve(build_parser().parse_args([]))
    assert (cfg.arch, cfg.batch, cfg.lr, cfg.dropout) == ("small", 64, 0.03, 0.25)
    assert (demo.arch, demo.batch, demo.lr, demo.dropout) == ("demo", 32, 0.015, 0.25)
    assert (demo.epochs, demo.milestones) == (5, (4,)) and not demo.early_stop
    assert cfg.lr / cfg.batch == pytest.approx(demo.lr / demo.batch)
    assert TrainConfig(arch="alexnet").dropout == 0.5
    # 4,536 training images: 70 steps of 64; the epochs' patience is the longer, and
    # the rate is divided after 2 epochs without improvement
    five_k = cfg.resolved(steps_per_epoch=4536 // 64)
    assert (five_k.stop_patience, five_k.patience, five_k.epochs) == (4, 2, 86)
    # 1,442 images (scikit-learn's digits): 22 steps; 12,800 images are 10 epochs
    digits = cfg.resolved(steps_per_epoch=1442 // 64)
    assert (digits.stop_patience, digits.patience) == (10, 5)
    # flags given win over the arch's recipe
    argv = ["--data", "d", "--batch", "32", "--dropout", "0.5"]
    cfg, _ = resolve(build_parser().parse_args(argv), arch="small")
    assert (cfg.batch, cfg.lr, cfg.dropout) == (32, 0.03, 0.5)
    helps = {a.dest: a.help for a in build_parser()._actions}
    assert "small 64" in helps["batch"] and "small 0.25" in helps["dropout"]


def test_resume_overrides_only_the_listed_fields():
    saved = TrainConfig(arch="tiny", data="d", lr=0.01)
    cfg = saved.resumed({"lr": 0.001, "epochs": 5}, out="o", quiet=True, device="cpu")
    assert (cfg.lr, cfg.epochs, cfg.out, cfg.quiet) == (0.001, 5, "o", True)
    with pytest.raises(UsageError, match="--batch 4 differs"):
        saved.resumed({"batch": 4})
    assert "lr" in TrainConfig.RESUME_OVERRIDABLE and "batch" not in TrainConfig.RESUME_OVERRIDABLE


def test_resolve_reports_a_pooling_the_arch_cannot_take_as_a_flag():
    with pytest.raises(UsageError, match="^--pool 2,9"):
        resolve(build_parser().parse_args(["--arch", "tiny", "--pool", "2,9"]))


# -- how a command ends -----------------------------------------------------------------


@pytest.mark.parametrize(
    "error, status",
    [
        (UsageError("u"), 2),
        (checkpoint.CheckpointError("c"), 2),
        (DataError("d"), 2),
        (StoreError("s"), 2),
        (DistributedError("w"), 2),
        (StartFailed("f"), 2),
        (BuildError("b"), 2),
        (RunDirBusy("r"), 2),
        (BadImage("i"), 2),
        (UserError("x"), 2),
        (NothingUsable("n"), 1),
        (Diverged("nan"), 1),
        (Interrupted(None, False, "training"), 130),
        (RuntimeError("bug"), 3),
    ],
)
def test_exit_status_maps_each_error_class(error, status, capsys):
    def fail():
        raise error

    seen = []
    got = exit_status("prog", fail, report=lambda e, s, line: seen.append(line), unexpected=True)
    assert got == status
    if status == 2:
        assert isinstance(error, UserError) and seen == [f"prog: error: {error}"]
    if status == 130:
        assert seen == [f"prog: {error.message()}"]
    if status == 3:
        assert "Traceback" in capsys.readouterr().err


def test_exit_status_lets_a_bug_and_ctrl_c_through_by_default(capsys):
    def bug():
        raise RuntimeError("bug")

    def ctrl_c():
        raise KeyboardInterrupt

    with pytest.raises(RuntimeError):
        exit_status("prog", bug)
    with pytest.raises(KeyboardInterrupt):
        exit_status("prog", ctrl_c)
    assert exit_status("prog", lambda: None) == 0 and exit_status("prog", lambda: 1) == 1
    assert exit_status("prog", lambda: (_ for _ in ()).throw(DataError("no data"))) == 2
    assert capsys.readouterr().err == "prog: error: no data\n"


# -- the checkpoint schema ---------------------------------------------------------------


def test_an_early_version_1_file_reads_as_the_current_schema(tmp_path):
    net = build_network(NetOptions(arch="tiny", dtype="float64", num_classes=3))
    net.init(seed=1, scheme="he")
    config = {
        "arch": "tiny",
        "dtype": "float64",
        "device": "cpu",
        "batch": 8,
        "lr": 0.01,
        "epochs": 2,
        "init": "he",
        "input_scale": "pixel_std",
    }
    path = checkpoint.save(
        tmp_path / "ckpt-00000001.h5",
        {
            "format": checkpoint.FORMAT,
            "arch": "tiny",
            "step": 1,
            "epoch": 0,
            "config": config,
            "model": net.state_dict(),
        },
    )  # no network, no inputs
    state = checkpoint.read_state(path)
    assert state.config["conv_algo"] == "gemm"  # all there was before it was stored
    assert NetOptions.from_dict(state.network) == NetOptions(
        arch="tiny", dtype="float64", num_classes=3, conv_algo="gemm"
    )
    assert state.inputs is None and state.world_size == 1
    assert checkpoint.read_state(tmp_path).step == 1  # a run folder: its newest


def test_write_state_and_read_state_round_trip(tmp_path):
    model = {"w": numpy.arange(6.0).reshape(2, 3)}
    state = checkpoint.TrainingState(
        arch="tiny",
        config={"arch": "tiny", "conv_algo": "winograd"},
        network={"arch": "tiny"},
        model=model,
        step=3,
        epoch=1,
        loader=[1, 0],
        loss_sum=1.5,
        loss_count=2,
        lr=0.1,
        optimizer={"velocity/w": model["w"] * 2},
        schedule={"kind": "step"},
        history=[],
        inputs={"crop": 3},
        world_size=2,
    )
    back = checkpoint.read_state(checkpoint.write_state(tmp_path / "c.h5", state))
    assert back.optimizer["velocity/w"].tobytes() == state.optimizer["velocity/w"].tobytes()
    assert (back.step, back.loader, back.inputs, back.world_size) == (3, [1, 0], {"crop": 3}, 2)


# the tree's keys, read anywhere but in refnet/checkpoint.py
_TREE_READ = re.compile(
    r"""(tree|ckpt)\s*(\[|\.get\()|\[["'](model|optimizer|network|"""
    r"""inputs|config|schedule|history|loader)["']\]|checkpoint\.load\(|"""
    r"""latest_valid\("""
)


def test_no_module_but_checkpoint_reads_the_stored_tree():
    offenders = []
    for package in ("refnet", "data", "verify", "bench", "tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "refnet" / "checkpoint.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _TREE_READ.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
