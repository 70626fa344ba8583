"""Property-based tests with hypothesis: the parsers, and whole exchanges.

* The pure parsers of dugong._protocol get many examples each: generated heads
  parse to what they were made from, arbitrary text raises only the documented
  exceptions, and chunk-size lines, body framing and request heads agree with
  small reference implementations written from RFC 9112.
* Whole exchanges go through real TCP connections on 127.0.0.1, the server side
  played in the test's own thread: a generated stream of pipelined responses,
  split into random pieces that reach the client one at a time (each one only
  once the client waits for more), must read exactly like the same stream in
  one piece, and like the model it was generated from. Mutated and random
  streams must end in a documented exception or in a correct result, never
  hang, never give more body bytes than their framing allows.
* A few examples go through the scripted server with real pauses between the
  pieces, read with the blocking API.

The number of examples scales with the hypothesis profile (see conftest.py):
``--hypothesis-profile=ci`` (or ``CI`` set in the environment) makes the run short.

Under coverage these tests run untraced: the other tests reach every line and
branch they reach (the report is the same without them), and tracing would
double their time.
"""

from __future__ import annotations

import re
import select
import socket
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import dugong
from dugong import (
    ConnectionClosed,
    HTTPConnection,
    InvalidResponse,
    UnsupportedResponse,
)
from dugong._headers import ResponseHeaders
from dugong._protocol import (
    BodyKind,
    Head,
    body_framing,
    find_head_end,
    parse_chunk_size,
    parse_head,
    request_head,
)
from servers import ScriptedServer, Step, parse_request_head

pytestmark = pytest.mark.untraced

#: Exceptions a response may legitimately end in.
DOCUMENTED = (ConnectionClosed, InvalidResponse, UnsupportedResponse)

#: Examples per test in the default profile; scaled by the loaded profile's max_examples.
_SCALE = settings.default.max_examples / 100


def examples(n: int) -> settings:
    return settings(
        max_examples=max(5, int(n * _SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ================================================================== strategies

TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VCHARS = "".join(map(chr, range(0x21, 0x7F))) + "\x80\xa0\xe9\xff"
FRAMING_NAMES = {"content-length", "transfer-encoding", "connection"}

tokens = st.text(TCHARS, min_size=1, max_size=10)
field_names = tokens.filter(lambda name: name.lower() not in FRAMING_NAMES)
field_values = st.text(VCHARS + " \t", max_size=20)
padding = st.text(" \t", max_size=2)
reasons = st.text(VCHARS + " \t", max_size=15)


@st.composite
def field_lists(draw, max_size=4):
    """``(name, raw value)`` pairs; the parsed value is the raw one without padding."""
    return [
        (draw(field_names), draw(padding) + draw(field_values) + draw(padding))
        for _ in range(draw(st.integers(0, max_size)))
    ]


def field_lines(fields):
    return "".join(f"{name}:{raw}\r\n" for name, raw in fields).encode("latin-1")


def parsed(fields):
    return [(name, raw.strip(" \t")) for name, raw in fields]


@dataclass
class Response:
    """One generated response: its bytes and what reading it must give."""

    wire: bytes
    status: int
    reason: str
    items: list[tuple[str, str]]
    length: int | None
    body: bytes
    trailers: dict[str, str] = field(default_factory=dict)


@st.composite
def interim_heads(draw):
    status = draw(st.sampled_from([100, 102, 103, 199]))
    fields = draw(field_lists(max_size=2))
    return (
        f"HTTP/1.1 {status} {draw(reasons)}\r\n".encode("latin-1") + field_lines(fields) + b"\r\n"
    )


@st.composite
def chunked_bodies(draw, body):
    """The chunked encoding of *body*, and the trailers it carries."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=5)))
    chunks = pieces_of(body, cuts)
    out = []
    for chunk in [*chunks, b""]:
        digits = draw(st.sampled_from(["%x", "%X"])) % len(chunk)
        zeros = "0" * draw(st.integers(0, 2))
        ext = draw(st.sampled_from(["", ";a", ";a=b", ' ;x="y z"', "\t;q;r=1"]))
        out.append(f"{zeros}{digits}{ext}\r\n".encode() + chunk + (b"\r\n" if chunk else b""))
    trailers = draw(field_lists(max_size=3))
    joined: dict[str, str] = {}
    for name, value in parsed(trailers):
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return b"".join(out) + field_lines(trailers) + b"\r\n", joined


@st.composite
def responses(draw, method, last):
    """A response to *method*; only the *last* one of a stream may close the connection."""
    minor = draw(st.sampled_from([0, 1]))
    status = draw(st.one_of(st.sampled_from([200, 204, 206, 304, 404]), st.integers(200, 599)))
    reason = draw(reasons)
    no_body = method == "HEAD" or status in (204, 304)
    closes = last and draw(st.booleans())
    kind = draw(
        st.sampled_from(["length", "chunked", "close"] if closes else ["length", "chunked"])
    )
    if kind == "chunked" and minor == 0 and not last:
        minor = 1  # an HTTP/1.0 chunked response closes the connection after it
    body = b"" if no_body else draw(st.binary(max_size=300))
    framing = []
    if kind == "length":
        size = draw(st.integers(0, 10**6)) if method == "HEAD" else len(body)
        framing.append(("Content-Length", draw(padding) + str(size)))
    elif kind == "chunked":
        framing.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", " Chunked"]))))
    if closes:
        if minor == 1 or draw(st.booleans()):
            framing.append(("Connection", draw(st.sampled_from(["close", "foo, close"]))))
    elif minor == 0:
        framing.append(("Connection", "keep-alive"))
    fields = draw(field_lists())
    for item in framing:
        fields.insert(draw(st.integers(0, len(fields))), item)
    trailers: dict[str, str] = {}
    payload = body
    if kind == "chunked" and not no_body:
        payload, trailers = draw(chunked_bodies(body))
    interim = b"".join(draw(st.lists(interim_heads(), max_size=2)))
    wire = (
        interim
        + f"HTTP/1.{minor} {status} {reason}\r\n".encode("latin-1")
        + field_lines(fields)
        + b"\r\n"
        + payload
    )
    if no_body:
        length = 0
    elif kind == "length":
        length = len(body)
    else:
        length = None
    return Response(wire, status, reason, parsed(fields), length, body, trailers)


read_plans = st.one_of(
    st.just("readall"),
    st.just("discard"),
    st.tuples(st.sampled_from(["read", "readinto"]), st.integers(1, 400)),
)


@st.composite
def exchanges(draw):
    """Methods of pipelined requests, the responses, and how to read each body."""
    methods = draw(st.lists(st.sampled_from(["GET", "GET", "HEAD"]), min_size=1, max_size=3))
    resps = [draw(responses(method, i == len(methods) - 1)) for i, method in enumerate(methods)]
    plans = [draw(read_plans) for _ in methods]
    return methods, resps, plans


def pieces_of(data, cuts):
    """*data* cut at the offsets *cuts*; no piece is empty (so b'' gives no piece)."""
    cuts = sorted(c for c in set(cuts) if 0 < c < len(data))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False) if a < b]


@st.composite
def splits(draw, data):
    """*data* cut into random pieces."""
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=min(40, len(data))))
    if draw(st.booleans()) and len(data) < 400:
        cuts = list(range(len(data)))  # one byte at a time
    return pieces_of(data, cuts)


INTERESTING = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"0",
    b"9",
    b"f",
    b"-",
    b"+",
    b"x",
    b"\xff",
    b"\r\n\r\n",
    b"\n\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 99999999999\r\n",
    b"Content-Length: -1\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n",
    b" folded\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"ffffffffffffffff\r\n",
    b"0\r\n\r\n",
    b"HTTP/2 200\r\n",
]


LINE_ENDS = [b"\n", b"\r", b"", b"\r\r\n", b"\n\r", b"\r\n ", b"\r\n\t", b"\r\n\r\n", b"\r\x00\n"]
NUMBERS = st.one_of(
    st.text("0123456789", min_size=1, max_size=20),
    st.text("0123456789abcdefABCDEF+-xX _", min_size=1, max_size=5),
)


@st.composite
def mutations(draw, data):
    """*data* with a few random changes: bytes, line ends, numbers, pieces."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                [
                    "replace",
                    "insert",
                    "delete",
                    "duplicate",
                    "truncate",
                    "line end",
                    "line end",
                    "number",
                ]
            )
        )
        pos = draw(st.integers(0, len(data)))
        if op == "line end":  # change one CRLF
            ends = [m.start() for m in re.finditer(b"\r\n", data)]
            if ends:
                at = draw(st.sampled_from(ends))
                data[at : at + 2] = draw(st.sampled_from(LINE_ENDS))
        elif op == "number":  # change a status code, a length or a chunk size
            numbers = [m.span() for m in re.finditer(rb"[0-9A-Fa-f]+", data)]
            if numbers:
                start, end = draw(st.sampled_from(numbers))
                data[start:end] = draw(NUMBERS).encode()
        elif op == "replace" and pos < len(data):
            data[pos : pos + 1] = (
                draw(st.sampled_from(INTERESTING))[:1]
                if draw(st.booleans())
                else bytes([draw(st.integers(0, 255))])
            )
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INTERESTING))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


# ================================================================== the pure parsers


@examples(200)
@given(st.data())
def test_generated_heads_parse_to_their_model(data):
    method = data.draw(st.sampled_from(["GET", "HEAD"]))
    resp = data.draw(responses(method, last=data.draw(st.booleans())))
    wire = resp.wire
    # Skip the interim heads the way the connection does, and parse the final one.
    start = 0
    while True:
        end = find_head_end(wire, start, len(wire), start)
        assert end > start
        head = parse_head(wire[start:end].decode("latin-1"))
        if head.status >= 200:
            break
        start = end
    assert (head.status, head.reason, head.headers.items()) == (
        resp.status,
        resp.reason,
        resp.items,
    )
    framing = body_framing(method, head)
    assert framing.error is None
    assert framing.length == resp.length
    # Found just as well when the bytes arrive in pieces, the way the connection searches.
    buf = bytearray()
    seen = 0
    found = -1
    for piece in data.draw(splits(wire[start:])):
        buf += piece
        found = find_head_end(buf, 0, len(buf), seen)
        if found >= 0:
            break
        seen = max(0, len(buf) - 2)
    assert found == end - start


def check_head_invariants(text: str, head: Head) -> None:
    """What a successful parse promises about the head and its fields."""
    assert text.find("\r\n\r\n") == len(text) - 4, "not one head ending in an empty line"
    assert "\n" not in text.replace("\r\n", ""), "a bare LF was accepted"
    assert "\r" not in text.replace("\r\n", ""), "a lone CR was accepted"
    assert "\x00" not in text
    assert 100 <= head.status <= 599
    for name, value in head.headers.items():
        assert re.fullmatch(f"[{re.escape(TCHARS)}]+", name)
        assert not set(value) & set("\r\n\x00")
        assert value == value.strip(" \t")


head_texts = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.lists(
        st.sampled_from(
            [
                "HTTP/1.1 ",
                "HTTP/1.0 ",
                "200",
                " OK",
                "\r\n",
                "\n",
                "\r",
                "A:",
                "b",
                " ",
                "\t",
                ":",
                "\x00",
                "\xe9",
                "1",
                "HTTP/2 ",
            ]
        ),
        max_size=30,
    ).map("".join),
)


@examples(500)
@given(st.data())
def test_parse_head_raises_only_documented_errors(data):
    if data.draw(st.booleans()):
        text = data.draw(head_texts)
    else:  # a mutated generated response
        resp = data.draw(responses("GET", last=True))
        text = data.draw(mutations(resp.wire)).decode("latin-1")
    note(repr(text))
    try:
        head = parse_head(text)
    except (InvalidResponse, UnsupportedResponse):
        return
    check_head_invariants(text, head)


@examples(400)
@given(st.binary(max_size=300), st.data())
def test_find_head_end_in_pieces_equals_whole(data, draw):
    data = draw.draw(
        st.one_of(
            st.just(data),
            st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"a", b"\r\n\r\n"]), max_size=30).map(
                b"".join
            ),
        )
    )
    whole = find_head_end(data, 0, len(data), 0)
    buf = bytearray()
    seen = 0
    found = -1
    for piece in draw.draw(splits(data)):
        buf += piece
        found = find_head_end(buf, 0, len(buf), seen)
        if found >= 0:
            break
        seen = max(0, len(buf) - 2)
    assert found == whole
    if whole < 0:
        assert b"\n\n" not in data and b"\n\r\n" not in data
    else:  # the head ends at the first empty line
        head = data[:whole]
        assert head.endswith((b"\n\n", b"\n\r\n"))
        assert b"\n\n" not in head[:-1] and b"\n\r\n" not in head[:-1]


HEX = b"0123456789abcdefABCDEF"


def reference_chunk_size(line: bytes) -> int | None:
    """chunk-size [chunk-ext] per RFC 9112 section 7.1, at most 16 digits; None if invalid."""
    digits = 0
    while digits < len(line) and line[digits] in HEX:
        digits += 1
    if not 1 <= digits <= 16:
        return None
    rest = line[digits:]
    if rest:
        ext = rest.lstrip(b" \t")
        if not ext.startswith(b";") or any(c in b"\r\n\x00" for c in ext):
            return None
    return int(line[:digits], 16)


chunk_lines = st.one_of(
    st.binary(max_size=30),
    st.lists(
        st.sampled_from(list(b"0123456789abcdefABCDEFxXg+- \t;=\r\n\x00\xff")), max_size=24
    ).map(bytes),
    # prefix, digits, whitespace, extension: the places where lines go wrong
    st.tuples(
        st.sampled_from([b"", b"", b"+", b"-", b"0x", b" ", b"\t", b";"]),
        st.text("0123456789abcdefABCDEF", max_size=18).map(str.encode),
        st.sampled_from([b"", b"", b" ", b"\t", b" \t"]),
        st.sampled_from(
            [
                b"",
                b"",
                b";",
                b";a=b",
                b';a="b c"',
                b";a\x00",
                b";a\rb",
                b"x",
                b"\n",
                b" x",
                b"\xff",
            ]
        ),
    ).map(b"".join),
)


@examples(800)
@given(chunk_lines)
def test_chunk_size_matches_reference(line):
    expected = reference_chunk_size(line)
    if expected is None:
        with pytest.raises(InvalidResponse):
            parse_chunk_size(line)
    else:
        assert parse_chunk_size(line) == expected


def reference_framing(method, status, minor, items):
    """(kind, length, will_close, error type) per RFC 9112 section 6.3 and dugong's rules."""

    def elements(name):
        values = [v for n, v in items if n.lower() == name]
        return values, [
            e.strip(" \t").lower() for v in values for e in v.split(",") if e.strip(" \t")
        ]

    conn_values, conn = elements("connection")
    will_close = (
        minor == 0
        if not conn_values
        else "close" in conn or (minor == 0 and "keep-alive" not in conn)
    )
    if status == 101:  # the connection leaves HTTP/1.1 after it
        return BodyKind.NONE, 0, True, None
    if method == "HEAD" or status < 200 or status in (204, 304):
        return BodyKind.NONE, 0, will_close, None
    te_values, codings = elements("transfer-encoding")
    cl_values, lengths = elements("content-length")
    if te_values:
        if cl_values:
            return BodyKind.ERROR, None, True, InvalidResponse
        if codings == ["chunked"]:
            return BodyKind.CHUNKED, None, will_close or minor == 0, None
        if not codings or codings.count("chunked") > 1:
            return BodyKind.ERROR, None, True, InvalidResponse
        return BodyKind.ERROR, None, True, UnsupportedResponse
    if cl_values:
        if (
            not lengths
            or not all(re.fullmatch("[0-9]{1,18}", x) for x in lengths)
            or len({int(x) for x in lengths}) != 1
        ):
            return BodyKind.ERROR, None, True, InvalidResponse
        return BodyKind.LENGTH, int(lengths[0]), will_close, None
    if will_close:
        return BodyKind.UNTIL_CLOSE, None, True, None
    return BodyKind.ERROR, None, True, UnsupportedResponse


framing_fields = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["Content-Length", "content-length"]),
            st.one_of(
                st.sampled_from(
                    [
                        "0",
                        "5",
                        "05",
                        "5, 5",
                        "5,6",
                        "-1",
                        "+1",
                        "",
                        " ",
                        ",",
                        "1e3",
                        "\xb2",
                        "1" * 18,
                        "1" * 19,
                        "5 5",
                    ]
                ),
                st.integers(0, 10**20).map(str),
            ),
        ),
        st.tuples(
            st.sampled_from(["Transfer-Encoding", "transfer-encoding"]),
            st.sampled_from(
                [
                    "chunked",
                    "Chunked",
                    "gzip",
                    "gzip, chunked",
                    "chunked, gzip",
                    "chunked,chunked",
                    "",
                    ",",
                    "chunked,",
                    "identity",
                ]
            ),
        ),
        st.tuples(
            st.just("Connection"),
            st.sampled_from(
                [
                    "close",
                    "keep-alive",
                    "Keep-Alive",
                    "foo",
                    "",
                    "x, close",
                    "upgrade, keep-alive",
                    "CLOSE",
                ]
            ),
        ),
        st.tuples(field_names, field_values),
    ),
    max_size=5,
)


@examples(600)
@given(
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.one_of(st.sampled_from([100, 101, 103, 200, 204, 304, 404]), st.integers(100, 599)),
    st.sampled_from([0, 1]),
    framing_fields,
)
def test_body_framing_matches_reference(method, status, minor, items):
    framing = body_framing(method, Head(minor, status, "", ResponseHeaders(items)))
    kind, length, will_close, error = reference_framing(method, status, minor, items)
    assert (framing.kind, framing.length, framing.will_close) == (kind, length, will_close)
    assert type(framing.error) is error if error else framing.error is None


def reference_request_error(method, target, headers):
    """Whether request_head must refuse these arguments."""

    def latin1(text):
        return all(ord(c) < 256 for c in text)

    if not re.fullmatch(f"[{re.escape(TCHARS)}]+", method):
        return True
    if not target or re.search("[\x00-\x20\x7f]", target) or not latin1(target):
        return True
    for name, value in headers.items():
        if not re.fullmatch(f"[{re.escape(TCHARS)}]+", name):
            return True
        if set(value) & set("\r\n\x00") or not latin1(value):
            return True
    return False


any_text = st.text(max_size=12)
near_tokens = st.one_of(tokens, any_text, st.text(TCHARS + " :\r\n\x00\xe9\u20ac", max_size=8))
near_values = st.one_of(field_values, any_text, st.text(VCHARS + "\r\n\x00\u20ac", max_size=8))


@examples(500)
@given(
    near_tokens,
    st.one_of(st.text("/abc?=&%\xe9", min_size=1, max_size=10), any_text),
    st.dictionaries(near_tokens, near_values, max_size=4),
)
def test_request_head_matches_reference(method, target, headers):
    body = (("Content-Length", "0"),)
    if reference_request_error(method, target, headers):
        with pytest.raises(ValueError):
            request_head(method, target, headers, "h", body, ("content-length",))
        return
    wire = request_head(method, target, headers, "h", body, ("content-length",))
    req = parse_request_head(wire)  # the test servers' strict parser
    assert (req.method, req.target) == (method, target)
    sent = [
        (n, v.strip(" \t"))
        for n, v in headers.items()
        if n.lower() not in ("content-length", "transfer-encoding")
    ]
    given_names = {n.lower() for n in headers}
    sent += [
        (n, v)
        for n, v in (("Host", "h"), ("Accept-Encoding", "identity"), ("Connection", "keep-alive"))
        if n.lower() not in given_names
    ]
    assert req.headers == [*sent, ("Content-Length", "0")]


# ================================================================== whole exchanges

#: Seconds a co_ generator may wait on its own before the exchange counts as a hang.
HANG = 2.0


class Peer:
    """The server end of exchanges over TCP on 127.0.0.1, played in the test's thread.

    The client's co_ generators are run by `pump`; each time one waits for input,
    the next piece of the response stream is sent, and once none is left the
    server shuts down its sending side (the client sees EOF).
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(HANG)
        self.port = self.listener.getsockname()[1]

    def close(self) -> None:
        self.listener.close()

    def exchange(self, methods, pieces, plans):
        """Send the requests, deliver the *pieces*, read every response per *plans*.

        Returns the outcomes (one tuple per response read, then the name of the
        exception that ended the exchange, if one did) and the body bytes of each.
        """
        conn = HTTPConnection("127.0.0.1", self.port)
        server = None
        try:
            for number, method in enumerate(methods):
                pump(conn.co_send_request(method, f"/{number}"), lambda: False)
            server, _ = self.listener.accept()
            server.settimeout(HANG)
            received = b""
            while received.count(b"\r\n\r\n") < len(methods):
                chunk = server.recv(65536)
                assert chunk, "the client closed while sending its requests"
                received += chunk
            feeder = Feeder(server, pieces)
            return read_all(conn, methods, plans, feeder.feed)
        finally:
            conn.disconnect()
            if server is not None:
                server.close()


class Feeder:
    def __init__(self, sock, pieces):
        self.sock = sock
        self.pieces = deque(pieces)
        self.eof = False

    def feed(self) -> bool:
        """Deliver the next piece, or EOF; False if nothing is left to deliver."""
        if self.pieces:
            self.sock.sendall(self.pieces.popleft())
            return True
        if not self.eof:
            self.eof = True
            self.sock.shutdown(socket.SHUT_WR)
            return True
        return False


def pump(gen, feed):
    """Run a co_ generator to its end, calling *feed* each time it waits for input."""
    try:
        wait = next(gen)
        idle = 0
        while True:
            assert isinstance(wait, dugong.PollNeeded)
            if wait.mask & select.POLLIN and not feed():
                idle += 1
                assert idle < 100, "the generator keeps waiting after EOF"
            if not wait.poll(HANG):
                gen.close()
                raise AssertionError(f"hang: nothing happened for {HANG} s on {wait!r}")
            wait = gen.send(None)
    except StopIteration as stop:
        return stop.value


def read_all(conn, methods, plans, feed):
    """Read every response; stop at the first documented exception."""
    outcomes = []
    bodies = []
    try:
        for plan in plans:
            resp = pump(conn.co_read_response(), feed)
            got = bytearray()
            bodies.append((resp, got))
            if plan == "discard":
                pump(conn.co_discard(), feed)
                body = None
            elif plan == "readall":
                got += pump(conn.co_readall(), feed)
                body = bytes(got)
            else:
                how, size = plan
                while True:
                    if how == "read":
                        part = pump(conn.co_read(size), feed)
                    else:
                        buf = bytearray(size)
                        part = buf[: pump(conn.co_readinto(buf), feed)]
                    assert len(part) <= size
                    if not part:
                        break
                    got += part
                body = bytes(got)
            outcomes.append(outcome(resp, body))
        assert not conn.response_pending()
    except DOCUMENTED as exc:
        outcomes.append(type(exc).__name__)
    return outcomes, bodies


def outcome(resp, body):
    """What a test compares of one response read through dugong (see model_outcomes)."""
    return (
        resp.status,
        resp.reason,
        resp.headers.items(),
        resp.length,
        body,
        dict(resp.trailers.lower_items()),
    )


def model_outcomes(resps, plans):
    return [
        (r.status, r.reason, r.items, r.length, None if plan == "discard" else r.body, r.trailers)
        for r, plan in zip(resps, plans, strict=True)
    ]


@pytest.fixture(scope="module")
def peer():
    p = Peer()
    yield p
    p.close()


@examples(100)
@given(exchanges(), st.data())
def test_split_stream_reads_like_whole(peer, exchange, data):
    methods, resps, plans = exchange
    stream = b"".join(r.wire for r in resps)
    pieces = data.draw(splits(stream))
    note(f"pieces: {pieces!r}")
    whole, _ = peer.exchange(methods, pieces_of(stream, []), plans)
    split, _ = peer.exchange(methods, pieces, plans)
    assert whole == model_outcomes(resps, plans)
    assert split == whole


def check_bounds(stream, outcomes, bodies):
    """No body is longer than its framing allows, nor made of bytes that were not sent."""
    total = 0
    for resp, got in bodies:
        total += len(got)
        if resp.length is not None:
            assert len(got) <= resp.length
            assert bytes(got) in stream
    assert total <= len(stream)
    for outcome, (resp, got) in zip(outcomes, bodies, strict=False):
        if isinstance(outcome, tuple) and outcome[4] is not None:
            if resp.length is not None:
                assert len(got) == resp.length
            if (
                resp.length is None
                and "chunked"
                not in ",".join(resp.headers.get_all("transfer-encoding", [])).lower()
            ):
                assert stream.endswith(bytes(got))  # read until close: the rest, exactly


@examples(150)
@given(exchanges(), st.data())
def test_mutated_stream_raises_only_documented_errors(peer, exchange, data):
    methods, _, plans = exchange
    stream = data.draw(mutations(b"".join(r.wire for r in exchange[1])))
    note(f"stream: {stream!r}")
    outcomes, bodies = peer.exchange(methods, data.draw(splits(stream)), plans)
    check_bounds(stream, outcomes, bodies)


@examples(100)
@given(
    st.lists(st.sampled_from(["GET", "HEAD"]), min_size=1, max_size=2),
    st.one_of(
        st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"HTTP/1.1 200 OK\r\n" + b)
    ),
    st.data(),
)
def test_random_stream_raises_only_documented_errors(peer, methods, stream, data):
    plans = [data.draw(read_plans) for _ in methods]
    outcomes, bodies = peer.exchange(methods, data.draw(splits(stream)), plans)
    check_bounds(stream, outcomes, bodies)


@examples(10)
@given(exchanges(), st.data())
def test_real_pauses_through_a_server(exchange, data):
    """Pieces sent by the scripted server with real pauses, read with the blocking API."""
    methods, resps, plans = exchange
    stream = b"".join(r.wire for r in resps)
    pieces = data.draw(splits(stream))
    if len(pieces) > 30:  # at most 30 pauses: keep it short
        pieces[29:] = [b"".join(pieces[29:])]
    script = [Step.read_request()] * len(methods)
    for piece in pieces:
        script += [
            Step.send(piece, may_fail=True),
            Step.sleep(data.draw(st.sampled_from([0, 0.001, 0.003]))),
        ]
    server = ScriptedServer([*script, Step.close()]).start()
    conn = HTTPConnection("127.0.0.1", server.port)
    conn.timeout = HANG
    try:
        for number, method in enumerate(methods):
            conn.send_request(method, f"/{number}")
        outcomes = []
        for plan in plans:
            resp = conn.read_response()
            if plan == "discard":
                conn.discard()
                body = None
            elif plan == "readall":
                body = conn.readall()
            else:
                how, size = plan
                parts = []
                while part := (conn.read(size) if how == "read" else conn.read1(size)):
                    parts.append(part)
                body = b"".join(parts)
            outcomes.append(outcome(resp, body))
        assert outcomes == model_outcomes(resps, plans)
    finally:
        conn.disconnect()
        server.stop()
    server.check()
