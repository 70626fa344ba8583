"""Sphinx configuration for the dugong documentation.

Built by ``make doc`` (``sphinx-build -W --keep-going -b html doc doc/html``).
The build runs offline, so there is no intersphinx.
"""

import os
import sys

# Document the source tree next to this directory, even without an install.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
# This manual's own extension (pages drawn from the code): doc/_ext/dugong_doc.py.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "_ext")))

import dugong

project = "dugong"
author = "the dugong developers"
copyright = "the dugong developers"
release = dugong.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "dugong_doc",
]

# Public classes say ``__module__ = "dugong"``, so autodoc's source analyser
# looks for them in dugong/__init__.py and cannot see their source order (nor
# ``#:`` comments on their attributes). api.rst therefore lists class members
# one by one, each ``co_`` method right after its blocking twin, and the
# attributes are described in "Attributes:" sections of the docstrings.
autodoc_member_order = "bysource"
default_role = "py:obj"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False  # "Returns:" reads better with the type inline

root_doc = "index"
# Names in every page resolve against the package, as in the API reference.
rst_prolog = ".. currentmodule:: dugong\n"
exclude_patterns = ["html", "_build", "_ext"]
templates_path: list[str] = []

html_theme = "alabaster"
html_static_path: list[str] = []
html_show_sourcelink = False

# Every cross-reference must resolve. The build runs offline, without an
# inventory of the standard library, so references to stdlib and builtin
# names (which autodoc also makes from type hints) are left as plain text.
nitpicky = True
_STDLIB_MODULES = (
    "asyncio|builtins|collections|email|enum|errno|http|io|os|select|selectors|socket|ssl|"
    "threading|time|types|typing|urllib|zlib|gzip"
)
_BUILTIN_NAMES = (
    "Any|BaseException|ConnectionError|Exception|InterruptedError|OSError|RuntimeError|"
    "TimeoutError|TypeError|UnicodeEncodeError|ValueError|"
    "None|bool|bytearray|bytes|dict|float|int|list|memoryview|object|str|tuple|type"
)
nitpick_ignore_regex = [
    (r"py:.*", rf"(?:{_STDLIB_MODULES})(?:\..+)?"),
    (r"py:.*", rf"(?:{_BUILTIN_NAMES})"),
    # The engine's receive buffer is of a private type.
    (r"py:class", r"(?:dugong\._buffer\.)?RecvBuffer"),
    # Type variables of generic signatures.
    (r"py:.*", r"(?:dugong\.(?:_\w+\.)?)?_?T"),
    # Private type aliases of signatures, explained where they are used.
    (r"py:.*", r"(?:dugong\.(?:_\w+\.)?)?(?:SocketWrapping|WritableBuffer|PeerCert)"),
]
