"""PollNeeded, the poll event bits, and the blocking driver `eval_coroutine`."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["POLLIN", "POLLOUT", "Co", "PollNeeded", "eval_coroutine"]

#: Event bit: the file descriptor must become readable.
POLLIN: int = select.POLLIN if hasattr(select, "POLLIN") else 1
#: Event bit: the file descriptor must become writable.
POLLOUT: int = select.POLLOUT if hasattr(select, "POLLOUT") else 4

_T = TypeVar("_T")

#: A ``co_`` generator: yields `PollNeeded`, is resumed with ``None``, returns ``_T``.
Co = Generator["PollNeeded", None, _T]

_HAVE_POLL = hasattr(select, "poll")


class PollNeeded(tuple[int, int]):
    """What a ``co_`` generator yields when it has to wait.

    A 2-tuple ``(fd, mask)``: resume the generator once file descriptor *fd*
    is ready for one of the events in *mask* (`POLLIN`, `POLLOUT`).

    A few waits also carry a `deadline`: a `time.monotonic` time at which the
    generator wants to be resumed even if *fd* is not ready (dugong uses it for
    `HTTPConnection.expect100_timeout`). dugong's drivers honour it; a loop that
    ignores it merely waits longer.

    Args:
        fd: the file descriptor to wait for.
        mask: `POLLIN`, `POLLOUT` or both, or-ed together.
        deadline: the `time.monotonic` time to resume at, ready or not
            (None: no deadline).

    Attributes:
        deadline (float | None): the `time.monotonic` time at which to resume
            the generator even if *fd* is not ready; None (the usual case) if
            there is no such time.
    """

    #: `time.monotonic` time to resume the generator at, ready or not (None: no deadline)
    deadline: float | None = None
    #: (private) for a wait that code in the same process ends, e.g. a pool's wake-up:
    #: ``park(poke, arg)`` asks that ``poke(arg)`` be called instead of *fd* becoming
    #: ready, if the wake-up comes from the thread that parked. `eval_coroutines`
    #: parks; any other loop just waits for *fd*, which becomes ready as usual.
    _park: Callable[[Callable[[Any], None], Any], None] | None = None
    #: (private) set on the waits that a dugong socket yields again and again: the
    #: set of its registrations that may outlive a wait (`AioFuture` keeps them for
    #: the next one); each has a ``drop()`` that the socket calls before it closes.
    _linger: set[Any] | None = None
    #: (private) a wait that is over at once (*fd* is ready, e.g. a socket for writing):
    #: `eval_coroutines` puts the generator back behind the ones ready now, without
    #: registering *fd*; any other loop finds *fd* ready.
    _now = False

    def __new__(cls, fd: int, mask: int, deadline: float | None = None) -> PollNeeded:
        self = tuple.__new__(cls, (fd, mask))
        if deadline is not None:
            self.deadline = deadline
        return self

    @property
    def fd(self) -> int:
        """The file descriptor to wait for."""
        return self[0]

    @property
    def mask(self) -> int:
        """The events to wait for (`POLLIN`, `POLLOUT` or both)."""
        return self[1]

    def poll(self, timeout: float | None = None) -> bool:
        """Wait until the event happens (or the `deadline` passes).

        Uses `select.poll`, or `select.select` where poll is missing.

        Args:
            timeout: the most seconds to wait; None waits without limit.

        Returns:
            bool: True when the generator should be resumed, False if
            *timeout* seconds passed first.
        """
        left = self.until_deadline(timeout)
        if left is not None:
            _wait(self[0], self[1], left)
            return True
        return _wait(self[0], self[1], timeout)

    def until_deadline(self, timeout: float | None) -> float | None:
        """Seconds left until the `deadline`, if it comes before *timeout* runs out.

        None if there is no deadline or *timeout* ends the wait first: a driver
        then waits at most *timeout* and treats running out as a timeout,
        whereas reaching the deadline means resuming the generator.
        """
        deadline = self.deadline
        if deadline is None:
            return None
        left = max(0.0, deadline - time.monotonic())
        return left if timeout is None or left <= timeout else None

    def __repr__(self) -> str:
        what = "|".join(
            name for bit, name in ((POLLIN, "POLLIN"), (POLLOUT, "POLLOUT")) if self[1] & bit
        )
        return f"PollNeeded(fd={self[0]}, mask={what or self[1]})"


PollNeeded.__module__ = "dugong"


def drop_kept(kept: set[Any] | None) -> None:
    """Drop the registrations in a `PollNeeded._linger` set: its file is about to close."""
    while kept:
        kept.pop().drop()


def _wait(fd: int, mask: int, timeout: float | None) -> bool:
    if _HAVE_POLL:
        poller = select.poll()
        poller.register(fd, mask)
        return bool(poller.poll(None if timeout is None else _to_ms(timeout)))
    rlist = [fd] if mask & POLLIN else []
    wlist = [fd] if mask & POLLOUT else []
    r, w, x = select.select(rlist, wlist, rlist + wlist, timeout)
    return bool(r or w or x)


def _to_ms(timeout: float) -> int:
    # Round up so that a wait never ends before the timeout has passed.
    if timeout <= 0:
        return 0
    return max(1, int(timeout * 1000 + 0.999))


def eval_coroutine(crt: Generator[Any, None, _T], timeout: float | None = None) -> _T:
    """Run the ``co_`` generator *crt* to completion, waiting with poll.

    This is how the blocking methods of `HTTPConnection` connect and send
    when they must wait: each one runs the same steps as its ``co_`` twin,
    and what would have been yielded is waited for here, with
    `HTTPConnection.timeout`. (When nothing has to be waited for, they finish
    without creating a generator at all; the reads wait for the socket with a
    poll of their own between the same steps.)

    A `PollNeeded` with a `~PollNeeded.deadline` resumes *crt* at that time
    even if the descriptor is not ready, unless *timeout* runs out first.

    Args:
        crt: the generator, e.g. ``conn.co_readall()``.
        timeout: the most seconds one wait may take: each `PollNeeded` that
            *crt* yields is waited for (with `select.poll`, or `select.select`
            where poll is missing). None waits without limit, ``0`` does not
            wait at all.

    Returns:
        The generator's return value.

    Raises:
        ConnectionTimedOut: a wait took longer than *timeout*; *crt* has been
            closed.
        TypeError: *crt* is not a generator, or it yielded something other
            than a `PollNeeded`.
        ValueError: *crt* yielded a `PollNeeded` whose mask is not `POLLIN`,
            `POLLOUT` or both.

    Any exception of the generator itself propagates. Whatever ends the run
    early (these errors, or an exception such as `KeyboardInterrupt` during a
    wait) closes *crt* first.
    """
    _drive.check_generator(crt, "eval_coroutine()")
    send = crt.send
    try:
        pn = send(None)
    except StopIteration as exc:
        return exc.value  # type: ignore[no-any-return]
    try:
        if not _HAVE_POLL:
            return _eval_with_select(crt, pn, timeout)
        check_wait = _drive.check_wait
        ms = None if timeout is None else _to_ms(timeout)
        poller = select.poll()
        poll = poller.poll
        last: object = _drive.NOTHING  # the value the registration below was made for
        fd = -1
        mask = 0
        deadline = None
        while True:
            if pn is not last:
                new_fd, new_mask = check_wait(pn)
                if new_fd != fd or new_mask != mask:
                    if fd != -1:
                        poller.unregister(fd)
                    poller.register(new_fd, new_mask)
                    fd, mask = new_fd, new_mask
                last = pn
                deadline = pn.deadline
            if deadline is not None:
                limit, at_deadline = _drive.wait_limit(pn, timeout)
                if not poll(None if limit is None else _to_ms(limit)) and not at_deadline:
                    raise _drive.timed_out(timeout, pn)
            elif not poll(ms):
                raise _drive.timed_out(timeout, pn)
            pn = send(None)
    except StopIteration as exc:
        return exc.value  # type: ignore[no-any-return]
    finally:
        crt.close()


def _eval_with_select(crt: Generator[Any, None, _T], pn: Any, timeout: float | None) -> _T:
    # eval_coroutine where select.poll is missing; it handles StopIteration and closing.
    while True:
        _drive.check_wait(pn)
        limit, at_deadline = _drive.wait_limit(pn, timeout)
        if not _wait(pn[0], pn[1], limit) and not at_deadline:
            raise _drive.timed_out(timeout, pn)
        pn = crt.send(None)


# Last, because _drive imports PollNeeded and the poll bits from here (whichever of
# the two modules is imported first, the other then finds what it needs).
from . import _drive  # noqa: E402
