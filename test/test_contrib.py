"""The contrib/ programs, run as subprocesses against local servers."""

from __future__ import annotations

import os
import pathlib
import pty
import re
import select
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Callable

import pytest

from servers import Request, Step, body_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"
TIMEOUT = 60


def env() -> dict[str, str]:
    """The environment of the programs: the dugong of this working tree comes first."""
    variables = dict(os.environ)
    variables["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return variables


def run(name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(CONTRIB / name), *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
        env=env(),
        check=False,
    )


def run_with_tty_stderr(name: str, *args: str) -> tuple[int, bytes, str]:
    """Run a program with stderr on a pseudo-terminal: exit status, stdout, terminal text."""
    master, slave = pty.openpty()
    with subprocess.Popen(
        [sys.executable, str(CONTRIB / name), *args],
        env=env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    ) as proc:
        os.close(slave)
        assert proc.stdout is not None
        terminal = bytearray()
        deadline = time.monotonic() + TIMEOUT
        try:
            while time.monotonic() < deadline:
                if not select.select([master], [], [], 0.5)[0]:
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the program has exited and closed the terminal
                    break
                if not data:
                    break
                terminal += data
            else:
                proc.kill()
                pytest.fail(f"{name} did not finish within {TIMEOUT} s")
        finally:
            os.close(master)
        out = proc.stdout.read()
        status = proc.wait(TIMEOUT)
    return status, out, terminal.decode()


def screen_lines(terminal: str) -> list[str]:
    """The successive states of the progress line in what a terminal received."""
    return [line.strip() for line in terminal.replace("\n", "\r").split("\r") if line.strip()]


def response(body: bytes, *fields: str) -> bytes:
    head = "".join(f"{field}\r\n" for field in (f"Content-Length: {len(body)}", *fields))
    return f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body


def answers(
    status_of: dict[str, int], last: int, only: int | None = None, close_after: str | None = None
) -> Callable[[list[Request]], bytes]:
    """Step.send data: answers to the *last* requests read (the first *only* of them),
    status by path (404 if not given), ``Connection: close`` on *close_after*."""

    def make(requests: list[Request]) -> bytes:
        out = b""
        for request in requests[-last:][:only]:
            status = status_of.get(request.path, 404)
            reason = "OK" if status == 200 else "Not Found"
            body = f"{request.path}\n".encode()
            extra = "Connection: close\r\n" if request.path == close_after else ""
            out += (
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body
        return out

    return make


# --------------------------------------------------------------------- httpcat


def test_httpcat_prints_bodies(http_server):
    res = run(
        "httpcat.py",
        f"{http_server.url}/size/100000",
        f"{http_server.url}/chunked/5000?chunk=700",
        f"{http_server.url}/size/0",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == body_for(100_000) + body_for(5000)
    assert res.stderr == b""
    assert [r.target for r in http_server.requests] == [
        "/size/100000",
        "/chunked/5000?chunk=700",
        "/size/0",
    ]


def test_httpcat_reconnects_after_connection_close(http_server):
    res = run("httpcat.py", f"{http_server.url}/close/3000", f"{http_server.url}/size/10")
    assert res.returncode == 0, res.stderr
    assert res.stdout == body_for(3000) + body_for(10)


def test_httpcat_https_with_cafile(https_server, tls_ca, tmp_path):
    cafile = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(cafile))
    url = f"https://127.0.0.1:{https_server.port}/size/20000"
    res = run("httpcat.py", "--cafile", str(cafile), url)
    assert res.returncode == 0, res.stderr
    assert res.stdout == body_for(20000)

    res = run("httpcat.py", url)  # the system's CAs do not know the test CA
    assert res.returncode == 1
    assert res.stdout == b""
    assert re.search(
        rb"^httpcat: https://\S+: SSLCertVerificationError: .*certificate verify "
        rb"failed",
        res.stderr,
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/status/404", b"server answered 404 Not Found"),
        ("/status/503", b"server answered 503 Service Unavailable"),
    ],
)
def test_httpcat_error_status(http_server, path, message):
    res = run(
        "httpcat.py",
        f"{http_server.url}/size/5",
        f"{http_server.url}{path}",
        f"{http_server.url}/size/7",
    )
    assert res.returncode == 1
    assert res.stdout == body_for(5)  # stops at the error
    assert res.stderr == b"httpcat: " + f"{http_server.url}{path}: ".encode() + message + b"\n"


def test_httpcat_connection_errors_and_bad_urls(scripted_server, unused_port):
    res = run("httpcat.py", f"http://127.0.0.1:{unused_port}/")
    assert res.returncode == 1
    assert b"ConnectionRefusedError" in res.stderr and b"Connection refused" in res.stderr

    server = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"),
            Step.close(),
        ]
    )
    res = run("httpcat.py", f"http://127.0.0.1:{server.port}/")
    assert res.returncode == 1
    assert res.stdout == b"short"
    assert re.search(rb"ConnectionClosed: .*after 5 of 100 body bytes", res.stderr)

    res = run("httpcat.py", "ftp://example.invalid/file")
    assert res.returncode == 2
    assert b"ftp://example.invalid/file: not an http:// or https:// URL" in res.stderr


def test_httpcat_output_file_without_terminal(http_server, tmp_path):
    out = tmp_path / "body"
    res = run("httpcat.py", "-o", str(out), f"{http_server.url}/size/300000")
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == body_for(300_000)
    assert res.stdout == b"" and res.stderr == b""  # no progress line off a terminal


def test_httpcat_progress_line_on_a_terminal(scripted_server, tmp_path):
    size = 1 << 20
    body = body_for(size)
    server = scripted_server(
        [
            Step.read_request(),
            Step.send(
                f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode() + body[:200_000]
            ),
            Step.sleep(0.3),  # longer than httpcat's PROGRESS_INTERVAL: one more update
            Step.send(body[200_000:]),
        ]
    )
    out = tmp_path / "big"
    status, stdout, terminal = run_with_tty_stderr(
        "httpcat.py", "-o", str(out), f"http://127.0.0.1:{server.port}/big"
    )
    assert status == 0, terminal
    assert out.read_bytes() == body
    assert stdout == b""
    lines = screen_lines(terminal)
    assert len(lines) >= 2, terminal
    *updates, final = lines
    # While running: bytes of the total, percentage, rate and time left.
    assert any(
        re.fullmatch(r"[\d.]+ (B|KiB|MiB) of 1\.0 MiB +\d+%  [\d.]+ \w+/s  0:00:\d\d left", line)
        for line in updates
    ), lines
    assert re.fullmatch(r"1\.0 MiB of 1\.0 MiB  100%  [\d.]+ \w+/s  in 0:00:0\d", final), lines


def test_httpcat_progress_without_length(http_server, tmp_path):
    out = tmp_path / "chunked"
    status, _, terminal = run_with_tty_stderr(
        "httpcat.py", "-o", str(out), f"{http_server.url}/chunked/50000"
    )
    assert status == 0, terminal
    assert out.read_bytes() == body_for(50000)
    lines = screen_lines(terminal)
    assert re.fullmatch(r"48\.8 KiB  [\d.]+ \w+/s  in 0:00:0\d", lines[-1]), lines
    for line in lines[:-1]:  # updates: no total, no percentage, the time so far
        assert re.fullmatch(r"[\d.]+ (B|KiB)  [\d.]+ \w+/s  0:00:0\d", line), lines


# --------------------------------------------------------------------- extract_links

PAGE = b"""<!doctype html>
<html><head><title>links</title>
<link rel="stylesheet" href="style.css">
<script src="/js/app.js"></script></head>
<body>
<a href="/a">first</a> <a href="b?x=1#frag">second</a> <a href="/a#again">first again</a>
<a href="/missing">gone</a> <img src="img/logo.png"> <a href="#top">self</a>
<a href="http://other.invalid/x">elsewhere</a> <a href="mailto:someone@example.org">mail</a>
</body></html>
"""

LOCAL_PATHS = [
    "/dir/style.css",
    "/js/app.js",
    "/a",
    "/dir/b?x=1",
    "/missing",
    "/dir/img/logo.png",
    "/dir/index.html",
]


def test_extract_links_pipelines_the_same_host_links(scripted_server):
    statuses = {path.split("?")[0]: 200 for path in LOCAL_PATHS if path != "/missing"}
    n = len(LOCAL_PATHS)
    server = scripted_server(
        [
            Step.read_request(),
            Step.send(response(PAGE, "Content-Type: text/html; charset=utf-8")),
            # All requests arrive before the first answer: they were pipelined.
            *[Step.read_request() for _ in range(n)],
            Step.send(answers(statuses, n)),
        ]
    )
    res = run("extract_links.py", f"http://127.0.0.1:{server.port}/dir/index.html")
    assert res.returncode == 1, res.stderr  # /missing is a broken link
    lines = res.stdout.decode().splitlines()
    assert lines[0] == (
        f"8 links on http://127.0.0.1:{server.port}/dir/index.html: "
        f"{n} on this server, 1 elsewhere"
    )
    base = f"http://127.0.0.1:{server.port}"
    expected = [("404 Not Found" if p == "/missing" else "200 OK", base + p) for p in LOCAL_PATHS]
    assert [(line.split()[0], line.split()[-1]) for line in lines[1 : 1 + n]] == [
        (status.split()[0], url) for status, url in expected
    ]
    assert lines[1 + n].split()[-1] == "http://other.invalid/x"
    assert lines[-1] == f"1 of {n} fetched links failed"
    assert [r.target for r in server.requests[0]] == ["/dir/index.html", *LOCAL_PATHS]


def test_extract_links_resends_after_the_server_closes(scripted_server):
    page = b'<base href="/sub/"><a href="one">1</a><a href="two">2</a><a href="three">3</a>'
    ok = {"/sub/one": 200, "/sub/two": 200, "/sub/three": 200}
    server = scripted_server(
        [
            [
                Step.read_request(),
                Step.send(response(page)),
                Step.read_request(),
                Step.read_request(),
                Step.read_request(),
                Step.send(answers(ok, 3, only=1, close_after="/sub/one")),
                Step.close(),
            ],
            [Step.read_request(), Step.read_request(), Step.send(answers(ok, 2))],
        ]
    )
    res = run("extract_links.py", f"http://127.0.0.1:{server.port}/")
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    for path in ok:
        assert re.search(rf"^200 OK +http://127\.0\.0\.1:{server.port}{path}$", out, re.M), out
    assert out.splitlines()[-1] == "all 3 fetched links answered"
    assert [[r.target for r in reqs] for reqs in server.requests] == [
        ["/", "/sub/one", "/sub/two", "/sub/three"],
        ["/sub/two", "/sub/three"],
    ]


def test_extract_links_page_errors(http_server):
    res = run("extract_links.py", f"{http_server.url}/status/500")
    assert res.returncode == 1
    assert res.stderr.endswith(b"server answered 500 Internal Server Error\n")
    res = run("extract_links.py", "not a url")
    assert res.returncode == 2


# --------------------------------------------------------------------- pipeline1


def test_pipeline1_fetches_in_order(http_server, tmp_path):
    urls = [f"{http_server.url}/size/{i * 10}" for i in range(200)]
    res = run("pipeline1.py", "-o", str(tmp_path), *urls)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert len(lines) == 201
    for i, line in enumerate(lines[:200]):
        assert line.split() == ["200", "OK", str(i * 10), "bytes", urls[i]]
        assert (tmp_path / str(i + 1)).read_bytes() == body_for(i * 10)
    assert re.fullmatch(
        r"200 responses in [\d.]+ s \(\d+ requests/s\), 0 with an error status", lines[-1]
    )


def test_pipeline1_really_pipelines(scripted_server):
    server = scripted_server(
        [*[Step.read_request() for _ in range(3)], Step.send(answers({"/x": 200, "/y": 200}, 3))]
    )
    base = f"http://127.0.0.1:{server.port}"
    res = run("pipeline1.py", f"{base}/x", f"{base}/y", f"{base}/z")
    assert res.returncode == 1  # /z is not found
    assert [line.split()[0] for line in res.stdout.decode().splitlines()[:3]] == [
        "200",
        "200",
        "404",
    ]
    assert res.stdout.decode().splitlines()[-1].endswith("1 with an error status")


def test_pipeline1_errors(http_server, scripted_server):
    res = run("pipeline1.py", f"{http_server.url}/size/1", "http://other.invalid/")
    assert res.returncode == 2
    assert b"all URLs must be on the server of" in res.stderr
    server = scripted_server(
        [Step.read_request(), Step.read_request(), Step.send(response(b"ok")), Step.close()]
    )
    base = f"http://127.0.0.1:{server.port}"
    res = run("pipeline1.py", f"{base}/1", f"{base}/2")
    assert res.returncode == 1
    assert re.search(rb"pipeline1: ConnectionClosed: ", res.stderr), res.stderr


# --------------------------------------------------------------------- select_loop


def test_select_loop_20_connections_100_requests(http_server):
    res = run("select_loop.py", "-c", "20", "-n", "100", f"{http_server.url}/size/700")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert lines[0] == (
        "20 connections x 100 requests: 2000 responses, "
        "2000 with a status below 400, 1400000 body bytes"
    )
    selector = "EpollSelector" if hasattr(__import__("select"), "epoll") else r"\w+Selector"
    assert re.fullmatch(rf"[\d.]+ s, \d+ requests/s, {selector}", lines[1])
    assert len(http_server.requests) == 2000


def test_select_loop_errors(http_server, unused_port):
    res = run("select_loop.py", "-c", "2", "-n", "3", f"{http_server.url}/status/404")
    assert res.returncode == 1
    assert b"6 responses, 0 with a status below 400" in res.stdout
    res = run("select_loop.py", "-c", "3", f"http://127.0.0.1:{unused_port}/")
    assert res.returncode == 1
    assert b"select_loop: ConnectionRefusedError" in res.stderr


# ---------------------------------------------------------------- cache_bench


def test_cache_bench_measures_every_cache():
    res = run("cache_bench.py", "--quick")
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    rows = res.stdout.decode().splitlines()[2:]
    names = [re.split(r" {2,}", row.strip())[0] for row in rows]
    assert names == [
        "_last_request",
        "_plain_heads",
        "_good_tokens",
        "_parsed",
        "_last_head",
        "_last_head + _parsed",
        "poller",
        "kernel waits",
        "enum aliases",
    ]
    for row in rows:
        hit, miss, saved = (int(n) for n in re.findall(r" (-?\d+)(?= )", row)[:3])
        assert hit > 0 and miss > 0 and saved == miss - hit


@pytest.mark.parametrize("pattern", ["lone", "batch", "seq"])
def test_instructions_runs_its_patterns(pattern):
    """The exchanges counted are real ones: each answer is checked (uncounted here)."""
    res = run("instructions.py", "--check", "--pattern", pattern)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"ok\n"


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="no valgrind")
def test_instructions_counts_per_exchange():
    tree = str(CONTRIB.parent)
    res = run("instructions.py", "--exchanges", "1000", "--seeds", "2", tree, tree)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    counts = [float(line.split()[0].replace(",", "")) for line in lines]
    assert len(counts) == 2 and all(1_000 < n < 1_000_000 for n in counts)
    # the same tree twice: the same count (given hash seeds; random ones moved it 1.5 %)
    assert abs(counts[1] / counts[0] - 1) < 0.005


@pytest.mark.skipif(
    not (shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")), reason="no nginx"
)
def test_floor_shapes_measures_every_shape():
    res = run("floor_shapes.py", "--rounds", "1", "--requests", "20")
    assert res.returncode == 0, res.stderr
    rows = [row.split() for row in res.stdout.decode().splitlines()[1:]]
    shapes = [(" ".join(row[:-4]), row[-4]) for row in rows]
    assert shapes == [
        *(("W1", variant) for variant in ("floor", "poll", "api-shape", "dugong")),
        *(
            (f"W2 {kind} d{depth}", variant)
            for depth in (16, 64)
            for kind, variants in (
                ("co", ("floor", "generators", "api-shape", "dugong")),
                ("batch", ("floor", "dugong")),
            )
            for variant in variants
        ),
        ("W5", "floor"),
        ("W5", "generators"),
        ("W5", "api-shape"),
        ("W5", "no-poll"),
        ("W5", "dugong"),
        ("W8 P=16", "floor"),
        ("W8 P=16", "pool"),
        ("W8 P=16", "collected"),
        ("W8 P=16", "dugong"),
        ("W8 P=1", "floor"),
        ("W8 P=1", "pool"),
        ("W8 P=1", "collected"),
        ("W8 P=1", "dugong"),
    ]
    for row in rows:
        assert float(row[-3].replace(",", "")) > 0 and row[-2].endswith("x")


# ---------------------------------------------------------------- the benchmark's logic


@pytest.fixture
def bench(monkeypatch):
    """The benchmark's modules (contrib/bench), importable."""
    monkeypatch.syspath_prepend(str(CONTRIB / "bench"))
    import bench_adapters
    import bench_report
    import bench_servers
    import bench_workloads

    return types.SimpleNamespace(
        adapters=bench_adapters,
        report=bench_report,
        servers=bench_servers,
        workloads=bench_workloads,
    )


def bench_row(client, workload, variant, median, cpu=1.0):
    return {
        "id": f"{workload}/{client}/{variant}",
        "client": client,
        "workload": workload,
        "variant": variant,
        "label": variant,
        "status": "ok",
        "median": median,
        "cpu": cpu,
    }


@pytest.mark.parametrize(
    ("dugong", "floor", "verdict"),
    [
        (31_000, 40_000, "met"),  # 3.1 x aiohttp
        (25_000, 40_000, "not met"),  # 2.5 x, and the floor reaches 4 x
        (25_000, 28_000, "out of reach"),  # not even the floor reaches 3 x aiohttp
    ],
)
def test_bench_goal_is_out_of_reach_only_when_the_floor_misses_it(bench, dugong, floor, verdict):
    rows = [
        bench_row("dugong", "W5", "aio", dugong),
        bench_row("aiohttp", "W5", "asyncio", 10_000),
        bench_row("floor", "W5", "loop", floor),
    ]
    (goal,) = bench.report.evaluate(rows)
    assert goal["verdict"] == verdict
    assert goal["value"] == pytest.approx(dugong / 10_000)
    assert goal["reach"] == pytest.approx(floor / 10_000)


def test_bench_goals_against_the_floor_of_the_same_pattern(bench):
    rows = [
        bench_row("dugong", "W8", "loop-p16", 50_000),
        bench_row("aiohttp", "W8", "asyncio-p1", 9_000),
        bench_row("floor", "W8", "loop-p1", 60_000),
        bench_row("floor", "W8", "loop-p16", 100_000),
        bench_row("dugong", "W3", "readinto", 900, cpu=0.5),
        bench_row("floor", "W3", "readinto", 1000, cpu=0.4),
    ]
    rows[2]["status"] = "error"  # the floor with pipeline 1: never the one compared with
    goals = {(g["row"], g["against"]): g for g in bench.report.evaluate(rows)}
    assert goals["W8/dugong/loop-p16", "aiohttp"]["verdict"] == "met"  # 5.6 x
    assert goals["W8/dugong/loop-p16", "floor"]["verdict"] == "not met"  # 0.5 x, never
    assert goals["W8/dugong/loop-p16", "floor"]["value"] == pytest.approx(0.5)
    assert goals["W3/dugong/readinto", "floor"]["verdict"] == "not met"  # CPU 1.25 x
    del rows[1]  # no aiohttp row: that goal has no data
    goals = {(g["row"], g["against"]): g for g in bench.report.evaluate(rows)}
    assert goals["W8/dugong/loop-p16", "aiohttp"]["verdict"] == "n/a"


def test_bench_server_share_of_a_core(bench):
    def run(wall, server_cpu=None):
        s = {"wall": wall, "cpu": wall / 2, "ops": 1000, "bytes": 0}
        return s if server_cpu is None else {**s, "server_cpu": server_cpu}

    row = {
        "workload": "W1",
        "variant": "seq",
        "status": "ok",
        "samples": [run(0.1, 0.05), run(0.2, 0.05), run(0.1, 0.04)],
    }
    bench.report.stats(row)
    assert row["median"] == 10_000
    assert row["cpu"] == pytest.approx(50)  # µs per request
    assert row["server_busy"] == pytest.approx(0.4)  # the median of 50 %, 25 %, 40 %
    row = {
        "workload": "W1",
        "variant": "seq",
        "status": "ok",
        "samples": [run(0.1, 0.05), run(0.1)],
    }
    bench.report.stats(row)
    assert row["server_busy"] is None


def test_bench_server_cpu_counts_every_thread_of_a_process(bench):
    """A server's CPU time counts all its threads, one that ended meanwhile included."""
    servers = bench.servers
    code = (
        "import sys, threading\n"
        "sys.stdin.readline()\n"
        "t = threading.Thread(target=lambda: sum(range(3_000_000)))\n"
        "t.start(); t.join(); print('ended', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        before = servers.process_cpu(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ended\n"
        after = servers.process_cpu(child.pid)
        assert after - before > 0.01  # the thread's sum, which takes tens of milliseconds
    finally:
        child.communicate()
    assert servers.process_cpu(child.pid) is None  # gone
    assert servers.process_cpu(None) is None


def test_bench_receive_buffers_start_on_a_page_and_keep_unread_bytes(bench):
    import ctypes
    import mmap
    import socket

    buf = bench.servers.page_aligned(3 * mmap.PAGESIZE)
    assert ctypes.addressof(ctypes.c_char.from_buffer(buf)) % mmap.PAGESIZE == 0
    assert len(buf) == 3 * mmap.PAGESIZE and buf[:] == bytes(len(buf))
    a, b = socket.socketpair()
    with a, b:
        reader = bench.servers.ReceiveBuffer(a, 16)
        b.sendall(b"0123456789abcdef")
        while reader.end < 16:
            reader.fill()
        reader.start = 10  # "abcdef" unread, the buffer full: the next fill moves it
        b.sendall(b"XYZ")
        reader.fill()
        assert bytes(reader.view[reader.start : reader.end]) == b"abcdefXYZ"
        assert reader.buf.find(b"fX", reader.start, reader.end) == 5


def test_bench_bulk_rows_run_each_repetition_on_a_new_connection(bench):
    class Counting:
        """An adapter that records its calls and answers right."""

        def __init__(self):
            self.calls = []

        def connect(self):
            self.calls.append("connect")

        def close(self):
            self.calls.append("close")

        def get(self, path):
            self.calls.append("get")
            return 200, bench.servers.pattern()[:1024]

        def download(self, path, buf, take):
            self.calls.append("download")
            take(bench.servers.pattern()[:10])
            return 200

        def upload(self, mode, size, pieces, headers):
            self.calls.append("upload")
            assert sum(map(len, pieces)) == size
            return 200, b"%d -\n" % size

    work = bench.workloads
    for workload, variant, params, calls in (
        (work.W3(), "read", {"path": "/", "size": 10}, ["close", "connect", "download"]),
        (work.W4(), "plain", {"size": 1 << 16}, ["close", "connect", "upload"]),
        (work.W1(), "seq", {"path": "/", "n": 2}, ["get", "get"]),
    ):
        row = work.Row(Counting(), workload, variant, params)
        sample = row.timed()
        assert row.a.calls == calls
        assert sample["wall"] >= 0 and sample["ops"] >= 1


def test_bench_validation_rejects_a_wrong_answer(bench, http_server):
    """A client that hands over other bytes than the server's fails its validation
    run, before anything is timed; the same client passes with the right bytes."""
    import http.client

    import dugong

    work, adapters = bench.workloads, bench.adapters
    host, port = "127.0.0.1", http_server.port
    sink = bench.servers.Sink(sys.executable)
    try:
        for adapter in (
            adapters.HttpClient(http.client, host, port),
            adapters.Dugong(dugong, host, port),
            adapters.Floor(None, host, port),
        ):
            # the test server's /size/1024 is 1 KiB, but not the benchmark's file
            row = work.Row(adapter, work.W1(), "seq", {"path": "/size/1024", "n": 3})
            with pytest.raises(adapters.WrongAnswer, match="differs from the 1 KiB file"):
                row.prepare()
            variant = next(iter(adapter.DOWNLOADS))
            row = work.Row(adapter, work.W3(), variant, {"path": "/size/70000", "size": 70000})
            with pytest.raises(adapters.WrongAnswer, match="differ from the file"):
                row.prepare()
            adapter.close()
            adapter.port = sink.port  # the sink's /gen/N: the right bytes
            row = work.Row(adapter, work.W3(), variant, {"path": "/gen/70000", "size": 70000})
            row.prepare()
            adapter.close()
            if not hasattr(adapter, "upload"):
                continue
            row = work.Row(adapter, work.W4(), "chunked", {"size": 1 << 20})
            row.prepare()
            assert row.timed()["bytes"] == 1 << 20
            adapter.close()

            def changed(size, pieces=work.piece_iter):
                for i, piece in enumerate(pieces(size)):
                    yield piece if i != 3 else piece[:-1] + b"?"

            work.piece_iter, original = changed, work.piece_iter
            try:
                with pytest.raises(adapters.WrongAnswer, match="the sink answered 200"):
                    row.prepare()
            finally:
                work.piece_iter = original
            adapter.close()
    finally:
        sink.stop()


def test_bench_pipelined_and_concurrent_rows_check_every_answer(bench):
    """W2's two patterns and W5's loop (and dugong's run_async under trio), on dugong
    and on the floor, against the sink's /gen/1024 (the bytes of the 1 KiB file):
    validated, then timed."""
    import dugong

    work, adapters = bench.workloads, bench.adapters
    sink = bench.servers.Sink(sys.executable)
    try:
        for adapter in (
            adapters.Dugong(dugong, "127.0.0.1", sink.port),
            adapters.Floor(None, "127.0.0.1", sink.port),
        ):
            for workload, variant, params in (
                (work.W2(), "co-d16", {"path": "/gen/1024", "n": 100}),
                (work.W2(), "batch-d16", {"path": "/gen/1024", "n": 100}),
                *(
                    (work.W5(), v, {"path": "/gen/1024", "n": 5, "tasks": 4})
                    for v in ("loop", "anyio-trio")
                    if v in adapter.MANY
                ),
            ):
                row = work.Row(adapter, workload, variant, params)
                row.prepare()
                assert row.timed()["ops"] == params["n"] * params.get("tasks", 1)
                adapter.close()
    finally:
        sink.stop()


def test_bench_client_that_cannot_be_imported_offers_its_rows_as_unavailable(bench, monkeypatch):
    """A client whose package is missing still names its rows, with the reason, so that
    the report shows them unavailable; nothing else is asked of its worker."""
    monkeypatch.setattr(bench.adapters.Pycurl, "MODULE", "no_such_module_for_bench")
    said = []
    bench.workloads.serve("pycurl", said.append)
    assert said == [
        {
            "unavailable": "ModuleNotFoundError: No module named 'no_such_module_for_bench'",
            "rows": [["W8", "multi-p1", "CurlMulti, 8 handles, pipeline 1"]],
        }
    ]


def test_bench_pooled_rows_of_every_importable_client_check_every_answer(bench):
    """W8 (and W5) for each client this environment can import, through 2 connections
    to the sink's /gen/1024: validated, timed, closed."""
    import dugong

    work, adapters = bench.workloads, bench.adapters
    sink = bench.servers.Sink(sys.executable)
    params = {"path": "/gen/1024", "n": 3, "tasks": 4, "conns": 2}
    ran = []
    try:
        for name, cls in adapters.ADAPTERS.items():
            if name == "dugong-3.8.2":  # only in the benchmark's venv
                continue
            try:
                lib = dugong if name == "dugong" else cls.load()[0]
            except ImportError:
                continue
            adapter = cls(lib, "127.0.0.1", sink.port)
            for workload in (work.W8(), work.W5()) if "W8" in cls.WORKLOADS else ():
                for variant, _ in workload.rows(adapter):
                    row = work.Row(adapter, workload, variant, params)
                    row.prepare()
                    assert row.timed()["ops"] == 3 * 4
                    adapter.close()
                    ran.append(f"{name}/{variant}")
    finally:
        sink.stop()
    assert {
        "dugong/loop-p16",
        "dugong/threads-p1",
        "dugong/anyio-trio",
        "floor/loop-p16",
        "aiohttp/asyncio-p1",
        "aiohttp/asyncio",
        "urllib3/threads-p1",
    } <= set(ran), ran
