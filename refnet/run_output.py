"""What a training run writes and shows, in one object: rank 0's ``RunOutput``, and on
every other rank of a data-parallel job a ``NoOutput`` whose methods do nothing.

    output = run_output(world, folder, cfg, say)
    output.say("epoch 1/10: ...")             # a line of summary (not with --quiet)
    bar = output.progress(total, "epoch 1/10")
    output.log({"kind": "epoch", ...})        # a record in RUN_DIR/log.jsonl
    output.checkpoint(path, state)            # RUN_DIR/ckpt-<step>.h5, the last --keep
    output.best(state)                        # RUN_DIR/best.h5 (early stop: a new best)
    output.plots(history, conv1, columns, final)  # curves.png, conv1_filters.png

Each log record carries ``world_size``, the number of ranks of the job. A write that
fails (a full disk, a folder gone read-only) raises ``data.files.OutputError``: one line
naming the file, exit status 2; the files written before stay whole (a log record is
appended whole or not at all, a checkpoint or plot replaces its old self atomically).
The plots are drawn at most every ``PLOT_EVERY`` seconds (the first time at the end of
the first epoch that ends that long after the run's output began), and always for the
run's last epoch (``final``): drawing them takes about a third of a second, longer than an
epoch of a small data set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy

from refnet import checkpoint
from refnet.data.files import append_text
from refnet.data.progress import Progress
from refnet.plots import plot_conv1, plot_curves

if TYPE_CHECKING:
    from refnet.checkpoint import TrainingState
    from refnet.config import TrainConfig
    from refnet.distributed import Solo

PLOT_EVERY = 30.0  # seconds between two drawings of the plots (the last epoch's is drawn)


class RunOutput:
    """The run folder's writer and the console's voice (rank 0)."""

    folder: Path | None  # the run folder (a ``NoOutput`` may have none)

    def __init__(
        self, folder: Path, cfg: TrainConfig, world_size: int, say: Callable[..., object] = print
    ) -> None:
        self.folder = folder
        self._dir = folder  # what the writers write into
        self.keep = cfg.keep
        self.quiet = cfg.quiet
        self.world_size = world_size
        self._say = say
        self._plotted = time.perf_counter()  # when the plots were last drawn, or this began

    def say(self, *args: Any, **kwargs: Any) -> None:
        if not self.quiet:
            self._say(*args, **kwargs)

    def progress(self, total: int, desc: str) -> Progress:
        return Progress(total=total, desc=desc, unit="img", enabled=not self.quiet)

    def log(self, record: dict[str, Any]) -> None:
        record = {**record, "world_size": self.world_size}
        append_text(self._dir / "log.jsonl", json.dumps(record) + "\n")

    def checkpoint(self, path: Path, state: TrainingState) -> Path:
        path = checkpoint.write_state(path, state)
        checkpoint.prune(self._dir, cast(int, self.keep))  # a TrainConfig's keep is set
        return path

    def best(self, state: TrainingState) -> Path | None:
        """Write ``state`` as the run's best checkpoint (``checkpoint.best_path``),
        atomically like the others; ``--keep`` does not prune it."""
        return checkpoint.write_state(checkpoint.best_path(self._dir), state)

    def plots(
        self,
        history: Sequence[dict[str, Any]],
        conv1: numpy.ndarray,
        columns: int,
        final: bool = True,
    ) -> None:
        """curves.png and conv1_filters.png, unless drawn less than ``PLOT_EVERY`` seconds
        ago and not ``final``."""
        now = time.perf_counter()
        if not final and now - self._plotted < PLOT_EVERY:
            return
        self._plotted = now
        if history:
            plot_curves(history, self._dir / "curves.png")
        plot_conv1(conv1, columns, self._dir / "conv1_filters.png")


class NoOutput(RunOutput):
    """Another rank's: it writes and shows nothing."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.quiet = True

    def log(self, record: dict[str, Any]) -> None:
        pass

    def checkpoint(self, path: Path, state: TrainingState) -> Path:
        return path

    def best(self, state: TrainingState) -> Path | None:
        return None

    def plots(
        self,
        history: Sequence[dict[str, Any]],
        conv1: numpy.ndarray,
        columns: int,
        final: bool = True,
    ) -> None:
        pass


def run_output(
    world: Solo, folder: Path, cfg: TrainConfig, say: Callable[..., object] = print
) -> RunOutput:
    """Rank 0's ``RunOutput`` for ``folder``, a ``NoOutput`` on the other ranks."""
    return RunOutput(folder, cfg, world.size, say) if world.is_root else NoOutput(folder)
