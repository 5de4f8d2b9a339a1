"""The client side: :class:`Client` and :class:`Database`.

Keys, values and prefixes are ``str`` (stored as UTF-8) or any object with the
buffer protocol (bytes, bytearray, memoryview slices, numpy arrays), taken
without copying. Output buffers must be writable and C-contiguous; they are
written in place. Every call that talks to a provider releases the GIL.
"""

from __future__ import annotations

import re
from itertools import chain, repeat
from typing import (
    Any,
    Callable,
    Iterable,
    Iterator,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)

from mochi.yokan import _client, _mode
from mochi.yokan._types import Buffer, Data
from mochi.yokan.collection import _UINT64_MAX, Collection
from mochi.yokan.exception import (
    YOKAN_ERR_BUFFER_SIZE,
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_KEY_NOT_FOUND,
    YOKAN_ERR_MIGRATED,
)
from mochi.yokan.exception import ClientException as Exception  # noqa: A004
from mochi.yokan.server import _engine_or_mid, _native_engine

__all__ = ["Client", "Database", "Exception", "migration_target"]

# The tail of a YOKAN_ERR_MIGRATED message (src/server/migrate.cpp).
_MIGRATED_TO = re.compile(r"migrated to (\S+) provider (\d+)$")


def migration_target(error: BaseException) -> Optional[Tuple[str, int]]:
    """Returns ``(address, provider_id)`` of where a database went, from the
    ``YOKAN_ERR_MIGRATED`` error that a call on its old provider raised; None
    for any other error. Never raises."""
    if getattr(error, "code", None) != YOKAN_ERR_MIGRATED:
        return None
    match = _MIGRATED_TO.search(str(error))
    return (match.group(1), int(match.group(2))) if match else None


#: ``callback(index, key, value)`` of :meth:`Database.iter` / ``fetch*``.
KeyCallback = Callable[[int, Any, Optional[memoryview]], Any]

_MODES = dict(_mode.modes)
_INCLUSIVE = _MODES["INCLUSIVE"]
_NO_PREFIX = _MODES["NO_PREFIX"]
_SUFFIX = _MODES["SUFFIX"]
_LUA_FILTER = _MODES["LUA_FILTER"]
_LIB_FILTER = _MODES["LIB_FILTER"]


def _packed(buffer: Data, sizes: Iterable[int]) -> Tuple[Data, List[int]]:
    """A packed batch for the native layer, which slices it without a Python
    object per item: (buffer, list of sizes)."""
    return (buffer, sizes if type(sizes) is list else list(sizes))


def _range_args(offset: int, length: Optional[int], suffix: Optional[int]) -> Tuple[int, int, bool]:
    """(offset, length, from_end) of a get_range call, checked so that the
    native layer gets 64-bit values. Raises ``ValueError``."""
    from_end = suffix is not None
    if suffix is not None:
        if offset or length is not None:
            raise ValueError("get_range takes either suffix or offset/length, not both")
        offset, length = 0, suffix
    elif length is None:
        length = _UINT64_MAX
    for name, n in (("offset", offset), ("suffix" if from_end else "length", length)):
        if not 0 <= n <= _UINT64_MAX:
            raise ValueError(f"get_range {name} must be in [0, 2**64 - 1], got {n}")
    return offset, length, from_end


def _range_result(size: Optional[int], data: bytes, buffer: Optional[Buffer]) -> Any:
    """What get_range returns for a reply: the bytes, or their count once
    copied into ``buffer``. Raises KEY_NOT_FOUND / BUFFER_SIZE."""
    if size is None:
        raise Exception("Key not found", YOKAN_ERR_KEY_NOT_FOUND)
    if buffer is None:
        return data
    out = memoryview(buffer).cast("B")  # type: ignore[arg-type]
    if len(data) > len(out):
        raise Exception("Buffer too small", YOKAN_ERR_BUFFER_SIZE)
    out[: len(data)] = data
    return len(data)


def _split_packed(buffer: Data, sizes: Iterable[int], what: str) -> List[memoryview]:
    """Zero-copy slices of a packed buffer, one per size."""
    view = memoryview(buffer).cast("B") if not isinstance(buffer, str) else buffer  # type: ignore[arg-type]  # ndarray: see _types
    if isinstance(view, str):
        view = memoryview(view.encode())
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise ValueError(f"{what} sizes must not be negative")
    if sum(sizes) > len(view):
        raise ValueError(f"{what} buffer is smaller than the sum of its sizes")
    out, offset = [], 0
    for s in sizes:
        out.append(view[offset : offset + s])
        offset += s
    return out


def _is_pair(item: object) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2


# Argument and result shaping shared by the blocking Database and its asyncio
# twin (mochi.yokan.aio), which differ only in how they make the call.


def _get_args(value: Any, mode: int) -> Tuple[Any, int]:
    """``get(key, Mode.CONSUME)``: an int in the buffer's place is the mode."""
    if isinstance(value, int):
        if mode:
            raise TypeError("get() got a mode both in place of the buffer and as mode=")
        return None, value
    return value, mode


def _found(result: Any) -> Any:
    """A single get's value (or size); KEY_NOT_FOUND / BUFFER_SIZE as raised."""
    if result is None:
        raise Exception("Key not found", YOKAN_ERR_KEY_NOT_FOUND)
    if result == -1 and isinstance(result, int):
        raise Exception("Buffer too small", YOKAN_ERR_BUFFER_SIZE)
    return result


def _put_multi_args(
    pairs: Iterable[Any], values: Union[Sequence[Data], int, None], mode: int
) -> Tuple[List[Any], List[Any], int]:
    """``put_multi(pairs[, mode])`` or ``put_multi(keys, values[, mode])`` as
    (keys, values, mode)."""
    if values is not None and not isinstance(values, (list, tuple)):
        # put_multi(pairs, mode) positional form
        mode, values = cast(int, values), None
    if values is None:
        pairs = list(pairs)
        if not all(_is_pair(p) for p in pairs):
            raise TypeError("put_multi expects (key, value) pairs or keys and values")
        return [p[0] for p in pairs], [p[1] for p in pairs], mode
    keys = list(pairs)
    vals = list(values)
    if len(keys) != len(vals):
        raise ValueError("keys and values should have the same length")
    return keys, vals, mode


class Client:
    """A Yokan client on an engine (``mochi.margo.Engine``)."""

    def __init__(self, engine: Any = None, *, mid: Any = None) -> None:
        """``engine``: a ``mochi.margo.Engine``; or, as upstream names it,
        ``mid=engine.mid``. Raises ``TypeError`` when neither or both are given,
        or when it is not an engine."""
        engine = _engine_or_mid(engine, mid)
        self._engine = engine
        self._native = _client.Client(_native_engine(engine))

    def make_database_handle(self, address: Any, provider_id: int, check: bool = True) -> Database:
        """Returns a :class:`Database` for the provider ``provider_id`` at ``address``.

        ``address`` is an ``Address`` (``engine.addr()``, ``engine.lookup()``)
        or its string form. Raises :class:`Exception` with
        ``YOKAN_ERR_INVALID_ARGS`` for a provider id outside [0, 65535],
        ``YOKAN_ERR_FROM_MERCURY`` if the address cannot be reached, and, with
        ``check``, ``YOKAN_ERR_INVALID_PROVIDER`` if no such provider answers.
        """
        if not isinstance(provider_id, int) or not 0 <= provider_id <= 0xFFFF:
            raise Exception("provider_id must be an integer in [0, 65535]", YOKAN_ERR_INVALID_ARGS)
        native = self._native.make_database_handle(str(address), provider_id, check)
        return Database(native, self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False


class Database:
    """A handle on one provider's database. Safe to share between threads."""

    def __init__(self, native: _client.Database, client: Optional[Client] = None) -> None:
        self._db = native
        self._client = client  # keeps the engine alive

    @property
    def provider_id(self) -> int:
        """Returns the provider id this handle talks to; never raises."""
        return self._db.provider_id

    @property
    def address(self) -> str:
        """Returns the provider's address string; never raises."""
        return self._db.address()

    def transport_info(self) -> str:
        """Returns which UCX transports this handle's connection uses, as text
        (diagnostics); never raises."""
        return self._db.transport_info()

    def follow_migration(self, error: BaseException) -> Database:
        """Returns a handle on the provider the database migrated to, given the
        ``YOKAN_ERR_MIGRATED`` error a call on this handle raised. Re-raises
        ``error`` when it is not such an error."""
        target = migration_target(error)
        if target is None or self._client is None:
            raise error
        return self._client.make_database_handle(target[0], target[1])

    def snapshot(self, dest_path: str, timeout_ms: float = 0) -> None:
        """Asks the provider to snapshot its database into ``dest_path`` on the
        provider's own file system (an admin call; see docs/snapshot.rst).
        The provider refuses with ``YOKAN_ERR_PERMISSION`` unless its config
        sets ``"snapshot_dir"`` and ``dest_path`` resolves inside it (a relative
        path is taken relative to it). Returns None; raises :class:`Exception`
        with the provider's error otherwise."""
        from mochi.yokan import _server

        if self._client is None:
            raise Exception("this handle has no client engine", YOKAN_ERR_INVALID_ARGS)
        engine = _native_engine(self._client._engine)
        _server.remote_snapshot(engine, self.address, self.provider_id, str(dest_path), timeout_ms)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    # -- single key -------------------------------------------------------

    def count(self, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Returns the number of keys in the database (collection metadata and
        documents included). Raises :class:`Exception` with
        ``YOKAN_ERR_OP_UNSUPPORTED`` on a document-only backend (array, log),
        or if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return self._db.count(int(mode), timeout_ms)

    def put(self, key: Data, value: Data, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Stores ``value`` under ``key``; returns None. Raises :class:`Exception`:
        ``YOKAN_ERR_KEY_EXISTS`` with NEW_ONLY if the key exists,
        ``YOKAN_ERR_KEY_NOT_FOUND`` with EXIST_ONLY if it does not,
        ``YOKAN_ERR_INVALID_ARGS`` for an empty key (or a non-empty value on a
        set backend), ``YOKAN_ERR_OP_UNSUPPORTED`` on a document-only backend,
        ``YOKAN_ERR_MODE`` for incompatible flags; ``TypeError`` for a key or value that is neither
        ``str`` nor a buffer."""
        self._db.put((key,), (value,), int(mode), timeout_ms)

    def get(
        self,
        key: Data,
        value: Union[Buffer, int, None] = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> Any:
        """Returns the value of ``key``.

        Without ``value``, returns it as ``bytes``. With a writable buffer
        ``value``, writes it there and returns its size (an int). Raises
        ``YOKAN_ERR_KEY_NOT_FOUND`` if absent, ``YOKAN_ERR_BUFFER_SIZE`` if the
        buffer is too small.

        ``get(key, Mode.CONSUME)``: an int or a ``Mode`` in the second place
        is the mode (the manual's ``get(key, mode=0)``), not a buffer.
        """
        value, mode = _get_args(value, mode)
        if value is None:
            return _found(self._db.get_alloc((key,), int(mode), timeout_ms)[0])
        return _found(self._db.get((key,), (value,), int(mode), timeout_ms)[0])

    def get_range(
        self,
        key: Data,
        offset: int = 0,
        length: Optional[int] = None,
        *,
        suffix: Optional[int] = None,
        buffer: Optional[Buffer] = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> Any:
        """Returns part of the value of ``key``: the bytes
        ``[offset, offset + length)`` clipped to the value (``length=None``:
        to its end; an empty result past the end), or with ``suffix=n`` its
        last ``min(n, size)`` bytes. The provider cuts the range: only those
        bytes cross the network (its backend may still read the whole value).

        Without ``buffer``, returns ``bytes``. With a writable ``buffer``,
        writes the bytes at its start and returns their count; raises
        ``YOKAN_ERR_BUFFER_SIZE`` if they do not fit. Raises
        ``YOKAN_ERR_KEY_NOT_FOUND`` if absent (as :meth:`get`),
        ``YOKAN_ERR_INVALID_ARGS`` for an empty key, ``YOKAN_ERR_MODE`` for
        ``CONSUME``, ``ValueError`` for a negative or past-64-bit offset,
        length or suffix, or a ``suffix`` given with ``offset``/``length``.
        """
        offset, length, from_end = _range_args(offset, length, suffix)
        size, data = self._db.get_range(key, offset, length, from_end, int(mode), timeout_ms)
        return _range_result(size, data, buffer)

    def exists(self, key: Data, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        """Returns True if ``key`` is stored, else False.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return self._db.exists((key,), int(mode), timeout_ms)[0]

    def length(self, key: Data, mode: int = 0, timeout_ms: float = 0.0) -> Optional[int]:
        """Returns the size of the value in bytes, or ``None`` if the key is
        absent (not an error).
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return self._db.length((key,), int(mode), timeout_ms)[0]

    def erase(self, key: Data, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases ``key``; returns None. Erasing an absent key is not an
        error.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        self._db.erase((key,), int(mode), timeout_ms)

    # -- batches ----------------------------------------------------------

    def put_multi(
        self,
        pairs: Iterable[Any],
        values: Union[Sequence[Data], int, None] = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """``put_multi([(k, v), ...])`` or ``put_multi(keys, values)``; returns None.

        With NEW_ONLY / EXIST_ONLY and more than one pair, pairs that fail the
        condition are skipped silently; a single pair raises as :meth:`put`.
        Raises ``TypeError`` for items that are not pairs, ``ValueError`` if
        ``keys`` and ``values`` differ in length, :class:`Exception` as
        :meth:`put` does (``YOKAN_ERR_INVALID_ARGS``, ``YOKAN_ERR_MODE``...).
        """
        keys, vals, mode = _put_multi_args(pairs, values, mode)
        self._db.put(keys, vals, int(mode), timeout_ms)

    def put_packed(
        self,
        keys: Data,
        key_sizes: Sequence[int],
        values: Data,
        value_sizes: Sequence[int],
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Stores keys and values packed back to back in two buffers, with
        their sizes; returns None. Raises ``ValueError`` if the size lists
        differ in length, :class:`Exception` with ``YOKAN_ERR_INVALID_ARGS``
        if the sizes overrun a buffer, and as :meth:`put_multi` otherwise."""
        if len(key_sizes) != len(value_sizes):
            raise ValueError("key_sizes and value_sizes should have the same length")
        k = _packed(keys, key_sizes)
        v = _packed(values, value_sizes)
        self._db.put(k, v, int(mode), timeout_ms)

    def get_multi(self, pairs: Iterable[Any], mode: int = 0, timeout_ms: float = 0.0) -> List[Any]:
        """``get_multi([(key, buffer), ...])`` fills the buffers and returns
        sizes (``None`` if absent, ``-1`` if too small); ``get_multi(keys)``
        returns a list of ``bytes`` or ``None``. Absent keys are not errors.

        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        items = list(pairs)
        if items and all(_is_pair(p) for p in items):
            keys = [p[0] for p in items]
            buffers = [p[1] for p in items]
            return self._db.get(keys, buffers, int(mode), timeout_ms)
        return self._db.get_alloc(items, int(mode), timeout_ms)

    def get_packed(
        self,
        keys: Data,
        key_sizes: Sequence[int],
        values: Buffer,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Optional[int]]:
        """Writes the values back to back in ``values``. Returns their sizes,
        ``None`` if absent, ``-1`` if it did not fit (and every later found
        value too).
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        k = _packed(keys, key_sizes)
        return self._db.get_packed(k, values, int(mode), timeout_ms)

    def exists_multi(
        self, keys: Iterable[Data], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[bool]:
        """Returns one bool per key, True if it is stored.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return self._db.exists(list(keys), int(mode), timeout_ms)

    def exists_packed(
        self, keys: Data, key_sizes: Sequence[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[bool]:
        """Returns one bool per packed key, True if it is stored.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return self._db.exists(_packed(keys, key_sizes), int(mode), timeout_ms)

    def length_multi(
        self, keys: Iterable[Data], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Returns the value sizes, ``None`` for absent keys.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return self._db.length(list(keys), int(mode), timeout_ms)

    def length_packed(
        self, keys: Data, key_sizes: Sequence[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Returns the value sizes of the packed keys, ``None`` for absent
        ones.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return self._db.length(_packed(keys, key_sizes), int(mode), timeout_ms)

    def erase_multi(self, keys: Iterable[Data], mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases the keys (absent ones are not errors); returns None.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        self._db.erase(list(keys), int(mode), timeout_ms)

    def erase_packed(
        self, keys: Data, key_sizes: Sequence[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> None:
        """Erases the packed keys (absent ones are not errors); returns None.

        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        self._db.erase(_packed(keys, key_sizes), int(mode), timeout_ms)

    def erase_range(self, prefix: Data, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases every key that starts with ``prefix`` (``""`` erases all,
        collections included); returns None. ``YOKAN_ERR_OP_UNSUPPORTED`` on a
        document-only backend.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        self._db.erase_range(prefix, int(mode), timeout_ms)

    # -- listing ----------------------------------------------------------
    # Sorted backends only (others raise YOKAN_ERR_OP_UNSUPPORTED). Keys come
    # in bytewise order after ``from_key`` (at it with INCLUSIVE; ``""`` is
    # the start) that pass ``filter``: a prefix, a suffix with SUFFIX, or Lua
    # code with LUA_FILTER. A result shorter than requested means the end.

    def list_keys(
        self,
        keys: Iterable[Buffer],
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Fills the buffers in ``keys``; returns their sizes (-1: too small).

        Raises :class:`Exception` with ``YOKAN_ERR_OP_UNSUPPORTED`` on an
        unsorted backend, ``YOKAN_ERR_INVALID_FILTER`` for a bad filter, or if
        the call fails."""
        keys = keys if type(keys) is list else list(keys)
        ksizes, _ = self._db.list(
            from_key, filter, len(keys), False, 0, keys, None, int(mode), timeout_ms
        )
        return ksizes

    def list_keyvals(
        self,
        pairs: Iterable[Tuple[Buffer, Buffer]],
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Fills (key buffer, value buffer) pairs; returns (key size, value
        size) tuples (-1: too small).
        Raises :class:`Exception` with ``YOKAN_ERR_OP_UNSUPPORTED`` on an
        unsorted backend, ``YOKAN_ERR_INVALID_FILTER`` for a bad filter, or if
        the call fails."""
        pairs = list(pairs)
        ksizes, vsizes = self._db.list(
            from_key,
            filter,
            len(pairs),
            True,
            0,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            int(mode),
            timeout_ms,
        )
        return list(zip(ksizes, vsizes))

    def list_keys_packed(
        self,
        keys: Buffer,
        count: int,
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Writes up to ``count`` keys back to back in ``keys``; returns their
        sizes.
        Raises :class:`Exception` with ``YOKAN_ERR_OP_UNSUPPORTED`` on an
        unsorted backend, ``YOKAN_ERR_INVALID_FILTER`` for a bad filter, or if
        the call fails."""
        ksizes, _ = self._db.list(
            from_key, filter, int(count), False, 1, [keys], None, int(mode), timeout_ms
        )
        return ksizes

    def list_keyvals_packed(
        self,
        keys: Buffer,
        values: Buffer,
        count: int,
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Writes keys back to back in ``keys``, values in ``values``; returns
        (key size, value size) tuples.
        Raises :class:`Exception` with ``YOKAN_ERR_OP_UNSUPPORTED`` on an
        unsorted backend, ``YOKAN_ERR_INVALID_FILTER`` for a bad filter, or if
        the call fails."""
        ksizes, vsizes = self._db.list(
            from_key, filter, int(count), True, 1, [keys], [values], int(mode), timeout_ms
        )
        return list(zip(ksizes, vsizes))

    def scan(
        self,
        from_key: Data = b"",
        filter: Data = b"",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        ignore_values: bool = False,
        timeout_ms: float = 0.0,
    ) -> Iterator[Tuple[bytes, Optional[bytes]]]:
        """Returns an iterator of ``(key bytes, value bytes or None)`` in key order, a
        page of ``batch_size`` (default 1024) pairs per round trip; ``count=0``
        means all. Pages are fetched one ahead of the iteration: the next page
        is requested when the iteration reaches the current one. The
        iteration raises :class:`Exception` as :meth:`list_keys` does."""
        # chain.from_iterable walks each page in C: only a page boundary
        # resumes Python code, not every pair.
        return chain.from_iterable(
            self._scan_pages(from_key, filter, count, mode, batch_size, ignore_values, timeout_ms)
        )

    def _scan_pages(
        self,
        from_key: Data,
        filter: Data,
        count: int,
        mode: int,
        batch_size: int,
        ignore_values: bool,
        timeout_ms: float,
    ) -> Iterator[Iterator[Tuple[bytes, Optional[bytes]]]]:
        mode = int(mode)
        page = int(batch_size) if batch_size > 0 else 1024
        remaining = int(count) if count > 0 else None
        strip = bool(mode & _NO_PREFIX) and not (mode & (_LUA_FILTER | _LIB_FILTER))
        filt = filter.encode() if isinstance(filter, str) else bytes(filter)
        n = page if remaining is None else min(page, remaining)
        if n <= 0:
            return
        pending = self._db.list_start(from_key, filter, n, not ignore_values, mode, timeout_ms)
        while True:
            keys, values = pending.wait()
            if remaining is not None:
                remaining -= len(keys)
            more = len(keys) == n and (remaining is None or remaining > 0)
            if more:
                # The next page starts strictly after the last real key. It is
                # requested before this one is handed out, so that the
                # provider lists it while the caller works through this one.
                last = keys[-1]
                if strip:
                    last = last + filt if mode & _SUFFIX else filt + last
                mode &= ~_INCLUSIVE
                n = page if remaining is None else min(page, remaining)
                pending = self._db.list_start(last, filter, n, not ignore_values, mode, timeout_ms)
            yield zip(keys, repeat(None) if ignore_values else values)
            if not more:
                return

    def iter(
        self,
        callback: KeyCallback,
        from_key: Data = b"",
        filter: Data = b"",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        ignore_values: bool = False,
        timeout_ms: float = 0.0,
    ) -> None:
        """Calls ``callback(index, key, value)`` for each matching pair in key
        order. ``key`` is a ``str`` when ``from_key`` is a ``str``, else a
        read-only memoryview; ``value`` is a read-only memoryview, or None with
        ``ignore_values``. Exceptions raised by the callback propagate; a
        callback returning ``False`` stops the iteration. Returns None;
        raises :class:`Exception` as :meth:`scan` does."""
        as_str = isinstance(from_key, str)
        for index, (key, value) in enumerate(
            self.scan(from_key, filter, count, mode, batch_size, ignore_values, timeout_ms)
        ):
            k = key.decode() if as_str else memoryview(key)
            v = None if value is None else memoryview(value)
            if callback(index, k, v) is False:
                return

    # -- fetch: get with a callback ----------------------------------------

    def fetch(
        self, key: Data, callback: KeyCallback, mode: int = 0, timeout_ms: float = 0.0
    ) -> Any:
        """Calls ``callback(0, key, value)`` with the value as a read-only
        memoryview, or None if absent, and returns what the callback returns.
        Callback exceptions propagate.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        (value,) = self._db.get_alloc((key,), int(mode), timeout_ms)
        k = key if isinstance(key, str) else memoryview(key).toreadonly()  # type: ignore[arg-type]
        return callback(0, k, None if value is None else memoryview(value))

    def fetch_multi(
        self,
        keys: Iterable[Data],
        callback: KeyCallback,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Calls ``callback(index, key, value)`` for each key, ``batch_size``
        keys per round trip (0: all at once); returns None. Callback
        exceptions propagate; a failed call raises :class:`Exception`."""
        keys = list(keys)
        step = int(batch_size) if batch_size > 0 else max(len(keys), 1)
        for start in range(0, len(keys), step):
            batch = keys[start : start + step]
            values = self._db.get_alloc(batch, int(mode), timeout_ms)
            for offset, (key, value) in enumerate(zip(batch, values)):
                k = key if isinstance(key, str) else memoryview(key).toreadonly()  # type: ignore[arg-type]
                callback(start + offset, k, None if value is None else memoryview(value))

    def fetch_packed(
        self,
        keys: Data,
        key_sizes: Sequence[int],
        callback: KeyCallback,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """As :meth:`fetch_multi` for keys packed back to back; returns None.
        Raises ``ValueError`` if the sizes are negative or overrun ``keys``."""
        views = [v.toreadonly() for v in _split_packed(keys, key_sizes, "keys")]
        self.fetch_multi(views, callback, mode, batch_size, timeout_ms)

    # -- document collections ---------------------------------------------

    def create_collection(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> Collection:
        """Creates the collection ``name`` and returns it. Raises
        :class:`Exception` with ``YOKAN_ERR_KEY_EXISTS`` if the name is taken,
        ``YOKAN_ERR_INVALID_ARGS`` if it is empty; ``TypeError`` if ``name`` is
        not a str."""
        coll = Collection(name, self)
        coll._create(mode, timeout_ms)
        return coll

    def drop_collection(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases the collection and its documents; returns None. Raises
        :class:`Exception` with ``YOKAN_ERR_KEY_NOT_FOUND`` if it does not exist."""
        Collection(name, self)._drop(mode, timeout_ms)

    def collection_exists(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        """Returns True if the collection ``name`` exists. ``YOKAN_ERR_INVALID_ARGS``
        for an empty name.
        Raises :class:`Exception` if the call fails (e.g. ``YOKAN_ERR_TIMEOUT``,
        ``YOKAN_ERR_MODE``, ``YOKAN_ERR_FROM_MERCURY``)."""
        return Collection(name, self)._exists(mode, timeout_ms)

    def open_collection(self, name: str) -> Collection:
        """Returns the collection ``name``, without any RPC (it is not
        checked). Raises ``TypeError`` if ``name`` is not a str."""
        return Collection(name, self)
