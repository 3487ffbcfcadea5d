"""What the command lines share: flags checked where they are parsed, one-line errors,
the exit codes in ``--help``, one way a command ends, and a clean end on Ctrl-C.

    p = Parser(prog="python -m refnet.data.build", description=..., exit_codes={0: ..., 1: ...})
    p.add_argument("--size", type=positive_int, default=256, help="... (default 256)")
    def main(argv=None):
        args = p.parse_args(argv)
        return exit_status("refnet.data.build", lambda: build(...))
    if __name__ == "__main__":
        sys.exit(run_command(main, "refnet.data.build"))

Exit codes (each command's ``--help`` lists its own): 0 success, 2 a usage error (a bad
flag value, a missing or unusable input), 130 interrupted (Ctrl-C); 1 is each command's
own failure; 3 (``refnet.train``) an unexpected failure.

How a command ends (``exit_status``): the user's errors are ``UserError`` (a
``ValueError``): exit status 2 and one line ``PROG: error: MESSAGE``. An exception class
with another ``exit_status`` attribute ends with that status and the same one line (a
command's own failure: 1), or, for 130, ``PROG: MESSAGE``. With ``unexpected=True`` any
other exception prints its traceback, then one line, and gives 3; without, it
propagates as a bug does.

``Parser`` is an ``argparse.ArgumentParser`` whose errors are one line on stderr (no usage
block), exit status 2, and whose epilog lists the exit codes. The flag types raise
``argparse.ArgumentTypeError`` naming the value, so a bad value never gets past parsing.

Ctrl-C (``run_command``): the first one raises ``KeyboardInterrupt`` in the main thread,
so ``finally`` blocks remove what was half written, then one line and 130. Another one
kills the worker processes and ends the process at once (130, one line); one within
``DOUBLE_TAP_S`` of the first takes effect only when that time is up
(docs/architecture.md, "data", says why).
"""

from __future__ import annotations

import _thread
import argparse
import atexit
import math
import os
import signal
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

INTERRUPTED = 130
USAGE = 2
FAILED = 1  # the command's own failure (a diverged run, a failing row, ...)
UNEXPECTED = 3
DOUBLE_TAP_S = 1.0  # a second Ctrl-C this soon after the first waits out the rest
COMMON_EXIT_CODES = {
    USAGE: "usage error: a bad option value or an unusable input (one line names it)",
    INTERRUPTED: "interrupted (Ctrl-C); nothing is left half-written",
}


_INTERRUPT = {"pending": False}  # a Ctrl-C raised as KeyboardInterrupt, not yet reported


def note_interrupt() -> None:
    """Record that a Ctrl-C is being raised as ``KeyboardInterrupt`` (a SIGINT handler
    calls it): whatever exception comes out of the command next is the interrupt's doing
    (a library whose initialisation it broke, say) and ``exit_status`` reports it as
    the interrupt."""
    _INTERRUPT["pending"] = True


def interrupt_pending() -> bool:
    """Whether a Ctrl-C was raised (``note_interrupt``) since the command began."""
    return _INTERRUPT["pending"]


class UserError(ValueError):
    """The user's error: a bad value, unusable data, a bad checkpoint, a busy run folder.
    A command ends with exit status 2 and the message as one line."""

    exit_status = USAGE


def error_line(prog: str, error: BaseException) -> tuple[int | None, str]:
    """``(status, line)``: how a command ends on ``error`` (module doc); status None for
    an exception that is no outcome of ours (a bug)."""
    if isinstance(error, KeyboardInterrupt):
        return _interrupt_line(prog, error)
    status = getattr(error, "exit_status", None)
    if status is None:
        return None, f"{prog}: error: unexpected {type(error).__name__}: {error}"
    if status == INTERRUPTED:
        return status, f"{prog}: {error}"
    return status, f"{prog}: error: {error}"


def _interrupt_line(prog: str, error: KeyboardInterrupt) -> tuple[int, str]:
    """``error_line`` of a Ctrl-C (``KeyboardInterrupt``): always a status."""
    status = getattr(error, "exit_status", INTERRUPTED)
    return status, f"{prog}: {error}" if str(error) else f"{prog}: interrupted"


def _print_line(error: BaseException, status: int, line: str):
    print(line, file=sys.stderr, flush=True)


def exit_status(
    prog: str,
    body: Callable[[], int | None],
    *,
    report: Callable[[BaseException, int, str], object] = _print_line,
    unexpected: bool = False,
) -> int:
    """``body()``'s exit status (None: 0), or the status its exception ends the command
    with (module doc), after ``report(error, status, line)`` says so (default: the line on
    stderr). ``KeyboardInterrupt`` propagates (``run_command`` ends it) unless ``report``
    is given; so does a bug unless ``unexpected``: then its traceback is printed, and 3.
    Any other exception raised after a Ctrl-C (``interrupt_pending``) is the interrupt's
    doing and ends the command as the interrupt does."""
    _INTERRUPT["pending"] = False
    try:
        status = body()
    except KeyboardInterrupt as e:
        if report is _print_line:
            raise
        status, line = _interrupt_line(prog, e)
        report(e, status, line)
        return status
    except Exception as e:  # noqa: BLE001 - mapped to the documented statuses
        if interrupt_pending() and getattr(e, "exit_status", None) != INTERRUPTED:
            interrupt = KeyboardInterrupt()
            if report is _print_line:
                raise interrupt from None
            status, line = _interrupt_line(prog, interrupt)
            report(interrupt, status, line)
            return status
        status, line = error_line(prog, e)
        if status is None:
            if not unexpected:
                raise
            traceback.print_exc()
            status = UNEXPECTED
        report(e, status, line)
        return status
    return 0 if status is None else status


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with one-line errors (exit 2) and the exit codes as epilog.

    ``exit_codes``: ``{status: meaning}`` of the command's own statuses; 2 and 130 are
    added unless given. The description is one paragraph, wrapped here.
    """

    def __init__(self, *, exit_codes: Mapping[int, str], **kwargs: Any) -> None:
        codes = {
            **exit_codes,
            **{k: v for k, v in COMMON_EXIT_CODES.items() if k not in exit_codes},
        }
        lines = [
            textwrap.fill(
                meaning, width=79, initial_indent=f"  {code:<4d} ", subsequent_indent=" " * 7
            )
            for code, meaning in sorted(codes.items())
        ]
        if kwargs.get("description"):  # printed as written, so wrapped here
            kwargs["description"] = textwrap.fill(kwargs["description"], width=79)
        super().__init__(
            epilog="exit status:\n" + "\n".join(lines),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )

    def error(self, message: str) -> NoReturn:
        if launcher_rank() > 0:  # under mpiexec every rank parses: rank 0 alone says it
            self.exit(USAGE)
        self.exit(USAGE, f"{self.prog}: error: {message} (see --help)\n")


_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")


def launcher_rank() -> int:
    """This process's rank as an MPI launcher (mpiexec) set it in the environment, 0
    when started otherwise; read without initialising MPI."""
    for name in _RANK_VARIABLES:
        text = os.environ.get(name, "")
        if text.isdigit():
            return int(text)
    return 0


def unwritable_reason(folder: str | os.PathLike[str]) -> str | None:
    """Why no folder can be made and written at ``folder``, as a phrase naming the path
    at fault (None when one can): a file in the way (the path itself or a parent), or
    the nearest existing parent refusing a new entry (read-only file system, permission,
    a pseudo file system such as /proc). Checked by making and removing a hidden empty
    folder there, so nothing is left behind."""
    path = os.path.abspath(os.fspath(folder))
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{folder} is a file, not a folder"
    here = path
    while not os.path.exists(here):
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        return f"{here} is a file, not a folder"
    probe = os.path.join(here, f".refnet-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except FileExistsError:
        pass
    except OSError as e:
        return f"nothing can be created in {here} ({e.strerror})"
    try:
        os.rmdir(probe)
    except OSError:
        pass
    return None


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An ``argparse`` type: ``int(text)`` when it is >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def number_at_least(minimum: float, *, strict: bool = False) -> Callable[[str], float]:
    """An ``argparse`` type: ``float(text)`` when it is finite and >= ``minimum`` (>
    with ``strict``); NaN and infinities are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>' if strict else '>='} {minimum:g}, got {text!r}"
            )
        return value

    parse.__name__ = f"number {'>' if strict else '>='} {minimum:g}"
    return parse


def fraction(text: str) -> float:
    """An ``argparse`` type: a number in [0, 1)."""
    value = number_at_least(0)(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)
positive_number = number_at_least(0, strict=True)
nonnegative_number = number_at_least(0)


def new_file(text: str) -> str:
    """``text`` when it can name a new file: its folder exists and a file can be made in
    it (``unwritable_reason``), and it is not a directory (an ``argparse`` type)."""
    folder = os.path.dirname(text) or "."
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text!r}: {folder!r} is a file, not a folder")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text!r}: folder {folder!r} does not exist")
    reason = unwritable_reason(folder)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {reason}")
    return text


def existing_file(text: str) -> str:
    """``text`` when it names a readable regular file (an ``argparse`` type)."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} does not exist")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not readable (permission denied)")
    return text


def run_command(main: Callable[[], int], name: str) -> int:
    """``main()``'s exit status; on Ctrl-C one line "NAME: interrupted" and 130.

    ``main`` handles ``KeyboardInterrupt`` itself when it has more to say (what was kept);
    this catches the rest. Call it in the main thread only (it sets the SIGINT handler).

    The first Ctrl-C is owed until a ``KeyboardInterrupt`` can land where it propagates:
    one pressed while a module is imported (a frame of ``importlib`` on the main thread's
    stack: an extension module's initialisation clears an exception raised in the Python
    it calls, numpy.random's on its first use, say) is raised once the import has ended;
    one that lands in a weakref callback or a ``__del__`` is swallowed by Python
    ("Exception ignored in ..."), and ``sys.unraisablehook`` owes it again. A watcher
    thread sends SIGINT to the main thread again when the owed press can be raised. A
    press meanwhile is a second one (module doc). (One swallowed by a library's bare
    ``except:`` is lost; the next Ctrl-C ends the process.)
    """
    state = {
        "interrupted": False,  # the first press came
        "owed": False,  # ... and its KeyboardInterrupt is still to be raised
        "resent": False,  # the SIGINT comes from the watcher, not from the user
        "running": True,
        "first": -math.inf,
    }
    main_thread = threading.main_thread().ident

    def stop_now() -> NoReturn:
        _kill_worker_processes()
        os.write(2, f"{name}: interrupted again; stopping now\n".encode())
        os._exit(INTERRUPTED)

    def second_press() -> None:
        wait = state["first"] + DOUBLE_TAP_S - time.monotonic()
        if wait <= 0:
            stop_now()
        timer = threading.Timer(wait, stop_now)  # a double tap: a clean-up that ends
        timer.daemon = True  # meanwhile ends the process normally
        timer.start()

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        resent, state["resent"] = state["resent"], False
        if resent and not state["owed"]:
            return  # the owed press was raised meanwhile
        if state["owed"] and (resent or not importing(frame)):
            if importing(frame):
                owe()  # still importing: later
                return
            state["owed"] = False
            raise KeyboardInterrupt
        if state["interrupted"]:
            second_press()
            return
        state.update(interrupted=True, first=time.monotonic())
        note_interrupt()
        if importing(frame):
            owe()
            return
        raise KeyboardInterrupt

    def owe() -> None:
        state["owed"] = True
        watcher = threading.Thread(target=raise_when_possible, daemon=True)
        watcher.start()

    def raise_when_possible() -> None:  # the watcher: SIGINT again once no import runs
        time.sleep(0.05)  # the swallowing callback or import has its moment to end
        while state["owed"] and state["running"]:
            frame = sys._current_frames().get(main_thread or 0)
            if frame is None or not importing(frame):
                break
            time.sleep(0.02)
        if state["owed"] and state["running"]:
            state["resent"] = True
            if hasattr(signal, "pthread_kill"):
                signal.pthread_kill(main_thread, signal.SIGINT)  # type: ignore[arg-type]  # wakes a blocking call; the main thread's ident is set
            else:
                _thread.interrupt_main()

    previous = sys.unraisablehook

    def on_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            if state["running"]:
                owe()
        else:
            previous(unraisable)

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return main()  # started to ignore Ctrl-C (a background job)
    signal.signal(signal.SIGINT, on_interrupt)
    # the last exit step: ignore Ctrl-C, which Python would otherwise reset to kill the
    # process by SIGINT, after the exit status is chosen (threads are joined before it)
    atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
    sys.unraisablehook = on_unraisable
    try:
        if hasattr(signal, "pthread_sigmask"):  # held back across an exec (bench.env):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # handled now
        return main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED
    finally:
        # from here on (the interpreter's shut-down too) Ctrl-C ends the process
        state.update(running=False, owed=False, interrupted=True)
        sys.unraisablehook = previous


def importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it runs Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def ignore_interrupts() -> None:
    """Make this process ignore SIGINT: a worker process's initializer, so that a Ctrl-C
    (sent by the terminal to the whole process group) reaches only the parent, which
    stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def starting_workers() -> Iterator[None]:
    """Start worker processes in the body: they ignore SIGINT from their first
    instruction (an ignored signal stays ignored across ``exec``, and Python then installs
    no ``KeyboardInterrupt`` handler), while a Ctrl-C meant for this process is held back
    until the body ends. Only in the main thread; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with interrupts_held():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _kill_worker_processes():
    """SIGKILL this process's multiprocessing children on a hard exit. A
    ``multiprocessing.Pool`` replaces workers that die, and a replacement caught half-way
    through its start when this process exits prints a traceback (it reads its start-up
    data from a pipe that just closed): so each pool's worker-handler thread is told to
    stop first, the children are killed, the handlers are given a moment to finish a
    start already under way, and whatever started meanwhile is killed too."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return
    try:
        stop, handlers = _pool_worker_handlers()
        for t in handlers:
            t._state = stop
        for p in mp.active_children():
            p.kill()
        deadline = time.monotonic() + 1.0
        for t in handlers:
            t.join(max(0.0, deadline - time.monotonic()))
        for p in mp.active_children():
            p.kill()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass


def _pool_worker_handlers():
    """(multiprocessing.pool's stop state, the running threads that keep
    ``multiprocessing.Pool``s at their size)."""
    pool = sys.modules.get("multiprocessing.pool")
    handle = getattr(
        getattr(getattr(pool, "Pool", None), "_handle_workers", None), "__func__", None
    )  # a classmethod's function
    if handle is None:
        return None, []
    return pool.TERMINATE, [  # type: ignore[union-attr]  # handle came from the module
        t
        for t in threading.enumerate()
        if getattr(getattr(t, "_target", None), "__func__", None) is handle
    ]


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C back for the body (SIGINT blocked in this thread): a press meanwhile
    takes effect, as ``KeyboardInterrupt``, when the body ends, never half-way through it.
    Also on entry, for a press that came just before. A no-op where signals cannot be
    blocked (Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    # pthread_sigmask runs the pending handlers after changing the mask, so a
    # KeyboardInterrupt can come out of the call that blocks: read the mask first
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
