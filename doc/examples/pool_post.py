"""POST through a pool, and tell what is known when the connection fails.

Usage: python pool_post.py URL DATA
"""

import sys

from dugong import ConnectionClosed, ConnectionPool


def main(url: str, data: str) -> None:
    # retries=2 resends a GET, HEAD, PUT or DELETE whose connection closed
    # before its answer started; a POST is never sent twice.
    with ConnectionPool(retries=2) as pool:
        try:
            resp = pool.request("POST", url, {"Content-Type": "text/plain"}, data.encode())
        except ConnectionClosed as exc:
            if not exc.request_sent:
                print("not sent: safe to send again")
            elif exc.response_started:
                print("the answer was cut short: the server had the request")
            else:
                print("sent, but no answer: the server may or may not have acted on it")
            sys.exit(1)
        print(f"{resp.status} {resp.reason}: {resp.body.decode(errors='replace')}")


if __name__ == "__main__":
    main(*sys.argv[1:])
