"""dugong 3.x behaviours that 3.x programs rely on (API.md, "3.x behaviours, spelled out").

Each case runs through the blocking method and its ``co_`` twin (the ``drive``
fixture), in plain HTTP and over TLS (the ``tls`` fixture).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import pytest

import dugong
from checks import write_times
from dugong import (
    AioFuture,
    BodyFollowing,
    ConnectionClosed,
    HTTPConnection,
    InvalidResponse,
    StateError,
    UnsupportedResponse,
    eval_coroutines,
)
from servers import Step

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
CLOSING = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"


class Setup:
    """Starts scripted servers and connections to them, plain or over TLS."""

    def __init__(
        self,
        scripted_server: Any,
        server_context: ssl.SSLContext | None,
        client_context: ssl.SSLContext | None,
    ) -> None:
        self._scripted_server = scripted_server
        self.server_context = server_context
        self.client_context = client_context

    def server(self, script: Any, **kwargs: Any) -> Any:
        return self._scripted_server(script, ssl_context=self.server_context, **kwargs)

    def conn(self, server: Any) -> HTTPConnection:
        conn = HTTPConnection("127.0.0.1", server.port, ssl_context=self.client_context)
        conn.timeout = 10
        return conn


@pytest.fixture(params=["plain", "tls"])
def tls(request, scripted_server, tls_server_context, tls_client_context) -> Setup:
    if request.param == "plain":
        return Setup(scripted_server, None, None)
    return Setup(scripted_server, tls_server_context, tls_client_context)


def exchange(drive, conn, method="GET", path="/", **kwargs) -> bytes:
    drive(conn, "send_request", method, path, **kwargs)
    drive(conn, "read_response")
    return drive(conn, "readall")


# ------------------------------------------------------------------ 1. after disconnect()

AFTER_DISCONNECT = [
    ("read", (10,)),
    ("read", ()),
    ("readinto", (bytearray(10),)),
    ("readall", ()),
    ("discard", ()),
    ("read_response", ()),
    ("write", (b"x",)),
]


@pytest.mark.parametrize(("method", "args"), AFTER_DISCONNECT)
def test_closed_locally_after_disconnect(drive, tls, method, args):
    srv = tls.server([Step.read_request(), Step.send(OK_3)])
    conn = tls.conn(srv)
    assert exchange(drive, conn) == b"abc"
    conn.disconnect()
    with pytest.raises(ConnectionClosed, match="closed locally"):
        drive(conn, method, *args)
    with pytest.raises(ConnectionClosed, match="closed locally"):
        drive(conn, method, *args)  # still, until the next request
    srv2 = tls.server([Step.read_request(), Step.send(OK_3)])
    conn.port = srv2.port  # the next request connects anew (here: to another server)
    assert exchange(drive, conn) == b"abc"
    assert srv2.connections == 1
    conn.disconnect()


@pytest.mark.parametrize(("method", "args"), AFTER_DISCONNECT)
def test_closed_locally_after_with_block_and_pending_requests(drive, tls, method, args):
    both_read = threading.Event()
    srv = tls.server(
        [
            Step.read_request(),
            Step.read_request(body=False),
            Step.set_event(both_read),
            Step.drain(),
        ]
    )
    with tls.conn(srv) as conn:
        drive(conn, "send_request", "GET", "/1")
        drive(conn, "send_request", "PUT", "/2", body=BodyFollowing(5))
        assert conn.response_pending()
        assert both_read.wait(10)
    assert not conn.response_pending()
    with pytest.raises(ConnectionClosed, match="closed locally"):
        drive(conn, method, *args)


def test_new_connection_is_not_closed_locally(drive):
    conn = HTTPConnection("127.0.0.1", 9)
    with pytest.raises(StateError, match="No response is pending"):
        drive(conn, "read_response")
    with pytest.raises(StateError, match="No request body is expected"):
        drive(conn, "write", b"x")


# ------------------------------------------------------------------ 2. unfinished body


@pytest.mark.parametrize("body", [BodyFollowing(10), BodyFollowing()], ids=["length", "chunked"])
def test_read_response_with_unfinished_body_raises_at_once(drive, tls, body):
    srv = tls.server([Step.read_request(body=False), Step.read_body(), Step.send(OK_3)])
    conn = tls.conn(srv)
    conn.timeout = 5
    drive(conn, "send_request", "PUT", "/", body=body)
    drive(conn, "write", b"12345")
    started = time.monotonic()
    with pytest.raises(StateError, match="body"):
        drive(conn, "read_response")
    assert time.monotonic() - started < 1  # no wait for an answer that cannot come
    # The connection is unharmed: finish the body, then read the answer.
    drive(conn, "write", b"67890")
    if body.length is None:
        drive(conn, "write", b"")
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"abc"
    conn.disconnect()


def test_pipelined_earlier_response_readable_during_a_body(drive, tls):
    srv = tls.server([Step.read_request(), Step.send(OK_3), Step.read_request(), Step.send(OK_3)])
    conn = tls.conn(srv)
    drive(conn, "send_request", "GET", "/first")
    drive(conn, "send_request", "PUT", "/second", body=BodyFollowing(4))
    drive(conn, "write", b"12")
    resp = drive(conn, "read_response")  # the answer to /first
    assert resp.path == "/first"
    assert drive(conn, "readall") == b"abc"
    with pytest.raises(StateError):
        drive(conn, "read_response")  # /second's body is unfinished
    drive(conn, "write", b"34")
    assert drive(conn, "read_response").path == "/second"
    assert drive(conn, "readall") == b"abc"
    conn.disconnect()


def test_waiting_for_100_continue_is_not_unfinished(drive, tls):
    srv = tls.server(
        [
            Step.read_request(body=False),
            Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step.read_body(),
            Step.send(OK_3),
        ]
    )
    conn = tls.conn(srv)
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing(2), expect100=True)
    assert drive(conn, "read_response").status == 100
    drive(conn, "write", b"hi")
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"abc"
    conn.disconnect()


# ------------------------------------------------------------------ 3. server closed

UNTIL_CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the close"


@pytest.mark.parametrize("answer", [CLOSING, UNTIL_CLOSE], ids=["announced", "until-close"])
def test_request_on_a_closed_connection_is_not_sent(drive, tls, answer):
    srv = tls.server(
        [
            [Step.read_request(), Step.send(answer), Step.close()],
            [Step.read_request(), Step.send(OK_3)],
        ]
    )
    conn = tls.conn(srv)
    if answer is UNTIL_CLOSE and tls.client_context is not None:
        # The test server closes without close_notify: the body may have been cut (the
        # one deliberate difference from 3.x). The connection is closed all the same.
        with pytest.raises(ConnectionClosed, match="close_notify"):
            exchange(drive, conn)
    else:
        exchange(drive, conn)
    assert not conn.is_connected
    drive(conn, "send_request", "GET", "/lost")  # does not raise
    with pytest.raises(ConnectionClosed, match="GET /lost was not sent") as info:
        drive(conn, "read_response")
    assert info.value.request_sent is False
    assert srv.connections == 1
    assert [r.target for r in srv.requests[0]] == ["/"]
    conn.reset()
    assert exchange(drive, conn) == b"abc"  # a new connection
    assert srv.connections == 2
    conn.disconnect()


def test_pipelined_and_unsent_requests_after_a_close(drive, tls):
    srv = tls.server([Step.read_request(), Step.read_request(), Step.send(CLOSING), Step.close()])
    conn = tls.conn(srv)
    drive(conn, "send_request", "GET", "/1")
    drive(conn, "send_request", "GET", "/2")
    drive(conn, "read_response")
    drive(conn, "readall")
    drive(conn, "send_request", "GET", "/3")
    drive(conn, "send_request", "PUT", "/4", body=BodyFollowing(3))
    with pytest.raises(ConnectionClosed):
        drive(conn, "write", b"abc")  # its body is expected, but the connection is closed
    with pytest.raises(ConnectionClosed, match="No response to GET /2") as info:
        drive(conn, "read_response")
    assert info.value.request_sent is True  # it went out: never resent silently
    for path in ("/3", "/4"):
        with pytest.raises(ConnectionClosed, match=f"{path} was not sent") as info:
            drive(conn, "read_response")
        assert info.value.request_sent is False
    with pytest.raises(StateError, match="No response is pending"):
        drive(conn, "read_response")
    conn.disconnect()


# ------------------------------------------------------------------ 4. misuse first


def test_write_without_body_after_server_close_is_state_error(drive, tls):
    srv = tls.server([Step.read_request(), Step.send(CLOSING), Step.close()])
    conn = tls.conn(srv)
    exchange(drive, conn)
    with pytest.raises(StateError, match="No request body is expected"):
        drive(conn, "write", b"x")
    conn.disconnect()


def test_write_after_early_refusal_and_close_is_state_error(drive, tls):
    refusal = (
        b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbig!"
    )
    srv = tls.server([Step.read_request(body=False), Step.send(refusal), Step.reset()])
    conn = tls.conn(srv)
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing(50_000_000))
    piece = bytes(1 << 20)
    with pytest.raises(ConnectionClosed):
        write_times(drive, conn, piece, 50)
    with pytest.raises(ConnectionClosed):
        drive(conn, "write", piece)  # the body is still expected, the connection is gone
    # The answer came before the reset, and a reset does not take back what arrived.
    resp = drive(conn, "read_response")
    assert resp.status == 413
    assert drive(conn, "readall") == b"big!"
    with pytest.raises(StateError, match="No request body is expected"):
        drive(conn, "write", piece)  # answered: no body is expected any more
    conn.disconnect()


# ------------------------------------------------------------------ 5. status lines


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"ICY 200 OK", UnsupportedResponse),
        (b"HTTP/2 200", UnsupportedResponse),
        (b"RTSP/1.0 200 OK", UnsupportedResponse),
        (b"HTTP/1.1 2000 OK", InvalidResponse),
        (b"SOMETHING ELSE", InvalidResponse),
    ],
)
def test_status_line_of_another_protocol(drive, tls, line, error):
    srv = tls.server([Step.read_request(), Step.send(line + b"\r\nContent-Length: 0\r\n\r\n")])
    conn = tls.conn(srv)
    drive(conn, "send_request", "GET", "/")
    with pytest.raises(error):
        drive(conn, "read_response")
    conn.reset()


# ------------------------------------------------------------------ 6. proxy absolute form


@pytest.mark.parametrize(
    ("port", "target"), [(80, "http://origin.test/x"), (8080, "http://origin.test:8080/x")]
)
def test_proxy_absolute_form_port(drive, scripted_server, port, target):
    proxy = scripted_server([Step.read_request(), Step.send(OK_3)])
    with HTTPConnection("origin.test", port, proxy=proxy.address) as conn:
        assert exchange(drive, conn, path="/x") == b"abc"
    (request,) = proxy.requests[0]
    assert request.target == target


# ------------------------------------------------------------------ 7. duck-typed context


class ReturnsSocket:
    """A 3.x test double: "wraps" by handing the socket back (no TLS at all)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str]] = []

    def wrap_socket(self, sock, server_hostname):
        self.calls.append((sock, server_hostname))
        return sock


class PlainWrapper:
    """Wraps in an object with only what a socket-like object needs."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        if name in ("fileno", "recv", "recv_into", "send", "sendmsg", "close", "setblocking"):
            return getattr(self._sock, name)
        raise AttributeError(name)


class WrapsPlainly:
    def wrap_socket(self, sock, server_hostname):
        return PlainWrapper(sock)


class Delegating:
    """Hands the work to a real context, taking only the 3.x arguments."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def wrap_socket(self, sock, server_hostname):
        return self.context.wrap_socket(sock, server_hostname=server_hostname)


class DelegatingAll:
    """Hands the work to a real context, passing every argument on."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.kwargs: dict[str, Any] = {}

    def wrap_socket(self, sock, **kwargs):
        self.kwargs = kwargs
        return self.context.wrap_socket(sock, **kwargs)


@pytest.mark.parametrize("double", [ReturnsSocket, WrapsPlainly])
def test_context_double_returning_a_plain_socket(drive, scripted_server, double):
    srv = scripted_server([Step.read_request(), Step.send(OK_3)] * 2)
    context = double()
    with HTTPConnection("127.0.0.1", srv.port, ssl_context=context) as conn:
        assert exchange(drive, conn) == b"abc"
        assert exchange(drive, conn) == b"abc"
        assert conn.get_ssl_peercert() is None
        assert conn.get_ssl_cipher() is None
    if isinstance(context, ReturnsSocket):
        assert context.calls[0][1] == "127.0.0.1"


@pytest.mark.parametrize("double", [Delegating, DelegatingAll])
def test_context_double_doing_real_tls(drive, https_server, tls_client_context, double):
    context = double(tls_client_context)
    with HTTPConnection("localhost", https_server.port, ssl_context=context) as conn:
        conn.timeout = 10
        assert exchange(drive, conn, path="/size/20000") != b""
        assert conn.get_ssl_peercert()["subjectAltName"]
        assert conn.get_ssl_cipher() is not None
    if isinstance(context, DelegatingAll):  # its handshake went through dugong's loop
        assert context.kwargs["do_handshake_on_connect"] is False


# ------------------------------------------------------------------ 8. pending while connecting


def sender_and_receiver(conn, path="/"):
    def sender():
        yield from conn.co_send_request("GET", path)

    def receiver():
        resp = yield from conn.co_read_response()
        body = yield from conn.co_readall()
        return resp.status, body

    return sender(), receiver()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_receiver_started_while_connecting_waits(tls, host):
    srv = tls.server([Step.read_request(), Step.send(OK_3)])
    conn = HTTPConnection(host, srv.port, ssl_context=tls.client_context)
    assert conn.response_pending() is False
    results = eval_coroutines(*sender_and_receiver(conn), timeout=10)
    assert results == [None, (200, b"abc")]
    conn.disconnect()


def test_receiver_started_while_connecting_under_asyncio(tls):
    import asyncio

    srv = tls.server([Step.read_request(), Step.send(OK_3)])
    conn = HTTPConnection("localhost", srv.port, ssl_context=tls.client_context)

    async def main():
        send, receive = sender_and_receiver(conn)
        futures = [AioFuture(send), AioFuture(receive)]
        return await asyncio.wait_for(asyncio.gather(*futures), 10)

    assert asyncio.run(main()) == [None, (200, b"abc")]
    conn.disconnect()


def test_receiver_learns_that_the_connect_failed():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nobody listens there now
    conn = HTTPConnection("localhost", port)
    send, receive = sender_and_receiver(conn)
    results = eval_coroutines(send, receive, timeout=10, return_exceptions=True)
    assert isinstance(results[0], ConnectionRefusedError)
    assert isinstance(results[1], ConnectionClosed)
    assert results[1].request_sent is False
    assert "could not be opened" in str(results[1])
    assert not conn.response_pending()


def test_blocking_reader_thread_waits_for_a_connecting_sender(tls):
    srv = tls.server([Step.read_request(), Step.send(OK_3)])
    conn = HTTPConnection("localhost", srv.port, ssl_context=tls.client_context)
    conn.timeout = 10
    send, _ = sender_and_receiver(conn)
    next(send)  # the request is pending now; the connect is under way
    got: list[Any] = []
    reader = threading.Thread(
        target=lambda: got.append((conn.read_response().status, conn.readall()))
    )
    reader.start()
    dugong.eval_coroutine(send, 10)
    reader.join(10)
    assert got == [(200, b"abc")]
    conn.disconnect()


# ------------------------------------------------------------------ 9. _out_remaining


def test_out_remaining(drive, tls):
    srv = tls.server(
        [Step.read_request(), Step.send(OK_3)] * 2
        + [
            Step.read_request(body=False),
            Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step.read_body(),
            Step.send(OK_3),
        ]
    )
    conn = tls.conn(srv)
    assert conn._out_remaining is None
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing(10))
    assert conn._out_remaining == 10
    drive(conn, "write", b"1234")
    assert conn._out_remaining == 6
    drive(conn, "write", b"567890")
    assert conn._out_remaining is None
    drive(conn, "read_response")
    drive(conn, "readall")
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing())
    assert conn._out_remaining
    drive(conn, "write", b"chunk")
    assert conn._out_remaining
    drive(conn, "write", b"")
    assert conn._out_remaining is None
    drive(conn, "read_response")
    drive(conn, "readall")
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing(0), expect100=True)
    assert conn._out_remaining  # waiting for 100 Continue
    assert drive(conn, "read_response").status == 100
    assert conn._out_remaining is None  # a body of 0 bytes is complete
    drive(conn, "read_response")
    drive(conn, "readall")
    assert conn._out_remaining is None
    with pytest.raises(AttributeError):
        conn._out_remaining = 5  # type: ignore[misc]
    conn.disconnect()


def test_s3ql_pool_check(drive, tls):
    """S3QL's test before a connection goes back to its pool."""
    head_read = threading.Event()
    srv = tls.server(
        [
            Step.read_request(),
            Step.send(OK_3),
            Step.read_request(body=False),
            Step.set_event(head_read),
            Step.drain(),
        ]
    )
    conn = tls.conn(srv)
    assert exchange(drive, conn) == b"abc"
    if conn.response_pending() or conn._out_remaining:
        conn.disconnect()
    assert conn.is_connected  # kept for the next request
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing(10))
    drive(conn, "write", b"12345")
    assert head_read.wait(10)
    if conn.response_pending() or conn._out_remaining:
        conn.disconnect()
    assert not conn.is_connected
