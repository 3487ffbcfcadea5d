"""``python -m refnet.train``: the paper's training loop, with exact resume.

    python -m refnet.train                       # demo: build the demo set once, train, report
    python -m refnet.train --data OUT_DIR --arch alexnet --batch 128 --lr 0.01 --epochs 90
    python -m refnet.train --out RUN_DIR --resume --epochs 30 [--lr 0.001]

One step: a batch of uint8 images from the loader -> random crops, flips and PCA lighting
(``refnet.train_inputs``) -> ``net.loss_and_grad_columns`` (dropout on its own
generator) -> the loss is checked to be finite -> ``SGD.step``. At the end of every
epoch: validation top-1/top-5 error, the learning-rate schedule, one line of summary, a
record in ``log.jsonl``, a checkpoint, and the plots.

Determinism (a killed-and-resumed run is bit-identical on the CPU): every random draw is
a pure function of the seed: the init from ``seed``; the shuffle of epoch e from ``(seed,
e)``; each image's crop, flip, lighting and dropout masks from ``(seed, e, its index in
the store)`` (``refnet.sample_draws``). The checkpoint (``refnet.checkpoint``) holds the
loader position, parameters, velocities, schedule and the current epoch's sums.

Data parallel: ``mpiexec -n R python -m refnet.train [the same flags]`` trains the model one
process would on R ranks (docs/distributed.md). The loop is the same on every rank: what rank 0
alone does (run folder, log, plots, progress) goes through ``refnet.run_output``; how ranks agree
is ``refnet.agreement``; the start, ``refnet.startup``; an early stop (divergence, Ctrl-C),
``refnet.stopping``. ``--parallel hybrid`` splits fc6-fc8 over the ranks, which see the whole
batch. Early stop and the trainer's bookkeeping: ``refnet.train_records``.

Outputs in RUN_DIR: ``log.jsonl``, ``ckpt-<step>.h5`` (the last ``--keep``), ``best.h5`` (early
stop), the plots, ``.lock``. Exit status: ``refnet.config.EXIT_CODES`` (also in ``--help``).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import closing

from refnet import distributed, sample_draws, startup
from refnet.agreement import on_every_rank, rank_report
from refnet.config import TrainConfig
from refnet.data.cli import exit_status, run_command
from refnet.data.progress import Progress
from refnet.distributed import Solo
from refnet.evaluate import evaluate
from refnet.network import build_network
from refnet.run_output import NoOutput, RunOutput, run_output
from refnet.startup import build_optimizer, build_schedule, network_options
from refnet.stopping import Diverged, Interrupted, train_until_stopped
from refnet.train_inputs import Batches, Config, Host, InputPipeline, Say
from refnet.train_records import Record, TrainerRecords, Untrainable

PROG = "refnet.train"
__all__ = ["Trainer", "Untrainable", "Diverged", "Interrupted", "main", "train_run", "run"]
__all__ += ["build_optimizer", "build_schedule", "network_options"]


class Trainer(TrainerRecords):
    """The state of one run and the loop over it. ``close()`` (or ``with``) releases the
    data files and the columns' threads. ``output`` writes the run folder (rank 0)."""

    def __init__(
        self, cfg: Config | dict, world: Solo | None = None, output: RunOutput | None = None
    ) -> None:
        if not isinstance(cfg, TrainConfig):  # the dict form
            cfg = TrainConfig.from_dict(cfg)
        self.world = distributed.Solo() if world is None else world
        self.pipeline = InputPipeline(cfg, shard=(self.world.rank, self.world.size))
        self.cfg = cfg.resolved(self.pipeline.steps_per_epoch)  # own data: "auto" values
        try:
            self.net = build_network(
                network_options(self.cfg, self.pipeline.num_classes, self.world),
                ranks=self.world if self.cfg.parallel == "hybrid" else None,
            )
        except BaseException:
            self.pipeline.close()
            raise
        self.sgd = build_optimizer(self.cfg, self.net)
        self.schedule = build_schedule(self.cfg)
        self.reducer = distributed.gradient_reducer(self.world, self.net)
        self.output = NoOutput() if output is None else output
        self.step, self.epoch, self.history = 0, 0, []  # steps taken, epochs completed
        self.loss_sum, self.loss_count = 0.0, 0  # over the current epoch
        self.interrupt = False
        self.phase = "setup"  # "train" while steps run (refnet.stopping: Ctrl-C)
        self.best_model = None  # early stop: the parameters of the best epoch (host)
        self.final = None  # early stop: the best epoch's final-views record
        self.clock = (time.perf_counter(), 0)  # (time, step) the ETA counts from

    def train(self) -> list[Record]:
        self.clock = (time.perf_counter(), self.step)
        while self.epoch < self.cfg.epochs:  # an early stop lowers it
            t0, images = time.perf_counter(), 0
            most = "at most " if self.cfg.early_stop else ""
            bar = self.output.progress(
                self.pipeline.train_count, f"epoch {self.epoch + 1}/{most}{self.cfg.epochs}"
            )
            # a checkpoint written at an epoch's end has the loader already in the next epoch;
            # closing: whatever ends the loop, the loader's threads stop and are joined
            in_epoch = self.pipeline.loader.position[0] == self.epoch
            bar.count = self.pipeline.loader.position[1] if in_epoch else 0
            with closing(self.pipeline.train_batches() if in_epoch else _no_batches()) as batches:
                self.phase = "train"
                for images_u8, labels, indices in batches:
                    images += self.pipeline.batch  # the global batch
                    self.train_step(images_u8, labels, indices, bar, t0, images)
                self.phase = "epoch-end"
            bar.close()
            self.end_epoch(time.perf_counter() - t0, images)
        return self.history

    def train_step(
        self, images_u8: Host, labels: Host, indices: Host, bar: Progress, t0: float, images: int
    ) -> None:
        x = self.pipeline.train_views(images_u8, indices, self.epoch)
        y = self.pipeline.labels(labels)
        if self.net.ranks is not None:  # hybrid: the whole batch's
            indices, y = self.pipeline.whole_batch(self.world, indices, y)
        masks = sample_draws.dropout_masks(
            self.cfg.seed, self.epoch, indices, self.net.dropout_widths(), self.net.dropout
        )
        hook = None
        if self.reducer is not None:  # sends each bucket as backward makes it
            self.reducer.begin(len(labels), self.pipeline.batch)
            hook = self.reducer.ready
        loss, grads = self.net.loss_and_grad_columns(x, y, train=True, masks=masks, on_grads=hook)
        loss, stop = float(loss), None  # stop: the ranks' agreed Ctrl-C
        if self.reducer is not None:  # the global batch's gradient, on every rank
            loss, (interrupts,) = self.reducer.reduce(
                grads, loss, len(labels), self.pipeline.batch, extras=(self.interrupt,)
            )
            stop = interrupts > 0  # a Ctrl-C on any rank stops them all after this step
            self.interrupt |= stop  # (one during the update goes with the next reduce)
            if math.isfinite(loss) and not self.reducer.finite():
                loss = math.nan
        if not math.isfinite(loss):
            raise self.not_finite(loss, x)
        self.sgd.step(grads)
        self.step += 1
        self.loss_sum += loss
        self.loss_count += 1
        bar.update(self.pipeline.batch, loss=loss, lr=self.sgd.lr, run_eta=self.eta())
        if self.step % self.cfg.log_every == 0:
            rate = images / max(time.perf_counter() - t0, 1e-9)
            self.output.log(
                {
                    "kind": "interval",
                    "step": self.step,
                    "epoch": self.epoch + 1,
                    "loss": loss,
                    "lr": self.sgd.lr,
                    "images_per_s": rate,
                }
            )
        if self.interrupt if stop is None else stop:
            bar.close()
            raise Interrupted(self.save(), True, "training")
        if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
            self.save()

    def end_epoch(self, seconds: float, images: int) -> None:
        cfg = self.cfg
        last = self.epoch + 1 == cfg.epochs
        # early stop compares every epoch's error, so all use the per-epoch views
        views = cfg.final_views if last and not cfg.early_stop else cfg.eval_views
        errors = evaluate(
            self.net, self.pipeline, views=views, batch=cfg.eval_batch, world=self.world
        )
        lr = self.sgd.lr
        next_lr = self.schedule.step(errors["top1"])
        best = self.best_record()
        improved = cfg.early_stop and (best is None or errors["top1"] < best["val_top1_error"])
        stale = 0 if best is None or improved else self.epoch + 1 - best["epoch"]
        done = errors["top1"] == 0 or stale >= cfg.stop_patience or self.schedule.spent
        stop = cfg.early_stop and not last and done
        if stop:
            self.cfg = cfg.replace(epochs=self.epoch + 1)  # what a resume continues to
        train_loss = self.loss_sum / max(self.loss_count, 1)
        record = {
            "kind": "epoch",
            "epoch": self.epoch + 1,
            "step": self.step,
            "train_loss": train_loss,
            "val_top1_error": errors["top1"],
            "val_top5_error": errors["top5"],
            "val_views": views,
            "lr": lr,
            "seconds": seconds,
            "images_per_s": images / seconds if seconds > 0 else 0.0,
        }
        if stop:
            record["early_stop"] = True
        self.history.append(record)
        self.output.log(record)
        self.sgd.lr = next_lr
        self.epoch += 1
        self.loss_sum, self.loss_count = 0.0, 0
        self.output.say(
            f"epoch {record['epoch']}/{self.cfg.epochs}: train loss {train_loss:.4f}, val "
            f"top-1 error {100 * errors['top1']:.1f}%, top-5 error {100 * errors['top5']:.1f}%"
            f" ({'10 crops' if views == 'ten' else 'centre crop'}), lr {record['lr']:g}, "
            f"{seconds:.1f} s, {record['images_per_s']:.0f} img/s",
            flush=True,
        )
        if stop:
            why = (
                "the validation error is 0"
                if errors["top1"] == 0
                else f"the validation error has not improved for {stale} epochs (best at "
                f"epoch {self.best_record()['epoch']}; {self.schedule.reductions} "  # type: ignore[index]  # this epoch's record is in the history
                "reductions of the learning rate)"
            )
            self.output.say(
                f"stopped early after epoch {record['epoch']}: {why} (--early-stop)", flush=True
            )
        state = self.state()  # one copy of the network to the host per epoch
        self.save(state)
        if improved:
            self.output.best(state)
            self.best_model = state.model
        self.output.plots(
            self.history,
            state.model[self.net.key("conv1", "weight")],
            self.net.columns,
            final=stop or last,
        )
        if cfg.early_stop and (stop or last):
            self.validate_best()


def _no_batches() -> Batches:
    """An epoch trained before the checkpoint (a generator: ``closing`` closes it)."""
    yield from ()


def train_run(
    argv: list[str] | None = None, stdout: Say = print, world: Solo | None = None
) -> Trainer:
    """Train as the command line ``argv`` says (module doc); the finished ``Trainer``."""
    world = distributed.Solo() if world is None else world
    argv = sys.argv[1:] if argv is None else list(argv)
    start = startup.prepare(argv, world, stdout)
    cfg = start.cfg
    numpy_ranks = world.size > 1 and cfg.backend == "numpy"
    cores = distributed.share_cores(world) if numpy_ranks else None
    # everything is checked before the run folder is made: a refused start leaves nothing
    with on_every_rank(world, lambda: startup.open_trainer(Trainer, cfg, world)) as trainer:
        changes = {}
        if start.state is None:
            trainer.fresh_start()
        else:
            startup.check_same_data(start.state, trainer.pipeline, start.allow_other_data)
            trainer.restore(start.state)
            changes = startup.reschedule(trainer, start.state.config, start.given)
        folder, lock = startup.claim_run_dir(world, start)
        try:
            trainer.cfg = trainer.cfg.replace(out=str(folder))
            trainer.output = run_output(world, folder, trainer.cfg, stdout)
            startup.begin(trainer, start, changes)
            if world.size > 1:
                startup.announce_world(trainer, cores)
            train_until_stopped(trainer, argv)
        finally:
            if lock is not None:
                lock.release()
    startup.finish(trainer, folder)
    return trainer


run = train_run  # the entry's first name, kept


def main(argv: list[str] | None = None, world: Solo | None = None) -> int:
    """Train and map the outcome to an exit status (module doc, ``data.cli.exit_status``).
    In a data-parallel job the failures every rank reaches together (a refused start,
    divergence, an agreed interrupt, replicas that differ) end each rank with the same
    status, rank 0 saying why; anything that strikes one rank alone aborts the whole job
    (``MPI_Abort``) after that rank says what and where, so no rank is left waiting."""
    try:
        world = distributed.current_world() if world is None else world
    except distributed.DistributedError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_status

    def body() -> None:
        train_run(argv, world=world)

    return exit_status(PROG, body, report=rank_report(world, PROG), unexpected=True)


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
