"""ConnectionPool: connections kept per origin and shared by threads and co_ generators,
with pipelining and the retries that are safe.

Every request, blocking or not, runs one generator (`ConnectionPool._co_call`):
it yields the `PollNeeded` of its connection's ``co_`` methods when the network
makes it wait, and its caller's *wait token* when the pool does (for a
connection, a turn to send, a response that another caller reads). The
``co_`` methods yield both as they are (the token of a ``co_`` call is the
`PollNeeded` of a pipe of its own); the blocking methods run the same generator
in `ConnectionPool._run`, which polls for the first kind and waits on a lock for
the second.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from threading import get_ident
from types import TracebackType
from typing import Any, Final, NamedTuple, TypeVar, cast

from ._connection import HTTPConnection, HTTPResponse
from ._exceptions import ConnectionClosed, ConnectionTimedOut, StateError
from ._loop import RUNNING
from ._poll import POLLIN, POLLOUT, Co, PollNeeded, drop_kept
from .engine import _new_response

__all__ = ["ConnectionPool", "PoolResponse"]

_T = TypeVar("_T")

_Body = bytes | bytearray | memoryview

#: methods whose requests may be repeated (RFC 9110 §9.2.2)
_IDEMPOTENT: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))
#: methods whose bodiless requests the pool pipelines
_PIPELINED: Final = frozenset(("GET", "HEAD", "OPTIONS"))
#: how often one request may go out again when nothing of it reached the server, or
#: the server had announced that it would not process it (these cost no `retries`)
_FREE_RETRIES: Final = 8
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%")
_IPV6_CHARS: Final = frozenset("0123456789abcdef:.")
_BAD_URL_CHAR: Final = re.compile("[\x00-\x20\x7f]")
#: the largest request that waits to be sent together with others (see `_co_shared`)
_COLLECTED_SIZE: Final = 16384
#: spare pipes a pool keeps for its next waiting ``co_`` calls, at most
_SPARE_PIPES: Final = 64
#: URLs whose split is remembered (all pools together), at most
_SPLITS_KEPT: Final = 512


class PoolResponse(HTTPResponse):
    """The response `ConnectionPool.request` returns: an `HTTPResponse` with its body.

    Attributes:
        body (bytes): the whole response body (empty for ``HEAD``, 204, 304).
        url (str): the URL as it was given to `ConnectionPool.request`.

    Everything else is as in `HTTPResponse`; its ``path`` is the request
    target as sent (``/`` for a URL without a path) and its ``trailers`` are
    filled.
    """

    __slots__ = ("body", "url")

    body: bytes
    url: str


# ------------------------------------------------------------------------ URLs


class _Target(NamedTuple):
    """A checked URL: its origin and the request target to send."""

    scheme: str
    host: str  # lower case, IPv6 without brackets, IDNA-encoded
    port: int
    target: str


def _split_url(url: str) -> _Target:
    """Check an absolute ``http``/``https`` URL and take it apart."""
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an absolute http:// or https:// URL: {url!r}")
    if _BAD_URL_CHAR.search(url):
        raise ValueError(f"URL contains a space or control character: {url!r}")
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < end:
            end = i
    authority, target = rest[:end], rest[end:]
    if "@" in authority:
        raise ValueError(
            f"URL with user information (send an Authorization field instead): {url!r}"
        )
    host, port = _split_authority(authority, _DEFAULT_PORTS[scheme], url)
    target = target.partition("#")[0]
    if not target or target[0] == "?":
        target = "/" + target
    if not target.isascii():
        from urllib.parse import quote

        target = quote(target, safe="".join(map(chr, range(0x21, 0x7F))))
    return _Target(scheme, host, port, target)


def _split_authority(authority: str, default_port: int, url: str) -> tuple[str, int]:
    if authority.startswith("["):
        host, sep, after = authority[1:].partition("]")
        host = host.lower()
        if (
            not sep
            or ":" not in host
            or not _IPV6_CHARS.issuperset(host)
            or (after and after[0] != ":")
        ):
            raise ValueError(f"invalid IPv6 address in URL: {url!r}")
        port_text = after[1:]
    else:
        host, _, port_text = authority.partition(":")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise ValueError(f"invalid host name in URL: {url!r}") from exc
        host = host.lower()
        if not host or not _HOST_CHARS.issuperset(host):
            raise ValueError(f"invalid host name in URL: {url!r}")
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in URL: {url!r}")
    return host, int(port_text)


def _parse_proxy(url: str, what: str) -> tuple[tuple[str, int], dict[str, str] | None]:
    """``http://[user:password@]host[:port]`` as ``(host, port)`` and the proxy's fields."""
    if not isinstance(url, str):
        raise TypeError(f"{what} must be a str URL, not {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    scheme, _, rest = text.partition("://")
    if scheme.lower() != "http":
        raise ValueError(f"{what} must be an http:// URL (a plain-HTTP proxy): {url!r}")
    authority, _, path = rest.partition("/")
    if path.strip("/"):
        raise ValueError(f"{what} must not have a path: {url!r}")
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _split_authority(hostport, 80, url)
    fields = None
    if at:
        import base64
        from urllib.parse import unquote

        user, colon, password = userinfo.partition(":")
        credentials = f"{unquote(user)}:{unquote(password) if colon else ''}"
        token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        fields = {"Proxy-Authorization": f"Basic {token}"}
    return (host, port), fields


_Origin = tuple[str, str, int]
#: URL -> its split and origin, for the most recent URLs (cleared when full)
_splits: dict[str, tuple[_Target, _Origin]] = {}


def _split_cached(url: str) -> tuple[_Target, _Origin]:
    """`_split_url` and the origin of *url*, remembered (a split never changes)."""
    got = _splits.get(url) if type(url) is str else None
    if got is None:
        split = _split_url(url)
        got = split, (split.scheme, split.host, split.port)
        if type(url) is str:
            if len(_splits) >= _SPLITS_KEPT:
                _splits.clear()
            _splits[url] = got
    return got


# ------------------------------------------------------------------------ waiting


def _new_pipe() -> tuple[int, int]:
    if hasattr(os, "pipe2"):
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    fd, wfd = os.pipe()  # pragma: no cover - platforms without pipe2
    os.set_blocking(fd, False)  # pragma: no cover
    os.set_blocking(wfd, False)  # pragma: no cover
    return fd, wfd  # pragma: no cover


class _Wake:
    """How a waiting call is woken, once: `notify` and `clear` are called with the pool's
    lock held, so *armed* says whether it is woken and not cleared yet (a wake-up is one
    signal, its clearing one more, and nothing is signalled after `_PipeWake.close`)."""

    __slots__ = ("armed",)

    def __init__(self) -> None:
        self.armed = False

    def notify(self) -> None:
        if not self.armed:
            self.armed = True
            self._signal()

    def clear(self) -> None:
        if self.armed:
            self.armed = False
            self._unsignal()

    def _signal(self) -> None:
        raise NotImplementedError

    def _unsignal(self) -> None:
        raise NotImplementedError


class _PipeWake(_Wake):
    """How a ``co_`` call is woken: the reading end of a pipe becomes readable.

    A pipe, not an eventfd: drivers keep a registration when a generator waits on
    the same descriptor number again and `os.fstat` says that it is the same file,
    which cannot tell one eventfd from the next (they all share one inode). A call
    yields the same `PollNeeded` object for each wait on it, so that a driver keeps
    its registration without even asking.

    `eval_coroutines` also *parks* the generator that waits (`PollNeeded._park`): a
    wake-up from the thread that runs that loop then tells the loop directly,
    and the pipe is neither written nor read (two system calls and a readiness
    event saved). A wake-up from another thread, or for a generator that a foreign
    loop runs, goes through the pipe. `AioFuture` keeps its registration of the
    pipe for the next call that waits on it (`PollNeeded._linger`): `close` takes
    it away.
    """

    __slots__ = ("fd", "parked", "pn", "wfd", "written")

    def __init__(self) -> None:
        super().__init__()
        self.fd, self.wfd = _new_pipe()
        self.pn = PollNeeded(self.fd, POLLIN)
        self.pn._park = self.park
        self.pn._linger = set()  # AioFuture may keep its registration for the next call
        self.written = False  # a byte is in the pipe
        # (thread, poke, arg) of the driver that parked the current wait
        self.parked: tuple[int, Callable[[Any], None], Any] | None = None

    def park(self, poke: Callable[[Any], None], arg: Any) -> None:
        """For a driver: call ``poke(arg)`` for the next wake-up if it comes from this
        thread. (A wake-up that came first has written the pipe.)"""
        self.parked = (get_ident(), poke, arg)

    # notify and clear as `_Wake`'s, spelled out: they are called for most requests

    def notify(self) -> None:
        if not self.armed:
            self.armed = True
            parked = self.parked
            if parked is not None:
                self.parked = None
                if parked[0] == get_ident():
                    parked[1](parked[2])
                    return
            self.written = True
            os.write(self.wfd, b"\0")

    def clear(self) -> None:
        self.parked = None  # a new wait: its driver parks it anew
        if self.armed:
            self.armed = False
            if self.written:  # (`_unsignal`)
                self._unsignal()

    def _unsignal(self) -> None:
        if self.written:
            self.written = False
            with suppress(BlockingIOError):
                os.read(self.fd, 8)

    def close(self) -> None:
        self.parked = None
        drop_kept(self.pn._linger)
        os.close(self.fd)
        os.close(self.wfd)


class _LockWake(_Wake):
    """How a blocking call is woken: a lock of its own, held until it is signalled.

    `wait` is called without the pool's lock.
    """

    __slots__ = ("lock",)

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.lock.acquire()

    def _signal(self) -> None:
        self.lock.release()

    def _unsignal(self) -> None:
        self.lock.acquire()

    def wait(self, timeout: float | None) -> bool:
        """Wait until notified (True) or for *timeout* seconds (False)."""
        lock = self.lock
        if lock.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            lock.release()  # `clear` takes it back, under the pool's lock
            return True
        return False


#: what the generator of a blocking call yields to wait for the pool (never seen by
#: a driver: `ConnectionPool._run` waits on the call's lock instead)
_POOL_WAIT: Final = PollNeeded(0, POLLIN)


# ------------------------------------------------------------------------ bookkeeping


class _Call:
    """One request or lease in progress: what it asks for, and where it waits.

    The same object is its caller's place in the line for a connection and, on a
    shared connection, its ticket: its place in the send and read order, and where
    the caller that reads the responses puts its answer.
    """

    __slots__ = (
        "blocking",
        "body",
        "deadline",
        "done",
        "error",
        "expired",
        "gone",
        "grant",
        "headers",
        "host",
        "in_body",
        "key",
        "method",
        "orphan",
        "pn",
        "presend",
        "queued",
        "repeatable",
        "result",
        "sending",
        "seq",
        "shared",
        "split",
        "url",
        "wake",
    )

    def __init__(
        self,
        split: _Target,
        key: _Origin,
        shared: bool,
        blocking: bool,
        method: str = "",
        url: str = "",
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
    ) -> None:
        self.split = split
        self.key = key
        self.shared = shared  # may be pipelined
        self.blocking = blocking
        self.method = method  # "" for a lease
        self.url = url
        self.headers = headers
        self.body = body
        #: may be sent again: an idempotent method (the body, if any, is bytes)
        self.repeatable = method in _IDEMPOTENT
        #: how it is woken (made on its first wait), and what it yields to wait for that
        self.wake: _Wake | None = None
        self.pn = _POOL_WAIT
        # In line for a connection:
        self.host: _Host | None = None
        self.grant: _Entry | None = None
        self.queued = False
        self.deadline: float | None = None  # a blocking wait's `time.monotonic` limit
        self.expired = False  # a blocking wait ran out of time
        #: whether the caller that handed it its connection sends its request
        #: (_PRESENDING), or did (_PRESENT); and how far that went: None (all sent), an
        #: exception, or the generator of the send and what it waits for
        self.presend = 0
        self.sending: Any = None
        self.gone = False  # it left while its request was being sent for it
        # As a ticket on a shared connection:
        self.seq = 0
        self.orphan = False  # its caller left; its response is read and dropped
        self.done = False  # its answer (result or error) is in
        self.in_body = False  # the head of its response was read
        self.result: tuple[HTTPResponse, bytes] | None = None
        self.error: BaseException | None = None

    def new_ticket(self) -> None:
        """Forget the ticket of an earlier try."""
        self.orphan = self.done = self.in_body = False
        self.result = self.error = None


class _Host:
    """What the pool keeps for one origin (scheme, host, port)."""

    __slots__ = ("cap", "entries", "idle", "key", "proxy", "proxy_headers", "tls", "waiting")

    def __init__(
        self,
        key: _Origin,
        tls: Any,
        proxy: tuple[str, int] | None,
        proxy_headers: dict[str, str] | None,
    ) -> None:
        self.key = key
        self.tls = tls
        self.proxy = proxy
        self.proxy_headers = proxy_headers
        #: every connection counted for this origin (open, being opened, in use, idle)
        self.entries: set[_Entry] = set()
        #: idle connections, the most recently used last
        self.idle: list[_Entry] = []
        #: waiters queued for this origin
        self.waiting = 0
        #: requests per connection after which the server was seen to close (None: unknown)
        self.cap: int | None = None


class _Entry:
    """One connection of the pool and who uses it."""

    __slots__ = (
        "assigned",
        "collecting",
        "conn",
        "cut",
        "cut_free",
        "exclusive",
        "flush_pn",
        "host",
        "idle_since",
        "inflight",
        "job",
        "job_for",
        "job_head",
        "job_pn",
        "lent",
        "offered",
        "orphans",
        "outq",
        "proven",
        "reader",
        "readq",
        "send_waiters",
        "sender",
        "seq",
        "served",
    )

    def __init__(self, conn: HTTPConnection, host: _Host) -> None:
        self.conn = conn
        self.host = host
        self.lent = False  # lent with connection() / co_acquire()
        self.exclusive = False  # one user only: lent, or a request that is not pipelined
        self.inflight = 0  # callers holding it (request() calls, or the lease)
        self.assigned = 0  # requests given to it so far
        self.served = 0  # responses read on it so far
        self.proven = False  # a response left it open: requests may be pipelined on it
        self.idle_since = 0.0
        # Pipelining: the send token and the callers waiting for it; the tickets sent
        # whose responses nobody reads yet, in order; orphans among the tickets.
        self.sender: _Call | None = None
        self.send_waiters: deque[_Call] = deque()
        self.readq: deque[_Call] = deque()
        self.orphans = 0
        self.seq = 0
        #: the send token's holder collects requests to send with its own, in `outq`
        #: (their bytes, in order), until it is resumed by `flush_pn` (see `_co_shared`)
        self.collecting = False
        self.outq: list[bytes] = []
        self.flush_pn: PollNeeded | None = None
        #: the caller that reads the responses, for itself and for the others
        self.reader: _Call | None = None
        #: ... named by the reader before it, and not yet awake
        self.offered = False
        #: the read of one response under way: the generator reading its head, then
        #: its body (None: not started); whose response it is (None: no read under
        #: way); the head once read; and what the generator waits for while nobody
        #: drives it (None: not started)
        self.job: Co[Any] | None = None
        self.job_for: _Call | None = None
        self.job_head: HTTPResponse | None = None
        self.job_pn: PollNeeded | None = None
        #: requests from this number on get no response here (None: no cut)
        self.cut: int | None = None
        #: ... and the server certainly did not process them (it announced its close)
        self.cut_free = False


class _Lost(Exception):
    """A request got no response, and none of it had arrived (internal).

    *sent*: the request may have reached the server; *free*: the server
    certainly did not process it.
    """

    def __init__(self, exc: ConnectionClosed, sent: bool = True, free: bool = False) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.sent = sent
        self.free = free


# Whether the caller that hands a waiter its connection sends the waiter's request.
_PRESENDING: Final = 1  # it does so now
_PRESENT: Final = 2  # it did: `_Call.sending` says how far that went

# Where a pipelined request stands, for the clean-up after an exception.
_WAIT_SEND: Final = 0  # waiting for the send token
_SENDING: Final = 1  # holding it
_WAIT_READ: Final = 2  # sent; waiting for its answer, or to become the reader
_READING: Final = 3  # the reader: reading responses in order, its own among them
_DONE: Final = 4  # answered (by the reader), and no longer counted on the connection


def _lost_or_raise(exc: BaseException, in_body: bool) -> BaseException:
    """*exc* raised while a response was read: a `_Lost` if the request may go out again."""
    if not isinstance(exc, ConnectionClosed) or exc.response_started or in_body:
        return exc
    return _Lost(exc, sent=exc.request_sent)


def _raise_first(exc: Exception) -> Co[Any]:
    """A generator that raises *exc* when first stepped."""
    raise exc
    yield  # type: ignore[unreachable]  # pragma: no cover - makes this a generator


def _make_response(resp: HTTPResponse, body: bytes, url: str) -> PoolResponse:
    out: PoolResponse = _new_response(PoolResponse)  # every field set here
    out.method = resp.method
    out.path = resp.path
    out.status = resp.status
    out.reason = resp.reason
    out.headers = resp.headers
    out.length = resp.length
    out._trailers = resp._trailers
    out.body = body
    out.url = url
    return out


# ------------------------------------------------------------------------ the pool


class ConnectionPool:
    """Connections kept open per origin and shared between requests.

    A pool serves any number of threads, and ``co_`` generators under any
    driver (a select loop, `eval_coroutines`, `AioFuture`, `run_async`), at
    the same time. `request` sends one request and reads its whole response;
    `connection` lends one `HTTPConnection` for anything else (streamed
    uploads, ``Expect: 100-continue``, large downloads).

    Args:
        max_connections: the most connections open at once, all origins
            together.
        max_per_host: the most connections to one origin (scheme, host,
            port); None means *max_connections*.
        pipeline: how many requests `request` may have in flight on one
            connection. 1 (the default) sends the next request only after the
            previous response was read. With more, bodiless ``GET``, ``HEAD``
            and ``OPTIONS`` requests that find every connection busy are
            pipelined on a connection that has already kept a response's
            promise of keep-alive; other requests always wait for a connection
            of their own.
        idle_timeout: seconds an unused connection is kept; an older one is
            closed instead of reused. None keeps them until `close`.
        ssl_context: the `ssl.SSLContext` for ``https`` origins; None means
            `ssl.create_default_context` (certificates and host names
            verified).
        proxy: ``'http://[user:password@]host[:port]'`` of an HTTP proxy
            for every origin: plain requests go to it in absolute form,
            ``https`` through a ``CONNECT`` tunnel. Credentials (percent-encoded
            in the URL) are sent as ``Proxy-Authorization: Basic`` with each
            plain request and with ``CONNECT``, never inside a tunnel. The
            port defaults to 80.
        trust_env: with *proxy* None, take the proxies from the environment
            as the standard library does (`urllib.request.getproxies`):
            ``http_proxy`` for ``http``, ``https_proxy`` for ``https``, and
            ``no_proxy`` (host names, domain suffixes, ``*``) for origins to
            reach directly; lower case wins over upper case. Read once, here.
        timeout: seconds a blocking method may wait: for a free connection,
            and, as `HTTPConnection.timeout`, for the network. None waits
            without limit. ``co_`` generators ignore it: their driver decides.
        retries: how many times `request` sends a request again, on a fresh
            connection, after its connection closed before any byte of the
            response arrived; only for an idempotent method (``GET``,
            ``HEAD``, ``OPTIONS``, ``TRACE``, ``PUT``, ``DELETE``) with a body
            of bytes or none. A request the server had certainly not
            processed (it was never sent, or was pipelined behind a response
            that announced ``Connection: close``) goes out again without
            counting against *retries*. A request that is not safe to repeat
            is never sent twice: its caller gets `ConnectionClosed`.

    Raises:
        ValueError: a limit below 1 (below 0 for *retries*, *timeout* and
            *idle_timeout*), or a proxy URL that is not ``http://``, also when
            taken from the environment.
        TypeError: an argument of the wrong type.

    The pool holds one lock for its bookkeeping, never during network I/O.
    A caller that finds no connection free and no room for another one waits,
    first come, first served among the callers of its origin: a thread on a
    lock of its own, a ``co_`` generator by yielding `PollNeeded` for the
    reading end of a pipe of its own, which the pool makes readable when it
    hands it a connection. The pipe is taken on the call's first wait and
    given back when the call ends, however it ends; the pool keeps the pipes
    given back for the next calls that wait, and closes them all as soon as no
    ``co_`` call has one. A connection counts against the limits from the
    moment it is granted; an idle connection of another origin is closed to
    make room. Nothing grows with the number of requests served.

    On a connection with pipelined requests, one caller at a time reads the
    responses, in order: its own, and those of the ``co_`` callers whose
    requests went out before and after its own, handing each its answer (and
    waking it once); a thread reads its own answer itself, when its turn comes.
    The reader reads on after its own response only what has already arrived;
    then the next caller in line takes over. Under `eval_coroutines`, a caller
    whose request finds other callers on its connection collects the requests
    that follow at once, and sends them with its own, in one write (it is
    resumed after the generators ready then).

    Used in a ``with`` block, the pool is closed when the block ends.

    Attributes:
        max_connections (int): as given.
        max_per_host (int): as given, or *max_connections*.
        pipeline (int): as given.
        idle_timeout (float | None): as given.
        timeout (float | None): as given; may be changed, and applies from
            the next wait or request on.
        retries (int): as given; may be changed.
    """

    def __init__(
        self,
        max_connections: int = 10,
        *,
        max_per_host: int | None = None,
        pipeline: int = 1,
        idle_timeout: float | None = 60.0,
        ssl_context: Any = None,
        proxy: str | None = None,
        trust_env: bool = False,
        timeout: float | None = None,
        retries: int = 1,
    ) -> None:
        self.max_connections = _count("max_connections", max_connections, 1)
        self.max_per_host = (
            self.max_connections
            if max_per_host is None
            else _count("max_per_host", max_per_host, 1)
        )
        self.pipeline = _count("pipeline", pipeline, 1)
        self.idle_timeout = _seconds("idle_timeout", idle_timeout)
        self.timeout = _seconds("timeout", timeout)
        self.retries = _count("retries", retries, 0)
        self._ssl_context = ssl_context
        self._tls_default: Any = None  # ssl.create_default_context(), made on first use
        self._proxies: dict[str, tuple[tuple[str, int], dict[str, str] | None]] = {}
        #: ``no_proxy`` from the environment, or None
        self._no_proxy: str | None = None
        if proxy is not None:
            parsed = _parse_proxy(proxy, "proxy")
            self._proxies = {"http": parsed, "https": parsed}
        elif trust_env:
            import urllib.request

            env = urllib.request.getproxies_environment()
            for scheme in _DEFAULT_PORTS:
                value = env.get(scheme)
                if value:
                    self._proxies[scheme] = _parse_proxy(value, f"{scheme}_proxy")
            self._no_proxy = env.get("no")
        self._lock = threading.Lock()
        self._closed = False
        self._hosts: dict[_Origin, _Host] = {}
        self._total = 0
        #: idle connections of every origin, the longest idle first
        self._idle: dict[_Entry, None] = {}
        #: the calls waiting for a connection, in the order they came
        self._waiters: deque[_Call] = deque()
        self._lent: dict[HTTPConnection, _Entry] = {}
        #: what to do once the lock is released: connections to close, and calls whose
        #: requests to send on the connections just handed to them
        self._closing: list[HTTPConnection | _Call] = []
        #: pipes given back by ``co_`` calls, for the next ones; how many calls hold one
        self._pipes: list[_PipeWake] = []
        self._pipe_users = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._total} connections"
        return f"<ConnectionPool {state}, max {self.max_connections}>"

    # -- requests -----------------------------------------------------------------------

    def _new_call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: _Body | None,
        blocking: bool,
    ) -> _Call:
        if not isinstance(method, str):
            raise TypeError(f"method must be str, not {type(method).__name__}")
        if body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"body must be bytes-like or None, not {type(body).__name__} "
                "(stream a body through connection())"
            )
        got = _splits.get(url) if type(url) is str else None  # (`_split_cached`'s first look)
        split, key = _split_cached(url) if got is None else got
        if key[0] == "https" and self._ssl_context is None:
            self._default_context()
        shared = (
            self.pipeline > 1
            and method in _PIPELINED
            and (body is None or not (body.nbytes if isinstance(body, memoryview) else len(body)))
        )
        if shared and headers:
            for name, value in headers.items():
                if (
                    isinstance(name, str)
                    and name.lower() == "connection"
                    and isinstance(value, str)
                    and "close" in value.lower()
                ):
                    shared = False  # nothing may follow it on the connection
        return _Call(split, key, shared, blocking, method, url, headers, body)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
    ) -> PoolResponse:
        """Send one request and read its whole response.

        The request goes out on an idle connection to the URL's origin, on a
        new one, or (with `pipeline` above 1, for a bodiless ``GET``, ``HEAD``
        or ``OPTIONS``) behind the requests in flight on a busy one; if none of
        that is possible, the call waits for a connection, at most `timeout`
        seconds. Afterwards the connection goes back to the pool, or is closed
        if it cannot carry another request. A pipelined request waits for the
        answers ahead of it without a time limit of its own: each of those
        is read under `timeout`.

        Args:
            method: the request method, e.g. ``'GET'``.
            url: an absolute ``http://`` or ``https://`` URL, with a host name
                or address (an IPv6 address in brackets), an optional port,
                path and query. An empty path is sent as ``/``; a fragment is
                not sent; characters outside ASCII in the path or query are
                sent percent-encoded (UTF-8).
            headers: extra header fields, as for
                `HTTPConnection.send_request`.
            body: None, or the whole body as a bytes-like object.

        Returns:
            PoolResponse: the status, header fields, the whole body in
            ``body``, the trailer fields, and the URL as given in ``url``. An
            error status (4xx, 5xx) is a response like any other.

        Raises:
            ValueError: *url* is not an absolute ``http``/``https`` URL, or a
                method, header field or target that cannot be sent. Nothing
                was sent.
            TypeError: *body* or another argument has the wrong type.
            StateError: the pool is closed.
            ConnectionTimedOut: no connection became free, or the network
                made no progress, for `timeout` seconds.
            ConnectionClosed: the connection closed before the response was
                complete, and the request could not be sent again (see
                *retries* of `ConnectionPool`).
            InvalidResponse: the response is not valid HTTP/1.x.
            UnsupportedResponse: the response is valid but cannot be read.

        Connecting may also raise what `HTTPConnection.connect` raises.
        """
        call = self._new_call(method, url, headers, body, True)
        return self._run(call, self._co_call(call))

    def co_request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
    ) -> Co[PoolResponse]:
        """Generator twin of `request`: yields `PollNeeded` instead of blocking.

        It waits for a free connection, and for its answer on a pipelined
        connection, on a pipe of its own. It ignores `timeout`: the driver
        decides how long to wait. The `PoolResponse` is its return value.
        """
        try:
            call = self._new_call(method, url, headers, body, False)
        except Exception as exc:
            return _raise_first(exc)  # when stepped, as a generator function would
        return self._co_call(call)  # (no generator of its own around it: one layer less)

    def _co_call(self, call: _Call) -> Co[PoolResponse]:
        """The request of *call*, sent again as long as that is safe and needed; a ``co_``
        call's pipe goes back at the end."""
        retries = self.retries
        free = _FREE_RETRIES
        lock = self._lock
        try:
            while True:
                with lock:
                    ent = self._start_wait(call)
                    holding = False
                    if ent is not None and call.shared and ent.sender is None and ent.cut is None:
                        holding = True  # the send token, taken here (see `_co_shared`)
                        ent.sender = call
                        call.seq = ent.seq
                        ent.seq += 1
                    closing = self._closing  # (`_take_closing`, spelled out on hot paths)
                    if closing:
                        self._closing = []
                if closing:
                    self._after(closing)
                if ent is None:
                    ent = yield from self._co_granted(call)
                try:
                    if call.shared:
                        return (yield from self._co_shared(ent, call, holding))
                    return (yield from self._co_alone(ent, call))
                except _Lost as lost:
                    call.new_ticket()  # for a retry
                    if lost.free or not lost.sent:
                        if free:
                            free -= 1
                            continue
                    elif call.repeatable and retries:
                        retries -= 1
                        continue
                    error = lost.exc
                raise error
        finally:
            if call.wake is not None and not call.blocking:
                self._end_call(call)

    # -- waiting --------------------------------------------------------------------------

    def _run(self, call: _Call, gen: Co[_T]) -> _T:
        """Run *gen*, the generator of the blocking *call*: wait with poll for what the
        network makes it wait for (at most `timeout` seconds), on the call's lock for
        the pool (until its `_Call.deadline`, if it has one)."""
        send = gen.send
        try:
            pn = send(None)
            while True:
                if pn is _POOL_WAIT:
                    deadline = call.deadline
                    if not cast(_LockWake, call.wake).wait(
                        None if deadline is None else deadline - time.monotonic()
                    ):
                        call.expired = True
                else:
                    timeout = self.timeout
                    if not pn.poll(timeout):
                        call.expired = True
                        gen.close()
                        raise ConnectionTimedOut(f"No progress for {timeout} seconds")
                pn = send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            gen.close()

    def _arm(self, call: _Call) -> PollNeeded:
        """Under the lock: what *call* yields to wait for the pool, its wake-up cleared."""
        wake = call.wake
        if wake is not None:
            wake.clear()
        elif call.blocking:
            call.wake = _LockWake()
        else:
            pipes = self._pipes
            pipe = call.wake = pipes.pop() if pipes else _PipeWake()
            self._pipe_users += 1
            call.pn = pipe.pn
        return call.pn

    def _end_call(self, call: _Call) -> None:
        """A ``co_`` call that waited is over: its pipe goes back (`_put_pipe`)."""
        with self._lock:
            self._put_pipe(call)

    def _put_pipe(self, call: _Call) -> None:
        """Under the lock: *call*, a ``co_`` call, will not wait any more: its pipe is kept
        for another call, or closed (as every spare one is once no call holds a pipe)."""
        pipe: _PipeWake = call.wake  # type: ignore[assignment]
        call.wake = None
        pipe.clear()
        self._pipe_users -= 1
        pipes = self._pipes
        if self._pipe_users and not self._closed and len(pipes) < _SPARE_PIPES:
            pipes.append(pipe)
            return
        pipe.close()
        if not self._pipe_users:
            for spare in pipes:
                spare.close()
            pipes.clear()

    def _host(self, call: _Call) -> _Host:
        """Under the lock: the state of the origin of *call*, made on first use."""
        key = call.key
        host = self._hosts.get(key)
        if host is None:
            split = call.split
            proxy: tuple[tuple[str, int], dict[str, str] | None] | None = self._proxies.get(
                split.scheme
            )
            if (
                proxy is not None
                and self._no_proxy
                and _bypass(self._no_proxy, split.host, split.port)
            ):
                proxy = None
            tls = None
            if split.scheme == "https":
                tls = self._ssl_context or self._default_context()
            if proxy is None:
                host = _Host(key, tls, None, None)
            else:
                host = _Host(key, tls, proxy[0], proxy[1])
            self._hosts[key] = host
        return host

    def _default_context(self) -> Any:
        ctx = self._tls_default
        if ctx is None:
            import ssl

            ctx = self._tls_default = ssl.create_default_context()
        return ctx

    def _co_acquire(self, call: _Call) -> Co[_Entry]:
        """A connection for *call*: at once, or after waiting in line for one."""
        with self._lock:
            ent = self._start_wait(call)
            closing = self._take_closing()
        if closing:
            self._after(closing)
        if ent is not None:
            return ent
        return (yield from self._co_granted(call))

    def _co_granted(self, call: _Call) -> Co[_Entry]:
        """The connection that *call*, queued by `_start_wait`, is given."""
        lock = self._lock
        pn = call.pn
        try:
            while True:
                yield pn
                with lock:
                    ent = call.grant
                    if ent is not None:
                        if call.presend != _PRESENDING:
                            call.grant = None
                            call.expired = False
                            return ent
                    elif self._closed:
                        raise StateError("The connection pool is closed")
                    elif call.expired:
                        raise ConnectionTimedOut(
                            f"No connection to {_origin_text(call.split)} became free "
                            f"within {self.timeout} seconds"
                        )
                    pn = self._arm(call)
        except BaseException:
            with lock:
                self._end_wait(call)
                closing = self._take_closing()
            self._after(closing)
            raise

    def _start_wait(self, call: _Call) -> _Entry | None:
        """Under the lock: a connection for *call*, or None: it is queued."""
        if self._closed:
            raise StateError("The connection pool is closed")
        host = self._hosts.get(call.key) or self._host(call)
        # First come, first served per origin: nothing overtakes a waiter (a request
        # that needs an idle connection is not starved by pipelined ones).
        ent = None if host.waiting else self._grant(host, call.shared)
        if ent is not None:
            return ent
        call.host = host
        call.queued = True
        self._waiters.append(call)
        host.waiting += 1
        self._arm(call)
        if call.blocking and self.timeout is not None:
            call.deadline = time.monotonic() + self.timeout
        return None

    def _end_wait(self, call: _Call) -> None:
        """Under the lock: *call* leaves the line early; a connection it was granted
        goes back."""
        host = call.host
        assert host is not None
        if call.queued:
            call.queued = False
            self._waiters.remove(call)
            host.waiting -= 1
        ent = call.grant
        if ent is None:
            self._forget_host(host)
        elif call.presend == _PRESENDING:
            call.gone = True  # `_send_for` gives the connection back when done
        else:
            call.grant = None
            self._release_locked(ent)

    # -- one request on a connection of its own

    def _co_alone(self, ent: _Entry, call: _Call) -> Co[PoolResponse]:
        conn = ent.conn
        in_body = False
        presend = call.presend
        sending = call.sending
        call.presend = 0
        call.sending = None
        try:
            try:
                if not presend:
                    yield from conn.co_send_request(
                        call.method, call.split.target, call.headers, call.body
                    )
                elif sending is not None:  # sent in part (or not at all) for it
                    if isinstance(sending, BaseException):
                        raise sending
                    gen, pn = sending
                    try:
                        yield pn
                        yield from gen
                    except BaseException:
                        gen.close()
                        raise
            except ConnectionClosed as exc:
                if not conn.responses_outstanding:
                    raise _Lost(exc, sent=False) from None
            resp = yield from conn.co_read_response()
            in_body = True
            data = yield from conn.co_readall()
        except BaseException as exc:
            self._done_alone(ent, None)
            out = _lost_or_raise(exc, in_body)
            if out is exc:
                raise
            raise out from None
        self._done_alone(ent, call)
        return _make_response(resp, data, call.url)

    def _done_alone(self, ent: _Entry, served: _Call | None) -> None:
        """The request of *served* has its whole response on *ent* (None: it failed): it
        releases *ent* and gives back its pipe (it waits no more)."""
        with self._lock:
            if served is not None:
                if served.wake is not None and not served.blocking:
                    self._put_pipe(served)
                ent.served += 1
                if ent.conn.is_connected:
                    ent.proven = True
                else:
                    self._learn_cap(ent)
            self._release_locked(ent)
            closing = self._take_closing()
        if closing:
            self._after(closing)

    def _learn_cap(self, ent: _Entry) -> None:
        """The server closed *ent* after a response: remember how many it served."""
        if ent.proven:  # it had kept the connection before: a per-connection limit
            ent.host.cap = ent.served

    # -- pipelined requests on a shared connection

    def _co_shared(self, ent: _Entry, call: _Call, holding: bool) -> Co[PoolResponse]:
        """The request of *call* on *ent*, which other callers' requests share: send it
        in turn, then wait for its answer, or read it (and others) as the reader.
        *holding*: the caller took the send token for it already (and its number in
        the send order), in the section that gave it *ent*."""
        conn = ent.conn
        lock = self._lock
        stage = _SENDING if holding else _WAIT_SEND
        flush = False  # it holds the token, collecting requests to send with its own
        try:
            if not holding:
                with lock:
                    if ent.sender is None:
                        ent.sender = call
                        stage = _SENDING
                        self._may_send(ent, call)
                    elif ent.collecting and ent.cut is None and self._collect(ent, call):
                        stage = self._queued(ent, call)  # sent with the holder's
                    else:
                        ent.send_waiters.append(call)
                        pn = self._arm(call)
            while stage == _WAIT_SEND:
                yield pn
                with lock:
                    if ent.sender is call:
                        stage = _SENDING
                        self._may_send(ent, call)
                    else:
                        pn = self._arm(call)
            if stage == _SENDING:
                out = None
                if ent.inflight > 1 and RUNNING.loops and not call.blocking:
                    # Others hold the connection: their next requests usually follow
                    # at once, and `eval_coroutines` runs them before it resumes this
                    # caller. (A caller alone sends at once: no step more for it. Under
                    # another driver, the wait for the socket would cost more than the
                    # sends saved: under AioFuture a writer callback, 20 % of the rate.)
                    out = conn._request_bytes(
                        call.method, call.split.target, call.headers, call.body
                    )
                if out is not None and len(out) <= _COLLECTED_SIZE:
                    # Sent later, with the requests of the callers that come meanwhile
                    # (one send instead of several): it keeps the token until then.
                    ent.outq.append(out)
                    flush = True
                    sent = True
                elif out is not None:  # too big to wait for others: it goes out now
                    try:
                        sent = yield from conn._co_send_out(out, 1)
                    except ConnectionClosed:
                        sent = False
                else:
                    try:
                        yield from conn.co_send_request(
                            call.method, call.split.target, call.headers, call.body
                        )
                    except ConnectionClosed:
                        sent = False
                    else:
                        sent = True
                with lock:
                    if flush:
                        ent.collecting = True
                    elif ent.send_waiters:
                        self._pass_send_turn(ent)
                    else:
                        ent.sender = None
                    if not sent:
                        self._cut(ent, call.seq, False)
                    stage = self._queued(ent, call)
                    closing = self._closing
                    if closing:
                        self._closing = []
                if closing:
                    self._after(closing)
                if flush:
                    yield self._flush_wait(ent)
                    flush = False  # (`_co_flush` sees to its own failures)
                    yield from self._co_flush(ent, call)
            while stage != _DONE:
                if stage == _READING:
                    stage = yield from self._co_read(ent, call)
                    continue
                yield call.pn
                with lock:
                    if call.done:
                        stage = _DONE
                        self._release_locked(ent)
                        if call.error is None and not call.blocking:
                            self._put_pipe(call)  # the call ends: in the same section
                    elif ent.reader is call:  # named by the reader before it
                        ent.offered = False
                        stage = self._start_reading(ent, call)
                    else:
                        self._arm(call)
                    closing = self._closing
                    if closing:
                        self._closing = []
                if closing:
                    self._after(closing)
        except BaseException as exc:
            if flush:
                self._flush_now(ent, call)
            self._shared_failed(ent, call, stage, exc)
            raise
        if call.error is not None:
            raise call.error
        assert call.result is not None
        resp, data = call.result
        return _make_response(resp, data, call.url)

    def _queued(self, ent: _Entry, call: _Call) -> int:
        """Under the lock: *call*'s request is sent (or collected): it takes its place in
        the read order, and reads (`_READING`) or waits for its answer (`_WAIT_READ`)."""
        ent.readq.append(call)  # before the next sender's: the order on the wire
        named = ent.reader
        if named is None or (ent.offered and not named.blocking):
            self._take_reader(ent, call)
            return self._start_reading(ent, call)
        self._arm(call)
        return _WAIT_READ

    def _collect(self, ent: _Entry, call: _Call) -> bool:
        """Under the lock, the token's holder collecting: add *call*'s request to the
        ones it sends (True); False if the connection does not take it that way."""
        try:
            out = ent.conn._request_bytes(call.method, call.split.target, call.headers, call.body)
        except Exception:  # raised again where it is sent the usual way
            return False
        if out is None:
            return False
        call.seq = ent.seq
        ent.seq += 1
        ent.outq.append(out)
        return True

    def _flush_wait(self, ent: _Entry) -> PollNeeded:
        """What the collecting holder yields: over at once (`PollNeeded._now`), after
        the callers ready now have had their turn."""
        fd = ent.conn._tr.fd  # type: ignore[union-attr]
        pn = ent.flush_pn
        if pn is None or pn[0] != fd:
            pn = ent.flush_pn = PollNeeded(fd, POLLOUT)
            pn._now = True
        return pn

    def _take_collected(self, ent: _Entry) -> list[bytes]:
        """The collecting holder stops collecting: the requests' bytes, in order."""
        with self._lock:
            ent.collecting = False
            outq = ent.outq
            ent.outq = []
        return outq

    def _co_flush(self, ent: _Entry, call: _Call) -> Co[None]:
        """The collecting holder *call* sends what it collected, and passes the token."""
        outq = self._take_collected(ent)
        conn = ent.conn
        try:
            sent = yield from conn._co_send_out(
                outq[0] if len(outq) == 1 else b"".join(outq), len(outq)
            )
        except ConnectionClosed:
            sent = None
        except BaseException:
            conn._abort_send()  # sent in part: a reader waiting for these gets the close
            sent = None
            raise
        finally:
            with self._lock:
                self._pass_send_turn(ent)
                if not sent:
                    self._cut(ent, call.seq, sent is False)  # (False: certainly not sent)
                closing = self._take_closing()
            self._after(closing)

    def _flush_now(self, ent: _Entry, call: _Call) -> None:
        """The collecting holder *call* leaves early: what it collected goes out now, if
        the socket takes it whole, else nothing after its own request is answered."""
        outq = self._take_collected(ent)
        conn = ent.conn
        whole = conn._send_out_now(b"".join(outq))
        if not whole:
            conn._abort_send()  # a reader waiting for these gets the close
        with self._lock:
            self._pass_send_turn(ent)
            if not whole:
                self._cut(ent, call.seq, False)

    def _may_send(self, ent: _Entry, call: _Call) -> None:
        """Under the lock, holding the send token: take the next number in the send
        order, or find that the connection was cut off (then `_Lost`: nothing sent)."""
        call.seq = ent.seq
        ent.seq += 1
        if ent.cut is not None:
            raise _Lost(
                ConnectionClosed("The connection closed before the request could be sent on it"),
                sent=False,
            )

    def _pass_send_turn(self, ent: _Entry) -> None:
        """Under the lock: hand the send token to the next caller in line."""
        if ent.send_waiters:
            call = ent.send_waiters.popleft()
            ent.sender = call
            assert call.wake is not None
            call.wake.notify()
        else:
            ent.sender = None

    def _take_reader(self, ent: _Entry, call: _Call) -> None:
        """Under the lock: *call* becomes the reader of *ent* (the role was free, or named
        for a generator not yet awake, which then need not wake up; a thread named
        reads its answer itself, which is next)."""
        named = ent.reader
        if named is not None and named.wake is not None:
            named.wake.clear()
        ent.reader = call
        ent.offered = False

    def _start_reading(self, ent: _Entry, me: _Call) -> int:
        """Under the lock, *me* having become the reader of *ent*: set up the read of the
        first response due (`_READING`); or, the role handed on, wait for its answer
        (`_WAIT_READ`, its wake-up armed) or, that being settled, release *me*'s hold
        (`_DONE`)."""
        if self._next_job(ent, me):
            return _READING
        return self._stop_reading(ent, me)

    def _stop_reading(self, ent: _Entry, me: _Call) -> int:
        """Under the lock: *me* no longer reads *ent*: its answer is settled (`_DONE`,
        its hold released), or it waits for it (`_WAIT_READ`)."""
        if me.done:
            self._release_locked(ent)
            return _DONE
        self._arm(me)
        return _WAIT_READ

    def _co_read(self, ent: _Entry, me: _Call) -> Co[int]:
        """As the reader of *ent*, its first read set up: read the responses in order,
        each for its caller, up to the answer of *me*; then on, as long as responses
        are already there; then hand the role to the next caller in line, and release
        *me*'s hold on *ent* (`_DONE`). A blocking caller reads its answer itself: the
        role goes to it when its response is next, and *me*, if its answer is still
        to come, waits for it again (`_WAIT_READ`)."""
        lock = self._lock
        ahead = self.pipeline  # answers read after its own, at most
        while True:
            job = ent.job
            call = ent.job_for
            pn = ent.job_pn
            assert call is not None
            data: Any = None
            failure: Exception | None = None
            if job is None:
                # Nothing of this response is read yet. Behind another answer it is usually
                # buffered whole: then it is taken without a generator.
                conn = ent.conn
                try:
                    head = None if call.orphan else conn._buffered_head()
                    if head is None:
                        job = ent.job = conn.co_read_response()
                    else:
                        ent.job_head = head
                        call.in_body = True
                        data = conn._buffered_body()
                        if data is None:
                            job = ent.job = conn.co_readall()
                except Exception as exc:
                    failure = exc
            while job is not None:
                if pn is not None:
                    if me.done:  # never wait for others' answers once its own is in
                        break
                    ent.job_pn = pn  # if it is interrupted here: where the job stands
                    yield pn
                try:
                    pn = job.send(None)
                except StopIteration as stop:
                    pn = None
                    if ent.job_head is not None:
                        data = stop.value
                        break
                    # The head is in; now the body (dropped if nobody wants it), taken
                    # without a generator if it is buffered whole.
                    ent.job_head = stop.value
                    call.in_body = True
                    conn = ent.conn
                    if not call.orphan:
                        try:
                            data = conn._buffered_body()
                        except Exception as exc:
                            failure = exc
                            break
                        if data is not None:
                            break
                    job = ent.job = conn.co_discard() if call.orphan else conn.co_readall()
                except Exception as exc:
                    failure = exc
                    pn = None
                    break
            with lock:
                if pn is not None:  # its own answer is in: the next in line waits
                    ent.job_pn = pn
                    more = self._offer(ent)
                else:
                    if failure is None:
                        self._delivered(ent, call, data, me)
                    else:
                        self._job_failed(ent, call, failure, me)
                    if me.done:
                        ahead -= 1
                    more = self._next_job(ent, me) if ahead else self._offer(ent)
                stage = _READING if more else self._stop_reading(ent, me)
                closing = self._closing
                if closing:
                    self._closing = []
            if closing:
                self._after(closing)
            if not more:
                return stage

    def _next_job(self, ent: _Entry, me: _Call) -> bool:
        """Under the lock, as the reader: set up the read of the next response (True); or
        leave the role (False): nothing is due, or the next response is a blocking
        caller's, which is woken to read it itself (threads read their own answers:
        woken once for that, as they would be for the answer, they keep the other
        threads from waking up at once)."""
        if ent.job_for is not None:  # one under way, left by the reader before
            return True
        readq = ent.readq
        while readq:
            call = readq[0]
            if ent.cut is not None and call.seq >= ent.cut:
                readq.popleft()
                self._answer(
                    ent,
                    call,
                    _Lost(
                        ConnectionClosed(
                            "No response: the connection closed before this request's turn"
                        ),
                        free=ent.cut_free,
                    ),
                    me,
                )
                continue
            if call.blocking and call is not me and not call.orphan:
                ent.reader = call
                ent.offered = True
                assert call.wake is not None
                call.wake.notify()
                return False
            readq.popleft()
            ent.job_for = call  # its read starts in `_co_read`
            ent.job = ent.job_head = ent.job_pn = None
            return True
        ent.reader = None
        return False

    def _offer(self, ent: _Entry) -> bool:
        """Under the lock: the reader leaves while responses are due; name the first
        caller in line that waits for one as the next reader, and wake it. False."""
        call = ent.job_for
        if call is None or call.orphan:
            call = next((c for c in ent.readq if not c.orphan), None)
        ent.reader = call
        ent.offered = call is not None
        if call is not None and call.wake is not None:
            call.wake.notify()
        return False

    def _delivered(self, ent: _Entry, call: _Call, data: bytes, me: _Call) -> None:
        """Under the lock: the reader has read the response to *call*, the body *data*."""
        head = ent.job_head
        ent.job = ent.job_for = ent.job_head = None
        ent.served += 1
        if ent.conn._tr is not None:  # (is_connected)
            if not ent.proven:
                ent.proven = True
                self._dispatch()
        else:  # the server closes after this response: nothing behind it is processed
            self._learn_cap(ent)
            self._cut(ent, call.seq + 1, True)
        if call.orphan:
            ent.orphans -= 1
        else:  # `_answer`, spelled out
            assert head is not None
            call.result = head, data
            call.error = None
            call.done = True
            if call is not me:
                call.wake.notify()  # type: ignore[union-attr]

    def _job_failed(self, ent: _Entry, call: _Call, exc: BaseException, me: _Call) -> None:
        """Under the lock: reading the response to *call* failed with *exc*; nothing after
        it can be read on *ent*."""
        ent.job = ent.job_for = ent.job_head = None
        self._cut(ent, call.seq + 1, False)
        if call.orphan:
            ent.orphans -= 1
        else:
            self._answer(ent, call, _lost_or_raise(exc, call.in_body), me)

    def _answer(self, ent: _Entry, call: _Call, error: BaseException | None, me: _Call) -> None:
        """Under the lock: *call*'s answer is in (its result, or *error*); it is woken,
        unless it is the reader *me* itself. (It goes on counting on *ent* until it is
        awake, as if it had read the answer itself.)"""
        if call.orphan:
            ent.orphans -= 1
            return
        call.error = error
        call.done = True
        if call is not me:
            assert call.wake is not None
            call.wake.notify()

    def _cut(self, ent: _Entry, seq: int, free: bool) -> None:
        """Under the lock: requests *seq* and later get no response on *ent*."""
        if ent.cut is None or seq < ent.cut:
            ent.cut = seq
            ent.cut_free = free

    def _shared_failed(self, ent: _Entry, call: _Call, stage: int, exc: BaseException) -> None:
        """A pipelined request left its connection at *stage* because of *exc*: undo its
        part in the send and read order."""
        with self._lock:
            if stage == _WAIT_SEND:
                if ent.sender is call:
                    self._pass_send_turn(ent)
                else:
                    ent.send_waiters.remove(call)
            elif stage == _SENDING:  # sending, or found the connection cut off
                if ent.sender is call:
                    self._pass_send_turn(ent)
                if not isinstance(exc, (ValueError, TypeError)):
                    self._cut(ent, call.seq, False)  # it may be half sent
            elif stage == _READING:  # interrupted while waiting for a response
                job, job_for = ent.job, ent.job_for
                if call.expired and job is not None and job_for is not None:
                    # A blocking reader's timeout: that response is lost to its caller.
                    job.close()
                    self._job_failed(
                        ent,
                        job_for,
                        ConnectionTimedOut(f"No progress for {self.timeout} seconds"),
                        call,
                    )
                if not call.done:
                    call.orphan = True
                    ent.orphans += 1
                self._offer(ent)  # the next in line goes on where it stopped
            elif stage == _WAIT_READ and not call.done:
                call.orphan = True  # its response will be read and dropped
                ent.orphans += 1
                if ent.reader is call:
                    self._offer(ent)
            if stage != _DONE:
                self._release_locked(ent)
            closing = self._take_closing()
        self._after(closing)

    # -- granting and returning connections (all under the lock) ----------------------------

    def _grant(self, host: _Host, shared: bool, evict: bool = True) -> _Entry | None:
        """A connection to *host* for one caller, or None if it has to wait.

        With *evict*, an idle connection of another origin may be closed to make room.
        """
        every_idle = self._idle
        if every_idle:
            timeout = self.idle_timeout
            if timeout is not None:
                before = time.monotonic() - timeout
                if next(iter(every_idle)).idle_since <= before:  # the longest idle first
                    self._expire(before)
        idle = host.idle
        if idle:
            ent = idle.pop()
            del self._idle[ent]
            return self._use(ent, shared)
        if self._total < self.max_connections and len(host.entries) < self.max_per_host:
            return self._use(self._new_entry(host), shared)
        if shared:
            best = None
            least = self.pipeline
            cap = host.cap
            for ent in host.entries:
                load = ent.inflight + ent.orphans
                if (
                    load < least
                    and load
                    and ent.proven
                    and not ent.exclusive
                    and ent.cut is None
                    and (cap is None or ent.assigned < cap)
                ):
                    best = ent
                    least = load
            if best is not None:
                return self._use(best, True)
        if evict and self._idle and len(host.entries) < self.max_per_host:
            # Every idle connection is of another origin (this one has none): close the
            # one idle longest to make room.
            self._drop(next(iter(self._idle)))
            return self._use(self._new_entry(host), shared)
        return None

    def _use(self, ent: _Entry, shared: bool) -> _Entry:
        ent.inflight += 1
        ent.assigned += 1
        if not shared:
            ent.exclusive = True
        return ent

    def _new_entry(self, host: _Host) -> _Entry:
        _, name, port = host.key
        conn = HTTPConnection(name, port, host.tls, host.proxy, proxy_headers=host.proxy_headers)
        ent = _Entry(conn, host)
        host.entries.add(ent)
        self._total += 1
        return ent

    def _expire(self, before: float) -> None:
        """Close the idle connections unused since *before* (a `time.monotonic` time)."""
        idle = self._idle
        while idle:
            ent = next(iter(idle))
            if ent.idle_since > before:
                return
            self._drop(ent)

    def _drop(self, ent: _Entry) -> None:
        """Close *ent* (once the lock is released) and stop counting it."""
        host = ent.host
        host.entries.discard(ent)
        if ent in self._idle:
            del self._idle[ent]
            host.idle.remove(ent)
        self._total -= 1
        job = ent.job
        if ent.job_for is not None:  # the read of an orphan's response, which nobody awaits
            ent.job = ent.job_for = ent.job_head = None
            if job is not None:
                job.close()
        self._closing.append(ent.conn)
        self._forget_host(host)

    def _forget_host(self, host: _Host) -> None:
        if not host.entries and not host.waiting and self._hosts.get(host.key) is host:
            del self._hosts[host.key]

    def _release_locked(self, ent: _Entry) -> None:
        """One caller is done with *ent*: hand it to the first waiter of its origin, or
        keep it idle, if nobody else uses it and it can carry another request, else
        close it; then serve the waiters that can be served."""
        ent.inflight -= 1
        waiters = self._waiters
        host = ent.host
        if ent.inflight:
            if host.waiting:
                self._dispatch()  # one more may be pipelined on it
            return
        conn = ent.conn
        ent.exclusive = ent.lent = False
        if (
            self._closed
            or ent.cut is not None
            or ent.orphans
            or self.idle_timeout == 0
            or not (conn.is_connected and conn.is_idle)
        ):
            self._drop(ent)
        elif host.waiting:
            for waiter in waiters:
                if waiter.host is host:
                    break
            waiters.remove(waiter)
            # An open connection for a request of its own: its request goes out at once.
            self._hand(
                waiter, self._use(ent, waiter.shared), not waiter.shared and bool(waiter.method)
            )
            if host.waiting and waiter.shared and ent.proven:
                self._dispatch()
            return
        else:
            ent.idle_since = time.monotonic()
            host.idle.append(ent)
            self._idle[ent] = None
        if waiters:
            self._dispatch()

    def _hand(self, waiter: _Call, ent: _Entry, presend: bool = False) -> None:
        """Give *ent* to *waiter*, taken out of the line, and wake it; with *presend*,
        send its request first, once the lock is released (`_send_for`)."""
        waiter.grant = ent
        waiter.queued = False
        waiter.deadline = None
        assert waiter.host is not None
        assert waiter.wake is not None
        waiter.host.waiting -= 1
        if presend:
            waiter.presend = _PRESENDING
            self._closing.append(waiter)
        else:
            waiter.wake.notify()

    def _dispatch(self) -> None:
        """Hand connections to the waiters that can have one now, in the order they came.

        First without closing anything, so that an origin's own waiters get its
        idle connections; then closing idle connections of other origins (which,
        after the first round, have no waiters) to make room.
        """
        if self._closed:
            return
        for evict in (False, True):
            stuck: set[_Host] = set()  # an origin whose first waiter must wait on
            keep: deque[_Call] = deque()
            for waiter in self._waiters:
                host = waiter.host
                assert host is not None
                ent = None if host in stuck else self._grant(host, waiter.shared, evict)
                if ent is None:
                    stuck.add(host)
                    keep.append(waiter)
                else:
                    self._hand(waiter, ent)
            self._waiters = keep
            if not keep or not self._idle:
                return

    def _take_closing(self) -> list[HTTPConnection | _Call]:
        """Under the lock: what to do once it is released (see `_after`)."""
        closing = self._closing
        if closing:
            self._closing = []
        return closing

    def _after(self, todo: list[HTTPConnection | _Call]) -> None:
        """Without the lock: close the connections in *todo*, and send the requests of
        the calls in it."""
        for item in todo:
            if type(item) is _Call:
                self._send_for(item)
            else:
                item.disconnect()  # type: ignore[union-attr]

    def _send_for(self, call: _Call) -> None:
        """Send the request of *call*, which waited for the connection it was just given,
        as far as it goes without waiting; then wake *call*, which takes it from there
        (`_co_alone`). Its request leaves a round trip earlier, and a caller that wakes
        up to its response already there need not wait on the connection."""
        ent = call.grant
        assert ent is not None
        gen = ent.conn.co_send_request(call.method, call.split.target, call.headers, call.body)
        result: Any = None
        try:
            result = gen, gen.send(None)
        except StopIteration:
            result = None
        except BaseException as exc:
            result = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._lock:
                if call.gone:  # its caller left meanwhile: the connection goes back
                    if type(result) is tuple:
                        gen.close()
                    call.grant = None
                    self._release_locked(ent)
                else:
                    call.sending = result
                    call.presend = _PRESENT
                    assert call.wake is not None
                    call.wake.notify()
                todo = self._take_closing()
            if todo:
                self._after(todo)

    # -- lending connections --------------------------------------------------------------

    @contextmanager
    def connection(self, url: str) -> Iterator[HTTPConnection]:
        """Lend one connection to the origin of *url* for the duration of a ``with`` block.

        For what `request` does not cover: streamed uploads
        (`BodyFollowing`, ``expect100``), downloads read piece by piece
        (`HTTPConnection.readinto`), or a sequence of requests of your own.
        While lent, the pool puts nothing else on the connection. It may be
        unconnected: the first request opens it. Waits for a connection like
        `request`, at most `timeout` seconds.

        When the block ends, the connection goes back to the pool if it is
        idle and open (every response read, no body half sent); if not, or if
        the block ends with an exception, it is closed.

        Args:
            url: an absolute ``http://`` or ``https://`` URL; only its origin
                (scheme, host, port) counts.

        Returns:
            A context manager whose ``with`` statement gives the
            `HTTPConnection`.

        Raises:
            ValueError: *url* is not an absolute ``http``/``https`` URL.
            StateError: the pool is closed.
            ConnectionTimedOut: no connection became free within `timeout`
                seconds.
        """
        call = self._lease(url, True)
        conn = self._lend(self._run(call, self._co_acquire(call)))
        try:
            yield conn
        except BaseException:
            self._give_back(conn, False)
            raise
        self._give_back(conn, True)

    def co_acquire(self, url: str) -> Co[HTTPConnection]:
        """Generator twin of `connection`: yields `PollNeeded` instead of blocking.

        It returns the lent `HTTPConnection` (instead of a context manager),
        which must be handed back with `release`. It ignores `timeout`: the
        driver decides how long to wait.
        """
        call = self._lease(url, False)
        try:
            ent = yield from self._co_acquire(call)
        finally:
            if call.wake is not None:
                self._end_call(call)
        return self._lend(ent)

    def release(self, conn: HTTPConnection) -> None:
        """Hand back a connection lent by `co_acquire` (or `connection`).

        It goes back to the pool if it is idle and open, else it is closed.
        After `close`, it is closed.

        Args:
            conn: the connection that `co_acquire` returned.

        Raises:
            ValueError: *conn* is not lent by this pool (e.g. released twice).
        """
        self._give_back(conn, True)

    def _lease(self, url: str, blocking: bool) -> _Call:
        split, key = _split_cached(url)
        if split.scheme == "https" and self._ssl_context is None:
            self._default_context()
        return _Call(split, key, False, blocking)

    def _lend(self, ent: _Entry) -> HTTPConnection:
        conn = ent.conn
        conn.timeout = self.timeout
        with self._lock:
            ent.lent = True
            self._lent[conn] = ent
        return conn

    def _give_back(self, conn: HTTPConnection, ok: bool) -> None:
        with self._lock:
            ent = self._lent.pop(conn, None)
            if ent is None:
                raise ValueError(f"{conn!r} is not lent by this pool")
            if not ok:
                self._drop_after_use(ent)
            else:
                self._release_locked(ent)
            closing = self._take_closing()
        self._after(closing)

    def _drop_after_use(self, ent: _Entry) -> None:
        ent.inflight -= 1
        ent.exclusive = ent.lent = False
        self._drop(ent)
        if self._waiters:
            self._dispatch()

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every idle connection and refuse further use.

        Waiting callers get `StateError`. Connections in use (lent, or
        carrying a request) are closed as soon as their user is done with
        them. A second call does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for ent in list(self._idle):
                self._drop(ent)
            waiters, self._waiters = self._waiters, deque()
            for waiter in waiters:
                assert waiter.host is not None
                assert waiter.wake is not None
                waiter.queued = False
                waiter.host.waiting -= 1
                waiter.wake.notify()
            for pipe in self._pipes:
                pipe.close()
            self._pipes.clear()
            closing = self._take_closing()
        self._after(closing)

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _bypass(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``no_proxy`` names *host* (the rules of `urllib.request`).

    ``*`` names every host. Otherwise each comma-separated entry, without
    leading dots, names that host and every host in that domain (``example.com``
    and ``.example.com`` both cover ``www.example.com``); an entry with a
    port covers that port only. Case does not matter.
    """
    if no_proxy.strip() == "*":
        return True
    bracketed = f"[{host}]" if ":" in host else host
    with_port = f"{bracketed}:{port}"
    for entry in no_proxy.lower().split(","):
        entry = entry.strip().lstrip(".")
        if not entry:
            continue
        for name in (host, bracketed, with_port):
            if name == entry or name.endswith("." + entry):
                return True
    return False


def _origin_text(split: _Target) -> str:
    host = f"[{split.host}]" if ":" in split.host else split.host
    return f"{split.scheme}://{host}:{split.port}"


def _count(name: str, value: int, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}: {value}")
    return value


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if not value >= 0:
        raise ValueError(f"{name} must not be negative: {value}")
    return float(value)


for _cls in (ConnectionPool, PoolResponse):
    _cls.__module__ = "dugong"
