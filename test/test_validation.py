"""Request validation: bad arguments raise before a single byte is sent.

Every refused call is made on a connection that is already open (after a good
request) and on a fresh one; the scripted server's record of received bytes
then shows that exactly the good requests reached it, and the connection is
still usable.
"""

from __future__ import annotations

import pytest

from dugong import BodyFollowing, HTTPConnection
from dugong._protocol import request_head
from servers import Step, parse_request_head

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"

# (method, path, headers) -> the exception; each differs from a good GET in one place.
BAD_REQUESTS = {
    "method with SP": (("GE T", "/", None), ValueError),
    "method with CRLF": (("GET\r\n", "/", None), ValueError),
    "method with LF": (("GET\n", "/", None), ValueError),
    "method with CR": (("G\rET", "/", None), ValueError),
    "method with NUL": (("GET\x00", "/", None), ValueError),
    "empty method": (("", "/", None), ValueError),
    "method with separator": (("GET(", "/", None), ValueError),
    "non-ASCII method": (("G\xc9T", "/", None), ValueError),
    "non-latin-1 method": (("G\u20acT", "/", None), ValueError),
    "bytes method": ((b"GET", "/", None), TypeError),
    "path with SP": (("GET", "/a b", None), ValueError),
    "path with CRLF": (("GET", "/a\r\nX-Injected: 1", None), ValueError),
    "path with LF": (("GET", "/a\n", None), ValueError),
    "path with CR": (("GET", "/a\r", None), ValueError),
    "path with NUL": (("GET", "/a\x00", None), ValueError),
    "path with HTAB": (("GET", "/a\tb", None), ValueError),
    "path with DEL": (("GET", "/a\x7f", None), ValueError),
    "empty path": (("GET", "", None), ValueError),
    "non-latin-1 path": (("GET", "/\u20ac", None), ValueError),
    "bytes path": (("GET", b"/", None), TypeError),
    "name with SP": (("GET", "/", {"X Y": "1"}), ValueError),
    "name with colon": (("GET", "/", {"X:Y": "1"}), ValueError),
    "name with CRLF": (("GET", "/", {"X\r\nY": "1"}), ValueError),
    "name with LF": (("GET", "/", {"X\nY": "1"}), ValueError),
    "name with NUL": (("GET", "/", {"X\x00": "1"}), ValueError),
    "empty name": (("GET", "/", {"": "1"}), ValueError),
    "name with separator": (("GET", "/", {"X@Y": "1"}), ValueError),
    "non-ASCII name": (("GET", "/", {"X-\xe9": "1"}), ValueError),
    "non-latin-1 name": (("GET", "/", {"X-\u20ac": "1"}), ValueError),
    "bytes name": (("GET", "/", {b"X": "1"}), TypeError),
    "value with CRLF": (("GET", "/", {"X": "1\r\nX-Injected: 2"}), ValueError),
    "value with LF": (("GET", "/", {"X": "1\n2"}), ValueError),
    "value with CR": (("GET", "/", {"X": "1\r2"}), ValueError),
    "value with NUL": (("GET", "/", {"X": "1\x002"}), ValueError),
    "value ending in CRLF": (("GET", "/", {"X": "1\r\n"}), ValueError),
    "non-latin-1 value": (("GET", "/", {"X": "\u20ac"}), ValueError),
    "bytes value": (("GET", "/", {"X": b"1"}), TypeError),
    "int value": (("GET", "/", {"X": 1}), TypeError),
    "bad value among good ones": (("GET", "/", {"A": "1", "B": "2", "C": "3\n"}), ValueError),
    "bad Host value": (("GET", "/", {"Host": "h\r\nX: 1"}), ValueError),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request(case):
    (method, path, headers), exc = case
    with pytest.raises(exc):
        request_head(method, path, headers, "h", (("Content-Length", "0"),), ("content-length",))


@pytest.fixture
def connect():
    """Factory of connections to a server, all closed when the test ends."""
    made = []

    def factory(srv):
        made.append(HTTPConnection("127.0.0.1", srv.port))
        return made[-1]

    yield factory
    for conn in made:
        conn.disconnect()


@pytest.fixture
def server(scripted_server):
    """Answers exactly two requests, on one connection."""
    return scripted_server(
        [Step.read_request(), Step.send(OK_3), Step.read_request(), Step.send(OK_3)]
    )


def good_request(drive, conn, path):
    drive(conn, "send_request", "GET", path)
    assert drive(conn, "read_response").status == 200
    assert drive(conn, "readall") == b"abc"


def test_bad_requests_send_nothing(drive, server, connect):
    conn = connect(server)
    # On a connection not yet opened: it is not even opened.
    for (method, path, headers), exc in BAD_REQUESTS.values():
        with pytest.raises(exc):
            drive(conn, "send_request", method, path, headers)
    assert server.connections == 0
    good_request(drive, conn, "/first")
    # On an open connection: refused, whatever the body, and the connection goes on
    # as if nothing had happened.
    for (method, path, headers), exc in BAD_REQUESTS.values():
        for body in (None, b"data", BodyFollowing(4), BodyFollowing()):
            with pytest.raises(exc):
                drive(conn, "send_request", method, path, headers, body)
    assert not conn.response_pending()
    good_request(drive, conn, "/second")
    server.wait_done()
    received = server.received
    assert len(received) == 1
    first, second = server.requests[0]
    assert received[0] == first.raw + second.raw
    assert (first.target, second.target) == ("/first", "/second")


def test_exceptions_name_the_culprit():
    def message(*args):
        with pytest.raises(ValueError) as info:
            request_head(*args, "h", (), ())
        return str(info.value)

    assert "'GE T'" in message("GE T", "/", None)
    assert "'/a b'" in message("GET", "/a b", None)
    assert "'X Y'" in message("GET", "/", {"X Y": "1"})
    assert "'Bad'" in message("GET", "/", {"Good": "1", "Bad": "2\r\n"})


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"body": "text"}, TypeError),
        ({"body": 5}, TypeError),
        ({"body": [b"x"]}, TypeError),
        ({"body": b"x", "expect100": True}, ValueError),
        ({"body": None, "expect100": True}, ValueError),
    ],
    ids=["str body", "int body", "list body", "expect100 with bytes", "expect100 without body"],
)
def test_bad_body_arguments_send_nothing(drive, server, connect, kwargs, exc):
    conn = connect(server)
    good_request(drive, conn, "/first")
    with pytest.raises(exc):
        drive(conn, "send_request", "PUT", "/x", **kwargs)
    good_request(drive, conn, "/second")
    server.wait_done()
    first, second = server.requests[0]
    assert server.received == [first.raw + second.raw]


def test_bad_body_following():
    with pytest.raises(ValueError):
        BodyFollowing(-1)
    with pytest.raises(TypeError):
        BodyFollowing("5")
    with pytest.raises(TypeError):
        BodyFollowing(True)


class Name(str):
    """A str subclass, e.g. what an enum.StrEnum member is."""


def test_good_edge_cases_go_out_as_given(drive, scripted_server, connect):
    srv = scripted_server([Step.read_request(), Step.send(OK_3)])
    conn = connect(srv)
    tchars = "!#$%&'*+-.^_`|~09AZaz"
    headers = {
        tchars: "\xe9t\xe9 \t value",
        Name("X-Sub"): Name("sub"),
        "X-Empty": "",
        "X-Controls": "a\x01\x7fb",
    }
    drive(conn, "send_request", tchars, "/p%20?q=\xe9&r=/s", headers)
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"abc"
    srv.wait_done()
    (req,) = srv.requests[0]
    assert req.method == tchars
    assert req.target == "/p%20?q=\xe9&r=/s"
    assert req.header(tchars) == "\xe9t\xe9 \t value"
    assert req.header("x-sub") == "sub"
    assert req.header("X-Empty") == ""
    assert req.header("X-Controls") == "a\x01\x7fb"
    assert b"/p%20?q=\xe9&r=/s" in req.raw  # latin-1 on the wire


def test_request_head_is_what_servers_parse():
    head = request_head(
        "POST",
        "/x?y",
        {"A": "1", "content-length": "99"},
        "h:8",
        (("Content-Length", "5"),),
        ("content-length",),
    )
    req = parse_request_head(head)
    assert (req.method, req.target, req.version) == ("POST", "/x?y", "HTTP/1.1")
    assert req.headers == [
        ("A", "1"),
        ("Host", "h:8"),
        ("Accept-Encoding", "identity"),
        ("Connection", "keep-alive"),
        ("Content-Length", "5"),
    ]


def test_token_cache_stays_bounded():
    """Names that passed the token check are remembered, but not without limit."""
    from dugong import _protocol

    for i in range(5000):
        request_head("GET", "/", {f"X-Name-{i}": "1"}, "h", (), ())
    assert 0 < len(_protocol._good_tokens) <= 4097
    with pytest.raises(ValueError):  # a cleared cache still checks
        request_head("GET", "/", {"X Name": "1"}, "h", (), ())
