"""is_temp_network_error: each class the contract lists, real errors where the system
can produce them on loopback, and the errors that must not count as temporary."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable

import pytest

import dugong
from dugong import (
    ConnectionClosed,
    ConnectionTimedOut,
    DNSUnavailable,
    DugongError,
    ExcessBodyData,
    HostnameNotResolvable,
    HTTPConnection,
    InvalidResponse,
    StateError,
    UnsupportedResponse,
    is_temp_network_error,
)
from servers import Step, once_waiting

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ real errors


def catch(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("no exception")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_real_connection_refused():
    with socket.socket() as sock:
        exc = catch(lambda: sock.connect(("127.0.0.1", closed_port())))
    assert isinstance(exc, ConnectionRefusedError) and exc.errno == errno.ECONNREFUSED
    assert is_temp_network_error(exc)


def test_real_connection_refused_through_dugong():
    exc = catch(lambda: HTTPConnection("127.0.0.1", closed_port()).send_request("GET", "/"))
    assert isinstance(exc, ConnectionRefusedError) and exc.errno == errno.ECONNREFUSED
    assert is_temp_network_error(exc)


def reset_connection() -> socket.socket:
    """A client socket whose peer closed with SO_LINGER 0 (a TCP RST)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()
    client.settimeout(5)
    return client


def test_real_connection_reset():
    with reset_connection() as client:
        exc = catch(lambda: client.recv(10))
        assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET
        assert is_temp_network_error(exc)
        # After the reset, sending fails too: broken pipe.
        exc = catch(lambda: client.send(b"x"))
        assert isinstance(exc, BrokenPipeError) and exc.errno == errno.EPIPE
        assert is_temp_network_error(exc)


def test_real_reset_through_dugong(drive, scripted_server):
    srv = scripted_server([Step.read_request(), Step.reset()])
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/")
    exc = catch(lambda: drive(conn, "read_response"))
    assert isinstance(exc, ConnectionClosed)
    assert is_temp_network_error(exc)
    assert isinstance(exc.__cause__, ConnectionResetError)
    assert is_temp_network_error(exc.__cause__)
    conn.disconnect()


def test_real_broken_pipe():
    a, b = socket.socketpair()
    b.close()
    with a:
        exc = catch(lambda: a.send(b"x"))
    assert isinstance(exc, BrokenPipeError) and exc.errno == errno.EPIPE
    assert is_temp_network_error(exc)


def test_real_not_connected():
    with socket.socket() as sock:
        exc = catch(sock.getpeername)
    assert type(exc) is OSError and exc.errno == errno.ENOTCONN  # no subclass: the errno decides
    assert is_temp_network_error(exc)


def test_real_would_block():
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        exc = catch(lambda: a.recv(1))
    assert isinstance(exc, BlockingIOError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    assert is_temp_network_error(exc)


def test_real_socket_timeout():
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.01)
        exc = catch(lambda: a.recv(1))
    assert isinstance(exc, TimeoutError)
    assert is_temp_network_error(exc)


def test_real_tls_eof_in_handshake(tls_client_context):
    # The peer ends the TCP connection while the TLS handshake waits for its answer.
    a, b = socket.socketpair()
    with (
        b,
        tls_client_context.wrap_socket(
            a, server_hostname="localhost", do_handshake_on_connect=False
        ) as tls,
    ):
        b.shutdown(socket.SHUT_WR)
        tls.settimeout(5)
        exc = catch(tls.do_handshake)
    assert isinstance(exc, ssl.SSLEOFError)
    assert is_temp_network_error(exc)


def test_real_tls_eof_through_dugong(
    drive, scripted_server, tls_server_context, tls_client_context
):
    # A body read until close, cut without close_notify.
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart"),
            Step.close(),
        ],
        ssl_context=tls_server_context,
    )
    conn = HTTPConnection("localhost", srv.port, ssl_context=tls_client_context)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    exc = catch(lambda: drive(conn, "readall"))
    assert isinstance(exc, ConnectionClosed) and is_temp_network_error(exc)
    assert isinstance(exc.__cause__, ssl.SSLEOFError) and is_temp_network_error(exc.__cause__)


def test_real_timeout_through_dugong(scripted_server):
    srv = scripted_server([Step.read_request(), Step.stop_reading()])
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.timeout = 0.1
    conn.send_request("GET", "/")
    exc = catch(conn.read_response)
    assert isinstance(exc, ConnectionTimedOut) and is_temp_network_error(exc)
    conn.disconnect()


def test_real_interrupted_call():
    # A signal arriving in a call whose handler raises InterruptedError on purpose
    # (since PEP 475, Python retries EINTR itself unless the handler raises).
    import signal

    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs pthread_kill")
    a, b = socket.socketpair()

    def handler(signum: int, frame: object) -> None:
        raise InterruptedError(errno.EINTR, os.strerror(errno.EINTR))

    def receive() -> bytes:
        return a.recv(1)  # nothing ever comes

    def interrupt() -> None:
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with (
            a,
            b,
            once_waiting(interrupt, waiting_in=lambda frame: frame.f_code is receive.__code__),
        ):
            exc = catch(receive)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert isinstance(exc, InterruptedError) and exc.errno == errno.EINTR
    assert is_temp_network_error(exc)


def test_real_errors_that_are_not_temporary(tls_client_context):
    exc = catch(lambda: open("/nonexistent/dugong-test"))  # noqa: SIM115
    assert isinstance(exc, FileNotFoundError) and not is_temp_network_error(exc)
    exc = catch(lambda: os.fstat(-1))
    assert exc.errno == errno.EBADF and not is_temp_network_error(exc)  # type: ignore[attr-defined]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with socket.socket() as other:
            exc = catch(lambda: other.bind(sock.getsockname()))
    assert exc.errno == errno.EADDRINUSE and not is_temp_network_error(exc)  # type: ignore[attr-defined]


def test_real_tls_errors_that_are_not_temporary(scripted_server, tls_server_context):
    # A certificate from an unknown CA, and a server that does not speak TLS.
    import trustme

    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    tls_srv = scripted_server([], ssl_context=tls_server_context)
    exc = catch(lambda: HTTPConnection("localhost", tls_srv.port, ssl_context=stranger).connect())
    assert isinstance(exc, ssl.SSLCertVerificationError) and not is_temp_network_error(exc)
    tls_srv.wait_done()
    tls_srv.errors.clear()  # the server saw the handshake fail
    # (The connection stays until the client gives up: the answer is read, not an EOF.)
    plain = scripted_server([Step.read(5), Step.send(b"HTTP/1.1 400 Bad\r\n\r\n"), Step.drain()])
    exc = catch(lambda: HTTPConnection("localhost", plain.port, ssl_context=stranger).connect())
    assert type(exc) is ssl.SSLError and not is_temp_network_error(exc)
    assert "WRONG_VERSION_NUMBER" in str(exc)


# ------------------------------------------------------------------ each listed class


def _os_error(code: int) -> OSError:
    """An OSError with errno *code* (Python picks the matching subclass, if any)."""
    return OSError(code, os.strerror(code))


TEMPORARY = [
    pytest.param(ConnectionClosed(), id="ConnectionClosed"),
    pytest.param(ConnectionTimedOut(), id="ConnectionTimedOut"),
    pytest.param(DNSUnavailable("example.test"), id="DNSUnavailable"),
    pytest.param(TimeoutError(), id="TimeoutError"),
    pytest.param(TimeoutError(), id="socket.timeout"),
    pytest.param(ConnectionError(), id="ConnectionError"),
    pytest.param(ConnectionError("Proxy refused CONNECT: 407"), id="proxy-refusal"),
    pytest.param(ConnectionResetError(), id="ConnectionResetError"),
    pytest.param(ConnectionAbortedError(), id="ConnectionAbortedError"),
    pytest.param(ConnectionRefusedError(), id="ConnectionRefusedError"),
    pytest.param(BrokenPipeError(), id="BrokenPipeError"),
    pytest.param(InterruptedError(), id="InterruptedError"),
    pytest.param(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), id="SSLEOFError"),
    pytest.param(
        ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"), id="SSLZeroReturnError"
    ),
    pytest.param(ssl.SSLSyscallError(5, "Some I/O error occurred"), id="SSLSyscallError"),
    *(
        pytest.param(_os_error(getattr(errno, name)), id=name)
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
    ),
]

NOT_TEMPORARY = [
    pytest.param(HostnameNotResolvable("nowhere.test"), id="HostnameNotResolvable"),
    pytest.param(InvalidResponse("bad status line"), id="InvalidResponse"),
    pytest.param(UnsupportedResponse("gzip"), id="UnsupportedResponse"),
    pytest.param(StateError(), id="StateError"),
    pytest.param(ExcessBodyData(), id="ExcessBodyData"),
    pytest.param(DugongError(), id="DugongError"),
    pytest.param(ValueError(), id="ValueError"),
    pytest.param(TypeError(), id="TypeError"),
    pytest.param(RuntimeError(), id="RuntimeError"),
    pytest.param(UnicodeEncodeError("latin-1", "\u20ac", 0, 1, "x"), id="UnicodeEncodeError"),
    pytest.param(KeyboardInterrupt(), id="KeyboardInterrupt"),
    pytest.param(OSError(), id="OSError-no-errno"),
    pytest.param(OSError("just a message"), id="OSError-message"),
    pytest.param(FileNotFoundError(errno.ENOENT, "No such file"), id="FileNotFoundError"),
    pytest.param(PermissionError(errno.EACCES, "Permission denied"), id="PermissionError"),
    pytest.param(
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"), id="gaierror-NONAME"
    ),
    pytest.param(
        ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), id="SSLError"
    ),
    pytest.param(
        ssl.SSLCertVerificationError(1, "certificate verify failed"), id="SSLCertVerificationError"
    ),
    pytest.param(
        ssl.SSLWantReadError(2, "The operation did not complete (read)"), id="SSLWantReadError"
    ),
    *(
        pytest.param(_os_error(getattr(errno, name)), id=name)
        for name in ("ENOENT", "EACCES", "EBADF", "EINVAL", "EADDRINUSE", "EMFILE", "ENOSPC")
    ),
]


@pytest.mark.parametrize("exc", TEMPORARY)
def test_temporary(exc):
    assert is_temp_network_error(exc) is True


@pytest.mark.parametrize("exc", NOT_TEMPORARY)
def test_not_temporary(exc):
    assert is_temp_network_error(exc) is False


def test_subclasses_of_listed_classes():
    class MyClosed(ConnectionClosed):
        pass

    class MyReset(ConnectionResetError):
        pass

    assert is_temp_network_error(MyClosed())
    assert is_temp_network_error(MyReset())
    assert not is_temp_network_error(type("MyInvalid", (InvalidResponse,), {})())


def test_exported():
    assert dugong.is_temp_network_error is is_temp_network_error
