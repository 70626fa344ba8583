"""Small co_ generators over raw non-blocking sockets, shared by the driver tests."""

from __future__ import annotations

import socket
from collections.abc import Generator
from typing import Any

from dugong import POLLIN, POLLOUT, PollNeeded

#: a co_ generator returning anything
Co = Generator[PollNeeded, None, Any]


def fill(sock: socket.socket) -> int:
    """Send into the non-blocking *sock* until its buffers are full; the count."""
    sent = 0
    chunk = b"x" * 65536
    while True:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            return sent


def receive(sock: socket.socket, size: int) -> Co:
    """Receive exactly *size* bytes from the non-blocking *sock*."""
    parts = []
    while size:
        try:
            data = sock.recv(size)
        except BlockingIOError:
            yield PollNeeded(sock.fileno(), POLLIN)
            continue
        if not data:
            raise EOFError("peer closed")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def send(sock: socket.socket, data: bytes) -> Co:
    """Send all of *data* on the non-blocking *sock*; its length."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            yield PollNeeded(sock.fileno(), POLLOUT)
    return len(data)
