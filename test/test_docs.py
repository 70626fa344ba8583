"""The manual keeps its promises.

* Every program in ``doc/examples`` runs as a subprocess against servers on
  127.0.0.1 and prints what the manual says it prints.
* The doctests of every page pass.
* The API reference documents every public name, and puts each ``co_``
  method right after its blocking twin; the public docstrings are complete.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import dugong
from checks import CONTRACT_NAMES
from servers import HTTPTestServer, ScriptedServer, Step, body_for

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "doc"
EXAMPLES = DOC / "examples"
PAGES = sorted(DOC.glob("*.rst"))

#: Longest any example may run (seconds); pytest-timeout guards the test itself.
EXAMPLE_TIMEOUT = 45

#: Example files that a test below runs (filled in by `covers`).
_TESTED: set[str] = set()


def covers(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a test as the one that runs these example files."""
    _TESTED.update(names)
    return lambda func: func


def run_example(
    name: str, *args: object, expect_fail: bool = False, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``doc/examples/<name>`` with *args*; return the finished process.

    Unless *expect_fail*, the program must exit with 0, and (if *quiet*)
    write nothing to stderr, warnings included: deprecation warnings are
    errors, every other warning is shown.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("DUGONG_TRACEFILE", None)
    cmd = [
        sys.executable,
        "-W",
        "default",
        "-W",
        "error::DeprecationWarning",
        str(EXAMPLES / name),
        *map(str, args),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )
    if expect_fail:
        assert proc.returncode != 0, f"{name} should have failed:\n{proc.stdout}"
    else:
        assert proc.returncode == 0, (
            f"{name} exited with {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        if quiet:
            assert proc.stderr == "", f"{name} wrote to stderr:\n{proc.stderr}"
    return proc


def lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return proc.stdout.splitlines()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RESPONSE_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


# ============================================================================ tutorial


@covers("first_request.py")
def test_first_request(http_server: HTTPTestServer) -> None:
    out = lines(run_example("first_request.py", http_server.url + "/status/200"))
    assert out == [
        "status: 200 OK",
        "content-type: text/plain; charset=latin-1",
        "length: 11",
        "body: status 200",
    ]
    (request,) = http_server.requests
    assert ("Accept", "text/plain") in request.headers
    out = lines(run_example("first_request.py", http_server.url + "/nothing"))
    assert out[0] == "status: 404 Not Found"
    assert out[-1] == "body: no such path: /nothing"


@covers("text_lines.py")
def test_text_lines(http_server: HTTPTestServer) -> None:
    out = lines(run_example("text_lines.py", http_server.url + "/headers"))
    assert f"  1 Host: 127.0.0.1:{http_server.port}" in out
    assert any(line.endswith(" Accept-Encoding: identity") for line in out)
    assert out[-1] == "then: 200"
    assert [r.method for r in http_server.requests] == ["GET", "HEAD"]


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@covers("tls_request.py")
def test_tls_request(https_server: HTTPTestServer, ca_file: Path) -> None:
    url = https_server.url + "/size/1000"
    out = lines(run_example("tls_request.py", url, ca_file))
    assert out[0].startswith("protocol: TLSv1.")
    assert out[1].startswith("cipher: ")
    assert "certificate names: localhost" in out
    assert out[-2:] == ["status: 200 OK", "body bytes: 1000"]


def test_tls_request_checks_the_certificate(https_server: HTTPTestServer) -> None:
    # Without our CA the default context must refuse the test certificate.
    proc = run_example("tls_request.py", https_server.url + "/size/10", expect_fail=True)
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr
    assert https_server.requests == []


@covers("download.py")
@pytest.mark.parametrize(
    ("path", "how"),
    [
        ("/size/300000", "readinto"),
        ("/chunked/300000?chunk=7000", "read"),
        ("/close/300000", "readinto"),
        ("/size/300000", "read"),
    ],
)
def test_download(http_server: HTTPTestServer, tmp_path: Path, path: str, how: str) -> None:
    target = tmp_path / "body"
    out = lines(run_example("download.py", http_server.url + path, target, how))
    expected = body_for(300000)
    assert target.read_bytes() == expected
    assert out[0] == (
        "announced length: 300000" if path.startswith("/size") else "announced length: unknown"
    )
    assert out[1] == f"saved 300000 bytes, sha256 {sha256(expected)}"


@pytest.fixture
def upload_file(tmp_path: Path) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(body_for(200_000)[::-1])
    return path


@covers("upload.py")
def test_upload(http_server: HTTPTestServer, upload_file: Path) -> None:
    data = upload_file.read_bytes()
    out = lines(run_example("upload.py", http_server.url + "/echo", upload_file))
    digest = sha256(data)
    assert out == [
        f"{how}: 200 OK, {len(data)} bytes, sha256 {digest}"
        for how in ("upload_whole", "upload_known_length", "upload_chunked")
    ]
    whole, known, chunked = http_server.requests
    assert all(r.body == data for r in (whole, known, chunked))
    names = [{name.lower() for name, _ in r.headers} for r in (whole, known, chunked)]
    assert {"content-length", "content-md5"} <= names[0]
    assert "content-length" in names[1]
    assert "content-md5" not in names[1]
    assert ("Transfer-Encoding", "chunked") in chunked.headers
    assert "content-length" not in names[2]


@covers("expect100.py")
def test_expect100(http_server: HTTPTestServer, upload_file: Path) -> None:
    size = upload_file.stat().st_size
    url = http_server.url
    out = lines(
        run_example(
            "expect100.py",
            upload_file,
            url + "/reject",
            url + "/echo",
            url + "/reject?keepalive",
            url + "/echo",
        )
    )
    assert out == [
        "/reject: 403 Forbidden, body not sent, 9 bytes back",
        f"/echo: 200 OK, body sent, {size} bytes back",
        "/reject?keepalive: 403 Forbidden, body not sent, 9 bytes back",
        f"/echo: 200 OK, body sent, {size} bytes back",
    ]
    requests = http_server.requests
    assert [(r.path, r.body is None) for r in requests] == [
        ("/reject", True),
        ("/echo", False),
        ("/reject", True),
        ("/echo", False),
    ]
    assert all(("Expect", "100-continue") in r.headers for r in requests)


@covers("retry.py")
def test_retry_after_reset(scripted_server: Callable[..., ScriptedServer]) -> None:
    server = scripted_server(
        [
            [Step.read_request(), Step.reset()],
            [Step.read_request(), Step.send(RESPONSE_OK)],
        ]
    )
    proc = run_example("retry.py", f"http://127.0.0.1:{server.port}/data", quiet=False)
    assert lines(proc) == ["status: 200 OK", "body bytes: 5"]
    assert proc.stderr.startswith("attempt 1 failed: ConnectionClosed")
    assert "attempt 2" not in proc.stderr
    assert server.connections == 2


def test_retry_after_timeout(scripted_server: Callable[..., ScriptedServer]) -> None:
    server = scripted_server(
        [
            [Step.read_request(), Step.stop_reading()],  # a server that never answers
            [Step.read_request(), Step.send(RESPONSE_OK)],
        ]
    )
    proc = run_example("retry.py", f"http://127.0.0.1:{server.port}/", 5, 0.5, quiet=False)
    assert lines(proc) == ["status: 200 OK", "body bytes: 5"]
    assert proc.stderr.startswith("attempt 1 failed: ConnectionTimedOut")
    assert server.connections == 2


def test_retry_gives_up() -> None:
    proc = run_example("retry.py", f"http://127.0.0.1:{unused_port()}/", 3, 5, expect_fail=True)
    assert proc.stderr.count("failed: ConnectionRefusedError") == 2
    assert proc.stderr.splitlines()[-1].startswith("giving up: ConnectionRefusedError")


def test_retry_leaves_other_errors_alone(scripted_server: Callable[..., ScriptedServer]) -> None:
    server = scripted_server([Step.read_request(), Step.send(b"HTTP/1.1 2OO OK\r\n\r\n")])
    proc = run_example("retry.py", f"http://127.0.0.1:{server.port}/", expect_fail=True)
    assert proc.stderr.startswith("giving up: InvalidResponse")
    assert "attempt" not in proc.stderr
    assert server.connections == 1


@covers("proxy.py")
def test_proxy_plain(make_http_server: Callable[..., HTTPTestServer]) -> None:
    origin, proxy = make_http_server(), make_http_server()
    url = f"{origin.url}/size/10"
    out = lines(run_example("proxy.py", url, f"127.0.0.1:{proxy.port}"))
    assert out == ["status: 200 OK", "body bytes: 10"]
    assert [r.target for r in proxy.requests] == [url]
    assert origin.requests == []


class TunnelProxy:
    """A proxy that only knows ``CONNECT``: it relays bytes to the named server."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.errors: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> TunnelProxy:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._tunnel, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            match = re.match(rb"CONNECT (\S+):(\d+) HTTP/1\.1\r\n", head)
            if match is None:
                self.errors.append(f"not a CONNECT request: {head!r}")
                return
            self.targets.append(f"{match[1].decode()}:{match[2].decode()}")
            with socket.create_connection((match[1].decode(), int(match[2]))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(client, upstream)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        return
                    if not data:
                        return
                    key.data.sendall(data)


@pytest.fixture
def tunnel_proxy() -> Iterator[TunnelProxy]:
    with TunnelProxy() as proxy:
        yield proxy
    assert proxy.errors == []


def test_proxy_tls(https_server: HTTPTestServer, ca_file: Path, tunnel_proxy: TunnelProxy) -> None:
    url = f"{https_server.url}/size/2000"
    out = lines(run_example("proxy.py", url, f"127.0.0.1:{tunnel_proxy.port}", ca_file))
    assert out == ["status: 200 OK", "body bytes: 2000"]
    assert tunnel_proxy.targets == [f"127.0.0.1:{https_server.port}"]
    assert [r.target for r in https_server.requests] == ["/size/2000"]


#: Enough uploads to an echoing server to fill every socket buffer on the way.
PIPELINE = (32, 1_000_000)


@covers("pipeline_deadlock.py")
def test_pipeline_deadlock_happens(http_server: HTTPTestServer) -> None:
    out = lines(run_example("pipeline_deadlock.py", http_server.url + "/echo", *PIPELINE))
    match = re.fullmatch(r"stalled after sending (\d+) of 32 requests", out[0])
    assert match is not None, out
    assert 0 < int(match[1]) < PIPELINE[0]


@covers("pipeline_threads.py", "pipeline_coroutines.py")
@pytest.mark.parametrize("name", ["pipeline_threads.py", "pipeline_coroutines.py"])
def test_pipeline_without_deadlock(http_server: HTTPTestServer, name: str) -> None:
    out = lines(run_example(name, http_server.url + "/echo", *PIPELINE))
    assert out == ["32 of 32 answers echoed their request"]
    assert len(http_server.requests) == PIPELINE[0]


# ============================================================================ coroutines


@covers("by_hand.py")
def test_by_hand(http_server: HTTPTestServer) -> None:
    out = lines(run_example("by_hand.py", http_server.url + "/size/100000"))
    assert out[0] == "send_request:"
    assert out[-2:] == ["status: 200 OK", "body bytes: 100000"]
    for line in out:
        if line.startswith("  "):
            assert re.fullmatch(r"  waiting until fd \d+ is (readable|writable)", line)


def _fetch_urls(server: HTTPTestServer) -> tuple[list[str], list[str]]:
    urls = [
        server.url + p for p in ("/size/100000", "/chunked/5000", "/status/404", "/close/3000")
    ]
    expected = [
        f"{urls[0]}: 200, 100000 bytes",
        f"{urls[1]}: 200, 5000 bytes",
        f"{urls[2]}: 404, 11 bytes",
        f"{urls[3]}: 200, 3000 bytes",
    ]
    return urls, expected


@covers("select_loop.py")
def test_select_loop(http_server: HTTPTestServer) -> None:
    urls, expected = _fetch_urls(http_server)
    assert lines(run_example("select_loop.py", *urls)) == expected
    assert len(http_server.requests) == len(urls)


@covers("gather.py")
def test_gather(http_server: HTTPTestServer) -> None:
    urls, expected = _fetch_urls(http_server)
    refused = f"http://127.0.0.1:{unused_port()}/x"
    out = lines(run_example("gather.py", *urls, refused))
    assert out[:-1] == expected
    assert out[-1].startswith(f"{refused}: failed: ConnectionRefusedError")


@covers("asyncio_fetch.py")
def test_asyncio_fetch(http_server: HTTPTestServer) -> None:
    urls, _ = _fetch_urls(http_server)
    urls = urls[:3]  # /close/N cannot be fetched twice on one connection
    out = lines(run_example("asyncio_fetch.py", *urls))
    assert out == [
        f"{urls[0]}: 200, 100000 bytes; again: 200, 100000 bytes",
        f"{urls[1]}: 200, 5000 bytes; again: 200, 5000 bytes",
        f"{urls[2]}: 404, 11 bytes; again: 404, 11 bytes",
    ]
    assert len(http_server.requests) == 6


def test_asyncio_fetch_deadline(scripted_server: Callable[..., ScriptedServer]) -> None:
    stalled = scripted_server([Step.read_request(), Step.stop_reading()])
    slow_url = f"http://127.0.0.1:{stalled.port}/slow"
    out = lines(run_example("asyncio_fetch.py", "--deadline", "0.5", slow_url))
    assert out == [f"{slow_url}: no answer within 0.5 s"]
    assert [r.target for r in stalled.requests[0]] == ["/slow"]


# ============================================================================ pools


@covers("pool_threads.py")
def test_pool_threads(make_http_server: Callable[..., HTTPTestServer]) -> None:
    one, two = make_http_server(), make_http_server()
    urls = [f"{srv.url}/size/{n}" for n in range(20) for srv in (one, two)]
    out = lines(run_example("pool_threads.py", *urls))
    assert out == [f"{url}: 200, {url.rsplit('/', 1)[1]} bytes" for url in urls]
    assert len(one.requests) == len(two.requests) == 20


@covers("pool_crawl.py")
@pytest.mark.parametrize("pipeline", [1, 16])
def test_pool_crawl(http_server: HTTPTestServer, tmp_path: Path, pipeline: int) -> None:
    url_file = tmp_path / "urls.txt"
    urls = [f"{http_server.url}/size/{i % 50}" for i in range(999)]
    urls.append(f"{http_server.url}/status/404")
    url_file.write_text("\n".join(urls) + "\n")
    out = lines(run_example("pool_crawl.py", url_file, pipeline))
    size = sum(i % 50 for i in range(999)) + len(b"status 404\n")
    assert re.fullmatch(
        rf"fetched 1000 URLs \(200: 999, 404: 1\), {size} body bytes, "
        r"in \d+\.\d\d s",
        out[0],
    ), out
    assert len(http_server.requests) == 1000


@covers("pool_lease.py")
def test_pool_lease(http_server: HTTPTestServer, upload_file: Path) -> None:
    data = upload_file.read_bytes()
    out = lines(run_example("pool_lease.py", http_server.url + "/echo", upload_file))
    assert out == [f"200 OK: answer sha256 {sha256(data)}", "then GET: 200 OK"]
    put, get = http_server.requests
    assert (put.method, put.body, get.method) == ("PUT", data, "GET")
    assert ("Expect", "100-continue") in put.headers


@covers("pool_post.py")
def test_pool_post(http_server: HTTPTestServer) -> None:
    out = lines(run_example("pool_post.py", http_server.url + "/echo", "hello"))
    assert out == ["200 OK: hello"]


def test_pool_post_is_never_repeated(scripted_server: Callable[..., ScriptedServer]) -> None:
    srv = scripted_server(
        [[Step.read_request(), Step.close()], [Step.read_request(), Step.send(RESPONSE_OK)]]
    )
    proc = run_example(
        "pool_post.py", f"http://127.0.0.1:{srv.port}/form", "x=1", expect_fail=True
    )
    assert lines(proc) == ["sent, but no answer: the server may or may not have acted on it"]
    assert srv.connections == 1


@covers("pool_proxy.py")
def test_pool_proxy(
    make_http_server: Callable[..., HTTPTestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, proxy = make_http_server(), make_http_server()
    url = f"{origin.url}/size/10"
    out = lines(run_example("pool_proxy.py", url, f"http://u:p@127.0.0.1:{proxy.port}"))
    assert out == ["200 OK, 10 bytes"]
    for name in ("HTTP_PROXY", "http_proxy", "no_proxy", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    assert lines(run_example("pool_proxy.py", url)) == ["200 OK, 10 bytes"]
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert lines(run_example("pool_proxy.py", url)) == ["200 OK, 10 bytes"]
    assert [r.target for r in proxy.requests] == [url, url]
    assert ("Proxy-Authorization", "Basic dTpw") in proxy.requests[0].headers
    assert [r.target for r in origin.requests] == ["/size/10"]


# ============================================================================ the manual itself


def test_every_example_is_tested_and_shown() -> None:
    files = {path.name for path in EXAMPLES.glob("*.py")}
    assert files, "no examples found"
    assert files == _TESTED, "examples without a test, or tests of missing examples"
    included: set[str] = set()
    for page in PAGES:
        for target in re.findall(r"^\.\. literalinclude:: (\S+)", page.read_text(), re.M):
            assert (DOC / target).is_file(), f"{page.name} includes missing {target}"
            included.add(Path(target).name)
    assert files - included == set(), "examples that no page shows"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doctests(page: Path) -> None:
    """Run the page's doctests in a fresh interpreter (they may configure things)."""
    code = (
        "import doctest, sys\n"
        "r = doctest.testfile(sys.argv[1], module_relative=False)\n"
        "print(r.attempted)\n"
        "sys.exit(1 if r.failed else 0)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    attempted = int(proc.stdout.split()[-1])
    assert attempted == page.read_text().count("\n>>> ")


# ---------------------------------------------------------------------- API reference

API_RST = (DOC / "api.rst").read_text()


_DIRECTIVE = re.compile(
    r"^ *\.\. (?:auto)?(?:class|exception|function|data|method|property|attribute)"
    r":: (\w+)",
    re.M,
)


def documented() -> list[str]:
    """Names that api.rst documents with a directive, in page order."""
    return _DIRECTIVE.findall(API_RST)


def test_reference_documents_every_public_name() -> None:
    names = set(documented())
    missing = (set(dugong.__all__) | CONTRACT_NAMES) - names
    assert missing == set()


def _docstring_attributes(obj: Any) -> set[str]:
    """Names in the ``Attributes:`` section of a Google-style docstring."""
    doc = inspect.getdoc(obj) or ""
    section = doc.partition("\nAttributes:\n")[2]
    return set(re.findall(r"^    (\w+)(?: \(.*?\))?:", section, re.M))


@pytest.mark.parametrize(
    "cls",
    [
        dugong.HTTPConnection,
        dugong.HTTPResponse,
        dugong.PollNeeded,
        dugong.BodyFollowing,
        dugong.CaseInsensitiveDict,
        dugong.ConnectionPool,
        dugong.PoolResponse,
    ],
)
def test_reference_documents_every_member(cls: type) -> None:
    public = {name for name in vars(cls) if not name.startswith("_")}
    public.discard("read1")  # an alias of read, mentioned there
    attrs = _docstring_attributes(cls)
    # The class's block: from its directive to the next one at the margin.
    block = API_RST[API_RST.index(f"autoclass:: {cls.__name__}") :].split("\n.. ", 1)[0]
    in_page = set(_DIRECTIVE.findall(block))
    assert public - attrs - in_page == set()
    if cls is dugong.HTTPConnection:
        # The instance attributes set in __init__ are documented too.
        assert {"hostname", "port", "ssl_context", "proxy"} <= attrs


#: Classes whose methods that may wait have ``co_`` twins.
TWIN_CLASSES = (dugong.HTTPConnection, dugong.ConnectionPool)


def twin_of(name: str) -> str:
    """The blocking twin of ``co_`` method *name* (a lease's is a context manager)."""
    return "connection" if name == "co_acquire" else name[3:]


def test_reference_puts_twins_together() -> None:
    names = documented()
    twins = [name for name in names if name.startswith("co_")]
    assert len(twins) >= 11
    for name in twins:
        index = names.index(name)
        assert names[index - 1] == twin_of(name), f"{name} does not follow its twin"
    public_co = {n for cls in TWIN_CLASSES for n in vars(cls) if n.startswith("co_")}
    assert public_co == set(twins)


def _public_methods() -> Iterator[tuple[str, Any]]:
    for cls in TWIN_CLASSES:
        for name, member in vars(cls).items():
            if not name.startswith("_") and callable(member) and name != "read1":
                yield f"{cls.__name__}.{name}", getattr(member, "__wrapped__", member)
    for name in dugong.__all__:
        obj = getattr(dugong, name)
        if inspect.isfunction(obj):
            yield name, obj


@pytest.mark.parametrize(
    ("name", "func"), [pytest.param(name, func, id=name) for name, func in _public_methods()]
)
def test_docstrings_are_complete(name: str, func: Any) -> None:
    doc = inspect.getdoc(func)
    assert doc, f"{name} has no docstring"
    owner, _, short = name.rpartition(".")
    if short.startswith("co_"):
        assert doc.startswith(f"Generator twin of `{twin_of(short)}`: yields `PollNeeded`")
        assert "`timeout`" in doc
        return
    params = [p for p in inspect.signature(func).parameters if p not in ("self", "kwargs")]
    body = doc.split("\n", 1)[-1]
    for param in params:
        if f"*{param}*" not in doc:
            assert re.search(rf"^    \*?{param}\b.*:", body, re.M), f"{name}: {param}?"
    twin = "co_acquire" if short == "connection" else "co_" + short
    if owner and getattr(getattr(dugong, owner), twin, None) is not None:
        # A method that waits for the network: what it raises, what it returns.
        if short != "read_raw":  # a debugging aid
            assert "Raises:" in doc, f"{name} documents no exceptions"
        if inspect.signature(func).return_annotation not in ("None", None):
            assert "Returns:" in doc, f"{name} documents no return value"


@pytest.mark.parametrize(
    "name",
    ["BUFFER_SIZE", "MAX_LINE_SIZE", "MAX_HEADER_SIZE", "MAX_HEADER_FIELDS", "MAX_INTERIM_SIZE"],
)
def test_reference_states_the_limits(name: str) -> None:
    value = getattr(dugong, name)
    stated = f"{value // 1024} KiB" if value % 1024 == 0 and "FIELDS" not in name else str(value)
    block = API_RST[API_RST.index(f".. data:: {name}\n") :].split("\n.. ", 1)[0]
    assert f": {stated}." in " ".join(block.split()), f"api.rst gives another value of {name}"


@covers("expect100_deadline.py")
@pytest.mark.parametrize("server", ["silent", "answers"])
def test_expect100_deadline(scripted_server: Callable[..., ScriptedServer], server: str) -> None:
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 6\r\n\r\nstored"
    steps = [Step.read_request(body=False)]
    if server == "answers":
        steps.append(Step.send(b"HTTP/1.1 100 Continue\r\n\r\n"))
    srv = scripted_server([*steps, Step.read_body(), Step.send(answer)])
    out = lines(
        run_example(
            "expect100_deadline.py",
            0.3 if server == "silent" else 20,
            f"http://127.0.0.1:{srv.port}/file",
        )
    )
    when = "at the deadline" if server == "silent" else "before the deadline"
    assert out == [f"100 Continue {when}: sending the body", "201 Created: stored"]
    srv.wait_done()
    assert srv.requests[0][0].body == b"some data " * 1000


@covers("anyio_fetch.py")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_fetch(http_server: HTTPTestServer, backend: str) -> None:
    urls = [f"{http_server.url}/size/{n}" for n in (0, 10, 100_000)]
    out = lines(run_example("anyio_fetch.py", backend, 10, *urls))
    assert out == [
        "/size/0: 200, 0 bytes",
        "/size/10: 200, 10 bytes",
        "/size/100000: 200, 100000 bytes",
    ]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_fetch_timeout_and_cancel(
    scripted_server: Callable[..., ScriptedServer], http_server: HTTPTestServer, backend: str
) -> None:
    # One server stalls mid-body: its fetch times out; the other is fine.
    stall = scripted_server(
        [
            Step.read_request(),
            Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"),
            Step.stop_reading(),
        ]
    )
    out = lines(
        run_example(
            "anyio_fetch.py",
            backend,
            0.3,
            f"http://127.0.0.1:{stall.port}/stall",
            f"{http_server.url}/size/5",
        )
    )
    assert out == ["/stall: timed out", "/size/5: 200, 5 bytes"]


@covers("gzip_download.py")
@pytest.mark.parametrize("compressed", [True, False])
def test_gzip_download(
    scripted_server: Callable[..., ScriptedServer], tmp_path: Path, compressed: bool
) -> None:
    import gzip

    original = body_for(200_000)
    payload = gzip.compress(original) if compressed else original
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(payload)
    if compressed:
        head += b"Content-Encoding: gzip\r\n"
    srv = scripted_server([Step.read_request(), Step.send(head + b"\r\n" + payload)])
    out = tmp_path / "out.bin"
    proc = run_example("gzip_download.py", f"http://127.0.0.1:{srv.port}/data", out)
    assert lines(proc) == [f"received {len(payload)} bytes, wrote {len(original)} bytes"]
    assert out.read_bytes() == original
    srv.wait_done()
    assert srv.requests[0][0].header_all("Accept-Encoding") == ["gzip"]


# ============================================================================ the engine


@covers("engine_memory.py")
def test_engine_memory() -> None:
    out = lines(run_example("engine_memory.py"))
    assert out == [
        "sent 3 requests (329 bytes), 3 responses outstanding",
        "GET /ann: 200 OK, b'hello from /ann'",
        "GET /bob: 200 OK, b'hello from /bob'",
        "GET /cy: 200 OK, b'hello from /cy'",
        "GET /chunked: 200, length unknown, b'dugong reads chunks', trailer X-Parts: 3",
        "PUT /upload: head sent, send side WAIT100",
        "PUT /upload: 100 Continue, send side BODY",
        f"PUT /upload: 201 Created, stored 10240 bytes, sha256 "
        f"{sha256(bytes(range(256)) * 40)[:16]}",
        "engine idle: True; 10822 bytes sent, 389 received in 57 slices",
    ]
    # The page shows the same output.
    page = (DOC / "engine.rst").read_text()
    shown = page.split("It prints::\n\n", 1)[1].split("\n\n", 1)[0]
    assert [line.strip() for line in shown.splitlines()] == out


_TRIO_LINE = re.compile(
    r"(\S+): (\d{3} [\w ]+), (\d+) bytes \((\d+) straight into our buffer\), "
    r"sha256 ([0-9a-f]{16})"
)


@covers("engine_trio.py")
@pytest.mark.parametrize("mode", ["socket", "stream-only"])
def test_engine_trio(http_server: HTTPTestServer, mode: str) -> None:
    paths = [
        "/size/10",
        "/chunked/50000?chunk=7000",
        "/status/404",
        "/size/3000000",
        "/close/100000",
        "/size/5",
    ]
    args = ["--stream-only"] if mode == "stream-only" else []
    out = lines(run_example("engine_trio.py", *args, http_server.url, *paths))
    assert len(out) == len(paths)
    bodies = {
        "/size/10": body_for(10),
        "/chunked/50000?chunk=7000": body_for(50000),
        "/status/404": b"status 404\n",
        "/size/3000000": body_for(3_000_000),
        "/close/100000": body_for(100_000),
    }
    for line, (path, body) in zip(out, bodies.items(), strict=False):
        match = _TRIO_LINE.fullmatch(line)
        assert match is not None, line
        status = "404 Not Found" if path == "/status/404" else "200 OK"
        assert match.group(1, 2, 3) == (path, status, str(len(body)))
        assert match[5] == sha256(body)[:16]
        direct = int(match[4])
        assert 0 <= direct <= len(body)
        if path == "/size/3000000":
            # Beyond what came with the head, the body went straight into the buffer.
            assert direct >= len(body) - dugong.BUFFER_SIZE
    assert out[-1] == (
        "/size/5: not answered (No response to GET /size/5: Server announced "
        "that it closes the connection)"
    )
    assert [r.target for r in http_server.requests] == paths[:-1]


def test_engine_trio_body_cut_short(scripted_server: Callable[..., ScriptedServer]) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n"
    server = scripted_server(
        [Step.read_request(), Step.read_request(), Step.send(head + body_for(1000)), Step.close()]
    )
    out = lines(run_example("engine_trio.py", f"http://127.0.0.1:{server.port}", "/a", "/b"))
    assert out == [
        "/a: 200 OK, cut short after 1000 bytes (Server closed the connection "
        "after 1000 of 300000 body bytes)"
    ]
    assert [r.target for r in server.requests[0]] == ["/a", "/b"]


# ---------------------------------------------------------------------- the internals page

sys.path.insert(0, str(DOC / "_ext"))
import dugong_doc  # noqa: E402  (the manual's extension, from doc/_ext)

from dugong import engine  # noqa: E402


def _decode_diagram(text: str) -> set[tuple[str, str, str]]:
    """The (transition, before, after) changes a state diagram shows, read back from
    its characters: each arrow runs from ``├``/``┤`` (and every ``┼``) to its head."""
    header, *rows = text.splitlines()
    columns = {m.start() + (len(m[0]) - 1) // 2: m[0] for m in re.finditer(r"\w+", header)}
    shown: set[tuple[str, str, str]] = set()
    name = ""
    for row in rows:
        label = row[: min(columns)].strip()
        name = label or name
        head = row.find(">") + 1 if ">" in row else row.find("<") - 1
        if head < 0 and "<" not in row:
            continue
        starts = [x for x in columns if x < len(row) and row[x] in "├┤┼"]
        assert head in columns and starts, row
        shown.update((name, columns[x], columns[head]) for x in starts)
    return shown


@pytest.mark.parametrize("side", ["send", "conn"])
def test_state_diagram_shows_the_table(side: str) -> None:
    table = {
        (name, before.name, after.name)
        for name, which, before, after in engine.TRANSITIONS
        if which == side
    }
    assert _decode_diagram(dugong_doc.render_diagram(side)) == table


def test_transition_table_lists_every_transition() -> None:
    rows = dugong_doc.transition_rows()
    assert [row[0] for row in rows] == list(dict.fromkeys(t[0] for t in engine.TRANSITIONS))
    assert all(row[1] for row in rows), "a transition without a docstring"
    for name, _, send, conn in rows:
        for side, text in (("send", send), ("conn", conn)):
            for _, which, before, after in (t for t in engine.TRANSITIONS if t[0] == name):
                if which == side:
                    assert before.name in text and after.name in text


def _transition_args(name: str) -> list[tuple[Any, ...]]:
    if name in ("request_sent", "continue_received"):
        return [
            (engine.Request("PUT", "/", expect100, length, True, True),)
            for expect100 in (False, True)
            for length in (None, 0, 5)
        ] + [(engine.Request("GET", "/", False, None, False, True),)]
    if name in ("send_failed", "lost", "fail"):
        return [("why",)]
    return [()]


def _called_by_the_engine(name: str, send: engine.SendState) -> bool:
    """Where `ClientEngine` calls the one transition that does not check its start."""
    return name != "request_sent" or send is engine.SendState.IDLE


def test_transitions_make_exactly_the_changes_of_the_table() -> None:
    table = {(name, side, before, after) for name, side, before, after in engine.TRANSITIONS}
    made: set[tuple[str, str, Any, Any]] = set()
    transitions = [
        name
        for name, member in vars(engine.States).items()
        if callable(member) and not name.startswith("_")
    ]
    assert len(transitions) >= 10
    for name in transitions:
        for send in engine.SendState:
            if not _called_by_the_engine(name, send):
                continue
            for conn in engine.ConnState:
                for args in _transition_args(name):
                    states = engine.States()
                    states.send, states.conn = send, conn
                    getattr(states, name)(*args)
                    if states.send is not send:
                        made.add((name, "send", send, states.send))
                    if states.conn is not conn:
                        made.add((name, "conn", conn, states.conn))
                    if states.conn is not engine.ConnState.OPEN and (
                        conn is engine.ConnState.OPEN or send is engine.SendState.CLOSED
                    ):
                        # The invariant, from every state that satisfies it.
                        assert states.send is engine.SendState.CLOSED, (name, send, conn)
    assert made == table


def test_module_map_counts_lines_as_wc_does() -> None:
    modules = sorted((ROOT / "dugong").glob("*.py"))
    wc = subprocess.run(
        ["wc", "-l", *map(str, modules)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    counted = {Path(path).name: int(n) for n, path in (line.split() for line in wc[:-1])}
    assert counted == {path.name: dugong_doc.line_count(path) for path in modules}
