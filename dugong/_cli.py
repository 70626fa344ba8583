"""``python -m dugong [options] URL...``: a command-line HTTP client in curl's spelling.

Every URL goes through one `ConnectionPool`. The URLs of one origin (scheme,
host, port) are shared by up to ``--parallel`` connections; each connection
carries up to ``--pipeline`` requests in flight (bodiless ``GET``, ``HEAD`` and
``OPTIONS`` only; any other request waits for the previous answer). Bodies
are streamed: read with `HTTPConnection.readinto` into one buffer per
connection and written on at once, to a file (``-o``, ``--output-dir``) or to
standard output in the order of the URLs (`InOrder` holds the bodies that
complete ahead of their turn: in memory up to a small budget, then in a
temporary file).

Concurrency: one thread per connection, each with a blocking lease from
`ConnectionPool.connection`. The alternative, ``co_`` generators under
`eval_coroutines`, would run everything in one thread, and there every other
blocking call stalls every connection: writing to standard output when the
reader of a pipe is slow (the body whose turn it is *should* wait; the others
should keep arriving into the holding area), writing files, reading an upload
from a file. Threads keep those waits local, and ``--timeout`` is simply the
connections' own `HTTPConnection.timeout`. The threads are few (one per
connection, at most ``max(--parallel, 50)``), and they spend their time in
system calls that release the GIL. A connection's thread sends its requests
first and then reads the answers; request heads are small, so a few dozen of
them fit in the socket buffers and sending never waits for answers that are
not being read.

Lost requests: when a connection closes after a response that announced it,
the requests pipelined behind it were not processed, and go out again on a
new connection. When it closes before any byte of a response arrived, the
request goes out once more if that is safe (an idempotent method, and a body
that can be read again); otherwise the URL fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, BinaryIO, Final, NoReturn, TextIO

from ._connection import HTTPConnection
from ._exceptions import ConnectionClosed, DugongError
from ._inorder import InOrder, Slot
from ._pool import ConnectionPool, _split_url, _Target
from ._progress import ProgressLine, Transfer
from .engine import BodyFollowing, ClientEngine, HTTPResponse

__all__ = ["main"]

PROG: Final = "python -m dugong"
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
#: methods whose bodiless requests are pipelined
_PIPELINED: Final = frozenset(("GET", "HEAD", "OPTIONS"))
#: methods that may be sent twice (RFC 9110 §9.2.2)
_IDEMPOTENT: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
#: curl's code for ``--fail`` on a status of 400 or more
EXIT_HTTP_ERROR: Final = 22
EXIT_INTERRUPTED: Final = 130

DESCRIPTION = """\
Fetch each URL and write its body to standard output, in the order of the URLs,
or to files. Options are spelled as in curl. Without any argument, run a demo
against a local server instead."""

EPILOG = """\
URLs of one host share up to --parallel connections, each carrying up to
--pipeline requests at once (GET, HEAD and OPTIONS without a body; other
requests one at a time). Bodies are streamed; a body that completes before
those of earlier URLs waits (in memory up to 4 MiB for all of them, beyond
that in a temporary file) so that standard output keeps the URL order.

Without --fail a response of any status is a success: its body is written.
On an error, one line on standard error names the URL and the cause, the
other URLs are still fetched, and the exit status is that of the first URL
that failed: 1, or 22 for --fail and a status of 400 or more. Bad usage
(an unknown option, no URL, a URL that is not http:// or https://) exits
with 2. A progress line appears on standard error when it is a terminal, a
body is over 1 MiB and it does not go to that terminal.

examples:
  python -m dugong https://example.org/
  python -m dugong -o page.html -i https://example.org/
  python -m dugong --parallel 4 --pipeline 16 --output-dir out/ URL...
  python -m dugong -T big.iso -H 'Content-Type: application/octet-stream' URL"""


class _UsageError(Exception):
    """Bad usage: the message goes out with the usage line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{NAME}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m dugong``."""
    from . import __version__

    p = _Parser(prog=PROG, usage=f"{PROG} [options] URL...", description=DESCRIPTION,
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("urls", metavar="URL", nargs="+",
                   help="http:// or https:// URL (a port, path and query may follow)")
    req = p.add_argument_group("request")
    req.add_argument("-X", "--request", metavar="METHOD",
                     help="request method (default: GET; HEAD with -I, PUT with -T, "
                          "POST with -d or --data-binary)")
    req.add_argument("-H", "--header", metavar="'NAME: VALUE'", action="append", default=[],
                     help="add a header field (repeatable); 'NAME;' sends an empty value")
    req.add_argument("-d", "--data", metavar="DATA", dest="data", action="append",
                     type=lambda s: ("text", s), default=[],
                     help="send DATA as the body (POST, form-encoded); @FILE reads it from "
                          "FILE without its line ends, @- from standard input; several "
                          "are joined with '&'")
    req.add_argument("--data-binary", metavar="DATA", dest="data", action="append",
                     type=lambda s: ("binary", s),
                     help="like -d, but @FILE is sent exactly as it is")
    req.add_argument("-T", "--upload-file", metavar="FILE",
                     help="stream FILE as the body (PUT); files over 1 MiB ask "
                          "'Expect: 100-continue' first, so that a refusal costs no upload; "
                          "- reads standard input (sent chunked)")
    req.add_argument("-I", "--head", action="store_true",
                     help="send HEAD and print the status line and header fields")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE",
                     help="write the body to FILE instead of standard output (one URL only)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="write each body to DIR/NAME, NAME being the last segment of its "
                          "URL's path (curl's -O naming; a URL whose path ends with '/' has "
                          "none and is refused); DIR is created if needed")
    out.add_argument("-i", "--include", action="store_true",
                     help="write the status line and header fields before the body")
    out.add_argument("-f", "--fail", action="store_true",
                     help="treat a status of 400 or more as an error: no body, exit status 22")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="show requests ('> ') and response heads ('< ') on standard error")
    conn = p.add_argument_group("connections")
    conn.add_argument("--cacert", metavar="FILE",
                      help="trust the CA certificates in FILE (PEM) instead of the system's")
    conn.add_argument("-k", "--insecure", action="store_true",
                      help="do not verify TLS certificates and host names")
    conn.add_argument("-x", "--proxy", metavar="URL",
                      help="HTTP proxy 'http://[USER:PASSWORD@]HOST[:PORT]' (default: the "
                           "http_proxy, https_proxy and no_proxy variables)")
    conn.add_argument("--timeout", metavar="SECONDS", type=_seconds,
                      help="give up on a URL when its connection makes no progress for this "
                           "long (connecting included; default: wait without limit)")
    conn.add_argument("--parallel", metavar="N", type=_positive, default=1,
                      help="connections per host (default: 1)")
    conn.add_argument("--pipeline", metavar="N", type=_positive, default=1,
                      help="requests in flight per connection (default: 1, no pipelining)")
    p.add_argument("-V", "--version", action="version", version=f"dugong {__version__}")
    return p


# ------------------------------------------------------------------------ the plan


class _Plan:
    """What to do with every URL, from the command line."""

    def __init__(self, method: str, headers: dict[str, str], body: bytes | None,
                 upload: str | None, args: argparse.Namespace) -> None:
        self.method = method
        self.headers = headers
        self.body = body
        self.upload = upload
        self.include: bool = args.include or args.head
        self.write_body: bool = not args.head
        self.fail: bool = args.fail
        self.verbose: bool = args.verbose
        #: requests in flight per connection
        self.depth: int = (args.pipeline if method in _PIPELINED and body is None
                           and upload is None else 1)
        #: a request may go out again after its connection closed without an answer
        self.repeatable = method in _IDEMPOTENT and upload != "-"


class _Job:
    """One URL: where its body goes, and how it ended."""

    __slots__ = ("code", "index", "path", "retries", "slot", "split", "url")

    def __init__(self, index: int, url: str, split: _Target) -> None:
        self.index = index
        self.url = url
        self.split = split
        self.path: str | None = None  # the output file; None: standard output
        self.slot: Slot | None = None
        self.retries = RETRIES
        #: the exit status it earned; None while unfinished
        self.code: int | None = None


def _read_data(text: str, kind: str) -> bytes:
    if not text.startswith("@"):
        return os.fsencode(text)
    name = text[1:]
    try:
        if name == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(name, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise _UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    if kind == "text":
        data = data.replace(b"\r", b"").replace(b"\n", b"")
    return data


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        if text.endswith(";") and len(text) > 1:
            return text[:-1].strip(), ""
        raise _UsageError(f"-H {text!r}: not 'Name: value' (or 'Name;' for an empty value)")
    name, value = name.strip(), value.strip()
    if not value:
        raise _UsageError(f"-H {text!r}: no value ('Name;' sends an empty one; curl's "
                          "removal of a default field is not supported)")
    return name, value


def _make_headers(args: argparse.Namespace, form: bool) -> dict[str, str]:
    from . import __version__

    fields: dict[str, tuple[str, str]] = {}  # lower-case name -> (name, value)
    for text in args.header:
        name, value = _parse_header(text)
        key = name.lower()
        if key in fields:  # one field, the values as a list (RFC 9110 §5.3)
            value = fields[key][1] + ("; " if key == "cookie" else ", ") + value
            name = fields[key][0]
        fields[key] = (name, value)
    defaults = [("User-Agent", f"dugong/{__version__}"), ("Accept", "*/*")]
    if form:
        defaults.append(("Content-Type", "application/x-www-form-urlencoded"))
    for name, value in defaults:
        fields.setdefault(name.lower(), (name, value))
    return dict(fields.values())


def _file_name(split: _Target) -> str:
    """The last segment of the URL's path (curl's -O naming)."""
    name = split.target.partition("?")[0].rpartition("/")[2]
    if name in ("", ".", ".."):
        raise _UsageError(f"no file name at the end of the URL's path ({split.target!r}); "
                          "give one with -o FILE")
    return name


def _plan(args: argparse.Namespace) -> tuple[_Plan, list[_Job]]:
    """Check the command line; raises `_UsageError`."""
    jobs = []
    for index, url in enumerate(args.urls):
        try:
            jobs.append(_Job(index, url, _split_url(url)))
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
    if args.head and (args.data or args.upload_file):
        raise _UsageError("-I (HEAD) cannot send a body (-d, --data-binary, -T)")
    if args.data and args.upload_file:
        raise _UsageError("-d/--data-binary and -T both give a body: choose one")
    if args.upload_file == "-" and len(jobs) > 1:
        raise _UsageError("-T - reads standard input once: give one URL")
    if args.output is not None and args.output != "-" and len(jobs) > 1:
        raise _UsageError("-o FILE takes one URL; --output-dir DIR takes several")
    if args.upload_file not in (None, "-"):
        try:
            with open(args.upload_file, "rb"):
                pass
        except OSError as exc:
            raise _UsageError(f"cannot read {args.upload_file}: {exc.strerror or exc}") \
                from None
    body = None
    if args.data:
        body = b"&".join(_read_data(text, kind) for kind, text in args.data)
    method = args.request or ("HEAD" if args.head else "PUT" if args.upload_file
                              else "POST" if args.data else "GET")
    headers = _make_headers(args, form=bool(args.data))
    try:  # the checks of send_request, now: a bad method or field is bad usage
        ClientEngine("localhost").send_request(method, "/", headers)
    except ValueError as exc:
        raise _UsageError(f"cannot send this request: {exc}") from None
    if args.output is not None and args.output != "-":
        path = args.output
        if args.output_dir is not None:
            path = os.path.join(args.output_dir, path)
        jobs[0].path = path
    elif args.output_dir is not None:
        seen: dict[str, str] = {}
        for job in jobs:
            name = _file_name(job.split)
            if name in seen:
                raise _UsageError(f"{seen[name]} and {job.url} would both be written to "
                                  f"{os.path.join(args.output_dir, name)}")
            seen[name] = job.url
            job.path = os.path.join(args.output_dir, name)
    return _Plan(method, headers, body, args.upload_file, args), jobs


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if args.cacert is not None:
        try:
            return ssl.create_default_context(cafile=args.cacert)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise _UsageError(f"cannot use --cacert {args.cacert}: {reason}") from None
    return None


# ------------------------------------------------------------------------ standard error


class _Console:
    """Standard error: messages, ``-v`` lines, and the progress line (on a terminal)."""

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
        """The meter's body is over: its final state stays on a line of its own."""
        with self.lock:
            self.meters.remove(meter)
            line = self.line
            assert line is not None
            now = time.monotonic()
            if meter.visible():
                line.clear()
                self.stream.write(meter.text(now, final=True) + "\n")
            self._redraw(now)

    def _redraw(self, now: float) -> None:
        line = self.line
        assert line is not None
        shown = [m for m in self.meters if m.visible()]
        if not shown:
            line.clear()
            return
        if len(shown) == 1:
            line.show(shown[0].text(now), now)
            return
        totals = [m.transfer.total for m in shown]
        both = Transfer(None if None in totals else sum(t or 0 for t in totals))
        both.done = sum(m.transfer.done for m in shown)
        both.start = min(m.transfer.start for m in shown)
        line.show(f"{len(shown)} bodies  {both.describe(now)}", now)


class _Meter:
    """The progress of one body on the `_Console`'s line."""

    __slots__ = ("console", "label", "transfer")

    def __init__(self, console: _Console, label: str, total: int | None) -> None:
        self.console = console
        self.label = label
        self.transfer = Transfer(total)

    def add(self, n: int) -> None:
        self.transfer.add(n)
        self.console.tick()

    def visible(self) -> bool:
        t = self.transfer
        return (t.total or t.done) > PROGRESS_THRESHOLD

    def text(self, now: float, final: bool = False) -> str:
        width = shutil.get_terminal_size().columns
        text = self.transfer.describe(now, final)
        room = max(width - len(text) - 3, 10)
        label = self.label if len(self.label) <= room else "…" + self.label[-room + 1:]
        return f"{label}  {text}"


# ------------------------------------------------------------------------ fetching


class _WriteFailed(Exception):
    """Writing a body out failed (the `OSError` is the cause)."""

    def __init__(self, exc: OSError, where: str) -> None:
        super().__init__(f"cannot write {where}: {exc.strerror or exc}")
        self.exc = exc


class _Stop(Exception):
    """Standard output failed: every thread stops."""


class _Origin:
    """The URLs of one origin that wait to be fetched, and its connections."""

    __slots__ = ("active", "connected", "depth", "jobs", "url")

    def __init__(self, url: str, depth: int) -> None:
        self.url = url  # any URL of the origin, to lease connections with
        self.jobs: deque[_Job] = deque()
        self.active = 0  # threads fetching from it
        self.connected = False  # a connection to it was opened once
        self.depth = depth  # requests in flight per connection


def _cause(exc: BaseException) -> str:
    """What went wrong, in a line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed: {exc.verify_message or exc} "
                "(--cacert FILE trusts another CA, -k skips the check)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _head_text(resp: HTTPResponse) -> str:
    return "".join([f"HTTP/1.1 {resp.status} {resp.reason}\r\n",
                    *(f"{name}: {value}\r\n" for name, value in resp.headers.items()), "\r\n"])


def _label(job: _Job) -> str:
    return job.split.target.partition("?")[0].rpartition("/")[2] or job.url


class _Fetcher:
    """Runs the jobs: threads pick origins, lease connections and fetch."""

    def __init__(self, plan: _Plan, jobs: list[_Job], pool: ConnectionPool, console: _Console,
                 parallel: int, stdout: InOrder) -> None:
        self.plan = plan
        self.pool = pool
        self.console = console
        self.parallel = parallel
        self.stdout = stdout
        self.lock = threading.Lock()
        self.stopped = False
        self.origins: dict[tuple[str, str, int], _Origin] = {}
        for job in jobs:
            key = job.split[:3]
            origin = self.origins.get(key)
            if origin is None:
                origin = self.origins[key] = _Origin(job.url, plan.depth)
            origin.jobs.append(job)
            if job.path is None:
                job.slot = stdout.slot(job.index)

    # -- scheduling (under the lock)

    def _pick(self) -> _Origin | None:
        """An origin with URLs waiting and room for another connection: the one whose
        next URL comes first."""
        with self.lock:
            if self.stopped:
                return None
            best = None
            for origin in self.origins.values():
                if origin.jobs and origin.active < self.parallel and \
                        (best is None or origin.jobs[0].index < best.jobs[0].index):
                    best = origin
            if best is not None:
                best.active += 1
            return best

    def _take(self, origin: _Origin, most: int = 1) -> list[_Job]:
        """Up to *most* of *origin*'s waiting URLs, in order."""
        with self.lock:
            jobs = origin.jobs
            if self.stopped or most < 1:
                return []
            return [jobs.popleft() for _ in range(min(most, len(jobs)))]

    def _take_all(self, origin: _Origin) -> list[_Job]:
        with self.lock:
            jobs = list(origin.jobs)
            origin.jobs.clear()
            return jobs

    def _requeue(self, origin: _Origin, jobs: Iterator[_Job] | Sequence[_Job]) -> None:
        """Put *jobs* (in URL order, all before the waiting ones) back in front."""
        with self.lock:
            origin.jobs.extendleft(reversed(list(jobs)))

    # -- threads

    def run(self) -> None:
        """The body of each thread."""
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
        """Fetch *origin*'s URLs over leased connections until none is left."""
        while True:
            with self.lock:
                if not origin.jobs or self.stopped:
                    return
            try:
                lease = self.pool.connection(origin.url)
                conn = lease.__enter__()
            except (DugongError, OSError) as exc:
                for job in self._take(origin):
                    self._finish(job, EXIT_FAILED, _cause(exc))
                continue
            ok = False
            try:
                conn.expect100_timeout = EXPECT_TIMEOUT
                if self.plan.upload is not None:
                    self._upload_one(origin, conn)
                else:
                    self._pipeline(origin, conn)
                ok = True
            finally:
                if ok:
                    lease.__exit__(None, None, None)
                else:
                    lease.__exit__(*sys.exc_info())

    # -- requests without a streamed body, pipelined

    def _pipeline(self, origin: _Origin, conn: HTTPConnection) -> None:
        """Send up to ``origin.depth`` requests ahead, read the answers in order; return
        when no URL is left or the connection cannot carry more."""
        plan = self.plan
        inflight: deque[_Job] = deque()
        buf = memoryview(bytearray(READ_SIZE))
        first = True
        while True:
            batch = self._take(origin, origin.depth - len(inflight))
            for number, job in enumerate(batch):
                fresh = not conn.is_connected
                try:
                    self._send(conn, job, plan.body)
                except ConnectionClosed:
                    inflight.append(job)  # it counts as sent: an answer may be readable
                    self._requeue(origin, batch[number + 1:])
                    break
                except (DugongError, OSError) as exc:
                    self._requeue(origin, batch[number + 1:])
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

    def _send(self, conn: HTTPConnection, job: _Job,
              body: bytes | BodyFollowing | None, expect100: bool = False) -> None:
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
        if self.plan.verbose:
            cipher = conn.get_ssl_cipher() if conn.ssl_context is not None else None
            if cipher is not None:
                self.console.say(f"* TLS: {cipher[1]}, {cipher[0]}")

    def _send_failed(self, origin: _Origin, job: _Job, exc: BaseException, fresh: bool,
                     inflight: deque[_Job]) -> None:
        """Sending *job* failed (not with `ConnectionClosed`): the connection is done."""
        cause = _cause(exc)
        self._finish(job, EXIT_FAILED, cause)
        if fresh and not origin.connected:
            # The host cannot be reached at all: the URLs waiting for it fail alike.
            for other in self._take_all(origin):
                self._finish(other, EXIT_FAILED, cause)
        self._lost(origin, list(inflight), None)
        inflight.clear()

    def _lost(self, origin: _Origin, jobs: list[_Job], exc: BaseException | None,
              free: bool = False) -> None:
        """*jobs* got no byte of an answer on a connection that ended: those that may go
        out again are queued again (without counting if *free*: the server announced
        it would not process them), the others fail with *exc*."""
        again = []
        for job in jobs:
            if free:
                again.append(job)
            elif self.plan.repeatable and job.retries > 0:
                job.retries -= 1
                again.append(job)
            else:
                self._finish(job, EXIT_FAILED, _cause(exc) if exc is not None else
                             "the connection closed before the answer (the request is not "
                             "sent again: it is not idempotent)")
        if again:
            if self.plan.verbose:
                self.console.say(f"* {len(again)} request(s) go out again on a new connection")
            self._requeue(origin, again)

    def _answer(self, origin: _Origin, conn: HTTPConnection, job: _Job,
                inflight: deque[_Job], buf: memoryview, first: bool) -> bool:
        """Read the answer to *job* (the first request in flight; *first*: the first on
        this connection); whether the connection can carry more."""
        try:
            resp = conn.read_response()
        except ConnectionClosed as exc:
            self._closed_early(origin, job, exc, inflight)
            return False
        except (DugongError, OSError) as exc:
            self._finish(job, EXIT_FAILED, _cause(exc))
            self._lost(origin, list(inflight), exc)
            inflight.clear()
            return False
        if not self._deliver(conn, job, resp, buf, origin, inflight):
            return False
        if not conn.is_connected:
            # The server closed it after this answer, as announced: what was pipelined
            # behind it was not processed.
            if inflight:
                if first and origin.depth > 1:
                    origin.depth = 1  # it closes after every answer: pipelining is waste
                    if self.plan.verbose:
                        self.console.say("* the server closed the connection after its "
                                         "first answer: no more pipelining to it")
                self._lost(origin, list(inflight), None, free=True)
                inflight.clear()
            return False
        return True

    def _closed_early(self, origin: _Origin, job: _Job, exc: ConnectionClosed,
                      inflight: deque[_Job]) -> None:
        """The connection ended before the answer to *job* was complete."""
        rest = list(inflight)
        inflight.clear()
        if exc.response_started:
            self._finish(job, EXIT_FAILED, _cause(exc))
            self._lost(origin, rest, exc)
        elif not exc.request_sent:
            self._lost(origin, [job, *rest], exc, free=True)
        else:
            self._lost(origin, [job], exc)
            self._lost(origin, rest, exc)

    def _deliver(self, conn: HTTPConnection, job: _Job, resp: HTTPResponse,
                 buf: memoryview, origin: _Origin, inflight: deque[_Job],
                 note: str | None = None) -> bool:
        """Write the answer to *job* out; False if the connection broke meanwhile
        (*job* has failed then, and the requests in flight are dealt with). *note*:
        something to say about the answer (e.g. that it refused an upload)."""
        plan = self.plan
        if plan.verbose:
            self._show_response(resp)
        status = f"{resp.status} {resp.reason}"
        try:
            if plan.fail and resp.status >= 400:
                conn.discard()
                self._finish(job, EXIT_HTTP_ERROR, f"{note}: {status}" if note
                             else f"the server answered {status}")
                return True
            if note:
                self.console.error(job.url, f"{note}: {status}")
            with self._sink(job) as write:
                if plan.include:
                    write(_head_text(resp).encode("latin-1"))
                if plan.write_body:
                    self._copy_body(conn, job, resp, buf, write)
                else:
                    conn.discard()
        except _WriteFailed as exc:
            if job.path is None:
                self._stop(job, exc)
            self._finish(job, EXIT_FAILED, str(exc))
        except (DugongError, OSError) as exc:
            self._finish(job, EXIT_FAILED, _cause(exc))
        else:
            self._finish(job, 0)
            return True
        self._lost(origin, list(inflight), None)
        inflight.clear()
        return False

    def _copy_body(self, conn: HTTPConnection, job: _Job, resp: HTTPResponse,
                   buf: memoryview, write: Callable[[memoryview], object]) -> None:
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
    def _sink(self, job: _Job) -> Iterator[Callable[[memoryview | bytes], object]]:
        """A function writing to *job*'s output; `_WriteFailed` for an `OSError`."""
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

    def _upload_one(self, origin: _Origin, conn: HTTPConnection) -> None:
        """Upload the file to the next URL of *origin* (`plan.upload`)."""
        buf = memoryview(bytearray(READ_SIZE))
        while batch := self._take(origin):
            if not self._upload(origin, conn, batch[0], buf):
                return

    def _upload(self, origin: _Origin, conn: HTTPConnection, job: _Job,
                buf: memoryview) -> bool:
        """One upload and its answer; whether the connection can carry more."""
        name = self.plan.upload
        assert name is not None
        try:
            source: IO[bytes] = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        except OSError as exc:
            self._finish(job, EXIT_FAILED, f"cannot read {name}: {exc.strerror or exc}")
            return True
        try:
            size = None
            if name != "-" and (info := os.fstat(source.fileno())) and \
                    (info.st_mode & 0o170000) == 0o100000:  # a regular file
                size = info.st_size
            expect = size is None or size > EXPECT_THRESHOLD
            fresh = not conn.is_connected
            try:
                self._send(conn, job, BodyFollowing(size), expect)
            except ConnectionClosed as exc:
                self._closed_early(origin, job, exc, deque())
                return False
            except (DugongError, OSError) as exc:
                self._send_failed(origin, job, exc, fresh, deque())
                return False
            if fresh:
                self._connected(origin, conn)
            early: str | None = None
            resp: HTTPResponse | None = None
            try:
                if expect:
                    interim = conn.read_response()
                    if interim.status != 100:
                        resp = interim
                        early = ("the server refused the upload before it was sent"
                                 if interim.status >= 400 else
                                 "the server answered before the upload was sent "
                                 "(nothing was uploaded)")
                    elif self.plan.verbose:
                        self._show_response(interim)
                if resp is None:
                    early = self._send_file(conn, job, source, size, buf)
                    resp = conn.read_response()
            except ConnectionClosed as exc:
                self._closed_early(origin, job, exc, deque())
                return False
            except _ReadFailed as exc:
                self._finish(job, EXIT_FAILED, str(exc))
                return False
            except (DugongError, OSError) as exc:
                self._finish(job, EXIT_FAILED, _cause(exc))
                return False
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        return self._deliver(conn, job, resp, buf, origin, deque(), early) and \
            conn.is_connected and conn.is_idle

    def _send_file(self, conn: HTTPConnection, job: _Job, source: IO[bytes], size: int | None,
                   buf: memoryview) -> str | None:
        """Send the upload's bytes; None, or why the answer came before they all went."""
        meter = self.console.meter(f"{_label(job)} (upload)", size)
        sent = 0
        try:
            while size is None or sent < size:
                want = READ_SIZE if size is None else min(READ_SIZE, size - sent)
                try:
                    n = source.readinto(buf[:want])  # type: ignore[attr-defined]
                except OSError as exc:
                    raise _ReadFailed(f"cannot read {self.plan.upload}: "
                                      f"{exc.strerror or exc}") from None
                if not n:
                    if size is None:
                        break
                    raise _ReadFailed(f"{self.plan.upload} ended after {sent} of {size} bytes "
                                      "(it changed while it was sent)")
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

    def _finish(self, job: _Job, code: int, message: str | None = None) -> None:
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

    def _stop(self, job: _Job, exc: _WriteFailed) -> NoReturn:
        """Standard output failed: nothing more can be written in order."""
        with self.lock:
            first = not self.stopped
            self.stopped = True
        if first:
            self.console.error(job.url, str(exc))
            job.code = EXIT_FAILED
        raise _Stop

    # -- -v

    def _show_request(self, conn: HTTPConnection, job: _Job,
                      body: bytes | BodyFollowing | None, expect100: bool) -> None:
        """The request head as dugong sends it (built by a scratch engine)."""
        host = f"[{conn.hostname}]" if ":" in conn.hostname else conn.hostname
        default = 443 if conn.ssl_context is not None else 80
        prefix = ""
        if conn.proxy is not None and conn.ssl_context is None:
            prefix = "http://" + (host if conn.port == 80 else f"{host}:{conn.port}")
        if conn.port != default:
            host += f":{conn.port}"
        out = ClientEngine(host, target_prefix=prefix).send_request(
            self.plan.method, job.split.target, self.plan.headers, body, expect100)
        first = out[0] if isinstance(out, tuple) else out
        head = bytes(first).partition(b"\r\n\r\n")[0].decode("latin-1")
        self.console.say("\n".join(f"> {line}" if line else ">"
                                   for line in [*head.split("\r\n"), ""]))

    def _show_response(self, resp: HTTPResponse) -> None:
        lines = _head_text(resp).split("\r\n")[:-1]
        self.console.say("\n".join(f"< {line}" if line else "<" for line in lines))


class _ReadFailed(Exception):
    """Reading the upload failed."""


# ------------------------------------------------------------------------ main


def _connections(jobs: list[_Job], parallel: int) -> int:
    """How many connections (and threads) the jobs can use at once."""
    per_origin: dict[tuple[str, str, int], int] = {}
    for job in jobs:
        key = job.split[:3]
        per_origin[key] = per_origin.get(key, 0) + 1
    lanes = sum(min(parallel, n) for n in per_origin.values())
    return min(lanes, max(parallel, MAX_CONNECTIONS))


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def main(argv: Sequence[str]) -> int:
    """Run the command line *argv* (without the program name); the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_intermixed_args(argv)
    except SystemExit as exc:  # --help, --version, or bad usage (already reported)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        plan, jobs = _plan(args)
        ctx = _tls_context(args) if any(j.split.scheme == "https" for j in jobs) else None
        count = _connections(jobs, args.parallel)
        pool = ConnectionPool(count, max_per_host=args.parallel, ssl_context=ctx,
                              proxy=args.proxy, trust_env=args.proxy is None,
                              timeout=args.timeout)
    except (_UsageError, ValueError) as exc:  # ValueError: a proxy URL
        parser.print_usage(sys.stderr)
        print(f"{NAME}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stdout = sys.stdout.buffer
    to_terminal = any(j.path is None for j in jobs) and stdout.isatty()
    console = _Console(sys.stderr, _stderr_is_terminal() and not to_terminal)
    output = InOrder(stdout, len(jobs))
    fetcher = _Fetcher(plan, jobs, pool, console, args.parallel, output)
    threads = [threading.Thread(target=fetcher.run, name=f"dugong-fetch-{i}", daemon=True)
               for i in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        fetcher.stopped = True
        console.say(f"{NAME}: interrupted")
        return EXIT_INTERRUPTED
    finally:
        pool.close()
    try:
        stdout.flush()
    except OSError as exc:
        if not fetcher.stopped:
            console.say(f"{NAME}: cannot write to standard output: {exc.strerror or exc}")
        return EXIT_FAILED
    finally:
        output.close()
    for job in jobs:
        if job.code is None:  # not fetched: standard output failed first
            return EXIT_FAILED
        if job.code:
            return job.code
    return 0
