"""run_async on asyncio and trio (through anyio)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

import anyio
import pytest

import dugong
from dugong import POLLIN, BodyFollowing, HTTPConnection, PollNeeded, StateError, run_async
from servers import Step, body_for

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


async def test_get(http_server):
    conn = HTTPConnection(http_server.host, http_server.port)
    await run_async(conn.co_send_request("GET", "/size/70000"))
    resp = await run_async(conn.co_read_response())
    assert resp.status == 200
    assert await run_async(conn.co_readall()) == body_for(70000)
    conn.disconnect()


async def test_pipeline_sender_and_receiver_tasks(http_server):
    conn = HTTPConnection(http_server.host, http_server.port)
    await run_async(conn.co_connect())
    count = 1000
    got = []

    async def sender():
        for i in range(count):
            await run_async(conn.co_send_request("GET", f"/size/{i % 20}"))

    async def receiver():
        while len(got) < count:
            if not conn.response_pending():
                await anyio.sleep(0.001)
                continue
            await run_async(conn.co_read_response())
            got.append(await run_async(conn.co_readall()))

    start = time.monotonic()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            tg.start_soon(receiver)
    elapsed = time.monotonic() - start
    assert got == [body_for(i % 20) for i in range(count)]
    assert elapsed < 60
    conn.disconnect()


async def test_fifty_connections(http_server):
    results = {}

    async def fetch(i):
        conn = HTTPConnection(http_server.host, http_server.port)
        await run_async(conn.co_send_request("GET", f"/chunked/{1000 + i}"))
        await run_async(conn.co_read_response())
        results[i] = await run_async(conn.co_readall())
        conn.disconnect()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(fetch, i)
    assert results == {i: body_for(1000 + i) for i in range(50)}


async def test_expect100_upload(http_server):
    conn = HTTPConnection(http_server.host, http_server.port)
    data = body_for(100_000)
    await run_async(
        conn.co_send_request("PUT", "/echo", body=BodyFollowing(len(data)), expect100=True)
    )
    assert (await run_async(conn.co_read_response())).status == 100
    await run_async(conn.co_write(data))
    assert (await run_async(conn.co_read_response())).status == 200
    assert await run_async(conn.co_readall()) == data
    conn.disconnect()


async def test_expect100_deadline(scripted_server):
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.read_body(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.expect100_timeout = 0.2
    await run_async(conn.co_send_request("PUT", "/", body=BodyFollowing(3), expect100=True))
    start = time.monotonic()
    resp = await run_async(conn.co_read_response(), timeout=10)
    assert resp.status == 100 and 0.15 < time.monotonic() - start < 5
    await run_async(conn.co_write(b"abc"))
    assert (await run_async(conn.co_read_response())).status == 200
    conn.disconnect()


def _stalling_server(scripted_server):
    return scripted_server(
        [
            [
                Step.read_request(),
                Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000),
                Step.stop_reading(),
            ],
            [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
        ]
    )


async def test_cancel_in_the_middle_of_a_body(scripted_server):
    srv = _stalling_server(scripted_server)
    conn = HTTPConnection("127.0.0.1", srv.port)
    await run_async(conn.co_send_request("GET", "/"))
    await run_async(conn.co_read_response())
    assert await run_async(conn.co_read(5000)) == b"x" * 1000
    with anyio.move_on_after(0.05) as scope:  # nothing more comes: cancelled in the wait
        await run_async(conn.co_read(5000))
    assert scope.cancelled_caught
    with pytest.raises(StateError, match="reset"):
        await run_async(conn.co_read(10))
    # No waiter is left behind: a new wait on the same fd (same direction) is accepted.
    fd = conn._tr.fd
    with anyio.move_on_after(0.05):
        await anyio.wait_readable(fd)
    conn.reset()
    await run_async(conn.co_send_request("GET", "/again"))
    await run_async(conn.co_read_response())
    assert await run_async(conn.co_readall()) == b"ok"
    conn.disconnect()


async def test_task_cancel_closes_generator(scripted_server):
    srv = _stalling_server(scripted_server)
    conn = HTTPConnection("127.0.0.1", srv.port)
    await run_async(conn.co_send_request("GET", "/"))
    await run_async(conn.co_read_response())
    started = []

    def readall():
        started.append(True)
        return (yield from conn.co_readall())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_async, readall())
        while not started:  # (under asyncio, the first step comes at the next turn)
            await anyio.sleep(0)
        await anyio.wait_all_tasks_blocked()  # the read waits for the server
        tg.cancel_scope.cancel()
    with pytest.raises(StateError):
        await run_async(conn.co_readall())
    conn.reset()


async def test_cancel_before_the_first_step_leaves_the_connection_alone(http_server):
    conn = HTTPConnection(http_server.host, http_server.port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_async, conn.co_send_request("GET", "/size/10"))
        tg.cancel_scope.cancel()  # before the task ran: nothing was sent
    await run_async(conn.co_send_request("GET", "/size/20"))
    assert (await run_async(conn.co_read_response())).length == 20
    assert await run_async(conn.co_readall()) == body_for(20)
    conn.disconnect()


def test_without_anyio(monkeypatch):
    monkeypatch.setitem(sys.modules, "anyio", None)
    coro = run_async(iter(()))  # type: ignore[arg-type]
    with pytest.raises(ImportError, match=r"dugong\[async\]"):
        coro.send(None)
    coro.close()


def test_asyncio_without_anyio(monkeypatch, http_server):
    """In an asyncio task, run_async uses asyncio's own callbacks: anyio is not needed."""
    monkeypatch.setitem(sys.modules, "anyio", None)
    conn = HTTPConnection(http_server.host, http_server.port)

    async def main():
        await run_async(conn.co_send_request("GET", "/size/70000"))
        resp = await run_async(conn.co_read_response(), timeout=5)
        return resp.status, await run_async(conn.co_readall(), timeout=5)

    assert asyncio.run(main()) == (200, body_for(70000))
    conn.disconnect()


async def test_time_limit_is_per_wait(anyio_backend):
    """A generator that keeps making progress more slowly than the limit in total, but
    faster than it between two steps, is not timed out."""
    a, b = socket.socketpair()
    a.setblocking(False)

    def drip():
        for _ in range(4):
            time.sleep(0.1)
            b.send(b"x")

    def slow_reader():
        pn = PollNeeded(a.fileno(), POLLIN)
        got = b""
        while len(got) < 4:
            yield pn
            got += a.recv(10)
        return got

    thread = threading.Thread(target=drip)
    thread.start()
    try:
        assert await run_async(slow_reader(), timeout=0.3) == b"xxxx"
    finally:
        thread.join()
        a.close()
        b.close()


def test_import_dugong_does_not_import_anyio():
    import subprocess

    code = "import sys, dugong; print('anyio' in sys.modules, 'asyncio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
    assert dugong.run_async is run_async
