"""The plain transport's send helpers: what a caller's own first send leaves them."""

from __future__ import annotations

import socket
import threading

import pytest

import dugong
from dugong._transport import PlainTransport


def _pair():
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    a.setblocking(False)
    return a, b


def _reader(sock, expected, out):
    got = bytearray()
    while len(got) < expected:
        data = sock.recv(1000)  # slowly, so that the sender meets a full buffer
        if not data:
            break
        got += data
    out.append(bytes(got))


PARTS = [b"size\r\n", b"", bytes(range(256)) * 2000, memoryview(b"\r\n"), b"tail"]


@pytest.mark.parametrize("first", ["none", "made", "blocked"])
def test_send_parts_continues_after_the_callers_first_send(first):
    a, b = _pair()
    with a, b:
        tr = PlainTransport(a)
        expected = b"".join(bytes(p) for p in PARTS)
        n = None
        filler = 0
        if first == "made":
            n = tr.sendv(PARTS)
            assert 0 < n < len(expected)  # a short send: the buffer is small
        elif first == "blocked":
            while (k := tr.send(b"x" * 4096)) > 0:  # fill the buffer first
                filler += k
            n = tr.sendv(PARTS)
            assert n == -1
        out: list[bytes] = []
        reader = threading.Thread(target=_reader, args=(b, filler + len(expected), out))
        reader.start()
        dugong.eval_coroutine(tr.co_send_all(PARTS, n), 10)
        a.shutdown(socket.SHUT_WR)
        reader.join(10)
        assert out[0] == b"x" * filler + expected


@pytest.mark.parametrize("first", ["none", "made"])
def test_send_all_continues_after_the_callers_first_send(first):
    a, b = _pair()
    with a, b:
        tr = PlainTransport(a)
        data = memoryview(bytes(range(256)) * 1000)
        n = tr.send(data) if first == "made" else None
        out: list[bytes] = []
        reader = threading.Thread(target=_reader, args=(b, len(data), out))
        reader.start()
        dugong.eval_coroutine(tr.co_send_all(data, n), 10)
        reader.join(10)
        assert out[0] == data


def test_send_parts_whole_at_once_returns_without_waiting():
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        tr = PlainTransport(a)
        parts = (b"a", memoryview(b"bc"), bytearray(b"d"))
        gen = tr.co_send_all(parts)
        with pytest.raises(StopIteration):
            next(gen)  # all sent by the first call: nothing to wait for
        assert b.recv(10) == b"abcd"
