"""Opening connections: co_connect never blocks an event loop; connect() is its twin.

The central test runs a connection on an asyncio loop (through its
``add_reader``/``add_writer``) while a heartbeat task ticks every 10 ms, against
a server that is slow at every step: its name takes 0.5 s to resolve, its TCP
handshake completes only after about a second, and its TLS handshake after
another 0.5 s. A single blocking step would stop the heartbeat for that long.

How the TCP handshake is delayed on loopback: the server listens with a backlog
of 0 and one connection already waits in its accept queue, so the queue is
full and Linux drops the client's SYN. The server then accepts the waiting
connection, and the client's SYN, sent again after its retransmission timeout
(1 s), completes the handshake.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest

import dugong
from dugong import POLLIN, POLLOUT, HTTPConnection
from servers import Step, body_for

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="delays the TCP handshake with Linux's full-backlog behaviour",
    ),
]

#: Heartbeat period of the event loop (seconds).
TICK = 0.01
#: Longest pause of the heartbeat that counts as "the loop kept ticking" (seconds). A
#: blocking step would stop it for 0.5 s (DNS, TLS handshake) or about 1 s (TCP handshake).
MAX_PAUSE = 0.3
#: How long the server of the central test waits before its TLS handshake (seconds).
TLS_DELAY = 0.5


class SlowServer:
    """A TLS server that is slow to resolve, to complete the TCP handshake and the TLS one.

    ``client_started`` must be set once the client has sent its SYN (or is about to):
    the accept queue is kept full until 0.2 s after that. ``tls_delay`` seconds pass
    between accepting the client and the TLS handshake. Then each request gets a
    200 with a 1000-byte body.
    """

    def __init__(self, context: ssl.SSLContext | None, tls_delay: float = 1.0) -> None:
        self.context = context
        self.tls_delay = tls_delay
        self.client_started = threading.Event()
        self.accepted_at: float | None = None
        self.error: BaseException | None = None
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        # Fill the accept queue: its handshake completes, and nobody accepts it yet.
        self.filler = socket.create_connection(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            assert self.client_started.wait(15)
            if self._stop.wait(0.2):  # the client's first SYN has been dropped by now
                return
            self.listener.accept()[0].close()  # the filler: room for the client
            self.listener.settimeout(0.05)
            while True:
                try:
                    sock, _ = self.listener.accept()
                    break
                except TimeoutError:
                    if self._stop.is_set():
                        return
            self.accepted_at = time.monotonic()
            try:
                if self._stop.wait(self.tls_delay):
                    return
                if self.context is not None:
                    sock = self.context.wrap_socket(sock, server_side=True)
                self._serve(sock)
            finally:
                sock.close()
        except BaseException as exc:
            if not self._stop.is_set():
                self.error = exc

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        sock.settimeout(10)
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                piece = sock.recv(65536)
                if not piece:
                    return
                data += piece
            data = data[data.index(b"\r\n\r\n") + 4 :]
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + body_for(1000))

    def stop(self) -> None:
        self._stop.set()
        self.client_started.set()
        self.thread.join(20)
        self.filler.close()
        self.listener.close()
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def slow_server() -> Iterator[Any]:
    servers: list[SlowServer] = []

    def factory(context: ssl.SSLContext | None, tls_delay: float = 1.0) -> SlowServer:
        servers.append(SlowServer(context, tls_delay))
        return servers[-1]

    yield factory
    for server in servers:
        server.stop()


def fd_kind(fd: int) -> str:
    mode = os.fstat(fd).st_mode
    return "pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "other"


async def run_on_asyncio(gen: Generator[Any, None, Any], log: list[tuple[Any, float, str]]) -> Any:
    """Drive a co_ generator with the running loop's add_reader/add_writer.

    Appends ``(wait, seconds spent in the generator before it, kind of fd)`` to *log*.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    registered: tuple[int, bool] | None = None

    def unregister() -> None:
        nonlocal registered
        if registered is not None:
            fd, reading = registered
            (loop.remove_reader if reading else loop.remove_writer)(fd)
            registered = None

    def step() -> None:
        nonlocal registered
        unregister()  # before the generator runs: it may close the fd
        start = time.monotonic()
        try:
            wait = gen.send(None)
        except StopIteration as exc:
            log.append((None, time.monotonic() - start, ""))
            done.set_result(exc.value)
            return
        except BaseException as exc:
            done.set_exception(exc)
            return
        log.append((wait, time.monotonic() - start, fd_kind(wait.fd)))
        reading = bool(wait.mask & POLLIN)
        (loop.add_reader if reading else loop.add_writer)(wait.fd, step)
        registered = (wait.fd, reading)

    loop.call_soon(step)
    try:
        return await done
    finally:
        unregister()
        gen.close()


def test_event_loop_keeps_ticking(
    slow_server, monkeypatch, tls_server_context, tls_client_context
):
    server = slow_server(tls_server_context, tls_delay=TLS_DELAY)
    real_getaddrinfo = socket.getaddrinfo

    def slow_dns(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        assert host == "slow.test"
        time.sleep(0.5)
        try:
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        finally:
            server.client_started.set()  # the SYN follows right away

    monkeypatch.setattr(socket, "getaddrinfo", slow_dns)
    tls_client_context.check_hostname = False  # the certificate does not name slow.test
    conn = HTTPConnection("slow.test", server.port, ssl_context=tls_client_context)
    log: list[tuple[Any, float, str]] = []
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(TICK)

    async def main() -> tuple[float, float, Any, bytes]:
        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(5 * TICK)
        start = time.monotonic()
        await run_on_asyncio(conn.co_send_request("GET", "/"), log)
        resp = await run_on_asyncio(conn.co_read_response(), log)
        body = await run_on_asyncio(conn.co_readall(), log)
        end = time.monotonic()
        await asyncio.sleep(5 * TICK)
        beat.cancel()
        return start, end, resp, body

    start, end, resp, body = asyncio.run(main())
    conn.disconnect()
    assert (resp.status, body) == (200, body_for(1000))
    # The server really was that slow...
    assert server.accepted_at is not None
    assert end - start > 0.5 + 0.6 + TLS_DELAY
    # ...and the loop went on all the time.
    inside = [t for t in ticks if start <= t <= end] + [end]
    pauses = [b - a for a, b in itertools.pairwise(inside)]
    assert max(pauses) < MAX_PAUSE, f"the heartbeat stopped for {max(pauses):.3f} s"
    assert len(inside) > 0.5 * (end - start) / TICK
    assert max(spent for _, spent, _ in log) < MAX_PAUSE
    # Each phase waited through the loop: the resolver thread's pipe, then the socket
    # for the TCP connect (writable), then for the TLS handshake and the response.
    waits = [(wait.mask, kind) for wait, _, kind in log if wait is not None]
    assert waits[0] == (POLLIN, "pipe")
    assert waits[1] == (POLLOUT, "socket")
    assert (POLLIN, "socket") in waits[2:]


def test_plain_connect_yields_while_the_handshake_waits(slow_server):
    # Without a name to resolve, the first wait is the TCP connect itself.
    server = slow_server(None, tls_delay=0)
    conn = HTTPConnection("127.0.0.1", server.port)
    gen = conn.co_connect()
    wait = next(gen)
    assert (wait.mask, fd_kind(wait.fd)) == (POLLOUT, "socket")
    server.client_started.set()
    start = time.monotonic()
    assert not wait.poll(0.1)  # the SYN was dropped: not connected yet
    assert wait.poll(5)
    with pytest.raises(StopIteration):
        gen.send(None)
    assert time.monotonic() - start > 0.5
    conn.send_request("GET", "/")
    conn.read_response()
    assert conn.readall() == body_for(1000)
    conn.disconnect()


# ------------------------------------------------------------------ connect() and co_connect()


def test_connect_then_request_uses_that_connection(drive, scripted_server):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    srv = scripted_server([Step.read_request(), Step.send(answer)])
    conn = HTTPConnection("127.0.0.1", srv.port)
    assert drive(conn, "connect") is None
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"ok"
    assert srv.connections == 1
    conn.disconnect()


def test_connect_again_closes_the_open_connection(drive, scripted_server):
    srv = scripted_server([[Step.expect_eof()], [Step.expect_eof()]])
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "connect")
    drive(conn, "connect")
    conn.disconnect()
    srv.wait_done()
    assert srv.connections == 2


def test_nodelay(drive, http_server):
    conn = HTTPConnection(http_server.host, http_server.port)
    drive(conn, "connect")
    assert conn._tr.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # type: ignore[union-attr]
    conn.disconnect()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def no_new_fds(before: set[str]) -> bool:
    """True once no fd beyond *before* is open (other threads may hold one briefly)."""
    for _ in range(50):
        if open_fds() <= before:
            return True
        time.sleep(0.02)
    return False


def client_sockets(port: int) -> set[str]:
    """This process's fds of TCP sockets connected (or connecting) to *port*."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for fd in open_fds():
        try:
            if os.readlink(f"/proc/self/fd/{fd}") in inodes:
                found.add(fd)
        except OSError:
            pass
    return found


def test_next_address_after_a_refusal(drive, monkeypatch, http_server):
    # "dual.test" has a refusing IPv6 address first, then the server's IPv4 one.
    real = socket.getaddrinfo

    def dual(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        assert host == "dual.test"
        return real("::1", port, *args, **kwargs) + real("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", dual)
    with HTTPConnection("dual.test", http_server.port) as conn:
        drive(conn, "send_request", "GET", "/size/10")
        drive(conn, "read_response")
        assert drive(conn, "readall") == body_for(10)
        assert conn._tr.sock.family == socket.AF_INET  # type: ignore[union-attr]
        assert len(client_sockets(http_server.port)) == 1
    assert not client_sockets(http_server.port)


def test_every_address_refused(drive, monkeypatch):
    port = closed_port()
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, p, *a, **k: real("::1", p, *a, **k) + real("127.0.0.1", p, *a, **k),
    )
    fds = open_fds()
    conn = HTTPConnection("dual.test", port)
    with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1 port {port}") as info:
        drive(conn, "send_request", "GET", "/")
    assert no_new_fds(fds)
    assert dugong.is_temp_network_error(info.value)


def test_failed_handshake_leaves_no_socket(drive, scripted_server, tls_ca, tls_client_context):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("other.test").configure_cert(context)
    srv = scripted_server([], ssl_context=context)
    conn = HTTPConnection("localhost", srv.port, ssl_context=tls_client_context)
    with pytest.raises(ssl.SSLCertVerificationError):
        drive(conn, "connect")
    assert not client_sockets(srv.port)
    srv.wait_done()
    srv.errors.clear()  # the server saw the handshake fail


@pytest.fixture
def mute_listener() -> Iterator[int]:
    """The port of a listening socket that accepts nothing: the kernel completes TCP
    handshakes, and nobody ever answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize("phase", ["tcp", "tls"])
def test_abandoned_connect_leaves_no_socket(
    slow_server, mute_listener, tls_server_context, tls_client_context, phase
):
    # A co_connect() closed while it waits (a cancelled task) closes its socket: while
    # the TCP handshake waits (the SYN was dropped), or the TLS one (no answer comes).
    if phase == "tcp":
        server = slow_server(tls_server_context)
        port, others = server.port, {str(server.filler.fileno())}
    else:
        port, others = mute_listener, set()
    conn = HTTPConnection("127.0.0.1", port, ssl_context=tls_client_context)
    gen = conn.co_connect()
    wait = next(gen)
    if phase == "tls":
        while wait.mask == POLLOUT:  # the TCP connect, which the kernel completes
            assert wait.poll(5)
            wait = gen.send(None)
        assert wait.mask == POLLIN  # waiting for the server's TLS answer
    else:
        assert wait.mask == POLLOUT
        assert not wait.poll(0.05)  # still connecting
    assert client_sockets(port) - others == {str(wait.fd)}
    gen.close()
    assert not client_sockets(port) - others
