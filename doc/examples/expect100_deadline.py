"""Upload with Expect: 100-continue to a server that may never answer it.

Usage: python expect100_deadline.py SECONDS URL

Waits at most SECONDS for the server's answer to the Expect header, then
sends the body anyway.
"""

import sys
import time
from urllib.parse import urlsplit

from dugong import BodyFollowing, HTTPConnection

BODY = b"some data " * 1000


def main(seconds: float, url: str) -> None:
    parts = urlsplit(url)
    with HTTPConnection(parts.hostname, parts.port) as conn:
        conn.timeout = 30
        conn.expect100_timeout = seconds
        conn.send_request("PUT", parts.path, body=BodyFollowing(len(BODY)), expect100=True)
        start = time.monotonic()
        resp = conn.read_response()
        waited = time.monotonic() - start
        if resp.status == 100:
            # The server's 100 Continue, or none in time: either way the body goes out.
            late = "at the deadline" if waited >= seconds else "before the deadline"
            print(f"100 Continue {late}: sending the body")
            conn.write(BODY)
            resp = conn.read_response()
        print(f"{resp.status} {resp.reason}: {conn.readall().decode().strip()}")


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2])
