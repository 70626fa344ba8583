"""HTTP/1.1 on bytes: request assembly and checks, response heads, body framing.

Nothing here touches a socket or yields: values go in, values or exceptions
come out, which lets the parsers be tested on their own.

Parsing follows the grammar of RFC 9112 strictly. What a response may contain,
and what is refused with `InvalidResponse` (or `UnsupportedResponse`):

* Status line: ``HTTP/1.<digit> <100-599>``, then optionally a space and a
  reason phrase of tab, space, visible ASCII and obs-text. A line of the same
  shape with another major version (``HTTP/2 200``) or another protocol
  (``ICY 200 OK``) is `UnsupportedResponse`; anything else is
  `InvalidResponse`.
* Line ends: CRLF only. A bare LF anywhere in a head or trailer section
  (including the empty line that ends it) and a lone CR or NUL in a field are
  refused; none of them ever starts a new field.
* Field lines: a token name immediately followed by a colon (whitespace before
  the colon is refused), optional whitespace around the value. An obs-fold
  line (starting with space or tab) continues the previous value and is
  replaced by one space (RFC 9112 section 5.2); a fold before the first field is
  refused.
* Framing: ``Transfer-Encoding`` together with ``Content-Length``, a
  ``Content-Length`` that is not 1 to 18 decimal digits, or list values that
  disagree, are `InvalidResponse`; transfer codings other than a single final
  ``chunked`` are `UnsupportedResponse` (``chunked`` twice or an empty value is
  `InvalidResponse`). These are reported by the first body read.
* Chunk-size lines: 1 to 16 hex digits, nothing before them, optional
  extensions (``;...``, ignored) with optional whitespace before the ``;``.
  No sign, no ``0x``, no trailing whitespace without an extension.
* Limits (the package-level names, read when a response is parsed, so that
  rebinding ``dugong.MAX_HEADER_SIZE`` etc. takes effect): `MAX_LINE_SIZE`,
  `MAX_HEADER_SIZE`, `MAX_HEADER_FIELDS`, `MAX_INTERIM_SIZE`. Trailer sections
  obey the header limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, NamedTuple

from ._exceptions import InvalidResponse, UnsupportedResponse
from ._headers import CaseInsensitiveDict, ResponseHeaders
from ._tunables import PACKAGE

__all__ = [
    "BUFFER_SIZE",
    "MAX_HEADER_FIELDS",
    "MAX_HEADER_SIZE",
    "MAX_INTERIM_SIZE",
    "MAX_LINE_SIZE",
    "BodyKind",
    "Framing",
    "Head",
    "body_framing",
    "find_head_end",
    "format_host",
    "parse_chunk_size",
    "parse_fields",
    "parse_head",
    "parse_response",
    "parse_trailers",
    "proxy_fields",
    "request_head",
]

#: Size of the receive buffer of each connection (bytes).
BUFFER_SIZE: Final = 64 * 1024
#: Longest accepted status line or chunk-size line, without its CRLF (bytes).
MAX_LINE_SIZE: Final = 8 * 1024
#: Longest accepted response head (status line, fields and the empty line, CRLFs
#: included) or trailer section (bytes).
MAX_HEADER_SIZE: Final = 64 * 1024
#: Most header fields accepted in one response head or trailer section.
MAX_HEADER_FIELDS: Final = 512
#: Largest total size of the interim (1xx) response heads skipped before one final
#: response (bytes).
MAX_INTERIM_SIZE: Final = 64 * 1024

_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN_RE = re.compile(f"[{_TCHAR}]+")
# A well-formed field line, from the start of a line: name, colon, optional
# whitespace, value (trailing whitespace included), CRLF.
_FIELD_RE = re.compile(f"^([{_TCHAR}]+):[ \t]*([^\x00\r\n]*)\r\n", re.MULTILINE)
# status-line = HTTP-version SP status-code [SP reason-phrase]; the SP before an
# empty reason may be missing, which cannot change the meaning.
_STATUS_RE = re.compile(r"HTTP/([0-9])\.([0-9]) ([1-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\x00\r\n]*)?")
_DIGITS_RE = re.compile(r"[0-9]{1,18}")
# The start of a status line shaped like HTTP's but of another major version
# ("HTTP/2 200") or another protocol ("ICY 200 OK", "RTSP/1.0 200 OK").
_OTHER_VERSION_RE = re.compile(
    r"(?:HTTP/[02-9](?:\.[0-9])?|(?!HTTP/)[A-Z][A-Z0-9+.-]*(?:/[0-9]+(?:\.[0-9]+)?)?)"
    r" [0-9]{3}(?: |$)"
)
# Characters that may not appear in a request target (controls, space, DEL).
_BAD_TARGET_RE = re.compile("[\x00-\x20\x7f]")

# Names that passed the token check (method names and header field names).
_good_tokens: set[str] = set()


def _check_token(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if value not in _good_tokens:
        if not _TOKEN_RE.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not a valid HTTP token")
        if len(_good_tokens) > 4096:
            _good_tokens.clear()
        _good_tokens.add(value)


def format_host(hostname: str, port: int, default_port: int) -> str:
    """The value of the ``Host`` field for *hostname* and *port*."""
    host = f"[{hostname}]" if ":" in hostname and not hostname.startswith("[") else hostname
    return host if port == default_port else f"{host}:{port}"


def request_head(
    method: str,
    target: str,
    headers: Mapping[str, str] | None,
    host: str,
    body_fields: tuple[tuple[str, str], ...] | tuple[()],
    body_names: tuple[str, ...] | tuple[()],
) -> bytes:
    """Assemble a request head as bytes, checking every piece first.

    *body_fields* are the framing fields to send (Content-Length etc.); caller
    fields named in *body_names* (lower case) are left out in their favour.
    ``Host``, ``Accept-Encoding: identity`` and ``Connection: keep-alive`` are
    added unless the caller gave them. Raises `ValueError` (or `TypeError`)
    for anything that cannot be sent as it is.
    """
    if not headers:
        # Requests without caller fields repeat a lot (the same GET again and again):
        # their heads are kept, keyed by everything that goes into them.
        key = (method, target, host, body_fields)
        known = _plain_heads.get(key)
        if known is not None:
            return known
    _check_token("method", method)
    if not isinstance(target, str):
        raise TypeError(f"path must be str, not {type(target).__name__}")
    if not target or _BAD_TARGET_RE.search(target):
        raise ValueError(
            f"invalid request target {target!r}: empty, or contains a space or control character"
        )
    parts = [method, " ", target, " HTTP/1.1\r\n"]
    have_host = have_ae = have_conn = False
    lines = 2 + len(body_fields)  # request line, empty line, framing fields
    if headers:
        for name, value in headers.items():
            if name not in _good_tokens:
                _check_token("header name", name)
            if value.__class__ is not str and not isinstance(value, str):
                raise TypeError(
                    f"value of header {name!r} must be str, not {type(value).__name__}"
                )
            lname = name.lower()
            if body_names and lname in body_names:
                continue
            if lname == "host":
                have_host = True
            elif lname == "accept-encoding":
                have_ae = True
            elif lname == "connection":
                have_conn = True
            parts += (name, ": ", value, "\r\n")
            lines += 1
    if not have_host:
        parts += ("Host: ", host, "\r\n")
        lines += 1
    if not have_ae:
        parts.append("Accept-Encoding: identity\r\n")
        lines += 1
    if not have_conn:
        parts.append("Connection: keep-alive\r\n")
        lines += 1
    for name, value in body_fields:
        parts += (name, ": ", value, "\r\n")
    parts.append("\r\n")
    head = "".join(parts)
    # A CR, LF or NUL from the caller shows as a surplus over the lines we wrote.
    if head.count("\n") != lines or head.count("\r") != lines or "\x00" in head:
        _find_bad_value(headers)
    data = head.encode("latin-1")
    if not headers:
        if len(_plain_heads) >= 512:
            _plain_heads.clear()
        _plain_heads[key] = data
    return data


def proxy_fields(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Check header fields meant for a proxy; return them as ``(name, value)`` pairs.

    Raises `ValueError` (or `TypeError`) for a field that could not be sent.
    """
    pairs = tuple((headers or {}).items())
    for name, value in pairs:
        _check_token("header name", name)
        if not isinstance(value, str):
            raise TypeError(f"value of header {name!r} must be str, not {type(value).__name__}")
        value.encode("latin-1")
    _find_bad_value(dict(pairs), found=False)
    return pairs


# Heads of requests without caller fields, by (method, target, host, body fields).
_plain_heads: dict[tuple[object, ...], bytes] = {}


def _find_bad_value(headers: Mapping[str, str] | None, found: bool = True) -> None:
    """Raise ValueError for the first value with CR, LF or NUL in *headers*; if none
    has one but one was *found* in the head, for the head."""
    for name, value in (headers or {}).items():
        for ch in "\r\n\x00":
            if ch in value:
                raise ValueError(f"value of header {name!r} contains {ch!r}: {value!r}")
    if found:
        raise ValueError("request head contains CR, LF or NUL")  # pragma: no cover


class Head(NamedTuple):
    """A parsed response head."""

    minor: int  #: 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x)
    status: int
    reason: str
    headers: ResponseHeaders


def find_head_end(data: bytearray, start: int, end: int, search_from: int) -> int:
    """The offset just past the empty line ending a head in ``data[start:end]``, or -1.

    The head ends at the first empty line; *search_from* lets a caller skip
    what an earlier search already looked at. A head whose lines end in bare
    LF is found too (and then refused by `parse_head`), so it cannot make the
    reader wait for more data that never comes.
    """
    crlf = data.find(b"\n\r\n", search_from, end)
    lf = data.find(b"\n\n", search_from, end if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    if crlf >= 0:
        return crlf + 3
    return -1


def parse_head(
    head: str,
    max_line: int | None = None,
    max_size: int | None = None,
    max_fields: int | None = None,
) -> Head:
    """Parse a response head (latin-1 text ending in its empty line).

    The limits default to the package's `MAX_LINE_SIZE`, `MAX_HEADER_SIZE`
    and `MAX_HEADER_FIELDS` at the time of the call.
    """
    if max_line is None:
        max_line = PACKAGE.MAX_LINE_SIZE
    if max_size is None:
        max_size = PACKAGE.MAX_HEADER_SIZE
    if len(head) > max_size:
        raise InvalidResponse(f"Response head exceeds {max_size} bytes")
    eol = head.find("\r\n")
    if eol < 0:
        raise InvalidResponse(f"Status line does not end in CRLF: {head[:80]!r}")
    if eol > max_line:
        raise InvalidResponse(f"Status line exceeds {max_line} bytes")
    status_line = head[:eol]
    m = _STATUS_RE.fullmatch(status_line)
    if m is None:
        if _OTHER_VERSION_RE.match(status_line):
            raise UnsupportedResponse(
                f"Unsupported protocol or HTTP version in status line {status_line[:200]!r}"
            )
        raise InvalidResponse(f"Invalid status line: {status_line[:200]!r}")
    major, minor, status, reason = m.groups()
    if major != "1":
        raise UnsupportedResponse(f"Unsupported HTTP version in status line {status_line!r}")
    if not head.endswith("\r\n\r\n"):
        # Only a bare LF can end a head otherwise (see find_head_end).
        raise InvalidResponse("Response head does not end in an empty line with CRLF")
    items, first = parse_fields(head[eol + 2 : -2], max_fields)
    return _new(Head, (int(minor), int(status), reason or "", ResponseHeaders(items, first)))


def parse_fields(
    block: str,
    max_fields: int | None = None,
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Parse a field block (each line ending in CRLF, without the empty line).

    Returns the ``(name, value)`` pairs in order and a dict from lower-cased
    name to the first value. More than *max_fields* fields (default: the
    package's `MAX_HEADER_FIELDS`) raise `InvalidResponse`.
    """
    items = _FIELD_RE.findall(block)
    # Every line matched only if there are as many fields as line ends; a bare LF, a
    # lone CR, a NUL, a bad name or a folded line makes the counts differ. A last
    # line without its CRLF would not be counted at all.
    if len(items) != block.count("\n") or block[-1:] not in ("\n", ""):
        items = _parse_fields_slow(block)
    elif " \r\n" in block or "\t\r\n" in block:
        items = [(name, value.rstrip(" \t")) for name, value in items]
    if max_fields is None:
        max_fields = PACKAGE.MAX_HEADER_FIELDS
    if len(items) > max_fields:
        raise InvalidResponse(f"Too many header fields ({len(items)} > {max_fields})")
    first = {}
    for name, value in reversed(items):
        first[name.lower()] = value
    return items, first


def _parse_fields_slow(block: str) -> list[tuple[str, str]]:
    """Parse a block that has an unusual line: fold it, or say exactly what is wrong."""
    items: list[tuple[str, str]] = []
    lines = block.split("\r\n")
    last = lines.pop()
    if last:
        # Reached with a bare LF before the empty line, e.g. "Name: value\n\r\n".
        raise InvalidResponse(f"Header line does not end in CRLF: {last[:200]!r}")
    for line in lines:
        if "\n" in line:
            raise InvalidResponse(f"Bare LF in header line {line[:200]!r}")
        if "\r" in line:
            raise InvalidResponse(f"Lone CR in header line {line[:200]!r}")
        if "\x00" in line:
            raise InvalidResponse(f"NUL in header line {line[:200]!r}")
        if line[:1] in (" ", "\t"):
            # obs-fold: the line continues the previous value (RFC 9112 section 5.2).
            if not items:
                raise InvalidResponse(f"Continuation line without a field: {line[:200]!r}")
            name, value = items[-1]
            more = line.strip(" \t")
            items[-1] = (name, f"{value} {more}" if value and more else value or more)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise InvalidResponse(f"Header line without a colon: {line[:200]!r}")
        if name != name.rstrip(" \t"):
            raise InvalidResponse(f"Whitespace before the colon in header line {line[:200]!r}")
        if not _TOKEN_RE.fullmatch(name):
            raise InvalidResponse(f"Invalid header field name {name[:200]!r}")
        items.append((name, value.strip(" \t")))
    return items


# Building the result tuples of the parsers directly skips the Python-level __new__
# of NamedTuple on every response.
_new = tuple.__new__


class BodyKind:
    """How the end of a response body is found.

    Plain string constants compared with ``is``, not an `enum.Enum`: they are
    read several times per response, and an Enum member lookup costs about
    ten times a class attribute's on CPython 3.11.
    """

    NONE: Final = "no body"
    LENGTH: Final = "Content-Length"
    CHUNKED: Final = "chunked"
    UNTIL_CLOSE: Final = "until the server closes"
    ERROR: Final = "invalid framing"


class Framing(NamedTuple):
    """How to read the body of one response, and what happens after it."""

    kind: str  #: one of the `BodyKind` constants
    length: int | None  #: bytes that follow (LENGTH, NONE), else None
    will_close: bool  #: the server closes the connection after this response
    error: Exception | None = None  #: raised by the first body read (kind ERROR)


_NO_BODY_STATUS = frozenset((204, 304))


def _joined(headers: ResponseHeaders, name: str, first: str) -> str:
    """All values of a field that may be repeated, joined as one list."""
    values = headers.get_all(name)
    return first if values is None or len(values) == 1 else ", ".join(values)


def _tokens(value: str) -> list[str]:
    return [t.strip(" \t").lower() for t in value.split(",") if t.strip(" \t")]


def body_framing(method: str, head: Head) -> Framing:
    """Decide how the body of a response to *method* is delimited (RFC 9112 section 6.3).

    Framing errors do not raise here: they come back as kind ERROR so that the
    status and headers can be inspected before the first body read raises.
    """
    headers = head.headers
    first = headers._first
    repeated = len(first) != len(headers._items)
    conn = first.get("connection")
    if conn is None:
        will_close = head.minor == 0
    else:
        if repeated:
            conn = _joined(headers, "connection", conn)
        conn = conn.lower()
        if conn == "keep-alive":
            will_close = False
        elif conn == "close":
            will_close = True
        else:
            tokens = _tokens(conn)
            will_close = "close" in tokens or (head.minor == 0 and "keep-alive" not in tokens)
    status = head.status
    if status == 101:  # Switching Protocols: what follows is no longer HTTP/1.1
        return _new(Framing, (BodyKind.NONE, 0, True, None))
    if method == "HEAD" or status < 200 or status in _NO_BODY_STATUS:
        return _new(Framing, (BodyKind.NONE, 0, will_close, None))
    te = first.get("transfer-encoding")
    cl = first.get("content-length")
    if (
        te is None
        and cl is not None
        and not repeated
        and cl.isdigit()
        and cl.isascii()
        and len(cl) <= 18
    ):
        return _new(Framing, (BodyKind.LENGTH, int(cl), will_close, None))
    if te is not None:
        if repeated:
            te = _joined(headers, "transfer-encoding", te)
        if cl is not None:
            return _error(
                InvalidResponse(
                    f"Response has both Transfer-Encoding ({te!r}) and Content-Length ({cl!r})"
                )
            )
        codings = _tokens(te)
        if codings == ["chunked"]:
            return _new(Framing, (BodyKind.CHUNKED, None, will_close or head.minor == 0, None))
        if codings.count("chunked") > 1 or not codings:
            return _error(InvalidResponse(f"Invalid Transfer-Encoding {te!r}"))
        return _error(
            UnsupportedResponse(
                f"Unsupported Transfer-Encoding {te!r} (dugong decodes only chunked)"
            )
        )
    if cl is not None:
        if repeated:
            cl = _joined(headers, "content-length", cl)
        values = _tokens(cl)
        if not values or any(_DIGITS_RE.fullmatch(v) is None for v in values):
            return _error(InvalidResponse(f"Invalid Content-Length {cl!r}"))
        if len(set(map(int, values))) != 1:
            return _error(
                InvalidResponse(f"Conflicting Content-Length values: {', '.join(values)}")
            )
        return Framing(BodyKind.LENGTH, int(values[0]), will_close)
    if will_close:
        return Framing(BodyKind.UNTIL_CLOSE, None, True)
    return _error(
        UnsupportedResponse(
            "Response keeps the connection open but gives its body neither a "
            "Content-Length nor chunked framing"
        )
    )


# Recently parsed heads: servers send the same head again and again (the same
# resource within the same second of their Date field), so a response whose head
# text equals one seen before reuses its parse. Bounded in entries and head size.
_parsed: dict[tuple[str, str, int, int, int], tuple[Head, Framing]] = {}
_PARSED_ENTRIES = 128
_PARSED_HEAD_SIZE = 2048  # also bounds the head a connection remembers


def parse_response(
    method: str, text: str, max_line: int, max_size: int, max_fields: int
) -> tuple[Head, Framing]:
    """`parse_head` and `body_framing` together, reusing the result for a repeated head.

    The result is shared between equal heads: `ResponseHeaders` is read-only. A
    framing error is never shared, so that each response raises its own exception.
    """
    key = (text, method, max_line, max_size, max_fields)
    known = _parsed.get(key)
    if known is not None:
        return known
    head = parse_head(text, max_line, max_size, max_fields)
    result = (head, body_framing(method, head))
    if len(text) <= _PARSED_HEAD_SIZE and result[1][0] is not BodyKind.ERROR:
        if len(_parsed) >= _PARSED_ENTRIES:
            _parsed.clear()
        _parsed[key] = result
    return result


def _error(exc: Exception) -> Framing:
    return Framing(BodyKind.ERROR, None, True, exc)


def parse_chunk_size(line: bytes | bytearray | memoryview) -> int:
    """The size given by a chunk-size line (without its CRLF); extensions are ignored."""
    m = _CHUNK_SIZE_RE.fullmatch(line)
    if m is None:
        raise InvalidResponse(f"Invalid chunk-size line {bytes(line[:200])!r}")
    return int(m[1], 16)


def parse_trailers(
    block: str, max_size: int | None = None, max_fields: int | None = None
) -> CaseInsensitiveDict:
    """The trailer fields of a chunked body; repeated fields are joined with ', '.

    *block* holds the field lines (each ending in CRLF) without the final empty
    line. The section, empty line included, may not exceed *max_size* bytes, nor
    hold more than *max_fields* fields (defaults: the package's
    `MAX_HEADER_SIZE` and `MAX_HEADER_FIELDS`).
    """
    if max_size is None:
        max_size = PACKAGE.MAX_HEADER_SIZE
    if len(block) + 2 > max_size:
        raise InvalidResponse(f"Trailer section exceeds {max_size} bytes")
    items, _ = parse_fields(block, max_fields)
    trailers = CaseInsensitiveDict()
    for name, value in items:
        if name in trailers:
            trailers[name] = f"{trailers[name]}, {value}"
        else:
            trailers[name] = value
    return trailers
