"""Every public exception of dugong, and the retry classifier."""

from __future__ import annotations

import errno
import sys
from typing import Any

__all__ = [
    "ConnectionClosed",
    "ConnectionTimedOut",
    "DNSUnavailable",
    "DugongError",
    "ExcessBodyData",
    "HostnameNotResolvable",
    "InvalidResponse",
    "ProxyError",
    "StateError",
    "UnsupportedResponse",
    "is_temp_network_error",
]


class DugongError(Exception):
    """Base class of every exception that dugong raises itself."""

    def __init__(self, msg: str | None = None) -> None:
        super().__init__(msg if msg is not None else self.__doc__)
        self.msg = self.args[0]

    def __str__(self) -> str:
        return str(self.msg)


class ConnectionClosed(DugongError):
    """The connection was closed while it was still needed.

    Attributes:
        request_sent (bool): False when the request this reports never went
            out (it was sent on a connection the server had already closed),
            so sending it again cannot repeat anything.
        response_started (bool): True when part of the response to that
            request had arrived before the close.
    """

    #: False when the request never went out
    request_sent: bool = True
    #: True when part of the response had arrived
    response_started: bool = False


class ConnectionTimedOut(DugongError):
    """No data could be sent or received for the configured time."""


class InvalidResponse(DugongError):
    """The server sent something that is not valid HTTP/1.x."""


class UnsupportedResponse(DugongError):
    """The response is valid HTTP but uses something dugong does not support."""


class StateError(DugongError):
    """The method cannot be called in the connection's current state."""


class ExcessBodyData(DugongError):
    """More request body data than announced was passed to write()."""


class ProxyError(DugongError, ConnectionError):
    """The proxy refused the ``CONNECT`` tunnel (its answer was not 200).

    Also a `ConnectionError`, which dugong 3.x raised here, so that both
    ``except DugongError`` and 3.x's ``except ConnectionError`` catch it.

    Attributes:
        status (int | None): the proxy's status code, e.g. 407.
        reason (str | None): its reason phrase.
    """

    def __init__(
        self, msg: str | None = None, status: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.reason = reason


class HostnameNotResolvable(DugongError):
    """The host name does not exist (the DNS server answered)."""

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname
        super().__init__(f"Host name {hostname!r} could not be resolved" if hostname else None)


class DNSUnavailable(DugongError):
    """No DNS server could be reached."""

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname
        super().__init__(
            f"Could not resolve {hostname!r}: no DNS server reachable" if hostname else None
        )


for _cls in (
    DugongError,
    ConnectionClosed,
    ConnectionTimedOut,
    InvalidResponse,
    UnsupportedResponse,
    StateError,
    ExcessBodyData,
    ProxyError,
    HostnameNotResolvable,
    DNSUnavailable,
):
    _cls.__module__ = "dugong"

#: errno values of an OSError that make a retry worthwhile.
_TEMP_ERRNOS: frozenset[int] = frozenset(
    getattr(errno, name)
    for name in (
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "ECONNRESET",
        "ECONNABORTED",
        "ECONNREFUSED",
        "EPIPE",
        "ENOTCONN",
        "ETIMEDOUT",
        "EAGAIN",
        "EWOULDBLOCK",
        "EINTR",
    )
    if hasattr(errno, name)
)


def is_temp_network_error(exc: BaseException) -> bool:
    """Tell whether *exc* is a network problem that may go away on a retry.

    True for dugong's `ConnectionClosed`, `ConnectionTimedOut` and
    `DNSUnavailable`, for `TimeoutError`, `ConnectionError` and its subclasses,
    `InterruptedError`, TLS errors that mean the peer went away (EOF,
    zero-return, syscall errors), and `OSError`\\ s whose errno says that the
    host or network is down or unreachable, or that the connection was reset,
    refused, broken, not connected or timed out, or that the call should be
    tried again.  Anything else (including `HostnameNotResolvable` and
    `InvalidResponse`) is False.

    Args:
        exc: the exception that was caught.

    Returns:
        bool: True if the operation may succeed when simply tried again (after
        `HTTPConnection.reset`); False if a retry would fail the same way.
    """
    if isinstance(exc, (ConnectionClosed, ConnectionTimedOut, DNSUnavailable)):
        return True
    if isinstance(exc, (TimeoutError, ConnectionError, InterruptedError)):
        return True
    if isinstance(exc, OSError):
        ssl_mod = _ssl_if_loaded()
        if ssl_mod is not None and isinstance(exc, ssl_mod.SSLError):
            return isinstance(
                exc, (ssl_mod.SSLEOFError, ssl_mod.SSLZeroReturnError, ssl_mod.SSLSyscallError)
            )
        return exc.errno in _TEMP_ERRNOS
    return False


def _ssl_if_loaded() -> Any:
    """The ssl module if something imported it already (an SSLError implies that)."""
    return sys.modules.get("ssl")
