"""How a training run stops early: divergence (exit status 1) and Ctrl-C (130).

- ``Diverged``: the loss or a parameter became NaN or Inf. ``train_until_stopped``
  re-raises it with the command that continues from the last good checkpoint at a tenth
  of the learning rate (or starts again at it, when no checkpoint was written yet).
- ``data.store.StoreChanged``: the training store was replaced or written to while the
  run read it (``data.loader``); re-raised naming the last checkpoint (exit status 2).
- ``Interrupted``: the first Ctrl-C while steps run lets the step finish and a checkpoint
  be written (the loop raises ``Interrupted(path, True, "training")``); during
  evaluation or a checkpoint write, or a second time, it stops at once
  (``Interrupted(last checkpoint, False, phase)``); one that lands during an import is
  held back until the import has ended (``data.cli.run_command``'s handler takes it).
  Its message says how to continue.
  An exception that comes out of the loop after a Ctrl-C raised ``KeyboardInterrupt``
  (a library whose import or initialisation it broke: matplotlib drawing the curves,
  say) is that interrupt, and ends the run the same way.
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy

from refnet.data.cli import FAILED, INTERRUPTED, importing, interrupt_pending, note_interrupt
from refnet.data.store import StoreChanged


class Trainer(Protocol):
    """What the stop handling reads of a ``refnet.train.Trainer`` (which imports this
    module: a protocol keeps the import graph one-way)."""

    phase: str
    interrupt: bool
    sgd: Any  # refnet.sgd.SGD: its ``lr``
    output: Any  # refnet.run_output.RunOutput: its ``folder``

    def train(self) -> Any: ...

    def last_checkpoint(self) -> Path | None: ...


class Diverged(RuntimeError):
    """The loss or a parameter became NaN or Inf."""

    exit_status = FAILED


class Interrupted(Exception):
    """SIGINT received: ``Interrupted(path, written, phase)``, the checkpoint to resume
    from (None: none yet), whether it was written for the interrupt, and what the run was
    doing."""

    exit_status = INTERRUPTED

    def message(self) -> str:
        path, written, phase = self.args
        if path is None:
            return f"interrupted while {phase}, before any checkpoint was written"
        what = (
            f"checkpoint written to {path}"
            if written
            else f"interrupted while {phase}; the last checkpoint, {path}, is intact"
        )
        return (
            f"{'interrupted; ' if written else ''}{what}; continue with --resume "
            f"--out {shlex.quote(str(Path(path).parent))}"
        )

    def __str__(self) -> str:
        return self.message()


def resume_command(run_path: str | Path, lr: float) -> str:
    return f"python -m refnet.train --out {shlex.quote(str(run_path))} --resume --lr {lr:g}"


def restart_command(argv: Sequence[str], lr: float) -> str:
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


def train_until_stopped(trainer: Trainer, argv: Sequence[str]) -> None:
    """``trainer.train()`` with Ctrl-C handled as the module doc says; a divergence is
    re-raised with the command that continues at a tenth of the learning rate."""

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if trainer.phase != "train" or trainer.interrupt:  # evaluating, saving, or again
            note_interrupt()
            if importing(frame) and callable(previous):  # data.cli.run_command's handler
                trainer.interrupt = True  # raises it once the import has ended
                previous(signum, frame)
                return
            raise KeyboardInterrupt
        trainer.interrupt = True
        print(
            "\ninterrupt: finishing this step and writing a checkpoint "
            "(Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.train()  # a non-finite loss is caught and reported by the loop
    except KeyboardInterrupt:
        raise Interrupted(trainer.last_checkpoint(), False, _doing(trainer)) from None
    except Diverged as e:
        lower = trainer.sgd.lr / 10
        good = trainer.last_checkpoint()
        if good is not None:
            advice = (
                f"The last good checkpoint, {good.name}, is left as it was; continue "
                f"from it at a tenth of the learning rate: "
                f"{resume_command(str(trainer.output.folder), lower)}"
            )
        else:
            advice = (
                f"No checkpoint had been written yet; start again at a tenth of the "
                f"learning rate: {restart_command(argv, lower)}"
            )
        raise Diverged(f"{e}: the run diverged at lr {trainer.sgd.lr:g}. {advice}") from None
    except StoreChanged as e:
        good = trainer.last_checkpoint()
        where = (
            f"the last checkpoint, {good}, is intact; once the data is as it should be, "
            f"continue with --resume --out {shlex.quote(str(good.parent))} (add "
            "--allow-other-data for another build)"
            if good is not None
            else "no checkpoint had been written yet"
        )
        raise StoreChanged(f"{e}; {where}") from None
    except Exception as e:
        if not interrupt_pending() or isinstance(e, Interrupted):
            raise
        raise Interrupted(trainer.last_checkpoint(), False, _doing(trainer)) from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _doing(trainer: Trainer) -> str:
    """What the run was doing, in words, by its phase."""
    return {
        "epoch-end": "evaluating or drawing the plots",
        "save": "writing a checkpoint",
    }.get(trainer.phase, trainer.phase)
