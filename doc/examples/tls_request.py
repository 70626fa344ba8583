"""Fetch a URL over TLS and print what the handshake agreed on.

Usage: python tls_request.py https://HOST:PORT/PATH [CA_FILE]

Without CA_FILE the system's trusted certificates are used.
"""

import ssl
import sys
from urllib.parse import urlsplit

from dugong import HTTPConnection


def main(url: str, cafile: str | None = None) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https":
        sys.exit("an https:// URL is needed")

    # Certificate and host name checks stay on: create_default_context()
    # enables both, and dugong uses the context as it is.
    context = ssl.create_default_context(cafile=cafile)

    with HTTPConnection(parts.hostname, parts.port, ssl_context=context) as conn:
        conn.send_request("GET", parts.path or "/")
        resp = conn.read_response()
        body = conn.readall()

        name, version, bits = conn.get_ssl_cipher()
        print("protocol:", version)
        print("cipher:", name, bits, "bits")
        cert = conn.get_ssl_peercert()
        names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
        print("certificate names:", ", ".join(names))
        print("status:", resp.status, resp.reason)
        print("body bytes:", len(body))


if __name__ == "__main__":
    main(*sys.argv[1:3])
