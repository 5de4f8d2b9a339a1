"""The storage backends compiled into this build.

``available_backends`` is a list (a constant, as upstream has it) of every
backend name a provider of this build can open, from the native registry
that CMake fills from the one list of enabled backends. Unlike upstream it
includes ``null`` (a backend that accepts every write and stores nothing,
useful to measure the transport): a name a provider accepts is listed.
"""

from typing import List

from mochi.yokan import _server

available_backends: List[str] = list(_server.available_backends())

__all__ = ["available_backends"]
