"""A dict-like view of a database (or of the keys under a prefix).

    from mochi.yokan.mapping import KeyValueStore
    store = KeyValueStore(db, prefix="run42/", codec="json")
    store["params"] = {"dt": 0.1}
    store["params"]["dt"]       # -> 0.1
    list(store)                 # keys without the prefix, in order (sorted backends)

Codecs turn Python values into stored bytes: ``"bytes"`` (values must be
bytes-like; reads give ``bytes``), ``"str"``, ``"json"``, ``"pickle"``, or any
object with ``encode(value) -> bytes-like`` and ``decode(bytes) -> value``.
Iteration and ``len()`` use key listing, so they need a sorted backend.
Only unpickle data you trust: ``"pickle"`` runs code from the database.
"""

from __future__ import annotations

import collections.abc
import json
import pickle
from typing import Any, Callable, Dict, Iterator, Protocol, Tuple, Union

from mochi.yokan._types import Buffer
from mochi.yokan.client import Database
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_KEY_NOT_FOUND
from mochi.yokan.mode import Mode

__all__ = ["KeyValueStore", "CODECS", "Codec"]


class Codec(Protocol):
    """What ``codec=`` takes: ``encode(value) -> bytes-like`` and
    ``decode(bytes) -> value``."""

    def encode(self, value: Any, /) -> Buffer:
        """Returns the bytes-like form of ``value`` to store. Raises what the
        codec raises for a value it cannot encode (e.g. ``TypeError``)."""
        ...

    def decode(self, data: bytes, /) -> Any:
        """Returns the value that ``data`` (stored bytes) encodes. Raises what
        the codec raises for data it cannot decode (e.g. ``ValueError``)."""
        ...


class _Codec:
    def __init__(self, encode: Callable[[Any], Buffer], decode: Callable[[bytes], Any]) -> None:
        self.encode = encode
        self.decode = decode


CODECS: Dict[str, Codec] = {
    "bytes": _Codec(lambda v: v, bytes),
    "str": _Codec(lambda v: v.encode(), lambda b: b.decode()),
    "json": _Codec(lambda v: json.dumps(v).encode(), lambda b: json.loads(b)),
    "pickle": _Codec(lambda v: pickle.dumps(v, protocol=5), pickle.loads),
}


class KeyValueStore(collections.abc.MutableMapping):  # type: ignore[type-arg]
    """A ``MutableMapping`` over the keys of ``db`` that start with ``prefix``
    (``str`` keys, stored as UTF-8 with the prefix in front).

    Reading a missing key raises ``KeyError``; any other failure raises
    :class:`mochi.yokan.client.Exception` (e.g. ``YOKAN_ERR_OP_UNSUPPORTED``
    when iterating over an unsorted backend)."""

    def __init__(
        self,
        db: Database,
        prefix: str = "",
        codec: Union[str, Codec] = "bytes",
        page_size: int = 1024,
    ) -> None:
        self._db = db
        self._prefix = prefix
        self._codec: Codec = CODECS[codec] if isinstance(codec, str) else codec
        self._page = page_size

    def _key(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"keys are str, not {type(key).__name__}")
        if not key and not self._prefix:
            raise KeyError(key)  # the empty key cannot be stored
        return self._prefix + key

    def __getitem__(self, key: str) -> Any:
        try:
            return self._codec.decode(self._db.get(self._key(key)))
        except ClientError as e:
            if e.code == YOKAN_ERR_KEY_NOT_FOUND:
                raise KeyError(key) from None
            raise

    def __setitem__(self, key: str, value: Any) -> None:
        self._db.put(self._key(key), self._codec.encode(value))

    def __delitem__(self, key: str) -> None:
        # CONSUME reads and erases in one atomic step, so a missing key is told apart.
        try:
            self._db.get(self._key(key), mode=Mode.CONSUME)
        except ClientError as e:
            if e.code == YOKAN_ERR_KEY_NOT_FOUND:
                raise KeyError(key) from None
            raise

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, str) and bool(key or self._prefix) and self._db.exists(self._key(key))
        )

    def __iter__(self) -> Iterator[str]:
        for key, _ in self._db.scan(
            from_key="",
            filter=self._prefix,
            mode=Mode.NO_PREFIX,
            batch_size=self._page,
            ignore_values=True,
        ):
            yield key.decode()

    def items(self) -> _ItemsView:
        """Returns a view of the (key, value) pairs, fetched a page at a time
        when iterated. Iterating raises as iterating the store does."""
        return _ItemsView(self)

    def __len__(self) -> int:
        if not self._prefix:
            return self._db.count()
        return sum(1 for _ in self)

    def clear(self) -> None:
        """Erases every key under the prefix in one call; returns None. Raises
        :class:`mochi.yokan.client.Exception` if the call fails."""
        if self._prefix:
            self._db.erase_range(self._prefix)
        else:
            self._db.erase_range("")

    def __repr__(self) -> str:
        return f"KeyValueStore(prefix={self._prefix!r})"


class _ItemsView(collections.abc.ItemsView):  # type: ignore[type-arg]
    _mapping: KeyValueStore

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        store = self._mapping
        for key, value in store._db.scan(
            from_key="", filter=store._prefix, mode=Mode.NO_PREFIX, batch_size=store._page
        ):
            # value is bytes here: the scan does not ignore values
            yield key.decode(), store._codec.decode(value)  # type: ignore[arg-type]
