"""dugong: an HTTP/1.1 client with pipelining, 100-continue and exact errors.

Every `HTTPConnection` method that may wait for the network has a ``co_``
generator twin that yields `PollNeeded` instead of blocking, so that any event
loop can drive it.
"""

from typing import TYPE_CHECKING, Any

from ._anyio import run_async
from ._connect import DNS_TEST_HOSTNAMES, create_socket
from ._connection import BodyFollowing, HTTPConnection, HTTPResponse
from ._exceptions import (
    ConnectionClosed,
    ConnectionTimedOut,
    DNSUnavailable,
    DugongError,
    ExcessBodyData,
    HostnameNotResolvable,
    InvalidResponse,
    ProxyError,
    StateError,
    UnsupportedResponse,
    is_temp_network_error,
)
from ._headers import CaseInsensitiveDict
from ._loop import eval_coroutines
from ._poll import POLLIN, POLLOUT, PollNeeded, eval_coroutine
from ._protocol import (
    BUFFER_SIZE,
    MAX_HEADER_FIELDS,
    MAX_HEADER_SIZE,
    MAX_INTERIM_SIZE,
    MAX_LINE_SIZE,
)

if TYPE_CHECKING:
    from ._aio import AioFuture
    from ._pool import ConnectionPool, PoolResponse

__version__ = "4.0.0.dev0"


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `import dugong` pays for neither: AioFuture (it
    # imports asyncio) and the pool (a tenth of the package's import time).
    value: Any
    if name == "AioFuture":
        from . import _aio

        value = _aio.AioFuture
    elif name in ("ConnectionPool", "PoolResponse"):
        from . import _pool

        value = getattr(_pool, name)
    else:
        raise AttributeError(f"module 'dugong' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "BUFFER_SIZE",
    "DNS_TEST_HOSTNAMES",
    "MAX_HEADER_FIELDS",
    "MAX_HEADER_SIZE",
    "MAX_INTERIM_SIZE",
    "MAX_LINE_SIZE",
    "POLLIN",
    "POLLOUT",
    "AioFuture",
    "BodyFollowing",
    "CaseInsensitiveDict",
    "ConnectionClosed",
    "ConnectionPool",
    "ConnectionTimedOut",
    "DNSUnavailable",
    "DugongError",
    "ExcessBodyData",
    "HTTPConnection",
    "HTTPResponse",
    "HostnameNotResolvable",
    "InvalidResponse",
    "PollNeeded",
    "PoolResponse",
    "ProxyError",
    "StateError",
    "UnsupportedResponse",
    "__version__",
    "create_socket",
    "eval_coroutine",
    "eval_coroutines",
    "is_temp_network_error",
    "run_async",
]
