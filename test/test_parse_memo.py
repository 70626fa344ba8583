"""Repeated response heads reuse their parse, without sharing errors or ignoring limits."""

from __future__ import annotations

import pytest

import dugong
from dugong import _protocol as P

HEAD = "HTTP/1.1 200 OK\r\nServer: test\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n"


def test_equal_heads_share_one_parse():
    P._parsed.clear()
    first = P.parse_response("GET", HEAD, 8192, 65536, 512)
    again = P.parse_response("GET", "".join(list(HEAD)), 8192, 65536, 512)
    assert again is first
    head, framing = first
    assert (head.status, framing.kind, framing.length) == (200, P.BodyKind.LENGTH, 3)
    # The method is part of what is remembered: HEAD has no body.
    assert P.parse_response("HEAD", HEAD, 8192, 65536, 512)[1].kind is P.BodyKind.NONE


def test_limits_are_part_of_the_key():
    P._parsed.clear()
    P.parse_response("GET", HEAD, 8192, 65536, 512)
    with pytest.raises(dugong.InvalidResponse, match="Too many header fields"):
        P.parse_response("GET", HEAD, 8192, 65536, 2)


def test_framing_errors_are_never_shared():
    P._parsed.clear()
    bad = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    one = P.parse_response("GET", bad, 8192, 65536, 512)[1].error
    two = P.parse_response("GET", bad, 8192, 65536, 512)[1].error
    assert isinstance(one, dugong.InvalidResponse)
    assert one is not two


def test_memory_is_bounded():
    P._parsed.clear()
    for i in range(3 * P._PARSED_ENTRIES):
        P.parse_response("GET", HEAD.replace("test", f"test{i}"), 8192, 65536, 512)
    assert len(P._parsed) <= P._PARSED_ENTRIES
    big = HEAD.replace("test", "x" * P._PARSED_HEAD_SIZE)
    P._parsed.clear()
    P.parse_response("GET", big, 8192, 65536, 512)
    assert not P._parsed


def test_connection_responses_with_the_same_head(drive, scripted_server):
    from servers import Step

    resp = HEAD.encode() + b"abc"
    srv = scripted_server([Step.read_request(), Step.read_request(), Step.send(resp * 2)])
    conn = dugong.HTTPConnection("127.0.0.1", srv.port)
    drive(conn, "send_request", "GET", "/1")
    drive(conn, "send_request", "GET", "/2")
    r1 = drive(conn, "read_response")
    assert drive(conn, "readall") == b"abc"
    r2 = drive(conn, "read_response")
    assert drive(conn, "readall") == b"abc"
    assert (r1.path, r2.path) == ("/1", "/2")
    assert r1.headers["server"] == r2.headers["server"] == "test"
    assert r1 is not r2
    conn.disconnect()


def test_a_head_repeating_the_previous_one_is_not_parsed_again(
    drive, scripted_server, monkeypatch
):
    """On one connection, a head equal byte for byte to the previous one reuses its parse,
    but only for the same method and the same limits."""
    from dugong import engine
    from servers import Step

    calls = []

    def counting(*args):
        calls.append(args[0])
        return P.parse_response(*args)

    monkeypatch.setattr(engine, "parse_response", counting)
    resp = HEAD.encode() + b"abc"
    srv = scripted_server([*[Step.read_request()] * 5, Step.send(resp * 3 + HEAD.encode() + resp)])
    conn = dugong.HTTPConnection("127.0.0.1", srv.port)
    for method in ("GET", "GET", "GET", "HEAD", "GET"):
        drive(conn, "send_request", method, "/")
    for _ in range(3):
        assert drive(conn, "read_response").length == 3
        assert drive(conn, "readall") == b"abc"
    assert calls == ["GET"]  # the 2nd and 3rd head: same bytes, same parse
    head = drive(conn, "read_response")  # the same bytes, but HEAD has no body
    assert (head.method, head.length) == ("HEAD", 0)
    assert calls == ["GET", "HEAD"]
    monkeypatch.setattr(dugong, "MAX_HEADER_FIELDS", 2)  # the limits count too
    with pytest.raises(dugong.InvalidResponse, match="Too many header fields"):
        drive(conn, "read_response")
    conn.disconnect()


def test_request_heads_without_caller_fields_are_reused_and_still_checked():
    P._plain_heads.clear()
    fields = (("Content-Length", "0"),)
    names = ("content-length", "transfer-encoding")
    one = P.request_head("GET", "/a", None, "h", fields, names)
    assert P.request_head("GET", "/a", {}, "h", fields, names) is one
    assert P.request_head("GET", "/a", None, "other", fields, names) != one
    for _ in range(2):  # a refused head is never remembered
        with pytest.raises(ValueError, match="invalid request target"):
            P.request_head("GET", "/a b", None, "h", fields, names)
    for i in range(1200):
        P.request_head("GET", f"/{i}", None, "h", fields, names)
    assert len(P._plain_heads) <= 512
    with_fields = P.request_head("GET", "/a", {"X": "1"}, "h", fields, names)
    assert b"X: 1\r\n" in with_fields


def test_a_connection_reuses_its_last_plain_request_only_when_it_is_the_same(
    drive, scripted_server
):
    """The bytes of a bodiless request without caller fields are kept per connection: the
    same method and path again send the same bytes; anything else is built anew."""
    from servers import Step

    resp = HEAD.encode() + b"abc"
    calls = [
        ("GET", "/a", None),
        ("GET", "/a", None),
        ("GET", "/b", None),
        ("HEAD", "/b", None),
        ("HEAD", "/b", {"X-Extra": "1"}),
        ("HEAD", "/b", None),
    ]
    srv = scripted_server(
        [*[Step.read_request()] * len(calls), Step.send(resp * 3 + HEAD.encode() * 3)]
    )
    conn = dugong.HTTPConnection("127.0.0.1", srv.port)
    for method, path, headers in calls:
        drive(conn, "send_request", method, path, headers)
    got = []
    for _ in calls:
        answer = drive(conn, "read_response")
        drive(conn, "readall")
        got.append((answer.method, answer.path))
    assert got == [(m, p) for m, p, _ in calls]
    lines = [line for line in srv.received[0].split(b"\r\n") if b" HTTP/1.1" in line]
    assert lines == [f"{m} {p} HTTP/1.1".encode() for m, p, _ in calls]
    assert srv.received[0].count(b"X-Extra: 1\r\n") == 1
    with pytest.raises(ValueError, match="invalid request target"):  # still checked
        drive(conn, "send_request", "GET", "/a b")
    conn.disconnect()
