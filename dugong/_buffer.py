"""The receive buffer: one bytearray, filled at the end and consumed from the start."""

from __future__ import annotations

__all__ = ["RecvBuffer"]


class RecvBuffer:
    """Bytes received but not yet consumed live in ``data[start:end]``.

    The connection fills ``view[end:]`` with ``recv_into`` and consumes by
    moving ``start``; nothing is sliced off or reallocated per read.
    """

    __slots__ = ("data", "end", "size", "start", "view")

    def __init__(self, size: int) -> None:
        #: the size it starts with, allocated when the first bytes are received
        self.size = size
        self.data = bytearray()
        self.view = memoryview(self.data)
        self.start = 0
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def space(self, need: int = 1) -> memoryview:
        """A writable view after the buffered bytes with room for at least *need* bytes.

        Moves the buffered bytes to the front, or grows the buffer, only when
        the room at the end is too small.
        """
        start, end = self.start, self.end
        if start == end:
            self.start = self.end = 0
            if need > len(self.data):
                self._grow(need if need > self.size else self.size)
            return self.view
        if len(self.data) - end < need:
            used = end - start
            if used + need > len(self.data):
                self._grow(used + need)
            elif start:
                self.data[:used] = self.view[start:end]
            self.start, self.end = 0, used
        return self.view[self.end :]

    def _grow(self, size: int) -> None:
        new = bytearray(max(size, 2 * len(self.data)))
        used = self.end - self.start
        new[:used] = self.view[self.start : self.end]
        self.view.release()
        self.data = new
        self.view = memoryview(new)
        self.start, self.end = 0, used

    def take(self, n: int) -> bytes:
        """Remove and return up to *n* buffered bytes."""
        start = self.start
        stop = start + n
        if stop > self.end:
            stop = self.end
        self.start = stop
        return self.view[start:stop].tobytes()

    def take_into(self, buf: memoryview) -> int:
        """Move up to ``len(buf)`` buffered bytes into *buf*; return the count."""
        start = self.start
        n = min(len(buf), self.end - start)
        buf[:n] = self.view[start : start + n]
        self.start = start + n
        return n
