"""Type stub of mochi.yokan._mode (bindings/mode_module.cpp). Private: the
public API is mochi.yokan.mode."""

from typing import List, Tuple

modes: List[Tuple[str, int]]

def mode_is_compatible(mode: int, /) -> bool: ...
