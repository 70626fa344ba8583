"""The servers (nginx; the sink, ``python bench_servers.py``) and process functions.
Every body is cut from one pattern, so one digest checks them all."""

import contextlib
import ctypes
import functools
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
from subprocess import DEVNULL, PIPE, Popen

PATTERN_SIZE = 1 << 20
PIECE_SIZE = 64 * 1024
SMALL_SIZE = 1024


@functools.cache
def pattern() -> bytes:
    """The 1 MiB of seeded random bytes that every body is cut from."""
    return random.Random(0xD06060).randbytes(PATTERN_SIZE)


def pattern_pieces(n: int):
    """The first *n* bytes of the pattern repeated, in pieces of at most 1 MiB."""
    for offset in range(0, n, PATTERN_SIZE):
        yield pattern()[: n - offset]


@functools.cache
def stream_digest(n: int) -> str:
    """SHA-256 (hex) of the first *n* bytes of the pattern repeated."""
    h = hashlib.sha256()
    for piece in pattern_pieces(n):
        h.update(piece)
    return h.hexdigest()


def page_aligned(size: int) -> mmap.mmap:
    """A zeroed buffer that starts on a page (see BENCHMARK.rst: why it matters)."""
    return mmap.mmap(-1, size)


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds run by process *pid*, all threads, ended ones included: its CPU clock,
    the scheduler's own count (ticks are too coarse for short runs). None if it is gone."""
    try:
        return time.clock_gettime((~pid << 3) | 2) if pid is not None else None
    except OSError:
        return None


def stop_process(proc: Popen, sig: int = signal.SIGTERM) -> None:
    """Stop one process that we started, by its PID, and close our pipes to it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for pipe in filter(None, (proc.stdin, proc.stdout)):
        pipe.close()


NGINX_CONF = """\
master_process off; daemon off; pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off; sendfile off; tcp_nodelay on; etag off;
    default_type application/octet-stream;
    keepalive_requests 1000000000; keepalive_timeout 3600s;
    # without the file cache, stat() at every request caps pipelining at ~40,000 req/s
    open_file_cache max=64 inactive=3600s; open_file_cache_valid 3600s;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp; uwsgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port}; root {dir}/www;
        location /large/ {{ sendfile on; }}
    }}
}}
"""


class Nginx:
    """nginx on 127.0.0.1, serving *workdir*/www, as one process: no master, no worker."""

    def __init__(self, binary: str, workdir: str):
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
        self.version = (out.stderr or out.stdout).strip().split(":", 1)[-1].strip()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf, log = os.path.join(workdir, "nginx.conf"), os.path.join(workdir, "nginx.log")
        with open(conf, "w") as fh:
            fh.write(NGINX_CONF.format(dir=workdir, port=self.port))
        cmd = [binary, "-p", workdir, "-c", conf, "-e", log]
        # prctl(PR_SET_PDEATHSIG) in the child: nginx ends with the benchmark
        die = functools.partial(ctypes.CDLL(None).prctl, 1, signal.SIGTERM)
        with open(log, "wb") as out:
            self.proc = Popen(cmd, stdin=DEVNULL, stdout=out, stderr=out, preexec_fn=die)
        for _ in range(200):  # until it listens, 10 s at most
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        with open(log, errors="replace") as fh:
            raise RuntimeError(f"nginx did not start: {fh.read()[-800:]}")

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGQUIT)  # graceful


class ReceiveBuffer:
    """A page-aligned receive buffer over a socket; the unread bytes: buf[start:end]. The
    sink reads requests with it, the floor responses (finding where each one ends)."""

    def __init__(self, sock: socket.socket, size: int):
        self.sock, self.buf = sock, page_aligned(size)
        self.view = memoryview(self.buf)
        self.start = self.end = 0

    def fill(self) -> None:
        """Receive once more (first moving unread bytes to the front if it is full)."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):
            self.buf.move(0, self.start, self.end - self.start)
            self.start, self.end = 0, self.end - self.start
        if not (got := self.sock.recv_into(self.view[self.end :])):
            raise ConnectionError("the peer closed the connection")
        self.end += got

    def read_until(self, delim: bytes) -> bytes:
        while (i := self.buf.find(delim, self.start, self.end)) < 0:
            self.fill()
        out, self.start = bytes(self.view[self.start : i]), i + len(delim)
        return out

    def stream(self, n: int, take) -> None:
        """Consume *n* bytes, handing them to *take*: what is buffered, then each recv."""
        have = min(n, self.end - self.start)
        if have:
            take(self.view[self.start : self.start + have])
            self.start += have
            n -= have
        if n:
            self.start = self.end = 0
        view, recv_into, size = self.view, self.sock.recv_into, len(self.view)
        while n:
            if not (k := recv_into(view, n if n < size else size)):
                raise ConnectionError("the peer closed the connection inside a body")
            take(view[:k])
            n -= k

    def head(self, start, end):
        """(status, Content-Length, where the body starts) of the head buf[start:end]."""
        buf = self.buf
        i = buf.find(b"\r\nContent-Length: ", start, end)
        length = int(buf[i + 18 : buf.find(b"\r", i + 18, end + 2)]) if i >= 0 else 0
        return int(buf[start + 9 : start + 12]), length, end + 4

    def next_head(self):
        """Consume one response head: (status, Content-Length)."""
        while (i := self.buf.find(b"\r\n\r\n", self.start, self.end)) < 0:
            self.fill()
        status, length, self.start = self.head(self.start, i)
        return status, length

    def parse(self):
        """The next whole response in the buffer as (status, body), or None."""
        if (i := self.buf.find(b"\r\n\r\n", self.start, self.end)) >= 0:
            status, length, body = self.head(self.start, i)
            if body + length <= self.end:
                self.start = body + length
                return status, bytes(self.view[body : self.start])
        return None


def serve(sock: socket.socket) -> None:
    """The sink, on one connection until the client closes it: reads any request body
    (answering Expect: 100-continue) and answers its length and SHA-256 (only if asked
    with X-Digest: 1; else -); GET /gen/N sends N bytes (W7's stream)."""
    with sock, contextlib.suppress(ConnectionError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rb = ReceiveBuffer(sock, 1 << 20)
        while True:
            lines = rb.read_until(b"\r\n\r\n").split(b"\r\n")
            pairs = (line.lower().partition(b":") for line in lines[1:])
            fields = {name.strip(): value.strip() for name, _, value in pairs}
            digest = hashlib.sha256() if fields.get(b"x-digest") == b"1" else None
            take = digest.update if digest else lambda piece: None
            if fields.get(b"expect") == b"100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            count = int(fields.get(b"content-length", 0))
            rb.stream(count, take)
            if fields.get(b"transfer-encoding") == b"chunked":
                while size := int(rb.read_until(b"\r\n").split(b";")[0], 16):
                    rb.stream(size, take)
                    count += size
                    rb.read_until(b"\r\n")
                while rb.read_until(b"\r\n"):
                    pass  # trailer fields
            target = lines[0].split(b" ")[1]
            if target.startswith(b"/gen/"):
                n = int(target[5:])
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                for piece in pattern_pieces(n):
                    sock.sendall(piece)
            else:
                body = b"%d %s\n" % (count, digest.hexdigest().encode() if digest else b"-")
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


class Sink:
    """The sink in a child process of its own, stopped by PID."""

    def __init__(self, python: str):
        self.proc = Popen([python, os.path.abspath(__file__)], stdin=PIPE, stdout=PIPE)
        self.port = int(self.proc.stdout.readline())  # once it listens

    def stop(self) -> None:
        stop_process(self.proc)


if __name__ == "__main__":
    # the end of standard input (a pipe from the parent) means the parent is gone
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    print(listener.getsockname()[1], flush=True)
    while True:
        threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
