"""HTTPConnection: the request queue, send and receive state, every co_ method and its twin."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, NamedTuple, TypeVar

from ._buffer import RecvBuffer
from ._connect import co_open
from ._exceptions import (
    ConnectionClosed,
    ConnectionTimedOut,
    ExcessBodyData,
    InvalidResponse,
    StateError,
)
from ._headers import CaseInsensitiveDict, ResponseHeaders
from ._log import debug
from ._poll import POLLIN, Co, PollNeeded, _to_ms, eval_coroutine
from ._protocol import (
    _PARSED_HEAD_SIZE,
    BodyKind,
    _new,
    find_head_end,
    format_host,
    parse_chunk_size,
    parse_response,
    parse_trailers,
    proxy_fields,
    request_head,
)
from ._transport import PlainTransport

__all__ = ["BodyFollowing", "HTTPConnection", "HTTPResponse"]


_Buffer = bytes | bytearray | memoryview

# Reads of at least this many bytes go straight from the socket to the caller.
_DIRECT_READ = 16 * 1024
_WOULD_BLOCK = -1  # a body read step must wait for the socket
_FRAMING = -2  # a body read step must read chunk framing first
# "No limit" for the body of a response that ends when the server closes.
_UNTIL_CLOSE = 1 << 62
_NO_BODY_FIELDS = (("Content-Length", "0"),)
_BODY_FIELD_NAMES = ("content-length", "transfer-encoding")
_EXPECT_FIELD_NAMES = ("content-length", "transfer-encoding", "expect")
_scratch = memoryview(bytearray(64 * 1024))  # where discard() drops bytes


#: The dugong package, whose tunables (limits, sizes) users may rebind.
_package: Any = sys.modules[__package__ or "dugong"]


def _byte_view(buf: Any) -> memoryview:
    """*buf* as a flat memoryview of bytes."""
    view = buf if type(buf) is memoryview else memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


_A = TypeVar("_A")
_R = TypeVar("_R")

class BodyFollowing:
    """Pass as ``body=`` to send the request body later with `HTTPConnection.write`.

    ``BodyFollowing(n)`` announces exactly *n* bytes (``Content-Length``);
    ``BodyFollowing()`` sends the body chunked: each non-empty ``write()`` is
    one chunk and ``write(b'')`` ends the body.

    Args:
        length: the number of body bytes that will follow, or None for a
            chunked body.

    Raises:
        TypeError: *length* is neither an int nor None.
        ValueError: *length* is negative.

    Attributes:
        length (int | None): the announced length; None for a chunked body.
    """

    __slots__ = ("length",)

    def __init__(self, length: int | None = None) -> None:
        if length is not None:
            if not isinstance(length, int) or isinstance(length, bool):
                raise TypeError(f"body length must be an int, not {type(length).__name__}")
            if length < 0:
                raise ValueError(f"body length must not be negative: {length}")
        #: the announced body length, or None for a chunked body
        self.length = length

    def __repr__(self) -> str:
        return f"BodyFollowing({'' if self.length is None else self.length})"


class HTTPResponse:
    """The status line and header fields of one response.

    Attributes:
        method: method of the request this answers.
        path: path of the request this answers.
        status: the status code, e.g. 200.
        reason: the reason phrase, e.g. ``'OK'``.
        headers: the header fields, read like an `email.message.Message`.
        length: body bytes that follow; 0 if none can; None if unknown
            (chunked, or read until the server closes).
        trailers: trailer fields of a chunked body (a `CaseInsensitiveDict`),
            filled once the body has been read; empty otherwise.

    `HTTPConnection.read_response` makes these; programs do not create them.
    """

    __slots__ = ("_error", "_kind", "_left", "_need_crlf", "_trailers", "_will_close",
                 "headers", "length", "method", "path", "reason", "status")

    def __init__(self, method: str, path: str, status: int, reason: str,
                 headers: ResponseHeaders, length: int | None = None) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.headers = headers
        self.length = length
        self._trailers: CaseInsensitiveDict | None = None

    def _start_body(self, kind: str, left: int, will_close: bool,
                    error: Exception | None = None) -> HTTPResponse:
        """Mark this as the response whose body the connection reads next."""
        self._kind = kind
        #: bytes that may be read before framing work is due (chunk data, or the length)
        self._left = left
        self._will_close = will_close
        self._error = error
        #: chunked: the CRLF after the chunk data is still to come
        self._need_crlf = False
        return self

    @property
    def trailers(self) -> CaseInsensitiveDict:
        """Trailer fields of a chunked body, once it has been read (else empty)."""
        if self._trailers is None:
            self._trailers = CaseInsensitiveDict()
        return self._trailers

    @trailers.setter
    def trailers(self, value: CaseInsensitiveDict) -> None:
        self._trailers = value

    def __repr__(self) -> str:
        return (f"<HTTPResponse {self.status} {self.reason!r} to {self.method} "
                f"{self.path!r}, length={self.length}>")


class _Request(NamedTuple):
    method: str
    path: str
    expect100: bool
    body_length: int | None  # announced with BodyFollowing; None: chunked or no body


class _Send:
    """What the sending side is doing (string constants: see `BodyKind`)."""

    IDLE: Final = "no request body in progress"
    BODY: Final = "sending a body of known length"
    CHUNKED: Final = "sending a chunked body"
    WAIT100: Final = "waiting for 100 Continue"
    CLOSED: Final = "the connection broke while sending"


#: send states in which no request body is due
_IDLE_SEND = frozenset((_Send.IDLE, _Send.CLOSED))


class HTTPConnection:
    """One HTTP/1.1 connection to one server.

    Args:
        hostname: the server's name or address (an IPv6 address with or
            without brackets).
        port: defaults to 80, or 443 when *ssl_context* is given.
        ssl_context: an `ssl.SSLContext` to talk TLS with the server. It is
            used as given: its ``check_hostname`` and ``verify_mode`` decide
            what is checked; the host name is sent for SNI.
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
    with poll where the twin would yield (with `eval_coroutine`, or with a
    poll of their own for reads), and raise `ConnectionTimedOut` when one
    wait exceeds `timeout` seconds.

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

    def __init__(self, hostname: str, port: int | None = None, ssl_context: Any = None,
                 proxy: tuple[str, int] | None = None, *,
                 proxy_headers: Mapping[str, str] | None = None) -> None:
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
        # Plain requests through a proxy carry the absolute URI.
        self._target_prefix = (
            f"http://{format_host(hostname, port, 80)}"
            if proxy is not None and ssl_context is None else ""
        )
        self._tr: PlainTransport | None = None
        self._buf: RecvBuffer | None = None
        self._pending: deque[_Request] = deque()
        self._send = _Send.IDLE
        self._out_left = 0
        self._body: HTTPResponse | None = None
        self._body_done = False
        self._interim = 0  # bytes of 1xx heads skipped since the last final response
        self._head_seen = 0  # bytes of the next head already searched for its end
        #: the last bodiless request without caller fields: (method, path, its parts)
        self._last_request: tuple[str, str, Any] | None = None
        #: the previous response head: (bytes, method, limits, its parse), or None
        self._last_head: tuple[bytes, str, tuple[int, int, int], Any] | None = None
        #: why no further request or response can use this connection
        self._closed_reason: str | None = None
        #: why the connection must be reset before further use
        self._broken: str | None = None
        #: the server may still expect request body bytes: reconnect before the next request
        self._stale = False
        #: disconnect() was called: reads and writes raise ConnectionClosed until a request
        self._closed_locally = False
        #: how many requests at the end of the queue were never sent (the connection had
        #: closed): read_response() reports each with ConnectionClosed
        self._unsent = 0
        #: the request whose body follows (BodyFollowing), until it is answered
        self._writing: _Request | None = None
        #: a request's sender is opening the connection
        self._connecting = False
        #: a pipe a reader waits on while a sender connects: (read end, write end)
        self._signal: tuple[int, int] | None = None
        #: why the connect a reader waited for failed (for that reader)
        self._connect_failure: ConnectionClosed | None = None

    # -- connection management ----------------------------------------------------------

    def co_connect(self) -> Co[None]:
        """Generator twin of `connect`: yields `PollNeeded` instead of blocking.

        Name resolution runs in a helper thread whose end is signalled through
        a file descriptor, so not even the resolver blocks the loop. It ignores
        `timeout`: the driver decides how long to wait.
        """
        self._forget()
        self._closed_locally = False
        yield from self._co_open()

    def _co_open(self, req: _Request | None = None) -> Co[None]:
        """Open the transport, keeping the request queue. *req*, if given, is the queued
        request whose sender connects: if connecting fails it leaves the queue unsent, and
        a reader that waits for its response learns why."""
        self._connecting = True
        try:
            tr = yield from co_open(self.hostname, self.port, self.ssl_context, self.proxy,
                                    self._proxy_fields)
        except BaseException as exc:
            if req is not None:
                with contextlib.suppress(ValueError):
                    self._pending.remove(req)
                if self._signal is not None:
                    err = ConnectionClosed(f"No response to {req.method} {req.path}: the "
                                           f"connection could not be opened ({exc!r})")
                    err.request_sent = False
                    self._connect_failure = err
            raise
        else:
            self._buf = RecvBuffer(_package.BUFFER_SIZE)
            self._tr = tr
        finally:
            self._connecting = False
            signal = self._signal
            if signal is not None:
                with contextlib.suppress(OSError):  # the reader is gone
                    os.write(signal[1], b"!")

    def _co_connected(self) -> Co[None]:
        """Wait until the sender that is opening the connection is done (for a reader)."""
        signal = self._signal
        if signal is None:
            signal = self._signal = os.pipe()
        try:
            while self._connecting:
                yield PollNeeded(signal[0], POLLIN)
        finally:
            self._signal = None
            for fd in signal:
                os.close(fd)
        failure = self._connect_failure
        if failure is not None:
            self._connect_failure = None
            raise failure

    def connect(self) -> None:
        """Open the connection now (it is otherwise opened by the first request).

        An open connection is closed first, and its pending requests are
        forgotten. Name resolution, the TCP connect, a proxy's ``CONNECT``
        tunnel and the TLS handshake each count as waits for `timeout`.

        Raises:
            HostnameNotResolvable: the host name does not exist.
            DNSUnavailable: no DNS server could be reached.
            ConnectionError: the proxy refused the ``CONNECT`` tunnel (the
                message gives its status).
            ConnectionClosed: the server or proxy closed the connection during
                the TLS handshake or before answering ``CONNECT``.
            InvalidResponse: the proxy's answer to ``CONNECT`` is malformed.
            OSError: the TCP connect failed, e.g. `ConnectionRefusedError`.
            ssl.SSLError: the TLS handshake failed, e.g.
                `ssl.SSLCertVerificationError`.
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        return eval_coroutine(self.co_connect(), self.timeout)

    def disconnect(self) -> None:
        """Close the connection and forget all pending requests and responses.

        Never raises, even for a broken connection. The object stays usable:
        the next request connects anew. Until then, reading a response or a
        body, or writing one, raises `ConnectionClosed` ("closed locally"), as
        in dugong 3.x.
        """
        self._forget()
        self._closed_locally = True

    def _forget(self) -> None:
        """Close the transport and return to the state of a new connection."""
        tr = self._tr
        if tr is not None:
            self._tr = None
            tr.close()
            debug("disconnected from %s port %d", self.hostname, self.port)
        self._buf = None
        self._pending.clear()
        self._send = _Send.IDLE
        self._out_left = 0
        self._body = None
        self._body_done = False
        self._interim = self._head_seen = 0
        self._closed_reason = None
        self._broken = None
        self._stale = False
        self._unsent = 0
        self._writing = None

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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.disconnect()

    def response_pending(self) -> bool:
        """True while responses, or parts of one, remain to be read."""
        return bool(self._pending) or self._body is not None

    # -- a read-only view of the state, e.g. for pools ------------------------------------

    @property
    def _out_remaining(self) -> int | bool | None:
        """Kept for dugong 3.x programs (S3QL reads it): None when no request body is
        outstanding, else a true value (the bytes left when known). Use `is_idle`."""
        state = self._send
        if state is _Send.BODY:
            return self._out_left
        if state is _Send.WAIT100:
            return self._out_left if self._out_left > 0 else True
        return True if state is _Send.CHUNKED else None

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
        return (not self._pending and self._body is None and self._broken is None
                and self._send in _IDLE_SEND)

    @property
    def responses_outstanding(self) -> int:
        """How many requests sent still have their response, or part of it, to be read."""
        return len(self._pending) + (self._body is not None)

    def get_ssl_peercert(self, binary_form: bool = False) -> Any:
        """The server's certificate, as `ssl.SSLSocket.getpeercert` gives it.

        Args:
            binary_form: True for the DER-encoded certificate (bytes), False
                for a dict of its fields (empty if the context does not
                verify certificates).

        Returns None for plain HTTP. Connects first (blocking) if the
        connection is not open, raising what `connect` raises.
        """
        if self.ssl_context is None:
            return None
        if self._tr is None:
            self.connect()
        assert self._tr is not None
        getpeercert = getattr(self._tr.sock, "getpeercert", None)  # None: not an SSLSocket
        return None if getpeercert is None else getpeercert(binary_form)

    def get_ssl_cipher(self) -> tuple[str, str, int] | None:
        """The TLS cipher in use: ``(name, protocol, secret bits)``.

        As `ssl.SSLSocket.cipher` gives it; None for plain HTTP. Connects
        first (blocking) if the connection is not open, raising what
        `connect` raises.
        """
        if self.ssl_context is None:
            return None
        if self._tr is None:
            self.connect()
        assert self._tr is not None
        cipher = getattr(self._tr.sock, "cipher", None)  # None: not an SSLSocket
        return None if cipher is None else cipher()

    # -- failure bookkeeping ------------------------------------------------------------

    def _break(self, why: str) -> None:
        """Make every later call fail until reset(): the state is no longer known."""
        if self._broken is None:
            self._broken = why
        self._body = None
        self._send = _Send.CLOSED

    def _unusable(self) -> Exception:
        if self._broken is not None:
            return StateError(f"Connection unusable after {self._broken}; call reset()")
        return ConnectionClosed(self._closed_reason or "Connection closed")

    def _lost(self, exc: ConnectionClosed) -> None:
        """The transport died: close it and remember why."""
        self._body = None
        self._closed(str(exc))

    def _closed(self, why: str) -> None:
        """No request or response can use this connection any more: close our side."""
        self._closed_reason = why
        self._send = _Send.CLOSED
        tr = self._tr
        if tr is not None:
            self._tr = None
            tr.close()
            debug("%s port %d: %s", self.hostname, self.port, why)

    def _block(self, want: PollNeeded, unwind: Callable[..., Co[Any]], *args: Any) -> None:
        """Wait in a blocking method for *want* (of the transport), at most `timeout`
        seconds, without the generator that `eval_coroutine` would need.

        *unwind* (with *args*) makes the ``co_`` twin's waiting part. If the wait
        ends in an exception (`ConnectionTimedOut`, or an interrupt), that
        generator is started and closed at its first wait, as `eval_coroutine`
        closes it, so that the connection ends up in the same state.
        """
        tr = self._tr
        assert tr is not None
        timeout = self.timeout
        try:
            if not tr.wait(want[1], None if timeout is None else _to_ms(timeout)):
                raise ConnectionTimedOut(f"No progress for {timeout} seconds")
        except BaseException:
            crt = unwind(*args)
            next(crt)
            crt.close()
            raise

    # -- requests -----------------------------------------------------------------------

    def co_send_request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                        body: _Buffer | BodyFollowing | None = None,
                        expect100: bool = False) -> Co[None]:
        """Generator twin of `send_request`: yields `PollNeeded` instead of blocking.

        Opening the connection (if needed) does not block either. It ignores
        `timeout`: the driver decides how long to wait.
        """
        rest = self._send_request_now(method, path, headers, body, expect100)
        if rest is not None:
            yield from rest

    def _send_request_now(self, method: str, path: str, headers: Mapping[str, str] | None,
                          body: _Buffer | BodyFollowing | None,
                          expect100: bool) -> Co[None] | None:
        """All of `send_request` that needs no waiting.

        Returns None if the request went out whole at once (the usual case),
        else a generator that completes it, connecting first if needed.
        """
        if body is None and not headers and not expect100:
            # Bodiless requests without caller fields repeat a lot (pipelined GETs): the last
            # one's bytes and queue entry are kept, as both depend only on method and path.
            last = self._last_request
            if last is not None and last[0] == method and last[1] == path:
                req, out, total = last[2]
            else:
                parts = self._request_parts(method, path, None, None, False)
                self._last_request = (method, path, parts)
                req, out, total = parts
            follows = False
        else:
            req, out, total = self._request_parts(method, path, headers, body, expect100)
            follows = isinstance(body, BodyFollowing)
        if self._send is not _Send.IDLE:
            if self._broken is not None:
                raise self._unusable()
            if self._send is not _Send.CLOSED:
                raise StateError(f"Cannot send a request now: {self._send}")
            # The connection has closed (the server closed it, or it broke while a body was
            # sent): as in dugong 3.x, this does not raise; nothing is sent, and
            # read_response() reports it.
            self._pending.append(req)
            self._unsent += 1
            if follows:  # write() then raises ConnectionClosed, not StateError
                self._writing = req
            return None
        if self._stale:
            if self._pending or self._body is not None:
                raise StateError("The server answered before the request body was sent; "
                                 "read its response before sending another request")
            self._forget()  # the server may still wait for the old body
        tr = self._tr
        buf = self._buf
        if tr is not None and not self._pending and self._body is None and (
                (buf is not None and buf.end != buf.start) or tr.dropped()):
            # Idle, and the server closed it (or sent something unasked, e.g. a 408) since
            # the last response: nothing of this request was sent, so a new connection is safe.
            debug("%s port %d: idle connection dropped by the server, reconnecting",
                  self.hostname, self.port)
            self._forget()
            tr = None
        self._pending.append(req)  # pending from now on, connecting included
        if tr is None:
            self._closed_locally = False
            return self._co_send_request_rest(req, follows, out, None)
        n = self._send_now(tr, out)
        if n != total:
            return self._co_send_request_rest(req, follows, out, n)
        if follows:
            self._request_sent(req)
        return None

    def _request_parts(self, method: str, path: str, headers: Mapping[str, str] | None,
                       body: _Buffer | BodyFollowing | None,
                       expect100: bool) -> tuple[_Request, _Buffer | tuple[_Buffer, ...], int]:
        """Check the arguments of a request: its queue entry, what to send now (the
        head, with the body if there is one) and the byte count of that."""
        body_length: int | None = None
        names: tuple[str, ...] = _BODY_FIELD_NAMES
        data: _Buffer | None = None
        if body is None:
            fields: tuple[tuple[str, str], ...] = _NO_BODY_FIELDS
        elif isinstance(body, BodyFollowing):
            body_length = body.length
            if body_length is None:
                fields = (("Transfer-Encoding", "chunked"),)
            else:
                fields = (("Content-Length", str(body_length)),)
            if expect100:
                fields += (("Expect", "100-continue"),)
                names = _EXPECT_FIELD_NAMES
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = body
            size = body.nbytes if isinstance(body, memoryview) else len(body)
            fields = (("Content-Length", str(size)),)
            if not headers or not any(k.lower() == "content-md5" for k in headers):
                fields += (("Content-MD5", _md5_b64(body)),)
        else:
            raise TypeError(f"body must be bytes-like, BodyFollowing or None, "
                            f"not {type(body).__name__}")
        if expect100 and not isinstance(body, BodyFollowing):
            raise ValueError("expect100=True needs body=BodyFollowing(...)")
        if self._proxy_fields and self._target_prefix:  # for the proxy, which reads them
            fields += self._proxy_fields
            names += tuple(name.lower() for name, _ in self._proxy_fields)
        head = request_head(method, self._target_prefix + path if self._target_prefix
                            else path, headers, self._host_field, fields, names)
        req = _new(_Request, (method, path, expect100, body_length))
        if data is None:
            return req, head, len(head)
        if size < 8192:
            out = head + data
            return req, out, len(out)
        return req, (head, data), len(head) + size  # a large body is not copied: one sendmsg

    def _co_send_request_rest(self, req: _Request, follows: bool,
                              out: _Buffer | tuple[_Buffer, ...],
                              first: int | None) -> Co[None]:
        """Finish `send_request`: *first* is what sending *out* returned, or None if
        nothing was tried yet (then connect if needed, and queue *req*)."""
        if first is None:
            yield from self._co_open(req)
        yield from self._co_send_rest(out, first, "send_request()")
        if follows:
            self._request_sent(req)

    def _request_sent(self, req: _Request) -> None:
        """The head of a request with `BodyFollowing` is sent: await its body."""
        self._writing = req
        length = req.body_length
        if req.expect100:
            self._send = _Send.WAIT100
            self._out_left = length if length is not None else -1
        elif length is None:
            self._send = _Send.CHUNKED
        elif length:
            self._send = _Send.BODY
            self._out_left = length

    def _send_now(self, tr: PlainTransport, out: _Buffer | tuple[_Buffer, ...]) -> int:
        """Try to send *out* (a bytes-like object, or a tuple of them to send in order)
        at once: the byte count, or -1 if the socket takes nothing now."""
        try:
            return tr.sendv(out) if type(out) is tuple else tr.send(out)  # type: ignore[arg-type]
        except ConnectionClosed:
            # The request may have reached the server: read_response() can still tell.
            self._send = _Send.CLOSED
            raise

    def _co_send_rest(self, out: _Buffer | tuple[_Buffer, ...], first: int | None,
                      what: str) -> Co[None]:
        """Send what is left of *out* (a bytes-like object whose first send returned
        *first*, or a tuple of them to send in order)."""
        tr = self._tr
        assert tr is not None
        try:
            if type(out) is tuple:
                yield from tr.co_send_parts(out, first)
            else:
                yield from tr.co_send_all(out, first)  # type: ignore[arg-type]
        except ConnectionClosed:
            self._send = _Send.CLOSED  # the request counts as sent
            raise
        except GeneratorExit:
            self._break(f"an interrupted {what}")
            raise

    def send_request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                     body: _Buffer | BodyFollowing | None = None,
                     expect100: bool = False) -> None:
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
            StateError: the previous request's body is unfinished, or the
                connection must be `reset` first.
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
        rest = self._send_request_now(method, path, headers, body, expect100)
        if rest is not None:
            eval_coroutine(rest, self.timeout)

    def co_write(self, buf: _Buffer) -> Co[None]:
        """Generator twin of `write`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait.
        """
        rest = self._write_now(buf)
        if rest is not None:
            yield from rest

    def _write_now(self, buf: _Buffer) -> Co[None] | None:
        """All of `write` that needs no waiting: None if *buf* went out whole at once,
        else a generator that completes the write."""
        state = self._send
        size = len(buf) if type(buf) is bytes or type(buf) is bytearray \
            else memoryview(buf).nbytes
        if state is _Send.BODY:
            if size > self._out_left:
                raise ExcessBodyData(f"write() of {size} bytes, but only {self._out_left} "
                                     "of the announced body length are left")
            if not size:
                return None
            out: _Buffer | tuple[_Buffer, ...] = buf
            total = size
        elif state is _Send.CHUNKED:
            out, total = b"0\r\n\r\n", 5  # the last chunk, for write(b"")
        elif state is _Send.IDLE:
            if self._closed_locally:
                raise ConnectionClosed("Connection closed locally (disconnect())")
            raise StateError("No request body is expected: send a request with "
                             "body=BodyFollowing(...) first")
        elif state is _Send.WAIT100:
            raise StateError("Waiting for 100 Continue: call read_response() first")
        elif self._broken is None and self._writing is None:
            # Misuse first: with no body expected, whether the connection closed is moot.
            raise StateError("No request body is expected: send a request with "
                             "body=BodyFollowing(...) first")
        else:
            raise self._unusable()
        tr = self._tr
        if tr is None:
            raise ConnectionClosed(self._closed_reason or "Connection closed")
        if state is _Send.CHUNKED and size:  # size line, data and CRLF in one call
            line = b"%X\r\n" % size
            out = (line, buf, b"\r\n")
            total = len(line) + size + 2
        n = self._send_now(tr, out)
        if n == total:
            self._wrote(state, size)
            return None
        return self._co_write_rest(state, size, out, n)

    def _co_write_rest(self, state: str, size: int, out: _Buffer | tuple[_Buffer, ...],
                       first: int | None) -> Co[None]:
        yield from self._co_send_rest(out, first, "write()")
        self._wrote(state, size)

    def _wrote(self, state: str, size: int) -> None:
        """*size* body bytes are sent (a chunk or the last chunk, if chunked)."""
        if state is _Send.BODY:
            self._out_left -= size
            if not self._out_left:
                self._send = _Send.IDLE
                self._writing = None
        elif not size:
            self._send = _Send.IDLE
            self._writing = None

    def write(self, buf: _Buffer) -> None:
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
                closed meanwhile), or the ``100 Continue`` awaited by an
                ``expect100`` request has not been read yet.
            ConnectionClosed: the connection broke. The request then counts
                as sent, so `read_response` may still fetch an answer the
                server sent before it closed. Also after `disconnect`.
            ConnectionTimedOut: no progress for `timeout` seconds.
        """
        rest = self._write_now(buf)
        if rest is not None:
            eval_coroutine(rest, self.timeout)

    # -- responses ----------------------------------------------------------------------

    def _check_read_response(self) -> None:
        """Raise what `read_response` raises when no response may be read now."""
        if self._broken is not None:
            raise self._unusable()
        if self._body is not None:
            raise StateError("The previous response body has not been read completely")
        pending = self._pending
        if not pending:
            if self._closed_locally:
                raise ConnectionClosed("Connection closed locally (disconnect()): send a "
                                       "request first")
            raise StateError("No response is pending: send a request first")
        if len(pending) <= self._unsent:
            req = pending.popleft()
            self._unsent -= 1
            if req is self._writing:
                self._writing = None
            exc = ConnectionClosed(f"{req.method} {req.path} was not sent: "
                                   f"{self._closed_reason or 'the connection broke'}")
            exc.request_sent = False
            raise exc
        if self._closed_reason is not None:
            req = pending.popleft()
            raise ConnectionClosed(f"No response to {req.method} {req.path}: "
                                   f"{self._closed_reason}")
        if len(pending) == 1 and (self._send is _Send.BODY or self._send is _Send.CHUNKED):
            raise StateError("The request body has not been sent completely: write() the "
                             "rest before reading the response")

    def _awaiting_100(self, req: _Request) -> bool:
        """True if *req* is the only request out and waits for ``100 Continue``."""
        return req.expect100 and self._send is _Send.WAIT100 and len(self._pending) == 1

    def _buffered_response(self) -> HTTPResponse | None:
        """The next response if its head is buffered, else None (more bytes needed).

        Raises what `read_response` raises when no response may be read now.
        Interim 1xx heads are consumed on the way, except an awaited ``100``.
        This is all of `read_response` that does not wait.
        """
        if self._body is not None or not self._pending or self._send is not _Send.IDLE:
            self._check_read_response()  # (a closed or broken connection is never IDLE)
        buf = self._buf
        if buf is None or buf.end == buf.start:
            return None  # nothing to parse yet
        req = self._pending[0]
        pkg = _package
        limits = (pkg.MAX_LINE_SIZE, pkg.MAX_HEADER_SIZE, pkg.MAX_HEADER_FIELDS)
        try:
            while True:
                last = self._last_head
                if last is not None and last[1] == req.method and last[2] == limits \
                        and buf.data.startswith(last[0], buf.start, buf.end):
                    # The same bytes as the previous head (the usual case when pipelining:
                    # the same resource within the same second of the server's Date), so
                    # the same end and the same parse.
                    size = len(last[0])
                    buf.start += size
                    self._head_seen = 0
                    head, framing = last[3]
                else:
                    text = self._buffered_head(buf, limits[1])
                    if text is None:
                        return None
                    size = len(text)
                    head, framing = parse_response(req.method, text, *limits)
                    if framing[0] is not BodyKind.ERROR and size <= _PARSED_HEAD_SIZE:
                        self._last_head = (text.encode("latin-1"), req.method, limits,
                                           (head, framing))
                status = head[1]
                if status >= 200 or status == 101:
                    return self._final_response(req, head, framing)
                if status == 100 and self._awaiting_100(req):
                    return self._continue(req, head[2], head[3])
                self._interim += size
                if self._interim > pkg.MAX_INTERIM_SIZE:
                    raise InvalidResponse(
                        f"Interim (1xx) responses exceed {pkg.MAX_INTERIM_SIZE} bytes")
        except Exception as exc:
            self._break(f"an invalid response ({exc})")
            raise

    def _buffered_head(self, buf: RecvBuffer, limit: int) -> str | None:
        """Take the next response head (status line to empty line) from *buf* as
        latin-1 text; None if its end has not arrived yet."""
        start, end = buf.start, buf.end
        if end == start:
            return None
        stop = find_head_end(buf.data, start, end, start + self._head_seen)
        if stop >= 0:
            self._head_seen = 0
            buf.start = stop
            return str(buf.view[start:stop], "latin-1")
        seen = end - start - 2
        if seen > limit:
            raise InvalidResponse(f"Response head exceeds {limit} bytes")
        self._head_seen = max(0, seen)
        return None

    def co_read_response(self) -> Co[HTTPResponse]:
        """Generator twin of `read_response`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The
        `HTTPResponse` is its return value.
        """
        resp = self._response_now()
        if resp is None:
            resp = yield from self._co_response_wait()
        return resp

    def _response_now(self) -> HTTPResponse | None:
        """All of `read_response` that does not wait: the next response, from what is
        buffered and what the socket holds now; None if the socket must be waited for."""
        resp = self._buffered_response()
        return resp if resp is not None else self._received_response()

    def _received_response(self) -> HTTPResponse | None:
        """The second half of `_response_now`, for when the buffer holds no complete
        response: receive what the socket holds and parse it (None: nothing came)."""
        while True:
            buf = self._buf
            if buf is None and self._connecting:
                return None
            started = buf is not None and buf.end > buf.start
            try:
                n = self._fill_now("before sending a complete response head" if started
                                   else "before sending a response")
            except ConnectionClosed as exc:
                exc.response_started = started
                self._pending.popleft()
                self._lost(exc)
                raise
            if n < 0:
                return None
            resp = self._buffered_response()
            if resp is not None:
                return resp

    def _co_response_wait(self) -> Co[HTTPResponse]:
        """The rest of `read_response` after `_response_now` found nothing to read:
        wait for the socket (at most until `expect100_timeout` if a 100 is awaited)."""
        req = self._pending[0]
        deadline = None
        if self.expect100_timeout is not None and self._awaiting_100(req):
            deadline = time.monotonic() + self.expect100_timeout
        try:
            while True:
                tr = self._tr
                buf = self._buf
                if tr is None and self._connecting:  # its sender is still connecting
                    yield from self._co_connected()
                    resp = self._response_now()
                    if resp is not None:
                        return resp
                    continue
                assert tr is not None
                assert buf is not None
                if deadline is None or buf.end != buf.start:
                    yield tr.want
                elif time.monotonic() >= deadline:  # no answer to Expect: go ahead as if 100
                    return self._continue(req, "Continue", ResponseHeaders([]))
                else:
                    yield PollNeeded(tr.want[0], tr.want[1], deadline)
                resp = self._received_response()
                if resp is not None:
                    return resp
        except GeneratorExit:
            self._break("an interrupted read_response()")
            raise

    def _final_response(self, req: _Request, head: Any, framing: Any) -> HTTPResponse:
        """Set up the body of the final response whose head was just parsed."""
        self._interim = 0
        status = head[1]
        if self._send is not _Send.IDLE and len(self._pending) == 1 and (
                self._send is not _Send.CLOSED or self._closed_reason is None):
            # Answered before the whole body was sent (or instead of 100 Continue, or after
            # the server cut the body short): the server may still read body bytes, or has
            # closed, so this connection carries no more requests.
            self._stale = True
            if self._send is _Send.WAIT100:
                self._send = _Send.IDLE
        kind, length, will_close, error = framing
        if status == 101:
            kind, length, will_close = BodyKind.NONE, 0, True
        resp = HTTPResponse(req.method, req.path, status, head[2], head[3], length)
        self._body_done = False
        if req is self._writing:  # answered: its body is no longer expected
            self._writing = None
        # The body is set up before the request leaves the queue, so that a thread sending
        # meanwhile never sees the connection idle while this response is being read.
        if kind is BodyKind.LENGTH and length:
            self._body = resp._start_body(kind, length, will_close)
        elif kind is BodyKind.CHUNKED:
            self._body = resp._start_body(kind, 0, will_close)
        elif kind is BodyKind.UNTIL_CLOSE:
            self._body = resp._start_body(kind, _UNTIL_CLOSE, True)
        elif kind is BodyKind.ERROR:
            self._body = resp._start_body(kind, 0, True, error)
        self._pending.popleft()
        if self._body is None:
            self._end_body(will_close)
        return resp

    def _continue(self, req: _Request, reason: str, headers: ResponseHeaders) -> HTTPResponse:
        """The body of an expect100 request may be sent now."""
        self._interim = 0
        if req.body_length is None:
            self._send = _Send.CHUNKED
        elif req.body_length:
            self._send = _Send.BODY
            self._out_left = req.body_length
        else:
            self._send = _Send.IDLE
        return HTTPResponse(req.method, req.path, 100, reason, headers, 0)

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
        resp = self._buffered_response()
        if resp is not None:
            return resp
        if self.expect100_timeout is not None or self._connecting:
            # the wait may have a deadline, or begins with another thread's connect
            return eval_coroutine(self.co_read_response(), self.timeout)
        tr = self._tr
        if tr is not None and tr.drained:  # the socket was empty: wait before receiving
            self._block(tr.wait_in, self._co_response_wait)
        resp = self._received_response()
        while resp is None:
            self._block(self._tr.want, self._co_response_wait)  # type: ignore[union-attr]
            resp = self._received_response()
        return resp

    def _fill_now(self, what: str) -> int:
        """Receive what the socket holds now into the buffer: the count, or -1 if
        nothing is there yet. EOF raises, *what* saying what was cut short."""
        tr = self._tr
        buf = self._buf
        if tr is None or buf is None:
            raise ConnectionClosed(f"Connection closed {what}")
        n = tr.recv_into(buf.space())
        if n > 0:
            buf.end += n
        elif n == 0:
            raise ConnectionClosed(f"Server closed the connection {what}")
        return n

    def _co_fill(self, what: str) -> Co[int]:
        """Receive more bytes into the buffer: their count, never 0 (EOF raises)."""
        while True:
            n = self._fill_now(what)
            if n > 0:
                return n
            tr = self._tr
            assert tr is not None
            yield tr.want

    def _co_read_line(self, limit: int, what: str) -> Co[bytes]:
        """Read one CRLF-terminated line of the body framing, without the CRLF."""
        buf = self._buf
        assert buf is not None
        while True:
            i = buf.data.find(b"\n", buf.start, buf.end)
            if i >= 0:
                if i == buf.start or buf.data[i - 1] != 13:
                    raise InvalidResponse(f"{what} does not end in CRLF")
                line = buf.view[buf.start:i - 1].tobytes()
                buf.start = i + 1
                if len(line) > limit:
                    raise InvalidResponse(f"{what} exceeds {limit} bytes")
                return line
            if buf.end - buf.start > limit:
                raise InvalidResponse(f"{what} exceeds {limit} bytes")
            yield from self._co_fill(f"in the middle of the body ({what})")

    def _co_chunk_framing(self, body: HTTPResponse) -> Co[None]:
        """Read what separates chunks: CRLF, the next size line, or the trailer section."""
        buf = self._buf
        assert buf is not None
        if body._need_crlf:
            while buf.end - buf.start < 2:
                yield from self._co_fill("in the middle of the body (after chunk data)")
            if buf.data[buf.start:buf.start + 2] != b"\r\n":
                raise InvalidResponse("Chunk data is not followed by CRLF")
            buf.start += 2
            body._need_crlf = False
        pkg = _package
        line = yield from self._co_read_line(pkg.MAX_LINE_SIZE, "chunk-size line")
        size = parse_chunk_size(line)
        if size:
            body._left = size
            body._need_crlf = True
            return
        # Last chunk: the trailer section follows, up to an empty line.
        while buf.end - buf.start < 2:
            yield from self._co_fill("in the middle of the body (trailer section)")
        if buf.data[buf.start:buf.start + 2] == b"\r\n":
            buf.start += 2
        else:
            limit = pkg.MAX_HEADER_SIZE
            seen = 0
            while True:
                end = find_head_end(buf.data, buf.start, buf.end, buf.start + seen)
                if end >= 0:
                    break
                seen = max(0, buf.end - buf.start - 2)
                if seen > limit:
                    raise InvalidResponse(f"Trailer section exceeds {limit} bytes")
                yield from self._co_fill("in the middle of the body (trailer section)")
            block = str(buf.view[buf.start:end - 2], "latin-1")
            if not block.endswith("\r\n"):
                raise InvalidResponse("Trailer section lines do not end in CRLF")
            buf.start = end
            body.trailers = parse_trailers(block)
        self._end_body(body._will_close)

    def _end_body(self, will_close: bool) -> None:
        """The current body is complete."""
        self._body = None
        self._body_done = True
        if will_close:
            self._closed("Server announced that it closes the connection")
        elif self._stale and not self._pending:
            self._forget()
            self._body_done = True

    def _no_body(self) -> int:
        """What a body read gets when no body is in progress: 0 after a body, else raise."""
        if self._broken is not None:
            raise self._unusable()
        if self._closed_locally:
            raise ConnectionClosed("Connection closed locally (disconnect())")
        if self._body_done or not self._pending:
            return 0
        raise StateError("No response body to read: call read_response() first")

    def _body_failed(self, exc: BaseException, body: HTTPResponse) -> None:
        if isinstance(exc, ConnectionClosed):
            exc.response_started = True
            self._lost(exc)
        elif isinstance(exc, GeneratorExit):
            self._break("an interrupted body read")
        else:
            self._break(f"an invalid response body ({exc})")

    def co_readinto(self, buf: Any) -> Co[int]:
        """Generator twin of `readinto`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The byte
        count is its return value.
        """
        body = self._body
        if body is None:
            return self._no_body()
        view = _byte_view(buf)
        if not len(view):
            return 0
        while True:
            n = self._readinto_now(body, view)
            if n >= 0:
                return n
            yield from self._co_body_wait(body, n)
            if self._body is None:  # the last chunk was read
                return 0

    @staticmethod
    def _nothing_left(body: HTTPResponse) -> int:
        """A body read step with no body bytes due: chunk framing comes next, or the
        framing error found with the head is raised now."""
        if body._kind is BodyKind.CHUNKED:
            return _FRAMING
        if body._kind is BodyKind.ERROR:
            assert body._error is not None
            raise body._error
        raise AssertionError(f"body state {body._kind}")  # pragma: no cover

    def _co_body_wait(self, body: HTTPResponse, need: int) -> Co[None]:
        """Wait for what a body read step needs: the socket, or the chunk framing."""
        try:
            if need == _WOULD_BLOCK:
                tr = self._tr
                assert tr is not None
                yield tr.want
            else:
                yield from self._co_chunk_framing(body)
        except BaseException as exc:
            self._body_failed(exc, body)
            raise

    def _readinto_now(self, body: HTTPResponse, view: memoryview) -> int:
        """One step of `readinto` that never waits: the byte count (0 at the end), or
        `_WOULD_BLOCK` (wait for the socket) or `_FRAMING` (chunk framing to read)."""
        try:
            left = body._left
            if left:
                rbuf = self._buf
                assert rbuf is not None
                if left < len(view):
                    view = view[:left]
                if rbuf.end > rbuf.start:
                    n = rbuf.take_into(view)
                else:
                    tr = self._tr
                    assert tr is not None
                    n = tr.recv_into(view)
                    if n <= 0:
                        return _WOULD_BLOCK if n < 0 else self._body_eof(body)
                body._left = left - n
                if body._left == 0 and body._kind is BodyKind.LENGTH:
                    self._end_body(body._will_close)
                return n
            return self._nothing_left(body)
        except BaseException as exc:
            self._body_failed(exc, body)
            raise

    def readinto(self, buf: Any) -> int:
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
        body = self._body
        if body is not None and body._left:
            view = _byte_view(buf)
            if len(view):
                n = self._body_step_blocking(body, self._readinto_now, view)
                if n >= 0:
                    return n
        return eval_coroutine(self.co_readinto(buf), self.timeout)  # chunk framing, or no body

    def _body_step_blocking(self, body: HTTPResponse, step: Callable[[HTTPResponse, _A], _R],
                            arg: _A) -> _R:
        """Run a body read *step* (`_read_now`, `_readinto_now`) of a blocking read,
        waiting for the socket between tries; the result is never `_WOULD_BLOCK`.
        If nothing is buffered and the last receive emptied the socket, it waits
        first (cheaper than a receive that fails)."""
        tr = self._tr
        if tr is not None and tr.drained:
            rbuf = self._buf
            if rbuf is not None and rbuf.end == rbuf.start:
                self._block(tr.wait_in, self._co_body_wait, body, _WOULD_BLOCK)
        got = step(body, arg)
        while got == _WOULD_BLOCK:
            self._block(self._tr.want, self._co_body_wait, body, got)  # type: ignore[union-attr]
            got = step(body, arg)
        return got

    def _body_eof(self, body: HTTPResponse) -> int:
        """The server closed while a body was being read."""
        if body._kind is BodyKind.UNTIL_CLOSE:
            self._body = None
            self._body_done = True
            self._closed("Server closed the connection after the response")
            return 0
        if body._kind is BodyKind.LENGTH:
            got = (body.length or 0) - body._left
            raise ConnectionClosed(f"Server closed the connection after {got} of "
                                   f"{body.length} body bytes")
        raise ConnectionClosed("Server closed the connection in the middle of a chunked body")

    def co_read(self, size: int | None = None) -> Co[bytes]:
        """Generator twin of `read`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The bytes
        are its return value.
        """
        if size is None or size < 0:
            return (yield from self.co_readall())
        body = self._body
        if body is None:
            self._no_body()
            return b""
        if not size:
            return b""
        while True:
            data = self._read_now(body, size)
            if type(data) is bytes:
                return data
            yield from self._co_body_wait(body, data)  # type: ignore[arg-type]
            if self._body is None:  # the last chunk was read
                return b""

    def _read_now(self, body: HTTPResponse, size: int) -> bytes | int:
        """One step of `read` that never waits: up to *size* bytes (b'' at the end), or
        `_WOULD_BLOCK` (wait for the socket) or `_FRAMING` (chunk framing to read)."""
        try:
            left = body._left
            if left:
                rbuf = self._buf
                assert rbuf is not None
                if size > left:
                    size = left
                if rbuf.end > rbuf.start:
                    data = rbuf.take(size)
                else:
                    tr = self._tr
                    assert tr is not None
                    if size >= _DIRECT_READ:  # large: straight from the socket
                        got = tr.recv(size)
                        if not got:
                            if got is None:
                                return _WOULD_BLOCK
                            self._body_eof(body)
                            return b""
                        data = got
                    else:  # small: fill the buffer, so the next reads need no system call
                        n = tr.recv_into(rbuf.space())
                        if n <= 0:
                            if n < 0:
                                return _WOULD_BLOCK
                            self._body_eof(body)
                            return b""
                        rbuf.end += n
                        data = rbuf.take(size)
                body._left = left - len(data)
                if body._left == 0 and body._kind is BodyKind.LENGTH:
                    self._end_body(body._will_close)
                return data
            return self._nothing_left(body)
        except BaseException as exc:
            self._body_failed(exc, body)
            raise

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
        body = self._body
        if body is not None and size is not None and size > 0 and body._left:
            data = self._body_step_blocking(body, self._read_now, size)
            if type(data) is bytes:
                return data
        return eval_coroutine(self.co_read(size), self.timeout)  # chunk framing, or no body

    read1 = read

    def _buffered_body(self) -> bytes | None:
        """The rest of the body if no waiting is needed to get it (it is buffered, or
        there is none), else None."""
        body = self._body
        if body is None:
            self._no_body()
            return b""
        rbuf = self._buf
        assert rbuf is not None
        start = rbuf.start
        stop = start + body._left
        if stop <= rbuf.end and body._kind is BodyKind.LENGTH:
            rbuf.start = stop
            body._left = 0
            data = rbuf.view[start:stop].tobytes()
            self._end_body(body._will_close)
            return data
        return None

    def co_readall(self) -> Co[bytes]:
        """Generator twin of `readall`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The bytes
        are its return value.
        """
        data = self._buffered_body()
        if data is not None:
            return data
        parts: list[bytes] = []
        while True:
            data = yield from self.co_read(1 << 20)
            if not data:
                return b"".join(parts)
            parts.append(data)

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
        data = self._buffered_body()
        if data is not None:
            return data
        parts: list[bytes] = []
        while True:  # as co_readall
            data = self.read(1 << 20)
            if not data:
                return b"".join(parts)
            parts.append(data)

    def co_discard(self) -> Co[None]:
        """Generator twin of `discard`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait.
        """
        while self._body is not None:
            body = self._body
            rbuf = self._buf
            if body._left and rbuf is not None and rbuf.end > rbuf.start:
                n = min(body._left, rbuf.end - rbuf.start)
                rbuf.start += n
                body._left -= n
                if body._left == 0 and body._kind is BodyKind.LENGTH:
                    self._end_body(body._will_close)
                continue
            yield from self.co_readinto(_scratch)
        self._no_body()

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
        return eval_coroutine(self.co_discard(), self.timeout)

    def co_read_raw(self, size: int) -> Co[bytes]:
        """Generator twin of `read_raw`: yields `PollNeeded` instead of blocking.

        It ignores `timeout`: the driver decides how long to wait. The bytes
        are its return value.
        """
        self._break("read_raw()")
        rbuf = self._buf
        if rbuf is not None and rbuf.end > rbuf.start:
            return rbuf.take(size)
        tr = self._tr
        if tr is None:
            return b""
        while True:
            try:
                data = tr.recv(size)
            except ConnectionClosed:
                return b""  # reset, or TLS without close_notify: for a debug read, the end
            if data is not None:
                return data
            yield tr.want

    def read_raw(self, size: int) -> bytes:
        """Debugging aid: read up to *size* raw bytes from the connection.

        Bytes already buffered come first, then the socket. The connection
        then no longer knows where it is in the byte stream: it raises
        `StateError` until `reset`.

        Args:
            size: the most bytes to return.

        Returns:
            bytes: what arrived; ``b''`` once the server has closed.
        """
        return eval_coroutine(self.co_read_raw(size), self.timeout)

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


def _md5_b64(data: _Buffer) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


for _cls in (BodyFollowing, HTTPResponse, HTTPConnection):
    _cls.__module__ = "dugong"
