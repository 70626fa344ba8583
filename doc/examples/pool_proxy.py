"""Fetch a URL through a proxy: the one given, or those of the environment.

Usage: python pool_proxy.py URL [PROXY_URL]

PROXY_URL looks like http://user:password@proxy.example:3128. Without it,
http_proxy, https_proxy and no_proxy are read from the environment.
"""

import sys

from dugong import ConnectionPool


def main(url: str, proxy: str | None = None) -> None:
    with ConnectionPool(proxy=proxy, trust_env=proxy is None) as pool:
        resp = pool.request("GET", url)
        print(f"{resp.status} {resp.reason}, {len(resp.body)} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
