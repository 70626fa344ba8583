"""Hostile servers: malformed, truncated, oversized and abusive responses, faults.

The promise: every such response ends in a specific dugong exception (never a
hang, never short data presented as complete, never unbounded memory), and
after ``reset()`` a new request on the same `HTTPConnection` succeeds.

Each test runs both blocking and through the co_ generators (``drive``),
except the timeout tests: ``timeout`` only applies to blocking calls.
"""

from __future__ import annotations

import glob
import os
import threading
import time
import tracemalloc

import pytest

import dugong
from checks import write_times
from dugong import (
    BodyFollowing,
    ConnectionClosed,
    ConnectionTimedOut,
    HTTPConnection,
    InvalidResponse,
    StateError,
)
from servers import Step, once_waiting
from test_protocol import BAD_CHUNK_SIZES, BAD_FRAMINGS, INVALID_HEADS

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

#: blocking calls give up after this long without progress, so that a hang fails fast
TIMEOUT = 5.0


# ------------------------------------------------------------------ helpers


def answer(response, *more, requests=1):
    """A script: read *requests* requests, send *response* (the client may be gone), *more*.

    Without a closing step the connection stays open, so the client has to
    notice the problem from the bytes alone, not from an EOF.
    """
    return [*[Step.read_request()] * requests, Step.send(response, may_fail=True), *more]


AGAIN = [Step.read_request(), Step.send(OK_3)]


def serve(scripted_server, *scripts):
    """A server playing *scripts* on its first connections, then answering one GET."""
    return scripted_server([*scripts, AGAIN])


_connections: list[HTTPConnection] = []


@pytest.fixture(autouse=True)
def _disconnect_all():
    """Close every connection a test made, even when the test fails half-way."""
    yield
    while _connections:
        _connections.pop().disconnect()


def connect(srv):
    conn = HTTPConnection("127.0.0.1", srv.port)
    conn.timeout = TIMEOUT
    _connections.append(conn)
    return conn


def recovers(drive, conn, srv):
    """After reset(), the next request goes out on a new connection and succeeds."""
    conn.reset()
    before = srv.connections
    drive(conn, "send_request", "GET", "/again")
    resp = drive(conn, "read_response")
    assert (resp.status, drive(conn, "readall")) == (200, b"abc")
    assert not conn.response_pending()
    assert srv.connections == before + 1
    conn.disconnect()


def refuses_until_reset(drive, conn):
    """A connection that got a bad response sends nothing more before reset()."""
    with pytest.raises(StateError, match="reset"):
        drive(conn, "send_request", "GET", "/not-sent")
    with pytest.raises(StateError, match="reset"):
        drive(conn, "read_response")


def read_body(drive, conn, style):
    """Read the whole body in one of several ways."""
    if style == "readall":
        return drive(conn, "readall")
    if style == "discard":
        drive(conn, "discard")
        return None
    parts = []
    while True:
        if style == "read":
            part = drive(conn, "read", 7)
        else:
            buf = bytearray(5)
            n = drive(conn, "readinto", buf)
            part = bytes(buf[:n])
        if not part:
            return b"".join(parts)
        parts.append(part)


# ------------------------------------------------------------------ strict parsing
#
# The tables of test_protocol (every invalid head, body framing and chunk-size line)
# go through a real connection here: one server plays one case per connection, and
# the same HTTPConnection is reset after each case and used for the next.

STYLES = ["readall", "read", "readinto", "discard"]


def each_case(drive, scripted_server, cases, response, check):
    """Run *check(conn, case, style)* for every case, *response(case)* being the answer.

    Also checks, for every case, that the broken connection refuses further use
    until reset(), and at the end that a normal request succeeds after a reset.
    """
    srv = serve(scripted_server, *[answer(response(case)) for case in cases.values()])
    conn = connect(srv)
    for number, (name, case) in enumerate(cases.items()):
        conn.reset()
        drive(conn, "send_request", "GET", f"/case/{number}")
        try:
            check(conn, case, STYLES[number % len(STYLES)])
            refuses_until_reset(drive, conn)
        except (AssertionError, pytest.fail.Exception, dugong.DugongError) as exc:
            raise AssertionError(f"case {name!r} failed") from exc
    recovers(drive, conn, srv)


def test_invalid_heads(drive, scripted_server):
    def check(conn, case, style):
        _, exc, match = case
        with pytest.raises(exc, match=match):
            drive(conn, "read_response")

    each_case(
        drive,
        scripted_server,
        INVALID_HEADS,
        lambda case: case[0] + b"more bytes that must not matter",
        check,
    )


def test_bad_framing_raised_by_first_body_read(drive, scripted_server):
    def check(conn, case, style):
        fields, exc, match = case
        resp = drive(conn, "read_response")  # status and headers can still be inspected
        assert resp.status == 200
        assert len(resp.headers) == fields.count(b"\r\n")
        with pytest.raises(exc, match=match):
            read_body(drive, conn, style)

    each_case(
        drive,
        scripted_server,
        BAD_FRAMINGS,
        lambda case: b"HTTP/1.1 200 OK\r\n" + case[0] + b"\r\nhello",
        check,
    )


def body_fails(drive, conn, exc, match, style):
    assert drive(conn, "read_response").length is None
    with pytest.raises(exc, match=match):
        read_body(drive, conn, style)


def test_bad_chunk_sizes(drive, scripted_server):
    def check(conn, line, style):
        body_fails(drive, conn, InvalidResponse, "Invalid chunk-size line", style)

    each_case(
        drive,
        scripted_server,
        {repr(line): line for line in BAD_CHUNK_SIZES},
        lambda line: CHUNKED_HEAD + b"3\r\nabc\r\n" + line + b"\r\nhello\r\n0\r\n\r\n",
        check,
    )


BAD_CHUNKED = {
    "data not followed by CRLF": (b"3\r\nabcX\r\n0\r\n\r\n", "not followed by CRLF"),
    "data followed by bare LF": (b"3\r\nabc\n0\r\n\r\n", "not followed by CRLF"),
    "data longer than its size": (b"3\r\nabcd\r\n0\r\n\r\n", "not followed by CRLF"),
    "data shorter than its size": (b"5\r\nabc\r\n0\r\n\r\n", "not followed by CRLF"),
    "size line ends in bare LF": (b"3\nabc\r\n0\r\n\r\n", "does not end in CRLF"),
    "last-chunk line ends in bare LF": (b"3\r\nabc\r\n0\n\r\n", "does not end in CRLF"),
    "size line too long": (b"0" * 9000 + b"3\r\nabc\r\n0\r\n\r\n", "exceeds 8192 bytes"),
    "extension too long": (b"3;" + b"x" * 9000 + b"\r\nabc\r\n0\r\n\r\n", "exceeds 8192 bytes"),
    "trailer line without colon": (b"0\r\nNo colon\r\n\r\n", "colon"),
    "trailer line in bare LF": (b"0\r\nX: y\n\r\n", "CRLF"),
    "trailer section ends in bare LF": (b"0\r\nX: y\r\n\n", "CRLF"),
    "trailer section all bare LF": (b"0\r\nX: y\n\n", "CRLF"),
    "lone CR in a trailer": (b"0\r\nX: y\rZ: w\r\n\r\n", "Lone CR"),
    "NUL in a trailer": (b"0\r\nX: y\x00\r\n\r\n", "NUL"),
    "trailer fold without a field": (b"0\r\n fold\r\n\r\n", "Continuation"),
    "SP before colon in a trailer": (b"0\r\nX : y\r\n\r\n", "Whitespace"),
    "oversized trailer section": (
        b"0\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
        "Trailer section exceeds 65536 bytes",
    ),
    "too many trailer fields": (b"0\r\n" + b"a: b\r\n" * 513 + b"\r\n", "Too many"),
}


@pytest.mark.parametrize(
    ("case", "style"),
    [(case, STYLES[i % len(STYLES)]) for i, case in enumerate(BAD_CHUNKED.values())],
    ids=BAD_CHUNKED.keys(),
)
def test_bad_chunked_body(drive, scripted_server, case, style):
    body, match = case
    srv = serve(scripted_server, answer(CHUNKED_HEAD + body))
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    body_fails(drive, conn, InvalidResponse, match, style)
    refuses_until_reset(drive, conn)
    recovers(drive, conn, srv)


GOOD_RESPONSES = {
    "obs-fold in the head": (
        b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 3\r\n\r\nabc",
        {"X-Fold": "a b"},
        b"abc",
        {},
    ),
    "repeated equal lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc",
        {},
        b"abc",
        {},
    ),
    "1xx with framing fields has no body": (
        b"HTTP/1.1 103 Early\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"HTTP/1.1 102 Busy\r\n\r\n" + OK_3,
        {},
        b"abc",
        {},
    ),
    "chunk extensions, hex case, leading zeros": (
        CHUNKED_HEAD + b'0000a;x=1;y="a;b"\r\n0123456789\r\nA ; z\r\n0123456789\r\n'
        b"000;last\r\n\r\n",
        {},
        b"0123456789" * 2,
        {},
    ),
    "trailers: repeated and folded": (
        CHUNKED_HEAD + b"1\r\nx\r\n0\r\nT: 1\r\nt: 2\r\nU: a\r\n\tb\r\n\r\n",
        {},
        b"x",
        {"T": "1, 2", "U": "a b"},
    ),
}


@pytest.mark.parametrize("case", GOOD_RESPONSES.values(), ids=GOOD_RESPONSES.keys())
def test_accepted_unusual_responses(drive, scripted_server, case):
    wire, fields, body, trailers = case
    srv = scripted_server(answer(wire + OK_3, requests=2))
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "send_request", "GET", "/next")
    resp = drive(conn, "read_response")
    for name, value in fields.items():
        assert resp.headers[name] == value
    assert drive(conn, "readall") == body
    assert resp.trailers == trailers
    # The response ended exactly where its framing said: the next one follows.
    drive(conn, "read_response")
    assert drive(conn, "readall") == b"abc"
    conn.disconnect()


# ------------------------------------------------------------------ bounds

FILLER = b"X-Filler: " + b"a" * (64 * 1024 - 12) + b"\r\n"  # one 64 KiB field line
HUNDRED_MB = 100 * 1024 * 1024


def endless(prefix, block, total=HUNDRED_MB):
    """A script that answers a request with *prefix*, then *block* until *total* bytes.

    Every step sends the same bytes object, so the server allocates nothing per step.
    """
    step = Step.send(block, may_fail=True)
    return [Step.read_request(), Step.send(prefix), *[step] * (total // len(block))]


def peak_memory(func):
    """Run *func*; return the peak of memory allocated meanwhile (all threads)."""
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


ENDLESS = {
    "header block": (b"HTTP/1.1 200 OK\r\n", FILLER, "Response head exceeds 65536 bytes"),
    "field": (
        b"HTTP/1.1 200 OK\r\nX-Endless: ",
        b"a" * 65536,
        "Response head exceeds 65536 bytes",
    ),
    "status line": (b"HTTP/1.1 200 ", b"a" * 65536, "Response head exceeds 65536 bytes"),
    "1xx responses": (
        b"",
        b"HTTP/1.1 102 Processing\r\nX: y\r\n\r\n" * 2048,
        "Interim .* exceed 65536 bytes",
    ),
    "tiny header fields": (
        b"HTTP/1.1 200 OK\r\n",
        b"a:\r\n" * 16384,
        "Response head exceeds 65536 bytes",
    ),
}


@pytest.mark.parametrize("case", ENDLESS.values(), ids=ENDLESS.keys())
def test_endless_head_memory_is_bounded(drive, scripted_server, case, record_property):
    prefix, block, match = case
    srv = serve(scripted_server, endless(prefix, block))
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")

    def read():
        with pytest.raises(InvalidResponse, match=match):
            drive(conn, "read_response")

    peak = peak_memory(read)
    record_property("peak_memory", peak)
    print(f"peak memory while refusing 100 MB ({drive.mode}): {peak} bytes")
    assert peak < 1024 * 1024
    recovers(drive, conn, srv)


def trace_sizes(tmp_path):
    return {name: os.path.getsize(name) for name in glob.glob(str(tmp_path / "trace-*"))}


@pytest.mark.parametrize("case", ENDLESS.values(), ids=ENDLESS.keys())
def test_endless_head_reads_about_the_limit(drive, scripted_server, case, tmp_path, monkeypatch):
    """Measured with the trace file, which holds every byte sent and received."""
    prefix, block, match = case
    monkeypatch.setenv("DUGONG_TRACEFILE", str(tmp_path / "trace-%d"))
    srv = scripted_server(endless(prefix, block))
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    with pytest.raises(InvalidResponse, match=match):
        drive(conn, "read_response")
    conn.reset()
    (size,) = trace_sizes(tmp_path).values()
    assert 64 * 1024 < size < 3 * 64 * 1024


def test_endless_chunk_size_line(drive, scripted_server):
    srv = serve(scripted_server, endless(CHUNKED_HEAD, b"0" * 65536))
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")

    def read():
        with pytest.raises(InvalidResponse, match="chunk-size line exceeds 8192 bytes"):
            drive(conn, "read", 10)

    assert peak_memory(read) < 1024 * 1024
    recovers(drive, conn, srv)


def test_endless_trailer_section(drive, scripted_server):
    srv = serve(scripted_server, endless(CHUNKED_HEAD + b"1\r\nx\r\n0\r\n", FILLER))
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    assert drive(conn, "read", 10) == b"x"

    def read():
        with pytest.raises(InvalidResponse, match="Trailer section exceeds 65536 bytes"):
            drive(conn, "read", 10)

    assert peak_memory(read) < 1024 * 1024
    recovers(drive, conn, srv)


def fields(n):
    return b"".join(b"F%d: %d\r\n" % (i, i) for i in range(n))


def test_header_field_count(drive, scripted_server):
    limit = dugong.MAX_HEADER_FIELDS
    srv = serve(
        scripted_server,
        answer(
            b"HTTP/1.1 200 OK\r\n" + fields(limit - 1) + b"Content-Length: 3\r\n\r\n"
            b"abc" + b"HTTP/1.1 200 OK\r\n" + fields(limit + 1) + b"\r\n",
            requests=2,
        ),
    )
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "send_request", "GET", "/")
    assert len(drive(conn, "read_response").headers) == limit
    assert drive(conn, "readall") == b"abc"
    with pytest.raises(InvalidResponse, match=f"Too many header fields .* > {limit}"):
        drive(conn, "read_response")
    recovers(drive, conn, srv)


# The limits are read from the package when a response is read: rebinding works.


def limit_case(drive, scripted_server, good, bad, match, *, in_body=False):
    """*good* (a complete response to a GET) is read; *bad* raises InvalidResponse: in
    read_response(), or, *in_body*, in readall() after its head was read."""
    srv = serve(scripted_server, answer(good + bad, requests=2))
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/good")
    drive(conn, "send_request", "GET", "/bad")
    drive(conn, "read_response")
    drive(conn, "readall")
    if in_body:
        assert drive(conn, "read_response").status == 200
        with pytest.raises(InvalidResponse, match=match):
            drive(conn, "readall")
    else:
        with pytest.raises(InvalidResponse, match=match):
            drive(conn, "read_response")
    recovers(drive, conn, srv)


def sized_head(size, body=b"abc"):
    """A response head of exactly *size* bytes (and *body*)."""
    start = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX: " % len(body)
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n" + body


def test_monkeypatched_max_header_size(drive, scripted_server, monkeypatch):
    monkeypatch.setattr(dugong, "MAX_HEADER_SIZE", 200)
    limit_case(
        drive, scripted_server, sized_head(200), sized_head(201), "Response head exceeds 200 bytes"
    )


def test_monkeypatched_max_header_size_trailers(drive, scripted_server, monkeypatch):
    monkeypatch.setattr(dugong, "MAX_HEADER_SIZE", 100)
    good = CHUNKED_HEAD + b"0\r\nT: " + b"a" * 93 + b"\r\n\r\n"  # a 100-byte section
    bad = CHUNKED_HEAD + b"0\r\nT: " + b"a" * 94 + b"\r\n\r\n"
    limit_case(
        drive, scripted_server, good, bad, "Trailer section exceeds 100 bytes", in_body=True
    )


def test_monkeypatched_max_line_size(drive, scripted_server, monkeypatch):
    monkeypatch.setattr(dugong, "MAX_LINE_SIZE", 20)
    limit_case(
        drive,
        scripted_server,
        b"HTTP/1.1 200 OK45678\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK456789\r\nContent-Length: 0\r\n\r\n",
        "Status line exceeds 20 bytes",
    )


def test_monkeypatched_max_line_size_chunks(drive, scripted_server, monkeypatch):
    monkeypatch.setattr(dugong, "MAX_LINE_SIZE", 20)
    limit_case(
        drive,
        scripted_server,
        CHUNKED_HEAD + b"1;" + b"x" * 18 + b"\r\nx\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"1;" + b"x" * 19 + b"\r\nx\r\n0\r\n\r\n",
        "chunk-size line exceeds 20 bytes",
        in_body=True,
    )


def test_monkeypatched_max_header_fields(drive, scripted_server, monkeypatch):
    monkeypatch.setattr(dugong, "MAX_HEADER_FIELDS", 3)
    limit_case(
        drive,
        scripted_server,
        b"HTTP/1.1 200 OK\r\n" + fields(2) + OK_3[17:],
        b"HTTP/1.1 200 OK\r\n" + fields(3) + OK_3[17:],
        r"Too many header fields \(4 > 3\)",
    )


def test_monkeypatched_max_interim_size(drive, scripted_server, monkeypatch):
    interim = b"HTTP/1.1 102 Processing\r\n\r\n"  # 27 bytes
    monkeypatch.setattr(dugong, "MAX_INTERIM_SIZE", 3 * len(interim))
    limit_case(
        drive,
        scripted_server,
        interim * 3 + OK_3,
        interim * 4 + OK_3,
        "Interim .* exceed 81 bytes",
    )


def test_interim_budget_spans_separate_arrivals(drive, scripted_server, monkeypatch):
    """1xx heads that arrive in several pieces count together against the limit, both
    those already buffered when read_response() starts and those it waits for."""
    interim = b"HTTP/1.1 102 Processing\r\n\r\n"  # 27 bytes
    monkeypatch.setattr(dugong, "MAX_INTERIM_SIZE", 3 * len(interim))
    waiting = threading.Event()
    srv = serve(
        scripted_server,
        answer(
            OK_3 + interim * 2,
            Step.wait_event(waiting),
            Step.send(interim * 2),
            Step.send(OK_3, may_fail=True),
            requests=2,
        ),
    )
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/first")
    drive(conn, "send_request", "GET", "/second")
    assert drive(conn, "read_response").status == 200
    assert drive(conn, "readall") == b"abc"  # the next two 1xx heads are buffered now
    # Two more come once read_response() waits: the four are too many together.
    with (
        once_waiting(waiting.set),
        pytest.raises(InvalidResponse, match=r"Interim .* exceed 81 bytes"),
    ):
        drive(conn, "read_response")
    recovers(drive, conn, srv)


# ------------------------------------------------------------------ cuts at every offset

CUT_RESPONSES = {
    "content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"0123456789", False),
    "chunked with trailers": (
        CHUNKED_HEAD,
        b"4;ext=1\r\n0123\r\n6\r\n456789\r\n0\r\nT1: a\r\nT2: b\r\n\r\n",
        False,
    ),
    "until close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"0123456789", True),
}


@pytest.mark.parametrize("case", CUT_RESPONSES.values(), ids=CUT_RESPONSES.keys())
def test_cut_after_every_byte(drive, scripted_server, case):
    """The server closes after each possible number of bytes of one response.

    A cut in the head is ConnectionClosed from read_response; a cut in a body
    with a length or chunked framing (trailer section and its final empty line
    included) is ConnectionClosed from the body read, never a short body. A
    body read until the close is, by its nature, complete wherever the cut is:
    it must then be exactly the bytes that were sent.
    """
    head, body, until_close = case
    wire = head + body
    srv = scripted_server(
        [
            [Step.read_request(), Step.send(wire[:cut]), Step.close()]
            for cut in range(len(wire) + 1)
        ]
    )
    conn = connect(srv)
    styles = ["readall", "read", "readinto"]
    for cut in range(len(wire) + 1):
        conn.reset()
        drive(conn, "send_request", "GET", f"/cut/{cut}")
        if cut < len(head):
            with pytest.raises(ConnectionClosed):
                drive(conn, "read_response")
            continue
        resp = drive(conn, "read_response")
        style = styles[cut % 3]
        if until_close:
            assert read_body(drive, conn, style) == body[: cut - len(head)]
        elif cut < len(wire):
            with pytest.raises(ConnectionClosed):
                read_body(drive, conn, style)
        else:
            assert read_body(drive, conn, style) == b"0123456789"
            if head is CHUNKED_HEAD:
                assert resp.trailers == {"T1": "a", "T2": "b"}
        assert not conn.response_pending()
    assert srv.connections == len(wire) + 1
    conn.disconnect()


@pytest.mark.parametrize("timeout", [None, TIMEOUT], ids=["no timeout", "timeout"])
def test_cut_after_every_byte_of_a_second_response(drive, scripted_server, timeout):
    """As above, for the second response on a kept-alive connection: the one that a
    blocking read_response receives itself when nothing is buffered."""
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    head, body, _ = CUT_RESPONSES["content-length"]
    wire = head + body
    srv = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(first),
                Step.read_request(),
                Step.send(wire[:cut]),
                Step.close(),
            ]
            for cut in range(len(wire) + 1)
        ]
    )
    conn = connect(srv)
    conn.timeout = timeout
    for cut in range(len(wire) + 1):
        conn.reset()
        drive(conn, "send_request", "GET", "/first")
        drive(conn, "read_response")
        assert drive(conn, "readall") == b"abc"
        drive(conn, "send_request", "GET", f"/cut/{cut}")
        if cut < len(head):
            with pytest.raises(ConnectionClosed):
                drive(conn, "read_response")
            continue
        drive(conn, "read_response")
        if cut < len(wire):
            with pytest.raises(ConnectionClosed):
                drive(conn, "readall")
        else:
            assert drive(conn, "readall") == body
        assert not conn.response_pending()
    assert srv.connections == len(wire) + 1
    conn.disconnect()


# ------------------------------------------------------------------ other faults


def test_reset_mid_header(drive, scripted_server):
    srv = serve(
        scripted_server,
        [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\nContent-Le"), Step.reset()],
    )
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    with pytest.raises(ConnectionClosed):
        drive(conn, "read_response")
    recovers(drive, conn, srv)


@pytest.mark.parametrize("style", ["readall", "read", "readinto", "discard"])
def test_reset_mid_body(drive, scripted_server, style):
    event = threading.Event()
    srv = serve(
        scripted_server,
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50),
            Step.wait_event(event),
            Step.reset(),
        ],
    )
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    assert drive(conn, "read_response").length == 100
    event.set()
    with pytest.raises(ConnectionClosed):
        read_body(drive, conn, style)
    recovers(drive, conn, srv)


def test_reset_mid_chunked_body(drive, scripted_server):
    event = threading.Event()
    srv = serve(
        scripted_server,
        [
            Step.read_request(),
            Step.send(CHUNKED_HEAD + b"10\r\nabc"),
            Step.wait_event(event),
            Step.reset(),
        ],
    )
    conn = connect(srv)
    drive(conn, "send_request", "GET", "/")
    drive(conn, "read_response")
    event.set()
    with pytest.raises(ConnectionClosed):
        drive(conn, "readall")
    recovers(drive, conn, srv)


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 200 OK\r\nContent-Len"])
def test_close_between_pipelined_responses(drive, scripted_server, partial):
    srv = serve(
        scripted_server,
        [
            Step.read_request(),
            Step.read_request(),
            Step.read_request(),
            Step.send(OK_3 + partial),
            Step.close(),
        ],
    )
    conn = connect(srv)
    for path in ("/1", "/2", "/3"):
        drive(conn, "send_request", "GET", path)
    resp = drive(conn, "read_response")
    assert (resp.path, drive(conn, "readall")) == ("/1", b"abc")
    # Each lost request is reported once, in order, and never answered with stale data.
    for path in ("/2", "/3"):
        with pytest.raises(ConnectionClosed) as info:
            drive(conn, "read_response")
        if path == "/3":
            assert path in str(info.value)
    assert not conn.response_pending()
    with pytest.raises(StateError, match="No response is pending"):
        drive(conn, "read_response")
    recovers(drive, conn, srv)


def blocking(conn, name, *args, **kwargs):
    """The blocking half of the drive fixture, for the tests about ``timeout``."""
    return getattr(conn, name)(*args, **kwargs)


def test_upload_to_a_server_that_stops_reading(scripted_server):
    srv = serve(scripted_server, [Step.read_request(body=False), Step.stop_reading()])
    conn = connect(srv)
    conn.timeout = 0.1
    conn.send_request("PUT", "/upload", body=BodyFollowing(1 << 30))
    chunk = bytes(1 << 20)
    start = time.monotonic()
    with pytest.raises(ConnectionTimedOut):
        write_times(None, conn, chunk, 1 << 10)
    assert time.monotonic() - start < 10
    with pytest.raises(StateError, match="reset"):
        conn.write(chunk)
    conn.timeout = TIMEOUT
    recovers(blocking, conn, srv)


def test_slow_drip_is_not_a_timeout(scripted_server):
    """One byte every 60 ms never waits longer than ``timeout`` (an idle timeout)."""
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    srv = scripted_server(
        [Step.read_request(), Step.send(wire[:-10]), Step.send(wire[-10:], chunk=1, delay=0.06)]
    )
    conn = connect(srv)
    conn.timeout = 0.3
    start = time.monotonic()
    conn.send_request("GET", "/")
    resp = conn.read_response()
    assert conn.readall() == b"hello"
    assert resp.status == 200
    assert time.monotonic() - start > 0.5  # well beyond the timeout in total
    conn.disconnect()


@pytest.mark.parametrize("where", ["head", "body"])
def test_stall_is_a_timeout(scripted_server, where):
    event = threading.Event()
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    cut = 20 if where == "head" else len(wire) - 2
    srv = serve(
        scripted_server,
        [
            Step.read_request(),
            Step.send(wire[:cut]),
            Step.wait_event(event),
            Step.send(wire[cut:], may_fail=True),
        ],
    )
    conn = connect(srv)
    conn.send_request("GET", "/")
    if where == "body":
        assert conn.read_response().status == 200
    stalls = conn.readall if where == "body" else conn.read_response
    conn.timeout = 0.1  # for the call that meets the stall
    start = time.monotonic()
    with pytest.raises(ConnectionTimedOut):
        stalls()
    assert 0.1 <= time.monotonic() - start < 5
    event.set()
    conn.timeout = TIMEOUT
    recovers(blocking, conn, srv)
