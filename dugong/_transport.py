"""The socket side: non-blocking send and receive, TLS wants, the trace file.

A transport turns every `OSError` of the socket into `ConnectionClosed` (keeping
the original as ``__cause__``) and reports "would block" by returning -1 and
leaving the `PollNeeded` to wait for in ``want``.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Sequence
from typing import Any

from ._exceptions import ConnectionClosed
from ._poll import POLLIN, POLLOUT, Co, PollNeeded

__all__ = ["PlainTransport", "TLSTransport", "make_transport"]

_Buf = bytes | bytearray | memoryview
_trace_ids = itertools.count(1)


def _closed(exc: OSError, doing: str) -> ConnectionClosed:
    err = ConnectionClosed(f"Connection broken while {doing}: {exc}")
    err.__cause__ = exc
    return err


class PlainTransport:
    """A connected, non-blocking TCP socket."""

    tls = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.wait_in = PollNeeded(self.fd, POLLIN)
        self.wait_out = PollNeeded(self.fd, POLLOUT)
        #: what to wait for after a call returned -1
        self.want = self.wait_in
        self._recv_into = sock.recv_into
        self._recv = sock.recv
        self._send = sock.send
        self._idle_poller: Any = None

    def recv_into(self, buf: memoryview) -> int:
        """Receive into *buf*: the count, 0 at EOF, -1 if it would block."""
        try:
            return self._recv_into(buf)
        except BlockingIOError:
            self.want = self.wait_in
            return -1
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def recv(self, size: int) -> bytes | None:
        """Receive up to *size* bytes: b'' at EOF, None if it would block."""
        try:
            return self._recv(size)
        except BlockingIOError:
            self.want = self.wait_in
            return None
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def send(self, data: _Buf) -> int:
        """Send what the socket takes now: the count, or -1 if it would block."""
        try:
            return self._send(data)
        except BlockingIOError:
            self.want = self.wait_out
            return -1
        except OSError as exc:
            raise _closed(exc, "sending") from exc

    def sendv(self, parts: Sequence[_Buf]) -> int:
        """Send several buffers in one call if possible: the count, or -1."""
        try:
            return self.sock.sendmsg(parts)
        except BlockingIOError:
            self.want = self.wait_out
            return -1
        except OSError as exc:
            raise _closed(exc, "sending") from exc

    def co_send_all(self, data: _Buf) -> Co[None]:
        """Send all of *data*, waiting as needed."""
        n = self.send(data)
        if n == len(data):
            return
        view = memoryview(data).cast("B")
        total = len(view)
        sent = max(n, 0)
        while True:
            if n < 0:
                yield self.want
            n = self.send(view[sent:])
            if n > 0:
                sent += n
                if sent >= total:
                    return

    def co_send_parts(self, parts: Sequence[_Buf]) -> Co[None]:
        """Send the buffers in *parts* one after the other, in as few calls as possible."""
        total = sum(map(len, parts))
        n = self.sendv(parts)
        if n == total:
            return
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        while True:
            if n < 0:
                yield self.want
            elif n:
                while n and n >= len(views[0]):
                    n -= len(views.pop(0))
                if not views:
                    return
                if n:
                    views[0] = views[0][n:]
            n = self.sendv(views)

    def dropped(self) -> bool:
        """For an idle connection: True if the server closed it or sent unasked bytes."""
        if self._idle_poller is None:
            import select

            self._idle_poller = select.poll()
            self._idle_poller.register(self.fd, POLLIN)
        return bool(self._idle_poller.poll(0))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover - close() of a broken socket
            pass


class TLSTransport(PlainTransport):
    """A TLS socket: honours want-read/want-write in both directions."""

    tls = True

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        import ssl

        self._want_read = ssl.SSLWantReadError
        self._want_write = ssl.SSLWantWriteError
        self._zero_return = ssl.SSLZeroReturnError

    def recv_into(self, buf: memoryview) -> int:
        try:
            return self._recv_into(buf)
        except self._want_read:
            self.want = self.wait_in
            return -1
        except self._want_write:
            self.want = self.wait_out
            return -1
        except self._zero_return:
            return 0
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def recv(self, size: int) -> bytes | None:
        buf = bytearray(size)
        n = self.recv_into(memoryview(buf))
        if n < 0:
            return None
        del buf[n:]
        return bytes(buf)

    def send(self, data: _Buf) -> int:
        try:
            return self._send(data)
        except self._want_read:
            self.want = self.wait_in
            return -1
        except self._want_write:
            self.want = self.wait_out
            return -1
        except OSError as exc:
            raise _closed(exc, "sending") from exc

    def sendv(self, parts: Sequence[_Buf]) -> int:
        # TLS sockets have no sendmsg; small pieces are joined, a large one goes alone.
        if len(parts) == 1:
            return self.send(parts[0])
        if sum(map(len, parts)) <= 16384:
            return self.send(b"".join(parts))
        return self.send(parts[0])

    def dropped(self) -> bool:
        if not self.sock.pending() and not super().dropped():
            return False
        # Readable may only mean TLS records without data (e.g. TLS 1.3 session tickets).
        try:
            return self.recv_into(memoryview(bytearray(1))) != -1
        except ConnectionClosed:
            return True


class _TraceMixin:
    """Appends every byte sent and received to a trace file."""

    _trace: Any

    def recv_into(self, buf: memoryview) -> int:
        n: int = super().recv_into(buf)  # type: ignore[misc]
        if n > 0:
            self._trace.write(buf[:n])
            self._trace.flush()
        return n

    def recv(self, size: int) -> bytes | None:
        data: bytes | None = super().recv(size)  # type: ignore[misc]
        if data:
            self._trace.write(data)
            self._trace.flush()
        return data

    def send(self, data: _Buf) -> int:
        n: int = super().send(data)  # type: ignore[misc]
        if n > 0:
            self._trace.write(memoryview(data)[:n])
            self._trace.flush()
        return n

    def sendv(self, parts: Sequence[_Buf]) -> int:
        n: int = super().sendv(parts)  # type: ignore[misc]
        left = n
        for part in parts:
            if left <= 0:
                break
            self._trace.write(memoryview(part)[:left])
            left -= len(part)
        self._trace.flush()
        return n

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        self._trace.close()


class _TracePlain(_TraceMixin, PlainTransport):
    pass


class _TraceTLS(_TraceMixin, TLSTransport):
    pass


def make_transport(sock: Any, tls: bool) -> PlainTransport:
    """Wrap a connected non-blocking socket; trace it if ``DUGONG_TRACEFILE`` is set."""
    pattern = os.environ.get("DUGONG_TRACEFILE")
    if not pattern:
        return TLSTransport(sock) if tls else PlainTransport(sock)
    tr: PlainTransport = _TraceTLS(sock) if tls else _TracePlain(sock)
    name = pattern.replace("%d", str(next(_trace_ids)))
    tr._trace = open(name, "ab")  # type: ignore[attr-defined]  # noqa: SIM115
    return tr
