#!/usr/bin/env python3
"""Drive many dugong connections from one hand-written `selectors` loop, without asyncio.

    python contrib/select_loop.py -c 20 -n 100 http://localhost:8000/index.html

Opens CONNECTIONS connections to the server of URL; on each, a ``co_``
generator sends REQUESTS requests for URL one after the other and reads each
response. All generators run in one thread, in the small loop below, on the
best selector of the platform (epoll on Linux, kqueue on BSD and macOS).

A ``co_`` generator says what it waits for by yielding a `dugong.PollNeeded`
``(fd, mask)``; the loop registers *fd* with the selector and resumes the
generator once the selector reports it ready. That is all an event loop needs
to drive dugong. The loop here is kept short: `dugong.eval_coroutines` is the
complete version (timeouts, results or exceptions per generator, and
registrations kept while a generator waits for the same thing again).

Exit status 0 if every response had a status below 400, 1 otherwise or on an
error, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import selectors
import ssl
import sys
import time
from collections.abc import Generator
from typing import Any
from urllib.parse import urlsplit

try:
    import dugong
except ImportError:  # run from a source checkout without installing dugong
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import dugong

PROG = "select_loop"

Gen = Generator[dugong.PollNeeded, None, Any]


class SelectLoop:
    """Runs ``co_`` generators until all are finished; one reader and one writer per fd."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        # fd -> {selectors.EVENT_READ or EVENT_WRITE: the generator waiting for it}
        self.waiting: dict[int, dict[int, Gen]] = {}
        self.results: dict[Gen, Any] = {}

    def add(self, gen: Gen) -> None:
        """Start *gen*: run it up to its first wait."""
        self._step(gen)

    def _step(self, gen: Gen) -> None:
        try:
            wait = gen.send(None)
        except StopIteration as done:
            self.results[gen] = done.value
            return
        # dugong's generators wait for one direction at a time.
        event = selectors.EVENT_READ if wait.mask & dugong.POLLIN else selectors.EVENT_WRITE
        slots = self.waiting.setdefault(wait.fd, {})
        if event in slots:
            raise RuntimeError(f"two generators wait for the same event on fd {wait.fd}")
        slots[event] = gen
        if len(slots) == 1:
            self.selector.register(wait.fd, event)
        else:  # a sender and a receiver on one connection
            self.selector.modify(wait.fd, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def run(self) -> None:
        """Loop until every generator has finished; their exceptions propagate."""
        while self.waiting:
            for key, events in self.selector.select():
                slots = self.waiting.get(key.fd)
                if slots is None:
                    continue
                # Unregister what is ready before resuming: the generator may close
                # the socket, or wait on a new one that got the same fd number.
                ready = [slots.pop(event) for event in list(slots) if events & event]
                if slots:
                    self.selector.modify(key.fd, next(iter(slots)))
                else:
                    del self.waiting[key.fd]
                    self.selector.unregister(key.fd)
                for gen in ready:
                    self._step(gen)

    def close(self) -> None:
        """Close the generators still waiting (after an error) and the selector."""
        for slots in self.waiting.values():
            for gen in slots.values():
                gen.close()
        self.waiting.clear()
        self.selector.close()


def client(conn: dugong.HTTPConnection, path: str, count: int) -> Gen:
    """Send *count* requests for *path* on *conn*, one after the other.

    Returns the number of responses below 400 and the body bytes received.
    """
    good = size = 0
    try:
        for _ in range(count):
            yield from conn.co_send_request("GET", path)
            resp = yield from conn.co_read_response()
            body = yield from conn.co_readall()
            good += resp.status < 400
            size += len(body)
    finally:
        conn.disconnect()
    return good, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("url", metavar="URL", help="http:// or https:// URL to fetch")
    parser.add_argument(
        "-c", "--connections", type=int, default=20, help="number of connections (default: 20)"
    )
    parser.add_argument(
        "-n", "--requests", type=int, default=100, help="requests per connection (default: 100)"
    )
    parser.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        parser.error(f"{args.url}: not an http:// or https:// URL")
    if args.connections < 1 or args.requests < 1:
        parser.error("--connections and --requests must be at least 1")
    try:
        port = url.port
    except ValueError as exc:
        parser.error(f"{args.url}: {exc}")
    context = ssl.create_default_context(cafile=args.cafile) if url.scheme == "https" else None
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")

    loop = SelectLoop()
    gens = [
        client(dugong.HTTPConnection(url.hostname, port, ssl_context=context), path, args.requests)
        for _ in range(args.connections)
    ]
    start = time.perf_counter()
    try:
        for gen in gens:
            loop.add(gen)
        loop.run()
    except (dugong.DugongError, OSError) as exc:
        print(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    elapsed = time.perf_counter() - start
    total = args.connections * args.requests
    good = sum(loop.results[gen][0] for gen in gens)
    size = sum(loop.results[gen][1] for gen in gens)
    print(
        f"{args.connections} connections x {args.requests} requests: {total} responses, "
        f"{good} with a status below 400, {size} body bytes"
    )
    print(
        f"{elapsed:.3f} s, {total / max(elapsed, 1e-9):.0f} requests/s, "
        f"{type(loop.selector).__name__}"
    )
    return 0 if good == total else 1


if __name__ == "__main__":
    sys.exit(main())
