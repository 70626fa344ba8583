"""The public surface: names, co_/blocking pairs, drivers, header containers, layering."""

from __future__ import annotations

import ast
import inspect
import os
import pathlib
import select
import socket
import subprocess
import sys
import time

import pytest

import dugong
from checks import CONTRACT_NAMES
from dugong import CaseInsensitiveDict, ConnectionTimedOut, PollNeeded, eval_coroutine
from dugong._headers import ResponseHeaders

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
    exceptions = [
        cls
        for cls in (getattr(dugong, name) for name in sorted(CONTRACT_NAMES))
        if isinstance(cls, type) and issubclass(cls, BaseException)
    ]
    assert len(exceptions) == 8
    for cls in exceptions:
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


def _exchange(conn, call):
    """Every network method once, through *call(conn, name, *args)*."""
    buf = bytearray(3)
    call(conn, "send_request", "GET", "/a")
    call(conn, "read_response")
    out = [call(conn, "read", 2), call(conn, "readinto", buf), bytes(buf), call(conn, "readall")]
    call(conn, "send_request", "PUT", "/b", body=dugong.BodyFollowing(3))
    call(conn, "write", b"xyz")
    call(conn, "read_response")
    call(conn, "discard")
    call(conn, "send_request", "GET", "/c")
    out.append(call(conn, "read_raw", 100))
    return out


def test_twins_run_the_same_steps(monkeypatch, scripted_server):
    """Each co_ method and its blocking twin are one implementation: the same steps, in
    the same order, whether the caller waits (poll, or the receive itself) or yields."""
    from servers import Step, select_loop

    cls = dugong.HTTPConnection
    steps: list[str] = []

    def recording(name):
        step = getattr(cls, name)

        def record(self, arg, blocking):
            if not steps or steps[-1] != name:  # a step run again after a wait counts once
                steps.append(name)
            return step(self, arg, blocking)

        return record

    for name in ("_response_step", "_read_step", "_readinto_step", "_send_step", "_raw_step"):
        monkeypatch.setattr(cls, name, recording(name))
    # Whether a co_ read waits before its first receive depends on the time since its
    # request went out (the PUT's body is written in between): fixed here, however slow.
    monkeypatch.setattr(dugong._connection, "_ANSWER_TIME", 60.0)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + bytes(70000)
    script = [
        Step.read_request(),
        Step.send(answer[:50], delay=0.01),
        Step.send(answer[50:]),
        Step.read_request(),
        Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        Step.read_request(),
        Step.send(b"raw bytes"),
    ]
    srv = scripted_server([script, script], repeat=False)
    ways = {
        "blocking": lambda conn, name, *a, **kw: getattr(conn, name)(*a, **kw),
        "co_": lambda conn, name, *a, **kw: select_loop(
            getattr(conn, "co_" + name)(*a, **kw), timeout=10
        ),
    }
    seen = {}
    for way, call in ways.items():
        steps.clear()
        with cls("127.0.0.1", srv.port) as conn:
            assert _exchange(conn, call)[:3] == [bytes(2), 3, bytes(3)]
        seen[way] = list(steps)
    assert seen["blocking"][:4] == ["_response_step", "_read_step", "_readinto_step", "_read_step"]
    assert "_raw_step" in seen["blocking"]
    # Both twins receive the answer to a lone request on a kept-alive connection
    # themselves (the co_ one once woken); the first answer on a new connection (whose
    # connect is checked there) goes through _response_step in both.
    assert seen["co_"].count("_response_step") == 1
    assert seen["blocking"] == seen["co_"]


def _code(func):
    """The source of *func* without its docstring."""
    src = inspect.getsource(func)
    doc = func.__doc__ or ""
    start = src.find('"""')
    return src[:start] + src[src.find('"""', start + 3) + 3 :] if doc and start >= 0 else src


def test_every_blocking_network_method_has_a_twin():
    names = {n for n, _ in _co_pairs()}
    assert names >= {
        "send_request",
        "write",
        "read_response",
        "read",
        "readinto",
        "readall",
        "discard",
        "connect",
        "read_raw",
    }


#: the modules that know nothing of sockets, clocks, threads or generators
SANS_IO = (
    "engine.py",
    "_protocol.py",
    "_buffer.py",
    "_headers.py",
    "_exceptions.py",
    "_tunables.py",
)


def test_sans_io_modules_import_no_io():
    forbidden = {
        "socket",
        "select",
        "ssl",
        "selectors",
        "asyncio",
        "time",
        "threading",
        "anyio",
        "trio",
    }
    for name in SANS_IO:
        tree = ast.parse((PKG / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                mods = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not mods & forbidden, (name, mods)


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_modules_never_yield(name):
    tree = ast.parse((PKG / name).read_text())
    yields = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await))
    ]
    assert yields == []


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


def test_import_loads_neither_asyncio_nor_the_pool():
    """``import dugong`` stays light: AioFuture (asyncio) and the pool load on first use,
    and are then the same objects as ``from dugong import ...`` gives."""
    code = (
        "import sys, dugong\n"
        "assert 'asyncio' not in sys.modules and 'dugong._pool' not in sys.modules\n"
        "from dugong import AioFuture, ConnectionPool, PoolResponse\n"
        "assert dugong.ConnectionPool is ConnectionPool and 'dugong._pool' in sys.modules\n"
        "assert dugong.AioFuture is AioFuture and PoolResponse.__module__ == 'dugong'\n"
        "try:\n"
        "    dugong.NoSuchName\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PKG.parent))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
