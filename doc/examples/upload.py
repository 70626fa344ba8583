"""Upload a file three ways: in one piece, streamed with a known length, streamed chunked.

Usage: python upload.py http://HOST:PORT/PATH FILE

The server is expected to echo the request body (as the test server's /echo
does); the SHA-256 of each answer is printed.
"""

import hashlib
import os
import sys
from urllib.parse import urlsplit

from dugong import BodyFollowing, HTTPConnection

PIECE = 64 * 1024


def upload_whole(conn: HTTPConnection, path: str, filename: str) -> None:
    """Small bodies: pass the bytes; dugong adds Content-Length and Content-MD5."""
    with open(filename, "rb") as f:
        data = f.read()
    conn.send_request("PUT", path, body=data)


def upload_known_length(conn: HTTPConnection, path: str, filename: str) -> None:
    """Large bodies of known size: announce the length, then write the pieces."""
    size = os.path.getsize(filename)
    conn.send_request("PUT", path, body=BodyFollowing(size))
    with open(filename, "rb") as f:
        while piece := f.read(PIECE):
            conn.write(piece)


def upload_chunked(conn: HTTPConnection, path: str, filename: str) -> None:
    """Bodies of unknown size: each write() is one chunk, write(b'') ends the body."""
    conn.send_request("PUT", path, body=BodyFollowing())
    with open(filename, "rb") as f:
        while piece := f.read(PIECE):
            conn.write(piece)
    conn.write(b"")


def main(url: str, filename: str) -> None:
    parts = urlsplit(url)
    with HTTPConnection(parts.hostname, parts.port) as conn:
        for upload in (upload_whole, upload_known_length, upload_chunked):
            upload(conn, parts.path, filename)
            resp = conn.read_response()
            answer = conn.readall()
            digest = hashlib.sha256(answer).hexdigest()
            print(
                f"{upload.__name__}: {resp.status} {resp.reason}, {len(answer)} bytes, "
                f"sha256 {digest}"
            )


if __name__ == "__main__":
    main(*sys.argv[1:3])
