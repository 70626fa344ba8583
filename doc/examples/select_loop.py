"""Fetch several URLs at once, one connection each, in a single-threaded selectors loop.

Usage: python select_loop.py URL [URL ...]

Each download is one generator, composed from dugong's co_ methods with
``yield from``; one loop drives them all. selectors.DefaultSelector uses
epoll on Linux and kqueue on BSD and macOS.
"""

import selectors
import sys
from collections.abc import Generator
from urllib.parse import urlsplit

from dugong import POLLIN, POLLOUT, HTTPConnection, PollNeeded

Fetch = Generator[PollNeeded, None, tuple[int, int]]


def co_fetch(conn: HTTPConnection, path: str) -> Fetch:
    """GET *path* on *conn*; return the status and the body size."""
    yield from conn.co_send_request("GET", path)
    resp = yield from conn.co_read_response()
    size = 0
    while True:
        piece = yield from conn.co_read(32 * 1024)
        if not piece:
            return resp.status, size
        size += len(piece)


def events_of(pn: PollNeeded) -> int:
    """Translate a PollNeeded mask into selectors events."""
    events = 0
    if pn.mask & POLLIN:
        events |= selectors.EVENT_READ
    if pn.mask & POLLOUT:
        events |= selectors.EVENT_WRITE
    return events


def run_all(jobs: dict[str, Fetch], timeout: float = 30) -> dict[str, tuple[int, int]]:
    """Run every job to completion; map each name to what its generator returned."""
    results: dict[str, tuple[int, int]] = {}
    with selectors.DefaultSelector() as sel:

        def step(name: str, gen: Fetch) -> None:
            """Resume *gen* and register its next wait (or collect its result)."""
            try:
                pn = gen.send(None)
            except StopIteration as stop:
                results[name] = stop.value
                return
            sel.register(pn.fd, events_of(pn), (name, gen))

        for name, gen in jobs.items():
            step(name, gen)
        while len(results) < len(jobs):
            ready = sel.select(timeout)
            if not ready:
                raise TimeoutError(f"no progress for {timeout} seconds")
            for key, _ in ready:
                # Unregister first: the generator may close this fd, or wait
                # for something else next.
                sel.unregister(key.fd)
                step(*key.data)
    return results


def main(*urls: str) -> None:
    conns = []
    jobs = {}
    for url in urls:
        parts = urlsplit(url)
        conn = HTTPConnection(parts.hostname, parts.port)
        conns.append(conn)
        jobs[url] = co_fetch(conn, parts.path or "/")
    try:
        results = run_all(jobs)
    finally:
        for conn in conns:
            conn.disconnect()
    for url in urls:
        status, size = results[url]
        print(f"{url}: {status}, {size} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
