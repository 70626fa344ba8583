"""Proxies: plain requests in absolute form, TLS through a CONNECT tunnel, refused tunnels.

`Proxy` is a small proxy on 127.0.0.1 made for these tests: it checks each
request head it gets (absolute form for plain requests, a well-formed
``CONNECT`` with a matching ``Host`` for tunnels), records everything the client
sends, and relays the bytes to the origin server (a test server) and back.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import dugong
from dugong import (
    BodyFollowing,
    ConnectionClosed,
    HTTPConnection,
    InvalidResponse,
)
from servers import STEP_TIMEOUT, Request, Step, body_for, parse_request_head

pytestmark = pytest.mark.timeout(60)

_CONNECT_HEAD = re.compile(rb"CONNECT (\S+) HTTP/1\.1\r\nHost: (\S+)\r\n\r\n")


class Proxy:
    """An HTTP proxy for tests.

    Args:
        routes: where to connect for an authority (``"host:port"``) the client
            names; any other authority is an error.
        connect_answer: if given, every CONNECT gets these bytes as its answer
            and the connection is closed (a refusing or broken proxy).
        dribble: send the "200 Connection established" one byte at a time.

    ``heads`` lists, per client connection, the first request head received;
    ``received`` everything the client sent on each connection. Problems go to
    ``errors`` and are raised by ``check()``.
    """

    def __init__(self, routes: dict[str, tuple[str, int]], *,
                 connect_answer: bytes | None = None, dribble: bool = False) -> None:
        self.routes = routes
        self.connect_answer = connect_answer
        self.dribble = dribble
        self.heads: list[bytes] = []
        self.received: list[bytearray] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = ("127.0.0.1", self._listener.getsockname()[1])
        self._spawn(self._accept_loop)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            with self._lock:
                self._sockets.append(client)
                record = bytearray()
                self.received.append(record)
            self._spawn(self._serve, client, record)

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _serve(self, client: socket.socket, record: bytearray) -> None:
        try:
            self._serve_checked(client, record)
        except OSError as exc:
            if not self._stopping:
                self._error(f"proxy: {exc!r}")

    def _serve_checked(self, client: socket.socket, record: bytearray) -> None:
        client.settimeout(STEP_TIMEOUT)
        data = bytearray()
        while b"\r\n\r\n" not in data:
            piece = client.recv(65536)
            if not piece:
                return
            data += piece
            record += piece
        end = data.index(b"\r\n\r\n") + 4
        head, rest = bytes(data[:end]), bytes(data[end:])
        with self._lock:
            self.heads.append(head)
        if head.startswith(b"CONNECT "):
            match = _CONNECT_HEAD.fullmatch(head)
            if match is None or match[1] != match[2]:
                self._error(f"proxy: malformed CONNECT head {head!r}")
                return
            if rest:
                self._error(f"proxy: bytes before the tunnel was answered: {rest!r}")
            if self.connect_answer is not None:
                client.sendall(self.connect_answer)
                client.shutdown(socket.SHUT_WR)
                return
            upstream = self._open(match[1].decode())
            if upstream is None:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            answer = b"HTTP/1.1 200 Connection established\r\n\r\n"
            for piece in [answer[i:i + 1] for i in range(len(answer))] if self.dribble \
                    else [answer]:
                client.sendall(piece)
        else:
            request = parse_request_head(head)
            authority = re.fullmatch(r"http://([^/]+)/.*", request.target)
            if authority is None:
                self._error(f"proxy: target not in absolute form: {request.target!r}")
                return
            upstream = self._open(authority[1])
            if upstream is None:
                return
            upstream.sendall(head + rest)
        self._spawn(self._pump, upstream, client, None)
        self._pump(client, upstream, record)

    def _open(self, authority: str) -> socket.socket | None:
        if authority not in self.routes:
            self._error(f"proxy: unexpected authority {authority!r}")
            return None
        upstream = socket.create_connection(self.routes[authority], timeout=STEP_TIMEOUT)
        with self._lock:
            self._sockets.append(upstream)
        return upstream

    def _pump(self, src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    record += data
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # one side went away: the test sees that from the client side

    def requests(self, index: int = 0) -> list[Request]:
        """The plain requests the client sent on connection *index*, parsed."""
        data = bytes(self.received[index])
        out = []
        while data:
            end = data.index(b"\r\n\r\n") + 4
            request = parse_request_head(data[:end])
            size = int(request.header("Content-Length", "0"))  # type: ignore[arg-type]
            request.body = data[end:end + size]
            data = data[end + size:]
            out.append(request)
        return out

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            threads = list(self._threads)
        threads[0].join(5)  # the accept loop
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
            if thread.is_alive():
                self._error("proxy thread did not stop")

    def check(self) -> None:
        if self.errors:
            raise AssertionError("\n".join(self.errors))


@pytest.fixture
def make_proxy() -> Iterator[Any]:
    proxies: list[Proxy] = []

    def factory(routes: dict[str, tuple[str, int]] | None = None, **kwargs: Any) -> Proxy:
        proxies.append(Proxy(routes or {}, **kwargs))
        return proxies[-1]

    yield factory
    for proxy in proxies:
        proxy.stop()
    for proxy in proxies:
        proxy.check()


def get(drive: Any, conn: HTTPConnection, path: str, **kwargs: Any) -> tuple[int, bytes]:
    drive(conn, "send_request", "GET", path, **kwargs)
    status = drive(conn, "read_response").status
    return status, drive(conn, "readall")


# ------------------------------------------------------------------ plain HTTP


def test_plain_requests_in_absolute_form(drive, http_server, make_proxy):
    origin = f"127.0.0.1:{http_server.port}"
    proxy = make_proxy({origin: http_server.address})
    with HTTPConnection("127.0.0.1", http_server.port, proxy=proxy.address) as conn:
        assert get(drive, conn, "/size/1000") == (200, body_for(1000))
        drive(conn, "send_request", "PUT", "/echo?x=1", body=b"hello")
        drive(conn, "read_response")
        assert drive(conn, "readall") == b"hello"
        drive(conn, "send_request", "POST", "/echo", body=BodyFollowing(3))
        drive(conn, "write", b"abc")
        drive(conn, "read_response")
        assert drive(conn, "readall") == b"abc"
    assert len(proxy.received) == 1  # one connection, kept alive
    sent = proxy.requests()
    assert [(r.method, r.target) for r in sent] == [
        ("GET", f"http://{origin}/size/1000"),
        ("PUT", f"http://{origin}/echo?x=1"),
        ("POST", f"http://{origin}/echo"),
    ]
    assert all(r.header_all("Host") == [origin] for r in sent)
    assert [r.body for r in sent] == [b"", b"hello", b"abc"]
    assert [r.target for r in http_server.requests] == [r.target for r in sent]


def test_plain_request_default_port(drive, http_server, make_proxy):
    proxy = make_proxy({"localhost:80": http_server.address})
    with HTTPConnection("localhost", proxy=proxy.address) as conn:
        assert get(drive, conn, "/size/3") == (200, body_for(3))
    (request,) = proxy.requests()
    assert request.target == "http://localhost:80/size/3"
    assert request.header_all("Host") == ["localhost"]


def test_plain_request_ipv6_literal(drive, scripted_server):
    # The proxy is a scripted server that answers itself.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    proxy = scripted_server([Step.read_request(), Step.send(answer)])
    with HTTPConnection("::1", 8080, proxy=proxy.address) as conn:
        assert get(drive, conn, "/x") == (200, b"ok")
    (request,) = proxy.requests[0]
    assert request.target == "http://[::1]:8080/x"
    assert request.header_all("Host") == ["[::1]:8080"]


# ------------------------------------------------------------------ CONNECT tunnels


@pytest.mark.parametrize("dribble", [False, True])
def test_tls_through_tunnel(drive, https_server, tls_client_context, make_proxy, dribble):
    authority = f"localhost:{https_server.port}"
    proxy = make_proxy({authority: https_server.address}, dribble=dribble)
    with HTTPConnection("localhost", https_server.port, ssl_context=tls_client_context,
                        proxy=proxy.address) as conn:
        assert get(drive, conn, "/size/50000") == (200, body_for(50_000))
        assert get(drive, conn, "/chunked/3000") == (200, body_for(3000))
        assert conn.get_ssl_peercert()["subjectAltName"]  # end-to-end TLS with the origin
    assert proxy.heads == [f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()]
    assert b"/size/50000" not in proxy.received[0]  # the proxy only saw ciphertext
    # Inside the tunnel, requests are in origin form, as to any server.
    assert [r.target for r in https_server.requests] == ["/size/50000", "/chunked/3000"]
    assert dict(https_server.requests[0].headers)["Host"] == authority


def test_tunnel_default_port(drive, https_server, tls_client_context, make_proxy):
    proxy = make_proxy({"localhost:443": https_server.address})
    with HTTPConnection("localhost", ssl_context=tls_client_context,
                        proxy=proxy.address) as conn:
        assert conn.port == 443
        assert get(drive, conn, "/size/10") == (200, body_for(10))
    assert proxy.heads == [b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n"]
    assert dict(https_server.requests[0].headers)["Host"] == "localhost"


def test_tunnel_ipv6_authority(drive, scripted_server, tls_client_context):
    refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    expected = b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"
    proxy = scripted_server([Step.expect(expected), Step.send(refusal)])
    conn = HTTPConnection("::1", 8443, ssl_context=tls_client_context, proxy=proxy.address)
    with pytest.raises(ConnectionError, match="403"):
        drive(conn, "send_request", "GET", "/")


@pytest.mark.parametrize(("answer", "status"), [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
     b"Content-Length: 0\r\n\r\n", "407 Proxy Authentication Required"),
    (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nno upstream", "502 Bad Gateway"),
    (b"HTTP/1.0 403 Forbidden\r\n\r\n", "403 Forbidden"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", "204 No Content"),  # only 200 opens the tunnel
])
def test_tunnel_refused(drive, tls_client_context, make_proxy, answer, status):
    proxy = make_proxy(connect_answer=answer)
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context,
                          proxy=proxy.address)
    with pytest.raises(ConnectionError, match=status) as info:
        drive(conn, "send_request", "GET", "/")
    assert "localhost:8443" in str(info.value)
    assert not isinstance(info.value, dugong.DugongError)
    assert dugong.is_temp_network_error(info.value)
    assert not conn.response_pending()


def test_tunnel_refusal_dribbled(drive, scripted_server, tls_client_context):
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"
    proxy = scripted_server([Step.read_request(), Step.send(refusal, chunk=1)])
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context,
                          proxy=proxy.address)
    with pytest.raises(ConnectionError, match="407"):
        drive(conn, "send_request", "GET", "/")


def test_http10_200_opens_tunnel(drive, https_server, tls_client_context, scripted_server):
    # Many proxies answer "HTTP/1.0 200 Connection established". Here a scripted server
    # answers so, then closes: the TLS handshake that follows finds the tunnel gone.
    proxy = scripted_server([Step.read_request(),
                             Step.send(b"HTTP/1.0 200 Connection established\r\n\r\n"),
                             Step.read(5), Step.close()])
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context,
                          proxy=proxy.address)
    with pytest.raises(ConnectionClosed, match="TLS handshake"):
        drive(conn, "send_request", "GET", "/")
    assert b"\r\n\r\n\x16\x03" in proxy.received[0]  # a TLS record follows the answer


@pytest.mark.parametrize(("steps", "error", "match"), [
    ([Step.read_request(), Step.close()], ConnectionClosed, "before answering CONNECT"),
    ([Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\n"), Step.close()],
     ConnectionClosed, "before answering CONNECT"),
    ([Step.read_request(), Step.send(b"SSH-2.0-OpenSSH\r\n\r\n")], InvalidResponse,
     "status line"),
    ([Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03")],
     InvalidResponse, "after its answer"),
    ([Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000,
                                     may_fail=True)],
     InvalidResponse, "too long"),
])
def test_tunnel_broken_answers(drive, scripted_server, tls_client_context, steps, error,
                               match):
    proxy = scripted_server(steps)
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context,
                          proxy=proxy.address)
    with pytest.raises(error, match=match):
        drive(conn, "send_request", "GET", "/")


def test_tunnel_then_reconnect(drive, https_server, tls_client_context, make_proxy):
    # After disconnect() the next request opens a new tunnel.
    authority = f"localhost:{https_server.port}"
    proxy = make_proxy({authority: https_server.address})
    conn = HTTPConnection("localhost", https_server.port, ssl_context=tls_client_context,
                          proxy=proxy.address)
    assert get(drive, conn, "/size/5") == (200, body_for(5))
    conn.disconnect()
    assert get(drive, conn, "/size/6") == (200, body_for(6))
    conn.disconnect()
    assert len(proxy.heads) == 2


def test_unresolvable_proxy(drive, monkeypatch, tls_client_context):
    # The proxy's name is what gets resolved (the target's is the proxy's business).
    asked = []

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(dugong, "DNS_TEST_HOSTNAMES", ())
    conn = HTTPConnection("origin.test", ssl_context=tls_client_context,
                          proxy=("proxy.test", 3128))
    with pytest.raises(dugong.DNSUnavailable):
        drive(conn, "send_request", "GET", "/")
    assert asked == ["proxy.test"]


def test_check_hostname_through_tunnel(drive, https_server, tls_ca, make_proxy):
    # The certificate is checked against the origin's name, not the proxy's.
    authority = f"127.0.0.2:{https_server.port}"
    proxy = make_proxy({authority: https_server.address})
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    conn = HTTPConnection("127.0.0.2", https_server.port, ssl_context=context,
                          proxy=proxy.address)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"127\.0\.0\.2"):
        drive(conn, "send_request", "GET", "/")

