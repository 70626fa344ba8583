"""AioFuture: co_ generators on an asyncio event loop."""

from __future__ import annotations

import asyncio
import errno
import gc
import re
import selectors
import socket
import threading
import time
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

import dugong
from co_helpers import Co, fill, receive, send
from dugong import (
    POLLIN,
    POLLOUT,
    AioFuture,
    ConnectionClosed,
    HTTPConnection,
    PollNeeded,
    StateError,
)
from servers import Step, body_for


def run(coro: Any) -> Any:
    """asyncio.run() in debug mode, with a time limit."""

    async def limited() -> Any:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(limited(), debug=True)


def registered(fd: int) -> int:
    """The selector events the running loop watches on *fd* (0: none)."""
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    try:
        return int(selector.get_key(fd).events)
    except KeyError:
        return 0


@pytest.fixture
def pair() -> Generator[tuple[socket.socket, socket.socket], None, None]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


# --------------------------------------------------------------------- basics


def test_http_request_in_asyncio_run(http_server):
    async def main() -> tuple[int, bytes]:
        with HTTPConnection(*http_server.address) as conn:
            await AioFuture(conn.co_send_request("GET", "/size/200000"))
            resp = await AioFuture(conn.co_read_response())
            body = await AioFuture(conn.co_readall())
            return resp.status, body

    assert run(main()) == (200, body_for(200_000))


def test_https_request(https_server, tls_client_context):
    async def main() -> bytes:
        conn = HTTPConnection("localhost", https_server.port, ssl_context=tls_client_context)
        with conn:
            await AioFuture(conn.co_send_request("GET", "/chunked/70000"))
            resp = await AioFuture(conn.co_read_response())
            assert resp.status == 200
            return await AioFuture(conn.co_readall())

    assert run(main()) == body_for(70000)


def test_first_step_runs_soon_and_results_arrive():
    steps = []

    def immediate() -> Co:
        steps.append("ran")
        return 42
        yield  # pragma: no cover

    async def main() -> None:
        fut = AioFuture(immediate())
        assert isinstance(fut, asyncio.Future)
        assert steps == []  # not run inside the constructor
        await asyncio.sleep(0)
        assert steps == ["ran"]
        assert fut.done() and fut.result() == 42

    run(main())


def test_needs_a_loop_and_a_generator():
    def gen() -> Co:
        return 1
        yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="needs a running event loop"):
        AioFuture(gen())
    with pytest.raises(TypeError, match="co_ generators, not int"):
        AioFuture(1)  # type: ignore[arg-type]

    async def coro() -> None:
        pass

    async def main() -> None:
        c = coro()
        with pytest.raises(TypeError, match="async coroutine"):
            AioFuture(c)  # type: ignore[arg-type]
        await c

    run(main())


def test_no_warnings_in_any_way_of_use(http_server):
    """No DeprecationWarning (nor any other) with asyncio.run, a running loop or loop=."""

    async def fetch() -> bytes:
        with HTTPConnection(*http_server.address) as conn:
            await AioFuture(conn.co_send_request("GET", "/size/10"))
            await AioFuture(conn.co_read_response())
            return await AioFuture(conn.co_readall())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(fetch()) == body_for(10)
        loop = asyncio.new_event_loop()
        try:
            conn = HTTPConnection(*http_server.address)
            loop.run_until_complete(AioFuture(conn.co_send_request("GET", "/size/3"), loop=loop))
            loop.run_until_complete(AioFuture(conn.co_read_response(), loop=loop))
            assert loop.run_until_complete(AioFuture(conn.co_readall(), loop=loop)) == body_for(3)
            conn.disconnect()
        finally:
            loop.close()
    assert [str(w.message) for w in caught] == []


def test_explicit_loop_without_running_it_first(pair):
    a, b = pair
    loop = asyncio.new_event_loop()
    try:
        fut = AioFuture(receive(a, 3), loop=loop)
        assert fut.get_loop() is loop
        b.send(b"abc")
        assert loop.run_until_complete(fut) == b"abc"
    finally:
        loop.close()


# --------------------------------------------------------------------- registrations


def test_reader_and_writer_on_one_fd(pair):
    a, b = pair
    filled = fill(a)

    async def main() -> None:
        receiver = AioFuture(receive(a, 2))
        sender = AioFuture(send(a, b"y" * 100_000))
        await asyncio.sleep(0.01)
        assert registered(a.fileno()) == selectors.EVENT_READ | selectors.EVENT_WRITE
        got = await AioFuture(receive(b, filled + 100_000))
        assert len(got) == filled + 100_000
        assert await sender == 100_000
        assert registered(a.fileno()) == selectors.EVENT_READ  # the writer is gone
        await AioFuture(send(b, b"ok"))
        assert await receiver == b"ok"
        assert registered(a.fileno()) == 0

    run(main())


def test_second_waiter_in_one_direction_is_refused(pair):
    a, b = pair

    async def main() -> None:
        first = AioFuture(receive(a, 1))
        await asyncio.sleep(0)
        second = AioFuture(receive(a, 1))
        with pytest.raises(
            RuntimeError,
            match=r"fd \d+ is already waited on for reading "
            r"by another AioFuture \(receive\)",
        ):
            await second
        b.send(b"!")
        assert await first == b"!"  # the first one was left alone
        fill(a)
        writer = AioFuture(send(a, b"z"))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="for writing"):
            await AioFuture(send(a, b"z"))
        writer.cancel()

    run(main())


def test_registration_kept_for_the_same_wait_and_dropped_when_it_changes(pair):
    a, b = pair
    seen = []

    def watcher() -> Co:
        fd = a.fileno()
        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        wait = PollNeeded(fd, POLLIN)
        for _ in range(3):
            yield wait
            a.recv(1)
            key = selector.get_key(fd)
            seen.append((key.events, key.data[0]))
        yield PollNeeded(fd, POLLIN)  # an equal new object: registered anew
        a.recv(1)
        key = selector.get_key(fd)
        seen.append((key.events, key.data[0]))
        yield PollNeeded(fd, POLLOUT)  # another direction: reader dropped
        key = selector.get_key(fd)
        seen.append((key.events, key.data[0]))
        return "done"

    async def main() -> None:
        fut = AioFuture(watcher())
        for _ in range(4):
            await asyncio.sleep(0.01)
            b.send(b"1")
        assert await fut == "done"
        assert registered(a.fileno()) == 0

    run(main())
    handles = {handle for events, handle in seen[:3]}
    assert len(handles) == 1  # one reader handle for the three waits on one object
    assert seen[3][1] not in handles  # (the equal object's fd could be another file)
    assert {events for events, handle in seen[:4]} == {selectors.EVENT_READ}
    assert seen[4] == (selectors.EVENT_WRITE, None)


def test_fd_closed_under_the_other_direction_wakes_it(pair):
    a, b = pair
    fill(a)

    def receiver() -> Co:
        yield PollNeeded(a.fileno(), POLLIN)
        a.close()  # as a connection does when the server hangs up
        raise EOFError("server gone")

    def sender() -> Co:
        while True:
            yield PollNeeded(a.fileno(), POLLOUT)
            a.send(b"more")

    async def main() -> None:
        r, s = AioFuture(receiver()), AioFuture(sender())
        await asyncio.sleep(0.01)
        b.send(b"!")
        with pytest.raises(EOFError):
            await r
        with pytest.raises(OSError) as info:
            await asyncio.wait_for(s, 3)
        assert info.value.errno == errno.EBADF  # not a timeout

    run(main())


# ------------------------------------------------- a connection's registrations kept


def reader_handle(fd: int) -> Any:
    """The callback the running loop calls when *fd* is readable (None: none)."""
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    try:
        return selector.get_key(fd).data[0]
    except KeyError:
        return None


async def get(conn: HTTPConnection, path: str) -> bytes:
    """One GET on *conn*, each step an AioFuture of its own."""
    await AioFuture(conn.co_send_request("GET", path))
    resp = await AioFuture(conn.co_read_response())
    assert resp.status == 200
    return await AioFuture(conn.co_readall())


async def until(condition: Callable[[], bool], what: str) -> None:
    """Until *condition()* holds, 5 s at most (then the test fails, saying *what*)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not after 5 s: {what}")


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def answered_late(n: int) -> tuple[list[threading.Event], list[Step]]:
    """A script of *n* answers, each sent once its event is set; then the connection
    stays open until the client closes it."""
    answer = [threading.Event() for _ in range(n)]
    steps = [s for go in answer for s in (Step.read_request(), Step.wait_event(go), Step.send(OK))]
    return answer, [*steps, Step.drain()]


async def get_waiting(conn: HTTPConnection, go: threading.Event) -> Any:
    """A GET whose answer comes (*go*) only once the response's future waits for it;
    the loop's reader callback for the connection then."""
    await AioFuture(conn.co_send_request("GET", "/"))
    reading = AioFuture(conn.co_read_response())
    fd = conn._tr.fd  # type: ignore[union-attr]

    def waits() -> bool:  # (the callback may be an earlier one, kept: is it this future's?)
        handle = reader_handle(fd)
        return handle is not None and handle._callback.__self__.fut is reading

    await until(waits, "the read waits")
    handle = reader_handle(fd)
    go.set()
    assert (await reading).status == 200
    assert await AioFuture(conn.co_readall()) == b"ok"
    assert registered(fd) == selectors.EVENT_READ  # idle, kept for the next one
    return handle


def test_connection_keeps_its_registration_across_futures(scripted_server):
    answer, script = answered_late(5)
    server = scripted_server(script)

    async def main() -> None:
        conn = HTTPConnection(*server.address)
        handles = [await get_waiting(conn, go) for go in answer]
        fd = conn._tr.fd  # type: ignore[union-attr]

        def waits_to_write() -> Co:
            yield conn._tr.wait_out  # type: ignore[union-attr]
            return True

        assert await AioFuture(waits_to_write())
        assert registered(fd) == selectors.EVENT_READ  # a writer is not kept: it would fire
        assert len(set(handles)) == 1  # registered once for the five responses
        conn.disconnect()
        assert registered(fd) == 0

    run(main())


def test_kept_registration_goes_when_the_server_closes_the_idle_connection(scripted_server):
    answer, script = answered_late(1)
    hang_up = threading.Event()
    server = scripted_server(
        [
            [*script[:-1], Step.wait_event(hang_up), Step.close()],  # no "Connection: close"
            [Step.read_request(), Step.send(OK)],
        ]
    )

    async def main() -> None:
        conn = HTTPConnection(*server.address)
        await get_waiting(conn, answer[0])
        fd = conn._tr.fd  # type: ignore[union-attr]
        hang_up.set()
        await until(
            lambda: not registered(fd), "fd unregistered"
        )  # the EOF fired the idle callback, which went
        assert await get(conn, "/") == b"ok"  # on a new connection: the drop was seen
        conn.disconnect()

    run(main())
    assert server.connections == 2


def test_closing_or_dropping_a_connection_unregisters_it(scripted_server):
    answer, script = answered_late(2)
    server = scripted_server([[*script[:3], Step.drain()], script[3:]])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        conn = HTTPConnection(*server.address)
        await get_waiting(conn, answer[0])
        fd = conn._tr.fd  # type: ignore[union-attr]
        conn.disconnect()
        assert registered(fd) == 0

        # A socket that gets the fd number next is asyncio's own business now: a
        # registration left behind would make the loop think that it watches it.
        spares = []
        while True:
            a, b = socket.socketpair()
            if fd in (a.fileno(), b.fileno()):
                break
            spares.append((a, b))
            assert len(spares) < 100, "the fd number was not given out again"
        for pair in spares:
            for sock in pair:
                sock.close()
        mine, theirs = (a, b) if a.fileno() == fd else (b, a)
        with mine, theirs:
            mine.setblocking(False)
            receiving = asyncio.ensure_future(loop.sock_recv(mine, 2))
            await asyncio.sleep(0.01)  # sock_recv found nothing and registered fd
            theirs.send(b"hi")
            assert await asyncio.wait_for(receiving, 5) == b"hi"

        # Garbage without disconnect(): the registration goes before the socket closes.
        conn = HTTPConnection(*server.address)
        await get_waiting(conn, answer[1])
        fd = conn._tr.fd  # type: ignore[union-attr]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del conn
            gc.collect()
        assert registered(fd) == 0

    run(main())


def test_disconnect_under_a_waiting_future_ends_it(scripted_server):
    server = scripted_server([Step.read_request(), Step.drain()])  # no answer

    async def main() -> None:
        conn = HTTPConnection(*server.address)
        await AioFuture(conn.co_send_request("GET", "/"))
        reading = AioFuture(conn.co_read_response())
        await asyncio.sleep(0.01)
        fd = conn._tr.fd  # type: ignore[union-attr]
        assert registered(fd) == selectors.EVENT_READ
        conn.disconnect()
        assert registered(fd) == 0
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(reading, 5)  # resumed, not left waiting forever

    run(main())


def test_connection_outlives_a_loop(scripted_server):
    answer, script = answered_late(2)
    server = scripted_server(script)
    conn = HTTPConnection(*server.address)
    run(get_waiting(conn, answer[0]))  # that loop closes with the callback kept
    run(get_waiting(conn, answer[1]))  # a new loop registers anew
    conn.disconnect()  # and the first loop's callback, long gone, is no trouble
    server.wait_done()
    assert server.connections == 1


# --------------------------------------------------------------------- cancellation


def test_cancel_closes_the_generator_and_removes_its_callbacks(pair):
    a, b = pair
    fill(a)
    events = []

    def waits(direction: int) -> Co:
        try:
            yield PollNeeded(a.fileno(), direction)
            events.append("resumed")
        finally:
            events.append(f"closed {direction}")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fd = a.fileno()
        reader, writer = AioFuture(waits(POLLIN)), AioFuture(waits(POLLOUT))
        await asyncio.sleep(0)
        assert registered(fd) == selectors.EVENT_READ | selectors.EVENT_WRITE
        assert reader.cancel()
        assert events == [f"closed {POLLIN}"]  # at once, not at the next loop iteration
        assert registered(fd) == selectors.EVENT_WRITE  # the other future keeps its own
        assert not loop.remove_reader(fd)
        assert reader.cancelled() and not reader.cancel()
        writer.cancel()
        assert registered(fd) == 0
        assert not loop.remove_writer(fd)
        b.send(b"data")  # nothing left to call
        await asyncio.sleep(0.01)
        assert "resumed" not in events

        # Cancelled before its first step: the generator never runs.
        never = AioFuture(waits(POLLIN))
        never.cancel()
        await asyncio.sleep(0)
        assert events == [f"closed {POLLIN}", f"closed {POLLOUT}"]

        # Through an awaiting task and a timeout.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(AioFuture(waits(POLLOUT)), 0.05)
        assert events[-1] == f"closed {POLLOUT}"
        assert registered(fd) == 0

    run(main())


def test_cancel_from_inside_the_generator(pair):
    a, _ = pair
    box: list[AioFuture[Any]] = []
    closed = []

    def cancels_itself() -> Co:
        try:
            box[0].cancel()
            yield PollNeeded(a.fileno(), POLLIN)
        finally:
            closed.append(True)

    async def main() -> None:
        fut = AioFuture(cancels_itself())
        box.append(fut)
        with pytest.raises(asyncio.CancelledError):
            await fut
        assert closed == [True]
        assert registered(a.fileno()) == 0

    run(main())


def test_cancelled_read_breaks_the_connection_until_reset(scripted_server):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    server = scripted_server(
        [
            # The rest of the body never comes: only the timeout ends the wait (a close
            # 0.5 s later, as before, would have ended it on a slow enough machine).
            [Step.read_request(), Step.send(head + b"01234"), Step.stop_reading()],
            [Step.read_request(), Step.send(head + b"abcdefghij")],
        ]
    )

    async def main() -> bytes:
        conn = HTTPConnection(*server.address)
        await AioFuture(conn.co_send_request("GET", "/"))
        await AioFuture(conn.co_read_response())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(AioFuture(conn.co_readall()), 0.1)
        with pytest.raises(StateError, match="reset"):
            await AioFuture(conn.co_read(5))
        conn.reset()
        await AioFuture(conn.co_send_request("GET", "/"))
        await AioFuture(conn.co_read_response())
        body = await AioFuture(conn.co_readall())
        conn.disconnect()
        return body

    assert run(main()) == b"abcdefghij"


# --------------------------------------------------------------------- HTTP at scale


def test_50_connections_with_gather(http_server):
    async def fetch(i: int) -> bytes:
        with HTTPConnection(*http_server.address) as conn:
            await AioFuture(conn.co_send_request("GET", f"/size/{1000 * i}"))
            resp = await AioFuture(conn.co_read_response())
            assert resp.status == 200
            return await AioFuture(conn.co_readall())

    async def main() -> list[bytes]:
        return await asyncio.gather(*(fetch(i) for i in range(50)))

    assert run(main()) == [body_for(1000 * i) for i in range(50)]
    assert len(http_server.requests) == 50


def pipeline(conn: HTTPConnection, count: int) -> tuple[Co, Co]:
    def sender() -> Co:
        for i in range(count):
            yield from conn.co_send_request("GET", f"/size/{i % 100}")
        return count

    def receiver() -> Co:
        ok = 0
        for i in range(count):
            resp = yield from conn.co_read_response()
            body = yield from conn.co_readall()
            ok += resp.path == f"/size/{i % 100}" and body == body_for(i % 100)
        return ok

    return sender(), receiver()


def test_pipeline_of_1000_requests(http_server):
    async def main() -> tuple[int, int, float]:
        with HTTPConnection(*http_server.address) as conn:
            await AioFuture(conn.co_connect())
            sender, receiver = pipeline(conn, 1000)
            start = time.perf_counter()
            sent, ok = await asyncio.gather(AioFuture(sender), AioFuture(receiver))
            return sent, ok, time.perf_counter() - start

    sent, ok, elapsed = run(main())
    assert (sent, ok) == (1000, 1000)
    print(f"pipeline: 1000 requests in {elapsed:.3f} s, {1000 / elapsed:.0f} requests/s")


def test_public_name():
    assert "AioFuture" in dugong.__all__
    assert AioFuture.__module__ == "dugong"
    fut_type: type = AioFuture[int]  # generic like asyncio.Future
    assert fut_type is not None


def test_interrupted_pipeline_raises_connection_closed(scripted_server):
    # The server answers one of two pipelined requests, then hangs up.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = scripted_server(
        [Step.read_request(), Step.read_request(), Step.send(head), Step.close()]
    )

    async def main() -> list[Any]:
        conn = HTTPConnection(*server.address)
        await AioFuture(conn.co_send_request("GET", "/1"))
        await AioFuture(conn.co_send_request("GET", "/2"))

        def receiver() -> Co:
            bodies = []
            for _ in range(2):
                yield from conn.co_read_response()
                bodies.append((yield from conn.co_readall()))
            return bodies

        return await asyncio.gather(AioFuture(receiver()), return_exceptions=True)

    (res,) = run(main())
    assert isinstance(res, ConnectionClosed)


def test_both_directions_in_one_wait(pair):
    a, _ = pair

    def either() -> Co:
        yield PollNeeded(a.fileno(), POLLIN | POLLOUT)  # writable at once
        return registered(a.fileno())

    async def main() -> int:
        return await AioFuture(either())

    # Seen from inside the step that resumed it: still registered for both.
    assert run(main()) == selectors.EVENT_READ | selectors.EVENT_WRITE


def test_generator_raising_cancelled_or_keyboard_interrupt():
    def raises(exc: BaseException) -> Co:
        raise exc
        yield  # pragma: no cover

    async def main() -> None:
        fut = AioFuture(raises(asyncio.CancelledError()))
        with pytest.raises(asyncio.CancelledError):
            await fut
        assert fut.cancelled()

    run(main())

    box: list[AioFuture[Any]] = []

    async def interrupted() -> None:
        box.append(AioFuture(raises(KeyboardInterrupt())))
        await box[0]

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(interrupted())
    assert isinstance(box[0].exception(), KeyboardInterrupt)


def test_generator_refusing_to_close_is_reported(pair):
    a, _ = pair

    def stubborn() -> Co:
        try:
            yield PollNeeded(a.fileno(), POLLIN)
        finally:
            yield PollNeeded(a.fileno(), POLLIN)  # wrong: a generator must not wait here

    async def main() -> list[dict[str, Any]]:
        reports: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reports.append(ctx))
        fut = AioFuture(stubborn())
        await asyncio.sleep(0)
        assert fut.cancel()
        assert registered(a.fileno()) == 0
        return reports

    (report,) = run(main())
    assert re.fullmatch(r"closing \S+\.stubborn after cancellation failed", report["message"])
    assert isinstance(report["exception"], RuntimeError)


# --------------------------------------------------------------------- deadlines


def test_deadline_resumes_without_readiness(pair):
    a, b = pair
    resumed = []
    start = 0.0  # when main() starts the future: its sleeps count from there too

    def waits() -> Co:
        yield PollNeeded(a.fileno(), POLLIN, start + 0.15)  # nothing arrives
        resumed.append(time.monotonic() - start)
        yield PollNeeded(a.fileno(), POLLIN, time.monotonic() + 0.5)  # data comes first
        resumed.append(time.monotonic() - start)
        got = a.recv(10)
        yield PollNeeded(a.fileno(), POLLIN)  # no deadline: the old timer must not fire
        resumed.append(time.monotonic() - start)
        return got + a.recv(10)

    async def main() -> bytes:
        nonlocal start
        start = time.monotonic()
        fut = AioFuture(waits())
        await asyncio.sleep(0.3)
        b.send(b"x")
        await asyncio.sleep(0.4)  # past the second deadline
        assert not fut.done()
        b.send(b"y")
        return await fut

    assert run(main()) == b"xy"
    first, second, third = resumed
    assert 0.149 <= first < 0.3 <= second < 0.7 <= third


def test_expect100_timeout_through_aiofuture(scripted_server):
    server = scripted_server(
        [
            Step.read_request(body=False),  # never answers 100 Continue
            Step.read_body(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ]
    )

    async def main() -> tuple[int, float, int, bytes]:
        with HTTPConnection(*server.address) as conn:
            conn.expect100_timeout = 0.2
            await AioFuture(
                conn.co_send_request("PUT", "/up", body=dugong.BodyFollowing(3), expect100=True)
            )
            start = time.monotonic()
            interim = await AioFuture(conn.co_read_response())
            waited = time.monotonic() - start
            await AioFuture(conn.co_write(b"abc"))
            resp = await AioFuture(conn.co_read_response())
            return interim.status, waited, resp.status, await AioFuture(conn.co_readall())

    status, waited, final, body = run(main())
    assert status == 100 and 0.18 <= waited < 2
    assert (final, body) == (200, b"ok")
    assert server.requests[0][0].body == b"abc"


def test_loop_set_for_the_thread_is_used_outside_a_running_loop(http_server: Any) -> None:
    # dugong 3.x programs create futures before run_until_complete().
    import dugong

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        conn = dugong.HTTPConnection(http_server.host, http_server.port)
        fut = AioFuture(conn.co_send_request("GET", "/size/3"))
        assert fut.get_loop() is loop
        loop.run_until_complete(fut)
        resp = loop.run_until_complete(AioFuture(conn.co_read_response()))
        assert resp.status == 200
        assert loop.run_until_complete(AioFuture(conn.co_readall())) == body_for(3)
        conn.disconnect()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
