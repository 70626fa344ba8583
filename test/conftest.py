"""Fixtures shared by dugong's tests.

Servers (see ``servers.py``):

* ``scripted_server(script, *, repeat=False, ssl_context=None, host="127.0.0.1")``
  starts a `servers.ScriptedServer`;
* ``http_server``: a started `servers.HTTPTestServer`; ``https_server`` the same
  over TLS; ``make_http_server(*, ssl_context=None, host="127.0.0.1")`` starts more.

Every server made through these fixtures is stopped when the test ends, and
then the problems it saw are raised (``check()``), so they fail the test.

``make_proxy(routes)`` starts a `proxy_server.Proxy` (plain requests in absolute
form, ``CONNECT`` tunnels).

Coverage: a test marked ``untraced`` runs with coverage's tracer paused, for
property-based tests whose many examples reach no line or branch that the other
tests do not (under coverage they take twice as long).

Drivers: ``drive(conn, name, *args, **kwargs)`` runs ``conn.name(...)``
("blocking") or drives ``conn.co_name(...)`` with a ``selectors`` loop
("select"); every test using it runs once in each mode.

TLS: a trustme CA made once per session, a certificate for localhost,
127.0.0.1 and ::1, and fresh ``ssl.SSLContext`` objects for each test:
``tls_server_context`` and ``tls_client_context`` (which trusts the CA, and only it).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import hypothesis
import pytest
import trustme

from proxy_server import Proxy
from servers import (
    HOST,
    HTTPTestServer,
    ScriptedServer,
    Step,
    select_loop,
)

#: How long a co_ generator may take in the "select" driver before the test fails.
DRIVE_TIMEOUT = 30.0

# hypothesis profiles: "dev" (the default) and "ci", a fifth of the examples with a
# fixed seed; chosen by HYPOTHESIS_PROFILE, else "ci" when CI is set in the
# environment; ``pytest --hypothesis-profile=NAME`` overrides both. Tests scale
# their example counts by the profile's max_examples (see test_fuzz.py).
hypothesis.settings.register_profile("dev", deadline=None)
hypothesis.settings.register_profile(
    "ci", max_examples=20, deadline=None, derandomize=True, database=None
)
hypothesis.settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Pause coverage's tracer while a test marked ``untraced`` runs."""
    cov = None
    if item.get_closest_marker("untraced") is not None:
        try:
            import coverage
        except ImportError:  # pragma: no cover - coverage is a test dependency
            pass
        else:
            cov = coverage.Coverage.current()
    if cov is None:
        return (yield)
    cov.stop()
    try:
        return (yield)
    finally:
        with warnings.catch_warnings():
            # On restarting, coverage notes that the package was imported before: it
            # was, and measured since the first start.
            warnings.filterwarnings("ignore", "Already imported a file that will be measured")
            cov.start()


def _stop_and_check(servers: list[Any]) -> None:
    """Stop every server, then raise the errors of all of them at once."""
    failures = []
    for server in servers:
        server.stop()
    for server in servers:
        try:
            server.check()
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


# --------------------------------------------------------------------- servers


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    """Factory: ``scripted_server(script_or_scripts, *, repeat=False, ssl_context=None,
    host=HOST) -> ScriptedServer`` (already started)."""
    started: list[ScriptedServer] = []

    def factory(
        scripts: Sequence[Step] | Sequence[Sequence[Step]],
        *,
        repeat: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        host: str = HOST,
    ) -> ScriptedServer:
        server = ScriptedServer(scripts, repeat=repeat, ssl_context=ssl_context, host=host)
        started.append(server)
        return server.start()

    yield factory
    _stop_and_check(started)


@pytest.fixture
def make_http_server() -> Iterator[Callable[..., HTTPTestServer]]:
    """Factory: ``make_http_server(*, ssl_context=None, host=HOST) -> HTTPTestServer``
    (already started)."""
    started: list[HTTPTestServer] = []

    def factory(*, ssl_context: ssl.SSLContext | None = None, host: str = HOST) -> HTTPTestServer:
        server = HTTPTestServer(ssl_context=ssl_context, host=host)
        started.append(server)
        return server.start()

    yield factory
    _stop_and_check(started)


@pytest.fixture
def http_server(make_http_server: Callable[..., HTTPTestServer]) -> HTTPTestServer:
    """A plain-HTTP `servers.HTTPTestServer` on 127.0.0.1."""
    return make_http_server()


@pytest.fixture
def https_server(
    make_http_server: Callable[..., HTTPTestServer], tls_server_context: ssl.SSLContext
) -> HTTPTestServer:
    """A `servers.HTTPTestServer` speaking TLS with the ``tls_server_context`` certificate."""
    return make_http_server(ssl_context=tls_server_context)


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., Proxy]]:
    """Factory: ``make_proxy(routes=None, **options) -> proxy_server.Proxy`` (started);
    *routes* maps the authority a client names (``"host:port"``) to the address to
    relay to."""
    proxies: list[Proxy] = []

    def factory(routes: dict[str, tuple[str, int]] | None = None, **kwargs: Any) -> Proxy:
        proxies.append(Proxy(routes or {}, **kwargs))
        return proxies[-1]

    yield factory
    _stop_and_check(proxies)


# --------------------------------------------------------------------- drivers


class Driver:
    """Runs one operation of an ``HTTPConnection`` in the mode of the ``drive`` fixture.

    ``drive(conn, "read_response")`` is ``conn.read_response()`` in "blocking" mode,
    ``conn.co_read_response()`` driven by `servers.select_loop` in "select" mode, and
    by an `AioFuture` on an asyncio loop of the driver's own in "asyncio" mode (one
    loop for all the calls of a test, so that registrations it keeps between futures
    are exercised); either way the result is returned and exceptions propagate.
    """

    MODES = ("blocking", "select", "asyncio")

    def __init__(self, mode: str, timeout: float = DRIVE_TIMEOUT) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown drive mode {mode!r}")
        self.mode = mode
        self.timeout = timeout
        # (made now, before a test counts its open files: the loop has some of its own)
        self._loop = asyncio.new_event_loop() if mode == "asyncio" else None

    def __repr__(self) -> str:
        return f"Driver({self.mode!r})"

    def __call__(self, conn: Any, name: str, /, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("co_"):
            raise ValueError(f"give the blocking name, not {name!r}")
        if self.mode == "blocking":
            return getattr(conn, name)(*args, **kwargs)
        return self.run(getattr(conn, "co_" + name)(*args, **kwargs))

    def run(self, gen: Any) -> Any:
        """Drive any co_ generator: with the selector loop, or in "asyncio" mode with
        an AioFuture."""
        import dugong

        if self.mode != "asyncio":
            return select_loop(gen, timeout=self.timeout, wait_type=dugong.PollNeeded)
        loop = self._loop
        assert loop is not None, "the driver is closed"

        async def limited() -> Any:
            try:
                return await asyncio.wait_for(dugong.AioFuture(gen, loop), self.timeout)
            except TimeoutError:
                pytest.fail(f"the generator did not finish in {self.timeout} s")

        return loop.run_until_complete(limited())

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None


@pytest.fixture(params=Driver.MODES)
def drive(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """``drive(conn, name, *args, **kwargs)``: see `Driver`; ``drive.mode`` says which."""
    driver = Driver(request.param)
    yield driver
    driver.close()


@pytest.fixture
def unused_port() -> int:
    """A port of 127.0.0.1 on which nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------- TLS


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A certificate authority made for this test session."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate for localhost, 127.0.0.1 and ::1, signed by ``tls_ca``."""
    return tls_ca.issue_cert("localhost", "127.0.0.1", "::1")


@pytest.fixture
def tls_server_context(tls_server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A fresh server-side context presenting ``tls_server_cert``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_server_cert.configure_cert(context)
    return context


@pytest.fixture
def tls_client_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A fresh client-side context that trusts ``tls_ca`` (and checks host names).

    It is ``ssl.create_default_context()`` without the system's CA certificates, whose
    loading takes some 20 ms (for each of hundreds of tests) and which no test needs.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls_ca.configure_trust(context)
    return context
