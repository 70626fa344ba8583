"""The byte-level parsers of dugong._protocol, without any socket.

Each valid head is parsed whole, found byte by byte the way the connection
searches its buffer, and found with extra bytes behind it that must stay
unread. Each invalid case is its own test naming the exception it gets.
"""

from __future__ import annotations

import pytest

import dugong
from dugong import InvalidResponse, UnsupportedResponse
from dugong._protocol import (
    MAX_HEADER_FIELDS,
    BodyKind,
    Head,
    body_framing,
    find_head_end,
    parse_chunk_size,
    parse_fields,
    parse_head,
    parse_trailers,
)

# ------------------------------------------------------------------ helpers


def head_of(wire: bytes) -> Head:
    return parse_head(wire.decode("latin-1"))


def find_incrementally(wire: bytes) -> int:
    """Feed *wire* one byte at a time and search like the connection does."""
    data = bytearray()
    seen = 0
    for byte in wire:
        data.append(byte)
        end = find_head_end(data, 0, len(data), seen)
        if end >= 0:
            return end
        seen = max(0, len(data) - 2)
    return -1


def framing_of(wire: bytes, method: str = "GET"):
    return body_framing(method, head_of(wire))


# ------------------------------------------------------------------ valid heads

VALID_HEADS = {
    "minimal": (b"HTTP/1.1 200 OK\r\n\r\n", 1, 200, "OK", []),
    "no reason, with SP": (b"HTTP/1.1 204 \r\n\r\n", 1, 204, "", []),
    "no reason, no SP": (b"HTTP/1.1 204\r\n\r\n", 1, 204, "", []),
    "reason with spaces and obs-text": (
        b"HTTP/1.0 404 Not \xe9 Found\t!\r\n\r\n",
        0,
        404,
        "Not \xe9 Found\t!",
        [],
    ),
    "http/1.2 is 1.x": (b"HTTP/1.2 200 OK\r\nA: b\r\n\r\n", 2, 200, "OK", [("A", "b")]),
    "fields": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Empty:\r\nX-Spaces: \t a  b \t\r\n"
        b"x-weird!#$%&'*+-.^_`|~: v\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        1,
        200,
        "OK",
        [
            ("Content-Length", "3"),
            ("X-Empty", ""),
            ("X-Spaces", "a  b"),
            ("x-weird!#$%&'*+-.^_`|~", "v"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ],
    ),
    "value with colons and obs-text": (
        b"HTTP/1.1 301 Moved\r\nLocation: http://h:1/\xfc?a:b\r\n\r\n",
        1,
        301,
        "Moved",
        [("Location", "http://h:1/\xfc?a:b")],
    ),
    "obs-fold joined with one SP": (
        b"HTTP/1.1 200 OK\r\nX-Long: one\r\n   two\r\n\tthree \r\nY: z\r\n\r\n",
        1,
        200,
        "OK",
        [("X-Long", "one two three"), ("Y", "z")],
    ),
    "obs-fold of an empty value": (
        b"HTTP/1.1 200 OK\r\nX-Long:\r\n two\r\n \r\n\r\n",
        1,
        200,
        "OK",
        [("X-Long", "two")],
    ),
    "interim": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        1,
        103,
        "Early Hints",
        [("Link", "</a>")],
    ),
}


@pytest.mark.parametrize("case", VALID_HEADS.values(), ids=VALID_HEADS.keys())
def test_valid_head_whole(case):
    wire, minor, status, reason, items = case
    head = head_of(wire)
    assert (head.minor, head.status, head.reason) == (minor, status, reason)
    assert head.headers.items() == items
    for name, value in items:
        assert head.headers[name.upper()] == next(v for n, v in items if n == name)
        assert value in head.headers.get_all(name)


@pytest.mark.parametrize("case", VALID_HEADS.values(), ids=VALID_HEADS.keys())
def test_valid_head_found_byte_by_byte(case):
    wire = case[0]
    assert find_incrementally(wire) == len(wire)
    # Nothing shorter is a complete head.
    for cut in range(len(wire)):
        assert find_head_end(wire[:cut], 0, cut, 0) == -1


@pytest.mark.parametrize("case", VALID_HEADS.values(), ids=VALID_HEADS.keys())
@pytest.mark.parametrize("extra", [b"\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", b"\n\n", b"x"])
def test_valid_head_followed_by_more(case, extra):
    wire = case[0]
    data = bytearray(b"junk" + wire + extra)
    assert find_head_end(data, 4, len(data), 4) == 4 + len(wire)
    assert find_incrementally(wire + extra) == len(wire)


# ------------------------------------------------------------------ invalid heads

INVALID_HEADS = {
    # status line
    "no SP before status": (b"HTTP/1.1200 OK\r\n\r\n", InvalidResponse, "status line"),
    "no SP after status": (b"HTTP/1.1 200OK\r\n\r\n", InvalidResponse, "status line"),
    "two SP": (b"HTTP/1.1  200 OK\r\n\r\n", InvalidResponse, "status line"),
    "two-digit status": (b"HTTP/1.1 20 OK\r\n\r\n", InvalidResponse, "status line"),
    "four-digit status": (b"HTTP/1.1 2000 OK\r\n\r\n", InvalidResponse, "status line"),
    "status below 100": (b"HTTP/1.1 099 Low\r\n\r\n", InvalidResponse, "status line"),
    "status above 599": (b"HTTP/1.1 600 High\r\n\r\n", InvalidResponse, "status line"),
    "status with sign": (b"HTTP/1.1 +20 OK\r\n\r\n", InvalidResponse, "status line"),
    "lower-case name": (b"http/1.1 200 OK\r\n\r\n", InvalidResponse, "status line"),
    "no version": (b"200 OK\r\n\r\n", InvalidResponse, "status line"),
    # another protocol shaped like HTTP: unsupported, as in dugong 3.x
    "other protocol": (b"ICY 200 OK\r\n\r\n", UnsupportedResponse, "protocol"),
    "RTSP": (b"RTSP/1.0 200 OK\r\n\r\n", UnsupportedResponse, "protocol"),
    "other protocol, bad status": (b"ICY 2000 OK\r\n\r\n", InvalidResponse, "status line"),
    "HTTP/1.10": (b"HTTP/1.10 200 OK\r\n\r\n", InvalidResponse, "status line"),
    "leading empty line": (b"\r\nHTTP/1.1 200 OK\r\n\r\n", InvalidResponse, "status line"),
    "leading space": (b" HTTP/1.1 200 OK\r\n\r\n", InvalidResponse, "status line"),
    "NUL in reason": (b"HTTP/1.1 200 O\x00K\r\n\r\n", InvalidResponse, "status line"),
    "control in reason": (b"HTTP/1.1 200 O\x01K\r\n\r\n", InvalidResponse, "status line"),
    "lone CR in status line": (b"HTTP/1.1 200 O\rK\r\n\r\n", InvalidResponse, "status line"),
    "HTTP/2.0": (b"HTTP/2.0 200 OK\r\n\r\n", UnsupportedResponse, "version"),
    "HTTP/2": (b"HTTP/2 200 OK\r\n\r\n", UnsupportedResponse, "version"),
    "HTTP/0.9": (b"HTTP/0.9 200 OK\r\n\r\n", UnsupportedResponse, "version"),
    "HTTP/3.0 bad status": (b"HTTP/3.0 999 X\r\n\r\n", UnsupportedResponse, "version"),
    # line ends
    "all bare LF": (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", InvalidResponse, "CRLF"),
    "bare LF status line": (b"HTTP/1.1 200 OK\nA: b\r\n\r\n", InvalidResponse, "status line"),
    "bare LF in a field": (b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", InvalidResponse, "Bare LF"),
    "bare LF ends a field": (b"HTTP/1.1 200 OK\r\nA: b\n\r\n", InvalidResponse, "CRLF"),
    "bare LF empty line": (b"HTTP/1.1 200 OK\r\n\n", InvalidResponse, "empty line"),
    "bare LF empty line after field": (b"HTTP/1.1 200 OK\r\nA: b\r\n\n", InvalidResponse, "CRLF"),
    "lone CR ends a field": (b"HTTP/1.1 200 OK\r\nA: b\r\r\n\r\n", InvalidResponse, "Lone CR"),
    "lone CR splits a field": (
        b"HTTP/1.1 200 OK\r\nA: b\rContent-Length: 5\r\n\r\n",
        InvalidResponse,
        "Lone CR",
    ),
    "NUL in a value": (b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n", InvalidResponse, "NUL"),
    "NUL in a name": (b"HTTP/1.1 200 OK\r\nA\x00: b\r\n\r\n", InvalidResponse, "NUL"),
    # field lines
    "no colon": (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", InvalidResponse, "colon"),
    "SP before colon": (
        b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
        InvalidResponse,
        "Whitespace before the colon",
    ),
    "HTAB before colon": (
        b"HTTP/1.1 200 OK\r\nA\t: b\r\n\r\n",
        InvalidResponse,
        "Whitespace before the colon",
    ),
    "empty name": (b"HTTP/1.1 200 OK\r\n: b\r\n\r\n", InvalidResponse, "field name"),
    "separator in name": (b"HTTP/1.1 200 OK\r\nA(b): c\r\n\r\n", InvalidResponse, "field name"),
    "non-ASCII name": (b"HTTP/1.1 200 OK\r\nX-\xe9: c\r\n\r\n", InvalidResponse, "field name"),
    "fold before the first field": (
        b"HTTP/1.1 200 OK\r\n folded: x\r\nA: b\r\n\r\n",
        InvalidResponse,
        "Continuation",
    ),
}


@pytest.mark.parametrize("case", INVALID_HEADS.values(), ids=INVALID_HEADS.keys())
def test_invalid_head(case):
    wire, exc, match = case
    assert find_head_end(wire, 0, len(wire), 0) == len(wire)  # found, so never waited for
    with pytest.raises(exc, match=match):
        head_of(wire)


def test_errors_say_what_was_wrong():
    with pytest.raises(InvalidResponse) as info:
        head_of(b"HTTP/1.1 200 OK\r\nGood: 1\r\nBad header\r\n\r\n")
    assert "'Bad header'" in str(info.value)


# ------------------------------------------------------------------ limits


def test_status_line_limit():
    line = b"HTTP/1.1 200 " + b"x" * 87  # 100 bytes without CRLF
    assert parse_head((line + b"\r\n\r\n").decode(), max_line=100).status == 200
    with pytest.raises(InvalidResponse, match="Status line exceeds 99 bytes"):
        parse_head((line + b"\r\n\r\n").decode(), max_line=99)


def test_head_size_limit():
    wire = b"HTTP/1.1 200 OK\r\nA: " + b"b" * 100 + b"\r\n\r\n"
    assert parse_head(wire.decode(), max_size=len(wire)).headers["a"] == "b" * 100
    with pytest.raises(InvalidResponse, match=f"exceeds {len(wire) - 1} bytes"):
        parse_head(wire.decode(), max_size=len(wire) - 1)


def test_field_count_limit():
    block = "".join(f"F{i}: {i}\r\n" for i in range(10))
    assert len(parse_fields(block, 10)[0]) == 10
    with pytest.raises(InvalidResponse, match=r"Too many header fields \(10 > 9\)"):
        parse_fields(block, 9)
    # The slow path (here: a fold) counts the same way.
    with pytest.raises(InvalidResponse, match="Too many"):
        parse_fields(block + " folded\r\n", 9)


def test_default_field_count_limit():
    many = "".join(f"F{i}: {i}\r\n" for i in range(MAX_HEADER_FIELDS))
    head = parse_head(f"HTTP/1.1 200 OK\r\n{many}\r\n")
    assert len(head.headers) == MAX_HEADER_FIELDS
    with pytest.raises(InvalidResponse, match="Too many header fields"):
        parse_head(f"HTTP/1.1 200 OK\r\n{many}X: y\r\n\r\n")


def test_limits_are_read_from_the_package(monkeypatch):
    wire = "HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n"
    assert parse_head(wire).status == 200
    monkeypatch.setattr(dugong, "MAX_HEADER_FIELDS", 1)
    with pytest.raises(InvalidResponse, match="Too many"):
        parse_head(wire)
    with pytest.raises(InvalidResponse, match="Too many"):
        parse_trailers("A: b\r\nC: d\r\n")
    monkeypatch.setattr(dugong, "MAX_HEADER_FIELDS", 2)
    monkeypatch.setattr(dugong, "MAX_HEADER_SIZE", len(wire) - 1)
    with pytest.raises(InvalidResponse, match="Response head exceeds"):
        parse_head(wire)
    monkeypatch.setattr(dugong, "MAX_HEADER_SIZE", 10)
    with pytest.raises(InvalidResponse, match="Trailer section exceeds 10 bytes"):
        parse_trailers("Abcd: efg\r\n")
    monkeypatch.setattr(dugong, "MAX_HEADER_SIZE", 1000)
    monkeypatch.setattr(dugong, "MAX_LINE_SIZE", 10)
    with pytest.raises(InvalidResponse, match="Status line exceeds 10 bytes"):
        parse_head(wire)


# ------------------------------------------------------------------ fast and slow paths


def test_fast_and_slow_path_agree():
    """A fold sends a block down the slow path; the other lines must parse the same."""
    lines = ["A: 1", "B:2", "C:  3  ", "D:\t4\t", "E:", "F: x y", "G: \xe9"]
    block = "".join(line + "\r\n" for line in lines)
    fast, fast_first = parse_fields(block)
    slow, slow_first = parse_fields(block + "H: 5\r\n fold\r\n")
    assert slow[:-1] == fast
    assert slow[-1] == ("H", "5 fold")
    assert fast == [
        ("A", "1"),
        ("B", "2"),
        ("C", "3"),
        ("D", "4"),
        ("E", ""),
        ("F", "x y"),
        ("G", "\xe9"),
    ]
    assert fast_first == {name.lower(): value for name, value in fast}
    assert slow_first["h"] == "5 fold"


def test_first_value_of_repeated_fields():
    head = head_of(b"HTTP/1.1 200 OK\r\nX: 1\r\nx: 2\r\nX: 3\r\n\r\n")
    assert head.headers["X"] == "1"
    assert head.headers.get_all("x") == ["1", "2", "3"]


# ------------------------------------------------------------------ body framing

OK = b"HTTP/1.1 200 OK\r\n"

FRAMINGS = {
    "content-length": (OK + b"Content-Length: 42\r\n\r\n", BodyKind.LENGTH, 42, False),
    "zero length": (OK + b"Content-Length: 0\r\n\r\n", BodyKind.LENGTH, 0, False),
    "leading zeros": (OK + b"Content-Length: 007\r\n\r\n", BodyKind.LENGTH, 7, False),
    "repeated equal lengths": (
        OK + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
        BodyKind.LENGTH,
        5,
        False,
    ),
    "list of equal lengths": (OK + b"Content-Length: 5, 5,05\r\n\r\n", BodyKind.LENGTH, 5, False),
    "18 digits": (
        OK + b"Content-Length: 999999999999999999\r\n\r\n",
        BodyKind.LENGTH,
        999999999999999999,
        False,
    ),
    "chunked": (OK + b"Transfer-Encoding: chunked\r\n\r\n", BodyKind.CHUNKED, None, False),
    "Chunked, any case": (
        OK + b"transfer-encoding: ChUnKeD\r\n\r\n",
        BodyKind.CHUNKED,
        None,
        False,
    ),
    "chunked, empty list elements": (
        OK + b"Transfer-Encoding: ,chunked ,\r\n\r\n",
        BodyKind.CHUNKED,
        None,
        False,
    ),
    "close without length": (OK + b"Connection: close\r\n\r\n", BodyKind.UNTIL_CLOSE, None, True),
    "close among tokens": (
        OK + b"Connection: foo\r\nConnection: Close, bar\r\n\r\n",
        BodyKind.UNTIL_CLOSE,
        None,
        True,
    ),
    "close with length": (
        OK + b"Connection: close\r\nContent-Length: 2\r\n\r\n",
        BodyKind.LENGTH,
        2,
        True,
    ),
    "1.0 until close": (b"HTTP/1.0 200 OK\r\n\r\n", BodyKind.UNTIL_CLOSE, None, True),
    "1.0 keep-alive": (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        BodyKind.LENGTH,
        1,
        False,
    ),
    "1.0 chunked closes": (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        BodyKind.CHUNKED,
        None,
        True,
    ),
    "204": (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", BodyKind.NONE, 0, False),
    "304": (
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        BodyKind.NONE,
        0,
        False,
    ),
    "1xx": (b"HTTP/1.1 102 Processing\r\n\r\n", BodyKind.NONE, 0, False),
}


@pytest.mark.parametrize("case", FRAMINGS.values(), ids=FRAMINGS.keys())
def test_body_framing(case):
    wire, kind, length, will_close = case
    framing = framing_of(wire)
    assert (framing.kind, framing.length, framing.will_close) == (kind, length, will_close)
    assert framing.error is None


def test_head_request_has_no_body():
    framing = framing_of(OK + b"Content-Length: 42\r\n\r\n", "HEAD")
    assert (framing.kind, framing.length) == (BodyKind.NONE, 0)
    # Even a framing error does not matter when no body can follow.
    framing = framing_of(OK + b"Content-Length: -1\r\n\r\n", "HEAD")
    assert (framing.kind, framing.error) == (BodyKind.NONE, None)


BAD_FRAMINGS = {
    "conflicting lengths": (
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        InvalidResponse,
        "Conflicting",
    ),
    "conflicting list": (b"Content-Length: 5, 6\r\n", InvalidResponse, "Conflicting"),
    "negative length": (b"Content-Length: -1\r\n", InvalidResponse, "Invalid Content-Length"),
    "plus sign": (b"Content-Length: +5\r\n", InvalidResponse, "Invalid Content-Length"),
    "non-numeric length": (b"Content-Length: abc\r\n", InvalidResponse, "Invalid Content-Length"),
    "hex length": (b"Content-Length: 0x10\r\n", InvalidResponse, "Invalid Content-Length"),
    "exponent": (b"Content-Length: 1e3\r\n", InvalidResponse, "Invalid Content-Length"),
    "underscore": (b"Content-Length: 1_000\r\n", InvalidResponse, "Invalid Content-Length"),
    "inner space": (b"Content-Length: 1 000\r\n", InvalidResponse, "Invalid Content-Length"),
    "non-ASCII digits": (
        "Content-Length: \xb2\r\n".encode("latin-1"),
        InvalidResponse,
        "Invalid Content-Length",
    ),
    "empty length": (b"Content-Length:\r\n", InvalidResponse, "Invalid Content-Length"),
    "only commas": (b"Content-Length: ,\r\n", InvalidResponse, "Invalid Content-Length"),
    "absurd length": (
        b"Content-Length: 1000000000000000000\r\n",
        InvalidResponse,
        "Invalid Content-Length",
    ),
    "one bad of two": (
        b"Content-Length: 5\r\nContent-Length: x\r\n",
        InvalidResponse,
        "Invalid Content-Length",
    ),
    "TE and CL": (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", InvalidResponse, "both"),
    "CL and TE": (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", InvalidResponse, "both"),
    "gzip": (b"Transfer-Encoding: gzip\r\n", UnsupportedResponse, "Transfer-Encoding"),
    "gzip then chunked": (
        b"Transfer-Encoding: gzip, chunked\r\n",
        UnsupportedResponse,
        "Transfer-Encoding",
    ),
    "gzip then chunked, two fields": (
        b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        UnsupportedResponse,
        "Transfer-Encoding",
    ),
    "chunked not last": (
        b"Transfer-Encoding: chunked, gzip\r\n",
        UnsupportedResponse,
        "Transfer-Encoding",
    ),
    "chunked twice": (
        b"Transfer-Encoding: chunked, chunked\r\n",
        InvalidResponse,
        "Invalid Transfer-Encoding",
    ),
    "empty coding": (b"Transfer-Encoding:\r\n", InvalidResponse, "Invalid Transfer-Encoding"),
    "chunked with parameter": (
        b"Transfer-Encoding: chunked;q=1\r\n",
        UnsupportedResponse,
        "Transfer-Encoding",
    ),
    "identity": (b"Transfer-Encoding: identity\r\n", UnsupportedResponse, "Transfer-Encoding"),
    "keep-alive without framing": (b"", UnsupportedResponse, "neither"),
}


@pytest.mark.parametrize("case", BAD_FRAMINGS.values(), ids=BAD_FRAMINGS.keys())
def test_bad_body_framing(case):
    fields, exc, match = case
    framing = framing_of(OK + fields + b"\r\n")
    assert framing.kind is BodyKind.ERROR
    assert framing.will_close
    assert type(framing.error) is exc
    assert match in str(framing.error)


# ------------------------------------------------------------------ chunk-size lines

GOOD_CHUNK_SIZES = {
    b"0": 0,
    b"5": 5,
    b"a": 10,
    b"FF": 255,
    b"fF": 255,
    b"00000010": 16,
    b"ffffffffffffffff": 2**64 - 1,
    b"1;ext": 1,
    b'1;a=b;c="d e"': 1,
    b"1 ;ext": 1,
    b"1\t; ext": 1,
    b"1;": 1,
}


@pytest.mark.parametrize(("line", "size"), GOOD_CHUNK_SIZES.items())
def test_chunk_size(line, size):
    assert parse_chunk_size(line) == size
    assert parse_chunk_size(bytearray(line)) == size
    assert parse_chunk_size(memoryview(line)) == size


BAD_CHUNK_SIZES = [
    b"",
    b"+5",
    b"-5",
    b"0x5",
    b"0X5",
    b" 5",
    b"\t5",
    b"5 ",
    b"5\t",
    b"5 5",
    b"g",
    b"5g",
    b"1_0",
    b"10000000000000000",
    b"00000000000000001",
    b";ext",
    b"5;a\x00",
    b"5;a\rb",
    "\uff15".encode(),
    b"\xb2",
]


@pytest.mark.parametrize("line", BAD_CHUNK_SIZES)
def test_bad_chunk_size(line):
    with pytest.raises(InvalidResponse, match="Invalid chunk-size line"):
        parse_chunk_size(line)


# ------------------------------------------------------------------ trailers


def test_trailers():
    trailers = parse_trailers("X-Sum: 1\r\nx-sum: 2\r\nOther:  v \r\n")
    assert trailers == {"x-sum": "1, 2", "other": "v"}
    assert parse_trailers("") == {}


@pytest.mark.parametrize(
    "block",
    ["No colon\r\n", "A : b\r\n", "A: b\nC: d\r\n", "A: b\rc\r\n", " fold\r\n", "A: b\x00\r\n"],
)
def test_bad_trailers(block):
    with pytest.raises(InvalidResponse):
        parse_trailers(block)


def test_trailer_limits():
    block = "A: " + "b" * 95 + "\r\n"  # 100 bytes, 102 with the empty line
    assert parse_trailers(block, max_size=102)["a"] == "b" * 95
    with pytest.raises(InvalidResponse, match="Trailer section exceeds 101 bytes"):
        parse_trailers(block, max_size=101)
    with pytest.raises(InvalidResponse, match="Too many"):
        parse_trailers("A: 1\r\nB: 2\r\n", max_fields=1)


@pytest.mark.parametrize("block", ["A: b", "A: b\r\nC: d", "A: b\n"])
def test_field_block_must_end_in_crlf(block):
    with pytest.raises(InvalidResponse, match="does not end in CRLF"):
        parse_fields(block)
