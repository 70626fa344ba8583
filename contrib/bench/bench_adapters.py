"""One adapter per HTTP client: the few operations the workloads need, in its idiom.

An adapter has rows in the workloads of its ``WORKLOADS``, with the methods they use:
``connect``, ``close``; ``get``, ``send``, ``recv``, ``window`` (W1, W2, W7);
``download`` (W3, W7); ``upload`` (W4); ``many`` and ``pooled`` (W5, W8), which return
``run(n, take)``: every task does n GETs, under one of the drivers below."""

import asyncio
import importlib
import os
import platform
import selectors
import socket
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from select import POLLERR, POLLHUP, POLLIN, POLLOUT, poll
from urllib.parse import urlsplit

from bench_servers import ReceiveBuffer

READ_SIZE = 64 * 1024


class WrongAnswer(Exception):
    """A client returned something other than what the server sent."""


def in_threads(gets, n, take):
    def task(get):
        for _ in range(n):
            take(*get())

    with ThreadPoolExecutor(len(gets)) as pool:
        list(pool.map(task, gets))  # raises what a task raised


async def repeat(wrap, fn, n, take):
    """One task: n times, await what *wrap* makes of fn()'s return value."""
    for _ in range(n):
        take(*await wrap(fn()))


def in_asyncio(loop, wrap, fns, n, take):
    tasks = [loop.create_task(repeat(wrap, fn, n, take)) for fn in fns]
    loop.run_until_complete(asyncio.gather(*tasks))


def in_trio(wrap, fns, n, take):
    import trio

    async def main():
        async with trio.open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(repeat, wrap, fn, n, take)

    trio.run(main)


def in_loop(run_all, co_gets, n, take):
    def task(co_get):
        for _ in range(n):
            take(*(yield from co_get()))

    run_all(*(task(co_get) for co_get in co_gets))


WAIT = object()  # yielded to a PollLoop: sleep until wake()


class PollLoop:
    """A poll() loop for co_ generators (dugong 3.8.2 has no eval_coroutines); one may yield
    `WAIT` to sleep until another calls wake(). An fd stays registered while in use."""

    def __init__(self):
        self.poll, self.ready, self.asleep = poll(), deque(), []
        self.waiting = {}  # (fd, POLLIN or POLLOUT) -> the generator waiting for it
        self.masks = {}  # fd -> the events it is registered for

    def wake(self) -> None:
        self.ready.extend(self.asleep)
        self.asleep.clear()

    def run(self, *gens) -> None:
        live = len(gens)
        self.ready.extend(gens)
        while live:
            while self.ready:
                gen = self.ready.popleft()
                try:
                    want = gen.send(None)
                except StopIteration:
                    live -= 1
                    continue
                if want is WAIT:
                    self.asleep.append(gen)
                    continue
                fd, event = want[0], POLLIN if want[1] & POLLIN else POLLOUT
                self.waiting[fd, event] = gen
                if not self.masks.get(fd, 0) & event:
                    self.watch(fd, self.masks.get(fd, 0) | event)
            if live and not self.waiting:
                raise RuntimeError("every generator is asleep")
            for fd, events in self.poll.poll() if live else ():
                for event in (POLLIN, POLLOUT):
                    if self.masks.get(fd, 0) & event and events & (event | POLLERR | POLLHUP):
                        if (gen := self.waiting.pop((fd, event), None)) is not None:
                            self.ready.append(gen)
                        else:  # nobody waits for it any more
                            self.watch(fd, self.masks[fd] & ~event)

    def watch(self, fd: int, mask: int) -> None:
        if mask:
            self.poll.register(fd, mask)  # or modify the registration
            self.masks[fd] = mask
        else:
            self.poll.unregister(fd)
            del self.masks[fd]


class Adapter:
    """What the adapters share; the class attributes say which rows a client has."""

    WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")
    IMPORT = "pass"  # W6's command
    #: W3's variants and labels (the first also labels W7's stream)
    DOWNLOADS = {"read": "read(64 KiB)", "readinto": "readinto(64 KiB buffer)"}
    UPLOADS = {
        "plain": "Content-Length",
        "expect100": "Content-Length + 100-continue",
        "chunked": "chunked",
    }  # W4's
    MANY: dict[str, str] = {}  # W5's
    POOLED: dict[str, str] = {}  # W8's
    PIPELINES = (1,)  # requests in flight per connection in W8
    CLOSE = "close"  # the method that closes a connection

    def __init__(self, lib, host: str | None, port: int):
        self.lib, self.host, self.port = lib, host, port
        self.closers: list = []

    @classmethod
    def load(cls):
        """The module and its version: ``__version__``, pycurl's first two words, or Python's."""
        lib = importlib.import_module(cls.MODULE)
        version = getattr(lib, "__version__", None) or getattr(lib, "version", "")
        return lib, " ".join(version.split()[:2]) or platform.python_version()

    def opened(self, thing, close="close"):
        """*thing*, to be closed by its method *close* when the row is."""
        self.closers.append(getattr(thing, close))
        return thing

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def connect(self):
        self.conn = self.opened(self.lib.HTTPConnection(self.host, self.port), self.CLOSE)
        self.conn.connect()

    def get(self, path):
        self.send(path)
        return self.recv()

    def download(self, path, buf, take):
        """The status; the body to *take*: each ``read(64 KiB)``, or what readinto(buf) fills."""
        self.send(path)
        status, body = self.response()
        if buf is None:
            while data := body.read(READ_SIZE):
                take(data)
                del data  # freed before the next read: W7 measures the peak
        else:
            while k := body.readinto(buf):
                take(buf[:k])
        return status

    def many(self, variant, k, path):
        return self.pooled(variant, k, f"http://{self.host}:{self.port}{path}", k, 1)

    def pooled(self, variant, tasks, url, conns, pipeline):
        """Of an asyncio client (aiohttp, httpx): *tasks* asyncio tasks await fetch(c, url),
        c made by the coroutine client(conns)."""
        loop = self.opened(asyncio.new_event_loop())
        c = loop.run_until_complete(self.client(conns))  # in the loop it is bound to
        aclose = getattr(c, "aclose", None) or c.close  # httpx's, aiohttp's
        self.closers.append(lambda: loop.run_until_complete(aclose()))
        fetches = [partial(self.fetch, c, url)] * tasks
        return partial(in_asyncio, loop, lambda coroutine: coroutine, fetches)


class Dugong(Adapter):
    """This dugong, or dugong 3.8.2: the same API, but what 3.8.2 lacks has no row."""

    PIPELINES = (1, 16)
    IMPORT = "import dugong"
    WINDOW = "co_ sender+receiver"
    CLOSE = "disconnect"

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
        self.MANY = {"loop": "co_ generators, eval_coroutines", "aio": "AioFuture, asyncio"}
        if lib.__version__.startswith("3."):
            self.MANY["loop"] = "co_ generators, a poll() loop"  # it has no eval_coroutines
            self.UPLOADS = {k: v for k, v in self.UPLOADS.items() if k != "chunked"}
        else:
            self.MANY |= {"anyio-asyncio": "run_async, asyncio", "anyio-trio": "run_async, trio"}
            self.POOLED = {
                "loop": "ConnectionPool, eval_coroutines",
                "aio": "ConnectionPool, AioFuture",
                "anyio-asyncio": "ConnectionPool, run_async (asyncio)",
                "threads": "ConnectionPool, 32 threads",
            }

    def send(self, path):
        self.conn.send_request("GET", path)

    def recv(self):
        return self.conn.read_response().status, self.conn.readall()

    def window(self, path, n, depth, take):
        """W2's co pattern: a sender and a receiver co_ generator in one loop."""
        conn, loop, done = self.conn, PollLoop(), 0

        def sender():
            for i in range(n):
                while i - done >= depth:
                    yield WAIT
                yield from conn.co_send_request("GET", path)
                loop.wake()  # the receiver may be waiting for a request

        def receiver():
            nonlocal done
            for _ in range(n):
                while not conn.response_pending():
                    yield WAIT
                resp = yield from conn.co_read_response()
                take(resp.status, (yield from conn.co_readall()))
                done += 1
                loop.wake()

        loop.run(sender(), receiver())

    def response(self):
        return self.conn.read_response().status, self.conn

    def upload(self, mode, size, pieces, headers):
        conn, body = self.conn, self.lib.BodyFollowing(None if mode == "chunked" else size)
        expect100 = mode == "expect100"
        conn.send_request("PUT", "/upload", headers=headers, body=body, expect100=expect100)
        if expect100 and (status := conn.read_response().status) != 100:
            raise WrongAnswer(f"expected 100 Continue, got {status}")
        for piece in pieces:
            conn.write(piece)
        if mode == "chunked":
            conn.write(b"")
        return self.recv()

    def run_all(self, *gens):
        """Run co_ generators concurrently: eval_coroutines, or (3.8.2) a PollLoop."""
        run = getattr(self.lib, "eval_coroutines", None)
        return run(*gens) if run is not None else PollLoop().run(*gens)

    def drive(self, variant, co_gets):
        """run(n, take) of tasks given as co_ generator functions, under *variant*."""
        if variant == "loop":
            return partial(in_loop, self.run_all, co_gets)
        wrap = self.lib.AioFuture if variant == "aio" else self.lib.run_async
        if variant == "anyio-trio":
            return partial(in_trio, wrap, co_gets)
        return partial(in_asyncio, self.opened(asyncio.new_event_loop()), wrap, co_gets)

    def many(self, variant, k, path):
        def co_get(conn):
            yield from conn.co_send_request("GET", path)
            resp = yield from conn.co_read_response()
            return resp.status, (yield from conn.co_readall())

        def task(conn, n, take):
            for _ in range(n):
                yield from conn.co_send_request("GET", path)
                resp = yield from conn.co_read_response()
                take(resp.status, (yield from conn.co_readall()))

        new = partial(self.lib.HTTPConnection, self.host, self.port)
        conns = [self.opened(new(), self.CLOSE) for _ in range(k)]
        if variant == "loop":  # a generator per connection, as a select loop's program has it
            return lambda n, take: self.run_all(*(task(conn, n, take) for conn in conns))
        return self.drive(variant, [partial(co_get, conn) for conn in conns])

    def pooled(self, variant, tasks, url, conns, pipeline):
        pool = self.opened(self.lib.ConnectionPool(max_connections=conns, pipeline=pipeline))

        def get():
            resp = pool.request("GET", url)
            return resp.status, resp.body

        def co_get():
            resp = yield from pool.co_request("GET", url)
            return resp.status, resp.body

        if variant == "threads":
            return partial(in_threads, [get] * tasks)
        return self.drive(variant, [co_get] * tasks)


class HttpClient(Adapter):
    MODULE = "http.client"
    WORKLOADS = ("W1", "W3", "W6")  # where a goal compares with it
    IMPORT = "import http.client"

    def send(self, path):
        self.conn.request("GET", path)

    def recv(self):
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def response(self):
        resp = self.conn.getresponse()
        return resp.status, resp


class Urllib3(Adapter):
    MODULE = "urllib3"
    WORKLOADS = ("W8",)  # where a goal compares with it
    POOLED = {"threads": "PoolManager(maxsize=8, block=True), 32 threads"}

    def pooled(self, variant, tasks, url, conns, pipeline):
        manager = self.lib.PoolManager(maxsize=conns, block=True, retries=False)
        self.opened(manager, "clear")

        def get():
            resp = manager.request("GET", url)
            return resp.status, resp.data

        return partial(in_threads, [get] * tasks)


class Aiohttp(Adapter):
    MODULE = "aiohttp"
    WORKLOADS = ("W5", "W8")  # where a goal compares with it
    MANY = {"asyncio": "asyncio tasks"}
    POOLED = {"asyncio": "ClientSession(limit 8), 32 tasks"}

    async def client(self, conns):
        lib = self.lib
        connector = lib.TCPConnector(limit=conns, limit_per_host=conns)
        timeout = lib.ClientTimeout(total=None, sock_read=60)
        return lib.ClientSession(connector=connector, auto_decompress=False, timeout=timeout)

    async def fetch(self, session, url):
        async with session.get(url) as resp:
            return resp.status, await resp.read()


class Httpx(Adapter):
    MODULE = "httpx"
    WORKLOADS = ("W8",)  # where a goal's rows are compared side by side
    POOLED = {"asyncio": "AsyncClient(limits 8), 32 tasks"}

    async def client(self, conns):
        limits = self.lib.Limits(max_connections=conns, max_keepalive_connections=conns)
        return self.lib.AsyncClient(trust_env=False, timeout=60, limits=limits)

    async def fetch(self, client, url):
        resp = await client.get(url)
        return resp.status_code, resp.content


class Pycurl(Adapter):
    MODULE = "pycurl"
    WORKLOADS = ("W8",)  # where a goal's rows are compared side by side
    POOLED = {"multi": "CurlMulti, 8 handles"}

    def pooled(self, variant, tasks, url, conns, pipeline):
        """*conns* easy handles of one CurlMulti, each taking the next GET when it is done."""
        pc = self.lib
        multi = self.opened(pc.CurlMulti())
        multi.setopt(pc.M_MAX_TOTAL_CONNECTIONS, conns)
        handles = [self.opened(pc.Curl()) for _ in range(conns)]
        for h in handles:
            h.setopt(pc.URL, url)
            h.setopt(pc.PROXY, "")  # none from the environment

        def run(n, take):
            todo, bodies, idle = tasks * n, {}, list(handles)
            while todo or bodies:
                while idle and todo:
                    h, todo = idle.pop(), todo - 1
                    bodies[h] = []
                    h.setopt(pc.WRITEFUNCTION, bodies[h].append)
                    multi.add_handle(h)
                if multi.perform()[1] == len(bodies):  # none done yet
                    multi.select(1.0)
                    continue
                _, done, failed = multi.info_read()  # all of them: at most 1000
                if failed:
                    raise WrongAnswer(f"curl: {failed[0][2]}")
                for h in done:
                    multi.remove_handle(h)
                    take(h.getinfo(pc.RESPONSE_CODE), b"".join(bodies.pop(h)))
                    idle.append(h)

        return run


class Floor(Adapter):
    """The raw-socket floor: the same traffic with as little Python as it takes."""

    MODULE = "socket"
    DOWNLOADS = {"readinto": "recv_into(64 KiB buffer)"}  # into its own buffer
    MANY = {"loop": "one epoll loop"}
    POOLED = {"loop": "8 sockets, one epoll loop"}
    PIPELINES = (1, 16)
    WINDOW = "one send() per answer read"

    def __init__(self, lib, host, port):
        super().__init__(lib, host, port)
        self.requests = {}  # path -> its GET request, pre-built

    def request(self, path):
        head = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        self.requests[path] = req = f"{head}Accept-Encoding: identity\r\n\r\n".encode()
        return req

    def connect(self):
        """A new connection, also the row's (the last made)."""
        sock = self.opened(socket.create_connection((self.host, self.port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = ReceiveBuffer(sock, READ_SIZE)
        return self.conn

    def send(self, path):
        self.conn.sock.sendall(self.requests.get(path) or self.request(path))

    def recv(self):
        while (answer := self.conn.parse()) is None:
            self.conn.fill()
        return answer

    def window(self, path, n, depth, take):
        """W2's co pattern in blocking calls: one request sent per answer read."""
        for _ in range(min(depth, n)):
            self.send(path)
        for i in range(n):
            take(*self.recv())
            if i + depth < n:
                self.send(path)

    def download(self, path, buf, take):
        self.send(path)
        status, n = self.conn.next_head()
        self.conn.stream(n, take)
        return status

    def upload(self, mode, size, pieces, headers):
        sock, length = self.conn.sock, f"Content-Length: {size}\r\n"
        framing = {"plain": length, "expect100": f"{length}Expect: 100-continue\r\n"}
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        fields += framing.get(mode, "Transfer-Encoding: chunked\r\n")
        head = f"PUT /upload HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{fields}\r\n"
        sock.sendall(head.encode())
        if mode == "expect100" and (status := self.conn.next_head()[0]) != 100:
            raise WrongAnswer(f"expected 100 Continue, got {status}")
        for piece in pieces:
            if mode == "chunked":  # a blocking socket sends all three, without a copy
                sock.sendmsg([b"%x\r\n" % len(piece), piece, b"\r\n"])
            else:
                sock.sendall(piece)
        if mode == "chunked":
            sock.sendall(b"0\r\n\r\n")
        return self.recv()

    def pooled(self, variant, tasks, url, conns, pipeline):
        """*conns* sockets in one selectors loop, with as many requests in flight as there
        are tasks (each waits for its answer), spread evenly, at most *pipeline* a socket."""
        readers = [self.connect() for _ in range(conns)]
        req = self.request(urlsplit(url).path)
        depth = min(pipeline, -(-tasks // conns))

        def run(n, take):
            todo, inflight = tasks * n, {}
            with selectors.DefaultSelector() as sel:
                for rd in readers:
                    if k := min(depth, todo):
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


#: the clients, in the order of the report's rows
ADAPTERS = {"dugong": Dugong, "dugong-3.8.2": Dugong, "http.client": HttpClient}
ADAPTERS |= {"urllib3": Urllib3, "aiohttp": Aiohttp, "httpx": Httpx, "pycurl": Pycurl}
ADAPTERS |= {"floor": Floor}
