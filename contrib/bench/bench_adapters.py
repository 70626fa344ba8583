"""One adapter per HTTP client: the few operations the workloads need, in its own idiom.

A worker makes one adapter per row (one workload variant). An adapter has those of
these methods that its client can do; a workload whose method it lacks gets no row:

``connect()`` / ``close()``: open the row's connection (untimed) / close all it opened.
``get(path) -> (status, body)``: one GET on it (W1; asyncio clients: ``aget(url)``).
``send(path)``, ``recv()`` and ``co_send``, ``co_recv``: pipelining (W2).
``download(path, buf, take) -> status``: a body piece by piece to ``take``, by
``read(64 KiB)`` or, given a buffer, ``readinto(buf)`` (W3, W7).
``upload(mode, size, pieces, headers) -> (status, body)``: mode ``plain``,
``expect100`` or ``chunked`` (W4).
``many(variant, k, path)`` / ``pooled(variant, tasks, url, conns, pipeline)``: k tasks
with a connection each (W5) / tasks sharing a few connections (W8); both return
``run(n, take)``, which makes every task do n GETs and hands each answer to
``take(status, body)``. The tasks run under a driver, each written once below:
serial, threads, asyncio, trio, or a loop of co_ generators.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import platform
import selectors
import socket
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from urllib.parse import urlsplit

from bench_servers import ReceiveBuffer

READ_SIZE = 64 * 1024


class WrongAnswer(Exception):
    """A client returned something other than what the server sent."""


class NotSupported(Exception):
    """The client cannot do this variant (its row says n/a)."""


class Unavailable(Exception):
    """This version of the client lacks what the row needs."""


# ---------------------------------------------------------------- drivers


def serial(fns, n, take):
    for get in fns:
        for _ in range(n):
            status, body = get()
            take(status, body)


def in_threads(fns, n, take):
    with ThreadPoolExecutor(len(fns)) as pool:
        for done in [pool.submit(serial, [f], n, take) for f in fns]:
            done.result()


async def atask(aget, n, take):
    for _ in range(n):
        status, body = await aget()
        take(status, body)


def in_asyncio(loop, fns, n, take):
    async def main():
        await asyncio.gather(*(atask(f, n, take) for f in fns))

    loop.run_until_complete(main())


def in_trio(fns, n, take):
    import trio

    async def main():
        async with trio.open_nursery() as nursery:
            for f in fns:
                nursery.start_soon(atask, f, n, take)

    trio.run(main)


def in_loop(run_all, fns, n, take):
    def task(co_get):
        for _ in range(n):
            status, body = yield from co_get()
            take(status, body)

    run_all(*(task(f) for f in fns))


WAIT = object()  # yielded to a PollLoop: park until unpark()


class PollLoop:
    """A selectors loop for co_ generators (dugong 3.8.2 has no eval_coroutines), which
    may also yield `WAIT` to park until another calls unpark() (W2's sender and
    receiver). A registration is kept while its fd is waited on again."""

    def __init__(self, pollin: int):
        self.pollin, self.sel = pollin, selectors.DefaultSelector()
        self.ready, self.parked = deque(), []
        self.waiters: dict[int, dict] = {}  # fd -> {event: generator}
        self.events: dict[int, int] = {}  # fd -> registered events

    def unpark(self) -> None:
        self.ready.extend(self.parked)
        self.parked.clear()

    def run(self, *gens) -> None:
        live = len(gens)
        self.ready.extend(gens)
        with self.sel:
            while live:
                while self.ready:
                    gen = self.ready.popleft()
                    try:
                        want = gen.send(None)
                    except StopIteration:
                        live -= 1
                        continue
                    if want is WAIT:
                        self.parked.append(gen)
                    else:
                        self.wait(gen, want[0], selectors.EVENT_READ
                                  if want[1] & self.pollin else selectors.EVENT_WRITE)
                if live and not any(self.waiters.values()):
                    raise RuntimeError("every generator is parked")
                for key, events in self.sel.select() if live else ():
                    self.wake(key.fd, events)

    def wait(self, gen, fd: int, event: int) -> None:
        self.waiters.setdefault(fd, {})[event] = gen
        had = self.events.get(fd, 0)
        if not had & event:
            (self.sel.modify if had else self.sel.register)(fd, had | event)
            self.events[fd] = had | event

    def wake(self, fd: int, events: int) -> None:
        for event in (selectors.EVENT_READ, selectors.EVENT_WRITE):
            gen = self.waiters[fd].pop(event, None) if events & event else None
            if gen is not None:
                self.ready.append(gen)
            elif events & event:  # nobody waits for it any more
                self.events[fd] &= ~event
                if self.events[fd]:
                    self.sel.modify(fd, self.events[fd])
                else:
                    self.sel.unregister(fd)
                    del self.events[fd]


# ---------------------------------------------------------------- adapters


def pour(body, buf, take):
    """Hand a body to *take* piece by piece: ``body.read(64 KiB)``, or what
    ``body.readinto(buf)`` fills when a buffer is given."""
    if buf is None:
        while data := body.read(READ_SIZE):
            take(data)
            del data  # freed before the next read: W7 measures the peak
    else:
        while k := body.readinto(buf):
            take(buf[:k])


def with_length(mode, size, headers):
    """*headers* and the Content-Length of an upload that is not chunked."""
    return headers if mode == "chunked" else {**headers, "Content-Length": str(size)}


async def aiter_of(pieces):
    for piece in pieces:
        yield piece


class Adapter:
    """What the adapters share; the class attributes say what a client can do."""

    MODULE = ""
    #: W3 variants and their labels (the first also labels W7's stream)
    DOWNLOADS = {"read": "read(64 KiB)", "readinto": "readinto(64 KiB buffer)"}
    UPLOADS = ("plain", "chunked")  # W4 modes
    MANY: dict[str, str] = {}  # W5 variants and their labels
    POOLED: dict[str, str] = {}  # W8 variants and their labels
    PIPELINES = (1,)  # requests in flight per connection in W8
    IDLE = True  # W7 can measure one idle connection

    def __init__(self, lib, host: str | None, port: int):
        self.lib, self.host, self.port = lib, host, port
        self.base = f"http://{host}:{port}"
        self.closers: list = []

    @classmethod
    def load(cls):
        lib = importlib.import_module(cls.MODULE)
        return lib, getattr(lib, "__version__", None) or platform.python_version()

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def opened(self, thing, close="close"):
        self.closers.append(getattr(thing, close))
        return thing

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

    @classmethod
    def load(cls):
        where = os.path.abspath(os.environ["BENCH_DUGONG"])
        sys.path.insert(0, where)
        import dugong

        if not os.path.abspath(dugong.__file__).startswith(where + os.sep):
            raise RuntimeError(f"imported dugong from {dugong.__file__}, not from {where}")
        return dugong, dugong.__version__

    def __init__(self, lib, host, port):
        super().__init__(lib, host, port)
        self.MANY = {"loop": "co_ generators, one epoll loop", "aio": "AioFuture, asyncio"}
        if hasattr(lib, "run_async") and importlib.util.find_spec("anyio"):
            self.MANY["anyio-asyncio"] = "run_async, asyncio"
            if importlib.util.find_spec("trio"):
                self.MANY["anyio-trio"] = "run_async, trio"
        if not lib.__version__.startswith("3."):  # 3.x has no pool
            self.POOLED = {"loop": "ConnectionPool, eval_coroutines",
                           "aio": "ConnectionPool, AioFuture",
                           "anyio-asyncio": "ConnectionPool, run_async (asyncio)",
                           "threads": "ConnectionPool, 32 threads"}

    def connect(self):
        self.conn = self.opened(self.lib.HTTPConnection(self.host, self.port), "disconnect")
        self.conn.connect()

    def get(self, path):
        self.conn.send_request("GET", path)
        return self.recv()

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
        self.conn.send_request("GET", path)
        status = self.conn.read_response().status
        pour(self.conn, buf, take)
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

    def tasks(self, variant, co_fns):
        """run(n, take) for tasks given as co_ generator functions, under *variant*."""
        lib = self.lib
        if variant == "loop":
            run_all = getattr(lib, "eval_coroutines", None) or (
                lambda *gens: PollLoop(lib.POLLIN).run(*gens))  # dugong 3.x
            return partial(in_loop, run_all, co_fns)
        wrap = lib.AioFuture if variant == "aio" else lib.run_async
        afns = [partial(lambda f: wrap(f()), f) for f in co_fns]
        if variant == "anyio-trio":
            return partial(in_trio, afns)
        return partial(in_asyncio, self.opened(asyncio.new_event_loop()), afns)

    def many(self, variant, k, path):
        conns = [self.opened(self.lib.HTTPConnection(self.host, self.port), "disconnect")
                 for _ in range(k)]
        return self.tasks(variant, [partial(self.co_get, conn, path) for conn in conns])

    def pooled(self, variant, tasks, url, conns, pipeline):
        if not hasattr(self.lib, "ConnectionPool"):
            raise Unavailable("this dugong has no ConnectionPool yet")
        pool = self.opened(self.lib.ConnectionPool(max_connections=conns, pipeline=pipeline))
        if variant == "threads":
            return partial(in_threads, [partial(pool_get, pool, url)] * tasks)
        return self.tasks(variant, [partial(co_pool_get, pool, url)] * tasks)


def pool_get(pool, url):
    resp = pool.request("GET", url)
    return resp.status, resp.body


def co_pool_get(pool, url):
    resp = yield from pool.co_request("GET", url)
    return resp.status, resp.body


class HttpClient(Adapter):
    MODULE = "http.client"
    MANY = {"threads": "a thread per connection"}

    def connect(self):
        self.conn = self.opened(self.lib.HTTPConnection(self.host, self.port))
        self.conn.connect()

    def get(self, path, conn=None):
        conn = conn or self.conn
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def download(self, path, buf, take):
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        pour(resp, buf, take)
        return resp.status

    def upload(self, mode, size, pieces, headers):
        self.conn.request("PUT", "/upload", body=pieces, encode_chunked=mode == "chunked",
                          headers=with_length(mode, size, headers))
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def many(self, variant, k, path):
        conns = [self.opened(self.lib.HTTPConnection(self.host, self.port)) for _ in range(k)]
        return partial(in_threads, [partial(self.get, path, conn) for conn in conns])


def fetch(pool, target):
    """One GET through a urllib3 pool (a path) or pool manager (a URL)."""
    resp = pool.request("GET", target)
    return resp.status, resp.data


class Urllib3(Adapter):
    MODULE = "urllib3"
    POOLED = {"threads": "PoolManager(maxsize=8, block=True), 32 threads"}

    def connect(self):
        self.conn = self.opened(self.lib.HTTPConnectionPool(self.host, self.port, maxsize=1,
                                                            retries=False))

    def get(self, path):
        return fetch(self.conn, path)

    def download(self, path, buf, take):
        resp = self.conn.request("GET", path, preload_content=False)
        pour(resp, buf, take)
        resp.release_conn()
        return resp.status

    def upload(self, mode, size, pieces, headers):
        resp = self.conn.urlopen("PUT", "/upload", body=pieces, chunked=mode == "chunked",
                                 headers=with_length(mode, size, headers))
        return resp.status, resp.data

    def pooled(self, variant, tasks, url, conns, pipeline):
        manager = self.opened(self.lib.PoolManager(maxsize=conns, block=True, retries=False),
                              "clear")
        return partial(in_threads, [partial(fetch, manager, url)] * tasks)


class Httpx(Adapter):
    MODULE = "httpx"
    DOWNLOADS = {"read": "iter_bytes(64 KiB)"}
    IDLE = False  # no object for one connection

    def connect(self):
        self.client = self.opened(self.lib.Client(trust_env=False, timeout=60))

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
                               headers=with_length(mode, size, headers))
        return resp.status_code, resp.content


class AsyncAdapter(Adapter):
    """An asyncio client: the row's event loop runs each call; W1 is one task."""

    MANY = {"asyncio": "asyncio tasks"}
    IDLE = False  # no object for one connection

    def connect(self, limit=1):
        self.loop = self.opened(asyncio.new_event_loop())
        self.loop.run_until_complete(self.aopen(limit))
        self.closers.append(lambda: self.loop.run_until_complete(self.aclose()))

    def sequential(self, path):
        return partial(in_asyncio, self.loop, [partial(self.aget, self.base + path)])

    def download(self, path, buf, take):
        return self.loop.run_until_complete(self.adownload(self.base + path, take))

    def upload(self, mode, size, pieces, headers):
        headers = with_length(mode, size, headers)
        return self.loop.run_until_complete(self.aupload(mode, aiter_of(pieces), headers))

    def many(self, variant, k, path):
        return self.pooled(variant, k, self.base + path, k, 1)

    def pooled(self, variant, tasks, url, conns, pipeline):
        self.connect(conns)
        return partial(in_asyncio, self.loop, [partial(self.aget, url)] * tasks)


class HttpxAsync(AsyncAdapter):
    MODULE = "httpx"
    DOWNLOADS = {"read": "aiter_bytes(64 KiB)"}
    POOLED = {"asyncio": "AsyncClient(limits 8), 32 tasks"}

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
    MODULE = "aiohttp"
    DOWNLOADS = {"read": "content.read(64 KiB)"}
    UPLOADS = ("plain", "expect100", "chunked")
    POOLED = {"asyncio": "ClientSession(limit 8), 32 tasks"}

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
            while data := await resp.content.read(READ_SIZE):
                take(data)
                del data
        return resp.status

    async def aupload(self, mode, body, headers):
        async with self.session.put(self.base + "/upload", data=body, headers=headers,
                                    expect100=mode == "expect100") as resp:
            return resp.status, await resp.read()


class Pycurl(Adapter):
    MODULE = "pycurl"
    DOWNLOADS = {"read": "write callback, 64 KiB buffer"}
    UPLOADS = ("plain", "expect100", "chunked")
    MANY = {"multi": "CurlMulti"}
    POOLED = {"multi": "CurlMulti, 8 handles"}
    IDLE = False  # libcurl's memory is not traced

    @classmethod
    def load(cls):
        lib = importlib.import_module(cls.MODULE)
        return lib, lib.version.split()[0]

    def easy(self, url):
        pc = self.lib
        c = self.opened(pc.Curl())
        for option, value in ((pc.NOSIGNAL, 1), (pc.PROXY, ""), (pc.NOPROXY, "*"),
                              (pc.TCP_NODELAY, 1), (pc.BUFFERSIZE, READ_SIZE), (pc.URL, url)):
            c.setopt(option, value)
        return c

    def connect(self):
        self.conn = self.easy(self.base)

    def perform(self, path, write):
        c = self.conn
        c.setopt(self.lib.URL, self.base + path)
        c.setopt(self.lib.WRITEFUNCTION, write)
        c.perform()
        return c.getinfo(self.lib.RESPONSE_CODE)

    def get(self, path):
        parts = []
        return self.perform(path, parts.append), b"".join(parts)

    def download(self, path, buf, take):
        return self.perform(path, take)

    def upload(self, mode, size, pieces, headers):
        pc, c, parts = self.lib, self.conn, []
        fields = [f"{name}: {value}" for name, value in headers.items()]
        fields += {"plain": ["Expect:"], "expect100": ["Expect: 100-continue"],
                   "chunked": ["Transfer-Encoding: chunked", "Expect:"]}[mode]
        pieces, rest = iter(pieces), [b""]

        def read(n):  # pieces split where curl asks for less
            data = rest[0] or next(pieces, b"")
            rest[0] = data[n:]
            return data[:n]

        for option, value in ((pc.UPLOAD, 1), (pc.HTTPHEADER, fields), (pc.READFUNCTION, read),
                              (pc.INFILESIZE_LARGE, -1 if mode == "chunked" else size)):
            c.setopt(option, value)
        return self.perform("/upload", parts.append), b"".join(parts)

    def many(self, variant, k, path):
        return self.pooled(variant, k, self.base + path, k, 1)

    def pooled(self, variant, tasks, url, conns, pipeline):
        """run(n, take): tasks x n GETs of *url* through *conns* handles of a CurlMulti."""
        pc = self.lib
        multi = self.opened(pc.CurlMulti())
        handles = [self.easy(url) for _ in range(conns)]

        def run(n, take):
            todo, bodies = tasks * n, {}

            def start(h):
                nonlocal todo
                todo -= 1
                bodies[h] = []
                h.setopt(pc.WRITEFUNCTION, bodies[h].append)
                multi.add_handle(h)

            for h in handles[:todo]:
                start(h)
            while bodies:
                while multi.perform()[0] == pc.E_CALL_MULTI_PERFORM:
                    pass
                queued, started = 1, False
                while queued:
                    queued, done, failed = multi.info_read()
                    if failed:
                        raise WrongAnswer(f"curl: {failed[0][2]}")
                    for h in done:
                        multi.remove_handle(h)
                        take(h.getinfo(pc.RESPONSE_CODE), b"".join(bodies.pop(h)))
                        if todo:
                            start(h)
                            started = True
                if bodies and not started:
                    multi.select(1.0)

        return run


class Reader(ReceiveBuffer):
    """The floor's receive buffer: it finds where each response ends, nothing more."""

    def head(self, start, end):
        buf = self.buf
        i = buf.find(b"\r\nContent-Length: ", start, end)
        length = int(buf[i + 18:buf.find(b"\r", i + 18, end + 2)]) if i >= 0 else 0
        return int(buf[start + 9:start + 12]), length, end + 4

    def next_head(self):
        """Consume one response head: (status, Content-Length)."""
        while (i := self.buf.find(b"\r\n\r\n", self.start, self.end)) < 0:
            self.fill()
        status, length, self.start = self.head(self.start, i)
        return status, length

    def parse(self):
        """The next whole response in the buffer as (status, body), or None."""
        i = self.buf.find(b"\r\n\r\n", self.start, self.end)
        if i < 0:
            return None
        status, length, body = self.head(self.start, i)
        if body + length > self.end:
            return None
        self.start = body + length
        return status, bytes(self.view[body:self.start])

    def response(self):
        while (answer := self.parse()) is None:
            self.fill()
        return answer


class Requests(dict):
    """The floor's pre-built GET requests, by path."""

    def __init__(self, host):
        self.host = host

    def __missing__(self, path):
        self[path] = req = (f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                            "Accept-Encoding: identity\r\n\r\n").encode()
        return req


def sendmsg_all(sock, parts):
    sent = sock.sendmsg(parts)
    for part in parts:  # a partial send is rare on a blocking socket
        if sent < len(part):
            sock.sendall(memoryview(part)[sent:])
        sent = max(0, sent - len(part))


class Floor(Adapter):
    """The raw-socket floor: the same traffic as the clients with as little Python as it
    takes: pre-built requests, a page-aligned 64 KiB receive buffer, and only enough
    parsing to find where each response ends."""

    DOWNLOADS = {"readinto": "recv_into(64 KiB buffer)"}
    UPLOADS = ("plain", "expect100", "chunked")
    MANY = {"loop": "one epoll loop"}
    POOLED = {"loop": "8 sockets, one epoll loop"}
    PIPELINES = (1, 16)

    @classmethod
    def load(cls):
        return None, "-"

    def __init__(self, lib, host, port):
        super().__init__(lib, host, port)
        self.requests = Requests(f"{host}:{port}")

    def socket(self):
        sock = self.opened(socket.create_connection((self.host, self.port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Reader(sock, READ_SIZE)

    def connect(self):
        self.conn = self.socket()

    def send(self, path):
        self.conn.sock.sendall(self.requests[path])

    def recv(self):
        return self.conn.response()

    def get(self, path):
        self.conn.sock.sendall(self.requests[path])
        return self.conn.response()

    def download(self, path, buf, take):
        self.send(path)
        status, n = self.conn.next_head()
        self.conn.stream(n, take, buf)
        return status

    def upload(self, mode, size, pieces, headers):
        rd = self.conn
        fields = {**headers, "Expect": "100-continue"} if mode == "expect100" else headers
        head = "".join(f"{name}: {value}\r\n" for name, value in with_length(mode, size, {
            "Host": f"{self.host}:{self.port}", **fields}).items())
        chunked = "Transfer-Encoding: chunked\r\n" if mode == "chunked" else ""
        rd.sock.sendall(f"PUT /upload HTTP/1.1\r\n{head}{chunked}\r\n".encode())
        if mode == "expect100" and (status := rd.next_head()[0]) != 100:
            raise WrongAnswer(f"expected 100 Continue, got {status}")
        for piece in pieces:
            if mode == "chunked":
                sendmsg_all(rd.sock, [b"%x\r\n" % len(piece), piece, b"\r\n"])
            else:
                rd.sock.sendall(piece)
        if mode == "chunked":
            rd.sock.sendall(b"0\r\n\r\n")
        return rd.response()

    def many(self, variant, k, path):
        return self.pooled(variant, k, path, k, 1)

    def pooled(self, variant, tasks, url, conns, pipeline):
        """run(n, take): tasks x n GETs over *conns* sockets, up to *pipeline* in flight
        on each, in one selectors loop."""
        readers = [self.socket() for _ in range(conns)]
        req = self.requests[urlsplit(url).path]

        def run(n, take):
            todo, inflight = tasks * n, {}
            with selectors.DefaultSelector() as sel:
                for rd in readers:
                    if k := min(pipeline, todo):
                        rd.sock.sendall(req * k)
                        todo -= k
                        inflight[rd] = k
                        sel.register(rd.sock, selectors.EVENT_READ, rd)
                while inflight:
                    for key, _ in sel.select():
                        rd, got = key.data, 0
                        rd.fill()
                        while (answer := rd.parse()) is not None:
                            take(*answer)
                            got += 1
                        if more := min(got, todo):
                            rd.sock.sendall(req * more)
                            todo -= more
                        inflight[rd] -= got - more
                        if not inflight[rd]:
                            del inflight[rd]
                            sel.unregister(rd.sock)

        return run


ADAPTERS = {"dugong": Dugong, "dugong-3.8.2": Dugong, "http.client": HttpClient,
            "urllib3": Urllib3, "httpx": Httpx, "httpx-async": HttpxAsync, "aiohttp": Aiohttp,
            "pycurl": Pycurl, "floor": Floor}
