"""Fetch several URLs concurrently under asyncio, one connection each.

Usage: python asyncio_fetch.py [--deadline SECONDS] URL [URL ...]

Each URL is fetched twice on its connection: first with the whole exchange
in one AioFuture, under a deadline, then once more step by step.
"""

import argparse
import asyncio
from collections.abc import Generator
from urllib.parse import urlsplit

from dugong import AioFuture, HTTPConnection, PollNeeded


def co_fetch(conn: HTTPConnection, path: str) -> Generator[PollNeeded, None, tuple[int, int]]:
    """GET *path*: the whole exchange as one generator, composed with yield from."""
    yield from conn.co_send_request("GET", path)
    resp = yield from conn.co_read_response()
    body = yield from conn.co_readall()
    return resp.status, len(body)


async def fetch_with_deadline(conn: HTTPConnection, path: str, seconds: float) -> tuple[int, int]:
    """Run co_fetch as one AioFuture; give up after *seconds*."""
    try:
        async with asyncio.timeout(seconds):
            return await AioFuture(co_fetch(conn, path))
    except TimeoutError:
        # Cancelling the future closed the generator in mid-exchange: the
        # connection must be reset before it can be used again.
        conn.reset()
        raise


async def fetch_step_by_step(conn: HTTPConnection, path: str) -> tuple[int, int]:
    """One AioFuture per co_ call: the same exchange, awaited step by step."""
    await AioFuture(conn.co_send_request("GET", path))
    resp = await AioFuture(conn.co_read_response())
    body = await AioFuture(conn.co_readall())
    return resp.status, len(body)


async def fetch_twice(url: str, deadline: float) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    with HTTPConnection(parts.hostname, parts.port) as conn:
        try:
            status, size = await fetch_with_deadline(conn, path, deadline)
        except TimeoutError:
            return f"{url}: no answer within {deadline} s"
        again, size_again = await fetch_step_by_step(conn, path)
    return f"{url}: {status}, {size} bytes; again: {again}, {size_again} bytes"


async def main(urls: list[str], deadline: float) -> None:
    # gather() runs the fetches concurrently, all in this one thread.
    for line in await asyncio.gather(*(fetch_twice(url, deadline) for url in urls)):
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--deadline", type=float, default=10.0)
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    asyncio.run(main(args.urls, args.deadline))
