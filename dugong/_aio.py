"""`AioFuture`: the asyncio driver for ``co_`` generators."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Generator
from typing import Any, TypeVar

from ._drive import (
    NOTHING,
    READ,
    WRITE,
    check_generator,
    generator_name,
    timed_out,
    wait_events,
    wait_limit,
)
from ._poll import PollNeeded

__all__ = ["AioFuture"]

_T = TypeVar("_T")

_Table = dict[tuple[int, int], "AioFuture[Any]"]

# For each event loop: (fd, READ or WRITE) -> the AioFuture registered for it.
_tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Table] = weakref.WeakKeyDictionary()
_strong_tables: dict[asyncio.AbstractEventLoop, _Table] = {}  # loops without weak references


def _table(loop: asyncio.AbstractEventLoop) -> _Table:
    try:
        table = _tables.get(loop)
        if table is None:
            table = _tables[loop] = {}
    except TypeError:  # pragma: no cover - a loop type that refuses weak references
        table = _strong_tables.setdefault(loop, {})
    return table


class AioFuture(asyncio.Future[_T]):
    """An `asyncio.Future` that runs the ``co_`` generator *crt* on an event loop.

    ::

        body = await AioFuture(conn.co_readall())

    The generator's first step runs soon after the future is made (through
    `loop.call_soon <asyncio.loop.call_soon>`); each `PollNeeded` it yields
    becomes a reader or writer callback of the loop (``add_reader`` /
    ``add_writer``) that resumes it. Its return value is the future's result,
    its exception the future's exception; a yielded value that is not a
    `PollNeeded` fails the future with `TypeError`, a `PollNeeded` whose mask
    is not `POLLIN`, `POLLOUT` or both with `ValueError`.

    Args:
        crt: the generator, e.g. ``conn.co_read_response()``.
        loop: the event loop; by default the running one. Outside a running
            loop (as dugong 3.x programs may do before ``run_until_complete``),
            the loop set for this thread with `asyncio.set_event_loop` is used;
            without either, `RuntimeError` is raised.

    Per file descriptor, one future may wait for reading and another one for
    writing, so a sender and a receiver can share a connection (pipelining);
    a second future waiting in the same direction fails with `RuntimeError`.
    A registration is kept while the generator yields the same `PollNeeded`
    object again and removed as soon as it waits for something else or ends. A
    `PollNeeded` with a `~PollNeeded.deadline` also sets a timer of the loop
    that resumes the generator at that time, ready or not.

    Cancelling the future (directly, through its awaiting task, a timeout or
    `asyncio.gather`) closes the generator at once and removes its
    callbacks; a connection interrupted that way must be `reset()
    <HTTPConnection.reset>` before further use.

    The loop must support ``add_reader``/``add_writer``: the default loop on
    Unix does, the proactor loop of Windows does not.
    """

    #: (for `run_async`) the most seconds one wait may take; None: no limit
    _timeout: float | None = None

    def __init__(
        self, crt: Generator[Any, None, _T], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        check_generator(crt, "AioFuture()")
        if loop is None:
            loop = _default_loop()
        super().__init__(loop=loop)
        self._crt = crt
        self._send = crt.send
        self._table = _table(loop)
        self._fd = -1  # -1: nothing registered
        self._events = 0  # READ/WRITE bits registered for _fd
        self._pn: object = NOTHING  # the PollNeeded the registration was made for
        self._timer: asyncio.TimerHandle | None = None  # for a deadline or time limit
        # If cancelled before this first step, the closed generator just ends.
        loop.call_soon(self._step)

    def _step(self) -> None:
        """Resume the generator (its fd is ready) and wait for what it yields next."""
        try:
            pn = self._send(None)
        except StopIteration as exc:
            self._release()
            if not self.done():
                self.set_result(exc.value)
            return
        except (KeyboardInterrupt, SystemExit) as exc:
            self._release()
            if not self.done():
                self.set_exception(exc)
            raise
        except asyncio.CancelledError:
            self._release()
            super().cancel()
            return
        except BaseException as exc:
            self._release()
            if not self.done():
                self.set_exception(exc)
            return
        if pn is not self._pn:
            self._wait(pn)
        elif self._timeout is not None:  # progress: the time limit starts again
            self._arm_timer(pn)  # type: ignore[arg-type]

    def _wait(self, pn: object) -> None:
        """Register the loop callbacks for *pn*, a new wait."""
        if self.done():  # cancelled from inside the generator's own step
            self._close_crt()
            return
        try:
            fd, events = wait_events(pn)
            self._arm_timer(pn)  # type: ignore[arg-type]  # a PollNeeded
            # (An equal but new PollNeeded is registered anew: checking that its fd
            # still refers to the same file would cost a system call per AioFuture.)
            self._release_fd()
            table = self._table
            for bit in (READ, WRITE):
                other = table.get((fd, bit)) if events & bit else None
                if other is not None:
                    raise RuntimeError(
                        f"fd {fd} is already waited on for "
                        f"{'reading' if bit == READ else 'writing'} by another AioFuture "
                        f"({generator_name(other._crt)}); one reader and one writer per fd"
                    )
            loop = self._loop
            self._fd = fd
            if events & READ:
                loop.add_reader(fd, self._step)
                table[(fd, READ)] = self
                self._events = READ
            if events & WRITE:
                loop.add_writer(fd, self._step)
                table[(fd, WRITE)] = self
                self._events |= WRITE
            self._pn = pn
        except BaseException as exc:
            self._release()
            self._close_crt()
            if not self.done():
                self.set_exception(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise

    def _arm_timer(self, pn: PollNeeded) -> None:
        """Set the timer for *pn*'s wait: its deadline (resume then, ready or not), or
        the `run_async` time limit (fail then); or none."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        if pn.deadline is None and self._timeout is None:
            return
        delay, at_deadline = wait_limit(pn, self._timeout)
        self._timer = self._loop.call_later(
            delay or 0.0, self._on_deadline if at_deadline else self._on_timeout
        )

    def _on_timeout(self) -> None:
        """A wait of a `run_async` call took longer than its time limit."""
        self._timer = None
        pn = self._pn
        self._release()
        self._close_crt()
        if not self.done():
            self.set_exception(timed_out(self._timeout, pn))

    def _on_deadline(self) -> None:
        """The `PollNeeded.deadline` has come: resume the generator, ready or not."""
        self._timer = None
        self._pn = NOTHING  # whatever it yields next is a new wait
        self._step()

    def _release(self) -> None:
        """Remove this future's loop callbacks and timer."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        self._release_fd()

    def _release_fd(self) -> None:
        """Remove this future's reader and writer callbacks."""
        events = self._events
        fd = self._fd
        self._fd, self._events, self._pn = -1, 0, NOTHING
        if not events:
            return
        table = self._table
        loop = self._loop
        for bit, remove in ((READ, loop.remove_reader), (WRITE, loop.remove_writer)):
            if events & bit:
                del table[(fd, bit)]
                try:
                    remove(fd)
                except OSError:
                    # fd was closed while another future waits on it in the other
                    # direction, and the loop dropped that one's callback too.
                    self._wake_other(fd, READ + WRITE - bit)

    def _wake_other(self, fd: int, bit: int) -> None:
        other = self._table.get((fd, bit))
        if other is None or other is self:
            return
        # The loop forgot the fd entirely: so does the other future.
        for other_bit in (READ, WRITE):
            if other._events & other_bit:
                del self._table[(fd, other_bit)]
        other._fd, other._events, other._pn = -1, 0, NOTHING
        for remove in (self._loop.remove_reader, self._loop.remove_writer):
            with contextlib.suppress(OSError, ValueError):
                remove(fd)
        # Resumed, it retries its system call and meets the closed file itself.
        self._loop.call_soon(other._step)

    def _close_crt(self) -> None:
        try:
            self._crt.close()
        except Exception as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"closing {generator_name(self._crt)} after cancellation failed",
                    "exception": exc,
                    "future": self,
                }
            )

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the future: remove its callbacks and close the generator."""
        if self.done():
            return False
        self._release()
        # A generator cancelling its own future is closed once its step is over.
        if not getattr(self._crt, "gi_running", False):
            self._close_crt()
        return super().cancel(msg)


AioFuture.__module__ = "dugong"


class RunFuture(AioFuture[_T]):
    """`run_async` in an asyncio task: an `AioFuture` whose waits last at most *timeout*
    seconds each. asyncio's own callbacks cost less than anyio's waits."""

    def __init__(
        self, crt: Generator[Any, None, _T], loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> None:
        self._timeout = timeout
        super().__init__(crt, loop)


def _default_loop() -> asyncio.AbstractEventLoop:
    """The running loop, else the loop set for this thread (for 3.x-style programs)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    import warnings

    with warnings.catch_warnings():
        # Outside a running loop, asking for the thread's loop warns (and would create
        # one) when none was set, and raises on newer Pythons: both mean "no loop".
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return asyncio.get_event_loop()
        except (DeprecationWarning, RuntimeError):
            raise RuntimeError(
                "AioFuture() needs a running event loop: create it inside a coroutine or "
                "callback, pass loop=, or set one with asyncio.set_event_loop()"
            ) from None
