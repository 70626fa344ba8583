"""eval_coroutines: many co_ generators in one selectors loop, without asyncio."""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Generator
from typing import Any

import pytest

import dugong
from co_helpers import Co, fill, receive, send
from dugong import (
    POLLIN,
    POLLOUT,
    ConnectionTimedOut,
    HTTPConnection,
    PollNeeded,
    eval_coroutines,
)
from servers import body_for


def drain(sock: socket.socket, size: int) -> None:
    """Receive *size* bytes from the blocking *sock*."""
    while size:
        size -= len(sock.recv(min(size, 1 << 20)))


@pytest.fixture(autouse=True, params=["epoll", "selectors"])
def loop_selector(request, monkeypatch):
    """Every test runs on epoll itself (where the platform has it) and on the
    `selectors` module, which eval_coroutines uses elsewhere."""
    if request.param == "epoll" and not hasattr(select, "epoll"):
        pytest.skip("no epoll here")
    if request.param == "selectors":
        monkeypatch.delattr(select, "epoll", raising=False)
    return request.param


@pytest.fixture
def pair() -> Generator[tuple[socket.socket, socket.socket], None, None]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


# --------------------------------------------------------------------- basics


def test_results_in_order_and_immediate_returns(pair):
    a, b = pair

    def immediate(value: Any) -> Co:
        return value
        yield  # pragma: no cover - makes this a generator

    b.sendall(b"hello")
    assert eval_coroutines(immediate(1), receive(a, 5), immediate(None)) == [1, b"hello", None]
    assert eval_coroutines() == []


def test_sender_and_receiver_share_a_socket(pair):
    a, b = pair
    filled = fill(a)
    data = b"y" * 300_000
    sender = send(a, data)
    receiver = receive(a, 3)

    def peer() -> Co:
        # The other end lives in the same loop: it drains what a sent, then answers.
        b.setblocking(False)
        got = yield from receive(b, filled + len(data))
        yield from send(b, b"end")
        return len(got)

    assert eval_coroutines(sender, receiver, peer()) == [len(data), b"end", filled + len(data)]


def test_same_direction_twice_is_refused(pair):
    a, b = pair
    with pytest.raises(RuntimeError, match=r"already waited on for reading .*receive"):
        eval_coroutines(receive(a, 1), receive(a, 1))
    b.setblocking(False)
    res = eval_coroutines(receive(a, 1), receive(a, 1), send(b, b"a"), return_exceptions=True)
    assert res[0] == b"a"
    assert isinstance(res[1], RuntimeError)
    assert res[2] == 1


def test_first_exception_closes_the_others(pair):
    a, _ = pair
    closed = []

    def waits_forever() -> Co:
        try:
            while True:
                yield PollNeeded(a.fileno(), POLLIN)
        finally:
            closed.append(True)

    def fails() -> Co:
        yield PollNeeded(a.fileno(), POLLOUT)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        eval_coroutines(waits_forever(), fails())
    assert closed == [True]


def test_timeout_per_wait(pair):
    a, b = pair

    def slow_writer() -> Co:
        # Each wait is short, the whole run longer than the timeout: no timeout.
        for _ in range(4):
            yield PollNeeded(a.fileno(), POLLOUT)
            time.sleep(0.05)
        return "ok"

    start = time.monotonic()
    res = eval_coroutines(receive(a, 1), slow_writer(), timeout=0.15, return_exceptions=True)
    assert 0.15 <= time.monotonic() - start < 2
    assert isinstance(res[0], ConnectionTimedOut)
    assert "0.15 seconds" in str(res[0])
    assert res[1] == "ok"
    with pytest.raises(ConnectionTimedOut):
        eval_coroutines(receive(a, 1), timeout=0)

    def stalls_later() -> Co:
        yield PollNeeded(a.fileno(), POLLOUT)  # ready at once
        yield PollNeeded(a.fileno(), POLLIN)  # never

    with pytest.raises(ConnectionTimedOut):
        eval_coroutines(stalls_later(), timeout=0.05)
    b.sendall(b"z")
    assert eval_coroutines(receive(a, 1), timeout=0) == [b"z"]


def test_closed_under_the_other_direction_wakes_it(pair):
    a, b = pair
    fill(a)

    def receiver() -> Co:
        yield PollNeeded(a.fileno(), POLLIN)
        a.close()  # as a connection does when the server hangs up
        raise EOFError

    def sender() -> Co:
        while True:
            yield PollNeeded(a.fileno(), POLLOUT)
            a.send(b"more")  # fails once the socket is closed

    b.sendall(b"!")
    start = time.monotonic()
    res = eval_coroutines(receiver(), sender(), timeout=5, return_exceptions=True)
    assert time.monotonic() - start < 3
    assert isinstance(res[0], EOFError)
    assert isinstance(res[1], OSError) and res[1].errno == errno.EBADF


# --------------------------------------------------------------------- HTTP


def test_20_connections_100_requests_each(http_server):
    host, port = http_server.address
    sizes = [(i * 37) % 3000 for i in range(100)]

    def client(n: int) -> Co:
        conn = HTTPConnection(host, port)
        try:
            total = 0
            for size in sizes:
                yield from conn.co_send_request("GET", f"/size/{size}")
                resp = yield from conn.co_read_response()
                body = yield from conn.co_readall()
                assert resp.status == 200 and body == body_for(size)
                total += len(body)
            return n, total
        finally:
            conn.disconnect()

    res = eval_coroutines(*(client(n) for n in range(20)), timeout=10)
    assert res == [(n, sum(sizes)) for n in range(20)]
    assert len(http_server.requests) == 2000


def test_pipelined_sender_and_receiver(http_server):
    conn = HTTPConnection(*http_server.address)
    count = 300

    def sender() -> Co:
        for i in range(count):
            yield from conn.co_send_request("GET", f"/size/{i}")
        return count

    def receiver() -> Co:
        for i in range(count):
            resp = yield from conn.co_read_response()
            assert resp.path == f"/size/{i}"
            assert (yield from conn.co_readall()) == body_for(i)
        return "all in order"

    with conn:
        conn.connect()  # else the receiver would start before any request is pending
        assert eval_coroutines(sender(), receiver(), timeout=10) == [count, "all in order"]


def test_public_and_used_by_the_demo():
    from dugong import _demo

    assert "eval_coroutines" in dugong.__all__
    assert eval_coroutines.__module__ == "dugong"
    assert _demo.drive_all is eval_coroutines


def test_keyboard_interrupt_is_not_returned(pair):
    a, _ = pair
    closed = []

    def waits() -> Co:
        try:
            yield PollNeeded(a.fileno(), POLLIN)
        finally:
            closed.append(True)

    def interrupted() -> Co:
        yield PollNeeded(a.fileno(), POLLOUT)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        eval_coroutines(waits(), interrupted(), return_exceptions=True)
    assert closed == [True]


def test_deadline_resumes_without_readiness(pair):
    a, b = pair
    b.setblocking(False)

    def waits() -> Co:
        yield PollNeeded(a.fileno(), POLLIN, start + 0.1)  # nothing arrives
        first = time.monotonic() - start
        yield PollNeeded(a.fileno(), POLLIN)  # the data comes at 0.15 s
        return first, time.monotonic() - start, a.recv(10)

    def later() -> Co:
        yield PollNeeded(b.fileno(), POLLIN, start + 0.15)  # nothing arrives
        b.send(b"data")
        return time.monotonic() - start

    start = time.monotonic()
    (first, second, data), sent = eval_coroutines(waits(), later(), timeout=0.2)
    assert 0.1 <= first < 0.15 <= sent <= second < 1
    assert data == b"data"

    # A deadline beyond the timeout: the timeout comes first.
    def too_far() -> Co:
        yield PollNeeded(a.fileno(), POLLIN, time.monotonic() + 5)

    start = time.monotonic()
    with pytest.raises(ConnectionTimedOut, match=r"0\.1 seconds \(waiting for PollNeeded"):
        eval_coroutines(too_far(), timeout=0.1)
    assert time.monotonic() - start < 1


def _parked(fd: int, hand: dict[str, Any]) -> PollNeeded:
    """A wait on *fd* that is ended by calling ``hand["poke"](hand["arg"])``."""
    pn = PollNeeded(fd, POLLIN)
    pn._park = lambda poke, arg: hand.update(poke=poke, arg=arg)
    return pn


def _now(fd: int) -> PollNeeded:
    pn = PollNeeded(fd, POLLOUT)
    pn._now = True
    return pn


@pytest.mark.parametrize("closed", [False, True])
def test_a_wait_over_at_once_leaves_its_registration_to_be_taken_over(pair, closed):
    """A generator that yields a `PollNeeded._now` wait is stepped again after the ones
    ready now, its registration kept meanwhile: another generator may take that over
    (and take a new file under the same number, if the first was closed since)."""
    a, b = pair
    c, d = socket.socketpair()
    hand: dict[str, Any] = {}
    steps = []
    sock = {"read": a}

    def first() -> Co:
        b.sendall(b"1")
        yield PollNeeded(a.fileno(), POLLIN)  # registered: reading a
        assert a.recv(1) == b"1"
        if closed:
            fd = a.fileno()
            a.close()
            e, f = socket.socketpair()  # under a's number, the lowest free one
            if e.fileno() != fd:
                e, f = f, e
            assert e.fileno() == fd
            sock.update(read=e, write=f)
        hand["poke"](hand["arg"])  # the second one is ready before it
        yield _now(b.fileno())  # its registration of a kept
        steps.append("first again")
        (sock.get("write") or b).sendall(b"2")  # for the second one
        return "first"

    def second() -> Co:
        yield _parked(d.fileno(), hand)
        steps.append("second")
        yield PollNeeded(sock["read"].fileno(), POLLIN)  # first's registration, taken over
        return sock["read"].recv(1)

    try:
        assert eval_coroutines(first(), second(), timeout=5) == ["first", b"2"]
        assert steps == ["second", "first again"]
    finally:
        for s in (c, d, sock.get("read"), sock.get("write")):
            if s is not None:
                s.close()


def test_expect100_timeout_with_eval_coroutines(scripted_server):
    from servers import Step

    server = scripted_server(
        [
            Step.read_request(body=False),
            Step.read_body(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ]
    )
    conn = HTTPConnection(*server.address)
    conn.expect100_timeout = 0.2

    def exchange() -> Co:
        yield from conn.co_send_request("PUT", "/", body=dugong.BodyFollowing(1), expect100=True)
        interim = yield from conn.co_read_response()
        yield from conn.co_write(b"!")
        resp = yield from conn.co_read_response()
        return interim.status, resp.status, (yield from conn.co_readall())

    with conn:
        assert eval_coroutines(exchange(), timeout=5) == [(100, 200, b"ok")]
