#!/usr/bin/env python3
"""Check the links of a web page: fetch it, extract its links, fetch them pipelined.

    python contrib/extract_links.py http://localhost:8000/index.html

The page is fetched and parsed with `html.parser`; the targets of ``<a>``,
``<area>`` and ``<link>`` (``href``) and of ``<img>``, ``<script>``,
``<iframe>``, ``<source>`` (``src``) are resolved against the page URL (or its
``<base href>``). Links to the page's own scheme, host and port are then all
fetched over one connection: a sender generator writes every request without
waiting for the answers (pipelining) while a receiver generator reads the
responses in order, both driven by `dugong.eval_coroutines`. Links to other
hosts are listed but not fetched.

One line per link: the status (or the error), then the URL. Exit status 0 if
every fetched link answered below 400, 1 otherwise or if the page itself could
not be fetched, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import ssl
import sys
from collections.abc import Generator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import SplitResult, urldefrag, urljoin, urlsplit

try:
    import dugong
except ImportError:  # run from a source checkout without installing dugong
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import dugong

PROG = "extract_links"
MAX_PAGE = 16 * 1024 * 1024  # refuse to parse pages larger than this
ATTRIBUTES = {
    "a": "href",
    "area": "href",
    "link": "href",
    "img": "src",
    "script": "src",
    "iframe": "src",
    "source": "src",
}
CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


class LinkParser(HTMLParser):
    """Collects link targets, and the ``<base href>`` if there is one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
            return
        wanted = ATTRIBUTES.get(tag)
        if wanted is None:
            return
        for name, value in attrs:
            if name == wanted and value and value.strip():
                self.links.append(value.strip())


def extract_links(html: str, page_url: str) -> list[str]:
    """Absolute URLs (without fragments) of the links in *html*, each once, in order."""
    parser = LinkParser()
    parser.feed(html)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    seen: dict[str, None] = {}
    for link in parser.links:
        url = urldefrag(urljoin(base, link)).url
        if urlsplit(url).scheme in ("http", "https"):
            seen.setdefault(url, None)
    return list(seen)


def origin(url: SplitResult) -> tuple[str, str | None, int]:
    return url.scheme, url.hostname, url.port or (443 if url.scheme == "https" else 80)


def target(url: SplitResult) -> str:
    return (url.path or "/") + (f"?{url.query}" if url.query else "")


def fetch_page(conn: dugong.HTTPConnection, path: str) -> tuple[dugong.HTTPResponse, bytes]:
    conn.send_request("GET", path, headers={"Accept": "text/html"})
    resp = conn.read_response()
    if resp.length is not None and resp.length > MAX_PAGE:
        conn.disconnect()
        raise ValueError(f"the page is larger than {MAX_PAGE} bytes")
    return resp, conn.readall()


def pipelined_statuses(conn: dugong.HTTPConnection, paths: list[str]) -> list[Any]:
    """GET every path over *conn* with pipelining; a status line or an exception for each.

    If the server closes the connection part way (e.g. after a response with
    ``Connection: close``), the unanswered requests go out again on a new
    connection: nothing of them was read, and GET is safe to repeat.
    """
    results: list[Any] = []
    fresh = False  # the first round reuses the connection the page came through
    while len(results) < len(paths):
        todo = paths[len(results) :]
        answered: list[str] = []

        def sender(todo: list[str] = todo) -> Generator[dugong.PollNeeded, None, None]:
            for path in todo:
                try:
                    yield from conn.co_send_request("GET", path)
                except dugong.ConnectionClosed:
                    return  # the receiver reads what was answered, then stops

        def receiver(
            todo: list[str] = todo, answered: list[str] = answered
        ) -> Generator[dugong.PollNeeded, None, None]:
            for _ in todo:
                # The sender runs first and yields only inside a request, so "nothing
                # pending" means it stopped early.
                if not conn.response_pending():
                    return
                resp = yield from conn.co_read_response()
                yield from conn.co_discard()
                answered.append(f"{resp.status} {resp.reason}")

        if fresh:
            conn.reset()
            try:
                conn.connect()
            except (dugong.DugongError, OSError) as exc:
                results += [exc] * len(todo)
                break
        _, error = dugong.eval_coroutines(
            sender(), receiver(), timeout=conn.timeout, return_exceptions=True
        )
        results += answered
        if len(answered) == len(todo):
            break
        if error is not None and not isinstance(error, dugong.ConnectionClosed):
            results.append(error)  # this link's response was unusable; go on with the rest
        elif not answered and fresh:
            results += [
                error
                or dugong.ConnectionClosed("Server closed a new connection without answering")
            ] * len(todo)
            break
        fresh = True
    conn.disconnect()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("url", metavar="URL", help="http:// or https:// URL of an HTML page")
    parser.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up when nothing moves for this long (default: 30)",
    )
    args = parser.parse_args(argv)
    page = urlsplit(args.url)
    if page.scheme not in ("http", "https") or not page.hostname:
        parser.error(f"{args.url}: not an http:// or https:// URL")
    try:
        scheme, host, port = origin(page)
    except ValueError as exc:
        parser.error(f"{args.url}: {exc}")
    assert host is not None
    context = ssl.create_default_context(cafile=args.cafile) if scheme == "https" else None
    conn = dugong.HTTPConnection(host, port, ssl_context=context)
    conn.timeout = args.timeout

    try:
        resp, body = fetch_page(conn, target(page))
    except (dugong.DugongError, OSError, ValueError) as exc:
        print(f"{PROG}: {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if resp.status != 200:
        print(f"{PROG}: {args.url}: server answered {resp.status} {resp.reason}", file=sys.stderr)
        return 1
    match = CHARSET.search(resp.headers.get("Content-Type") or "")
    try:
        html = body.decode(match[1] if match else "utf-8", errors="replace")
    except LookupError:  # an unknown charset
        html = body.decode("utf-8", errors="replace")

    links = extract_links(html, args.url)
    local = [url for url in links if origin(urlsplit(url)) == (scheme, host, port)]
    others = [url for url in links if url not in set(local)]
    print(
        f"{len(links)} links on {args.url}: {len(local)} on this server, {len(others)} elsewhere"
    )
    statuses = pipelined_statuses(conn, [target(urlsplit(url)) for url in local])
    broken = 0
    for url, status in zip(local, statuses, strict=True):
        if isinstance(status, BaseException):
            status = f"{type(status).__name__}: {status}"
            broken += 1
        elif int(status.split()[0]) >= 400:
            broken += 1
        print(f"{status:<24} {url}")
    for url in others:
        print(f"{'(other host, skipped)':<24} {url}")
    print(
        f"{broken} of {len(local)} fetched links failed"
        if broken
        else f"all {len(local)} fetched links answered"
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
