"""The public surface: names, co_/blocking pairs, drivers, header containers, layering."""

from __future__ import annotations

import ast
import inspect
import os
import pathlib
import re
import select
import socket
import time

import pytest

import dugong
from dugong import CaseInsensitiveDict, ConnectionTimedOut, PollNeeded, eval_coroutine
from dugong._headers import ResponseHeaders

CONTRACT_NAMES = (
    "HTTPConnection",
    "HTTPResponse",
    "BodyFollowing",
    "CaseInsensitiveDict",
    "PollNeeded",
    "POLLIN",
    "POLLOUT",
    "eval_coroutine",
    "is_temp_network_error",
    "create_socket",
    "BUFFER_SIZE",
    "MAX_LINE_SIZE",
    "MAX_HEADER_SIZE",
    "DNS_TEST_HOSTNAMES",
    "__version__",
    "ConnectionClosed",
    "ConnectionTimedOut",
    "InvalidResponse",
    "UnsupportedResponse",
    "StateError",
    "ExcessBodyData",
    "HostnameNotResolvable",
    "DNSUnavailable",
)

PKG = pathlib.Path(dugong.__file__).parent


def test_contract_names_exported():
    for name in CONTRACT_NAMES:
        assert hasattr(dugong, name), name
    assert set(dugong.__all__) >= set(CONTRACT_NAMES) - {"__version__"}
    assert isinstance(dugong.__version__, str)
    assert dugong.POLLIN == select.POLLIN and dugong.POLLOUT == select.POLLOUT
    assert dugong.BUFFER_SIZE == 64 * 1024


def test_public_objects_live_in_dugong():
    for name in dugong.__all__:
        obj = getattr(dugong, name)
        if inspect.isclass(obj):
            assert obj.__module__ == "dugong", name


def test_exceptions_share_a_base():
    for name in ("ConnectionClosed", "ConnectionTimedOut", "InvalidResponse",
                 "UnsupportedResponse", "StateError", "ExcessBodyData",
                 "HostnameNotResolvable", "DNSUnavailable"):
        cls = getattr(dugong, name)
        assert issubclass(cls, dugong.DugongError)
        assert str(cls()) and "specific" in str(cls("specific"))


def _co_pairs():
    for name, member in inspect.getmembers(dugong.HTTPConnection):
        if name.startswith("co_") and callable(member):
            yield name[3:], name


@pytest.mark.parametrize(("plain", "co"), list(_co_pairs()))
def test_co_methods_pair_with_blocking_twins(plain, co):
    cls = dugong.HTTPConnection
    blocking = getattr(cls, plain)
    generator = getattr(cls, co)
    assert inspect.isgeneratorfunction(generator)
    assert inspect.signature(blocking).parameters == inspect.signature(generator).parameters
    assert f"`{plain}`" in generator.__doc__
    assert len(blocking.__doc__) > len(generator.__doc__)
    # One implementation: the blocking twin runs its co_ method with eval_coroutine, or
    # both run the same no-wait step, and the blocking twin waits between steps
    # (_block), runs the co_ generator for the rest, or calls the blocking twins of
    # the co_ methods that its co_ twin calls.
    src = _code(blocking)
    if f"eval_coroutine(self.{co}(" not in src:
        calls = set(re.findall(r"self\.(_\w+)\(", src))
        shared = calls & set(re.findall(r"self\.(_\w+)\(", _code(generator)))
        assert shared, f"{plain} and {co} share no step"
        assert calls - shared <= {"_block"}, f"{plain} does more than the shared steps"
        twins = re.findall(r"self\.co_(\w+)\(", _code(generator))
        assert "eval_coroutine(" in src or "_block(" in src or any(
            f"self.{name}(" in src for name in twins)
        assert src.count("\n") < 14, f"{plain} does more than the shared steps"


def _code(func):
    """The source of *func* without its docstring."""
    src = inspect.getsource(func)
    doc = func.__doc__ or ""
    start = src.find('"""')
    return src[:start] + src[src.find('"""', start + 3) + 3:] if doc and start >= 0 else src


def test_every_blocking_network_method_has_a_twin():
    names = {n for n, _ in _co_pairs()}
    assert names >= {"send_request", "write", "read_response", "read", "readinto",
                     "readall", "discard", "connect", "read_raw"}


def test_sans_io_modules_import_no_io():
    forbidden = {"socket", "select", "ssl", "selectors", "asyncio"}
    for name in ("_protocol.py", "_buffer.py", "_headers.py", "_exceptions.py"):
        tree = ast.parse((PKG / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                mods = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not mods & forbidden, (name, mods)
            assert not isinstance(node, ast.Yield)


def test_pollneeded_is_a_pair():
    pn = PollNeeded(5, dugong.POLLIN)
    fd, mask = pn
    assert (fd, mask) == (5, dugong.POLLIN) == (pn.fd, pn.mask)
    assert pn == (5, dugong.POLLIN)
    assert "POLLIN" in repr(pn)


def test_pollneeded_poll_waits():
    a, b = socket.socketpair()
    with a, b:
        pn = PollNeeded(a.fileno(), dugong.POLLIN)
        start = time.monotonic()
        assert pn.poll(0.05) is False
        assert time.monotonic() - start >= 0.04
        b.send(b"x")
        assert pn.poll(1) is True
        assert pn.poll() is True
        assert PollNeeded(a.fileno(), dugong.POLLOUT).poll(0) is True


def test_eval_coroutine_returns_and_times_out():
    a, b = socket.socketpair()
    with a, b:
        def gen():
            yield PollNeeded(a.fileno(), dugong.POLLIN)
            return a.recv(10)

        b.send(b"hi")
        assert eval_coroutine(gen()) == b"hi"

        closed = []

        def stuck():
            try:
                yield PollNeeded(a.fileno(), dugong.POLLIN)
            finally:
                closed.append(True)

        start = time.monotonic()
        with pytest.raises(ConnectionTimedOut):
            eval_coroutine(stuck(), timeout=0.1)
        assert 0.09 <= time.monotonic() - start < 2
        assert closed == [True]
        with pytest.raises(ConnectionTimedOut):
            eval_coroutine(stuck(), timeout=0)


def test_eval_coroutine_rejects_other_yields():
    def bad():
        yield "nonsense"

    with pytest.raises(TypeError, match="PollNeeded"):
        eval_coroutine(bad())


def test_eval_coroutine_without_poll(monkeypatch):
    monkeypatch.setattr(dugong._poll, "_HAVE_POLL", False)
    r, w = os.pipe()
    try:
        def gen():
            yield PollNeeded(r, dugong.POLLIN)
            yield PollNeeded(w, dugong.POLLOUT)
            return os.read(r, 5)

        os.write(w, b"abc")
        assert eval_coroutine(gen()) == b"abc"
        with pytest.raises(ConnectionTimedOut):
            eval_coroutine(gen(), timeout=0.01)
        assert PollNeeded(r, dugong.POLLIN).poll(0) is False
    finally:
        os.close(r)
        os.close(w)


def test_case_insensitive_dict():
    d = CaseInsensitiveDict({"Content-Type": "a"}, Extra="1")
    d["content-type"] = "b"
    assert list(d) == ["content-type", "Extra"]
    assert d["CONTENT-TYPE"] == "b"
    assert "EXTRA" in d and 3 not in d
    assert d == {"Content-type": "b", "extra": "1"}
    assert d != {"content-type": "b"}
    assert (d == 5) is False
    assert dict(d.lower_items()) == {"content-type": "b", "extra": "1"}
    c = d.copy()
    del c["EXTRA"]
    assert len(c) == 1 and len(d) == 2
    assert "CaseInsensitiveDict" in repr(d)


def test_response_headers_read_like_a_message():
    h = ResponseHeaders([("Set-Cookie", "a"), ("Content-Type", "x"), ("set-cookie", "b")])
    assert h["SET-COOKIE"] == "a"
    assert h["missing"] is None
    assert h.get("missing", 5) == 5
    assert h.get_all("Set-Cookie") == ["a", "b"]
    assert h.get_all("nope") is None
    assert h.keys() == ["Set-Cookie", "Content-Type", "set-cookie"]
    assert h.values() == ["a", "x", "b"]
    assert h.items()[1] == ("Content-Type", "x")
    assert list(h) == h.keys()
    assert len(h) == 3
    assert "content-type" in h and "x" not in h
    assert "Content-Type: x\n" in str(h)
    assert h == ResponseHeaders(h.items())
