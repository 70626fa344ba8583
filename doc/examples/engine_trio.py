"""Drive dugong's engine over trio's own sockets, with async/await.

Fetches several paths from one server over one connection, pipelined: one task
sends every request while the main task reads the responses in order. Each body
goes into one reusable buffer of ours; once the engine's buffer is empty, body
bytes are received straight into it (``direct_size``/``got_direct``).

    python engine_trio.py [--stream-only] http://HOST[:PORT] PATH...

Without ``--stream-only`` those body bytes come from the socket itself
(``recv_into`` on ``SocketStream.socket``): no copy at all. With it, the program
uses only the `trio.abc.Stream` interface, as it would over TLS: ``receive_some``
returns a new bytes object, so each piece is copied once into our buffer.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.parse
from typing import NoReturn

import trio

from dugong import ConnectionClosed, HTTPResponse
from dugong.engine import ClientEngine

#: Size of our body buffer; each body goes through it piece by piece.
BUFFER = 256 * 1024


class Connection:
    """An engine and a trio stream: what moves the bytes between them."""

    def __init__(self, stream: trio.SocketStream, engine: ClientEngine, stream_only: bool) -> None:
        self.stream = stream
        self.engine = engine
        self.stream_only = stream_only
        self.direct = 0  # body bytes that went straight into our buffer

    async def send(self, out: object) -> None:
        """Send what the engine handed out: a buffer, or a tuple of them in order."""
        for part in out if isinstance(out, tuple) else (out,):
            await self.stream.send_all(part)

    def lost(self, exc: Exception) -> NoReturn:
        """The connection broke while receiving: tell the engine, raise its error."""
        error = ConnectionClosed(f"Connection broken while receiving: {exc!r}")
        self.engine.lost(error)  # it notes whether part of the response had come
        raise error from exc

    async def receive(self) -> None:
        """Receive into the engine's buffer (``b''``: the server closed)."""
        try:
            data = await self.stream.receive_some(64 * 1024)
        except trio.BrokenResourceError as exc:  # e.g. a reset
            self.lost(exc)
        # receive_some returns bytes: receive_data copies them into the engine.
        # (With the socket one could recv_into(engine.recv_space()) and skip that.)
        self.engine.receive_data(data)

    async def response(self) -> HTTPResponse:
        """The next response head."""
        while (resp := self.engine.next_response()) is None:
            await self.receive()
        return resp

    async def readinto(self, view: memoryview) -> int:
        """Fill *view* with body bytes: the count, 0 at the end of the body."""
        engine = self.engine
        while True:
            n = engine.readinto_body(view)  # bytes the engine has buffered come first
            if n >= 0:
                return n
            # The engine's buffer is empty. Body bytes that need no framing may
            # come straight into our buffer; chunk-size lines go through the engine.
            want = engine.direct_size(len(view))
            if not want:
                await self.receive()
                continue
            try:
                if self.stream_only:
                    data = await self.stream.receive_some(want)
                    got = len(data)
                    view[:got] = data  # the one copy that receive_some makes necessary
                else:
                    got = await self.stream.socket.recv_into(view[:want])
            except (trio.BrokenResourceError, OSError) as exc:
                self.lost(exc)
            if not got:
                engine.received(0)  # ends a body read until the close, or raises
                continue
            engine.got_direct(got)
            self.direct += got
            return got


async def fetch(host: str, port: int, paths: list[str], stream_only: bool) -> None:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        name = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets
        engine = ClientEngine(name if port == 80 else f"{name}:{port}")
        conn = Connection(stream, engine, stream_only)
        # Queue every request at once (the engine's calls never await, so no other
        # task can come between them), then let one task send them all while this
        # one reads: a large response cannot then stall the requests behind it.
        outs = [engine.send_request("GET", path) for path in paths]

        async def send_all() -> None:
            try:
                for out in outs:
                    await conn.send(out)
            except trio.BrokenResourceError as exc:
                # What was being sent counts as sent: answers that came may be read.
                engine.send_failed(ConnectionClosed(f"Connection broken while sending: {exc!r}"))

        buffer = bytearray(BUFFER)
        view = memoryview(buffer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            for path in paths:
                try:
                    resp = await conn.response()
                except ConnectionClosed as exc:
                    print(f"{path}: not answered ({exc})")
                    continue
                conn.direct = 0
                digest = hashlib.sha256()
                size = 0
                try:
                    while n := await conn.readinto(view):
                        digest.update(view[:n])  # e.g. write view[:n] to a file
                        size += n
                except ConnectionClosed as exc:  # never a short body taken for whole
                    print(
                        f"{path}: {resp.status} {resp.reason}, cut short after {size} "
                        f"bytes ({exc})"
                    )
                    break
                print(
                    f"{path}: {resp.status} {resp.reason}, {size} bytes "
                    f"({conn.direct} straight into our buffer), "
                    f"sha256 {digest.hexdigest()[:16]}"
                )


def main() -> None:
    args = sys.argv[1:]
    stream_only = "--stream-only" in args
    if stream_only:
        args.remove("--stream-only")
    if len(args) < 2:
        sys.exit(__doc__)
    url = urllib.parse.urlsplit(args[0])
    if url.scheme != "http" or not url.hostname:
        sys.exit(f"not an http:// server: {args[0]}")
    trio.run(fetch, url.hostname, url.port or 80, args[1:], stream_only)


if __name__ == "__main__":
    main()
