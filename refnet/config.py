"""Training configuration: one frozen ``TrainConfig``, its defaults in one table, and the
command line that fills it.

    cfg = TrainConfig(arch="tiny", data="DIR", dtype="float64")   # validated once
    cfg.replace(lr=0.001); TrainConfig.from_dict(cfg.to_dict()) == cfg
    cfg, given = resolve(build_parser().parse_args(argv))        # python -m refnet.train

Every default is written once. ``COMMON_DEFAULTS`` holds the training settings every
arch shares; ``TRAIN_DEFAULTS[arch]`` only what an arch does differently; the network's
options (LRN, pooling, dropout, columns, convolution algorithm, ...) default to the
``refnet.options.NetOptions`` field defaults, and where those depend on the arch
(``columns``, ``lrn``, ``dropout_mode``, ``dropout_placement``: None there) to the arch's.
``--help`` writes each default from these tables:

- ``alexnet``: the paper: N(0, 0.01) init with biases 1 ("paper"), inputs on the 0-255
  scale minus the mean image, batch 128, lr 0.01, 90 epochs, lr / 10 on plateau.
- ``demo``: the paper's recipe (crops, flips, PCA lighting, dropout, momentum 0.9,
  weight decay 5e-4) but He init and inputs divided by the per-channel pixel std, because
  the paper's init stays at chance at this size (docs/paper.md, "At demo scale"), and
  dropout 0.25. Batch 32, lr 0.015, 5 epochs with lr / 10 after epoch 4: the default run
  ends near 97-100% 10-crop val top-1 in about 22 s on 2 cores, demo build included
  (docs/performance.md, "The demo's defaults").
- ``small``: the demo's recipe and widths for small images (24x24 crops of 28x28 images,
  ``refnet.arch``); the arch a --data of your own gets when its images are small. Batch
  64 and lr 0.03 (the demo's rate per image): at 24x24 a step's fixed cost (Python, the
  columns' threads, small GEMMs) is a large share, and a step of 64 images costs about
  0.6x the CPU time per image of one of 32. Dropout 0.25: on 5,000 28x28 digits, seeds
  0 and 1, its 10-crop error is 2.6-2.8% in 24-25 epochs, 0.5's 2.4-3.5%
  (docs/training.md, "Your own images").
- ``tiny``: for tests: a few steps on very small images.
- ``zfnet``, ``zfnet-wide``: Zeiler & Fergus: batch 128, lr 0.01, 70 epochs, one column.
- ``owt``: torchvision's AlexNet with torchvision's ImageNet recipe (its
  references/classification README and train.py: 8 GPUs x 32 images, lr 0.01, 90 epochs,
  lr / 10 every 30, momentum 0.9, weight decay 1e-4, PyTorch's SGD form), inputs divided
  by the pixel std; the arch's own defaults: one column, no LRN, inverted dropout before
  fc6 and fc7. PyTorch's layer defaults as the init ("pytorch").

Precedence in ``resolve``: ``COMMON_DEFAULTS`` < ``TRAIN_DEFAULTS[arch]`` <
``OWN_DATA_DEFAULTS`` (an arch of ``OWN_DATA_ARCHS`` on a ``--data`` of the user's own) <
the ``--conventions`` preset (``refnet.conventions``) < the flags given. Without
``--arch``, a folder of images of the user's own gets the arch of ``OWN_DATA_ARCHS`` whose
stored side is nearest its images' median shorter side (``own_data_arch``).

``parallel`` (``--parallel``): how the ranks of an ``mpiexec`` job share the work, "data"
or "hybrid" (``refnet.distributed``); one process trains the same model either way, and
a resumed run may change it (and the number of ranks).

A resumed run takes its configuration from the checkpoint; only the fields in
``TrainConfig.RESUME_OVERRIDABLE`` may differ on the command line (anything else that
differs is an error, because it would break the bit-exact continuation).
"""

import argparse
import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, cast

from refnet import conventions
from refnet.arch import ARCHS, check_columns
from refnet.data.cli import (
    Parser,
    UserError,
    fraction,
    nonnegative_int,
    nonnegative_number,
    positive_int,
    positive_number,
)
from refnet.data.sources import VAL_FRACTION
from refnet.init import SCHEMES
from refnet.options import CHOICES, CONV_CACHE_ALIASES, DEVICES, NetOptions
from refnet.sgd import FORMS

# the network options a training run sets (NetOptions fields); their defaults are
# NetOptions'; arch, dtype, backend and devices are set by the run
NET_FIELDS = (
    "columns",
    "lrn",
    "lrn_mode",
    "lrn_size",
    "lrn_alpha",
    "lrn_beta",
    "lrn_k",
    "pool",
    "pool_rounding",
    "dropout",
    "dropout_mode",
    "dropout_placement",
    "conv_algo",
    "conv_cache",
    "engine",
    "head",
)
_NET_DEFAULTS = {f.name: f.default for f in dataclasses.fields(NetOptions)}

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
    "milestones": (),
    "checkpoint_every": 0,
    "keep": 3,
    "log_every": 10,
    "eval_views": "center",
    "eval_batch": 128,
    "final_views": "ten",
    "lighting": 0.1,
    "val_fraction": VAL_FRACTION,
    "size": None,  # the stored side: None, the arch's (ArchSpec.store_size)
    "early_stop": False,
    "stop_patience": "auto",
    "quiet": False,
    "parallel": "data",
    **{name: _NET_DEFAULTS[name] for name in NET_FIELDS},
}

TRAIN_DEFAULTS = {
    "alexnet": {
        "init": "paper",
        "input_scale": "none",
        "batch": 128,
        "lr": 0.01,
        "epochs": 90,
        "checkpoint_every": 1000,
    },
    "demo": {
        "init": "he",
        "input_scale": "pixel_std",
        "batch": 32,
        "lr": 0.015,
        "dropout": 0.25,
        "epochs": 5,
        "lr_schedule": "step",
        "milestones": (4,),
    },
    "small": {
        "init": "he",
        "input_scale": "pixel_std",
        "batch": 64,
        "lr": 0.03,
        "dropout": 0.25,
        "epochs": 10,
        "lr_schedule": "step",
        "milestones": (8,),
    },
    "tiny": {"init": "he", "input_scale": "pixel_std", "batch": 8, "lr": 0.01, "epochs": 2},
    "zfnet": {
        "init": "paper",
        "input_scale": "none",
        "batch": 128,
        "lr": 0.01,
        "epochs": 70,
        "checkpoint_every": 1000,
    },
    "zfnet-wide": {
        "init": "paper",
        "input_scale": "none",
        "batch": 128,
        "lr": 0.01,
        "epochs": 70,
        "checkpoint_every": 1000,
    },
    "owt": {
        "init": "pytorch",
        "input_scale": "pixel_std",
        "batch": 256,
        "lr": 0.01,
        "epochs": 90,
        "lr_schedule": "step",
        "milestones": (30, 60),
        "weight_decay": 1e-4,
        "sgd_form": "pytorch",
        "checkpoint_every": 1000,
    },
}

# A data set of the user's own (``--data`` given with an arch of OWN_DATA_ARCHS): the
# demo's recipe, tuned on the synthetic shapes, would stop too early or run too long
# elsewhere, so the run's length adapts to the data: the paper's divide-by-10 on plateau,
# and the run stops (``early_stop``) when the validation error has not improved for
# ``stop_patience`` epochs (or is 0), keeping the best checkpoint (best.h5). "auto" is
# resolved once the images per epoch are known (``TrainConfig.resolved``): the stop
# patience is AUTO_STOP_EPOCHS epochs or AUTO_STOP_IMAGES images, whichever is longer;
# the plateau patience is half of it, so the rate is divided once before the run gives
# up, and not before the ~200 steps of 32 images the demo net needs to leave chance; the
# run takes at most AUTO_MAX_STEPS steps. Flags given on the command line win.
OWN_DATA_DEFAULTS = {
    "lr_schedule": "plateau",
    "patience": "auto",
    "milestones": (),
    "epochs": "auto",
    "early_stop": True,
    "stop_patience": "auto",
}
AUTO_STOP_EPOCHS = 4  # its half, the plateau's, is 2 epochs
AUTO_STOP_IMAGES = 12_800  # its half, the plateau's, is 200 steps of 32 images
AUTO_MAX_STEPS = 6000
# the archs a folder of one's own images may get, by the side of its images (own_data_arch)
OWN_DATA_ARCHS = ("small", "demo")


def own_data_arch(side: float) -> str:
    """The arch of ``OWN_DATA_ARCHS`` for images whose typical shorter side is ``side``
    pixels: the one whose stored side is nearest on a log scale (the fewest pixels made
    up or thrown away: ``small``, 28, up to sqrt(28 * 80) ~ 47 pixels, ``demo`` above)."""
    return min(OWN_DATA_ARCHS, key=lambda a: abs(math.log(ARCHS[a].store_size / max(side, 1))))


EXIT_CODES = {
    0: "done",
    1: "the run diverged (the loss or a parameter became NaN/Inf): the message names the "
    "step and gives the command that resumes from the last good checkpoint",
    2: "a usage or data error: one line naming the offending value",
    3: "an unexpected failure (a bug, or the machine): the traceback, then one line",
    130: "interrupted (Ctrl-C): during training the step is finished and a checkpoint "
    "written first; during evaluation or a checkpoint write it stops at once",
}


# how the ranks of an mpiexec job share the work (refnet.distributed, docs/distributed.md)
PARALLEL = ("data", "hybrid")


class UsageError(UserError):
    """A wrong command line or unusable input: reported as one line, exit status 2."""


_CHOICES = {
    "device": DEVICES,
    "sgd_form": FORMS,
    "lr_schedule": ("plateau", "step"),
    "eval_views": ("center", "ten"),
    "parallel": PARALLEL,
    "final_views": ("center", "ten"),
    "init": SCHEMES,
    "input_scale": ("none", "pixel_std"),
    "backend": CHOICES["backend"],
    "arch": CHOICES["arch"],
    "dtype": CHOICES["dtype"],
    "conventions": CHOICES["conventions"],
}


# "auto": a patience or epoch count ``TrainConfig.resolved`` sets from the data's size
Auto = Literal["auto"]
# the default of a field that ``TrainConfig.__post_init__`` always sets (from the tables or
# ``NetOptions``): None, so that a field left unset takes the tables' value; typed Any so
# that the field carries the type it holds once constructed
_TABLE: Any = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (module doc). Validated on construction:
    ``ValueError`` naming the setting and the value. ``backend`` is None until the run
    picks it from ``device``; ``patience`` and ``epochs`` may be "auto" until
    ``resolved``. A field left None takes its default from the tables (module doc); the
    network fields (``NET_FIELDS``) whose default is None there take the arch's."""

    arch: str = str(COMMON_DEFAULTS["arch"])
    data: str | None = None
    out: str | None = None
    device: str = _TABLE
    backend: str | None = None
    dtype: str = _TABLE
    seed: int = _TABLE
    init: str = _TABLE
    input_scale: str = _TABLE
    batch: int = _TABLE
    lr: float = _TABLE
    epochs: int | Auto = _TABLE
    momentum: float = _TABLE
    weight_decay: float = _TABLE
    sgd_form: str = _TABLE
    lr_schedule: str = _TABLE
    patience: int | Auto = _TABLE
    milestones: tuple[int, ...] = _TABLE
    early_stop: bool = _TABLE
    lighting: float = _TABLE
    val_fraction: float = _TABLE
    size: int | None = None
    stop_patience: int | Auto = _TABLE
    checkpoint_every: int = _TABLE
    keep: int = _TABLE
    log_every: int = _TABLE
    eval_views: str = _TABLE
    eval_batch: int = _TABLE
    final_views: str = _TABLE
    quiet: bool = _TABLE
    parallel: str = _TABLE
    conventions: str | None = None
    columns: int = _TABLE
    lrn: bool = _TABLE
    lrn_mode: str = _TABLE
    lrn_size: int = _TABLE
    lrn_alpha: float = _TABLE
    lrn_beta: float = _TABLE
    lrn_k: float = _TABLE
    pool: tuple[int, int] = _TABLE
    pool_rounding: str = _TABLE
    dropout: float = _TABLE
    dropout_mode: str = _TABLE
    dropout_placement: str = _TABLE
    conv_algo: str = _TABLE
    conv_cache: str = _TABLE
    engine: str = _TABLE
    head: str = _TABLE

    # fields a resumed run may change: they do not alter the arithmetic, or (the learning
    # rate and its schedule) change it from the resumed step on, as asked
    RESUME_OVERRIDABLE: ClassVar[tuple] = (
        "epochs",
        "data",
        "out",
        "quiet",
        "checkpoint_every",
        "keep",
        "log_every",
        "eval_batch",
        "device",
        "final_views",
        "backend",
        "conv_cache",
        "engine",
        "parallel",
        "lr",
        "lr_schedule",
        "patience",
        "milestones",
        "stop_patience",
    )
    RESUME_SCHEDULE: ClassVar[tuple] = ("lr", "lr_schedule", "patience", "milestones")

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        _choose("arch", self.arch)
        table = {**COMMON_DEFAULTS, **TRAIN_DEFAULTS[self.arch]}
        for f in dataclasses.fields(self):  # None: the tables' default
            if getattr(self, f.name) is None and f.name in table:
                put(f.name, table[f.name])
        for name in (
            "device",
            "dtype",
            "sgd_form",
            "lr_schedule",
            "eval_views",
            "final_views",
            "init",
            "input_scale",
            "parallel",
        ):
            _choose(name, getattr(self, name))
        for name in ("backend", "conventions"):
            if getattr(self, name) is not None:
                _choose(name, getattr(self, name))
        for name in ("data", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a path (str) or None, got {value!r}")
        put("seed", _integer("seed", self.seed, 0))
        put("batch", _integer("batch", self.batch, 1))
        put("checkpoint_every", _integer("checkpoint_every", self.checkpoint_every, 0))
        put("keep", _integer("keep", self.keep, 1))
        put("log_every", _integer("log_every", self.log_every, 1))
        put("eval_batch", _integer("eval_batch", self.eval_batch, 1))
        if self.epochs != "auto":
            put("epochs", _integer("epochs", self.epochs, 1))
        if self.patience != "auto":
            put("patience", _integer("patience", self.patience, 0))
        if self.stop_patience != "auto":
            put("stop_patience", _integer("stop_patience", self.stop_patience, 1))
        if self.size is not None:
            crop = ARCHS[self.arch].input_size
            if _integer("size", self.size, 1) < crop:
                raise ValueError(
                    f"size {self.size} is smaller than arch {self.arch}'s {crop}x{crop} crops"
                )
            put("size", int(self.size))
        put("lr", _real("lr", self.lr, 0, strict=True))
        for name in ("momentum", "weight_decay", "lighting"):
            put(name, _real(name, getattr(self, name), 0, strict=False))
        put("val_fraction", _real("val_fraction", self.val_fraction, 0, strict=False))
        if not self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        for name in ("early_stop", "quiet"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        put("milestones", _milestone_tuple(self.milestones))
        self._check_network(put)
        if self.parallel == "hybrid" and self.head != "fc":
            raise ValueError(
                f"parallel hybrid splits fc6-fc8 over the ranks; head {self.head!r} has no "
                "fc layers (use --parallel data)"
            )

    def _check_network(self, put: Callable[[str, Any], None]) -> None:
        """The network fields, validated and completed by ``NetOptions`` (the arch's
        defaults for those left None); a pooling or column count the arch cannot take is
        named with the value as written on the command line."""
        spec = ARCHS[self.arch]
        if isinstance(self.pool, (tuple, list)) and len(self.pool) == 2:
            try:
                spec.sizes((self.pool[0], self.pool[1]), self.pool_rounding)
            except ValueError as e:
                raise ValueError(f"pool {','.join(map(str, self.pool))}: {e}") from None
        if self.columns is not None:
            try:
                check_columns(spec, self.columns)
            except ValueError as e:
                raise ValueError(f"columns {self.columns}: {e}") from None
        fields = {name: getattr(self, name) for name in NET_FIELDS}
        opts = NetOptions(arch=self.arch, dtype=self.dtype, backend="numpy", **fields)
        for name in NET_FIELDS:
            put(name, getattr(opts, name))

    # -- forms ---------------------------------------------------------------------
    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (tuples as lists): what a checkpoint stores."""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **changes: Any) -> "TrainConfig":
        """A configuration from ``to_dict()``'s form (unknown keys refused; missing keys
        take their defaults), with ``changes``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**{**d, **changes})

    def resolved(self, steps_per_epoch: int) -> "TrainConfig":
        """ "auto" patiences and epochs (``OWN_DATA_DEFAULTS``) as numbers for a data set
        of ``steps_per_epoch`` steps of ``batch`` images per epoch:

            stop_patience = max(AUTO_STOP_EPOCHS, ceil(AUTO_STOP_IMAGES / images per epoch))
            patience      = stop_patience // 2    (the rate is divided at the next bad epoch)
            epochs        = ceil(AUTO_MAX_STEPS / steps_per_epoch)"""
        images = steps_per_epoch * self.batch
        if isinstance(self.stop_patience, int):
            stop = self.stop_patience
        else:  # "auto"
            stop = max(AUTO_STOP_EPOCHS, math.ceil(AUTO_STOP_IMAGES / images))
        changes = {"stop_patience": stop}
        if self.patience == "auto":
            changes["patience"] = stop // 2
        if self.epochs == "auto":
            changes["epochs"] = max(1, math.ceil(AUTO_MAX_STEPS / steps_per_epoch))
        changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        return self.replace(**changes) if changes else self

    @property
    def store_size(self) -> int:
        """The side of the stored images: ``size``, or the arch's."""
        return ARCHS[self.arch].store_size if self.size is None else self.size

    def resumed(self, given: Mapping[str, Any], **invocation: Any) -> "TrainConfig":
        """This (a checkpoint's) configuration with the settings ``given`` on the command
        line that ``RESUME_OVERRIDABLE`` allows and this invocation's ``invocation``
        (out, quiet, device); ``UsageError`` naming a given setting that may not change."""
        for key, value in given.items():
            old = getattr(self, key, None)
            if key not in self.RESUME_OVERRIDABLE and _norm(value) != _norm(old):
                may = ", ".join("--" + k.replace("_", "-") for k in self.RESUME_SCHEDULE)
                raise UsageError(
                    f"--{key.replace('_', '-')} {value!r} differs from the "
                    f"checkpoint's {old!r}; a resumed run keeps its settings "
                    f"(it may change {may}, --epochs and how it runs)"
                )
        allowed = {k: v for k, v in given.items() if k in self.RESUME_OVERRIDABLE}
        return self.replace(**{**allowed, **invocation})

    def __getitem__(self, name: str) -> Any:
        """``cfg["lr"]``: the dict form's spelling of ``cfg.lr``, for scripts."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        """``cfg.get("lr")``: the dict form's spelling, for scripts."""
        return getattr(self, name, default)


# kept for scripts that read them from here
RESUME_OVERRIDABLE = TrainConfig.RESUME_OVERRIDABLE
RESUME_SCHEDULE = TrainConfig.RESUME_SCHEDULE


def _choose(name: str, value: object) -> None:
    choices = _CHOICES[name]
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def _integer(name: str, value: object, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or int(cast(float, value)) != value  # a numbers.Real: int() takes it
        or value < minimum
    ):
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
    return int(cast(float, value))


def _real(name: str, value: object, low: float, strict: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or (value <= low if strict else value < low)
    ):
        raise ValueError(
            f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}"
        )
    return float(value)


def _milestone_tuple(value: Iterable[Any] | None) -> tuple[int, ...]:
    ms = tuple(value or ())
    if any(isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1 for m in ms) or list(
        ms
    ) != sorted(set(ms)):
        raise ValueError(f"milestones must be increasing positive epochs, got {value!r}")
    return tuple(int(m) for m in ms)


def _norm(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v


# --------------------------------------------------------------------------- command line


def _pool(text: str) -> tuple[int, int]:
    try:
        z, s = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes WINDOW,STRIDE such as 3,2; got {text!r}") from None
    if z < 1 or s < 1:
        raise argparse.ArgumentTypeError(f"values must be positive, got {text!r}")
    return (z, s)


def _milestones(text: str) -> tuple[int, ...]:
    try:
        ms = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes epochs such as 30,60; got {text!r}") from None
    if any(m < 1 for m in ms) or list(ms) != sorted(set(ms)):
        raise argparse.ArgumentTypeError(f"must be increasing positive epochs, got {text!r}")
    return ms


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def arch_default(arch: str, key: str) -> object:
    """The default of setting ``key`` for ``arch``: the arch's table, else the arch's
    network options, else the common table."""
    if key in TRAIN_DEFAULTS[arch]:
        return TRAIN_DEFAULTS[arch][key]
    if key in NET_FIELDS and COMMON_DEFAULTS[key] is None:
        return getattr(NetOptions(arch=arch), key)
    return COMMON_DEFAULTS[key]


def default_text(key: str) -> str:
    """ "default X", or "default per arch: demo X, alexnet Y, ..." when archs differ: the
    help texts' statement of a default, from the tables."""
    values = {arch: arch_default(arch, key) for arch in TRAIN_DEFAULTS}
    if len({_show(v) for v in values.values()}) == 1:
        return f"default {_show(values[str(COMMON_DEFAULTS['arch'])])}"
    return "default per arch: " + ", ".join(f"{a} {_show(v)}" for a, v in values.items())


def build_parser() -> Parser:
    """The command line; each help text states its default once, from the tables
    (``None`` here means "not given": ``resolve`` fills it)."""
    p = Parser(
        prog="python -m refnet.train",
        description="Train AlexNet (or the scaled demo network) with the paper's recipe. "
        "With no arguments: build the demo data set once (cached) and train "
        "the demo network on it.",
        exit_codes=EXIT_CODES,
        argument_default=None,
    )
    a = p.add_argument
    d = default_text
    a(
        "--data",
        metavar="DIR",
        help="a folder of images (DIR/<class>/... or "
        "DIR/train/<class>/... and DIR/val/<class>/...: its store is built at the arch's "
        "size into the cache once), or a data set directory with train.h5 and val.h5 (from "
        "python -m refnet.data.build); default: the demo set, built on first use. A folder "
        f"of your own gets the arch of {', '.join(OWN_DATA_ARCHS)} whose stored side is "
        "nearest its images' (unless --arch), and trains until the validation error has not "
        f"improved for {AUTO_STOP_EPOCHS} epochs or {AUTO_STOP_IMAGES} images, whichever is "
        f"longer (lr / 10 halfway; at most {AUTO_MAX_STEPS} steps), keeping the best "
        "checkpoint as best.h5",
    )
    a(
        "--val-fraction",
        dest="val_fraction",
        type=fraction,
        help="share of each class held out for validation when the image folder has no "
        f"val/ split ({d('val_fraction')})",
    )
    a(
        "--size",
        type=positive_int,
        help="side of the stored images, for a folder of images (default: the arch's; at "
        "least its crop)",
    )
    a(
        "--early-stop",
        dest="early_stop",
        action="store_true",
        default=None,
        help="stop when the validation error has not improved for --stop-patience epochs, "
        "or once the plateau schedule's reductions are spent and it no longer improves, "
        "and keep the best checkpoint as best.h5 (default: on for a --data of your own)",
    )
    a(
        "--stop-patience",
        dest="stop_patience",
        type=positive_int,
        help="--early-stop: epochs without a lower validation error before the run ends "
        f"(default: {AUTO_STOP_EPOCHS} epochs or {AUTO_STOP_IMAGES} images, whichever is "
        "longer)",
    )
    a("--arch", choices=CHOICES["arch"], help=f"network size ({d('arch')})")
    a("--batch", type=positive_int, help=f"images per SGD step ({d('batch')})")
    a(
        "--lr",
        type=positive_number,
        help=f"learning rate ({d('lr')}); with --resume: the rate from the resumed step on "
        "(the change is logged)",
    )
    a(
        "--epochs",
        type=positive_int,
        help=f"total epochs; a resumed run continues until it ({d('epochs')})",
    )
    a(
        "--device",
        choices=DEVICES,
        help="cpu: NumPy; gpu: CuPy, columns on devices 0 and 1 when there are two; "
        f"auto: gpu when CuPy sees a device ({d('device')})",
    )
    a("--dtype", choices=CHOICES["dtype"], help=f"compute dtype ({d('dtype')})")
    a(
        "--seed",
        type=nonnegative_int,
        help=f"seed of the init, shuffling, augmentation and dropout ({d('seed')})",
    )
    a(
        "--out",
        metavar="RUN_DIR",
        help="run directory (default runs/<arch>-<time>, made "
        "unique); one run at a time may use it",
    )
    a(
        "--resume",
        action="store_true",
        default=False,
        help="continue from the newest valid checkpoint in RUN_DIR (--out)",
    )
    a(
        "--allow-other-data",
        dest="allow_other_data",
        action="store_true",
        default=False,
        help="with --resume: continue on a data set of another build than the run's "
        "(refused otherwise)",
    )
    a("--init", choices=SCHEMES, help=f"weight init ({d('init')}; with --conventions the preset's)")
    a(
        "--input-scale",
        dest="input_scale",
        choices=_CHOICES["input_scale"],
        help="after subtracting the mean image, divide by the per-channel pixel std or not "
        f"({d('input_scale')})",
    )
    a("--momentum", type=nonnegative_number, help=f"SGD momentum ({d('momentum')})")
    a(
        "--weight-decay",
        dest="weight_decay",
        type=nonnegative_number,
        help=f"weight decay ({d('weight_decay')})",
    )
    a(
        "--sgd-form",
        dest="sgd_form",
        choices=FORMS,
        help="momentum update: the paper's v = mu v - eps wd w - eps g, or PyTorch's "
        f"({d('sgd_form')})",
    )
    a(
        "--lr-schedule",
        dest="lr_schedule",
        choices=_CHOICES["lr_schedule"],
        help="plateau: lr / 10 when val error stops improving (paper); step: at "
        f"--milestones ({d('lr_schedule')})",
    )
    a(
        "--patience",
        type=nonnegative_int,
        help=f"plateau: epochs without improvement allowed ({d('patience')})",
    )
    a(
        "--milestones",
        type=_milestones,
        help=f"step: epochs at which lr is divided by 10, e.g. 30,60 ({d('milestones')})",
    )
    a(
        "--no-lrn",
        dest="lrn",
        action="store_false",
        default=None,
        help=f"ablation: no local response normalization (LRN {d('lrn')})",
    )
    a(
        "--lrn-mode",
        dest="lrn_mode",
        choices=CHOICES["lrn_mode"],
        help="column: each column normalizes its own maps (the authors); all: Caffe's LRN "
        f"over all channels ({d('lrn_mode')})",
    )
    a(
        "--pool",
        type=_pool,
        help=f"max pooling WINDOW,STRIDE: 3,2 (paper) or 2,2 (ablation) ({d('pool')})",
    )
    a(
        "--pool-rounding",
        dest="pool_rounding",
        choices=CHOICES["pool_rounding"],
        help="pooled size rounded down (floor: PyTorch's) or up (ceil: Caffe's and "
        "cuda-convnet's, the last window clipped); equal on alexnet's sizes "
        f"({d('pool_rounding')})",
    )
    a(
        "--dropout",
        type=fraction,
        help=f"dropout probability, in [0, 1); 0 disables ({d('dropout')})",
    )
    a(
        "--dropout-mode",
        dest="dropout_mode",
        choices=CHOICES["dropout_mode"],
        help="paper: no scaling in training, x(1-p) at test; inverted: PyTorch's "
        f"({d('dropout_mode')})",
    )
    a(
        "--dropout-placement",
        dest="dropout_placement",
        choices=CHOICES["dropout_placement"],
        help="after: on fc6's and fc7's outputs, the paper's; before: on fc6's and fc7's "
        f"inputs, torchvision's ({d('dropout_placement')})",
    )
    a(
        "--head",
        choices=CHOICES["head"],
        help="fc: the paper's fc6-fc8; gap: a 1x1 "
        "convolution from conv5's maps to the classes, averaged over positions (no fc "
        f"layers) ({d('head')})",
    )
    a(
        "--conventions",
        choices=CHOICES["conventions"],
        help="a named bundle of conventions applied over the arch's defaults: LRN's alpha "
        "scaling, k and channels, pooling rounding, dropout form and placement and the "
        "init scheme as the paper, the authors' cuda-convnet2, Caffe's bvlc_alexnet or "
        "torchvision (its owt arch) have them (docs/conventions.md); flags given win "
        "(default: none)",
    )
    a(
        "--columns",
        type=int,
        choices=CHOICES["columns"],
        help="1: one column (the paper's "
        "comparison; the zfnet and owt archs' only choice); 2: the paper's two columns "
        f"({d('columns')})",
    )
    a(
        "--conv-cache",
        dest="conv_cache",
        choices=CHOICES["conv_cache"],
        type=lambda v: CONV_CACHE_ALIASES.get(v, v),
        help="what each conv keeps for backward: unfolded (fastest: the im2col matrix or "
        "Winograd's tiles) or input (unfolds again in backward: less memory kept, a "
        f"slower step); 'columns' is the old spelling of unfolded ({d('conv_cache')})",
    )
    a(
        "--parallel",
        choices=PARALLEL,
        help="under mpiexec: data: every rank a whole replica and its slice of each batch, "
        "gradients summed; hybrid: the convolutions so, fc6-fc8 split over the ranks for "
        f"the whole batch (Krizhevsky 2014) ({d('parallel')})",
    )
    a(
        "--engine",
        choices=CHOICES["engine"],
        help="fast: workspace, blocking, Winograd, CHWN, column threads; plain: every "
        "layer's plain form in NCHW, one column after the other: the code a reader "
        f"follows; slower, the same numbers to round-off ({d('engine')})",
    )
    a(
        "--conv-algo",
        dest="conv_algo",
        choices=CHOICES["conv_algo"],
        help="winograd: conv2-5 by Winograd's F(m, r), 2-4x fewer multiplications; gemm: "
        f"im2col + GEMM everywhere (the reference rounding) ({d('conv_algo')})",
    )
    a(
        "--lighting",
        type=nonnegative_number,
        help=f"std of the PCA lighting coefficients (paper 0.1; 0 off) ({d('lighting')})",
    )
    a(
        "--checkpoint-every",
        dest="checkpoint_every",
        type=nonnegative_int,
        help="also write a checkpoint every N steps; 0: only at the end of each epoch "
        f"({d('checkpoint_every')})",
    )
    a("--keep", type=positive_int, help=f"number of checkpoints kept ({d('keep')})")
    a(
        "--log-every",
        dest="log_every",
        type=positive_int,
        help=f"steps between interval records in log.jsonl ({d('log_every')})",
    )
    a(
        "--eval-views",
        dest="eval_views",
        choices=_CHOICES["eval_views"],
        help=f"views for the per-epoch validation ({d('eval_views')})",
    )
    a(
        "--eval-batch",
        dest="eval_batch",
        type=positive_int,
        help="images per forward pass when validating: more than --batch is faster, as "
        f"nothing is kept for a backward pass ({d('eval_batch')})",
    )
    a(
        "--final-views",
        dest="final_views",
        choices=_CHOICES["final_views"],
        help=f"views for the validation after the last epoch, ten the paper's ({d('final_views')})",
    )
    a("--quiet", action="store_true", default=None, help="no progress bar or summaries")
    return p


def resolve_auto(cfg: "TrainConfig", steps_per_epoch: int) -> "TrainConfig":
    """``cfg.resolved(steps_per_epoch)``: "auto" patience and epochs as numbers."""
    return cfg.resolved(steps_per_epoch)


def resolve(
    args: argparse.Namespace, arch: str | None = None
) -> tuple["TrainConfig", dict[str, Any]]:
    """``(cfg, given)``: the ``TrainConfig`` of the parsed ``args`` over the defaults
    (module doc), and the settings given on the command line; ``arch``: the arch picked
    for the data when no --arch was given (``own_data_arch``). ``UsageError`` for a
    combination no flag's parser can judge alone (a pooling the arch's maps cannot take).
    ``cfg.out`` is None when no --out was given (``refnet.run_dir`` names the folder)."""
    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k not in ("resume", "allow_other_data")
    }
    preset = {}
    if "conventions" in given:
        try:
            preset = conventions.settings(given["conventions"], arch_given="arch" in given)
        except ValueError as e:
            raise UsageError(f"--conventions {given['conventions']}: {e}") from None
    arch = given.get("arch", preset.get("arch", arch or str(COMMON_DEFAULTS["arch"])))
    values: dict[str, Any] = {"arch": arch}
    if arch in OWN_DATA_ARCHS and "data" in given:
        values.update(OWN_DATA_DEFAULTS)
    values.update(preset)  # the named conventions over the arch's defaults
    values.update(given)
    if (
        given.get("milestones") == ()
        and values.get("lr_schedule", arch_default(arch, "lr_schedule")) == "step"
    ):
        raise UsageError("--milestones is empty")
    try:
        return TrainConfig(**values), given
    except ValueError as e:
        raise UsageError(f"--{e}") from None
