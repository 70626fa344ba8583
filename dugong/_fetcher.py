"""How ``python -m dugong`` fetches its URLs: threads, leases, pipelining, output order.

Every URL goes through one `ConnectionPool`. The URLs of one origin (scheme,
host, port) are shared by up to ``--parallel`` connections; each connection
carries up to ``--pipeline`` requests in flight (bodiless ``GET``, ``HEAD`` and
``OPTIONS`` only; any other request waits for the previous answer). Bodies
are streamed: read with `HTTPConnection.readinto` into one buffer per
connection and written on at once, to a file or to standard output in the
order of the URLs (`InOrder` holds a body that arrives ahead of its turn: in
memory up to a small budget, then in a temporary file). `ConnectionPool.request`
is not used, as it keeps whole bodies in memory.

Why threads: one thread per connection, each holding a blocking lease from
`ConnectionPool.connection`. The alternative, ``co_`` generators under
`eval_coroutines`, runs everything in one thread, and there any other blocking
call stalls every connection: writing to standard output when the reader of
the pipe is slow (the body whose turn it is *should* wait then; the others
should keep arriving into the holding area), writing files, reading an upload
from disk. With threads those waits stay local, and ``--timeout`` is simply
each connection's `HTTPConnection.timeout`. The threads are few (one per
connection, at most ``max(--parallel, 50)``) and spend their time in system
calls that release the GIL.

A connection's thread takes up to ``--pipeline`` URLs at once, sends all their
requests, then reads the answers in order and sends another request for each
answer read. Request heads are small: dozens of them fit in the socket buffers,
so sending never waits for answers that are not being read.

Lost requests: when a connection closes after an answer that announced it, the
requests pipelined behind it were not processed and go out again on a new
connection (and if that happened after the first answer on a connection, the
origin gets no more pipelining). When it closes before any byte of an answer
arrived, the request goes out once more if that is safe (an idempotent method,
and a body that can be read again); otherwise the URL fails.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, BinaryIO, Final, NoReturn, TextIO

from ._connection import HTTPConnection
from ._exceptions import ConnectionClosed, DugongError
from ._inorder import Slot
from ._pool import ConnectionPool, _Target
from ._progress import ProgressLine, Transfer
from .engine import BodyFollowing, ClientEngine, HTTPResponse

__all__ = ["Console", "Fetcher", "Job", "Plan"]

#: name in front of messages
NAME: Final = "dugong"
#: bytes read from a connection (or an upload file) at a time
READ_SIZE: Final = 256 * 1024
#: uploads larger than this ask ``Expect: 100-continue`` first (as curl does)
EXPECT_THRESHOLD: Final = 1 << 20
#: seconds to wait for ``100 Continue`` before sending the upload anyway (as curl does)
EXPECT_TIMEOUT: Final = 1.0
#: bodies larger than this get a progress line (on a terminal)
PROGRESS_THRESHOLD: Final = 1 << 20
#: connections open at once, all hosts together (at least ``--parallel``)
MAX_CONNECTIONS: Final = 50
#: how often a request goes out again after its connection closed without an answer
RETRIES: Final = 1
#: how often a request goes out again when the server had not processed it
FREE_RETRIES: Final = 8
#: methods whose bodiless requests are pipelined
PIPELINED: Final = frozenset(("GET", "HEAD", "OPTIONS"))
#: methods whose requests may be sent twice (RFC 9110 §9.2.2)
IDEMPOTENT: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))

EXIT_FAILED: Final = 1
#: curl's code for ``--fail`` on a status of 400 or more
EXIT_HTTP_ERROR: Final = 22


class Plan:
    """What to do with every URL.

    Attributes:
        method, headers: of every request.
        body: the body of every request (``-d``), or None.
        upload: the file to stream as the body (``-T``; ``'-'``: standard
            input), or None.
        include: write the status line and header fields before the body.
        write_body: write the body (False for ``-I``).
        fail: a status of 400 or more fails the URL (``--fail``).
        verbose: show requests and answers on standard error.
        depth: requests in flight per connection.
        repeatable: a request may go out again after its connection closed
            without an answer.
    """

    def __init__(
        self,
        method: str,
        headers: dict[str, str],
        body: bytes | None = None,
        upload: str | None = None,
        *,
        include: bool = False,
        write_body: bool = True,
        fail: bool = False,
        verbose: bool = False,
        pipeline: int = 1,
    ) -> None:
        self.method = method
        self.headers = headers
        self.body = body
        self.upload = upload
        self.include = include
        self.write_body = write_body
        self.fail = fail
        self.verbose = verbose
        self.depth = pipeline if method in PIPELINED and body is None and upload is None else 1
        self.repeatable = method in IDEMPOTENT and upload != "-"


class Job:
    """One URL: where its body goes, and how it ended."""

    __slots__ = ("code", "free_retries", "index", "path", "retries", "slot", "split", "url")

    def __init__(self, index: int, url: str, split: _Target) -> None:
        self.index = index
        self.url = url
        self.split = split
        #: the output file; None: standard output, through `slot`
        self.path: str | None = None
        self.slot: Slot | None = None
        self.retries = RETRIES
        #: how often it may go out again when the server certainly did not process it
        #: (a bound that a working server never reaches)
        self.free_retries = FREE_RETRIES
        #: the exit status it earned; None while unfinished
        self.code: int | None = None


def connections_for(jobs: list[Job], parallel: int) -> int:
    """How many connections (and threads) *jobs* can use at once."""
    per_origin: dict[tuple[str, str, int], int] = {}
    for job in jobs:
        key = job.split[:3]
        per_origin[key] = per_origin.get(key, 0) + 1
    lanes = sum(min(parallel, n) for n in per_origin.values())
    return min(lanes, max(parallel, MAX_CONNECTIONS))


# ------------------------------------------------------------------------ standard error


class Console:
    """Standard error: messages, ``-v`` lines, and the progress line (on a terminal).

    Lines are written whole, one thread at a time; the progress line is blanked
    before a message and drawn again after it.
    """

    def __init__(self, stream: TextIO, progress: bool) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.line = ProgressLine(stream) if progress else None
        self.meters: list[_Meter] = []

    def say(self, text: str) -> None:
        with self.lock:
            line = self.line
            if line is not None:
                line.clear()
            self.stream.write(text + "\n")
            self.stream.flush()
            if line is not None and self.meters:
                self._redraw(time.monotonic())

    def error(self, url: str, cause: str) -> None:
        self.say(f"{NAME}: {url}: {cause}")

    def meter(self, label: str, total: int | None) -> _Meter | None:
        """A progress meter for a body of *total* bytes (None: unknown), or None when
        there is no progress line or the body is not over `PROGRESS_THRESHOLD`."""
        if self.line is None or (total is not None and total <= PROGRESS_THRESHOLD):
            return None
        meter = _Meter(self, label, total)
        with self.lock:
            self.meters.append(meter)
        return meter

    def tick(self) -> None:
        now = time.monotonic()
        line = self.line
        if line is not None and line.due(now):
            with self.lock:
                self._redraw(now)

    def end(self, meter: _Meter) -> None:
        """The meter's body is over: its final state stays, on a line of its own."""
        with self.lock:
            self.meters.remove(meter)
            line = self.line
            assert line is not None
            now = time.monotonic()
            if meter.visible():
                line.clear()
                self.stream.write(meter.text(now, self._width(), final=True) + "\n")
            self._redraw(now)

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            return 80

    def _redraw(self, now: float) -> None:
        line = self.line
        assert line is not None
        shown = [m for m in self.meters if m.visible()]
        if not shown:
            line.clear()
        elif len(shown) == 1:
            line.show(shown[0].text(now, self._width()), now)
        else:
            totals = [m.transfer.total for m in shown]
            both = Transfer(None if None in totals else sum(t or 0 for t in totals))
            both.done = sum(m.transfer.done for m in shown)
            both.start = min(m.transfer.start for m in shown)
            line.show(f"{len(shown)} bodies  {both.describe(now)}", now)


class _Meter:
    """The progress of one body, shown on the `Console`'s line once over the threshold."""

    __slots__ = ("console", "label", "transfer")

    def __init__(self, console: Console, label: str, total: int | None) -> None:
        self.console = console
        self.label = label
        self.transfer = Transfer(total)

    def add(self, n: int) -> None:
        self.transfer.add(n)
        self.console.tick()

    def visible(self) -> bool:
        t = self.transfer
        return (t.total or t.done) > PROGRESS_THRESHOLD

    def text(self, now: float, width: int, final: bool = False) -> str:
        text = self.transfer.describe(now, final)
        room = max(width - len(text) - 3, 10)
        label = self.label if len(self.label) <= room else "…" + self.label[1 - room :]
        return f"{label}  {text}"


# ------------------------------------------------------------------------ helpers


class _WriteFailed(Exception):
    """Writing a body out failed."""

    def __init__(self, exc: OSError, where: str) -> None:
        super().__init__(f"cannot write {where}: {exc.strerror or exc}")


class _ReadFailed(Exception):
    """Reading the upload failed."""


class _Stop(Exception):
    """Standard output failed: every thread stops."""


class _Origin:
    """The URLs of one origin that wait to be fetched, and its connections."""

    __slots__ = ("active", "connected", "depth", "jobs", "url")

    def __init__(self, url: str, depth: int) -> None:
        self.url = url  # a URL of the origin, to lease connections with
        self.jobs: deque[Job] = deque()  # in URL order
        self.active = 0  # threads fetching from it
        self.connected = False  # a connection to it was opened once
        self.depth = depth  # requests in flight per connection


def cause(exc: BaseException) -> str:
    """What went wrong, in a line."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed: {exc.verify_message or exc} "
            "(--cacert FILE trusts another CA, -k skips the check)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def head_text(resp: HTTPResponse) -> str:
    """The status line and header fields, as ``-i`` writes them."""
    return "".join(
        [
            f"HTTP/1.1 {resp.status} {resp.reason}\r\n",
            *(f"{name}: {value}\r\n" for name, value in resp.headers.items()),
            "\r\n",
        ]
    )


def _label(job: Job) -> str:
    return job.split.target.partition("?")[0].rpartition("/")[2] or job.url


# ------------------------------------------------------------------------ the fetcher


class Fetcher:
    """Fetches the jobs: `run` is the body of each thread.

    Args:
        plan: what to do with every URL.
        jobs: the URLs, in order; those without a ``path`` need a ``slot``.
        pool: the connections; at least as many as there are threads, and
            ``max_per_host`` at least *parallel*, so a lease never waits.
        console: standard error.
        parallel: connections per origin.
    """

    def __init__(
        self, plan: Plan, jobs: list[Job], pool: ConnectionPool, console: Console, parallel: int
    ) -> None:
        self.plan = plan
        self.pool = pool
        self.console = console
        self.parallel = parallel
        self.lock = threading.Lock()
        #: standard output failed: no more URLs are taken
        self.stopped = False
        self.origins: dict[tuple[str, str, int], _Origin] = {}
        for job in jobs:
            key = job.split[:3]
            origin = self.origins.get(key)
            if origin is None:
                origin = self.origins[key] = _Origin(job.url, plan.depth)
            origin.jobs.append(job)

    # -- the queues of URLs (each call holds the lock)

    def _pick(self) -> _Origin | None:
        """An origin with URLs waiting and room for another connection (the one whose
        next URL comes first), now counting one more thread."""
        with self.lock:
            if self.stopped:
                return None
            best = None
            for origin in self.origins.values():
                if (
                    origin.jobs
                    and origin.active < self.parallel
                    and (best is None or origin.jobs[0].index < best.jobs[0].index)
                ):
                    best = origin
            if best is not None:
                best.active += 1
            return best

    def _take(self, origin: _Origin, most: int = 1) -> list[Job]:
        """Up to *most* of *origin*'s waiting URLs, in order."""
        with self.lock:
            jobs = origin.jobs
            if self.stopped or most < 1:
                return []
            return [jobs.popleft() for _ in range(min(most, len(jobs)))]

    def _take_all(self, origin: _Origin) -> list[Job]:
        with self.lock:
            jobs = list(origin.jobs)
            origin.jobs.clear()
            return jobs

    def _requeue(self, origin: _Origin, jobs: list[Job]) -> None:
        """Queue *jobs* again, in URL order. They come before every URL never taken, but
        maybe after some queued again earlier."""
        if not jobs:
            return
        with self.lock:
            queue = origin.jobs
            last = max(job.index for job in jobs)
            ahead = []
            while queue and queue[0].index < last:
                ahead.append(queue.popleft())
            queue.extendleft(sorted(ahead + jobs, key=lambda job: job.index, reverse=True))

    # -- threads

    def run(self) -> None:
        """Fetch until no origin has URLs waiting and room for another connection."""
        try:
            while (origin := self._pick()) is not None:
                try:
                    self._serve(origin)
                finally:
                    with self.lock:
                        origin.active -= 1
        except _Stop:
            pass

    def _serve(self, origin: _Origin) -> None:
        """Fetch *origin*'s URLs over leased connections until none is left. (The thread
        that queues URLs again is one that serves the origin: they are not forgotten.)"""
        while True:
            with self.lock:
                if not origin.jobs or self.stopped:
                    return
            with ExitStack() as lease:
                try:
                    conn = lease.enter_context(self.pool.connection(origin.url))
                except (DugongError, OSError) as exc:  # e.g. no connection became free
                    for job in self._take(origin):
                        self._finish(job, EXIT_FAILED, cause(exc))
                    continue
                conn.expect100_timeout = EXPECT_TIMEOUT
                if self.plan.upload is not None:
                    self._uploads(origin, conn)
                else:
                    self._pipeline(origin, conn)

    # -- requests without a streamed body, pipelined

    def _pipeline(self, origin: _Origin, conn: HTTPConnection) -> None:
        """Keep up to ``origin.depth`` requests in flight on *conn*, reading the answers
        in order; return when no URL is left or *conn* can carry no more."""
        body = self.plan.body
        inflight: deque[Job] = deque()
        buf = memoryview(bytearray(READ_SIZE))
        first = True
        while True:
            batch = self._take(origin, origin.depth - len(inflight))
            for number, job in enumerate(batch):
                fresh = not conn.is_connected
                sent = conn.responses_outstanding
                try:
                    self._send(conn, job, body)
                except (DugongError, OSError) as exc:
                    self._requeue(origin, batch[number + 1 :])
                    if isinstance(exc, ConnectionClosed) and conn.responses_outstanding > sent:
                        inflight.append(job)  # it counts as sent: an answer may be readable
                        break
                    self._send_failed(origin, job, exc, fresh, inflight)
                    return
                if fresh:
                    self._connected(origin, conn)
                inflight.append(job)
            if not inflight:
                return
            job = inflight.popleft()
            if not self._answer(origin, conn, job, inflight, buf, first):
                return
            first = False

    def _send(
        self,
        conn: HTTPConnection,
        job: Job,
        body: bytes | BodyFollowing | None,
        expect100: bool = False,
    ) -> None:
        plan = self.plan
        if plan.verbose:
            if not conn.is_connected:
                where = f"{conn.hostname} port {conn.port}"
                if conn.proxy is not None:
                    where += f" through the proxy {conn.proxy[0]} port {conn.proxy[1]}"
                self.console.say(f"* connecting to {where}")
            self._show_request(conn, job, body, expect100)
        conn.send_request(plan.method, job.split.target, plan.headers, body, expect100)

    def _connected(self, origin: _Origin, conn: HTTPConnection) -> None:
        origin.connected = True
        if self.plan.verbose and conn.ssl_context is not None:
            cipher = conn.get_ssl_cipher()
            if cipher is not None:
                self.console.say(f"* TLS: {cipher[1]}, {cipher[0]}")

    def _send_failed(
        self, origin: _Origin, job: Job, exc: BaseException, fresh: bool, inflight: deque[Job]
    ) -> None:
        """Sending *job* failed (not with `ConnectionClosed`): *job* fails, the connection
        is done. If it was connecting to an origin never reached, every URL waiting for
        that origin fails alike."""
        why = cause(exc)
        self._finish(job, EXIT_FAILED, why)
        if fresh and not origin.connected:
            for other in self._take_all(origin):
                self._finish(other, EXIT_FAILED, why)
        self._lost(origin, list(inflight), exc)
        inflight.clear()

    def _lost(
        self, origin: _Origin, jobs: list[Job], exc: BaseException | None, free: bool = False
    ) -> None:
        """*jobs* got no byte of an answer on a connection that ended: those that may go
        out again are queued again (without counting if *free*: the server announced
        that it would not process them), the others fail because of *exc*."""
        again = []
        for job in jobs:
            if free and job.free_retries > 0:
                job.free_retries -= 1
                again.append(job)
            elif self.plan.repeatable and job.retries > 0:
                job.retries -= 1
                again.append(job)
            else:
                why = cause(exc) if exc is not None else "the connection closed before the answer"
                if not self.plan.repeatable:
                    why += f" (not sent again: {self.plan.method} is not idempotent)"
                self._finish(job, EXIT_FAILED, why)
        if again:
            if self.plan.verbose:
                self.console.say(f"* {len(again)} request(s) go out again on a new connection")
            self._requeue(origin, again)

    def _answer(
        self,
        origin: _Origin,
        conn: HTTPConnection,
        job: Job,
        inflight: deque[Job],
        buf: memoryview,
        first: bool,
    ) -> bool:
        """Read the answer to *job* (the first request in flight; *first*: the first on
        this connection); whether the connection can carry more."""
        try:
            resp = conn.read_response()
        except ConnectionClosed as exc:
            self._closed_early(origin, job, exc, inflight)
            return False
        except (DugongError, OSError) as exc:
            self._finish(job, EXIT_FAILED, cause(exc))
            self._lost(origin, list(inflight), exc)
            inflight.clear()
            return False
        if not self._deliver(conn, job, resp, buf, origin, inflight):
            return False
        if conn.is_connected:
            return True
        # The server closed the connection after this answer, as it announced: what was
        # pipelined behind it was not processed.
        if inflight:
            if first and origin.depth > 1:
                origin.depth = 1
                if self.plan.verbose:
                    self.console.say(
                        "* the server closed the connection after its first "
                        "answer: no more pipelining to it"
                    )
            self._lost(origin, list(inflight), None, free=True)
            inflight.clear()
        return False

    def _closed_early(
        self, origin: _Origin, job: Job, exc: ConnectionClosed, inflight: deque[Job]
    ) -> None:
        """The connection ended before the answer to *job* was complete."""
        rest = list(inflight)
        inflight.clear()
        if exc.response_started:
            self._finish(job, EXIT_FAILED, cause(exc))
            self._lost(origin, rest, exc)
        else:
            self._lost(origin, [job, *rest], exc, free=not exc.request_sent)

    def _deliver(
        self,
        conn: HTTPConnection,
        job: Job,
        resp: HTTPResponse,
        buf: memoryview,
        origin: _Origin,
        inflight: deque[Job],
        note: str | None = None,
    ) -> bool:
        """Write the answer to *job* out; False if the connection broke meanwhile (then
        *job* has failed, and the requests in flight are dealt with). *note*: what to
        say about the answer (e.g. that it refused an upload)."""
        plan = self.plan
        if plan.verbose:
            self._show_response(resp)
        status = f"{resp.status} {resp.reason}"
        try:
            if plan.fail and resp.status >= 400:
                conn.discard()
                self._finish(
                    job,
                    EXIT_HTTP_ERROR,
                    f"{note}: {status}" if note else f"the server answered {status}",
                )
                return True
            if note:
                self.console.error(job.url, f"{note}: {status}")
            with self._sink(job) as write:
                if plan.include:
                    write(head_text(resp).encode("latin-1"))
                if plan.write_body:
                    self._copy_body(conn, job, resp, buf, write)
                else:
                    conn.discard()
        except _WriteFailed as exc:
            if job.path is None:
                self._stop(job, exc)
            self._finish(job, EXIT_FAILED, str(exc))
        except (DugongError, OSError) as exc:
            self._finish(job, EXIT_FAILED, cause(exc))
        else:
            self._finish(job, 0)
            return True
        self._lost(origin, list(inflight), None)
        inflight.clear()
        return False

    def _copy_body(
        self,
        conn: HTTPConnection,
        job: Job,
        resp: HTTPResponse,
        buf: memoryview,
        write: Callable[[memoryview], object],
    ) -> None:
        meter = self.console.meter(_label(job), resp.length)
        if meter is None:
            while n := conn.readinto(buf):
                write(buf[:n])
            return
        try:
            while n := conn.readinto(buf):
                write(buf[:n])
                meter.add(n)
        finally:
            self.console.end(meter)

    @contextmanager
    def _sink(self, job: Job) -> Iterator[Callable[[memoryview | bytes], object]]:
        """A function writing to *job*'s output (its file is made now); `_WriteFailed`
        for an `OSError`."""
        if job.path is None:
            slot = job.slot
            assert slot is not None

            def to_slot(data: memoryview | bytes) -> None:
                try:
                    slot.write(data)
                except OSError as exc:
                    raise _WriteFailed(exc, "to standard output") from None

            yield to_slot
            return
        path = job.path
        try:
            folder = os.path.dirname(path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _WriteFailed(exc, path) from None

        def to_file(data: memoryview | bytes) -> None:
            try:
                f.write(data)
            except OSError as exc:
                raise _WriteFailed(exc, path) from None

        try:
            yield to_file
        finally:
            try:
                f.close()
            except OSError as exc:
                raise _WriteFailed(exc, path) from None

    # -- streamed uploads, one at a time

    def _uploads(self, origin: _Origin, conn: HTTPConnection) -> None:
        """Upload to *origin*'s URLs one after the other while *conn* lasts."""
        buf = memoryview(bytearray(READ_SIZE))
        while batch := self._take(origin):
            if not self._upload(origin, conn, batch[0], buf):
                return

    def _upload(self, origin: _Origin, conn: HTTPConnection, job: Job, buf: memoryview) -> bool:
        """Stream `Plan.upload` to *job*'s URL and deliver the answer; whether *conn* can
        carry more."""
        name = self.plan.upload
        assert name is not None
        try:
            source: IO[bytes] = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        except OSError as exc:
            self._finish(job, EXIT_FAILED, f"cannot read {name}: {exc.strerror or exc}")
            return True
        try:
            size = None
            if name != "-" and stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                size = os.fstat(source.fileno()).st_size
            expect = size is None or size > EXPECT_THRESHOLD
            fresh = not conn.is_connected
            try:
                self._send(conn, job, BodyFollowing(size), expect)
            except (DugongError, OSError) as exc:
                if isinstance(exc, ConnectionClosed) and conn.responses_outstanding:
                    self._closed_early(origin, job, exc, deque())  # it counts as sent
                else:
                    self._send_failed(origin, job, exc, fresh, deque())
                return False
            if fresh:
                self._connected(origin, conn)
            note: str | None = None
            resp: HTTPResponse | None = None
            try:
                if expect:
                    interim = conn.read_response()
                    if interim.status != 100:
                        resp = interim
                        note = (
                            "the server refused the upload before it was sent"
                            if interim.status >= 400
                            else "the server answered before the upload was sent "
                            "(nothing was uploaded)"
                        )
                    elif self.plan.verbose:
                        self._show_response(interim)
                if resp is None:
                    note = self._send_file(conn, job, source, size, buf)
                    resp = conn.read_response()
            except ConnectionClosed as exc:
                self._closed_early(origin, job, exc, deque())
                return False
            except _ReadFailed as exc:
                self._finish(job, EXIT_FAILED, str(exc))
                return False
            except (DugongError, OSError) as exc:
                self._finish(job, EXIT_FAILED, cause(exc))
                return False
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        return (
            self._deliver(conn, job, resp, buf, origin, deque(), note)
            and conn.is_connected
            and conn.is_idle
        )

    def _send_file(
        self, conn: HTTPConnection, job: Job, source: IO[bytes], size: int | None, buf: memoryview
    ) -> str | None:
        """Send the upload's bytes: None, or why the answer came before they all went."""
        meter = self.console.meter(f"{_label(job)} (upload)", size)
        sent = 0
        try:
            while size is None or sent < size:
                want = READ_SIZE if size is None else min(READ_SIZE, size - sent)
                try:
                    n = source.readinto(buf[:want])  # type: ignore[attr-defined]
                except OSError as exc:
                    raise _ReadFailed(
                        f"cannot read {self.plan.upload}: {exc.strerror or exc}"
                    ) from None
                if not n:
                    if size is None:
                        break
                    raise _ReadFailed(
                        f"{self.plan.upload} ended after {sent} of {size} bytes "
                        "(it changed while it was sent)"
                    )
                try:
                    conn.write(buf[:n])
                except ConnectionClosed:
                    # The server may have answered before closing: read_response() tells.
                    return "the server answered before the upload was complete"
                sent += n
                if meter is not None:
                    meter.add(n)
            if size is None:
                conn.write(b"")
        finally:
            if meter is not None:
                self.console.end(meter)
        return None

    # -- results

    def _finish(self, job: Job, code: int, message: str | None = None) -> None:
        """*job* is over: report *message*, record *code*, pass the output turn on."""
        if message is not None:
            self.console.error(job.url, message)
        job.code = code
        slot = job.slot
        if slot is not None:
            try:
                slot.finish()
            except OSError as exc:
                self._stop(job, _WriteFailed(exc, "to standard output"))

    def _stop(self, job: Job, exc: _WriteFailed) -> NoReturn:
        """Standard output failed: nothing more can be written in order."""
        with self.lock:
            first = not self.stopped
            self.stopped = True
        if first:
            self.console.error(job.url, str(exc))
            job.code = EXIT_FAILED
        raise _Stop

    # -- -v

    def _show_request(
        self, conn: HTTPConnection, job: Job, body: bytes | BodyFollowing | None, expect100: bool
    ) -> None:
        """The request head as *conn* sends it (built by a scratch engine)."""
        host = f"[{conn.hostname}]" if ":" in conn.hostname else conn.hostname
        prefix = ""
        if conn.proxy is not None and conn.ssl_context is None:
            prefix = "http://" + (host if conn.port == 80 else f"{host}:{conn.port}")
        if conn.port != (443 if conn.ssl_context is not None else 80):
            host += f":{conn.port}"
        out = ClientEngine(host, target_prefix=prefix).send_request(
            self.plan.method, job.split.target, self.plan.headers, body, expect100
        )
        first = out[0] if isinstance(out, tuple) else out
        head = bytes(first).partition(b"\r\n\r\n")[0].decode("latin-1")
        self.console.say(
            "\n".join(f"> {line}" if line else ">" for line in [*head.split("\r\n"), ""])
        )

    def _show_response(self, resp: HTTPResponse) -> None:
        lines = head_text(resp).split("\r\n")[:-1]
        self.console.say("\n".join(f"< {line}" if line else "<" for line in lines))
