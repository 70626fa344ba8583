"""One conformance suite for the drivers of co_ generators.

Every test runs once per driver: `eval_coroutine` (with poll, and with select
as where poll is missing); `eval_coroutine` in several threads at once (each
thread with its own sockets); `eval_coroutines`;
`AioFuture` under `asyncio.run`; `run_async` under asyncio and under trio.
What a driver must do is the same for all of them: resume a generator when the
`PollNeeded` it yielded is satisfied (readable, writable, or either of the two),
or at its deadline; follow it to another descriptor, or to another socket under
the same number; give up after the timeout; close it when cancelled, leaving
nothing registered with the loop; refuse what is not a `PollNeeded`; pass its
return value and its exceptions through unchanged.

The other side of each socket is a thread of its own (`Peer`): a generator
hands it what must happen once it waits, so readiness really comes while the
driver waits. After every run of an event-loop driver, the loop must hold no
reader or writer that it did not hold before (``driver.leftovers``).

Driver-specific behaviour (eval_coroutines' ordering and return_exceptions,
AioFuture's loop= and its callbacks, run_async with HTTP connections) is tested
in test_loops.py, test_aio.py and test_run_async.py.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import anyio
import pytest

import dugong._poll
from co_helpers import Co, fill
from dugong import (
    POLLIN,
    POLLOUT,
    AioFuture,
    ConnectionTimedOut,
    PollNeeded,
    eval_coroutine,
    eval_coroutines,
    run_async,
)

#: No case needs longer: a driver that misses an event fails by this limit, not by hanging.
LIMIT = 5.0
#: How many generators the "threads" driver runs at once, each in its own thread.
THREADS = 4
BOTH = POLLIN | POLLOUT

Make = Callable[[], Any]


class Cancelled(Exception):
    """Raised by the signal handler that interrupts a blocking driver."""


# --------------------------------------------------------------------- the other side


class Peer:
    """A thread that runs, in order, what the generators hand it with `soon`."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], threading.Event] | None
        ] = queue.SimpleQueue()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="driver-test-peer", daemon=True)
        self._thread.start()

    def soon(self, fn: Callable[..., Any], *args: Any) -> threading.Event:
        """Run ``fn(*args)`` in the peer thread; the event is set once it has run."""
        done = threading.Event()
        self._jobs.put((fn, args, done))
        return done

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, done = job
            try:
                fn(*args)
            except BaseException as exc:  # reported by stop()
                self.errors.append(exc)
            finally:
                done.set()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(LIMIT)
        assert not self._thread.is_alive()
        assert self.errors == []


def pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair: the first end non-blocking (the generator's), the second blocking."""
    a, b = socket.socketpair()
    a.setblocking(False)
    return a, b


def drain(sock: socket.socket, size: int) -> None:
    """Receive *size* bytes from the blocking *sock*."""
    while size:
        size -= len(sock.recv(min(size, 1 << 20)))


def close(*socks: socket.socket) -> None:
    for sock in socks:
        sock.close()


def ready(fd: int) -> tuple[bool, bool]:
    """(readable, writable) right now."""
    r, w, _ = select.select([fd], [fd], [], 0)
    return bool(r), bool(w)


# --------------------------------------------------------------------- the drivers


class Driver:
    """Runs a generator made by ``make()`` with one driver; raises what the run raised."""

    name = ""
    #: generators per run (all made by the same ``make``)
    runs = 1
    #: what running out of time raises
    timeout_error: type[BaseException] = ConnectionTimedOut

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.leftovers: list[str] = []  # registrations an event loop still held after a run

    def __repr__(self) -> str:
        return self.name

    def run(self, make: Make, timeout: float | None = LIMIT) -> Any:
        raise NotImplementedError

    def run_cancelled(self, make: Callable[[Callable[[], object]], Any]) -> None:
        """Cancel the run of ``make(on_wait)`` once the generator calls ``on_wait()``."""
        raise NotImplementedError

    def _interrupt_main_thread(self, run: Callable[[Callable[[], object]], Any]) -> None:
        # A blocking driver is cancelled the way Ctrl-C does it: a signal whose
        # handler raises in the main thread, interrupting the wait.
        main = threading.main_thread().ident
        assert main == threading.get_ident()
        handled = threading.Event()

        def handler(signum: int, frame: Any) -> None:
            if not handled.is_set():  # once: a repeated signal must not hit the clean-up
                handled.set()
                raise Cancelled

        def interrupt() -> None:
            # A signal that arrives just before the driver enters poll() does not
            # interrupt it: the handler runs only when the wait is over. Until the
            # handler has run, the signal is sent again now and then.
            for _ in range(int(LIMIT / 0.05)):
                signal.pthread_kill(main, signal.SIGUSR1)
                if handled.wait(0.05):
                    return

        previous = signal.signal(signal.SIGUSR1, handler)
        try:
            with pytest.raises(Cancelled):
                run(lambda: self.peer.soon(interrupt))
        finally:
            signal.signal(signal.SIGUSR1, previous)


class EvalCoroutine(Driver):
    name = "eval_coroutine"

    def run(self, make: Make, timeout: float | None = LIMIT) -> Any:
        return eval_coroutine(make(), timeout)

    def run_cancelled(self, make: Callable[[Callable[[], object]], Any]) -> None:
        self._interrupt_main_thread(lambda on_wait: eval_coroutine(make(on_wait), LIMIT))


class EvalCoroutineSelect(EvalCoroutine):
    """eval_coroutine as it runs where select.poll is missing (with select.select)."""

    name = "eval_coroutine-select"

    def run(self, make: Make, timeout: float | None = LIMIT) -> Any:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dugong._poll, "_HAVE_POLL", False)
            return super().run(make, timeout)

    def run_cancelled(self, make: Callable[[Callable[[], object]], Any]) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dugong._poll, "_HAVE_POLL", False)
            super().run_cancelled(make)


class Threads(Driver):
    """eval_coroutine in `THREADS` threads at once, each with a generator of its own."""

    name = "threads"
    runs = THREADS

    def run(self, make: Make, timeout: float | None = LIMIT) -> Any:
        start = threading.Barrier(THREADS)
        outcomes: list[tuple[bool, Any]] = [(False, None)] * THREADS

        def one(index: int) -> None:
            start.wait(LIMIT)
            try:
                outcomes[index] = (True, eval_coroutine(make(), timeout))
            except BaseException as exc:
                outcomes[index] = (False, exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(2 * LIMIT)
            assert not thread.is_alive()
        returned, first = outcomes[0]
        if returned:
            assert outcomes == [(True, first)] * THREADS
            return first
        assert all(not ok and type(exc) is type(first) for ok, exc in outcomes), outcomes
        raise first

    def run_cancelled(self, make: Callable[[Callable[[], object]], Any]) -> None:
        pytest.skip("a blocking call in a thread ends only by its timeout (see test_timeout)")


class EvalCoroutines(Driver):
    name = "eval_coroutines"

    def run(self, make: Make, timeout: float | None = LIMIT) -> Any:
        (result,) = eval_coroutines(make(), timeout=timeout)
        return result

    def run_cancelled(self, make: Callable[[Callable[[], object]], Any]) -> None:
        self._interrupt_main_thread(lambda on_wait: eval_coroutines(make(on_wait), timeout=LIMIT))


def asyncio_waiters() -> set[int]:
    """The descriptors the running asyncio loop watches."""
    return set(asyncio.get_running_loop()._selector.get_map())  # type: ignore[attr-defined]


class AioFutureDriver(Driver):
    """AioFuture under asyncio.run; a timeout is asyncio.wait_for's."""

    name = "AioFuture"
    timeout_error = TimeoutError

    def run(self, make: Make, timeout: float | None = LIMIT) -> Any:
        async def main() -> Any:
            before = asyncio_waiters()
            try:
                return await asyncio.wait_for(AioFuture(make()), timeout)
            finally:
                self.leftovers.extend(f"fd {fd}" for fd in asyncio_waiters() - before)

        return asyncio.run(main())

    def run_cancelled(self, make: Callable[[Callable[[], object]], Any]) -> None:
        async def main() -> None:
            before = asyncio_waiters()
            waiting = asyncio.Event()
            fut = AioFuture(make(waiting.set))
            await waiting.wait()
            assert fut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fut
            self.leftovers.extend(f"fd {fd}" for fd in asyncio_waiters() - before)

        asyncio.run(main())


class RunAsync(Driver):
    """run_async under anyio.run with one backend."""

    def __init__(self, peer: Peer, backend: str) -> None:
        super().__init__(peer)
        self.backend = backend
        self.name = f"run_async-{backend}"

    async def _waiters(self) -> list[str]:
        """What the loop waits for: the descriptors (asyncio), or the waiting tasks (trio)."""
        await anyio.wait_all_tasks_blocked()  # the loop's own tasks are waiting too, now
        if self.backend == "asyncio":
            return [f"fd {fd}" for fd in sorted(asyncio_waiters())]
        import trio

        stats = trio.lowlevel.current_statistics().io_statistics
        return ["a task waiting to read"] * stats.tasks_waiting_read + [
            "a task waiting to write"
        ] * stats.tasks_waiting_write

    async def _check(self, before: list[str]) -> None:
        after = await self._waiters()
        for waiter in before:
            if waiter in after:
                after.remove(waiter)
        self.leftovers.extend(after)

    def run(self, make: Make, timeout: float | None = LIMIT) -> Any:
        async def main() -> Any:
            before = await self._waiters()
            try:
                return await run_async(make(), timeout)
            finally:
                await self._check(before)

        return anyio.run(main, backend=self.backend)

    def run_cancelled(self, make: Callable[[Callable[[], object]], Any]) -> None:
        async def main() -> None:
            before = await self._waiters()
            waiting = anyio.Event()
            async with anyio.create_task_group() as group:
                group.start_soon(run_async, make(waiting.set), LIMIT)
                await waiting.wait()
                group.cancel_scope.cancel()
            await self._check(before)

        anyio.run(main, backend=self.backend)


DRIVERS: dict[str, Callable[[Peer], Driver]] = {
    "eval_coroutine": EvalCoroutine,
    "eval_coroutine-select": EvalCoroutineSelect,
    "threads": Threads,
    "eval_coroutines": EvalCoroutines,
    "AioFuture": AioFutureDriver,
    "run_async-asyncio": lambda peer: RunAsync(peer, "asyncio"),
    "run_async-trio": lambda peer: RunAsync(peer, "trio"),
}


@pytest.fixture
def peer() -> Iterator[Peer]:
    peer = Peer()
    yield peer
    peer.stop()


@pytest.fixture(params=list(DRIVERS))
def driver(request: pytest.FixtureRequest, peer: Peer) -> Iterator[Driver]:
    """Each driver in turn; afterwards, no loop may hold a registration it did not hold."""
    drv = DRIVERS[request.param](peer)
    yield drv
    assert drv.leftovers == []


# --------------------------------------------------------------------- readiness


def test_pollin(driver: Driver, peer: Peer) -> None:
    def reads() -> Co:
        a, b = pair()
        sent = peer.soon(b.sendall, b"in")
        try:
            yield PollNeeded(a.fileno(), POLLIN)
            return a.recv(10)
        finally:
            sent.wait(LIMIT)
            close(a, b)

    assert driver.run(reads) == b"in"


def test_pollin_on_a_pipe(driver: Driver, peer: Peer) -> None:
    def reads() -> Co:
        r, w = os.pipe()
        os.set_blocking(r, False)
        written = peer.soon(os.write, w, b"piped")
        try:
            yield PollNeeded(r, POLLIN)
            return os.read(r, 10)
        finally:
            written.wait(LIMIT)
            os.close(r)
            os.close(w)

    assert driver.run(reads) == b"piped"


def test_pollout(driver: Driver, peer: Peer) -> None:
    def writes() -> Co:
        a, b = pair()
        drained = peer.soon(drain, b, fill(a))
        try:
            yield PollNeeded(a.fileno(), POLLOUT)
            return a.send(b"out")
        finally:
            drained.wait(LIMIT)
            close(a, b)

    assert driver.run(writes) == 3


@pytest.mark.parametrize("comes", ["writability", "readability"])
def test_both_directions_resume_on_either(driver: Driver, peer: Peer, comes: str) -> None:
    """POLLIN | POLLOUT on a socket that is neither: only one of the two comes."""

    def waits() -> Co:
        a, b = pair()
        if comes == "writability":
            done = peer.soon(drain, b, fill(a))
        else:
            fill(a)
            done = peer.soon(b.sendall, b"r")
        try:
            yield PollNeeded(a.fileno(), BOTH)
            return ready(a.fileno())
        finally:
            done.wait(LIMIT)
            close(a, b)

    assert driver.run(waits) == ((False, True) if comes == "writability" else (True, False))


# --------------------------------------------------------------------- deadlines


def test_deadline_resumes_without_readiness(driver: Driver, peer: Peer) -> None:
    def waits() -> Co:
        a, b = pair()
        try:
            start = time.monotonic()
            yield PollNeeded(a.fileno(), POLLIN, start + 0.05)  # nothing comes
            waited = time.monotonic() - start
            assert waited >= 0.049, waited
            assert ready(a.fileno())[0] is False
            sent = peer.soon(b.sendall, b"later")
            yield PollNeeded(a.fileno(), POLLIN)  # an ordinary wait after it
            sent.wait(LIMIT)
            return a.recv(10)
        finally:
            close(a, b)

    assert driver.run(waits) == b"later"


# --------------------------------------------------------------------- descriptors


def test_fd_changes_between_waits(driver: Driver, peer: Peer) -> None:
    def hops() -> Co:
        a1, b1 = pair()
        a2, b2 = pair()
        try:
            got = []
            for a, b, data in ((a1, b1, b"1"), (a2, b2, b"2"), (a1, b1, b"3")):
                sent = peer.soon(b.sendall, data)
                yield PollNeeded(a.fileno(), POLLIN)
                sent.wait(LIMIT)
                got.append(a.recv(10))
            yield PollNeeded(a2.fileno(), POLLOUT)  # same fd, other direction
            got.append(a2.send(b"x"))
            return got
        finally:
            close(a1, b1, a2, b2)

    assert driver.run(hops) == [b"1", b"2", b"3", 1]


def test_closed_fd_reused_by_another_socket(driver: Driver, peer: Peer) -> None:
    """An equal `PollNeeded`, but the socket behind the number was closed and replaced."""

    def reconnects() -> Co:
        a, b = pair()
        c, d = pair()
        fd = a.fileno()
        new = None
        try:
            b.sendall(b"old")
            yield PollNeeded(fd, POLLIN)
            assert a.recv(10) == b"old"
            # Close a's socket and put c's under its number in one step (dup2), so
            # that no other thread can take the number in between.
            a.detach()
            os.dup2(c.fileno(), fd)
            c.close()
            new = socket.socket(fileno=fd)
            sent = peer.soon(d.sendall, b"new")
            yield PollNeeded(fd, POLLIN)
            sent.wait(LIMIT)
            return new.recv(10)
        finally:
            close(b, d, *([a, c] if new is None else [new]))

    assert driver.run(reconnects) == b"new"


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="needs eventfd (Linux)")
def test_closed_eventfd_reused_by_another_eventfd(driver: Driver, peer: Peer) -> None:
    """Anonymous files such as eventfds all share one inode: an equal `PollNeeded` on a
    number that now holds another eventfd must still be watched."""

    def signals() -> Co:
        first, second = os.eventfd(0), os.eventfd(0)
        try:
            os.eventfd_write(first, 1)
            yield PollNeeded(first, POLLIN)
            os.eventfd_read(first)
            os.dup2(second, first)  # the number of the first now holds the second
            os.close(second)
            sent = peer.soon(os.eventfd_write, first, 7)
            yield PollNeeded(first, POLLIN)
            sent.wait(LIMIT)
            return os.eventfd_read(first)
        finally:
            os.close(first)

    assert driver.run(signals) == 7


# --------------------------------------------------------------------- ending early


@pytest.mark.parametrize("deadline", [None, 2 * LIMIT], ids=["no-deadline", "later-deadline"])
def test_timeout(driver: Driver, deadline: float | None) -> None:
    """A wait that exceeds the timeout ends the run; the generator is closed."""
    closed = []

    def stalls() -> Co:
        a, b = pair()
        try:
            yield PollNeeded(
                a.fileno(), POLLIN, None if deadline is None else time.monotonic() + deadline
            )
        finally:
            close(a, b)
            closed.append(True)

    start = time.monotonic()
    with pytest.raises(driver.timeout_error) as info:
        driver.run(stalls, timeout=0.1)
    assert 0.099 <= time.monotonic() - start < LIMIT
    assert type(info.value) is driver.timeout_error
    assert closed == [True] * driver.runs


@pytest.mark.parametrize("mask", [POLLIN, POLLOUT, BOTH], ids=["POLLIN", "POLLOUT", "both"])
def test_cancellation_closes_and_unregisters(driver: Driver, mask: int) -> None:
    events = []

    def waits(on_wait: Callable[[], object]) -> Co:
        a, b = pair()
        try:
            if mask & POLLOUT:
                fill(a)
            on_wait()
            yield PollNeeded(a.fileno(), mask)
            events.append("resumed")
        finally:
            close(a, b)
            events.append("closed")

    driver.run_cancelled(waits)
    assert events == ["closed"]
    assert driver.leftovers == []


# --------------------------------------------------------------------- what comes back


@pytest.mark.parametrize("value", [42, None, "text", (0, POLLIN)], ids=repr)
def test_foreign_yield(driver: Driver, value: object) -> None:
    closed = []

    def yields() -> Co:
        try:
            yield value  # type: ignore[misc]
        finally:
            closed.append(True)

    with pytest.raises(TypeError, match=f"yielded {re.escape(repr(value))}, not a PollNeeded"):
        driver.run(yields)
    assert closed == [True] * driver.runs


@pytest.mark.parametrize(
    ("fd", "mask", "message"),
    [
        (0, 0, "mask must be POLLIN, POLLOUT or both"),
        (0, POLLIN | select.POLLPRI, "mask must be POLLIN, POLLOUT or both"),
        (-1, POLLIN, "fd must not be negative"),
    ],
    ids=["mask-0", "mask-POLLPRI", "fd-negative"],
)
def test_malformed_poll_needed(driver: Driver, fd: int, mask: int, message: str) -> None:
    closed = []

    def yields() -> Co:
        try:
            yield PollNeeded(fd, mask)
        finally:
            closed.append(True)

    with pytest.raises(ValueError, match=message):
        driver.run(yields)
    assert closed == [True] * driver.runs


def test_not_a_generator(driver: Driver) -> None:
    with pytest.raises(TypeError, match="co_ generators, not list"):
        driver.run(lambda: [PollNeeded(0, POLLIN)])


@pytest.mark.parametrize("value", [7, None])
def test_plain_return(driver: Driver, value: Any) -> None:
    def quick() -> Co:
        return value
        yield  # pragma: no cover - makes this a generator

    assert driver.run(quick) is value


@pytest.mark.parametrize("when", ["at-once", "after-a-wait"])
def test_exception_propagates_unchanged(driver: Driver, when: str) -> None:
    raised: list[BaseException] = []

    def fails() -> Generator[PollNeeded, None, None]:
        a, b = pair()
        try:
            if when == "after-a-wait":
                yield PollNeeded(a.fileno(), POLLOUT)
            exc = KeyError(f"from {threading.current_thread().name}")
            raised.append(exc)
            raise exc
        finally:
            close(a, b)

    with pytest.raises(KeyError) as info:
        driver.run(fails)
    assert any(info.value is exc for exc in raised)
    assert len(raised) == driver.runs
