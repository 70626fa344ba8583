"""Assertions shared by several test modules."""

from __future__ import annotations

from typing import Any

import pytest

from dugong import ConnectionClosed, HTTPConnection

#: Names the public contract promises at the top level of ``dugong`` (dugong 3.x's and
#: the drivers'); test_api.py checks that they exist, test_docs.py that they are
#: documented.
CONTRACT_NAMES = frozenset(
    {
        "HTTPConnection",
        "HTTPResponse",
        "BodyFollowing",
        "CaseInsensitiveDict",
        "PollNeeded",
        "POLLIN",
        "POLLOUT",
        "AioFuture",
        "eval_coroutine",
        "run_async",
        "is_temp_network_error",
        "create_socket",
        "BUFFER_SIZE",
        "MAX_LINE_SIZE",
        "MAX_HEADER_SIZE",
        "DNS_TEST_HOSTNAMES",
        "__version__",
        "ConnectionClosed",
        "ConnectionTimedOut",
        "InvalidResponse",
        "UnsupportedResponse",
        "StateError",
        "ExcessBodyData",
        "HostnameNotResolvable",
        "DNSUnavailable",
    }
)


def assert_not_sent(
    drive: Any, conn: HTTPConnection, method: str, path: str, **kwargs: Any
) -> None:
    """Check dugong 3.x's behaviour on a connection the server has closed:
    ``send_request`` sends nothing and does not raise, and the next ``read_response``
    raises `ConnectionClosed` saying the request was not sent.

    *drive* is the ``drive`` fixture, or None for the blocking methods.
    """

    def call(name: str, *args: Any, **kw: Any) -> Any:
        return (
            getattr(conn, name)(*args, **kw) if drive is None else drive(conn, name, *args, **kw)
        )

    call("send_request", method, path, **kwargs)
    with pytest.raises(ConnectionClosed, match="was not sent") as info:
        call("read_response")
    assert info.value.request_sent is False
    assert info.value.response_started is False


def write_times(drive: Any, conn: HTTPConnection, piece: bytes, count: int) -> None:
    """Write *piece* *count* times (*drive*: the ``drive`` fixture, or None for the
    blocking method); for a ``pytest.raises`` block around writes that must fail."""
    for _ in range(count):
        if drive is None:
            conn.write(piece)
        else:
            drive(conn, "write", piece)
