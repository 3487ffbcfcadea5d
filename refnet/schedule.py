"""Learning-rate schedules: the paper's divide-by-10-on-plateau, and fixed steps (Caffe).

Both are called once at the end of every epoch, ``lr = schedule.step(val_error)``, and
return the learning rate for the next epoch (also kept as ``schedule.lr``). Their
``state_dict()`` holds plain numbers only (JSON-able), so a checkpoint resumes exactly.

- ``ReduceOnPlateau``: the paper: "divided by 10 when the validation error rate stopped
  improving with the current learning rate", three times in all. An epoch improves when
  its error is below the best so far by more than ``threshold`` (absolute). After
  ``patience`` consecutive epochs without improvement the next one that does not improve
  reduces the rate (PyTorch's ReduceLROnPlateau rule: reduce when the count of bad epochs
  exceeds ``patience``; ``patience=0`` reduces at the first bad epoch). The count restarts
  after a reduction; after ``max_reductions`` reductions the rate stays (``None``: no
  limit).
- ``StepSchedule``: the rate is ``lr * factor ** k`` where k is the number of
  ``milestones`` (epochs) already reached: with milestones (30, 60) epochs 0-29 use lr,
  30-59 lr/10, 60+ lr/100. Caffe's bvlc_alexnet steps every 100,000 iterations (~20 epochs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _check_positive(name: str, value: Any) -> Any:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


class ReduceOnPlateau:
    """Divide the learning rate by ``1/factor`` when the validation error stops improving."""

    def __init__(
        self,
        lr: float = 0.01,
        factor: float = 0.1,
        patience: int = 1,
        max_reductions: int | None = 3,
        threshold: float = 0.0,
    ) -> None:
        self.lr = _check_positive("lr", lr)
        self.factor = float(factor)
        if not 0 < self.factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        if int(patience) != patience or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        self.patience = int(patience)
        if max_reductions is not None and (
            int(max_reductions) != max_reductions or max_reductions < 0
        ):
            raise ValueError(
                f"max_reductions must be a non-negative integer or None, got {max_reductions!r}"
            )
        self.max_reductions = None if max_reductions is None else int(max_reductions)
        self.threshold = float(threshold)
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold!r}")
        self.best: float | None = None  # lowest validation error seen (None before the first)
        self.bad_epochs = 0  # consecutive epochs without improvement
        self.reductions = 0
        self.epoch = 0

    def step(self, val_error: float) -> float:
        """Record one epoch's validation error; return the learning rate for the next."""
        err = float(val_error)
        if not math.isfinite(err):
            raise ValueError(f"val_error must be finite, got {val_error!r}")
        self.epoch += 1
        if self.best is None or err < self.best - self.threshold:
            self.best = err
            self.bad_epochs = 0
            return self.lr
        self.bad_epochs += 1
        can_reduce = self.max_reductions is None or self.reductions < self.max_reductions
        if self.bad_epochs > self.patience and can_reduce:
            self.lr *= self.factor
            self.reductions += 1
            self.bad_epochs = 0
        return self.lr

    @property
    def spent(self) -> bool:
        """True once every allowed reduction was made and the error has again not
        improved for more than ``patience`` epochs: nothing more to expect (early stop)."""
        return (
            self.max_reductions is not None
            and self.reductions >= self.max_reductions
            and self.bad_epochs > self.patience
        )

    def set_lr(self, lr: float) -> None:
        """Continue from learning rate ``lr`` (a resumed run given ``--lr``): the counts
        of epochs and reductions stay."""
        self.lr = _check_positive("lr", lr)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "plateau",
            "lr": self.lr,
            "factor": self.factor,
            "patience": self.patience,
            "max_reductions": self.max_reductions,
            "threshold": self.threshold,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "reductions": self.reductions,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, "plateau")
        fresh = ReduceOnPlateau(
            state["lr"],
            state["factor"],
            state["patience"],
            state["max_reductions"],
            state["threshold"],
        )
        self.__dict__.update(fresh.__dict__)
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.reductions = int(state["reductions"])
        self.epoch = int(state["epoch"])


class StepSchedule:
    """``lr * factor ** (number of milestones reached)``; milestones are epoch numbers."""

    def __init__(
        self, lr: float = 0.01, milestones: Iterable[int] = (), factor: float = 0.1
    ) -> None:
        self.base_lr = _check_positive("lr", lr)
        self.factor = _check_positive("factor", factor)
        ms = [int(m) for m in milestones]
        if (
            any(m != mm for m, mm in zip(ms, milestones, strict=True))
            or any(m < 1 for m in ms)
            or ms != sorted(set(ms))
        ):
            raise ValueError(
                f"milestones must be increasing positive epoch numbers, got {milestones!r}"
            )
        self.milestones = tuple(ms)
        self.epoch = 0
        self.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:
        """The learning rate used during ``epoch`` (0-based)."""
        k = sum(1 for m in self.milestones if epoch >= m)
        return self.base_lr * self.factor**k

    def step(self, val_error: float | None = None) -> float:
        """End one epoch (the error is ignored); return the learning rate for the next."""
        self.epoch += 1
        self.lr = self.lr_at(self.epoch)
        return self.lr

    spent = False  # a fixed schedule never ends a run early

    @property
    def reductions(self) -> int:
        """The milestones reached so far: the reductions of the learning rate."""
        return sum(1 for m in self.milestones if self.epoch >= m)

    def set_lr(self, lr: float) -> None:
        """Continue from learning rate ``lr`` at the current epoch: the base rate becomes
        what gives ``lr`` after the milestones already reached, so later milestones divide
        ``lr`` itself."""
        k = sum(1 for m in self.milestones if self.epoch >= m)
        self.base_lr = _check_positive("lr", lr) / self.factor**k
        self.lr = self.lr_at(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "step",
            "lr": self.base_lr,
            "milestones": list(self.milestones),
            "factor": self.factor,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, "step")
        fresh = StepSchedule(state["lr"], state["milestones"], state["factor"])
        self.__dict__.update(fresh.__dict__)
        self.epoch = int(state["epoch"])
        self.lr = self.lr_at(self.epoch)


def from_state(state: dict[str, Any]) -> ReduceOnPlateau | StepSchedule:
    """The schedule a ``state_dict()`` describes (either kind)."""
    kinds = {"plateau": ReduceOnPlateau, "step": StepSchedule}
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in kinds:
        raise ValueError(f"unknown schedule state kind {kind!r}, expected one of {list(kinds)}")
    schedule = kinds[kind]()
    schedule.load_state_dict(state)
    return schedule


def _check_kind(state: dict[str, Any], kind: str) -> None:
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"expected a {kind!r} schedule state, got {got!r}")
