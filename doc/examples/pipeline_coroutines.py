"""Pipeline many uploads in one thread: a sender and a reader generator share a loop.

Usage: python pipeline_coroutines.py http://HOST:PORT/echo COUNT SIZE

The server must echo each request body (like the test server's /echo).
"""

import select
import sys
from collections.abc import Generator
from typing import Any
from urllib.parse import urlsplit

from dugong import POLLIN, POLLOUT, HTTPConnection, PollNeeded

# A task is a generator that yields a PollNeeded (resume me when this fd is
# ready) or None (resume me after another task has made progress).
Task = Generator[PollNeeded | None, None, Any]


def body_number(i: int, size: int) -> bytes:
    """The body of request *i*: different for every request."""
    return (b"%08d" % i) * (size // 8) + b"-" * (size % 8)


def sender(conn: HTTPConnection, path: str, n: int, size: int, sent: list[int]) -> Task:
    for i in range(n):
        yield from conn.co_send_request("PUT", path, body=body_number(i, size))
        sent.append(i)
    return n


def reader(conn: HTTPConnection, n: int, size: int, sent: list[int]) -> Task:
    good = 0
    for i in range(n):
        while len(sent) <= i:  # request i is not out yet: let the sender run
            yield None
        resp = yield from conn.co_read_response()
        body = yield from conn.co_readall()
        if resp.status == 200 and body == body_number(i, size):
            good += 1
    return good


def run(tasks: list[Task]) -> list[Any]:
    """Run *tasks* to completion with select(); return their results in order."""
    results: list[Any] = [None] * len(tasks)
    ready = list(range(len(tasks)))  # indices of the tasks to resume now
    waiting: dict[int, PollNeeded] = {}  # task index -> the event it waits for
    parked: list[int] = []  # tasks waiting for another task's progress
    while ready or waiting:
        if not ready:
            rlist = [pn.fd for pn in waiting.values() if pn.mask & POLLIN]
            wlist = [pn.fd for pn in waiting.values() if pn.mask & POLLOUT]
            r, w, _ = select.select(rlist, wlist, [], 30)
            if not (r or w):
                raise TimeoutError("no progress for 30 seconds")
            for index, pn in list(waiting.items()):
                if (pn.mask & POLLIN and pn.fd in r) or (pn.mask & POLLOUT and pn.fd in w):
                    del waiting[index]
                    ready.append(index)
        index = ready.pop(0)
        try:
            wait = tasks[index].send(None)
        except StopIteration as stop:
            results[index] = stop.value
        else:
            if wait is None:
                parked.append(index)
                continue
            waiting[index] = wait
        # That task got somewhere: the parked ones may be able to go on now.
        ready.extend(parked)
        parked.clear()
    if parked:
        raise RuntimeError("the remaining tasks all wait for each other")
    return results


def main(url: str, count: str, size: str) -> None:
    parts = urlsplit(url)
    n, length = int(count), int(size)
    sent: list[int] = []
    with HTTPConnection(parts.hostname, parts.port) as conn:
        _, good = run([sender(conn, parts.path, n, length, sent), reader(conn, n, length, sent)])
    print(f"{good} of {n} answers echoed their request")


if __name__ == "__main__":
    main(*sys.argv[1:4])
