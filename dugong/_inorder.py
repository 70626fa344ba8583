"""Bodies fetched concurrently, written to one stream in a given order.

`InOrder` hands out one `Slot` per body, numbered in output order. The slot
whose turn it is writes straight to the stream. Every later slot holds what it
is given: in memory while all held data together stays under a budget
(`HOLD_MEMORY`), beyond that appended to one unnamed temporary file shared by
all slots. When a slot's turn comes, what it holds is copied out, then its
further writes go straight to the stream. So memory stays bounded whatever
the bodies' sizes and the order they complete in, and the temporary file
holds only what was fetched ahead of its turn (it is emptied whenever nothing
is held, and deleted on exit).

Writing to the stream passes like a token from one slot to the next: at any
time exactly one thread writes to it, so no lock is held during a write.
"""

from __future__ import annotations

import tempfile
import threading
from collections import deque
from typing import IO, Final

from .engine import Buffer

__all__ = ["HOLD_MEMORY", "InOrder", "Slot"]

#: bytes that slots waiting for their turn may hold in memory, all together
HOLD_MEMORY: Final = 4 << 20
#: bytes copied at a time from the temporary file to the stream
_COPY_SIZE: Final = 1 << 20


class Slot:
    """One body's place in the output order: `write` its bytes, then `finish`."""

    __slots__ = ("_done", "_held", "_owner", "index", "turn")

    def __init__(self, owner: InOrder, index: int) -> None:
        self._owner = owner
        self.index = index
        #: it is this slot's turn: its writes go to the stream (set once, under the lock)
        self.turn = False
        self._done = False
        #: what the slot holds, in order: bytes (in memory) or (offset, size) in the file;
        #: made when first needed (most slots never hold anything)
        self._held: deque[bytes | tuple[int, int]] | None = None

    def write(self, data: Buffer) -> None:
        """Append *data* to this body (copied if it has to wait for its turn).

        Raises:
            OSError: writing to the stream or the temporary file failed.
        """
        if not self.turn:
            owner = self._owner
            with owner._lock:
                if not self.turn:
                    owner._hold(self, data)
                    return
        if self._held:
            self._owner._copy_out(self)
        self._owner.stream.write(data)

    def finish(self) -> None:
        """The body is complete (or will get no more bytes): once every earlier slot
        has finished, what this one holds is written out and the next slot's turn
        comes.

        Raises:
            OSError: writing to the stream or the temporary file failed.
        """
        owner = self._owner
        with owner._lock:
            self._done = True
            if not self.turn:
                return  # the slot before it will write it out
        owner._copy_out(self)
        owner._pass_turn(self.index)


class InOrder:
    """Slots ``0 .. count-1`` whose bytes reach *stream* in slot order.

    Any number of threads may write to different slots at once; each slot is
    written by one thread at a time.

    Args:
        stream: a binary stream (e.g. ``sys.stdout.buffer``); written by one
            thread at a time, and flushed after each body.
        count: how many slots.
        hold_memory: the budget of `HOLD_MEMORY`.
    """

    def __init__(self, stream: IO[bytes], count: int, hold_memory: int = HOLD_MEMORY) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._slots = [Slot(self, i) for i in range(count)]
        self._budget = hold_memory
        self._in_memory = 0  # bytes held in memory, all slots together
        self._file: IO[bytes] | None = None  # made when first needed
        self._file_lock = threading.Lock()
        self._file_end = 0  # where the next held bytes go in the file
        self._in_file = 0  # bytes held in the file, all slots together
        if count:
            self._slots[0].turn = True

    def slot(self, index: int) -> Slot:
        return self._slots[index]

    @property
    def held_in_file(self) -> int:
        """Bytes held in the temporary file now."""
        return self._in_file

    def close(self) -> None:
        """Delete the temporary file (if one was made)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- internals

    def _hold(self, slot: Slot, data: Buffer) -> None:
        """Under the lock: keep a copy of *data* for *slot*."""
        size = memoryview(data).nbytes
        held = slot._held
        if held is None:
            held = slot._held = deque()
        if self._in_memory + size <= self._budget:
            held.append(bytes(data))
            self._in_memory += size
            return
        with self._file_lock:
            f = self._file
            if f is None:
                f = self._file = tempfile.TemporaryFile(prefix="dugong-")  # noqa: SIM115
            f.seek(self._file_end)
            f.write(data)
            held.append((self._file_end, size))
            self._file_end += size
            self._in_file += size

    def _copy_out(self, slot: Slot) -> None:
        """Write what *slot* holds to the stream (by the thread whose turn it is)."""
        held = slot._held
        if held is None:
            return
        stream = self.stream
        while held:
            part = held.popleft()
            if isinstance(part, bytes):
                stream.write(part)
                with self._lock:
                    self._in_memory -= len(part)
                continue
            offset, size = part
            while size:
                with self._file_lock:
                    assert self._file is not None
                    self._file.seek(offset)
                    chunk = self._file.read(min(size, _COPY_SIZE))
                if not chunk:
                    raise OSError("the temporary file of held output ended early")
                stream.write(chunk)
                offset += len(chunk)
                size -= len(chunk)
            with self._file_lock:
                self._in_file -= part[1]
                if not self._in_file and self._file is not None:
                    self._file.truncate(0)
                    self._file_end = 0

    def _pass_turn(self, index: int) -> None:
        """Slot *index* has written everything: give the turn to the next slots, writing
        out those that finished meanwhile."""
        stream = self.stream
        stream.flush()
        slots = self._slots
        while True:
            index += 1
            if index == len(slots):
                return
            nxt = slots[index]
            with self._lock:
                nxt.turn = True
                if not nxt._done:
                    return  # its own thread writes out what it holds, at its next write
            self._copy_out(nxt)
            stream.flush()
