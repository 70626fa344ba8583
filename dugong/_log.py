"""dugong's debug messages, without importing `logging` for programs that never do."""

from __future__ import annotations

import sys

LOGGER_NAME = "dugong"


def debug(msg: str, *args: object) -> None:
    """Log *msg* % *args* at DEBUG level on the ``dugong`` logger.

    A program that has not imported `logging` cannot have configured a handler
    that shows DEBUG messages, so nothing is lost by skipping the message then;
    ``import dugong`` stays free of the logging package.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(LOGGER_NAME).debug(msg, *args)
