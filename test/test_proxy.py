"""Proxies: plain requests in absolute form, TLS through a CONNECT tunnel, refused tunnels.

The proxy is `proxy_server.Proxy`, made by the ``make_proxy`` fixture.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest

import dugong
from dugong import (
    BodyFollowing,
    ConnectionClosed,
    HTTPConnection,
    InvalidResponse,
)
from servers import Step, body_for

pytestmark = pytest.mark.timeout(60)


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
    assert request.target == "http://localhost/size/3"  # as dugong 3.x: no default port
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
    with HTTPConnection(
        "localhost", https_server.port, ssl_context=tls_client_context, proxy=proxy.address
    ) as conn:
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
    with HTTPConnection("localhost", ssl_context=tls_client_context, proxy=proxy.address) as conn:
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


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
            b"Content-Length: 0\r\n\r\n",
            "407 Proxy Authentication Required",
        ),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nno upstream", "502 Bad Gateway"),
        (b"HTTP/1.0 403 Forbidden\r\n\r\n", "403 Forbidden"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", "204 No Content"),  # only 200 opens the tunnel
    ],
)
def test_tunnel_refused(drive, tls_client_context, make_proxy, answer, status):
    proxy = make_proxy(connect_answer=answer)
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context, proxy=proxy.address)
    with pytest.raises(ConnectionError, match=status) as info:  # as dugong 3.x raised
        drive(conn, "send_request", "GET", "/")
    assert "localhost:8443" in str(info.value)
    assert isinstance(info.value, dugong.ProxyError)
    assert isinstance(info.value, dugong.DugongError)  # everything dugong raises itself
    assert str(info.value.status) == status[:3]
    assert dugong.is_temp_network_error(info.value)
    assert not conn.response_pending()


def test_tunnel_refusal_dribbled(drive, scripted_server, tls_client_context):
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"
    proxy = scripted_server([Step.read_request(), Step.send(refusal, chunk=1)])
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context, proxy=proxy.address)
    with pytest.raises(ConnectionError, match="407"):
        drive(conn, "send_request", "GET", "/")


def test_http10_200_opens_tunnel(drive, https_server, tls_client_context, scripted_server):
    # Many proxies answer "HTTP/1.0 200 Connection established". Here a scripted server
    # answers so, then closes: the TLS handshake that follows finds the tunnel gone.
    proxy = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.0 200 Connection established\r\n\r\n"),
            Step.read(5),
            Step.close(),
        ]
    )
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context, proxy=proxy.address)
    with pytest.raises(ConnectionClosed, match="TLS handshake"):
        drive(conn, "send_request", "GET", "/")
    assert b"\r\n\r\n\x16\x03" in proxy.received[0]  # a TLS record follows the answer


@pytest.mark.parametrize(
    ("steps", "error", "match"),
    [
        ([Step.read_request(), Step.close()], ConnectionClosed, "before answering CONNECT"),
        (
            [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\n"), Step.close()],
            ConnectionClosed,
            "before answering CONNECT",
        ),
        (
            [Step.read_request(), Step.send(b"SSH-2.0-OpenSSH\r\n\r\n")],
            InvalidResponse,
            "status line",
        ),
        (
            [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03")],
            InvalidResponse,
            "after its answer",
        ),
        (
            [
                Step.read_request(),
                Step.send(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, may_fail=True),
            ],
            InvalidResponse,
            "too long",
        ),
    ],
)
def test_tunnel_broken_answers(drive, scripted_server, tls_client_context, steps, error, match):
    proxy = scripted_server(steps)
    conn = HTTPConnection("localhost", 8443, ssl_context=tls_client_context, proxy=proxy.address)
    with pytest.raises(error, match=match):
        drive(conn, "send_request", "GET", "/")


def test_tunnel_then_reconnect(drive, https_server, tls_client_context, make_proxy):
    # After disconnect() the next request opens a new tunnel.
    authority = f"localhost:{https_server.port}"
    proxy = make_proxy({authority: https_server.address})
    conn = HTTPConnection(
        "localhost", https_server.port, ssl_context=tls_client_context, proxy=proxy.address
    )
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
    conn = HTTPConnection(
        "origin.test", ssl_context=tls_client_context, proxy=("proxy.test", 3128)
    )
    with pytest.raises(dugong.DNSUnavailable):
        drive(conn, "send_request", "GET", "/")
    assert asked == ["proxy.test"]


def test_check_hostname_through_tunnel(drive, https_server, tls_ca, make_proxy):
    # The certificate is checked against the origin's name, not the proxy's.
    authority = f"127.0.0.2:{https_server.port}"
    proxy = make_proxy({authority: https_server.address})
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    conn = HTTPConnection("127.0.0.2", https_server.port, ssl_context=context, proxy=proxy.address)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"127\.0\.0\.2"):
        drive(conn, "send_request", "GET", "/")


# ------------------------------------------------------------------ proxy_headers

AUTH = {"Proxy-Authorization": "Basic dTpw"}


def test_proxy_headers_on_plain_requests(drive, http_server, make_proxy):
    origin = f"127.0.0.1:{http_server.port}"
    proxy = make_proxy({origin: http_server.address})
    with HTTPConnection(
        "127.0.0.1", http_server.port, proxy=proxy.address, proxy_headers=AUTH
    ) as conn:
        assert get(drive, conn, "/size/3") == (200, body_for(3))
        drive(conn, "send_request", "GET", "/size/2", headers={"proxy-authorization": "x"})
        drive(conn, "read_response")
        drive(conn, "readall")
    sent = proxy.requests()
    assert [r.header_all("Proxy-Authorization") for r in sent] == [["Basic dTpw"]] * 2


def test_proxy_headers_on_connect_only(drive, https_server, tls_client_context, make_proxy):
    authority = f"localhost:{https_server.port}"
    proxy = make_proxy({authority: https_server.address})
    with HTTPConnection(
        "localhost",
        https_server.port,
        ssl_context=tls_client_context,
        proxy=proxy.address,
        proxy_headers=AUTH,
    ) as conn:
        assert get(drive, conn, "/size/5") == (200, body_for(5))
    assert proxy.heads == [
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        "Proxy-Authorization: Basic dTpw\r\n\r\n".encode()
    ]
    assert "Proxy-Authorization" not in dict(https_server.requests[0].headers)


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Proxy-Authorization": "a\r\nX: y"}, ValueError),
        ({"Bad Name": "x"}, ValueError),
        ({"Proxy-Authorization": "\u20ac"}, ValueError),
        ({"Proxy-Authorization": 3}, TypeError),
    ],
)
def test_bad_proxy_headers(headers, error):
    with pytest.raises(error):
        HTTPConnection("localhost", proxy=("127.0.0.1", 3128), proxy_headers=headers)


def test_proxy_headers_need_a_proxy():
    with pytest.raises(ValueError, match="needs a proxy"):
        HTTPConnection("localhost", proxy_headers=AUTH)
