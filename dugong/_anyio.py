"""`run_async`: drive a co_ generator in any async framework that anyio supports."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from ._drive import NOTHING, check_generator, check_wait, timed_out, wait_limit
from ._poll import POLLIN, POLLOUT

__all__ = ["run_async"]

_T = TypeVar("_T")


async def run_async(crt: Generator[Any, None, _T], timeout: float | None = None) -> _T:
    """Run the ``co_`` generator *crt* to completion in asyncio or trio; its return value.

    In an asyncio task, *crt* runs on the loop's reader and writer callbacks,
    as under `AioFuture` (which costs less than anyio's waits, and needs no
    anyio); its first step runs at the loop's next turn. Elsewhere (trio) it
    starts at once, and each `PollNeeded` is awaited with anyio's
    ``wait_readable``/``wait_writable``; one that asks for both (``POLLIN |
    POLLOUT``) resumes *crt* as soon as either comes, and the other wait is
    cancelled. A `~PollNeeded.deadline`
    resumes *crt* at that time, ready or not. If one wait takes longer than
    *timeout* seconds, `ConnectionTimedOut` is raised. When the calling task
    is cancelled, *crt* is closed at once and nothing stays registered with
    the framework: if it had started, the connection then raises `StateError`
    until `HTTPConnection.reset`.

    Raises:
        ConnectionTimedOut: a wait took longer than *timeout*; *crt* has been
            closed.
        TypeError: *crt* is not a generator, or it yielded something other
            than a `PollNeeded`.
        ValueError: *crt* yielded a `PollNeeded` whose mask is not `POLLIN`,
            `POLLOUT` or both.
        ImportError: anyio is not installed (outside asyncio).

    Any exception of the generator itself propagates.

    Outside asyncio it needs the optional ``anyio`` package (``pip install
    'dugong[async]'``).
    """
    asyncio = sys.modules.get("asyncio")  # (not imported: no asyncio loop runs)
    loop = None if asyncio is None else asyncio._get_running_loop()
    if loop is not None and asyncio.current_task(loop) is not None:  # type: ignore[union-attr]
        # An asyncio task (not a trio task of trio-asyncio): asyncio's own callbacks,
        # cheaper than anyio's waits.
        from ._aio import RunFuture

        check_generator(crt, "run_async()")
        return await RunFuture(crt, loop, timeout)
    try:
        import anyio
    except ImportError as exc:
        raise ImportError(
            "dugong.run_async needs the anyio package: install it with "
            "pip install 'dugong[async]' (or pip install anyio)"
        ) from exc
    check_generator(crt, "run_async()")
    move_on_after = anyio.move_on_after
    last: object = NOTHING  # the value that fd, wait and deadline below were taken from
    fd = -1
    wait: Callable[[int], Awaitable[None]] = anyio.wait_readable
    deadline = None
    try:
        pn = crt.send(None)
        while True:
            if pn is not last:
                fd, mask = check_wait(pn)
                wait = (
                    anyio.wait_readable
                    if mask == POLLIN
                    else anyio.wait_writable
                    if mask == POLLOUT
                    else _wait_either
                )
                last = pn
                deadline = pn.deadline
            if timeout is None and deadline is None:
                await wait(fd)
            else:
                limit, at_deadline = wait_limit(pn, timeout)
                with move_on_after(limit) as scope:
                    await wait(fd)
                if scope.cancelled_caught and not at_deadline:
                    raise timed_out(timeout, pn)
            pn = crt.send(None)
    except StopIteration as exc:
        return exc.value  # type: ignore[no-any-return]
    finally:
        crt.close()


async def _wait_either(fd: int) -> None:
    """Wait until *fd* is readable or writable, whichever comes first."""
    import anyio

    failed: list[Exception] = []

    async def wait(waiter: Callable[[int], Awaitable[None]], scope: anyio.CancelScope) -> None:
        try:
            await waiter(fd)
        except Exception as exc:  # e.g. the fd was closed: raised plainly, not in a group
            failed.append(exc)
        scope.cancel()  # ends the other wait, which removes its registration

    async with anyio.create_task_group() as group:
        group.start_soon(wait, anyio.wait_readable, group.cancel_scope)
        group.start_soon(wait, anyio.wait_writable, group.cancel_scope)
    if failed:
        raise failed[0]
