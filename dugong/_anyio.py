"""`run_async`: drive a co_ generator in any async framework that anyio supports."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from ._exceptions import ConnectionTimedOut
from ._poll import POLLIN, PollNeeded

__all__ = ["run_async"]

_T = TypeVar("_T")


async def run_async(crt: Generator[Any, None, _T], timeout: float | None = None) -> _T:
    """Run the ``co_`` generator *crt* to completion in asyncio or trio; its return value.

    Each `PollNeeded` is awaited with anyio's ``wait_readable``/``wait_writable``
    (and its `~PollNeeded.deadline`, if any, is honoured). If one wait takes
    longer than *timeout* seconds, `ConnectionTimedOut` is raised. When the
    calling task is cancelled, *crt* is closed at once: the connection then
    raises `StateError` until `HTTPConnection.reset`.

    Needs the optional ``anyio`` package (``pip install 'dugong[async]'``).
    """
    try:
        import anyio
    except ImportError as exc:
        raise ImportError(
            "dugong.run_async needs the anyio package: install it with "
            "pip install 'dugong[async]' (or pip install anyio)"
        ) from exc
    wait_readable = anyio.wait_readable
    wait_writable = anyio.wait_writable
    try:
        pn = crt.send(None)
        while True:
            if not isinstance(pn, PollNeeded):
                raise TypeError(f"co_ generator yielded {pn!r}, not a PollNeeded")
            wait = wait_readable if pn[1] & POLLIN else wait_writable
            left = pn.until_deadline(timeout)
            limit = timeout if left is None else left
            if limit is None:
                await wait(pn[0])
            else:
                with anyio.move_on_after(limit) as scope:
                    await wait(pn[0])
                if scope.cancelled_caught and left is None:
                    raise ConnectionTimedOut(f"No progress for {timeout} seconds")
            pn = crt.send(None)
    except StopIteration as exc:
        return exc.value  # type: ignore[no-any-return]
    finally:
        crt.close()
