"""Training configuration: per-architecture defaults in one table, and the command line.

``python -m refnet.train`` flags default to ``None``; ``resolve`` fills every flag the
user did not give from ``TRAIN_DEFAULTS[arch]`` and then from ``COMMON_DEFAULTS``. So the
table below is the single place where the demo and the paper's recipe differ:

- ``alexnet``: the paper: N(0, 0.01) init with biases 1 ("paper"), inputs on the 0-255
  scale minus the mean image, batch 128, lr 0.01, 90 epochs, lr / 10 on plateau.
- ``demo``: the paper's recipe (crops, flips, PCA lighting, dropout 0.5, momentum 0.9,
  weight decay 5e-4) but He init and inputs divided by the per-channel pixel std, because
  the paper's init stays at chance at this size (docs/paper.md, "At demo scale").
  Batch 32, lr 0.015, 10 epochs with lr / 10 after epoch 8: tuned so the default run
  ends well above 80% 10-crop val top-1 within minutes on 2 cores (the runs behind these
  choices are in docs/performance.md, "The demo's defaults").
- ``tiny``: for tests: a few steps on very small images.
- ``owt``: torchvision's AlexNet with torchvision's ImageNet recipe (its
  references/classification README and train.py: 8 GPUs x 32 images, lr 0.01, 90 epochs,
  lr / 10 every 30, momentum 0.9, weight decay 1e-4, PyTorch's SGD form), inputs divided
  by the pixel std as torchvision normalises them; one column, no LRN, inverted dropout.
  PyTorch's layer defaults as the init ("pytorch": uniform in +-1/sqrt(fan_in)).

``--conventions NAME`` (``refnet.conventions``: paper, cuda-convnet2, caffe, torchvision)
applies a named bundle over the arch's defaults: LRN's alpha, k and channels, pooling
rounding, dropout form, the init scheme (and torchvision's arch); flags given still win.

A resumed run takes its configuration from the checkpoint; only the flags in
``RESUME_OVERRIDABLE`` may differ on the command line (anything else that differs is an
error, because it would break the bit-exact continuation).
"""

import argparse
import math

from data.cli import (Parser, fraction, nonnegative_int, nonnegative_number, positive_int,
                      positive_number)
from refnet import conventions
from refnet.arch import ARCHS, check_columns
from refnet.init import SCHEMES
from refnet.options import CHOICES, CONV_CACHE_ALIASES, DEVICES
from refnet.sgd import FORMS

COMMON_DEFAULTS = {
    "arch": "demo",
    "data": None,
    "device": "auto",
    "dtype": "float32",
    "seed": 0,
    "out": None,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "sgd_form": "paper",
    "lr_schedule": "plateau",
    "patience": 1,
    "milestones": None,
    "lrn": True,
    "lrn_mode": "column",
    "pool": (3, 2),
    "pool_rounding": "floor",
    "dropout": 0.5,
    "dropout_mode": "paper",
    "columns": 2,
    "head": "fc",
    "conv_cache": "unfolded",
    "engine": "fast",
    "conv_algo": "winograd",
    "checkpoint_every": 0,
    "keep": 3,
    "log_every": 10,
    "eval_views": "center",
    "final_views": "ten",
    "lighting": 0.1,
    "val_fraction": 0.1,
    "early_stop": False,
    "quiet": False,
}

# A data set of the user's own (``--data`` given with the demo arch): the demo's recipe,
# tuned on the synthetic shapes, would stop too early or run too long elsewhere, so the
# epochs adapt to the data set's size: the paper's divide-by-10 on plateau, and the run
# stops once the three reductions are spent and the error no longer improves
# (``early_stop``). "auto" is resolved once the number of steps per epoch is known
# (``resolve_auto``): a plateau must last AUTO_PLATEAU_STEPS steps (at least 2 epochs;
# the demo net needs ~200 steps to leave chance, so a small data set gets many epochs of
# patience), and the run takes at most AUTO_MAX_STEPS steps (at least 60 epochs).
# Flags given on the command line win.
OWN_DATA_DEFAULTS = {"lr_schedule": "plateau", "patience": "auto", "milestones": None,
                     "epochs": "auto", "early_stop": True}
AUTO_PLATEAU_STEPS = 400
AUTO_MAX_STEPS = 6000

TRAIN_DEFAULTS = {
    "alexnet": {"init": "paper", "input_scale": "none", "batch": 128, "lr": 0.01,
                "epochs": 90, "patience": 1, "checkpoint_every": 1000},
    "demo": {"init": "he", "input_scale": "pixel_std", "batch": 32, "lr": 0.015,
             "epochs": 10, "lr_schedule": "step", "milestones": (8,)},
    "tiny": {"init": "he", "input_scale": "pixel_std", "batch": 8, "lr": 0.01,
             "epochs": 2},
    # Zeiler & Fergus: batch 128, lr 0.01, 70 epochs, one GPU (one column)
    "zfnet": {"init": "paper", "input_scale": "none", "batch": 128, "lr": 0.01,
              "epochs": 70, "patience": 1, "checkpoint_every": 1000, "columns": 1},
    "zfnet-wide": {"init": "paper", "input_scale": "none", "batch": 128, "lr": 0.01,
                   "epochs": 70, "patience": 1, "checkpoint_every": 1000, "columns": 1},
    "owt": {"init": "pytorch", "input_scale": "pixel_std", "batch": 256, "lr": 0.01,
            "epochs": 90, "lr_schedule": "step", "milestones": (30, 60),
            "weight_decay": 1e-4, "sgd_form": "pytorch", "checkpoint_every": 1000,
            "columns": 1, "lrn": False, "dropout_mode": "inverted"},
}

# flags that may change when a run is resumed: they do not alter the arithmetic, or (the
# learning rate and its schedule) change it from the resumed step on, as asked
RESUME_OVERRIDABLE = ("epochs", "data", "out", "quiet", "checkpoint_every", "keep",
                      "log_every", "device", "final_views", "backend", "conv_cache", "engine",
                      "lr", "lr_schedule", "patience", "milestones")
RESUME_SCHEDULE = ("lr", "lr_schedule", "patience", "milestones")   # logged when changed

EXIT_CODES = {
    0: "done",
    1: "the run diverged (the loss or a parameter became NaN/Inf): the message names the "
       "step and gives the command that resumes from the last good checkpoint",
    2: "a usage or data error: one line naming the offending value",
    3: "an unexpected failure (a bug, or the machine): the traceback, then one line",
    130: "interrupted (Ctrl-C): during training the step is finished and a checkpoint "
         "written first; during evaluation or a checkpoint write it stops at once",
}


class UsageError(ValueError):
    """A wrong command line or unusable input: reported as one line, exit status 2."""


def _pool(text):
    try:
        z, s = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes WINDOW,STRIDE such as 3,2; got {text!r}") \
            from None
    if z < 1 or s < 1:
        raise argparse.ArgumentTypeError(f"values must be positive, got {text!r}")
    return (z, s)


def _milestones(text):
    try:
        ms = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes epochs such as 30,60; got {text!r}") from None
    if any(m < 1 for m in ms) or list(ms) != sorted(set(ms)):
        raise argparse.ArgumentTypeError(f"must be increasing positive epochs, got {text!r}")
    return ms


def _per_arch(key):
    """"demo 32, alexnet 128, tiny 8": a per-architecture default, for the help text."""
    values = {arch: TRAIN_DEFAULTS[arch].get(key, COMMON_DEFAULTS.get(key))
              for arch in TRAIN_DEFAULTS}
    show = lambda v: (",".join(map(str, v)) if isinstance(v, tuple)  # noqa: E731
                      else "none" if v is None else v)
    return ", ".join(f"{arch} {show(v)}" for arch, v in values.items())


def build_parser():
    """The command line; each help text states its default once (``None`` here means
    "not given": ``resolve`` fills it from the tables above)."""
    p = Parser(
        prog="python -m refnet.train",
        description="Train AlexNet (or the scaled demo network) with the paper's recipe. "
                    "With no arguments: build the demo data set once (cached) and train "
                    "the demo network on it.",
        exit_codes=EXIT_CODES, argument_default=None)
    a = p.add_argument
    a("--data", metavar="DIR", help="a folder of images (DIR/<class>/... or "
      "DIR/train/<class>/... and DIR/val/<class>/...: its store is built at the arch's "
      "size into the cache once), or a data set directory with train.h5 and val.h5 (from "
      "python -m data.build); default: the demo set, built on first use. With the demo "
      "arch, a --data of your own trains until the validation error stops improving: lr "
      f"/ 10 on plateaus of {AUTO_PLATEAU_STEPS} steps (at least 2 epochs), at most "
      f"{AUTO_MAX_STEPS} steps (at least 60 epochs)")
    a("--val-fraction", dest="val_fraction", type=fraction,
      help="share of each class held out for validation when the image folder has no "
           "val/ split (default 0.1)")
    a("--early-stop", dest="early_stop", action="store_true", default=None,
      help="stop once the plateau schedule's reductions are spent and the error no longer "
           "improves (default: on for a --data of your own with the demo arch)")
    a("--arch", choices=CHOICES["arch"], help="network size (default demo)")
    a("--batch", type=positive_int,
      help=f"images per SGD step (default per arch: {_per_arch('batch')})")
    a("--lr", type=positive_number,
      help=f"learning rate (default per arch: {_per_arch('lr')}); with --resume: the rate "
           "from the resumed step on (the change is logged)")
    a("--epochs", type=positive_int, help="total epochs; a resumed run continues until it "
      f"(default per arch: {_per_arch('epochs')})")
    a("--device", choices=DEVICES,
      help="cpu: NumPy; gpu: CuPy, columns on devices 0 and 1 when there are two; "
           "auto (default): gpu when CuPy sees a device")
    a("--dtype", choices=CHOICES["dtype"], help="compute dtype (default float32)")
    a("--seed", type=nonnegative_int, help="seed of the init, shuffling, augmentation and "
      "dropout (default 0)")
    a("--out", metavar="RUN_DIR", help="run directory (default runs/<arch>-<time>, made "
      "unique); one run at a time may use it")
    a("--resume", action="store_true", default=False,
      help="continue from the newest valid checkpoint in RUN_DIR (--out)")
    a("--allow-other-data", dest="allow_other_data", action="store_true", default=False,
      help="with --resume: continue on a data set of another build than the run's "
           "(refused otherwise)")
    a("--init", choices=SCHEMES, help=f"weight init (default per arch: {_per_arch('init')}; "
      "with --conventions the preset's)")
    a("--input-scale", dest="input_scale", choices=("none", "pixel_std"),
      help="after subtracting the mean image, divide by the per-channel pixel std or not "
           f"(default per arch: {_per_arch('input_scale')})")
    a("--momentum", type=nonnegative_number, help="SGD momentum (default 0.9)")
    a("--weight-decay", dest="weight_decay", type=nonnegative_number,
      help="weight decay (default 5e-4)")
    a("--sgd-form", dest="sgd_form", choices=FORMS,
      help="momentum update: the paper's v = mu v - eps wd w - eps g, or PyTorch's "
           "(default paper)")
    a("--lr-schedule", dest="lr_schedule", choices=("plateau", "step"),
      help="plateau: lr / 10 when val error stops improving (paper); step: at "
           f"--milestones (default per arch: {_per_arch('lr_schedule')})")
    a("--patience", type=nonnegative_int, help="plateau: epochs without improvement allowed "
      f"(default per arch: {_per_arch('patience')})")
    a("--milestones", type=_milestones, help="step: epochs at which lr is divided by 10, "
      f"e.g. 30,60 (default per arch: {_per_arch('milestones')})")
    a("--no-lrn", dest="lrn", action="store_false", default=None,
      help="ablation: no local response normalization (owt has none)")
    a("--lrn-mode", dest="lrn_mode", choices=CHOICES["lrn_mode"],
      help="column (default): each column normalizes its own maps (the authors); all: "
           "Caffe's LRN over all channels")
    a("--pool", type=_pool, help="max pooling WINDOW,STRIDE: 3,2 (paper, default) or 2,2 "
      "(ablation)")
    a("--pool-rounding", dest="pool_rounding", choices=CHOICES["pool_rounding"],
      help="pooled size rounded down (floor, default: PyTorch's) or up (ceil: Caffe's and "
           "cuda-convnet's, the last window clipped); equal on alexnet's sizes")
    a("--dropout", type=fraction, help="dropout probability, in [0, 1); 0 disables "
      "(default 0.5)")
    a("--dropout-mode", dest="dropout_mode", choices=CHOICES["dropout_mode"],
      help="paper (default but for owt): no scaling in training, x(1-p) at test; "
           "inverted: PyTorch's")
    a("--dropout-placement", dest="dropout_placement",
      choices=CHOICES["dropout_placement"],
      help="after (default but for owt): on fc6's and fc7's outputs, the paper's; before: "
           "on fc6's and fc7's inputs, torchvision's (the owt arch's default)")
    a("--head", choices=CHOICES["head"], help="fc (default): the paper's fc6-fc8; gap: a 1x1 "
      "convolution from conv5's maps to the classes, averaged over positions (no fc layers)")
    a("--conventions", choices=CHOICES["conventions"],
      help="a named bundle of conventions applied over the arch's defaults: LRN's alpha "
           "scaling, k and channels, pooling rounding, dropout form and placement and the "
           "init scheme as the paper, the authors' cuda-convnet2, Caffe's bvlc_alexnet or "
           "torchvision (its owt arch) have them (docs/conventions.md); flags given win "
           "(default: none)")
    a("--columns", type=int, choices=CHOICES["columns"], help="1: one column (the paper's "
      "comparison; the zfnet and owt archs' only choice and default); 2: the paper's two columns "
      "(default)")
    a("--conv-cache", dest="conv_cache", choices=CHOICES["conv_cache"],
      type=lambda v: CONV_CACHE_ALIASES.get(v, v),
      help="what each conv keeps for backward: unfolded (default, fastest: the im2col "
           "matrix or Winograd's tiles) or input (unfolds again in backward: less memory "
           "kept, a slower step); 'columns' is the old spelling of unfolded")
    a("--engine", choices=CHOICES["engine"],
      help="fast (default: workspace, blocking, Winograd, CHWN, column threads) or plain "
           "(every layer's plain form in NCHW, one column after the other: the code a "
           "reader follows; slower, the same numbers to round-off)")
    a("--conv-algo", dest="conv_algo", choices=CHOICES["conv_algo"],
      help="winograd (default): conv2-5 by Winograd's F(m, r), 2-4x fewer multiplications; "
           "gemm: im2col + GEMM everywhere (the reference rounding)")
    a("--lighting", type=nonnegative_number, help="std of the PCA lighting coefficients "
      "(paper and default 0.1; 0 off)")
    a("--checkpoint-every", dest="checkpoint_every", type=nonnegative_int,
      help="also write a checkpoint every N steps; 0: only at the end of each epoch "
           f"(default per arch: {_per_arch('checkpoint_every')})")
    a("--keep", type=positive_int, help="number of checkpoints kept (default 3)")
    a("--log-every", dest="log_every", type=positive_int,
      help="steps between interval records in log.jsonl (default 10)")
    a("--eval-views", dest="eval_views", choices=("center", "ten"),
      help="views for the per-epoch validation (default center)")
    a("--final-views", dest="final_views", choices=("center", "ten"),
      help="views for the validation after the last epoch (default ten, the paper's)")
    a("--quiet", action="store_true", default=None, help="no progress bar or summaries")
    return p


def resolve_auto(cfg, steps_per_epoch):
    """Replace "auto" patience and epochs (``OWN_DATA_DEFAULTS``) by numbers for a data
    set of ``steps_per_epoch`` steps per epoch, in place."""
    if cfg.get("patience") == "auto":
        cfg["patience"] = max(2, math.ceil(AUTO_PLATEAU_STEPS / steps_per_epoch))
    if cfg.get("epochs") == "auto":
        cfg["epochs"] = max(60, math.ceil(AUTO_MAX_STEPS / steps_per_epoch))
    return cfg


def resolve(args):
    """(cfg, given): a plain dict with every setting, from the parsed ``args`` and the
    defaults tables, and the settings given on the command line. ``UsageError`` for a
    combination no flag's parser can judge alone (a pooling the arch's maps cannot take).
    ``cfg["out"]`` is None when no --out was given (``refnet.run_dir`` names the folder)."""
    given = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("resume", "allow_other_data")}
    preset = {}
    if "conventions" in given:
        try:
            preset = conventions.settings(given["conventions"], arch_given="arch" in given)
        except ValueError as e:
            raise UsageError(f"--conventions {given['conventions']}: {e}") from None
    arch = given.get("arch", preset.get("arch", COMMON_DEFAULTS["arch"]))
    cfg = dict(COMMON_DEFAULTS)
    cfg.update(TRAIN_DEFAULTS[arch])
    if arch == "demo" and "data" in given:
        cfg.update(OWN_DATA_DEFAULTS)
    cfg.update(preset)                      # the named conventions over the arch's defaults
    cfg.update(given)
    cfg["pool"] = list(cfg["pool"])
    cfg["milestones"] = list(cfg["milestones"]) if cfg["milestones"] else []
    if cfg["lr_schedule"] == "step" and not cfg["milestones"] and "milestones" in given:
        raise UsageError("--milestones is empty")
    try:
        ARCHS[arch].sizes(tuple(cfg["pool"]), cfg["pool_rounding"])
    except ValueError as e:
        raise UsageError(f"--pool {','.join(map(str, cfg['pool']))}: {e}") from None
    try:
        check_columns(ARCHS[arch], cfg["columns"])
    except ValueError as e:
        raise UsageError(f"--columns {cfg['columns']}: {e}") from None
    return cfg, given
