"""``python -m dugong`` without arguments: the demo (the client: test_cli.py)."""

from __future__ import annotations

import subprocess
import sys

from dugong import __main__ as cli
from dugong import _demo


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
    proc = subprocess.run(
        [sys.executable, "-m", "dugong"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Demo complete." in proc.stdout
    assert proc.stderr == ""


def test_only_no_argument_at_all_runs_the_demo(capsys):
    # Any argument means the command-line client (test_cli.py): here, bad usage.
    assert cli.main(["-v"]) == 2
    captured = capsys.readouterr()
    assert "Demo" not in captured.out
    assert "the following arguments are required: URL" in captured.err


def test_help(capsys):
    assert cli.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m dugong [options] URL...")
