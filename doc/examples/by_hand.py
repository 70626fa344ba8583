"""Drive dugong's co_ generators by hand, printing every wait they ask for.

Usage: python by_hand.py http://HOST:PORT/PATH
"""

import sys
from collections.abc import Generator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dugong import POLLIN, HTTPConnection, PollNeeded

T = TypeVar("T")


def drive(gen: Generator[PollNeeded, None, T]) -> T:
    """Resume *gen* until it returns; wait for each PollNeeded it yields."""
    try:
        pn = next(gen)  # run up to the first point where it would block
        while True:
            direction = "readable" if pn.mask & POLLIN else "writable"
            print(f"  waiting until fd {pn.fd} is {direction}")
            pn.poll()  # block until the descriptor is ready
            pn = gen.send(None)  # then let the generator try again
    except StopIteration as stop:
        return stop.value  # the generator's return value


def main(url: str) -> None:
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port)
    print("send_request:")
    drive(conn.co_send_request("GET", parts.path or "/"))
    print("read_response:")
    resp: Any = drive(conn.co_read_response())
    print("readall:")
    body = drive(conn.co_readall())
    conn.disconnect()
    print("status:", resp.status, resp.reason)
    print("body bytes:", len(body))


if __name__ == "__main__":
    main(sys.argv[1])
