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

PROG = "httpcat"
CHUNK = 256 * 1024  # bytes per read: large reads go from the socket straight to our buffer
PROGRESS_INTERVAL = 0.2  # seconds between progress updates


class Failure(Exception):
    """Ends the program with a message and exit status 1."""


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A progress line on a terminal, rewritten in place with carriage returns."""

    def __init__(self, stream: TextIO, total: int | None) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self.shown = 0.0  # when the line was last written (0: never)
        self.width = 0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.shown >= PROGRESS_INTERVAL:
            self.show(now, final=False)

    def finish(self) -> None:
        self.show(time.monotonic(), final=True)
        self.stream.write("\n")
        self.stream.flush()

    def show(self, now: float, final: bool) -> None:
        self.shown = now
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        parts = [human_size(self.done)]
        if self.total is not None:
            parts[0] += f" of {human_size(self.total)}"
            parts.append(f"{100 * self.done // self.total if self.total else 100:3d}%")
        parts.append(f"{human_size(rate)}/s")
        if final:
            parts.append(f"in {clock(elapsed)}")
        elif self.total is not None:
            left = (self.total - self.done) / rate if rate else 0.0
            parts.append(f"{clock(left)} left")
        else:
            parts.append(clock(elapsed))
        line = "  ".join(parts)
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)


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
        meter = Progress(progress, resp.length) if progress is not None else None
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
                if meter is not None:
                    meter.update(n)
        finally:
            if meter is not None:
                meter.finish()  # on an error too, so that the message starts a new line
        return total


def check_url(text: str) -> SplitResult:
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("not an http:// or https:// URL")
    url.port  # noqa: B018 - raises ValueError for an invalid port
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Fetch URLs and write their bodies to stdout.")
    parser.add_argument("urls", metavar="URL", nargs="+", help="http:// or https:// URL")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the bodies to FILE (with a progress line on a terminal)")
    parser.add_argument("--cafile", metavar="FILE",
                        help="trust the CA certificates in FILE (PEM) instead of the system's")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="give up when nothing moves for this long (default: 30)")
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
