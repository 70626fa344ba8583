"""Servers for contrib/bench.py: nginx for static files, and the upload sink.

The sink is a small raw-socket HTTP/1.1 server that runs in its own process
(``python bench_servers.py sink``). It prints its port on the first line of
standard output and then serves until it is terminated. It understands:

* any request with a body (Content-Length or chunked, ``Expect: 100-continue``
  answered with an interim ``100 Continue``): it reads the body without keeping
  it and answers ``200`` with a short text body ``"<byte count> <digest>\\n"``.
  The SHA-256 digest is only computed when the request has the header
  ``X-Digest: 1`` (validation runs); otherwise it is ``-``;
* ``GET /gen/<n>``: a body of ``n`` bytes generated from the benchmark pattern
  (a stream that never touches a file);
* ``GET /1k``: the first KiB of the pattern (the same bytes as nginx's ``1k.bin``),
  used only when nginx cannot be had.

The pattern is the same everywhere: 1 MiB of seeded pseudo-random bytes,
repeated. Downloads, uploads and generated streams of ``n`` bytes are all
``n`` bytes of the repeated pattern, so one digest function checks them all.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

PATTERN_SIZE = 1 << 20
PIECE_SIZE = 64 * 1024
SMALL_SIZE = 1024

_pattern_cache: list[bytes] = []


def pattern() -> bytes:
    """The 1 MiB pattern every body of the benchmark is cut from."""
    if not _pattern_cache:
        _pattern_cache.append(random.Random(0xD06060).randbytes(PATTERN_SIZE))
    return _pattern_cache[0]


def page_aligned(size: int) -> mmap.mmap:
    """A zeroed, writable buffer of *size* bytes that starts on a page boundary.

    Where a receive buffer starts matters here: the kernel's copy into a buffer
    that starts 4 to 24 bytes past a page boundary took two to four times the
    CPU of one that starts on it. A ``bytearray`` lands wherever malloc puts it,
    which would give each row of a run a placement, and so a speed, of its own;
    every buffer that the benchmark itself receives into (the floor's, the
    sink's, and the one each client's ``readinto`` fills) is placed alike.
    """
    return mmap.mmap(-1, size)


def stream_digest(n: int) -> str:
    """SHA-256 (hex) of ``n`` bytes of the repeated pattern."""
    pat = pattern()
    h = hashlib.sha256()
    full, rest = divmod(n, PATTERN_SIZE)
    for _ in range(full):
        h.update(pat)
    h.update(pat[:rest])
    return h.hexdigest()


def write_pattern_file(path: str, n: int) -> None:
    pat = pattern()
    with open(path, "wb") as fh:
        full, rest = divmod(n, PATTERN_SIZE)
        for _ in range(full):
            fh.write(pat)
        fh.write(pat[:rest])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout} s"
                ) from None
            time.sleep(0.05)


def process_cpu(pid: int | None) -> dict[int, int] | None:
    """The CPU time that each thread of process *pid* has run so far, in
    nanoseconds by thread id; None where Linux's ``/proc`` cannot tell. The
    scheduler's own count is used: the tick-sampled ``utime`` and ``stime`` are
    too coarse for runs of a few hundred milliseconds."""
    if pid is None:
        return None
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    times = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                times[int(tid)] = int(fh.read().split()[0])
        except OSError:
            continue  # the thread ended meanwhile
        except (IndexError, ValueError):
            return None
    return times


def cpu_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds that the threads seen *after* ran since *before* (a thread that
    ended in between, e.g. that of a connection closed just before a run, is left
    out: summing only the live threads would make its earlier time negative)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def pin_process(pid: int | None, cpus: set[int]) -> bool:
    """Keep every thread of process *pid* (and the threads it starts later) on
    *cpus*; False where the system cannot."""
    if pid is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), cpus)
    except OSError:
        return False
    return True


def child_pids(pid: int) -> list[int]:
    """The PIDs of the processes whose parent is *pid* (Linux ``/proc``; else [])."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(name))
    return found


def stop_process(
    proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 5.0
) -> None:
    """Stop one process that we started, by its PID."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

NGINX_CONF = """\
# written by contrib/bench.py for one benchmark run
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile off;
    tcp_nodelay on;
    open_file_cache max=64 inactive=3600s;
    open_file_cache_valid 3600s;
    etag off;
    keepalive_requests 1000000000;
    keepalive_timeout 3600s;
    default_type application/octet-stream;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location / {{
        }}
        # the large file may use sendfile (server side only; clients are measured)
        location /large/ {{
            sendfile on;
        }}
    }}
}}
"""


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies,
    so that nginx never outlives a benchmark that was killed."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def find_nginx() -> str | None:
    import shutil

    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


class Nginx:
    """One nginx master (one worker) on 127.0.0.1, started and stopped by PID."""

    def __init__(self, binary: str, workdir: str):
        self.binary = binary
        self.dir = workdir
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def version(self) -> str:
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True, check=False)
        return (out.stderr or out.stdout).strip().split(":", 1)[-1].strip()

    def start(self) -> int:
        # the worker may run as an unprivileged user: let it read the files
        os.chmod(self.dir, 0o755)
        for attempt in range(3):
            self.port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            user = ""
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                import pwd

                # run the worker as an unprivileged user that exists here
                for name in ("www-data", "nobody"):
                    try:
                        pwd.getpwnam(name)
                    except KeyError:
                        continue
                    user = f"user {name};"
                    break
            with open(conf, "w") as fh:
                fh.write(NGINX_CONF.format(dir=self.dir, port=self.port, user=user))
            log = open(os.path.join(self.dir, "nginx.stderr"), "wb")  # noqa: SIM115 (closed below)
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-p",
                    self.dir,
                    "-c",
                    conf,
                    "-e",
                    os.path.join(self.dir, "error.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
            log.close()
            try:
                wait_connectable(self.port, self.proc)
                return self.port
            except RuntimeError as exc:
                stop_process(self.proc, signal.SIGQUIT)
                err = ""
                for name in ("nginx.stderr", "error.log"):
                    try:
                        with open(os.path.join(self.dir, name)) as fh:
                            err += fh.read()[-2000:]
                    except OSError:
                        pass
                if attempt == 2:
                    raise RuntimeError(f"nginx did not start: {exc}\n{err}") from None
        raise AssertionError("unreachable")

    def worker_pid(self) -> int | None:
        """The PID of the one worker process, which does all the serving."""
        kids = child_pids(self.proc.pid) if self.proc is not None else []
        return kids[0] if len(kids) == 1 else None

    def stop(self) -> None:
        # SIGQUIT: graceful shutdown of the master and its worker
        stop_process(self.proc, signal.SIGQUIT)
        self.proc = None


# --------------------------------------------------------------------------
# the sink (runs in its own process)
# --------------------------------------------------------------------------


class _ClientGone(Exception):
    pass


class ReceiveBuffer:
    """A fixed receive buffer over a blocking socket: unread bytes are
    ``buf[start:end]``. Used by the sink and by the benchmark's raw-socket floor."""

    def __init__(self, sock: socket.socket, size: int):
        self.sock = sock
        self.size = size
        self.buf = page_aligned(size)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0

    def closed(self, where: str) -> Exception:
        """The exception for a peer that closed the connection *where*."""
        return ConnectionError(f"peer closed the connection {where}")

    def _fill(self) -> None:
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == self.size:
            n = self.end - self.start
            self.buf.move(0, self.start, n)
            self.start, self.end = 0, n
        got = self.sock.recv_into(self.view[self.end :])
        if not got:
            raise self.closed("")
        self.end += got

    def skip(self, n: int, hasher) -> None:
        """Consume ``n`` bytes, feeding them to ``hasher`` if it is not None."""
        avail = self.end - self.start
        if avail >= n:
            if hasher is not None:
                hasher.update(self.view[self.start : self.start + n])
            self.start += n
            return
        if hasher is not None:
            hasher.update(self.view[self.start : self.end])
        n -= avail
        self.start = self.end = 0
        view, recv_into, size = self.view, self.sock.recv_into, self.size
        while n:
            k = recv_into(view, n if n < size else size)
            if not k:
                raise self.closed("inside a body")
            if hasher is not None:
                hasher.update(view[:k])
            n -= k


class _SinkConnection(ReceiveBuffer):
    MAX_HEAD = 64 * 1024

    def __init__(self, sock: socket.socket):
        super().__init__(sock, 1 << 20)

    def closed(self, where: str) -> Exception:
        return _ClientGone()

    def read_until(self, delim: bytes, limit: int) -> bytes:
        while True:
            i = self.buf.find(delim, self.start, self.end)
            if i >= 0:
                out = bytes(self.view[self.start : i])
                self.start = i + len(delim)
                return out
            if self.end - self.start > limit:
                raise ValueError("line or head too long")
            self._fill()

    def serve(self) -> None:
        sock = self.sock
        pat = pattern()
        while True:
            try:
                head = self.read_until(b"\r\n\r\n", self.MAX_HEAD)
            except _ClientGone:
                return
            lines = head.split(b"\r\n")
            method, target, _version = lines[0].split(b" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            hasher = hashlib.sha256() if headers.get(b"x-digest") == b"1" else None
            if headers.get(b"expect", b"").lower() == b"100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            count = 0
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                while True:
                    size_line = self.read_until(b"\r\n", 1024)
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self.read_until(b"\r\n", self.MAX_HEAD):
                            pass  # trailer fields
                        break
                    self.skip(size, hasher)
                    count += size
                    if self.read_until(b"\r\n", 2) != b"":
                        raise ValueError("chunk not followed by CRLF")
            elif b"content-length" in headers:
                count = int(headers[b"content-length"])
                self.skip(count, hasher)
            close = headers.get(b"connection", b"").lower() == b"close"
            if method == b"GET" and target.startswith(b"/gen/"):
                n = int(target[5:])
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                view = memoryview(pat)
                while n:
                    k = n if n < PATTERN_SIZE else PATTERN_SIZE
                    sock.sendall(view[:k])
                    n -= k
            elif method == b"GET" and target == b"/1k":
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SMALL_SIZE
                    + pat[:SMALL_SIZE]
                )
            else:
                digest = hasher.hexdigest().encode() if hasher is not None else b"-"
                body = b"%d %s\n" % (count, digest)
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
            if close:
                return


def _serve_one(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _SinkConnection(sock).serve()
    except (OSError, ValueError) as exc:
        print(f"sink: connection ended: {exc!r}", file=sys.stderr)
    finally:
        sock.close()


def _exit_when_parent_goes() -> None:
    # our standard input is a pipe from the parent: EOF means it is gone
    sys.stdin.buffer.read()
    os._exit(0)


def run_sink() -> None:
    # SIGTERM keeps its default action (terminate), whichever thread gets it
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    pattern()
    print(lsock.getsockname()[1], flush=True)
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()


class Sink:
    """The sink in a child process of its own, stopped by PID."""

    def __init__(self, python: str):
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> int:
        self.proc = subprocess.Popen(
            [self.python, os.path.abspath(__file__), "sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            stop_process(self.proc)
            raise RuntimeError("the upload sink did not start")
        self.port = int(line)
        wait_connectable(self.port, self.proc)
        return self.port

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.stdout.close()
        self.proc = None


if __name__ == "__main__":
    if sys.argv[1:] == ["sink"]:
        run_sink()
    else:
        sys.exit("usage: bench_servers.py sink")
