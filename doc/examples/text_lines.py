"""Read a text body line by line through io.TextIOWrapper.

Usage: python text_lines.py http://HOST:PORT/PATH
"""

import io
import sys
from urllib.parse import urlsplit

from dugong import HTTPConnection


def main(url: str) -> None:
    parts = urlsplit(url)
    with HTTPConnection(parts.hostname, parts.port) as conn:
        conn.send_request("GET", parts.path or "/")
        resp = conn.read_response()
        if resp.status != 200:
            conn.discard()
            sys.exit(f"{resp.status} {resp.reason}")
        # The connection reads like a binary file until the body ends.
        text = io.TextIOWrapper(conn, encoding="latin-1", newline="\n")
        for number, line in enumerate(text, 1):
            print(f"{number:3d} {line.rstrip()}")
        text.detach()  # leave the connection usable for further requests

        # Nothing of the body is left, and the next request can go out.
        assert conn.read() == b""
        conn.send_request("HEAD", parts.path or "/")
        print("then:", conn.read_response().status)


if __name__ == "__main__":
    main(sys.argv[1])
