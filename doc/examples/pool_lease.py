"""Stream a file up with Expect: 100-continue on a connection lent by a pool.

Usage: python pool_lease.py URL FILE

The server's answer is read piece by piece into one buffer.
"""

import hashlib
import os
import sys
from urllib.parse import urlsplit

from dugong import BodyFollowing, ConnectionPool


def main(url: str, filename: str) -> None:
    size = os.path.getsize(filename)
    target = urlsplit(url).path or "/"
    with ConnectionPool() as pool:
        # The lent connection goes back to the pool when the block ends, if
        # every response was read; after an exception it is closed.
        with pool.connection(url) as conn:
            conn.send_request("PUT", target, body=BodyFollowing(size), expect100=True)
            resp = conn.read_response()
            if resp.status == 100:
                with open(filename, "rb") as f:
                    while chunk := f.read(64 * 1024):
                        conn.write(chunk)
                resp = conn.read_response()
            digest = hashlib.sha256()
            buf = bytearray(64 * 1024)
            while n := conn.readinto(buf):
                digest.update(memoryview(buf)[:n])
        print(f"{resp.status} {resp.reason}: answer sha256 {digest.hexdigest()}")
        # The next request to that server reuses the connection.
        again = pool.request("GET", url)
        print(f"then GET: {again.status} {again.reason}")


if __name__ == "__main__":
    main(*sys.argv[1:])
