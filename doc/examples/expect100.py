"""Upload a file with Expect: 100-continue to one or more paths of a server.

Usage: python expect100.py FILE http://HOST:PORT/PATH [http://HOST:PORT/PATH ...]

All URLs must name the same server: they share one HTTPConnection. The body
is only sent where the server answers "100 Continue" first.
"""

import os
import sys
from urllib.parse import urlsplit

from dugong import BodyFollowing, HTTPConnection, HTTPResponse


def upload(conn: HTTPConnection, path: str, filename: str) -> tuple[HTTPResponse, bool]:
    """PUT *filename* to *path*; the final response and whether the body went out."""
    size = os.path.getsize(filename)
    conn.send_request("PUT", path, body=BodyFollowing(size), expect100=True)
    resp = conn.read_response()
    if resp.status != 100:
        # The server decided before seeing the body: the request is complete.
        return resp, False
    with open(filename, "rb") as f:
        while piece := f.read(64 * 1024):
            conn.write(piece)
    return conn.read_response(), True


def main(filename: str, *urls: str) -> None:
    first = urlsplit(urls[0])
    with HTTPConnection(first.hostname, first.port) as conn:
        for url in urls:
            parts = urlsplit(url)
            path = parts.path + ("?" + parts.query if parts.query else "")
            resp, sent = upload(conn, path, filename)
            answer = conn.readall()
            print(
                f"{path}: {resp.status} {resp.reason}, body "
                f"{'sent' if sent else 'not sent'}, {len(answer)} bytes back"
            )
            if (resp.headers["Connection"] or "").lower() == "close":
                # The server closes after this answer: the next request needs a
                # new connection, which reset() lets dugong open.
                conn.reset()


if __name__ == "__main__":
    main(*sys.argv[1:])
