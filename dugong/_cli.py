"""``python -m dugong [options] URL...``: the command line, in curl's spelling.

This module reads and checks the command line and turns it into a `Plan` and
one `Job` per URL; `_fetcher` fetches them (its docstring tells how, and why
with threads).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import threading
from collections.abc import Sequence
from typing import Final, NoReturn

from ._fetcher import (
    EXIT_FAILED,
    NAME,
    Console,
    Fetcher,
    Job,
    Plan,
    connections_for,
)
from ._inorder import HOLD_MEMORY, InOrder
from ._pool import ConnectionPool, _split_url, _Target
from .engine import ClientEngine

__all__ = ["main"]

PROG: Final = "python -m dugong"
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

DESCRIPTION = """\
Fetch each URL and write its body to standard output, in the order of the URLs,
or to files. Options are spelled as in curl. Without any argument, run a demo
against a local server instead."""

EPILOG = """\
URLs of one host share up to --parallel connections, each carrying up to
--pipeline requests at once (GET, HEAD and OPTIONS without a body; other
requests one at a time). Bodies are streamed; a body that arrives before
those of earlier URLs waits (in memory up to {hold} MiB for all of them, beyond
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

    p = _Parser(
        prog=PROG,
        usage=f"{PROG} [options] URL...",
        description=DESCRIPTION,
        epilog=EPILOG.format(hold=HOLD_MEMORY >> 20),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "urls",
        metavar="URL",
        nargs="+",
        help="http:// or https:// URL (a port, path and query may follow)",
    )
    req = p.add_argument_group("request")
    req.add_argument(
        "-X",
        "--request",
        metavar="METHOD",
        help="request method (default: GET; HEAD with -I, PUT with -T, "
        "POST with -d or --data-binary)",
    )
    req.add_argument(
        "-H",
        "--header",
        metavar="'NAME: VALUE'",
        action="append",
        default=[],
        help="add a header field (repeatable); 'NAME;' sends an empty value",
    )
    req.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        dest="data",
        action="append",
        type=lambda s: ("text", s),
        default=[],
        help="send DATA as the body (POST, form-encoded); @FILE reads it from "
        "FILE without its line ends, @- from standard input; several "
        "are joined with '&'",
    )
    req.add_argument(
        "--data-binary",
        metavar="DATA",
        dest="data",
        action="append",
        type=lambda s: ("binary", s),
        help="like -d, but @FILE is sent exactly as it is",
    )
    req.add_argument(
        "-T",
        "--upload-file",
        metavar="FILE",
        help="stream FILE as the body (PUT); files over 1 MiB ask "
        "'Expect: 100-continue' first, so that a refusal costs no upload; "
        "- reads standard input (sent chunked)",
    )
    req.add_argument(
        "-I",
        "--head",
        action="store_true",
        help="send HEAD and print the status line and header fields",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the body to FILE instead of standard output (one URL only)",
    )
    out.add_argument(
        "--output-dir",
        metavar="DIR",
        help="write each body to DIR/NAME, NAME being the last segment of its "
        "URL's path (curl's -O naming; a URL whose path ends with '/' has "
        "none and is refused); DIR is created if needed",
    )
    out.add_argument(
        "-i",
        "--include",
        action="store_true",
        help="write the status line and header fields before the body",
    )
    out.add_argument(
        "-f",
        "--fail",
        action="store_true",
        help="treat a status of 400 or more as an error: no body, exit status 22",
    )
    out.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show requests ('> ') and response heads ('< ') on standard error",
    )
    conn = p.add_argument_group("connections")
    conn.add_argument(
        "--cacert",
        metavar="FILE",
        help="trust the CA certificates in FILE (PEM) instead of the system's",
    )
    conn.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify TLS certificates and host names",
    )
    conn.add_argument(
        "-x",
        "--proxy",
        metavar="URL",
        help="HTTP proxy 'http://[USER:PASSWORD@]HOST[:PORT]' (default: the "
        "http_proxy, https_proxy and no_proxy variables)",
    )
    conn.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up on a URL when its connection makes no progress for this "
        "long (connecting included; default: wait without limit)",
    )
    conn.add_argument(
        "--parallel",
        metavar="N",
        type=_positive,
        default=1,
        help="connections per host (default: 1)",
    )
    conn.add_argument(
        "--pipeline",
        metavar="N",
        type=_positive,
        default=1,
        help="requests in flight per connection (default: 1, no pipelining)",
    )
    p.add_argument("-V", "--version", action="version", version=f"dugong {__version__}")
    return p


# ------------------------------------------------------------------------ the plan


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
        raise _UsageError(
            f"-H {text!r}: no value ('Name;' sends an empty one; curl's "
            "removal of a default field is not supported)"
        )
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
        raise _UsageError(
            f"no file name at the end of the URL's path ({split.target!r}); give one with -o FILE"
        )
    return name


def _plan(args: argparse.Namespace) -> tuple[Plan, list[Job]]:
    """Check the command line; raises `_UsageError`."""
    jobs = []
    for index, url in enumerate(args.urls):
        try:
            jobs.append(Job(index, url, _split_url(url)))
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
            raise _UsageError(f"cannot read {args.upload_file}: {exc.strerror or exc}") from None
    body = None
    if args.data:
        body = b"&".join(_read_data(text, kind) for kind, text in args.data)
    method = args.request or (
        "HEAD" if args.head else "PUT" if args.upload_file else "POST" if args.data else "GET"
    )
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
                raise _UsageError(
                    f"{seen[name]} and {job.url} would both be written to "
                    f"{os.path.join(args.output_dir, name)}"
                )
            seen[name] = job.url
            job.path = os.path.join(args.output_dir, name)
    plan = Plan(
        method,
        headers,
        body,
        args.upload_file,
        include=args.include or args.head,
        write_body=not args.head,
        fail=args.fail,
        verbose=args.verbose,
        pipeline=args.pipeline,
    )
    return plan, jobs


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


# ------------------------------------------------------------------------ main


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
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
        count = connections_for(jobs, args.parallel)
        pool = ConnectionPool(
            count,
            max_per_host=args.parallel,
            ssl_context=ctx,
            proxy=args.proxy,
            trust_env=args.proxy is None,
            timeout=args.timeout,
        )
    except (_UsageError, ValueError) as exc:  # ValueError: a proxy URL
        parser.print_usage(sys.stderr)
        print(f"{NAME}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stdout = sys.stdout.buffer
    to_stdout = [job for job in jobs if job.path is None]
    output = InOrder(stdout, len(to_stdout))
    for number, job in enumerate(to_stdout):
        job.slot = output.slot(number)
    # No progress line when bodies go to the same terminal (as in curl).
    console = Console(
        sys.stderr, _is_terminal(sys.stderr) and not (to_stdout and _is_terminal(sys.stdout))
    )
    fetcher = Fetcher(plan, jobs, pool, console, args.parallel)
    threads = [
        threading.Thread(target=fetcher.run, name=f"dugong-fetch-{i}", daemon=True)
        for i in range(count)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                # A wait with a timeout: CPython runs a signal's Python handler in the main
                # thread only, and an endless join is not woken by a Ctrl-C that the
                # kernel gave another thread (a fetching one, waiting in a receive).
                thread.join(0.25)
        stdout.flush()
    except KeyboardInterrupt:
        fetcher.stopped = True
        console.say(f"{NAME}: interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:  # the last flush
        if not fetcher.stopped:
            console.say(f"{NAME}: cannot write to standard output: {exc.strerror or exc}")
        fetcher.stopped = True
    finally:
        pool.close()
        output.close()
    if fetcher.stopped:
        # Standard output is broken: point it elsewhere, so that the interpreter's own
        # flush at exit finds nothing to complain about.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
        return EXIT_FAILED
    for job in jobs:
        if job.code:
            return job.code
    return 0
