"""The HTTP/1.1 client protocol as a state machine on bytes, without I/O (provisional).

`ClientEngine` knows HTTP/1.1 and nothing else: it never touches a socket, a
clock, a thread or a generator. Its caller moves the bytes:

* ``out = engine.send_request(...)`` and ``out = engine.send_body(data)`` return
  what to send: a bytes-like object, or a tuple of them to send in order.
* Received bytes go into ``engine.recv_space()`` and are announced with
  ``engine.received(n)``, or are copied in with ``engine.receive_data(data)``;
  a count of 0 (or ``b''``) says that the server closed the connection.
* ``engine.next_response()`` returns the next `HTTPResponse` once its head has
  arrived (None: more bytes are needed); ``engine.read_body(n)`` and
  ``engine.readinto_body(buf)`` return its body with the framing taken off
  (None or -1: more bytes are needed; ``b''`` or 0 at its end).

Any number of requests may be sent before their responses are read
(pipelining). For reads without a copy, ``engine.direct_size(n)`` tells how
many body bytes the caller may receive straight into its own buffer now, and
``engine.got_direct(k)`` how many did arrive.

The state is three enums (`SendState`, `RecvState`, `ConnState`) held by a
`States` object, changed only by its named transitions; `TRANSITIONS` lists
every change each transition may make, as data.

`dugong.HTTPConnection` is this engine under a socket; the manual's page on the
engine shows it driven over an in-memory pipe and over trio's sockets.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, TypeAlias

from ._buffer import RecvBuffer
from ._exceptions import ConnectionClosed, ExcessBodyData, InvalidResponse, StateError
from ._headers import CaseInsensitiveDict, ResponseHeaders
from ._protocol import (
    _PARSED_HEAD_SIZE,
    BodyKind,
    _new,
    find_head_end,
    parse_chunk_size,
    parse_response,
    parse_trailers,
    request_head,
)
from ._tunables import PACKAGE

__all__ = [
    "TRANSITIONS",
    "BodyFollowing",
    "Buffer",
    "ClientEngine",
    "ConnState",
    "HTTPResponse",
    "Out",
    "RecvState",
    "Request",
    "SendState",
    "States",
]

#: A bytes-like object.
Buffer: TypeAlias = bytes | bytearray | memoryview
#: What the engine hands out to be sent: one buffer, or several to send in order.
Out: TypeAlias = Buffer | tuple[Buffer, ...]


# ====================================================================== states


class SendState(enum.Enum):
    """What the sending side may do next."""

    IDLE = "idle: a request may be sent"
    BODY = "sending a body of known length"
    CHUNKED = "sending a chunked body"
    WAIT100 = "waiting for 100 Continue before the body"
    CLOSED = "nothing more can be sent on this connection"


class RecvState(enum.Enum):
    """What the receiving side expects next (derived from the request queue)."""

    IDLE = "no response is expected"
    HEAD = "the head of a response is expected"
    BODY = "a response body is being read"


class ConnState(enum.Enum):
    """Whether the connection can carry further requests."""

    OPEN = "open"
    CLOSING = "the server closes the connection after the response being read"
    RETIRED = "answered before the request body was sent: no further request"
    CLOSED = "closed by the server, or lost"
    FAILED = "the exchange broke off at an unknown point: reset needed"


# Module-level names for the hot paths: a global is read several times faster than
# an Enum member on CPython 3.11.
_IDLE: Final = SendState.IDLE
_BODY: Final = SendState.BODY
_CHUNKED: Final = SendState.CHUNKED
_WAIT100: Final = SendState.WAIT100
_S_CLOSED: Final = SendState.CLOSED
_OPEN: Final = ConnState.OPEN
_CLOSING: Final = ConnState.CLOSING
_RETIRED: Final = ConnState.RETIRED
_CLOSED: Final = ConnState.CLOSED
_FAILED: Final = ConnState.FAILED

_S = SendState
_C = ConnState
_LENGTH: Final = BodyKind.LENGTH
#: A final response head, as `ClientEngine._final_head` gives it: status, reason, fields,
#: then the body's kind, length, whether the connection closes after it, framing error
_FinalHead = tuple[int, str, ResponseHeaders, str, "int | None", bool, "Exception | None"]
#: `ClientEngine._last_head`: the head's bytes, the request method, the three limits, the
#: head's size, then as `_FinalHead` (without an error)
_LastHead = tuple[
    bytes, str, int, int, int, int, int, str, ResponseHeaders, str, "int | None", bool
]
# `ClientEngine._last_head` before a first head: it matches none (no method is empty)
_NO_HEAD: Final[Any] = (b"", "", 0, 0, 0, 0, 0, "", None, "", None, False)
#: Every change of state a transition may make: ``(transition, side, before, after)``.
#: `States` makes exactly these changes (the test suite checks it) and the manual
#: draws its state diagram from this table. A transition that finds its side in a
#: state not listed for it leaves that side unchanged.
TRANSITIONS: Final[tuple[tuple[str, str, enum.Enum, enum.Enum], ...]] = (
    ("request_sent", "send", _S.IDLE, _S.BODY),
    ("request_sent", "send", _S.IDLE, _S.CHUNKED),
    ("request_sent", "send", _S.IDLE, _S.WAIT100),
    ("body_done", "send", _S.BODY, _S.IDLE),
    ("body_done", "send", _S.CHUNKED, _S.IDLE),
    ("continue_received", "send", _S.WAIT100, _S.BODY),
    ("continue_received", "send", _S.WAIT100, _S.CHUNKED),
    ("continue_received", "send", _S.WAIT100, _S.IDLE),
    ("withdrawn", "send", _S.BODY, _S.IDLE),
    ("withdrawn", "send", _S.CHUNKED, _S.IDLE),
    ("withdrawn", "send", _S.WAIT100, _S.IDLE),
    ("answered_early", "send", _S.WAIT100, _S.CLOSED),
    ("answered_early", "conn", _C.OPEN, _C.RETIRED),
    ("server_will_close", "send", _S.IDLE, _S.CLOSED),
    ("server_will_close", "send", _S.BODY, _S.CLOSED),
    ("server_will_close", "send", _S.CHUNKED, _S.CLOSED),
    ("server_will_close", "send", _S.WAIT100, _S.CLOSED),
    ("server_will_close", "conn", _C.OPEN, _C.CLOSING),
    ("server_will_close", "conn", _C.RETIRED, _C.CLOSING),
    ("response_done", "conn", _C.CLOSING, _C.CLOSED),
    ("send_failed", "send", _S.IDLE, _S.CLOSED),
    ("send_failed", "send", _S.BODY, _S.CLOSED),
    ("send_failed", "send", _S.CHUNKED, _S.CLOSED),
    ("send_failed", "send", _S.WAIT100, _S.CLOSED),
    *(("lost", "send", s, _S.CLOSED) for s in (_S.IDLE, _S.BODY, _S.CHUNKED, _S.WAIT100)),
    *(("lost", "conn", c, _C.CLOSED) for c in (_C.OPEN, _C.CLOSING, _C.RETIRED)),
    *(("fail", "send", s, _S.CLOSED) for s in (_S.IDLE, _S.BODY, _S.CHUNKED, _S.WAIT100)),
    *(("fail", "conn", c, _C.FAILED) for c in (_C.OPEN, _C.CLOSING, _C.RETIRED, _C.CLOSED)),
)
del _S, _C


class States:
    """The engine's state, and the only code that changes it.

    Invariant, by construction: whenever `conn` is not `ConnState.OPEN`, `send`
    is `SendState.CLOSED` (nothing can be sent on a connection that is closing,
    closed, failed or retired).

    Attributes:
        send (SendState): the sending side.
        conn (ConnState): the connection.
        why (str | None): why nothing more can be sent or received, once that is so.
    """

    __slots__ = ("conn", "send", "why")

    def __init__(self) -> None:
        self.send = _IDLE
        self.conn = _OPEN
        self.why: str | None = None

    def request_sent(self, req: Request) -> None:
        """The head of *req* went out: its body, if one follows, is due (or awaits 100)."""
        if req.follows and self.send is _IDLE:
            if req.expect100:
                self.send = _WAIT100
            elif req.length is None:
                self.send = _CHUNKED
            elif req.length:
                self.send = _BODY

    def body_done(self) -> None:
        """The whole request body went out."""
        if self.send is _BODY or self.send is _CHUNKED:
            self.send = _IDLE

    def continue_received(self, req: Request) -> None:
        """``100 Continue`` came for *req* (or the caller stopped waiting for it)."""
        if self.send is _WAIT100:
            self.send = _CHUNKED if req.length is None else _BODY if req.length else _IDLE

    def withdrawn(self) -> None:
        """The request whose sending started never went out (its connect failed)."""
        if self.send is not _S_CLOSED:
            self.send = _IDLE

    def answered_early(self) -> None:
        """A final answer came before the request body was sent: 100-continue
        rejected, or the body cut short. The server may still read body bytes, so
        the connection carries no further request."""
        if self.send is not _WAIT100 and self.send is not _S_CLOSED:
            return  # the engine reads no answer while a body is being sent
        self.send = _S_CLOSED
        if self.conn is _OPEN:
            self.conn = _RETIRED

    def server_will_close(self) -> None:
        """The response being read announced that the server closes after it."""
        self.send = _S_CLOSED
        if self.conn is _OPEN or self.conn is _RETIRED:
            self.conn = _CLOSING

    def response_done(self) -> None:
        """A response was read to its end."""
        if self.conn is _CLOSING:
            self.conn = _CLOSED
            self.why = "Server announced that it closes the connection"

    def send_failed(self, why: str) -> None:
        """The connection broke while sending; what was being sent counts as sent."""
        self.send = _S_CLOSED
        if self.why is None:
            self.why = why

    def lost(self, why: str) -> None:
        """The server closed the connection, or it broke."""
        self.send = _S_CLOSED
        if self.conn is not _FAILED:
            if self.conn is not _CLOSED:
                self.why = why
            self.conn = _CLOSED

    def fail(self, why: str) -> None:
        """Where the exchange stands is no longer known (an invalid response, an
        interrupted operation): nothing works until the connection is reset."""
        self.send = _S_CLOSED
        if self.conn is not _FAILED:
            self.conn = _FAILED
            self.why = why


# ====================================================================== requests


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


class Request(NamedTuple):
    """A request in the engine's queue, from `ClientEngine.send_request` until answered."""

    method: str
    path: str
    expect100: bool
    #: the length announced with ``BodyFollowing(n)``; None if chunked or no body follows
    length: int | None
    #: the body follows through `ClientEngine.send_body`
    follows: bool
    #: False if it was queued on a closed connection and never sent
    sent: bool


_NO_BODY_FIELDS = (("Content-Length", "0"),)
_BODY_FIELD_NAMES = ("content-length", "transfer-encoding")
_EXPECT_FIELD_NAMES = ("content-length", "transfer-encoding", "expect")
_LAST_CHUNK = b"0\r\n\r\n"
#: makes a response without calling its ``__init__``: the caller sets every field
#: (`ClientEngine.next_response`, and the pool's `PoolResponse`)
_new_response = object.__new__


def _md5_b64(data: Buffer) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


# ====================================================================== responses


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

    __slots__ = ("_trailers", "headers", "length", "method", "path", "reason", "status")

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        reason: str,
        headers: ResponseHeaders,
        length: int | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.headers = headers
        self.length = length
        self._trailers: CaseInsensitiveDict | None = None

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
        return (
            f"<HTTPResponse {self.status} {self.reason!r} to {self.method} "
            f"{self.path!r}, length={self.length}>"
        )


# ====================================================================== body readers
#
# One reader per framing. A reader hands out body bytes from the engine's buffer
# (None or -1: more bytes are needed), says how many may be received straight into
# the caller's buffer (direct), takes note of those (got), and knows what the
# server's close means for its body (eof). The engine keeps one reader of each kind
# and re-arms it for each response.


class _Reader:
    __slots__ = ("buf", "engine", "resp")

    kind: str = BodyKind.NONE
    resp: HTTPResponse

    def __init__(self, engine: ClientEngine) -> None:
        self.engine = engine
        self.buf = engine.buffer

    def read(self, size: int) -> bytes | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def readinto(self, view: memoryview) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def direct(self, size: int) -> int:
        """Body bytes the caller may receive straight into its buffer now (at most *size*)."""
        return 0

    def got(self, n: int) -> None:
        """*n* body bytes arrived straight in the caller's buffer."""

    def take_all(self) -> bytes | None:
        """The rest of the body if all of it is buffered (ending the body), else None."""
        return None

    def eof(self) -> ConnectionClosed | None:
        """The server closed: the error to raise, or None if that ends the body."""
        return ConnectionClosed("Server closed the connection in the middle of the body")


class _LengthReader(_Reader):
    """A body of ``Content-Length`` bytes."""

    __slots__ = ("left",)
    kind = BodyKind.LENGTH
    left: int

    def read(self, size: int) -> bytes | None:
        buf = self.buf
        start = buf.start
        n = buf.end - start
        if not n:
            return None
        left = self.left
        if size > left:
            size = left
        if n > size:
            n = size
        buf.start = start + n
        self.left = left - n
        if n == left:
            self.engine._response_done()
        return buf.view[start : start + n].tobytes()

    def readinto(self, view: memoryview) -> int:
        buf = self.buf
        if buf.end == buf.start:
            return -1
        if self.left < len(view):
            view = view[: self.left]
        n = buf.take_into(view)
        self.got(n)
        return n

    def direct(self, size: int) -> int:
        if self.buf.end != self.buf.start:
            return 0
        return size if size < self.left else self.left

    def got(self, n: int) -> None:
        self.left -= n
        if not self.left:
            self.engine._response_done()

    def take_all(self) -> bytes | None:
        buf = self.buf
        start = buf.start
        stop = start + self.left
        if stop > buf.end:
            return None
        buf.start = stop
        self.left = 0
        engine = self.engine  # the body is complete (as _response_done, spelled out)
        engine.reader = None
        engine._body_done = True
        if engine.states.conn is _CLOSING:
            engine.states.response_done()
        return buf.view[start:stop].tobytes()

    def eof(self) -> ConnectionClosed:
        length = self.resp.length or 0
        return ConnectionClosed(
            f"Server closed the connection after {length - self.left} of {length} body bytes"
        )


class _UntilCloseReader(_Reader):
    """A body that ends when the server closes the connection."""

    __slots__ = ("ended",)
    kind = BodyKind.UNTIL_CLOSE

    def arm(self, resp: HTTPResponse) -> _UntilCloseReader:
        self.resp = resp
        self.ended = False
        return self

    def read(self, size: int) -> bytes | None:
        buf = self.buf
        if buf.end != buf.start:
            return buf.take(size)
        if self.ended:
            self.engine._response_done()
            return b""
        return None

    def readinto(self, view: memoryview) -> int:
        buf = self.buf
        if buf.end != buf.start:
            return buf.take_into(view)
        if self.ended:
            self.engine._response_done()
            return 0
        return -1

    def direct(self, size: int) -> int:
        return size if self.buf.end == self.buf.start and not self.ended else 0

    def eof(self) -> None:
        self.ended = True
        return None


class _ChunkedReader(_Reader):
    """A chunked body: chunk data, the framing between, and the trailer section."""

    __slots__ = ("crlf", "done", "left")
    kind = BodyKind.CHUNKED

    def arm(self, resp: HTTPResponse) -> _ChunkedReader:
        self.resp = resp
        self.left = 0  # chunk data bytes before the next framing
        self.crlf = False  # the CRLF after chunk data is due
        self.done = False
        return self

    def _frame(self) -> bool:
        """Take framing off the buffer until chunk data or the end is next.

        False if more bytes are needed for that. Invalid framing fails the engine.
        """
        try:
            return self._take_framing()
        except Exception as exc:
            self.engine._read_failed(exc)
            raise

    def _take_framing(self) -> bool:
        buf = self.buf
        data = buf.data
        if self.crlf:
            if buf.end - buf.start < 2:
                return False
            if data[buf.start : buf.start + 2] != b"\r\n":
                raise InvalidResponse("Chunk data is not followed by CRLF")
            buf.start += 2
            self.crlf = False
        if not self.done:
            line = _take_line(buf, PACKAGE.MAX_LINE_SIZE, "chunk-size line")
            if line is None:
                return False
            size = parse_chunk_size(line)
            if size:
                self.left = size
                self.crlf = True
                return True
            self.done = True  # the last chunk: the trailer section follows
        if not self._trailers():
            return False
        self.engine._response_done()
        return True

    def _trailers(self) -> bool:
        """Take the trailer section, up to its empty line (False: more bytes needed)."""
        buf = self.buf
        start = buf.start
        if buf.end - start < 2:
            return False
        if buf.data[start : start + 2] == b"\r\n":
            buf.start += 2
            return True
        limit = PACKAGE.MAX_HEADER_SIZE
        end = find_head_end(buf.data, start, buf.end, start)
        if end < 0:
            if buf.end - start - 2 > limit:
                raise InvalidResponse(f"Trailer section exceeds {limit} bytes")
            return False
        block = str(buf.view[start : end - 2], "latin-1")
        if not block.endswith("\r\n"):
            raise InvalidResponse("Trailer section lines do not end in CRLF")
        buf.start = end
        self.resp.trailers = parse_trailers(block)
        return True

    def read(self, size: int) -> bytes | None:
        if not self.left:
            if not self._frame():
                return None
            if not self.left:
                return b""  # the end
        buf = self.buf
        if buf.end == buf.start:
            return None
        data = buf.take(size if size < self.left else self.left)
        self.left -= len(data)
        return data

    def readinto(self, view: memoryview) -> int:
        if not self.left:
            if not self._frame():
                return -1
            if not self.left:
                return 0
        buf = self.buf
        if buf.end == buf.start:
            return -1
        if self.left < len(view):
            view = view[: self.left]
        n = buf.take_into(view)
        self.left -= n
        return n

    def direct(self, size: int) -> int:
        if not self.left or self.buf.end != self.buf.start:
            return 0
        return size if size < self.left else self.left

    def got(self, n: int) -> None:
        self.left -= n

    def eof(self) -> ConnectionClosed:
        return ConnectionClosed("Server closed the connection in the middle of a chunked body")


class _FailedReader(_Reader):
    """A body whose framing is invalid or unsupported: the first read raises why."""

    __slots__ = ("error",)
    kind = BodyKind.ERROR

    def arm(self, resp: HTTPResponse, error: Exception) -> _FailedReader:
        self.resp = resp
        self.error = error
        return self

    def read(self, size: int) -> bytes | None:
        self.engine._read_failed(self.error)
        raise self.error

    def readinto(self, view: memoryview) -> int:
        self.engine._read_failed(self.error)
        raise self.error


def _take_line(buf: RecvBuffer, limit: int, what: str) -> bytes | None:
    """Take one CRLF-terminated line (without the CRLF) off *buf*; None if incomplete."""
    data = buf.data
    i = data.find(b"\n", buf.start, buf.end)
    if i < 0:
        if buf.end - buf.start > limit:
            raise InvalidResponse(f"{what} exceeds {limit} bytes")
        return None
    if i == buf.start or data[i - 1] != 13:
        raise InvalidResponse(f"{what} does not end in CRLF")
    line = buf.view[buf.start : i - 1].tobytes()
    buf.start = i + 1
    if len(line) > limit:
        raise InvalidResponse(f"{what} exceeds {limit} bytes")
    return line


# ====================================================================== the engine


class ClientEngine:
    """One HTTP/1.1 client connection's protocol, without I/O.

    Args:
        host: the value of the ``Host`` field (e.g. ``"example.org"`` or
            ``"[::1]:8080"``), sent unless a request gives its own.
        target_prefix: put before each request target, e.g.
            ``"http://example.org"`` for requests in absolute form to a proxy.
        extra_fields: ``(name, value)`` fields sent with every request, e.g. a
            proxy's ``Proxy-Authorization``; they replace a request's own
            fields of the same names. Checked by the caller.
        buffer_size: initial size of the receive buffer (default: the
            package's `BUFFER_SIZE`); it grows for a larger response head.

    Attributes:
        states (States): the engine's state; read it, never set it.
        reader: the reader of the response body being read, None when no
            body is being read; read it, never set it.
        buffer (RecvBuffer): the receive buffer (see `recv_space`).
        queue (collections.deque[Request]): the requests sent and not yet
            answered (a response being read has left it), oldest first.
    """

    def __init__(
        self,
        host: str,
        *,
        target_prefix: str = "",
        extra_fields: tuple[tuple[str, str], ...] = (),
        buffer_size: int | None = None,
    ) -> None:
        self.host = host
        self._prefix = target_prefix
        self._extra = extra_fields
        self._extra_names = tuple(name.lower() for name, _ in extra_fields)
        self.states = States()
        self.queue: deque[Request] = deque()
        self.buffer = RecvBuffer(PACKAGE.BUFFER_SIZE if buffer_size is None else buffer_size)
        #: the reader of the body being read (None: no body is being read); read-only
        self.reader: _Reader | None = None
        #: the server answered ``101 Switching Protocols``: HTTP has ended on this
        #: connection, but the connection has not (what follows belongs to the new
        #: protocol, buffered bytes first); read-only
        self.switched = False
        self._length = _LengthReader(self)
        self._chunked: _ChunkedReader | None = None  # made when first needed
        self._until_close: _UntilCloseReader | None = None
        #: a body was read to its end since the last response head
        self._body_done = False
        #: the request whose body follows, until it is answered
        self._body_req: Request | None = None
        #: body bytes left to send after BodyFollowing(n)
        self._out_left = 0
        self._interim = 0  # bytes of 1xx heads skipped since the last final response
        self._head_seen = 0  # bytes of the next head already searched for its end
        #: the last bodiless request without fields: (method, path, its bytes, its entry)
        self._last_request: tuple[str, str, bytes, Request] | None = None
        #: the previous final response head (`_LastHead`: its bytes, method, the three
        #: limits it was parsed under: MAX_LINE_SIZE, MAX_HEADER_SIZE, MAX_HEADER_FIELDS,
        #: its size, then what `_final_head` gave); at first one that matches no
        #: response (no method is empty)
        self._last_head: _LastHead = _NO_HEAD

    # ------------------------------------------------------------------ state view

    @property
    def recv_state(self) -> RecvState:
        """What the receiving side expects next."""
        if self.reader is not None:
            return RecvState.BODY
        return RecvState.HEAD if self.queue else RecvState.IDLE

    @property
    def is_idle(self) -> bool:
        """Nothing in flight, nothing being sent, and usable (not failed)."""
        return (
            not self.queue
            and self.reader is None
            and self.states.conn is not _FAILED
            and (self.states.send is _IDLE or self.states.send is _S_CLOSED)
        )

    @property
    def responses_outstanding(self) -> int:
        """Requests whose response, or part of it, is still to be read."""
        return len(self.queue) + (self.reader is not None)

    @property
    def needs_new_connection(self) -> bool:
        """True when the next request must go out on a new connection (with a new
        engine): this one was answered before its request body was sent, and
        everything sent on it has been answered."""
        return self.states.conn is _RETIRED and not self.queue and self.reader is None

    @property
    def awaiting_continue(self) -> bool:
        """True if the next response is the ``100 Continue`` an ``expect100``
        request waits for: the caller may give up waiting (`continue_assumed`)."""
        queue = self.queue
        return (
            self.states.send is _WAIT100
            and len(queue) == 1
            and queue[0].expect100
            and self.reader is None
        )

    @property
    def out_remaining(self) -> int | bool | None:
        """None when no request body is outstanding, else a true value: the body
        bytes left to send when that is known."""
        send = self.states.send
        if send is _BODY:
            return self._out_left
        if send is _WAIT100:
            req = self._body_req
            return req.length if req is not None and req.length else True
        return True if send is _CHUNKED else None

    # ------------------------------------------------------------------ sending

    def send_request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: Buffer | BodyFollowing | None = None,
        expect100: bool = False,
    ) -> Out:
        """Queue a request; return its bytes, to be sent in full, in order.

        The arguments are those of `HTTPConnection.send_request`. Everything is
        checked before anything changes: a refused call leaves the engine as
        it was.

        On a connection that is closing or closed, the request is queued but
        not sent (``b''`` is returned): `next_response` then raises
        `ConnectionClosed` for it, with ``request_sent`` False.

        Raises:
            ValueError, TypeError: arguments that cannot be sent.
            StateError: a request body is unfinished, the connection failed, or
                it carries no further request (`needs_new_connection`).
        """
        if body is None and not headers and not expect100:
            # Bodiless requests without fields repeat a lot (pipelined GETs): their bytes
            # and queue entry depend only on method and path, so the last ones are kept.
            last = self._last_request
            if last is not None and last[0] == method and last[1] == path:
                if self.states.send is _IDLE:  # (bodiless: nothing follows; the usual case)
                    self.queue.append(last[3])
                    return last[2]
                req = last[3]
                out: Out = last[2]
            else:
                req, out = self._assemble(method, path, None, None, False)
                self._last_request = (method, path, out, req)  # type: ignore[assignment]
        else:
            req, out = self._assemble(method, path, headers, body, expect100)
        states = self.states
        if states.send is not _IDLE:
            if states.conn is _FAILED:
                raise StateError(self._unusable())
            if states.send is not _S_CLOSED:
                raise StateError(f"Cannot send a request now: {states.send.value}")
            if states.conn is _RETIRED:
                if self.queue or self.reader is not None:
                    raise StateError(
                        "The server answered before the request body was sent; "
                        "read its response before sending another request"
                    )
                raise StateError(
                    "This connection carries no further request (the server "
                    "may still expect a request body): use a new connection"
                )
            # Closed (or broken while sending): nothing is sent; next_response says so.
            req = req._replace(sent=False)
            self.queue.append(req)
            if req.follows:
                self._body_req = req
            return b""
        self.queue.append(req)
        if req.follows:
            self._body_req = req
            self._out_left = req.length or 0
            states.request_sent(req)
        return out

    def _assemble(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None,
        body: Buffer | BodyFollowing | None,
        expect100: bool,
    ) -> tuple[Request, Out]:
        """Check a request's arguments; its queue entry and its bytes."""
        length: int | None = None
        names: tuple[str, ...] = _BODY_FIELD_NAMES
        data: Buffer | None = None
        follows = False
        if body is None:
            fields: tuple[tuple[str, str], ...] = _NO_BODY_FIELDS
        elif isinstance(body, BodyFollowing):
            follows = True
            length = body.length
            if length is None:
                fields = (("Transfer-Encoding", "chunked"),)
            else:
                fields = (("Content-Length", str(length)),)
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
            raise TypeError(
                f"body must be bytes-like, BodyFollowing or None, not {type(body).__name__}"
            )
        if expect100 and not follows:
            raise ValueError("expect100=True needs body=BodyFollowing(...)")
        if self._extra:
            fields += self._extra
            names += self._extra_names
        head = request_head(
            method,
            self._prefix + path if self._prefix else path,
            headers,
            self.host,
            fields,
            names,
        )
        req = _new(Request, (method, path, expect100, length, follows, True))
        if data is None:
            return req, head
        if size < 8192:
            return req, head + data
        return req, (head, data)  # a large body is not copied

    def send_body(self, data: Buffer) -> Out:
        """Take the next part of a body announced with `BodyFollowing`; return its
        bytes (with the chunk framing, for a chunked body) to be sent in full.

        After ``BodyFollowing()``, ``send_body(b'')`` ends the body.

        Raises:
            ExcessBodyData: more than the announced length; nothing changed.
            StateError: no body is expected, or ``100 Continue`` is awaited.
            ConnectionClosed: the body is expected, but the connection is closed.
        """
        states = self.states
        send = states.send
        size = (
            len(data)
            if type(data) is bytes or type(data) is bytearray
            else memoryview(data).nbytes
        )
        if send is _BODY:
            left = self._out_left
            if size > left:
                raise ExcessBodyData(
                    f"write() of {size} bytes, but only {left} of the "
                    "announced body length are left"
                )
            self._out_left = left - size
            if size == left:
                states.body_done()
            return data
        if send is _CHUNKED:
            if not size:
                states.body_done()
                return _LAST_CHUNK
            return (b"%X\r\n" % size, data, b"\r\n")
        if send is _WAIT100:
            raise StateError("Waiting for 100 Continue: call read_response() first")
        if states.conn is _FAILED:
            raise StateError(self._unusable())
        if send is _S_CLOSED and self._body_req is not None:
            raise ConnectionClosed(states.why or "Connection closed")
        # Misuse first: with no body expected, whether the connection closed is moot.
        raise StateError(
            "No request body is expected: send a request with body=BodyFollowing(...) first"
        )

    def send_failed(self, exc: ConnectionClosed) -> None:
        """The connection broke while sending; what was being sent counts as sent
        (the server's answer may still be read)."""
        self.states.send_failed(str(exc))

    def withdraw(self, req: Request) -> None:
        """*req*, queued by `send_request`, was never sent (e.g. its connect failed):
        take it off the queue, as if it had not been sent."""
        try:
            self.queue.remove(req)
        except ValueError:
            return
        if req is self._body_req:
            self._body_req = None
            self.states.withdrawn()

    # ------------------------------------------------------------------ receiving

    def recv_space(self, need: int = 1) -> memoryview:
        """A writable view for received bytes (at least *need* bytes long); announce
        what was written with `received`."""
        return self.buffer.space(need)

    def received(self, n: int) -> None:
        """*n* bytes were written into `recv_space`; 0 means the server closed.

        Raises:
            ConnectionClosed: the close cut a response short (the engine is
                then closed); a close that ends a body read until the close,
                or that comes while nothing is expected, raises nothing.
        """
        if n:
            self.buffer.end += n
            return
        reader = self.reader
        if reader is not None:
            exc = reader.eof()
            if exc is None:
                return  # the body ends with the close
        elif self.queue and self.queue[0].sent:
            buf = self.buffer
            exc = ConnectionClosed(
                "Server closed the connection before sending a complete response head"
                if buf.end > buf.start
                else "Server closed the connection before sending a response"
            )
        else:
            self.states.lost("Server closed the connection")
            return
        self.lost(exc)
        raise exc

    def receive_data(self, data: Buffer) -> None:
        """Copy received *data* into the buffer (``b''``: the server closed); see
        `received`."""
        n = len(data) if type(data) is bytes else memoryview(data).nbytes
        if n:
            self.buffer.space(n)[:n] = data
        self.received(n)

    def lost(self, exc: ConnectionClosed) -> None:
        """The connection broke or closed (e.g. a reset while receiving): the body or
        the response head being waited for is given up, and *exc*, which the
        caller raises, says whether part of that response had arrived."""
        if self.reader is not None:
            exc.response_started = True
            self.reader = None
        elif self.queue and self.queue[0].sent:
            buf = self.buffer
            exc.response_started = buf.end > buf.start
            self.queue.popleft()
        self.states.lost(str(exc))

    def fail(self, why: str) -> None:
        """Where the exchange stands is no longer known (*why*: e.g. "an
        interrupted read"): every further call raises `StateError`."""
        self.reader = None
        self.states.fail(why)

    def _unusable(self) -> str:
        return f"Connection unusable after {self.states.why}; call reset()"

    # ------------------------------------------------------------------ response heads

    def next_response(self) -> HTTPResponse | None:
        """The next response, once its head is in the buffer; None until then.

        Interim 1xx responses are skipped, except the ``100 Continue`` that an
        ``expect100`` request awaits. The body must be read to its end before
        the next call.

        Raises:
            StateError: no response is pending, the previous body is not read,
                the request this would answer has an unfinished body, or the
                engine failed.
            ConnectionClosed: the connection closed before this response (it
                is taken off the queue); ``request_sent`` is False if the
                request was queued on a closed connection and never sent.
            InvalidResponse, UnsupportedResponse: the head is not acceptable;
                the engine has failed.
        """
        # (HTTPConnection._response_step tests the same before calling: keep them alike.)
        if self.reader is not None or not self.queue or self.states.send is not _IDLE:
            self._check_next()
        buf = self.buffer
        if buf.end == buf.start:
            return None
        req = self.queue[0]
        pkg = PACKAGE
        (
            text,
            method,
            max_line,
            max_size,
            max_fields,
            size,
            status,
            reason,
            headers,
            kind,
            length,
            will_close,
        ) = self._last_head
        if (
            method == req.method
            and max_line == pkg.MAX_LINE_SIZE
            and max_size == pkg.MAX_HEADER_SIZE
            and max_fields == pkg.MAX_HEADER_FIELDS
            and buf.data.startswith(text, buf.start, buf.end)
        ):
            # The same bytes as the previous final head (the usual case when pipelining:
            # the same resource within the same second of the server's Date), and the
            # same limits (a tuple of them built per response costs 30 ns): taken as
            # parsed then, without the loop over interim heads.
            buf.start += size
            self._head_seen = 0
            error = None
        else:
            final = self._final_head(req, buf)
            if not isinstance(final, tuple):
                return final  # None (not all there yet), or the awaited 100 Continue
            status, reason, headers, kind, length, will_close, error = final
        # The final response: set up its body. (Here rather than in a method of its own:
        # a call less per response.)
        self._interim = 0
        resp = _new_response(HTTPResponse)  # `HTTPResponse.__init__`, spelled out
        resp.method = req.method
        resp.path = req.path
        resp.status = status
        resp.reason = reason
        resp.headers = headers
        resp.length = length
        resp._trailers = None
        if req is self._body_req:
            self._body_req = None
            if self.states.send is not _IDLE:
                self.states.answered_early()
        reader: _Reader | None = None
        if kind is _LENGTH:
            if length:
                length_reader = reader = self._length
                length_reader.resp = resp
                length_reader.left = length
        elif kind is BodyKind.CHUNKED:
            if self._chunked is None:
                self._chunked = _ChunkedReader(self)
            reader = self._chunked.arm(resp)
        elif kind is BodyKind.UNTIL_CLOSE:
            if self._until_close is None:
                self._until_close = _UntilCloseReader(self)
            reader = self._until_close.arm(resp)
        elif kind is BodyKind.ERROR:
            assert error is not None
            reader = _FailedReader(self).arm(resp, error)
        # The reader is set before the request leaves the queue, so that a thread that
        # sends meanwhile never sees the engine idle while this response is read.
        self.reader = reader
        self._body_done = False
        self.queue.popleft()
        if will_close:
            self.states.server_will_close()
            if status == 101:
                self.switched = True
        if reader is None:
            self._response_done()
        return resp

    def _final_head(self, req: Request, buf: RecvBuffer) -> _FinalHead | HTTPResponse | None:
        """Parse the heads in *buf* up to the final one, skipping interim (1xx) ones:
        its status, reason, fields and framing (a 101's: no body, and the end of HTTP);
        None until it has all come; the ``100 Continue`` an ``expect100`` request awaits.
        Remembers the final head's bytes for `next_response`."""
        pkg = PACKAGE
        try:
            while True:
                limits = (pkg.MAX_LINE_SIZE, pkg.MAX_HEADER_SIZE, pkg.MAX_HEADER_FIELDS)
                taken = self._take_head(buf, limits[1])
                if taken is None:
                    return None
                size = len(taken)
                head, framing = parse_response(req.method, taken, *limits)
                status = head[1]
                if status >= 200 or status == 101:
                    if framing[0] is not BodyKind.ERROR and size <= _PARSED_HEAD_SIZE:
                        seen = (taken.encode("latin-1"), req.method, *limits, size)
                        self._last_head = (*seen, *head[1:], *framing[:3])
                    return (*head[1:], *framing)
                if status == 100 and self.awaiting_continue:
                    return self._continued(req, head[2], head[3])
                self._interim += size
                if self._interim > pkg.MAX_INTERIM_SIZE:
                    raise InvalidResponse(
                        f"Interim (1xx) responses exceed {pkg.MAX_INTERIM_SIZE} bytes"
                    )
                if buf.end == buf.start:
                    return None
        except Exception as exc:
            self.fail(f"an invalid response ({exc})")
            raise

    def _check_next(self) -> None:
        """Raise what `next_response` raises when no response may be read now."""
        states = self.states
        if states.conn is _FAILED:
            raise StateError(self._unusable())
        if self.reader is not None:
            raise StateError("The previous response body has not been read completely")
        queue = self.queue
        if not queue:
            raise StateError("No response is pending: send a request first")
        req = queue[0]
        if not req.sent:
            queue.popleft()
            if req is self._body_req:
                self._body_req = None
            exc = ConnectionClosed(
                f"{req.method} {req.path} was not sent: "
                f"{states.why or 'the connection had closed'}"
            )
            exc.request_sent = False
            raise exc
        if states.conn is _CLOSED:
            queue.popleft()
            raise ConnectionClosed(f"No response to {req.method} {req.path}: {states.why}")
        if len(queue) == 1 and (states.send is _BODY or states.send is _CHUNKED):
            raise StateError(
                "The request body has not been sent completely: write() the "
                "rest before reading the response"
            )

    def _take_head(self, buf: RecvBuffer, limit: int) -> str | None:
        """Take the next response head (status line to empty line) off *buf* as
        latin-1 text; None if its end has not arrived yet."""
        start, end = buf.start, buf.end
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

    def _continued(self, req: Request, reason: str, headers: ResponseHeaders) -> HTTPResponse:
        """The body of an expect100 request may be sent now."""
        self._interim = 0
        self.states.continue_received(req)
        self._out_left = req.length or 0
        return HTTPResponse(req.method, req.path, 100, reason, headers, 0)

    def continue_assumed(self) -> HTTPResponse:
        """Stop waiting for ``100 Continue``: the caller's deadline passed. Returns a
        ``100 Continue`` response as if the server had sent it; a late 100 is
        then skipped, and a late final answer is the request's response.

        Raises:
            StateError: no ``100 Continue`` is awaited (see `awaiting_continue`).
        """
        if not self.awaiting_continue:
            raise StateError("No 100 Continue is awaited")
        return self._continued(self.queue[0], "Continue", ResponseHeaders([]))

    # ------------------------------------------------------------------ response bodies

    def _response_done(self) -> None:
        """The body being read (or the response without one) is complete."""
        self.reader = None
        self._body_done = True
        if self.states.conn is _CLOSING:
            self.states.response_done()

    def _no_body(self) -> int:
        """What a body read gets when no body is being read: 0 after a body, when
        nothing is pending, else raise."""
        states = self.states
        if states.conn is _FAILED:
            raise StateError(self._unusable())
        if self._body_done or not self.queue:
            if states.conn is _CLOSED and not self._body_done:
                raise ConnectionClosed(states.why or "Connection closed")
            return 0
        raise StateError("No response body to read: call read_response() first")

    def body_check(self) -> None:
        """Raise what a body read raises when no body is being read: `StateError` if a
        response is pending whose head has not been read (or the engine failed),
        `ConnectionClosed` if a body was cut by the connection's end."""
        if self.reader is None:
            self._no_body()

    def _read_failed(self, exc: Exception) -> None:
        self.fail(f"an invalid response body ({exc})")

    def read_body(self, size: int) -> bytes | None:
        """Up to *size* (> 0) body bytes from the buffer: ``b''`` at the end of the
        body (and for every call after it), None if more bytes are needed.

        Raises:
            StateError: no body is being read and a response is pending whose
                head has not been read; or the engine failed.
            InvalidResponse, UnsupportedResponse: the body's framing is bad;
                the engine has failed.
            ConnectionClosed: the body was cut by the connection's end.
        """
        reader = self.reader
        if reader is None:
            self._no_body()
            return b""
        return reader.read(size)

    def readinto_body(self, view: memoryview) -> int:
        """Move body bytes from the buffer into *view* (a flat byte view, not
        empty): the count, 0 at the end of the body, -1 if more bytes are needed.

        Raises what `read_body` raises.
        """
        reader = self.reader
        if reader is None:
            return self._no_body()
        return reader.readinto(view)

    def direct_size(self, size: int) -> int:
        """How many body bytes (at most *size*) the caller may receive straight into
        its own buffer now, bypassing `recv_space`; 0 if buffered bytes or
        framing come first (then use `recv_space` and `received`)."""
        reader = self.reader
        return 0 if reader is None else reader.direct(size)

    def got_direct(self, n: int) -> None:
        """*n* (> 0) body bytes, as allowed by `direct_size`, arrived in the caller's
        buffer (a close is ``received(0)``).

        Raises:
            ValueError: *n* is more than `direct_size` allowed, or not positive.
        """
        reader = self.reader
        if reader is None or not 0 < n <= reader.direct(n):
            raise ValueError(f"got_direct({n}): more than direct_size() allowed")
        reader.got(n)

    def take_buffered_body(self) -> bytes | None:
        """The rest of the body if all of it is buffered (the body then ends), ``b''``
        if no body is being read (as `read_body`), else None."""
        reader = self.reader
        if reader is None:
            self._no_body()
            return b""
        return reader.take_all()
