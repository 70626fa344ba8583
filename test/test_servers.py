"""Tests of the test infrastructure itself, with only the standard library as client."""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time

import pytest

from servers import (
    HTTPTestServer,
    ProtocolViolation,
    ScriptedServer,
    Step,
    body_for,
    once_waiting,
    parse_request_head,
    select_loop,
)

OK_ABC = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"


def connect(server: ScriptedServer | HTTPTestServer) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=10)
    return sock


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def recv_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Receive up to the end of a response head; return (head, extra bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"EOF inside a response head: {buf!r}"
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    return buf[:end], buf[end:]


def recv_exactly(sock: socket.socket, size: int, buf: bytes = b"") -> bytes:
    while len(buf) < size:
        data = sock.recv(65536)
        assert data, "EOF too early"
        buf += data
    assert len(buf) == size
    return buf


# ============================================================== body_for


def test_body_for_is_deterministic() -> None:
    assert body_for(0) == b""
    assert len(body_for(100_000)) == 100_000
    assert body_for.__wrapped__(5000) == body_for(5000)  # made afresh: the same bytes
    assert len(set(body_for(4096))) > 200  # not a short repeating pattern


# ============================================================== request parser


def test_parse_request_head() -> None:
    req = parse_request_head(b"PUT /a?b=c HTTP/1.1\r\nHost: x\r\nX-Many:  1 \r\nx-many: 2\r\n\r\n")
    assert (req.method, req.target, req.version, req.path) == ("PUT", "/a?b=c", "HTTP/1.1", "/a")
    assert req.header("x-MANY") == "1"
    assert req.header_all("X-Many") == ["1", "2"]
    assert req.header("missing", "-") == "-"


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"GET /  HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n",
    ],
)
def test_parse_request_head_is_strict(head: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        parse_request_head(head)


# ============================================================== scripted server


def test_scripted_records_bytes(scripted_server) -> None:
    srv = scripted_server([Step.expect(b"hello"), Step.send(b"world"), Step.close()])
    with connect(srv) as sock:
        sock.sendall(b"hello")
        assert recv_until_eof(sock) == b"world"
    srv.wait_done()
    assert srv.received == [b"hello"]
    assert srv.connections == 1


def test_scripted_read_request_and_reply(scripted_server) -> None:
    srv = scripted_server([Step.read_request(), Step.send(OK_ABC), Step.close()])
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    try:
        conn.request("POST", "/x", body=b"12345", headers={"X-Test": "yes"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"abc"
    finally:
        conn.close()
    srv.wait_done()
    [[req]] = srv.requests
    assert (req.method, req.path, req.body) == ("POST", "/x", b"12345")
    assert req.header("x-test") == "yes"
    assert srv.received[0] == req.raw


def test_scripted_chunked_request_body(scripted_server) -> None:
    srv = scripted_server([Step.read_request(), Step.send(OK_ABC), Step.close()])
    with connect(srv) as sock:
        sock.sendall(
            b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Sum: 13\r\n\r\n"
        )
        assert recv_until_eof(sock) == OK_ABC
    srv.wait_done()
    [[req]] = srv.requests
    assert req.chunked
    assert req.body == b"abc0123456789"
    assert req.trailers == [("X-Sum", "13")]


def test_scripted_head_then_body(scripted_server) -> None:
    """Expect: 100-continue as a script: head, 100, body, final response."""
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step.read_body(),
            Step.send(OK_ABC),
        ]
    )
    with connect(srv) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        head, rest = recv_head(sock)
        assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert rest == b""
        sock.sendall(b"data")
        assert recv_exactly(sock, len(OK_ABC)) == OK_ABC
    srv.wait_done()
    assert srv.requests[0][0].body == b"data"


def test_scripted_several_connections(scripted_server) -> None:
    srv = scripted_server(
        [
            [Step.expect(b"one"), Step.send(b"1"), Step.close()],
            [Step.expect(b"two"), Step.send(b"2"), Step.close()],
        ]
    )
    for word, answer in ((b"one", b"1"), (b"two", b"2")):
        with connect(srv) as sock:
            sock.sendall(word)
            assert recv_until_eof(sock) == answer
    srv.wait_done()
    assert srv.received == [b"one", b"two"]


def test_scripted_repeat(scripted_server) -> None:
    srv = scripted_server([Step.read_request(), Step.send(OK_ABC), Step.close()], repeat=True)
    for _ in range(3):
        conn = http.client.HTTPConnection(*srv.address, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"abc"
        conn.close()
    srv.wait_done(3)
    assert [len(reqs) for reqs in srv.requests] == [1, 1, 1]


def test_scripted_send_callable_and_drip(scripted_server) -> None:
    def answer(requests):
        body = requests[-1].path.encode()
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    srv = scripted_server([Step.read_request(), Step.send(answer, chunk=3, delay=0.01)])
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    try:
        conn.request("GET", "/some/path")
        assert conn.getresponse().read() == b"/some/path"
    finally:
        conn.close()


def test_scripted_mismatch_is_reported(scripted_server) -> None:
    srv = scripted_server([Step.expect(b"GET"), Step.send(b"never")])
    with connect(srv) as sock:
        sock.sendall(b"PUT")
        assert recv_until_eof(sock) == b""  # the server gave up on the connection
    srv.wait_done()
    assert len(srv.errors) == 1
    assert "b'PUT'" in srv.errors[0]
    assert "b'GET'" in srv.errors[0]
    with pytest.raises(AssertionError, match="expected b'GET'"):
        srv.check()
    srv.errors.clear()


def test_scripted_unexpected_connection_is_reported(scripted_server) -> None:
    srv = scripted_server([Step.close()])
    for _ in range(2):
        with connect(srv) as sock:
            assert recv_until_eof(sock) == b""
    srv.wait_done(2)
    assert srv.errors == ["connection 1: unexpected (only 1 script(s) given); closed at once"]
    srv.errors.clear()


def test_scripted_bytes_after_script_are_reported(scripted_server) -> None:
    srv = scripted_server([Step.expect(b"a")])
    with connect(srv) as sock:
        sock.sendall(b"a")
        srv.wait_done()
        sock.sendall(b"bc")
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b""
    srv.stop()
    assert srv.received == [b"abc"]
    assert len(srv.errors) == 1
    assert "after the end of the script" in srv.errors[0]
    srv.errors.clear()


def test_scripted_unfinished_step_is_reported() -> None:
    reading = threading.Event()
    srv = ScriptedServer([Step.set_event(reading), Step.read_request()]).start()
    with connect(srv) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # never finished
        assert reading.wait(10)
        srv.stop()
    assert len(srv.errors) == 1
    assert "not finished when the server stopped" in srv.errors[0]


def test_scripted_eof_in_request_is_reported(scripted_server) -> None:
    srv = scripted_server([Step.read_request()])
    with connect(srv) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost")
    srv.wait_done()
    assert "EOF inside the request head" in srv.errors[0]
    srv.errors.clear()


def test_scripted_reset(scripted_server) -> None:
    srv = scripted_server([Step.expect(b"x"), Step.reset()])
    with connect(srv) as sock:
        sock.sendall(b"x")
        srv.wait_done()
        with pytest.raises(ConnectionResetError):
            recv_until_eof(sock)


def test_scripted_shutdown_write_keeps_reading(scripted_server) -> None:
    srv = scripted_server(
        [Step.send(b"bye"), Step.shutdown_write(), Step.expect(b"still here"), Step.expect_eof()]
    )
    with connect(srv) as sock:
        assert recv_until_eof(sock) == b"bye"
        sock.sendall(b"still here")
        sock.shutdown(socket.SHUT_WR)
        srv.wait_done()
    assert srv.received == [b"still here"]


def test_scripted_expect_eof_fails_on_data(scripted_server) -> None:
    srv = scripted_server([Step.expect_eof()])
    with connect(srv) as sock:
        sock.sendall(b"?")
        srv.wait_done()
    assert "unexpected bytes b'?'" in srv.errors[0]
    srv.errors.clear()


def test_scripted_stop_reading(scripted_server) -> None:
    srv = scripted_server([Step.stop_reading()])
    with connect(srv) as sock:
        sock.sendall(b"ignored")
        srv.wait_done()
        time.sleep(0.1)
        assert srv.received == [b""]  # sent, but never read by the server
    srv.stop()
    assert srv.errors == []


def test_scripted_drain_records(scripted_server) -> None:
    srv = scripted_server([Step.send(b"hi"), Step.drain(), Step.close()])
    with connect(srv) as sock:
        assert sock.recv(2) == b"hi"
        sock.sendall(b"anything at all")
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b""
    srv.wait_done()
    assert srv.received == [b"anything at all"]


def test_scripted_events_and_sleep(scripted_server) -> None:
    reached, go = threading.Event(), threading.Event()
    srv = scripted_server(
        [Step.set_event(reached), Step.wait_event(go), Step.sleep(0.05), Step.send(b"!")]
    )
    with connect(srv) as sock:
        assert reached.wait(10)
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        go.set()
        sock.settimeout(10)
        assert sock.recv(1) == b"!"


def test_scripted_rejects_steps_after_close() -> None:
    with pytest.raises(ValueError, match="last step"):
        ScriptedServer([Step.close(), Step.send(b"x")])


def test_scripted_tls(scripted_server, tls_server_context, tls_client_context) -> None:
    srv = scripted_server(
        [Step.read_request(), Step.send(OK_ABC), Step.close()], ssl_context=tls_server_context
    )
    conn = http.client.HTTPSConnection("localhost", srv.port, context=tls_client_context)
    try:
        conn.request("GET", "/secret")
        assert conn.getresponse().read() == b"abc"
    finally:
        conn.close()
    srv.wait_done()
    assert srv.requests[0][0].path == "/secret"


# ============================================================== HTTP test server


def get(server: HTTPTestServer, method: str, path: str, **kwargs):
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        conn.request(method, path, **kwargs)
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("size", [0, 1, 5000, 1_000_000])
def test_http_size(http_server, size) -> None:
    resp, body = get(http_server, "GET", f"/size/{size}")
    assert resp.status == 200
    assert resp.getheader("Content-Length") == str(size)
    assert body == body_for(size)


def test_http_head(http_server) -> None:
    conn = http.client.HTTPConnection(*http_server.address, timeout=10)
    try:
        for path in ("/size/10", "/chunked/10", "/status/404", "/headers"):
            conn.request("HEAD", path)
            resp = conn.getresponse()
            assert resp.read() == b""
        assert resp.status == 200
    finally:
        conn.close()
    assert [r.method for r in http_server.requests] == ["HEAD"] * 4


def test_http_keep_alive(http_server) -> None:
    conn = http.client.HTTPConnection(*http_server.address, timeout=10)
    try:
        for size in (3, 70_000, 0):
            conn.request("GET", f"/size/{size}")
            assert conn.getresponse().read() == body_for(size)
        first_sock = conn.sock
        conn.request("GET", "/status/204")
        resp = conn.getresponse()
        assert resp.status == 204
        assert resp.read() == b""
        assert conn.sock is first_sock
    finally:
        conn.close()


def test_http_chunked_wire_format(http_server) -> None:
    with connect(http_server) as sock:
        sock.sendall(b"GET /chunked/2500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_until_eof(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    data = body_for(2500)
    expected = (
        b"3e8;dugong-test=1\r\n" + data[:1000] + b"\r\n"
        b"3e8\r\n" + data[1000:2000] + b"\r\n"
        b"1f4\r\n" + data[2000:] + b"\r\n"
        b"0;last\r\nX-Trailer: yes\r\n\r\n"
    )
    assert rest == expected


def test_http_chunked_with_stdlib_client(http_server) -> None:
    resp, body = get(http_server, "GET", "/chunked/100000?chunk=777")
    assert resp.status == 200
    assert body == body_for(100000)


def test_http_close(http_server) -> None:
    with connect(http_server) as sock:
        sock.sendall(b"GET /close/12345 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = recv_until_eof(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close" in head
    assert b"Content-Length" not in head
    assert b"Transfer-Encoding" not in head
    assert body == body_for(12345)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_http_echo_content_length(http_server, method) -> None:
    resp, body = get(http_server, method, "/echo", body=body_for(3000))
    assert resp.status == 200
    assert body == body_for(3000)
    assert http_server.requests[0].body == body_for(3000)


def test_http_echo_chunked(http_server) -> None:
    pieces = [b"first", b"", b"second"]
    resp, body = get(http_server, "PUT", "/echo", body=iter(pieces), encode_chunked=True)
    assert resp.status == 200
    assert body == b"firstsecond"
    assert http_server.requests[0].headers.count(("Transfer-Encoding", "chunked")) == 1


def test_http_echo_100_continue(http_server) -> None:
    with connect(http_server) as sock:
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        head, rest = recv_head(sock)
        assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert rest == b""
        sock.sendall(b"body")
        head, rest = recv_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nContent-Length: 4\r\n" in head
        assert recv_exactly(sock, 4, rest) == b"body"


def test_http_echo_without_expect_sends_no_100(http_server) -> None:
    with connect(http_server) as sock:
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        head, rest = recv_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert recv_exactly(sock, 2, rest) == b"hi"


def test_http_reject(http_server) -> None:
    with connect(http_server) as sock:
        sock.sendall(
            b"PUT /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        data = recv_until_eof(sock)  # answered and closed without the body
    assert data.startswith(b"HTTP/1.1 403 ")
    assert b"\r\nConnection: close\r\n" in data
    [req] = http_server.requests
    assert req.body is None


def test_http_reject_keepalive(http_server) -> None:
    with connect(http_server) as sock:
        sock.sendall(
            b"PUT /reject?keepalive HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        head, rest = recv_head(sock)
        assert head.startswith(b"HTTP/1.1 403 ")
        assert b"Connection" not in head
        assert recv_exactly(sock, 9, rest) == b"rejected\n"
        sock.sendall(b"GET /size/1 HTTP/1.1\r\nHost: x\r\n\r\n")  # no body was sent
        head, rest = recv_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(("status", "body"), [(200, True), (404, True), (204, False)])
def test_http_status(http_server, status, body) -> None:
    resp, data = get(http_server, "GET", f"/status/{status}")
    assert resp.status == status
    assert data == (f"status {status}\n".encode() if body else b"")


def test_http_headers(http_server) -> None:
    resp, body = get(http_server, "GET", "/headers", headers={"X-One": "1", "x-two": "zwei"})
    assert resp.status == 200
    lines = body.decode("latin-1").splitlines()
    assert "X-One: 1" in lines
    assert "x-two: zwei" in lines


def test_http_not_found_and_absolute_form(http_server) -> None:
    resp, _ = get(http_server, "GET", "/nothing/here")
    assert resp.status == 404
    resp, body = get(http_server, "GET", f"http://example.invalid:{http_server.port}/size/7")
    assert body == body_for(7)


def test_http_stops_with_idle_connections(make_http_server) -> None:
    server = make_http_server()
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("GET", "/size/1")
    conn.getresponse().read()
    started = time.monotonic()
    server.stop()  # the kept-alive connection must not hold it up
    assert time.monotonic() - started < 2
    conn.close()


def test_https_server(https_server, tls_client_context) -> None:
    assert https_server.url.startswith("https://127.0.0.1:")
    conn = http.client.HTTPSConnection(
        "localhost", https_server.port, context=tls_client_context, timeout=10
    )
    try:
        conn.request("GET", "/size/1000")
        assert conn.getresponse().read() == body_for(1000)
        cert = conn.sock.getpeercert()
        assert ("DNS", "localhost") in cert["subjectAltName"]
    finally:
        conn.close()


def test_tls_client_context_verifies(https_server) -> None:
    context = ssl.create_default_context()  # does not trust the test CA
    conn = http.client.HTTPSConnection("localhost", https_server.port, context=context)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/size/1")
    conn.close()


def _have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _have_ipv6(), reason="no IPv6 loopback")
def test_ipv6_servers(scripted_server, make_http_server) -> None:
    srv = scripted_server([Step.expect(b"6"), Step.send(b"six"), Step.close()], host="::1")
    with socket.create_connection(("::1", srv.port), timeout=10) as sock:
        sock.sendall(b"6")
        assert recv_until_eof(sock) == b"six"
    server = make_http_server(host="::1")
    assert server.url == f"http://[::1]:{server.port}"
    _, body = get(server, "GET", "/size/3")
    assert body == body_for(3)


# ============================================================== select_loop


def test_select_loop_drives_a_generator() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)

        def reader():
            while True:
                try:
                    return a.recv(10)
                except BlockingIOError:
                    yield (a.fileno(), select.POLLIN)

        gen = reader()
        with once_waiting(lambda: b.sendall(b"ping")):  # the loop waits first
            assert select_loop(gen, timeout=10) == b"ping"


def test_once_waiting_needs_the_wait() -> None:
    with pytest.raises(AssertionError, match="never came"), once_waiting(lambda: None):
        pass  # no wait: the action never runs


def test_once_waiting_raises_what_the_action_raised() -> None:
    a, b = socket.socketpair()

    def wait() -> list[socket.socket]:
        return select.select([a], [], [], 10)[0]

    def answer_and_fail() -> None:
        b.sendall(b"!")
        raise KeyError("action")

    with a, b:
        with (
            pytest.raises(KeyError, match="action"),
            once_waiting(answer_and_fail, waiting_in=lambda frame: frame.f_code is wait.__code__),
        ):
            assert wait() == [a]  # woken by the action
        assert a.recv(1) == b"!"


def test_select_loop_returns_without_waiting() -> None:
    def immediate():
        return 42
        yield  # pragma: no cover

    assert select_loop(immediate()) == 42


def test_select_loop_times_out() -> None:
    a, b = socket.socketpair()
    with a, b:

        def forever():
            while True:
                yield (a.fileno(), select.POLLIN)

        with pytest.raises(pytest.fail.Exception, match="did not finish"):
            select_loop(forever(), timeout=0.1)


def test_select_loop_rejects_bad_values() -> None:
    def bad():
        yield "nonsense"

    with pytest.raises(pytest.fail.Exception, match="not an"):
        select_loop(bad())
