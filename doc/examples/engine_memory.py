"""Drive dugong's engine over an in-memory byte pipe: no socket, no thread, no loop.

The "server" is a pure function of the bytes it has received: given everything
the client sent so far, it returns everything it would have answered so far.
The pipe hands the client the answer a few bytes at a time, to show that the
engine takes its input in whatever pieces the network delivers.

    python engine_memory.py
"""

from __future__ import annotations

import hashlib
import re

from dugong import HTTPResponse
from dugong.engine import BodyFollowing, ClientEngine

#: The pipe delivers the server's answer in slices of at most this many bytes.
SLICE = 7


def server(received: bytes) -> bytes:
    """All that the server has sent, once it has received *received*.

    It answers each complete request in turn. An upload that asks for ``Expect:
    100-continue`` gets ``100 Continue`` as soon as its head is in, and its
    final answer once its body is. (Request bodies must have a Content-Length.)
    """
    out = bytearray()
    while (end := received.find(b"\r\n\r\n")) >= 0:
        head = received[:end].decode("latin-1")
        method, target, _ = head.split("\r\n", 1)[0].split(" ")
        match = re.search(r"(?im)^content-length: *(\d+)", head)
        length = int(match[1]) if match else 0
        body = received[end + 4 : end + 4 + length]
        if re.search(r"(?im)^expect: *100-continue", head):
            out += b"HTTP/1.1 100 Continue\r\n\r\n"
        if len(body) < length:
            break  # the rest of the body is still on its way
        out += answer(method, target, body)
        received = received[end + 4 + length :]
    return bytes(out)


def answer(method: str, target: str, body: bytes) -> bytes:
    """The response to one complete request."""
    if target == "/chunked":
        chunks = (b"dugong ", b"reads ", b"chunks")
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Parts\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
            + b"0\r\nX-Parts: %d\r\n\r\n" % len(chunks)
        )
    if method == "PUT":
        text = b"stored %d bytes, sha256 %s" % (
            len(body),
            hashlib.sha256(body).hexdigest()[:16].encode(),
        )
        return b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text)
    text = b"hello from " + target.encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text)


class Pipe:
    """Both directions of the wire, for one engine."""

    def __init__(self, engine: ClientEngine) -> None:
        self.engine = engine
        self.sent = bytearray()  # everything the client sent: the server's input
        self.delivered = 0  # how much of the server's answer the client has received
        self.slices = 0

    def send(self, out: object) -> None:
        """Put what the engine handed out on the wire: a buffer or a tuple of them."""
        for part in out if isinstance(out, tuple) else (out,):
            self.sent += part

    def receive(self) -> None:
        """Give the engine the next slice of the server's answer."""
        piece = server(bytes(self.sent))[self.delivered : self.delivered + SLICE]
        if not piece:
            raise RuntimeError("the engine waits for bytes that the server will never send")
        space = self.engine.recv_space(len(piece))  # a view into the engine's own buffer
        space[: len(piece)] = piece  # where a socket's recv_into would write
        self.engine.received(len(piece))
        self.delivered += len(piece)
        self.slices += 1

    def response(self) -> HTTPResponse:
        """The next response head, receiving until it is complete."""
        while (resp := self.engine.next_response()) is None:
            self.receive()
        return resp

    def body(self) -> bytes:
        """The body of the response just read, receiving until it ends."""
        parts = []
        while (data := self.engine.read_body(64 * 1024)) != b"":
            if data is None:
                self.receive()
            else:
                parts.append(data)
        return b"".join(parts)


def main() -> None:
    engine = ClientEngine("example.org")
    pipe = Pipe(engine)

    # Pipelining: three requests go out before any response comes back.
    for name in ("ann", "bob", "cy"):
        pipe.send(engine.send_request("GET", f"/{name}"))
    print(
        f"sent 3 requests ({len(pipe.sent)} bytes), "
        f"{engine.responses_outstanding} responses outstanding"
    )
    for _ in range(3):
        resp = pipe.response()
        print(f"{resp.method} {resp.path}: {resp.status} {resp.reason}, {pipe.body()!r}")

    # A chunked body: the engine takes the framing off; the trailer comes at its end.
    pipe.send(engine.send_request("GET", "/chunked"))
    resp = pipe.response()
    length = "unknown" if resp.length is None else resp.length
    print(
        f"GET /chunked: {resp.status}, length {length}, {pipe.body()!r}, "
        f"trailer X-Parts: {resp.trailers['X-Parts']}"
    )

    # An upload that waits for 100 Continue before sending its body.
    data = bytes(range(256)) * 40
    pipe.send(engine.send_request("PUT", "/upload", body=BodyFollowing(len(data)), expect100=True))
    print(f"PUT /upload: head sent, send side {engine.states.send.name}")
    resp = pipe.response()
    print(f"PUT /upload: {resp.status} {resp.reason}, send side {engine.states.send.name}")
    if resp.status == 100:
        for start in range(0, len(data), 4096):
            pipe.send(engine.send_body(data[start : start + 4096]))
        resp = pipe.response()
    print(f"PUT /upload: {resp.status} {resp.reason}, {pipe.body().decode()}")

    print(
        f"engine idle: {engine.is_idle}; {len(pipe.sent)} bytes sent, "
        f"{pipe.delivered} received in {pipe.slices} slices"
    )


if __name__ == "__main__":
    main()
