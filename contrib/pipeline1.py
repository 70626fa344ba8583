#!/usr/bin/env python3
"""Fetch many URLs of one server over one pipelined connection, with asyncio.

    python contrib/pipeline1.py http://localhost:8000/a http://localhost:8000/b ...

Two `dugong.AioFuture` objects share the connection: a sender that writes
every request at once, without waiting for any answer (pipelining), and a
receiver that reads the responses in order as they arrive. One line per URL
(status, body size, URL), then the rate. With ``-o DIR`` the bodies are
saved as DIR/1, DIR/2, ... in the order of the URLs.

Exit status 0 if every URL answered with a status below 400, 1 otherwise or
on a connection error, 2 for bad arguments (e.g. URLs of different servers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import time
from collections.abc import Generator
from urllib.parse import SplitResult, urlsplit

try:
    import dugong
except ImportError:  # run from a source checkout without installing dugong
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import dugong

PROG = "pipeline1"

Co = Generator[dugong.PollNeeded, None, int]


def sender(conn: dugong.HTTPConnection, paths: list[str]) -> Co:
    """Send a GET for every path without reading anything; the number sent."""
    for path in paths:
        yield from conn.co_send_request("GET", path)
    return len(paths)


def receiver(conn: dugong.HTTPConnection, urls: list[str], outdir: str | None) -> Co:
    """Read the responses in order; the number with a status below 400."""
    ok = 0
    for number, url in enumerate(urls, 1):
        resp = yield from conn.co_read_response()
        body = yield from conn.co_readall()
        if outdir is not None:
            with open(os.path.join(outdir, str(number)), "wb") as fh:
                fh.write(body)
        ok += resp.status < 400
        print(f"{resp.status} {resp.reason:<12} {len(body):>10} bytes  {url}", flush=True)
    return ok


async def fetch_all(
    conn: dugong.HTTPConnection,
    urls: list[str],
    paths: list[str],
    outdir: str | None,
    timeout: float,
) -> tuple[int, float]:
    """Run the sender and the receiver on *conn*; the count of good answers and the time."""
    # Connect first: the receiver may only start once a request is pending.
    await asyncio.wait_for(dugong.AioFuture(conn.co_connect()), timeout)
    start = time.perf_counter()
    send = dugong.AioFuture(sender(conn, paths))
    receive = dugong.AioFuture(receiver(conn, urls, outdir))
    try:
        _, ok = await asyncio.gather(send, receive)
    finally:
        # After an error, the other future is still running: stop it.
        send.cancel()
        receive.cancel()
    return ok, time.perf_counter() - start


def parse_urls(texts: list[str]) -> tuple[SplitResult, list[str]]:
    """The first URL, and the request target of each; ValueError if they differ in server."""
    first: SplitResult | None = None
    paths = []
    for text in texts:
        url = urlsplit(text)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{text}: not an http:// or https:// URL")
        if first is None:
            first = url
        elif (url.scheme, url.hostname, url.port) != (first.scheme, first.hostname, first.port):
            raise ValueError(f"{text}: all URLs must be on the server of {texts[0]}")
        paths.append((url.path or "/") + (f"?{url.query}" if url.query else ""))
    assert first is not None
    return first, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("urls", metavar="URL", nargs="+", help="URLs, all of one server")
    parser.add_argument("-o", "--output-dir", metavar="DIR", help="save the bodies in DIR")
    parser.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long (default: 30)",
    )
    args = parser.parse_args(argv)
    try:
        first, paths = parse_urls(args.urls)
        port = first.port
    except ValueError as exc:
        parser.error(str(exc))
    assert first.hostname is not None
    context = None
    if first.scheme == "https":
        context = ssl.create_default_context(cafile=args.cafile)
    if args.output_dir is not None:
        os.makedirs(args.output_dir, exist_ok=True)

    conn = dugong.HTTPConnection(first.hostname, port, ssl_context=context)
    try:
        ok, elapsed = asyncio.run(
            asyncio.wait_for(
                fetch_all(conn, args.urls, paths, args.output_dir, args.timeout), args.timeout
            )
        )
    except TimeoutError:
        print(f"{PROG}: no complete answer within {args.timeout} seconds", file=sys.stderr)
        return 1
    except (dugong.DugongError, OSError) as exc:
        print(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.disconnect()
    count = len(paths)
    print(
        f"{count} responses in {elapsed:.3f} s ({count / max(elapsed, 1e-9):.0f} requests/s), "
        f"{count - ok} with an error status"
    )
    return 0 if ok == count else 1


if __name__ == "__main__":
    sys.exit(main())
