"""Checkpoints: the whole training state in one HDF5 file, written atomically, checksummed.

    write_state(checkpoint_path(run_dir, step), TrainingState(...))
    state = read_state(path)                 # any version: migrated to the current schema
    path, state = latest_state(run_dir)      # the newest that loads and verifies

A checkpoint holds a ``TrainingState`` (below); this module alone knows how it is stored
and how an older file reads. ``format`` is ``"refnet-checkpoint-<VERSION>"``; the items
that early version-1 files lack are filled in on reading as the last column says:

    item          what                                                  if absent
    arch          the arch's name
    step, epoch   SGD steps taken, epochs completed
    loader        (epoch, batch) position of the training loader
    loss_sum, loss_count   the running sums of the current epoch
    lr            the learning rate of the next step
    config        the training configuration (``TrainConfig.to_dict``)  conv_algo "gemm"
    network       the ``NetOptions`` (``to_dict``)                      from ``config``,
                  the classes counted from fc8's (or the head's) bias
    model         the parameters, ``net.state_dict()``'s names
    optimizer     ``sgd.state_dict()``: "velocity/<name>" arrays
    schedule      the learning-rate schedule's ``state_dict``
    history       the epoch records so far
    inputs        the data set's preprocessing record                   None
    world_size    ranks of the data-parallel job that wrote it          1

A file of ``arch``, ``config``, ``network`` and ``model`` alone reads too (a network for the
commands, not a run to resume: the training items are None). A run directory holds
``ckpt-<step, 8 digits>.h5`` and, with early stop, ``best.h5`` (``best_path``, the same
schema). The tree's layout in HDF5 (no pickle), the SHA-256 checksum and the atomic write:
docs/architecture.md ("Checkpoint files").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy

from refnet.data.cli import UserError
from refnet.data.files import atomic_path
from refnet.layers import backend

PathLike = str | os.PathLike[str]
Tree = dict[str, Any]  # a checkpoint's items by name: nested dicts, lists, arrays, JSON values

VERSION = 1
FORMAT = f"refnet-checkpoint-{VERSION}"
_NAME = re.compile(r"^ckpt-(\d+)\.h5$")
BEST = "best.h5"


class CheckpointError(UserError):
    """A checkpoint that cannot be used: missing, truncated, corrupt or of another format."""


@dataclasses.dataclass
class TrainingState:
    """Everything a run needs to continue bit-exactly (the schema in the module doc).
    ``model`` and ``optimizer`` are flat ``{name: array}`` dicts, as ``state_dict``
    gives them. The training items are the values the file held (JSON-able, arrays; None
    in a file holding only a network): ``Any``."""

    arch: str
    config: dict
    network: dict
    model: dict
    step: Any = None
    epoch: Any = None
    loader: Any = None
    loss_sum: Any = None
    loss_count: Any = None
    lr: Any = None
    optimizer: Any = None
    schedule: Any = None
    history: Any = None
    inputs: Any = None
    world_size: int = 1
    version: int = VERSION


def write_state(path: PathLike, state: TrainingState) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path."""
    tree = {
        "format": FORMAT,
        "arch": state.arch,
        "step": state.step,
        "epoch": state.epoch,
        "loader": list(state.loader),
        "loss_sum": state.loss_sum,
        "loss_count": state.loss_count,
        "config": state.config,
        "network": state.network,
        "model": state.model,
        "lr": state.lr,
        "optimizer": _nest(state.optimizer),
        "schedule": state.schedule,
        "history": state.history,
        "inputs": state.inputs,
        "world_size": state.world_size,
    }
    return save(path, tree)


def read_state(path: PathLike) -> TrainingState:
    """The ``TrainingState`` stored at ``path`` (file or run folder: its best.h5 when it
    verifies, else its newest valid checkpoint), migrated to the current schema;
    ``CheckpointError`` if unusable."""
    if Path(path).is_dir():
        best = best_path(path)
        if best.is_file():
            try:
                return _migrate(load(best), best)
            except CheckpointError as e:
                print(f"warning: {e}; using the newest checkpoint", file=sys.stderr, flush=True)
        found, state = latest_state(path, warn=lambda m: print(m, file=sys.stderr, flush=True))
        if state is None:
            raise CheckpointError(f"no valid checkpoint in {path}")
        return state
    return _migrate(load(path), path)


def latest_state(
    run_dir: PathLike, warn: Callable[[str], object] = print
) -> tuple[Path, TrainingState] | tuple[None, None]:
    """``(path, state)`` of the newest checkpoint in ``run_dir`` that loads and verifies
    (``latest_valid``); ``(None, None)`` when there is none."""
    path, tree = latest_valid(run_dir, warn=warn)
    if path is None or tree is None:  # both None, or neither
        return None, None
    return path, _migrate(tree, path)


def _migrate(tree: Tree, path: PathLike) -> TrainingState:
    """A version-1 tree (of any age) as a ``TrainingState``; ``CheckpointError`` when
    items are missing or the parameters are not finite floating-point arrays."""
    try:
        config = dict(tree["config"])
        model = tree["model"]
        arch = tree["arch"]
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} lacks {e}") from None
    if not isinstance(model, dict):
        raise CheckpointError(f"checkpoint {path}: its model is not a group of parameters")
    from refnet.weights import WeightsError, check_tensors

    try:
        check_tensors(path, model)  # floating-point and finite, or refused with the dtype
    except WeightsError as e:
        raise CheckpointError(f"checkpoint {e}") from None
    config.setdefault("conv_algo", "gemm")  # the only algorithm before it was stored
    network = tree.get("network")
    if network is None:
        from refnet.options import NetOptions

        bias = model["fc8.bias"] if "fc8.bias" in model else model["head.bias"]
        try:
            network = NetOptions.from_config(
                config, num_classes=bias.shape[0], backend="numpy"
            ).to_dict()
        except ValueError as e:
            raise CheckpointError(f"checkpoint {path}: {e}") from None
    optimizer = tree.get("optimizer")
    return TrainingState(
        arch=arch,
        config=config,
        network=network,
        model=model,
        step=tree.get("step"),
        epoch=tree.get("epoch"),
        loader=tree.get("loader"),
        loss_sum=tree.get("loss_sum"),
        loss_count=tree.get("loss_count"),
        lr=tree.get("lr"),
        optimizer=None if optimizer is None else _flatten(optimizer),
        schedule=tree.get("schedule"),
        history=tree.get("history"),
        inputs=tree.get("inputs"),
        world_size=tree.get("world_size", 1),
    )


def _nest(flat: dict[str, Any]) -> Tree:
    """{"a/b": v} -> {"a": {"b": v}} (HDF5 names cannot hold '/')."""
    out: Tree = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _flatten(tree: Tree, prefix: str = "") -> dict[str, Any]:
    """The inverse of ``_nest``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value
    return out


# --------------------------------------------------------------------------- writing


def save(path: PathLike, tree: Tree) -> Path:
    """Write ``tree`` to ``path`` atomically (``data.files.atomic_path``).

    The HDF5 file is built in memory (HDF5's core driver, no backing store) and its
    image written to the temporary by plain file I/O, so HDF5 never touches the disk: a
    write that fails (a full disk) raises ``data.files.OutputError`` naming ``path`` and
    leaves no HDF5 file open to fail again at exit. The price is a second copy of the
    state in memory while it is written (about 0.5 GB for ``alexnet`` with momentum)."""
    path = Path(path)
    if not isinstance(tree, dict):
        raise TypeError(f"checkpoint.save: tree must be a dict, got {type(tree).__name__}")
    digests: dict[str, str] = {}
    with h5py.File(
        f"checkpoint-{id(tree)}.h5", "w", driver="core", backing_store=False, track_order=True
    ) as f:
        _write_group(f, "", tree, digests)
        f.attrs["sha256"] = _combine(digests)
        f.flush()
        image = f.id.get_file_image()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(image)
    return path


def _write_group(
    group: h5py.Group, prefix: str, obj: Tree | list[Any] | tuple[Any, ...], digests: dict[str, str]
) -> None:
    items: Iterable[tuple[Any, Any]]
    if isinstance(obj, dict):
        group.attrs["__kind__"] = "dict"
        items = obj.items()
    else:
        group.attrs["__kind__"] = "list"
        items = ((str(i), v) for i, v in enumerate(obj))
    for key, value in items:
        if not isinstance(key, str) or "/" in key or key.startswith("__") or key in (".", ""):
            raise ValueError(
                f"checkpoint.save: key {key!r} under '{prefix or '/'}' is not "
                "a valid name (str without '/', not starting with '__')"
            )
        here = f"{prefix}/{key}"
        if _is_array(value):
            arr = numpy.asarray(backend.asnumpy(value)).copy(order="C")
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"checkpoint.save: {here} has unsupported dtype {arr.dtype}")
            ds = group.create_dataset(key, data=arr)
            if isinstance(value, numpy.generic):
                ds.attrs["__scalar__"] = True
            digests[here] = _array_digest(arr)
        elif isinstance(value, dict) or (
            isinstance(value, (list, tuple)) and any(_needs_group(v) for v in value)
        ):
            _write_group(group.create_group(key, track_order=True), here, value, digests)
        else:
            try:
                text = json.dumps(value, allow_nan=True)
            except TypeError:
                raise TypeError(
                    f"checkpoint.save: {here} holds a {type(value).__name__}, "
                    "which is neither an array nor JSON"
                ) from None
            group.attrs[key] = text
            digests[here + "@"] = hashlib.sha256(text.encode()).hexdigest()


def _is_array(v: object) -> bool:
    return isinstance(v, (numpy.ndarray, numpy.generic)) or (
        hasattr(v, "shape") and hasattr(v, "dtype") and hasattr(v, "__array_namespace__")
    )


def _needs_group(v: object) -> bool:
    return (
        _is_array(v)
        or isinstance(v, dict)
        or (isinstance(v, (list, tuple)) and any(_needs_group(x) for x in v))
    )


def _array_digest(arr: numpy.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _combine(digests: dict[str, str]) -> str:
    lines = "".join(f"{k}\t{digests[k]}\n" for k in sorted(digests))
    return hashlib.sha256(lines.encode()).hexdigest()


# --------------------------------------------------------------------------- reading


def load(path: PathLike) -> Tree:
    """The tree stored at ``path``; ``CheckpointError`` if unreadable or failing its checksum."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            stored = f.attrs.get("sha256")
            digests: dict[str, str] = {}
            tree = _read_group(f, "", digests)
    except CheckpointError:
        raise
    except Exception as e:  # h5py raises OSError/KeyError/RuntimeError on damaged files
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupt: {type(e).__name__}: {e})"
        ) from None
    if stored is None:
        raise CheckpointError(f"checkpoint {path} has no checksum")
    if _combine(digests) != stored:
        raise CheckpointError(f"checkpoint {path} fails its SHA-256 checksum (corrupt)")
    if tree.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a refnet checkpoint "
            f"(format {tree.get('format')!r}, expected {FORMAT!r})"
        )
    return tree


def _read_group(group: h5py.Group, prefix: str, digests: dict[str, str]) -> Any:
    out: dict[str, Any] = {}
    for key, text in group.attrs.items():
        if key.startswith("__") or key == "sha256":
            continue
        text = text.decode() if isinstance(text, bytes) else str(text)
        digests[f"{prefix}/{key}@"] = hashlib.sha256(text.encode()).hexdigest()
        out[key] = json.loads(text)
    for key, item in group.items():
        here = f"{prefix}/{key}"
        if isinstance(item, h5py.Group):
            out[key] = _read_group(item, here, digests)
        else:
            arr = numpy.asarray(item[()])  # tobytes() is C order whatever the layout
            digests[here] = _array_digest(arr)
            out[key] = arr[()] if item.attrs.get("__scalar__", False) else arr
    if group.attrs.get("__kind__") == "list":
        return [out[str(i)] for i in range(len(out))]
    return out


# --------------------------------------------------------------------------- run directories


def checkpoint_path(run_dir: PathLike, step: int) -> Path:
    """``RUN_DIR/ckpt-<step>.h5`` with the step zero-padded to 8 digits."""
    return Path(run_dir) / f"ckpt-{int(step):08d}.h5"


def best_path(run_dir: PathLike) -> Path:
    """``RUN_DIR/best.h5``: the run's best epoch (early stop)."""
    return Path(run_dir) / BEST


def list_checkpoints(run_dir: PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of the checkpoint files in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_valid(
    run_dir: PathLike, warn: Callable[[str], object] = print
) -> tuple[Path, Tree] | tuple[None, None]:
    """``(path, tree)`` of the newest checkpoint in ``run_dir`` that loads and verifies.

    Each newer file that fails is reported through ``warn`` (one line naming it and the
    reason). Returns ``(None, None)`` when the directory holds no usable checkpoint.
    """
    for _step, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load(path)
        except CheckpointError as e:
            warn(f"warning: {e}; using the previous checkpoint")
    return None, None


def prune(run_dir: PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints in ``run_dir`` (``keep >= 1``)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    for _step, path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)
