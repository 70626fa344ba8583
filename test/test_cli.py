"""``python -m dugong URL...``, run as a subprocess against servers on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from dugong.__main__ import main
from servers import Request, Step, body_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 60
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "REQUEST_METHOD")


def command(*args: str) -> list[str]:
    """``python -m dugong ARGS``; under ``coverage run`` when the tests are measured, so that
    the program is measured too (pytest-cov adds its data files to the report)."""
    try:
        import coverage
    except ImportError:
        return [sys.executable, "-m", "dugong", *args]
    if coverage.Coverage.current() is None:
        return [sys.executable, "-m", "dugong", *args]
    return [
        sys.executable,
        "-m",
        "coverage",
        "run",
        "--parallel-mode",
        f"--rcfile={ROOT / 'pyproject.toml'}",
        "-m",
        "dugong",
        *args,
    ]


def env(**extra: str) -> dict[str, str]:
    """The command's environment: this tree's dugong first, no proxy unless given."""
    variables = {
        name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES
    }
    variables["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    variables["COVERAGE_FILE"] = str(ROOT / ".coverage")  # whatever the directory
    variables.update(extra)
    return variables


def dugong(
    *args: str, stdin: bytes | None = None, cwd: pathlib.Path | None = None, **extra_env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command(*args),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        env=env(**extra_env),
        cwd=cwd,
        check=False,
    )


def err_lines(res: subprocess.CompletedProcess[bytes]) -> list[str]:
    return res.stderr.decode().splitlines()


def response(body: bytes, *fields: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{field}\r\n" for field in (f"Content-Length: {len(body)}", *fields))
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


def answers(
    last: int, *, close: bool = False, wait: threading.Event | None = None
) -> Callable[[list[Request]], bytes]:
    """`Step.send` data: answers to the *last* requests read, each body naming its path
    (plus ``body_for`` bytes for ``/big/N``); the first with ``Connection: close`` if
    *close*; sent only once *wait* is set (if given) for paths starting ``/late``."""

    def make(requests: list[Request]) -> bytes:
        out = b""
        recent = requests[-last:]
        if wait is not None and recent[0].path.startswith("/late"):
            assert wait.wait(TIMEOUT)
        for number, request in enumerate(recent):
            body = request.path.encode() + b"\n"
            if request.path.startswith("/big/"):
                body += body_for(int(request.path[5:]))
            fields = ("Connection: close",) if close and number == 0 else ()
            out += response(body, *fields)
        return out

    return make


def named(*paths: str) -> bytes:
    return b"".join(p.encode() + b"\n" for p in paths)


# --------------------------------------------------------------------- usage


def test_help_lists_every_option():
    res = dugong("--help")
    assert res.returncode == 0 and res.stderr == b""
    text = res.stdout.decode()
    assert text.startswith("usage: python -m dugong [options] URL...")
    for option in (
        "-X METHOD",
        "-H 'NAME: VALUE'",
        "-d DATA",
        "--data-binary",
        "-T FILE",
        "-o FILE",
        "--output-dir DIR",
        "-i, --include",
        "-I, --head",
        "-f, --fail",
        "-v, --verbose",
        "--cacert FILE",
        "-k, --insecure",
        "--proxy URL",
        "--timeout SECONDS",
        "--parallel N",
        "--pipeline N",
    ):
        assert option in text, option


def test_the_manual_describes_every_option():
    from dugong._cli import build_parser

    page = (ROOT / "doc" / "cli.rst").read_text()
    for action in build_parser()._actions:
        for option in action.option_strings:
            assert f"``{option}" in page, option


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-such-option", "http://127.0.0.1:1/"], "unrecognized arguments: --no-such-option"),
        (["-i", "-v"], "the following arguments are required: URL"),
        (["-o", "x", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], "-o FILE takes one URL"),
        (
            ["--output-dir", "d", "http://127.0.0.1:1/"],
            "no file name at the end of the URL's path",
        ),
        (
            ["--output-dir", "d", "http://127.0.0.1:1/a/x", "http://127.0.0.1:1/b/x?q"],
            "http://127.0.0.1:1/a/x and http://127.0.0.1:1/b/x?q would both be written to d/x",
        ),
        (["-H", "NoColon", "http://127.0.0.1:1/"], "not 'Name: value'"),
        (["-H", "Bad Name: x", "http://127.0.0.1:1/"], "cannot send this request"),
        (["-I", "-d", "x", "http://127.0.0.1:1/"], "-I (HEAD) cannot send a body"),
        (["-T", "/no/such/file", "http://127.0.0.1:1/"], "cannot read /no/such/file"),
        (["-d", "@/no/such/file", "http://127.0.0.1:1/"], "cannot read /no/such/file"),
        (["-d", "x", "-T", "/no/such/file", "http://127.0.0.1:1/"], "both give a body"),
        (["-T", "-", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], "standard input once"),
        (["-H", "X-Empty:", "http://127.0.0.1:1/"], "no value ('Name;' sends an empty one"),
        (["--cacert", "/no/such/file", "https://127.0.0.1:1/"], "cannot use --cacert"),
        (["--parallel", "0", "http://127.0.0.1:1/"], "must be at least 1"),
        (["--pipeline", "many", "http://127.0.0.1:1/"], "not a whole number: 'many'"),
        (["--timeout", "soon", "http://127.0.0.1:1/"], "not a number of seconds: 'soon'"),
        (["--timeout", "0", "http://127.0.0.1:1/"], "must be a positive number of seconds"),
        (["--proxy", "https://127.0.0.1:1", "http://127.0.0.1:1/"], "proxy"),
    ],
)
def test_bad_usage_exits_2(args, message, capsys):
    # In-process, to keep this quick: nothing here reaches the network.
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith("usage: python -m dugong")
    assert lines[-1].startswith("dugong: error: ") and message in lines[-1], lines


def test_bad_usage_as_a_command():
    res = dugong("--no-such-option", "http://127.0.0.1:1/")
    assert res.returncode == 2 and res.stdout == b""
    assert err_lines(res)[-1] == "dugong: error: unrecognized arguments: --no-such-option"


def test_a_url_that_is_not_http_fetches_nothing(http_server):
    res = dugong(f"{http_server.url}/size/3", "ftp://127.0.0.1/file", f"{http_server.url}/size/4")
    assert res.returncode == 2
    assert (
        err_lines(res)[-1]
        == "dugong: error: not an absolute http:// or https:// URL: 'ftp://127.0.0.1/file'"
    )
    assert res.stdout == b"" and http_server.requests == []


# --------------------------------------------------------------------- requests and output


def test_bodies_in_url_order_with_header_fields(http_server):
    base = http_server.url
    res = dugong(
        "-H",
        "X-Test: one",
        f"{base}/headers",
        "-H",
        "x-test: two",
        "-H",
        "Empty;",
        f"{base}/size/100",
        f"{base}/chunked/3000?chunk=999",
        f"{base}/size/0",
        f"{base}/status/404",
        f"{base}/close/20",
        f"{base}/size/5",
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    head_end = res.stdout.index(body_for(100))
    sent = res.stdout[:head_end].decode("latin-1").splitlines()
    assert "X-Test: one, two" in sent and "Empty: " in sent and "Accept: */*" in sent
    assert any(line.startswith("User-Agent: dugong/") for line in sent)
    assert res.stdout[head_end:] == (
        body_for(100) + body_for(3000) + b"status 404\n" + body_for(20) + body_for(5)
    )
    assert [r.method for r in http_server.requests] == ["GET"] * 7


def test_include_and_head(http_server):
    base = http_server.url
    res = dugong("-i", f"{base}/size/5", f"{base}/status/204")
    assert res.returncode == 0, res.stderr
    head, _, body = res.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nContent-Length: 5" in head
    assert body == body_for(5) + b"HTTP/1.1 204 No Content\r\n" + body[5 + 25 :]
    assert body.endswith(b"\r\n\r\n")
    res = dugong("-I", f"{base}/size/5000")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and res.stdout.endswith(b"\r\n\r\n")
    assert b"Content-Length: 5000\r\n" in res.stdout
    assert [r.method for r in http_server.requests][-1] == "HEAD"


def test_data_methods_and_bodies(http_server, tmp_path):
    base = http_server.url
    (tmp_path / "form").write_bytes(b"b=2\r\nc=3\n")
    (tmp_path / "raw").write_bytes(b"line 1\r\nline 2\n\x00")
    res = dugong("-d", "a=1", "-d", "@form", f"{base}/echo", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"a=1&b=2c=3"
    res = dugong(
        "-X",
        "PATCH",
        "--data-binary",
        "@raw",
        f"{base}/echo",
        "--data-binary",
        "@-",
        stdin=b"from stdin",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"line 1\r\nline 2\n\x00&from stdin"
    res = dugong("-X", "DELETE", f"{base}/status/204")
    assert res.returncode == 0 and res.stdout == b"", res.stderr
    first, second, third = http_server.requests
    assert (first.method, second.method, third.method) == ("POST", "PATCH", "DELETE")
    assert dict(first.headers)["Content-Type"] == "application/x-www-form-urlencoded"
    assert third.body == b""


def test_output_files(http_server, tmp_path):
    base = http_server.url
    res = dugong(
        "--output-dir",
        str(tmp_path / "new" / "dir"),
        f"{base}/size/10",
        f"{base}/chunked/20?chunk=7",
        "-i",
        f"{base}/status/404",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"" and res.stderr == b""
    folder = tmp_path / "new" / "dir"
    assert sorted(p.name for p in folder.iterdir()) == ["10", "20", "404"]
    assert (folder / "10").read_bytes().endswith(b"\r\n\r\n" + body_for(10))
    assert (folder / "404").read_bytes().startswith(b"HTTP/1.1 404 Not Found\r\n")
    res = dugong("-o", str(tmp_path / "one"), f"{base}/size/7")
    assert res.returncode == 0 and res.stdout == b"", res.stderr
    assert (tmp_path / "one").read_bytes() == body_for(7)


def test_output_that_cannot_be_written(http_server, tmp_path):
    (tmp_path / "file").write_bytes(b"")
    res = dugong("--output-dir", str(tmp_path / "file"), f"{http_server.url}/size/3")
    assert res.returncode == 1
    assert err_lines(res) == [
        f"dugong: {http_server.url}/size/3: cannot write {tmp_path / 'file' / '3'}: File exists"
    ]


def test_a_closed_standard_output_stops_everything(http_server):
    urls = [f"{http_server.url}/size/{n}" for n in (3_000_000, 10, 20)]
    with subprocess.Popen(
        command(*urls), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(10) == body_for(3_000_000)[:10]
        proc.stdout.close()  # like `| head -c 10`
        errors = proc.stderr.read().decode()
        assert proc.wait(TIMEOUT) == 1
    assert errors == f"dugong: {urls[0]}: cannot write to standard output: Broken pipe\n"


# --------------------------------------------------------------------- pipelining and order


def test_pipelined_on_one_connection(scripted_server):
    # The server reads all three requests before it answers any: they were pipelined.
    server = scripted_server(
        [Step.read_request(), Step.read_request(), Step.read_request(), Step.send(answers(3))]
    )
    base = f"http://127.0.0.1:{server.port}"
    res = dugong("--pipeline", "3", f"{base}/a", f"{base}/b", f"{base}/c")
    assert res.returncode == 0, res.stderr
    assert res.stdout == named("/a", "/b", "/c")
    assert [r.path for r in server.requests[0]] == ["/a", "/b", "/c"]


def test_later_bodies_wait_for_earlier_ones(scripted_server):
    """Two connections with two requests in flight each; the answers to the last two URLs
    (over 4 MiB each: held in the temporary file) come before those to the first two."""
    early_sent = threading.Event()
    script = [
        Step.read_request(),
        Step.read_request(),
        Step.send(answers(2, wait=early_sent)),
        Step.set_event(early_sent),
    ]
    server = scripted_server([script, script])
    base = f"http://127.0.0.1:{server.port}"
    big = 5 << 20
    res = dugong(
        "--parallel",
        "2",
        "--pipeline",
        "2",
        f"{base}/late1",
        f"{base}/late2",
        f"{base}/big/{big}",
        f"{base}/early",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == named("/late1", "/late2") + b"/big/%d\n" % big + body_for(big) + named(
        "/early"
    )
    assert sorted([r.path for r in reqs] for reqs in server.requests) == [
        ["/big/5242880", "/early"],
        ["/late1", "/late2"],
    ]


def test_requests_lost_to_a_closing_connection_go_out_again(scripted_server):
    # Connection 1 answers two of the pipelined requests, the second with
    # Connection: close: the others go out again on connection 2.
    server = scripted_server(
        [
            [
                Step.read_request(),
                Step.read_request(),
                Step.read_request(),
                Step.send(response(named("/a")) + response(named("/b"), "Connection: close")),
                Step.close(),
            ],
            [Step.read_request(), Step.read_request(), Step.send(answers(2))],
        ]
    )
    base = f"http://127.0.0.1:{server.port}"
    res = dugong("-v", "--pipeline", "3", *(f"{base}/{name}" for name in "abcd"))
    assert res.returncode == 0, res.stderr
    assert res.stdout == named("/a", "/b", "/c", "/d")
    assert [[r.path for r in reqs] for reqs in server.requests] == [
        ["/a", "/b", "/c"],
        ["/c", "/d"],
    ]
    lines = err_lines(res)
    assert lines.count(f"* connecting to 127.0.0.1 port {server.port}") == 2
    # After each answer another request goes out, to keep three in flight.
    assert [line for line in lines if line.startswith(("> GET", "< HTTP", "* 2"))] == [
        "> GET /a HTTP/1.1",
        "> GET /b HTTP/1.1",
        "> GET /c HTTP/1.1",
        "< HTTP/1.1 200 OK",
        "> GET /d HTTP/1.1",
        "< HTTP/1.1 200 OK",
        "* 2 request(s) go out again on a new connection",
        "> GET /c HTTP/1.1",
        "> GET /d HTTP/1.1",
        "< HTTP/1.1 200 OK",
        "< HTTP/1.1 200 OK",
    ]


def test_no_pipelining_to_a_server_that_closes_after_one_answer(scripted_server):
    one = [Step.read_request(), Step.send(answers(1))]
    server = scripted_server(
        [
            [
                Step.read_request(),
                Step.read_request(),
                Step.send(response(named("/a"), "Connection: close")),
                Step.close(),
            ],
            [*one, *one],  # one request at a time from now on
        ]
    )
    base = f"http://127.0.0.1:{server.port}"
    res = dugong("--pipeline", "2", f"{base}/a", f"{base}/b", f"{base}/c")
    assert res.returncode == 0, res.stderr
    assert res.stdout == named("/a", "/b", "/c")
    assert [[r.path for r in reqs] for reqs in server.requests] == [["/a", "/b"], ["/b", "/c"]]


def test_a_lost_get_is_sent_once_more_a_lost_post_is_not(scripted_server):
    server = scripted_server(
        [
            [Step.read_request(), Step.close()],
            [Step.read_request(), Step.send(answers(1))],
            [Step.read_request(), Step.close()],
        ]
    )
    base = f"http://127.0.0.1:{server.port}"
    res = dugong(f"{base}/get")
    assert res.returncode == 0, res.stderr
    assert res.stdout == named("/get")
    res = dugong("-d", "x", f"{base}/post")
    assert res.returncode == 1
    assert err_lines(res) == [
        f"dugong: {base}/post: ConnectionClosed: "
        + err_lines(res)[0].split(": ConnectionClosed: ")[1]
    ]


# --------------------------------------------------------------------- uploads


def test_upload_small_and_large(http_server, tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(body_for(1000))
    large.write_bytes(body_for(1_500_000))
    res = dugong("-T", str(small), f"{http_server.url}/echo")
    assert res.returncode == 0, res.stderr
    assert res.stdout == body_for(1000)
    res = dugong("-T", str(large), "-X", "POST", f"{http_server.url}/echo")
    assert res.returncode == 0, res.stderr
    assert res.stdout == body_for(1_500_000)
    first, second = http_server.requests
    assert first.method == "PUT" and "Expect" not in dict(first.headers)
    assert second.method == "POST" and dict(second.headers)["Expect"] == "100-continue"
    assert dict(second.headers)["Content-Length"] == "1500000"


def test_upload_from_stdin_is_chunked(http_server):
    res = dugong("-T", "-", f"{http_server.url}/echo", stdin=b"piped bytes")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"piped bytes"
    headers = dict(http_server.requests[0].headers)
    assert headers["Transfer-Encoding"] == "chunked" and headers["Expect"] == "100-continue"


def test_refused_upload_costs_nothing(scripted_server, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"\x00" * (2 << 20))
    refusal = response(b"too large\n", "Connection: close", status="413 Payload Too Large")
    server = scripted_server(
        [Step.read_request(body=False), Step.send(refusal), Step.expect_eof()]
    )
    url = f"http://127.0.0.1:{server.port}/upload"
    res = dugong("-T", str(big), "--fail", url)
    assert res.returncode == 22
    assert err_lines(res) == [
        f"dugong: {url}: the server refused the upload before it was sent: 413 Payload Too Large"
    ]
    assert res.stdout == b""
    server.wait_done()
    head = server.received[0]
    assert head.endswith(b"\r\n\r\n") and b"Expect: 100-continue\r\n" in head  # no body byte


# --------------------------------------------------------------------- failures


def test_failures_keep_the_other_output(http_server, unused_port):
    base = http_server.url
    refused = f"http://127.0.0.1:{unused_port}/x"
    res = dugong("-f", f"{base}/size/3", refused, f"{base}/status/404", f"{base}/size/4")
    assert res.returncode == 1  # the first URL that failed decides
    assert res.stdout == body_for(3) + body_for(4)
    assert sorted(err_lines(res)) == sorted(
        [  # two hosts: in the order things happen
            f"dugong: {refused}: ConnectionRefusedError: Connection refused (connecting to "
            f"127.0.0.1 port {unused_port})",
            f"dugong: {base}/status/404: the server answered 404 Not Found",
        ]
    )
    res = dugong("--fail", f"{base}/status/500", f"{base}/size/2")
    assert res.returncode == 22
    assert res.stdout == body_for(2)


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in this process, and commands started meanwhile get
    its default action, even when the tests inherited it ignored (as a shell's background
    job does: its commands, and theirs, then ignore Ctrl-C)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupted(scripted_server, sigint_raises):
    arrived = threading.Event()
    server = scripted_server([Step.read_request(), Step.set_event(arrived), Step.stop_reading()])
    with subprocess.Popen(
        command(f"http://127.0.0.1:{server.port}/"),
        env=env(PYTHONFAULTHANDLER="1"),  # a SIGABRT shows where a hung process is
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        try:
            assert arrived.wait(TIMEOUT)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=TIMEOUT / 4)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=TIMEOUT / 4)
            pytest.fail(f"still running after its SIGINT; its threads:\n{err.decode()}")
        finally:
            proc.kill()  # (a no-op once it has ended; else the test fails, not hangs)
    assert proc.returncode == 130
    assert (out, err) == (b"", b"dugong: interrupted\n")


def test_interrupt_taken_by_another_thread(scripted_server, capsys, sigint_raises):
    """A Ctrl-C that the kernel gives a thread other than the main one still stops the
    command: the main thread never waits for the fetching threads without a timeout."""
    from dugong._cli import main as cli_main

    arrived = threading.Event()
    server = scripted_server([Step.read_request(), Step.set_event(arrived), Step.stop_reading()])

    def interrupt_from_this_thread():
        if arrived.wait(TIMEOUT):
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # handled in main

    assert threading.current_thread() is threading.main_thread()
    threading.Thread(target=interrupt_from_this_thread, daemon=True).start()
    assert cli_main([f"http://127.0.0.1:{server.port}/"]) == 130
    assert capsys.readouterr().err == "dugong: interrupted\n"


def test_timeout(scripted_server):
    server = scripted_server([Step.read_request(), Step.stop_reading()])
    url = f"http://127.0.0.1:{server.port}/stall"
    start = time.monotonic()
    res = dugong("--timeout", "0.3", url)
    assert time.monotonic() - start < TIMEOUT / 2
    assert res.returncode == 1
    assert err_lines(res) == [f"dugong: {url}: ConnectionTimedOut: No progress for 0.3 seconds"]


# --------------------------------------------------------------------- TLS and proxies


def test_tls_verification(https_server, tls_ca, tmp_path):
    url = f"https://localhost:{https_server.port}/size/8"
    res = dugong(url)
    assert res.returncode == 1
    (line,) = err_lines(res)
    assert line.startswith(f"dugong: {url}: TLS certificate verification failed: ")
    assert line.endswith("(--cacert FILE trusts another CA, -k skips the check)")
    ca = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    res = dugong("--cacert", str(ca), url)
    assert res.returncode == 0 and res.stdout == body_for(8), res.stderr
    res = dugong("-k", "-v", url)
    assert res.returncode == 0 and res.stdout == body_for(8), res.stderr
    lines = err_lines(res)
    assert lines[0] == f"* connecting to localhost port {https_server.port}"
    assert "> GET /size/8 HTTP/1.1" in lines
    assert f"> Host: localhost:{https_server.port}" in lines
    assert any(line.startswith("* TLS: TLSv1.") for line in lines)
    assert "< HTTP/1.1 200 OK" in lines and "< Content-Length: 8" in lines
    assert lines[-1] == "<"


def test_tls_handshake_cut(scripted_server):
    server = scripted_server([Step.close()])
    url = f"https://127.0.0.1:{server.port}/"
    res = dugong("-k", url)
    assert res.returncode == 1
    # Closed or reset, depending on whether the client hello was read.
    assert re.match(
        f"dugong: {re.escape(url)}: ConnectionClosed: Connection (closed|broken) "
        "during the TLS handshake",
        err_lines(res)[0],
    )


def test_proxy(http_server, make_proxy):
    proxy = make_proxy({"origin.test:80": ("127.0.0.1", http_server.port)})
    res = dugong(
        "-v",
        "--proxy",
        f"http://user:pw@127.0.0.1:{proxy.address[1]}",
        "http://origin.test/size/6",
        "http://origin.test/size/7",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == body_for(6) + body_for(7)
    lines = err_lines(res)
    assert (
        lines[0] == f"* connecting to origin.test port 80 through the proxy 127.0.0.1 "
        f"port {proxy.address[1]}"
    )
    assert lines[1] == "> GET http://origin.test/size/6 HTTP/1.1"
    assert [r.target for r in proxy.requests(0)] == [
        "http://origin.test/size/6",
        "http://origin.test/size/7",
    ]
    credentials = base64.b64encode(b"user:pw").decode()
    assert proxy.requests(0)[0].header("Proxy-Authorization") == f"Basic {credentials}"
    # Without --proxy, the environment names it.
    res = dugong("http://origin.test/size/5", http_proxy=f"http://127.0.0.1:{proxy.address[1]}")
    assert res.returncode == 0 and res.stdout == body_for(5), res.stderr


# --------------------------------------------------------------------- big bodies


class ZeroServer:
    """Serves ``/N``: N zero bytes, written from one small buffer."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.sock.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                size = int(head.split(b" ")[1][1:])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                block = bytes(1 << 20)
                for _ in range(size >> 20):
                    conn.sendall(block)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(TIMEOUT)


def peak_memory_kib(pid: int) -> int:
    """The peak resident memory of a running process (since its exec), from /proc."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_a_big_body_is_streamed():
    size = 128 << 20
    server = ZeroServer()
    peak = None
    try:
        url = f"http://127.0.0.1:{server.port}/{size}"
        with subprocess.Popen(
            command(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            got = 0
            while data := proc.stdout.read(1 << 20):
                assert not data.strip(b"\x00")
                got += len(data)
                if peak is None and got >= size * 3 // 4:  # the program still runs
                    peak = peak_memory_kib(proc.pid)
            errors = proc.stderr.read()
        assert proc.returncode == 0, errors
    finally:
        server.close()
    assert got == size
    assert peak is not None and peak < 100_000  # KiB: far less than the body


# --------------------------------------------------------------------- progress line


def run_on_terminal(*args: str) -> tuple[int, bytes, str]:
    """Run the command with stderr on a pseudo-terminal: status, stdout, terminal text."""
    master, slave = pty.openpty()
    with subprocess.Popen(
        command(*args), env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
    ) as proc:
        os.close(slave)
        stdout = proc.stdout
        assert stdout is not None
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(stdout.read()), daemon=True)
        reader.start()
        terminal = bytearray()
        try:
            while select.select([master], [], [], TIMEOUT)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the program has exited and closed the terminal
                    break
                if not data:
                    break
                terminal += data
        finally:
            os.close(master)
        reader.join(TIMEOUT)
        status = proc.wait(TIMEOUT)
    return status, out[0], terminal.decode()


def test_progress_line_on_a_terminal(scripted_server, http_server):
    size = 2 << 20
    body = body_for(size)
    server = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body[:300_000]),
            Step.sleep(0.5),
            Step.send(body[300_000:]),
        ]
    )
    missing = f"{http_server.url}/status/404"
    status, out, terminal = run_on_terminal(
        "--fail", f"http://127.0.0.1:{server.port}/dir/big.iso", missing
    )
    assert status == 22, terminal
    assert out == body
    lines = [line.strip() for line in terminal.replace("\n", "\r").split("\r") if line.strip()]
    # The message has a line of its own, even while the progress line is shown.
    lines.remove(f"dugong: {missing}: the server answered 404 Not Found")
    *updates, final = lines
    assert updates, terminal
    for line in updates:
        assert re.fullmatch(
            r"big\.iso  [\d.]+ (B|KiB|MiB) of 2\.0 MiB +\d+%  [\d.]+ \w+/s  "
            r"0:00:\d\d left",
            line,
        ), lines
    assert re.fullmatch(
        r"big\.iso  2\.0 MiB of 2\.0 MiB  100%  [\d.]+ \w+/s  in 0:00:0\d", final
    ), lines


# --------------------------------------------------------------------- the holding area


def test_in_order_holds_later_bodies_in_memory_then_in_a_file():
    import io

    from dugong._inorder import InOrder

    out = io.BytesIO()
    order = InOrder(out, 4, hold_memory=10)
    first, second, third, fourth = (order.slot(i) for i in range(4))
    third.write(b"33333333")  # in memory (8 of 10 bytes)
    third.write(memoryview(b"3333"))  # over the budget: into the file
    third.finish()
    second.write(b"22")
    fourth.write(b"4444")
    assert order.held_in_file == 8
    first.write(b"1")
    assert out.getvalue() == b"1"
    first.finish()  # the second's turn: it writes what it holds at its next write
    assert out.getvalue() == b"1"
    second.write(b"2")
    assert out.getvalue() == b"1222"
    second.finish()  # the third is complete: written out at once
    assert out.getvalue() == b"1222" + b"3" * 12
    assert order.held_in_file == 4  # the fourth's
    fourth.write(b"!")
    fourth.finish()
    assert out.getvalue() == b"1222" + b"3" * 12 + b"4444!"
    assert order.held_in_file == 0
    order.close()
