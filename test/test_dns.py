"""Name resolution: HostnameNotResolvable versus DNSUnavailable, DNS_TEST_HOSTNAMES,
resolution off the event loop, and IP literals (IPv6 in brackets in ``Host``).

The machine running the tests need not have a resolver: the tests replace
``socket.getaddrinfo`` by `FakeResolver`, which answers from a table (and
records who asked what, from which thread).
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from typing import Any

import pytest

import dugong
from dugong import (
    DNSUnavailable,
    HostnameNotResolvable,
    HTTPConnection,
    create_socket,
    is_temp_network_error,
)
from servers import Step, body_for

pytestmark = pytest.mark.timeout(60)

NONAME = socket.EAI_NONAME
NODATA = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
AGAIN = socket.EAI_AGAIN
FAIL = socket.EAI_FAIL

TEST_NAMES = [("probe-a.test", 80), ("probe-b.test", 443), ("probe-c.test", 53)]


class FakeResolver:
    """Stands in for `socket.getaddrinfo`: names map to an address or a gaierror code.

    An address is where the name leads (on 127.0.0.1 or ::1); unknown names are an
    error of the test. ``calls`` records ``(host, port, thread name)``.
    """

    def __init__(self, table: dict[str, str | int | list[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, Any, str]] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((host, port, threading.current_thread().name))
        if host not in self.table:
            raise AssertionError(f"unexpected lookup of {host!r}")
        answer = self.table[host]
        if isinstance(answer, int):
            raise socket.gaierror(answer, f"fake resolver error {answer} for {host}")
        addresses = answer if isinstance(answer, list) else [answer]
        out = []
        for address in addresses:
            out += self.real(address, port, *args, **kwargs)
        return out

    @property
    def hosts(self) -> list[str]:
        return [host for host, _, _ in self.calls]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``fake_dns(table)`` installs a `FakeResolver`, with TEST_NAMES as DNS_TEST_HOSTNAMES."""
    monkeypatch.setattr(dugong, "DNS_TEST_HOSTNAMES", TEST_NAMES)

    def install(table: dict[str, str | int | list[str]]) -> FakeResolver:
        resolver = FakeResolver(table)
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        return resolver

    return install


@pytest.fixture(params=["create_socket", "blocking", "select"])
def open_with(request: pytest.FixtureRequest) -> Any:
    """Open a connection to (host, port) through create_socket, connect() or co_connect()."""
    from conftest import Driver

    def opener(host: str, port: int) -> None:
        if request.param == "create_socket":
            create_socket((host, port)).close()
        else:
            conn = HTTPConnection(host, port)
            conn.timeout = 10
            Driver(request.param)(conn, "connect")
            conn.disconnect()

    opener.mode = request.param  # type: ignore[attr-defined]
    return opener


# ------------------------------------------------------------------ classification


def test_missing_name_while_dns_works(fake_dns, open_with):
    dns = fake_dns({"nowhere.test": NONAME, "probe-a.test": AGAIN, "probe-b.test": "127.0.0.1"})
    with pytest.raises(HostnameNotResolvable) as info:
        open_with("nowhere.test", 80)
    assert info.value.hostname == "nowhere.test"
    assert "nowhere.test" in str(info.value)
    assert isinstance(info.value.__cause__, socket.gaierror)
    assert info.value.__cause__.errno == NONAME
    # Test names are tried in order, until one resolves.
    assert dns.hosts == ["nowhere.test", "probe-a.test", "probe-b.test"]
    assert [port for _, port, _ in dns.calls[1:]] == [80, 443]
    assert not is_temp_network_error(info.value)


def test_missing_name_no_data(fake_dns, open_with):
    dns = fake_dns({"nodata.test": NODATA, "probe-a.test": "::1"})
    with pytest.raises(HostnameNotResolvable):
        open_with("nodata.test", 80)
    assert dns.hosts == ["nodata.test", "probe-a.test"]


def test_missing_name_and_no_test_name_resolves(fake_dns, open_with):
    dns = fake_dns(
        {
            "nowhere.test": NONAME,
            "probe-a.test": NONAME,
            "probe-b.test": AGAIN,
            "probe-c.test": FAIL,
        }
    )
    with pytest.raises(DNSUnavailable) as info:
        open_with("nowhere.test", 80)
    assert info.value.hostname == "nowhere.test"
    assert dns.hosts == ["nowhere.test", "probe-a.test", "probe-b.test", "probe-c.test"]
    assert is_temp_network_error(info.value)


def test_try_again_is_dns_unavailable(fake_dns, open_with):
    dns = fake_dns({"busy.test": AGAIN})
    with pytest.raises(DNSUnavailable) as info:
        open_with("busy.test", 80)
    assert info.value.__cause__.errno == AGAIN  # type: ignore[union-attr]
    assert dns.hosts == ["busy.test"]  # no need to ask the test names


def test_other_resolver_errors_propagate(fake_dns, open_with):
    dns = fake_dns({"broken.test": FAIL})
    with pytest.raises(socket.gaierror) as info:
        open_with("broken.test", 80)
    assert info.value.errno == FAIL
    assert not isinstance(info.value, dugong.DugongError)
    assert dns.hosts == ["broken.test"]


def test_no_test_names_means_unavailable(fake_dns, open_with, monkeypatch):
    dns = fake_dns({"nowhere.test": NONAME})
    monkeypatch.setattr(dugong, "DNS_TEST_HOSTNAMES", ())
    with pytest.raises(DNSUnavailable):
        open_with("nowhere.test", 80)
    assert dns.hosts == ["nowhere.test"]


def test_rebinding_the_package_attribute_takes_effect(monkeypatch, open_with):
    # Only the package attribute is changed; the module the default lives in is not.
    dns = FakeResolver({"nowhere.test": NONAME, "mine.test": "127.0.0.1"})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    monkeypatch.setattr(dugong, "DNS_TEST_HOSTNAMES", [("mine.test", 8080)])
    with pytest.raises(HostnameNotResolvable):
        open_with("nowhere.test", 80)
    assert dns.calls[1][:2] == ("mine.test", 8080)
    monkeypatch.setattr(dugong, "DNS_TEST_HOSTNAMES", (("gone.test", 1),))
    dns.table["gone.test"] = NONAME
    with pytest.raises(DNSUnavailable):
        open_with("nowhere.test", 80)
    assert dns.hosts[-1] == "gone.test"


def test_default_test_names():
    names = dugong.DNS_TEST_HOSTNAMES
    assert len(names) >= 2
    assert all(isinstance(host, str) and isinstance(port, int) for host, port in names)


# ------------------------------------------------------------------ success, off the loop


def test_name_resolves(fake_dns, open_with, scripted_server):
    srv = scripted_server([Step.close()] * 1)
    dns = fake_dns({"server.test": "127.0.0.1"})
    open_with("server.test", srv.port)
    srv.wait_done()
    assert dns.calls[0][:2] == ("server.test", srv.port)
    thread = dns.calls[0][2]
    if open_with.mode == "create_socket":
        assert thread == threading.main_thread().name
    else:  # HTTPConnection resolves in a helper thread, also for its blocking methods
        assert thread != threading.main_thread().name


def test_resolution_yields_a_pipe(fake_dns, scripted_server, monkeypatch):
    srv = scripted_server(
        [Step.read_request(), Step.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]
    )
    release = threading.Event()
    dns = fake_dns({"slow.test": "127.0.0.1"})

    def slow(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(10)
        return dns(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    conn = HTTPConnection("slow.test", srv.port)
    gen = conn.co_send_request("GET", "/")
    wait = next(gen)  # the resolver thread is blocked: the generator must wait
    assert wait.mask == dugong.POLLIN
    assert stat.S_ISFIFO(os.fstat(wait.fd).st_mode)  # the helper thread signals through a pipe
    assert not wait.poll(0.05)  # not ready yet
    release.set()
    assert wait.poll(5)
    while True:  # the rest of the request: connect and send
        try:
            pn = gen.send(None)
        except StopIteration:
            break
        assert pn.poll(5)
    conn.read_response()
    assert conn.readall() == b"ok"
    conn.disconnect()


def pipes() -> set[str]:
    """This process's fds that are pipes."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISFIFO(os.stat(f"/proc/self/fd/{fd}").st_mode):
                found.add(fd)
        except OSError:
            pass
    return found


def test_abandoned_resolution_leaks_nothing(fake_dns, monkeypatch):
    release = threading.Event()
    dns = fake_dns({"slow.test": "127.0.0.1"})
    done = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        try:
            assert release.wait(10)
            return dns(*args, **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    before = pipes()
    conn = HTTPConnection("slow.test", 80)
    gen = conn.co_connect()
    wait = next(gen)
    assert str(wait.fd) in pipes() - before
    gen.close()  # e.g. a cancelled task: the generator closes its end at once
    assert str(wait.fd) not in pipes()
    release.set()  # the thread finishes, finds nobody listening, and closes its end
    assert done.wait(5)
    for _ in range(100):
        if pipes() <= before:
            break
        threading.Event().wait(0.01)
    assert pipes() <= before


def test_resolver_exception_reaches_caller(fake_dns, drive, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise UnicodeError("label too long")

    fake_dns({})
    monkeypatch.setattr(socket, "getaddrinfo", broken)
    conn = HTTPConnection("x" * 70 + ".test", 80)
    with pytest.raises(UnicodeError, match="label too long"):
        drive(conn, "send_request", "GET", "/")


# ------------------------------------------------------------------ literals


def test_ip_literals_need_no_resolver(monkeypatch, drive, make_http_server):
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("getaddrinfo called for an IP literal")

    v4 = make_http_server()
    v6 = make_http_server(host="::1")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for host, server in (("127.0.0.1", v4), ("::1", v6), ("[::1]", v6)):
        with HTTPConnection(host, server.port) as conn:
            drive(conn, "send_request", "GET", "/size/3")
            assert drive(conn, "read_response").status == 200
            assert drive(conn, "readall") == body_for(3)
    host_fields = [dict(r.headers)["Host"] for r in v4.requests + v6.requests]
    assert host_fields == [f"127.0.0.1:{v4.port}", f"[::1]:{v6.port}", f"[::1]:{v6.port}"]


def test_ipv6_default_port_host_field(drive, scripted_server):
    # Through a proxy, so that port 80 itself is not needed.
    answer = b"HTTP/1.1 204 No Content\r\n\r\n"
    proxy = scripted_server([Step.read_request(), Step.send(answer)])
    with HTTPConnection("::1", proxy=proxy.address) as conn:
        drive(conn, "send_request", "GET", "/")
        assert drive(conn, "read_response").status == 204
    (request,) = proxy.requests[0]
    assert request.header_all("Host") == ["[::1]"]


def test_ipv6_tls(drive, make_http_server, tls_server_context, tls_client_context):
    server = make_http_server(ssl_context=tls_server_context, host="::1")
    with HTTPConnection("::1", server.port, ssl_context=tls_client_context) as conn:
        drive(conn, "send_request", "GET", "/size/100")
        drive(conn, "read_response")
        assert len(drive(conn, "readall")) == 100
        assert ("IP Address", "0:0:0:0:0:0:0:1") in conn.get_ssl_peercert()["subjectAltName"]
    assert dict(server.requests[0].headers)["Host"] == f"[::1]:{server.port}"


def test_create_socket_literals(make_http_server):
    for host in ("127.0.0.1", "::1"):
        server = make_http_server(host=host)
        with create_socket((host, server.port)) as sock:
            assert sock.getpeername()[1] == server.port
            assert sock.gettimeout() is None  # a blocking socket


def test_create_socket_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        create_socket(("127.0.0.1", port))
