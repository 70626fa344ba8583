"""Fetch several URLs at once with dugong's own multi-generator loop, eval_coroutines.

Usage: python gather.py URL [URL ...]
"""

import sys
from collections.abc import Generator
from urllib.parse import urlsplit

from dugong import HTTPConnection, PollNeeded, eval_coroutines


def co_fetch(conn: HTTPConnection, path: str) -> Generator[PollNeeded, None, tuple[int, int]]:
    """GET *path*; return the status and the body size."""
    yield from conn.co_send_request("GET", path)
    resp = yield from conn.co_read_response()
    body = yield from conn.co_readall()
    return resp.status, len(body)


def main(*urls: str) -> None:
    conns = []
    jobs = []
    for url in urls:
        parts = urlsplit(url)
        conn = HTTPConnection(parts.hostname, parts.port)
        conns.append(conn)
        jobs.append(co_fetch(conn, parts.path or "/"))
    try:
        # Runs all generators in one selectors loop; a wait of more than 30 s
        # fails that generator with ConnectionTimedOut. With
        # return_exceptions=True, a failure takes the place of its result.
        results = eval_coroutines(*jobs, timeout=30, return_exceptions=True)
    finally:
        for conn in conns:
            conn.disconnect()
    for url, result in zip(urls, results, strict=True):
        if isinstance(result, Exception):
            print(f"{url}: failed: {type(result).__name__}: {result}")
        else:
            print(f"{url}: {result[0]}, {result[1]} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
