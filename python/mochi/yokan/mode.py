"""Mode flags, with upstream Yokan's values.

``Mode`` is an ``enum.IntFlag`` (``Mode.WAIT | Mode.CONSUME``); the
module-level ``YOKAN_MODE_*`` ints are the same values for code written for
upstream. ``WAIT`` and ``NOTIFY`` are one bit; ``KEEP_LAST`` includes
``IGNORE_KEYS``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Tuple

from mochi.yokan import _mode

if TYPE_CHECKING:
    # What type checkers see; at run time the members come from the native
    # table (tests/python/test_typing.py checks that the two agree).

    class Mode(enum.IntFlag):
        """Yokan mode flags; combine with ``|``."""

        DEFAULT = 0
        INCLUSIVE = 1
        APPEND = 2
        CONSUME = 4
        WAIT = 8
        NOTIFY = 8
        NEW_ONLY = 16
        EXIST_ONLY = 32
        NO_PREFIX = 64
        IGNORE_KEYS = 128
        KEEP_LAST = 384
        SUFFIX = 512
        LUA_FILTER = 1024
        IGNORE_DOCS = 2048
        FILTER_VALUE = 4096
        LIB_FILTER = 8192
        NO_RDMA = 16384

else:
    Mode = enum.IntFlag("Mode", [(name, value) for name, value in _mode.modes])
    Mode.__doc__ = "Yokan mode flags; combine with ``|``."

YOKAN_MODE_DEFAULT: int
YOKAN_MODE_INCLUSIVE: int
YOKAN_MODE_APPEND: int
YOKAN_MODE_CONSUME: int
YOKAN_MODE_WAIT: int
YOKAN_MODE_NOTIFY: int
YOKAN_MODE_NEW_ONLY: int
YOKAN_MODE_EXIST_ONLY: int
YOKAN_MODE_NO_PREFIX: int
YOKAN_MODE_IGNORE_KEYS: int
YOKAN_MODE_KEEP_LAST: int
YOKAN_MODE_SUFFIX: int
YOKAN_MODE_LUA_FILTER: int
YOKAN_MODE_IGNORE_DOCS: int
YOKAN_MODE_FILTER_VALUE: int
YOKAN_MODE_LIB_FILTER: int
YOKAN_MODE_NO_RDMA: int
globals().update({f"YOKAN_MODE_{name}": value for name, value in _mode.modes})

# Flag pairs the client rejects with YOKAN_ERR_MODE before sending anything.
INCOMPATIBLE_PAIRS: Tuple[Tuple[Mode, Mode], ...] = (
    (Mode.APPEND, Mode.NEW_ONLY),
    (Mode.NEW_ONLY, Mode.EXIST_ONLY),
    (Mode.SUFFIX, Mode.LUA_FILTER),
    (Mode.LIB_FILTER, Mode.SUFFIX),
    (Mode.LUA_FILTER, Mode.LIB_FILTER),
)

__all__ = ["Mode", "INCOMPATIBLE_PAIRS"] + [f"YOKAN_MODE_{n}" for n, _ in _mode.modes]
