"""Download a body that the server may compress, decompressing it with zlib.

Usage: python gzip_download.py URL OUTFILE

Asks for gzip with Accept-Encoding (dugong keeps the caller's value) and, if
the response says Content-Encoding: gzip, decompresses while streaming.
"""

import sys
import zlib
from urllib.parse import urlsplit

from dugong import HTTPConnection


def download(conn: HTTPConnection, path: str, out) -> tuple[int, int]:
    """Write the decoded body of *path* to *out*; (bytes received, bytes written)."""
    conn.send_request("GET", path, headers={"Accept-Encoding": "gzip"})
    resp = conn.read_response()
    if resp.status != 200:
        raise SystemExit(f"{resp.status} {resp.reason}")
    encoding = (resp.headers["Content-Encoding"] or "identity").lower()
    if encoding == "gzip":
        decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
    elif encoding != "identity":
        raise SystemExit(f"cannot decode Content-Encoding {encoding!r}")
    received = written = 0
    while data := conn.read(64 * 1024):
        received += len(data)
        if encoding == "gzip":
            data = decoder.decompress(data)
        written += out.write(data)
    if encoding == "gzip":
        written += out.write(decoder.flush())
        if not decoder.eof:
            raise SystemExit("compressed body ended early")
    return received, written


def main(url: str, filename: str) -> None:
    parts = urlsplit(url)
    with HTTPConnection(parts.hostname, parts.port) as conn, open(filename, "wb") as out:
        received, written = download(conn, parts.path, out)
    print(f"received {received} bytes, wrote {written} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
