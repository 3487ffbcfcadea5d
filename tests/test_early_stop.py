"""Early stop: the run ends when the validation error has not improved for the patience,
keeps its best epoch as best.h5, and the commands given a run folder use that file.

The validation errors are scripted (``refnet.train.evaluate`` replaced), so the epoch at
which the run must end is known from the rule as stated: the first epoch e with
e - (epoch of the best error so far, the first of equals) >= stop_patience, or an error
of 0.
"""

import re

import numpy
import pytest

from refnet import checkpoint
from refnet import train as train_module
from refnet.config import TrainConfig
from refnet.run_output import RunOutput
from tests.train_data import make_tiny_set


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_set(tmp_path_factory.mktemp("tiny"), per_class=(8, 2))


def expected_end(errors, patience, epochs):
    """The rule, written from its statement."""
    best, best_epoch = None, 0
    for e, err in enumerate(errors[:epochs], start=1):
        if best is None or err < best:
            best, best_epoch = err, e
        if e == epochs or err == 0 or e - best_epoch >= patience:
            return e, best_epoch
    raise AssertionError("the script is too short")


def scripted_run(data_dir, folder, errors, patience, epochs=40, monkeypatch=None):
    calls = []

    def scripted(net, pipeline, views="center", batch=64, world=None):
        calls.append(views)
        if views == "ten":  # the final validation of the best parameters
            return {"top1": 0.5, "top5": 0.0, "n": 10}
        return {"top1": errors[sum(v == "center" for v in calls) - 1], "top5": 0.0, "n": 10}

    monkeypatch.setattr(train_module, "evaluate", scripted)
    cfg = TrainConfig(
        arch="tiny",
        data=str(data_dir),
        backend="numpy",
        batch=8,
        epochs=epochs,
        early_stop=True,
        stop_patience=patience,
        lr_schedule="plateau",
        patience=1,
        keep=100,
        quiet=True,
    )
    folder.mkdir()
    trainer = train_module.Trainer(cfg, output=RunOutput(folder, cfg, 1))
    trainer.fresh_start()
    with trainer:
        trainer.train()
    return trainer


@pytest.mark.parametrize(
    "errors,patience",
    [
        ([0.9, 0.8, 0.7, 0.75, 0.7, 0.72, 0.71, 0.6, 0.65] + [0.66] * 30, 3),
        ([0.9, 0.5, 0.5, 0.5, 0.4] + [0.45] * 30, 2),  # an equal error is no improvement
        ([0.9, 0.3, 0.0, 0.2], 5),  # nothing left to improve
    ],
)
def test_the_run_ends_as_the_rule_says_and_keeps_the_best(
    data_dir, tmp_path, monkeypatch, errors, patience
):
    trainer = scripted_run(data_dir, tmp_path / "run", errors, patience, monkeypatch=monkeypatch)
    end, best_epoch = expected_end(errors, patience, 40)
    assert [r["epoch"] for r in trainer.history] == list(range(1, end + 1))
    assert trainer.history[-1].get("early_stop") and trainer.cfg.epochs == end
    assert trainer.final["epoch"] == best_epoch and trainer.final["val_views"] == "ten"
    best = checkpoint.read_state(tmp_path / "run")  # a run folder: its best.h5
    steps = trainer.pipeline.steps_per_epoch
    assert best.step == best_epoch * steps and best.epoch == best_epoch
    same = checkpoint.read_state(checkpoint.checkpoint_path(tmp_path / "run", best.step))
    for name, value in same.model.items():
        numpy.testing.assert_array_equal(best.model[name], value)
    # the trainer ends with the best parameters loaded
    for name, value in trainer.net.state_dict().items():
        numpy.testing.assert_array_equal(best.model[name], value)


def test_a_corrupt_best_falls_back_to_the_newest(data_dir, tmp_path, monkeypatch, capsys):
    errors = [0.9, 0.5] + [0.6] * 10
    trainer = scripted_run(data_dir, tmp_path / "run", errors, 2, monkeypatch=monkeypatch)
    (tmp_path / "run" / "best.h5").write_bytes(b"not a checkpoint")
    state = checkpoint.read_state(tmp_path / "run")
    assert state.step == trainer.step and "best.h5" in capsys.readouterr().err


def test_the_eta_counts_to_the_earliest_end(data_dir, tmp_path, monkeypatch):
    errors = [0.9, 0.5] + [0.6] * 10
    trainer = scripted_run(data_dir, tmp_path / "run", errors, 3, monkeypatch=monkeypatch)
    assert trainer.expected_epochs() == trainer.cfg.epochs == 5  # best at 2, patience 3
    trainer.history = trainer.history[:3]  # as after epoch 3: best at 2
    trainer.epoch = 3
    assert trainer.expected_epochs() == 5
    trainer.step = trainer.clock[1] + 1
    assert re.fullmatch(r"(\d+m\d\ds|\d+s)", trainer.eta())
