"""ConnectionPool against real servers on 127.0.0.1.

`PoolServer` counts connections and records, per connection, the order in
which requests arrived and responses left, so that reuse, limits and
pipelining are seen on the wire. Scripted servers (``servers.py``) play the
failures: closes before an answer, garbage, half answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

import dugong
from dugong import (
    AioFuture,
    ConnectionClosed,
    ConnectionPool,
    ConnectionTimedOut,
    HTTPConnection,
    InvalidResponse,
    PollNeeded,
    PoolResponse,
    StateError,
    eval_coroutines,
    run_async,
)
from dugong._pool import _bypass, _split_url
from servers import HOST, STEP_TIMEOUT, Request, ScriptedServer, Step, parse_request_head

#: seconds any wait of a test may take before it fails
WAIT = 10.0

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

#: descriptors of the `PoolServer`\ s' own sockets, which `open_fds` leaves out
_SERVER_FDS: set[int] = set()
_FDS_LOCK = threading.Lock()


def open_fds() -> int:
    """How many descriptors this process has open, the test servers' own left out."""
    with _FDS_LOCK:
        return len(set(os.listdir("/proc/self/fd")) - {str(fd) for fd in _SERVER_FDS}) - 1


def _server_socket(sock: socket.socket) -> socket.socket:
    with _FDS_LOCK:
        _SERVER_FDS.add(sock.fileno())
    return sock


def _close_server_socket(sock: socket.socket) -> None:
    with _FDS_LOCK:
        fd = sock.fileno()
        if fd >= 0:
            _SERVER_FDS.discard(fd)
            sock.close()


# ================================================================= a recording server


class PoolServer:
    """HTTP/1.1 on 127.0.0.1 that answers every request with its method and target.

    Args:
        keepalive_requests: announce ``Connection: close`` on the n-th
            response of a connection and close it (nginx's ``keepalive_requests``).
        close_after: close without a word after n responses on a connection.
        batch: after the first response of a connection, answer only once this
            many requests are waiting (pipelining made visible); ``batched`` is
            set when they have arrived. A list gives the number for each
            connection in turn (1 after its end).
        hold: before each answer after the first on a connection, wait for
            this event.
        gate: before any answer, wait for this event.
        pause: on connection 0, read nothing after the first answer until this
            event is set; then go on, or with *reset*, reset the connection.
        ssl_context: speak TLS.

    ``log[i]`` lists what happened on connection *i* in order: ``"> GET /a"``
    when a request arrived, ``"< GET /a"`` when its answer left.
    ``requests[i]`` has the parsed requests, ``reads[i]`` how many of them each
    receive brought (receives that completed none left out); ``ended[i]`` is set when
    connection *i* is over (either side closed), ``shut[i]`` when the server
    closed its side.
    """

    def __init__(
        self,
        *,
        keepalive_requests: int | None = None,
        close_after: int | None = None,
        batch: int | list[int] = 1,
        hold: threading.Event | None = None,
        gate: threading.Event | None = None,
        pause: threading.Event | None = None,
        reset: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        host: str = HOST,
    ) -> None:
        self.keepalive_requests = keepalive_requests
        self.close_after = close_after
        self.batch = batch
        self.hold = hold
        self.gate = gate
        self.pause = pause if pause is not None else threading.Event()
        if pause is None:
            self.pause.set()
        self.reset = reset
        self.ssl_context = ssl_context
        self.log: list[list[str]] = []
        self.requests: list[list[Request]] = []
        self.reads: list[list[int]] = []
        self.ended: list[threading.Event] = []
        self.shut: list[threading.Event] = []
        self.batched = threading.Event()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = _server_socket(socket.create_server((host, 0), family=family, backlog=64))
        self.port = self._listener.getsockname()[1]
        self.url = (
            f"{'https' if ssl_context else 'http'}://"
            f"{f'[{host}]' if ':' in host else host}:{self.port}"
        )
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._socks: list[socket.socket] = []
        self._threads[0].start()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self.log)

    def all_requests(self) -> list[Request]:
        with self._lock:
            return [r for conn in self.requests for r in conn]

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            _server_socket(sock)
            with self._lock:
                index = len(self.log)
                self.log.append([])
                self.requests.append([])
                self.reads.append([])
                self.ended.append(threading.Event())
                self.shut.append(threading.Event())
                self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            if self.ssl_context is not None:
                sock.settimeout(STEP_TIMEOUT)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
                with self._lock:
                    self._socks.append(sock)
            self._conversation(sock, index)
        except (OSError, ssl.SSLError):
            pass  # the client went away: its side of the test says what that means
        except Exception as exc:
            with self._lock:
                self.errors.append(f"connection {index}: {exc!r}")
        finally:
            _close_server_socket(sock)
            self.ended[index].set()

    def _conversation(self, sock: socket.socket, index: int) -> None:
        sock.settimeout(0.05)
        buf = bytearray()
        searched = 0
        waiting: list[Request] = []
        served = 0
        batch = (
            self.batch
            if isinstance(self.batch, int)
            else (self.batch[index] if index < len(self.batch) else 1)
        )
        deadline = time.monotonic() + STEP_TIMEOUT
        eof = False
        while not self._stop.is_set():
            if served and index == 0 and not self.pause.is_set():
                if not self.pause.wait(WAIT):
                    raise AssertionError("the pause was never ended")
                if self.reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
            if not eof:
                try:
                    data = sock.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    data = None
                if data == b"":
                    eof = True
                elif data:
                    buf += data
                    before = len(waiting)
                    searched = self._take_requests(buf, index, waiting, searched)
                    if len(waiting) > before:
                        self.reads[index].append(len(waiting) - before)
            if eof and not waiting:
                return
            if not waiting:
                continue
            if served and len(waiting) < batch and not eof:
                if time.monotonic() > deadline:
                    raise AssertionError(f"only {len(waiting)} of {batch} requests came")
                continue
            if served and batch > 1:
                self.batched.set()
                batch = 1
            if self.gate is not None and not self.gate.wait(WAIT):
                raise AssertionError("the gate was never opened")
            while waiting:
                if served and self.hold is not None and not self.hold.wait(WAIT):
                    raise AssertionError("hold was never released")
                req = waiting.pop(0)
                served += 1
                last = served in (self.keepalive_requests, self.close_after)
                with self._lock:  # before it leaves: the client may look at once
                    self.log[index].append(f"< {req.method} {req.target}")
                sock.sendall(self._answer(req, served == self.keepalive_requests))
                if last:
                    sock.shutdown(socket.SHUT_WR)
                    self.shut[index].set()
                    self._linger(sock)
                    return
            deadline = time.monotonic() + STEP_TIMEOUT

    def _linger(self, sock: socket.socket) -> None:
        """Close as nginx does: stop sending, then read until the client closes, so that
        requests it had already sent do not turn the close into a reset (which could
        destroy the last answer before the client read it)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    return
            except (TimeoutError, ssl.SSLWantReadError):
                continue

    def _take_requests(
        self, buf: bytearray, index: int, waiting: list[Request], searched: int
    ) -> int:
        """Move the complete requests at the start of *buf* to *waiting*; return how far
        *buf* is known to hold no end of a head (*searched*: the same, before)."""
        while True:
            end = buf.find(b"\r\n\r\n", max(0, searched - 3))
            if end < 0:
                return len(buf)
            head = bytes(buf[: end + 4])
            if len(head) > 65536:  # keep what is recorded small
                head = b"\r\n".join(line[:1000] for line in head.split(b"\r\n"))
            req = parse_request_head(head)
            size = int(req.header("Content-Length", "0") or "0")
            if len(buf) < end + 4 + size:
                return end
            req.body = bytes(buf[end + 4 : end + 4 + size])
            del buf[: end + 4 + size]
            searched = 0
            waiting.append(req)
            with self._lock:
                self.requests[index].append(req)
                self.log[index].append(f"> {req.method} {req.target}")

    @staticmethod
    def _answer(req: Request, close: bool) -> bytes:
        body = f"{req.method} {req.target}".encode()
        extra = b"Connection: close\r\n" if close else b""
        if req.path == "/chunked":
            data = b"%x\r\n%s\r\n0\r\nX-Sum: %d\r\n\r\n" % (len(body), body, len(body))
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + extra + b"\r\n" + data
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra)
        return head if req.method == "HEAD" else head + body

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() at once
        self._threads[0].join(WAIT)
        _close_server_socket(self._listener)
        with self._lock:
            socks, threads = list(self._socks), list(self._threads[1:])
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(WAIT)
        for sock in socks:
            _close_server_socket(sock)
        assert not self.errors, self.errors


@pytest.fixture
def pool_server() -> Iterator[Callable[..., PoolServer]]:
    """Factory: ``pool_server(**options) -> PoolServer`` (see `PoolServer`)."""
    made: list[PoolServer] = []

    def make(**kwargs: Any) -> PoolServer:
        made.append(PoolServer(**kwargs))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def server(pool_server: Callable[..., PoolServer]) -> PoolServer:
    return pool_server()


def body_of(method: str, target: str) -> bytes:
    return f"{method} {target}".encode()


def check_answers(results: list[Any], urls: list[str], method: str = "GET") -> None:
    for url, resp in zip(urls, results, strict=True):
        assert isinstance(resp, PoolResponse), resp
        target = _split_url(url).target
        assert (resp.status, resp.body, resp.url) == (200, body_of(method, target), url)


# ================================================================= the basics


def test_request_and_reuse(server: PoolServer) -> None:
    with ConnectionPool() as pool:
        for i in range(5):
            resp = pool.request("GET", f"{server.url}/item/{i}?q=1")
            assert (resp.status, resp.body) == (200, body_of("GET", f"/item/{i}?q=1"))
            assert resp.url == f"{server.url}/item/{i}?q=1"
            assert resp.path == f"/item/{i}?q=1"
        resp = pool.request("POST", server.url, {"X-Test": "yes"}, b"data")
        assert resp.body == b"POST /"
        resp = pool.request("HEAD", server.url + "/h")
        assert (resp.status, resp.length, resp.body) == (200, 0, b"")
        resp = pool.request("GET", server.url + "/chunked")
        assert resp.body == b"GET /chunked"
        assert dict(resp.trailers) == {"X-Sum": "12"}
    assert server.connections == 1
    posted = server.requests[0][5]
    assert (posted.body, posted.header("X-Test")) == (b"data", "yes")
    assert posted.header("Host") == f"127.0.0.1:{server.port}"


def test_co_request_and_reuse(server: PoolServer) -> None:
    with ConnectionPool() as pool:
        for i in range(3):
            resp = dugong.eval_coroutine(pool.co_request("GET", f"{server.url}/{i}"), WAIT)
            assert resp.body == body_of("GET", f"/{i}")
    assert server.connections == 1


def test_empty_path_query_and_fragment(server: PoolServer) -> None:
    with ConnectionPool() as pool:
        assert pool.request("GET", server.url).path == "/"
        assert pool.request("GET", server.url + "?a=b&c").path == "/?a=b&c"
        assert pool.request("GET", server.url + "/x#frag").path == "/x"
        resp = pool.request("GET", server.url + "/é")
        assert resp.path == "/%C3%A9"
        assert resp.url == server.url + "/é"
        assert pool.request("GET", server.url.upper().replace("HTTP", "http")).path == "/"
    assert [r.target for r in server.requests[0]] == ["/", "/?a=b&c", "/x", "/%C3%A9", "/"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "/relative",
        "127.0.0.1/x",
        "http:/x",
        "http://",
        "http:///x",
        "http://host:0/",
        "http://host:99999/",
        "http://host:8o/",
        "http://user:pw@host/",
        "http://[::1/",
        "http://[::1]x/",
        "http://[zz::1]/",
        "http://a b/",
        "http://a\r\nb/",
        "http://host/a b",
        "http://ho<st/",
        "mailto:x@y",
    ],
)
def test_bad_urls(url: str) -> None:
    with ConnectionPool() as pool:
        with pytest.raises(ValueError):
            pool.request("GET", url)
        with pytest.raises(ValueError):
            dugong.eval_coroutine(pool.co_request("GET", url))
        # As from a generator function: raised when stepped, so that a driver can report it.
        gens = [pool.co_request("GET", url), pool.co_request(b"GET", url)]  # type: ignore[arg-type]
        bad = dugong.eval_coroutines(*gens, return_exceptions=True)
        assert [type(exc) for exc in bad] == [ValueError, TypeError]
        with pytest.raises(ValueError), pool.connection(url):
            pass
        with pytest.raises(ValueError):
            dugong.eval_coroutine(pool.co_acquire(url))


def test_bad_arguments(server: PoolServer) -> None:
    with ConnectionPool() as pool:
        with pytest.raises(TypeError):
            pool.request("GET", b"http://127.0.0.1/")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pool.request("POST", server.url, body="text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pool.request(b"GET", server.url)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            pool.request("GET", server.url, {"X": "a\r\nb"})
        with pytest.raises(ValueError):
            pool.request("GE T", server.url)
        # Nothing was sent, and the connection is still good.
        assert pool.request("GET", server.url + "/after").body == b"GET /after"
    assert server.connections == 1
    for kwargs, exc in [
        ({"max_connections": 0}, ValueError),
        ({"max_per_host": 0}, ValueError),
        ({"pipeline": 0}, ValueError),
        ({"retries": -1}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"idle_timeout": "1"}, TypeError),
        ({"max_connections": 1.5}, TypeError),
        ({"proxy": "https://p:1"}, ValueError),
        ({"proxy": "http://p:1/path"}, ValueError),
    ]:
        with pytest.raises(exc):
            ConnectionPool(**kwargs)


def test_split_url() -> None:
    assert _split_url("HTTPS://Example.COM") == ("https", "example.com", 443, "/")
    assert _split_url("http://[::1]:8080?x") == ("http", "::1", 8080, "/?x")
    assert _split_url("http://h:/p") == ("http", "h", 80, "/p")
    assert _split_url("http://bücher.example/") == ("http", "xn--bcher-kva.example", 80, "/")


def test_ipv6_literal() -> None:
    try:
        srv = PoolServer(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        with ConnectionPool() as pool:
            resp = pool.request("GET", f"http://[::1]:{srv.port}/six")
            assert resp.body == b"GET /six"
        assert srv.requests[0][0].header("Host") == f"[::1]:{srv.port}"
    finally:
        srv.stop()


# ================================================================= limits and waiting


def test_limits_under_threads(pool_server: Callable[..., PoolServer]) -> None:
    one, two = pool_server(), pool_server()
    with ConnectionPool(5, max_per_host=3) as pool:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(8):
                    srv = one if (n + i) % 2 else two
                    resp = pool.request("GET", f"{srv.url}/{n}/{i}")
                    assert resp.body == body_of("GET", f"/{n}/{i}")
                    with pool._lock:
                        assert pool._total <= 5
                        assert all(len(h.entries) <= 3 for h in pool._hosts.values())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert errors == []
    assert len(one.all_requests()) + len(two.all_requests()) == 160


def test_limit_of_one_origin_under_threads(pool_server: Callable[..., PoolServer]) -> None:
    gate = threading.Event()
    server = pool_server(gate=gate)
    with ConnectionPool(4, timeout=WAIT) as pool:
        got: list[bytes] = []
        threads = [
            threading.Thread(
                target=lambda n=n: got.extend(
                    pool.request("GET", f"{server.url}/{n}/{i}").body for i in range(10)
                )
            )
            for n in range(16)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + WAIT
        while len(pool._waiters) < 12 and time.monotonic() < deadline:
            time.sleep(0.001)  # our own threads queueing up
        assert len(pool._waiters) == 12
        gate.set()
        for thread in threads:
            thread.join(WAIT)
        assert len(got) == 160
    assert server.connections == 4


def test_limits_under_generators(server: PoolServer) -> None:
    with ConnectionPool(4) as pool:
        urls = [f"{server.url}/{i}" for i in range(48)]
        results = eval_coroutines(*(pool.co_request("GET", u) for u in urls), timeout=WAIT)
        check_answers(results, urls)
        assert pool._total == 4
        assert pool._waiters == deque_empty()
    assert server.connections == 4


def deque_empty() -> Any:
    from collections import deque

    return deque()


def test_idle_connection_of_another_origin_makes_room(
    pool_server: Callable[..., PoolServer],
) -> None:
    one, two = pool_server(), pool_server()
    with ConnectionPool(1) as pool:
        assert pool.request("GET", one.url + "/a").body == b"GET /a"
        assert pool.request("GET", two.url + "/b").body == b"GET /b"
        assert one.ended[0].wait(WAIT)  # closed for the other origin
        assert pool.request("GET", one.url + "/c").body == b"GET /c"
    assert (one.connections, two.connections) == (2, 1)


def test_wait_with_timeout(server: PoolServer) -> None:
    with ConnectionPool(1, timeout=0.2) as pool:
        with pool.connection(server.url) as conn:
            before = open_fds()
            start = time.monotonic()
            with pytest.raises(ConnectionTimedOut, match=r"became free within 0\.2 seconds"):
                pool.request("GET", server.url)
            assert time.monotonic() - start >= 0.2
            # A generator waits on a descriptor of its own; the driver's timeout ends it.
            with pytest.raises(ConnectionTimedOut):
                eval_coroutines(pool.co_request("GET", server.url), timeout=0.1)
            assert open_fds() == before
            assert not pool._waiters
            conn.send_request("GET", "/lent")
            conn.read_response()
            assert conn.readall() == b"GET /lent"
        assert pool.request("GET", server.url + "/then").body == b"GET /then"
    assert server.connections == 1


def test_waiting_thread_gets_the_released_connection(server: PoolServer) -> None:
    with ConnectionPool(1, timeout=WAIT) as pool:
        got: list[bytes] = []
        lease = pool.connection(server.url)
        conn = lease.__enter__()
        thread = threading.Thread(
            target=lambda: got.append(pool.request("GET", server.url + "/waited").body)
        )
        thread.start()
        while not pool._waiters:  # the thread is queued
            time.sleep(0.001)
        lease.__exit__(None, None, None)
        thread.join(WAIT)
        assert got == [b"GET /waited"]
        assert conn.is_connected is False or server.connections == 1


def test_handed_connection_carries_the_waiting_request_out(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        conn = dugong.eval_coroutine(pool.co_acquire(server.url))
        conn.send_request("GET", "/lent")
        conn.read_response()
        assert conn.readall() == b"GET /lent"
        waiting = pool.co_request("GET", server.url + "/handed")
        wait = next(waiting)  # queued, on its pipe
        pool.release(conn)  # handed to it, and its request sent
        assert conn.responses_outstanding == 1  # before the generator ran again
        assert select.select([wait.fd], [], [], 0)[0] == [wait.fd]  # and it is woken
        assert dugong.eval_coroutine(waiting).body == b"GET /handed"
        assert pool.request("GET", server.url + "/after").body == b"GET /after"
    assert server.connections == 1


def _lease_in_use(pool: ConnectionPool, server: PoolServer) -> HTTPConnection:
    """The pool's one connection, lent and opened by a request."""
    conn = dugong.eval_coroutine(pool.co_acquire(server.url))
    conn.send_request("GET", "/lent")
    conn.read_response()
    assert conn.readall() == b"GET /lent"
    return conn


def test_handed_request_that_cannot_be_sent(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        conn = _lease_in_use(pool, server)
        waiting = pool.co_request("GET", server.url + "/bad", {"Bad Name": "x"})
        next(waiting)
        pool.release(conn)
        with pytest.raises(ValueError, match="header name"):
            dugong.eval_coroutine(waiting)
        assert pool.request("GET", server.url + "/good").body == b"GET /good"
    assert server.connections == 1


def test_handed_request_too_big_to_go_out_at_once(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        conn = _lease_in_use(pool, server)
        waiting = pool.co_request("GET", server.url + "/big", HUGE)
        next(waiting)
        pool.release(conn)  # sends what the socket takes; the waiter sends the rest
        assert dugong.eval_coroutine(waiting, WAIT).body == b"GET /big"
    assert server.connections == 1


class _LeaveWhenSent(dict[str, str]):
    """Header fields that close a waiting generator while its request is being sent
    (as another thread could)."""

    waiting: Generator[Any, None, Any] | None = None

    def items(self) -> Any:
        if self.waiting is not None:
            self.waiting.close()
        return super().items()


def test_waiter_that_leaves_while_its_request_is_sent(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        conn = _lease_in_use(pool, server)
        headers = _LeaveWhenSent({"X-Test": "1"})
        waiting = pool.co_request("GET", server.url + "/gone", headers)
        next(waiting)
        headers.waiting = waiting
        before = open_fds()
        pool.release(conn)
        assert not pool._waiters
        assert pool._total == 0  # its answer is due, and nobody reads it: closed
        assert open_fds() == before - 3  # the connection and the waiter's pipe
        assert pool.request("GET", server.url + "/next").body == b"GET /next"
    assert server.connections == 2


def test_waiting_generators_reuse_pipes(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        conn = dugong.eval_coroutine(pool.co_acquire(server.url))
        before = open_fds()
        first, second = (pool.co_request("GET", f"{server.url}/{i}") for i in range(2))
        first_wait, second_wait = next(first), next(second)
        assert first_wait.fd != second_wait.fd
        assert open_fds() == before + 4  # a pipe each
        first.close()  # its pipe is kept for the next call that waits...
        assert open_fds() == before + 4
        third = pool.co_request("GET", server.url + "/2")
        assert next(third).fd == first_wait.fd
        assert open_fds() == before + 4
        pool.release(conn)
        results = eval_coroutines(second, third, timeout=WAIT)
        assert [r.body for r in results] == [b"GET /1", b"GET /2"]
        assert open_fds() == before + 1  # the connection, opened: no pipe is left
    assert [r.target for r in server.all_requests()] == ["/1", "/2"]


# ================================================================= every driver


def select_all(gens: list[Generator[Any, None, Any]]) -> list[Any]:
    """A hand-written poll loop for several co_ generators (one poll object per round)."""
    results: list[Any] = [None] * len(gens)
    waits: dict[int, PollNeeded] = {}
    for i, gen in enumerate(gens):
        try:
            waits[i] = gen.send(None)
        except StopIteration as exc:
            results[i] = exc.value
    deadline = time.monotonic() + WAIT
    while waits:
        poller = select.poll()
        masks: dict[int, int] = {}
        for fd, mask in waits.values():
            masks[fd] = masks.get(fd, 0) | mask
        for fd, mask in masks.items():
            poller.register(fd, mask)
        ready = dict(poller.poll(max(0, deadline - time.monotonic()) * 1000))
        assert ready, "no progress"
        for i, (fd, mask) in list(waits.items()):
            if ready.get(fd, 0) & (mask | select.POLLERR | select.POLLHUP):
                try:
                    waits[i] = gens[i].send(None)
                except StopIteration as exc:
                    results[i] = exc.value
                    del waits[i]
    return results


def run_driver(driver: str, jobs: list[Generator[Any, None, Any]]) -> list[Any]:
    if driver == "select":
        return select_all(jobs)
    if driver == "eval_coroutines":
        return eval_coroutines(*jobs, timeout=WAIT)
    if driver == "AioFuture":

        async def main() -> list[Any]:
            return list(await asyncio.gather(*(AioFuture(job) for job in jobs)))

        return asyncio.run(main())
    import anyio

    async def gather() -> list[Any]:
        out: list[Any] = [None] * len(jobs)

        async def one(i: int) -> None:
            out[i] = await run_async(jobs[i], timeout=WAIT)

        async with anyio.create_task_group() as tg:
            for i in range(len(jobs)):
                tg.start_soon(one, i)
        return out

    return anyio.run(gather, backend=driver.split("-")[1])


DRIVERS = ["select", "eval_coroutines", "AioFuture", "run_async-asyncio", "run_async-trio"]


@pytest.mark.parametrize("pipeline", [1, 4])
@pytest.mark.parametrize("driver", DRIVERS)
def test_drivers(server: PoolServer, driver: str, pipeline: int) -> None:
    with ConnectionPool(2, pipeline=pipeline) as pool:
        before = open_fds()
        urls = [f"{server.url}/{driver}/{i}" for i in range(12)]
        jobs = [pool.co_request("GET", u) for u in urls]
        check_answers(run_driver(driver, jobs), urls)
        lease_job = pool.co_acquire(server.url)
        (conn,) = run_driver(driver, [lease_job])
        assert isinstance(conn, HTTPConnection)
        pool.release(conn)
        assert open_fds() == before + 2  # the two connections, nothing else
    assert server.connections == 2


def test_asyncio_keeps_registrations_until_close(server: PoolServer) -> None:
    """Under AioFuture the pool's sockets and wake-up pipes stay registered with the
    loop from one call to the next, and close() takes every registration away."""

    async def main() -> tuple[set[int], set[int], set[int]]:
        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        before = set(selector.get_map())
        pool = ConnectionPool(2, pipeline=4)

        async def task(i: int) -> None:
            for k in range(5):
                resp = await AioFuture(pool.co_request("GET", f"{server.url}/{i}/{k}"))
                assert resp.body == body_of("GET", f"/{i}/{k}")

        await asyncio.gather(*(task(i) for i in range(16)))
        kept = set(selector.get_map()) - before
        pool.close()
        return before, kept, set(selector.get_map())

    before, kept, after = asyncio.run(main())
    assert kept  # pipes and sockets, idle, for the next calls
    assert after == before


def test_blocking_and_generators_together(server: PoolServer) -> None:
    with ConnectionPool(2, pipeline=3, timeout=WAIT) as pool:
        got: list[bytes] = []
        threads = [
            threading.Thread(
                target=lambda i=i: got.append(pool.request("GET", f"{server.url}/t{i}").body)
            )
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        urls = [f"{server.url}/g{i}" for i in range(16)]
        check_answers(
            eval_coroutines(*(pool.co_request("GET", u) for u in urls), timeout=WAIT), urls
        )
        for thread in threads:
            thread.join(WAIT)
        assert sorted(got) == sorted(body_of("GET", f"/t{i}") for i in range(8))
    assert server.connections == 2


@pytest.mark.parametrize("driver", ["eval_coroutines", "select"])
def test_wakeups_in_one_thread_skip_the_pipe(
    server: PoolServer, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval_coroutines parks a generator that waits for the pool: a wake-up from its
    own thread resumes it without writing the pipe; a foreign loop gets the pipe."""
    writes: list[int] = []
    write = os.write

    def counted(fd: int, data: Any) -> int:
        writes.append(fd)
        return write(fd, data)

    with ConnectionPool(2, pipeline=4) as pool:
        urls = [f"{server.url}/{driver}/{i}" for i in range(40)]
        monkeypatch.setattr(os, "write", counted)
        check_answers(run_driver(driver, [pool.co_request("GET", u) for u in urls]), urls)
        monkeypatch.undo()
    if driver == "eval_coroutines":
        assert writes == []
    else:
        assert len(writes) >= 20  # most callers are woken by another one's read


def test_loops_in_two_threads_wake_each_other(server: PoolServer) -> None:
    """Generators of two eval_coroutines loops in two threads share one connection:
    wake-ups across the threads go through the pipes."""
    with ConnectionPool(1, pipeline=4) as pool:
        urls = {name: [f"{server.url}/{name}/{i}" for i in range(30)] for name in "ab"}
        results: dict[str, list[Any]] = {}

        def loop(name: str) -> None:
            jobs = [pool.co_request("GET", u) for u in urls[name]]
            results[name] = eval_coroutines(*jobs, timeout=WAIT)

        threads = [threading.Thread(target=loop, args=(name,)) for name in urls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        for name in urls:
            check_answers(results[name], urls[name])
    assert server.connections == 1


def test_cancelled_waiter_leaves_nothing_behind(server: PoolServer) -> None:
    async def main(pool: ConnectionPool) -> None:
        conn = await AioFuture(pool.co_acquire(server.url))
        before = open_fds()
        fut = AioFuture(pool.co_request("GET", server.url + "/never"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert open_fds() == before + 2  # its own pipe
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        assert open_fds() == before
        assert not pool._waiters
        pool.release(conn)
        resp = await AioFuture(pool.co_request("GET", server.url + "/next"))
        assert resp.body == b"GET /next"

    with ConnectionPool(1) as pool:
        asyncio.run(main(pool))
    assert [r.target for r in server.all_requests()] == ["/next"]


def test_trio_cancel_while_waiting(server: PoolServer) -> None:
    trio = pytest.importorskip("trio")

    async def main(pool: ConnectionPool) -> None:
        conn = await run_async(pool.co_acquire(server.url))
        before = open_fds()
        with trio.move_on_after(0.05):
            await run_async(pool.co_request("GET", server.url + "/never"))
        assert open_fds() == before
        pool.release(conn)
        assert (await run_async(pool.co_request("GET", server.url + "/b"))).body == b"GET /b"

    with ConnectionPool(1) as pool:
        trio.run(main, pool)


def test_granted_connection_of_a_cancelled_waiter_goes_back(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        conn = dugong.eval_coroutine(pool.co_acquire(server.url))
        waiting = pool.co_request("GET", server.url + "/x")
        next(waiting)  # queued
        pool.release(conn)  # granted to it...
        waiting.close()  # ...which goes away without using it
        assert pool.request("GET", server.url + "/y").body == b"GET /y"
        assert pool._total == 1
    assert [r.target for r in server.all_requests()] == ["/y"]


# ================================================================= pipelining


def pipelined_rounds(log: list[str]) -> int:
    """The most requests that arrived on a connection before their first answer left."""
    most = outstanding = 0
    for event in log:
        outstanding += 1 if event.startswith(">") else -1
        most = max(most, outstanding)
    return most


@pytest.mark.parametrize("driver", ["threads", "eval_coroutines"])
def test_pipelining_on_the_wire(pool_server: Callable[..., PoolServer], driver: str) -> None:
    server = pool_server(batch=6)
    urls = [f"{server.url}/p/{i}" for i in range(7)]
    with ConnectionPool(1, pipeline=6, timeout=WAIT) as pool:
        if driver == "threads":
            results: list[Any] = [None] * len(urls)

            def fetch(i: int) -> None:
                results[i] = pool.request("GET", urls[i])

            threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(urls))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
        else:
            results = eval_coroutines(*(pool.co_request("GET", u) for u in urls), timeout=WAIT)
        check_answers(results, urls)
    assert server.connections == 1
    log = server.log[0]
    # The first request alone (it proves that the server keeps the connection), then
    # six in flight at once.
    assert log[:2] == [f"> GET /p/{log[0].split('/p/')[1]}", log[0].replace(">", "<")]
    assert pipelined_rounds(log) == 6


def test_requests_collected_into_one_send(pool_server: Callable[..., PoolServer]) -> None:
    """Under eval_coroutines, a request made while another one is in flight on its
    connection waits for the requests that follow it at once, and goes out with them:
    the server receives them in one piece. (The first request, alone on its
    connection, goes out at once.)"""
    server = pool_server(batch=4)  # the first stays in flight, however slow the client
    urls = [f"{server.url}/c/{i}" for i in range(4)]
    with ConnectionPool(1, pipeline=4) as pool:
        pool.request("GET", server.url + "/first")
        check_answers(eval_coroutines(*(pool.co_request("GET", u) for u in urls)), urls)
        check_answers(eval_coroutines(*(pool.co_request("GET", u) for u in urls)), urls)
    assert server.connections == 1
    # Each round: the first request, then the three others together, or in two
    # pieces where the driver resumes the collecting caller before the last one came.
    # (The server may also have received the first request with the others.) In the
    # first round the server holds its answer to the first request until all four have
    # come, so the others are collected; in the second it answers at once, and on a
    # loaded machine the first caller may have its whole answer before the others
    # start (its read, more than a moment after its send, tries a receive at once):
    # then nothing is in flight, and each request rightly goes out alone.
    reads = server.reads[0]
    assert reads[0] == 1 and sum(reads) == 9 and len(reads) <= 8
    assert [n for n in reads if n > 1]


def test_collecting_caller_that_leaves_sends_what_it_collected(
    pool_server: Callable[..., PoolServer],
) -> None:
    """The caller that holds the requests collected behind its own leaves before sending
    them: they go out at once, and the others get their answers on that connection."""
    hold = threading.Event()  # /a stays unanswered while the others come (however slow)
    server = pool_server(hold=hold)
    with ConnectionPool(1, pipeline=4) as pool:
        pool.request("GET", server.url + "/first")
        alone = pool.co_request("GET", server.url + "/a")
        first = pool.co_request("GET", server.url + "/b")
        second = pool.co_request("GET", server.url + "/c")

        def steps() -> Generator[PollNeeded, None, None]:
            """The first steps by hand, inside eval_coroutines (where requests collect)."""
            assert not next(alone)._now  # alone on the connection: sent at once
            assert next(first)._now  # it collects: resumed after the generators ready now
            next(second)  # collected behind the first one's request
            first.close()
            return
            yield

        eval_coroutines(steps())
        hold.set()
        got = eval_coroutines(alone, second, timeout=WAIT)
        assert [r.body for r in got] == [b"GET /a", b"GET /c"]
        assert pool.request("GET", server.url + "/d").body == b"GET /d"
    assert server.connections == 1
    assert [r.target for r in server.requests[0]] == ["/first", "/a", "/b", "/c", "/d"]
    # /b and /c in one piece (the server may have received /a with them)
    assert server.reads[0] in ([1, 1, 2, 1], [1, 3, 1])


def test_heads_and_options_pipelined_posts_never(pool_server: Callable[..., PoolServer]) -> None:
    server = pool_server(batch=[4])
    with ConnectionPool(1, pipeline=8) as pool:
        pool.request("GET", server.url + "/first")
        jobs = []
        for i in range(24):
            method = ("GET", "HEAD", "OPTIONS", "GET", "POST", "DELETE")[i % 6]
            body = b"x" if method == "POST" else None
            jobs.append(pool.co_request(method, f"{server.url}/{method}/{i}", body=body))
        results = eval_coroutines(*jobs, timeout=WAIT)
        assert all(r.status == 200 for r in results)
    assert server.connections == 1
    log = server.log[0]
    # The first four went out together; the POST behind them waited for the answers.
    assert [e[0] for e in log[2:10]] == list(">>>><<<<")
    assert log[10:12] == ["> POST /POST/4", "< POST /POST/4"]
    outstanding = 0
    for i, event in enumerate(log):
        if event.startswith("> POST") or event.startswith("> DELETE"):
            # Sent on an idle connection, and answered before anything else is sent.
            assert outstanding == 0, log[: i + 1]
            assert log[i + 1] == "<" + event[1:], log[i : i + 3]
        outstanding += 1 if event.startswith(">") else -1
    assert pipelined_rounds(log) > 1


def test_connection_close_header_is_not_pipelined_behind(server: PoolServer) -> None:
    with ConnectionPool(1, pipeline=4) as pool:
        pool.request("GET", server.url + "/warm")
        jobs = [
            pool.co_request(
                "GET", f"{server.url}/{i}", {"Connection": "close"} if i == 1 else None
            )
            for i in range(4)
        ]
        assert all(r.status == 200 for r in eval_coroutines(*jobs, timeout=WAIT))


def test_orphaned_response_is_discarded_for_the_next(
    pool_server: Callable[..., PoolServer],
) -> None:
    hold = threading.Event()
    server = pool_server(batch=3, hold=hold)

    async def main(pool: ConnectionPool) -> None:
        await AioFuture(pool.co_request("GET", server.url + "/first"))
        futs = [AioFuture(pool.co_request("GET", f"{server.url}/{i}")) for i in range(3)]
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, server.batched.wait, WAIT)
        futs[1].cancel()  # sent, waiting for its turn to read
        hold.set()
        first, third = await futs[0], await futs[2]
        assert (first.body, third.body) == (b"GET /0", b"GET /2")
        assert futs[1].cancelled()
        again = await AioFuture(pool.co_request("GET", server.url + "/again"))
        assert again.body == b"GET /again"

    with ConnectionPool(1, pipeline=4) as pool:
        asyncio.run(main(pool))
    assert server.connections == 1


def test_cancelled_reader_leaves_its_read_to_the_next(
    pool_server: Callable[..., PoolServer],
) -> None:
    server = pool_server(batch=3)
    with ConnectionPool(1, pipeline=4) as pool:
        pool.request("GET", server.url + "/first")
        reader, second, third = (pool.co_request("GET", f"{server.url}/{x}") for x in "abc")
        on_socket = next(reader)  # sent; reads the responses, its own first
        assert next(second).fd != on_socket.fd  # sent; waits for its answer on its pipe
        next(third)
        reader.close()  # its read goes on in the next caller in line
        results = eval_coroutines(second, third, timeout=WAIT)
        assert [r.body for r in results] == [b"GET /b", b"GET /c"]
        assert pool.request("GET", server.url + "/d").body == b"GET /d"
    assert server.connections == 1
    assert [r.target for r in server.requests[0]] == ["/first", "/a", "/b", "/c", "/d"]


def test_answers_nobody_waits_for_close_the_connection(
    pool_server: Callable[..., PoolServer],
) -> None:
    server = pool_server(batch=2)
    with ConnectionPool(1, pipeline=4) as pool:
        pool.request("GET", server.url + "/first")
        reader, other = (pool.co_request("GET", f"{server.url}/{x}") for x in "ab")
        next(reader)
        next(other)
        reader.close()  # its read goes to the other...
        other.close()  # ...which leaves too
        assert pool._total == 0
        assert pool.request("GET", server.url + "/c").body == b"GET /c"
    assert server.connections == 2


def test_thread_reading_for_others_times_out(pool_server: Callable[..., PoolServer]) -> None:
    """A thread that took over the reading from a generator waits for the answers ahead
    of its own under its timeout; the connection is then given up."""
    hold = threading.Event()
    server = pool_server(hold=hold)
    with ConnectionPool(1, pipeline=4, timeout=0.2) as pool:
        pool.request("GET", server.url + "/first")
        (ent,) = next(iter(pool._hosts.values())).entries
        reader = pool.co_request("GET", server.url + "/g")
        next(reader)
        errors: list[BaseException] = []

        def fetch() -> None:
            try:
                pool.request("GET", server.url + "/t")
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=fetch)
        thread.start()
        while not ent.readq:  # our own thread's request is sent
            time.sleep(0.001)
        reader.close()
        thread.join(WAIT)
        assert [type(e) for e in errors] == [ConnectionTimedOut]
        hold.set()
        assert pool.request("GET", server.url + "/next").body == b"GET /next"
        assert pool._total == 1
    assert server.connections == 2


def test_pipelined_requests_retried_after_a_silent_close(
    pool_server: Callable[..., PoolServer],
) -> None:
    server = pool_server(close_after=3, batch=[5])
    urls = [f"{server.url}/r/{i}" for i in range(6)]
    with ConnectionPool(1, pipeline=8, retries=1) as pool:
        check_answers(
            eval_coroutines(*(pool.co_request("GET", u) for u in urls), timeout=WAIT), urls
        )
    assert server.connections == 2
    assert len(server.requests[0]) == 6  # three answered, three lost and sent again
    assert len(server.requests[1]) == 3


def test_keepalive_request_limit(pool_server: Callable[..., PoolServer]) -> None:
    """nginx's ``keepalive_requests 3``: the third response announces the close, and
    what was pipelined behind it goes out again without costing a retry."""
    server = pool_server(keepalive_requests=3)
    urls = [f"{server.url}/k/{i}" for i in range(60)]
    with ConnectionPool(2, pipeline=8, retries=0) as pool:
        check_answers(
            eval_coroutines(*(pool.co_request("GET", u) for u in urls), timeout=WAIT), urls
        )
    assert 20 <= server.connections <= 26
    # Before the limit is known, a connection gets at most 8 requests in flight plus
    # the 2 whose answers come before the one announcing the close: 7 go to waste on
    # each of the first two. Once the limit was seen, no connection gets more than 3.
    sent = [len(reqs) for reqs in server.requests]
    assert sum(sent) <= 60 + 2 * 7
    assert all(n <= 3 for n in sent[4:]), sent


def test_threads_read_their_own_responses(pool_server: Callable[..., PoolServer]) -> None:
    server = pool_server(keepalive_requests=7)
    with ConnectionPool(2, pipeline=5, timeout=WAIT) as pool:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(10):
                    target = f"/{n}/{i}"
                    assert pool.request("GET", server.url + target).body == body_of("GET", target)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert errors == []


def _when(check: Callable[[], bool], then: Callable[[], None]) -> threading.Thread:
    """In a thread: wait until *check()* (our own pool's state), then call *then*."""

    def run() -> None:
        deadline = time.monotonic() + WAIT
        while not check() and time.monotonic() < deadline:
            time.sleep(0.001)
        then()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


#: a header value too big for the socket buffers: its request cannot go out at once
HUGE = {"X-Big": "x" * (8 << 20)}


@pytest.mark.parametrize("mode", ["threads", "generators"])
def test_send_turns(pool_server: Callable[..., PoolServer], mode: str) -> None:
    """A pipelined request whose head does not fit into the socket holds the connection's
    send turn; the next one waits for it, then both answers come in order."""
    pause = threading.Event()
    server = pool_server(pause=pause)
    with ConnectionPool(1, pipeline=2, timeout=WAIT) as pool:
        pool.request("GET", server.url + "/first")
        (ent,) = next(iter(pool._hosts.values())).entries
        waiter = _when(lambda: bool(ent.send_waiters), pause.set)
        if mode == "threads":
            got: dict[str, bytes] = {}

            def fetch(path: str, headers: dict[str, str] | None) -> None:
                got[path] = pool.request("GET", server.url + path, headers).body

            big = threading.Thread(target=fetch, args=("/big", HUGE))
            big.start()
            while ent.sender is None:
                time.sleep(0.001)
            small = threading.Thread(target=fetch, args=("/small", None))
            small.start()
            for thread in (big, small):
                thread.join(WAIT)
            assert got == {"/big": b"GET /big", "/small": b"GET /small"}
        else:
            results = eval_coroutines(
                pool.co_request("GET", server.url + "/big", HUGE),
                pool.co_request("GET", server.url + "/small"),
                timeout=WAIT,
            )
            assert [r.body for r in results] == [b"GET /big", b"GET /small"]
        waiter.join(WAIT)
    assert [r.target for r in server.requests[0]] == ["/first", "/big", "/small"]


def test_send_fails_mid_pipeline(pool_server: Callable[..., PoolServer]) -> None:
    """The server resets while a pipelined request is being sent: that one goes out again
    (a retry), the one waiting to send goes out without costing one."""
    pause = threading.Event()
    server = pool_server(pause=pause, reset=True)
    with ConnectionPool(1, pipeline=2, retries=1) as pool:
        pool.request("GET", server.url + "/first")
        (ent,) = next(iter(pool._hosts.values())).entries
        waiter = _when(lambda: bool(ent.send_waiters), pause.set)
        results = eval_coroutines(
            pool.co_request("GET", server.url + "/big", HUGE),
            pool.co_request("GET", server.url + "/small"),
            timeout=WAIT,
        )
        assert [r.body for r in results] == [b"GET /big", b"GET /small"]
        waiter.join(WAIT)
    assert server.connections == 2
    assert sorted(r.target for r in server.requests[1]) == ["/big", "/small"]


def test_collected_requests_sent_again_after_a_reset(
    pool_server: Callable[..., PoolServer],
) -> None:
    """Requests that went out together are all lost when the server resets the
    connection: each is sent again (a retry), on a new connection."""
    pause = threading.Event()
    server = pool_server(pause=pause, reset=True)
    urls = [f"{server.url}/r/{i}" for i in range(4)]
    with ConnectionPool(1, pipeline=4, retries=1) as pool:
        pool.request("GET", server.url + "/first")
        (ent,) = next(iter(pool._hosts.values())).entries
        # Once all four went out in one piece, the server resets.
        waiter = _when(lambda: ent.seq == 5 and ent.sender is None, pause.set)
        check_answers(eval_coroutines(*(pool.co_request("GET", u) for u in urls)), urls)
        waiter.join(WAIT)
    assert server.connections == 2
    assert sorted(r.target for r in server.requests[1]) == [f"/r/{i}" for i in range(4)]


def test_bad_pipelined_request_leaves_the_connection_alone(server: PoolServer) -> None:
    with ConnectionPool(1, pipeline=4) as pool:
        pool.request("GET", server.url + "/a")
        jobs = [
            pool.co_request("GET", server.url + "/b"),
            pool.co_request("GET", server.url + "/c", {"Bad Name": "x"}),
            pool.co_request("GET", server.url + "/d"),
        ]
        results = eval_coroutines(*jobs, timeout=WAIT, return_exceptions=True)
        assert [type(r) for r in results] == [PoolResponse, ValueError, PoolResponse]
        assert pool.request("GET", server.url + "/e").body == b"GET /e"
    assert server.connections == 1


def test_timeout_inside_a_request(scripted_server: Callable[..., ScriptedServer]) -> None:
    srv = scripted_server(
        [[Step.read_request(), Step.stop_reading()], [Step.read_request(), Step.send(OK)]]
    )
    with ConnectionPool(timeout=0.2) as pool:
        with pytest.raises(ConnectionTimedOut):
            pool.request("GET", f"http://127.0.0.1:{srv.port}/stall")
        assert pool._total == 0  # the stalled connection was closed, not kept
        assert pool.request("GET", f"http://127.0.0.1:{srv.port}/next").body == b"ok"


# ================================================================= retries


def test_get_retried_post_not(scripted_server: Callable[..., ScriptedServer]) -> None:
    srv = scripted_server(
        [[Step.read_request(), Step.close()], [Step.read_request(), Step.send(OK)]]
    )
    with ConnectionPool() as pool:
        resp = pool.request("GET", f"http://127.0.0.1:{srv.port}/x")
        assert resp.body == b"ok"
    assert srv.connections == 2

    srv = scripted_server(
        [[Step.read_request(), Step.close()], [Step.read_request(), Step.send(OK)]]
    )
    with ConnectionPool() as pool:
        with pytest.raises(ConnectionClosed):
            pool.request("POST", f"http://127.0.0.1:{srv.port}/x", body=b"once")
        srv.wait_done(1)
    assert srv.connections == 1
    assert [r.body for r in srv.requests[0]] == [b"once"]


@pytest.mark.parametrize(
    ("method", "retries", "connections"),
    [("PUT", 1, 2), ("DELETE", 1, 2), ("GET", 0, 1), ("PATCH", 3, 1), ("GET", 2, 3)],
)
def test_retry_rules(
    scripted_server: Callable[..., ScriptedServer], method: str, retries: int, connections: int
) -> None:
    srv = scripted_server(
        [
            [Step.read_request(), Step.reset()],
            [Step.read_request(), Step.close()],
            [Step.read_request(), Step.send(OK)],
        ]
    )
    with ConnectionPool(retries=retries) as pool:
        job = pool.co_request(method, f"http://127.0.0.1:{srv.port}/x", body=b"b")
        if connections < 3:
            with pytest.raises(ConnectionClosed):
                eval_coroutines(job, timeout=WAIT)
        else:
            assert eval_coroutines(job, timeout=WAIT)[0].body == b"ok"
        srv.wait_done(connections)
    assert srv.connections == connections


def test_no_retry_once_the_body_started(scripted_server: Callable[..., ScriptedServer]) -> None:
    srv = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"),
                Step.close(),
            ],
            [Step.read_request(), Step.send(OK)],
        ]
    )
    with ConnectionPool(retries=3) as pool:
        with pytest.raises(ConnectionClosed, match="3 of 9"):
            pool.request("GET", f"http://127.0.0.1:{srv.port}/x")
        srv.wait_done(1)
    assert srv.connections == 1


def test_no_retry_once_the_head_started(scripted_server: Callable[..., ScriptedServer]) -> None:
    srv = scripted_server(
        [
            [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\nCont"), Step.close()],
            [Step.read_request(), Step.send(OK)],
        ]
    )
    with ConnectionPool(retries=3) as pool:
        with pytest.raises(ConnectionClosed):
            pool.request("GET", f"http://127.0.0.1:{srv.port}/x")
        srv.wait_done(1)
    assert srv.connections == 1


def test_garbage_answer(scripted_server: Callable[..., ScriptedServer]) -> None:
    srv = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(OK),
                Step.read_request(),
                Step.send(b"SPAM SPAM SPAM\r\n\r\n"),
                Step.drain(),
            ],
            [Step.read_request(), Step.send(OK)],
        ]
    )
    url = f"http://127.0.0.1:{srv.port}/"
    with ConnectionPool() as pool:
        assert pool.request("GET", url).body == b"ok"
        with pytest.raises(InvalidResponse):
            pool.request("GET", url)
        assert pool.request("GET", url).body == b"ok"  # on a new connection
    assert srv.connections == 2


def test_garbage_answer_behind_a_pipelined_one(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    """The reader finds the second answer buffered whole behind its own, and invalid: that
    caller gets the error (it is not a lost request: never sent again)."""
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(OK),
            Step.read_request(),
            Step.read_request(),
            Step.send(OK + b"SPAM SPAM SPAM\r\n\r\n"),
            Step.drain(),
        ]
    )
    url = f"http://127.0.0.1:{srv.port}/"
    with ConnectionPool(max_connections=1, pipeline=2) as pool:
        assert pool.request("GET", url).body == b"ok"  # the connection is proven
        got = dugong.eval_coroutines(
            pool.co_request("GET", url), pool.co_request("GET", url), return_exceptions=True
        )
        assert got[0].body == b"ok"
        assert isinstance(got[1], InvalidResponse)
    assert srv.connections == 1


def test_garbage_body_behind_a_head_waited_for(
    scripted_server: Callable[..., ScriptedServer],
) -> None:
    """The reader waits for its answer's head; the chunked body that arrives with it is
    not one the buffer yields whole, and is invalid: the caller gets the error, and the
    request is not sent again (its response had started)."""
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(OK),
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nxx\r\n"),
            Step.drain(),
        ]
    )
    url = f"http://127.0.0.1:{srv.port}/"
    with ConnectionPool(max_connections=1, pipeline=2) as pool:
        assert pool.request("GET", url).body == b"ok"  # the connection is proven
        (got,) = dugong.eval_coroutines(pool.co_request("GET", url), return_exceptions=True)
        assert isinstance(got, InvalidResponse)
    assert [len(r) for r in srv.requests] == [2]


# ================================================================= idle connections


def test_idle_timeout(server: PoolServer) -> None:
    with ConnectionPool(idle_timeout=0.05) as pool:
        pool.request("GET", server.url + "/1")
        pool.request("GET", server.url + "/2")
        time.sleep(0.1)  # our own clock, not the server
        pool.request("GET", server.url + "/3")
        assert server.ended[0].wait(WAIT)
    assert server.connections == 2
    with ConnectionPool(idle_timeout=0) as pool:
        pool.request("GET", server.url + "/4")
        pool.request("GET", server.url + "/5")
    assert server.connections == 4


def test_idle_drop_is_never_used(pool_server: Callable[..., PoolServer]) -> None:
    server = pool_server(close_after=1)
    with ConnectionPool(retries=0) as pool:
        assert pool.request("GET", server.url + "/a").body == b"GET /a"
        assert server.shut[0].wait(WAIT)  # the server closed it, unannounced
        assert pool.request("POST", server.url + "/b", body=b"1").body == b"POST /b"
        assert server.shut[1].wait(WAIT)
        resp = dugong.eval_coroutine(pool.co_request("POST", server.url + "/c", body=b"2"))
        assert resp.body == b"POST /c"
    assert [len(r) for r in server.requests] == [1, 1, 1]


# ================================================================= leases


def test_lease_returned_when_idle(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        with pool.connection(server.url + "/ignored/path") as conn:
            conn.send_request("PUT", "/up", body=dugong.BodyFollowing(3))
            conn.write(b"abc")
            conn.read_response()
            assert conn.readall() == b"PUT /up"
        assert pool.request("GET", server.url + "/after").body == b"GET /after"
    assert server.connections == 1
    assert server.requests[0][0].body == b"abc"


def test_lease_closed_with_unread_body(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:
        with pool.connection(server.url) as conn:
            conn.send_request("GET", "/unread")
            conn.read_response()
        assert server.ended[0].wait(WAIT)
        assert pool.request("GET", server.url + "/b").body == b"GET /b"
    assert server.connections == 2


class _LeaseUserFailed(Exception):
    """Raised by a test inside a lease (nothing else raises it)."""


def test_lease_closed_after_exception(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:

        def use_then_fail() -> None:
            with pool.connection(server.url) as conn:
                conn.send_request("GET", "/a")
                conn.read_response()
                conn.readall()
                raise _LeaseUserFailed

        with pytest.raises(_LeaseUserFailed):
            use_then_fail()
        assert server.ended[0].wait(WAIT)
        assert pool.request("GET", server.url + "/b").body == b"GET /b"
    assert server.connections == 2


def test_co_acquire_and_release(server: PoolServer) -> None:
    with ConnectionPool(1) as pool:

        def job() -> Generator[PollNeeded, None, bytes]:
            conn = yield from pool.co_acquire(server.url)
            try:
                yield from conn.co_send_request("GET", "/co")
                yield from conn.co_read_response()
                return (yield from conn.co_readall())
            finally:
                pool.release(conn)

        assert eval_coroutines(job(), job(), timeout=WAIT) == [b"GET /co"] * 2
        conn = dugong.eval_coroutine(pool.co_acquire(server.url))
        pool.release(conn)
        with pytest.raises(ValueError, match="not lent"):
            pool.release(conn)
        with pytest.raises(ValueError, match="not lent"):
            pool.release(HTTPConnection("127.0.0.1", server.port))
    assert server.connections == 1


# ================================================================= TLS


def test_tls_with_given_context(
    pool_server: Callable[..., PoolServer],
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    server = pool_server(ssl_context=tls_server_context)
    with ConnectionPool(2, pipeline=3, ssl_context=tls_client_context) as pool:
        urls = [f"{server.url}/tls/{i}" for i in range(8)]
        check_answers(
            eval_coroutines(*(pool.co_request("GET", u) for u in urls), timeout=WAIT), urls
        )
        assert pool.request("GET", f"https://localhost:{server.port}/name").status == 200
    assert server.connections == 3


def test_tls_default_context_verifies(
    pool_server: Callable[..., PoolServer], tls_server_context: ssl.SSLContext
) -> None:
    server = pool_server(ssl_context=tls_server_context)
    with ConnectionPool() as pool:
        with pytest.raises(ssl.SSLCertVerificationError):
            pool.request("GET", server.url + "/x")
        with pytest.raises(ssl.SSLCertVerificationError):
            dugong.eval_coroutine(pool.co_request("GET", server.url + "/x"))
        assert pool._total == 0
    assert server.all_requests() == []


# ================================================================= proxies


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_proxy_with_credentials_plain(server: PoolServer, make_proxy: Any) -> None:
    proxy = make_proxy({"origin.test:80": ("127.0.0.1", server.port)})
    url = f"http://us%40er:p%3Ass@127.0.0.1:{proxy.address[1]}"
    with ConnectionPool(proxy=url) as pool:
        assert pool.request("GET", "http://origin.test/a?b").body == b"GET http://origin.test/a?b"
        assert pool.request("GET", "http://origin.test/c").body == b"GET http://origin.test/c"
    (first, second) = proxy.requests(0)
    assert first.header("Proxy-Authorization") == basic("us@er:p:ss")
    assert second.header("Proxy-Authorization") == basic("us@er:p:ss")


def test_proxy_with_credentials_tls(
    pool_server: Callable[..., PoolServer],
    make_proxy: Any,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    server = pool_server(ssl_context=tls_server_context)
    proxy = make_proxy({f"localhost:{server.port}": ("127.0.0.1", server.port)})
    with ConnectionPool(
        proxy=f"http://me:secret@127.0.0.1:{proxy.address[1]}", ssl_context=tls_client_context
    ) as pool:
        for i in range(2):
            resp = pool.request("GET", f"https://localhost:{server.port}/{i}")
            assert resp.body == body_of("GET", f"/{i}")
    (connect,) = proxy.heads
    assert connect.startswith(f"CONNECT localhost:{server.port} HTTP/1.1\r\n".encode())
    assert f"Proxy-Authorization: {basic('me:secret')}".encode() in connect
    inside = server.requests[0]
    assert [r.target for r in inside] == ["/0", "/1"]
    assert all(r.header("Proxy-Authorization") is None for r in inside)


def test_trust_env(server: PoolServer, make_proxy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = make_proxy({"origin.test:80": ("127.0.0.1", server.port)})
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
        "REQUEST_METHOD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://a:b@127.0.0.1:{proxy.address[1]}")
    monkeypatch.setenv("no_proxy", "localhost, .example.org,127.0.0.1")
    with ConnectionPool(trust_env=True) as pool:
        assert pool.request("GET", "http://origin.test/env").body == b"GET http://origin.test/env"
        assert pool.request("GET", server.url + "/direct").body == b"GET /direct"
    assert proxy.requests(0)[0].header("Proxy-Authorization") == basic("a:b")
    assert [r.target for r in server.all_requests()] == ["http://origin.test/env", "/direct"]
    with ConnectionPool() as pool:  # trust_env=False: the environment is ignored
        assert pool._proxies == {}
    monkeypatch.setenv("https_proxy", "https://no.such:1")
    with pytest.raises(ValueError, match="https_proxy"):
        ConnectionPool(trust_env=True)


def test_no_proxy_rules() -> None:
    assert _bypass("*", "anything.test", 80)
    assert _bypass("example.com", "example.com", 80)
    assert _bypass("example.com", "www.example.com", 80)
    assert _bypass(".Example.com", "www.example.com", 80)
    assert not _bypass("example.com", "badexample.com", 80)
    assert _bypass("example.com:8080", "example.com", 8080)
    assert not _bypass("example.com:8080", "example.com", 80)
    assert _bypass("::1", "::1", 80)
    assert _bypass("[::1]:81", "::1", 81)
    assert not _bypass(" , ", "example.com", 80)


# ================================================================= closing and resources


def test_close(server: PoolServer) -> None:
    pool = ConnectionPool(1)
    pool.request("GET", server.url)
    pool.close()
    assert server.ended[0].wait(WAIT)
    pool.close()  # again: nothing happens
    with pytest.raises(StateError):
        pool.request("GET", server.url)
    with pytest.raises(StateError):
        dugong.eval_coroutine(pool.co_request("GET", server.url))
    with pytest.raises(StateError), pool.connection(server.url):
        pass
    with pytest.raises(StateError):
        dugong.eval_coroutine(pool.co_acquire(server.url))
    assert "closed" in repr(pool)


def test_close_wakes_waiters_and_closes_lent_connections_later(server: PoolServer) -> None:
    pool = ConnectionPool(1, timeout=WAIT)
    conn = dugong.eval_coroutine(pool.co_acquire(server.url))
    conn.send_request("GET", "/lent")
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            pool.request("GET", server.url)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    waiting = pool.co_request("GET", server.url)
    next(waiting)
    while len(pool._waiters) < 2:
        time.sleep(0.001)
    pool.close()
    thread.join(WAIT)
    assert [type(e) for e in errors] == [StateError]
    with pytest.raises(StateError):
        next(waiting)
    conn.read_response()
    assert conn.readall() == b"GET /lent"  # still usable until handed back
    pool.release(conn)
    assert not conn.is_connected
    assert server.ended[0].wait(WAIT)


def test_no_growth_of_descriptors_or_memory(pool_server: Callable[..., PoolServer]) -> None:
    servers = [pool_server(keepalive_requests=50) for _ in range(3)]
    before = open_fds()
    with ConnectionPool(4, pipeline=4, timeout=WAIT) as pool:
        for round_ in range(5):
            urls = [f"{servers[i % 3].url}/{round_}/{i}" for i in range(400)]
            jobs = [pool.co_request("GET", u) for u in urls]
            check_answers(eval_coroutines(*jobs, timeout=WAIT), urls)
            assert open_fds() <= before + 4
            assert len(pool._hosts) <= 3
            assert pool._total <= 4 and not pool._waiters and not pool._closing
        for host in pool._hosts.values():
            for ent in host.entries:
                assert not ent.readq and not ent.send_waiters and ent.inflight == 0
    assert open_fds() == before
    assert sum(len(r) for s in servers for r in s.requests) >= 2000


def test_many_origins_are_forgotten(pool_server: Callable[..., PoolServer]) -> None:
    servers = [pool_server() for _ in range(6)]
    with ConnectionPool(2) as pool:
        for server in servers * 2:
            assert pool.request("GET", server.url + "/o").status == 200
        assert len(pool._hosts) <= 2
        assert pool._total <= 2


def test_module_of_public_names() -> None:
    assert ConnectionPool.__module__ == "dugong" == PoolResponse.__module__
    assert "closed" not in repr(ConnectionPool())


def test_pool_responses_have_every_field_set(server: PoolServer) -> None:
    """The pool fills a PoolResponse without calling its __init__ (spelled out, for
    speed): a field added to the class, or to HTTPResponse, must be set there too."""
    slots = {name for klass in PoolResponse.__mro__ for name in getattr(klass, "__slots__", ())}
    with ConnectionPool(1, pipeline=4) as pool:
        got = [pool.request("GET", server.url + "/a")]
        got += eval_coroutines(*(pool.co_request("GET", f"{server.url}/{i}") for i in range(4)))
    for resp in got:
        for name in slots:
            getattr(resp, name)  # AttributeError if the copy left it out
        assert (resp.status, resp.reason, resp._trailers) == (200, "OK", None)
        assert resp.body == body_of("GET", resp.path) and resp.url == server.url + resp.path
