"""Send one GET request and print the status, a few header fields and the text body.

Usage: python first_request.py http://HOST:PORT/PATH
"""

import sys
from urllib.parse import urlsplit

from dugong import HTTPConnection


def charset_of(content_type: str | None, default: str = "utf-8") -> str:
    """The ``charset`` parameter of a Content-Type value, or *default*."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset" and value:
            return value.strip().strip('"')
    return default


def main(url: str) -> None:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query

    with HTTPConnection(parts.hostname, parts.port) as conn:
        conn.send_request("GET", path, headers={"Accept": "text/plain"})
        resp = conn.read_response()
        print("status:", resp.status, resp.reason)
        print("content-type:", resp.headers["Content-Type"])
        print("length:", resp.length)
        for name, value in resp.headers.items():
            if name.lower().startswith("x-"):
                print(f"extra field {name}: {value}")
        body = conn.readall()
        text = body.decode(charset_of(resp.headers["Content-Type"]))
        print("body:", text.rstrip("\n"))


if __name__ == "__main__":
    main(sys.argv[1])
