"""Real servers on the loopback interface, and a selector loop, for dugong's tests.

Nothing here imports dugong, so these helpers (and their own tests in
``test_servers.py``) work before the package does.

``ScriptedServer``
    A raw-socket server that follows a script of `Step`\\ s for each
    connection it accepts, and records every byte it receives.

``HTTPTestServer``
    A threaded ``http.server`` speaking HTTP/1.1 with a handful of paths whose
    answers tests can predict (see `HTTPTestServer`).

``select_loop``
    Drives a ``co_`` generator to completion with ``selectors``.

``once_waiting``
    Runs an action in another thread as soon as the test's thread waits for a
    file descriptor: the event for "the client waits first".

Every server runs in background threads, binds port 0 of 127.0.0.1 unless told
otherwise, stops within a fraction of a second, and collects the problems it
saw in ``errors``; ``check()`` raises them as an ``AssertionError``.
"""

from __future__ import annotations

import contextlib
import dis
import enum
import functools
import http
import http.server
import linecache
import random
import re
import select
import selectors
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

#: Address servers listen on by default.
HOST = "127.0.0.1"

#: How long a step waits for the client (seconds) unless told otherwise.
STEP_TIMEOUT = 10.0

#: How often a server thread that waits for a test's event or for the rest of a TLS
#: record looks whether it should stop (seconds). Waits for a socket or for a
#: connection are woken by stop() itself.
POLL_INTERVAL = 0.05

#: Longest request head the scripted server accepts.
MAX_HEAD_SIZE = 64 * 1024

#: How long stop() waits for each server thread.
JOIN_TIMEOUT = 5.0

_SEED = 0x6475676F


@functools.lru_cache(maxsize=16)
def body_for(n: int) -> bytes:
    """Return the deterministic *n*-byte payload the HTTP test server sends.

    The bytes are pseudo-random, so a body that is shifted, truncated or has
    pieces swapped does not compare equal by accident.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    return random.Random(_SEED).randbytes(n)


def _short(data: bytes | bytearray, limit: int = 200) -> str:
    """repr() of *data*, cut to *limit* bytes for error messages."""
    if len(data) <= limit:
        return repr(bytes(data))
    return f"{bytes(data[:limit])!r}... ({len(data)} bytes)"


def _readable(sock: socket.socket, wake: socket.socket, timeout: float | None) -> bool:
    """Wait until *sock* or *wake* is readable, or *timeout* seconds pass; True if *sock* is."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return any(fd == sock.fileno() for fd, _ in poller.poll(ms))


def _make_listener(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen(32)
    except BaseException:
        sock.close()
        raise
    return sock


# =====================================================================================
# Requests as the servers saw them
# =====================================================================================

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (\S+) HTTP/(\d)\.(\d)")
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(;.*)?")


@dataclass
class Request:
    """One HTTP request as a server received it.

    ``headers`` (and ``trailers``) keep the order and spelling of the wire;
    `header` looks a field up ignoring case. ``body`` is the decoded body
    (``None`` while it has not been read); ``raw`` holds the head and body
    exactly as they arrived, chunked framing included.
    """

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes | None = None
    trailers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes = b""

    @property
    def path(self) -> str:
        """The path of the target (the target itself unless in absolute form)."""
        return urllib.parse.urlsplit(self.target).path or self.target

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of field *name* (any case), or *default*."""
        values = self.header_all(name)
        return values[0] if values else default

    def header_all(self, name: str) -> list[str]:
        """Every value of field *name* (any case), in arrival order."""
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    @property
    def chunked(self) -> bool:
        """True if the body was sent with the chunked transfer coding."""
        codings = ",".join(self.header_all("Transfer-Encoding")).split(",")
        return codings[-1].strip().lower() == "chunked"


class ProtocolViolation(Exception):
    """The client sent something that is not a valid HTTP/1.1 request."""


def parse_request_head(head: bytes) -> Request:
    """Parse a request head (request line and fields, ending in an empty line).

    The parser is strict on purpose, since it checks what dugong sends: CRLF
    line ends only, token field names, no obs-fold, no NUL, CR or LF in values.
    Raises `ProtocolViolation`.
    """
    if not head.endswith(b"\r\n\r\n"):
        raise ProtocolViolation(f"request head does not end with CRLF CRLF: {_short(head)}")
    lines = head[:-4].split(b"\r\n")
    for line in lines:
        if b"\n" in line or b"\r" in line or b"\0" in line:
            raise ProtocolViolation(f"bare CR, LF or NUL in request line/field {line!r}")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise ProtocolViolation(f"malformed request line {lines[0]!r}")
    method, target, major, minor = match.groups()
    headers = []
    for line in lines[1:]:
        fmatch = _FIELD_LINE.fullmatch(line)
        if fmatch is None:
            raise ProtocolViolation(f"malformed header line {line!r}")
        headers.append((fmatch[1].decode("ascii"), fmatch[2].decode("latin-1")))
    return Request(
        method=method.decode("ascii"),
        target=target.decode("latin-1"),
        version=f"HTTP/{major.decode()}.{minor.decode()}",
        headers=headers,
        raw=bytes(head),
    )


# =====================================================================================
# ScriptedServer
# =====================================================================================


class Action(enum.Enum):
    """What a `Step` does."""

    EXPECT = "expect"
    READ = "read"
    READ_REQUEST = "read_request"
    READ_BODY = "read_body"
    SEND = "send"
    SLEEP = "sleep"
    WAIT_EVENT = "wait_event"
    SET_EVENT = "set_event"
    SHUTDOWN_WRITE = "shutdown_write"
    DRAIN = "drain"
    EXPECT_EOF = "expect_eof"
    CLOSE = "close"
    RESET = "reset"
    STOP_READING = "stop_reading"


#: Steps after which a script can have no further step.
TERMINAL_ACTIONS = frozenset({Action.CLOSE, Action.RESET, Action.STOP_READING})

#: What `Step.send` accepts: bytes, or a function of the requests read so far
#: on this connection that returns the bytes.
SendData = bytes | Callable[[list[Request]], bytes]


@dataclass(frozen=True)
class Step:
    """One step of a `ScriptedServer` script. Build steps with the class methods."""

    action: Action
    data: SendData | None = None
    size: int | None = None
    seconds: float | None = None
    with_body: bool = True
    chunk: int | None = None
    may_fail: bool = False
    event: threading.Event | None = None

    def __str__(self) -> str:
        if isinstance(self.data, bytes | bytearray):
            return f"{self.action.value}({_short(self.data, 60)})"
        details = [
            f"{name}={value!r}"
            for name, value in (("size", self.size), ("seconds", self.seconds))
            if value is not None
        ]
        return f"{self.action.value}({', '.join(details)})"

    # -- receiving

    @classmethod
    def expect(cls, data: bytes, *, timeout: float = STEP_TIMEOUT) -> Step:
        """Receive exactly ``len(data)`` bytes; an error unless they equal *data*."""
        return cls(Action.EXPECT, data=bytes(data), seconds=timeout)

    @classmethod
    def read(cls, size: int, *, timeout: float = STEP_TIMEOUT) -> Step:
        """Receive exactly *size* bytes, whatever they are (they are recorded)."""
        return cls(Action.READ, size=size, seconds=timeout)

    @classmethod
    def read_request(cls, *, body: bool = True, timeout: float = STEP_TIMEOUT) -> Step:
        """Receive a request head and, if *body*, its body; append it to ``requests``.

        The body is framed by ``Transfer-Encoding: chunked`` or ``Content-Length``
        (none: empty). With ``body=False`` only the head is read, e.g. to answer
        ``Expect: 100-continue`` first; `read_body` reads the body later.
        """
        return cls(Action.READ_REQUEST, with_body=body, seconds=timeout)

    @classmethod
    def read_body(cls, *, timeout: float = STEP_TIMEOUT) -> Step:
        """Receive the body of the last request read with ``read_request(body=False)``."""
        return cls(Action.READ_BODY, seconds=timeout)

    @classmethod
    def drain(cls, seconds: float | None = None) -> Step:
        """Receive and record whatever comes until EOF, for *seconds* at most.

        ``None`` waits for EOF or for the server to stop. Never an error.
        """
        return cls(Action.DRAIN, seconds=seconds)

    @classmethod
    def expect_eof(cls, *, timeout: float = STEP_TIMEOUT) -> Step:
        """Wait for the client to close; an error if any byte or no EOF arrives."""
        return cls(Action.EXPECT_EOF, seconds=timeout)

    # -- sending

    @classmethod
    def send(
        cls,
        data: SendData,
        *,
        chunk: int | None = None,
        delay: float = 0.0,
        may_fail: bool = False,
    ) -> Step:
        """Send *data* (bytes, or a function of this connection's requests).

        With *chunk*, send it *chunk* bytes at a time, sleeping *delay* seconds
        before each piece after the first (a slow drip). A failed send (the
        client closed or reset) is an error unless *may_fail*.
        """
        if chunk is not None and chunk <= 0:
            raise ValueError("chunk must be positive")
        return cls(Action.SEND, data=data, chunk=chunk, seconds=delay, may_fail=may_fail)

    @classmethod
    def shutdown_write(cls) -> Step:
        """Shut down the sending side (the client sees EOF); keep reading."""
        return cls(Action.SHUTDOWN_WRITE)

    # -- timing

    @classmethod
    def sleep(cls, seconds: float) -> Step:
        """Do nothing, and read nothing, for *seconds*."""
        return cls(Action.SLEEP, seconds=seconds)

    @classmethod
    def wait_event(cls, event: threading.Event, *, timeout: float = STEP_TIMEOUT) -> Step:
        """Wait (reading nothing) until the test sets *event*; an error after *timeout*."""
        return cls(Action.WAIT_EVENT, event=event, seconds=timeout)

    @classmethod
    def set_event(cls, event: threading.Event) -> Step:
        """Set *event*, so the test knows the script got this far."""
        return cls(Action.SET_EVENT, event=event)

    # -- ending (nothing may follow these)

    @classmethod
    def close(cls) -> Step:
        """Close the connection normally (FIN)."""
        return cls(Action.CLOSE)

    @classmethod
    def reset(cls) -> Step:
        """Close the connection with a reset (SO_LINGER 0, RST)."""
        return cls(Action.RESET)

    @classmethod
    def stop_reading(cls) -> Step:
        """Stay connected and idle, reading nothing, until the server stops."""
        return cls(Action.STOP_READING)


Script = Sequence[Step]


class _StepError(Exception):
    """A step failed; the message says why."""


class _Stopped(Exception):
    """The server is stopping."""


class _Checked:
    """What both servers share: collected errors, ``check()``, use as a context manager."""

    #: names the server in the message of ``check()``
    label = "server"
    errors: list[str]
    _lock: threading.Lock

    def start(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self) -> None:
        """Raise ``AssertionError`` listing every error seen so far."""
        with self._lock:
            errors = list(self.errors)
        if errors:
            raise AssertionError(f"{self.label} errors:\n  " + "\n  ".join(errors))

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.stop()
        if exc_type is None:
            self.check()


class ScriptedServer(_Checked):
    """A raw-socket server that plays a script of `Step`\\ s on each connection.

    *scripts* is either one script (a sequence of `Step`) or a sequence of
    scripts, the n-th for the n-th accepted connection. With *repeat*, the
    (single) script is played on every connection. A connection beyond the
    scripts is closed at once and reported as an error.

    Attributes to inspect (safe to read while the server runs):

    ``port``, ``host``, ``address``
        where it listens.
    ``received``
        one ``bytes`` per accepted connection: everything received on it
        (after decryption, with TLS).
    ``requests``
        one list of `Request` per accepted connection, from ``read_request``.
    ``errors``
        problems seen so far (strings); ``check()`` raises them. A test that
        provokes errors on purpose may inspect and ``clear()`` this list.

    When a step fails, the connection is closed and the rest of its script
    dropped. When a script ends without ``close``/``reset``/``stop_reading``,
    the server keeps the connection open and records what arrives until the
    client closes; bytes arriving then are an error.
    """

    label = "scripted server"

    def __init__(
        self,
        scripts: Script | Sequence[Script],
        *,
        repeat: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        host: str = HOST,
    ) -> None:
        if scripts and all(isinstance(step, Step) for step in scripts):
            script_list: list[list[Step]] = [list(scripts)]
        elif len(scripts) == 0:
            script_list = [[]]
        else:
            script_list = [list(script) for script in scripts]
        for script in script_list:
            for index, step in enumerate(script):
                if not isinstance(step, Step):
                    raise TypeError(f"not a Step: {step!r}")
                if step.action in TERMINAL_ACTIONS and index != len(script) - 1:
                    raise ValueError(f"{step} must be the last step of a script")
        if repeat and len(script_list) != 1:
            raise ValueError("repeat=True needs exactly one script")
        self.scripts = script_list
        self.repeat = repeat
        self.ssl_context = ssl_context
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._received: list[bytearray] = []
        self._requests: list[list[Request]] = []
        self._done: list[threading.Event] = []
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener = _make_listener(host)
        # stop() sends a byte here and never reads it: every thread that waits for
        # its socket waits for this one too, and so wakes up at once.
        self._wake, self._wake_sender = socket.socketpair()
        self.host, self.port = self._listener.getsockname()[:2]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"scripted-accept-{self.port}", daemon=True
        )
        self._started = False
        self._stopped = False

    # -- public API

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def received(self) -> list[bytes]:
        with self._lock:
            return [bytes(buf) for buf in self._received]

    @property
    def requests(self) -> list[list[Request]]:
        with self._lock:
            return [list(reqs) for reqs in self._requests]

    @property
    def connections(self) -> int:
        """Number of connections accepted so far."""
        with self._lock:
            return len(self._received)

    def start(self) -> ScriptedServer:
        if not self._started:
            self._started = True
            self._accept_thread.start()
        return self

    def wait_done(self, connections: int | None = None, timeout: float = STEP_TIMEOUT) -> None:
        """Wait until *connections* were accepted and all accepted ones ran their script.

        *connections* defaults to the number of scripts (1 with *repeat*).
        Raises ``AssertionError`` on timeout.
        """
        if connections is None:
            connections = len(self.scripts)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = list(self._done)
            running = [ev for ev in done if not ev.is_set()]
            if len(done) >= connections and not running:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                states = ", ".join("done" if ev.is_set() else "running" for ev in done)
                raise AssertionError(
                    f"scripted server: expected {connections} finished connection(s) "
                    f"within {timeout} s; have {len(done)} [{states}]"
                )
            if running:  # woken when that connection is done
                running[0].wait(min(left, POLL_INTERVAL))
            else:  # a connection yet to be accepted
                time.sleep(min(left, POLL_INTERVAL / 5))

    def stop(self) -> None:
        """Stop accepting, end every connection, join all threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._wake_sender.send(b"!")
        if self._started:
            self._accept_thread.join(JOIN_TIMEOUT)
            if self._accept_thread.is_alive():
                self._error("accept thread did not stop")
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                self._error(f"{thread.name} did not stop")
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()
        self._wake.close()
        self._wake_sender.close()

    # -- internals

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _accept_loop(self) -> None:
        self._listener.setblocking(False)
        while True:
            _readable(self._listener, self._wake, None)
            if self._stop.is_set():
                return
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if not self._stop.is_set():
                    self._error(f"accept failed: {exc!r}")
                return
            # Every step's send goes out at once: with Nagle, a send that follows
            # unacknowledged data (e.g. TLS 1.3 session tickets) waits for the client's
            # delayed ACK, about 40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                index = len(self._received)
                self._received.append(bytearray())
                self._requests.append([])
                done = threading.Event()
                self._done.append(done)
                self._sockets.append(sock)
            if self.repeat:
                script: list[Step] | None = self.scripts[0]
            elif index < len(self.scripts):
                script = self.scripts[index]
            else:
                script = None
            if script is None:
                self._error(
                    f"connection {index}: unexpected (only {len(self.scripts)} "
                    "script(s) given); closed at once"
                )
                sock.close()
                done.set()
                continue
            thread = threading.Thread(
                target=self._serve,
                args=(index, sock, script, done),
                name=f"scripted-{self.port}-conn{index}",
                daemon=True,
            )
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(
        self, index: int, sock: socket.socket, script: list[Step], done: threading.Event
    ) -> None:
        conn = _ScriptedConnection(self, index, sock)
        step: Step | None = None
        where = "TLS set-up"
        try:
            if self.ssl_context is not None:
                conn.start_tls(self.ssl_context)
            for number, step in enumerate(script):
                where = f"step {number} {step}"
                if step.action is Action.STOP_READING:
                    done.set()  # idling until the end counts as done
                conn.run(step)
            done.set()
            if not (script and script[-1].action in TERMINAL_ACTIONS):
                conn.after_script()
        except _StepError as exc:
            self._error(f"connection {index}, {where}: {exc}")
        except _Stopped:
            # Steps that wait for the client must have finished by now; steps
            # that only pass time (sleep, a slow send, draining) may be cut short.
            if step is not None and not done.is_set() and step.action in _MUST_FINISH:
                self._error(f"connection {index}, {where}: not finished when the server stopped")
        except Exception as exc:
            self._error(
                f"connection {index}: {exc!r}\n"
                + "".join(traceback.format_exception(exc)).rstrip()
            )
        finally:
            done.set()
            conn.close()


#: Steps that are an error when the server stops before they complete.
_MUST_FINISH = frozenset(
    {
        Action.EXPECT,
        Action.READ,
        Action.READ_REQUEST,
        Action.READ_BODY,
        Action.EXPECT_EOF,
        Action.WAIT_EVENT,
    }
)


class _ScriptedConnection:
    """The state of one connection of a `ScriptedServer`."""

    def __init__(self, server: ScriptedServer, index: int, sock: socket.socket) -> None:
        self.server = server
        self.index = index
        self.sock = sock
        self.pending = bytearray()  # received, not yet consumed by a step
        self.eof = False
        self.closed = False

    # -- low level

    def _record(self, data: bytes) -> None:
        with self.server._lock:
            self.server._received[self.index] += data

    def _recv_some(self, deadline: float | None) -> bool:
        """Receive into ``pending``. False on EOF; `_StepError` at *deadline*."""
        if self.eof:
            return False
        self.sock.settimeout(POLL_INTERVAL)
        wake = self.server._wake
        while True:
            if self.server._stop.is_set():
                raise _Stopped
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise _StepError("timed out waiting for the client")
            # Wait for the client or for stop(), whichever comes first (bytes that
            # the TLS layer has already decrypted are there without waiting).
            left = None if deadline is None else deadline - now
            if not (
                isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            ) and not _readable(self.sock, wake, left):
                continue
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ssl.SSLWantReadError:
                continue
            except (ConnectionError, ssl.SSLError) as exc:
                raise _StepError(f"receive failed: {exc!r}") from exc
            if not data:
                self.eof = True
                return False
            self._record(data)
            self.pending += data
            return True

    def _take(self, size: int, deadline: float, what: str) -> bytes:
        while len(self.pending) < size:
            if not self._recv_some(deadline):
                raise _StepError(
                    f"EOF after {len(self.pending)} of {size} bytes of {what}: "
                    f"{_short(self.pending)}"
                )
        data = bytes(self.pending[:size])
        del self.pending[:size]
        return data

    def _take_line(self, deadline: float, what: str) -> bytes:
        """One CRLF-terminated line (CRLF included)."""
        start = 0
        while True:
            pos = self.pending.find(b"\r\n", start)
            if pos >= 0:
                line = bytes(self.pending[: pos + 2])
                del self.pending[: pos + 2]
                return line
            if len(self.pending) > MAX_HEAD_SIZE:
                raise _StepError(f"{what} line longer than {MAX_HEAD_SIZE} bytes")
            start = max(0, len(self.pending) - 1)
            if not self._recv_some(deadline):
                raise _StepError(f"EOF in {what}: {_short(self.pending)}")

    def _sendall(self, data: bytes) -> None:
        self.sock.settimeout(STEP_TIMEOUT)
        self.sock.sendall(data)

    def start_tls(self, context: ssl.SSLContext) -> None:
        tls = context.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock = tls
        with self.server._lock:
            self.server._sockets.append(tls)
        tls.settimeout(STEP_TIMEOUT)
        try:
            tls.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            raise _StepError(f"TLS handshake failed: {exc!r}") from exc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    # -- steps

    def run(self, step: Step) -> None:
        action = step.action
        deadline = None if step.seconds is None else time.monotonic() + step.seconds
        if action is Action.EXPECT:
            assert isinstance(step.data, bytes)
            assert deadline is not None
            try:
                got = self._take(len(step.data), deadline, "the expected data")
            except _StepError as exc:
                raise _StepError(f"{exc}; expected {_short(step.data)}") from None
            if got != step.data:
                raise _StepError(f"received {_short(got)}, expected {_short(step.data)}")
        elif action is Action.READ:
            assert step.size is not None
            assert deadline is not None
            self._take(step.size, deadline, "read()")
        elif action is Action.READ_REQUEST:
            assert deadline is not None
            self._read_request(deadline, step.with_body)
        elif action is Action.READ_BODY:
            assert deadline is not None
            with self.server._lock:
                requests = self.server._requests[self.index]
                last = requests[-1] if requests else None
            if last is None or last.body is not None:
                raise _StepError("no request waiting for its body")
            self._read_body(last, deadline)
        elif action is Action.SEND:
            self._send(step)
        elif action is Action.SLEEP:
            assert step.seconds is not None
            if self.server._stop.wait(step.seconds):
                raise _Stopped
        elif action is Action.WAIT_EVENT:
            assert step.event is not None
            assert deadline is not None
            while not step.event.wait(POLL_INTERVAL):
                if self.server._stop.is_set():
                    raise _Stopped
                if time.monotonic() >= deadline:
                    raise _StepError("the test did not set the event in time")
        elif action is Action.SET_EVENT:
            assert step.event is not None
            step.event.set()
        elif action is Action.SHUTDOWN_WRITE:
            self.sock.shutdown(socket.SHUT_WR)
        elif action is Action.DRAIN:
            self.pending.clear()
            try:
                while self._recv_some(deadline):
                    self.pending.clear()
            except _StepError:
                pass  # the time is up: that is how this step ends
        elif action is Action.EXPECT_EOF:
            if self.pending:
                raise _StepError(f"unexpected bytes {_short(self.pending)}")
            if self._recv_some(deadline):
                raise _StepError(f"unexpected bytes {_short(self.pending)}")
        elif action is Action.CLOSE:
            self.close()
        elif action is Action.RESET:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close()
        elif action is Action.STOP_READING:
            self.server._stop.wait()
        else:  # pragma: no cover
            raise AssertionError(action)

    def _read_request(self, deadline: float, with_body: bool) -> None:
        while True:
            end = self.pending.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.pending) > MAX_HEAD_SIZE:
                raise _StepError(f"no end of the request head in {MAX_HEAD_SIZE} bytes")
            if not self._recv_some(deadline):
                if not self.pending:
                    raise _StepError("EOF instead of a request")
                raise _StepError(f"EOF inside the request head: {_short(self.pending)}")
        head = bytes(self.pending[: end + 4])
        del self.pending[: end + 4]
        try:
            request = parse_request_head(head)
        except ProtocolViolation as exc:
            raise _StepError(str(exc)) from None
        with self.server._lock:
            self.server._requests[self.index].append(request)
        if with_body:
            self._read_body(request, deadline)

    def _read_body(self, request: Request, deadline: float) -> None:
        lengths = request.header_all("Content-Length")
        if request.header_all("Transfer-Encoding"):
            if lengths:
                raise _StepError("request has both Transfer-Encoding and Content-Length")
            if not request.chunked:
                raise _StepError("request Transfer-Encoding does not end in chunked")
            raw, body, trailers = self._read_chunked(deadline)
            request.trailers = trailers
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit() or not lengths[0].isascii():
                raise _StepError(f"invalid Content-Length {lengths!r}")
            raw = body = self._take(int(lengths[0]), deadline, "the request body")
        else:
            raw = body = b""
        request.raw += raw
        request.body = body

    def _read_chunked(self, deadline: float) -> tuple[bytes, bytes, list[tuple[str, str]]]:
        raw = bytearray()
        body = bytearray()
        while True:
            line = self._take_line(deadline, "chunk size")
            raw += line
            match = _CHUNK_LINE.fullmatch(line[:-2])
            if match is None:
                raise _StepError(f"malformed chunk-size line {line!r}")
            size = int(match[1], 16)
            if size == 0:
                break
            data = self._take(size + 2, deadline, "a chunk")
            raw += data
            if data[-2:] != b"\r\n":
                raise _StepError(f"chunk data not followed by CRLF: {_short(data[-20:])}")
            body += data[:-2]
        trailers = []
        while True:
            line = self._take_line(deadline, "trailer")
            raw += line
            if line == b"\r\n":
                break
            match = _FIELD_LINE.fullmatch(line[:-2])
            if match is None:
                raise _StepError(f"malformed trailer line {line!r}")
            trailers.append((match[1].decode("ascii"), match[2].decode("latin-1")))
        return bytes(raw), bytes(body), trailers

    def _send(self, step: Step) -> None:
        data = step.data
        if callable(data):
            data = data(self.server.requests[self.index])
        assert isinstance(data, bytes | bytearray | memoryview)
        pieces: list[bytes | bytearray | memoryview]
        if step.chunk is None:
            pieces = [data]
        else:
            view = memoryview(data)
            pieces = [view[i : i + step.chunk] for i in range(0, len(view), step.chunk)]
        try:
            for number, piece in enumerate(pieces):
                if number and step.seconds and self.server._stop.wait(step.seconds):
                    raise _Stopped
                self._sendall(piece)
        except (OSError, ssl.SSLError) as exc:
            if not step.may_fail:
                raise _StepError(f"send failed: {exc!r}") from exc

    def after_script(self) -> None:
        """Keep reading after the script until EOF; any byte now is an error."""
        reported = False
        try:
            while True:
                if self.pending and not reported:
                    self.server._error(
                        f"connection {self.index}: unexpected bytes after the end of the "
                        f"script: {_short(self.pending)}"
                    )
                    reported = True
                self.pending.clear()
                if not self._recv_some(None):
                    return
        except _StepError:
            return  # the client reset the connection: not the script's business


# =====================================================================================
# HTTPTestServer
# =====================================================================================


@dataclass
class RecordedRequest:
    """A request handled by `HTTPTestServer` (``body`` decoded, ``None`` if not read)."""

    method: str
    target: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes | None


class _ClientGone(Exception):
    """The client closed before its request body was complete."""


class _BadRequest(Exception):
    """The request body was malformed; answered with 400."""


#: seconds the test HTTP server reads what a client still sends after its last answer
LINGER = 0.5

_EXPECTED_HANDLER_ERRORS = (ConnectionError, TimeoutError, ssl.SSLError, _ClientGone)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False  # we join our own threads, with a time limit
    request_queue_size = 128

    def __init__(self, owner: HTTPTestServer, host: str, ssl_context: ssl.SSLContext | None):
        self.owner = owner
        self.ssl_context = ssl_context
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.conn_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.handler_threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        # stop_serving() sends a byte here, which wakes serve_forever at once.
        self._wake, self._wake_sender = socket.socketpair()
        super().__init__((host, 0), _Handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until `stop_serving` (woken by it, not by polling)."""
        while True:
            _readable(self.socket, self._wake, None)
            if self.stopping.is_set():
                return
            self._handle_request_noblock()

    def stop_serving(self) -> None:
        self.stopping.set()
        self._wake_sender.send(b"!")

    def server_close(self) -> None:
        super().server_close()
        self._wake.close()
        self._wake_sender.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN: skip the resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"http-test-{self.server_port}-{client_address[1]}",
            daemon=True,
        )
        with self.conn_lock:
            self.connections.add(request)
            self.handler_threads.append(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        # A lingering close, as production servers make it: stop sending, then read
        # and drop what the client still sends until it closes (at most LINGER
        # seconds; `drop_connections` ends it at once). Closing with unread bytes, e.g.
        # a request pipelined behind a ``Connection: close`` answer, would send a
        # reset, and a reset can destroy answer bytes the client has not read yet.
        with contextlib.suppress(OSError, ValueError):
            socket.socket.shutdown(request, socket.SHUT_WR)  # (not SSLSocket's)
            request.settimeout(LINGER)
            while socket.socket.recv(request, 65536):
                pass
        with self.conn_lock:
            self.connections.discard(request)
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, _EXPECTED_HANDLER_ERRORS):
            return
        self.owner._error(
            f"handler for {client_address}: {exc!r}\n" + traceback.format_exc().rstrip()
        )

    def drop_connections(self) -> None:
        """Shut down every open connection, so that handler threads end."""
        with self.conn_lock:
            connections = list(self.connections)
        for sock in connections:
            # socket.socket.shutdown, not SSLSocket's: leave the TLS object alone.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


_SIZE_PATH = re.compile(r"/(size|chunked|close)/(\d+)")
_STATUS_PATH = re.compile(r"/status/(\d{3})")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in two writes: with Nagle, the second one waits for
    # the client's delayed ACK (about 40 ms per response).
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(STEP_TIMEOUT)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are recorded instead

    def handle_expect_100(self) -> bool:
        if urllib.parse.urlsplit(self.path).path == "/reject":
            return True  # _dispatch answers 403 without reading the body
        return super().handle_expect_100()

    # -- dispatch

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        expect100 = self.headers.get("Expect", "").lower() == "100-continue"
        headers = list(self.headers.items())
        if path == "/reject" and expect100:
            self.server.owner._record(
                RecordedRequest(self.command, self.path, path, headers, None)
            )
            self._reject(keepalive="keepalive" in query)
            return
        try:
            body = self._read_request_body()
        except _BadRequest as exc:
            self.send_error(400, str(exc))
            self.close_connection = True
            return
        self.server.owner._record(RecordedRequest(self.command, self.path, path, headers, body))

        if path == "/echo":
            self._send_body(200, body, content_type="application/octet-stream")
        elif path == "/headers":
            text = "".join(f"{name}: {value}\n" for name, value in headers)
            self._send_body(200, text.encode("latin-1"))
        elif path == "/reject":
            self._send_body(403, b"rejected\n")
        elif match := _SIZE_PATH.fullmatch(path):
            kind, size = match[1], int(match[2])
            if kind == "size":
                self._send_body(200, body_for(size), content_type="application/octet-stream")
            elif kind == "chunked":
                chunk = int(query.get("chunk", ["1000"])[0])
                self._send_chunked(body_for(size), max(1, chunk))
            else:
                self._send_until_close(body_for(size))
        elif match := _STATUS_PATH.fullmatch(path):
            self._send_status(int(match[1]))
        else:
            self._send_body(404, f"no such path: {path}\n".encode())

    # -- request bodies

    def _read_request_body(self) -> bytes:
        codings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if codings:
            if lengths:
                raise _BadRequest("both Transfer-Encoding and Content-Length")
            if ",".join(codings).split(",")[-1].strip().lower() != "chunked":
                raise _BadRequest("unsupported transfer coding")
            return self._read_chunked()
        if lengths:
            if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
                raise _BadRequest(f"invalid Content-Length {lengths!r}")
            return self._read_exactly(int(lengths[0]))
        return b""

    def _read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise _ClientGone(f"got {len(data)} of {size} body bytes")
        return data

    def _read_line(self) -> bytes:
        line = self.rfile.readline(65537)
        if not line.endswith(b"\r\n"):
            if len(line) > 65536:
                raise _BadRequest("line too long")
            raise _ClientGone("EOF inside a chunked body")
        return line[:-2]

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            match = _CHUNK_LINE.fullmatch(self._read_line())
            if match is None:
                raise _BadRequest("malformed chunk-size line")
            size = int(match[1], 16)
            if size == 0:
                break
            body += self._read_exactly(size)
            if self._read_exactly(2) != b"\r\n":
                raise _BadRequest("chunk data not followed by CRLF")
        while self._read_line():  # trailer fields are read and dropped
            pass
        return bytes(body)

    # -- responses

    def _start(self, status: int, reason: str | None = None) -> None:
        self.send_response(status, reason)

    def _send_body(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=latin-1"
    ) -> None:
        self._start(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_chunked(self, body: bytes, chunk: int) -> None:
        self._start(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Trailer")
        self.end_headers()
        if self.command == "HEAD":
            return
        out = bytearray()
        for number, start in enumerate(range(0, len(body), chunk)):
            piece = body[start : start + chunk]
            ext = ";dugong-test=1" if number == 0 else ""
            out += b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece)
        out += b"0;last\r\nX-Trailer: yes\r\n\r\n"
        self.wfile.write(out)

    def _send_until_close(self, body: bytes) -> None:
        self._start(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")  # also sets self.close_connection
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_status(self, status: int) -> None:
        if not 200 <= status <= 599:
            self._send_body(400, b"final status codes only\n")
            return
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        if status in (204, 304):
            self._start(status, reason)
            self.end_headers()
            return
        self._start(status, reason)
        body = f"status {status}\n".encode()
        self.send_header("Content-Type", "text/plain; charset=latin-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reject(self, keepalive: bool) -> None:
        body = b"rejected\n"
        self._start(403)
        self.send_header("Content-Type", "text/plain; charset=latin-1")
        self.send_header("Content-Length", str(len(body)))
        if not keepalive:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class HTTPTestServer(_Checked):
    """A threaded ``http.server`` (HTTP/1.1, keep-alive) with predictable paths.

    Paths (any method; HEAD gets the headers without the body; request bodies
    framed by Content-Length or chunked are always read first):

    ``/size/N``
        N bytes of `body_for(N) <body_for>` with Content-Length.
    ``/chunked/N[?chunk=K]``
        the same bytes chunked, K bytes a chunk (default 1000); the first
        chunk has an extension (``;dugong-test=1``), the last chunk ``;last``,
        and a trailer field ``X-Trailer: yes`` follows (announced in ``Trailer``).
    ``/close/N``
        the same bytes with ``Connection: close`` and no length: read until close.
    ``/echo``
        answers 200 with the request body as its body (``100 Continue`` first,
        only when the request has ``Expect: 100-continue``).
    ``/reject[?keepalive]``
        with ``Expect: 100-continue``: answers 403 at once without reading the
        body, and with ``Connection: close`` (keeps the connection open, without
        reading the body, if ``keepalive`` is in the query). Without Expect: reads
        the body, then 403.
    ``/status/NNN``
        status NNN (200-599) with a short body (none for 204 and 304).
    ``/headers``
        the request's header fields as the body, one ``name: value\\n`` each.
    anything else
        404.

    Absolute-form targets (``GET http://host/size/3``) are served like their path,
    so the server also stands in for a plain HTTP proxy.

    ``requests`` lists a `RecordedRequest` per request; ``errors`` lists
    unexpected exceptions of the handlers (disconnects, resets and TLS errors
    are not errors); ``check()`` raises them.
    """

    label = "HTTP test server"

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, host: str = HOST):
        self.ssl_context = ssl_context
        self.errors: list[str] = []
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = _Server(self, host, ssl_context)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name=f"http-test-{self.port}",
            daemon=True,
        )
        self._started = False
        self._stopped = False

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def start(self) -> HTTPTestServer:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, join all threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self._server.stop_serving()
            self._thread.join(JOIN_TIMEOUT)
        self._server.server_close()
        self._server.drop_connections()
        with self._server.conn_lock:
            threads = list(self._server.handler_threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                self._error(f"{thread.name} did not stop")


# =====================================================================================
# Driving co_ generators with selectors
# =====================================================================================

_POLL_BITS = select.POLLIN | select.POLLOUT


def select_loop(
    gen: Generator[Any, None, Any],
    timeout: float = 30.0,
    wait_type: type | None = None,
) -> Any:
    """Run the generator *gen* to completion in a ``selectors`` loop; return its value.

    Each value *gen* yields must be a 2-tuple ``(fd, mask)`` (an instance of
    *wait_type* if given) with *mask* made of ``select.POLLIN``/``POLLOUT``;
    *gen* is resumed with ``send(None)`` once *fd* is ready. If it has not
    finished after *timeout* seconds in all, it is closed and the test fails.
    """
    deadline = time.monotonic() + timeout
    try:
        wait = next(gen)
    except StopIteration as exc:
        return exc.value
    with selectors.DefaultSelector() as selector:
        while True:
            if wait_type is not None and not isinstance(wait, wait_type):
                gen.close()
                pytest.fail(f"co_ generator yielded {wait!r}, not a {wait_type.__name__}")
            if not (isinstance(wait, tuple) and len(wait) == 2):
                gen.close()
                pytest.fail(f"co_ generator yielded {wait!r}, not an (fd, mask) pair")
            fd, mask = wait
            if not isinstance(mask, int) or not mask or mask & ~_POLL_BITS:
                gen.close()
                pytest.fail(f"co_ generator yielded a bad poll mask in {wait!r}")
            events = 0
            if mask & select.POLLIN:
                events |= selectors.EVENT_READ
            if mask & select.POLLOUT:
                events |= selectors.EVENT_WRITE
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                gen.close()
                pytest.fail(f"co_ generator did not finish within {timeout} s (waiting on {wait})")
            # Register afresh for every wait: the generator may have closed the fd
            # and opened another one under the same number in the meantime.
            selector.register(fd, events)
            try:
                ready = selector.select(remaining)
            finally:
                selector.unregister(fd)
            if not ready:
                continue
            try:
                wait = gen.send(None)
            except StopIteration as exc:
                return exc.value


# =====================================================================================
# Acting once a thread waits
# =====================================================================================

#: the functions of the package under test that wait for a file descriptor: in a poll,
#: or in a receive that the kernel makes wait (a blocking socket with SO_RCVTIMEO)
_PACKAGE_WAITS = frozenset({"wait", "_wait", "eval_coroutine", "_wait_for"})
_RECEIVE_WAITS = frozenset({"_wait_for"})


def _in_package(code: CodeType) -> bool:
    # By the directory's name, so that this module needs no import of the package.
    return Path(code.co_filename).parent.name == "dugong"


#: the opcodes that call a function (while the call runs, its caller's frame is at one)
_CALL_OPS = frozenset(dis.opmap[name] for name in ("CALL", "CALL_KW") if name in dis.opmap)


def _in_straight_receive(frame: FrameType) -> bool:
    """Whether *frame*, of the package, is in a call of the socket's receive made on its
    own line (the receives spelled out on hot paths, with no wait function around)."""
    code = frame.f_code
    return code.co_code[frame.f_lasti] in _CALL_OPS and "._recv_into(" in linecache.getline(
        code.co_filename, frame.f_lineno
    )


def in_a_wait(frame: FrameType) -> bool:
    """Whether *frame*, a thread's innermost Python frame, waits for a file descriptor:
    in one of dugong's waits (poll, select, or a receive that waits, also one called
    straight from a line of its own), in a wrapper that a test put around the socket's
    receive called by such a receive, or in a `selectors` loop's wait
    (`select_loop`)."""
    code = frame.f_code
    if code.co_name == "select":
        return code.co_filename == selectors.__file__
    if (code.co_name in _PACKAGE_WAITS or _in_straight_receive(frame)) and _in_package(code):
        return True
    caller = frame.f_back
    return (
        caller is not None
        and caller.f_code.co_name in _RECEIVE_WAITS
        and _in_package(caller.f_code)
    )


@contextlib.contextmanager
def once_waiting(
    action: Callable[[], object],
    *,
    waiting_in: Callable[[FrameType], bool] = in_a_wait,
    timeout: float = STEP_TIMEOUT,
) -> Iterator[None]:
    """Run *action* in another thread as soon as this thread waits (see `in_a_wait`).

    For what must happen only while the client waits: the server answers, a signal
    interrupts the wait. *waiting_in(frame)* says which innermost frame counts as
    waiting. An ``AssertionError`` if the block ends without that wait having come
    (within *timeout* seconds); an exception of *action* is raised at the end of
    the block.
    """
    ident = threading.get_ident()
    done = threading.Event()
    ran: list[BaseException | None] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            frame = sys._current_frames().get(ident)
            if frame is not None and waiting_in(frame):
                try:
                    action()
                except BaseException as exc:
                    ran.append(exc)
                else:
                    ran.append(None)
                return
            done.wait(0.001)

    thread = threading.Thread(target=watch, name="once-waiting", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(JOIN_TIMEOUT)
    assert ran, "the wait that the action was meant for never came"
    if ran[0] is not None:
        raise ran[0]
