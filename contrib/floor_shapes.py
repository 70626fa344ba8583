"""How close Python can come to the raw-socket floor in the shapes of W1, W2, W5 and W8.

The benchmark (``make bench``) compares dugong with a raw-socket floor. This tool
measures what lies between the two, against one nginx that it starts, each
figure the median of several rounds run in turn:

W1 (one connection, one GET at a time; nginx and this process on one CPU, as in the
benchmark):
  floor       the benchmark's floor
  poll        the same, with a poll(0) before each request, as dugong makes to notice
              a server that closed the idle connection
  api-shape   poll's work in the shape of dugong's API: three method calls per
              request, read_response returning an object
  dugong      HTTPConnection's send_request, read_response and readall

W2 (one connection, depth D = 16 and 64; the benchmark's two patterns):
  co: D requests in flight, a sender and a receiver generator in the benchmark's
  own poll loop (the benchmark's floor makes the same traffic in blocking calls):
  floor       the benchmark's floor: one send per answer read, no generators
  generators  the same socket calls and parsing as the two generators
  api-shape   the same, in the shape of dugong's co_ API: per request a generator
              that sends, one that waits for the head, one for the body
  dugong      HTTPConnection's co_ methods in the same two generators
  batch: send D requests, then read D answers, in blocking calls:
  floor       the benchmark's floor
  dugong      HTTPConnection's send_request, read_response and readall

W5 (32 connections, one GET of 1 KiB in flight on each):
  floor       the benchmark's floor: one epoll loop, no generators
  generators  the same socket calls and parsing, one generator per connection,
              in `dugong.eval_coroutines`
  api-shape   the same, in the shape of dugong's co_ API: per request a generator
              that sends (after a poll(0) for an idle drop), one that waits for
              the head, one for the body
  no-poll     api-shape without the poll
  dugong      HTTPConnection's co_ methods in eval_coroutines

W8 (32 callers, 8 connections, up to P requests in flight on one):
  floor       the benchmark's floor for P
  pool        a minimal pipelining pool of generators: each request on the least
              loaded socket, the caller that reads a socket hands each answer to
              its caller in order; no locks, retries or HTTP library
  collected   the same, a socket's requests collected and sent together, as
              dugong's pool does: the first caller yields a wait that is over at
              once (PollNeeded._now), the next ones add theirs meanwhile
  dugong      ConnectionPool(pipeline=P) in eval_coroutines

    python contrib/floor_shapes.py [--rounds 3] [--requests 3000]

(Needs nginx, like the benchmark; `make bench-quick` installs what it needs.)
"""

import argparse
import os
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import deque
from select import POLLIN, POLLOUT, poll

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(HERE, "bench")]

import bench_servers as servers  # noqa: E402
from bench_adapters import WAIT, Dugong, Floor, PollLoop  # noqa: E402

import dugong  # noqa: E402

CALLERS = 32
REQUEST = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n\r\n"


def take(status, body):
    if status != 200 or len(body) != servers.SMALL_SIZE:
        raise RuntimeError(f"a wrong answer: {status}, {len(body)} bytes")


class Head:
    """What a shape's read_response (or co_ twin) returns."""

    __slots__ = ("status",)


class Raw:
    """A non-blocking socket to nginx, its receive buffer and what it yields to wait."""

    def __init__(self, port):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock, self.rb = sock, servers.ReceiveBuffer(sock, 64 * 1024)
        self.request = REQUEST % port
        self.wait = dugong.PollNeeded(sock.fileno(), POLLIN)
        self.idle = poll()
        self.idle.register(sock.fileno(), POLLIN)
        self.answer = None

    def co_send(self):
        """Send the request, as a generator that never waits."""
        self.sock.send(self.request)
        return
        yield

    def co_answer(self):
        """The next whole answer: (status, body)."""
        while (answer := self.rb.parse()) is None:
            yield self.wait
            self.rb.fill()
        return answer

    # The next answer in the shape of dugong's co_ API: one generator waits for it and
    # returns an object with its status (as co_read_response), one gives the body (as
    # co_readall), each with no generator inside.

    def co_head(self):
        while (answer := self.rb.parse()) is None:
            yield self.wait
            self.rb.fill()
        self.answer = answer
        head = Head()
        head.status = answer[0]
        return head

    def co_body(self):
        answer, self.answer = self.answer, None
        return answer[1]
        yield


# ------------------------------------------------------------------------ W1's shapes


def w1_client(lib, port, n, idle_check=False):
    """The benchmark's own W1 code for *lib*; with *idle_check*, a poll(0) per request."""
    a = (Floor if lib is socket else Dugong)(lib, "127.0.0.1", port)
    a.connect()
    idle = poll()
    if idle_check:
        idle.register(a.conn.sock.fileno(), POLLIN)

    def run():
        for _ in range(n):
            if idle_check and idle.poll(0):
                raise ConnectionError("dropped while idle")
            take(*a.get("/1k"))

    return run


class Shape:
    """The floor's socket calls and parsing behind dugong's three blocking calls."""

    def __init__(self, port):
        self.floor = Floor(socket, "127.0.0.1", port)
        self.rb, self.answer = self.floor.connect(), None
        idle = poll()
        idle.register(self.rb.sock.fileno(), POLLIN)
        self.idle = idle.poll

    def send_request(self, method, path):
        if self.idle(0):
            raise ConnectionError("dropped while idle")
        self.rb.sock.send(self.floor.requests.get(path) or self.floor.request(path))

    def read_response(self):
        while (answer := self.rb.parse()) is None:
            self.rb.fill()
        self.answer = answer
        head = Head()
        head.status = answer[0]
        return head

    def readall(self):
        answer, self.answer = self.answer, None
        return answer[1]


def w1_api_shape(port, n):
    conn = Shape(port)

    def run():
        for _ in range(n):
            conn.send_request("GET", "/1k")
            resp = conn.read_response()
            take(resp.status, conn.readall())

    return run


# ------------------------------------------------------------------------ W2's shapes


def w2_window(s, n, depth, api_shape):
    """W2's co pattern with the floor's socket *s*: a sender and a receiver generator
    in the benchmark's poll loop, *depth* requests in flight; with *api_shape*, they
    send and receive through generators in the shape of dugong's co_ API."""

    def run():
        loop, sent, answered = PollLoop(), [0], [0]

        def sender():
            for i in range(n):
                while i - answered[0] >= depth:
                    yield WAIT
                if api_shape:
                    yield from s.co_send()
                else:
                    s.sock.send(s.request)
                sent[0] += 1
                loop.wake()

        def receiver():
            for _ in range(n):
                while sent[0] == answered[0]:
                    yield WAIT
                if api_shape:
                    head = yield from s.co_head()
                    take(head.status, (yield from s.co_body()))
                else:
                    take(*(yield from s.co_answer()))
                answered[0] += 1
                loop.wake()

        loop.run(sender(), receiver())

    return run


def w2_generators(port, n, depth):
    return w2_window(Raw(port), n, depth, False)


def w2_api_shape(port, n, depth):
    return w2_window(Raw(port), n, depth, True)


def w2_client(lib, port, n, depth, batch):
    """The benchmark's own W2 code for *lib* (dugong, or the floor's socket)."""
    a = (Floor if lib is socket else Dugong)(lib, "127.0.0.1", port)
    a.connect()
    if not batch:
        return lambda: a.window("/1k", n, depth, take)

    def run():
        for done in range(0, n, depth):
            for _ in range(min(depth, n - done)):
                a.send("/1k")
            for _ in range(min(depth, n - done)):
                take(*a.recv())

    return run


# ------------------------------------------------------------------------ W5's shapes


def w5_generators(port, n):
    socks = [Raw(port) for _ in range(CALLERS)]

    def task(s):
        for _ in range(n):
            s.sock.send(s.request)
            take(*(yield from s.co_answer()))

    return lambda: dugong.eval_coroutines(*map(task, socks))


def w5_api_shape(port, n, idle_check=True):
    socks = [Raw(port) for _ in range(CALLERS)]

    def co_send(s):
        if idle_check and s.idle.poll(0):
            raise ConnectionError("dropped while idle")
        s.sock.send(s.request)
        return
        yield

    def task(s):
        for _ in range(n):
            yield from co_send(s)
            head = yield from s.co_head()
            take(head.status, (yield from s.co_body()))

    return lambda: dugong.eval_coroutines(*map(task, socks))


def w5_dugong(port, n):
    conns = [dugong.HTTPConnection("127.0.0.1", port) for _ in range(CALLERS)]

    def task(conn):
        for _ in range(n):
            yield from conn.co_send_request("GET", "/1k")
            resp = yield from conn.co_read_response()
            take(resp.status, (yield from conn.co_readall()))

    return lambda: dugong.eval_coroutines(*map(task, conns))


def floor(port, n, conns, depth):
    run = Floor(socket, "127.0.0.1", port).pooled(
        "loop", CALLERS, f"http://127.0.0.1:{port}/1k", conns, depth
    )
    return lambda: run(n, take)


# ------------------------------------------------------------------------ W8's shapes


def w8_pool(port, n, depth, collect=False):
    """The minimal pipelining pool: see the module's docstring."""
    socks = [Raw(port) for _ in range(8)]
    for s in socks:
        s.load, s.readq, s.reader, s.pending = 0, deque(), None, 0
        s.now = dugong.PollNeeded(s.sock.fileno(), POLLOUT)
        s.now._now = True  # eval_coroutines' private "after the ones ready now"
    full = deque()  # callers waiting for room on a socket

    class Caller:
        def __init__(self):
            self.fd, self.wfd = os.pipe()  # never written: wake-ups are parked ones
            self.wait = dugong.PollNeeded(self.fd, POLLIN)
            self.wait._park = self.park  # eval_coroutines' private wake-up (see _pool.py)
            self.poke = self.answer = None
            self.woken = False  # woken before it waited (while it collected)

        def park(self, poke, arg):
            self.poke = poke, arg

        def wake(self):
            if self.poke is None:
                self.woken = True
                return
            poke, arg = self.poke
            self.poke = None
            poke(arg)

    def request(me):
        while (s := min(socks, key=lambda s: s.load)).load >= depth:
            full.append(me)
            yield me.wait
        s.load += 1
        me.answer = None
        s.readq.append(me)
        others = s.reader is not None
        if not others:
            s.reader = me  # (before it lets the others run: they would take the role)
        if not collect:
            s.sock.send(s.request)
        else:
            s.pending += 1
            if s.pending == 1:  # the first: it sends the requests made meanwhile too
                yield s.now
                s.sock.send(s.request * s.pending)
                s.pending = 0
        if others and not me.woken:
            yield me.wait  # woken with its answer, or to read
        me.woken = False
        while me.answer is None:  # the reader, until its own answer is in
            s.reader = me
            while True:
                while s.readq and (answer := s.rb.parse()) is not None:
                    caller = s.readq.popleft()
                    s.load -= 1
                    caller.answer = answer
                    if caller is not me:
                        caller.wake()
                if me.answer is not None:
                    break
                yield s.wait
                s.rb.fill()
            s.reader = s.readq[0] if s.readq else None
            if s.reader is not None:
                s.reader.wake()
            if full:
                full.popleft().wake()
        return me.answer

    def task(me):
        for _ in range(n):
            take(*(yield from request(me)))

    callers = [Caller() for _ in range(CALLERS)]
    return lambda: dugong.eval_coroutines(*map(task, callers))


def w8_dugong(port, n, depth):
    pool = dugong.ConnectionPool(max_connections=8, pipeline=depth)
    url = f"http://127.0.0.1:{port}/1k"

    def task():
        for _ in range(n):
            resp = yield from pool.co_request("GET", url)
            take(resp.status, resp.body)

    return lambda: dugong.eval_coroutines(*(task() for _ in range(CALLERS)))


# ------------------------------------------------------------------------ measuring


def measure(run, count):
    """(requests/s, µs of this process's CPU per request) of one call of *run*."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    elapsed, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return count / elapsed, cpu / count * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3000, help="per caller in W5, a tenth in W8")
    args = ap.parse_args()
    nginx_bin = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx_bin is None:
        sys.exit("this needs nginx")
    workdir = tempfile.mkdtemp(prefix="dugong-shapes-")
    os.makedirs(os.path.join(workdir, "www"))
    with open(os.path.join(workdir, "www", "1k"), "wb") as fh:
        fh.write(servers.pattern()[: servers.SMALL_SIZE])
    nginx = servers.Nginx(nginx_bin, workdir)
    cpus = sorted(os.sched_getaffinity(0))
    try:
        port, n = nginx.port, args.requests
        m = max(1, n // 10)
        rows = {
            ("W1", "floor"): w1_client(socket, port, n),
            ("W1", "poll"): w1_client(socket, port, n, idle_check=True),
            ("W1", "api-shape"): w1_api_shape(port, n),
            ("W1", "dugong"): w1_client(dugong, port, n),
        }
        for depth in (16, 64):
            w2 = 4 * n  # as many requests as the benchmark's W2 makes
            rows[f"W2 co d{depth}", "floor"] = w2_client(socket, port, w2, depth, False)
            rows[f"W2 co d{depth}", "generators"] = w2_generators(port, w2, depth)
            rows[f"W2 co d{depth}", "api-shape"] = w2_api_shape(port, w2, depth)
            rows[f"W2 co d{depth}", "dugong"] = w2_client(dugong, port, w2, depth, False)
            rows[f"W2 batch d{depth}", "floor"] = w2_client(socket, port, w2, depth, True)
            rows[f"W2 batch d{depth}", "dugong"] = w2_client(dugong, port, w2, depth, True)
        rows |= {
            ("W5", "floor"): floor(port, n, CALLERS, 1),
            ("W5", "generators"): w5_generators(port, n),
            ("W5", "api-shape"): w5_api_shape(port, n),
            ("W5", "no-poll"): w5_api_shape(port, n, idle_check=False),
            ("W5", "dugong"): w5_dugong(port, n),
        }
        for depth in (16, 1):
            rows[f"W8 P={depth}", "floor"] = floor(port, m, 8, depth)
            rows[f"W8 P={depth}", "pool"] = w8_pool(port, m, depth)
            rows[f"W8 P={depth}", "collected"] = w8_pool(port, m, depth, collect=True)
            rows[f"W8 P={depth}", "dugong"] = w8_dugong(port, m, depth)
        results = {key: [] for key in rows}
        for _ in range(args.rounds + 1):  # the first round warms up, and is dropped
            for key, run in rows.items():
                count = {"W1": n, "W2": 4 * n, "W5": CALLERS * n}.get(key[0][:2], CALLERS * m)
                one_cpu = key[0] == "W1" and len(cpus) > 1  # as in the benchmark
                for pid in (nginx.proc.pid, 0) if one_cpu else ():
                    os.sched_setaffinity(pid, cpus[:1])
                results[key].append(measure(run, count))
                for pid in (nginx.proc.pid, 0) if one_cpu else ():
                    os.sched_setaffinity(pid, cpus)
        print(f"{'shape':<12} {'variant':<11} {'req/s':>9} {'x floor':>8} {'CPU µs/req':>11}")
        for (shape, variant), got in results.items():
            rate = statistics.median(r for r, _ in got[1:])
            cpu = statistics.median(c for _, c in got[1:])
            base = statistics.median(r for r, _ in results[shape, "floor"][1:])
            print(f"{shape:<12} {variant:<11} {rate:>9,.0f} {rate / base:>7.2f}x {cpu:>11.2f}")
    finally:
        nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
