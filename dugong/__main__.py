"""``python -m dugong URL...`` fetches URLs to stdout; without arguments it runs the demo."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from ._connection import HTTPConnection
from ._exceptions import DugongError


def fetch(urls: list[str]) -> int:
    """Write the body of each URL to stdout; 1 on the first error."""
    conn: HTTPConnection | None = None
    out = sys.stdout.buffer
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            print(f"dugong: {url}: not an http:// or https:// URL", file=sys.stderr)
            return 2
        context = None
        if parts.scheme == "https":
            import ssl

            context = ssl.create_default_context()
        try:
            port = parts.port
        except ValueError:
            print(f"dugong: {url}: invalid port", file=sys.stderr)
            return 2
        key = (parts.hostname, port or (443 if context else 80), parts.scheme)
        if conn is None or (conn.hostname, conn.port, "https" if conn.ssl_context else
                            "http") != key:
            if conn is not None:
                conn.disconnect()
            conn = HTTPConnection(parts.hostname, port, ssl_context=context)
            conn.timeout = 30
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.send_request("GET", path)
            resp = conn.read_response()
            if resp.status >= 400:
                conn.discard()
                print(f"dugong: {url}: {resp.status} {resp.reason}", file=sys.stderr)
                return 1
            while True:
                data = conn.read(65536)
                if not data:
                    break
                out.write(data)
            out.flush()
        except (DugongError, OSError) as exc:
            print(f"dugong: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    if conn is not None:
        conn.disconnect()
    return 0


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
