"""Fetch a URL through an HTTP proxy.

Usage: python proxy.py http://HOST:PORT/PATH PROXY_HOST:PROXY_PORT [CA_FILE]

For http:// URLs the proxy gets the request with the absolute URL; for
https:// URLs dugong asks it for a CONNECT tunnel and talks TLS through it.
"""

import ssl
import sys
from urllib.parse import urlsplit

from dugong import HTTPConnection


def main(url: str, proxy: str, cafile: str | None = None) -> None:
    parts = urlsplit(url)
    proxy_host, _, proxy_port = proxy.rpartition(":")
    context = ssl.create_default_context(cafile=cafile) if parts.scheme == "https" else None

    conn = HTTPConnection(
        parts.hostname, parts.port, ssl_context=context, proxy=(proxy_host, int(proxy_port))
    )
    with conn:
        conn.send_request("GET", parts.path or "/")
        resp = conn.read_response()
        body = conn.readall()
    print("status:", resp.status, resp.reason)
    print("body bytes:", len(body))


if __name__ == "__main__":
    main(*sys.argv[1:4])
