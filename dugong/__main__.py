"""``python -m dugong [options] URL...``: the command-line client (see ``--help``).

Without any argument it runs the demo instead: a local server and a tour of the API.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m dugong`` with *argv* (default: ``sys.argv[1:]``); the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        from ._demo import main as demo

        return demo()
    from ._cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
