"""Fetch many URLs from one thread: 40 generators share a pipelining pool.

Usage: python pool_crawl.py URL_FILE [PIPELINE]

URL_FILE holds one URL per line; PIPELINE (default 16) is how many requests
may be in flight on one connection.
"""

import sys
import time
from collections import Counter, deque
from collections.abc import Generator

from dugong import ConnectionPool, DugongError, PollNeeded, eval_coroutines


def co_worker(
    pool: ConnectionPool, todo: deque[str], statuses: Counter[str]
) -> Generator[PollNeeded, None, int]:
    """Fetch URLs from *todo* until it is empty; return the body bytes received."""
    received = 0
    while todo:
        url = todo.popleft()
        try:
            resp = yield from pool.co_request("GET", url)
        except (DugongError, OSError) as exc:
            statuses[type(exc).__name__] += 1
            continue
        statuses[str(resp.status)] += 1
        received += len(resp.body)
    return received


def main(url_file: str, pipeline: str = "16") -> None:
    with open(url_file) as f:
        todo = deque(line.strip() for line in f if line.strip())
    count = len(todo)
    statuses: Counter[str] = Counter()
    start = time.monotonic()
    # Four connections per server; with pipeline > 1, GETs that find them
    # all busy queue up behind the requests in flight instead of waiting.
    with ConnectionPool(4, pipeline=int(pipeline)) as pool:
        workers = [co_worker(pool, todo, statuses) for _ in range(40)]
        received = sum(eval_coroutines(*workers, timeout=30))
    elapsed = time.monotonic() - start
    summary = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    print(f"fetched {count} URLs ({summary}), {received} body bytes, in {elapsed:.2f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
