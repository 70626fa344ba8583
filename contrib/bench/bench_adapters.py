"""One adapter per HTTP client: the few operations the workloads need, in its own idiom.

A worker process loads one client and makes one adapter per row (one workload variant).
An adapter offers what its client can do, out of these methods; a workload whose method
an adapter lacks gets no row for that client:

``connect()`` / ``close()``
    open the row's connection (before the clock starts) / close all it opened
``get(path) -> (status, body)``
    one GET on that connection (W1); asyncio clients have ``aget(url)``
``send(path)``, ``recv() -> (status, body)``, ``co_send``, ``co_recv``
    pipelining: send one GET, read the next answer; their co_ generator twins (W2)
``download(path, buf, take) -> status``
    one GET whose body goes piece by piece to ``take``: ``read(64 KiB)``, or
    ``readinto(buf)`` when a buffer is given (W3, W7)
``upload(mode, size, pieces, headers) -> (status, body)``
    one PUT of ``pieces``; mode ``plain``, ``expect100`` or ``chunked`` (W4)
``many(variant, k, path)`` / ``pooled(variant, tasks, url, conns, pipeline)``
    k tasks with a connection each (W5) / tasks sharing a pool of connections (W8);
    both return ``run(n, take)``, which makes every task do n GETs
``idle(path)``
    a connected, idle connection after one GET (W7)

Tasks run under one of the drivers written once below: serial, threads, an asyncio
loop, trio, or a loop of co_ generators. Every answer goes to ``take(status, body)``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import selectors
import socket
import sys
import threading
from collections import deque
from functools import partial
from urllib.parse import urlsplit

from bench_servers import ReceiveBuffer

READ_SIZE = 64 * 1024


class WrongAnswer(Exception):
    """A client returned something other than what the server sent."""


class NotSupported(Exception):
    """The client cannot do this variant (the row says n/a)."""


class Unavailable(Exception):
    """This version of the client lacks what the row needs (the row says unavailable)."""


# ---------------------------------------------------------------- drivers


def serial(fns, n, take):
    (get,) = fns
    for _ in range(n):
        status, body = get()
        take(status, body)


def in_threads(fns, n, take):
    errors = []

    def work(get):
        try:
            serial([get], n, take)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f,)) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


async def _atask(aget, n, take):
    for _ in range(n):
        status, body = await aget()
        take(status, body)


def in_asyncio(loop, fns, n, take):
    async def main():
        await asyncio.gather(*(_atask(f, n, take) for f in fns))

    loop.run_until_complete(main())


def in_trio(fns, n, take):
    import trio

    async def main():
        async with trio.open_nursery() as nursery:
            for f in fns:
                nursery.start_soon(_atask, f, n, take)

    trio.run(main)


def in_loop(run_all, fns, n, take):
    def task(co_get):
        for _ in range(n):
            status, body = yield from co_get()
            take(status, body)

    run_all(*(task(f) for f in fns))


WAIT = object()  # yielded to PollLoop: park until unpark() is called


class PollLoop:
    """A selectors loop for co_ generators: dugong 3.8.2 has no eval_coroutines, and
    W2's sender and receiver also yield `WAIT` to park until the other calls unpark().
    A registration is kept while its fd is waited on again, dropped when unused."""

    def __init__(self, pollin: int):
        self.pollin = pollin
        self.sel = selectors.DefaultSelector()
        self.ready: deque = deque()
        self.parked: list = []
        self.waiters: dict[int, dict] = {}  # fd -> {event: generator}
        self.events: dict[int, int] = {}  # fd -> registered events
        self.waiting = 0

    def unpark(self) -> None:
        if self.parked:
            self.ready.extend(self.parked)
            self.parked.clear()

    def run(self, *gens) -> None:
        ready, live = self.ready, len(gens)
        ready.extend(gens)
        try:
            while live:
                while ready:
                    gen = ready.popleft()
                    try:
                        want = gen.send(None)
                    except StopIteration:
                        live -= 1
                        continue
                    if want is WAIT:
                        self.parked.append(gen)
                    else:
                        self._wait(gen, want[0], want[1])
                if not live:
                    break
                if not self.waiting:
                    raise RuntimeError("every generator is parked")
                for key, events in self.sel.select():
                    self._wake(key.fd, events)
        finally:
            self.sel.close()

    def _wait(self, gen, fd: int, mask: int) -> None:
        event = selectors.EVENT_READ if mask & self.pollin else selectors.EVENT_WRITE
        self.waiters.setdefault(fd, {})[event] = gen
        self.waiting += 1
        had = self.events.get(fd, 0)
        if not had & event:
            (self.sel.modify if had else self.sel.register)(fd, had | event)
            self.events[fd] = had | event

    def _wake(self, fd: int, events: int) -> None:
        waiters, unused = self.waiters[fd], 0
        for event in (selectors.EVENT_READ, selectors.EVENT_WRITE):
            if events & event:
                gen = waiters.pop(event, None)
                if gen is None:
                    unused |= event
                else:
                    self.ready.append(gen)
                    self.waiting -= 1
        if unused:
            self.events[fd] &= ~unused
            if self.events[fd]:
                self.sel.modify(fd, self.events[fd])
            else:
                self.sel.unregister(fd)
                del self.events[fd], self.waiters[fd]


# ---------------------------------------------------------------- helpers


def drain(read, take):
    """Hand ``read(64 KiB)`` to *take* until the body ends."""
    while data := read(READ_SIZE):
        take(data)
        del data  # freed before the next read: W7 measures the peak


def drain_into(readinto, buf, take):
    """Hand what ``readinto(buf)`` fills to *take* until the body ends."""
    while k := readinto(buf):
        take(buf[:k])


def length_headers(mode, size, headers):
    """*headers* plus the Content-Length of an upload that is not chunked."""
    return headers if mode == "chunked" else {**headers, "Content-Length": str(size)}


async def aiter_of(pieces):
    for piece in pieces:
        yield piece


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------- adapters


class Adapter:
    """What all adapters share; the class attributes say what a client can do."""

    #: W3 variants -> labels (the first also labels W7's stream)
    DOWNLOADS = {"read": "read(64 KiB)", "readinto": "readinto(64 KiB buffer)"}
    #: W4 modes
    UPLOADS: tuple[str, ...] = ("plain", "chunked")
    #: W5 and W8 variants -> labels
    MANY: dict[str, str] = {}
    POOLED: dict[str, str] = {}
    #: requests in flight per connection in W8
    PIPELINES: tuple[int, ...] = (1,)
    #: whether W7 can measure one idle connection
    IDLE = True

    def __init__(self, lib, host: str | None, port: int):
        self.lib, self.host, self.port = lib, host, port
        self.base = f"http://{host}:{port}"
        self.closers: list = []

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def new_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        self.closers.append(loop.close)
        return loop

    def sequential(self, path):
        return partial(serial, [partial(self.get, path)])

    def idle(self, path):
        self.connect()
        self.get(path)
        return self.conn


class Dugong(Adapter):
    """This dugong, or dugong 3.8.2 (the same API; what it lacks gets no row)."""

    UPLOADS = ("plain", "expect100", "chunked")
    PIPELINES = (1, 16)

    @staticmethod
    def load():
        where = os.path.abspath(os.environ["BENCH_DUGONG"])
        sys.path.insert(0, where)
        import dugong

        if not os.path.abspath(dugong.__file__).startswith(where + os.sep):
            raise RuntimeError(f"imported dugong from {dugong.__file__}, not from {where}")
        return dugong, dugong.__version__

    def __init__(self, lib, host, port):
        super().__init__(lib, host, port)
        anyio = hasattr(lib, "run_async") and has_module("anyio")
        self.MANY = {"loop": "co_ generators, one epoll loop",
                     "aio": "asyncio, an AioFuture per request"}
        if anyio:
            self.MANY["anyio-asyncio"] = "run_async, asyncio"
            if has_module("trio"):
                self.MANY["anyio-trio"] = "run_async, trio"
        if hasattr(lib, "ConnectionPool") or not lib.__version__.startswith("3."):
            self.POOLED = {"loop": "ConnectionPool, eval_coroutines",
                           "aio": "ConnectionPool, AioFuture",
                           "anyio-asyncio": "ConnectionPool, run_async (asyncio)",
                           "threads": "ConnectionPool, 32 threads"}

    def _conn(self):
        conn = self.lib.HTTPConnection(self.host, self.port)
        conn.connect()
        self.closers.append(conn.disconnect)
        return conn

    def connect(self):
        self.conn = self._conn()

    def get(self, path):
        conn = self.conn
        conn.send_request("GET", path)
        status = conn.read_response().status
        return status, conn.readall()

    def send(self, path):
        self.conn.send_request("GET", path)

    def recv(self):
        status = self.conn.read_response().status
        return status, self.conn.readall()

    def co_send(self, path):
        return self.conn.co_send_request("GET", path)

    def co_recv(self, conn=None):
        conn = conn or self.conn
        resp = yield from conn.co_read_response()
        return resp.status, (yield from conn.co_readall())

    def co_get(self, conn, path):
        yield from conn.co_send_request("GET", path)
        return (yield from self.co_recv(conn))

    def pending(self):
        return self.conn.response_pending()

    def download(self, path, buf, take):
        conn = self.conn
        conn.send_request("GET", path)
        status = conn.read_response().status
        if buf is None:
            drain(conn.read, take)
        else:
            drain_into(conn.readinto, buf, take)
        return status

    def upload(self, mode, size, pieces, headers):
        conn, lib = self.conn, self.lib
        try:
            body = lib.BodyFollowing() if mode == "chunked" else lib.BodyFollowing(size)
            conn.send_request("PUT", "/upload", headers=headers, body=body,
                              expect100=mode == "expect100")
        except (TypeError, ValueError) as exc:
            if mode != "chunked":
                raise
            raise NotSupported(f"BodyFollowing() without a length: {exc}") from None
        if mode == "expect100" and (status := conn.read_response().status) != 100:
            raise WrongAnswer(f"expected 100 Continue, got {status}")
        for piece in pieces:
            conn.write(piece)
        if mode == "chunked":
            conn.write(b"")
        return self.recv()

    def _tasks(self, variant, co_fns):
        """run(n, take) for tasks given as co_ generator functions, under *variant*."""
        lib = self.lib
        if variant == "loop":
            run_all = getattr(lib, "eval_coroutines", None)
            if run_all is None:  # dugong 3.x
                run_all = lambda *gens: PollLoop(lib.POLLIN).run(*gens)  # noqa: E731
            return partial(in_loop, run_all, co_fns)
        wrap = lib.AioFuture if variant == "aio" else lib.run_async
        afns = [partial(lambda f: wrap(f()), f) for f in co_fns]
        if variant == "anyio-trio":
            return partial(in_trio, afns)
        return partial(in_asyncio, self.new_loop(), afns)

    def many(self, variant, k, path):
        return self._tasks(variant, [partial(self.co_get, self._conn(), path) for _ in range(k)])

    def pooled(self, variant, tasks, url, conns, pipeline):
        if not hasattr(self.lib, "ConnectionPool"):
            raise Unavailable("this dugong has no ConnectionPool yet")
        pool = self.lib.ConnectionPool(max_connections=conns, pipeline=pipeline)
        self.closers.append(pool.close)
        if variant == "threads":
            return partial(in_threads, [partial(pool_get, pool, url)] * tasks)
        return self._tasks(variant, [partial(co_pool_get, pool, url)] * tasks)


def pool_get(pool, url):
    resp = pool.request("GET", url)
    return resp.status, resp.body


def co_pool_get(pool, url):
    resp = yield from pool.co_request("GET", url)
    return resp.status, resp.body


class HttpClient(Adapter):
    MANY = {"threads": "a thread per connection"}

    @staticmethod
    def load():
        import http.client

        return http.client, platform.python_version()

    def _conn(self):
        conn = self.lib.HTTPConnection(self.host, self.port)
        conn.connect()
        self.closers.append(conn.close)
        return conn

    def connect(self):
        self.conn = self._conn()

    @staticmethod
    def get_on(conn, path):
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def get(self, path):
        return self.get_on(self.conn, path)

    def download(self, path, buf, take):
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        if buf is None:
            drain(resp.read, take)
        else:
            drain_into(resp.readinto, buf, take)
        return resp.status

    def upload(self, mode, size, pieces, headers):
        self.conn.request("PUT", "/upload", body=pieces, encode_chunked=mode == "chunked",
                          headers=length_headers(mode, size, headers))
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def many(self, variant, k, path):
        return partial(in_threads, [partial(self.get_on, self._conn(), path) for _ in range(k)])


def fetch(pool, target):
    """One GET through a urllib3 pool (a path) or pool manager (a URL)."""
    resp = pool.request("GET", target)
    return resp.status, resp.data


class Urllib3(Adapter):
    POOLED = {"threads": "PoolManager(maxsize=8, block=True), 32 threads"}

    @staticmethod
    def load():
        import urllib3

        return urllib3, urllib3.__version__

    def connect(self):
        self.conn = self.lib.HTTPConnectionPool(self.host, self.port, maxsize=1, retries=False)
        self.closers.append(self.conn.close)

    def get(self, path):
        return fetch(self.conn, path)

    def download(self, path, buf, take):
        resp = self.conn.request("GET", path, preload_content=False)
        if buf is None:
            drain(resp.read, take)
        else:
            drain_into(resp.readinto, buf, take)
        resp.release_conn()
        return resp.status

    def upload(self, mode, size, pieces, headers):
        resp = self.conn.urlopen("PUT", "/upload", body=pieces, chunked=mode == "chunked",
                                 headers=length_headers(mode, size, headers))
        return resp.status, resp.data

    def pooled(self, variant, tasks, url, conns, pipeline):
        manager = self.lib.PoolManager(maxsize=conns, block=True, retries=False)
        self.closers.append(manager.clear)
        return partial(in_threads, [partial(fetch, manager, url)] * tasks)


class Httpx(Adapter):
    DOWNLOADS = {"read": "iter_bytes(64 KiB)"}
    IDLE = False  # no object for one connection

    @staticmethod
    def load():
        import httpx

        return httpx, httpx.__version__

    def connect(self):
        self.client = self.lib.Client(trust_env=False, timeout=60)
        self.closers.append(self.client.close)

    def get(self, path):
        resp = self.client.get(self.base + path)
        return resp.status_code, resp.content

    def download(self, path, buf, take):
        with self.client.stream("GET", self.base + path) as resp:
            for data in resp.iter_bytes(READ_SIZE):
                take(data)
                del data
        return resp.status_code

    def upload(self, mode, size, pieces, headers):
        resp = self.client.put(self.base + "/upload", content=pieces,
                               headers=length_headers(mode, size, headers))
        return resp.status_code, resp.content


class AsyncAdapter(Adapter):
    """An asyncio client: the row's event loop runs each call; W1 is one task."""

    IDLE = False  # no object for one connection
    MANY = {"asyncio": "asyncio tasks"}

    def connect(self, limit=1):
        self.loop = self.new_loop()
        self.loop.run_until_complete(self.aopen(limit))
        self.closers.append(lambda: self.loop.run_until_complete(self.aclose()))

    def sequential(self, path):
        return partial(in_asyncio, self.loop, [partial(self.aget, self.base + path)])

    def download(self, path, buf, take):
        return self.loop.run_until_complete(self.adownload(self.base + path, take))

    def upload(self, mode, size, pieces, headers):
        headers = length_headers(mode, size, headers)
        return self.loop.run_until_complete(self.aupload(mode, aiter_of(pieces), headers))

    def many(self, variant, k, path):
        self.connect(k)
        return partial(in_asyncio, self.loop, [partial(self.aget, self.base + path)] * k)

    def pooled(self, variant, tasks, url, conns, pipeline):
        self.connect(conns)
        return partial(in_asyncio, self.loop, [partial(self.aget, url)] * tasks)


class HttpxAsync(AsyncAdapter):
    DOWNLOADS = {"read": "aiter_bytes(64 KiB)"}
    POOLED = {"asyncio": "AsyncClient(limits 8), 32 tasks"}
    load = Httpx.load

    async def aopen(self, limit):
        limits = self.lib.Limits(max_connections=limit, max_keepalive_connections=limit)
        self.client = self.lib.AsyncClient(trust_env=False, timeout=60, limits=limits)

    async def aclose(self):
        await self.client.aclose()

    async def aget(self, url):
        resp = await self.client.get(url)
        return resp.status_code, resp.content

    async def adownload(self, url, take):
        async with self.client.stream("GET", url) as resp:
            async for data in resp.aiter_bytes(READ_SIZE):
                take(data)
                del data
        return resp.status_code

    async def aupload(self, mode, body, headers):
        resp = await self.client.put(self.base + "/upload", content=body, headers=headers)
        return resp.status_code, resp.content


class Aiohttp(AsyncAdapter):
    DOWNLOADS = {"read": "content.read(64 KiB)"}
    UPLOADS = ("plain", "expect100", "chunked")
    POOLED = {"asyncio": "ClientSession(limit 8), 32 tasks"}

    @staticmethod
    def load():
        import aiohttp

        return aiohttp, aiohttp.__version__

    async def aopen(self, limit):
        lib = self.lib
        self.session = lib.ClientSession(
            connector=lib.TCPConnector(limit=limit, limit_per_host=limit),
            auto_decompress=False, timeout=lib.ClientTimeout(total=None, sock_read=60))

    async def aclose(self):
        await self.session.close()

    async def aget(self, url):
        async with self.session.get(url) as resp:
            return resp.status, await resp.read()

    async def adownload(self, url, take):
        async with self.session.get(url) as resp:
            read = resp.content.read
            while data := await read(READ_SIZE):
                take(data)
                del data
        return resp.status

    async def aupload(self, mode, body, headers):
        async with self.session.put(self.base + "/upload", data=body, headers=headers,
                                    expect100=mode == "expect100") as resp:
            return resp.status, await resp.read()


class CurlSource:
    """pycurl's READFUNCTION: the upload pieces, split where curl asks for less."""

    def __init__(self, pieces):
        self.it, self.rest = iter(pieces), b""

    def read(self, n):
        data = self.rest or next(self.it, b"")
        self.rest = data[n:]
        return data[:n]


class Pycurl(Adapter):
    DOWNLOADS = {"read": "write callback, 64 KiB buffer"}
    UPLOADS = ("plain", "expect100", "chunked")
    MANY = {"multi": "CurlMulti"}
    POOLED = {"multi": "CurlMulti, 8 handles"}
    IDLE = False  # libcurl's memory is not traced

    @staticmethod
    def load():
        import pycurl

        return pycurl, pycurl.version.split()[0]

    def _easy(self):
        pc = self.lib
        c = pc.Curl()
        for option, value in ((pc.NOSIGNAL, 1), (pc.PROXY, ""), (pc.NOPROXY, "*"),
                              (pc.TCP_NODELAY, 1), (pc.BUFFERSIZE, READ_SIZE)):
            c.setopt(option, value)
        self.closers.append(c.close)
        return c

    def connect(self):
        self.conn = self._easy()

    def _perform(self, path, write):
        c = self.conn
        c.setopt(self.lib.URL, self.base + path)
        c.setopt(self.lib.WRITEFUNCTION, write)
        c.perform()
        return c.getinfo(self.lib.RESPONSE_CODE)

    def get(self, path):
        parts = []
        return self._perform(path, parts.append), b"".join(parts)

    def download(self, path, buf, take):
        return self._perform(path, take)

    def upload(self, mode, size, pieces, headers):
        pc, c = self.lib, self.conn
        fields = [f"{name}: {value}" for name, value in headers.items()]
        if mode == "chunked":
            fields += ["Transfer-Encoding: chunked", "Expect:"]
        else:
            fields.append("Expect: 100-continue" if mode == "expect100" else "Expect:")
        c.setopt(pc.UPLOAD, 1)
        c.setopt(pc.INFILESIZE_LARGE, -1 if mode == "chunked" else size)
        c.setopt(pc.HTTPHEADER, fields)
        c.setopt(pc.READFUNCTION, CurlSource(pieces).read)
        parts = []
        return self._perform("/upload", parts.append), b"".join(parts)

    def many(self, variant, k, path):
        return self._multi(k, self.base + path, k)

    def pooled(self, variant, tasks, url, conns, pipeline):
        return self._multi(conns, url, tasks)

    def _multi(self, k, url, tasks):
        """run(n, take) for tasks x n GETs of *url* through k handles of one CurlMulti."""
        pc = self.lib
        multi = pc.CurlMulti()
        self.closers.append(multi.close)
        handles = [self._easy() for _ in range(k)]
        for h in handles:
            h.setopt(pc.URL, url)

        def run(n, take):
            todo, parts = tasks * n, {}

            def start(h):
                nonlocal todo
                todo -= 1
                parts[h] = body = []
                h.setopt(pc.WRITEFUNCTION, body.append)
                multi.add_handle(h)

            for h in handles[:todo]:
                start(h)
            while parts:
                while multi.perform()[0] == pc.E_CALL_MULTI_PERFORM:
                    pass
                queued, started = 1, False
                while queued:
                    queued, done, failed = multi.info_read()
                    if failed:
                        raise WrongAnswer(f"curl: {failed[0][2]}")
                    for h in done:
                        multi.remove_handle(h)
                        take(h.getinfo(pc.RESPONSE_CODE), b"".join(parts.pop(h)))
                        if todo:
                            start(h)
                            started = True
                if parts and not started:
                    multi.select(1.0)

        return run


class Reader(ReceiveBuffer):
    """The floor's receive buffer: finds where each response ends, nothing more."""

    def __init__(self, sock):
        super().__init__(sock, READ_SIZE)

    def _head(self, start, end):
        buf = self.buf
        i = buf.find(b"\r\nContent-Length: ", start, end)
        length = int(buf[i + 18:buf.find(b"\r", i + 18, end + 2)]) if i >= 0 else 0
        return int(buf[start + 9:start + 12]), length

    def head(self):
        """Consume one response head: (status, Content-Length)."""
        while (i := self.buf.find(b"\r\n\r\n", self.start, self.end)) < 0:
            self.fill()
        answer = self._head(self.start, i)
        self.start = i + 4
        return answer

    def parse(self):
        """The next whole (small) response in the buffer as (status, body), or None."""
        start = self.start
        i = self.buf.find(b"\r\n\r\n", start, self.end)
        if i < 0:
            return None
        status, length = self._head(start, i)
        if i + 4 + length > self.end:
            return None
        self.start = i + 4 + length
        return status, bytes(self.view[i + 4:self.start])

    def response(self):
        while (answer := self.parse()) is None:
            self.fill()
        return answer


def sendmsg_all(sock, bufs):
    sent = sock.sendmsg(bufs)
    for b in bufs:  # rare on a blocking socket: a partial send
        if sent >= len(b):
            sent -= len(b)
        else:
            sock.sendall(memoryview(b)[sent:])
            sent = 0


class Floor(Adapter):
    """The raw-socket floor: pre-built requests, a page-aligned 64 KiB receive buffer, and
    only enough parsing to find where each response ends. The same traffic as the
    clients, with as little Python as it takes."""

    DOWNLOADS = {"readinto": "recv_into(64 KiB buffer)"}
    UPLOADS = ("plain", "expect100", "chunked")
    MANY = {"loop": "one epoll loop"}
    POOLED = {"loop": "8 sockets, one epoll loop"}
    PIPELINES = (1, 16)

    @staticmethod
    def load():
        return None, "-"

    def __init__(self, lib, host, port):
        super().__init__(lib, host, port)
        self.requests: dict[str, bytes] = {}

    def _socket(self):
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closers.append(sock.close)
        return Reader(sock)

    def _request(self, path):
        req = self.requests.get(path)
        if req is None:
            req = self.requests[path] = (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}"
                                         "\r\nAccept-Encoding: identity\r\n\r\n").encode()
        return req

    def connect(self):
        self.conn = self._socket()

    def send(self, path):
        self.conn.sock.sendall(self._request(path))

    def recv(self):
        return self.conn.response()

    def get(self, path):
        self.conn.sock.sendall(self._request(path))
        return self.conn.response()

    def download(self, path, buf, take):
        rd = self.conn
        self.send(path)
        status, n = rd.head()
        have = min(n, rd.end - rd.start)
        if have:
            take(rd.view[rd.start:rd.start + have])
            rd.start += have
            n -= have
        if n:
            rd.start = rd.end = 0
            view = rd.view if buf is None else buf
            recv_into, size = rd.sock.recv_into, len(view)
            while n:
                k = recv_into(view, n if n < size else size)
                if not k:
                    raise WrongAnswer("the server closed the connection inside a body")
                take(view[:k])
                n -= k
        return status

    def upload(self, mode, size, pieces, headers):
        rd = self.conn
        head = f"PUT /upload HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if mode == "chunked":
            head += "Transfer-Encoding: chunked\r\n"
        else:
            head += f"Content-Length: {size}\r\n"
        if mode == "expect100":
            head += "Expect: 100-continue\r\n"
        rd.sock.sendall(head.encode() + b"\r\n")
        if mode == "expect100" and (status := rd.head()[0]) != 100:
            raise WrongAnswer(f"expected 100 Continue, got {status}")
        if mode == "chunked":
            for piece in pieces:
                sendmsg_all(rd.sock, [b"%x\r\n" % len(piece), piece, b"\r\n"])
            rd.sock.sendall(b"0\r\n\r\n")
        else:
            for piece in pieces:
                rd.sock.sendall(piece)
        return rd.response()

    def many(self, variant, k, path):
        return self._mux(k, 1, path, k)

    def pooled(self, variant, tasks, url, conns, pipeline):
        return self._mux(conns, pipeline, urlsplit(url).path, tasks)

    def _mux(self, nsocks, depth, path, tasks):
        """run(n, take): tasks x n GETs over nsocks sockets with up to depth in flight
        on each, in one selectors loop."""
        readers = [self._socket() for _ in range(nsocks)]
        req = self._request(path)

        def run(n, take):
            todo, inflight = tasks * n, {}
            with selectors.DefaultSelector() as sel:
                for rd in readers:
                    k = min(depth, todo)
                    if k:
                        rd.sock.sendall(req * k)
                        todo -= k
                        inflight[rd] = k
                        sel.register(rd.sock, selectors.EVENT_READ, rd)
                while inflight:
                    for key, _ in sel.select():
                        rd = key.data
                        rd.fill()
                        got = 0
                        while (answer := rd.parse()) is not None:
                            take(*answer)
                            got += 1
                        more = min(got, todo)
                        if more:
                            rd.sock.sendall(req * more)
                            todo -= more
                        inflight[rd] -= got - more
                        if not inflight[rd]:
                            del inflight[rd]
                            sel.unregister(rd.sock)

        return run


ADAPTERS = {
    "dugong": Dugong,
    "dugong-3.8.2": Dugong,
    "http.client": HttpClient,
    "urllib3": Urllib3,
    "httpx": Httpx,
    "httpx-async": HttpxAsync,
    "aiohttp": Aiohttp,
    "pycurl": Pycurl,
    "floor": Floor,
}
