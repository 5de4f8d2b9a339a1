"""numpy helpers: store an array with its dtype and shape, load it back into a
new array or into one you already have, with no copy beyond the transfer.

    from mochi.yokan.arrays import put_array, get_array
    put_array(db, "field/T", temperature)
    t = get_array(db, "field/T")               # a new array
    get_array(db, "field/T", out=t)            # into an existing one

The data is stored under ``key`` as raw bytes (so ``db.get(key, out)`` also
works) and the dtype and shape under ``key + ".__meta__"`` as JSON; both are
written in one batched call.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, Tuple

import numpy as np
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_INVALID_ARGS, YOKAN_ERR_KEY_NOT_FOUND

if TYPE_CHECKING:
    import numpy.typing as npt
    from mochi.yokan._types import Data
    from mochi.yokan.client import Database

__all__ = ["put_array", "get_array", "array_info", "META_SUFFIX"]

META_SUFFIX: str = ".__meta__"


def _meta_key(key: Data) -> Data:
    return key + META_SUFFIX if isinstance(key, str) else bytes(key) + META_SUFFIX.encode()


def put_array(
    db: Database, key: Data, array: npt.ArrayLike, mode: int = 0, timeout_ms: float = 0.0
) -> None:
    """Stores ``array`` (made C-contiguous first if it is not) under ``key``
    and its dtype and shape under ``key + META_SUFFIX``, in one batch.
    Returns None. Raises ``TypeError`` for an array of Python objects, and
    :class:`mochi.yokan.client.Exception` for a failed put (e.g.
    ``YOKAN_ERR_MODE`` for an invalid ``mode``)."""
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise TypeError("arrays of Python objects cannot be stored")
    meta = json.dumps({"dtype": array.dtype.str, "shape": list(array.shape)})
    db.put_multi(
        [(_meta_key(key), meta), (key, array.reshape(-1).view(np.uint8))],
        mode=mode,
        timeout_ms=timeout_ms,
    )


def array_info(
    db: Database, key: Data, timeout_ms: float = 0.0
) -> Tuple[np.dtype[Any], Tuple[int, ...]]:
    """Returns ``(dtype, shape)`` of the array stored under ``key``. Raises
    ``KeyError`` if no array is stored there, and
    :class:`mochi.yokan.client.Exception` for any other failed call."""
    try:
        meta = json.loads(db.get(_meta_key(key), timeout_ms=timeout_ms))
    except ClientError as e:
        if e.code == YOKAN_ERR_KEY_NOT_FOUND:
            raise KeyError(key) from None
        raise
    return np.dtype(meta["dtype"]), tuple(meta["shape"])


def get_array(
    db: Database,
    key: Data,
    out: Optional[npt.NDArray[Any]] = None,
    mode: int = 0,
    timeout_ms: float = 0.0,
) -> npt.NDArray[Any]:
    """Loads the array stored under ``key``; into ``out`` when given (it must
    have the same dtype and shape, and be writable and C-contiguous).

    Returns the array: a new one, or ``out``. Raises ``KeyError`` if no array
    is stored under ``key``; :class:`mochi.yokan.client.Exception` with
    ``YOKAN_ERR_INVALID_ARGS`` if ``out`` has another dtype or shape,
    ``YOKAN_ERR_READONLY`` / ``YOKAN_ERR_NONCONTIG`` for an unusable ``out``,
    ``YOKAN_ERR_KEY_NOT_FOUND`` if the data was erased but not its metadata."""
    dtype, shape = array_info(db, key, timeout_ms)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.dtype != dtype or out.shape != shape:
        raise ClientError(
            f"Invalid argument: stored array is {dtype}{list(shape)}, "
            f"out is {out.dtype}{list(out.shape)}",
            YOKAN_ERR_INVALID_ARGS,
        )
    if out.nbytes:
        db.get(key, out, mode=mode, timeout_ms=timeout_ms)
    return out
