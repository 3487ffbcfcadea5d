"""What a ``refnet.train.Trainer`` keeps besides its loop: the state a checkpoint holds and
its restoring, the checkpoint writes, the cause of a non-finite loss, and early stop's
bookkeeping (the best epoch, the run's expected end and its ETA, the best parameters'
final validation).

Early stop (``--early-stop``, on for a folder of one's own images): every epoch is
validated with ``--eval-views``; the run ends when that error has not been lower than its
best for ``stop_patience`` epochs, when it is 0 (nothing left to improve), when the
plateau schedule's reductions are spent and it no longer improves, or at ``epochs``.
Whenever the error reaches a new best (strictly lower; the first of equals is kept) the
state is also written to ``best.h5``; at the end the best parameters are loaded and
validated with ``--final-views`` (a "best" record in the log). The progress line shows
``run_eta``: the seconds per step so far times the steps left until the earliest end
(``expected_epochs``: with early stop, the best epoch plus the patience, if the error
does not improve again).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

import numpy

from refnet import checkpoint
from refnet.agreement import check_replicas
from refnet.config import UsageError
from refnet.data.cli import FAILED
from refnet.evaluate import evaluate
from refnet.layers.backend import Array
from refnet.schedule import ReduceOnPlateau, StepSchedule
from refnet.schedule import from_state as schedule_from_state
from refnet.stopping import Diverged

if TYPE_CHECKING:
    from pathlib import Path

    from refnet.distributed import Solo
    from refnet.network import AlexNet
    from refnet.run_output import RunOutput
    from refnet.sgd import SGD
    from refnet.train_inputs import Config, InputPipeline

Record = dict[str, Any]  # a record of log.jsonl, as the run's history keeps them


class Untrainable(RuntimeError):
    """A NaN/Inf loss whose cause is not the learning rate (``Trainer.not_finite``)."""

    exit_status = FAILED


R = TypeVar("R", bound="TrainerRecords")


class TrainerRecords:
    """The ``Trainer``'s bookkeeping, as a mixin: it reads the trainer's ``cfg``, ``net``,
    ``sgd``, ``schedule``, ``pipeline``, ``world``, ``output`` and counters."""

    cfg: Config
    net: AlexNet
    sgd: SGD
    schedule: ReduceOnPlateau | StepSchedule
    pipeline: InputPipeline
    world: Solo
    output: RunOutput
    step: int
    epoch: int
    history: list[Record]
    loss_sum: float
    loss_count: int
    phase: str
    best_model: dict[str, numpy.ndarray] | None
    final: Record | None
    clock: tuple[float, int]

    def close(self) -> None:
        """Release the data files and the columns' threads (also at the end of ``with``)."""
        self.pipeline.close()
        self.net.placement.close()

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fresh_start(self) -> None:
        self.net.init(seed=self.cfg.seed, scheme=self.cfg.init)

    def state(self) -> checkpoint.TrainingState:
        return checkpoint.TrainingState(
            arch=self.cfg.arch,
            step=self.step,
            epoch=self.epoch,
            loader=list(self.pipeline.loader.position),
            loss_sum=self.loss_sum,
            loss_count=self.loss_count,
            config=self.cfg.to_dict(),
            network=self.net.options.to_dict(),
            model=self.net.state_dict(),
            lr=self.sgd.lr,
            optimizer=self.sgd.state_dict(),
            schedule=self.schedule.state_dict(),
            history=self.history,
            inputs=self.pipeline.record(),
            world_size=self.world.size,
        )

    def restore(self, state: checkpoint.TrainingState) -> None:
        if state.arch != self.cfg.arch:
            raise UsageError(
                f"checkpoint is for arch {state.arch!r}, this run is {self.cfg.arch!r}"
            )
        try:
            self.net.load_state_dict(state.model)
            self.sgd.load_state_dict(state.optimizer)
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"checkpoint does not fit this network: {e}") from None
        self.schedule = schedule_from_state(state.schedule)  # the kind the run had
        self.sgd.lr = float(state.lr)
        self.step, self.epoch = int(state.step), int(state.epoch)
        self.pipeline.loader.seek(*state.loader)
        self.loss_sum, self.loss_count = float(state.loss_sum), int(state.loss_count)
        self.history = list(state.history)

    def save(self, state: checkpoint.TrainingState | None = None) -> Path:
        """Write a checkpoint (rank 0) once the parameters are finite and the replicas
        agree; its path."""
        state = self.state() if state is None else state
        bad = [k for k, v in state.model.items() if not numpy.all(numpy.isfinite(v))]
        if bad:
            raise Diverged(
                f"parameters {bad[:3]} became NaN/Inf by step {self.step} (epoch {self.epoch + 1})"
            )
        check_replicas(self.world, {**state.model, **state.optimizer}, self.step, self.net)
        self.phase, phase = "save", self.phase
        try:
            return self.output.checkpoint(
                checkpoint.checkpoint_path(self.output.folder, self.step),  # type: ignore[arg-type]  # a trainer that saves has its run folder (train_run)
                state,
            )
        finally:
            self.phase = phase

    def last_checkpoint(self) -> Path | None:
        folder = self.output.folder
        found = checkpoint.list_checkpoints(folder) if folder else []
        return found[-1][1] if found else None

    def not_finite(self, loss: float, x: Array) -> Untrainable | Diverged:
        """The error for a NaN/Inf ``loss`` on inputs ``x``, named by its cause, checked in
        this order: the data set's pixel statistics, the input batch, the weights before
        the step, and a loss that is not finite before any update (the forward pass of
        the initial network overflows: no learning rate has acted yet). Each of these is
        an ``Untrainable`` (no lower learning rate helps); otherwise the updates diverged:
        ``Diverged``, which ``refnet.stopping`` completes with the command that continues
        at a tenth of the learning rate."""
        where = f"loss is {loss} at step {self.step + 1} (epoch {self.epoch + 1})"
        # first, on every rank alike: gathering a hybrid network's weights is a collective
        weights = self.net.state_dict()
        pipe = self.pipeline
        assert pipe.meta.mean_image is not None  # InputPipeline refuses a store without it
        stats = [pipe.meta.mean_image] + ([] if pipe.scale is None else [pipe.scale])
        if not all(numpy.all(numpy.isfinite(a)) for a in stats):
            return Untrainable(
                f"{where}: the training set's pixel statistics ({pipe.train_path}: mean "
                "image, pixel std) are not finite; rebuild the store"
            )
        xs = self.net.xp.asarray(x)
        if not bool(self.net.xp.all(self.net.xp.isfinite(xs))):
            return Untrainable(f"{where}: the input batch holds NaN/Inf values")
        bad = [k for k, v in weights.items() if not numpy.all(numpy.isfinite(v))]
        if bad:
            return Untrainable(f"{where}: the weights {bad[:3]} were already NaN/Inf")
        if self.step == 0:
            peak = float(self.net.xp.max(self.net.xp.abs(xs)))
            hint = "--input-scale pixel_std" if pipe.scale is None else "another --init"
            return Untrainable(
                f"{where}, before any update: the initial network (--init "
                f"{self.cfg.init}) overflows on inputs up to |x| = {peak:.3g} in "
                f"{self.cfg.dtype}; a lower learning rate cannot help (try {hint})"
            )
        return Diverged(where)

    def best_record(self) -> Record | None:
        """The epoch record of the lowest per-epoch validation error so far (the first of
        equals; only records validated with ``eval_views``), or None."""
        views = self.cfg.eval_views
        found = [r for r in self.history if r.get("val_views", views) == views]
        return min(found, key=lambda r: r["val_top1_error"]) if found else None

    def expected_epochs(self) -> int:
        """The epoch the run ends at if the validation error does not improve again:
        ``epochs``, or with early stop the best epoch plus ``stop_patience`` (at most
        ``epochs``, at least the current one)."""
        cfg = self.cfg
        if not cfg.early_stop:
            return cfg.epochs
        best = self.best_record()
        end = (best["epoch"] if best else self.epoch) + cfg.stop_patience
        return min(cfg.epochs, max(end, self.epoch + 1))

    def eta(self) -> str:
        """Seconds left until ``expected_epochs`` at the pace of this process so far
        (steps and validations together), as text ("2m05s"); "?" before the first step."""
        t0, s0 = self.clock
        if self.step <= s0:
            return "?"
        per_step = (time.perf_counter() - t0) / (self.step - s0)
        left = self.expected_epochs() * self.pipeline.steps_per_epoch - self.step
        seconds = round(per_step * max(left, 0))
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

    def validate_best(self) -> None:
        """Load the best epoch's parameters (kept in memory, or from the run's best.h5
        after a resume) and validate them with ``final_views``: the run's result, logged
        as a "best" record and kept as ``self.final``."""
        cfg, best = self.cfg, self.best_record()
        if best is None:
            return
        model = self.best_model
        if model is None and self.output.folder is not None:  # resumed: best.h5, if usable
            try:
                model = checkpoint.read_state(checkpoint.best_path(self.output.folder)).model
            except checkpoint.CheckpointError:
                model = None
        if model is not None:
            self.net.load_state_dict(model)
        errors = evaluate(
            self.net, self.pipeline, views=cfg.final_views, batch=cfg.eval_batch, world=self.world
        )
        self.final = {
            "kind": "best",
            "epoch": best["epoch"],
            "step": best["step"],
            "val_top1_error": errors["top1"],
            "val_top5_error": errors["top5"],
            "val_views": cfg.final_views,
        }
        self.output.log(self.final)
        shown = "10 crops" if cfg.final_views == "ten" else "centre crop"
        self.output.say(
            f"best: epoch {best['epoch']}, val top-1 error {100 * errors['top1']:.1f}%, top-5 "
            f"error {100 * errors['top5']:.1f}% ({shown}){'' if model is None else ', best.h5'}",
            flush=True,
        )
