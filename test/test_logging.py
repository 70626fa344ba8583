"""Connection events on the ``dugong`` logger, and an import that leaves logging alone."""

from __future__ import annotations

import logging
import subprocess
import sys

import dugong
from servers import Step

OK_3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"


def test_connection_events_are_logged_at_debug_level(caplog, http_server):
    caplog.set_level(logging.DEBUG, logger="dugong")
    conn = dugong.HTTPConnection("127.0.0.1", http_server.port)
    conn.send_request("GET", "/size/10")
    conn.read_response()
    conn.readall()
    conn.disconnect()
    messages = [r.getMessage() for r in caplog.records if r.name == "dugong"]
    assert messages == [
        f"connected to 127.0.0.1 port {http_server.port}",
        f"disconnected from 127.0.0.1 port {http_server.port}",
    ]
    assert {r.levelno for r in caplog.records if r.name == "dugong"} == {logging.DEBUG}


def test_a_server_closing_is_logged(caplog, scripted_server):
    caplog.set_level(logging.DEBUG, logger="dugong")
    srv = scripted_server(
        [
            [Step.read_request(), Step.send(OK_3), Step.close()],
            [Step.read_request(), Step.send(OK_3)],
        ]
    )
    conn = dugong.HTTPConnection("127.0.0.1", srv.port)
    conn.send_request("GET", "/")
    conn.read_response()
    conn.readall()
    srv.wait_done(1)
    conn.send_request("GET", "/again")  # the idle connection was closed: a new one
    conn.read_response()
    assert conn.readall() == b"abc"
    messages = [r.getMessage() for r in caplog.records if r.name == "dugong"]
    assert (
        f"127.0.0.1 port {srv.port}: idle connection dropped by the server, "
        "reconnecting" in messages
    )
    conn.disconnect()


def test_nothing_is_logged_per_request(caplog, http_server):
    conn = dugong.HTTPConnection("127.0.0.1", http_server.port)
    conn.connect()
    caplog.set_level(logging.DEBUG, logger="dugong")
    for _ in range(20):
        conn.send_request("GET", "/size/10")
        conn.read_response()
        conn.readall()
    assert not [r for r in caplog.records if r.name == "dugong"]
    conn.disconnect()


def test_import_dugong_does_not_import_logging():
    code = "import sys, dugong; print('logging' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False"]
