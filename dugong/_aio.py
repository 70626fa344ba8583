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

_Table = dict[tuple[int, int], "_Slot"]

# For each event loop: (fd, READ or WRITE) -> the callback registered for it.
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


class _Slot:
    """One reader or writer callback of a loop, and the `AioFuture` it resumes.

    A reader slot for a wait of a dugong socket (a `PollNeeded` with ``_linger``,
    the same object for every wait of that socket in that direction) outlives its
    future: idle, it stays registered, and the next future that waits for the
    same object takes it over. A request on a kept-alive connection then costs
    the loop no registration and removal (two ``epoll_ctl`` calls and asyncio's
    bookkeeping around them: half of the loop's work per request). An idle slot
    goes when it fires (the socket spoke unasked: the server closed it or sent
    bytes), when another wait needs its place, or when the socket is about to
    close (the transport calls `drop`).
    """

    __slots__ = ("fut", "key", "loop", "pn", "table")

    def __init__(self, fut: AioFuture[Any], pn: PollNeeded, key: tuple[int, int]) -> None:
        self.fut: AioFuture[Any] | None = fut
        self.pn = pn
        loop = fut._loop
        self.loop = weakref.ref(loop)  # (a strong one would keep _tables' key alive)
        self.table = fut._table
        self.key = key
        fd, bit = key
        if bit == READ:
            loop.add_reader(fd, self.fire)
        else:
            loop.add_writer(fd, self.fire)
        fut._table[key] = self
        if pn._linger is not None:
            pn._linger.add(self)

    def fire(self) -> None:
        """The loop's callback: the fd is ready."""
        fut = self.fut
        if fut is not None:
            fut._step()
        else:  # idle: nobody asked; the next wait registers anew
            self.drop()

    def drop(self) -> None:
        """Remove the callback (if still registered). A future still waiting is
        resumed soon: its socket is closing, and it meets that itself."""
        table, key = self.table, self.key
        if table.get(key) is not self:
            return
        del table[key]
        if self.pn._linger is not None:
            self.pn._linger.discard(self)
        fut, self.fut = self.fut, None
        loop = self.loop()
        if loop is None:
            return
        fd, bit = key
        try:
            if bit == READ:
                loop.remove_reader(fd)
            else:
                loop.remove_writer(fd)
        except OSError:
            # The fd was closed while registered in the other direction too: the loop
            # dropped both callbacks, so the other slot goes as well.
            other = table.get((fd, READ + WRITE - bit))
            if other is not None:
                with contextlib.suppress(OSError, ValueError):
                    other.drop()
        if fut is not None:
            fut._release_fd()
            loop.call_soon_threadsafe(fut._step)  # (the closing thread may be another)


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
    object again and removed as soon as it waits for something else or ends;
    one made for a dugong connection's socket stays with the loop, idle, for
    the next future that waits on that connection, until the connection
    closes. A `PollNeeded` with a `~PollNeeded.deadline` also sets a timer of
    the loop that resumes the generator at that time, ready or not.

    Cancelling the future (directly, through its awaiting task, a timeout or
    `asyncio.gather`) closes the generator at once and lets go of its
    callbacks; a connection interrupted that way must be `reset()
    <HTTPConnection.reset>` before further use. A future that waits on a
    connection closed meanwhile (`HTTPConnection.disconnect`) is resumed and
    fails as the connection's method does.

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
        self._slots: list[_Slot] = []  # the callbacks that resume it
        self._pn: object = NOTHING  # the PollNeeded they were registered for
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
        """Take or register the loop callbacks for *pn*, a new wait."""
        if self.done():  # cancelled from inside the generator's own step
            self._close_crt()
            return
        try:
            fd, events = wait_events(pn)
            self._arm_timer(pn)  # type: ignore[arg-type]  # a PollNeeded
            self._release_fd()
            table = self._table
            for bit in (READ, WRITE):
                slot = table.get((fd, bit)) if events & bit else None
                if slot is not None and slot.fut is not None:
                    raise RuntimeError(
                        f"fd {fd} is already waited on for "
                        f"{'reading' if bit == READ else 'writing'} by another AioFuture "
                        f"({generator_name(slot.fut._crt)}); one reader and one writer per fd"
                    )
            slots = self._slots  # (filled as they come: released if a later one fails)
            for bit in (READ, WRITE):
                if events & bit:
                    slot = table.get((fd, bit))
                    if slot is not None and slot.pn is pn:  # kept from an earlier future
                        slot.fut = self
                    else:
                        # (An idle slot for an equal but other object goes: its fd may
                        # name another file by now.)
                        if slot is not None:
                            slot.drop()
                        slot = _Slot(self, pn, (fd, bit))  # type: ignore[arg-type]
                    slots.append(slot)
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
        """Let go of this future's reader and writer callbacks: a dugong socket's
        reader stays registered, idle (see `_Slot`); the others are removed (a
        writer would fire at once: a socket is nearly always writable)."""
        slots = self._slots
        if not slots:
            self._pn = NOTHING
            return
        self._slots, self._pn = [], NOTHING
        for slot in slots:
            slot.fut = None
            if slot.pn._linger is None or slot.key[1] == WRITE:
                slot.drop()

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
