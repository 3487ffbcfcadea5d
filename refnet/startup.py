"""How a training run starts: the command line checked, the run to resume read, the data
made ready, and the run folder claimed, in that order, so that a refused start leaves
nothing behind.

    start = prepare(argv, world, say)          # the flags, --resume, the data; no folder
    folder, lock = claim_run_dir(world, start) # rank 0 makes and locks it (refnet.run_dir)
    begin(trainer, start, changes, say)        # in trainer.output's folder: temporaries
                                               # removed; the start line; a resume logged
                                               # with the ``changes`` to its settings

A folder of one's own images given without ``--arch`` gets the arch sized to its images
(``refnet.config.own_data_arch`` of ``data.sources.typical_side``), said in the start
line with how to choose another.

Resuming (``--resume --out RUN_DIR``): the newest valid checkpoint's configuration, with
the flags ``TrainConfig.RESUME_OVERRIDABLE`` allows; a changed learning rate or schedule
applies from the resumed step on and is logged; another build of the data set is refused
unless ``--allow-other-data``; ``log.jsonl`` is cut back to the checkpoint's step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import numpy

from refnet import checkpoint, run_dir
from refnet.agreement import on_every_rank
from refnet.config import (
    COMMON_DEFAULTS,
    OWN_DATA_ARCHS,
    TrainConfig,
    UsageError,
    build_parser,
    own_data_arch,
    resolve,
)
from refnet.data.cli import unwritable_reason
from refnet.data.files import remove_stale_temporaries
from refnet.data.sources import typical_side
from refnet.data.store import StoreError, StoreReader
from refnet.distributed import column_devices
from refnet.options import NetOptions, backend_for_device
from refnet.schedule import ReduceOnPlateau, StepSchedule
from refnet.sgd import SGD
from refnet.train_inputs import Config, InputPipeline, ensure_data, is_image_tree

if TYPE_CHECKING:
    from refnet.distributed import Solo
    from refnet.network import AlexNet
    from refnet.run_dir import RunLock
    from refnet.train_records import TrainerRecords as Trainer  # refnet.train's, by its mixin


T = TypeVar("T", bound="Trainer")  # the trainer open_trainer makes


class Start(NamedTuple):
    cfg: Config  # the run's configuration (a resumed run's, with overrides)
    given: dict[str, Any]  # the settings given on the command line
    explicit: bool  # --out given
    allow_other_data: bool
    path: Path | None  # the checkpoint resumed from (None: a new run)
    state: checkpoint.TrainingState | None  # its TrainingState
    side: int | None = None  # the images' typical side, when it picked the arch


def prepare(argv: list[str], world: Solo, say: Callable[..., object] = print) -> Start:
    """The checked command line (``Start``); rank 0 makes the data ready first (it may
    build the demo set or a folder's store into the cache), then the other ranks."""
    args = build_parser().parse_args(argv)
    side = None
    if not args.resume and _picks_arch(args):
        fraction = (
            COMMON_DEFAULTS["val_fraction"] if args.val_fraction is None else args.val_fraction
        )
        side = _images_side(args.data, cast(float, fraction))
    cfg, given = resolve(args, arch=None if side is None else own_data_arch(side))
    if not world.is_root:
        cfg = cfg.replace(quiet=True)  # rank 0 alone shows progress
    explicit = "out" in given
    if explicit:
        check_out(cast(str, cfg.out))  # given: a path
    if args.allow_other_data and not args.resume:
        raise UsageError("--allow-other-data goes with --resume")
    path, state = None, None
    if args.resume:
        if not explicit:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        cfg, path, state = resumed(cfg, given, quiet=cfg.quiet)
    elif explicit and checkpoint.list_checkpoints(cast(str, cfg.out)):
        raise UsageError(
            f"{cfg.out} already holds checkpoints; add --resume to continue "
            "it or choose another --out"
        )
    try:
        cfg = cfg.replace(backend=backend_for_device(cfg.device))
    except ValueError as e:
        raise UsageError(str(e)) from None
    data = on_every_rank(world, lambda: ensure_data(cfg, quiet=cfg.quiet, say=say), root_first=True)
    cfg = cfg.replace(data=data)
    if state is None:  # a new run: the recipe's batch fits the training set
        cfg = fit_batch(cfg, given)
    return Start(cfg, given, explicit, args.allow_other_data, path, state, side)


def fit_batch(cfg: Config, given: Mapping[str, Any]) -> Config:
    """``cfg`` with the recipe's batch (``--batch`` not given) halved until it is at most
    the training set's size, and the recipe's rate (``--lr`` not given) with it, so the
    rate per image stays the recipe's. A given ``--batch`` is the user's: the pipeline
    refuses one larger than the training set."""
    if "batch" in given:
        return cfg
    train = Path(cfg.data) / "train.h5"
    try:
        with StoreReader(train, memory_limit=0) as store:
            count = store.count
    except StoreError:
        return cfg  # said when the pipeline opens it
    batch, lr = int(cfg.batch), float(cfg.lr)
    while batch > max(count, 1) and batch > 1:
        batch, lr = batch // 2, lr / 2
    if batch == cfg.batch:
        return cfg
    return cfg.replace(batch=batch, **({} if "lr" in given else {"lr": lr}))


def _picks_arch(args: argparse.Namespace) -> bool:
    """True when the run chooses its arch from the images: a --data folder of images and
    neither --arch nor --conventions (whose preset may name one) on the command line."""
    return (
        args.data is not None
        and args.arch is None
        and args.conventions is None
        and is_image_tree(args.data)
    )


def _images_side(src: str, val_fraction: float) -> int | None:
    """``data.sources.typical_side`` of the tree, None when it cannot tell (the build
    then says what is wrong with the tree)."""
    try:
        return typical_side(str(Path(src).resolve()), val_fraction)
    except (ValueError, OSError):
        return None


def check_out(out: str) -> None:
    """``--out``: a run folder that exists or can be made, and can be written; else
    ``UsageError`` (exit 2, one line), before anything is written."""
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file, not a run folder")
    reason = unwritable_reason(out)
    if reason is not None:
        raise UsageError(f"--out {out}: no run folder can be written there: {reason}")


def resumed(
    cfg: Config, given: Mapping[str, Any], quiet: bool
) -> tuple[Config, Path | None, checkpoint.TrainingState | None]:
    """``(cfg, path, state)`` of the run to resume in ``cfg.out``: its newest valid
    checkpoint and its configuration with the flags allowed to change; ``state`` None
    (and ``cfg`` as given) when the folder holds no checkpoint yet."""
    path, state = checkpoint.latest_state(
        cfg.out, warn=lambda m: print(m, file=sys.stderr, flush=True)
    )
    if state is None:
        if checkpoint.list_checkpoints(cfg.out):
            raise UsageError(f"no valid checkpoint in {cfg.out} (all are corrupt)")
        print(f"note: no checkpoint in {cfg.out}; starting a new run", file=sys.stderr)
        return cfg, None, None
    if "arch" in given and given["arch"] != state.arch:
        raise UsageError(f"checkpoint {path} is for arch {state.arch!r}, not {given['arch']!r}")
    try:
        saved = TrainConfig.from_dict(state.config)
    except ValueError as e:
        raise checkpoint.CheckpointError(f"checkpoint {path}: {e}") from None
    return saved.resumed(given, out=cfg.out, quiet=quiet, device=cfg.device), path, state


def check_same_data(
    state: checkpoint.TrainingState, pipeline: InputPipeline, allow_other: bool
) -> None:
    """A resumed run reads the data set it trained on, unless told otherwise."""
    was = (state.inputs or {}).get("build_id")
    now = pipeline.meta.build_id
    if was is None or was == now or allow_other:
        return
    raise UsageError(
        f"{pipeline.train_path} is another build of the data (build {now}) "
        f"than the one this run trained on (build {was}); pass "
        "--allow-other-data to continue on it"
    )


def claim_run_dir(world: Solo, start: Start) -> tuple[Path, RunLock | None]:
    """``(folder, lock)``: rank 0 claims the run folder (``refnet.run_dir``) and tells
    the others its name (their lock is None)."""
    cfg = start.cfg
    folder, lock, error = None, None, None
    if world.is_root:
        try:
            folder, lock, created = run_dir.claim(
                cfg.out or run_dir.default_name(cfg.arch), unique=not start.explicit
            )
        except run_dir.RunDirError as e:  # busy, or no folder can be made or locked
            error = str(e)
        else:
            if start.state is None and checkpoint.list_checkpoints(folder):  # made meanwhile
                lock.release()
                if created:
                    run_dir.remove_if_empty(folder)
                error = (
                    f"{folder} already holds checkpoints; add --resume to continue "
                    "it or choose another --out"
                )
    answer = world.bcast({"folder": None if folder is None else str(folder), "error": error})
    if answer["error"]:
        raise UsageError(answer["error"])
    return Path(answer["folder"]), lock


def begin(
    trainer: Trainer, start: Start, changes: Mapping[str, Any], say: Callable[..., object] = print
) -> None:
    """The claimed folder tidied (rank 0): temporaries of killed writers removed; for a
    resumed run, ``log.jsonl`` cut back to the checkpoint's step and the resume logged."""
    folder = trainer.output.folder
    assert folder is not None  # the claimed run folder (train_run gave the output)
    if trainer.world.is_root:
        remove_stale_temporaries(str(folder))
    trainer.output.say(start_line(trainer, start.side), flush=True)
    if start.state is None or start.path is None:  # a new run (both None)
        return
    if trainer.world.is_root:
        run_dir.trim_log(folder, trainer.step)
    trainer.output.log(
        {
            "kind": "resume",
            "step": trainer.step,
            "epoch": trainer.epoch,
            "checkpoint": start.path.name,
            "changes": changes,
        }
    )
    trainer.output.say(
        f"resuming from {start.path} (step {start.state.step}, epoch "
        f"{start.state.epoch})" + "".join(f"; {k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
    )


def start_line(trainer: Trainer, side: int | None = None) -> str:
    """What the run trains, on what, and until when, in one line (two when a channel of
    the images is left unscaled): the arch and why (``side``: the images' typical side
    that picked it), the images, the batch and rate, and the stopping rule."""
    cfg, pipe = trainer.cfg, trainer.pipeline
    how = ""
    if side is not None:
        others = " or ".join(a for a in OWN_DATA_ARCHS if a != cfg.arch)
        how = f"; picked for images of side {side}, --arch {others} or --size to choose"
    until = (
        f"until the validation error has not improved for {cfg.stop_patience} epochs "
        f"(at most {cfg.epochs}), keeping best.h5"
        if cfg.early_stop
        else f"for {cfg.epochs} epochs"
    )
    line = (
        f"training arch {cfg.arch} ({pipe.crop}x{pipe.crop} crops of {pipe.size}x{pipe.size} "
        f"images{how}) on {pipe.meta.count} training and {pipe.val_meta.count} validation "
        f"images of {pipe.num_classes} classes, batch {pipe.batch}, lr {cfg.lr:g}, {until}"
    )
    return line + (f"\nnote: {pipe.notice}" if pipe.notice else "")


def finish(trainer: Trainer, folder: Path) -> None:
    """The closing lines: the run's validation errors (with early stop, its best epoch's,
    ``trainer.final``) and where the outputs are."""
    last = trainer.history[-1] if trainer.history else None
    result = trainer.final or last
    if result and last:  # (a final record comes with the history)
        at = (
            f"at epoch {result['epoch']} of {last['epoch']}"
            if trainer.final
            else f"after {last['epoch']} epochs"
        )
        trainer.output.say(
            f"done: val top-1 error {100 * result['val_top1_error']:.1f}% (accuracy "
            f"{100 * (1 - result['val_top1_error']):.1f}%), top-5 error "
            f"{100 * result['val_top5_error']:.1f}% {at}"
        )
    newest = trainer.last_checkpoint()
    best = ", best.h5" if trainer.final and checkpoint.best_path(folder).is_file() else ""
    trainer.output.say(
        f"outputs in {folder}/: log.jsonl, curves.png, conv1_filters.png, "
        f"{newest.name if newest else 'no checkpoint'}{best}"
    )


def open_trainer(make: Callable[..., T], cfg: Config, world: Solo) -> T:
    """``make(cfg, world)`` (a ``Trainer``), its GPUs joined to the job's NCCL
    communicator in a data-parallel job on GPUs."""
    trainer = make(cfg, world=world)
    if world.size > 1 and trainer.net.xp is not numpy:
        try:
            world.use_nccl(trainer.net.devices[0])
        except BaseException:
            trainer.close()
            raise
    return trainer


def announce_world(trainer: Trainer, cores: int | None) -> None:
    """Rank 0 says (and logs) which process is which rank: mpiexec names a lost rank by
    its process id."""
    world = trainer.world
    ranks = world.describe()
    slices = [
        len(part) for part in numpy.array_split(numpy.arange(trainer.pipeline.batch), world.size)
    ]
    trainer.output.log(
        {
            "kind": "world",
            "step": trainer.step,
            "ranks": ranks,
            "batch_slices": slices,
            "cores_per_rank": cores,
            "parallel": "hybrid" if trainer.net.ranks is not None else "data",
        }
    )
    where = ", ".join(f"rank {d['rank']} pid {d['pid']} on {d['host']}" for d in ranks)
    what = f"{cores} core(s) each" if cores else f"GPUs, columns on {trainer.net.devices}"
    hybrid = trainer.net.ranks is not None
    if hybrid:  # the fc layers' outputs each rank computes, per column
        fc = ", ".join(
            f"{name} {'+'.join(str(hi - lo) for lo, hi in blocks[0])}"
            for name in ("fc6", "fc7", "fc8")
            for blocks in [trainer.net.placement.rank_rows(trainer.net.key(name, "bias"))]
        )
        what += f"; convolutions data parallel, fc outputs per column split {fc}"
    trainer.output.say(
        f"{'hybrid' if hybrid else 'data'} parallel over {world.size} ranks ({what}): "
        f"{where}; global batch {trainer.pipeline.batch} = {' + '.join(map(str, slices))}",
        flush=True,
    )


def network_options(cfg: Config, num_classes: int, world: Solo | None = None) -> NetOptions:
    """The ``NetOptions`` of a training configuration, with a data-parallel rank's GPUs;
    ``UsageError`` for a value the options refuse."""
    try:
        opts = NetOptions.from_config(cfg, num_classes=num_classes)
        if world is not None and world.size > 1 and opts.backend == "cupy":
            from refnet.layers import backend

            opts = opts.replace(
                devices=column_devices(
                    world.local_rank, world.local_size, backend.gpu_count(), opts.columns
                )
            )
        return opts
    except ValueError as e:
        raise UsageError(str(e)) from None


def build_optimizer(cfg: Config, net: AlexNet) -> SGD:
    return SGD(
        net, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, form=cfg.sgd_form
    )


def build_schedule(cfg: Config, lr: float | None = None) -> ReduceOnPlateau | StepSchedule:
    lr = cfg.lr if lr is None else lr
    if cfg.lr_schedule == "step":
        return StepSchedule(lr=lr, milestones=cfg.milestones)
    return ReduceOnPlateau(lr=lr, patience=cfg.patience)


def reschedule(
    trainer: Trainer, saved: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, list[Any]]:
    """Apply to ``trainer`` the learning rate and schedule flags given on resuming
    (``given``) over the checkpoint's configuration ``saved`` (a dict): the rate from now
    on is ``--lr`` if given, else the resumed one; a changed schedule continues from the
    resumed epoch. Returns ``{setting: [old, new]}`` for the log."""
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    changes = {
        k: [saved.get(k), given[k]]
        for k in TrainConfig.RESUME_SCHEDULE
        if k in given and norm(given[k]) != norm(saved.get(k))
    }
    if not changes:
        return {}
    lr = float(given.get("lr", trainer.sgd.lr))
    changes["lr"] = [trainer.sgd.lr, lr]
    if any(k != "lr" for k in changes):  # another schedule: same epoch count
        epoch = trainer.schedule.epoch
        trainer.schedule = build_schedule(trainer.cfg, lr)
        trainer.schedule.epoch = epoch
    trainer.schedule.set_lr(lr)
    trainer.sgd.lr = lr
    return changes
