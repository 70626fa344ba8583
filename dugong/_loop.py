"""`eval_coroutines`: many ``co_`` generators in one epoll (or `selectors`) loop."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import select
import selectors
import threading
import time
from collections import deque
from collections.abc import Generator
from typing import Any

from ._drive import (
    NOTHING,
    READ,
    WRITE,
    check_generator,
    file_id,
    generator_name,
    same_file,
    timed_out,
    wait_events,
)

__all__ = ["eval_coroutines"]


class _Running(threading.local):
    """How many `eval_coroutines` loops run in this thread now (nested ones count)."""

    loops = 0


#: read by the pool: only a generator that this loop runs collects requests to send
#: together, as it is put back behind the ones ready now for that (`PollNeeded._now`)
RUNNING = _Running()


def _directions(events: int) -> str:
    return {READ: "reading", WRITE: "writing"}.get(events, "reading and writing")


class _Selectors:
    """The loop's selector where there is no epoll: the platform's best in `selectors`.
    Registrations take `READ`/`WRITE` bits; `select` gives (fd, events), where
    events has `IN` for a reader to step and `OUT` for a writer."""

    IN = READ
    OUT = WRITE

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self.register = self._sel.register
        self.modify = self._sel.modify
        self.unregister = self._sel.unregister
        self.close = self._sel.close

    def select(self, timeout: float | None) -> list[tuple[int, int]]:
        return [(key.fd, events) for key, events in self._sel.select(timeout)]


class _Epoll:
    """The loop's selector on Linux: epoll itself, as `_Selectors` but without the key
    object that `selectors` looks up for each event."""

    if hasattr(select, "epoll"):
        IN = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
        OUT = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
        _MASKS = (0, select.EPOLLIN, select.EPOLLOUT, select.EPOLLIN | select.EPOLLOUT)

    def __init__(self) -> None:
        self._ep = ep = select.epoll()
        self.close = ep.close
        self.unregister = ep.unregister

    def register(self, fd: int, events: int) -> None:
        self._ep.register(fd, self._MASKS[events])

    def modify(self, fd: int, events: int) -> None:
        self._ep.modify(fd, self._MASKS[events])

    def select(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._ep.poll(-1 if timeout is None else timeout)


class _Task:
    """One generator of `eval_coroutines` and what it waits for."""

    __slots__ = ("dormant", "events", "fd", "fid", "gen", "index", "pn", "serial")

    def __init__(self, index: int, gen: Generator[Any, None, Any]) -> None:
        self.index = index
        self.gen = gen
        self.fd = -1  # -1: not registered
        self.events = 0
        self.pn: object = NOTHING  # the PollNeeded the registration was made for
        self.fid: tuple[int, int] | None = None
        self.serial = 0  # counts waits, to recognise outdated deadlines
        #: it waits for a `PollNeeded._now` (so it is ready): its registration, kept
        #: for its next wait, may be taken over meanwhile (see `_Runner.register`)
        self.dormant = False


class _Runner:
    """The loop behind `eval_coroutines`."""

    def __init__(
        self,
        sel: _Selectors | _Epoll,
        size: int,
        timeout: float | None,
        return_exceptions: bool,
    ) -> None:
        self.sel = sel
        self.results: list[Any] = [None] * size
        self.timeout = timeout
        self.return_exceptions = return_exceptions
        self.active: set[_Task] = set()
        self.ready: list[_Task] = []
        # fd -> {READ or WRITE: the task waiting for it}
        self.owners: dict[int, dict[int, _Task]] = {}
        # (deadline, serial, task) in the order the waits began, hence by deadline
        self.deadlines: deque[tuple[float, int, _Task]] = deque()
        # heap of (PollNeeded.deadline, order, serial, task): resume then, ready or not
        self.wakeups: list[tuple[float, int, int, _Task]] = []
        self.order = itertools.count()

    # -- registrations

    def register(self, task: _Task, pn: object) -> None:
        fd, events = wait_events(pn)
        if fd == task.fd and events == task.events and same_file(fd, task.fid):
            task.pn = pn  # same wait on the same open file: keep the registration
            return
        self.release(task)
        owners = self.owners.get(fd)
        if owners is None:
            self.sel.register(fd, events)
            self.owners[fd] = owners = {}
        else:
            mask = _union(owners)
            for bit in (READ, WRITE):
                other = owners.get(bit)
                if events & bit and other is not None:
                    if not other.dormant:
                        raise RuntimeError(
                            f"fd {fd} is already waited on for {_directions(bit)} by another "
                            f"generator ({generator_name(other.gen)}); one reader and one "
                            "writer per fd"
                        )
                    if not same_file(fd, other.fid):  # closed since: the selector forgot it
                        self.forget(fd)
                        self.register(task, pn)
                        return
                    self.disown(other)  # it registers again if it waits for this again
            union = events | _union(owners)
            if union != mask:
                self.sel.modify(fd, union)
        for bit in (READ, WRITE):
            if events & bit:
                owners[bit] = task
        task.fd, task.events, task.pn, task.fid = fd, events, pn, file_id(fd)

    def disown(self, task: _Task) -> None:
        """Forget *task*'s registration without telling the selector (its fd stays
        registered for whoever takes it over)."""
        owners = self.owners[task.fd]
        for bit in (READ, WRITE):
            if task.events & bit:
                del owners[bit]
        task.fd, task.events, task.pn, task.fid = -1, 0, NOTHING, None

    def forget(self, fd: int) -> None:
        """*fd* was closed under its registrations: drop them all (a generator still
        waiting on it is stepped, to find out by itself, as in `release`)."""
        for other in set(self.owners.pop(fd).values()):
            other.fd, other.events, other.pn, other.fid = -1, 0, NOTHING, None
            if not other.dormant:
                self.ready.append(other)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.sel.unregister(fd)

    def release(self, task: _Task) -> None:
        fd = task.fd
        if fd < 0:
            return
        owners = self.owners[fd]
        for bit in (READ, WRITE):
            if task.events & bit:
                del owners[bit]
        task.fd, task.events, task.pn, task.fid = -1, 0, NOTHING, None
        if not owners:
            del self.owners[fd]
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.sel.unregister(fd)
            return
        try:
            self.sel.modify(fd, _union(owners))
        except OSError:
            # The fd was closed under the other waiter: let it find out by itself.
            del self.owners[fd]
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.sel.unregister(fd)
            for other in set(owners.values()):
                other.fd, other.events, other.pn, other.fid = -1, 0, NOTHING, None
                self.ready.append(other)

    # -- running

    def step(self, task: _Task) -> None:
        task.dormant = False
        try:
            pn = task.gen.send(None)
        except StopIteration as exc:
            self.finish(task)
            self.results[task.index] = exc.value
            return
        except Exception as exc:
            self.finish(task)
            self.failed(task, exc)
            return
        except BaseException:
            self.finish(task)
            raise
        task.serial += 1  # a new wait: deadlines of the previous one are void
        if pn is not task.pn:
            if getattr(pn, "_now", False):  # over at once: behind the generators ready now
                task.dormant = True  # (its registration is kept: see `register`)
                self.ready.append(task)
                return
            try:
                self.register(task, pn)
            except Exception as exc:
                self.finish(task)
                task.gen.close()
                self.failed(task, exc)
                return
        if self.timeout is not None:
            self.deadlines.append((time.monotonic() + self.timeout, task.serial, task))
        wakeup = pn.deadline
        if wakeup is not None:
            heapq.heappush(self.wakeups, (wakeup, next(self.order), task.serial, task))
        park = pn._park
        if park is not None:  # woken by code of this thread: no need to wait for the fd
            park(self.poke, (task, task.serial))

    def poke(self, arg: tuple[_Task, int]) -> None:
        """A parked wait has ended (`PollNeeded._park`): its task is ready."""
        task, serial = arg
        if task.serial == serial:
            self.ready.append(task)

    def finish(self, task: _Task) -> None:
        self.release(task)
        self.active.discard(task)

    def failed(self, task: _Task, exc: Exception) -> None:
        if not self.return_exceptions:
            raise exc
        self.results[task.index] = exc

    def expire(self, now: float) -> None:
        """Fail each task whose current wait has passed its deadline."""
        queue = self.deadlines
        while queue:
            deadline, serial, task = queue[0]
            if task.serial != serial or task not in self.active:
                queue.popleft()
                continue
            if deadline > now:
                return
            queue.popleft()
            exc = timed_out(self.timeout, task.pn)
            self.finish(task)
            task.gen.close()
            self.failed(task, exc)

    def wake(self, now: float) -> float | None:
        """Queue the tasks whose `PollNeeded.deadline` has come; the next one."""
        heap = self.wakeups
        while heap:
            deadline, _, serial, task = heap[0]
            if task.serial != serial or task not in self.active:
                heapq.heappop(heap)
            elif deadline <= now:
                heapq.heappop(heap)
                self.ready.append(task)
            else:
                return deadline
        return None

    def run(self) -> None:
        sel, owners, timeout = self.sel, self.owners, self.timeout
        for_reader, for_writer = sel.IN, sel.OUT
        while True:
            while self.ready:
                batch, self.ready = self.ready, []
                for task in batch:
                    if task in self.active:
                        self.step(task)
            if not self.active:
                return
            wait = None
            if self.wakeups or timeout is not None:
                now = time.monotonic()
                wakeup = self.wake(now) if self.wakeups else None
                if self.ready:
                    continue
                if timeout is not None:
                    self.expire(now)
                    if not self.active:
                        return
                    if self.deadlines:
                        wait = self.deadlines[0][0] - now
                if wakeup is not None and (wait is None or wakeup - now < wait):
                    wait = wakeup - now
                if wait is not None:
                    wait = max(0.0, wait)
            for fd, events in sel.select(wait):
                waiting = owners.get(fd)
                if waiting is None:
                    continue
                reader = waiting.get(READ) if events & for_reader else None
                writer = waiting.get(WRITE) if events & for_writer else None
                if reader is not None:
                    self.step(reader)
                if writer is not None and writer is not reader and writer.fd == fd:
                    self.step(writer)

    def close_all(self) -> None:
        """Close the generators that did not finish (after an exception)."""
        for task in self.active:
            self.release(task)
            with contextlib.suppress(Exception):  # the first exception is the one to report
                task.gen.close()
        self.active.clear()


def _union(owners: dict[int, _Task]) -> int:
    events = 0
    for bit in owners:
        events |= bit
    return events


def eval_coroutines(
    *crts: Generator[Any, None, Any], timeout: float | None = None, return_exceptions: bool = False
) -> list[Any]:
    """Run several ``co_`` generators concurrently in one select loop.

    The blocking counterpart of `asyncio.gather` for ``co_`` generators: each
    one is stepped whenever the `PollNeeded` it yielded is satisfied, using
    epoll on Linux and the best selector of `selectors` elsewhere (kqueue on
    BSD and macOS). Returns their return values, in the order given.

    Two generators may wait on the same file descriptor in opposite directions
    (a sender and a receiver on one connection); a second waiter in the same
    direction fails with `RuntimeError`, a yielded value that is not a
    `PollNeeded` with `TypeError`, a `PollNeeded` whose mask is not `POLLIN`,
    `POLLOUT` or both with `ValueError`. A registration with the selector is
    kept while a generator waits for the same thing again.

    A `PollNeeded` with a `~PollNeeded.deadline` resumes its generator at
    that time even if the descriptor is not ready (unless *timeout* runs out
    first).

    Args:
        crts: the generators, e.g. ``conn.co_readall()``.
        timeout: if a generator waits longer than this many seconds for one
            `PollNeeded`, it is closed and fails with `ConnectionTimedOut`
            (None: no limit).
        return_exceptions: if False, the first exception of a generator is
            raised once the other generators are closed; if True, each
            generator's exception is put in its place in the result list and
            the others continue.
    """
    for crt in crts:
        check_generator(crt, "eval_coroutines()")
    sel = _Epoll() if hasattr(select, "epoll") else _Selectors()
    try:
        runner = _Runner(sel, len(crts), timeout, return_exceptions)
        for index, crt in enumerate(crts):
            task = _Task(index, crt)
            runner.active.add(task)
            runner.ready.append(task)
        RUNNING.loops += 1
        try:
            runner.run()
        finally:
            RUNNING.loops -= 1
            runner.close_all()
        return runner.results
    finally:
        sel.close()


eval_coroutines.__module__ = "dugong"
