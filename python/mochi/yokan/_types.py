"""Type aliases shared by the client modules (for annotations)."""

from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    # bytes, bytearray, memoryview, array.array, numpy arrays, mmap...: every
    # object with the buffer protocol (PEP 688), as Python 3.12 spells it.
    import numpy
    import typing_extensions

    # numpy declares ndarray.__buffer__ only for Python 3.12+: name it.
    Buffer = Union[typing_extensions.Buffer, numpy.ndarray[Any, Any]]
else:
    Buffer = Any  # run time: the alias only serves annotations

#: A key, value, prefix or document: ``str`` (stored as UTF-8) or a buffer.
Data = Union[str, Buffer]

__all__ = ["Buffer", "Data"]
