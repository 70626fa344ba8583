"""Pipeline many uploads: one thread sends, the main thread reads the answers.

Usage: python pipeline_threads.py http://HOST:PORT/echo COUNT SIZE

The server must echo each request body (like the test server's /echo).
"""

import queue
import sys
import threading
from urllib.parse import urlsplit

from dugong import HTTPConnection


def body_number(i: int, size: int) -> bytes:
    """The body of request *i*: different for every request."""
    return (b"%08d" % i) * (size // 8) + b"-" * (size % 8)


def main(url: str, count: str, size: str) -> None:
    parts = urlsplit(url)
    n, length = int(count), int(size)
    conn = HTTPConnection(parts.hostname, parts.port)
    conn.timeout = 30
    conn.connect()  # connect before two threads share the connection
    sent: queue.Queue[int | BaseException] = queue.Queue()

    def send_all() -> None:
        try:
            for i in range(n):
                conn.send_request("PUT", parts.path, body=body_number(i, length))
                sent.put(i)  # tell the reader that an answer is on its way
        except BaseException as exc:
            sent.put(exc)

    sender = threading.Thread(target=send_all)
    sender.start()
    # Meanwhile this thread reads every answer as soon as it arrives. It
    # drains what the server sends, so the server never blocks on a full send
    # buffer and keeps reading the requests that are still coming.
    good = 0
    try:
        for _ in range(n):
            i = sent.get()
            if isinstance(i, BaseException):
                raise i
            resp = conn.read_response()
            if resp.status == 200 and conn.readall() == body_number(i, length):
                good += 1
    finally:
        sender.join()
        conn.disconnect()
    print(f"{good} of {n} answers echoed their request")


if __name__ == "__main__":
    main(*sys.argv[1:4])
