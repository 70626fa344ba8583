"""Idle-drop recovery and the 100-continue deadline (expect100_timeout)."""

from __future__ import annotations

import select
import threading
import time

import pytest

import dugong
from checks import assert_not_sent
from dugong import BodyFollowing, HTTPConnection, PollNeeded
from servers import Step

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
OK_2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def roundtrip(drive, conn, method="GET", path="/", body=None):
    drive(conn, "send_request", method, path, body=body)
    resp = drive(conn, "read_response")
    return resp.status, drive(conn, "readall")


def server_has_spoken(conn):
    """Wait until what the server sent on the idle connection (a close, a reset, bytes)
    has arrived at the client's socket."""
    assert select.select([conn._tr.fd], [], [], 10)[0], "nothing came from the server"


@pytest.mark.parametrize("ending", [Step.close(), Step.reset(), Step.shutdown_write()])
def test_idle_connection_dropped_by_server(drive, scripted_server, ending):
    idle = threading.Event()
    srv = scripted_server(
        [
            [Step.read_request(), Step.send(OK_3), Step.wait_event(idle), ending],
            [Step.read_request(), Step.send(OK_2)],
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    assert roundtrip(drive, conn) == (200, b"abc")
    idle.set()  # the server drops the connection, now idle
    server_has_spoken(conn)
    assert roundtrip(drive, conn, "PUT", "/once", body=b"payload") == (200, b"ok")
    srv.wait_done()
    # The second request went out exactly once, on the new connection.
    assert srv.connections == 2
    assert [r.path for r in srv.requests[0]] == ["/"]
    assert [(r.path, r.body) for r in srv.requests[1]] == [("/once", b"payload")]
    conn.disconnect()


def test_unsolicited_408_is_never_an_answer(drive, scripted_server):
    idle = threading.Event()
    srv = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(OK_3),
                Step.wait_event(idle),
                Step.send(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"),
                Step.drain(2),
            ],
            [Step.read_request(), Step.send(OK_2)],
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    assert roundtrip(drive, conn) == (200, b"abc")
    idle.set()  # the server sends its 408 on the idle connection
    server_has_spoken(conn)
    assert roundtrip(drive, conn, path="/second") == (200, b"ok")
    srv.wait_done()
    assert srv.requests[1][0].path == "/second"
    conn.disconnect()


def test_announced_close_still_raises(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"),
            Step.close(),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    assert roundtrip(drive, conn) == (200, b"x")
    assert_not_sent(drive, conn, "GET", "/")
    assert srv.connections == 1


def test_idle_connection_still_open_is_reused(drive, scripted_server):
    srv = scripted_server([Step.read_request(), Step.send(OK_3)] * 2)
    conn = HTTPConnection("127.0.0.1", srv.port)
    assert roundtrip(drive, conn) == (200, b"abc")
    # Nothing arrived meanwhile: the connection is idle and open, and used again.
    assert not select.select([conn._tr.fd], [], [], 0)[0]
    assert roundtrip(drive, conn) == (200, b"abc")
    assert srv.connections == 1
    conn.disconnect()


# -- expect100_timeout: drivers that honour PollNeeded.deadline ----------------------------


def _poll_loop(gen):
    """A hand-written loop that uses PollNeeded.poll()."""
    try:
        pn = next(gen)
        while True:
            assert pn.poll(10)
            pn = gen.send(None)
    except StopIteration as exc:
        return exc.value


DRIVERS = {
    "blocking": lambda conn, name, *a: getattr(conn, name)(*a),
    "eval_coroutine": lambda conn, name, *a: dugong.eval_coroutine(
        getattr(conn, "co_" + name)(*a), 10
    ),
    "poll": lambda conn, name, *a: _poll_loop(getattr(conn, "co_" + name)(*a)),
}


@pytest.fixture(params=sorted(DRIVERS))
def run(request):
    return DRIVERS[request.param]


def _upload(run, conn, data=b"0123456789"):
    run(conn, "send_request", "PUT", "/up", None, BodyFollowing(len(data)), True)
    start = time.monotonic()
    first = run(conn, "read_response")
    waited = time.monotonic() - start
    return first, waited


def test_expect100_timeout_server_never_answers(run, scripted_server):
    srv = scripted_server([Step.read_request(body=False), Step.read_body(), Step.send(OK_2)])
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.timeout = 10
    conn.expect100_timeout = 0.1
    first, waited = _upload(run, conn)
    assert (first.status, first.reason, len(first.headers), first.length) == (
        100,
        "Continue",
        0,
        0,
    )
    assert 0.09 <= waited < 2
    run(conn, "write", b"0123456789")
    final = run(conn, "read_response")
    assert final.status == 200
    assert run(conn, "readall") == b"ok"
    srv.wait_done()
    assert srv.requests[0][0].body == b"0123456789"
    conn.disconnect()


def test_expect100_late_100_is_skipped(run, scripted_server):
    deadline_passed = threading.Event()
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.wait_event(deadline_passed),
            Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step.read_body(),
            Step.send(OK_2),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.timeout = 10
    conn.expect100_timeout = 0.1
    first, _ = _upload(run, conn)
    assert first.status == 100 and len(first.headers) == 0
    deadline_passed.set()  # the real 100 Continue comes only now
    run(conn, "write", b"0123456789")
    final = run(conn, "read_response")
    assert (final.status, run(conn, "readall")) == (200, b"ok")
    conn.disconnect()


def test_expect100_417_before_deadline(run, scripted_server):
    srv = scripted_server(
        [
            [
                Step.read_request(body=False),
                Step.send(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"),
                Step.expect_eof(),
            ],
            [Step.read_request(), Step.send(OK_3)],
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.timeout = 10
    conn.expect100_timeout = 5
    first, waited = _upload(run, conn)
    assert first.status == 417 and waited < 4
    assert run(conn, "readall") == b""
    run(conn, "send_request", "GET", "/after")
    assert run(conn, "read_response").status == 200
    assert run(conn, "readall") == b"abc"
    srv.wait_done()
    assert b"0123456789" not in srv.received[0]
    conn.disconnect()


def test_expect100_final_answer_after_deadline(run, scripted_server):
    deadline_passed = threading.Event()
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.wait_event(deadline_passed),
            Step.send(
                b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nnope"
            ),
            Step.drain(1),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.timeout = 10
    conn.expect100_timeout = 0.1
    first, _ = _upload(run, conn)
    assert first.status == 100
    deadline_passed.set()  # the refusal comes only now
    run(conn, "write", b"0123456789")
    final = run(conn, "read_response")
    assert (final.status, run(conn, "readall")) == (413, b"nope")


def test_expect100_without_timeout_waits(scripted_server):
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.sleep(0.3),
            Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step.read_body(),
            Step.send(OK_2),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.send_request("PUT", "/", body=BodyFollowing(1), expect100=True)
    start = time.monotonic()
    assert conn.read_response().status == 100
    assert time.monotonic() - start >= 0.25
    conn.write(b"x")
    assert conn.read_response().status == 200
    conn.readall()
    conn.disconnect()


def test_pollneeded_deadline_api():
    pn = PollNeeded(0, dugong.POLLIN)
    assert pn.deadline is None
    timed = PollNeeded(0, dugong.POLLIN, 5.0)
    assert timed.deadline == 5.0
    assert tuple(timed) == (0, dugong.POLLIN)
