"""The storage backends compiled into this build.

The list comes from the native registry, which CMake fills from the one list
of enabled backends; ``null`` is compiled in but not listed (it stores
nothing), as upstream does.
"""

from mochi.yokan import _yokan

available_backends = [b for b in _yokan.available_backends() if b != "null"]

__all__ = ["available_backends"]
