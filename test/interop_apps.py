"""Small applications that real HTTP servers run for ``test_interop.py``.

The same routes are served as an ASGI app (uvicorn, hypercorn), a WSGI app
(gunicorn, waitress) and an aiohttp application, so that every difference a
test sees comes from the server, not from the app:

``GET|HEAD /bytes/N``
    ``payload(N)`` with a ``Content-Length``.
``GET|HEAD /stream/N``
    ``payload(N)`` in pieces, without a length: the server chooses the framing
    (chunked for an HTTP/1.1 client, as far as we have seen).
``GET /status/CODE``
    An empty answer with that status (204, 304).
``GET /seq/I``
    A short body that names *I* and whose length depends on *I*: a response
    given to the wrong request, or cut, does not look right.
``POST|PUT /echo``
    Reads the whole body (so that the server sends ``100 Continue`` if it
    waits for the app to read) and answers ``"<length> <sha256 hex>"``.
``POST|PUT /reject/CODE``
    Answers CODE at once without reading the body. On aiohttp, an ``Expect``
    handler gives that answer instead of ``100 Continue``.
``GET /close``
    A body with a ``Content-Length`` and ``Connection: close``.
``GET /untilclose``
    ``payload(UNTIL_CLOSE_SIZE)`` with ``Connection: close`` and no length:
    the server chooses between chunking and closing.

``GET /token``
    The value of the environment variable ``INTEROP_TOKEN``: tells the test
    that it reached the server it started.
``GET /ws`` (ASGI and aiohttp only)
    A WebSocket: accepts the upgrade, sends the text message ``WS_HELLO``,
    then waits for the client to leave.

Run as a program, ``python interop_apps.py aiohttp HOST PORT KEEPALIVE``
serves the aiohttp application (whose own command line cannot set a
keep-alive timeout).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

#: Size of the body of ``/untilclose``.
UNTIL_CLOSE_SIZE = 5000
#: Size of the pieces ``/stream/N`` is sent in.
PIECE_SIZE = 16 * 1024
#: The text message a WebSocket at ``/ws`` sends first.
WS_HELLO = "hello"

_SEED = 0x1D06


@functools.lru_cache(maxsize=32)
def payload(n: int) -> bytes:
    """The deterministic, pseudo-random *n*-byte body of ``/bytes/N``."""
    return random.Random(_SEED + n).randbytes(n)


def seq_body(i: int) -> bytes:
    """The body of ``/seq/I``."""
    return (b"response %d;" % i) * (i % 5 + 1)


def digest_answer(data: bytes) -> bytes:
    """What ``/echo`` answers for a request body *data*."""
    return b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode("ascii"))


class Answer:
    """What a route answers: status, header fields, body pieces, and whether it reads."""

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        pieces: Iterable[bytes] = (),
        *,
        reads_body: bool = False,
        has_length: bool = True,
    ) -> None:
        self.status = status
        self.headers = list(headers or [])
        self.pieces = list(pieces)
        self.reads_body = reads_body
        #: the announced Content-Length, or None
        self.length = sum(map(len, self.pieces)) if has_length else None
        if self.length is not None:
            self.headers.append(("Content-Length", str(self.length)))


def route(method: str, path: str) -> Answer:
    """The answer to *method* *path*; ``reads_body`` answers are completed by `finish`."""
    parts = path.strip("/").split("/")
    head = method == "HEAD"
    try:
        name = parts[0]
        arg = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return Answer(400, pieces=[b"bad number\n"])
    if name == "bytes" and method in ("GET", "HEAD"):
        ans = Answer(200, [("Content-Type", "application/octet-stream")], [payload(arg)])
        if head:
            ans.pieces = []  # the length stays announced
        return ans
    if name == "stream" and method in ("GET", "HEAD"):
        data = payload(arg)
        pieces = (
            [] if head else [data[i : i + PIECE_SIZE] for i in range(0, len(data), PIECE_SIZE)]
        )
        return Answer(
            200, [("Content-Type", "application/octet-stream")], pieces, has_length=False
        )
    if name == "status" and arg in (204, 304):
        return Answer(arg, [("ETag", '"interop"')], has_length=False)
    if name == "token":
        return Answer(
            200,
            [("Content-Type", "text/plain")],
            [os.environ.get("INTEROP_TOKEN", "").encode("ascii")],
        )
    if name == "seq":
        return Answer(200, [("Content-Type", "text/plain")], [seq_body(arg)])
    if name == "echo" and method in ("POST", "PUT"):
        return Answer(200, [("Content-Type", "text/plain")], reads_body=True)
    if name == "reject" and method in ("POST", "PUT"):
        return Answer(arg, [("Content-Type", "text/plain")], [b"rejected\n"])
    if name == "close" and method == "GET":
        return Answer(
            200, [("Content-Type", "text/plain"), ("Connection", "close")], [b"closing\n"]
        )
    if name == "untilclose" and method == "GET":
        data = payload(UNTIL_CLOSE_SIZE)
        return Answer(
            200,
            [("Content-Type", "application/octet-stream"), ("Connection", "close")],
            [data[:1000], data[1000:]],
            has_length=False,
        )
    return Answer(404, [("Content-Type", "text/plain")], [b"not found\n"])


def finish(ans: Answer, body: bytes) -> Answer:
    """Complete a ``reads_body`` answer once the request body has been read."""
    headers = [(k, v) for k, v in ans.headers if k != "Content-Length"]
    return Answer(ans.status, headers, [digest_answer(body)])


_REASONS = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Content Too Large",
}


# ---------------------------------------------------------------------------- ASGI


async def asgi_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """The routes as an ASGI 3 application (with lifespan support)."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":  # /ws: accept, say hello, wait for the end
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": WS_HELLO})
            while (await receive())["type"] != "websocket.disconnect":
                pass
        return
    if scope["type"] != "http":  # pragma: no cover
        return
    ans = route(scope["method"], scope["path"])
    if ans.reads_body:
        parts = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            parts.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        ans = finish(ans, b"".join(parts))
    await send(
        {
            "type": "http.response.start",
            "status": ans.status,
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in ans.headers
            ],
        }
    )
    for piece in ans.pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# ---------------------------------------------------------------------------- WSGI


def _read_wsgi_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    # A chunked request body: the server says where it ends.
    parts: list[bytes] = []
    while True:
        data = stream.read(64 * 1024)
        if not data:
            return b"".join(parts)
        parts.append(data)


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The routes as a WSGI application."""
    ans = route(environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"))
    if ans.reads_body:
        ans = finish(ans, _read_wsgi_body(environ))
    start_response(f"{ans.status} {_REASONS.get(ans.status, 'Other')}", ans.headers)
    if ans.length is None:
        # A generator, so that the server cannot count a list and add a length itself.
        return (piece for piece in ans.pieces)
    return ans.pieces


# ---------------------------------------------------------------------------- aiohttp


def aiohttp_app() -> Any:
    """The routes as an ``aiohttp.web.Application``."""
    from aiohttp import web

    async def expect_handler(request: web.Request) -> web.StreamResponse | None:
        ans = route(request.method, request.path)
        if ans.status >= 400 and not ans.reads_body:
            # Refuse instead of sending 100 Continue: this response is the answer.
            return web.Response(
                status=ans.status, body=b"".join(ans.pieces), content_type="text/plain"
            )
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    async def handler(request: web.Request) -> web.StreamResponse:
        ans = route(request.method, request.path)
        if ans.reads_body:
            ans = finish(ans, await request.read())
        headers = [(k, v) for k, v in ans.headers if k.lower() != "content-length"]
        resp = web.StreamResponse(status=ans.status, headers=headers)
        if ans.length is not None:
            resp.content_length = ans.length
        if ("Connection", "close") in headers:
            resp.force_close()
        await resp.prepare(request)
        for piece in ans.pieces:
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(WS_HELLO)
        async for _ in ws:
            pass
        return ws

    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/ws", websocket)
    app.router.add_route("*", "/{tail:.*}", handler, expect_handler=expect_handler)
    return app


def _main(argv: list[str]) -> None:
    """``aiohttp HOST PORT KEEPALIVE [CERT KEY]``: serve the aiohttp application (over TLS
    with the certificate chain and key files, if given)."""
    if len(argv) not in (4, 6) or argv[0] != "aiohttp":
        raise SystemExit("usage: interop_apps.py aiohttp HOST PORT KEEPALIVE [CERT KEY]")
    from aiohttp import web

    context = None
    if len(argv) == 6:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(argv[4], argv[5])
    web.run_app(
        aiohttp_app(),
        host=argv[1],
        port=int(argv[2]),
        access_log=None,
        keepalive_timeout=float(argv[3]),
        print=None,
        shutdown_timeout=1,
        ssl_context=context,
    )


if __name__ == "__main__":
    _main(sys.argv[1:])
