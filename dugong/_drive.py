"""What every driver of ``co_`` generators checks, written once.

dugong's four drivers (`eval_coroutine`, `eval_coroutines`, `AioFuture`,
`run_async`) differ in how they wait, not in what they accept: each one takes
a generator (`check_generator`), checks every new value it yields
(`check_wait`, or `wait_events` for a `selectors`-style loop), applies the
same rule to a `PollNeeded.deadline` against its own timeout (`wait_limit`),
reports a timeout the same way (`timed_out`), and, where it keeps a
registration for a generator that waits for the same thing again, keeps it
only while the descriptor still refers to the same open file (`file_id`,
`same_file`).

The drivers call these only when a generator yields a value other than the
one it yielded last (the same `PollNeeded` object again means the same wait
on the same file), so a generator that waits for the same thing many times
costs an identity comparison per step. A generator that replaces its socket
by another one that gets the same descriptor number yields a new
`PollNeeded` for it, as dugong's own generators do.

Drivers know nothing about HTTP: only file descriptors and events.
"""

from __future__ import annotations

import os
import selectors
import stat
from collections.abc import Generator
from types import GeneratorType
from typing import Any

from ._exceptions import ConnectionTimedOut
from ._poll import POLLIN, POLLOUT, PollNeeded

__all__ = [
    "NOTHING",
    "READ",
    "WRITE",
    "check_generator",
    "check_wait",
    "file_id",
    "generator_name",
    "same_file",
    "timed_out",
    "wait_events",
    "wait_limit",
]

#: Direction bit of a selector loop: wait until readable (`selectors.EVENT_READ`).
READ = selectors.EVENT_READ
#: Direction bit of a selector loop: wait until writable (`selectors.EVENT_WRITE`).
WRITE = selectors.EVENT_WRITE

_ALL_BITS = POLLIN | POLLOUT

#: "No wait yet": what a driver compares a yielded value with before its first
#: wait (a generator that yields None must not look like a repeated wait).
NOTHING: Any = object()


def check_generator(crt: object, who: str) -> None:
    """Raise `TypeError` unless *crt* is a generator (a ``co_`` method's result).

    Args:
        crt: what the driver was given.
        who: the driver's name for the message, e.g. ``"eval_coroutine()"``.
    """
    if type(crt) is GeneratorType or isinstance(crt, Generator):
        return
    import inspect

    hint = " (an async coroutine: await it instead)" if inspect.iscoroutine(crt) else ""
    raise TypeError(f"{who} takes co_ generators, not {type(crt).__name__}{hint}")


def check_wait(pn: object) -> tuple[int, int]:
    """Check a value that a ``co_`` generator yielded; its fd and poll mask.

    Raises:
        TypeError: *pn* is not a `PollNeeded` (the message shows what it is),
            or its fd is not an int.
        ValueError: its fd is negative, or its mask is not `POLLIN`,
            `POLLOUT` or both.
    """
    if not isinstance(pn, PollNeeded):
        raise TypeError(f"co_ generator yielded {pn!r}, not a PollNeeded")
    fd, mask = pn
    if not isinstance(fd, int):
        raise TypeError(
            f"co_ generator yielded {pn!r}: the fd must be an int, not {type(fd).__name__}"
        )
    if fd < 0:
        raise ValueError(f"co_ generator yielded {pn!r}: the fd must not be negative")
    if not mask & _ALL_BITS or mask & ~_ALL_BITS:
        raise ValueError(f"co_ generator yielded {pn!r}: the mask must be POLLIN, POLLOUT or both")
    return fd, mask


def wait_events(pn: object) -> tuple[int, int]:
    """`check_wait` for a `selectors`-style loop: the fd and its `READ`/`WRITE` bits."""
    fd, mask = check_wait(pn)
    return fd, (READ if mask & POLLIN else 0) | (WRITE if mask & POLLOUT else 0)


def wait_limit(pn: PollNeeded, timeout: float | None) -> tuple[float | None, bool]:
    """How long to wait for *pn*, and what reaching that limit means.

    A driver that limits each wait to *timeout* seconds waits at most the
    returned number of seconds (None: without limit). If the flag is True,
    that is the `PollNeeded.deadline`, which comes first: the generator is
    then resumed, ready or not. If it is False, running out is a timeout.
    """
    left = pn.until_deadline(timeout)
    if left is not None:
        return left, True
    return timeout, False


def timed_out(timeout: float | None, pn: object) -> ConnectionTimedOut:
    """The `ConnectionTimedOut` a driver raises when a wait for *pn* exceeded *timeout*."""
    return ConnectionTimedOut(f"No progress for {timeout} seconds (waiting for {pn!r})")


def file_id(fd: int) -> tuple[int, int] | None:
    """What identifies the open file behind *fd*: ``(st_dev, st_ino)``; None if unknown.

    Anonymous files (eventfd, timerfd, epoll, ...) have no file type in their mode
    and all share one inode, so they cannot be told apart: None.
    """
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st.st_ino and stat.S_IFMT(st.st_mode) else None


def same_file(fd: int, fid: tuple[int, int] | None) -> bool:
    """True if *fd* still refers to the open file that `file_id` identified as *fid*.

    A driver keeps a registration for a new wait on the same fd and events
    only if this holds: a socket closed and replaced by another one under the
    same number would otherwise never be watched (epoll forgets closed files).
    """
    return fid is not None and file_id(fd) == fid


def generator_name(gen: object) -> str:
    """A generator's qualified name, for messages."""
    return str(getattr(gen, "__qualname__", None) or type(gen).__name__)
