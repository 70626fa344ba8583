"""Opening connections: name resolution off the loop, non-blocking connect, TLS, tunnels.

Also `create_socket`, the blocking helper, and the DNS error classification
that tells a missing name (`HostnameNotResolvable`) from an unreachable
resolver (`DNSUnavailable`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ._buffer import RecvBuffer
from ._exceptions import (
    ConnectionClosed,
    DNSUnavailable,
    HostnameNotResolvable,
    InvalidResponse,
    ProxyError,
)
from ._log import debug
from ._poll import POLLIN, POLLOUT, Co, PollNeeded
from ._protocol import find_head_end, format_host, parse_head
from ._transport import PlainTransport, make_transport
from ._tunables import PACKAGE

__all__ = ["DNS_TEST_HOSTNAMES", "Opening", "co_open", "co_resolve", "create_socket", "resolve"]


#: Host names that should always resolve; used to tell a missing name from DNS trouble.
DNS_TEST_HOSTNAMES: Sequence[tuple[str, int]] = (
    ("www.iana.org", 80),
    ("www.python.org", 443),
    ("one.one.one.one", 53),
)

_SockAddr = tuple[str, int] | tuple[str, int, int, int]
_AddrInfo = tuple[int, int, int, str, _SockAddr]
_NO_SUCH_NAME = frozenset(
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
)


def resolve(host: str, port: int) -> list[_AddrInfo]:
    """Resolve *host* (blocking), raising dugong's DNS exceptions on failure.

    "No such name" (``EAI_NONAME``, ``EAI_NODATA``) becomes
    `HostnameNotResolvable` if at least one of ``dugong.DNS_TEST_HOSTNAMES``
    resolves, else `DNSUnavailable`; "try again" (``EAI_AGAIN``) is
    `DNSUnavailable` at once. Other resolver errors (e.g. ``EAI_FAIL``, or an
    invalid port) propagate as the `socket.gaierror` they are.
    """
    try:
        infos: list[Any] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # _AddrInfo
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_NAME:
            for test_host, test_port in PACKAGE.DNS_TEST_HOSTNAMES:
                try:
                    socket.getaddrinfo(test_host, test_port, type=socket.SOCK_STREAM)
                except OSError:
                    continue
                raise HostnameNotResolvable(host) from exc
            raise DNSUnavailable(host) from exc
        if exc.errno == socket.EAI_AGAIN:
            raise DNSUnavailable(host) from exc
        raise
    return infos


def _literal(host: str, port: int) -> list[_AddrInfo] | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        addr = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr)]
    return None


def co_resolve(host: str, port: int) -> Co[list[_AddrInfo]]:
    """Resolve *host* like `resolve`, without blocking the caller.

    IP address literals need no resolver. Names are resolved in a helper
    thread, which signals its completion through a pipe that the generator
    waits on (`POLLIN`). Closing the generator early abandons the thread,
    which then ends by itself.
    """
    literal = _literal(host, port)
    if literal is not None:
        return literal
    import threading

    result: list[list[_AddrInfo] | BaseException] = []
    rfd, wfd = os.pipe()

    def work() -> None:
        try:
            result.append(resolve(host, port))
        except BaseException as exc:  # handed over to the generator
            result.append(exc)
        finally:
            with contextlib.suppress(OSError):  # EPIPE: the generator is gone
                os.write(wfd, b"!")
            os.close(wfd)

    try:
        try:
            threading.Thread(target=work, name=f"dugong-resolve-{host}", daemon=True).start()
        except BaseException:
            os.close(wfd)
            raise
        while not result:
            yield PollNeeded(rfd, POLLIN)
    finally:
        os.close(rfd)
    outcome = result.pop()
    if isinstance(outcome, BaseException):
        try:
            raise outcome
        finally:
            del outcome
    return outcome


def _connect_error(err: int, addr: _SockAddr) -> OSError:
    return OSError(err, f"{os.strerror(err)} (connecting to {addr[0]} port {addr[1]})")


def co_tcp_connect(infos: list[_AddrInfo]) -> Co[socket.socket]:
    """Connect to the first address of *infos* that accepts, without blocking."""
    last: OSError | None = None
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                yield PollNeeded(sock.fileno(), POLLOUT)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise _connect_error(err, addr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert last is not None
    raise last


def co_tls_handshake(sock: socket.socket, context: Any, hostname: str) -> Co[Any]:
    """Wrap *sock* with *context* and complete the handshake without blocking.

    *context* is an `ssl.SSLContext`, or any object whose
    ``wrap_socket(sock, server_hostname=...)`` returns a socket-like object (as
    dugong 3.x allowed): see `_wrap_other`.
    """
    import ssl

    # SNI and the host name check use *hostname*; the context's check_hostname and
    # verify_mode apply as they are. An EOF without close_notify must raise: see
    # TLSTransport for why.
    if isinstance(context, ssl.SSLContext):
        tls = context.wrap_socket(
            sock,
            server_hostname=hostname,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,
        )
    else:
        tls, handshake_due = _wrap_other(sock, context, hostname)
        if not handshake_due:
            return tls
    fd = tls.fileno()
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                yield PollNeeded(fd, POLLIN)
            except ssl.SSLWantWriteError:
                yield PollNeeded(fd, POLLOUT)
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError) as exc:
        tls.close()
        raise ConnectionClosed(f"Connection closed during the TLS handshake: {exc}") from exc
    except ssl.SSLError:
        tls.close()
        raise
    except OSError as exc:
        tls.close()
        raise ConnectionClosed(f"Connection broken during the TLS handshake: {exc}") from exc
    except BaseException:
        tls.close()
        raise


def _wrap_other(sock: socket.socket, context: Any, hostname: str) -> tuple[Any, bool]:
    """Wrap *sock* with an object that is not an `ssl.SSLContext` but has ``wrap_socket``.

    Returns the wrapped socket (non-blocking) and whether its handshake is still
    to be done. The non-blocking handshake is used where the object takes
    ``do_handshake_on_connect=False`` and its result has ``do_handshake``;
    otherwise it is wrapped as dugong 3.x did, on a blocking socket, and nothing
    that a plain wrapper may lack is called afterwards.
    """
    try:
        tls = context.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
    except TypeError:  # it takes no such argument
        pass
    else:
        return tls, hasattr(tls, "do_handshake")
    sock.setblocking(True)
    tls = context.wrap_socket(sock, server_hostname=hostname)
    setblocking = getattr(tls, "setblocking", None)
    if setblocking is not None:
        setblocking(False)
    return tls, False


def co_tunnel(
    tr: PlainTransport, host: str, port: int, fields: Sequence[tuple[str, str]] = ()
) -> Co[None]:
    """Ask the proxy behind *tr* for a CONNECT tunnel to *host*:*port*.

    *fields* are sent with the request (e.g. ``Proxy-Authorization``).

    Any answer but 200 raises `ProxyError` (a `ConnectionError`, as dugong 3.x
    raised) naming the status; a proxy that closes first raises `ConnectionClosed`, an answer
    that is not HTTP (or too long) `InvalidResponse`.
    """
    authority = format_host(host, port, -1)
    extra = "".join(f"{name}: {value}\r\n" for name, value in fields)
    yield from tr.co_send_all(
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode("latin-1")
    )
    buf = RecvBuffer(4096)
    search = 0
    while True:
        n = tr.recv_into(buf.space())
        if n < 0:
            yield tr.want
            continue
        if n == 0:
            raise ConnectionClosed("Proxy closed the connection before answering CONNECT")
        buf.end += n
        end = find_head_end(buf.data, buf.start, buf.end, search)
        if end >= 0:
            break
        if len(buf) > 65536:
            raise InvalidResponse("Proxy answer to CONNECT is too long")
        search = max(0, buf.end - 2)
    head = parse_head(buf.data[:end].decode("latin-1"))
    if head.status != 200:
        raise ProxyError(
            f"Proxy refused CONNECT to {authority}: {head.status} {head.reason}",
            head.status,
            head.reason,
        )
    if end != buf.end:
        raise InvalidResponse("Proxy sent data after its answer to CONNECT")


def co_open(
    host: str,
    port: int,
    ssl_context: Any = None,
    proxy: tuple[str, int] | None = None,
    proxy_fields: Sequence[tuple[str, str]] = (),
    resolver: Callable[[str, int], Co[list[_AddrInfo]]] = co_resolve,
) -> Co[PlainTransport]:
    """Open a transport to *host*:*port* (through *proxy*, with TLS if *ssl_context*;
    *proxy_fields* go with the proxy's ``CONNECT``)."""
    target = proxy if proxy is not None else (host, port)
    infos = yield from resolver(*target)
    sock = yield from co_tcp_connect(infos)
    debug("connected to %s port %d", target[0], target[1])
    try:
        if proxy is not None and ssl_context is not None:
            tr = PlainTransport(sock)
            yield from co_tunnel(tr, host, port, proxy_fields)
            debug("tunnel to %s port %d through %s port %d", host, port, *proxy)
        if ssl_context is not None:
            sock = yield from co_tls_handshake(sock, ssl_context, host)
            version = getattr(sock, "version", None)
            debug("TLS established with %s (%s)", host, version() if version else "?")
        # What a context that is not an ssl.SSLContext returns may be a plain socket.
        return make_transport(sock, tls=type(sock) is not socket.socket)
    except BaseException:
        sock.close()
        raise


class Opening:
    """A connect under way that a reader may wait for: the response to a request is
    awaited while its sender is still connecting (dugong 3.x programs start a sender and
    a receiver generator together).

    The sender calls `finished` when the connect ends; a reader yields `wait` until
    `done`, then calls `close`, which raises the *failure* the sender reported, if
    any. The reader's pipe is made readable by whichever side comes second, so a
    reader in another thread never misses the end.
    """

    __slots__ = ("done", "failure", "pipe")

    def __init__(self) -> None:
        self.done = False
        self.failure: BaseException | None = None
        self.pipe: tuple[int, int] | None = None

    def wait(self) -> PollNeeded:
        """What a reader waits on until the connect has ended."""
        pipe = self.pipe
        if pipe is None:
            pipe = self.pipe = os.pipe()
            if self.done:  # it ended meanwhile (the sender is another thread)
                os.write(pipe[1], b"!")
        return PollNeeded(pipe[0], POLLIN)

    def finished(self, failure: BaseException | None) -> None:
        """The sender's connect ended (*failure*: why it failed, for a waiting reader)."""
        self.failure = failure
        self.done = True
        pipe = self.pipe
        if pipe is not None:
            with contextlib.suppress(OSError):  # the reader is gone
                os.write(pipe[1], b"!")

    def close(self) -> None:
        """Release the reader's pipe; raise the failure if a reader waited for it."""
        pipe = self.pipe
        if pipe is None:
            return
        self.pipe = None
        for fd in pipe:
            os.close(fd)
        if self.failure is not None:
            raise self.failure


def create_socket(address: tuple[str, int]) -> socket.socket:
    """Connect a (blocking) TCP socket to *address* ``(host, port)``.

    Each address the name resolves to is tried in turn, until one accepts.

    Args:
        address: the ``(host, port)`` to connect to.

    Returns:
        socket.socket: the connected socket, in blocking mode.

    Raises:
        HostnameNotResolvable: the name does not exist (the DNS server
            answered, see `DNS_TEST_HOSTNAMES`).
        DNSUnavailable: no DNS server could be reached.
        OSError: no address accepted the connection: the error of the last
            one tried, e.g. `ConnectionRefusedError`.
    """
    host, port = address
    last: OSError | None = None
    for family, type_, proto, _, addr in resolve(host, port):
        sock = socket.socket(family, type_, proto)
        try:
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    assert last is not None
    raise last
