"""A Zarr v3 store over a Yokan database: :class:`YokanStore`.

    import zarr
    from mochi.yokan.zarr import YokanStore

    store = YokanStore(db, prefix="run42")           # db: a Database or ShardedDatabase
    z = zarr.create_array(store, shape=(4096, 4096), chunks=(256, 512), dtype="f8")
    z[:] = data
    zarr.open_array(store.with_read_only(True))[:100]

Each Zarr key (``"zarr.json"``, ``"temperature/c/0/3"``) is stored as one
Yokan key, the store's prefix in front; a chunk is one value. It needs
zarr-python 3.1 or later (``pip install 'mochi-yokan[zarr]'``); nothing else
in ``mochi.yokan`` imports this module.

What moves, and how:

* writes hand the chunk's own memory to the client, which sends it without a
  copy (a host copy is made first only for a buffer that is not in host
  memory, e.g. on a GPU);
* reads land the value straight in the numpy array that becomes the returned
  Zarr buffer; its size is guessed from the largest value read so far (one
  extra size query when the guess is short), and a value that fills less
  than half of the guess is copied to a tight buffer so that a small value
  does not pin a large one;
* a byte range (``RangeByteRequest``, ``OffsetByteRequest``,
  ``SuffixByteRequest``) is one ``get_range`` call: the provider cuts the
  range out of the value and only those bytes cross the wire (its backend
  may still read the whole value from its storage). Each ranged read is a
  round trip of its own, so Zarr's sharding codec, which reads a shard's
  index and then its chunks in pieces, costs one call per piece;
* listings page through the keys under a prefix in key order, so they need a
  sorted backend (``map``, ``rocksdb``, ``leveldb``, ``lmdb``, ``berkeleydb``
  btree, ``tkrzw`` tree). On an unsorted one (``unordered_map``, ``gdbm``...)
  :attr:`YokanStore.supports_listing` is False, every listing raises
  ``NotImplementedError``, and arrays whose path is known still read and
  write; ``delete_dir`` and ``clear`` need no listing (one ``erase_range``).

Calls are made with the blocking client inside the store's coroutines
(a small value takes microseconds, a 1 MiB chunk about a millisecond over
shared memory on a 2-vCPU VM), so Zarr's concurrent chunk requests run one
after another; the GIL is released while each waits.

A store pickles as the provider's address(es), provider id, prefix and
flags; an unpickled copy uses the live handle it came from when there is one
in the process, and otherwise connects lazily through a client engine of its
own (one per protocol per process).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    AsyncIterator,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np
from mochi.margo import Engine
from mochi.margo import client as client_mode
from mochi.yokan.client import Client, Database
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_KEY_EXISTS,
    YOKAN_ERR_KEY_NOT_FOUND,
    YOKAN_ERR_OP_UNSUPPORTED,
)
from mochi.yokan.group import ShardedDatabase
from mochi.yokan.mode import Mode
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, cpu
from zarr.core.buffer.core import default_buffer_prototype

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["YokanStore"]

# Reads guess a value's size from the largest read so far, within these bounds.
_FIRST_GUESS = 64 * 1024
_MAX_GUESS = 64 * 1024 * 1024
# Destination bytes per batched read (get_partial_values, _get_many).
_BATCH_BYTES = 256 * 1024 * 1024
# Keys per listing round trip.
_PAGE = 1024
# Keys per listing round trip of list_dir, which stops at each directory.
_DIR_PAGE = 64
# '/' + 1: the first byte after every key of a "directory" "name/".
_PAST_SLASH = b"0"

# One member of a store's target: (address, provider id).
_Member = Tuple[str, int]


class YokanStore(Store):
    """A Zarr v3 store over the keys of ``db`` that start with ``prefix``.

    ``db``: a :class:`~mochi.yokan.client.Database` or a
    :class:`~mochi.yokan.group.ShardedDatabase`. ``prefix``: a path such as
    ``"runs/42"`` (slashes at either end are ignored; ``""`` is the whole
    database); the store sees only the keys under ``prefix + "/"``.
    ``read_only``: writes raise ``ValueError``. ``timeout_ms``: the bound of
    every call (0: none).

    Errors: a missing key reads as ``None`` (Zarr's convention) and
    ``getsize`` raises ``FileNotFoundError``; writes to a read-only store
    raise ``ValueError``; listings on an unsorted backend raise
    ``NotImplementedError``; any other failure raises
    :class:`mochi.yokan.client.Exception` (e.g. ``YOKAN_ERR_TIMEOUT``,
    ``YOKAN_ERR_PERMISSION`` from a read-only provider).
    """

    def __init__(
        self,
        db: Database,
        prefix: str = "",
        *,
        read_only: bool = False,
        timeout_ms: float = 0.0,
    ) -> None:
        super().__init__(read_only=read_only)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._cut = len(self._prefix.encode())
        self._timeout_ms = float(timeout_ms)
        self._db: Optional[Database] = db
        self._sharded, self._members = _describe(db)
        _remember_handle(self._sharded, self._members, db)
        self._guess = _FIRST_GUESS
        self._listing: Optional[bool] = None

    @classmethod
    def from_address(
        cls,
        address: str,
        provider_id: int,
        prefix: str = "",
        *,
        read_only: bool = False,
        timeout_ms: float = 0.0,
    ) -> YokanStore:
        """Returns a store on provider ``provider_id`` at ``address`` (a
        string such as ``"na+sm://..."`` or ``"tcp://127.0.0.1:1234"``),
        reached through this process's shared client engine for that
        protocol (started on first use). Raises
        :class:`mochi.yokan.client.Exception` if the provider cannot be
        reached (``YOKAN_ERR_FROM_MERCURY``, ``YOKAN_ERR_INVALID_PROVIDER``)."""
        db = _connect(False, ((str(address), int(provider_id)),))
        return cls(db, prefix, read_only=read_only, timeout_ms=timeout_ms)

    # -- identity -------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """Returns the key prefix of the store (``""`` or ending with
        ``"/"``); never raises."""
        return self._prefix

    @property
    def database(self) -> Database:
        """Returns the database handle the store uses, connecting first if the
        store was unpickled. Raises :class:`mochi.yokan.client.Exception` if
        the provider cannot be reached."""
        if self._db is None:
            self._db = _connect(self._sharded, self._members)
        return self._db

    def with_read_only(self, read_only: bool = False) -> YokanStore:
        """Returns a new store (not open) on the same database and prefix with
        the given ``read_only``; this one is unchanged. Never raises."""
        clone = YokanStore.__new__(YokanStore)
        clone.__setstate__(self.__getstate__())
        clone._read_only = bool(read_only)
        clone._db = self._db
        clone._guess = self._guess
        return clone

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, YokanStore)
            and self._sharded == other._sharded
            and self._members == other._members
            and self._prefix == other._prefix
            and self._read_only == other._read_only
        )

    def __hash__(self) -> int:
        return hash((self._sharded, self._members, self._prefix, self._read_only))

    def __str__(self) -> str:
        where = ",".join(f"{pid}@{addr}" for addr, pid in self._members)
        return f"yokan://{where}/{self._prefix}"

    def __repr__(self) -> str:
        return f"YokanStore('{self}')"

    def __getstate__(self) -> Dict[str, Any]:
        return {
            "sharded": self._sharded,
            "members": self._members,
            "prefix": self._prefix,
            "read_only": self._read_only,
            "timeout_ms": self._timeout_ms,
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._sharded = bool(state["sharded"])
        self._members = tuple((str(a), int(p)) for a, p in state["members"])
        self._prefix = str(state["prefix"])
        self._cut = len(self._prefix.encode())
        self._read_only = bool(state["read_only"])
        self._timeout_ms = float(state["timeout_ms"])
        self._is_open = False
        self._db = None
        self._guess = _FIRST_GUESS
        self._listing = None

    # -- capabilities -----------------------------------------------------------

    @property
    def supports_writes(self) -> bool:
        """Returns True: a store can write (unless opened read-only). Never raises."""
        return True

    @property
    def supports_deletes(self) -> bool:
        """Returns True: keys can be deleted. Never raises."""
        return True

    @property
    def supports_listing(self) -> bool:
        """Returns whether the backend can list keys in order (asked of the
        provider once, on first use). Raises
        :class:`mochi.yokan.client.Exception` if the provider cannot be
        reached."""
        if self._listing is None:
            try:
                for _ in self._scan(self._prefix, count=1):
                    pass
                self._listing = True
            except NotImplementedError:
                self._listing = False
        return self._listing

    # -- reads ----------------------------------------------------------------

    async def get(
        self,
        key: str,
        prototype: Optional[BufferPrototype] = None,
        byte_range: Optional[ByteRequest] = None,
    ) -> Optional[Buffer]:
        """Returns the value of ``key`` (or the bytes ``byte_range`` selects)
        as a buffer of ``prototype`` (default: host memory), or None if the
        key is absent. A byte range is cut by the provider (``get_range``):
        only the range is transferred. Raises ``TypeError`` for a ``byte_range`` that is not a
        ``ByteRequest``, ``ValueError`` for a negative one, and
        :class:`mochi.yokan.client.Exception` if the call fails."""
        return self.get_sync(key, prototype=prototype, byte_range=byte_range)

    def get_sync(
        self,
        key: str,
        *,
        prototype: Optional[BufferPrototype] = None,
        byte_range: Optional[ByteRequest] = None,
    ) -> Optional[Buffer]:
        """Returns what :meth:`get` returns, without a coroutine; raises as
        :meth:`get`."""
        _check_range(byte_range)
        if not (key or self._prefix):
            return None
        if byte_range is not None:
            part = self._read_range(self._key(key), byte_range)
            return None if part is None else _wrap(prototype, part)
        value = self._read(self._key(key))
        return None if value is None else _wrap(prototype, value)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[Tuple[str, Optional[ByteRequest]]],
    ) -> List[Optional[Buffer]]:
        """Returns, for each ``(key, byte_range)`` in order, what :meth:`get`
        would (None for an absent key). Every distinct key read whole is
        read once, in batched calls (one per 256 MiB of destination buffers);
        each byte range is a ``get_range`` call that moves only the range.
        Raises as :meth:`get`."""
        requests = [(key, rng) for key, rng in key_ranges]
        for _, rng in requests:
            _check_range(rng)
        values = self._read_many([k for k, rng in requests if rng is None])
        out: List[Optional[Buffer]] = []
        for key, rng in requests:
            value = values.get(key) if rng is None else self._read_range_of(key, rng)
            out.append(None if value is None else _wrap(prototype, value))
        return out

    async def _get_many(
        self, requests: Iterable[Tuple[str, BufferPrototype, Optional[ByteRequest]]]
    ) -> AsyncGenerator[Tuple[str, Optional[Buffer]], None]:
        # One batch for every key instead of the base class's one call each.
        reqs = list(requests)
        for _, _, rng in reqs:
            _check_range(rng)
        values = self._read_many([k for k, _, rng in reqs if rng is None])
        for key, prototype, rng in reqs:
            value = values.get(key) if rng is None else self._read_range_of(key, rng)
            yield key, None if value is None else _wrap(prototype, value)

    async def exists(self, key: str) -> bool:
        """Returns True if ``key`` is stored. Raises
        :class:`mochi.yokan.client.Exception` if the call fails."""
        if not (key or self._prefix):
            return False
        return self.database.exists(self._key(key), timeout_ms=self._timeout_ms)

    async def getsize(self, key: str) -> int:
        """Returns the size in bytes of the value of ``key``, asked of the
        provider (the value does not move). Raises ``FileNotFoundError`` if it
        is absent, :class:`mochi.yokan.client.Exception` if the call fails."""
        size = (
            self.database.length(self._key(key), timeout_ms=self._timeout_ms)
            if key or self._prefix
            else None
        )
        if size is None:
            raise FileNotFoundError(key)
        return size

    async def getsize_prefix(self, prefix: str) -> int:
        """Returns the total size in bytes of the values under ``prefix``
        (one size query per page of keys; no value moves). Raises
        ``NotImplementedError`` on an unsorted backend, and
        :class:`mochi.yokan.client.Exception` if a call fails."""
        full = self._prefix + prefix
        total, page = 0, []
        db = self.database
        for key in self._scan(full):
            page.append(key)
            if len(page) == _PAGE:
                total += sum(s or 0 for s in db.length_multi(page, timeout_ms=self._timeout_ms))
                page = []
        if page:
            total += sum(s or 0 for s in db.length_multi(page, timeout_ms=self._timeout_ms))
        return total

    # -- writes ---------------------------------------------------------------

    async def set(self, key: str, value: Buffer) -> None:
        """Stores ``value`` under ``key`` (its memory is sent as it is; a
        buffer outside host memory is copied to the host first). Returns
        None. Raises ``ValueError`` on a read-only store or for an empty key,
        ``TypeError`` if ``value`` is not a Zarr ``Buffer``, and
        :class:`mochi.yokan.client.Exception` if the call fails."""
        self.set_sync(key, value)

    def set_sync(self, key: str, value: Buffer) -> None:
        """Stores ``value`` under ``key`` without a coroutine; returns None and
        raises as :meth:`set`."""
        self._check_writable()
        self.database.put(self._put_key(key), _host(value), timeout_ms=self._timeout_ms)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Stores ``value`` under ``key`` unless the key exists, atomically
        on the provider (NEW_ONLY). Returns None; raises as :meth:`set`."""
        self._check_writable()
        try:
            self.database.put(
                self._put_key(key), _host(value), Mode.NEW_ONLY, timeout_ms=self._timeout_ms
            )
        except ClientError as e:
            if e.code != YOKAN_ERR_KEY_EXISTS:
                raise

    async def _set_many(self, values: Iterable[Tuple[str, Buffer]]) -> None:
        # One batch instead of the base class's one call per pair.
        self._check_writable()
        pairs = [(self._put_key(k), _host(v)) for k, v in values]
        if pairs:
            self.database.put_multi(pairs, timeout_ms=self._timeout_ms)

    async def delete(self, key: str) -> None:
        """Erases ``key``; an absent key is not an error. Returns None.
        Raises ``ValueError`` on a read-only store,
        :class:`mochi.yokan.client.Exception` if the call fails."""
        self.delete_sync(key)

    def delete_sync(self, key: str) -> None:
        """Erases ``key`` without a coroutine; returns None and raises as
        :meth:`delete`."""
        self._check_writable()
        if key or self._prefix:
            self.database.erase(self._key(key), timeout_ms=self._timeout_ms)

    async def delete_dir(self, prefix: str) -> None:
        """Erases every key under ``prefix + "/"`` (``""``: the whole store)
        in one call on the provider, which needs no listing. Returns None.
        Raises ``ValueError`` on a read-only store,
        :class:`mochi.yokan.client.Exception` if the call fails."""
        self._check_writable()
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.database.erase_range(self._prefix + prefix, timeout_ms=self._timeout_ms)

    async def clear(self) -> None:
        """Erases every key of the store (with an empty prefix: of the whole
        database, document collections included). Returns None; raises as
        :meth:`delete_dir`."""
        await self.delete_dir("")

    # -- listings -------------------------------------------------------------

    async def is_empty(self, prefix: str) -> bool:
        """Returns True if no key lies under ``prefix + "/"`` (``""``: the
        whole store). Raises ``NotImplementedError`` on an unsorted backend,
        :class:`mochi.yokan.client.Exception` if the call fails."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        for _ in self._scan(self._prefix + prefix, count=1):
            return False
        return True

    async def list(self) -> AsyncIterator[str]:
        """Yields every key of the store, in key order. Raises
        ``NotImplementedError`` on an unsorted backend,
        :class:`mochi.yokan.client.Exception` if a call fails."""
        for key in self._scan(self._prefix):
            yield key[self._cut :].decode()

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Yields the keys of the store that start with ``prefix``, relative
        to the store's root, in key order. Raises as :meth:`list`."""
        for key in self._scan(self._prefix + prefix):
            yield key[self._cut :].decode()

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """Yields the direct children of ``prefix``: the names of keys and of
        "directories" right under ``prefix + "/"``, each once, in key order.
        Past each directory the listing starts again from the key after
        it, so the keys a directory holds are not listed. Raises as
        :meth:`list`."""
        base = prefix.rstrip("/")
        for name in self._children(self._prefix + (base + "/" if base else "")):
            yield name

    # -- internals ----------------------------------------------------------

    def _key(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"Zarr keys are str, not {type(key).__name__}")
        return self._prefix + key

    def _put_key(self, key: str) -> str:
        if not (key or self._prefix):
            raise ValueError("the empty key cannot be stored")
        return self._key(key)

    def _read(self, key: str) -> Optional[npt.NDArray[np.uint8]]:
        """The value of ``key`` in a numpy array of its own, or None."""
        db = self.database
        guess = self._guess
        while True:
            out = np.empty(guess, dtype=np.uint8)
            (size,) = db.get_multi([(key, out)], timeout_ms=self._timeout_ms)
            if size is None:
                return None
            if size >= 0:
                return _fitted(out, size)
            # The guess was short: ask for the size, remember it, read again
            # (again if the value grew in between).
            length = db.length(key, timeout_ms=self._timeout_ms)
            if length is None:
                return None
            guess = length
            self._learn(length)

    def _read_range_of(self, key: str, byte_range: ByteRequest) -> Optional[npt.NDArray[np.uint8]]:
        """_read_range of a store key (None for the empty key without a prefix)."""
        return self._read_range(self._key(key), byte_range) if key or self._prefix else None

    def _read_range(self, key: str, byte_range: ByteRequest) -> Optional[npt.NDArray[np.uint8]]:
        """The bytes ``byte_range`` selects of the value of ``key``, clipped to
        it (as Zarr's own stores clip), or None if absent. The provider cuts
        them: only they are transferred."""
        db = self.database
        try:
            if isinstance(byte_range, RangeByteRequest):
                length = max(0, byte_range.end - byte_range.start)
                data = db.get_range(key, byte_range.start, length, timeout_ms=self._timeout_ms)
            elif isinstance(byte_range, OffsetByteRequest):
                data = db.get_range(key, byte_range.offset, timeout_ms=self._timeout_ms)
            else:
                data = db.get_range(key, suffix=byte_range.suffix, timeout_ms=self._timeout_ms)
        except ClientError as e:
            if e.code == YOKAN_ERR_KEY_NOT_FOUND:
                return None
            raise
        # A read-only view of the reply's bytes, no copy (as Zarr's LocalStore
        # returns the bytes it read).
        return np.frombuffer(data, dtype=np.uint8)

    def _read_many(self, keys: Sequence[str]) -> Dict[str, npt.NDArray[np.uint8]]:
        """The values of the distinct ``keys`` (absent ones left out), read in
        batches of at most _BATCH_BYTES of destination buffers (and one more
        size query and read for the values larger than the guess)."""
        wanted = [k for k in dict.fromkeys(keys) if k or self._prefix]
        found: Dict[str, npt.NDArray[np.uint8]] = {}
        step = max(1, _BATCH_BYTES // self._guess)
        for i in range(0, len(wanted), step):
            self._read_batch(wanted[i : i + step], [self._guess] * len(wanted[i : i + step]), found)
        return found

    def _read_batch(
        self, keys: List[str], guesses: List[int], found: Dict[str, npt.NDArray[np.uint8]]
    ) -> None:
        db = self.database
        while keys:
            outs = [np.empty(g, dtype=np.uint8) for g in guesses]
            sizes = db.get_multi(
                [(self._key(k), o) for k, o in zip(keys, outs)], timeout_ms=self._timeout_ms
            )
            short = []
            for key, out, size in zip(keys, outs, sizes):
                if size is not None and size >= 0:
                    found[key] = _fitted(out, size)
                elif size == -1:
                    short.append(key)
            if not short:
                return
            lengths = db.length_multi([self._key(k) for k in short], timeout_ms=self._timeout_ms)
            keys = [k for k, n in zip(short, lengths) if n is not None]
            guesses = [n for n in lengths if n is not None]
            for n in guesses:
                self._learn(n)

    def _learn(self, size: int) -> None:
        if self._guess < size <= _MAX_GUESS:
            self._guess = size

    def _scan(
        self, filter_: str, count: int = 0, from_key: bytes = b"", page: int = _PAGE
    ) -> Iterator[bytes]:
        """Full keys (bytes) that start with ``filter_``, in key order, from
        ``from_key`` (inclusive) when given, ``page`` keys per request."""
        mode = Mode.INCLUSIVE if from_key else 0
        try:
            for key, _ in self.database.scan(
                from_key, filter_, count, mode, page, True, self._timeout_ms
            ):
                yield key
        except ClientError as e:
            if e.code == YOKAN_ERR_OP_UNSUPPORTED:
                raise NotImplementedError(
                    f"{self!r}: listing keys needs a sorted backend (map, rocksdb, "
                    "leveldb, lmdb, berkeleydb btree, tkrzw tree); this provider's "
                    f"backend cannot list keys in order ({e})"
                ) from e
            raise

    def _children(self, directory: str) -> Iterator[str]:
        base = directory.encode()
        from_key = b""
        while True:
            skip_to = None
            # Small pages: a page that reaches into a directory is cut short.
            for key in self._scan(directory, from_key=from_key, page=_DIR_PAGE):
                rest = key[len(base) :]
                slash = rest.find(b"/")
                if slash < 0:
                    if rest:
                        yield rest.decode()
                    continue
                if slash > 0:
                    yield rest[:slash].decode()
                # Everything under "name/" sorts before "name0": list on from there.
                skip_to = base + rest[:slash] + _PAST_SLASH
                break
            if skip_to is None:
                return
            from_key = skip_to


# -- helpers -------------------------------------------------------------------


def _check_range(byte_range: Optional[ByteRequest]) -> None:
    if byte_range is None:
        return
    values: Tuple[int, ...]
    if isinstance(byte_range, RangeByteRequest):
        values = (byte_range.start, byte_range.end)
    elif isinstance(byte_range, OffsetByteRequest):
        values = (byte_range.offset,)
    elif isinstance(byte_range, SuffixByteRequest):
        values = (byte_range.suffix,)
    else:
        raise TypeError(f"Unexpected byte_range, got {byte_range!r}.")
    if any(v < 0 for v in values):
        raise ValueError(f"byte_range must not be negative, got {byte_range!r}")


def _fitted(out: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """The first ``size`` bytes of ``out``: a view when they fill at least
    half of it, else a tight copy, so that a small value does not keep a
    large allocation alive."""
    if 2 * size >= len(out):
        return out[:size]
    return out[:size].copy()


def _wrap(prototype: Optional[BufferPrototype], data: npt.NDArray[np.uint8]) -> Buffer:
    """A Zarr buffer of ``prototype`` over ``data``: no copy for host memory."""
    cls = (prototype or default_buffer_prototype()).buffer
    if cls is cpu.Buffer:
        return cpu.Buffer(data)
    # Another buffer class (e.g. device memory) moves the data where it lives.
    return cls.from_buffer(cpu.Buffer(data))


def _host(value: Buffer) -> Any:
    """The memory of a Zarr buffer as a buffer-protocol object, without a
    copy when it is in host memory."""
    if not isinstance(value, Buffer):
        raise TypeError(f"values are Zarr Buffers, not {type(value).__name__}")
    data = value.as_array_like()
    return data if isinstance(data, np.ndarray) else value.as_numpy_array()


def _describe(db: Database) -> Tuple[bool, Tuple[_Member, ...]]:
    """(sharded?, members): what a store pickles to find ``db`` again."""
    if isinstance(db, ShardedDatabase):
        return True, tuple((s.address, s.provider_id) for s in db.shards)
    if isinstance(db, Database):
        return False, ((db.address, db.provider_id),)
    raise TypeError(f"db must be a mochi.yokan Database, not {type(db).__name__}")


# Live handles by target, so that a store unpickled in the process that
# pickled it reuses the connection instead of starting an engine.
_HANDLES: "weakref.WeakValueDictionary[Tuple[bool, Tuple[_Member, ...]], Database]" = (
    weakref.WeakValueDictionary()
)
# Client engines started for unpickled stores, one per protocol.
_CLIENTS: Dict[str, Tuple[Engine, Client]] = {}
_LOCK = threading.Lock()


def _remember_handle(sharded: bool, members: Tuple[_Member, ...], db: Database) -> None:
    with _LOCK:
        _HANDLES.setdefault((sharded, members), db)


def _connect(sharded: bool, members: Tuple[_Member, ...]) -> Database:
    """A handle on the target: a live one of this process, or a new one
    through the shared client engine of the members' protocol."""
    with _LOCK:
        live = _HANDLES.get((sharded, members))
        if live is not None:
            return live
        protocol = members[0][0].split("://", 1)[0]
        if protocol not in _CLIENTS:
            engine = Engine(protocol, mode=client_mode)
            _CLIENTS[protocol] = (engine, Client(engine))
        client = _CLIENTS[protocol][1]
    handles = [client.make_database_handle(addr, pid) for addr, pid in members]
    db: Database
    if sharded:
        db = ShardedDatabase(handles)
    else:
        db = handles[0]
    _remember_handle(sharded, members, db)
    return db


@atexit.register
def _stop_clients() -> None:
    # Finalize the engines this module started before the interpreter tears
    # down the objects they call back into.
    with _LOCK:
        for engine, _ in _CLIENTS.values():
            engine.finalize()
        _CLIENTS.clear()
