#!/usr/bin/env python3
"""Fetch URLs and write their bodies to stdout (or to a file), like a small curl.

    python contrib/httpcat.py http://example.org/ https://example.org/a.txt
    python contrib/httpcat.py -o big.iso https://example.org/big.iso

URLs of the same scheme, host and port share one keep-alive connection. Any
failure (name resolution, connection, TLS, an invalid response, or an HTTP
status of 300 or more: redirects are not followed) ends the program with a
message on stderr and exit status 1; bad arguments give exit status 2.

With ``-o FILE`` the bodies go to FILE, and when stderr is a terminal a
progress line shows the bytes received, the rate and, when the server
announced the length, the percentage and the time left.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import time
from typing import BinaryIO, TextIO
from urllib.parse import SplitResult, urlsplit

try:
    import dugong
except ImportError:  # run from a source checkout without installing dugong
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import dugong

# The progress line is shared with ``python -m dugong`` (a private module of the package).
from dugong._progress import ProgressLine, Transfer

PROG = "httpcat"
CHUNK = 256 * 1024  # bytes per read: large reads go from the socket straight to our buffer


class Failure(Exception):
    """Ends the program with a message and exit status 1."""


class Fetcher:
    """Fetches URLs, keeping one connection per scheme, host and port."""

    def __init__(self, cafile: str | None, timeout: float) -> None:
        self.cafile = cafile
        self.timeout = timeout
        self.conn: dugong.HTTPConnection | None = None
        self.origin: tuple[str, str, int] | None = None
        self.context: ssl.SSLContext | None = None

    def connection(self, url: SplitResult) -> tuple[dugong.HTTPConnection, bool]:
        """The connection for *url*, and whether it was used before."""
        scheme = url.scheme
        assert url.hostname is not None
        port = url.port or (443 if scheme == "https" else 80)
        origin = (scheme, url.hostname, port)
        if self.conn is not None and origin == self.origin:
            return self.conn, True
        self.close()
        context = None
        if scheme == "https":
            if self.context is None:
                self.context = ssl.create_default_context(cafile=self.cafile)
            context = self.context
        self.conn = dugong.HTTPConnection(url.hostname, port, ssl_context=context)
        self.conn.timeout = self.timeout
        self.origin = origin
        return self.conn, False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()
            self.conn = None

    def fetch(self, url: SplitResult, out: BinaryIO, progress: TextIO | None) -> int:
        """Write the body of *url* to *out*; the number of bytes."""
        conn, reused = self.connection(url)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        if reused and not conn.is_connected:
            # The server closed the kept-alive connection after the previous
            # response (it said so): start afresh.
            conn.reset()
        conn.send_request("GET", path, headers={"Accept": "*/*"})
        resp = conn.read_response()
        if resp.status >= 300:
            conn.discard()
            where = resp.headers.get("Location")
            hint = f" (Location: {where}; redirects are not followed)" if where else ""
            raise Failure(f"server answered {resp.status} {resp.reason}{hint}")
        meter = Transfer(resp.length)
        line = ProgressLine(progress) if progress is not None else None
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        total = 0
        try:
            while True:
                n = conn.readinto(view)
                if not n:
                    break
                out.write(view[:n])
                total += n
                if line is not None:
                    meter.add(n)
                    now = time.monotonic()
                    if line.due(now):
                        line.show(meter.describe(now), now)
        finally:
            if line is not None:  # on an error too, so that the message starts a new line
                line.finish(meter.describe(time.monotonic(), final=True))
        return total


def check_url(text: str) -> SplitResult:
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("not an http:// or https:// URL")
    url.port  # noqa: B018 - raises ValueError for an invalid port
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Fetch URLs and write their bodies to stdout."
    )
    parser.add_argument("urls", metavar="URL", nargs="+", help="http:// or https:// URL")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the bodies to FILE (with a progress line on a terminal)",
    )
    parser.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust the CA certificates in FILE (PEM) instead of the system's",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up when nothing moves for this long (default: 30)",
    )
    args = parser.parse_args(argv)
    urls = []
    for text in args.urls:
        try:
            urls.append(check_url(text))
        except ValueError as exc:
            parser.error(f"{text}: {exc}")

    fetcher = Fetcher(args.cafile, args.timeout)
    out: BinaryIO
    if args.output is None:
        out, progress = sys.stdout.buffer, None
    else:
        try:
            out = open(args.output, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            print(f"{PROG}: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
        progress = sys.stderr if sys.stderr.isatty() else None
    try:
        for text, url in zip(args.urls, urls, strict=True):
            try:
                fetcher.fetch(url, out, progress)
            except Failure as exc:
                print(f"{PROG}: {text}: {exc}", file=sys.stderr)
                return 1
            except (dugong.DugongError, OSError) as exc:
                # OSError includes ssl.SSLError and refused connections.
                print(f"{PROG}: {text}: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
        out.flush()
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        fetcher.close()
        if args.output is not None:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
