"""Fetch URLs from several threads through one ConnectionPool.

Usage: python pool_threads.py URL [URL ...]
"""

import sys
from concurrent.futures import ThreadPoolExecutor

from dugong import ConnectionPool


def main(*urls: str) -> None:
    # At most 8 connections in all and 4 to any one server; a thread that
    # finds none free waits for one, at most 30 s (as does any network wait).
    with ConnectionPool(8, max_per_host=4, timeout=30) as pool:

        def fetch(url: str) -> str:
            resp = pool.request("GET", url)
            return f"{resp.url}: {resp.status}, {len(resp.body)} bytes"

        with ThreadPoolExecutor(max_workers=16) as executor:
            for line in executor.map(fetch, urls):
                print(line)


if __name__ == "__main__":
    main(*sys.argv[1:])
