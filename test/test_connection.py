"""HTTPConnection against real servers: requests, responses, bodies, pipelining, state."""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import dugong
from checks import assert_not_sent, write_times
from dugong import (
    BodyFollowing,
    ConnectionClosed,
    ExcessBodyData,
    HTTPConnection,
    StateError,
)
from servers import Step, body_for, once_waiting

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"


@pytest.fixture
def conn(http_server):
    with HTTPConnection(http_server.host, http_server.port) as c:
        c.timeout = 10
        yield c


def get(drive, conn, path, **kw):
    drive(conn, "send_request", "GET", path, **kw)
    resp = drive(conn, "read_response")
    return resp, drive(conn, "readall")


@pytest.mark.parametrize("size", [0, 1, 1000, 200_000])
def test_get_sizes(drive, conn, size):
    resp, body = get(drive, conn, f"/size/{size}")
    assert (resp.status, resp.reason, resp.method) == (200, "OK", "GET")
    assert resp.path == f"/size/{size}"
    assert resp.length == size
    assert resp.headers["content-length"] == str(size)
    assert body == body_for(size)
    assert not conn.response_pending()


def test_keepalive_reuses_connection(drive, scripted_server):
    srv = scripted_server([Step.read_request(), Step.send(OK_3)] * 4)
    conn = HTTPConnection("127.0.0.1", srv.port)
    for _ in range(4):
        assert get(drive, conn, "/")[1] == b"abc"
    assert srv.connections == 1
    conn.disconnect()


def test_automatic_headers(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(OK_3),
            Step.read_request(),
            Step.send(OK_3),
            Step.read_request(),
            Step.send(OK_3),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/a")
    drive(conn, "send_request", "PUT", "/b", body=b"hello")
    drive(
        conn,
        "send_request",
        "GET",
        "/c",
        headers={"accept-encoding": "gzip", "Connection": "keep-alive, x", "HOST": "other"},
    )
    for _ in range(3):
        drive(conn, "read_response")
        assert drive(conn, "readall") == b"abc"
    srv.wait_done()
    a, b, c = srv.requests[0]
    assert a.header("Host") == f"127.0.0.1:{srv.port}"
    assert a.header("Accept-Encoding") == "identity"
    assert a.header("Connection") == "keep-alive"
    assert a.header("Content-Length") == "0"
    assert b.header("Content-Length") == "5"
    assert b.header("Content-MD5") == base64.b64encode(hashlib.md5(b"hello").digest()).decode()
    assert b.body == b"hello"
    assert c.header_all("Accept-Encoding") == ["gzip"]
    assert c.header_all("Connection") == ["keep-alive, x"]
    assert c.header_all("Host") == ["other"]
    conn.disconnect()


def test_host_header_default_port_and_ipv6():
    assert HTTPConnection("example.org")._host_field == "example.org"
    assert HTTPConnection("example.org", 8080)._host_field == "example.org:8080"
    assert HTTPConnection("::1", 80)._host_field == "[::1]"
    assert HTTPConnection("::1", 81)._host_field == "[::1]:81"
    assert HTTPConnection("x", ssl_context=object()).port == 443


def test_caller_content_md5_kept(drive, scripted_server):
    srv = scripted_server([Step.read_request(), Step.send(OK_3)])
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(
        conn, "send_request", "POST", "/", body=bytearray(b"xy"), headers={"content-md5": "given"}
    )
    drive(conn, "read_response")
    drive(conn, "discard")
    srv.wait_done()
    (req,) = srv.requests[0]
    assert req.header_all("Content-MD5") == ["given"]
    conn.disconnect()


def test_pipeline_1000(drive, conn, http_server):
    for i in range(1000):
        drive(conn, "send_request", "GET", f"/size/{i % 37}")
    assert conn.response_pending()
    for i in range(1000):
        resp = drive(conn, "read_response")
        assert resp.path == f"/size/{i % 37}"
        assert drive(conn, "readall") == body_for(i % 37)
    assert not conn.response_pending()


def test_pipeline_sender_and_receiver_generators(conn):
    from dugong._demo import drive_all

    def sender():
        for i in range(1000):
            yield from conn.co_send_request("GET", f"/size/{i % 100}")

    def receiver():
        got = []
        for _ in range(1000):
            resp = yield from conn.co_read_response()
            got.append((resp.status, (yield from conn.co_readall())))
        return got

    conn.connect()  # else the receiver could start before any request is pending
    _, got = drive_all(sender(), receiver())
    assert got == [(200, body_for(i % 100)) for i in range(1000)]


def test_two_threads_send_and_read(conn):
    count = 500
    errors = []

    def send():
        try:
            for i in range(count):
                conn.send_request("GET", f"/size/{i % 10}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    got = 0
    while got < count:
        if not conn.response_pending():
            continue
        resp = conn.read_response()
        assert conn.readall() == body_for(got % 10), resp
        got += 1
    thread.join()
    assert not errors


def test_chunked_response_with_trailers(drive, conn):
    drive(conn, "send_request", "GET", "/chunked/2500?chunk=700")
    resp = drive(conn, "read_response")
    assert resp.length is None
    assert resp.trailers == {}
    assert drive(conn, "readall") == body_for(2500)
    assert resp.trailers["x-trailer"] == "yes"
    # The connection stays usable.
    assert get(drive, conn, "/size/4")[1] == body_for(4)


@pytest.mark.parametrize("how", ["read", "readinto", "readall", "discard"])
def test_chunked_body_read_styles(drive, conn, how):
    drive(conn, "send_request", "GET", "/chunked/100000?chunk=3000")
    drive(conn, "read_response")
    data = bytearray()
    if how == "read":
        while chunk := drive(conn, "read", 777):
            assert len(chunk) <= 777
            data += chunk
    elif how == "readinto":
        buf = bytearray(5000)
        while n := drive(conn, "readinto", buf):
            data += buf[:n]
    elif how == "readall":
        data += drive(conn, "readall")
    else:
        assert drive(conn, "discard") is None
        data = bytearray(body_for(100000))
    assert data == body_for(100000)
    assert drive(conn, "read", 10) == b""
    assert drive(conn, "readinto", bytearray(10)) == 0


def test_read_until_close(drive, conn):
    drive(conn, "send_request", "GET", "/close/30000")
    resp = drive(conn, "read_response")
    assert resp.length is None
    assert resp.headers["connection"] == "close"
    assert drive(conn, "readall") == body_for(30000)
    assert_not_sent(drive, conn, "GET", "/size/1")
    conn.reset()
    assert get(drive, conn, "/size/3")[1] == body_for(3)


def test_connection_close_fails_pipelined_requests(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(),
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"),
            Step.close(),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/1")
    drive(conn, "send_request", "GET", "/2")
    resp = drive(conn, "read_response")
    assert drive(conn, "readall") == b"hi"
    assert resp.length == 2
    with pytest.raises(ConnectionClosed, match="GET /2"):
        drive(conn, "read_response")
    assert not conn.response_pending()
    assert_not_sent(drive, conn, "GET", "/3")


def test_head_and_no_body_statuses(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(),
            Step.read_request(),
            Step.read_request(),
            Step.read_request(),
            Step.send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n" + OK_3
            ),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    for method in ("HEAD", "GET", "GET", "GET"):
        drive(conn, "send_request", method, "/")
    lengths = []
    for _ in range(4):
        resp = drive(conn, "read_response")
        lengths.append((resp.status, resp.length, drive(conn, "readall")))
    assert lengths == [(200, 0, b""), (204, 0, b""), (304, 0, b""), (200, 3, b"abc")]
    conn.disconnect()


def test_interim_responses_skipped(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                b"HTTP/1.1 100 Continue\r\n\r\n" + OK_3
            ),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/")
    resp = drive(conn, "read_response")
    assert resp.status == 200
    assert drive(conn, "readall") == b"abc"
    conn.disconnect()


def test_switching_protocols_ends_http_on_the_connection(drive, scripted_server):
    """A 101 answer has no body (its Content-Length does not make one): the bytes after
    its head belong to the new protocol, left for read_raw, with the socket kept open for
    those that come later; no further request goes out on the connection."""
    upgrade = {"Upgrade": "echo", "Connection": "Upgrade"}
    head = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n"
        b"Content-Length: 5\r\n\r\n"
    )
    script = [
        Step.read_request(),
        Step.send(head + b"echo: "),
        Step.sleep(0.05),  # (the client has read the head meanwhile)
        Step.send(b"hello"),
        Step.drain(),
    ]
    srv = scripted_server([script, script], repeat=False)
    for then_raw in (True, False):
        conn = HTTPConnection("127.0.0.1", srv.port)
        drive(conn, "send_request", "GET", "/", headers=upgrade)
        resp = drive(conn, "read_response")
        assert (resp.status, resp.length, resp.headers["Upgrade"]) == (101, 0, "echo")
        assert drive(conn, "readall") == b""
        assert conn.is_connected and not conn.response_pending()  # (for the new protocol)
        if then_raw:
            got = conn.read_raw(100)  # what came with the head, then the socket's
            while len(got) < 11 and (more := conn.read_raw(100)):
                got += more
            assert got == b"echo: hello"
        else:
            assert_not_sent(drive, conn, "GET", "/next")
        conn.disconnect()
    assert [r.path for reqs in srv.requests for r in reqs] == ["/", "/"]


def test_http10_response(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\nuntil close"),
            Step.close(),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/")
    resp = drive(conn, "read_response")
    assert resp.length is None
    assert drive(conn, "readall") == b"until close"
    assert_not_sent(drive, conn, "GET", "/")


def test_http10_keepalive_with_length(drive, scripted_server):
    resp10 = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"
    srv = scripted_server(
        [Step.read_request(), Step.send(resp10), Step.read_request(), Step.send(resp10)]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    for _ in range(2):
        assert get(drive, conn, "/")[1] == b"abc"
    conn.disconnect()


def test_body_upload_known_length(drive, conn, http_server):
    data = body_for(300_000)
    drive(conn, "send_request", "PUT", "/echo", body=BodyFollowing(len(data)))
    for i in range(0, len(data), 65536):
        drive(conn, "write", data[i : i + 65536])
    resp = drive(conn, "read_response")
    assert resp.status == 200
    assert drive(conn, "readall") == data


def test_body_upload_chunked(drive, conn, http_server):
    pieces = [b"a" * 10, b"b" * 70000, memoryview(b"c" * 5)]
    drive(conn, "send_request", "POST", "/echo", body=BodyFollowing())
    for piece in pieces:
        drive(conn, "write", piece)
    drive(conn, "write", b"")
    resp = drive(conn, "read_response")
    assert drive(conn, "readall") == b"".join(bytes(p) for p in pieces)
    assert resp.status == 200
    req = http_server.requests[-1]
    assert ("Transfer-Encoding", "chunked") in req.headers


def test_big_bytes_body(drive, conn):
    data = body_for(1_000_000)
    _, body = get(drive, conn, "/echo", body=data)
    assert body == data


def test_request_waits_while_the_server_reads_nothing(drive, scripted_server):
    """A request larger than the socket buffers: the first send is short, and the rest
    of head and body goes out once the server reads again."""
    big = body_for(16_000_000)
    blocked = threading.Event()
    srv = scripted_server(
        [
            Step.wait_event(blocked),
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "connect")  # so that send_request tries its first send right away
    with once_waiting(blocked.set):  # the server reads once the send has to wait
        drive(conn, "send_request", "PUT", "/", body=big)
    assert drive(conn, "read_response").status == 200
    assert drive(conn, "readall") == b"ok"
    srv.wait_done()
    assert srv.requests[0][0].body == big
    conn.disconnect()


def test_expect100_accepted(drive, conn, http_server):
    data = body_for(5000)
    drive(conn, "send_request", "PUT", "/echo", body=BodyFollowing(len(data)), expect100=True)
    with pytest.raises(StateError, match="100"):
        drive(conn, "write", data)
    resp = drive(conn, "read_response")
    assert (resp.status, resp.reason) == (100, "Continue")
    drive(conn, "write", data)
    resp = drive(conn, "read_response")
    assert resp.status == 200
    assert drive(conn, "readall") == data


def test_expect100_chunked_accepted(drive, conn):
    drive(conn, "send_request", "PUT", "/echo", body=BodyFollowing(), expect100=True)
    assert drive(conn, "read_response").status == 100
    drive(conn, "write", b"xyz")
    drive(conn, "write", b"")
    assert drive(conn, "read_response").status == 200
    assert drive(conn, "readall") == b"xyz"


def test_expect100_rejected_keepalive(drive, scripted_server):
    # The server refuses without announcing close: no body byte may be sent, and the
    # next request must go out on a fresh connection.
    srv = scripted_server(
        [
            [
                Step.read_request(body=False),
                Step.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"),
                Step.expect_eof(),
            ],
            [Step.read_request(), Step.send(OK_3)],
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "PUT", "/up", body=BodyFollowing(100), expect100=True)
    resp = drive(conn, "read_response")
    assert resp.status == 403
    assert drive(conn, "readall") == b"no"
    with pytest.raises(StateError):
        drive(conn, "write", b"x")
    assert get(drive, conn, "/next")[1] == b"abc"
    srv.wait_done()
    head = srv.received[0]
    assert head.endswith(b"\r\n\r\n") and b"Expect: 100-continue" in head
    assert srv.requests[1][0].path == "/next"
    conn.disconnect()


def test_expect100_rejected_with_close(drive, conn, http_server):
    drive(conn, "send_request", "PUT", "/reject", body=BodyFollowing(10), expect100=True)
    resp = drive(conn, "read_response")
    assert resp.status == 403
    drive(conn, "discard")
    assert_not_sent(drive, conn, "GET", "/size/1")
    conn.reset()
    assert get(drive, conn, "/size/2")[1] == body_for(2)
    assert http_server.requests[0].body is None


def test_server_answers_and_closes_during_upload(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.send(
                b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig"
            ),
            Step.reset(),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.timeout = 10
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing(50_000_000))
    chunk = b"x" * 65536
    with pytest.raises(ConnectionClosed):
        write_times(drive, conn, chunk, 50_000_000 // 65536)
    resp = drive(conn, "read_response")
    assert resp.status == 413
    assert drive(conn, "readall") == b"big"
    assert_not_sent(drive, conn, "GET", "/")


@pytest.mark.parametrize("how", ["read", "readinto", "readall", "discard"])
def test_truncated_length_body(drive, scripted_server, how):
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 50000),
            Step.close(),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")

    def read_to_the_end() -> None:
        if how == "read":
            while drive(conn, "read", 10000):
                pass
        elif how == "readinto":
            while drive(conn, "readinto", bytearray(70000)):
                pass
        else:
            drive(conn, how)

    with pytest.raises(ConnectionClosed, match="50000 of 100000"):
        read_to_the_end()
    assert_not_sent(drive, conn, "GET", "/")


def test_closed_before_response(drive, scripted_server):
    srv = scripted_server([Step.read_request(), Step.close()])
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/")
    with pytest.raises(ConnectionClosed):
        drive(conn, "read_response")


def test_state_errors(drive, conn):
    with pytest.raises(StateError, match="No response is pending"):
        drive(conn, "read_response")
    with pytest.raises(StateError, match="No request body"):
        drive(conn, "write", b"x")
    drive(conn, "send_request", "PUT", "/echo", body=BodyFollowing(4))
    with pytest.raises(StateError, match="read_response"):
        drive(conn, "read", 1)
    with pytest.raises(StateError):
        drive(conn, "send_request", "GET", "/size/1")
    with pytest.raises(ExcessBodyData):
        drive(conn, "write", b"12345")
    drive(conn, "write", b"12")
    with pytest.raises(ExcessBodyData):
        drive(conn, "write", b"345")
    drive(conn, "write", b"34")
    drive(conn, "send_request", "GET", "/size/10")
    drive(conn, "read_response")
    with pytest.raises(StateError, match="not been read"):
        drive(conn, "read_response")
    assert drive(conn, "read", 2) == b"12"
    assert drive(conn, "readall") == b"34"
    assert drive(conn, "read", 1) == b""  # the body is complete
    drive(conn, "read_response")
    assert drive(conn, "readall") == body_for(10)


def test_bad_arguments(conn):
    with pytest.raises(TypeError):
        conn.send_request("GET", "/", body="text")
    with pytest.raises(ValueError, match="expect100"):
        conn.send_request("GET", "/", body=b"x", expect100=True)
    with pytest.raises(TypeError):
        BodyFollowing("3")
    with pytest.raises(ValueError):
        BodyFollowing(-1)
    with pytest.raises(ValueError):
        HTTPConnection("a\r\nb")
    with pytest.raises(ValueError):
        HTTPConnection("host", 0)
    assert not conn.response_pending()


def test_read_sizes_and_direct_reads(drive, conn):
    drive(conn, "send_request", "GET", "/size/300000")
    drive(conn, "read_response")
    assert drive(conn, "read", 0) == b""
    first = drive(conn, "read", 1)
    assert first == body_for(300000)[:1]
    rest = bytearray(first)
    big = bytearray(200_000)
    n = drive(conn, "readinto", memoryview(big)[:150_000])
    rest += big[:n]
    while chunk := drive(conn, "read", 100_000):
        rest += chunk
    assert rest == body_for(300000)


def test_text_wrapper_reads_lines(conn, http_server):
    conn.send_request("GET", "/headers", headers={"X-One": "1", "X-Two": "2"})
    conn.read_response()
    lines = io.TextIOWrapper(conn, encoding="latin-1").readlines()
    assert "X-One: 1\n" in lines and "X-Two: 2\n" in lines
    assert conn.readable() and not conn.writable() and not conn.seekable()
    assert conn.closed is False


def test_buffered_reader(conn):
    conn.send_request("GET", "/size/100000")
    conn.read_response()
    assert io.BufferedReader(conn).read() == body_for(100000)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [None, 10])
def test_trace_file(drive, conn, tmp_path, monkeypatch, timeout):
    monkeypatch.setenv("DUGONG_TRACEFILE", str(tmp_path / "trace-%d.log"))
    conn.disconnect()
    conn.timeout = timeout  # (without one, a blocking caller's receive takes a shorter path)
    get(drive, conn, "/size/20")
    get(drive, conn, "/size/30")  # on the kept-alive connection: the usual receive path
    drive(conn, "send_request", "PUT", "/echo", body=body_for(100_000))  # one sendmsg
    assert drive(conn, "read_response").status == 200
    assert drive(conn, "readall") == body_for(100_000)
    drive(conn, "send_request", "GET", "/size/200000")
    drive(conn, "read_response")
    got = b""
    while part := drive(conn, "read", 65536):  # large reads: straight from the socket
        got += part
    assert got == body_for(200_000)
    conn.disconnect()
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    data = files[0].read_bytes()
    assert data.startswith(b"GET /size/20 HTTP/1.1\r\n")
    assert b"\r\n\r\n" + body_for(20) + b"GET /size/30 HTTP/1.1\r\n" in data
    assert b"\r\n\r\n" + body_for(30) + b"PUT /echo HTTP/1.1\r\n" in data
    assert b"\r\n\r\n" + body_for(100_000) + b"HTTP/1.1 200 " in data
    assert data.count(b"HTTP/1.1 200 ") == 4
    assert data.endswith(b"\r\n\r\n" + body_for(200_000))


def test_read_raw(conn):
    conn.send_request("GET", "/size/5")
    raw = b""
    while not raw.endswith(body_for(5)):
        raw += conn.read_raw(1000)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(StateError, match="reset"):
        conn.send_request("GET", "/")
    conn.reset()
    conn.send_request("GET", "/size/5")
    conn.read_response()
    assert conn.readall() == body_for(5)


def test_connect_and_context_manager(http_server):
    with HTTPConnection("127.0.0.1", http_server.port) as conn:
        conn.connect()
        assert conn._tr is not None
        assert conn.get_ssl_cipher() is None
        assert conn.get_ssl_peercert() is None
    assert conn._tr is None


def test_interrupted_generator_breaks_connection(scripted_server):
    srv = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789"),
                Step.stop_reading(),
            ],
            [Step.read_request(), Step.send(OK_3)],
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.send_request("GET", "/")
    resp = dugong.eval_coroutine(conn.co_read_response())
    assert resp.status == 200
    while len(conn._eng.buffer):
        conn.read(10)  # what arrived; the rest never comes
    gen = conn.co_read(10)
    assert isinstance(next(gen), dugong.PollNeeded)
    gen.close()
    with pytest.raises(StateError, match="reset"):
        conn.read(1)
    with pytest.raises(StateError, match="reset"):
        conn.send_request("GET", "/")
    conn.reset()
    conn.send_request("GET", "/again")
    conn.read_response()
    assert conn.readall() == b"abc"
    conn.disconnect()


def test_connection_refused():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conn = HTTPConnection("127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):
        conn.send_request("GET", "/")
    assert dugong.is_temp_network_error(ConnectionRefusedError())


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_read_raw_ends_with_empty_bytes(scripted_server, ending):
    sent = b"" if ending == "reset" else b"raw bytes"  # a reset may drop unread bytes
    srv = scripted_server(
        [Step.read_request(), Step.send(sent), Step.reset() if ending == "reset" else Step.close()]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.send_request("GET", "/")
    data = b""
    while chunk := conn.read_raw(100):
        data += chunk
    assert data == sent
    assert conn.read_raw(100) == b""
    conn.reset()


def test_write_counts_bytes_not_items(drive, scripted_server):
    import array

    srv = scripted_server([Step.read_request(), Step.send(OK_3)])
    conn = HTTPConnection("127.0.0.1", srv.port)
    items = array.array("i", range(4))  # 4 items, 16 bytes
    drive(conn, "send_request", "PUT", "/", body=BodyFollowing(16))
    with pytest.raises(ExcessBodyData):
        drive(conn, "write", array.array("i", range(5)))
    drive(conn, "write", items)
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"abc"
    srv.wait_done()
    assert srv.requests[0][0].body == items.tobytes()
    conn.disconnect()


@contextlib.contextmanager
def one_request_sent() -> Iterator[tuple[dugong.HTTPConnection, socket.socket]]:
    """A connection (timeout 5 s) that has sent ``GET /``, and the server's end of it,
    the request read: the test answers byte by byte."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        conn = dugong.HTTPConnection("127.0.0.1", lsock.getsockname()[1])
        conn.timeout = 5
        conn.send_request("GET", "/")
        srv, _ = lsock.accept()
        with srv:
            srv.recv(4096)
            yield conn, srv
        conn.disconnect()


def test_read_response_takes_what_the_socket_holds_before_it_waits(monkeypatch):
    """A response that is in the socket but not yet in dugong's buffer is read at once:
    read_response waits (without a generator) only when nothing has arrived."""
    import select

    waits = []
    real = dugong.HTTPConnection._block

    def counted(self, *args):
        waits.append(1)
        return real(self, *args)

    def no_generator(self, *args):
        raise AssertionError("read_response made a waiting generator")

    monkeypatch.setattr(dugong.HTTPConnection, "_block", counted)
    monkeypatch.setattr(dugong.HTTPConnection, "_co_run", no_generator)
    with one_request_sent() as (conn, srv):
        srv.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert select.select([conn._tr.fd], [], [], 5)[0]  # arrived, not yet read
        resp = conn.read_response()
        assert (resp.status, conn.readall(), waits) == (200, b"ok", [])
        conn.send_request("GET", "/")
        srv.recv(4096)
        with once_waiting(lambda: srv.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")):
            assert conn.read_response().status == 204
        # It waited: in the receive itself where the socket allows, else with one poll.
        assert waits == ([] if conn._tr.waits_in_recv else [1])


@pytest.mark.parametrize("method", ["read_response", "read", "readinto", "readall"])
def test_blocking_reads_wait_before_receiving_from_an_emptied_socket(method):
    """A blocking read that must wait never makes a receive that fails (and costs an
    exception): it waits in the receive itself."""
    with one_request_sent() as (conn, srv):
        srv.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        resp = conn.read_response()  # takes the head and "ab": the socket is empty now
        assert resp.status == 200
        tr = conn._tr
        failed = []
        recv_into, recv = tr._recv_into, tr._recv

        def counted(real):
            def call(*args):
                try:
                    return real(*args)
                except BlockingIOError:
                    failed.append(1)
                    raise

            return call

        tr._recv_into, tr._recv = counted(recv_into), counted(recv)
        assert conn.read(2) == b"ab"
        # The rest comes only once the read waits.
        with once_waiting(lambda: srv.sendall(b"cd")):
            if method == "read_response":
                assert conn.read(2) == b"cd"
            elif method == "readinto":
                buf = bytearray(2)
                assert (conn.readinto(buf), buf) == (2, bytearray(b"cd"))
            else:
                assert getattr(conn, method)(*([2] if method == "read" else [])) == b"cd"
        if method == "read_response":
            conn.send_request("GET", "/")
            with once_waiting(lambda: srv.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")):
                assert conn.read_response().status == 204
        assert failed == []


def state(conn):
    return conn.is_connected, conn.is_idle, conn.responses_outstanding


def test_state_view_through_an_exchange(drive, scripted_server):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n!"
    srv = scripted_server(
        [
            Step.read_request(),
            Step.read_request(),
            Step.send(head + b"abc"),
            Step.send(head + b"xyz"),
            Step.read_request(),
            Step.send(OK_3),
            Step.read_request(),
            Step.send(closing),
        ]
    )
    conn = HTTPConnection("127.0.0.1", srv.port)
    assert state(conn) == (False, True, 0)
    drive(conn, "send_request", "GET", "/a")
    drive(conn, "send_request", "GET", "/b")
    assert state(conn) == (True, False, 2)
    drive(conn, "read_response")
    assert state(conn) == (True, False, 2)  # the body of the first is still to be read
    assert drive(conn, "readall") == b"abc"
    assert state(conn) == (True, False, 1)
    drive(conn, "read_response")
    drive(conn, "readall")
    assert state(conn) == (True, True, 0)
    drive(conn, "send_request", "PUT", "/c", body=BodyFollowing(3))
    assert state(conn) == (True, False, 1)
    drive(conn, "write", b"123")
    assert state(conn) == (True, False, 1)
    drive(conn, "read_response")
    drive(conn, "readall")
    assert state(conn) == (True, True, 0)
    drive(conn, "send_request", "GET", "/d")
    drive(conn, "read_response")
    drive(conn, "readall")
    assert state(conn) == (False, True, 0)  # the server announced its close
    conn.disconnect()
    assert state(conn) == (False, True, 0)


def test_state_view_after_an_error(drive, scripted_server):
    srv = scripted_server([Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n")])
    conn = HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/")
    with pytest.raises(dugong.InvalidResponse):
        drive(conn, "read_response")
    assert not conn.is_idle  # it needs reset()
    conn.reset()
    assert state(conn) == (False, True, 0)


def test_state_view_while_waiting_for_100_continue(drive, scripted_server):
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step.read_body(),
            Step.send(OK_3),
        ]
    )
    with HTTPConnection("127.0.0.1", srv.port) as conn:
        drive(conn, "send_request", "PUT", "/", body=BodyFollowing(2), expect100=True)
        assert state(conn) == (True, False, 1)
        assert drive(conn, "read_response").status == 100
        assert state(conn) == (True, False, 1)
        drive(conn, "write", b"hi")
        drive(conn, "read_response")
        drive(conn, "readall")
        assert state(conn) == (True, True, 0)


def test_sending_while_another_thread_reads_a_close(scripted_server):
    """One thread writes a body while another reads the answer to an earlier request that
    closes the connection: whatever the interleaving, the writer gets ConnectionClosed and
    nothing can be sent afterwards (the close is never undone by a write that finishes
    later)."""
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    for _ in range(20):
        heads_read = threading.Event()
        srv = scripted_server(
            [
                Step.read_request(),
                Step.read_request(body=False),
                Step.set_event(heads_read),
                Step.send(closing),
                Step.reset(),
            ]
        )
        conn = HTTPConnection("127.0.0.1", srv.port)
        conn.timeout = 10
        conn.send_request("GET", "/1")
        conn.send_request("PUT", "/2", body=BodyFollowing(1 << 30))
        assert heads_read.wait(10)
        outcome: list[BaseException] = []

        def writer(conn=conn, outcome=outcome):
            try:
                while True:
                    conn.write(b"x" * 4096)
            except BaseException as exc:  # recorded for the test
                outcome.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        assert conn.read_response().path == "/1"
        assert conn.readall() == b"ok"
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosed), outcome
        states = conn._eng.states
        assert states.send is dugong.engine.SendState.CLOSED
        assert not conn.is_connected
        with pytest.raises(ConnectionClosed):
            conn.write(b"x")  # the body of /2 is still expected, but cannot be sent
        with pytest.raises(ConnectionClosed, match="No response to PUT /2"):
            conn.read_response()
        conn.send_request("GET", "/3")  # not sent: the connection is closed
        with pytest.raises(ConnectionClosed, match="was not sent"):
            conn.read_response()
        conn.disconnect()


def test_a_close_seen_by_the_reader_during_the_last_write_sticks(scripted_server, monkeypatch):
    """The worst interleaving of the race above, made to happen: the reading thread
    learns of the close while the writing thread's last send is under way. The write
    finishing afterwards must not make the connection look usable again."""
    head_read = threading.Event()
    srv = scripted_server([Step.read_request(body=False), Step.set_event(head_read), Step.drain()])
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.send_request("PUT", "/", body=BodyFollowing(6))
    assert head_read.wait(10)
    conn.write(b"abc")
    tr = conn._tr
    real_send = tr._send  # the socket's send, which every write of a plain transport calls

    def send_while_the_reader_sees_a_close(data, flags=0):
        n = real_send(data, flags)
        conn._lost(ConnectionClosed("the reader saw the server close"))  # the other thread
        return n

    monkeypatch.setattr(tr, "_send", send_while_the_reader_sees_a_close)
    conn.write(b"def")  # the last bytes of the body: they went out
    assert conn._eng.states.send is dugong.engine.SendState.CLOSED
    assert not conn.is_connected and not conn._out_remaining
    conn.send_request("GET", "/next")  # not sent on the closed connection
    # (the reading thread got the PUT's ConnectionClosed; this one is for /next)
    with pytest.raises(ConnectionClosed, match="GET /next was not sent"):
        conn.read_response()
    conn.disconnect()


def _count_calls(monkeypatch, name):
    """A list that gets an item at each call of the HTTPConnection method *name*."""
    calls = []
    method = getattr(HTTPConnection, name)
    monkeypatch.setattr(HTTPConnection, name, lambda *a: calls.append(1) or method(*a))
    return calls


def _needs_reset_then_answers(conn):
    """After an interrupted read: the connection refuses until reset(), then its next
    request gets the server's answer ``ok``."""
    with pytest.raises(StateError, match="reset"):
        conn.read_response()
    conn.reset()
    conn.send_request("GET", "/")
    assert (conn.read_response().status, conn.readall()) == (200, b"ok")
    conn.disconnect()


def test_read_right_after_the_send_waits_at_once_and_breaks_if_interrupted(
    scripted_server, monkeypatch
):
    """The read of the one request just sent yields its wait without a receive first;
    the answer is read once it comes. Closed in that wait, the read leaves the exchange
    at an unknown point: the connection needs reset() (as any interrupted read)."""
    monkeypatch.setattr(dugong._connection, "_ANSWER_TIME", 60.0)  # however slow this is
    go = threading.Event()
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = scripted_server(
        [
            [Step.read_request(), Step.wait_event(go), Step.send(ok), Step.drain()],
            [Step.read_request(), Step.send(ok)],
        ]
    )
    conn = HTTPConnection(*server.address)
    conn.timeout = 5  # (were the interrupted read not noticed: a failure, not a hang)
    dugong.eval_coroutine(conn.co_send_request("GET", "/"))
    gen = conn.co_read_response()
    assert next(gen) is conn._tr.wait_in  # no receive tried: the server holds its answer
    go.set()
    assert select.select([conn._tr.fd], [], [], 5)[0]
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert (stop.value.value.status, conn.readall()) == (200, b"ok")

    dugong.eval_coroutine(conn.co_send_request("GET", "/"))
    gen = conn.co_read_response()
    next(gen)
    gen.close()  # e.g. a cancelled task
    _needs_reset_then_answers(conn)


def test_co_read_of_a_lone_request_receives_when_woken(scripted_server, monkeypatch):
    """Woken from the wait it yields at once, co_read_response receives and parses
    the answer itself. A wake-up with nothing there, or with half a head, waits again;
    a disconnect() during the wait is ConnectionClosed ("closed locally") when woken, a
    reset or a close by the server the ConnectionClosed of that."""
    monkeypatch.setattr(dugong._connection, "_ANSWER_TIME", 60.0)  # however slow this is
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    go = [threading.Event() for _ in range(3)]
    server = scripted_server(
        [
            [
                Step.read_request(),
                Step.wait_event(go[0]),
                Step.send(ok[:20]),
                Step.wait_event(go[1]),
                Step.send(ok[20:]),
                Step.read_request(),
                Step.wait_event(go[2]),
                Step.send(ok),
                Step.read_request(),
                Step.drain(),
            ],
            [Step.read_request(), Step.reset()],
            [Step.read_request(), Step.close()],
        ],
        repeat=False,
    )
    calls = _count_calls(monkeypatch, "_response_step")
    conn = HTTPConnection(*server.address)
    conn.timeout = 5  # (were a wait lost: a failure, not a hang)
    dugong.eval_coroutine(conn.co_send_request("GET", "/"))
    gen = conn.co_read_response()
    wait_in = conn._tr.wait_in
    assert next(gen) is wait_in
    assert next(gen) is wait_in  # woken with nothing there: waits again
    go[0].set()
    assert select.select([conn._tr.fd], [], [], 5)[0]
    assert next(gen) is wait_in  # half a head: waits for the rest
    go[1].set()
    assert (dugong.eval_coroutine(gen, 5).status, conn.readall()) == (200, b"ok")

    dugong.eval_coroutine(conn.co_send_request("GET", "/"))
    calls.clear()
    gen = conn.co_read_response()
    assert next(gen) is wait_in
    go[2].set()
    assert select.select([conn._tr.fd], [], [], 5)[0]
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert (stop.value.value.status, conn.readall()) == (200, b"ok")
    assert not calls  # the whole answer, received and parsed by co_read_response itself

    dugong.eval_coroutine(conn.co_send_request("GET", "/"))
    gen = conn.co_read_response()
    next(gen)
    conn.disconnect()
    with pytest.raises(ConnectionClosed, match="closed locally"):
        next(gen)

    for cause in (ConnectionResetError, None):  # a new connection each
        dugong.eval_coroutine(conn.co_send_request("GET", "/"))
        gen = conn.co_read_response()
        assert next(gen) is conn._tr.wait_in
        select.select([conn._tr.fd], [], [], 5)
        with pytest.raises(ConnectionClosed) as info:
            next(gen)
        assert type(info.value.__cause__) is cause or cause is None
        assert not conn.is_connected
        conn.reset()


class _Alarm(Exception):
    pass


def _cut_short_by_a_signal(call, *args):
    """``call(*args)`` waits; a SIGALRM handler that raises interrupts it after 0.2 s:
    the exception propagates."""

    def alarm(signum, frame):
        raise _Alarm()

    old = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(_Alarm):
            call(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_blocking_send_on_an_idle_open_connection_skips_the_general_path(
    scripted_server, monkeypatch
):
    """A blocking send_request alone on an idle kept-alive plain connection sends at once,
    as its co_ twin does (no `_queue_request`); once the server has dropped the idle
    connection, the general path notices and sends on a new one."""
    idle = threading.Event()
    server = scripted_server(
        [
            [Step.read_request(), Step.send(OK_3)] * 2 + [Step.wait_event(idle), Step.close()],
            [Step.read_request(), Step.send(OK_3)],
        ],
        repeat=False,
    )
    calls = _count_calls(monkeypatch, "_queue_request")
    conn = HTTPConnection(*server.address)
    for expected in (1, 1):  # the first opens the connection; the second needs no check
        conn.send_request("GET", "/")
        assert (conn.read_response().status, conn.readall()) == (200, b"abc")
        assert len(calls) == expected
    idle.set()  # the server drops the idle connection
    assert select.select([conn._tr.fd], [], [], 10)[0], "the close did not come"
    conn.send_request("GET", "/")
    assert (conn.read_response().status, conn.readall()) == (200, b"abc")
    assert len(calls) == 2
    assert server.connections == 2
    conn.disconnect()


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_blocking_read_of_a_lone_request_receives_itself(scripted_server, monkeypatch, timeout):
    """A blocking read_response of the one request outstanding on a kept-alive plain
    connection receives its answer itself, waiting in the kernel's receive (with or
    without a time limit): a head that comes in parts is completed, a reset is the
    ConnectionClosed that carries it, and a wait cut short by a signal leaves the
    exchange at an unknown point (reset() first)."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    go = threading.Event()
    server = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(ok),
                Step.read_request(),
                Step.send(ok),
                Step.read_request(),
                Step.send(ok[:20]),  # the head in two parts
                Step.sleep(0.1),
                Step.send(ok[20:]),
                Step.read_request(),
                Step.reset(),
            ],
            [Step.read_request(), Step.send(ok), Step.read_request(), Step.wait_event(go)],
            [Step.read_request(), Step.send(ok)],
        ],
        repeat=False,
    )
    calls = _count_calls(monkeypatch, "_response_step")
    conn = HTTPConnection(*server.address)
    conn.timeout = timeout
    for _ in range(2):
        conn.send_request("GET", "/")
        assert (conn.read_response().status, conn.readall()) == (200, b"ok")
    assert len(calls) == 1  # the first answer on a new connection; not the second
    conn.send_request("GET", "/")  # its head in two parts (the rest read by _response_step)
    assert (conn.read_response().status, conn.readall()) == (200, b"ok")
    conn.send_request("GET", "/")
    with pytest.raises(ConnectionClosed) as info:
        conn.read_response()
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert not conn.is_connected
    conn.reset()
    conn.send_request("GET", "/")  # on a new connection
    assert (conn.read_response().status, conn.readall()) == (200, b"ok")
    conn.send_request("GET", "/")  # the server holds its answer
    _cut_short_by_a_signal(conn.read_response)
    go.set()
    _needs_reset_then_answers(conn)


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_blocking_readinto_receives_straight_into_the_buffer(
    scripted_server, monkeypatch, timeout
):
    """A blocking readinto with nothing buffered receives the body straight into the
    caller's buffer, waiting in the kernel's receive, whatever the framing: a length
    (cut short: ConnectionClosed; reset: the ConnectionClosed that carries it),
    chunks, a body that ends with the close; a wait cut short by a signal leaves the
    exchange at an unknown point (reset() first)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    go = threading.Event()
    server = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(head),
                Step.sleep(0.1),
                Step.send(b"01234"),
                Step.sleep(0.1),
                Step.send(b"56789"),
                Step.read_request(),
                Step.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n"),
                Step.sleep(0.1),
                Step.send(b"abcdefgh\r\n0\r\n\r\n"),
                Step.read_request(),
                Step.send(head),
                Step.sleep(0.1),
                Step.send(b"01"),
                Step.sleep(0.1),
                Step.reset(),
            ],
            [
                Step.read_request(),
                Step.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
                Step.sleep(0.1),
                Step.send(b"xyz"),
                Step.close(),
            ],
            [Step.read_request(), Step.send(head), Step.wait_event(go), Step.close()],
            [Step.read_request(), Step.send(head + b"0123456789")],
        ],
        repeat=False,
    )
    calls = _count_calls(monkeypatch, "_readinto_step")
    conn = HTTPConnection(*server.address)
    conn.timeout = timeout

    def read_body(size):
        buf, body = bytearray(size), b""
        while n := conn.readinto(buf):
            body += buf[:n]
        return body

    for path, body in (("/length", b"0123456789"), ("/chunked", b"abcdefgh")):
        conn.send_request("GET", path)
        assert conn.read_response().status == 200
        assert read_body(4) == body
        if path == "/length":  # all of it received straight: only the final 0 is a step's
            assert len(calls) == 1
    conn.send_request("GET", "/reset")
    conn.read_response()
    with pytest.raises(ConnectionClosed) as info:
        read_body(4)
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert not conn.is_connected
    conn.reset()
    conn.send_request("GET", "/until-close")
    assert conn.read_response().length is None
    assert read_body(2) == b"xyz"  # the close ends it: no error
    assert not conn.is_connected
    conn.reset()
    conn.send_request("GET", "/held")  # the server holds the body
    conn.read_response()
    _cut_short_by_a_signal(conn.readinto, bytearray(4))
    go.set()
    with pytest.raises(StateError, match="reset"):
        conn.readinto(bytearray(4))
    conn.reset()
    conn.send_request("GET", "/")
    assert conn.read_response().status == 200
    assert read_body(3) == b"0123456789"
    conn.disconnect()


def test_blocking_read_with_timeout_zero_does_not_wait(scripted_server):
    """timeout 0: a blocking read_response whose answer has not come raises
    ConnectionTimedOut at once, also where it would receive the answer itself."""
    go = threading.Event()
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server = scripted_server(
        [
            [Step.read_request(), Step.send(ok), Step.read_request(), Step.wait_event(go)],
            [Step.read_request(), Step.send(ok)],
        ]
    )
    conn = HTTPConnection(*server.address)
    conn.send_request("GET", "/")
    assert (conn.read_response().status, conn.readall()) == (200, b"ok")
    conn.send_request("GET", "/")
    conn.timeout = 0
    start = time.monotonic()
    with pytest.raises(dugong.ConnectionTimedOut):
        conn.read_response()
    assert time.monotonic() - start < 1
    go.set()
    conn.timeout = None
    _needs_reset_then_answers(conn)


def test_answer_already_there_is_read_without_waiting(conn):
    """A co_ read skips its first receive only for the one request sent a moment ago
    (whose answer cannot be there yet); the answer to a request sent earlier, which has
    arrived, is read at once, without a wait (a pool sends a waiting caller's request
    for it, and wakes the caller later)."""
    dugong.eval_coroutine(conn.co_send_request("GET", "/size/10"))
    assert select.select([conn._tr.fd], [], [], 5)[0]  # the answer is in the socket
    gen = conn.co_read_response()
    with pytest.raises(StopIteration) as stop:
        next(gen)
    resp = stop.value.value
    assert (resp.status, conn.readall()) == (200, body_for(10))


@pytest.mark.parametrize("twin", ["co_", "blocking"])
def test_requests_the_socket_takes_in_parts_arrive_whole(twin):
    """Pipelined requests that the socket cannot take (the server reads nothing yet, its
    buffers fill up) go out as it drains: co_send_request yields a wait for POLLOUT, the
    blocking call waits in poll. Every request arrives whole and in order, and none may
    start while one is still being sent."""
    got = bytearray()
    total = [0]  # how many requests the server is to read, once known
    start = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = HTTPConnection("127.0.0.1", listener.getsockname()[1])
        conn.connect()
        peer, _ = listener.accept()

        def server() -> None:
            start.wait(10)
            size = 0  # of one request, once one came
            while not size or len(got) < size * total[0]:
                data = peer.recv(1 << 20)
                if not data:
                    break
                got.extend(data)
                if not size and b"\r\n\r\n" in got:
                    size = got.index(b"\r\n\r\n") + 4

        with peer:
            thread = threading.Thread(target=server)
            thread.start()
            if twin == "co_":
                wait = None
                while wait is None:  # until the buffers are full
                    gen = conn.co_send_request("GET", "/same")
                    wait = next(gen, None)
                    total[0] += 1
                assert wait.fd == conn._tr.fd and wait.mask == dugong.POLLOUT
                # Nothing else may go out before the rest of that request: refused, unsent.
                with pytest.raises(dugong.StateError, match="still being sent"):
                    conn.send_request("GET", "/other")
                with pytest.raises(dugong.StateError, match="still being sent"):
                    next(conn.co_send_request("GET", "/other"))
                start.set()
                dugong.eval_coroutine(gen)
            else:
                total[0] = 200_000  # 20 MB: more than the kernel buffers hold
                threading.Timer(0.2, start.set).start()
                for _ in range(total[0]):
                    conn.send_request("GET", "/same")
            thread.join(10)
        one = bytes(got[: got.index(b"\r\n\r\n") + 4])
        assert one.startswith(b"GET /same HTTP/1.1\r\n")
        assert got == one * total[0]
        conn.disconnect()


@pytest.mark.parametrize("pipelined", [False, True], ids=["lone", "pipelined"])
def test_request_the_socket_refuses_at_first_waits_for_pollout(scripted_server, pipelined):
    """A request whose first send would block (the socket's buffer full) yields a wait
    for POLLOUT, then goes out whole: alone on an idle connection, and pipelined."""
    ok = Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    server = scripted_server([[Step.read_request(), Step.read_request(), ok, ok]])
    conn = HTTPConnection(*server.address)
    conn.connect()
    tr = conn._tr
    if pipelined:
        conn.send_request("GET", "/first")
    send, full = tr._send, [True]

    def send_unless_full(data, flags):
        if full[0]:
            raise BlockingIOError(errno.EAGAIN, "the socket's buffer is full")
        return send(data, flags)

    tr._send = send_unless_full
    gen = conn.co_send_request("GET", "/second")
    wait = next(gen)
    assert (wait.fd, wait.mask) == (tr.fd, dugong.POLLOUT)
    with pytest.raises(dugong.StateError, match="still being sent"):
        conn.send_request("GET", "/third")
    full[0] = False
    dugong.eval_coroutine(gen)
    if not pipelined:
        conn.send_request("GET", "/first")  # (the script reads two requests first)
    for _ in range(2):
        assert conn.read_response().status == 200 and conn.readall() == b"ok"
    assert [r.path for r in server.requests[0]] == (
        ["/first", "/second"] if pipelined else ["/second", "/first"]
    )
    conn.disconnect()


def test_pipelined_request_on_a_reset_connection_raises_at_once(scripted_server):
    """A pipelined co_send_request on a connection that the server has reset raises
    ConnectionClosed with the socket's own error (the reset, not the broken pipe that a
    second send would meet), and the earlier request's read_response then raises
    ConnectionClosed too (never a hang, never an answer made up)."""
    server = scripted_server([[Step.read_request(), Step.reset()]])
    conn = HTTPConnection(*server.address)
    conn.send_request("GET", "/first")
    server.wait_done()
    time.sleep(0.05)  # (the reset has reached the client's socket)
    with pytest.raises(ConnectionClosed, match=r"broken while sending.*reset") as info:
        dugong.eval_coroutine(conn.co_send_request("GET", "/second"))
    assert isinstance(info.value.__cause__, ConnectionResetError)
    with pytest.raises(ConnectionClosed):
        conn.read_response()
    conn.disconnect()


def test_no_write_while_a_body_part_is_still_being_sent():
    """A co_write whose bytes the socket takes only in part (the server reads nothing yet)
    waits for POLLOUT; meanwhile write() and send_request() are refused, nothing of them
    counted or sent; the whole body then arrives as announced."""
    part = b"y" * (1 << 20)
    size = 64 * len(part)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = HTTPConnection("127.0.0.1", listener.getsockname()[1])
        conn.send_request("PUT", "/up", body=BodyFollowing(size))
        peer, _ = listener.accept()
        sent = 0
        wait = None
        while wait is None:
            gen = conn.co_write(part)
            wait = next(gen, None)
            sent += len(part)
        assert wait.mask == dugong.POLLOUT
        with pytest.raises(dugong.StateError, match="still being sent"):
            conn.write(b"z")
        with pytest.raises(dugong.StateError, match="still being sent"):
            conn.send_request("GET", "/other")
        got = bytearray()

        def server() -> None:
            while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + size:
                data = peer.recv(1 << 20)
                if not data:
                    break
                got.extend(data)

        with peer:
            thread = threading.Thread(target=server)
            thread.start()
            dugong.eval_coroutine(gen)
            while sent < size:
                conn.write(part)
                sent += len(part)
            thread.join(10)
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"PUT /up HTTP/1.1\r\n") and body == part * 64
        conn.disconnect()


def test_no_request_while_another_sender_opens_the_connection():
    """While one co_send_request opens the connection for its request, another one is
    refused (StateError, nothing queued); the first request then goes out alone."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = HTTPConnection("127.0.0.1", listener.getsockname()[1])
        first = conn.co_send_request("GET", "/first")
        wait = next(first)  # connecting
        assert wait.fd != -1
        with pytest.raises(dugong.StateError, match="connection opened"):
            next(conn.co_send_request("GET", "/second"))
        with pytest.raises(dugong.StateError, match="connection opened"):
            conn.send_request("GET", "/second")
        dugong.eval_coroutine(first)
        peer, _ = listener.accept()
        with peer:
            got = b""
            while not got.endswith(b"\r\n\r\n"):
                got += peer.recv(1 << 16)
            assert got.startswith(b"GET /first HTTP/1.1\r\n") and got.count(b"GET") == 1
            assert conn.responses_outstanding == 1
            peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            assert conn.read_response().path == "/first" and conn.readall() == b"ok"
        conn.disconnect()
