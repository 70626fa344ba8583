"""``python -m dugong URL...`` fetches URLs to stdout; without arguments it runs the demo."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from ._connection import HTTPConnection
from ._exceptions import DugongError


def fetch(urls: list[str]) -> int:
    """Write the body of each URL to stdout; 1 on the first error, 2 for a bad URL."""
    conn: HTTPConnection | None = None
    try:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                print(f"dugong: {url}: not an http:// or https:// URL", file=sys.stderr)
                return 2
            try:
                port = parts.port
            except ValueError:
                print(f"dugong: {url}: invalid port", file=sys.stderr)
                return 2
            tls = parts.scheme == "https"
            if conn is None or (conn.hostname, conn.port, conn.ssl_context is not None) != (
                    parts.hostname, port or (443 if tls else 80), tls):
                if conn is not None:
                    conn.disconnect()
                context = None
                if tls:
                    import ssl

                    context = ssl.create_default_context()
                conn = HTTPConnection(parts.hostname, port, ssl_context=context)
                conn.timeout = 30
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            try:
                _copy_body(conn, path)
            except _HTTPError as exc:
                print(f"dugong: {url}: {exc}", file=sys.stderr)
                return 1
            except (DugongError, OSError) as exc:
                print(f"dugong: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
        return 0
    finally:
        if conn is not None:
            conn.disconnect()


class _HTTPError(Exception):
    """The server answered with an error status."""


def _copy_body(conn: HTTPConnection, path: str) -> None:
    out = sys.stdout.buffer
    conn.send_request("GET", path)
    resp = conn.read_response()
    if resp.status >= 400:
        conn.discard()
        raise _HTTPError(f"{resp.status} {resp.reason}")
    while data := conn.read(65536):
        out.write(data)
    out.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print("usage: python -m dugong [URL ...]\n\nFetch each URL and write its body to "
              "stdout.\nWithout URLs, run a demo against a local server.")
        return 0
    if not args:
        from ._demo import main as demo

        return demo()
    return fetch(args)


if __name__ == "__main__":
    sys.exit(main())
