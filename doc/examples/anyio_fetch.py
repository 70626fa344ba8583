"""Fetch URLs of one server concurrently under asyncio or trio, with run_async.

Usage: python anyio_fetch.py asyncio|trio SECONDS URL [URL ...]

Each URL gets its own connection and task. A fetch that makes no progress for
SECONDS fails with ConnectionTimedOut; the whole run is cancelled after ten
times that, and the connections still busy then are reset.
"""

import sys
from urllib.parse import urlsplit

import anyio

from dugong import ConnectionTimedOut, HTTPConnection, run_async


async def fetch(url: str, timeout: float, results: dict[str, str]) -> None:
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port)
    try:
        await run_async(conn.co_send_request("GET", parts.path or "/"), timeout)
        resp = await run_async(conn.co_read_response(), timeout)
        body = await run_async(conn.co_readall(), timeout)
        results[url] = f"{resp.status}, {len(body)} bytes"
    except ConnectionTimedOut:
        results[url] = "timed out"
    finally:
        # Also reached when the task is cancelled: the connection is then
        # unusable until reset(), and disconnect() resets it.
        conn.disconnect()


async def main(timeout: float, urls: list[str]) -> dict[str, str]:
    results: dict[str, str] = {}
    with anyio.move_on_after(10 * timeout):
        async with anyio.create_task_group() as tasks:
            for url in urls:
                tasks.start_soon(fetch, url, timeout, results)
    return results


if __name__ == "__main__":
    backend, seconds, *urls = sys.argv[1:]
    results = anyio.run(main, float(seconds), urls, backend=backend)
    for url in urls:
        print(f"{urlsplit(url).path}: {results.get(url, 'cancelled')}")
