"""A small progress bar for long jobs (dataset builds, training epochs, benchmarks).

On a terminal it redraws one line in place at most ``interval`` seconds apart; into a
file or pipe it writes a plain line at most every ``log_interval`` seconds, so logs stay
short. ``enabled=False`` silences it (tests, ``--quiet``).

    bar = Progress(total=1000, desc="build")
    for ...:
        bar.update(1, loss=0.71)
    bar.close()
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


class Progress:
    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        *,
        unit: str = "it",
        stream: IO[str] | None = None,
        enabled: bool = True,
        interval: float = 0.2,
        log_interval: float = 10.0,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.count = 0
        self.fields: dict[str, Any] = {}
        self.start = time.perf_counter()
        self._last_draw = -float("inf")
        self._width = 0

    def update(self, n: int = 1, **fields: Any) -> None:
        """Advance by ``n`` and set the fields shown after the bar (e.g. ``loss=0.7``)."""
        self.count += n
        self.fields.update(fields)
        now = time.perf_counter()
        if self.enabled and now - self._last_draw >= self.interval:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.perf_counter())
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _draw(self, now: float):
        self._last_draw = now
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(self.count / self.total, 1.0)
            filled = int(frac * 24)
            bar = f"[{'#' * filled}{'.' * (24 - filled)}] {self.count}/{self.total}"
            eta = (self.total - self.count) / rate if rate > 0 else float("nan")
            timing = f"{elapsed:.0f}s<{eta:.0f}s"
        else:
            bar = f"{self.count}"
            timing = f"{elapsed:.0f}s"
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in self.fields.items())
        line = f"{self.desc} {bar} {timing} {rate:.1f} {self.unit}/s {extra}".rstrip()
        if self.tty:
            pad = max(self._width - len(line), 0)
            self._width = len(line)
            self.stream.write("\r" + line + " " * pad)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _fmt(v: object):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
