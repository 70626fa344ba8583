"""ConnectionPool: connections kept per origin and shared by threads and co_ generators,
with pipelining and the retries that are safe."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, Final, NamedTuple

from ._connection import HTTPConnection, HTTPResponse
from ._exceptions import ConnectionClosed, ConnectionTimedOut, StateError
from ._poll import POLLIN, Co, PollNeeded

__all__ = ["ConnectionPool", "PoolResponse"]

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
        raise ValueError(f"URL with user information (send an Authorization field "
                         f"instead): {url!r}")
    host, port = _split_authority(authority, _DEFAULT_PORTS[scheme], url)
    target = target.partition("#")[0]
    if not target or target[0] == "?":
        target = "/" + target
    if not target.isascii():
        from urllib.parse import quote

        target = quote(target, safe="".join(map(chr, range(0x21, 0x7f))))
    return _Target(scheme, host, port, target)


def _split_authority(authority: str, default_port: int, url: str) -> tuple[str, int]:
    if authority.startswith("["):
        host, sep, after = authority[1:].partition("]")
        host = host.lower()
        if not sep or ":" not in host or not _IPV6_CHARS.issuperset(host) or \
                (after and after[0] != ":"):
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


# ------------------------------------------------------------------------ bookkeeping


class _Wake:
    """How one waiter is woken: a condition on the pool's lock (a thread), or a pipe of
    its own whose reading end becomes readable (a ``co_`` generator).

    Every method is called with the pool's lock held, so a descriptor is never
    written to after it was closed (its number may belong to another file by then).

    A pipe, not an eventfd: drivers keep a registration when a generator waits on
    the same descriptor number again and `os.fstat` says that it is the same file,
    which cannot tell one eventfd from the next (they all share one inode).
    """

    __slots__ = ("cond", "fd", "wfd")

    def __init__(self, lock: threading.Lock | None) -> None:
        self.cond: threading.Condition | None = None
        if lock is not None:
            self.cond = threading.Condition(lock)
            self.fd = self.wfd = -1
        else:
            self.fd, self.wfd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self.wfd, False)

    def notify(self) -> None:
        if self.cond is not None:
            self.cond.notify()
        elif self.wfd >= 0:
            with suppress(BlockingIOError):  # a full pipe is readable anyway
                os.write(self.wfd, b"\0")

    def clear(self) -> None:
        """Make the descriptor unreadable again (after a wake-up that changed nothing)."""
        with suppress(BlockingIOError):
            os.read(self.fd, 512)

    def close(self) -> None:
        fd, wfd = self.fd, self.wfd
        if fd >= 0:
            self.fd = self.wfd = -1
            os.close(fd)
            os.close(wfd)


class _Caller:
    """One ``co_`` call's pipe: made on its first wait, kept for the rest of the call
    (so that a driver keeps its registration from one wait to the next), closed at
    its end (under the pool's lock, once nothing refers to it any more)."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake: _Wake | None = None

    def get(self) -> _Wake:
        """Under the lock: the pipe for a new wait, with old wake-ups drained."""
        wake = self.wake
        if wake is None:
            wake = self.wake = _Wake(None)
        else:
            wake.clear()
        return wake


class _Host:
    """What the pool keeps for one origin (scheme, host, port)."""

    __slots__ = ("cap", "entries", "idle", "key", "proxy", "proxy_headers", "tls", "waiting")

    def __init__(self, key: tuple[str, str, int], tls: Any,
                 proxy: tuple[str, int] | None, proxy_headers: dict[str, str] | None) -> None:
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


class _Ticket:
    """One pipelined request on a shared connection: its place in the send and read order."""

    __slots__ = ("orphan", "seq", "wake")

    def __init__(self) -> None:
        self.seq = 0
        self.orphan = False  # its caller left; the next reader discards its response
        self.wake: _Wake | None = None


class _Entry:
    """One connection of the pool and who uses it."""

    __slots__ = ("assigned", "conn", "cut", "cut_free", "exclusive", "host", "idle_since",
                 "inflight", "lent", "orphans", "proven", "reading", "readq", "send_waiters",
                 "sender", "seq", "served")

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
        # Pipelining: the send token, the read order, and where it was cut off.
        self.sender: _Ticket | None = None
        self.send_waiters: deque[_Ticket] = deque()
        self.readq: deque[_Ticket] = deque()
        self.reading = False
        self.orphans = 0
        self.seq = 0
        #: requests from this number on get no response here (None: no cut)
        self.cut: int | None = None
        #: ... and the server certainly did not process them (it announced its close)
        self.cut_free = False


class _Waiter:
    """A caller waiting for a connection."""

    __slots__ = ("grant", "host", "queued", "shared", "wake")

    def __init__(self, host: _Host, shared: bool, wake: _Wake) -> None:
        self.host = host
        self.shared = shared
        self.wake = wake
        self.grant: _Entry | None = None
        self.queued = True


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


# Where a pipelined request stands, for the clean-up after an exception.
_WAIT_SEND: Final = 0  # waiting for the send token
_SENDING: Final = 1  # holding it
_WAIT_READ: Final = 2  # sent; waiting for its turn to read
_DETACHED: Final = 3  # out of the read order, not reading
_DISCARDING: Final = 4  # reading the responses of orphans ahead of it
_HEAD: Final = 5  # reading its response head
_BODY: Final = 6  # reading its response body


class _Req(NamedTuple):
    method: str
    url: str
    split: _Target
    headers: Mapping[str, str] | None
    body: _Body | None
    shared: bool  # may be pipelined
    repeatable: bool  # may be sent again: idempotent method, body of bytes


def _lost_or_raise(exc: BaseException, in_body: bool) -> BaseException:
    """*exc* raised while a response was read: a `_Lost` if the request may go out again."""
    if not isinstance(exc, ConnectionClosed) or exc.response_started or in_body:
        return exc
    return _Lost(exc, sent=exc.request_sent)


def _make_response(resp: HTTPResponse, body: bytes, url: str) -> PoolResponse:
    out = PoolResponse(resp.method, resp.path, resp.status, resp.reason, resp.headers,
                       resp.length)
    if resp.length is None:  # chunked (or until the close): there may be trailers
        out.trailers = resp.trailers
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
    condition, a ``co_`` generator by yielding `PollNeeded` for the reading end
    of a pipe of its own, which the pool makes readable when it hands it a
    connection (the pipe is made on the call's first wait and closed when the
    call ends, however it ends). A connection counts against the limits from
    the moment it is granted; an idle connection of another origin is closed
    to make room. Nothing grows with the number of requests served.

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

    def __init__(self, max_connections: int = 10, *, max_per_host: int | None = None,
                 pipeline: int = 1, idle_timeout: float | None = 60.0,
                 ssl_context: Any = None, proxy: str | None = None, trust_env: bool = False,
                 timeout: float | None = None, retries: int = 1) -> None:
        self.max_connections = _count("max_connections", max_connections, 1)
        self.max_per_host = (self.max_connections if max_per_host is None
                             else _count("max_per_host", max_per_host, 1))
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
        self._hosts: dict[tuple[str, str, int], _Host] = {}
        self._total = 0
        #: idle connections of every origin, the longest idle first
        self._idle: dict[_Entry, None] = {}
        self._waiters: deque[_Waiter] = deque()
        self._lent: dict[HTTPConnection, _Entry] = {}
        #: connections to close once the lock is released
        self._closing: list[HTTPConnection] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._total} connections"
        return f"<ConnectionPool {state}, max {self.max_connections}>"

    # -- requests -----------------------------------------------------------------------

    def _request_args(self, method: str, url: str, headers: Mapping[str, str] | None,
                      body: _Body | None) -> _Req:
        if not isinstance(method, str):
            raise TypeError(f"method must be str, not {type(method).__name__}")
        if body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"body must be bytes-like or None, not {type(body).__name__} "
                            "(stream a body through connection())")
        split = _split_url(url)
        if split.scheme == "https" and self._ssl_context is None:
            self._default_context()
        bodiless = body is None or not (body.nbytes if isinstance(body, memoryview)
                                        else len(body))
        shared = self.pipeline > 1 and bodiless and method in _PIPELINED
        if shared and headers:
            for name, value in headers.items():
                if isinstance(name, str) and name.lower() == "connection" and \
                        isinstance(value, str) and "close" in value.lower():
                    shared = False  # nothing may follow it on the connection
        return _Req(method, url, split, headers, body, shared, method in _IDEMPOTENT)

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                body: _Body | None = None) -> PoolResponse:
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
        req = self._request_args(method, url, headers, body)
        retries = self.retries
        free = _FREE_RETRIES
        while True:
            ent = self._acquire(req.split, req.shared)
            try:
                if req.shared:
                    return self._exchange_shared(ent, req)
                return self._exchange_alone(ent, req)
            except _Lost as lost:
                if lost.free or not lost.sent:
                    if free:
                        free -= 1
                        continue
                elif req.repeatable and retries:
                    retries -= 1
                    continue
                error = lost.exc
            raise error

    def co_request(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                   body: _Body | None = None) -> Co[PoolResponse]:
        """Generator twin of `request`: yields `PollNeeded` instead of blocking.

        It waits for a free connection, and for its turn on a pipelined
        connection, on a pipe of its own. It ignores `timeout`: the driver
        decides how long to wait. The `PoolResponse` is its return value.
        """
        req = self._request_args(method, url, headers, body)
        retries = self.retries
        free = _FREE_RETRIES
        caller = _Caller()
        try:
            while True:
                ent = yield from self._co_acquire(req.split, req.shared, caller)
                try:
                    if req.shared:
                        return (yield from self._co_exchange_shared(ent, req, caller))
                    return (yield from self._co_exchange_alone(ent, req))
                except _Lost as lost:
                    if lost.free or not lost.sent:
                        if free:
                            free -= 1
                            continue
                    elif req.repeatable and retries:
                        retries -= 1
                        continue
                    error = lost.exc
                raise error
        finally:
            if caller.wake is not None:
                with self._lock:
                    caller.wake.close()

    # -- one request on a connection of its own

    def _exchange_alone(self, ent: _Entry, req: _Req) -> PoolResponse:
        conn = ent.conn
        conn.timeout = self.timeout
        in_body = False
        try:
            try:
                conn.send_request(req.method, req.split.target, req.headers, req.body)
            except ConnectionClosed as exc:
                if not conn.responses_outstanding:
                    raise _Lost(exc, sent=False) from None
            resp = conn.read_response()
            in_body = True
            data = conn.readall()
        except BaseException as exc:
            self._done_alone(ent)
            out = _lost_or_raise(exc, in_body)
            if out is exc:
                raise
            raise out from None
        self._done_alone(ent, served=True)
        return _make_response(resp, data, req.url)

    def _co_exchange_alone(self, ent: _Entry, req: _Req) -> Co[PoolResponse]:
        conn = ent.conn
        in_body = False
        try:
            try:
                yield from conn.co_send_request(req.method, req.split.target, req.headers,
                                                req.body)
            except ConnectionClosed as exc:
                if not conn.responses_outstanding:
                    raise _Lost(exc, sent=False) from None
            resp = yield from conn.co_read_response()
            in_body = True
            data = yield from conn.co_readall()
        except BaseException as exc:
            self._done_alone(ent)
            out = _lost_or_raise(exc, in_body)
            if out is exc:
                raise
            raise out from None
        self._done_alone(ent, served=True)
        return _make_response(resp, data, req.url)

    def _done_alone(self, ent: _Entry, served: bool = False) -> None:
        with self._lock:
            if served:
                ent.served += 1
                if ent.conn.is_connected:
                    ent.proven = True
                else:
                    self._learn_cap(ent)
            self._release_locked(ent)
            closing = self._take_closing()
        _close_all(closing)

    def _learn_cap(self, ent: _Entry) -> None:
        """The server closed *ent* after a response: remember how many it served."""
        if ent.proven:  # it had kept the connection before: a per-connection limit
            ent.host.cap = ent.served

    # -- pipelined requests on a shared connection

    def _exchange_shared(self, ent: _Entry, req: _Req) -> PoolResponse:
        conn = ent.conn
        conn.timeout = self.timeout
        t = _Ticket()
        lock = self._lock
        stage = _WAIT_SEND
        try:
            with lock:
                if not self._send_turn(ent, t):
                    t.wake = _Wake(lock)
                    while ent.sender is not t:
                        t.wake.cond.wait()  # type: ignore[union-attr]
                stage = _SENDING
                self._may_send(ent, t)
            try:
                conn.send_request(req.method, req.split.target, req.headers, req.body)
            except ConnectionClosed:
                sent_ok = False
            else:
                sent_ok = True
            with lock:
                self._sent(ent, t, sent_ok)
                stage = _WAIT_READ
                while not self._read_turn(ent, t):
                    if t.wake is None:
                        t.wake = _Wake(lock)
                    t.wake.cond.wait()  # type: ignore[union-attr]
                stage = _DETACHED
                orphans = self._take_read_turn(ent, t)
                stage = _DISCARDING
            while orphans:
                conn.read_response()
                conn.discard()
                orphans -= 1
            stage = _HEAD
            resp = conn.read_response()
            stage = _BODY
            data = conn.readall()
        except BaseException as exc:
            out = self._shared_failed(ent, t, stage, exc, req)
            if out is exc:
                raise
            raise out from None
        self._shared_done(ent, t)
        return _make_response(resp, data, req.url)

    def _co_exchange_shared(self, ent: _Entry, req: _Req,
                            caller: _Caller) -> Co[PoolResponse]:
        conn = ent.conn
        t = _Ticket()
        lock = self._lock
        stage = _WAIT_SEND
        try:
            with lock:
                if not self._send_turn(ent, t):
                    t.wake = caller.get()
            if t.wake is not None:
                yield from self._co_wait(t.wake, lambda: ent.sender is t)
            with lock:
                stage = _SENDING
                self._may_send(ent, t)
            try:
                yield from conn.co_send_request(req.method, req.split.target, req.headers,
                                                req.body)
            except ConnectionClosed:
                sent_ok = False
            else:
                sent_ok = True
            with lock:
                self._sent(ent, t, sent_ok)
                stage = _WAIT_READ
                wake = None
                if not self._read_turn(ent, t):
                    wake = t.wake = caller.get()
            if wake is not None:
                yield from self._co_wait(wake, lambda: self._read_turn(ent, t))
            with lock:
                stage = _DETACHED
                orphans = self._take_read_turn(ent, t)
                stage = _DISCARDING
            while orphans:
                yield from conn.co_read_response()
                yield from conn.co_discard()
                orphans -= 1
            stage = _HEAD
            resp = yield from conn.co_read_response()
            stage = _BODY
            data = yield from conn.co_readall()
        except BaseException as exc:
            out = self._shared_failed(ent, t, stage, exc, req)
            if out is exc:
                raise
            raise out from None
        self._shared_done(ent, t)
        return _make_response(resp, data, req.url)

    def _send_turn(self, ent: _Entry, t: _Ticket) -> bool:
        """Under the lock: take the send token of *ent*, or queue for it (False)."""
        if ent.sender is None:
            ent.sender = t
            return True
        ent.send_waiters.append(t)
        return False

    def _pass_send_turn(self, ent: _Entry) -> None:
        """Under the lock: hand the send token to the next caller in line."""
        if ent.send_waiters:
            t = ent.send_waiters.popleft()
            ent.sender = t
            assert t.wake is not None
            t.wake.notify()
        else:
            ent.sender = None

    def _may_send(self, ent: _Entry, t: _Ticket) -> None:
        """Under the lock, holding the send token: join the read order, or find that
        the connection was cut off (then `_Lost`: nothing was sent)."""
        t.seq = ent.seq
        ent.seq += 1
        if ent.cut is not None:
            raise _Lost(ConnectionClosed(
                "The connection closed before the request could be sent on it"), sent=False)
        ent.readq.append(t)

    def _sent(self, ent: _Entry, t: _Ticket, ok: bool) -> None:
        """Under the lock: the request of *t* went out (or its connection broke)."""
        self._pass_send_turn(ent)
        if not ok:
            self._cut(ent, t.seq, False)

    def _read_turn(self, ent: _Entry, t: _Ticket) -> bool:
        """Under the lock: True if *t* may read its response now (after discarding the
        responses of the orphans before it)."""
        if ent.reading:
            return False
        for other in ent.readq:
            if other is t:
                return True
            if not other.orphan:
                return False
        raise AssertionError("ticket not in the read order")  # pragma: no cover

    def _take_read_turn(self, ent: _Entry, t: _Ticket) -> int:
        """Under the lock: start reading for *t*; the number of orphans' responses to
        discard first. `_Lost` if the connection was cut off before *t*."""
        readq = ent.readq
        orphans = 0
        while readq[0] is not t:
            readq.popleft()
            orphans += 1
        readq.popleft()
        ent.orphans -= orphans
        t.wake = None
        if ent.cut is not None and t.seq >= ent.cut:
            self._wake_reader(ent)
            raise _Lost(ConnectionClosed(
                "No response: the connection closed before this request's turn"),
                free=ent.cut_free)
        ent.reading = True
        return orphans

    def _wake_reader(self, ent: _Entry) -> None:
        """Under the lock: wake the first caller in the read order that is waiting."""
        if ent.reading:
            return
        for other in ent.readq:
            if not other.orphan:
                if other.wake is not None:
                    other.wake.notify()
                return

    def _cut(self, ent: _Entry, seq: int, free: bool) -> None:
        """Under the lock: requests *seq* and later get no response on *ent*."""
        if ent.cut is None or seq < ent.cut:
            ent.cut = seq
            ent.cut_free = free

    def _shared_done(self, ent: _Entry, t: _Ticket) -> None:
        """The pipelined request of *t* has its whole response."""
        with self._lock:
            ent.reading = False
            ent.served += 1
            if ent.conn.is_connected:
                if not ent.proven:
                    ent.proven = True
                    self._dispatch()
            else:  # the server closes after this response: nothing behind it is processed
                self._learn_cap(ent)
                self._cut(ent, t.seq + 1, True)
            self._wake_reader(ent)
            self._release_locked(ent)
            closing = self._take_closing()
        _close_all(closing)

    def _shared_failed(self, ent: _Entry, t: _Ticket, stage: int, exc: BaseException,
                       req: _Req) -> BaseException:
        """A pipelined request left its connection at *stage* because of *exc*; what to
        raise: *exc*, or a `_Lost` if the request may go out again."""
        with self._lock:
            if stage == _WAIT_SEND:
                if ent.sender is t:
                    self._pass_send_turn(ent)
                else:
                    ent.send_waiters.remove(t)
            elif stage == _SENDING:  # sending, or found the connection cut off
                if ent.sender is t:
                    self._pass_send_turn(ent)
                if ent.readq and ent.readq[-1] is t:
                    ent.readq.pop()
                    if not isinstance(exc, (ValueError, TypeError)):
                        self._cut(ent, t.seq, False)  # it may be half sent
            elif stage == _WAIT_READ:  # leave its response to the next reader
                t.orphan = True
                ent.orphans += 1
            elif stage != _DETACHED:  # reading: where the byte stream stands is unknown
                ent.reading = False
                self._cut(ent, t.seq if stage == _DISCARDING else t.seq + 1, False)
            t.wake = None
            self._wake_reader(ent)
            self._release_locked(ent)
            closing = self._take_closing()
        _close_all(closing)
        if stage >= _HEAD:
            return _lost_or_raise(exc, stage == _BODY)
        if stage == _DISCARDING and isinstance(exc, Exception):
            # An earlier response could not be read: this one never started.
            return _Lost(ConnectionClosed(
                f"No response to {req.method} {req.split.target}: {exc}"))
        return exc

    # -- waiting --------------------------------------------------------------------------

    def _co_wait(self, wake: _Wake, ready: Callable[[], bool]) -> Co[None]:
        """Wait on *wake*'s descriptor until *ready()* (checked under the lock)."""
        want = PollNeeded(wake.fd, POLLIN)
        while True:
            yield want
            with self._lock:
                if ready():
                    return
                wake.clear()

    def _host(self, split: _Target) -> _Host:
        """Under the lock: the state of the origin of *split*, made on first use."""
        key = (split.scheme, split.host, split.port)
        host = self._hosts.get(key)
        if host is None:
            proxy: tuple[tuple[str, int], dict[str, str] | None] | None = \
                self._proxies.get(split.scheme)
            if proxy is not None and self._no_proxy and \
                    _bypass(self._no_proxy, split.host, split.port):
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

    def _start_wait(self, split: _Target, shared: bool,
                    caller: _Caller | None) -> tuple[_Entry | None, _Waiter | None]:
        """Under the lock: a connection for a request, or a queued waiter (woken through
        *caller*'s pipe, or a condition if None)."""
        if self._closed:
            raise StateError("The connection pool is closed")
        host = self._host(split)
        # First come, first served per origin: nothing overtakes a waiter (a request
        # that needs an idle connection is not starved by pipelined ones).
        ent = None if host.waiting else self._grant(host, shared)
        if ent is not None:
            return ent, None
        waiter = _Waiter(host, shared, _Wake(self._lock) if caller is None else caller.get())
        self._waiters.append(waiter)
        host.waiting += 1
        return None, waiter

    def _end_wait(self, waiter: _Waiter, keep: bool) -> _Entry | None:
        """Under the lock: the wait of *waiter* is over; its connection if *keep*, else
        the connection it was granted (if any) goes back."""
        if waiter.queued:
            waiter.queued = False
            self._waiters.remove(waiter)
            waiter.host.waiting -= 1
        ent = waiter.grant
        if ent is None:
            self._forget_host(waiter.host)
            if keep:
                raise StateError("The connection pool is closed")
            return None
        if not keep:
            waiter.grant = None
            self._release_locked(ent)
        return ent

    def _acquire(self, split: _Target, shared: bool) -> _Entry:
        """A connection for one request (blocking, at most `timeout` seconds)."""
        lock = self._lock
        with lock:
            ent, waiter = self._start_wait(split, shared, None)
            if waiter is not None:
                keep = False
                try:
                    cond = waiter.wake.cond
                    assert cond is not None
                    timeout = self.timeout
                    deadline = None if timeout is None else time.monotonic() + timeout
                    while waiter.grant is None and not self._closed:
                        if deadline is None:
                            cond.wait()
                        else:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                raise ConnectionTimedOut(
                                    f"No connection to {_origin_text(split)} became free "
                                    f"within {timeout} seconds")
                            cond.wait(left)
                    keep = True
                finally:
                    ent = self._end_wait(waiter, keep)
            closing = self._take_closing()
        _close_all(closing)
        assert ent is not None
        return ent

    def _co_acquire(self, split: _Target, shared: bool, caller: _Caller) -> Co[_Entry]:
        """Generator twin of `_acquire`: waits on *caller*'s pipe."""
        with self._lock:
            ent, waiter = self._start_wait(split, shared, caller)
            closing = self._take_closing()
        _close_all(closing)
        if waiter is None:
            assert ent is not None
            return ent
        keep = False
        try:
            yield from self._co_wait(waiter.wake,
                                     lambda: waiter.grant is not None or self._closed)
            keep = True
        finally:
            with self._lock:
                ent = self._end_wait(waiter, keep)
                closing = self._take_closing()
            _close_all(closing)
        assert ent is not None
        return ent

    # -- granting and returning connections (all under the lock) ----------------------------

    def _grant(self, host: _Host, shared: bool, evict: bool = True) -> _Entry | None:
        """A connection to *host* for one caller, or None if it has to wait.

        With *evict*, an idle connection of another origin may be closed to make room.
        """
        if self._idle and self.idle_timeout is not None:
            self._expire(time.monotonic() - self.idle_timeout)
        idle = host.idle
        if idle:
            ent = idle.pop()
            del self._idle[ent]
            return self._use(ent, shared)
        if self._total < self.max_connections and len(host.entries) < self.max_per_host:
            return self._use(self._new_entry(host), shared)
        if shared:
            best = None
            limit = self.pipeline
            cap = host.cap
            for ent in host.entries:
                load = ent.inflight + ent.orphans
                if ent.proven and not ent.exclusive and ent.cut is None and 0 < load < limit \
                        and (cap is None or ent.assigned < cap) \
                        and (best is None or load < best.inflight + best.orphans):
                    best = ent
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
        self._closing.append(ent.conn)
        self._forget_host(host)

    def _forget_host(self, host: _Host) -> None:
        if not host.entries and not host.waiting and self._hosts.get(host.key) is host:
            del self._hosts[host.key]

    def _release_locked(self, ent: _Entry) -> None:
        """One caller is done with *ent*: keep it if nobody else uses it and it can carry
        another request, else close it; then serve the waiters."""
        ent.inflight -= 1
        if ent.inflight:
            if self._waiters:
                self._dispatch()
            return
        conn = ent.conn
        ent.exclusive = ent.lent = False
        if self._closed or ent.cut is not None or ent.orphans or self.idle_timeout == 0 \
                or not (conn.is_connected and conn.is_idle):
            self._drop(ent)
        else:
            ent.idle_since = time.monotonic()
            ent.host.idle.append(ent)
            self._idle[ent] = None
        if self._waiters:
            self._dispatch()

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
            keep: deque[_Waiter] = deque()
            for waiter in self._waiters:
                host = waiter.host
                ent = None if host in stuck else self._grant(host, waiter.shared, evict)
                if ent is None:
                    stuck.add(host)
                    keep.append(waiter)
                    continue
                waiter.grant = ent
                waiter.queued = False
                host.waiting -= 1
                waiter.wake.notify()
            self._waiters = keep
            if not keep or not self._idle:
                return

    def _take_closing(self) -> list[HTTPConnection]:
        closing = self._closing
        if closing:
            self._closing = []
        return closing

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
        conn = self._lend(self._acquire(self._origin_of(url), False))
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
        caller = _Caller()
        try:
            ent = yield from self._co_acquire(self._origin_of(url), False, caller)
        finally:
            if caller.wake is not None:
                with self._lock:
                    caller.wake.close()
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

    def _origin_of(self, url: str) -> _Target:
        split = _split_url(url)
        if split.scheme == "https" and self._ssl_context is None:
            self._default_context()
        return split

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
        _close_all(closing)

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
                waiter.queued = False
                waiter.host.waiting -= 1
                waiter.wake.notify()
            closing = self._take_closing()
        _close_all(closing)

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
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


def _close_all(conns: list[HTTPConnection]) -> None:
    for conn in conns:
        conn.disconnect()


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
        raise TypeError(f"{name} must be a number of seconds or None, "
                        f"not {type(value).__name__}")
    if not value >= 0:
        raise ValueError(f"{name} must not be negative: {value}")
    return float(value)


for _cls in (ConnectionPool, PoolResponse):
    _cls.__module__ = "dugong"
