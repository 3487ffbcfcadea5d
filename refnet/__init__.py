"""refnet: AlexNet's two-column network, its options, training and evaluation.

    from refnet import AlexNet, NetOptions, build_network, SGD, ReduceOnPlateau, StepSchedule

Subpackages: ``refnet.layers`` (the maths), ``refnet.data`` (images to HDF5, the loader),
``refnet.verify`` (the comparison with other frameworks), ``refnet.bench`` (the benchmark).
The names below are imported on first use, so ``import refnet.layers`` loads no network.
"""

from __future__ import annotations


def _end_on_interrupt_while_starting() -> None:
    """``python -m refnet.X`` only: until the command's ``data.cli.run_command`` takes
    Ctrl-C over, a press ends the process at once with one line and status 130 (nothing
    has been written), instead of a ``KeyboardInterrupt`` traceback out of some library's
    import. The first statement of the package, so the window left is the interpreter's
    own start-up. ``sys.argv[0]`` is "-m" while ``python -m`` looks for the module; the
    module's name is the word of ``sys.orig_argv`` before the command's own arguments.
    Elsewhere (a program importing refnet, ``python -m`` of another package) a no-op."""
    import os
    import signal
    import sys

    args = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or len(args) < len(sys.argv):
        return
    word = args[len(args) - len(sys.argv)]  # "refnet.train", or "-mrefnet.train"
    name = word[word.index("m") + 1 :] if word.startswith("-") else word
    if name != "refnet" and not name.startswith("refnet."):
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return  # started to ignore Ctrl-C (a background job): left so
    line = f"{name}: interrupted while starting; nothing was written\n".encode()

    def on_interrupt(signum: int, frame: object) -> None:
        os.write(2, line)
        os._exit(130)

    try:
        signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread: nothing to take over
        pass


_end_on_interrupt_while_starting()

import importlib  # noqa: E402 - after the Ctrl-C handler, which is installed first
from typing import Any  # noqa: E402

__version__ = "0.2.0"

_EXPORTS = {
    "ARCHS": "refnet.arch",
    "ArchSpec": "refnet.arch",
    "ConvSpec": "refnet.arch",
    "param_shapes": "refnet.arch",
    "AlexNet": "refnet.network",
    "build_network": "refnet.network",
    "NetOptions": "refnet.options",
    "ReduceOnPlateau": "refnet.schedule",
    "StepSchedule": "refnet.schedule",
    "SGD": "refnet.sgd",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'refnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
