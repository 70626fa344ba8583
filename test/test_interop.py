"""Interoperability: dugong against the HTTP/1.1 servers people deploy.

Each server runs as a subprocess on 127.0.0.1 (`SPECS` and `_python_command`
say how, ``interop_apps.py`` has the apps): nginx serving static files, WebDAV
``PUT`` and a few locations configured for one behaviour each; uvicorn (h11 and
httptools parsers) and hypercorn with an ASGI app; gunicorn (sync and gthread
workers) and waitress with a WSGI app; aiohttp's web server. Every keep-alive
timeout is 1 s. The ``tls_server`` fixture runs each server but waitress (which
has no TLS) over TLS as well, with a certificate of the test CA; the pool's tests
use both. A server that is not installed is skipped, except under CI
(environment variable ``CI`` set), where that fails.

FINDINGS: what the servers did differently (nginx 1.22, uvicorn 0.54,
hypercorn 0.18, gunicorn 27, waitress 3.0, aiohttp 3.14).

Framing
    Every Python server chunks a length-less response to an HTTP/1.1 client,
    even when the app says ``Connection: close``; only nginx (with
    ``chunked_transfer_encoding off``) sends a body delimited by the close.
    waitress closes after *every* length-less response (chunked, 204, 304,
    announced), sends the terminating ``0`` chunk after ``HEAD`` of such a
    resource anyway (harmless: it closes next), and adds a Content-Length
    itself when a WSGI app returns a one-item list. uvicorn-h11 and hypercorn
    announce ``Transfer-Encoding: chunked`` on ``HEAD`` of a streamed
    resource (no body follows). nginx's ``return 304`` carries
    ``Content-Length: 0``. hypercorn (h11) sends an empty reason phrase
    (``HTTP/1.1 200 ``). Only nginx sends trailer fields over HTTP/1.1
    (``add_trailer``); hypercorn and uvicorn implement ASGI
    ``http.response.trailers`` for HTTP/2 only.

Connection close
    gunicorn's sync worker says ``Connection: close`` on every response (no
    keep-alive; of a pipeline only the first request is answered, the rest
    raise `ConnectionClosed`). gunicorn's gthread worker drops an app's
    ``Connection: close`` header and keeps the connection; waitress refuses
    it with a 500 (WSGI forbids hop-by-hop fields). All honour a client's
    ``Connection: close``. Past the keep-alive timeout all close silently
    (waitress at its next cleanup sweep), and dugong's idle-drop recovery
    sends the next request on a new connection.

Pipelining
    All but gunicorn-sync answer 200 pipelined requests in order, over TLS
    too (the pool had 16 in flight on each of them, plain and TLS).

100-continue
    Sent only when the app reads the body: uvicorn (both parsers), nginx (its
    DAV handler reads it; an auth or size check or a 405 answers first,
    without 100). aiohttp: its default ``Expect`` handler sends 100 before the
    request handler runs; an app's own handler can refuse instead. Sent at
    once whatever the app will do: hypercorn, gunicorn (both workers),
    waitress (which runs the app only once the whole body has arrived; given
    ``Expect`` and a Content-Length over its ``max_request_body_size`` it
    still sends 100, reads up to the limit, then answers 413 and closes).

Early answers (before the body, RFC 9110 §10.1.1)
    Announcing the close: nginx's 413 (``client_max_body_size``), gunicorn's
    sync worker, waitress's 413. Keeping the connection while still expecting
    the body there: nginx's 401 (``auth_basic``) and 405 (``POST`` to a
    static file) -- a request sent on it next is read as body bytes and gets
    a 400 --, uvicorn's 413 (both parsers, until the keep-alive timeout) and
    aiohttp's: dugong goes on with a new connection. hypercorn and gunicorn's
    gthread worker close silently when the body has not all arrived by the
    end of their answer: if dugong could write it all into the socket
    buffers it cannot know, and the next request races with the close (see
    `pause_for_silent_close`); with a bigger body dugong's ``write()`` meets
    the close.

Switching protocols
    uvicorn (with wsproto), hypercorn and aiohttp answer a WebSocket handshake
    with a 101 and send the app's first message after it, in a segment of its
    own. DUGONG BUG found and fixed: dugong closed the socket once the 101 was
    read (HTTP had ended on it), so `read_raw` returned only what had come
    with the 101's head, and then ``b''``; the socket now stays open for the
    new protocol until `disconnect` (see
    `test_websocket_upgrade_ends_http`).

DUGONG BUG found and fixed: after that ``write()`` raised `ConnectionClosed`
and the early answer was read, the next request raised `dugong.StateError`
("the connection broke while sending") instead of going out on a new
connection as after any early answer; see
`test_answer_read_after_a_failed_write_is_an_early_answer`.

Deployment note: ``uvicorn --fd`` wraps a TCP socket as ``AF_UNIX``, so
asyncio does not set ``TCP_NODELAY`` and every keep-alive response waits
about 40 ms (Nagle against delayed ACKs): the servers here bind their port
themselves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import grp
import hashlib
import importlib.util
import os
import pwd
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import dugong
from checks import assert_not_sent, write_times
from dugong import (
    AioFuture,
    BodyFollowing,
    ConnectionClosed,
    ConnectionPool,
    HTTPConnection,
    HTTPResponse,
    StateError,
)
from interop_apps import UNTIL_CLOSE_SIZE, WS_HELLO, digest_answer, payload, seq_body
from servers import Step

HOST = "127.0.0.1"
TEST_DIR = Path(__file__).resolve().parent
#: seconds a server may take to start answering
START_TIMEOUT = 30.0
#: seconds a server may take to exit after SIGTERM before it is killed
STOP_TIMEOUT = 5.0
#: the keep-alive timeout every server is configured with (seconds)
KEEPALIVE = 1
#: seconds a connection may wait for the server before the test fails
CONN_TIMEOUT = 10.0
#: the longest a silent close after an early answer takes to arrive, when it comes
SILENT_CLOSE_WAIT = 0.3
#: waitress's body limit (uploads stay below it, its rejection goes above)
WAITRESS_MAX_BODY = 2 << 20
BIG = 1 << 20
#: uploads: a bit more than 1 MiB, so that no write size divides it
UPLOAD_SIZE = BIG + 4097
PIPELINE = 200


# ================================================================= what each server does


@dataclass(frozen=True)
class Reject:
    """A request (with ``Expect: 100-continue``) the server refuses with *status*."""

    method: str
    path: str
    #: the announced body length
    length: int
    status: int
    #: the server sends 100 Continue before the refusal (so the body is sent)
    continue_first: bool
    #: the refusal announces ``Connection: close``
    closes: bool


@dataclass(frozen=True)
class Spec:
    """How a server is started and what it was seen to do (see FINDINGS above)."""

    name: str
    #: Python packages it needs (nginx needs its binary instead)
    modules: tuple[str, ...]
    rejects: tuple[Reject, ...]
    #: keeps connections open between requests
    keep_alive: bool = True
    #: answers a pipeline of requests completely and in order
    pipeline: bool = True
    #: a path answered with ``Connection: close`` by the server's choice, or None
    close_path: str | None = "/close"
    #: ``/untilclose`` is delimited by the close (else chunked)
    until_close: bool = False
    #: closes after every response without a Content-Length
    lengthless_closes: bool = False
    #: ``/trailers/N`` ends with a trailer field
    trailers: bool = False
    #: after answering before the request body has arrived, closes without a word
    early_answer_closes: bool = False
    #: can serve over TLS (waitress cannot)
    tls: bool = True
    #: upgrades ``GET /ws`` to a WebSocket (the ASGI servers and aiohttp)
    websocket: bool = False


_APP_REJECT_413 = Reject("PUT", "/reject/413", 50_000, 413, continue_first=False, closes=False)
_APP_REJECT_413_AFTER_100 = Reject(
    "PUT", "/reject/413", 50_000, 413, continue_first=True, closes=False
)

SPECS = {
    spec.name: spec
    for spec in [
        Spec(
            "nginx",
            (),
            rejects=(
                Reject("PUT", "/auth/x", 50_000, 401, continue_first=False, closes=False),
                Reject("POST", "/bytes/100", 50_000, 405, continue_first=False, closes=False),
                Reject("PUT", "/small/x", 50_000, 413, continue_first=False, closes=True),
            ),
            close_path="/close/100",
            until_close=True,
            trailers=True,
        ),
        Spec(
            "uvicorn-h11",
            ("uvicorn", "h11", "wsproto"),
            rejects=(_APP_REJECT_413,),
            websocket=True,
        ),
        Spec(
            "uvicorn-httptools",
            ("uvicorn", "httptools", "wsproto"),
            rejects=(_APP_REJECT_413,),
            websocket=True,
        ),
        Spec(
            "hypercorn",
            ("hypercorn",),
            rejects=(_APP_REJECT_413_AFTER_100,),
            early_answer_closes=True,
            websocket=True,
        ),
        Spec(
            "gunicorn-sync",
            ("gunicorn",),
            rejects=(Reject("PUT", "/reject/413", 50_000, 413, continue_first=True, closes=True),),
            keep_alive=False,
            pipeline=False,
            close_path="/bytes/100",
        ),
        Spec(
            "gunicorn-gthread",
            ("gunicorn",),
            rejects=(_APP_REJECT_413_AFTER_100,),
            close_path=None,
            early_answer_closes=True,
        ),
        Spec(
            "waitress",
            ("waitress",),
            rejects=(
                Reject(
                    "PUT",
                    "/echo",
                    WAITRESS_MAX_BODY + 65536,
                    413,
                    continue_first=True,
                    closes=True,
                ),
            ),
            close_path="/stream/100",
            lengthless_closes=True,
            tls=False,
        ),
        Spec("aiohttp", ("aiohttp",), rejects=(_APP_REJECT_413,), websocket=True),
    ]
}


# ================================================================= running the servers


def _unavailable(reason: str) -> None:
    """Skip, except in CI, which must have installed every server."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install every server)", pytrace=False)
    pytest.skip(reason)


def _nginx_binary() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which("nginx", path=path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _python_command(name: str, port: int, tls: tuple[str, str] | None) -> list[str]:
    argv = _plain_command(name, port)
    if tls is None:
        return argv
    cert, key = tls
    if name.startswith("uvicorn-"):
        return [*argv, "--ssl-certfile", cert, "--ssl-keyfile", key]
    if name == "aiohttp":
        return [*argv, cert, key]
    return [*argv, "--certfile", cert, "--keyfile", key]  # hypercorn, gunicorn


def _plain_command(name: str, port: int) -> list[str]:
    py = sys.executable
    ka = str(KEEPALIVE)
    address = f"{HOST}:{port}"
    if name.startswith("uvicorn-"):
        return [
            py,
            "-m",
            "uvicorn",
            "interop_apps:asgi_app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--http",
            name.split("-", 1)[1],
            "--ws",
            "wsproto",
            "--timeout-keep-alive",
            ka,
            "--no-access-log",
            "--log-level",
            "warning",
            "--lifespan",
            "on",
            "--timeout-graceful-shutdown",
            "1",
        ]
    if name == "hypercorn":
        return [
            py,
            "-m",
            "hypercorn",
            "interop_apps:asgi_app",
            "--bind",
            address,
            "--keep-alive",
            ka,
            "--graceful-timeout",
            "1",
        ]
    if name.startswith("gunicorn-"):
        worker = name.split("-", 1)[1]
        # (--threads above 1 would turn the sync worker into gthread)
        return [
            py,
            "-m",
            "gunicorn",
            "interop_apps:wsgi_app",
            "--bind",
            address,
            "--workers",
            "1",
            "--worker-class",
            worker,
            "--threads",
            "4" if worker == "gthread" else "1",
            "--keep-alive",
            ka,
            "--graceful-timeout",
            "1",
            "--log-level",
            "warning",
        ]
    if name == "waitress":
        # waitress closes idle connections in a sweep every cleanup-interval seconds.
        return [
            py,
            "-m",
            "waitress",
            f"--listen={address}",
            f"--channel-timeout={ka}",
            f"--cleanup-interval={ka}",
            f"--max-request-body-size={WAITRESS_MAX_BODY}",
            "interop_apps:wsgi_app",
        ]
    if name == "aiohttp":
        return [py, str(TEST_DIR / "interop_apps.py"), "aiohttp", HOST, str(port), ka]
    raise ValueError(name)  # pragma: no cover


_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    types {{ }}
    keepalive_timeout 30s;
    keepalive_requests 10000;
    client_max_body_size 64m;
    server {{
        listen {host}:{port}{tls};
        root {d}/www;
        # uploads are written to files, read back with GET
        location /dav/ {{ dav_methods PUT; client_body_buffer_size 256k; }}
        # answered before the body: 413 by size, 401 by auth
        location /small/ {{ dav_methods PUT; client_max_body_size 1k; }}
        location /auth/ {{ auth_basic "interop"; auth_basic_user_file {d}/htpasswd;
                           dav_methods PUT; }}
        # SSI drops the length: chunked, or delimited by the close, or with trailers
        location /stream/ {{ ssi on; ssi_types *; }}
        location /untilclose/ {{ ssi on; ssi_types *; chunked_transfer_encoding off;
                                 alias {d}/www/bytes/; }}
        location /trailers/ {{ ssi on; ssi_types *; add_trailer X-Interop "end of $uri";
                               alias {d}/www/bytes/; }}
        location /close/ {{ keepalive_timeout 0; alias {d}/www/bytes/; }}
        location /idle/ {{ keepalive_timeout {keepalive}s; alias {d}/www/bytes/; }}
        # a connection ends after three requests (the third answer says so)
        location /few/ {{ keepalive_requests 3; alias {d}/www/seq/; }}
        location = /status/204 {{ return 204; }}
        location = /status/304 {{ return 304; }}
    }}
}}
"""

#: body sizes nginx serves as /bytes/N (and /stream/N, /untilclose/N, /trailers/N)
NGINX_SIZES = (0, 100, UNTIL_CLOSE_SIZE, BIG)


def _nginx_setup(d: Path, port: int, token: str, tls: tuple[str, str] | None) -> list[str]:
    """Write nginx's configuration and files under *d*; return its command line."""
    for sub in ("www/bytes", "www/stream", "www/seq", "www/dav", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for n in NGINX_SIZES:
        data = payload(n)
        # SSI must pass the bytes through unchanged: no directive may appear in them.
        assert b"<!--#" not in data
        (d / "www/bytes" / str(n)).write_bytes(data)
        (d / "www/stream" / str(n)).write_bytes(data)
    for i in range(PIPELINE):
        (d / "www/seq" / str(i)).write_bytes(seq_body(i))
    (d / "htpasswd").write_text("user:{PLAIN}secret\n")
    (d / "www/token").write_text(token)
    user = ""
    if os.geteuid() == 0:
        # Workers must be able to read and write our temporary directory.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    on_tls = "" if tls is None else f" ssl; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}"
    conf = _NGINX_CONF.format(
        d=d, user=user, host=HOST, port=port, keepalive=KEEPALIVE, tls=on_tls
    )
    (d / "nginx.conf").write_text(conf)
    binary = _nginx_binary()
    assert binary is not None
    return [binary, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]


def _answers(port: int, token: str, deadline: float, tls: bool) -> bool:
    """Whether our server (the one that knows *token*) answers on *port* by *deadline*."""
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection((HOST, port), timeout=1.0))
            if tls:  # (a probe: the certificate is checked by the tests)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = stack.enter_context(context.wrap_socket(sock))
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(b"GET /token HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            answer = b""
            while data := sock.recv(4096):
                answer += data
            return answer.startswith(b"HTTP/1.1 200") and answer.endswith(token.encode())
    except OSError:
        return False


class Server:
    """One server subprocess (started in its own session, stopped by its PID)."""

    def __init__(self, spec: Spec, workdir: Path, tls: tuple[str, str] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.workdir = workdir
        #: (certificate chain file, key file) to serve over TLS, or None
        self.tls = tls
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.log = workdir / "server.log"

    def launch(self) -> Server:
        """Start the process, on a port that is free now; `ready` waits for it."""
        self.port = _free_port()
        self.token = uuid.uuid4().hex
        env = dict(os.environ, PYTHONPATH=str(TEST_DIR), INTEROP_TOKEN=self.token)
        env.pop("DUGONG_TRACEFILE", None)
        if self.name == "nginx":
            argv = _nginx_setup(self.workdir, self.port, self.token, self.tls)
        else:
            argv = _python_command(self.name, self.port, self.tls)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=TEST_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    def ready(self) -> Server:
        """Wait until the launched server answers. The port may have been taken between
        its choice and the server's bind: then the server is started on another one."""
        for _ in range(3):
            if self.proc is None:
                self.launch()
            assert self.proc is not None
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _answers(self.port, self.token, deadline, self.tls is not None):
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(
            f"{self.name} did not start; its log:\n{self.log.read_text(errors='replace')[-3000:]}"
        )

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()

    def terminate(self) -> None:
        """Ask the server to exit (`wait_stopped` waits for it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait_stopped(self) -> None:
        """Wait for the exit that `terminate` asked for; kill the server after STOP_TIMEOUT."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group it leads, workers included
            proc.wait(STOP_TIMEOUT)

    def connection(self) -> HTTPConnection:
        conn = HTTPConnection(HOST, self.port)
        conn.timeout = CONN_TIMEOUT
        return conn

    # -- the paths and checks that differ between nginx and the apps --------------------

    def upload_path(self) -> str:
        return f"/dav/{uuid.uuid4().hex}" if self.name == "nginx" else "/echo"

    def check_upload(
        self, drive: Any, conn: HTTPConnection, path: str, resp: HTTPResponse, data: bytes
    ) -> None:
        """The upload of *data* answered by *resp* (body unread) arrived intact."""
        body = drive(conn, "readall")
        if self.name != "nginx":
            assert (resp.status, body) == (200, digest_answer(data))
            return
        assert resp.status == 201, (resp, body)
        # nginx stored it: read it back.
        drive(conn, "send_request", "GET", path)
        back = drive(conn, "read_response")
        assert back.status == 200
        assert back.length == len(data)
        assert drive(conn, "readall") == data


def _missing(spec: Spec) -> str | None:
    """Why the server of *spec* cannot run here, or None."""
    if spec.name == "nginx" and _nginx_binary() is None:
        return "nginx is not installed"
    for module in spec.modules:
        if importlib.util.find_spec(module) is None:
            return f"{spec.name} needs the Python package {module!r}"
    return None


def _selected(request: pytest.FixtureRequest, fixture: str) -> set[str]:
    """The server names that the selected tests ask of *fixture*."""
    return {
        item.callspec.params[fixture]
        for item in request.session.items
        if fixture in getattr(getattr(item, "callspec", None), "params", {})
    }


@pytest.fixture(scope="module")
def launched(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_server_cert: Any,
) -> Iterator[dict[str, Server]]:
    """Every server that the selected tests use, launched together when the first one is
    needed, and stopped together at the end: the others start up (a few tenths of a
    second of CPU each) while the first ones are tested, and their graceful shutdowns
    overlap. A server over TLS is keyed by its name and ``+tls``."""
    plain, tls = _selected(request, "server"), _selected(request, "tls_server")
    servers = {
        name: Server(SPECS[name], tmp_path_factory.mktemp(name)).launch()
        for name in SPECS
        if name in plain and _missing(SPECS[name]) is None
    }
    if tls:
        files = tmp_path_factory.mktemp("tls")
        cert, key = str(files / "chain.pem"), str(files / "key.pem")
        tls_server_cert.cert_chain_pems[0].write_to_path(cert)
        tls_server_cert.private_key_pem.write_to_path(key)
        for name in SPECS:
            if name in tls and _missing(SPECS[name]) is None:
                workdir = tmp_path_factory.mktemp(f"{name}-tls")
                servers[f"{name}+tls"] = Server(SPECS[name], workdir, (cert, key)).launch()
    try:
        yield servers
    finally:
        for srv in servers.values():
            srv.terminate()
        for srv in servers.values():
            srv.wait_stopped()


@pytest.fixture(scope="module", params=list(SPECS), ids=list(SPECS))
def server(request: pytest.FixtureRequest, launched: dict[str, Server]) -> Server:
    """A running server of each kind (one at a time, each started once per module)."""
    spec = SPECS[request.param]
    reason = _missing(spec)
    if reason is not None:
        _unavailable(reason)
    return launched[spec.name].ready()


_TLS_SPECS = [name for name, spec in SPECS.items() if spec.tls]


@pytest.fixture(scope="module", params=_TLS_SPECS, ids=_TLS_SPECS)
def tls_server(request: pytest.FixtureRequest, launched: dict[str, Server]) -> Server:
    """A running server of each kind that speaks TLS, serving over TLS with the
    certificate of ``tls_server_cert`` (for 127.0.0.1)."""
    spec = SPECS[request.param]
    reason = _missing(spec)
    if reason is not None:
        _unavailable(reason)
    return launched[f"{spec.name}+tls"].ready()


@pytest.fixture
def traces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[bytes]]:
    """Trace every connection made from now on; the returned function gives their bytes,
    one item per connection, in order."""
    monkeypatch.setenv("DUGONG_TRACEFILE", str(tmp_path / "trace-%d"))

    def read() -> list[bytes]:
        files = sorted(tmp_path.glob("trace-*"), key=lambda p: int(p.name.split("-")[1]))
        return [f.read_bytes() for f in files]

    return read


# ================================================================= helpers


def announces_close(resp: HTTPResponse) -> bool:
    tokens = ",".join(resp.headers.get_all("Connection") or []).lower().split(",")
    return "close" in (t.strip() for t in tokens)


def is_chunked(resp: HTTPResponse) -> bool:
    return "chunked" in (resp.headers["Transfer-Encoding"] or "").lower()


def fetch(
    drive: Any, conn: HTTPConnection, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[HTTPResponse, bytes]:
    """One request and its whole response; a connection the server closes is reset."""
    drive(conn, "send_request", method, path, headers)
    resp = drive(conn, "read_response")
    body = drive(conn, "readall")
    assert drive(conn, "read", 10) == b""  # the body stays complete
    if announces_close(resp):
        conn.reset()
    return resp, body


def pause_for_silent_close(server: Server, reject: Reject, conn: HTTPConnection) -> None:
    """Wait for the close that some servers make, unannounced, after an early answer.

    When the body had not all arrived by the end of their answer, hypercorn and
    gunicorn's gthread worker close the connection without saying so. If dugong
    could send the whole body first, it cannot know, and a request sent in that
    instant would meet the close (`ConnectionClosed`): an unavoidable race of
    HTTP/1.1 keep-alive. Once the close has arrived, dugong's idle-drop recovery
    sends the next request on a new connection. The close comes at once or not at
    all (gunicorn's gthread worker keeps the connection when the whole body came
    after its 100 Continue): the wait ends when the socket has something to say, or
    after `SILENT_CLOSE_WAIT` seconds.
    """
    if server.spec.early_answer_closes and not reject.closes and conn._tr is not None:
        select.select([conn._tr.fd], [], [], SILENT_CLOSE_WAIT)


def read_into(drive: Any, conn: HTTPConnection, size: int) -> bytes:
    """Read a body with readinto() into a buffer larger than dugong's."""
    buf = bytearray(size + 1000)
    view = memoryview(buf)
    got = 0
    while True:
        n = drive(conn, "readinto", view[got : got + 300_000])
        if not n:
            return bytes(buf[:got])
        got += n


# ================================================================= GET and HEAD


def test_get_bodies(server: Server, drive: Any) -> None:
    """Small, 1 MiB and empty bodies, with a length and chunked, and HEAD, on one connection."""
    with server.connection() as conn:
        for n in (100, 0):
            resp, body = fetch(drive, conn, "GET", f"/bytes/{n}")
            assert (resp.status, resp.length, body) == (200, n, payload(n))

        drive(conn, "send_request", "GET", f"/bytes/{BIG}")
        resp = drive(conn, "read_response")
        assert (resp.status, resp.length) == (200, BIG)
        assert read_into(drive, conn, BIG) == payload(BIG)
        if announces_close(resp):
            conn.reset()

        for n in (UNTIL_CLOSE_SIZE, BIG, 0):
            resp, body = fetch(drive, conn, "GET", f"/stream/{n}")
            assert resp.status == 200
            assert body == payload(n)
            if n:
                assert resp.length is None and is_chunked(resp), resp.headers.items()
                closes = server.spec.lengthless_closes or not server.spec.keep_alive
                assert announces_close(resp) is closes

        resp, body = fetch(drive, conn, "HEAD", f"/bytes/{BIG}")
        assert (resp.status, resp.length, body) == (200, 0, b"")
        assert resp.headers["Content-Length"] == str(BIG)
        resp, body = fetch(drive, conn, "HEAD", f"/stream/{UNTIL_CLOSE_SIZE}")
        assert (resp.status, resp.length, body) == (200, 0, b"")

        # Whatever came before, the next answer is the right one.
        resp, body = fetch(drive, conn, "GET", "/seq/3")
        assert (resp.status, body) == (200, seq_body(3))


def test_no_body_statuses(server: Server, drive: Any) -> None:
    """204 and 304 have no body, whatever framing fields the server adds."""
    with server.connection() as conn:
        for status in (204, 304):
            resp, body = fetch(drive, conn, "GET", f"/status/{status}")
            assert (resp.status, resp.length, body) == (status, 0, b"")
        resp, body = fetch(drive, conn, "GET", "/seq/4")
        assert (resp.status, body) == (200, seq_body(4))


# ================================================================= keep-alive and pipelining


def test_keep_alive_reuse(server: Server, traces: Callable[[], list[bytes]]) -> None:
    """100 requests on one connection (gunicorn-sync: a new connection for each)."""
    conn = server.connection()
    for i in range(100):
        conn.send_request("GET", f"/seq/{i}")
        resp = conn.read_response()
        assert (resp.status, conn.readall()) == (200, seq_body(i))
        assert announces_close(resp) is not server.spec.keep_alive
        if not server.spec.keep_alive:
            assert_not_sent(None, conn, "GET", "/seq/0")
            conn.reset()
    conn.disconnect()
    assert len(traces()) == (1 if server.spec.keep_alive else 100)


def test_pipeline(server: Server) -> None:
    """200 requests sent before any response is read: answered in order, or cut cleanly."""
    conn = server.connection()
    sent = 0
    try:
        for i in range(PIPELINE):
            conn.send_request("GET", f"/seq/{i}")
            sent += 1
    except ConnectionClosed:
        assert not server.spec.pipeline
    answered = 0
    for i in range(sent):
        try:
            resp = conn.read_response()
            body = conn.readall()
        except ConnectionClosed:
            break
        assert (resp.status, body) == (200, seq_body(i)), f"response {i}"
        answered += 1
    # Once cut, nothing more comes: no stale data, no short body.
    for _ in range(answered + 1, sent):
        with pytest.raises(ConnectionClosed):
            conn.read_response()
    conn.disconnect()
    print(f"{server.name}: {sent} pipelined requests sent, {answered} answered")
    if server.spec.pipeline:
        assert answered == PIPELINE
    else:
        assert 1 <= answered < PIPELINE


# ================================================================= uploads


@pytest.mark.parametrize(
    "kind", ["length", "chunked", "bytes", "length-expect100", "chunked-expect100"]
)
def test_upload(server: Server, drive: Any, kind: str) -> None:
    """A body of known length written in pieces, a chunked one, bytes; with 100-continue."""
    data = payload(UPLOAD_SIZE)
    path = server.upload_path()
    expect100 = kind.endswith("-expect100")
    with server.connection() as conn:
        if kind == "bytes":
            drive(conn, "send_request", "PUT", path, None, data)
        else:
            body = BodyFollowing(len(data) if kind.startswith("length") else None)
            drive(conn, "send_request", "PUT", path, None, body, expect100)
            if expect100:
                cont = drive(conn, "read_response")
                assert cont.status == 100
            for start in range(0, len(data), 100_000):
                drive(conn, "write", data[start : start + 100_000])
            if body.length is None:
                drive(conn, "write", b"")
        resp = drive(conn, "read_response")
        server.check_upload(drive, conn, path, resp, data)


def test_upload_rejected(server: Server, drive: Any, traces: Callable[[], list[bytes]]) -> None:
    """An ``expect100`` request refused at once: no body is sent, and the next request works.

    Servers that send 100 Continue before the app decides get the body, and
    the refusal comes after it.
    """
    data = payload(max(r.length for r in server.spec.rejects))
    for reject in server.spec.rejects:
        before = len(traces())
        conn = server.connection()
        drive(
            conn,
            "send_request",
            reject.method,
            reject.path,
            None,
            BodyFollowing(reject.length),
            True,
        )
        resp = drive(conn, "read_response")
        if resp.status == 100:
            assert reject.continue_first, f"{reject.path}: 100 Continue"
            with contextlib.suppress(ConnectionClosed):  # a server may close while we write
                for start in range(0, reject.length, 65536):
                    drive(conn, "write", data[start : min(start + 65536, reject.length)])
            resp = drive(conn, "read_response")
        else:
            assert not reject.continue_first, f"{reject.path}: no 100 Continue"
        assert resp.status == reject.status
        drive(conn, "readall")
        assert announces_close(resp) is reject.closes
        with pytest.raises(StateError):  # answered: no body is expected, closed or not
            drive(conn, "write", b"x")
        pause_for_silent_close(server, reject, conn)
        if reject.closes:
            assert_not_sent(drive, conn, "GET", "/bytes/100")
            conn.reset()
        # The server may still wait for the body on the old connection: the next request
        # must not go there (it would be read as body bytes).
        resp, body = fetch(drive, conn, "GET", "/bytes/100")
        assert (resp.status, body) == (200, payload(100))
        conn.disconnect()
        sent = traces()[before:]
        if not reject.continue_first:
            # The answer came instead of 100 Continue: not a byte of the body went out, and
            # the next request went out on a new connection.
            assert len(sent) == 2, f"{reject.path}: {len(sent)} connections"
            assert data[:64] not in sent[0], f"{reject.path}: body bytes were sent"


# ================================================================= closing


def test_server_close(server: Server, drive: Any) -> None:
    """A response with ``Connection: close`` ends the connection; reset() opens a new one."""
    if server.spec.close_path is None:
        # gunicorn's gthread worker drops the app's header and keeps the connection.
        with server.connection() as conn:
            for _ in range(2):
                resp, body = fetch(drive, conn, "GET", "/close")
                assert (resp.status, body, announces_close(resp)) == (200, b"closing\n", False)
        return
    with server.connection() as conn:
        drive(conn, "send_request", "GET", server.spec.close_path)
        resp = drive(conn, "read_response")
        assert resp.status == 200
        assert announces_close(resp)
        assert drive(conn, "readall")
        assert_not_sent(drive, conn, "GET", "/seq/1")
        conn.reset()
        resp, body = fetch(drive, conn, "GET", "/seq/1")
        assert (resp.status, body) == (200, seq_body(1))


def test_client_close(server: Server) -> None:
    """A request with ``Connection: close``: the server says it closes, dugong follows."""
    with server.connection() as conn:
        conn.send_request("GET", "/seq/2", {"Connection": "close"})
        resp = conn.read_response()
        assert (resp.status, conn.readall()) == (200, seq_body(2))
        assert announces_close(resp)
        assert_not_sent(None, conn, "GET", "/seq/2")


def test_length_less_close(server: Server, drive: Any) -> None:
    """A length-less body with ``Connection: close``: read until the close (nginx with
    chunking off) or chunked (everybody else)."""
    path = f"/untilclose/{UNTIL_CLOSE_SIZE}" if server.name == "nginx" else "/untilclose"
    with server.connection() as conn:
        drive(conn, "send_request", "GET", path)
        resp = drive(conn, "read_response")
        if server.name == "waitress":
            # WSGI forbids hop-by-hop headers: waitress answers 500 (and closes).
            assert resp.status == 500
            assert announces_close(resp)
            return
        assert resp.status == 200
        assert resp.length is None
        assert is_chunked(resp) is not server.spec.until_close
        assert read_into(drive, conn, UNTIL_CLOSE_SIZE) == payload(UNTIL_CLOSE_SIZE)
        if server.spec.close_path is not None:
            assert announces_close(resp)
            assert_not_sent(drive, conn, "GET", "/seq/1")
            conn.reset()
        resp, body = fetch(drive, conn, "GET", "/seq/1")
        assert (resp.status, body) == (200, seq_body(1))


def _wait_closed(sock: socket.socket, timeout: float) -> float:
    """Wait until the server closes *sock*; return how long that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    while sock.recv(65536):
        pass
    return time.monotonic() - start


def test_idle_timeout(server: Server, drive: Any) -> None:
    """Past the server's keep-alive timeout, the next request goes out on a new connection
    (the blocking methods and the co_ ones check an idle connection each in their way)."""
    if not server.spec.keep_alive:
        pytest.skip(f"{server.name} closes after every response")
    path = f"/idle/{100}" if server.name == "nginx" else "/bytes/100"
    conn = server.connection()
    resp, body = fetch(drive, conn, "GET", path)
    assert (resp.status, body) == (200, payload(100))
    first = conn._tr
    # A raw connection that went idle just after ours tells when the server closes it.
    with socket.create_connection((HOST, server.port), timeout=CONN_TIMEOUT) as probe:
        probe.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
        waited = _wait_closed(probe, 5 * KEEPALIVE + 5)
    assert waited >= KEEPALIVE * 0.5
    # Our connection went idle first: its close has come, or is about to.
    assert select.select([conn._tr.fd], [], [], 5 * KEEPALIVE + 5)[0]
    resp, body = fetch(drive, conn, "GET", "/seq/5")
    assert (resp.status, body) == (200, seq_body(5))
    assert conn._tr is not first  # (a plain transport: traced ones take other paths)
    conn.disconnect()


# ================================================================= 101 Switching Protocols


def _upgrade(drive: Any, conn: HTTPConnection) -> HTTPResponse:
    """Ask for a WebSocket at ``/ws``; the answer, checked to be the server's 101.
    *drive*: the ``drive`` fixture, or None for the blocking methods."""
    if drive is None:
        return _upgrade(lambda conn, name, *a, **kw: getattr(conn, name)(*a, **kw), conn)
    key = base64.b64encode(os.urandom(16)).decode()
    fields = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    drive(conn, "send_request", "GET", "/ws", headers=fields)
    resp = drive(conn, "read_response")
    accept = hashlib.sha1(f"{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11".encode()).digest()
    assert (resp.status, resp.length) == (101, 0)
    assert resp.headers["Upgrade"].lower() == "websocket"
    assert resp.headers["Sec-WebSocket-Accept"] == base64.b64encode(accept).decode()
    assert drive(conn, "readall") == b""
    return resp


def test_websocket_upgrade_ends_http(server: Server, drive: Any) -> None:
    """A real server's 101 (a WebSocket handshake): no body; what follows belongs to the
    new protocol (the server's first frame, read with read_raw), and no further HTTP
    request goes out on that connection."""
    if not server.spec.websocket:
        pytest.skip(f"{server.name} serves no WebSocket here")
    conn = server.connection()
    _upgrade(drive, conn)
    assert conn.is_connected and not conn.response_pending()  # (for the new protocol)
    frame = b""
    while len(frame) < 2 + len(WS_HELLO) and (more := conn.read_raw(64)):
        frame += more
    assert frame == b"\x81" + bytes([len(WS_HELLO)]) + WS_HELLO.encode()  # FIN, text
    conn.disconnect()

    conn = server.connection()
    _upgrade(drive, conn)
    assert_not_sent(drive, conn, "GET", "/seq/1")
    conn.disconnect()


def test_websocket_upgrade_over_tls(
    tls_server: Server, tls_client_context: ssl.SSLContext
) -> None:
    """The same over TLS, where the new protocol's first bytes may wait decrypted in the
    TLS layer, which the socket's readiness does not show."""
    if not tls_server.spec.websocket:
        pytest.skip(f"{tls_server.name} serves no WebSocket here")
    with HTTPConnection(HOST, tls_server.port, ssl_context=tls_client_context) as conn:
        conn.timeout = CONN_TIMEOUT
        _upgrade(None, conn)
        frame = b""
        while len(frame) < 2 + len(WS_HELLO) and (more := conn.read_raw(64)):
            frame += more
        assert frame == b"\x81" + bytes([len(WS_HELLO)]) + WS_HELLO.encode()


# ================================================================= trailers


def test_trailers(server: Server, drive: Any) -> None:
    """Trailer fields after a chunked body (nginx ``add_trailer``)."""
    if not server.spec.trailers:
        pytest.skip(f"{server.name} sends no trailer fields over HTTP/1.1")
    with server.connection() as conn:
        path = f"/trailers/{UNTIL_CLOSE_SIZE}"
        drive(conn, "send_request", "GET", path)
        resp = drive(conn, "read_response")
        assert resp.status == 200 and is_chunked(resp)
        assert read_into(drive, conn, UNTIL_CLOSE_SIZE) == payload(UNTIL_CLOSE_SIZE)
        assert dict(resp.trailers) == {"X-Interop": f"end of {path}"}
        # The connection goes on after the trailer section.
        resp, body = fetch(drive, conn, "GET", "/seq/6")
        assert (resp.status, body) == (200, seq_body(6))


def test_eval_coroutine_driver(server: Server) -> None:
    """The co_ generators driven by `dugong.eval_coroutine` itself, with pipelining."""
    with server.connection() as conn:
        for i in (7, 8):
            dugong.eval_coroutine(conn.co_send_request("GET", f"/seq/{i}"), CONN_TIMEOUT)
        for i in (7, 8):
            resp = dugong.eval_coroutine(conn.co_read_response(), CONN_TIMEOUT)
            body = dugong.eval_coroutine(conn.co_readall(), CONN_TIMEOUT)
            assert (resp.status, body) == (200, seq_body(i))
            if announces_close(resp):
                break


def test_many_connections_one_loop(server: Server) -> None:
    """W5's pattern: connections in one `eval_coroutines` loop, one request in flight on
    each at a time. Every answer arrives whole, and a connection is made anew only after
    a response that announced its close (a lone request on an idle plain socket takes
    paths of its own: the idle check, the wait without a receive first)."""
    conns = [server.connection() for _ in range(8)]

    def worker(i: int, conn: HTTPConnection) -> Any:
        kept = None  # the previous request's transport, if its answer kept it open
        for k in range(20):
            yield from conn.co_send_request("GET", f"/seq/{i * 20 + k}")
            tr = conn._tr
            assert kept is None or tr is kept  # no new connection unannounced
            resp = yield from conn.co_read_response()
            body = yield from conn.co_readall()
            assert (resp.status, body) == (200, seq_body(i * 20 + k))
            kept = tr
            if announces_close(resp):
                conn.reset()  # (3.x's rule: nothing more is sent on it)
                kept = None
        assert (kept is not None) == server.spec.keep_alive

    try:
        dugong.eval_coroutines(*map(worker, range(8), conns), timeout=CONN_TIMEOUT)
    finally:
        for conn in conns:
            conn.disconnect()


def test_asyncio_driver(server: Server) -> None:
    """Each step an `AioFuture` of its own: the connection's registration with the
    loop is kept between requests, and gone once the connection closes (by the server,
    announced, or by dugong)."""

    async def main() -> None:
        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        before = set(selector.get_map())
        conn = server.connection()
        for i in range(6):
            await AioFuture(conn.co_send_request("GET", f"/seq/{i}"))
            resp = await AioFuture(conn.co_read_response())
            body = await AioFuture(conn.co_readall())
            assert (resp.status, body) == (200, seq_body(i))
            if announces_close(resp):
                assert set(selector.get_map()) == before  # closed: nothing kept
                conn.reset()  # the next request connects anew
        conn.disconnect()
        assert set(selector.get_map()) == before

    asyncio.run(asyncio.wait_for(main(), 30))


def test_early_answer_without_expect(server: Server, drive: Any) -> None:
    """The same refusals to a request without ``Expect``: dugong writes the whole body,
    or meets the close (``ConnectionClosed``), reads the answer, and goes on."""
    for reject in server.spec.rejects:
        length = max(reject.length, 4 << 20)  # more than the socket buffers hold
        data = payload(length)
        conn = server.connection()
        drive(conn, "send_request", reject.method, reject.path, None, BodyFollowing(length))
        with contextlib.suppress(ConnectionClosed):  # the request counts as sent
            for start in range(0, length, 256 * 1024):
                drive(conn, "write", data[start : start + 256 * 1024])
        resp = drive(conn, "read_response")
        assert resp.status == reject.status
        drive(conn, "readall")
        assert announces_close(resp) is reject.closes
        if reject.closes:
            conn.reset()
        pause_for_silent_close(server, reject, conn)
        resp, body = fetch(drive, conn, "GET", "/seq/9")
        assert (resp.status, body) == (200, seq_body(9))
        conn.disconnect()


# ================================================================= scripted reproductions

_R413 = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\nrejected"


def test_answer_read_after_a_failed_write_is_an_early_answer(
    drive: Any, scripted_server: Any
) -> None:
    """What hypercorn and gunicorn-gthread did, made deterministic: answer without reading
    the body, then close (here with a reset). ``write()`` raises `ConnectionClosed`, the
    answer can still be read, and the next request goes out on a new connection (it used
    to raise `dugong.StateError`)."""
    srv = scripted_server(
        [
            [Step.read_request(body=False), Step.send(_R413), Step.sleep(0.05), Step.reset()],
            [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
        ]
    )
    conn = HTTPConnection(HOST, srv.port)
    conn.timeout = CONN_TIMEOUT
    drive(conn, "send_request", "PUT", "/big", None, BodyFollowing(64 << 20))
    chunk = bytes(1 << 20)
    with pytest.raises(ConnectionClosed):
        write_times(drive, conn, chunk, 64)
    resp = drive(conn, "read_response")
    assert (resp.status, drive(conn, "readall")) == (413, b"rejected")
    resp, body = fetch(drive, conn, "GET", "/next")
    assert (resp.status, body) == (200, b"ok")
    srv.wait_done()
    assert srv.connections == 2
    assert [r.path for r in srv.requests[1]] == ["/next"]
    conn.disconnect()


# ================================================================= through a ConnectionPool


def _crawl(pool: ConnectionPool, urls: list[str], workers: int) -> list[bytes]:
    """Fetch *urls* from *workers* generators in one `eval_coroutines` loop."""
    todo = list(enumerate(urls))
    bodies: list[bytes] = [b""] * len(urls)

    def worker() -> Any:
        while todo:
            i, url = todo.pop(0)
            resp = yield from pool.co_request("GET", url)
            assert resp.status == 200, (url, resp)
            bodies[i] = resp.body

    dugong.eval_coroutines(*(worker() for _ in range(workers)), timeout=CONN_TIMEOUT)
    return bodies


@pytest.mark.parametrize("pipeline", [1, 16])
def test_pool(server: Server, traces: Callable[[], list[bytes]], pipeline: int) -> None:
    """200 GETs from 40 generators and a couple of blocking ones through one pool, every
    answer the right one. Without pipelining, never two requests in flight on a
    connection; with it, at most 16 (how many depends on how fast the server answers;
    test_pool.py pins pipelining on the wire), and none on gunicorn-sync, which
    closes after every answer."""
    _check_pool(server, traces, f"http://{HOST}:{server.port}", pipeline, None)


@pytest.mark.parametrize("pipeline", [1, 16])
def test_pool_tls(
    tls_server: Server,
    tls_client_context: ssl.SSLContext,
    traces: Callable[[], list[bytes]],
    pipeline: int,
) -> None:
    """test_pool over TLS: the pool's connections verify the server's certificate (the
    test CA's, given as ``ssl_context``), are reused, and pipeline as they do in plain
    HTTP; a pool that trusts only the system's CAs refuses the server."""
    base = f"https://{HOST}:{tls_server.port}"
    _check_pool(tls_server, traces, base, pipeline, tls_client_context)
    with (
        ConnectionPool(1, timeout=CONN_TIMEOUT) as pool,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        pool.request("GET", f"{base}/seq/0")


def _check_pool(
    server: Server,
    traces: Callable[[], list[bytes]],
    base: str,
    pipeline: int,
    context: ssl.SSLContext | None,
) -> None:
    """The crawl of test_pool and test_pool_tls, and what the traces show of it."""
    # (a connection per request to a server without keep-alive: fewer suffice)
    n = PIPELINE if server.spec.keep_alive else 50
    urls = [f"{base}/seq/{i}" for i in range(n)]
    with ConnectionPool(2, pipeline=pipeline, timeout=CONN_TIMEOUT, ssl_context=context) as pool:
        assert _crawl(pool, urls, 40) == [seq_body(i) for i in range(n)]
        for i in (5, 6):
            assert pool.request("GET", f"{base}/seq/{i}").body == seq_body(i)
    sent = traces()
    assert all(trace.startswith(b"GET /seq/") for trace in sent)  # the plain text, traced
    if server.spec.keep_alive:
        assert len(sent) <= 2 + 2  # two, and two more if a keep-alive timeout struck
    else:
        assert len(sent) == n + 2
    most = max(_most_in_flight(trace) for trace in sent)
    assert most == 1 if pipeline == 1 or not server.spec.keep_alive else 1 <= most <= 16


def _most_in_flight(trace: bytes) -> int:
    """The most requests in flight at once on a traced connection (sent, not answered)."""
    most = outstanding = 0
    for match in re.finditer(rb"GET /|HTTP/1\.1 200", trace):
        outstanding += 1 if match[0] == b"GET /" else -1
        most = max(most, outstanding)
    return most


def test_pool_keepalive_request_limit(server: Server, traces: Callable[[], list[bytes]]) -> None:
    """nginx's ``keepalive_requests 3``: what is pipelined behind the third answer goes
    out again on a new connection, without costing a retry."""
    _request_limit(server, traces, f"http://{HOST}:{server.port}", None)


def test_pool_tls_keepalive_request_limit(
    tls_server: Server, tls_client_context: ssl.SSLContext, traces: Callable[[], list[bytes]]
) -> None:
    """The same over TLS."""
    _request_limit(tls_server, traces, f"https://{HOST}:{tls_server.port}", tls_client_context)


def _request_limit(
    server: Server,
    traces: Callable[[], list[bytes]],
    base: str,
    context: ssl.SSLContext | None,
) -> None:
    if server.name != "nginx":
        pytest.skip("only nginx is configured with a request limit per connection")
    urls = [f"{base}/few/{i}" for i in range(60)]
    with ConnectionPool(2, pipeline=8, retries=0, ssl_context=context) as pool:
        assert _crawl(pool, urls, 20) == [seq_body(i) for i in range(60)]
    answers = [trace.count(b"HTTP/1.1 200") for trace in traces()]
    assert all(n <= 3 for n in answers)
    assert sum(answers) == 60
