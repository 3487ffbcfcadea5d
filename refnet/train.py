"""``python -m refnet.train``: the paper's training loop, with exact resume.

    python -m refnet.train                       # demo: build the demo set once, train, report
    python -m refnet.train --data OUT_DIR --arch alexnet --batch 128 --lr 0.01 --epochs 90
    python -m refnet.train --out RUN_DIR --resume --epochs 30

One step: a batch of uint8 images from the loader -> random crops, flips and PCA lighting
(``refnet.inputs``) -> ``net.loss_and_grad`` (dropout on its own generator) -> the loss is
checked to be finite -> ``SGD.step``. At the end of every epoch: validation top-1/top-5
error, the learning-rate schedule, one line of summary, a record in ``log.jsonl``, a
checkpoint, and the plots.

Determinism (what makes a killed-and-resumed run bit-identical on the CPU): every random
draw comes from one of three seeded ``numpy.random.Generator`` (init from ``seed``;
augmentation and dropout from ``[seed, 1]`` and ``[seed, 2]``; the shuffle order of epoch
e from ``(seed, e)`` inside the loader), and the checkpoint holds the generator states,
the loader position, the parameters, the velocities, the schedule and the running sums of
the current epoch. Nothing depends on the clock or on thread timing.

Outputs in RUN_DIR: ``log.jsonl``, ``ckpt-<step>.h5`` (the last ``--keep``),
``curves.png``, ``conv1_filters.png``.

Exit status: 0 done; 1 the loss became NaN/Inf; 2 a usage or data error (one line on
stderr); 130 interrupted (a checkpoint was written first).
"""

import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy

from data.progress import Progress
from refnet import checkpoint
from refnet.config import RESUME_OVERRIDABLE, UsageError, build_parser, resolve
from refnet.evaluate import evaluate
from refnet.network import build_network
from refnet.options import NetOptions, backend_for_device
from refnet.plots import plot_conv1, plot_curves
from refnet.schedule import ReduceOnPlateau, StepSchedule
from refnet.sgd import SGD
from refnet.train_inputs import DataError, InputPipeline, ensure_data


def network_options(cfg, num_classes):
    """The ``NetOptions`` a training configuration describes (its ablation switches
    included); ``UsageError`` for a value the options refuse."""
    try:
        return NetOptions.from_config(cfg, num_classes=num_classes)
    except ValueError as e:
        raise UsageError(str(e)) from None


def build_optimizer(cfg, net):
    return SGD(net, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
               weight_decay=float(cfg["weight_decay"]), form=cfg["sgd_form"])


def build_schedule(cfg):
    if cfg["lr_schedule"] == "step":
        return StepSchedule(lr=float(cfg["lr"]), milestones=cfg["milestones"])
    return ReduceOnPlateau(lr=float(cfg["lr"]), patience=int(cfg["patience"]))


class Diverged(RuntimeError):
    """The loss became NaN or Inf."""


class Interrupted(Exception):
    """SIGINT received; raised between steps after the checkpoint is written."""


class Trainer:
    """The state of one run and the loop over it."""

    def __init__(self, cfg, out=print, err=None):
        self.cfg = cfg
        self.say = out if not cfg["quiet"] else (lambda *a, **k: None)
        self.err = err or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.run_dir = Path(cfg["out"])
        self.pipeline = InputPipeline(cfg)
        self.net = build_network(network_options(cfg, self.pipeline.num_classes))
        self.sgd = build_optimizer(cfg, self.net)
        self.schedule = build_schedule(cfg)
        seed = int(cfg["seed"])
        self.rng_augment = numpy.random.default_rng([seed, 1])
        self.rng_dropout = numpy.random.default_rng([seed, 2])
        self.step = 0
        self.epoch = 0            # completed epochs
        self.loss_sum = 0.0       # over the current epoch
        self.loss_count = 0
        self.history = []
        self.interrupt = False

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
            "rng": {"augment": self.rng_augment.bit_generator.state,
                    "dropout": self.rng_dropout.bit_generator.state},
            "history": self.history,
            "inputs": self.pipeline.record(),
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
        self.schedule.load_state_dict(tree["schedule"])
        self.sgd.lr = float(tree["lr"])
        self.rng_augment.bit_generator.state = tree["rng"]["augment"]
        self.rng_dropout.bit_generator.state = tree["rng"]["dropout"]
        self.step = int(tree["step"])
        self.epoch = int(tree["epoch"])
        self.pipeline.loader.seek(*tree["loader"])
        self.loss_sum = float(tree["loss_sum"])
        self.loss_count = int(tree["loss_count"])
        self.history = list(tree["history"])

    def save(self, state=None):
        state = self.state() if state is None else state
        bad = [k for k, v in state["model"].items() if not numpy.all(numpy.isfinite(v))]
        if bad:
            raise Diverged(f"parameters {bad[:3]} became NaN/Inf by step {self.step} "
                           f"(epoch {self.epoch + 1}); the run diverged. Try a lower --lr "
                           f"(now {self.sgd.lr:g}). {self._last_good()}")
        path = checkpoint.save(checkpoint.checkpoint_path(self.run_dir, self.step), state)
        checkpoint.prune(self.run_dir, self.cfg["keep"])
        return path

    def _last_good(self):
        found = checkpoint.list_checkpoints(self.run_dir)
        if not found:
            return "No checkpoint had been written yet."
        return f"The last good checkpoint, {found[-1][1]}, is left as it was."

    # -- logging -------------------------------------------------------------------
    def log(self, record):
        with open(self.run_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- the loop --------------------------------------------------------------------
    def train(self):
        cfg = self.cfg
        epochs = int(cfg["epochs"])
        while self.epoch < epochs:
            t0 = time.perf_counter()
            images = 0
            bar = Progress(total=self.pipeline.train_count,
                           desc=f"epoch {self.epoch + 1}/{epochs}", unit="img",
                           enabled=not cfg["quiet"])
            # a checkpoint written after the last batch of an epoch but before its end
            # (evaluation, schedule) has the loader already in the next epoch
            in_epoch = self.pipeline.loader.position[0] == self.epoch
            bar.count = self.pipeline.loader.position[1] if in_epoch else 0
            batches = self.pipeline.train_batches() if in_epoch else ()
            for images_u8, labels in batches:
                x = self.pipeline.train_views(images_u8, self.rng_augment)
                y = self.pipeline.labels(labels)
                loss, grads = self.net.loss_and_grad_columns(x, y, train=True,
                                                             rng=self.rng_dropout)
                loss = float(loss)
                if not math.isfinite(loss):
                    raise Diverged(
                        f"loss is {loss} at step {self.step + 1} (epoch {self.epoch + 1}); "
                        f"the run diverged. Try a lower --lr (now {self.sgd.lr:g}). "
                        f"{self._last_good()}")
                self.sgd.step(grads)
                self.step += 1
                self.loss_sum += loss
                self.loss_count += 1
                images += len(labels)
                bar.update(len(labels), loss=loss, lr=self.sgd.lr)
                if self.step % cfg["log_every"] == 0:
                    rate = images / max(time.perf_counter() - t0, 1e-9)
                    self.log({"kind": "interval", "step": self.step, "epoch": self.epoch + 1,
                              "loss": loss, "lr": self.sgd.lr, "images_per_s": rate})
                if self.interrupt:
                    bar.close()
                    path = self.save()
                    raise Interrupted(path)
                if cfg["checkpoint_every"] and self.step % cfg["checkpoint_every"] == 0:
                    self.save()
            bar.close()
            self.end_epoch(time.perf_counter() - t0, images)
        return self.history

    def end_epoch(self, seconds, images):
        cfg = self.cfg
        last = self.epoch + 1 == int(cfg["epochs"])
        views = cfg["final_views"] if last else cfg["eval_views"]
        errors = evaluate(self.net, self.pipeline, views=views, batch=cfg["batch"])
        train_loss = self.loss_sum / max(self.loss_count, 1)
        record = {"kind": "epoch", "epoch": self.epoch + 1, "step": self.step,
                  "train_loss": train_loss,
                  "val_top1_error": errors["top1"], "val_top5_error": errors["top5"],
                  "val_views": views, "lr": self.sgd.lr, "seconds": seconds,
                  "images_per_s": images / seconds if seconds > 0 else 0.0}
        self.history.append(record)
        self.log(record)
        self.sgd.lr = self.schedule.step(errors["top1"])
        self.epoch += 1
        self.loss_sum = 0.0
        self.loss_count = 0
        self.say(f"epoch {record['epoch']}/{cfg['epochs']}: train loss {train_loss:.4f}, "
                 f"val top-1 error {100 * errors['top1']:.1f}%, top-5 error "
                 f"{100 * errors['top5']:.1f}% ({'10 crops' if views == 'ten' else 'centre crop'}),"
                 f" lr {record['lr']:g}, {seconds:.1f} s, {record['images_per_s']:.0f} img/s",
                 flush=True)
        state = self.state()               # one copy of the network to the host per epoch
        self.save(state)
        self.plots(state["model"]["conv1.weight"])

    def plots(self, conv1):
        if self.history:
            plot_curves(self.history, self.run_dir / "curves.png")
        plot_conv1(conv1, self.cfg["columns"], self.run_dir / "conv1_filters.png")


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
            raise UsageError(f"--{key.replace('_', '-')} {value!r} differs from the "
                             f"checkpoint's {old!r}; a resumed run keeps its settings")
    for key in ("out", "quiet", "device"):      # always this invocation's
        merged[key] = cfg[key]
    return merged


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def run(argv, stdout=print):
    args = build_parser().parse_args(argv)
    cfg, given = resolve(args)
    run_dir = Path(cfg["out"])
    tree = None
    if args.resume:
        if "out" not in given:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        path, tree = checkpoint.latest_valid(
            run_dir, warn=lambda m: print(m, file=sys.stderr, flush=True))
        if tree is None:
            if checkpoint.list_checkpoints(run_dir):
                raise UsageError(f"no valid checkpoint in {run_dir} (all are corrupt)")
            print(f"note: no checkpoint in {run_dir}; starting a new run", file=sys.stderr)
        else:
            if "arch" in given and given["arch"] != tree.get("arch"):
                raise UsageError(f"checkpoint {path} is for arch {tree.get('arch')!r}, "
                                 f"not {given['arch']!r}")
            cfg = _merge_resumed(tree["config"], cfg, given)
            if not cfg["quiet"]:
                stdout(f"resuming from {path} (step {tree['step']}, epoch {tree['epoch']})")
    elif checkpoint.list_checkpoints(run_dir):
        raise UsageError(f"{run_dir} already holds checkpoints; add --resume to continue "
                         "it or choose another --out")
    try:
        cfg["backend"] = backend_for_device(cfg["device"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    cfg["data"] = ensure_data(cfg, quiet=cfg["quiet"])
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, out=stdout)
    if tree is None:
        trainer.fresh_start()
    else:
        trainer.restore(tree)

    def on_sigint(signum, frame):
        if trainer.interrupt:          # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        trainer.interrupt = True
        print("\ninterrupt: finishing this step and writing a checkpoint "
              "(Ctrl-C again to abort)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.train()      # a non-finite loss is caught and reported by the loop
    finally:
        signal.signal(signal.SIGINT, previous)
    if not cfg["quiet"]:
        last = trainer.history[-1] if trainer.history else None
        if last:
            stdout(f"done: val top-1 error {100 * last['val_top1_error']:.1f}% "
                   f"(accuracy {100 * (1 - last['val_top1_error']):.1f}%), top-5 error "
                   f"{100 * last['val_top5_error']:.1f}% after {last['epoch']} epochs")
        newest = checkpoint.list_checkpoints(run_dir)
        stdout(f"outputs in {run_dir}/: log.jsonl, curves.png, conv1_filters.png, "
               f"{newest[-1][1].name if newest else 'no checkpoint'}")
    return trainer


def main(argv=None):
    prog = "refnet.train"
    try:
        run(argv)
    except Interrupted as e:
        print(f"{prog}: interrupted; checkpoint written to {e.args[0]}; continue with "
              f"--resume --out {Path(e.args[0]).parent}", file=sys.stderr)
        return 130
    except Diverged as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except (UsageError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: aborted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    from refnet.cpu import tune_malloc
    tune_malloc()                   # keep freed buffers mapped (refnet.cpu)
    sys.exit(main())
