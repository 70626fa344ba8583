"""HTTPConnection: the I/O facade over the engine, its receive buffer and the transport.

The protocol lives in `dugong.engine`; this module moves bytes between the
engine and a socket. Every ``co_x``/``x`` pair is built the same way: a step
that never waits returns the result, or the `PollNeeded` to wait for; the
``co_`` twin yields that, the blocking method waits for it with poll
(`_run`), and an interrupted wait makes the engine `~ClientEngine.fail`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeAlias, TypeVar

from ._connect import Opening, co_open
from ._exceptions import ConnectionClosed, ConnectionTimedOut, StateError
from ._log import debug
from ._poll import Co, PollNeeded, _to_ms, eval_coroutine
from ._protocol import format_host, proxy_fields
from ._transport import _DONTWAIT, PlainTransport, Sending, _closed
from .engine import (
    BodyFollowing,
    Buffer,
    ClientEngine,
    ConnState,
    HTTPResponse,
    Out,
    Request,
    SendState,
)

if TYPE_CHECKING:
    import socket
    import ssl

__all__ = ["BodyFollowing", "HTTPConnection", "HTTPResponse"]


class SocketWrapping(Protocol):
    """What dugong needs of an ``ssl_context`` that is no `ssl.SSLContext`."""

    def wrap_socket(self, sock: socket.socket, *, server_hostname: str | None = ...) -> Any:
        """A socket-like object for *sock* (as dugong 3.x allowed: e.g. a test double)."""


#: a writable bytes-like object
WritableBuffer: TypeAlias = "bytearray | memoryview"
#: what `HTTPConnection.get_ssl_peercert` returns
PeerCert: TypeAlias = "dict[str, Any] | bytes | None"

# Reads of at least this many bytes go straight from the socket to the caller.
_DIRECT_READ: Final = 16 * 1024
_OPEN: Final = ConnState.OPEN
_IDLE: Final = SendState.IDLE
_CLOSED: Final = ConnState.CLOSED
_scratch = memoryview(bytearray(64 * 1024))  # where discard() drops bytes
# Less time than any server takes to answer a request, even over the loopback (seconds).
_ANSWER_TIME: Final = 20e-6
_monotonic = time.monotonic

_A = TypeVar("_A")
_R = TypeVar("_R")
#: a step: called with its argument and, for a blocking caller, the caller's name (None in
#: a co_ generator); the result, or the PollNeeded to wait for before the next call
_Step = Callable[[_A, "str | None"], "_R | PollNeeded"]


def _byte_view(buf: WritableBuffer) -> memoryview:
    """*buf* as a flat memoryview of bytes."""
    view = buf if type(buf) is memoryview else memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class _ClosedLocally(ClientEngine):
    """The engine of a connection closed with `HTTPConnection.disconnect`: until the
    next request, reading a response or a body, or writing a body, raises
    `ConnectionClosed` ("closed locally"), as dugong 3.x did."""

    def _closed(self) -> NoReturn:
        raise ConnectionClosed("Connection closed locally (disconnect()): send a request first")

    def next_response(self) -> NoReturn:
        self._closed()

    def read_body(self, size: int) -> NoReturn:
        self._closed()

    def readinto_body(self, view: memoryview) -> NoReturn:
        self._closed()

    def take_buffered_body(self) -> NoReturn:
        self._closed()

    def body_check(self) -> NoReturn:
        self._closed()

    def send_body(self, data: Buffer) -> NoReturn:
        self._closed()


class HTTPConnection:
    """One HTTP/1.1 connection to one server.

    Args:
        hostname: the server's name or address (an IPv6 address with or
            without brackets).
        port: defaults to 80, or 443 when *ssl_context* is given.
        ssl_context: an `ssl.SSLContext` to talk TLS with the server. It is
            used as given: its ``check_hostname`` and ``verify_mode`` decide
            what is checked; the host name is sent for SNI. (Any object whose
            ``wrap_socket(sock, server_hostname=...)`` returns a socket-like
            object works too, as in dugong 3.x.)
        proxy: ``(host, port)`` of an HTTP proxy: plain requests go to it in
            absolute form, TLS goes through a ``CONNECT`` tunnel.
        proxy_headers: header fields for the proxy alone (e.g.
            ``Proxy-Authorization``): sent with every plain request through it
            and with ``CONNECT``, never inside a tunnel.

    Raises:
        ValueError: *hostname* is empty or contains a space, a slash, CR, LF
            or NUL, or *port* is not between 1 and 65535.
        TypeError: *proxy* is not a ``(host, port)`` pair of str and int.
        ValueError: a field of *proxy_headers* that cannot be sent (see
            `send_request`), or *proxy_headers* without *proxy*.

    Nothing is resolved or sent here: the first request opens the connection
    (or `connect` does), and the next request opens it again after
    `disconnect` or `reset`.

    Every method that may wait for the network has a ``co_`` twin: a
    generator that yields `PollNeeded` instead of blocking and returns the
    result. The blocking methods run the same steps as their twin, waiting
    with poll where the twin would yield, and raise `ConnectionTimedOut` when
    one wait exceeds `timeout` seconds.

    Used in a ``with`` block, the connection is closed (`disconnect`) when the
    block ends. While a response body is being read, the connection also
    reads like a binary file (`readable`, `read`, `readinto`, ``closed``
    always False), so that `io.TextIOWrapper` and similar wrappers can
    decode it.

    If the environment variable ``DUGONG_TRACEFILE`` is set to a file name
    containing ``%d``, every byte sent and received is appended to that file,
    ``%d`` replaced by a number unique to the connection.

    Attributes:
        timeout (float | None): seconds a blocking method may go without any
            progress before it raises `ConnectionTimedOut`; None (the
            default) waits without limit. Connecting and the TLS handshake
            count too. It limits each wait, not the whole call: a slow but
            steady server never triggers it. A timeout in the middle of an
            exchange leaves the connection unusable (`StateError`) until
            `reset`. ``co_`` generators ignore it: their driver decides.
        expect100_timeout (float | None): seconds to wait for the answer to
            ``Expect: 100-continue``; None (the default) waits without limit.
            When the time has passed without an answer, `read_response`
            returns a ``100 Continue`` response as if the server had sent it.
        hostname (str): the server's name or address, as given (without
            brackets).
        port (int): the server's port.
        ssl_context: the `ssl.SSLContext`, or None for plain HTTP.
        proxy (tuple[str, int] | None): the proxy's ``(host, port)``, or None.
    """

    #: seconds a blocking method may wait without progress (None: no limit)
    timeout: float | None = None
    #: seconds to wait for the answer to ``Expect: 100-continue`` (None: no limit)
    expect100_timeout: float | None = None

    def __init__(
        self,
        hostname: str,
        port: int | None = None,
        ssl_context: ssl.SSLContext | SocketWrapping | None = None,
        proxy: tuple[str, int] | None = None,
        *,
        proxy_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(hostname, str) or not hostname:
            raise ValueError(f"invalid host name {hostname!r}")
        if any(c in hostname for c in "\r\n\x00 /"):
            raise ValueError(f"invalid host name {hostname!r}")
        if hostname.startswith("[") and hostname.endswith("]"):
            hostname = hostname[1:-1]
        default_port = 443 if ssl_context is not None else 80
        if port is None:
            port = default_port
        elif not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"invalid port {port!r}")
        if proxy is not None:
            phost, pport = proxy
            if not isinstance(phost, str) or not isinstance(pport, int):
                raise TypeError("proxy must be a (host, port) tuple")
        if proxy_headers and proxy is None:
            raise ValueError("proxy_headers needs a proxy")
        self.hostname = hostname
        self.port = port
        self.ssl_context = ssl_context
        self.proxy = proxy
        #: the proxy's own fields, checked now: (name, value) pairs
        self._proxy_fields = proxy_fields(proxy_headers)
        self._host_field = format_host(hostname, port, default_port)
        # Plain requests through a proxy carry the absolute URI (without port 80).
        self._target_prefix = (
            f"http://{format_host(hostname, port, 80)}"
            if proxy is not None and ssl_context is None
            else ""
        )
        self._tr: PlainTransport | None = None
        self._eng = self._new_engine()
        #: the last connect a request's sender made (and a reader may wait for)
        self._opening: Opening | None = None
        #: when a co_ generator last sent the oldest request outstanding, whole
        #: (`time.monotonic`), until the next response step: if that was a moment ago,
        #: no answer can be there yet (see `_response_step`)
        self._sent_at = 0.0
        #: the bytes of a request or body part that the socket has not taken yet, while
        #: the call that sends them waits (nothing else may be sent meanwhile, nor while
        #: a sender opens the connection: see `_check_not_sending`)
        self._unsent: Sending | None = None

    def _new_engine(self, engine: type[ClientEngine] = ClientEngine) -> ClientEngine:
        return engine(
            self._host_field,
            target_prefix=self._target_prefix,
            extra_fields=self._proxy_fields if self._target_prefix else (),
        )

    # -- connection management ----------------------------------------------------------

    def co_connect(self) -> Co[None]:
        """Generator twin of `connect`: yields `PollNeeded` instead of blocking.

        Name resolution runs in a helper thread whose end is signalled through
        a file descriptor, so not even the resolver blocks the loop. It ignores
        `timeout`: the driver decides how long to wait.
        """
        self._forget()
        yield from self._co_open(None)

    def connect(self) -> None:
        """Open the connection now (it is otherwise opened by the first request).

        An open connection is closed first, and its pending requests are
        forgotten. Name resolution, the TCP connect, a proxy's ``CONNECT``
        tunnel and the TLS handshake each count as waits for `timeout`.

        Raises:
            HostnameNotResolvable: the host name does not exist.
            DNSUnavailable: no DNS server could be reached.
            ProxyError: the proxy refused the ``CONNECT`` tunnel (the message
                gives its status); a `ConnectionError` too, as in dugong 3.x.
            ConnectionClosed: the server or proxy closed the connection during
                the TLS handshake or before answering ``CONNECT``.
            InvalidResponse: the proxy's answer to ``CONNECT`` is malformed.
            OSError: the TCP connect failed, e.g. `ConnectionRefusedError`.
            ssl.SSLError: the TLS handshake failed, e.g.
                `ssl.SSLCertVerificationError`.
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        return eval_coroutine(self.co_connect(), self.timeout)

    def _co_open(self, req: Request | None) -> Co[None]:
        """Open the transport. *req*, if given, is the queued request whose sender
        connects: if connecting fails it is withdrawn, and a reader waiting for its
        response learns why."""
        opening = self._opening = Opening()
        failure = None
        try:
            self._tr = yield from co_open(
                self.hostname, self.port, self.ssl_context, self.proxy, self._proxy_fields
            )
        except BaseException as exc:
            if req is not None:
                self._eng.withdraw(req)
                failure = ConnectionClosed(
                    f"No response to {req.method} {req.path}: the "
                    f"connection could not be opened ({exc!r})"
                )
                failure.request_sent = False
            raise
        finally:
            opening.finished(failure)

    def disconnect(self) -> None:
        """Close the connection and forget all pending requests and responses.

        Never raises, even for a broken connection. The object stays usable:
        the next request connects anew. Until then, reading a response or a
        body, or writing one, raises `ConnectionClosed` ("closed locally"), as
        in dugong 3.x.
        """
        self._forget(_ClosedLocally)

    def _forget(self, engine: type[ClientEngine] = ClientEngine) -> None:
        """Close the transport and start afresh: a new *engine*."""
        if self._tr is not None:
            self._close_transport()
            debug("disconnected from %s port %d", self.hostname, self.port)
        self._eng = self._new_engine(engine)

    def _close_transport(self) -> None:
        tr = self._tr
        if tr is not None:
            self._tr = None
            self._unsent = None
            tr.close()

    def _settle(self) -> None:
        """Close the transport once the engine says that it carries nothing more (after a
        101, the socket stays open for the new protocol: `read_raw`, until `disconnect`)."""
        eng = self._eng
        if self._tr is not None and (
            (eng.states.conn is _CLOSED and not eng.switched) or eng.needs_new_connection
        ):
            self._close_transport()
            debug("%s port %d: %s", self.hostname, self.port, eng.states.why)

    def reset(self) -> None:
        """Close the connection and forget its state, like `disconnect`.

        Use it after an error: a connection whose exchange was cut short (an
        invalid response, a timeout, an interrupted ``co_`` generator) raises
        `StateError` until it is reset, and one the server closed raises
        `ConnectionClosed`.
        """
        self.disconnect()

    def __enter__(self) -> HTTPConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    def response_pending(self) -> bool:
        """True while responses, or parts of one, remain to be read."""
        eng = self._eng
        return bool(eng.queue) or eng.reader is not None

    # -- a read-only view of the state, e.g. for pools ------------------------------------

    @property
    def is_connected(self) -> bool:
        """True while the connection is open on our side.

        False before the first request, after `disconnect`, and once the
        server has closed it (in a way dugong has seen: an announced
        ``Connection: close``, the end of a body read until the close, a
        broken socket). A server's silent close of an idle connection is
        found only when the next request starts (and then recovered from).
        """
        return self._tr is not None

    @property
    def is_idle(self) -> bool:
        """True when nothing is in flight and the connection is usable.

        Every request sent has been answered and its body read, no request
        body is being sent or waits for ``100 Continue``, and no error left
        the connection needing `reset`. An idle connection that
        `is_connected` carries the next request without reconnecting.
        """
        return self._eng.is_idle

    @property
    def responses_outstanding(self) -> int:
        """How many requests sent still have their response, or part of it, to be read."""
        return self._eng.responses_outstanding

    @property
    def _out_remaining(self) -> int | bool | None:
        """Kept for dugong 3.x programs (S3QL reads it): None when no request body is
        outstanding, else a true value (the bytes left when known). Use `is_idle`."""
        return self._eng.out_remaining

    def get_ssl_peercert(self, binary_form: bool = False) -> PeerCert:
        """The server's certificate, as `ssl.SSLSocket.getpeercert` gives it.

        Args:
            binary_form: True for the DER-encoded certificate (bytes), False
                for a dict of its fields (empty if the context does not
                verify certificates).

        Returns None for plain HTTP. Connects first (blocking) if the
        connection is not open, raising what `connect` raises.
        """
        getpeercert = self._tls_method("getpeercert")
        return None if getpeercert is None else getpeercert(binary_form)

    def get_ssl_cipher(self) -> tuple[str, str, int] | None:
        """The TLS cipher in use: ``(name, protocol, secret bits)``.

        As `ssl.SSLSocket.cipher` gives it; None for plain HTTP. Connects
        first (blocking) if the connection is not open, raising what
        `connect` raises.
        """
        cipher = self._tls_method("cipher")
        return None if cipher is None else cipher()

    def _tls_method(self, name: str) -> Callable[..., Any] | None:
        """The TLS socket's method *name* (connecting first); None for plain HTTP or a
        socket that lacks it (from a context that is no `ssl.SSLContext`)."""
        if self.ssl_context is None:
            return None
        if self._tr is None:
            self.connect()
        assert self._tr is not None
        return getattr(self._tr.sock, name, None)

    # -- the step/wait shape -----------------------------------------------------------

    def _run(self, what: str, step: _Step[_A, _R], arg: _A) -> _R:
        """Run *step* until it has a result, waiting with poll in between (a step of a
        blocking caller may also wait in the kernel's receive itself)."""
        result = step(arg, what)
        while type(result) is PollNeeded:
            self._block(what, result)
            result = step(arg, what)
        return result  # type: ignore[return-value]

    def _co_run(self, what: str, step: _Step[_A, _R], arg: _A) -> Co[_R]:
        """Run *step* until it has a result, yielding what it waits for in between."""
        result = step(arg, None)
        if type(result) is PollNeeded:
            result = yield from self._co_wait(what, step, arg, result)
        return result  # type: ignore[return-value]

    def _co_wait(self, what: str, step: _Step[_A, _R], arg: _A, wait: PollNeeded) -> Co[_R]:
        """Yield *wait* (what a first step returned), run *step* again, and so on, until
        it has a result. (The hot ``co_`` methods make the first step themselves: a
        result that needs no waiting then costs no second generator.)"""
        try:
            while True:
                yield wait
                result = step(arg, None)
                if type(result) is not PollNeeded:
                    return result  # type: ignore[return-value]
                wait = result
        except GeneratorExit:
            self._interrupted(what)
            raise

    def _interrupted(self, what: str) -> None:
        """A wait of *what* was cut short: the exchange is at an unknown point, so the
        engine fails (and bytes left unsent will not go out)."""
        self._unsent = None
        self._eng.fail(f"an interrupted {what}")

    def _block(self, what: str, wait: PollNeeded) -> None:
        """Wait for *wait*, at most `timeout` seconds (then `ConnectionTimedOut`). An
        interrupted wait leaves the exchange at an unknown point: the engine fails."""
        tr = self._tr
        timeout = self.timeout
        try:
            if tr is not None and wait[0] == tr.fd and wait.deadline is None:
                ready = tr.wait(wait[1], None if timeout is None else _to_ms(timeout))
            else:
                ready = wait.poll(timeout)
            if not ready:
                raise ConnectionTimedOut(f"No progress for {timeout} seconds")
        except BaseException:
            self._interrupted(what)
            raise

    def _fill(self, blocking: str | None) -> PollNeeded | None:
        """Receive into the engine's buffer; None if bytes came (or the server's close
        ended a body), else what to wait for."""
        if self._tr is None:
            opening = self._opening
            if opening is not None and not opening.done:
                return opening.wait()  # the request's sender is still connecting
            exc = ConnectionClosed("Connection closed")
            self._eng.lost(exc)
            raise exc
        buf = self._eng.buffer
        n = self._receive_into(blocking, buf.space())
        if n < 0:
            return self._tr.want
        if n:
            buf.end += n
        else:
            self._received_eof()
        return None

    def _receive_into(self, blocking: str | None, view: memoryview) -> int:
        """Receive into *view*: the count (0: the server closed), or -1 to wait for the
        transport's ``want``. A blocking caller (*blocking*: its name) waits in the
        receive itself where the transport allows, at most `timeout` seconds."""
        tr = self._tr
        assert tr is not None
        try:
            if blocking is not None and tr.waits_in_recv:
                if self.timeout is None and tr._rcvtimeo is None:
                    # (`recv_into_wait` without a time limit, spelled out: two calls less)
                    try:
                        return tr._recv_into(view)
                    except OSError as exc:
                        raise _closed(exc, "receiving") from exc
                n = tr.recv_into_wait(view, self.timeout)
                if n < 0:
                    raise ConnectionTimedOut(f"No progress for {self.timeout} seconds")
                return n
            n = tr.recv_into(view)
        except ConnectionClosed as exc:
            self._lost(exc)
            raise
        except BaseException:
            if blocking is not None:  # a wait was cut short: where are we?
                self._interrupted(blocking)
            raise
        return n

    def _receive(self, blocking: str | None, size: int) -> bytes | None:
        """Receive up to *size* bytes (b'': the server closed; None: wait for the
        transport's ``want``), as `_receive_into`."""
        tr = self._tr
        assert tr is not None
        try:
            if blocking is not None and tr.waits_in_recv:
                data = tr.recv_wait(size, self.timeout)
                if data is None:
                    raise ConnectionTimedOut(f"No progress for {self.timeout} seconds")
                return data
            data = tr.recv(size)
        except ConnectionClosed as exc:
            self._lost(exc)
            raise
        except BaseException:
            if blocking is not None:
                self._interrupted(blocking)
            raise
        return data

    def _receive_now(self, tr: PlainTransport) -> int:
        """What plain socket *tr* holds, received into the engine's buffer without
        waiting (`_fill` and `PlainTransport.recv_into`, spelled out for ``co_``
        generators): the count; -1 if nothing was there; 0 if the server closed (which
        raises unless no response was due)."""
        buf = self._eng.buffer
        if buf.start == buf.end and buf.data:  # empty: all of it (as `RecvBuffer.space`)
            buf.start = buf.end = 0
            view = buf.view
        else:
            view = buf.space()
        try:
            n = tr._recv_into(view, 0, _DONTWAIT)
        except BlockingIOError:
            tr.want = tr.wait_in
            return -1
        except OSError as exc:
            closed = _closed(exc, "receiving")
            self._lost(closed)
            raise closed from exc
        if n:
            buf.end += n
        else:
            self._received_eof()
        return n

    def _received_eof(self) -> None:
        try:
            self._eng.received(0)
        finally:
            self._settle()

    def _lost(self, exc: ConnectionClosed) -> None:
        self._eng.lost(exc)
        self._settle()

    # -- requests -----------------------------------------------------------------------

    def co_send_request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: Buffer | BodyFollowing | None = None,
        expect100: bool = False,
    ) -> Co[None]:
        """Generator twin of `send_request`: yields `PollNeeded` instead of blocking.

        Opening the connection (if needed) does not block either. It ignores
        `timeout`: the driver decides how long to wait.
        """
        eng = self._eng
        tr = self._tr
        if tr is not None and eng.states.conn is _OPEN and self._unsent is None:
            lone = not eng.queue
            if not lone or (
                tr.__class__ is PlainTransport
                and self._opening is None
                and eng.reader is None
                and eng.states.send is _IDLE
                and (buf := eng.buffer).end == buf.start
                and not tr._idle_poll(0)
            ):
                # Pipelined behind other requests on an open connection (no check of
                # _queue_request applies), or alone on an idle plain socket that is still
                # open (`_idle_and_open`, spelled out: a call less per request).
                rest = self._send_now(tr, eng.send_request(method, path, headers, body, expect100))
                if rest is not None:
                    yield from self._co_run("send_request()", self._send_step, rest)
                if lone:
                    self._sent_at = _monotonic()
                return
        queued = self._queue_request(method, path, headers, body, expect100)
        if queued is not None:
            if self._tr is None:
                yield from self._co_open(self._eng.queue[-1])
            rest = self._send_now(self._tr, queued)  # type: ignore[arg-type]
            if rest is not None:
                yield from self._co_run("send_request()", self._send_step, rest)
            if len(self._eng.queue) == 1:
                self._sent_at = _monotonic()

    def _idle_and_open(self, tr: PlainTransport, eng: ClientEngine) -> bool:
        """Whether the connection of open transport *tr*, with no request outstanding,
        is idle on a plain socket that the server has not closed: then none of
        `_queue_request`'s checks applies."""
        return (
            tr.__class__ is PlainTransport
            and self._opening is None
            and eng.reader is None
            and eng.states.send is _IDLE
            and (buf := eng.buffer).end == buf.start
            and not tr._idle_poll(0)
        )

    def send_request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: Buffer | BodyFollowing | None = None,
        expect100: bool = False,
    ) -> None:
        """Send a request; the connection is opened first if needed.

        Args:
            method: the request method, e.g. ``'GET'``.
            path: the request target, e.g. ``'/index.html?x=1'`` (through a
                plain-HTTP proxy, dugong sends it in absolute form).
            headers: extra header fields, any mapping of str to str whose
                names and values are latin-1 encodable. ``Host``,
                ``Accept-Encoding: identity`` and ``Connection: keep-alive``
                are added unless given; the body's framing fields
                (``Content-Length``, ``Transfer-Encoding``) are always
                dugong's.
            body: None (no body, ``Content-Length: 0``), a bytes-like object
                (sent now, with ``Content-Length`` and, unless given,
                ``Content-MD5``), or a `BodyFollowing` (only the head is sent
                now; the body follows through `write`).
            expect100: send ``Expect: 100-continue`` (needs `BodyFollowing`);
                call `read_response` next, and write the body only if it
                returns status 100.

        The responses are read later with `read_response`: any number of
        requests may be sent first (pipelining), and one thread may send
        while another one reads.

        Raises:
            ValueError: a method, path, header name or value that cannot be
                sent (CR, LF or NUL in it, not latin-1, a method or field name
                that is not an HTTP token), or *expect100* without
                `BodyFollowing`. Nothing was sent.
            TypeError: *body*, a header value or the path has the wrong type.
                Nothing was sent.
            StateError: the previous request's body is unfinished, a ``co_``
                generator is still sending an earlier request or body part
                (the socket took it only in part, or the connection is being
                opened for it), or the connection must be `reset` first.
                Nothing was sent.
            ConnectionClosed: the connection broke while this request was
                being sent. The request then counts as sent: `read_response`
                can still fetch an answer the server sent before closing.
            ConnectionTimedOut: no progress for `timeout` seconds.

        On a connection that the server has closed (it announced
        ``Connection: close``, or a body read until the close has ended),
        nothing is sent and nothing is raised, as in dugong 3.x: the next
        `read_response` raises `ConnectionClosed` saying that the request was
        not sent (``request_sent`` False). `reset` lets the next request
        connect anew.

        Opening the connection may also raise what `connect` raises.
        """
        eng = self._eng
        out: Out | None
        tr = self._tr
        if (
            tr is not None
            and eng.states.conn is _OPEN
            and self._unsent is None
            and (eng.queue or self._idle_and_open(tr, eng))
        ):
            # (as co_: pipelined, or alone on an idle connection still open)
            out = eng.send_request(method, path, headers, body, expect100)
        else:
            out = self._queue_request(method, path, headers, body, expect100)
        if out:
            if self._tr is None:
                eval_coroutine(self._co_open(self._eng.queue[-1]), self.timeout)
            rest = self._send_now(self._tr, out)  # type: ignore[arg-type]
            if rest is not None:
                self._run("send_request()", self._send_step, rest)

    def _queue_request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None,
        body: Buffer | BodyFollowing | None,
        expect100: bool,
    ) -> Out | None:
        """Queue a request with the engine: its bytes to send (after connecting, if the
        connection is not open), or None if nothing is to be sent (the connection
        had closed: `read_response` reports it)."""
        self._check_not_sending()
        tr = self._tr
        eng = self._eng
        states = eng.states
        if states.conn is not _OPEN:
            if eng.needs_new_connection:
                # Answered before its request body was sent: the server may still read
                # body bytes on that connection, so the next request goes out on a new one.
                self._forget()
                tr = None
        elif (
            tr is not None
            and not eng.queue
            and eng.reader is None
            and states.send is _IDLE
            and (
                eng.buffer.end != eng.buffer.start
                # (`dropped`, spelled out for a plain socket: a call less per request)
                or (tr._idle_poll(0) if tr.__class__ is PlainTransport else tr.dropped())
            )
        ):
            # Idle, and the server closed it (or sent something unasked, e.g. a 408) since
            # the last response: nothing of this request was sent, so a new connection is
            # safe.
            debug(
                "%s port %d: idle connection dropped by the server, reconnecting",
                self.hostname,
                self.port,
            )
            self._forget()
            tr = None
        if eng.__class__ is _ClosedLocally:
            self._eng = self._new_engine()
        out = self._eng.send_request(method, path, headers, body, expect100)
        return out if out else None

    def _request_bytes(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None,
        body: Buffer | None,
    ) -> bytes | None:
        """For the pool, which sends several requests at once: queue a request like
        `send_request` and return its bytes, unsent, if the connection is open and takes
        it without a check that could reconnect (pipelined behind others, or idle with
        nothing arrived: `_queue_request`'s idle-drop check); else None, and nothing
        changed. `_co_send_out` sends them."""
        eng = self._eng
        tr = self._tr
        if tr is None or eng.states.conn is not _OPEN or self._unsent is not None:
            return None
        if not eng.queue and (
            eng.reader is not None
            or eng.states.send is not _IDLE
            or eng.buffer.end != eng.buffer.start
            or tr.dropped()
        ):
            return None
        out = eng.send_request(method, path, headers, body)
        return b"".join(out) if type(out) is tuple else out  # type: ignore[return-value]

    def _co_send_out(self, data: bytes, count: int) -> Co[bool]:
        """Send the last *count* requests that `_request_bytes` queued, their bytes
        *data*: False if the connection closed first (nothing sent)."""
        tr = self._tr
        if tr is None or self._eng.states.conn is not _OPEN:
            return False
        rest = self._send_now(tr, data)
        if rest is not None:
            yield from self._co_run("send_request()", self._send_step, rest)
        elif len(self._eng.queue) == count:  # the oldest outstanding among them
            self._sent_at = _monotonic()
        return True

    def _send_out_now(self, data: bytes) -> bool:
        """`_co_send_out` without a wait: True if all of *data* went out now."""
        tr = self._tr
        if tr is None or self._eng.states.conn is not _OPEN:
            return False
        try:
            return self._send_now(tr, data) is None
        except ConnectionClosed:
            return False

    def _abort_send(self) -> None:
        """Requests were sent in part, or not at all after others were counted as sent:
        shut the socket down (not closed), so that a reader waiting on it sees the end."""
        tr = self._tr
        if tr is not None:
            self._unsent = None  # (it never goes out now)
            with contextlib.suppress(OSError):
                tr.sock.shutdown(socket.SHUT_RDWR)

    def _send_now(self, tr: PlainTransport, out: Out) -> Sending | None:
        """Send *out* as far as the socket takes it now: None if all went out, else
        what is left."""
        try:
            if type(out) is tuple:
                n = tr.sendv(out)
                if n == sum(p.nbytes if type(p) is memoryview else len(p) for p in out):
                    return None
            elif tr.__class__ is PlainTransport:
                # `PlainTransport.send`, spelled out: a call less per request
                try:
                    n = tr._send(out, _DONTWAIT)
                except BlockingIOError:
                    tr.want = tr.wait_out
                    n = -1
                except OSError as exc:
                    raise _closed(exc, "sending") from exc
                if n == len(out):
                    return None
            else:
                n = tr.send(out)  # type: ignore[arg-type]
                if n == len(out):
                    return None
        except ConnectionClosed as exc:
            # The request may have reached the server: read_response() can still tell.
            self._eng.send_failed(exc)
            raise
        rest = self._unsent = Sending(tr, out, n)
        return rest

    def _check_not_sending(self) -> None:
        """Refuse to send while a ``co_`` generator still sends an earlier request or body
        part, or opens the connection for one."""
        opening = self._opening
        if self._unsent is not None or (opening is not None and not opening.done):
            raise StateError(
                "The previous request or body part is still being sent (or its connection "
                "opened): finish its send_request() or write() (run its co_ generator to "
                "the end) first"
            )

    def _send_step(self, sending: Sending, blocking: str | None) -> bool | PollNeeded:
        """Send more of *sending*: True once all of it went out."""
        try:
            wait = sending.step()
        except ConnectionClosed as exc:
            self._unsent = None
            self._eng.send_failed(exc)  # the request counts as sent
            raise
        if wait is None:
            self._unsent = None
            return True
        return wait

    def co_write(self, buf: Buffer) -> Co[None]:
        """Generator twin of `write`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait.
        """
        rest = self._write_now(buf)
        if rest is not None:
            yield from self._co_run("write()", self._send_step, rest)

    def write(self, buf: Buffer) -> None:
        """Send part of the request body announced with `BodyFollowing`.

        Args:
            buf: the next part of the body, any bytes-like object. After
                ``BodyFollowing(n)`` the writes must add up to exactly *n*
                bytes; the request is complete when they do. After
                ``BodyFollowing()`` each non-empty *buf* is sent as one chunk,
                and ``write(b'')`` ends the body.

        Raises:
            ExcessBodyData: *buf* is longer than what is left of the
                announced length. Nothing was sent.
            StateError: no body is expected (even if the connection has
                closed meanwhile), the ``100 Continue`` awaited by an
                ``expect100`` request has not been read yet, or a ``co_``
                generator is still sending an earlier part. Nothing was sent.
            ConnectionClosed: the connection broke. The request then counts
                as sent, so `read_response` may still fetch an answer the
                server sent before it closed. Also after `disconnect`.
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        rest = self._write_now(buf)
        if rest is not None:
            self._run("write()", self._send_step, rest)

    def _write_now(self, buf: Buffer) -> Sending | None:
        """All of `write` that needs no waiting: None if *buf* went out whole at once,
        else what is left to send."""
        self._check_not_sending()
        out = self._eng.send_body(buf)
        if not out:
            return None
        tr = self._tr
        if tr is None:
            raise ConnectionClosed(self._eng.states.why or "Connection closed")
        return self._send_now(tr, out)

    # -- responses ----------------------------------------------------------------------

    def co_read_response(self) -> Co[HTTPResponse]:
        """Generator twin of `read_response`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The
        `HTTPResponse` is its return value.
        """
        if self._opening is None and self.expect100_timeout is None:
            eng = self._eng
            buf = eng.buffer
            sent_at = self._sent_at
            if not sent_at:
                if buf.end != buf.start:
                    # `_buffered_head`, inlined: a call less per pipelined response (2 %)
                    head = eng.next_response()
                    if head is not None:
                        if eng.states.conn is not _OPEN:
                            self._settle()
                        return head
            elif (
                buf.end == buf.start
                and eng.reader is None
                and eng.queue
                and eng.states.send is _IDLE
                and (tr := self._tr) is not None
                and tr.waits_in_recv
            ):
                # `_response_step`'s first step and `_co_wait`, spelled out for a lone
                # request (the usual case in a loop of many connections): its answer
                # cannot have come if it went out a moment ago.
                self._sent_at = 0.0
                if _monotonic() - sent_at < _ANSWER_TIME:
                    try:
                        yield tr.wait_in
                        # Woken: on a plain socket, receive and parse at once, unless the
                        # connection changed meanwhile (`_response_step` finds out how).
                        if (
                            tr.__class__ is PlainTransport
                            and self._tr is tr
                            and self._eng is eng
                            and self._receive_now(tr) > 0
                        ):
                            head = eng.next_response()
                            if head is not None:
                                if eng.states.conn is not _OPEN:
                                    self._settle()
                                return head
                        while type(wait := self._response_step(None, None)) is PollNeeded:
                            yield wait
                    except GeneratorExit:
                        self._interrupted("read_response()")
                        raise
                    return wait  # type: ignore[return-value]
        deadline = None if self.expect100_timeout is None else self._continue_deadline()
        resp = self._response_step(deadline, None)
        if type(resp) is PollNeeded:
            resp = yield from self._co_wait("read_response()", self._response_step, deadline, resp)
        return resp  # type: ignore[return-value]

    def read_response(self) -> HTTPResponse:
        """Read the status line and header fields of the next response.

        Responses come in the order in which the requests were sent. Interim
        1xx responses are skipped, except the ``100 Continue`` awaited by an
        ``expect100`` request, which is returned (with ``length`` 0). The body
        of the response must then be read (`read`, `readinto`, `readall`) or
        dropped (`discard`) before the next call. A problem with the body's
        framing is raised by the first body read, so that the status and
        header fields can still be looked at.

        Returns:
            HTTPResponse: the status, reason and header fields, and in
            ``length`` how many body bytes follow (None: unknown).

        Raises:
            StateError: no response is pending, the previous body has not
                been read completely, or the body of the request this would
                answer has not been written completely (it is raised at once:
                the server cannot answer yet).
            ConnectionClosed: the connection ended before the response did; an
                earlier response announced ``Connection: close`` (pipelined
                requests are never sent again silently); the request was not
                sent because the connection had closed (``request_sent`` is
                False); or `disconnect` was called ("closed locally").
            InvalidResponse: the response is not valid HTTP/1.x, or exceeds
                `MAX_LINE_SIZE`, `MAX_HEADER_SIZE`, `MAX_HEADER_FIELDS` or
                `MAX_INTERIM_SIZE`.
            UnsupportedResponse: the status line is shaped like HTTP's but
                gives another version or protocol (``HTTP/2 200``,
                ``ICY 200 OK``).
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        eng = self._eng
        buf = eng.buffer
        if buf.end != buf.start:
            if self._opening is None and self.expect100_timeout is None:
                head = eng.next_response()  # (`_buffered_head`, inlined: a call less)
                if head is not None:
                    if eng.states.conn is not _OPEN:
                        self._settle()
                    return head
        elif (
            self._opening is None
            and self.expect100_timeout is None
            and eng.reader is None
            and eng.queue
            and eng.states.send is _IDLE
            and (tr := self._tr) is not None
            and tr.waits_in_recv
        ):
            # Nothing buffered, and the next response is a plain one (the usual case of
            # a blocking caller): receive at once, waiting in the kernel's receive
            # (`_run`'s and `_response_step`'s first steps, spelled out).
            if buf.data:  # empty: all of it (as `space`)
                buf.start = buf.end = 0
                view = buf.view
            else:
                view = buf.space()
            if self.timeout is None and tr._rcvtimeo is None:
                # (`_receive_into` without a time limit, spelled out: no further call)
                try:
                    n = tr._recv_into(view)
                except OSError as exc:
                    closed = _closed(exc, "receiving")
                    self._lost(closed)
                    raise closed from exc
                except BaseException:
                    self._interrupted("read_response()")
                    raise
            else:
                n = self._receive_into("read_response()", view)
            if n > 0:
                buf.end += n
                head = eng.next_response()
                if head is not None:
                    if eng.states.conn is not _OPEN:
                        self._settle()
                    return head
            elif not n:
                self._received_eof()  # (raises unless nothing was expected)
        deadline = None if self.expect100_timeout is None else self._continue_deadline()
        return self._run("read_response()", self._response_step, deadline)

    def _buffered_head(self) -> HTTPResponse | None:
        """The next response if its head is buffered already (the usual case when
        pipelining) and none of `_response_step`'s cases applies; else None."""
        eng = self._eng
        buf = eng.buffer
        if buf.end != buf.start and self._opening is None and self.expect100_timeout is None:
            head = eng.next_response()
            if head is not None:
                if eng.states.conn is not _OPEN:
                    self._settle()
                return head
        return None

    def _continue_deadline(self) -> float | None:
        """When to stop waiting for ``100 Continue`` (None: no such wait)."""
        if self.expect100_timeout is None or not self._eng.awaiting_continue:
            return None
        return time.monotonic() + self.expect100_timeout

    def _response_step(
        self, deadline: float | None, blocking: str | None
    ) -> HTTPResponse | PollNeeded:
        """One step of `read_response`: the response, or what to wait for."""
        opening = self._opening
        if opening is not None and opening.done:
            self._opening = None
            opening.close()  # raises why the connect waited for failed
        eng = self._eng
        buf = eng.buffer
        while True:
            if (
                buf.end != buf.start
                or eng.reader is not None
                or not eng.queue
                or eng.states.send is not _IDLE
            ):
                # (Else next_response would find nothing to parse and nothing to raise:
                # spared, as it is at least twice per response read after a wait. The
                # last three tests are those of next_response's first line.)
                resp = eng.next_response()
                if resp is not None:
                    if eng.states.conn is not _OPEN:
                        self._settle()
                    return resp
            if deadline is None:
                if self._sent_at:
                    # The answer to the oldest request outstanding, sent a moment ago,
                    # cannot have come yet (the usual case in a loop of many
                    # connections): wait for it without trying a receive that would
                    # find nothing. (Not over TLS,
                    # whose layer may hold bytes that the socket's readiness hides.)
                    sent_at, self._sent_at = self._sent_at, 0.0
                    tr = self._tr
                    if (
                        blocking is None
                        and tr is not None
                        and tr.waits_in_recv
                        and _monotonic() - sent_at < _ANSWER_TIME
                    ):
                        return tr.want
                if blocking is None and (tr := self._tr).__class__ is PlainTransport:
                    if self._receive_now(tr) < 0:  # (`_fill`'s work, a call less)
                        return tr.wait_in
                    continue
                wait = self._fill(blocking)
                if wait is None:
                    continue
                return wait
            wait = self._fill(None)  # a wait with a deadline is one of poll's
            if wait is not None:
                if not eng.awaiting_continue:
                    return wait
                if time.monotonic() >= deadline:  # no answer to Expect: go ahead as if 100
                    return eng.continue_assumed()
                return PollNeeded(wait[0], wait[1], deadline)

    # -- response bodies ----------------------------------------------------------------

    def _read_step(self, size: int, blocking: str | None) -> bytes | PollNeeded:
        """One step of `read`: up to *size* body bytes, or what to wait for."""
        eng = self._eng
        while True:
            data = eng.read_body(size)
            if data is not None:
                if eng.states.conn is not _OPEN:
                    self._settle()
                return data
            n = eng.direct_size(size) if size >= _DIRECT_READ else 0
            if not n:  # small: fill the buffer, so that the next reads need no system call
                wait = self._fill(blocking)
                if wait is not None:
                    return wait
                continue
            got = self._receive(blocking, n)  # large: straight from the socket
            if got is None:
                return self._tr.want  # type: ignore[union-attr]
            if not got:
                self._received_eof()
                continue
            eng.got_direct(len(got))
            if eng.states.conn is not _OPEN:
                self._settle()
            return got

    def _readinto_step(self, view: memoryview, blocking: str | None) -> int | PollNeeded:
        """One step of `readinto`: the count of body bytes put into *view*, or what to
        wait for."""
        eng = self._eng
        while True:
            n = eng.readinto_body(view)
            if n >= 0:
                if eng.states.conn is not _OPEN:
                    self._settle()
                return n
            n = eng.direct_size(len(view))
            if not n:
                wait = self._fill(blocking)
                if wait is not None:
                    return wait
                continue
            got = self._receive_into(blocking, view[:n] if n < len(view) else view)
            if got < 0:
                return self._tr.want  # type: ignore[union-attr]
            if not got:
                self._received_eof()
                continue
            eng.got_direct(got)
            if eng.states.conn is not _OPEN:
                self._settle()
            return got

    def co_read(self, size: int | None = None) -> Co[bytes]:
        """Generator twin of `read`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The bytes
        are its return value.
        """
        if size is None or size < 0:
            return (yield from self.co_readall())
        if not size:
            self._eng.body_check()
            return b""
        data = self._read_step(size, None)
        if type(data) is PollNeeded:
            data = yield from self._co_wait("body read", self._read_step, size, data)
        return data  # type: ignore[return-value]

    def read(self, size: int | None = None) -> bytes:
        """Read up to *size* body bytes.

        Args:
            size: the most bytes to return; None (or a negative number) reads
                the rest of the body, like `readall`.

        Returns:
            bytes: at least one byte while the body lasts (possibly fewer
            than *size*); ``b''`` once it is complete, and for ``size=0``.
            After the body, every call returns ``b''`` until the next
            `read_response`.

        Raises:
            ConnectionClosed: the connection ended before the body did (never
                returned as short data), or `disconnect` was called.
            InvalidResponse: the body's framing is invalid, e.g. a malformed
                chunk size.
            UnsupportedResponse: the body's end cannot be known: a transfer
                coding other than chunked, or neither length nor chunking on a
                connection that stays open.
            StateError: the response's head has not been read yet (call
                `read_response` first).
            ConnectionTimedOut: no progress for `timeout` seconds.

        ``read1`` is the same method, for `io` wrappers.
        """
        if size is None or size < 0:
            return self.readall()
        if not size:
            self._eng.body_check()
            return b""
        return self._run("body read", self._read_step, size)

    read1 = read

    def co_readinto(self, buf: WritableBuffer) -> Co[int]:
        """Generator twin of `readinto`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The byte
        count is its return value.
        """
        view = _byte_view(buf)
        if not len(view):
            self._eng.body_check()
            return 0
        n = self._readinto_step(view, None)
        if type(n) is PollNeeded:
            n = yield from self._co_wait("body read", self._readinto_step, view, n)
        return n  # type: ignore[return-value]

    def readinto(self, buf: WritableBuffer) -> int:
        """Read body bytes into *buf*, without an intermediate copy.

        When nothing is buffered, the bytes go from the socket straight into
        *buf*: the way to read large bodies.

        Args:
            buf: a writable bytes-like object, e.g. a `bytearray` or a
                `memoryview` slice of one.

        Returns:
            int: how many bytes were stored, at most ``len(buf)``; 0 once the
            body is complete (and for an empty *buf*).

        Raises:
            ConnectionClosed: the connection ended before the body did (never
                returned as short data), or `disconnect` was called.
            InvalidResponse: the body's framing is invalid, e.g. a malformed
                chunk size.
            UnsupportedResponse: the body's end cannot be known: a transfer
                coding other than chunked, or neither length nor chunking on a
                connection that stays open.
            StateError: the response's head has not been read yet (call
                `read_response` first).
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        view = _byte_view(buf)
        size = len(view)
        eng = self._eng
        if not size:
            eng.body_check()
            return 0
        reader = eng.reader
        if reader is not None and (tr := self._tr) is not None and tr.waits_in_recv:
            # Body bytes that may go straight into *buf* (none if bytes are buffered:
            # `_readinto_step` takes those first): receive them at once, waiting in the
            # kernel's receive (`_run`'s and `_readinto_step`'s first steps, spelled out,
            # and the engine's `direct_size` and `got_direct`: the kernel gives at most
            # the *n* bytes asked for).
            n = reader.direct(size)
            if n:
                got = self._receive_into("body read", view if n == size else view[:n])
                if got:
                    reader.got(got)
                    if eng.states.conn is not _OPEN:
                        self._settle()
                    return got
                self._received_eof()  # (raises if the body is cut; else it has ended)
        return self._run("body read", self._readinto_step, view)

    def co_readall(self) -> Co[bytes]:
        """Generator twin of `readall`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The bytes
        are its return value.
        """
        eng = self._eng  # `_buffered_body`, inlined: a call less per response
        reader = eng.reader
        data = eng.take_buffered_body() if reader is None else reader.take_all()
        if data is not None:
            if eng.states.conn is not _OPEN:
                self._settle()
            return data
        parts: list[bytes] = []
        while data := (yield from self._co_run("body read", self._read_step, 1 << 20)):
            parts.append(data)
        return b"".join(parts)

    def readall(self) -> bytes:
        """Read the rest of the response body.

        Returns:
            bytes: everything up to the end of the body; ``b''`` if the body
            is already complete.

        Raises:
            ConnectionClosed: the connection ended before the body did (never
                returned as short data), or `disconnect` was called.
            InvalidResponse: the body's framing is invalid, e.g. a malformed
                chunk size.
            UnsupportedResponse: the body's end cannot be known: a transfer
                coding other than chunked, or neither length nor chunking on a
                connection that stays open.
            StateError: the response's head has not been read yet (call
                `read_response` first).
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        eng = self._eng  # `_buffered_body`, inlined: a call less per response
        reader = eng.reader
        data = eng.take_buffered_body() if reader is None else reader.take_all()
        if data is not None:
            if eng.states.conn is not _OPEN:
                self._settle()
            return data
        parts: list[bytes] = []
        while data := self._run("body read", self._read_step, 1 << 20):
            parts.append(data)
        return b"".join(parts)

    def _buffered_body(self) -> bytes | None:
        """The rest of the body if all of it is buffered (or none is due), else None:
        `readall` without a system call. (The pool's reader uses it too.)"""
        eng = self._eng
        reader = eng.reader
        data = eng.take_buffered_body() if reader is None else reader.take_all()
        if data is not None and eng.states.conn is not _OPEN:
            self._settle()
        return data

    def co_discard(self) -> Co[None]:
        """Generator twin of `discard`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait.
        """
        while (yield from self._co_run("body read", self._readinto_step, _scratch)):
            pass

    def discard(self) -> None:
        """Read the rest of the response body and throw it away.

        Use it to skip a body that is not needed while keeping the connection
        usable for the next response.

        Raises:
            ConnectionClosed: the connection ended before the body did (never
                returned as short data), or `disconnect` was called.
            InvalidResponse: the body's framing is invalid, e.g. a malformed
                chunk size.
            UnsupportedResponse: the body's end cannot be known: a transfer
                coding other than chunked, or neither length nor chunking on a
                connection that stays open.
            StateError: the response's head has not been read yet (call
                `read_response` first).
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        while self._run("body read", self._readinto_step, _scratch):
            pass

    def co_read_raw(self, size: int) -> Co[bytes]:
        """Generator twin of `read_raw`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The bytes
        are its return value.
        """
        self._eng.fail("read_raw()")
        return (yield from self._co_run("read_raw()", self._raw_step, size))

    def read_raw(self, size: int) -> bytes:
        """Debugging aid: read up to *size* raw bytes from the connection.

        Bytes already buffered come first, then the socket. The connection
        then no longer knows where it is in the byte stream: it raises
        `StateError` until `reset`. After a ``101 Switching Protocols``
        answer, the connection stays open for it: what the server sends in
        the new protocol comes next (no further request goes out on it).

        Args:
            size: the most bytes to return.

        Returns:
            bytes: what arrived; ``b''`` once the server has closed.
        """
        self._eng.fail("read_raw()")
        return self._run("read_raw()", self._raw_step, size)

    def _raw_step(self, size: int, blocking: str | None) -> bytes | PollNeeded:
        buf = self._eng.buffer
        if buf.end > buf.start:
            return buf.take(size)
        tr = self._tr
        if tr is None:
            return b""
        try:
            data = tr.recv(size)
        except ConnectionClosed:
            return b""  # reset, or TLS without close_notify: for a debug read, the end
        return tr.want if data is None else data

    # -- the file-like surface, for io.TextIOWrapper and friends ------------------------

    closed = False

    def readable(self) -> bool:
        """True: the response body can be read like a file."""
        return True

    def writable(self) -> bool:
        """False: write() is for request bodies, not a file interface."""
        return False

    def seekable(self) -> bool:
        """False."""
        return False

    def flush(self) -> None:
        """Does nothing (for io wrappers)."""

    def close(self) -> None:
        """Does nothing, so that io wrappers do not end the connection; see `disconnect`."""


for _cls in (BodyFollowing, HTTPResponse, HTTPConnection):
    _cls.__module__ = "dugong"
