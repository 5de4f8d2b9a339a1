"""The client side: :class:`Client` and :class:`Database`.

Keys, values and prefixes are ``str`` (stored as UTF-8) or any object with the
buffer protocol (bytes, bytearray, memoryview slices, numpy arrays), taken
without copying. Output buffers must be writable and C-contiguous; they are
written in place. Every call that talks to a provider releases the GIL.
"""

from itertools import chain, repeat

from mochi.yokan import _yokan
from mochi.yokan.collection import Collection
from mochi.yokan.exception import (
    YOKAN_ERR_BUFFER_SIZE,
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_KEY_NOT_FOUND,
)
from mochi.yokan.exception import ClientException as Exception  # noqa: A004
from mochi.yokan.server import _engine_or_mid, _native_engine

__all__ = ["Client", "Database", "Exception"]

_MODES = dict(_yokan.modes)
_INCLUSIVE = _MODES["INCLUSIVE"]
_NO_PREFIX = _MODES["NO_PREFIX"]
_SUFFIX = _MODES["SUFFIX"]
_LUA_FILTER = _MODES["LUA_FILTER"]
_LIB_FILTER = _MODES["LIB_FILTER"]


def _packed(buffer, sizes):
    """A packed batch for the native layer, which slices it without a Python
    object per item: (buffer, list of sizes)."""
    return (buffer, sizes if type(sizes) is list else list(sizes))


def _split_packed(buffer, sizes, what):
    """Zero-copy slices of a packed buffer, one per size."""
    view = memoryview(buffer).cast("B") if not isinstance(buffer, str) else buffer
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


def _is_pair(item):
    return isinstance(item, (tuple, list)) and len(item) == 2


class Client:
    """A Yokan client on an engine (``mochi.margo.Engine``)."""

    def __init__(self, engine=None, *, mid=None):
        """``engine``: a ``mochi.margo.Engine``; or, as upstream names it,
        ``mid=engine.mid``. Raises ``TypeError`` when neither or both are given."""
        engine = _engine_or_mid(engine, mid)
        self._engine = engine
        self._native = _yokan.Client(_native_engine(engine))

    def make_database_handle(self, address, provider_id, check=True):
        """A :class:`Database` for the provider ``provider_id`` at ``address``.

        ``address`` is an ``Address`` (``engine.addr()``, ``engine.lookup()``)
        or its string form. With ``check`` the provider's existence is verified
        (``YOKAN_ERR_INVALID_PROVIDER`` otherwise).
        """
        if not isinstance(provider_id, int) or not 0 <= provider_id <= 0xFFFF:
            raise Exception("provider_id must be an integer in [0, 65535]", YOKAN_ERR_INVALID_ARGS)
        native = self._native.make_database_handle(str(address), provider_id, check)
        return Database(native, self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Database:
    """A handle on one provider's database. Safe to share between threads."""

    def __init__(self, native, client=None):
        self._db = native
        self._client = client  # keeps the engine alive

    @property
    def provider_id(self):
        return self._db.provider_id

    @property
    def address(self):
        return self._db.address()

    def transport_info(self):
        """Which UCX transports this handle's connection uses (diagnostics)."""
        return self._db.transport_info()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    # -- single key -------------------------------------------------------

    def count(self, mode=0, timeout_ms=0.0):
        """Number of keys in the database."""
        return self._db.count(int(mode), timeout_ms)

    def put(self, key, value, mode=0, timeout_ms=0.0):
        """Stores ``value`` under ``key``."""
        self._db.put((key,), (value,), int(mode), timeout_ms)

    def get(self, key, value=None, mode=0, timeout_ms=0.0):
        """The value of ``key``.

        Without ``value``, returns it as ``bytes``. With a writable buffer
        ``value``, writes it there and returns its size. Raises
        ``YOKAN_ERR_KEY_NOT_FOUND`` if absent, ``YOKAN_ERR_BUFFER_SIZE`` if the
        buffer is too small.

        ``get(key, Mode.CONSUME)``: an int or a ``Mode`` in the second place
        is the mode (the manual's ``get(key, mode=0)``), not a buffer.
        """
        if isinstance(value, int):
            if mode:
                raise TypeError("get() got a mode both in place of the buffer and as mode=")
            value, mode = None, value
        if value is None:
            (result,) = self._db.get_alloc((key,), int(mode), timeout_ms)
            if result is None:
                raise Exception("Key not found", YOKAN_ERR_KEY_NOT_FOUND)
            return result
        (size,) = self._db.get((key,), (value,), int(mode), timeout_ms)
        if size is None:
            raise Exception("Key not found", YOKAN_ERR_KEY_NOT_FOUND)
        if size == -1:
            raise Exception("Buffer too small", YOKAN_ERR_BUFFER_SIZE)
        return size

    def exists(self, key, mode=0, timeout_ms=0.0):
        return self._db.exists((key,), int(mode), timeout_ms)[0]

    def length(self, key, mode=0, timeout_ms=0.0):
        """Size of the value, or ``None`` if the key is absent."""
        return self._db.length((key,), int(mode), timeout_ms)[0]

    def erase(self, key, mode=0, timeout_ms=0.0):
        """Erases ``key``; erasing an absent key is not an error."""
        self._db.erase((key,), int(mode), timeout_ms)

    # -- batches ----------------------------------------------------------

    def put_multi(self, pairs, values=None, mode=0, timeout_ms=0.0):
        """``put_multi([(k, v), ...])`` or ``put_multi(keys, values)``.

        With NEW_ONLY / EXIST_ONLY, pairs that fail the condition are skipped.
        """
        if values is not None and not isinstance(values, (list, tuple)):
            # put_multi(pairs, mode) positional form
            mode, values = values, None
        if values is None:
            pairs = list(pairs)
            if not all(_is_pair(p) for p in pairs):
                raise TypeError("put_multi expects (key, value) pairs or keys and values")
            keys = [p[0] for p in pairs]
            values = [p[1] for p in pairs]
        else:
            keys = list(pairs)
            values = list(values)
            if len(keys) != len(values):
                raise ValueError("keys and values should have the same length")
        self._db.put(keys, values, int(mode), timeout_ms)

    def put_packed(self, keys, key_sizes, values, value_sizes, mode=0, timeout_ms=0.0):
        if len(key_sizes) != len(value_sizes):
            raise ValueError("key_sizes and value_sizes should have the same length")
        k = _packed(keys, key_sizes)
        v = _packed(values, value_sizes)
        self._db.put(k, v, int(mode), timeout_ms)

    def get_multi(self, pairs, mode=0, timeout_ms=0.0):
        """``get_multi([(key, buffer), ...])`` fills the buffers and returns
        sizes (``None`` if absent, ``-1`` if too small); ``get_multi(keys)``
        returns a list of ``bytes`` or ``None``."""
        items = list(pairs)
        if items and all(_is_pair(p) for p in items):
            keys = [p[0] for p in items]
            buffers = [p[1] for p in items]
            return self._db.get(keys, buffers, int(mode), timeout_ms)
        return self._db.get_alloc(items, int(mode), timeout_ms)

    def get_packed(self, keys, key_sizes, values, mode=0, timeout_ms=0.0):
        """Values back to back in ``values``; sizes, ``None`` if absent, ``-1``
        if it did not fit (and every later found value too)."""
        k = _packed(keys, key_sizes)
        return self._db.get_packed(k, values, int(mode), timeout_ms)

    def exists_multi(self, keys, mode=0, timeout_ms=0.0):
        return self._db.exists(list(keys), int(mode), timeout_ms)

    def exists_packed(self, keys, key_sizes, mode=0, timeout_ms=0.0):
        return self._db.exists(_packed(keys, key_sizes), int(mode), timeout_ms)

    def length_multi(self, keys, mode=0, timeout_ms=0.0):
        return self._db.length(list(keys), int(mode), timeout_ms)

    def length_packed(self, keys, key_sizes, mode=0, timeout_ms=0.0):
        return self._db.length(_packed(keys, key_sizes), int(mode), timeout_ms)

    def erase_multi(self, keys, mode=0, timeout_ms=0.0):
        self._db.erase(list(keys), int(mode), timeout_ms)

    def erase_packed(self, keys, key_sizes, mode=0, timeout_ms=0.0):
        self._db.erase(_packed(keys, key_sizes), int(mode), timeout_ms)

    def erase_range(self, prefix, mode=0, timeout_ms=0.0):
        """Erases every key that starts with ``prefix`` (``""`` erases all)."""
        self._db.erase_range(prefix, int(mode), timeout_ms)

    # -- listing ----------------------------------------------------------
    # Sorted backends only (others raise YOKAN_ERR_OP_UNSUPPORTED). Keys come
    # in bytewise order after ``from_key`` (at it with INCLUSIVE; ``""`` is
    # the start) that pass ``filter``: a prefix, a suffix with SUFFIX, or Lua
    # code with LUA_FILTER. A result shorter than requested means the end.

    def list_keys(self, keys, from_key, filter, mode=0, timeout_ms=0.0):
        """Fills the buffers in ``keys``; returns their sizes (-1: too small)."""
        keys = keys if type(keys) is list else list(keys)
        ksizes, _ = self._db.list(
            from_key, filter, len(keys), False, 0, keys, None, int(mode), timeout_ms
        )
        return ksizes

    def list_keyvals(self, pairs, from_key, filter, mode=0, timeout_ms=0.0):
        """Fills (key buffer, value buffer) pairs; returns (key size, value size) tuples."""
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

    def list_keys_packed(self, keys, count, from_key, filter, mode=0, timeout_ms=0.0):
        """Up to ``count`` keys back to back in ``keys``; returns their sizes."""
        ksizes, _ = self._db.list(
            from_key, filter, int(count), False, 1, [keys], None, int(mode), timeout_ms
        )
        return ksizes

    def list_keyvals_packed(self, keys, values, count, from_key, filter, mode=0, timeout_ms=0.0):
        """Keys back to back in ``keys``, values in ``values``; returns size tuples."""
        ksizes, vsizes = self._db.list(
            from_key, filter, int(count), True, 1, [keys], [values], int(mode), timeout_ms
        )
        return list(zip(ksizes, vsizes))

    def scan(
        self,
        from_key=b"",
        filter=b"",
        count=0,
        mode=0,
        batch_size=0,
        ignore_values=False,
        timeout_ms=0.0,
    ):
        """An iterator of ``(key bytes, value bytes or None)`` in key order, a
        page of ``batch_size`` (default 1024) pairs per round trip; ``count=0``
        means all. Pages are fetched one ahead of the iteration: the next page
        is requested when the iteration reaches the current one."""
        # chain.from_iterable walks each page in C: only a page boundary
        # resumes Python code, not every pair.
        return chain.from_iterable(
            self._scan_pages(from_key, filter, count, mode, batch_size, ignore_values, timeout_ms)
        )

    def _scan_pages(self, from_key, filter, count, mode, batch_size, ignore_values, timeout_ms):
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
        callback,
        from_key=b"",
        filter=b"",
        count=0,
        mode=0,
        batch_size=0,
        ignore_values=False,
        timeout_ms=0.0,
    ):
        """Calls ``callback(index, key, value)`` for each matching pair in key
        order. ``key`` is a ``str`` when ``from_key`` is a ``str``, else a
        read-only memoryview; ``value`` is a read-only memoryview, or None with
        ``ignore_values``. Exceptions raised by the callback propagate; a
        callback returning ``False`` stops the iteration."""
        as_str = isinstance(from_key, str)
        for index, (key, value) in enumerate(
            self.scan(from_key, filter, count, mode, batch_size, ignore_values, timeout_ms)
        ):
            k = key.decode() if as_str else memoryview(key)
            v = None if value is None else memoryview(value)
            if callback(index, k, v) is False:
                return

    # -- fetch: get with a callback ----------------------------------------

    def fetch(self, key, callback, mode=0, timeout_ms=0.0):
        """Calls ``callback(0, key, value)`` with the value as a read-only
        memoryview, or None if absent. Callback exceptions propagate."""
        (value,) = self._db.get_alloc((key,), int(mode), timeout_ms)
        k = key if isinstance(key, str) else memoryview(key).toreadonly()
        return callback(0, k, None if value is None else memoryview(value))

    def fetch_multi(self, keys, callback, mode=0, batch_size=0, timeout_ms=0.0):
        """Calls ``callback(index, key, value)`` for each key, ``batch_size``
        keys per round trip (0: all at once)."""
        keys = list(keys)
        step = int(batch_size) if batch_size > 0 else max(len(keys), 1)
        for start in range(0, len(keys), step):
            batch = keys[start : start + step]
            values = self._db.get_alloc(batch, int(mode), timeout_ms)
            for offset, (key, value) in enumerate(zip(batch, values)):
                k = key if isinstance(key, str) else memoryview(key).toreadonly()
                callback(start + offset, k, None if value is None else memoryview(value))

    def fetch_packed(self, keys, key_sizes, callback, mode=0, batch_size=0, timeout_ms=0.0):
        views = [v.toreadonly() for v in _split_packed(keys, key_sizes, "keys")]
        self.fetch_multi(views, callback, mode, batch_size, timeout_ms)

    # -- document collections ---------------------------------------------

    def create_collection(self, name, mode=0, timeout_ms=0.0):
        """Creates the collection ``name`` (``YOKAN_ERR_KEY_EXISTS`` if the
        name is taken) and returns it."""
        coll = Collection(name, self)
        coll._create(mode, timeout_ms)
        return coll

    def drop_collection(self, name, mode=0, timeout_ms=0.0):
        """Erases the collection and its documents (``YOKAN_ERR_KEY_NOT_FOUND``
        if it does not exist)."""
        Collection(name, self)._drop(mode, timeout_ms)

    def collection_exists(self, name, mode=0, timeout_ms=0.0):
        return Collection(name, self)._exists(mode, timeout_ms)

    def open_collection(self, name):
        """The collection ``name``, without any RPC (it is not checked)."""
        return Collection(name, self)
