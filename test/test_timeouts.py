"""HTTPConnection.timeout: connect, handshake, sends and receives of the blocking methods.

Each stall must end in `ConnectionTimedOut` after ``timeout`` seconds plus a
small margin; a slow but steady server must not trigger it (an idle timeout),
and the co_ generators ignore it (their driver decides).

The short `TIMEOUT` applies only to the call that meets the stall (`times_out`):
what comes before and after runs with `SETUP_TIMEOUT`, so that a server thread
slowed down by a loaded machine cannot pass for a stall.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import dugong
from conftest import Driver
from dugong import (
    BodyFollowing,
    ConnectionTimedOut,
    HTTPConnection,
    StateError,
)
from servers import Step, body_for, once_waiting

pytestmark = pytest.mark.timeout(60)

#: The connection timeout of the calls that meet a stall (seconds).
TIMEOUT = 0.05
#: The connection timeout of everything else (seconds): a hang fails the test.
SETUP_TIMEOUT = 10.0
#: How much later than TIMEOUT the exception may come (a loaded machine).
MARGIN = 0.5
#: How much earlier: never (a blocking read that waits in the kernel's receive waits
#: again for the rest when the kernel's timer ends early).
TICK = 0.0

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.start


def times_out(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ConnectionTimedOut:
    """Run *call*, a method of a connection, with that connection's timeout set to
    TIMEOUT (and then set back); it must raise ConnectionTimedOut after TIMEOUT
    (- TICK, + MARGIN) seconds."""
    conn = call.__self__
    before, conn.timeout = conn.timeout, TIMEOUT
    try:
        with Stopwatch() as watch, pytest.raises(ConnectionTimedOut) as info:
            call(*args, **kwargs)
    finally:
        conn.timeout = before
    assert TIMEOUT - TICK <= watch.elapsed < TIMEOUT + MARGIN, f"took {watch.elapsed:.3f} s"
    assert dugong.is_temp_network_error(info.value)
    assert str(TIMEOUT) in str(info.value)
    return info.value


@pytest.fixture(params=["plain", "tls"])
def tls(
    request: pytest.FixtureRequest, tls_server_context: Any, tls_client_context: Any
) -> tuple[Any, Any]:
    """(server context, client context), both None for plain HTTP."""
    if request.param == "plain":
        return None, None
    return tls_server_context, tls_client_context


_opened: list[HTTPConnection] = []


@pytest.fixture(autouse=True)
def _disconnect_all() -> Iterator[None]:
    """A connection that timed out stays open until reset: close them all after each test."""
    yield
    while _opened:
        _opened.pop().disconnect()


def connection(port: int, client_context: Any = None, **kwargs: Any) -> HTTPConnection:
    conn = HTTPConnection(
        "localhost" if client_context else "127.0.0.1", port, ssl_context=client_context, **kwargs
    )
    conn.timeout = SETUP_TIMEOUT
    _opened.append(conn)
    return conn


# ------------------------------------------------------------------ opening


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full and never drained: a TCP connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    yield port
    filler.close()
    listener.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux backlog behaviour")
@pytest.mark.parametrize("method", ["connect", "send_request"])
def test_tcp_connect(full_backlog, method):
    conn = connection(full_backlog)
    args = ("GET", "/") if method == "send_request" else ()
    times_out(getattr(conn, method), *args)
    assert conn._tr is None  # nothing half-open is kept


def test_name_resolution(monkeypatch):
    real = socket.getaddrinfo
    release = threading.Event()

    def slow(host: str, *args: Any, **kwargs: Any) -> Any:
        assert release.wait(10)  # the resolver answers only once connect() gave up
        return real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    conn = HTTPConnection("slow.test", 80)
    try:
        times_out(conn.connect)
    finally:
        release.set()
    assert conn._tr is None


@pytest.mark.parametrize("steps", [[], [Step.read(10)]], ids=["silent", "reads-hello"])
def test_tls_handshake(scripted_server, tls_client_context, steps):
    # The server accepts, but never answers the ClientHello.
    srv = scripted_server([*steps, Step.stop_reading()])
    times_out(connection(srv.port, tls_client_context).connect)


def test_tls_handshake_through_tunnel(scripted_server, tls_client_context):
    srv = scripted_server(
        [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\n\r\n"), Step.stop_reading()]
    )
    conn = connection(443, tls_client_context, proxy=srv.address)
    times_out(conn.send_request, "GET", "/")


def test_proxy_never_answers_connect(scripted_server, tls_client_context):
    srv = scripted_server([Step.read_request(), Step.stop_reading()])
    conn = connection(443, tls_client_context, proxy=srv.address)
    times_out(conn.send_request, "GET", "/")


# ------------------------------------------------------------------ sending


@pytest.mark.parametrize("how", ["write", "body", "chunked"])
def test_upload_stalls(scripted_server, tls, how):
    # The server reads the head, then no more: the buffers fill and sending stalls.
    server_context, client_context = tls
    srv = scripted_server(
        [Step.read_request(body=False), Step.stop_reading()], ssl_context=server_context
    )
    conn = connection(srv.port, client_context)
    size = 32 * 1024 * 1024
    data = bytes(size)
    if how == "body":
        conn.connect()  # (the handshake is not what stalls)
        times_out(conn.send_request, "PUT", "/", body=data)
        return
    conn.send_request("PUT", "/", body=BodyFollowing(None if how == "chunked" else size))
    times_out(conn.write, data)
    conn.disconnect()


# ------------------------------------------------------------------ receiving


@pytest.mark.parametrize("where", ["before-head", "in-head", "in-body", "in-chunked-body"])
def test_response_stalls(scripted_server, tls, where):
    server_context, client_context = tls
    sent = {
        "before-head": b"",
        "in-head": b"HTTP/1.1 200 OK\r\nContent-Le",
        "in-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + body_for(50_000),
        "in-chunked-body": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\n0123456789abcdef\r\n",
    }[where]
    steps = [Step.read_request()] + ([Step.send(sent)] if sent else []) + [Step.stop_reading()]
    srv = scripted_server(steps, ssl_context=server_context)
    conn = connection(srv.port, client_context)
    conn.send_request("GET", "/")
    if where in ("before-head", "in-head"):
        times_out(conn.read_response)
        return
    conn.read_response()
    if where == "in-body":
        got = bytearray()
        while len(got) < 50_000:  # what arrived can be read
            got += conn.read(50_000 - len(got))
        assert got == body_for(50_000)
        times_out(conn.read, 1000)
    else:
        assert conn.read(100) == b"0123456789abcdef"
        times_out(conn.read, 100)


@pytest.mark.parametrize("method", ["read", "readinto", "readall", "discard"])
def test_body_reads_time_out(scripted_server, tls, method):
    server_context, client_context = tls
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    srv = scripted_server(
        [Step.read_request(), Step.send(head + b"01234"), Step.stop_reading()],
        ssl_context=server_context,
    )
    conn = connection(srv.port, client_context)
    conn.send_request("GET", "/")
    conn.read_response()
    assert conn.read(100) == b"01234"
    args = {"read": (5,), "readinto": (bytearray(5),), "readall": (), "discard": ()}[method]
    times_out(getattr(conn, method), *args)
    conn.disconnect()


class Interrupt(Exception):
    """Raised by a signal handler in the middle of a blocking wait."""


@pytest.mark.parametrize("method", ["read_response", "read", "readinto", "readall"])
@pytest.mark.parametrize("stop", ["timeout", "interrupt"])
def test_a_stopped_wait_leaves_the_connection_unusable(scripted_server, tls, method, stop):
    """A blocking read whose wait ends in a timeout or in an exception from a signal
    handler leaves the connection needing reset(), as a closed co_ generator does."""
    server_context, client_context = tls
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    srv = scripted_server(
        [
            [Step.read_request()]
            + ([] if method == "read_response" else [Step.send(head + b"01234")])
            + [Step.stop_reading()],
            [Step.read_request(), Step.send(OK_3)],
        ],
        ssl_context=server_context,
    )
    conn = connection(srv.port, client_context)
    conn.send_request("GET", "/1")
    if method != "read_response":
        conn.read_response()
        assert conn.read(5) == b"01234"
    args = {"read": (5,), "readinto": (bytearray(5),)}.get(method, ())
    if stop == "timeout":
        times_out(getattr(conn, method), *args)
    else:
        if not hasattr(signal, "pthread_kill"):
            pytest.skip("needs pthread_kill")

        def handler(signum: int, frame: object) -> None:
            raise Interrupt

        def interrupt() -> None:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

        old = signal.signal(signal.SIGUSR1, handler)
        conn.timeout = None
        try:
            # The signal comes once the read waits for the socket (and would wait forever).
            with once_waiting(interrupt), pytest.raises(Interrupt):
                getattr(conn, method)(*args)
        finally:
            signal.signal(signal.SIGUSR1, old)
    with pytest.raises(StateError, match="reset"):
        getattr(conn, method)(*args)
    conn.reset()
    conn.send_request("GET", "/2")
    conn.read_response()
    assert conn.readall() == b"abc"
    conn.disconnect()


def test_slow_but_steady_server_is_fine(scripted_server, tls):
    # 5 bytes every 0.05 s (a fifth of the timeout here, which leaves the server thread
    # 0.2 s of slack on a loaded machine): 0.45 s in all, never idle that long.
    timeout = 0.25
    server_context, client_context = tls
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    srv = scripted_server(
        [Step.read_request(), Step.send(answer, chunk=5, delay=0.05)], ssl_context=server_context
    )
    conn = connection(srv.port, client_context)
    conn.connect()
    conn.timeout = timeout
    with Stopwatch() as watch:
        conn.send_request("GET", "/")
        conn.read_response()
        assert conn.readall() == b"0123456789"
    assert watch.elapsed > 1.5 * timeout
    conn.disconnect()


def test_generators_ignore_timeout(scripted_server, tls):
    server_context, client_context = tls
    srv = scripted_server(
        [Step.read_request(), Step.sleep(2 * TIMEOUT), Step.send(OK_3)], ssl_context=server_context
    )
    conn = connection(srv.port, client_context)
    drive = Driver("select")
    drive(conn, "send_request", "GET", "/")
    assert drive(conn, "read_response").status == 200
    assert drive(conn, "readall") == b"abc"
    conn.disconnect()


def test_no_timeout_by_default(scripted_server):
    srv = scripted_server([Step.read_request(), Step.sleep(2 * TIMEOUT), Step.send(OK_3)])
    conn = HTTPConnection("127.0.0.1", srv.port)
    assert conn.timeout is None
    conn.send_request("GET", "/")
    conn.read_response()
    assert conn.readall() == b"abc"
    conn.disconnect()


def test_reset_after_timeout(scripted_server):
    srv = scripted_server(
        [[Step.read_request(), Step.stop_reading()], [Step.read_request(), Step.send(OK_3)]]
    )
    conn = connection(srv.port)
    conn.send_request("GET", "/1")
    times_out(conn.read_response)
    with pytest.raises(StateError, match="reset"):
        conn.read_response()
    conn.reset()
    conn.send_request("GET", "/2")
    conn.read_response()
    assert conn.readall() == b"abc"
    conn.disconnect()


def test_a_wait_in_the_receive_is_never_cut_short(scripted_server, monkeypatch):
    """SO_RCVTIMEO counts in the kernel's ticks and may end a little early: the wait goes
    on for the rest, so ConnectionTimedOut never comes before the timeout. Here the
    kernel's timer is made to end at a third of each wait it is given."""
    from dugong._transport import PlainTransport

    set_rcvtimeo = PlainTransport._set_rcvtimeo
    kernel_waits = []

    def early(self, timeout):
        kernel_waits.append(timeout)
        set_rcvtimeo(self, None if timeout is None else timeout / 3)
        self._rcvtimeo = timeout

    monkeypatch.setattr(PlainTransport, "_set_rcvtimeo", early)
    srv = scripted_server([Step.read_request(), Step.stop_reading()])
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.send_request("GET", "/")
    conn.timeout = 0.06
    with Stopwatch() as watch, pytest.raises(ConnectionTimedOut):
        conn.read_response()
    assert 0.06 <= watch.elapsed < 0.06 + MARGIN
    assert len(kernel_waits) >= 3  # the whole timeout, then the rest, twice or more
    conn.disconnect()
