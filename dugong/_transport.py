"""The socket side: non-blocking send and receive, TLS wants, the trace file.

A transport turns every `OSError` of the socket into `ConnectionClosed` (keeping
the original as ``__cause__``) and reports "would block" by returning -1 and
leaving the `PollNeeded` to wait for in ``want``.

Every method makes the system call first and only reports what to wait for
when the call itself would block. So bytes that are already there, in the
kernel or decrypted inside the TLS layer (where the socket's readiness cannot
see them), are always used before a caller waits.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from ._exceptions import ConnectionClosed
from ._poll import POLLIN, POLLOUT, Co, PollNeeded, drop_kept

__all__ = ["PlainTransport", "TLSTransport", "make_transport"]

_Buf = bytes | bytearray | memoryview
_trace_ids = itertools.count(1)

#: Most bytes `TLSTransport.recv` asks of the TLS layer at once. A TLS read
#: returns at most one record (16 KiB of plaintext), so more would only be
#: allocated to be thrown away.
_TLS_RECV_MAX = 64 * 1024
#: Buffers of `TLSTransport.sendv` up to this total are joined into one TLS write.
_TLS_JOIN_MAX = 64 * 1024


#: The flag that makes one call of a blocking socket not wait (0 where there is none:
#: the socket then stays non-blocking, and blocking callers wait with poll).
_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
_monotonic = time.monotonic


def _closed(exc: OSError, doing: str) -> ConnectionClosed:
    err = ConnectionClosed(f"Connection broken while {doing}: {exc}")
    err.__cause__ = exc
    return err


def _nbytes(data: _Buf) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


class PlainTransport:
    """A connected TCP socket.

    Every call that must not wait passes ``MSG_DONTWAIT``. So the socket may be
    in blocking mode (`make_transport` puts it there), and a blocking caller can
    then wait in the kernel's receive itself (`recv_into_wait`, with
    ``SO_RCVTIMEO`` for its timeout) instead of a poll followed by a receive,
    while a ``co_`` generator on the same connection never blocks.
    """

    tls = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.wait_in = PollNeeded(self.fd, POLLIN)
        self.wait_out = PollNeeded(self.fd, POLLOUT)
        # the loops' registrations of this socket that outlive a wait: dropped at close
        self._lingering: set[Any] = set()
        self.wait_in._linger = self.wait_out._linger = self._lingering
        #: what to wait for after a call returned -1
        self.want = self.wait_in
        # the socket's calls, kept bound (a trace file wraps them: see `make_transport`)
        self._recv_into: Callable[..., int] = sock.recv_into
        self._recv: Callable[..., bytes] = sock.recv
        self._send: Callable[..., int] = sock.send
        self._sendmsg: Any = getattr(sock, "sendmsg", None)  # (unused over TLS)
        self._trace: BinaryIO | None = None
        #: the SO_RCVTIMEO set on the socket, in seconds (None: none)
        self._rcvtimeo: float | None = None
        #: blocking callers may use `recv_into_wait` and `recv_wait` (see `make_transport`)
        self.waits_in_recv = bool(_DONTWAIT) and not self.tls and sock.getblocking()
        # select.poll objects for this socket alone, made when needed, one per mask: a
        # thread may send (POLLOUT) while another one waits to read (POLLIN)
        self._pollers: dict[int, select.poll] = {}
        # dropped()'s poll of a poller of its own (for POLLIN, without a wait: another
        # thread may be waiting to read meanwhile)
        poller = select.poll()
        poller.register(self.fd, POLLIN)
        self._idle_poll: Callable[[int], list[tuple[int, int]]] = poller.poll

    def recv_into(self, buf: memoryview) -> int:
        """Receive into *buf*: the count, 0 at EOF, -1 if it would block."""
        try:
            return self._recv_into(buf, 0, _DONTWAIT)
        except BlockingIOError:
            self.want = self.wait_in
            return -1
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def recv(self, size: int) -> bytes | None:
        """Receive up to *size* bytes: b'' at EOF, None if it would block."""
        try:
            return self._recv(size, _DONTWAIT)
        except BlockingIOError:
            self.want = self.wait_in
            return None
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def _set_rcvtimeo(self, timeout: float | None) -> None:
        """Set SO_RCVTIMEO (None: no limit)."""
        seconds = 0.0 if timeout is None else max(timeout, 1e-6)  # 0 would mean no limit
        whole = int(seconds)
        self.sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", whole, int((seconds - whole) * 1e6 + 0.999)),
        )
        self._rcvtimeo = timeout

    def recv_into_wait(self, buf: memoryview, timeout: float | None) -> int:
        """Receive into *buf*, waiting in the kernel at most *timeout* seconds (None:
        no limit): the count, 0 at EOF, -1 if the time ran out. Only where
        `waits_in_recv`."""
        if timeout is not None and not timeout:
            return self.recv_into(buf)  # 0: do not wait
        n = self._wait_for(self._recv_into, buf, timeout)
        return -1 if n is None else n

    def recv_wait(self, size: int, timeout: float | None) -> bytes | None:
        """Receive up to *size* bytes like `recv_into_wait`: b'' at EOF, None if the
        time ran out."""
        if timeout is not None and not timeout:
            return self.recv(size)
        return self._wait_for(self._recv, size, timeout)  # type: ignore[no-any-return]

    def _wait_for(self, receive: Any, arg: Any, timeout: float | None) -> Any:
        """``receive(arg)`` on the blocking socket, with SO_RCVTIMEO as *timeout*; None if
        the time ran out. The kernel may end the wait a little early (its clock ticks):
        then it waits again for the rest."""
        if timeout != self._rcvtimeo:
            self._set_rcvtimeo(timeout)
        start = 0.0 if timeout is None else _monotonic()
        try:
            while True:
                try:
                    return receive(arg)
                except BlockingIOError:  # SO_RCVTIMEO ran out
                    if timeout is None:
                        return None
                    left = start + timeout - _monotonic()
                    if left <= 0:
                        return None
                    self._set_rcvtimeo(left)  # (the next call sets the whole timeout again)
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def send(self, data: _Buf) -> int:
        """Send what the socket takes now: the count, or -1 if it would block."""
        try:
            return self._send(data, _DONTWAIT)
        except BlockingIOError:
            self.want = self.wait_out
            return -1
        except OSError as exc:
            raise _closed(exc, "sending") from exc

    def sendv(self, parts: Sequence[_Buf]) -> int:
        """Send from several buffers, in order, in one call: the count, or -1."""
        try:
            return self._sendmsg(parts, (), _DONTWAIT)  # type: ignore[no-any-return]
        except BlockingIOError:
            self.want = self.wait_out
            return -1
        except OSError as exc:
            raise _closed(exc, "sending") from exc

    def co_send_all(self, data: _Buf | Sequence[_Buf], first: int | None = None) -> Co[None]:
        """Send all of *data* (a buffer, or a sequence of them to send in order);
        *first* as for `Sending`."""
        sending = Sending(self, data, first)
        while (wait := sending.step()) is not None:
            yield wait

    def dropped(self) -> bool:
        """For an idle connection: True if the server closed it or sent unasked bytes.

        A True answer means the connection must not carry another request; it
        may have consumed some of what arrived.
        """
        return bool(self._idle_poll(0))

    def wait(self, mask: int, timeout_ms: int | None) -> bool:
        """Block until the socket is ready for one of the events in *mask*, at most
        *timeout_ms* milliseconds (None: no limit). False if the time ran out.
        This is how blocking methods wait without a generator."""
        poller = self._pollers.get(mask)
        if poller is None:
            poller = self._pollers[mask] = select.poll()
            poller.register(self.fd, mask)
        return bool(poller.poll(timeout_ms))

    def close(self) -> None:
        """Close the socket. It is shut down first, which wakes a thread that waits on
        it in a receive or a poll (closing alone would not)."""
        self._unregister()
        sock = self.sock
        shutdown = getattr(sock, "shutdown", None)  # (a wrapper may lack it)
        if shutdown is not None:
            with contextlib.suppress(OSError):  # e.g. not connected any more
                shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
        if self._trace is not None:
            self._trace.close()

    def _unregister(self) -> None:
        """Remove the loop registrations kept for this socket (see `PollNeeded`): once
        it is closed, its fd number may name another file, which a registration left
        behind would confuse with this one."""
        drop_kept(self._lingering)

    def __del__(self) -> None:
        # Garbage without close(): the socket closes next, so its registrations go now.
        if getattr(self, "_lingering", None):
            with contextlib.suppress(Exception):
                self._unregister()


def _nothing_pending() -> int:
    return 0


class Sending:
    """What is left to send of one buffer, or of a tuple of buffers sent in order.

    `step` sends what the socket takes now. A call that would block is repeated
    with the same bytes, as TLS requires (a TLS write that could not finish
    must be retried with the same data).

    Args:
        tr: the transport.
        out: a bytes-like object, or a tuple of them.
        first: what the caller's own first `PlainTransport.send` (or ``sendv``
            for a tuple) of *out* returned, if it made one (callers try that
            first: usually the socket takes everything and no `Sending` is
            needed), else None.
    """

    __slots__ = ("tr", "views")

    def __init__(self, tr: PlainTransport, out: _Buf | Sequence[_Buf], first: int | None) -> None:
        self.tr = tr
        parts = out if isinstance(out, (tuple, list)) else (out,)
        self.views = [v for v in (memoryview(p).cast("B") for p in parts) if len(v)]
        if first is not None and first > 0:
            self._sent(first)

    def _sent(self, n: int) -> None:
        views = self.views
        while n and n >= len(views[0]):
            n -= len(views.pop(0))
        if n:
            views[0] = views[0][n:]

    def step(self) -> PollNeeded | None:
        """Send what the socket takes now: None once everything is sent, else what
        to wait for before the next step."""
        tr = self.tr
        views = self.views
        while views:
            n = tr.sendv(views) if len(views) > 1 else tr.send(views[0])
            if n < 0:
                return tr.want
            self._sent(n)
            if views and not tr.tls:
                return tr.wait_out  # a short send: the socket buffer is full
        return None


class TLSTransport(PlainTransport):
    """A TLS socket (`ssl.SSLSocket`, non-blocking, handshake done).

    Never hangs on data hidden in the TLS layer: ``recv_into``/``recv`` always
    ask the TLS layer first, which hands out decrypted bytes it still holds
    (e.g. the rest of a record that was larger than the previous read) before
    it touches the socket; -1/None comes only when it needs the socket.
    ``want`` then tells the direction the TLS layer needs, which need not be
    the caller's: a read may have to write (e.g. answering a key update) and
    a write may have to read.

    End of stream: the server's close_notify alert is a clean EOF (0 or
    b''). A TCP close *without* close_notify raises `ConnectionClosed`
    instead. A TCP FIN is easily forged by anyone on the path, so treating it
    as a clean EOF would let an attacker pass off a truncated body as complete
    (a truncation attack). It only matters for bodies delimited by the close
    (neither Content-Length nor chunked), which RFC 9112, section 9.8, calls
    complete only after a valid close_notify; a body with a length or chunked
    framing has ended before the server closes, so a server that omits
    close_notify is harmless there.
    """

    tls = True

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        import ssl

        # Whoever wrapped the socket: an EOF without close_notify must raise (see above).
        with contextlib.suppress(AttributeError):  # a wrapper that is no ssl.SSLSocket
            sock.suppress_ragged_eofs = False
        # A wrapper that is no ssl.SSLSocket may also say "would block" the plain way.
        self._want_read = (ssl.SSLWantReadError, BlockingIOError)
        self._want_write = ssl.SSLWantWriteError
        self._zero_return = ssl.SSLZeroReturnError
        self._ragged_eof = ssl.SSLEOFError
        self._pending = getattr(sock, "pending", _nothing_pending)

    @staticmethod
    def _truncated(exc: OSError) -> ConnectionClosed:
        err = ConnectionClosed(
            f"Server closed the TLS connection without close_notify, so the data may "
            f"have been cut: {exc}"
        )
        err.__cause__ = exc
        return err

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
        except self._ragged_eof as exc:
            raise self._truncated(exc) from exc
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def recv(self, size: int) -> bytes | None:
        try:
            return self._recv(size if size <= _TLS_RECV_MAX else _TLS_RECV_MAX)
        except self._want_read:
            self.want = self.wait_in
            return None
        except self._want_write:
            self.want = self.wait_out
            return None
        except self._zero_return:
            return b""
        except self._ragged_eof as exc:
            raise self._truncated(exc) from exc
        except OSError as exc:
            raise _closed(exc, "receiving") from exc

    def _send_tls(self, data: _Buf) -> int:
        # One TLS write.
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

    def send(self, data: _Buf) -> int:
        return self._send_tls(data)

    def sendv(self, parts: Sequence[_Buf]) -> int:
        """Send from several buffers: the count, or -1.

        TLS sockets have no ``sendmsg``: buffers up to `_TLS_JOIN_MAX` bytes in
        all are joined and go out in one TLS write (full records rather than a
        small one per piece); otherwise the first buffer goes alone. The choice
        depends on *parts* only, so a retry with the same buffers after -1 hands
        the TLS layer the same bytes again, as it requires.
        """
        if len(parts) == 1:
            return self._send_tls(parts[0])
        total = 0
        for part in parts:
            total += _nbytes(part)
        if total <= _TLS_JOIN_MAX:
            return self._send_tls(b"".join(parts))
        return self._send_tls(parts[0])

    def dropped(self) -> bool:
        if not self._pending() and not super().dropped():
            return False
        # Readable may only mean TLS records without data (e.g. TLS 1.3 session tickets).
        try:
            return self.recv_into(memoryview(bytearray(1))) != -1
        except ConnectionClosed:
            return True


def _trace_calls(tr: PlainTransport, trace: BinaryIO) -> None:
    """Make *tr*'s socket calls append every byte sent and received to *trace* (for a
    TLS socket, the plaintext). Every path goes through these calls, also the
    receives and sends that hot paths make on the socket directly."""
    recv_into, recv, send, sendmsg = tr._recv_into, tr._recv, tr._send, tr._sendmsg

    def write(data: _Buf) -> None:
        trace.write(data)
        trace.flush()

    def traced_recv_into(buf: Any, *args: Any) -> int:
        n: int = recv_into(buf, *args)
        if n > 0:
            write(memoryview(buf).cast("B")[:n])
        return n

    def traced_recv(size: int, *args: Any) -> bytes:
        data: bytes = recv(size, *args)
        if data:
            write(data)
        return data

    def traced_send(data: _Buf, *args: Any) -> int:
        n: int = send(data, *args)
        if n > 0:
            write(memoryview(data).cast("B")[:n])
        return n

    def traced_sendmsg(parts: Sequence[_Buf], *args: Any) -> int:
        n: int = sendmsg(parts, *args)
        left = n
        for part in parts:
            if left <= 0:
                break
            view = memoryview(part).cast("B")
            write(view[:left])
            left -= len(view)
        return n

    tr._recv_into, tr._recv, tr._send = traced_recv_into, traced_recv, traced_send
    if sendmsg is not None:
        tr._sendmsg = traced_sendmsg
    tr._trace = trace


def make_transport(sock: Any, tls: bool) -> PlainTransport:
    """Wrap a connected non-blocking socket; trace it if ``DUGONG_TRACEFILE`` is set.

    A plain socket is put in blocking mode (its transport then passes
    ``MSG_DONTWAIT`` to every call that must not wait; see `PlainTransport`).
    A TLS socket stays non-blocking: the TLS layer may hold bytes that the
    socket's readiness cannot see, so a blocking caller asks it first and polls.
    """
    if not tls and _DONTWAIT:
        sock.setblocking(True)
    tr = TLSTransport(sock) if tls else PlainTransport(sock)
    pattern = os.environ.get("DUGONG_TRACEFILE")
    if pattern:
        name = pattern.replace("%d", str(next(_trace_ids)))
        _trace_calls(tr, open(name, "ab"))  # noqa: SIM115
    return tr
