"""Where the package-level tunables are read: the ``dugong`` module itself.

Users (and 3.x test suites) rebind ``dugong.MAX_HEADER_SIZE``,
``dugong.BUFFER_SIZE``, ``dugong.DNS_TEST_HOSTNAMES`` and the like. Every
module reads them as ``PACKAGE.NAME`` when they are used (once per connection
or response, never per byte), so that a rebinding takes effect.
"""

from __future__ import annotations

import sys
from types import ModuleType

#: the ``dugong`` package (already in `sys.modules` while its modules import)
PACKAGE: ModuleType = sys.modules[__package__ or "dugong"]
