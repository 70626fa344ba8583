"""A small HTTP proxy on 127.0.0.1 for the tests (`Proxy`).

It checks each request head it gets (absolute form for plain requests, a
well-formed ``CONNECT`` with a matching ``Host`` for tunnels), records
everything the client sends, and relays the bytes to the origin server (a test
server) and back.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from typing import Any

from servers import STEP_TIMEOUT, Request, parse_request_head

# CONNECT authority, its Host field, then any other fields
_CONNECT_HEAD = re.compile(rb"CONNECT (\S+) HTTP/1\.1\r\nHost: (\S+)\r\n((?:[^\r\n]+\r\n)*)\r\n")


class Proxy:
    """An HTTP proxy for tests.

    Args:
        routes: where to connect for an authority (``"host:port"``) the client
            names; any other authority is an error.
        connect_answer: if given, every CONNECT gets these bytes as its answer
            and the connection is closed (a refusing or broken proxy).
        dribble: send the "200 Connection established" one byte at a time.

    ``heads`` lists, per client connection, the first request head received;
    ``received`` everything the client sent on each connection. Problems go to
    ``errors`` and are raised by ``check()``.
    """

    def __init__(
        self,
        routes: dict[str, tuple[str, int]],
        *,
        connect_answer: bytes | None = None,
        dribble: bool = False,
    ) -> None:
        self.routes = routes
        self.connect_answer = connect_answer
        self.dribble = dribble
        self.heads: list[bytes] = []
        self.received: list[bytearray] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = ("127.0.0.1", self._listener.getsockname()[1])
        self._spawn(self._accept_loop)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            with self._lock:
                self._sockets.append(client)
                record = bytearray()
                self.received.append(record)
            self._spawn(self._serve, client, record)

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _serve(self, client: socket.socket, record: bytearray) -> None:
        try:
            self._serve_checked(client, record)
        except OSError as exc:
            if not self._stopping:
                self._error(f"proxy: {exc!r}")

    def _serve_checked(self, client: socket.socket, record: bytearray) -> None:
        client.settimeout(STEP_TIMEOUT)
        data = bytearray()
        while b"\r\n\r\n" not in data:
            piece = client.recv(65536)
            if not piece:
                return
            data += piece
            record += piece
        end = data.index(b"\r\n\r\n") + 4
        head, rest = bytes(data[:end]), bytes(data[end:])
        with self._lock:
            self.heads.append(head)
        if head.startswith(b"CONNECT "):
            match = _CONNECT_HEAD.fullmatch(head)
            if match is None or match[1] != match[2]:
                self._error(f"proxy: malformed CONNECT head {head!r}")
                return
            if rest:
                self._error(f"proxy: bytes before the tunnel was answered: {rest!r}")
            if self.connect_answer is not None:
                client.sendall(self.connect_answer)
                client.shutdown(socket.SHUT_WR)
                return
            upstream = self._open(match[1].decode())
            if upstream is None:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            answer = b"HTTP/1.1 200 Connection established\r\n\r\n"
            for piece in (
                [answer[i : i + 1] for i in range(len(answer))] if self.dribble else [answer]
            ):
                client.sendall(piece)
        else:
            request = parse_request_head(head)
            authority = re.fullmatch(r"http://([^/]+)/.*", request.target)
            if authority is None:
                self._error(f"proxy: target not in absolute form: {request.target!r}")
                return
            upstream = self._open(_with_port(authority[1]))
            if upstream is None:
                return
            upstream.sendall(head + rest)
        self._spawn(self._pump, upstream, client, None)
        self._pump(client, upstream, record)

    def _open(self, authority: str) -> socket.socket | None:
        if authority not in self.routes:
            self._error(f"proxy: unexpected authority {authority!r}")
            return None
        upstream = socket.create_connection(self.routes[authority], timeout=STEP_TIMEOUT)
        with self._lock:
            self._sockets.append(upstream)
        return upstream

    def _pump(self, src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    record += data
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # one side went away: the test sees that from the client side

    def requests(self, index: int = 0) -> list[Request]:
        """The plain requests the client sent on connection *index*, parsed."""
        data = bytes(self.received[index])
        out = []
        while data:
            end = data.index(b"\r\n\r\n") + 4
            request = parse_request_head(data[:end])
            size = int(request.header("Content-Length", "0"))  # type: ignore[arg-type]
            request.body = data[end : end + size]
            data = data[end + size :]
            out.append(request)
        return out

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            threads = list(self._threads)
        threads[0].join(5)  # the accept loop
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
            if thread.is_alive():
                self._error("proxy thread did not stop")

    def check(self) -> None:
        if self.errors:
            raise AssertionError("\n".join(self.errors))


def _with_port(authority: str) -> str:
    """*authority* with the default port 80 added if it names none."""
    return authority if re.search(r":[0-9]+$", authority) else f"{authority}:80"
