"""The demo behind ``python -m dugong``: a local server and a tour of the API."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from ._connection import BodyFollowing, HTTPConnection
from ._loop import eval_coroutines
from ._poll import PollNeeded

__all__ = ["DemoServer", "drive_all", "main"]


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET /data/N sends N bytes; PUT /upload answers with the size and MD5 of the body;
    PUT /reject refuses ``Expect: 100-continue`` uploads with 403."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/data/"):
            size = int(self.path[6:])
            self._reply(200, (b"dugong " * (size // 7 + 1))[:size])
        else:
            self._reply(404, b"not found\n")

    def handle_expect_100(self) -> bool:
        if self.path == "/reject":
            self._reply(403, b"uploads to /reject are refused\n")
            return False
        return super().handle_expect_100()

    def do_PUT(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
        self._reply(200, f"{len(body)} bytes, md5 {digest}\n".encode())

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if not size:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()


class DemoServer(http.server.ThreadingHTTPServer):
    """The demo's HTTP server on 127.0.0.1, serving from a thread."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> DemoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


#: The demo's select loop is the public `dugong.eval_coroutines`.
drive_all = eval_coroutines


@contextmanager
def _step(title: str, out: Callable[[str], None]) -> Iterator[None]:
    out(f"\n== {title}")
    start = time.perf_counter()
    yield
    out(f"   ({(time.perf_counter() - start) * 1000:.1f} ms)")


def main(out: Callable[[str], None] = print) -> int:
    """Start a local server and show dugong's main features against it."""
    with DemoServer() as server:
        out(f"Demo server listening on 127.0.0.1 port {server.port}")
        conn = HTTPConnection("127.0.0.1", server.port)
        conn.timeout = 10

        with _step("100 sequential GET requests on one connection", out):
            total = 0
            for _ in range(100):
                conn.send_request("GET", "/data/1024")
                resp = conn.read_response()
                total += len(conn.readall())
            out(f"   last status {resp.status} {resp.reason}, {total} body bytes in all")

        count = 1000
        with _step(
            f"Pipeline of {count} GET requests: a sender and a receiver generator "
            "in one select loop",
            out,
        ):

            def sender() -> Generator[PollNeeded, None, int]:
                for i in range(count):
                    yield from conn.co_send_request("GET", f"/data/{i % 50}")
                return count

            def receiver() -> Generator[PollNeeded, None, int]:
                ok = 0
                for i in range(count):
                    resp = yield from conn.co_read_response()
                    body = yield from conn.co_readall()
                    ok += resp.status == 200 and len(body) == i % 50
                return ok

            sent, ok = eval_coroutines(sender(), receiver())
            out(f"   sent {sent} requests, {ok} responses arrived complete and in order")

        with _step("Chunked upload of 1 MiB in 16 pieces (BodyFollowing())", out):
            piece = b"0123456789abcdef" * 4096
            conn.send_request("PUT", "/upload", body=BodyFollowing())
            for _ in range(16):
                conn.write(piece)
            conn.write(b"")
            resp = conn.read_response()
            out(f"   {resp.status} {resp.reason}: {conn.readall().decode().strip()}")

        with _step("Upload with Expect: 100-continue, accepted", out):
            data = b"x" * 300_000
            conn.send_request("PUT", "/upload", body=BodyFollowing(len(data)), expect100=True)
            resp = conn.read_response()
            out(f"   interim answer: {resp.status} {resp.reason} -> sending the body")
            conn.write(data)
            resp = conn.read_response()
            out(f"   {resp.status} {resp.reason}: {conn.readall().decode().strip()}")

        with _step("Upload with Expect: 100-continue, rejected", out):
            conn.send_request("PUT", "/reject", body=BodyFollowing(len(data)), expect100=True)
            resp = conn.read_response()
            out(
                f"   final answer instead of 100: {resp.status} {resp.reason}: "
                f"{conn.readall().decode().strip()} (no body byte was sent)"
            )
            conn.send_request("GET", "/data/5")
            resp = conn.read_response()
            out(f"   the next request still works: {resp.status} {conn.readall()!r}")
        conn.disconnect()
    out("\nDemo complete.")
    return 0
