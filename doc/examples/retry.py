"""Fetch a URL, retrying when the network fails in a way that may pass.

Usage: python retry.py http://HOST:PORT/PATH [ATTEMPTS [TIMEOUT]]

TIMEOUT (seconds, default 10) is how long the server may stall before the
attempt counts as failed.
"""

import sys
import time
from urllib.parse import urlsplit

from dugong import HTTPConnection, HTTPResponse, is_temp_network_error


def fetch_with_retry(
    conn: HTTPConnection, path: str, attempts: int = 5, delay: float = 0.1
) -> tuple[HTTPResponse, bytes]:
    """GET *path*; on a temporary network error, reset and try again.

    Only requests that may safely be repeated (like GET) should be retried
    this way: the failed attempt may have reached the server.
    """
    for attempt in range(1, attempts + 1):
        try:
            conn.send_request("GET", path)
            resp = conn.read_response()
            return resp, conn.readall()
        except Exception as exc:
            if attempt == attempts or not is_temp_network_error(exc):
                raise
            print(f"attempt {attempt} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            conn.reset()  # drop the broken connection; the next request opens a new one
            time.sleep(delay)
            delay *= 2
    raise AssertionError("not reached")


def main(url: str, attempts: str = "5", timeout: str = "10") -> None:
    parts = urlsplit(url)
    with HTTPConnection(parts.hostname, parts.port) as conn:
        conn.timeout = float(timeout)
        try:
            resp, body = fetch_with_retry(conn, parts.path or "/", int(attempts))
        except Exception as exc:
            sys.exit(f"giving up: {type(exc).__name__}: {exc}")
        print("status:", resp.status, resp.reason)
        print("body bytes:", len(body))


if __name__ == "__main__":
    main(*sys.argv[1:4])
