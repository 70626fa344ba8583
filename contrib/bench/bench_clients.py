"""Benchmark worker: one HTTP client in a process of its own.

Started by contrib/bench.py as ``python bench_clients.py CLIENT``. It speaks a
line protocol of JSON objects: on start it answers ``{"ready": ...}`` or
``{"unavailable": reason}``; then, for each request line read from standard
input, it writes one answer line:

* ``{"op": "prepare", "row": ID, "workload": W, "variant": V, "params": {...}}``
  builds the runner, runs it once with validation (every body compared or
  digested, every status checked), then ``params["warmup"]`` more times;
  answers ``{"ok": true}``, ``{"unsupported": reason}`` or ``{"error": text}``;
* ``{"op": "run", "row": ID}`` runs it once, timed (W3 and W4 on a new
  connection, opened before the clock starts); answers wall time, the CPU
  time of this process (``getrusage(RUSAGE_SELF)``, all threads), the number of
  requests and bytes, and for W7 the traced memory;
* ``{"op": "close", "row": ID}`` closes its connections.

Protocol answers go to a private copy of the original standard output;
anything a library prints lands on standard error.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import resource
import selectors
import socket
import sys
import time
import traceback
import tracemalloc
from collections import deque
from typing import ClassVar

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_servers import (  # noqa: E402
    PATTERN_SIZE,
    PIECE_SIZE,
    ReceiveBuffer,
    page_aligned,
    pattern,
)

READ_SIZE = 64 * 1024
N_DISTINCT_PIECES = PATTERN_SIZE // PIECE_SIZE  # 16


class WrongAnswer(Exception):
    """A client returned something other than what the server sent."""


class NotSupported(Exception):
    """This client cannot do this workload or variant."""


def pieces() -> list[bytes]:
    """The upload pieces: 16 distinct 64 KiB slices of the pattern, cycled."""
    pat = pattern()
    return [pat[i * PIECE_SIZE : (i + 1) * PIECE_SIZE] for i in range(N_DISTINCT_PIECES)]


def piece_iter(size: int):
    ps = pieces()
    for i in range(size // PIECE_SIZE):
        yield ps[i % N_DISTINCT_PIECES]


def check_status(status: int, expected: int = 200) -> None:
    if status != expected:
        raise WrongAnswer(f"status {status}, expected {expected}")


def check_sink_answer(body: bytes, size: int, digest: str | None) -> None:
    """The sink answers '<count> <digest>'; compare with what was sent."""
    parts = body.split()
    if len(parts) != 2 or int(parts[0]) != size:
        raise WrongAnswer(f"sink counted {body[:80]!r}, {size} bytes were to be sent")
    if digest is not None and parts[1].decode() != digest:
        raise WrongAnswer(
            f"sink digest {parts[1][:16]!r}... differs from the expected {digest[:16]}..."
        )


class Result:
    """What one run did: requests and body bytes, plus workload extras."""

    __slots__ = ("extra", "nbytes", "ops")

    def __init__(self, ops: int, nbytes: int, **extra):
        self.ops = ops
        self.nbytes = nbytes
        self.extra = extra


class Runner:
    """One (client, workload, variant): set up once, run many times.

    ``lib`` is the client's module (dugong, http.client, httpx, ...).
    """

    def __init__(self, lib, variant: str, p: dict, workload: str):
        self.lib = lib
        self.variant = variant
        self.workload = workload
        self.p = p
        self.host = p["host"]
        self.port = p["port"]
        self.base = f"http://{self.host}:{self.port}"

    def setup(self) -> None:
        pass

    def run(self, check: bool) -> Result:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # helpers shared by the runners ---------------------------------------

    def check_small(self, body: bytes, check: bool) -> int:
        if check and body != self.p["small_body"]:
            raise WrongAnswer(f"body of {len(body)} bytes differs from the 1 KiB file")
        return len(body)


class Hasher:
    """Counts bytes and, when checking, digests them."""

    __slots__ = ("h", "n")

    def __init__(self, check: bool):
        self.n = 0
        self.h = hashlib.sha256() if check else None

    def add(self, data) -> None:
        """Count *data* and, when checking, digest it."""
        self.n += len(data)
        if self.h is not None:
            self.h.update(data)

    def drain(self, read) -> None:
        """Call ``read(READ_SIZE)`` until it returns nothing, counting (and, when
        checking, digesting) what it returns."""
        while True:
            data = read(READ_SIZE)
            if not data:
                return
            self.add(data)
            del data  # freed before the next read (W7 measures the peak)

    def drain_into(self, readinto, view) -> None:
        """Call ``readinto(view)`` until it returns 0, counting (and digesting);
        *view* is the caller's reused buffer."""
        h = self.h
        while True:
            k = readinto(view)
            if not k:
                return
            self.n += k
            if h is not None:
                h.update(view[:k])

    def verify(self, p: dict, size: int) -> None:
        if self.n != size:
            raise WrongAnswer(f"got {self.n} body bytes, expected {size}")
        if self.h is not None and self.h.hexdigest() != p["digest"]:
            raise WrongAnswer("body digest differs from the file's")


# ==========================================================================
# A small selectors loop for co_ generators (W2, W5)
# ==========================================================================

WAIT = object()  # yielded by our own generators: park until unpark() is called


class PollLoop:
    """Drive generators that yield (fd, mask) pairs, with ``selectors``.

    Registrations are kept while generators wait on the same fd again and
    trimmed lazily when an event arrives that nobody waits for.
    """

    def __init__(self, pollin: int, pollout: int):
        self.pollin = pollin
        self.pollout = pollout
        self.sel = selectors.DefaultSelector()
        self.slots: dict[int, list] = {}  # fd -> [reader, writer, registered events]
        self.ready: deque = deque()
        self.parked: list = []
        self.live = 0

    def spawn(self, gen) -> None:
        self.live += 1
        self.ready.append(gen)

    def unpark(self) -> None:
        if self.parked:
            self.ready.extend(self.parked)
            self.parked.clear()

    def _wait(self, gen, fd: int, mask: int) -> None:
        slot = self.slots.get(fd)
        if slot is None:
            slot = self.slots[fd] = [None, None, 0]
        events = 0
        if mask & self.pollin:
            slot[0] = gen
            events |= selectors.EVENT_READ
        if mask & self.pollout:
            slot[1] = gen
            events |= selectors.EVENT_WRITE
        want = slot[2] | events
        if want != slot[2]:
            if slot[2]:
                self.sel.modify(fd, want)
            else:
                self.sel.register(fd, want)
            slot[2] = want

    def run(self) -> None:
        ready = self.ready
        try:
            while self.live:
                while ready:
                    gen = ready.popleft()
                    try:
                        req = gen.send(None)
                    except StopIteration:
                        self.live -= 1
                        continue
                    if req is WAIT:
                        self.parked.append(gen)
                    else:
                        self._wait(gen, req[0], req[1])
                if not self.live:
                    break
                if not self.slots:
                    raise RuntimeError("all generators parked: nothing to wait for")
                for key, ev in self.sel.select():
                    slot = self.slots[key.fd]
                    drop = 0
                    if ev & selectors.EVENT_READ:
                        if slot[0] is not None:
                            ready.append(slot[0])
                            if slot[1] is slot[0]:
                                slot[1] = None
                            slot[0] = None
                        else:
                            drop |= selectors.EVENT_READ
                    if ev & selectors.EVENT_WRITE:
                        if slot[1] is not None:
                            ready.append(slot[1])
                            slot[1] = None
                        else:
                            drop |= selectors.EVENT_WRITE
                    if drop:
                        slot[2] &= ~drop
                        if slot[2]:
                            self.sel.modify(key.fd, slot[2])
                        else:
                            self.sel.unregister(key.fd)
                            del self.slots[key.fd]
        finally:
            self.sel.close()


# ==========================================================================
# dugong, this one or 3.8.2: the same code against the same API
# ==========================================================================


class Client:
    """A client library loaded in this worker: its module, its version, and
    the runner class of each workload it can do."""

    runners: ClassVar[dict[str, type[Runner]]] = {}
    #: why the W7 idle-connection row cannot be measured, if it cannot
    no_idle: str | None = None

    def __init__(self, name: str):
        self.lib, self.version = self.load(name)

    def load(self, name: str):
        raise NotImplementedError

    def runner(self, workload: str, variant: str, p: dict) -> Runner:
        if workload == "W7" and variant == "idle" and self.no_idle:
            raise NotSupported(self.no_idle)
        cls = self.runners.get(workload)
        if cls is None:
            raise NotSupported(f"no {workload} runner for this client")
        return cls(self.lib, variant, p, workload)


class DugongClient(Client):
    def load(self, name: str):
        if name == "dugong-3.8.2":
            where = os.environ["BENCH_DUGONG_REF"]
        else:
            where = os.environ["BENCH_REPO_ROOT"]
        sys.path.insert(0, where)
        import dugong

        mod_file = os.path.abspath(dugong.__file__)
        if not mod_file.startswith(os.path.abspath(where) + os.sep):
            raise RuntimeError(f"imported dugong from {mod_file}, not from {where}")
        return dugong, getattr(dugong, "__version__", "?")


class DugongRunner(Runner):
    conn = None

    def setup(self) -> None:
        self.conn = self.lib.HTTPConnection(self.host, self.port)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()


class DugongW1(DugongRunner):
    def run(self, check):
        conn, path = self.conn, self.p["path"]
        nbytes = 0
        for _ in range(self.p["n"]):
            conn.send_request("GET", path)
            resp = conn.read_response()
            body = conn.readall()
            check_status(resp.status)
            nbytes += self.check_small(body, check)
        return Result(self.p["n"], nbytes)


class DugongW2(DugongRunner):
    """Pipelining: ``co`` = sender and receiver generators in one poll loop,
    ``blocking`` = send_request x depth, then read_response x depth."""

    def run(self, check):
        if self.variant == "co":
            return self._run_co(check)
        conn, path, depth, n = self.conn, self.p["path"], self.p["depth"], self.p["n"]
        nbytes = 0
        done = 0
        while done < n:
            batch = min(depth, n - done)
            for _ in range(batch):
                conn.send_request("GET", path)
            for _ in range(batch):
                resp = conn.read_response()
                body = conn.readall()
                check_status(resp.status)
                nbytes += self.check_small(body, check)
            done += batch
        return Result(n, nbytes)

    def _run_co(self, check):
        conn, path, depth, n = self.conn, self.p["path"], self.p["depth"], self.p["n"]
        loop = PollLoop(self.lib.POLLIN, self.lib.POLLOUT)
        state = {"done": 0, "bytes": 0}

        def sender():
            for i in range(n):
                while i - state["done"] >= depth:
                    yield WAIT
                yield from conn.co_send_request("GET", path)
                if loop.parked:  # the receiver read every answer and waits for a request
                    loop.unpark()

        def receiver():
            for _ in range(n):
                while not conn.response_pending():  # all answered: the sender is behind
                    yield WAIT
                resp = yield from conn.co_read_response()
                body = yield from conn.co_readall()
                check_status(resp.status)
                state["bytes"] += self.check_small(body, check)
                state["done"] += 1
                loop.unpark()

        loop.spawn(sender())
        loop.spawn(receiver())
        loop.run()
        return Result(state["done"], state["bytes"])


class DugongW3(DugongRunner):
    def setup(self):
        super().setup()
        self.buf = memoryview(page_aligned(READ_SIZE))

    def run(self, check):
        conn, size = self.conn, self.p["size"]
        conn.send_request("GET", self.p["path"])
        resp = conn.read_response()
        check_status(resp.status)
        if resp.length != size:
            raise WrongAnswer(f"response length {resp.length}, expected {size}")
        hs = Hasher(check)
        if self.variant == "read":
            hs.drain(conn.read)
        else:
            hs.drain_into(conn.readinto, self.buf)
        hs.verify(self.p, size)
        return Result(1, hs.n)


class DugongW4(DugongRunner):
    def setup(self):
        super().setup()
        self.pieces = pieces()

    def run(self, check):
        conn, size, mod = self.conn, self.p["size"], self.lib
        headers = {"X-Digest": "1"} if check else None
        if self.variant == "plain":
            conn.send_request("PUT", "/upload", headers=headers, body=mod.BodyFollowing(size))
        elif self.variant == "expect100":
            conn.send_request(
                "PUT", "/upload", headers=headers, body=mod.BodyFollowing(size), expect100=True
            )
            resp = conn.read_response()
            if resp.status != 100:
                raise WrongAnswer(f"expected 100 Continue, got {resp.status}")
        else:
            try:
                conn.send_request("PUT", "/upload", headers=headers, body=mod.BodyFollowing())
            except ValueError as exc:
                raise NotSupported(f"BodyFollowing() without length: {exc}") from None
        ps = self.pieces
        for i in range(size // PIECE_SIZE):
            conn.write(ps[i % N_DISTINCT_PIECES])
        if self.variant == "chunked":
            conn.write(b"")
        resp = conn.read_response()
        body = conn.readall()
        check_status(resp.status)
        check_sink_answer(body, size, self.p["digest"] if check else None)
        return Result(1, size)


class DugongW5(DugongRunner):
    """``poll``: one selectors loop, one co_ generator per connection;
    ``aio``: asyncio with one AioFuture per request."""

    def setup(self):
        mod, p = self.lib, self.p
        self.conns = []
        for _ in range(p["conns"]):
            conn = mod.HTTPConnection(self.host, self.port)
            conn.send_request("GET", p["path"])  # connect now, not while timing
            conn.read_response()
            conn.readall()
            self.conns.append(conn)
        if self.variant == "aio":
            self.loop = asyncio.new_event_loop()

    def close(self):
        for conn in self.conns:
            conn.disconnect()
        if self.variant == "aio":
            self.loop.close()

    def _co_get(self, conn, check):
        yield from conn.co_send_request("GET", self.p["path"])
        resp = yield from conn.co_read_response()
        body = yield from conn.co_readall()
        check_status(resp.status)
        return self.check_small(body, check)

    def run(self, check):
        m = self.p["n"]
        total = [0]
        if self.variant == "poll":
            loop = PollLoop(self.lib.POLLIN, self.lib.POLLOUT)

            def task(conn):
                for _ in range(m):
                    # not "total[0] += yield from ...": that would read
                    # total[0] before the generator suspends
                    got = yield from self._co_get(conn, check)
                    total[0] += got

            for conn in self.conns:
                loop.spawn(task(conn))
            loop.run()
        else:
            AioFuture = self.lib.AioFuture

            async def task(conn):
                for _ in range(m):
                    got = await AioFuture(self._co_get(conn, check))
                    total[0] += got

            async def main():
                await asyncio.gather(*(task(c) for c in self.conns))

            self.loop.run_until_complete(main())
        return Result(m * len(self.conns), total[0])


class DugongW7(DugongRunner):
    def run(self, check):
        if self.variant == "idle":
            return idle_cost(self.p, self._one_idle)
        conn, size = self.conn, self.p["size"]
        hs = Hasher(check)
        with Traced() as tr:
            conn.send_request("GET", f"/gen/{size}")
            resp = conn.read_response()
            check_status(resp.status)
            hs.drain(conn.read)
        hs.verify(self.p, size)
        return Result(1, hs.n, peak=tr.peak)

    def _one_idle(self):
        conn = self.lib.HTTPConnection(self.host, self.port)
        conn.send_request("GET", self.p["path"])
        conn.read_response()
        conn.readall()
        limit = getattr(self.lib, "BUFFER_SIZE", 64 * 1024) + 8 * 1024
        return conn, conn.disconnect, limit


DugongClient.runners = {
    "W1": DugongW1, "W2": DugongW2, "W3": DugongW3, "W4": DugongW4, "W5": DugongW5,
    "W7": DugongW7,
}

# ==========================================================================
# memory helpers (W7)
# ==========================================================================


class Traced:
    """Peak traced memory above the start, over a with-block."""

    def __enter__(self):
        gc.collect()
        tracemalloc.start()
        self.start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        return self

    def __exit__(self, *exc):
        self.peak = tracemalloc.get_traced_memory()[1] - self.start
        tracemalloc.stop()


IDLE_CONNS = 8


def idle_cost(p: dict, make_one) -> Result:
    """Traced memory kept by one idle, connected connection (mean of 8)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        held = [make_one() for _ in range(IDLE_CONNS)]
        gc.collect()
        cost = (tracemalloc.get_traced_memory()[0] - base) / IDLE_CONNS
    finally:
        tracemalloc.stop()
    limit = held[0][2]
    for _obj, closer, _limit in held:
        closer()
    return Result(IDLE_CONNS, 0, idle=cost, limit=limit)


# ==========================================================================
# http.client (standard library)
# ==========================================================================


class HttpClientClient(Client):
    def load(self, name):
        import http.client

        return http.client, sys.version.split()[0]


class HcRunner(Runner):
    conn = None

    def setup(self):
        self.conn = self.lib.HTTPConnection(self.host, self.port)

    def close(self):
        if self.conn is not None:
            self.conn.close()


class HcW1(HcRunner):
    def run(self, check):
        conn, path = self.conn, self.p["path"]
        nbytes = 0
        for _ in range(self.p["n"]):
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            check_status(resp.status)
            nbytes += self.check_small(body, check)
        return Result(self.p["n"], nbytes)


class HcW3(HcRunner):
    def setup(self):
        super().setup()
        self.buf = memoryview(page_aligned(READ_SIZE))

    def run(self, check):
        conn, size = self.conn, self.p["size"]
        conn.request("GET", self.p["path"])
        resp = conn.getresponse()
        check_status(resp.status)
        hs = Hasher(check)
        if self.variant == "read":
            hs.drain(resp.read)
        else:
            view = memoryview(self.buf)
            hs.drain_into(resp.readinto, view)
        hs.verify(self.p, size)
        return Result(1, hs.n)


class HcW4(HcRunner):
    def run(self, check):
        conn, size = self.conn, self.p["size"]
        if self.variant == "expect100":
            raise NotSupported("http.client cannot wait for 100 Continue before the body")
        if self.variant == "plain":
            conn.putrequest("PUT", "/upload")
            conn.putheader("Content-Length", str(size))
            if check:
                conn.putheader("X-Digest", "1")
            conn.endheaders()
            for piece in piece_iter(size):
                conn.send(piece)
        else:
            headers = {"X-Digest": "1"} if check else {}
            conn.request(
                "PUT", "/upload", body=piece_iter(size), headers=headers, encode_chunked=True
            )
        resp = conn.getresponse()
        body = resp.read()
        check_status(resp.status)
        check_sink_answer(body, size, self.p["digest"] if check else None)
        return Result(1, size)


class HcW5(HcRunner):
    """32 threads, one HTTPConnection each."""

    def setup(self):
        self.conns = [
            self.lib.HTTPConnection(self.host, self.port) for _ in range(self.p["conns"])
        ]

    def close(self):
        for conn in self.conns:
            conn.close()

    def run(self, check):
        import threading

        m, path = self.p["n"], self.p["path"]
        totals = []
        errors = []

        def work(conn):
            try:
                total = 0
                for _ in range(m):
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    body = resp.read()
                    check_status(resp.status)
                    total += self.check_small(body, check)
                totals.append(total)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in self.conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return Result(m * len(self.conns), sum(totals))


class HcW7(HcRunner):
    def run(self, check):
        if self.variant == "idle":
            return idle_cost(self.p, self._one_idle)
        conn, size = self.conn, self.p["size"]
        hs = Hasher(check)
        with Traced() as tr:
            conn.request("GET", f"/gen/{size}")
            resp = conn.getresponse()
            check_status(resp.status)
            hs.drain(resp.read)
            del resp
        hs.verify(self.p, size)
        return Result(1, hs.n, peak=tr.peak)

    def _one_idle(self):
        conn = self.lib.HTTPConnection(self.host, self.port)
        conn.request("GET", self.p["path"])
        conn.getresponse().read()
        return conn, conn.close, None


HttpClientClient.runners = {"W1": HcW1, "W3": HcW3, "W4": HcW4, "W5": HcW5, "W7": HcW7}

# ==========================================================================
# urllib3
# ==========================================================================


class Urllib3Client(Client):
    def load(self, name):
        import urllib3

        return urllib3, urllib3.__version__


class U3Runner(Runner):
    def setup(self):
        self.pool = self.lib.HTTPConnectionPool(self.host, self.port, maxsize=1, retries=False)

    def close(self):
        self.pool.close()


class U3W1(U3Runner):
    def run(self, check):
        pool, path = self.pool, self.p["path"]
        nbytes = 0
        for _ in range(self.p["n"]):
            resp = pool.request("GET", path)
            check_status(resp.status)
            nbytes += self.check_small(resp.data, check)
        return Result(self.p["n"], nbytes)


class U3W3(U3Runner):
    def setup(self):
        super().setup()
        self.buf = memoryview(page_aligned(READ_SIZE))

    def run(self, check):
        size = self.p["size"]
        resp = self.pool.request("GET", self.p["path"], preload_content=False)
        check_status(resp.status)
        hs = Hasher(check)
        if self.variant == "read":
            hs.drain(resp.read)
        else:
            view = memoryview(self.buf)
            hs.drain_into(resp.readinto, view)
        resp.release_conn()
        hs.verify(self.p, size)
        return Result(1, hs.n)


class U3W4(U3Runner):
    def run(self, check):
        size = self.p["size"]
        if self.variant == "expect100":
            raise NotSupported("urllib3 has no 100-continue support")
        headers = {"X-Digest": "1"} if check else {}
        if self.variant == "plain":
            headers["Content-Length"] = str(size)
            resp = self.pool.urlopen("PUT", "/upload", body=piece_iter(size), headers=headers)
        else:
            resp = self.pool.urlopen(
                "PUT", "/upload", body=piece_iter(size), headers=headers, chunked=True
            )
        check_status(resp.status)
        check_sink_answer(resp.data, size, self.p["digest"] if check else None)
        return Result(1, size)


class U3W7(U3Runner):
    def run(self, check):
        if self.variant == "idle":
            return idle_cost(self.p, self._one_idle)
        size = self.p["size"]
        hs = Hasher(check)
        with Traced() as tr:
            resp = self.pool.request("GET", f"/gen/{size}", preload_content=False)
            check_status(resp.status)
            hs.drain(resp.read)
            resp.release_conn()
            del resp
        hs.verify(self.p, size)
        return Result(1, hs.n, peak=tr.peak)

    def _one_idle(self):
        from urllib3.connection import HTTPConnection

        conn = HTTPConnection(self.host, self.port)
        conn.request("GET", self.p["path"])
        conn.getresponse().read()
        return conn, conn.close, None


Urllib3Client.runners = {"W1": U3W1, "W3": U3W3, "W4": U3W4, "W7": U3W7}

# ==========================================================================
# httpx (sync)
# ==========================================================================


class HttpxClient(Client):
    def load(self, name):
        import httpx

        return httpx, httpx.__version__


class HxRunner(Runner):
    def setup(self):
        self.client = self.lib.Client(trust_env=False, timeout=60)

    def close(self):
        self.client.close()


class HxW1(HxRunner):
    def run(self, check):
        client, url = self.client, self.base + self.p["path"]
        nbytes = 0
        for _ in range(self.p["n"]):
            resp = client.get(url)
            check_status(resp.status_code)
            nbytes += self.check_small(resp.content, check)
        return Result(self.p["n"], nbytes)


class HxW3(HxRunner):
    def run(self, check):
        size = self.p["size"]
        hs = Hasher(check)
        with self.client.stream("GET", self.base + self.p["path"]) as resp:
            check_status(resp.status_code)
            for data in resp.iter_bytes(READ_SIZE):
                hs.add(data)
        hs.verify(self.p, size)
        return Result(1, hs.n)


class HxW4(HxRunner):
    def run(self, check):
        size = self.p["size"]
        if self.variant == "expect100":
            raise NotSupported("httpx has no 100-continue support")
        headers = {"X-Digest": "1"} if check else {}
        if self.variant == "plain":
            headers["Content-Length"] = str(size)
        resp = self.client.put(self.base + "/upload", content=piece_iter(size), headers=headers)
        check_status(resp.status_code)
        check_sink_answer(resp.content, size, self.p["digest"] if check else None)
        return Result(1, size)


class HxW7(HxRunner):
    def run(self, check):
        if self.variant == "idle":
            raise NotSupported("no single-connection object to measure")
        size = self.p["size"]
        hs = Hasher(check)
        with Traced() as tr, self.client.stream("GET", f"{self.base}/gen/{size}") as resp:
            check_status(resp.status_code)
            for data in resp.iter_bytes(READ_SIZE):
                hs.add(data)
                del data
        hs.verify(self.p, size)
        return Result(1, hs.n, peak=tr.peak)


HttpxClient.runners = {"W1": HxW1, "W3": HxW3, "W4": HxW4, "W7": HxW7}

# ==========================================================================
# asyncio clients: httpx.AsyncClient and aiohttp
# ==========================================================================


class AsyncRunner(Runner):
    """Runs each repetition with run_until_complete on one persistent loop."""

    def setup(self):
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.asetup())

    def run(self, check):
        return self.loop.run_until_complete(self.arun(check))

    def close(self):
        self.loop.run_until_complete(self.aclose())
        self.loop.close()

    async def asetup(self):
        pass

    async def aclose(self):
        pass

    async def arun(self, check):
        p = self.p
        if self.workload == "W1":
            nbytes = 0
            for _ in range(p["n"]):
                nbytes += await self.get_small(check)
            return Result(p["n"], nbytes)
        if self.workload == "W5":
            totals = []

            async def task():
                total = 0
                for _ in range(p["n"]):
                    total += await self.get_small(check)
                totals.append(total)

            await asyncio.gather(*(task() for _ in range(p["conns"])))
            return Result(p["n"] * p["conns"], sum(totals))
        if self.workload in ("W3", "W7"):
            size = p["size"]
            url = self.base + (p["path"] if self.workload == "W3" else f"/gen/{size}")
            hs = Hasher(check)
            tr = Traced() if self.workload == "W7" else None
            if tr:
                tr.__enter__()
            await self.download(url, hs, check)
            if tr:
                tr.__exit__(None, None, None)
            hs.verify(p, size)
            return Result(1, hs.n, **({"peak": tr.peak} if tr else {}))
        if self.workload == "W4":
            return await self.upload(check)
        raise NotSupported(self.workload)

    # per library: one small GET, a streamed download, an upload
    async def get_small(self, check) -> int:
        raise NotImplementedError

    async def download(self, url: str, hs: Hasher, check: bool) -> None:
        raise NotImplementedError

    async def upload(self, check: bool) -> Result:
        raise NotImplementedError


async def apiece_iter(size: int):
    for piece in piece_iter(size):
        yield piece


class HttpxAsyncClient(HttpxClient):
    no_idle = "no single-connection object to measure"


class HxaRunner(AsyncRunner):
    async def asetup(self):
        limits = self.lib.Limits(
            max_connections=self.p.get("conns", 1), max_keepalive_connections=100
        )
        self.client = self.lib.AsyncClient(trust_env=False, timeout=60, limits=limits)
        if self.workload == "W5":
            # open all connections before timing
            await asyncio.gather(
                *(self.client.get(self.base + self.p["path"]) for _ in range(self.p["conns"]))
            )

    async def aclose(self):
        await self.client.aclose()

    async def get_small(self, check):
        resp = await self.client.get(self.base + self.p["path"])
        check_status(resp.status_code)
        return self.check_small(resp.content, check)

    async def download(self, url, hs, check):
        async with self.client.stream("GET", url) as resp:
            check_status(resp.status_code)
            async for data in resp.aiter_bytes(READ_SIZE):
                hs.add(data)
                del data

    async def upload(self, check):
        p, size = self.p, self.p["size"]
        if self.variant == "expect100":
            raise NotSupported("httpx has no 100-continue support")
        headers = {"X-Digest": "1"} if check else {}
        if self.variant == "plain":
            headers["Content-Length"] = str(size)
        resp = await self.client.put(
            self.base + "/upload", content=apiece_iter(size), headers=headers
        )
        check_status(resp.status_code)
        check_sink_answer(resp.content, size, p["digest"] if check else None)
        return Result(1, size)


class AiohttpClient(Client):
    no_idle = "no single-connection object to measure"

    def load(self, name):
        import aiohttp

        return aiohttp, aiohttp.__version__


class AioRunner(AsyncRunner):
    async def asetup(self):
        conns = self.p.get("conns", 1)
        connector = self.lib.TCPConnector(limit=conns, limit_per_host=conns)
        self.session = self.lib.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=self.lib.ClientTimeout(total=None, sock_read=60),
        )
        if self.workload == "W5":
            await asyncio.gather(*(self.get_small(False) for _ in range(conns)))

    async def aclose(self):
        await self.session.close()

    async def get_small(self, check):
        async with self.session.get(self.base + self.p["path"]) as resp:
            body = await resp.read()
            check_status(resp.status)
        return self.check_small(body, check)

    async def download(self, url, hs, check):
        async with self.session.get(url) as resp:
            check_status(resp.status)
            while True:
                data = await resp.content.read(READ_SIZE)
                if not data:
                    break
                hs.add(data)
                del data

    async def upload(self, check):
        p, size = self.p, self.p["size"]
        headers = {"X-Digest": "1"} if check else {}
        kw = {}
        if self.variant in ("plain", "expect100"):
            headers["Content-Length"] = str(size)
        if self.variant == "expect100":
            kw["expect100"] = True
        async with self.session.put(
            self.base + "/upload", data=apiece_iter(size), headers=headers, **kw
        ) as resp:
            body = await resp.read()
            check_status(resp.status)
        check_sink_answer(body, size, p["digest"] if check else None)
        return Result(1, size)


HttpxAsyncClient.runners = dict.fromkeys(("W1", "W3", "W4", "W5", "W7"), HxaRunner)
AiohttpClient.runners = dict.fromkeys(("W1", "W3", "W4", "W5", "W7"), AioRunner)

# ==========================================================================
# pycurl
# ==========================================================================


class PycurlClient(Client):
    no_idle = "libcurl's buffers are not traced by tracemalloc"

    def load(self, name):
        import pycurl

        return pycurl, pycurl.version.split()[0]


class _CurlUploadSource:
    """READFUNCTION: hands out the 64 KiB pieces (split if curl asks for less)."""

    def __init__(self, size: int):
        self.it = piece_iter(size)
        self.rest = b""

    def read(self, n: int) -> bytes:
        data = self.rest
        if not data:
            data = next(self.it, b"")
        if len(data) > n:
            self.rest = data[n:]
            return data[:n]
        self.rest = b""
        return data


class CurlRunner(Runner):
    def setup(self):
        pc = self.lib
        self.c = c = pc.Curl()
        c.setopt(pc.NOSIGNAL, 1)
        c.setopt(pc.PROXY, "")
        c.setopt(pc.NOPROXY, "*")
        c.setopt(pc.TCP_NODELAY, 1)
        c.setopt(pc.BUFFERSIZE, READ_SIZE)
        if self.workload == "W4":
            c.setopt(pc.UPLOAD, 1)
            c.setopt(pc.URL, self.base + "/upload")
        elif self.workload == "W7":
            pass  # the URL names the size: set by run()
        else:
            c.setopt(pc.URL, self.base + self.p["path"])

    def close(self):
        self.c.close()

    def run(self, check):
        pc, c, p = self.lib, self.c, self.p
        if self.workload == "W1":
            nbytes = 0
            for _ in range(p["n"]):
                parts = []
                c.setopt(pc.WRITEFUNCTION, parts.append)
                c.perform()
                check_status(c.getinfo(pc.RESPONSE_CODE))
                nbytes += self.check_small(b"".join(parts), check)
            return Result(p["n"], nbytes)
        if self.workload in ("W3", "W7"):
            hs = Hasher(check)

            c.setopt(pc.WRITEFUNCTION, hs.add)
            if self.workload == "W7":
                c.setopt(pc.URL, f"{self.base}/gen/{p['size']}")
                with Traced() as tr:
                    c.perform()
                extra = {"peak": tr.peak}
            else:
                c.perform()
                extra = {}
            check_status(c.getinfo(pc.RESPONSE_CODE))
            hs.verify(p, p["size"])
            return Result(1, hs.n, **extra)
        if self.workload == "W4":
            size = p["size"]
            headers = ["X-Digest: 1"] if check else []
            if self.variant == "chunked":
                headers += ["Transfer-Encoding: chunked", "Expect:"]
                c.setopt(pc.INFILESIZE_LARGE, -1)
            else:
                c.setopt(pc.INFILESIZE_LARGE, size)
                headers.append(
                    "Expect: 100-continue" if self.variant == "expect100" else "Expect:"
                )
            c.setopt(pc.HTTPHEADER, headers)
            c.setopt(pc.READFUNCTION, _CurlUploadSource(size).read)
            parts = []
            c.setopt(pc.WRITEFUNCTION, parts.append)
            c.perform()
            check_status(c.getinfo(pc.RESPONSE_CODE))
            check_sink_answer(b"".join(parts), size, p["digest"] if check else None)
            return Result(1, size)
        raise NotSupported(self.workload)


PycurlClient.runners = dict.fromkeys(("W1", "W3", "W4", "W5", "W7"), CurlRunner)

# ==========================================================================
# the raw-socket floor
# ==========================================================================


class FloorReader(ReceiveBuffer):
    """Fixed receive buffer; finds the end of each response, nothing more."""

    def __init__(self, sock: socket.socket, size: int = READ_SIZE):
        super().__init__(sock, size)

    def closed(self, where: str) -> Exception:
        return WrongAnswer(f"server closed the connection {where}".strip())

    def head(self) -> tuple[int, int]:
        """Consume one response head; return (status, Content-Length or 0)."""
        buf = self.buf
        while True:
            i = buf.find(b"\r\n\r\n", self.start, self.end)
            if i >= 0:
                break
            self._fill()
        status = int(buf[self.start + 9 : self.start + 12])
        j = buf.find(b"\r\nContent-Length: ", self.start, i)
        length = int(buf[j + 18 : buf.find(b"\r", j + 18, i + 2)]) if j >= 0 else 0
        self.start = i + 4
        return status, length

    def body(self, length: int, hs: Hasher | None = None) -> None:
        """Consume ``length`` body bytes (digesting them when checking)."""
        self.skip(length, hs.h if hs is not None else None)

    def body_bytes(self, length: int) -> bytes:
        while self.end - self.start < length:
            self._fill()
        out = bytes(self.view[self.start : self.start + length])
        self.start += length
        return out


def floor_connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def get_request(host: str, port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept-Encoding: identity\r\n\r\n".encode()
    )


class FloorClient(Client):
    def load(self, name):
        return None, "-"


class FloorRunner(Runner):
    def setup(self):
        p = self.p
        n_socks = p.get("conns", 1) if self.workload == "W5" else 1
        self.socks = [floor_connect(self.host, self.port) for _ in range(n_socks)]
        self.readers = [FloorReader(s) for s in self.socks]
        self.sock, self.reader = self.socks[0], self.readers[0]
        if "path" in p:
            self.req = get_request(self.host, self.port, p["path"])
        self.pieces = pieces()

    def close(self):
        for s in self.socks:
            s.close()

    def small(self, check) -> int:
        status, length = self.reader.head()
        check_status(status)
        if check:
            body = self.reader.body_bytes(length)
            return self.check_small(body, check)
        self.reader.body(length)
        return length

    def run(self, check):
        w = self.workload
        return getattr(self, "run_" + w.lower())(check)

    def run_w1(self, check):
        sock, req, nbytes = self.sock, self.req, 0
        for _ in range(self.p["n"]):
            sock.sendall(req)
            nbytes += self.small(check)
        return Result(self.p["n"], nbytes)

    def run_w2(self, check):
        """Four traffic patterns: "window" and "each" keep between depth/2 and depth
        requests in flight (a group of requests in one sendall, or one sendall per
        request); "blocking" and "co" do what dugong's rows of the same names do
        (depth requests then depth responses; one request per response read)."""
        sock, req, n, depth = self.sock, self.req, self.p["n"], self.p["depth"]
        pattern = self.variant.rsplit("-", 1)[0]
        nbytes = 0
        if pattern == "blocking":
            done = 0
            while done < n:
                batch = min(depth, n - done)
                for _ in range(batch):
                    sock.sendall(req)
                for _ in range(batch):
                    nbytes += self.small(check)
                done += batch
            return Result(n, nbytes)
        each = pattern != "window"
        step = 1 if pattern == "co" else max(1, depth // 2)

        def send(k):
            if each:
                for _ in range(k):
                    sock.sendall(req)
            else:
                sock.sendall(req * k)

        sent = min(depth, n)
        send(sent)
        for i in range(1, n + 1):
            nbytes += self.small(check)
            if i % step == 0 and sent < n:
                k = min(step, n - sent)
                send(k)
                sent += k
        return Result(n, nbytes)

    def run_w3(self, check):
        self.sock.sendall(self.req)
        status, length = self.reader.head()
        check_status(status)
        hs = Hasher(check)
        self.reader.body(length, hs)
        hs.n = length
        hs.verify(self.p, self.p["size"])
        return Result(1, length)

    def run_w4(self, check):
        sock, size = self.sock, self.p["size"]
        hdr = f"PUT /upload HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if check:
            hdr += "X-Digest: 1\r\n"
        if self.variant == "chunked":
            hdr += "Transfer-Encoding: chunked\r\n\r\n"
        else:
            hdr += f"Content-Length: {size}\r\n"
            if self.variant == "expect100":
                hdr += "Expect: 100-continue\r\n"
            hdr += "\r\n"
        sock.sendall(hdr.encode())
        if self.variant == "expect100":
            status, _ = self.reader.head()
            check_status(status, 100)
        ps = self.pieces
        if self.variant == "chunked":
            chunk_head = b"%x\r\n" % PIECE_SIZE
            for i in range(size // PIECE_SIZE):
                sendmsg_all(sock, [chunk_head, ps[i % N_DISTINCT_PIECES], b"\r\n"])
            sock.sendall(b"0\r\n\r\n")
        else:
            for i in range(size // PIECE_SIZE):
                sock.sendall(ps[i % N_DISTINCT_PIECES])
        status, length = self.reader.head()
        check_status(status)
        check_sink_answer(
            self.reader.body_bytes(length), size, self.p["digest"] if check else None
        )
        return Result(1, size)

    def run_w5(self, check):
        # one selectors loop, one request in flight per socket
        m, req = self.p["n"], self.req
        sel = selectors.DefaultSelector()
        left = {}
        nbytes = 0
        try:
            for sock, reader in zip(self.socks, self.readers, strict=True):
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, reader)
                sock.send(req)
                left[reader] = m
            active = len(left)
            while active:
                for key, _ in sel.select():
                    reader = key.data
                    try:
                        reader._fill()
                    except BlockingIOError:
                        continue
                    # parse as many complete responses as the buffer holds
                    while True:
                        i = reader.buf.find(b"\r\n\r\n", reader.start, reader.end)
                        if i < 0:
                            break
                        status = int(reader.buf[reader.start + 9 : reader.start + 12])
                        j = reader.buf.find(b"\r\nContent-Length: ", reader.start, i)
                        length = int(reader.buf[j + 18 : reader.buf.find(b"\r", j + 18, i + 2)])
                        if reader.end - (i + 4) < length:
                            break
                        check_status(status)
                        if check:
                            self.check_small(bytes(reader.view[i + 4 : i + 4 + length]), check)
                        reader.start = i + 4 + length
                        nbytes += length
                        left[reader] -= 1
                        if left[reader]:
                            key.fileobj.send(req)
                        else:
                            sel.unregister(key.fileobj)
                            active -= 1
        finally:
            sel.close()
            for sock in self.socks:
                sock.setblocking(True)
        return Result(m * len(self.socks), nbytes)

    def run_w7(self, check):
        if self.variant == "idle":
            return idle_cost(self.p, self._one_idle)
        size = self.p["size"]
        hs = Hasher(check)
        with Traced() as tr:
            self.sock.sendall(get_request(self.host, self.port, f"/gen/{size}"))
            status, length = self.reader.head()
            check_status(status)
            self.reader.body(length, hs)
        hs.n = length
        hs.verify(self.p, size)
        return Result(1, length, peak=tr.peak)

    def _one_idle(self):
        sock = floor_connect(self.host, self.port)
        reader = FloorReader(sock)
        sock.sendall(self.req)
        _status, length = reader.head()
        reader.body(length)
        return (sock, reader), sock.close, None


def sendmsg_all(sock: socket.socket, bufs: list) -> None:
    total = sum(len(b) for b in bufs)
    sent = sock.sendmsg(bufs)
    if sent == total:
        return
    # rare on a blocking socket: finish the rest piece by piece
    for b in bufs:
        if sent >= len(b):
            sent -= len(b)
            continue
        sock.sendall(memoryview(b)[sent:])
        sent = 0


FloorClient.runners = dict.fromkeys(("W1", "W2", "W3", "W4", "W5", "W7"), FloorRunner)

# ==========================================================================
# the worker loop
# ==========================================================================

CLIENTS = {
    "dugong": DugongClient,
    "dugong-3.8.2": DugongClient,
    "http.client": HttpClientClient,
    "urllib3": Urllib3Client,
    "httpx": HttpxClient,
    "httpx-async": HttpxAsyncClient,
    "aiohttp": AiohttpClient,
    "pycurl": PycurlClient,
    "floor": FloorClient,
}


def verify_result(res: Result, p: dict) -> None:
    if "expect_ops" in p and res.ops != p["expect_ops"]:
        raise WrongAnswer(f"{res.ops} requests done, {p['expect_ops']} expected")
    if "expect_bytes" in p and res.nbytes != p["expect_bytes"]:
        raise WrongAnswer(f"{res.nbytes} body bytes, {p['expect_bytes']} expected")


#: workloads whose every repetition runs on a new connection (opened untimed)
FRESH_CONNECTION = frozenset({"W3", "W4"})


def run_once(runner: Runner) -> dict:
    """One timed repetition. A bulk transfer gets a new connection first: a TCP
    connection's receive buffer grows with its early traffic (to 0.8 MiB on one
    connection and 32 MiB on another made alike), and one connection kept for a
    whole row would give the row a speed of its own in every repetition."""
    if runner.workload in FRESH_CONNECTION:
        runner.close()
        runner.setup()
    return timed(runner)


def timed(runner: Runner) -> dict:
    gc.collect()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    res = runner.run(False)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    verify_result(res, runner.p)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"wall": t1 - t0, "cpu": cpu, "ops": res.ops, "bytes": res.nbytes, **res.extra}


def main() -> None:
    name = sys.argv[1]
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        client = CLIENTS[name](name)
    except Exception as exc:
        send({"unavailable": f"{type(exc).__name__}: {exc}"})
        return
    send({"ready": True, "version": client.version})
    runners: dict[str, Runner] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        op, row = msg["op"], msg.get("row")
        try:
            if op == "prepare":
                p = msg["params"]
                if "small_body_hex" in p:
                    p["small_body"] = bytes.fromhex(p.pop("small_body_hex"))
                runner = client.runner(msg["workload"], msg["variant"], p)
                runners[row] = runner
                runner.setup()
                # validation and warm-up may use smaller counts ("check")
                vp = {**p, **p.get("check", {})}
                runner.p = vp
                t0 = time.perf_counter()
                verify_result(runner.run(True), vp)
                for _ in range(p.get("warmup", 0)):
                    verify_result(runner.run(False), vp)
                runner.p = p
                send({"ok": True, "prepare_seconds": time.perf_counter() - t0})
            elif op == "run":
                send(run_once(runners[row]))
            elif op == "close":
                runner = runners.pop(row, None)
                if runner is not None:
                    runner.close()
                send({"ok": True})
            else:
                send({"error": f"unknown op {op!r}"})
        except NotSupported as exc:
            runners.pop(row, None)
            send({"unsupported": str(exc)})
        except WrongAnswer as exc:
            runners.pop(row, None)
            send({"error": f"wrong answer: {exc}", "wrong": True})
        except Exception as exc:
            runners.pop(row, None)
            tb = traceback.format_exc(limit=8)
            send({"error": f"{type(exc).__name__}: {exc}", "traceback": tb})


if __name__ == "__main__":
    main()
