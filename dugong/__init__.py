"""dugong: an HTTP/1.1 client with pipelining, 100-continue and exact errors.

Every `HTTPConnection` method that may wait for the network has a ``co_``
generator twin that yields `PollNeeded` instead of blocking, so that any event
loop can drive it.
"""

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
    StateError,
    UnsupportedResponse,
    is_temp_network_error,
)
from ._headers import CaseInsensitiveDict
from ._poll import POLLIN, POLLOUT, PollNeeded, eval_coroutine
from ._protocol import (
    BUFFER_SIZE,
    MAX_HEADER_FIELDS,
    MAX_HEADER_SIZE,
    MAX_INTERIM_SIZE,
    MAX_LINE_SIZE,
)

__version__ = "4.0.0.dev0"

__all__ = [
    "BUFFER_SIZE",
    "DNS_TEST_HOSTNAMES",
    "MAX_HEADER_FIELDS",
    "MAX_HEADER_SIZE",
    "MAX_INTERIM_SIZE",
    "MAX_LINE_SIZE",
    "POLLIN",
    "POLLOUT",
    "BodyFollowing",
    "CaseInsensitiveDict",
    "ConnectionClosed",
    "ConnectionTimedOut",
    "DNSUnavailable",
    "DugongError",
    "ExcessBodyData",
    "HTTPConnection",
    "HTTPResponse",
    "HostnameNotResolvable",
    "InvalidResponse",
    "PollNeeded",
    "StateError",
    "UnsupportedResponse",
    "__version__",
    "create_socket",
    "eval_coroutine",
    "is_temp_network_error",
]
