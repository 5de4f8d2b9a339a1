"""Mode flags, with upstream Yokan's values.

``Mode`` is an ``enum.IntFlag`` (``Mode.WAIT | Mode.CONSUME``); the
module-level ``YOKAN_MODE_*`` ints are the same values for code written for
upstream. ``WAIT`` and ``NOTIFY`` are one bit; ``KEEP_LAST`` includes
``IGNORE_KEYS``.
"""

import enum

from mochi.yokan import _yokan

Mode = enum.IntFlag("Mode", [(name, value) for name, value in _yokan.modes])
Mode.__doc__ = "Yokan mode flags; combine with ``|``."

globals().update({f"YOKAN_MODE_{name}": value for name, value in _yokan.modes})

# Flag pairs the client rejects with YOKAN_ERR_MODE before sending anything.
INCOMPATIBLE_PAIRS = (
    (Mode.APPEND, Mode.NEW_ONLY),
    (Mode.NEW_ONLY, Mode.EXIST_ONLY),
    (Mode.SUFFIX, Mode.LUA_FILTER),
    (Mode.LIB_FILTER, Mode.SUFFIX),
    (Mode.LUA_FILTER, Mode.LIB_FILTER),
)

__all__ = ["Mode", "INCOMPATIBLE_PAIRS"] + [f"YOKAN_MODE_{n}" for n, _ in _yokan.modes]
