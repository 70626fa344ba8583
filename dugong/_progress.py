"""A progress line for transfers, rewritten in place on a terminal.

Shared by ``python -m dugong`` and ``contrib/httpcat.py``. `Transfer` counts
the bytes of one body and describes them (size, percentage, rate, time left);
`ProgressLine` rewrites one line of a text stream with carriage returns, at
most every `INTERVAL` seconds.
"""

from __future__ import annotations

import time
from typing import Final, TextIO

__all__ = ["INTERVAL", "ProgressLine", "Transfer", "clock", "human_size"]

#: seconds between two updates of a progress line
INTERVAL: Final = 0.2


def human_size(n: float) -> str:
    """*n* bytes as ``'512 B'``, ``'1.5 KiB'``, ``'3.0 MiB'`` or ``'2.1 GiB'``."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"


def clock(seconds: float) -> str:
    """*seconds* as ``H:MM:SS``."""
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Transfer:
    """The bytes of one body moved so far, against its length if known.

    Attributes:
        total (int | None): the length, None if unknown.
        done (int): bytes so far; `add` counts more.
        start (float): when it began (`time.monotonic`).
    """

    __slots__ = ("done", "start", "total")

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0
        self.start = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n

    def describe(self, now: float, final: bool = False) -> str:
        """``'3.0 MiB of 10.0 MiB   30%  1.5 MiB/s  0:00:05 left'``; without a total no
        percentage, and the time so far instead of the time left; *final*: the time
        it took (``'in 0:00:07'``)."""
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        total = self.total
        parts = [human_size(self.done)]
        if total is not None:
            parts[0] += f" of {human_size(total)}"
            parts.append(f"{100 * self.done // total if total else 100:3d}%")
        parts.append(f"{human_size(rate)}/s")
        if final:
            parts.append(f"in {clock(elapsed)}")
        elif total is not None:
            parts.append(f"{clock((total - self.done) / rate if rate else 0.0)} left")
        else:
            parts.append(clock(elapsed))
        return "  ".join(parts)


class ProgressLine:
    """One line of *stream* (a terminal) that is rewritten in place.

    The caller serialises the calls (one thread, or its own lock).
    """

    def __init__(self, stream: TextIO, interval: float = INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self.width = 0  # length of the text on the line now (0: nothing shown)
        self.shown = 0.0  # when it was last rewritten

    def due(self, now: float) -> bool:
        """Whether `interval` has passed since the last `show`."""
        return now - self.shown >= self.interval

    def show(self, text: str, now: float | None = None) -> None:
        """Replace the line by *text*."""
        self.shown = time.monotonic() if now is None else now
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def clear(self) -> None:
        """Blank the line and put the cursor at its start (before other output)."""
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0

    def finish(self, text: str) -> None:
        """Replace the line by *text* for good: the next output starts a new line."""
        self.show(text)
        self.stream.write("\n")
        self.stream.flush()
        self.width = 0
