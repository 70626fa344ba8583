"""Show the pipelining deadlock: many uploads sent without reading the answers.

Usage: python pipeline_deadlock.py http://HOST:PORT/echo COUNT SIZE

Sends COUNT requests with SIZE-byte bodies to a server that echoes each body
back, and reads nothing until all are sent. Once the socket buffers are
full, the server blocks sending an answer nobody reads, stops reading, and
the client blocks sending. The timeout turns the hang into an exception.
"""

import sys
from urllib.parse import urlsplit

from dugong import ConnectionTimedOut, HTTPConnection


def main(url: str, count: str, size: str) -> None:
    parts = urlsplit(url)
    body = b"x" * int(size)
    with HTTPConnection(parts.hostname, parts.port) as conn:
        conn.timeout = 1
        sent = 0
        try:
            for _ in range(int(count)):
                conn.send_request("PUT", parts.path, body=body)  # don't do this
                sent += 1
        except ConnectionTimedOut:
            print(f"stalled after sending {sent} of {count} requests")
            return
        print(f"sent all {sent} requests without stalling")
        for _ in range(sent):
            conn.read_response()
            conn.discard()


if __name__ == "__main__":
    main(*sys.argv[1:4])
