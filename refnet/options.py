"""The network's options: one frozen dataclass, validated once, and the values each may take.

    opts = NetOptions(arch="demo", dtype="float32", conv_algo="gemm")
    net = build_network(opts)                    # refnet.network; AlexNet(**kwargs) too
    NetOptions.from_dict(opts.to_dict()) == opts # what a checkpoint stores
    NetOptions.preset("caffe", arch="demo")      # a named bundle, given fields winning

Every option of ``AlexNet`` is a field here; each option's allowed values are spelled
once, in ``CHOICES`` (the commands, the benchmark and ``verify`` take theirs from it).
Construction validates and raises ``ValueError`` (``TypeError`` for the dtype) naming the
option and the value, then normalises (dtype as its name, pool and devices as tuples of
ints, numbers as floats), so equal networks have equal options. None: the arch's default.

- ``arch`` (``refnet.arch.ARCHS`` name or ``ArchSpec``), ``dtype`` ("float32",
  "float64"), ``backend`` ("numpy", "cupy" or a namespace), ``devices`` (one per column),
  ``num_classes`` (fc8's width), ``columns`` (2 or 1; ``zfnet`` and ``owt`` take 1);
- ``lrn``, ``lrn_mode`` ("column" or "all"), ``lrn_size``, ``lrn_alpha``, ``lrn_beta``,
  ``lrn_k`` (n=5, alpha=1e-4 times the window sum, beta=0.75, k=2);
- ``pool`` ((window, stride): (3, 2) or (2, 2)), ``pool_rounding`` ("floor" or "ceil");
- ``dropout`` (p), ``dropout_mode`` ("paper": x(1 - p) at test; "inverted": 1/(1 - p) in
  training), ``dropout_placement`` ("after" fc6's and fc7's ReLU, or "before" fc6, fc7);
- ``conv_algo`` ("winograd" or "gemm"), ``conv_cache`` ("unfolded" or "input"; "columns"
  is read as "unfolded"), ``layout`` ("CHWN" or "NCHW", input to pool5), ``engine``
  ("fast" or "plain": NCHW, one column after the other, ignoring ``layout``,
  ``conv_algo`` and ``conv_cache``);
- ``head`` ("fc": fc6-fc8; "gap": a 1x1 convolution from conv5's ReLU, averaged over the
  positions, with nothing for ``dropout`` to act on).

docs/architecture.md ("Two engines, and what a layer kind is") explains each option;
``NetOptions.preset`` takes the names of ``CHOICES["conventions"]`` (``refnet.conventions``).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Collection, Mapping
from typing import Any

import numpy

from refnet import conventions
from refnet.arch import ARCHS, HEADS, ArchSpec, check_columns
from refnet.layers import backend as backends
from refnet.layers.conv import ALGOS as CONV_ALGOS
from refnet.layers.dropout import MODES as DROPOUT_MODES
from refnet.layers.layout import LAYOUTS
from refnet.layers.pool import ROUNDINGS

DTYPES = ("float32", "float64")
# old spellings of option values, still accepted (stored options, checkpoints, flags)
CONV_CACHE_ALIASES = {"columns": "unfolded"}
BACKENDS = ("numpy", "cupy")
DEVICES = ("cpu", "gpu", "auto")  # the command lines' --device, see backend_for_device

CHOICES = {
    "arch": tuple(ARCHS),
    "dtype": DTYPES,
    "backend": BACKENDS,
    "columns": (1, 2),
    "lrn_mode": ("column", "all"),
    "pool_rounding": ROUNDINGS,
    "dropout_mode": DROPOUT_MODES,
    "dropout_placement": ("after", "before"),
    "conv_algo": CONV_ALGOS,
    "conv_cache": ("unfolded", "input"),
    "engine": ("fast", "plain"),
    "layout": LAYOUTS,
    "head": HEADS,
    "conventions": conventions.NAMES,  # NetOptions.preset's names (not a field)
}


@dataclasses.dataclass(frozen=True)
class NetOptions:
    """Everything that decides what an ``AlexNet`` computes and where (module doc)."""

    arch: str | ArchSpec = "alexnet"
    dtype: str = "float32"
    backend: Any = "numpy"  # a name of BACKENDS, or an array namespace
    num_classes: int | None = None
    columns: Any = None  # None: the arch's most; an int after __post_init__
    lrn: Any = None  # None: the arch's; a bool after __post_init__
    lrn_mode: str = "column"
    lrn_size: int = 5
    lrn_alpha: float = 1e-4
    lrn_beta: float = 0.75
    lrn_k: float = 2.0
    pool: tuple[int, int] = (3, 2)
    pool_rounding: str = "floor"
    dropout: float = 0.5
    dropout_mode: Any = None  # None: the arch's; a str after __post_init__
    dropout_placement: Any = None  # likewise
    conv_algo: str = "winograd"
    conv_cache: str = "unfolded"
    layout: str = "CHWN"
    head: str = "fc"
    devices: tuple[int, ...] | None = None
    engine: str = "fast"

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if not isinstance(self.arch, ArchSpec):
            _choose("arch", self.arch)
        put("dtype", backends.as_dtype(self.dtype).name)
        if isinstance(self.backend, str):
            _choose("backend", self.backend)
        elif not _is_namespace(self.backend):
            raise ValueError(
                f"backend must be one of {BACKENDS} or an array namespace, got {self.backend!r}"
            )
        if self.num_classes is not None:
            put("num_classes", _integer("num_classes", self.num_classes, 1))
        if self.columns is None:
            put("columns", max(self.spec.columns))
        if isinstance(self.columns, bool) or self.columns not in CHOICES["columns"]:
            raise ValueError(f"columns must be 1 or 2, got {self.columns!r}")
        put("columns", int(self.columns))
        check_columns(self.spec, self.columns)
        for name in ("lrn", "dropout_mode", "dropout_placement"):  # None: the arch's
            if getattr(self, name) is None:
                put(name, getattr(self.spec, name))
        put("lrn", _flag("lrn", self.lrn))
        if self.conv_cache in CONV_CACHE_ALIASES:
            put("conv_cache", CONV_CACHE_ALIASES[self.conv_cache])
        for name in (
            "lrn_mode",
            "pool_rounding",
            "dropout_mode",
            "dropout_placement",
            "conv_algo",
            "conv_cache",
            "layout",
            "head",
            "engine",
        ):
            _choose(name, getattr(self, name))
        size = _integer("lrn_size", self.lrn_size, 1)
        if size % 2 == 0:
            raise ValueError(f"lrn_size must be a positive odd integer, got {self.lrn_size!r}")
        put("lrn_size", size)
        put("lrn_alpha", _real("lrn_alpha", self.lrn_alpha, 0.0, strict=False))
        put("lrn_beta", _real("lrn_beta", self.lrn_beta, 0.0, strict=False))
        put("lrn_k", _real("lrn_k", self.lrn_k, 0.0, strict=True))
        pool = tuple(self.pool) if isinstance(self.pool, (tuple, list)) else (self.pool,)
        if len(pool) != 2 or any(
            isinstance(v, bool) or not isinstance(v, numbers.Real) or int(v) != v or v < 1
            for v in pool
        ):
            raise ValueError(
                f"pool must be (window, stride) of positive integers, got {self.pool!r}"
            )
        put("pool", (int(pool[0]), int(pool[1])))
        p = _real("dropout", self.dropout, 0.0, strict=False)
        if not p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        put("dropout", p)
        if self.devices is not None:
            devices = tuple(self.devices)
            if len(devices) != self.columns or any(
                isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0 for d in devices
            ):
                raise ValueError(
                    f"devices: need one device per column ({self.columns}), "
                    f"each an index >= 0; got {self.devices!r}"
                )
            put("devices", tuple(int(d) for d in devices))

    @property
    def spec(self) -> ArchSpec:
        """The ``ArchSpec`` of ``arch``."""
        return self.arch if isinstance(self.arch, ArchSpec) else ARCHS[self.arch]

    @property
    def lrn_params(self) -> dict[str, Any]:
        """``layers.lrn.forward``'s hyperparameters: {size, alpha, beta, k}."""
        return dict(size=self.lrn_size, alpha=self.lrn_alpha, beta=self.lrn_beta, k=self.lrn_k)

    def kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments of ``AlexNet``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> NetOptions:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, for a checkpoint: arch by name, backend by name (a
        namespace object is stored as "numpy"), tuples as lists."""
        out = {}
        for name, value in self.kwargs().items():
            if name == "arch":
                value = self.spec.name
            elif name == "backend" and not isinstance(value, str):
                value = "numpy"
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **changes: Any) -> NetOptions:
        """Options from ``to_dict()``'s form (unknown keys refused), with ``changes``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown network options {unknown}")
        return cls(**{**d, **changes})

    @classmethod
    def preset(cls, name: str, **fields: Any) -> NetOptions:
        """The options of the named conventions (``refnet.conventions.CONVENTIONS``), with
        ``fields`` winning over the preset's values. ``ValueError`` names an unknown
        preset and the choices; a preset's ``"init"`` is ``net.init``'s, not a field
        (``refnet.conventions.init_scheme``)."""
        given = conventions.fields(name, arch_given="arch" in fields)
        return cls(**{**given, **fields})

    @classmethod
    def from_config(cls, cfg: Any, **changes: Any) -> NetOptions:
        """Options from a training configuration (a ``refnet.config.TrainConfig``, or its
        ``to_dict()`` form): the settings it shares with the fields, those None left to
        the arch; ``device`` gives the backend unless ``backend`` is set; with
        ``changes``."""
        if hasattr(cfg, "to_dict"):
            cfg = cfg.to_dict()
        known = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in cfg.items() if k in known and v is not None}
        given.setdefault("backend", backend_for_device(cfg.get("device", "cpu")))
        return cls(**{**given, **changes})


def backend_for_device(device: str) -> str:
    """ "numpy" or "cupy" for a command line's --device cpu|gpu|auto (auto: CuPy when it
    sees a GPU); ``ValueError`` for --device gpu without one."""
    _choose("device", device, DEVICES)
    if device == "cpu":
        return "numpy"
    if device == "gpu":
        if backends.gpu_count() == 0:
            raise ValueError("--device gpu: CuPy sees no CUDA device (use --device cpu)")
        return "cupy"
    return "cupy" if backends.gpu_count() > 0 else "numpy"


def _choose(name: str, value: Any, choices: Collection[Any] | None = None) -> Any:
    choices = CHOICES[name] if choices is None else choices
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _integer(name: str, value: Any, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or int(value) != value  # type: ignore[call-overload]  # a numbers.Real
        or value < minimum
    ):
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]  # a numbers.Real


def _real(name: str, value: Any, low: float, strict: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not numpy.isfinite(value)  # type: ignore[call-overload]  # a numbers.Real
        or (value <= low if strict else value < low)
    ):
        raise ValueError(
            f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}"
        )
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, numpy.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _is_namespace(obj: Any) -> bool:
    """NumPy, CuPy, or an object providing devices like them (a test backend)."""
    cupy = backends.cupy_module()
    return (
        obj is numpy
        or (cupy is not None and obj is cupy)
        or (hasattr(obj, "Device") and hasattr(obj, "to_device"))
    )
