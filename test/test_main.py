"""``python -m dugong``: the URL fetcher and the demo."""

from __future__ import annotations

import socket
import subprocess
import sys

from dugong import __main__ as cli
from dugong import _demo
from servers import body_for


def test_demo_in_process():
    out: list[str] = []
    assert _demo.main(out.append) == 0
    text = "\n".join(out)
    assert "sent 1000 requests, 1000 responses arrived complete and in order" in text
    assert "1048576 bytes, md5" in text
    assert "interim answer: 100 Continue" in text
    assert "final answer instead of 100: 403 Forbidden" in text
    assert "the next request still works: 200 b'dugon'" in text
    assert text.rstrip().endswith("Demo complete.")


def test_demo_as_a_program():
    proc = subprocess.run([sys.executable, "-m", "dugong"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert "Demo complete." in proc.stdout
    assert proc.stderr == ""


def test_fetch_urls(http_server, capsysbinary):
    base = f"http://127.0.0.1:{http_server.port}"
    assert cli.main([f"{base}/size/10", f"{base}/chunked/3000?chunk=999", f"{base}/size/0"]) == 0
    assert capsysbinary.readouterr().out == body_for(10) + body_for(3000)


def test_fetch_two_servers(make_http_server, capsysbinary):
    a, b = make_http_server(), make_http_server()
    urls = [f"http://127.0.0.1:{a.port}/size/5", f"http://127.0.0.1:{b.port}/size/6"]
    assert cli.main(urls) == 0
    assert capsysbinary.readouterr().out == body_for(5) + body_for(6)


def test_fetch_errors(http_server, capsys):
    base = f"http://127.0.0.1:{http_server.port}"
    assert cli.main([f"{base}/status/404"]) == 1
    assert "404" in capsys.readouterr().err
    assert cli.main(["ftp://example.org/"]) == 2
    assert "not an http" in capsys.readouterr().err
    assert cli.main(["http://127.0.0.1:99999/"]) == 2
    assert "invalid port" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main([f"http://127.0.0.1:{port}/"]) == 1
    assert "ConnectionRefusedError" in capsys.readouterr().err


def test_help(capsys):
    assert cli.main(["--help"]) == 0
    assert "usage" in capsys.readouterr().out
