#!/usr/bin/env python3
"""Measure what each of dugong's speed caches saves, in one process.

    python contrib/cache_bench.py [--quick]

Each row times one operation with its cache hit and with it missed, and prints
nanoseconds per operation (the best of several repetitions). A miss is forced
without touching the code: by alternating or cycling through more keys than the
cache keeps, so it measures the uncached work plus one failed lookup. The
manual's internals page quotes these figures; rerun this after changing a hot
path. ``--quick`` only checks that every row runs (its figures mean nothing).
"""

from __future__ import annotations

import select
import socket
import sys
import timeit
from collections.abc import Callable

from dugong import _protocol, engine
from dugong._transport import PlainTransport

REPEAT = 7
#: (cache, operation, with the cache hit, with it missed, operations per call); the
#: two ways are functions, or statements run in `NAMESPACE`.
Row = tuple[str, str, Callable[[], object] | str, Callable[[], object] | str, int]
NAMESPACE = {"SendState": engine.SendState, "_BODY": engine._BODY, "state": engine.SendState.BODY}


def best_ns(func: Callable[[], object] | str, number: int, per_call: int) -> float:
    """Fastest time of *func* over the repetitions, in ns per operation."""
    times = timeit.repeat(
        func, number=number, repeat=REPEAT if number > 10 else 1, globals=NAMESPACE
    )
    return min(times) / number / per_call * 1e9


def cycling(items: list[str]) -> Callable[[], str]:
    """A function returning *items* one after the other, round and round."""
    index = -1
    size = len(items)

    def next_item() -> str:
        nonlocal index
        index = (index + 1) % size
        return items[index]

    return next_item


def request_rows() -> list[Row]:
    rows: list[Row] = []
    eng = engine.ClientEngine("example.org")
    batch = 100

    def same_path() -> None:
        for _ in range(batch):
            eng.send_request("GET", "/index.html")
        eng.queue.clear()

    def two_paths() -> None:  # a one-entry cache misses on every call
        for _ in range(batch // 2):
            eng.send_request("GET", "/index.html")
            eng.send_request("GET", "/index.htm1")
        eng.queue.clear()

    rows.append(
        (
            "_last_request",
            "ClientEngine.send_request, GET without fields",
            same_path,
            two_paths,
            batch,
        )
    )

    fields = (("Content-Length", "0"),)
    names = ("content-length", "transfer-encoding")
    few = cycling([f"/file/{i:04d}" for i in range(100)])  # all of them fit (512)
    many = cycling([f"/file/{i:04d}" for i in range(1000)])  # cleared before reuse
    rows.append(
        (
            "_plain_heads",
            "_protocol.request_head, no caller fields",
            lambda: _protocol.request_head("GET", few(), None, "example.org", fields, names),
            lambda: _protocol.request_head("GET", many(), None, "example.org", fields, names),
            1,
        )
    )

    known = cycling([f"X-Field-{i:04d}" for i in range(100)])
    fresh = cycling([f"X-Field-{i:04d}" for i in range(5000)])  # more than it keeps (4096)
    rows.append(
        (
            "_good_tokens",
            "_protocol._check_token, one header name",
            lambda: _protocol._check_token("header name", known()),
            lambda: _protocol._check_token("header name", fresh()),
            1,
        )
    )
    return rows


def head(i: int) -> str:
    return (
        "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
        f"Date: Sun, 06 Dec 2026 21:{i // 60 % 60:02d}:{i % 60:02d} GMT\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 0\r\n"
        "Last-Modified: Sun, 06 Dec 2026 20:00:00 GMT\r\nConnection: keep-alive\r\n"
        'ETag: "6570e1c0-0"\r\nAccept-Ranges: bytes\r\n\r\n'
    )


def response_rows() -> list[Row]:
    limits = (8192, 65536, 512)
    few = cycling([head(i) for i in range(100)])  # all of them fit (128)
    many = cycling([head(i) for i in range(200)])  # cleared before reuse
    rows: list[Row] = [
        (
            "_parsed",
            f"_protocol.parse_response, a {len(head(0))}-byte head",
            lambda: _protocol.parse_response("GET", few(), *limits),
            lambda: _protocol.parse_response("GET", many(), *limits),
            1,
        )
    ]

    batch = 100
    eng = engine.ClientEngine("example.org")
    same = head(0).encode() * batch
    varied = [
        b"".join(head(i).encode() for i in range(start, start + batch)) for start in (0, 100)
    ]  # 200 heads: the module's cache misses too
    changing = [b"".join(head(i).encode() for i in range(batch))]  # 100: it hits

    def responses(data: bytes) -> None:
        """*batch* exchanges: send_request, then the responses' bytes, next_response."""
        for _ in range(batch):
            eng.send_request("GET", "/")
        eng.receive_data(data)
        for _ in range(batch):
            eng.next_response()

    turn = [0]

    def alternate(blocks: list[bytes]) -> Callable[[], None]:
        def run() -> None:
            turn[0] += 1
            responses(blocks[turn[0] % len(blocks)])

        return run

    rows.append(
        (
            "_last_head",
            "one pipelined exchange through the engine, equal heads "
            "vs. 100 different heads (each found in _parsed)",
            lambda: responses(same),
            alternate(changing),
            batch,
        )
    )
    rows.append(
        (
            "_last_head + _parsed",
            "the same, equal heads vs. 200 different heads (neither cache hits)",
            lambda: responses(same),
            alternate(varied),
            batch,
        )
    )
    return rows


def transport_rows() -> list[Row]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.send(b"x")  # a stays readable: every wait returns at once
    tr = PlainTransport(a)
    fd = a.fileno()

    def new_poller() -> bool:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))

    sockets.extend((a, b))
    return [
        (
            "poller",
            "PlainTransport.wait on a ready socket vs. a new poll object",
            lambda: tr.wait(select.POLLIN, 0),
            new_poller,
            1,
        ),
        (
            "kernel waits",
            "what waiting in the receive itself saves: the poll before it",
            lambda: None,
            lambda: tr.wait(select.POLLIN, 0),
            1,
        ),
    ]


def enum_rows() -> list[Row]:
    return [
        (
            "enum aliases",
            "`state is _BODY` vs. `state is SendState.BODY`",
            "state is _BODY",
            "state is SendState.BODY",
            1,
        )
    ]


sockets: list[socket.socket] = []


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    scale = 0.001 if quick else 1.0
    print(f"Python {sys.version.split()[0]}; ns per operation, best of {REPEAT}")
    print(f"{'cache':22} {'hit':>9} {'miss':>9} {'saved':>9}  operation")
    for rows, number in (
        (request_rows(), 2000),
        (response_rows(), 500),
        (transport_rows(), 100_000),
        (enum_rows(), 2_000_000),
    ):
        for name, what, hit, miss, per_call in rows:
            count = max(1, int(number * scale))
            with_cache = round(best_ns(hit, count, per_call))
            without = round(best_ns(miss, count, per_call))
            print(f"{name:22} {with_cache:9d} {without:9d} {without - with_cache:9d}  {what}")
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    main()
