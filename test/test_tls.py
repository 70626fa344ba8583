"""TLS: the context as given (SNI, check_hostname, verify_mode), certificate and
cipher queries, ends of stream with and without close_notify, and the cases
where a TLS client hangs if it waits on the socket while the TLS layer still
holds decrypted bytes or needs the other direction.

The "never hangs" tests run with TLS 1.2 and TLS 1.3, in every drive mode, with
`HANG_TIMEOUT` as connection timeout (blocking) or loop limit (select, asyncio): a
client that waits on the socket while the TLS layer holds data times out there
instead of passing.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import dugong
from conftest import Driver
from dugong import (
    POLLIN,
    POLLOUT,
    BodyFollowing,
    ConnectionClosed,
    HTTPConnection,
)
from dugong._transport import TLSTransport
from servers import HTTPTestServer, Step, body_for, once_waiting

#: Seconds a hang test may wait for one event (the connection timeout).
HANG_TIMEOUT = 5.0

pytestmark = pytest.mark.timeout(60)


def response(body: bytes, status: bytes = b"200 OK", fields: bytes = b"") -> bytes:
    """An HTTP/1.1 response with Content-Length."""
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), fields, body)


def chunked(body: bytes, size: int) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    )
    return out + b"0\r\n\r\n"


@pytest.fixture(params=[ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def tls_version(request: pytest.FixtureRequest) -> ssl.TLSVersion:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server_ctx(tls_server_context: ssl.SSLContext, tls_version: ssl.TLSVersion) -> ssl.SSLContext:
    """The test server context, limited to one TLS version."""
    tls_server_context.minimum_version = tls_version
    tls_server_context.maximum_version = tls_version
    return tls_server_context


@pytest.fixture(params=Driver.MODES)
def hdrive(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """Like ``drive``, but a hang shows up after HANG_TIMEOUT seconds."""
    driver = Driver(request.param, timeout=HANG_TIMEOUT)
    yield driver
    driver.close()


def tls_conn(port: int, ctx: ssl.SSLContext, host: str = "localhost") -> HTTPConnection:
    conn = HTTPConnection(host, port, ssl_context=ctx)
    conn.timeout = HANG_TIMEOUT
    return conn


def read_in_pieces(drive: Driver, conn: HTTPConnection, size: int) -> bytes:
    """The body through readinto() with a *size*-byte buffer."""
    got = bytearray()
    buf = bytearray(size)
    while n := drive(conn, "readinto", buf):
        got += buf[:n]
    return bytes(got)


def counting(gen: Any, waits: list[int], on_pollout: Callable[[], object] | None = None) -> Any:
    """Pass *gen*'s waits through, recording their masks in *waits*
    (and calling *on_pollout* at a wait for POLLOUT)."""
    value = None
    try:
        while True:
            pn = gen.send(value)
            waits.append(pn.mask)
            if on_pollout is not None and pn.mask & POLLOUT:
                on_pollout()
            value = yield pn
    except StopIteration as exc:
        return exc.value


# ------------------------------------------------------------------ the context as given


def test_default_port_is_443(tls_client_context):
    conn = HTTPConnection("localhost", ssl_context=tls_client_context)
    assert conn.port == 443
    assert HTTPConnection("localhost", 8443, ssl_context=tls_client_context).port == 8443
    assert HTTPConnection("localhost").port == 80


def test_request_and_certificate(drive, https_server, tls_client_context, tls_server_cert):
    with tls_conn(https_server.port, tls_client_context) as conn:
        drive(conn, "send_request", "GET", "/size/5000")
        resp = drive(conn, "read_response")
        assert resp.status == 200
        assert drive(conn, "readall") == body_for(5000)
        cert = conn.get_ssl_peercert()
        assert ("DNS", "localhost") in cert["subjectAltName"]
        der = conn.get_ssl_peercert(binary_form=True)
        pem = tls_server_cert.cert_chain_pems[0].bytes().decode()
        assert der == ssl.PEM_cert_to_DER_cert(pem)
        name, version, bits = conn.get_ssl_cipher()
        assert version in ("TLSv1.2", "TLSv1.3") and bits >= 128 and name
    assert https_server.requests[0].path == "/size/5000"
    assert dict(https_server.requests[0].headers)["Host"] == f"localhost:{https_server.port}"


def test_certificate_queries_connect_first(https_server, tls_client_context):
    with tls_conn(https_server.port, tls_client_context) as conn:
        assert conn.get_ssl_cipher() is not None  # connects
        assert conn.get_ssl_peercert()["subjectAltName"]
        conn.send_request("GET", "/size/10")  # on the same connection
        conn.read_response()
        assert conn.readall() == body_for(10)


def test_plain_http_has_no_certificate(http_server):
    with HTTPConnection(http_server.host, http_server.port) as conn:
        assert conn.get_ssl_peercert() is None
        assert conn.get_ssl_peercert(binary_form=True) is None
        assert conn.get_ssl_cipher() is None


@pytest.mark.parametrize(("host", "sni"), [("localhost", "localhost"), ("127.0.0.1", None)])
def test_sni(drive, scripted_server, tls_server_context, tls_client_context, host, sni):
    seen = []
    tls_server_context.sni_callback = lambda sslobj, name, ctx: seen.append(name)
    srv = scripted_server(
        [Step.read_request(), Step.send(response(b"abc"))], ssl_context=tls_server_context
    )
    with tls_conn(srv.port, tls_client_context, host) as conn:
        drive(conn, "send_request", "GET", "/")
        drive(conn, "read_response")
        assert drive(conn, "readall") == b"abc"
    assert seen == [sni]  # no SNI for an IP address (RFC 6066)


@pytest.fixture
def other_name_context(tls_ca) -> ssl.SSLContext:
    """A server context whose certificate (from the trusted CA) is for other.test only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("other.test").configure_cert(context)
    return context


def test_check_hostname_honoured(drive, scripted_server, other_name_context, tls_client_context):
    srv = scripted_server(
        [[], [Step.read_request(), Step.send(response(b"ok"))]], ssl_context=other_name_context
    )
    conn = tls_conn(srv.port, tls_client_context)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        drive(conn, "send_request", "GET", "/")
    srv.wait_done(1)
    srv.errors.clear()  # the server saw the handshake fail: that is the point
    tls_client_context.check_hostname = False  # the chain is still verified
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"ok"
    conn.disconnect()


def test_verify_mode_honoured(drive, scripted_server, tls_server_context):
    srv = scripted_server(
        [[], [Step.read_request(), Step.send(response(b"ok"))]], ssl_context=tls_server_context
    )
    untrusting = ssl.create_default_context()  # does not know the test CA
    untrusting.load_verify_locations(cadata=_unrelated_ca_pem())
    conn = tls_conn(srv.port, untrusting)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        drive(conn, "connect")
    srv.wait_done(1)
    srv.errors.clear()
    untrusting.check_hostname = False
    untrusting.verify_mode = ssl.CERT_NONE
    drive(conn, "connect")
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"ok"
    assert conn.get_ssl_peercert() == {}  # not verified: no decoded certificate
    conn.disconnect()


def _unrelated_ca_pem() -> str:
    import trustme

    return trustme.CA().cert_pem.bytes().decode()


# ------------------------------------------------------------------ end of stream


class CloseNotifyServer:
    """Answers one request with *data*, then ends TLS properly (close_notify) and closes."""

    def __init__(self, context: ssl.SSLContext, data: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context = context
        self.data = data
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.listener.settimeout(10)
            sock, _ = self.listener.accept()
            with self.context.wrap_socket(sock, server_side=True) as tls:
                tls.settimeout(10)
                received = b""
                while b"\r\n\r\n" not in received:
                    received += tls.recv(4096)
                tls.sendall(self.data)
                with contextlib.suppress(OSError):  # the client need not answer it
                    tls.unwrap()  # sends close_notify
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def close_notify_server(tls_server_context) -> Iterator[Callable[[bytes], CloseNotifyServer]]:
    servers: list[CloseNotifyServer] = []

    def factory(data: bytes) -> CloseNotifyServer:
        servers.append(CloseNotifyServer(tls_server_context, data))
        return servers[-1]

    yield factory
    for server in servers:
        server.stop()


def test_until_close_body_with_close_notify(drive, close_notify_server, tls_client_context):
    body = body_for(100_000)
    srv = close_notify_server(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
    conn = tls_conn(srv.port, tls_client_context)
    drive(conn, "send_request", "GET", "/")
    resp = drive(conn, "read_response")
    assert resp.length is None
    assert drive(conn, "readall") == body
    assert drive(conn, "read") == b""


@pytest.mark.parametrize("reader", ["readall", "readinto", "read_small"])
def test_until_close_body_without_close_notify(
    drive, scripted_server, tls_server_context, tls_client_context, reader
):
    # A TCP close without close_notify could be an attacker's forged FIN: the body
    # may have been cut, so it is not passed off as complete (RFC 9112, 9.8).
    body = body_for(50_000)
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body),
            Step.close(),
        ],
        ssl_context=tls_server_context,
    )
    conn = tls_conn(srv.port, tls_client_context)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    got = bytearray()

    def read_to_the_end() -> None:
        if reader == "readall":
            drive(conn, "readall")
        elif reader == "readinto":
            read_in_pieces(drive, conn, 30_000)
        else:
            while data := drive(conn, "read", 1000):
                got.extend(data)

    with pytest.raises(ConnectionClosed, match="close_notify"):
        read_to_the_end()
    assert body.startswith(got)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_cut_body_without_close_notify(
    drive, scripted_server, tls_server_context, tls_client_context, framing
):
    body = body_for(20_000)
    if framing == "length":
        data = response(body)[:-5000]
    else:
        data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, 4000))[
            :-2
        ]  # without the final CRLF
    srv = scripted_server(
        [Step.read_request(), Step.send(data), Step.close()], ssl_context=tls_server_context
    )
    conn = tls_conn(srv.port, tls_client_context)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    with pytest.raises(ConnectionClosed):
        drive(conn, "readall")


def test_complete_body_then_close_without_close_notify(
    drive, scripted_server, tls_server_context, tls_client_context
):
    # A body with a length is complete before the close: the missing alert is harmless,
    # and the next request goes out on a new connection.
    srv = scripted_server(
        [
            [Step.read_request(), Step.send(response(b"first")), Step.close()],
            [Step.read_request(), Step.send(response(b"second"))],
        ],
        ssl_context=tls_server_context,
    )
    conn = tls_conn(srv.port, tls_client_context)
    drive(conn, "send_request", "GET", "/1")
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"first"
    srv.wait_done(1)
    drive(conn, "send_request", "GET", "/2")
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"second"
    assert srv.connections == 2
    conn.disconnect()


@pytest.mark.parametrize("end", ["close", "reset"])
def test_handshake_cut(drive, scripted_server, tls_client_context, end):
    # A "TLS" server that closes (or resets) when the ClientHello arrives.
    srv = scripted_server([Step.read(5), Step.close() if end == "close" else Step.reset()])
    conn = tls_conn(srv.port, tls_client_context)
    with pytest.raises(ConnectionClosed, match="TLS handshake") as info:
        drive(conn, "send_request", "GET", "/")
    assert isinstance(info.value.__cause__, OSError)
    assert dugong.is_temp_network_error(info.value)


def test_server_not_speaking_tls(drive, scripted_server, tls_client_context):
    # The server keeps the connection until the client gives up (the answer is read,
    # not an EOF).
    srv = scripted_server(
        [Step.read(5), Step.send(b"HTTP/1.1 400 Bad Request\r\n\r\n"), Step.drain()]
    )
    conn = tls_conn(srv.port, tls_client_context)
    with pytest.raises(ssl.SSLError):
        drive(conn, "send_request", "GET", "/")


# ------------------------------------------------------------------ never hang


def test_many_small_records(hdrive, scripted_server, server_ctx, tls_client_context, tls_version):
    # Every 7 bytes go in a TLS record of their own. The first body is read 3 bytes at a
    # time straight from the TLS layer, which leaves records half-read over and over,
    # lastly at the very end, when the socket has nothing more to say (the server waits
    # for the next request). The second one, chunked, goes through the receive buffer.
    n = 3000 + -len(response(bytes(3000))) % 7  # so that the last record has 7 bytes too
    body = body_for(n)
    second = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, 500)
    srv = scripted_server(
        [
            Step.read_request(),
            Step.send(response(body), chunk=7),
            Step.read_request(),
            Step.send(second, chunk=7),
        ],
        ssl_context=server_ctx,
    )
    with tls_conn(srv.port, tls_client_context) as conn:
        hdrive(conn, "send_request", "GET", "/length")
        assert hdrive(conn, "read_response").length == n
        assert read_in_pieces(hdrive, conn, 3) == body
        hdrive(conn, "send_request", "GET", "/chunked")
        assert hdrive(conn, "read_response").status == 200
        got = bytearray()
        while data := hdrive(conn, "read", 3):
            got += data
        assert got == body
        assert (
            conn.get_ssl_cipher()[1]
            == {  # type: ignore[index]
                ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                ssl.TLSVersion.TLSv1_3: "TLSv1.3",
            }[tls_version]
        )


@pytest.mark.parametrize("size", [1, 1000, 20_000])
def test_large_body(hdrive, make_http_server, server_ctx, tls_client_context, size):
    # Full 16 KiB records read through buffers of *size* bytes (below, about and above a
    # record): the direct-read paths (readinto, read >= 16 KiB) and the buffered one.
    srv: HTTPTestServer = make_http_server(ssl_context=server_ctx)
    n = 20_000 if size == 1 else 2_000_000
    with tls_conn(srv.port, tls_client_context) as conn:
        hdrive(conn, "send_request", "GET", f"/size/{n}")
        hdrive(conn, "read_response")
        assert read_in_pieces(hdrive, conn, size) == body_for(n)
        hdrive(conn, "send_request", "GET", f"/chunked/{n}?chunk=50000")
        hdrive(conn, "read_response")
        got = bytearray()
        while data := hdrive(conn, "read", size):
            got += data
        assert got == body_for(n)
        hdrive(conn, "send_request", "GET", f"/size/{n}")
        hdrive(conn, "read_response")
        assert hdrive(conn, "readall") == body_for(n)


def test_large_upload(hdrive, make_http_server, server_ctx, tls_client_context):
    # 3 MB sent at once with the head, and 3 MB more in writes of 1 MB: the TLS write
    # blocks (want-write) and must be retried with the very same bytes.
    srv: HTTPTestServer = make_http_server(ssl_context=server_ctx)
    data = body_for(3_000_000)
    with tls_conn(srv.port, tls_client_context) as conn:
        hdrive(conn, "send_request", "PUT", "/echo", body=data)
        hdrive(conn, "read_response")
        assert read_in_pieces(hdrive, conn, 1000) == data
        hdrive(conn, "send_request", "PUT", "/echo", body=BodyFollowing(len(data)))
        for start in range(0, len(data), 1_000_000):
            hdrive(conn, "write", data[start : start + 1_000_000])
        hdrive(conn, "read_response")
        assert hdrive(conn, "readall") == data
        hdrive(conn, "send_request", "PUT", "/echo", body=BodyFollowing())
        hdrive(conn, "write", memoryview(data)[:100_000])
        hdrive(conn, "write", b"")
        hdrive(conn, "read_response")
        assert hdrive(conn, "readall") == data[:100_000]
    assert [len(r.body) for r in srv.requests] == [3_000_000, 3_000_000, 100_000]


def test_pipelined(hdrive, scripted_server, server_ctx, tls_client_context):
    # Eight responses written at once fill two TLS records; the sixth body straddles
    # them. Reading it 1000 bytes at a time leaves the rest of the second record (the
    # last two responses) decrypted in the TLS layer, with nothing more on the socket.
    bodies = [body_for(3000 + i) for i in range(8)]
    answers = b"".join(response(body) for body in bodies)
    srv = scripted_server([Step.read_request()] * 8 + [Step.send(answers)], ssl_context=server_ctx)
    with tls_conn(srv.port, tls_client_context) as conn:
        for i in range(8):
            hdrive(conn, "send_request", "GET", f"/{i}")
        for i, body in enumerate(bodies):
            resp = hdrive(conn, "read_response")
            assert (resp.path, resp.length) == (f"/{i}", len(body))
            assert read_in_pieces(hdrive, conn, 1000) == body
        assert not conn.response_pending()
    assert [r.path for r in srv.requests[0]] == [f"/{i}" for i in range(8)]


@pytest.mark.parametrize("chunked_body", [False, True])
def test_expect100(hdrive, scripted_server, server_ctx, tls_client_context, chunked_body):
    # The server answers 100, then reads nothing until the client's write has had to
    # wait (want-write: 16 MB fill every buffer); then it answers with one large write
    # that is read 1000 bytes at a time.
    size = 16_000_000
    final = response(body_for(60_000))
    blocked = threading.Event()
    srv = scripted_server(
        [
            Step.read_request(body=False),
            Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Step.wait_event(blocked),
            Step.read_body(),
            Step.send(final),
        ],
        ssl_context=server_ctx,
    )
    waits: list[int] = []
    with tls_conn(srv.port, tls_client_context) as conn:
        hdrive(
            conn,
            "send_request",
            "PUT",
            "/up",
            expect100=True,
            body=BodyFollowing(None if chunked_body else size),
        )
        assert hdrive(conn, "read_response").status == 100
        data = body_for(size)
        if hdrive.mode != "blocking":
            hdrive.run(counting(conn.co_write(data), waits, on_pollout=blocked.set))
            assert POLLOUT in waits  # the write did have to wait
        else:
            with once_waiting(blocked.set):  # the write does have to wait
                hdrive(conn, "write", data)
        if chunked_body:
            hdrive(conn, "write", b"")
        resp = hdrive(conn, "read_response")
        assert resp.status == 200
        assert read_in_pieces(hdrive, conn, 1000) == body_for(60_000)
    srv.wait_done()
    assert srv.requests[0][0].body == data


# ------------------------------------------------------------------ the transport itself


@pytest.fixture
def tls_pair(
    tls_server_context, tls_client_context, tls_ca
) -> Iterator[Callable[..., tuple[ssl.SSLSocket, ssl.SSLSocket]]]:
    """Factory for a connected pair of TLS 1.3 sockets (client, server) over a socketpair;
    ``handshake=False`` leaves the client's handshake undone."""
    made: list[socket.socket] = []

    def factory(
        *, handshake: bool = True, sndbuf: int | None = None, post_handshake_auth: bool = False
    ) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
        a, b = socket.socketpair()
        made.extend((a, b))
        if sndbuf is not None:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sctx, cctx = tls_server_context, tls_client_context
        sctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if post_handshake_auth:
            tls_ca.configure_trust(sctx)
            sctx.verify_mode = ssl.CERT_OPTIONAL
            sctx.post_handshake_auth = True
            tls_ca.issue_cert("client.test").configure_cert(cctx)
            cctx.post_handshake_auth = True
        server = sctx.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
        client = cctx.wrap_socket(a, server_hostname="localhost", do_handshake_on_connect=False)
        made.extend((server, client))
        server.settimeout(10)
        if handshake:
            thread = threading.Thread(target=server.do_handshake)
            thread.start()
            client.do_handshake()
            thread.join()
        client.setblocking(False)
        return client, server

    yield factory
    for sock in made:
        sock.close()


def run_transport(gen: Any) -> Any:
    return dugong.eval_coroutine(gen, HANG_TIMEOUT)


def co_recv_some(tr: TLSTransport, waits: list[int]) -> Any:
    buf = memoryview(bytearray(100))
    while True:
        n = tr.recv_into(buf)
        if n >= 0:
            return bytes(buf[:n])
        waits.append(tr.want.mask)
        yield tr.want


def test_want_write_during_receive(tls_pair):
    # TLS 1.3 post-handshake authentication: the server asks for a client certificate
    # while the client's socket cannot take another byte. The client's read must then
    # write (certificate, finished) first: the TLS read wants to write, and the caller
    # must wait until the socket is *writable*; it is readable all along (the server's
    # data is there), so waiting for that instead would only spin.
    client, server = tls_pair(sndbuf=4096, post_handshake_auth=True)
    tr = TLSTransport(client)
    sent = 0
    while tr.send(b"x") > 0:  # fill the socket; the last write is pending in TLS
        sent += 1
    assert tr.want.mask == POLLOUT
    server.recv(1)  # room for exactly the pending write
    assert tr.send(b"x") == 1
    server.verify_client_post_handshake()
    server.sendall(b"hello")

    buf = memoryview(bytearray(100))
    assert tr.recv_into(buf) == -1
    assert tr.want == (client.fileno(), POLLOUT)
    assert select.select([client], [], [], 0)[0]  # readable, but that is no use
    assert tr.recv(100) is None
    assert tr.want.mask == POLLOUT

    received = bytearray()

    def drain() -> None:
        while data := server.recv(4096):
            received.extend(data)

    thread = threading.Thread(target=drain)
    waits: list[int] = []
    with once_waiting(thread.start):  # the client waits first
        assert run_transport(co_recv_some(tr, waits)) == b"hello"
    assert waits and set(waits) == {POLLOUT}
    client.shutdown(socket.SHUT_WR)
    thread.join(10)
    assert received == b"x" * sent  # all but the one read before, and the retried one


def test_want_read_during_send(tls_pair):
    # A first write on a TLS socket whose handshake has not happened runs the handshake:
    # the write then waits for the server's answer, i.e. it wants to *read*.
    client, server = tls_pair(handshake=False)
    tr = TLSTransport(client)
    assert tr.send(b"hello") == -1
    assert tr.want == (client.fileno(), POLLIN)
    assert not select.select([client], [], [], 0)[0]

    got = []

    def serve() -> None:
        server.do_handshake()
        got.append(server.recv(100))

    thread = threading.Thread(target=serve)
    waits: list[int] = []
    with once_waiting(thread.start):  # the client waits first
        run_transport(counting(tr.co_send_all(b"hello"), waits))
    thread.join(10)
    assert got == [b"hello"]
    assert POLLIN in waits


def test_recv_returns_what_tls_holds_before_waiting(tls_pair):
    # One 10 kB record read in three steps: the 2nd and 3rd read come from the TLS
    # layer while the socket itself is empty.
    client, server = tls_pair()
    tr = TLSTransport(client)
    server.sendall(body_for(10_000))
    select.select([client], [], [], 5)
    buf = memoryview(bytearray(1000))
    assert tr.recv_into(buf) == 1000
    assert not select.select([client], [], [], 0)[0]  # the socket has nothing more
    assert client.pending() == 9000
    assert tr.recv_into(buf) == 1000
    rest = tr.recv(100_000)
    assert rest == body_for(10_000)[2000:]
    assert tr.recv(100) is None and tr.want.mask == POLLIN


def test_recv_size_and_clean_eof(tls_pair):
    client, server = tls_pair()
    tr = TLSTransport(client)
    server.sendall(body_for(200_000))
    got = bytearray()
    while len(got) < 200_000:
        data = tr.recv(1 << 20)
        if data is None:
            select.select([client], [], [], 5)
            continue
        assert 0 < len(data) <= 16384  # one record at most
        got += data
    assert got == body_for(200_000)
    server.setblocking(False)
    with pytest.raises(ssl.SSLWantReadError):
        server.unwrap()  # close_notify sent; the client's answer is not awaited
    select.select([client], [], [], 5)
    assert tr.recv(100) == b""
    assert tr.recv_into(memoryview(bytearray(10))) == 0


def test_ragged_eof_whoever_wrapped_the_socket(tls_pair):
    client, server = tls_pair()
    assert client.suppress_ragged_eofs  # the default of wrap_socket
    tr = TLSTransport(client)
    server.sendall(b"abc")
    server.close()
    select.select([client], [], [], 5)
    assert tr.recv(100) == b"abc"
    with pytest.raises(ConnectionClosed, match="close_notify") as info:
        tr.recv(100)
    assert isinstance(info.value.__cause__, ssl.SSLEOFError)
    with pytest.raises(ConnectionClosed, match="close_notify"):
        tr.recv_into(memoryview(bytearray(10)))


def test_sendv_joins_small_parts(tls_pair):
    client, server = tls_pair()
    tr = TLSTransport(client)
    assert tr.sendv([b"head\r\n", memoryview(b"body"), bytearray(b"!")]) == 11
    big = body_for(100_000)
    assert tr.sendv([b"head", big]) == 4  # too much to join: the first part alone
    assert server.recv(100) == b"head\r\nbody!"  # one record
    run_transport(tr.co_send_all([big, b"", b"tail"]))
    got = bytearray()
    while len(got) < 100_008:
        got += server.recv(65536)
    assert got == b"head" + big + b"tail"


def test_send_all_counts_bytes_not_items(tls_pair):
    import array

    client, server = tls_pair()
    tr = TLSTransport(client)
    numbers = array.array("i", range(1000))
    run_transport(tr.co_send_all(memoryview(numbers)))
    run_transport(tr.co_send_all([memoryview(numbers), b"."]))
    got = bytearray()
    while len(got) < 8001:
        got += server.recv(65536)
    assert got == numbers.tobytes() * 2 + b"."


def test_trace_file_records_tls_plaintext_once(
    monkeypatch, tmp_path, scripted_server, tls_server_context, tls_client_context
):
    body = body_for(100_000)
    answer = response(body)
    srv = scripted_server([Step.read_request(), Step.send(answer)], ssl_context=tls_server_context)
    monkeypatch.setenv("DUGONG_TRACEFILE", str(tmp_path / "trace-%d"))
    with tls_conn(srv.port, tls_client_context) as conn:
        conn.send_request("PUT", "/", body=body_for(10_000))  # head and body: sendv
        conn.read_response()
        got = bytearray()
        while data := conn.read(20_000):  # the recv() path, once the buffer is empty
            got += data
        assert got == body
    srv.wait_done()
    (trace,) = tmp_path.iterdir()
    assert trace.read_bytes() == srv.received[0] + answer


def reset_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair (client, server) on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_plain_transport_would_block_and_errors():
    from dugong._transport import PlainTransport

    client, server = reset_pair()
    with client, server:
        client.setblocking(False)
        tr = PlainTransport(client)
        assert tr.recv(10) is None and tr.want == (client.fileno(), POLLIN)
        assert tr.recv_into(memoryview(bytearray(10))) == -1 and tr.want.mask == POLLIN
        chunk = bytes(65536)
        while tr.sendv([b"x", chunk]) > 0:  # fill every buffer
            pass
        assert tr.want == (client.fileno(), POLLOUT)
        assert tr.send(chunk) == -1 and tr.want.mask == POLLOUT

        got = bytearray()

        def drain() -> None:
            while data := server.recv(1 << 20):
                got.extend(data)

        thread = threading.Thread(target=drain)
        thread.start()
        run_transport(tr.co_send_all(body_for(3_000_000)))  # short sends, then waits
        run_transport(tr.co_send_all([b"head", body_for(3_000_000), b"tail"]))
        client.shutdown(socket.SHUT_WR)
        thread.join(10)
        assert got.endswith(body_for(3_000_000) + b"head" + body_for(3_000_000) + b"tail")


@pytest.mark.parametrize("call", ["recv_into", "recv", "send", "sendv"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_transport_reset_by_peer(tls, call, tls_server_context, tls_client_context):
    from dugong._transport import PlainTransport

    client, server = reset_pair()
    if tls:
        servers: list[ssl.SSLSocket] = []
        thread = threading.Thread(
            target=lambda: servers.append(tls_server_context.wrap_socket(server, server_side=True))
        )
        thread.start()
        client = tls_client_context.wrap_socket(client, server_hostname="localhost")
        thread.join()
        server = servers[0]
    client.setblocking(False)
    tr: PlainTransport = TLSTransport(client) if tls else PlainTransport(client)
    with client:
        reset(server)
        select.select([client], [], [], 5)
        # (OpenSSL may report a reset under a read as an EOF without close_notify.)
        doing = "receiving|close_notify" if call.startswith("recv") else "sending"
        calls = {
            "recv_into": lambda: tr.recv_into(memoryview(bytearray(10))),
            "recv": lambda: tr.recv(10),
            "send": lambda: tr.send(b"x"),
            "sendv": lambda: tr.sendv([b"x", b"y"]),
        }
        with pytest.raises(ConnectionClosed, match=doing) as info:
            calls[call]()
        assert isinstance(info.value.__cause__, OSError)
        assert dugong.is_temp_network_error(info.value.__cause__)
