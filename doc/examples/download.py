"""Stream a (possibly large) response body into a file, piece by piece.

Usage: python download.py http://HOST:PORT/PATH OUTPUT_FILE [read|readinto]

Prints the number of bytes saved and their SHA-256.
"""

import hashlib
import sys
from typing import BinaryIO
from urllib.parse import urlsplit

from dugong import HTTPConnection


def save_with_read(conn: HTTPConnection, out: BinaryIO) -> int:
    """Copy the body with read(): simple, one new bytes object per piece."""
    total = 0
    while True:
        piece = conn.read(64 * 1024)
        if not piece:  # b'' only once the whole body has arrived
            return total
        out.write(piece)
        total += len(piece)


def save_with_readinto(conn: HTTPConnection, out: BinaryIO) -> int:
    """Copy the body with readinto(): one buffer, reused for every piece."""
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    total = 0
    while True:
        n = conn.readinto(buf)
        if n == 0:
            return total
        out.write(view[:n])
        total += n


def main(url: str, filename: str, how: str = "readinto") -> None:
    parts = urlsplit(url)
    save = save_with_read if how == "read" else save_with_readinto
    with HTTPConnection(parts.hostname, parts.port) as conn:
        conn.timeout = 30  # give up if the server stalls for 30 seconds
        conn.send_request("GET", parts.path or "/")
        resp = conn.read_response()
        if resp.status != 200:
            conn.discard()
            sys.exit(f"{url}: {resp.status} {resp.reason}")
        print("announced length:", "unknown" if resp.length is None else resp.length)
        with open(filename, "wb") as out:
            saved = save(conn, out)

    with open(filename, "rb") as saved_file:
        digest = hashlib.sha256(saved_file.read()).hexdigest()
    print("saved", saved, "bytes, sha256", digest)


if __name__ == "__main__":
    main(*sys.argv[1:4])
