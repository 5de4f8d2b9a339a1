"""The size sentinels of the native layer and the Python conventions for them."""

from mochi.yokan import _yokan

KEY_NOT_FOUND = _yokan.KEY_NOT_FOUND
SIZE_TOO_SMALL = _yokan.SIZE_TOO_SMALL


def size_or_none(size):
    """Multi-call convention: None if absent, -1 if the buffer was too small."""
    if size == KEY_NOT_FOUND:
        return None
    if size == SIZE_TOO_SMALL:
        return -1
    return size
