"""``python -m refnet.train``: the paper's training loop, with exact resume.

    python -m refnet.train                       # demo: build the demo set once, train, report
    python -m refnet.train --data OUT_DIR --arch alexnet --batch 128 --lr 0.01 --epochs 90
    python -m refnet.train --out RUN_DIR --resume --epochs 30 [--lr 0.001]

One step: a batch of uint8 images from the loader -> random crops, flips and PCA lighting
(``refnet.train_inputs``) -> ``net.loss_and_grad_columns`` (dropout on its own
generator) -> the loss is checked to be finite -> ``SGD.step``. At the end of every
epoch: validation top-1/top-5 error, the learning-rate schedule, one line of summary, a
record in ``log.jsonl``, a checkpoint, and the plots.

Determinism (what makes a killed-and-resumed run bit-identical on the CPU): every random
draw is a pure function of the seed: the init from ``seed``; the shuffle order of epoch e
from ``(seed, e)`` inside the loader; each training image's crop, flip, lighting and
dropout masks from ``(seed, e, its index in the store)`` (``refnet.sample_draws``). The
checkpoint holds the loader position, the parameters, the velocities, the schedule and
the running sums of the current epoch. Nothing depends on the clock or on thread timing.

Data parallel: ``mpiexec -n R python -m refnet.train [the same flags]`` trains one model
on R ranks (``refnet.distributed``): ``--batch`` stays the global batch, each rank
computes its slice of it, the gradients are summed by one allreduce per step, and since no
draw depends on the rank or on R, the model is the one a single process trains (up to the
order of the sums). Rank 0 alone writes the run folder (checkpoints, log, plots) and
shows progress; every rank checks, before training, that it can open the data (and its
GPU), and a failure of one rank ends the whole job with its message.

Failures end cleanly. The data, the network and the checkpoint to resume are checked
before the run folder is made, so a refused start leaves nothing behind. The run then
locks its folder (``refnet.run_dir``: one run per folder), removes the temporaries of
killed writers and, when resuming, cuts ``log.jsonl`` back to the checkpoint's step. The
loader's threads and the data files are closed whatever ends the run, before the process
exits (a thread left reading HDF5 at interpreter exit would hang it). The first Ctrl-C
during training finishes the step and writes a checkpoint; during evaluation or a
checkpoint write, or a second time, it stops at once (checkpoints are written atomically,
so the last good one stays as it was).

Outputs in RUN_DIR: ``log.jsonl``, ``ckpt-<step>.h5`` (the last ``--keep``),
``curves.png``, ``conv1_filters.png``, ``.lock``.

Exit status (also in ``--help``): 0 done; 1 diverged (NaN/Inf), with the command that
resumes at a lower learning rate; 2 a usage or data error (one line on stderr); 3 an
unexpected failure (traceback, then one line); 130 interrupted.
"""

import contextlib
import json
import math
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy

from data.files import remove_stale_temporaries
from refnet import sample_draws
from data.progress import Progress
from data.store import StoreError
from refnet import checkpoint, run_dir
from refnet.distributed import (DistributedError, GradientReducer, Solo, checksum,
                                column_devices, current_world, share_cores)
from refnet.config import (RESUME_OVERRIDABLE, RESUME_SCHEDULE, UsageError, build_parser,
                           resolve, resolve_auto)
from refnet.evaluate import evaluate
from refnet.network import build_network
from refnet.options import NetOptions, backend_for_device
from refnet.plots import plot_conv1, plot_curves
from refnet.schedule import ReduceOnPlateau, StepSchedule
from refnet.schedule import from_state as schedule_from_state
from refnet.sgd import SGD
from refnet.train_inputs import DataError, InputPipeline, ensure_data

PROG = "refnet.train"


def network_options(cfg, num_classes, world=None):
    """The ``NetOptions`` a training configuration describes (its ablation switches
    included), with a data-parallel rank's GPUs; ``UsageError`` for a value the options
    refuse."""
    try:
        opts = NetOptions.from_config(cfg, num_classes=num_classes)
        if world is not None and world.size > 1 and opts.backend == "cupy":
            from layers import backend
            opts = opts.replace(devices=column_devices(
                world.local_rank, world.local_size, backend.gpu_count(), opts.columns))
        return opts
    except ValueError as e:
        raise UsageError(str(e)) from None


def build_optimizer(cfg, net):
    return SGD(net, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
               weight_decay=float(cfg["weight_decay"]), form=cfg["sgd_form"])


def build_schedule(cfg, lr=None):
    lr = float(cfg["lr"]) if lr is None else lr
    if cfg["lr_schedule"] == "step":
        return StepSchedule(lr=lr, milestones=cfg["milestones"])
    return ReduceOnPlateau(lr=lr, patience=int(cfg["patience"]))


class Diverged(RuntimeError):
    """The loss or a parameter became NaN or Inf."""


class Interrupted(Exception):
    """SIGINT received: ``Interrupted(path, written, phase)``, the checkpoint to resume
    from (None: none yet), whether it was written for the interrupt, and what the run was
    doing."""

    def message(self):
        path, written, phase = self.args
        if path is None:
            return f"interrupted while {phase}, before any checkpoint was written"
        what = (f"checkpoint written to {path}" if written else
                f"interrupted while {phase}; the last checkpoint, {path}, is intact")
        return (f"{'interrupted; ' if written else ''}{what}; continue with --resume "
                f"--out {shlex.quote(str(Path(path).parent))}")


class Trainer:
    """The state of one run and the loop over it. ``close()`` (or ``with``) releases the
    data files and the columns' threads."""

    def __init__(self, cfg, out=print, err=None, world=None):
        self.cfg = cfg
        self.world = Solo() if world is None else world
        self.say = out if not cfg["quiet"] else (lambda *a, **k: None)
        self.err = err or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.run_dir = None if cfg["out"] is None else Path(cfg["out"])
        self.pipeline = InputPipeline(cfg, shard=(self.world.rank, self.world.size))
        resolve_auto(cfg, self.pipeline.steps_per_epoch)     # own data: patience, epochs
        try:
            self.net = build_network(network_options(cfg, self.pipeline.num_classes,
                                                     self.world))
        except BaseException:
            self.pipeline.close()
            raise
        self.sgd = build_optimizer(cfg, self.net)
        self.schedule = build_schedule(cfg)
        self.reducer = None if self.world.size == 1 else GradientReducer(self.world, self.net)
        self.step = 0
        self.epoch = 0            # completed epochs
        self.loss_sum = 0.0       # over the current epoch
        self.loss_count = 0
        self.history = []
        self.interrupt = False
        self.phase = "setup"      # "train" while steps run (module doc: Ctrl-C)

    def close(self):
        self.pipeline.close()
        self.net.placement.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- state ---------------------------------------------------------------------
    def fresh_start(self):
        self.net.init(seed=int(self.cfg["seed"]), scheme=self.cfg["init"])

    def state(self):
        return {
            "format": checkpoint.FORMAT,
            "arch": self.cfg["arch"],
            "step": self.step,
            "epoch": self.epoch,
            "loader": list(self.pipeline.loader.position),
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "config": self.cfg,
            "network": self.net.options.to_dict(),
            "model": self.net.state_dict(),
            "lr": self.sgd.lr,
            "optimizer": _nest(self.sgd.state_dict()),
            "schedule": self.schedule.state_dict(),
            "history": self.history,
            "inputs": self.pipeline.record(),
            "world_size": self.world.size,
        }

    def restore(self, tree):
        if tree.get("arch") != self.cfg["arch"]:
            raise UsageError(f"checkpoint is for arch {tree.get('arch')!r}, "
                             f"this run is {self.cfg['arch']!r}")
        try:
            self.net.load_state_dict(tree["model"])
            self.sgd.load_state_dict(_flatten(tree["optimizer"]))
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"checkpoint does not fit this network: {e}") from None
        self.schedule = schedule_from_state(tree["schedule"])   # the kind the run had
        self.sgd.lr = float(tree["lr"])
        self.step = int(tree["step"])
        self.epoch = int(tree["epoch"])
        self.pipeline.loader.seek(*tree["loader"])
        self.loss_sum = float(tree["loss_sum"])
        self.loss_count = int(tree["loss_count"])
        self.history = list(tree["history"])

    def reschedule(self, saved_cfg, given):
        """Apply the learning rate and schedule flags given on resuming (``given``) over
        the checkpoint's (``saved_cfg``): the rate from now on is ``--lr`` if given, else
        the resumed one; a changed schedule continues from the resumed epoch. Returns
        ``{setting: [old, new]}`` for the log."""
        changes = {k: [saved_cfg.get(k), given[k]] for k in RESUME_SCHEDULE
                   if k in given and _norm(given[k]) != _norm(saved_cfg.get(k))}
        if not changes:
            return {}
        lr = float(given.get("lr", self.sgd.lr))
        changes["lr"] = [self.sgd.lr, lr]
        if any(k != "lr" for k in changes):            # another schedule: same epoch count
            epoch = self.schedule.epoch
            self.schedule = build_schedule(self.cfg, lr)
            self.schedule.epoch = epoch
        self.schedule.set_lr(lr)
        self.sgd.lr = lr
        return changes

    def save(self, state=None):
        state = self.state() if state is None else state
        bad = [k for k, v in state["model"].items() if not numpy.all(numpy.isfinite(v))]
        if bad:
            raise Diverged(f"parameters {bad[:3]} became NaN/Inf by step {self.step} "
                           f"(epoch {self.epoch + 1})")
        self.check_replicas(state)
        path = checkpoint.checkpoint_path(self.run_dir, self.step)
        if not self.world.is_root:                    # rank 0 writes the run folder
            return path
        self.phase, phase = "save", self.phase
        try:
            path = checkpoint.save(path, state)
            checkpoint.prune(self.run_dir, self.cfg["keep"])
        finally:
            self.phase = phase
        return path

    def check_replicas(self, state):
        """Every rank's parameters and velocities are bit-identical (a data-parallel job);
        ``DistributedError`` on every rank, before anything is written, if not."""
        if self.world.size == 1:
            return
        mine = checksum({**state["model"], **_flatten(state["optimizer"])})
        sums = self.world.allgather(mine)
        if len(set(sums)) > 1:
            differ = [r for r, s in enumerate(sums) if s != sums[0]]
            raise DistributedError(f"the replicas differ at step {self.step}: the "
                                   f"parameters of rank(s) {differ} are not rank 0's "
                                   "(checksums); no checkpoint was written")

    def last_checkpoint(self):
        found = checkpoint.list_checkpoints(self.run_dir) if self.run_dir else []
        return found[-1][1] if found else None

    # -- logging -------------------------------------------------------------------
    def log(self, record):
        if not self.world.is_root:
            return
        record = {**record, "world_size": self.world.size}
        with open(self.run_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- the loop --------------------------------------------------------------------
    def train(self):
        cfg = self.cfg
        while self.epoch < int(cfg["epochs"]):       # an early stop lowers it
            epochs = int(cfg["epochs"])
            t0 = time.perf_counter()
            images = 0
            bar = Progress(total=self.pipeline.train_count,
                           desc=f"epoch {self.epoch + 1}/{epochs}", unit="img",
                           enabled=not cfg["quiet"])
            # a checkpoint written after the last batch of an epoch but before its end
            # (evaluation, schedule) has the loader already in the next epoch
            in_epoch = self.pipeline.loader.position[0] == self.epoch
            bar.count = self.pipeline.loader.position[1] if in_epoch else 0
            # closing: whatever ends the loop, the loader's threads stop and are joined
            with contextlib.closing(self.pipeline.train_batches() if in_epoch
                                    else _no_batches()) as batches:
                self.phase = "train"
                for images_u8, labels, indices in batches:
                    images += self.pipeline.batch          # the global batch
                    self.train_step(images_u8, labels, indices, bar, t0, images)
                self.phase = "epoch-end"
            bar.close()
            self.end_epoch(time.perf_counter() - t0, images)
        return self.history

    def train_step(self, images_u8, labels, indices, bar, t0, images):
        cfg = self.cfg
        x = self.pipeline.train_views(images_u8, indices, self.epoch)
        y = self.pipeline.labels(labels)
        masks = sample_draws.dropout_masks(cfg["seed"], self.epoch, indices,
                                           self.net.dropout_widths(), self.net.dropout)
        hook = None
        if self.reducer is not None:       # sends each bucket as backward makes it
            self.reducer.begin(len(labels), self.pipeline.batch)
            hook = self.reducer.ready
        loss, grads = self.net.loss_and_grad_columns(x, y, train=True, masks=masks,
                                                     on_grads=hook)
        loss = float(loss)
        if self.reducer is not None:       # the global batch's gradient, on every rank
            loss, (interrupts,) = self.reducer.reduce(grads, loss, len(labels),
                                                      self.pipeline.batch,
                                                      extras=(self.interrupt,))
            self.interrupt = interrupts > 0    # a Ctrl-C on any rank stops them all here
            if math.isfinite(loss) and not self.reducer.finite():
                loss = math.nan
        if not math.isfinite(loss):
            raise Diverged(f"loss is {loss} at step {self.step + 1} (epoch {self.epoch + 1})")
        self.sgd.step(grads)
        self.step += 1
        self.loss_sum += loss
        self.loss_count += 1
        bar.update(self.pipeline.batch, loss=loss, lr=self.sgd.lr)
        if self.step % cfg["log_every"] == 0:
            rate = images / max(time.perf_counter() - t0, 1e-9)
            self.log({"kind": "interval", "step": self.step, "epoch": self.epoch + 1,
                      "loss": loss, "lr": self.sgd.lr, "images_per_s": rate})
        if self.interrupt:
            bar.close()
            raise Interrupted(self.save(), True, "training")
        if cfg["checkpoint_every"] and self.step % cfg["checkpoint_every"] == 0:
            self.save()

    def end_epoch(self, seconds, images):
        cfg = self.cfg
        last = self.epoch + 1 == int(cfg["epochs"])
        views = cfg["final_views"] if last else cfg["eval_views"]
        errors = evaluate(self.net, self.pipeline, views=views, batch=cfg["batch"],
                          world=self.world)
        lr = self.sgd.lr
        next_lr = self.schedule.step(errors["top1"])
        stop = bool(cfg.get("early_stop")) and self.schedule.spent and not last
        if stop:                        # the last epoch after all: its views are the final
            if views != cfg["final_views"]:
                views = cfg["final_views"]
                errors = evaluate(self.net, self.pipeline, views=views, batch=cfg["batch"],
                                  world=self.world)
            cfg["epochs"] = self.epoch + 1              # what a resume continues to
        train_loss = self.loss_sum / max(self.loss_count, 1)
        record = {"kind": "epoch", "epoch": self.epoch + 1, "step": self.step,
                  "train_loss": train_loss,
                  "val_top1_error": errors["top1"], "val_top5_error": errors["top5"],
                  "val_views": views, "lr": lr, "seconds": seconds,
                  "images_per_s": images / seconds if seconds > 0 else 0.0}
        if stop:
            record["early_stop"] = True
        self.history.append(record)
        self.log(record)
        self.sgd.lr = next_lr
        self.epoch += 1
        self.loss_sum = 0.0
        self.loss_count = 0
        self.say(f"epoch {record['epoch']}/{cfg['epochs']}: train loss {train_loss:.4f}, "
                 f"val top-1 error {100 * errors['top1']:.1f}%, top-5 error "
                 f"{100 * errors['top5']:.1f}% ({'10 crops' if views == 'ten' else 'centre crop'}),"
                 f" lr {record['lr']:g}, {seconds:.1f} s, {record['images_per_s']:.0f} img/s",
                 flush=True)
        if stop:
            self.say(f"stopped early after epoch {record['epoch']}: the validation error "
                     f"stopped improving after {self.schedule.reductions} reductions of the "
                     "learning rate (--early-stop)", flush=True)
        state = self.state()               # one copy of the network to the host per epoch
        self.save(state)
        self.plots(state["model"][self.net.key("conv1", "weight")])

    def plots(self, conv1):
        if not self.world.is_root:
            return
        if self.history:
            plot_curves(self.history, self.run_dir / "curves.png")
        plot_conv1(conv1, self.net.columns, self.run_dir / "conv1_filters.png")


def _no_batches():
    """An epoch whose batches were all trained before the checkpoint (a generator, so
    ``contextlib.closing`` can close it like the loader's)."""
    yield from ()


def _nest(flat):
    """{"a/b": v} -> {"a": {"b": v}} (HDF5 names cannot hold '/')."""
    out = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _flatten(tree, prefix=""):
    """The inverse of ``_nest``."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value
    return out


def _merge_resumed(saved, cfg, given):
    """The saved configuration with the allowed overrides; UsageError for the rest."""
    merged = dict(saved)
    for key, value in given.items():
        old = saved.get(key)
        if key in RESUME_OVERRIDABLE:
            merged[key] = value
        elif _norm(value) != _norm(old):
            may = ", ".join("--" + k.replace("_", "-") for k in RESUME_SCHEDULE)
            raise UsageError(f"--{key.replace('_', '-')} {value!r} differs from the "
                             f"checkpoint's {old!r}; a resumed run keeps its settings "
                             f"(it may change {may}, --epochs and how it runs)")
    for key in ("out", "quiet", "device"):      # always this invocation's
        merged[key] = cfg[key]
    return merged


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _resumed(cfg, given):
    """``(cfg, path, tree)`` of the run to resume in ``cfg["out"]``: its newest valid
    checkpoint and its configuration with the flags allowed to change; ``tree`` None (and
    ``cfg`` as given) when the folder holds no checkpoint yet."""
    path, tree = checkpoint.latest_valid(
        cfg["out"], warn=lambda m: print(m, file=sys.stderr, flush=True))
    if tree is None:
        if checkpoint.list_checkpoints(cfg["out"]):
            raise UsageError(f"no valid checkpoint in {cfg['out']} (all are corrupt)")
        print(f"note: no checkpoint in {cfg['out']}; starting a new run", file=sys.stderr)
        return cfg, None, None
    if "arch" in given and given["arch"] != tree.get("arch"):
        raise UsageError(f"checkpoint {path} is for arch {tree.get('arch')!r}, "
                         f"not {given['arch']!r}")
    return _merge_resumed(tree["config"], cfg, given), path, tree


def _check_same_data(tree, pipeline, allow_other):
    """A resumed run reads the data set it trained on, unless told otherwise."""
    was = tree.get("inputs", {}).get("build_id")
    now = pipeline.meta.build_id
    if was is None or was == now or allow_other:
        return
    raise UsageError(f"{pipeline.train_path} is another build of the data (build {now}) "
                     f"than the one this run trained on (build {was}); pass "
                     "--allow-other-data to continue on it")


def _resume_command(run_path, lr):
    return f"python -m refnet.train --out {shlex.quote(str(run_path))} --resume --lr {lr:g}"


def _restart_command(argv, lr):
    """``argv`` with ``--lr`` replaced by ``lr``: the command to start over."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--lr":
            skip = True
        elif not arg.startswith("--lr="):
            out.append(arg)
    return "python -m refnet.train " + shlex.join(out + ["--lr", f"{lr:g}"])


def run(argv=None, stdout=print, world=None):
    world = Solo() if world is None else world
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    cfg, given = resolve(args)
    if not world.is_root:
        cfg["quiet"] = True                  # rank 0 alone shows progress (module doc)
    explicit = "out" in given
    if explicit and Path(cfg["out"]).exists() and not Path(cfg["out"]).is_dir():
        raise UsageError(f"--out {cfg['out']} is a file, not a run folder")
    if args.allow_other_data and not args.resume:
        raise UsageError("--allow-other-data goes with --resume")
    path, tree = None, None
    if args.resume:
        if not explicit:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        cfg, path, tree = _resumed(cfg, given)
        if not world.is_root:
            cfg["quiet"] = True
    elif explicit and checkpoint.list_checkpoints(cfg["out"]):
        raise UsageError(f"{cfg['out']} already holds checkpoints; add --resume to continue "
                         "it or choose another --out")
    try:
        cfg["backend"] = backend_for_device(cfg["device"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    # rank 0 first: it may build the demo set or a folder's store into the cache
    cfg["data"] = _on_every_rank(world, lambda: ensure_data(cfg, quiet=cfg["quiet"],
                                                            say=stdout), root_first=True)
    cores = share_cores(world) if world.size > 1 and cfg["backend"] == "numpy" else None
    # everything is checked before the run folder is made: a refused start leaves nothing
    with _on_every_rank(world, lambda: _trainer(cfg, stdout, world)) as trainer:
        changes = {}
        if tree is None:
            trainer.fresh_start()
        else:
            _check_same_data(tree, trainer.pipeline, args.allow_other_data)
            trainer.restore(tree)
            changes = trainer.reschedule(tree["config"], given)
        folder, lock = _claim_run_dir(world, cfg, explicit, tree)
        try:
            cfg["out"], trainer.run_dir = str(folder), folder
            if world.is_root:
                remove_stale_temporaries(folder)
            if tree is not None:
                if world.is_root:
                    run_dir.trim_log(folder, trainer.step)
                trainer.log({"kind": "resume", "step": trainer.step, "epoch": trainer.epoch,
                             "checkpoint": path.name, "changes": changes})
                if not cfg["quiet"]:
                    stdout(f"resuming from {path} (step {tree['step']}, epoch "
                           f"{tree['epoch']})" + "".join(f"; {k} {a!r} -> {b!r}"
                                                         for k, (a, b) in changes.items()))
            if world.size > 1:
                _announce_world(trainer, cores, stdout)
            _train_with_sigint(trainer, argv)
        finally:
            if lock is not None:
                lock.release()
    if not cfg["quiet"]:
        last = trainer.history[-1] if trainer.history else None
        if last:
            stdout(f"done: val top-1 error {100 * last['val_top1_error']:.1f}% "
                   f"(accuracy {100 * (1 - last['val_top1_error']):.1f}%), top-5 error "
                   f"{100 * last['val_top5_error']:.1f}% after {last['epoch']} epochs")
        newest = trainer.last_checkpoint()
        stdout(f"outputs in {folder}/: log.jsonl, curves.png, conv1_filters.png, "
               f"{newest.name if newest else 'no checkpoint'}")
    return trainer


def _trainer(cfg, stdout, world):
    trainer = Trainer(cfg, out=stdout, world=world)
    if world.size > 1 and trainer.net.xp is not numpy:
        try:
            world.use_nccl(trainer.net.devices[0])
        except BaseException:
            trainer.close()
            raise
    return trainer


class StartFailed(UsageError):
    """A data-parallel job could not start on some rank; raised on every rank alike."""


def _on_every_rank(world, make, root_first=False):
    """``make()`` on every rank (rank 0 before the others when ``root_first``); if it
    fails on any rank, every rank raises ``StartFailed`` with the failing ranks' own
    messages, so no rank goes on to wait for the others. A world of one just calls it."""
    if world.size == 1:
        return make()

    def attempt():
        try:
            return make(), None
        except (UsageError, DataError, StoreError, checkpoint.CheckpointError,
                DistributedError) as e:
            return None, str(e)
        except Exception as e:  # noqa: BLE001 - reported by every rank, below
            return None, f"unexpected {type(e).__name__}: {e}"

    made, error = None, None
    if root_first:
        if world.is_root:
            made, error = attempt()
        first = world.bcast(error)
        if first is not None:
            raise StartFailed(f"rank 0 ({world.host}): {first}")
    if not (root_first and world.is_root):
        made, error = attempt()
    failures = [f for f in world.allgather([world.rank, world.host, error]) if f[2]]
    if failures:
        if made is not None and hasattr(made, "close"):
            made.close()
        raise StartFailed("; ".join(f"rank {r} ({host}): {e}" for r, host, e in failures))
    return made


def _claim_run_dir(world, cfg, explicit, tree):
    """``(folder, lock)``: rank 0 claims the run folder (``refnet.run_dir``) and tells
    the others its name (their lock is None)."""
    folder, lock, error = None, None, None
    if world.is_root:
        try:
            folder, lock, created = run_dir.claim(
                cfg["out"] or run_dir.default_name(cfg["arch"]), unique=not explicit)
        except run_dir.RunDirBusy as e:
            error = str(e)
        else:
            if tree is None and checkpoint.list_checkpoints(folder):     # made meanwhile
                lock.release()
                if created:
                    run_dir.remove_if_empty(folder)
                error = (f"{folder} already holds checkpoints; add --resume to continue "
                         "it or choose another --out")
    answer = world.bcast({"folder": None if folder is None else str(folder),
                          "error": error})
    if answer["error"]:
        raise UsageError(answer["error"])
    return Path(answer["folder"]), lock


def _announce_world(trainer, cores, stdout):
    """Rank 0 says (and logs) which process is which rank: mpiexec names a lost rank by
    its process id."""
    ranks = trainer.world.describe()
    slices = [len(part) for part in numpy.array_split(numpy.arange(trainer.pipeline.batch),
                                                      trainer.world.size)]
    trainer.log({"kind": "world", "step": trainer.step, "ranks": ranks,
                 "batch_slices": slices, "cores_per_rank": cores})
    if not trainer.cfg["quiet"]:
        where = ", ".join(f"rank {d['rank']} pid {d['pid']} on {d['host']}" for d in ranks)
        what = f"{cores} core(s) each" if cores else f"GPUs, columns on {trainer.net.devices}"
        stdout(f"data parallel over {trainer.world.size} ranks ({what}): {where}; global "
               f"batch {trainer.pipeline.batch} = {' + '.join(map(str, slices))}",
               flush=True)


def _train_with_sigint(trainer, argv):
    """``trainer.train()`` with Ctrl-C handled as the module doc says; a divergence is
    re-raised with the command that continues at a tenth of the learning rate."""
    def on_sigint(signum, frame):
        if trainer.phase != "train" or trainer.interrupt:  # evaluating, saving, or again
            raise KeyboardInterrupt
        trainer.interrupt = True
        print("\ninterrupt: finishing this step and writing a checkpoint "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.train()      # a non-finite loss is caught and reported by the loop
    except KeyboardInterrupt:
        phase = {"epoch-end": "evaluating", "save": "writing a checkpoint"}.get(
            trainer.phase, trainer.phase)
        raise Interrupted(trainer.last_checkpoint(), False, phase) from None
    except Diverged as e:
        lower = trainer.sgd.lr / 10
        good = trainer.last_checkpoint()
        if good is not None:
            advice = (f"The last good checkpoint, {good.name}, is left as it was; continue "
                      f"from it at a tenth of the learning rate: "
                      f"{_resume_command(trainer.run_dir, lower)}")
        else:
            advice = (f"No checkpoint had been written yet; start again at a tenth of the "
                      f"learning rate: {_restart_command(argv, lower)}")
        raise Diverged(f"{e}: the run diverged at lr {trainer.sgd.lr:g}. {advice}") from None
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv=None, world=None):
    """Run and map the outcome to an exit status (module doc). In a data-parallel job
    the failures every rank reaches together (a refused start, divergence, an agreed
    interrupt, replicas that differ) end each rank with the same status, rank 0 saying
    why; anything that strikes one rank alone aborts the whole job (``MPI_Abort``) after
    that rank says what and where, so no rank is left waiting in a collective."""
    if world is None:
        try:
            world = current_world()
        except DistributedError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if world.is_root else (
        lambda msg: None)
    alone = world.size > 1                     # a failure of this rank only: abort all
    try:
        run(argv, world=world)
    except Interrupted as e:
        say(f"{PROG}: {e.message()}")
        return 130
    except Diverged as e:
        say(f"{PROG}: error: {e}")
        return 1
    except (UsageError, DistributedError) as e:     # the same on every rank
        say(f"{PROG}: error: {e}")
        return 2
    except (DataError, StoreError, checkpoint.CheckpointError) as e:
        if alone:                                  # reading or writing on this rank
            return _abort_job(world, 2, f"{PROG}: error: {e}")
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        message = (f"{PROG}: interrupted; files written before stay as they were "
                   "(checkpoints are replaced atomically)")
        if alone:
            return _abort_job(world, 130, message)
        print(message, file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug or the machine: say so, then exit
        traceback.print_exc()
        message = (f"{PROG}: error: unexpected {type(e).__name__}: {e} (the traceback above "
                   "is for a bug report; checkpoints already written are intact)")
        if alone:
            return _abort_job(world, 3, message)
        print(message, file=sys.stderr)
        return 3
    return 0


def _abort_job(world, code, message):
    """One rank failed on its own: say so, naming the rank, and end every rank."""
    print(f"{message} [rank {world.rank} of {world.size}, pid {os.getpid()} on "
          f"{world.host}; ending the job]", file=sys.stderr, flush=True)
    world.abort(code)
    return code


if __name__ == "__main__":
    from data.cli import run_command
    sys.exit(run_command(main, PROG))
