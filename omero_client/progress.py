"""Progress of long transfers, for a person watching.

A save of a large project streams gigabytes; whoever waits should see that it
moves. Two sinks share one callback shape, ``progress(done, total)`` (total may
be None or an estimate):

- ``ProgressLog`` writes a few plain lines (the OMERO script's stdout becomes
  the job's Info output in OMERO.web, which does not understand ``\\r``);
- ``TerminalProgressBar`` redraws one ``\\r`` line, and only when the stream is
  a terminal, so logs and pipes never fill up with control characters.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

ProgressCallback = Callable[[int, Optional[int]], None]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return "{} {}".format(int(value), unit) if unit == "B" else "{:.1f} {}".format(value, unit)
        value /= 1024
    return "{} B".format(n)  # pragma: no cover


def format_progress(done: int, total: Optional[int]) -> str:
    """'12.0 MiB of 48.0 MiB (25%)', or '12.0 MiB' when the total is unknown."""
    if not total:
        return human_bytes(done)
    pct = min(100, int(done * 100 / total))
    return "{} of {} ({}%)".format(human_bytes(done), human_bytes(total), pct)


class ProgressLog:
    """A line per ``step`` percent or per ``interval`` seconds, whichever comes first, and a last one at 100%."""

    def __init__(self, stream: Optional[TextIO] = None, what: str = "uploaded", step: int = 10,
                 interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.what = what
        self.step = step
        self.interval = interval
        self.clock = clock
        self._last_pct = -1
        self._last_time: Optional[float] = None
        self.lines = 0

    def __call__(self, done: int, total: Optional[int]) -> None:
        now = self.clock()
        pct = int(done * 100 / total) if total else -1
        finished = bool(total) and done >= (total or 0)
        due = (self._last_time is None or now - self._last_time >= self.interval
               or (pct >= 0 and pct // self.step > self._last_pct // self.step) or finished)
        if not due or (finished and self._last_pct == 100):
            return
        self._last_pct, self._last_time = (100 if finished else pct), now
        self.stream.write("{} {}\n".format(self.what, format_progress(done, total)))
        self.stream.flush()
        self.lines += 1


class TerminalProgressBar:
    """``[#####.....]  40%  12.0 MiB of 30.0 MiB`` redrawn in place; silent unless the stream is a tty."""

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30, label: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.label = label
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self._drawn = False
        self._width = 0

    def __call__(self, done: int, total: Optional[int]) -> None:
        if not self.enabled:
            return
        if total:
            frac = min(1.0, done / total)
            filled = int(frac * self.width)
            text = "[{}{}] {:3d}%  {} of {}".format("#" * filled, "." * (self.width - filled), int(frac * 100),
                                                   human_bytes(done), human_bytes(total))
        else:
            text = human_bytes(done)
        if self.label:
            text = self.label + " " + text
        # pad over the remains of a longer previous line
        self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
        self.stream.flush()
        self._width = len(text)
        self._drawn = True

    def finish(self) -> None:
        """End the redrawn line so the next output starts on a fresh one."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def terminal_progress(label: str = "", stream: Optional[TextIO] = None) -> Optional[TerminalProgressBar]:
    """A bar for library use from a terminal, or None when stderr is not one (then nothing is drawn)."""
    bar = TerminalProgressBar(stream, label=label)
    return bar if bar.enabled else None
