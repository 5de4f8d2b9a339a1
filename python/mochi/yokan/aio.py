"""The asyncio client: :class:`AsyncClient`, :class:`AsyncDatabase`,
:class:`AsyncCollection`.

Every method of the blocking :class:`~mochi.yokan.client.Database` and
:class:`~mochi.yokan.collection.Collection` has a coroutine twin here with
the same arguments, results and exceptions (``await db.get(key)``);
``scan`` is an async iterator (``async for key, value in db.scan()``).

How it works: each call is sent at once by the engine (no thread per call,
no executor), and the event loop learns of its reply through one eventfd per
loop, watched with ``loop.add_reader``, that the engine's progress thread
signals once per batch of completed calls. Any number of calls may be in
flight from one task (``asyncio.gather`` of 1000 gets sends 1000 requests
before the first reply is collected). Cancelling the task that awaits a
call gives the call up: its late reply is dropped and nothing of it stays
behind. ``timeout_ms`` works as in the blocking API (a deadline the loop
keeps; ``YOKAN_ERR_TIMEOUT`` when it passes). Works on the default loop and
on ``uvloop``.

Buffers: a call owns copies of its request and reply, so keys and values
may change as soon as the call is started, and an output buffer (``get``
into a ``bytearray`` or numpy array) is written only when the awaiting task
resumes, never after a cancel. This costs one copy of each value compared
to the blocking calls, which receive large values in place.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import weakref
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)

from mochi.yokan import _client
from mochi.yokan._types import Buffer, Data
from mochi.yokan.client import (
    _INCLUSIVE,
    _LIB_FILTER,
    _LUA_FILTER,
    _NO_PREFIX,
    _SUFFIX,
    Client,
    Database,
    KeyCallback,
    _found,
    _get_args,
    _is_pair,
    _packed,
    _put_multi_args,
    _range_args,
    _range_result,
    _split_packed,
)
from mochi.yokan.collection import (
    _UINT64_MAX,
    DocCallback,
    Document,
    _doc,
    _id,
    _json_objects,
    _split,
    query_to_lua,
)
from mochi.yokan.exception import YOKAN_ERR_BUFFER_SIZE, YOKAN_ERR_KEY_NOT_FOUND
from mochi.yokan.exception import ClientException as Exception  # noqa: A004

__all__ = ["AsyncClient", "AsyncCollection", "AsyncDatabase", "Exception", "in_flight"]

# Timeouts from this value on mean "no limit" (as in the engine).
_NO_DEADLINE_MS = 1e12


class _LoopCompletions:
    """One per event loop: the completion queue whose eventfd the loop
    watches, and the future of each call in flight, by cookie."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue = _client.CompletionQueue()
        self.waiting: Dict[int, asyncio.Future[bool]] = {}
        self.cookies = itertools.count(1)
        # The loop holds the queue (through this bound method) as long as it
        # watches its fd; both go with the loop.
        loop.add_reader(self.queue.fd(), self._drain)

    def _drain(self) -> None:
        for cookie in self.queue.take():
            # A cookie no one waits for was cancelled or timed out: dropped.
            fut = self.waiting.pop(cookie, None)
            if fut is not None and not fut.done():
                fut.set_result(False)


_PER_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCompletions] = (
    weakref.WeakKeyDictionary()
)


def _completions(loop: asyncio.AbstractEventLoop) -> _LoopCompletions:
    state = _PER_LOOP.get(loop)
    if state is None:
        state = _PER_LOOP[loop] = _LoopCompletions(loop)
    return state


def in_flight() -> Tuple[int, int]:
    """Returns ``(now, peak)``: the calls of the running loop started and not
    yet collected or given up, and the most there were at once since the
    last call of this function (a structural measure of concurrency).
    Raises ``RuntimeError`` outside a running event loop."""
    queue = _completions(asyncio.get_running_loop()).queue
    now, peak = queue.in_flight(), queue.peak_in_flight()
    queue.reset_peak()
    return now, peak


def _expired(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


class _Pending:
    """A call sent now, whose result ``result()`` awaits."""

    __slots__ = ("_call", "_cookie", "_fut", "_state", "_timer")

    def __init__(
        self, start: Callable[..., _client.PendingCall], *args: Any, timeout_ms: float
    ) -> None:
        loop = asyncio.get_running_loop()
        state = _completions(loop)
        cookie = next(state.cookies)
        self._call = start(*args, timeout_ms=timeout_ms, completions=state.queue, cookie=cookie)
        self._state = state
        self._cookie = cookie
        self._fut: Optional[asyncio.Future[bool]] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        if self._call.sent():
            self._fut = loop.create_future()
            state.waiting[cookie] = self._fut
            if 0 < timeout_ms < _NO_DEADLINE_MS:
                self._timer = loop.call_later(timeout_ms / 1000.0, _expired, self._fut)

    async def result(self) -> Any:
        if self._fut is not None:
            try:
                timed_out = await self._fut
            except BaseException:  # cancelled: give the call up, drop its reply
                self.cancel()
                raise
            if self._timer is not None:
                self._timer.cancel()
            if timed_out:
                self._state.waiting.pop(self._cookie, None)
                self._call.expire()  # takes the reply if it came in meanwhile
        return self._call.wait()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._state.waiting.pop(self._cookie, None)
        self._call.cancel()


async def _call(start: Callable[..., _client.PendingCall], *args: Any, timeout_ms: float) -> Any:
    return await _Pending(start, *args, timeout_ms=timeout_ms).result()


async def _callback(result: Any) -> Any:
    """The callback's result, awaited if it is awaitable (async callbacks)."""
    if inspect.isawaitable(result):
        return await result
    return result


class AsyncClient:
    """A Yokan client for asyncio, on an engine (``mochi.margo.Engine``)."""

    def __init__(self, engine: Any = None, *, mid: Any = None) -> None:
        """As :class:`~mochi.yokan.client.Client`: raises ``TypeError`` when
        neither or both of ``engine`` and ``mid`` are given."""
        self._client = Client(engine, mid=mid)

    @property
    def client(self) -> Client:
        """Returns the blocking :class:`~mochi.yokan.client.Client` underneath; never raises."""
        return self._client

    async def make_database_handle(
        self, address: Any, provider_id: int, check: bool = True
    ) -> AsyncDatabase:
        """Returns an :class:`AsyncDatabase` for the provider ``provider_id`` at
        ``address``. The lookup (a connection, and with ``check`` one call) runs
        in the loop's default executor, once per handle. Raises as
        :meth:`mochi.yokan.client.Client.make_database_handle`."""
        loop = asyncio.get_running_loop()
        db = await loop.run_in_executor(
            None, self._client.make_database_handle, address, provider_id, check
        )
        return AsyncDatabase(db)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> Literal[False]:
        return False


class AsyncDatabase:
    """The coroutine twin of a :class:`~mochi.yokan.client.Database` (wraps
    one; both can be used side by side). Methods take the blocking method's
    arguments and return or raise what it does."""

    def __init__(self, database: Database) -> None:
        """Wraps the blocking handle ``database``; raises ``TypeError`` if it is not one."""
        if not isinstance(database, Database):
            raise TypeError("AsyncDatabase wraps a mochi.yokan.client.Database")
        self._database = database
        self._db = database._db

    @property
    def database(self) -> Database:
        """Returns the blocking :class:`~mochi.yokan.client.Database`; never raises."""
        return self._database

    @property
    def provider_id(self) -> int:
        """Returns the provider id this handle talks to; never raises."""
        return self._database.provider_id

    @property
    def address(self) -> str:
        """Returns the provider's address string; never raises."""
        return self._database.address

    def transport_info(self) -> str:
        """Returns which UCX transports this handle's connection uses, as text
        (diagnostics; no RPC); never raises."""
        return self._database.transport_info()

    async def __aenter__(self) -> AsyncDatabase:
        return self

    async def __aexit__(self, *exc: object) -> Literal[False]:
        return False

    # -- single key -------------------------------------------------------

    async def count(self, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Returns the number of keys; raises as :meth:`mochi.yokan.client.Database.count`."""
        return cast(int, await _call(self._db.count_start, int(mode), timeout_ms=timeout_ms))

    async def put(self, key: Data, value: Data, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Stores ``value`` under ``key``; returns None. Raises as
        :meth:`mochi.yokan.client.Database.put`."""
        await _call(self._db.put_start, (key,), (value,), int(mode), timeout_ms=timeout_ms)

    async def get(
        self,
        key: Data,
        value: Union[Buffer, int, None] = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> Any:
        """Returns the value of ``key`` as ``bytes``, or with a buffer
        ``value``, writes it there (when the call completes) and returns its
        size. Raises as :meth:`mochi.yokan.client.Database.get`."""
        value, mode = _get_args(value, mode)
        if value is None:
            (result,) = await _call(
                self._db.get_alloc_start, (key,), int(mode), timeout_ms=timeout_ms
            )
        else:
            (result,) = await _call(
                self._db.get_start, (key,), (value,), int(mode), timeout_ms=timeout_ms
            )
        return _found(result)

    async def get_range(
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
        """Returns part of the value of ``key`` (only that part crosses the
        wire) as ``bytes``, or with ``buffer``, writes it there when the call
        completes and returns its size. Takes the arguments of, and raises as,
        :meth:`mochi.yokan.client.Database.get_range`."""
        offset, length, from_end = _range_args(offset, length, suffix)
        size, data = await _call(
            self._db.get_range_start,
            key,
            offset,
            length,
            from_end,
            int(mode),
            timeout_ms=timeout_ms,
        )
        return _range_result(size, data, buffer)

    async def exists(self, key: Data, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        """Returns True if ``key`` is stored; raises as
        :meth:`mochi.yokan.client.Database.exists`."""
        found = await _call(self._db.exists_start, (key,), int(mode), timeout_ms=timeout_ms)
        return cast(bool, found[0])

    async def length(self, key: Data, mode: int = 0, timeout_ms: float = 0.0) -> Optional[int]:
        """Returns the size of the value, None if absent; raises as
        :meth:`mochi.yokan.client.Database.length`."""
        sizes = await _call(self._db.length_start, (key,), int(mode), timeout_ms=timeout_ms)
        return cast(Optional[int], sizes[0])

    async def erase(self, key: Data, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases ``key``; returns None. Raises as
        :meth:`mochi.yokan.client.Database.erase`."""
        await _call(self._db.erase_start, (key,), int(mode), timeout_ms=timeout_ms)

    # -- batches ----------------------------------------------------------

    async def put_multi(
        self,
        pairs: Iterable[Any],
        values: Union[Sequence[Data], int, None] = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """``put_multi([(k, v), ...])`` or ``put_multi(keys, values)``; returns
        None. Raises as :meth:`mochi.yokan.client.Database.put_multi`."""
        keys, vals, mode = _put_multi_args(pairs, values, mode)
        await _call(self._db.put_start, keys, vals, int(mode), timeout_ms=timeout_ms)

    async def put_packed(
        self,
        keys: Data,
        key_sizes: Sequence[int],
        values: Data,
        value_sizes: Sequence[int],
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Stores packed keys and values; returns None. Raises as
        :meth:`mochi.yokan.client.Database.put_packed`."""
        if len(key_sizes) != len(value_sizes):
            raise ValueError("key_sizes and value_sizes should have the same length")
        k, v = _packed(keys, key_sizes), _packed(values, value_sizes)
        await _call(self._db.put_start, k, v, int(mode), timeout_ms=timeout_ms)

    async def get_multi(
        self, pairs: Iterable[Any], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Any]:
        """Returns sizes (with ``(key, buffer)`` pairs) or ``bytes``/None per
        key; raises as :meth:`mochi.yokan.client.Database.get_multi`."""
        items = list(pairs)
        if items and all(_is_pair(p) for p in items):
            keys = [p[0] for p in items]
            buffers = [p[1] for p in items]
            return cast(
                List[Any],
                await _call(self._db.get_start, keys, buffers, int(mode), timeout_ms=timeout_ms),
            )
        return cast(
            List[Any],
            await _call(self._db.get_alloc_start, items, int(mode), timeout_ms=timeout_ms),
        )

    async def get_packed(
        self,
        keys: Data,
        key_sizes: Sequence[int],
        values: Buffer,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Optional[int]]:
        """Writes the values back to back in ``values``; returns their sizes.
        Raises as :meth:`mochi.yokan.client.Database.get_packed`."""
        k = _packed(keys, key_sizes)
        return cast(
            List[Optional[int]],
            await _call(self._db.get_packed_start, k, values, int(mode), timeout_ms=timeout_ms),
        )

    async def exists_multi(
        self, keys: Iterable[Data], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[bool]:
        """Returns one bool per key; raises as
        :meth:`mochi.yokan.client.Database.exists_multi`."""
        return cast(
            List[bool],
            await _call(self._db.exists_start, list(keys), int(mode), timeout_ms=timeout_ms),
        )

    async def exists_packed(
        self, keys: Data, key_sizes: Sequence[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[bool]:
        """Returns one bool per packed key; raises as
        :meth:`mochi.yokan.client.Database.exists_packed`."""
        k = _packed(keys, key_sizes)
        return cast(
            List[bool], await _call(self._db.exists_start, k, int(mode), timeout_ms=timeout_ms)
        )

    async def length_multi(
        self, keys: Iterable[Data], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Returns the value sizes, None for absent keys; raises as
        :meth:`mochi.yokan.client.Database.length_multi`."""
        return cast(
            List[Optional[int]],
            await _call(self._db.length_start, list(keys), int(mode), timeout_ms=timeout_ms),
        )

    async def length_packed(
        self, keys: Data, key_sizes: Sequence[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Returns the value sizes of the packed keys; raises as
        :meth:`mochi.yokan.client.Database.length_packed`."""
        k = _packed(keys, key_sizes)
        return cast(
            List[Optional[int]],
            await _call(self._db.length_start, k, int(mode), timeout_ms=timeout_ms),
        )

    async def erase_multi(
        self, keys: Iterable[Data], mode: int = 0, timeout_ms: float = 0.0
    ) -> None:
        """Erases the keys; returns None. Raises as
        :meth:`mochi.yokan.client.Database.erase_multi`."""
        await _call(self._db.erase_start, list(keys), int(mode), timeout_ms=timeout_ms)

    async def erase_packed(
        self, keys: Data, key_sizes: Sequence[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> None:
        """Erases the packed keys; returns None. Raises as
        :meth:`mochi.yokan.client.Database.erase_packed`."""
        k = _packed(keys, key_sizes)
        await _call(self._db.erase_start, k, int(mode), timeout_ms=timeout_ms)

    async def erase_range(self, prefix: Data, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases every key that starts with ``prefix``; returns None. Raises as
        :meth:`mochi.yokan.client.Database.erase_range`."""
        await _call(self._db.erase_range_start, prefix, int(mode), timeout_ms=timeout_ms)

    # -- listing ----------------------------------------------------------

    async def _list(
        self,
        from_key: Data,
        filter: Data,
        count: int,
        with_values: bool,
        layout: int,
        key_buffers: Any,
        value_buffers: Any,
        mode: int,
        timeout_ms: float,
    ) -> Tuple[List[int], List[int]]:
        result = await _Pending(
            _with_layout(self._db.list_start, layout, key_buffers, value_buffers),
            from_key,
            filter,
            count,
            with_values,
            int(mode),
            timeout_ms=timeout_ms,
        ).result()
        return cast(Tuple[List[int], List[int]], result)

    async def list_keys(
        self,
        keys: Iterable[Buffer],
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Fills the buffers in ``keys``; returns their sizes (-1: too small).
        Raises as :meth:`mochi.yokan.client.Database.list_keys`."""
        keys = keys if type(keys) is list else list(keys)
        ksizes, _ = await self._list(
            from_key, filter, len(keys), False, 0, keys, None, mode, timeout_ms
        )
        return ksizes

    async def list_keyvals(
        self,
        pairs: Iterable[Tuple[Buffer, Buffer]],
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Fills (key buffer, value buffer) pairs; returns (key size, value
        size) tuples. Raises as :meth:`mochi.yokan.client.Database.list_keyvals`."""
        pairs = list(pairs)
        ksizes, vsizes = await self._list(
            from_key,
            filter,
            len(pairs),
            True,
            0,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            mode,
            timeout_ms,
        )
        return list(zip(ksizes, vsizes))

    async def list_keys_packed(
        self,
        keys: Buffer,
        count: int,
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Writes up to ``count`` keys back to back in ``keys``; returns their
        sizes. Raises as :meth:`mochi.yokan.client.Database.list_keys_packed`."""
        ksizes, _ = await self._list(
            from_key, filter, int(count), False, 1, [keys], None, mode, timeout_ms
        )
        return ksizes

    async def list_keyvals_packed(
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
        (key size, value size) tuples. Raises as
        :meth:`mochi.yokan.client.Database.list_keyvals_packed`."""
        ksizes, vsizes = await self._list(
            from_key, filter, int(count), True, 1, [keys], [values], mode, timeout_ms
        )
        return list(zip(ksizes, vsizes))

    async def scan(
        self,
        from_key: Data = b"",
        filter: Data = b"",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        ignore_values: bool = False,
        timeout_ms: float = 0.0,
    ) -> AsyncIterator[Tuple[bytes, Optional[bytes]]]:
        """Yields ``(key bytes, value bytes or None)`` in key order, a page of
        ``batch_size`` (default 1024) per round trip, the next page requested
        before the current one is handed out; ``count=0`` means all. Use as
        ``async for key, value in db.scan(...)``. Raises as
        :meth:`mochi.yokan.client.Database.scan`."""
        mode = int(mode)
        page = int(batch_size) if batch_size > 0 else 1024
        remaining = int(count) if count > 0 else None
        strip = bool(mode & _NO_PREFIX) and not (mode & (_LUA_FILTER | _LIB_FILTER))
        filt = filter.encode() if isinstance(filter, str) else bytes(filter)
        n = page if remaining is None else min(page, remaining)
        if n <= 0:
            return
        with_values = not ignore_values
        pending: Optional[_Pending] = _Pending(
            self._db.list_start, from_key, filter, n, with_values, mode, timeout_ms=timeout_ms
        )
        try:
            while pending is not None:
                keys, values = await pending.result()
                pending = None
                if remaining is not None:
                    remaining -= len(keys)
                if len(keys) == n and (remaining is None or remaining > 0):
                    last = keys[-1]
                    if strip:
                        last = last + filt if mode & _SUFFIX else filt + last
                    mode &= ~_INCLUSIVE
                    n = page if remaining is None else min(page, remaining)
                    pending = _Pending(
                        self._db.list_start,
                        last,
                        filter,
                        n,
                        with_values,
                        mode,
                        timeout_ms=timeout_ms,
                    )
                for i, key in enumerate(keys):
                    yield key, values[i] if with_values else None
        finally:
            if pending is not None:  # the caller stopped early: give the page up
                pending.cancel()

    async def iter(
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
        """Calls ``callback(index, key, value)`` (awaited if it returns an
        awaitable) for each matching pair; returns None. A callback returning
        ``False`` stops; its exceptions propagate. Raises as :meth:`scan`."""
        as_str = isinstance(from_key, str)
        index = 0
        async for key, value in self.scan(
            from_key, filter, count, mode, batch_size, ignore_values, timeout_ms
        ):
            k = key.decode() if as_str else memoryview(key)
            v = None if value is None else memoryview(value)
            if await _callback(callback(index, k, v)) is False:
                return
            index += 1

    # -- fetch: get with a callback ----------------------------------------

    async def fetch(
        self, key: Data, callback: KeyCallback, mode: int = 0, timeout_ms: float = 0.0
    ) -> Any:
        """Calls ``callback(0, key, value)`` (awaited if awaitable) and returns
        its result. Raises as :meth:`mochi.yokan.client.Database.fetch`."""
        (value,) = await _call(self._db.get_alloc_start, (key,), int(mode), timeout_ms=timeout_ms)
        k = key if isinstance(key, str) else memoryview(key).toreadonly()  # type: ignore[arg-type]
        return await _callback(callback(0, k, None if value is None else memoryview(value)))

    async def fetch_multi(
        self,
        keys: Iterable[Data],
        callback: KeyCallback,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Calls ``callback(index, key, value)`` for each key, ``batch_size``
        keys per round trip; returns None. Raises as
        :meth:`mochi.yokan.client.Database.fetch_multi`."""
        keys = list(keys)
        step = int(batch_size) if batch_size > 0 else max(len(keys), 1)
        for start in range(0, len(keys), step):
            batch = keys[start : start + step]
            values = await _call(self._db.get_alloc_start, batch, int(mode), timeout_ms=timeout_ms)
            for offset, (key, value) in enumerate(zip(batch, values)):
                k = key if isinstance(key, str) else memoryview(key).toreadonly()  # type: ignore[arg-type]
                v = None if value is None else memoryview(value)
                await _callback(callback(start + offset, k, v))

    async def fetch_packed(
        self,
        keys: Data,
        key_sizes: Sequence[int],
        callback: KeyCallback,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """As :meth:`fetch_multi` for packed keys; returns None. Raises
        ``ValueError`` if the sizes are negative or overrun ``keys``."""
        views = [v.toreadonly() for v in _split_packed(keys, key_sizes, "keys")]
        await self.fetch_multi(views, callback, mode, batch_size, timeout_ms)

    # -- document collections ---------------------------------------------

    async def create_collection(
        self, name: str, mode: int = 0, timeout_ms: float = 0.0
    ) -> AsyncCollection:
        """Creates the collection ``name`` and returns it. Raises as
        :meth:`mochi.yokan.client.Database.create_collection`."""
        coll = AsyncCollection(name, self)
        await _call(coll._native.create_start, int(mode), timeout_ms=timeout_ms)
        return coll

    async def drop_collection(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases the collection and its documents; returns None. Raises as
        :meth:`mochi.yokan.client.Database.drop_collection`."""
        coll = AsyncCollection(name, self)
        await _call(coll._native.drop_start, int(mode), timeout_ms=timeout_ms)

    async def collection_exists(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        """Returns True if the collection exists. Raises as
        :meth:`mochi.yokan.client.Database.collection_exists`."""
        coll = AsyncCollection(name, self)
        return cast(bool, await _call(coll._native.exists_start, int(mode), timeout_ms=timeout_ms))

    def open_collection(self, name: str) -> AsyncCollection:
        """Returns the collection ``name`` without any RPC. Raises
        ``TypeError`` if ``name`` is not a str."""
        return AsyncCollection(name, self)


def _with_layout(
    start: Callable[..., _client.PendingCall], layout: int, *buffers: Any
) -> Callable[..., _client.PendingCall]:
    """``list_start`` with a layout and destinations (keyword arguments of
    the native call, after the ones _Pending passes)."""

    def bound(*args: Any, **kwargs: Any) -> _client.PendingCall:
        if len(buffers) == 2:  # Database: key buffers, value buffers
            kwargs.update(layout=layout, key_buffers=buffers[0], value_buffers=buffers[1])
        else:  # Collection: document buffers
            kwargs.update(layout=layout, buffers=buffers[0])
        return start(*args, **kwargs)

    return bound


class AsyncCollection:
    """The coroutine twin of a :class:`~mochi.yokan.collection.Collection`
    (no RPC is made to create this object). Methods take the blocking
    method's arguments and return or raise what it does."""

    def __init__(self, name: str, database: AsyncDatabase, /) -> None:
        """Raises ``TypeError`` if ``name`` is not a str."""
        if not isinstance(name, str):
            raise TypeError("a collection name is a str")
        self._name = name
        self._database = database
        self._native = _client.Collection(database._db, name)

    @property
    def name(self) -> str:
        """Returns the collection's name; never raises."""
        return self._name

    @property
    def database(self) -> AsyncDatabase:
        """Returns the :class:`AsyncDatabase` it lives in; never raises."""
        return self._database

    def __repr__(self) -> str:
        return f"AsyncCollection({self._name!r})"

    async def size(self, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Returns the number of live documents. Raises as
        :meth:`mochi.yokan.collection.Collection.size`."""
        info = await _call(self._native.info_start, int(mode), timeout_ms=timeout_ms)
        return cast(int, info[0])

    async def last_id(self, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Returns the last id allocated (-1: none). Raises as
        :meth:`mochi.yokan.collection.Collection.last_id`."""
        info = await _call(self._native.info_start, int(mode), timeout_ms=timeout_ms)
        return cast(int, info[1]) - 1

    async def store(self, document: Document, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Stores ``document`` and returns its id. Raises as
        :meth:`mochi.yokan.collection.Collection.store`."""
        ids = await _call(
            self._native.store_start, (_doc(document),), int(mode), timeout_ms=timeout_ms
        )
        return cast(int, ids[0])

    async def store_multi(
        self, documents: Iterable[Document], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[int]:
        """Stores the documents; returns their ids. Raises as
        :meth:`mochi.yokan.collection.Collection.store_multi`."""
        docs = [_doc(d) for d in documents]
        return cast(
            List[int],
            await _call(self._native.store_start, docs, int(mode), timeout_ms=timeout_ms),
        )

    async def store_packed(
        self, documents: Data, doc_sizes: Iterable[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[int]:
        """Stores packed documents; returns their ids. Raises as
        :meth:`mochi.yokan.collection.Collection.store_packed`."""
        docs = _split(documents, doc_sizes)
        return cast(
            List[int],
            await _call(self._native.store_start, docs, int(mode), timeout_ms=timeout_ms),
        )

    async def update(
        self, id: int, document: Document, mode: int = 0, timeout_ms: float = 0.0
    ) -> None:
        """Replaces document ``id``; returns None. Raises as
        :meth:`mochi.yokan.collection.Collection.update`."""
        await _call(
            self._native.update_start,
            (_id(id),),
            (_doc(document),),
            int(mode),
            timeout_ms=timeout_ms,
        )

    async def update_multi(
        self,
        ids: Iterable[int],
        documents: Iterable[Document],
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Replaces the documents ``ids``; returns None. Raises as
        :meth:`mochi.yokan.collection.Collection.update_multi`."""
        ids = [_id(i) for i in ids]
        docs = [_doc(d) for d in documents]
        if len(ids) != len(docs):
            raise ValueError("ids and documents should have the same length")
        await _call(self._native.update_start, ids, docs, int(mode), timeout_ms=timeout_ms)

    async def update_packed(
        self,
        ids: List[int],
        documents: Data,
        doc_sizes: List[int],
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Replaces documents packed in one buffer; returns ``ids``. Raises as
        :meth:`mochi.yokan.collection.Collection.update_packed`."""
        if len(ids) != len(doc_sizes):
            raise ValueError("ids and doc_sizes should have the same length")
        await _call(
            self._native.update_start,
            [_id(i) for i in ids],
            _split(documents, doc_sizes),
            int(mode),
            timeout_ms=timeout_ms,
        )
        return ids

    async def load(
        self, id: int, buffer: Optional[Buffer] = None, mode: int = 0, timeout_ms: float = 0.0
    ) -> Any:
        """Returns document ``id`` as ``bytes``, or its size once written into
        ``buffer``. Raises as :meth:`mochi.yokan.collection.Collection.load`."""
        if buffer is None:
            (size,), (doc,) = await _call(
                self._native.load_start, (_id(id),), 2, None, int(mode), timeout_ms=timeout_ms
            )
        else:
            (size,), _ = await _call(
                self._native.load_start, (_id(id),), 0, (buffer,), int(mode), timeout_ms=timeout_ms
            )
        if size is None:
            raise Exception("Key not found", YOKAN_ERR_KEY_NOT_FOUND)
        if size == -1:
            raise Exception("Buffer too small", YOKAN_ERR_BUFFER_SIZE)
        return doc if buffer is None else size

    async def load_json(self, id: int, mode: int = 0, timeout_ms: float = 0.0) -> Any:
        """Returns document ``id`` parsed as JSON. Raises as
        :meth:`mochi.yokan.collection.Collection.load_json`."""
        return json.loads(await self.load(id, None, mode, timeout_ms))

    async def load_multi(
        self,
        ids: Iterable[int],
        buffers: Optional[Iterable[Buffer]] = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Any]:
        """Returns sizes (with ``buffers``) or ``bytes``/None per id. Raises as
        :meth:`mochi.yokan.collection.Collection.load_multi`."""
        ids = [_id(i) for i in ids]
        if buffers is None:
            _, docs = await _call(
                self._native.load_start, ids, 2, None, int(mode), timeout_ms=timeout_ms
            )
            return cast(List[Any], docs)
        buffers = list(buffers)
        if len(ids) != len(buffers):
            raise ValueError("ids and buffers should have the same length")
        sizes, _ = await _call(
            self._native.load_start, ids, 0, buffers, int(mode), timeout_ms=timeout_ms
        )
        return cast(List[Any], sizes)

    async def load_packed(
        self, ids: Iterable[int], buffer: Buffer, mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Writes documents back to back in ``buffer``; returns their sizes.
        Raises as :meth:`mochi.yokan.collection.Collection.load_packed`."""
        sizes, _ = await _call(
            self._native.load_start,
            [_id(i) for i in ids],
            1,
            (buffer,),
            int(mode),
            timeout_ms=timeout_ms,
        )
        return cast(List[Optional[int]], sizes)

    async def fetch(
        self, id: int, callback: DocCallback, mode: int = 0, timeout_ms: float = 0.0
    ) -> Any:
        """Calls ``callback(0, id, doc)`` (awaited if awaitable) and returns its
        result. Raises as :meth:`mochi.yokan.collection.Collection.fetch`."""
        (doc,) = await self.load_multi((id,), None, mode, timeout_ms)
        return await _callback(callback(0, id, None if doc is None else memoryview(doc)))

    async def fetch_multi(
        self,
        ids: Iterable[int],
        callback: DocCallback,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Calls ``callback(index, id, doc)`` for each id; returns None. Raises
        as :meth:`mochi.yokan.collection.Collection.fetch_multi`."""
        ids = list(ids)
        step = int(batch_size) if batch_size > 0 else max(len(ids), 1)
        for start in range(0, len(ids), step):
            batch = ids[start : start + step]
            docs = await self.load_multi(batch, None, mode, timeout_ms)
            for offset, (doc_id, doc) in enumerate(zip(batch, docs)):
                v = None if doc is None else memoryview(doc)
                await _callback(callback(start + offset, doc_id, v))

    async def length(self, id: int, mode: int = 0, timeout_ms: float = 0.0) -> Optional[int]:
        """Returns the size of document ``id``, None if absent. Raises as
        :meth:`mochi.yokan.collection.Collection.length`."""
        sizes = await _call(self._native.length_start, (_id(id),), int(mode), timeout_ms=timeout_ms)
        return cast(Optional[int], sizes[0])

    async def length_multi(
        self, ids: Iterable[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Returns the document sizes, None for absent ids. Raises as
        :meth:`mochi.yokan.collection.Collection.length_multi`."""
        return cast(
            List[Optional[int]],
            await _call(
                self._native.length_start,
                [_id(i) for i in ids],
                int(mode),
                timeout_ms=timeout_ms,
            ),
        )

    async def erase(self, id: int, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases document ``id``; returns None. Raises as
        :meth:`mochi.yokan.collection.Collection.erase`."""
        await _call(self._native.erase_start, (_id(id),), int(mode), timeout_ms=timeout_ms)

    async def erase_multi(self, ids: Iterable[int], mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases the documents ``ids``; returns None. Raises as
        :meth:`mochi.yokan.collection.Collection.erase_multi`."""
        await _call(
            self._native.erase_start, [_id(i) for i in ids], int(mode), timeout_ms=timeout_ms
        )

    async def list_docs(
        self,
        start_id: int,
        buffers: Iterable[Buffer],
        filter: Data = "",
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Fills the buffers; returns ``(id, size)`` tuples. Raises as
        :meth:`mochi.yokan.collection.Collection.list_docs`."""
        buffers = list(buffers)
        ids, sizes, _ = await _Pending(
            _with_layout(self._native.list_start, 0, buffers),
            _id(start_id),
            filter,
            len(buffers),
            int(mode),
            timeout_ms=timeout_ms,
        ).result()
        return list(zip(ids, sizes))

    async def list_docs_packed(
        self,
        start_id: int,
        buffer: Buffer,
        count: int,
        filter: Data = "",
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Writes up to ``count`` documents back to back in ``buffer``; returns
        ``(id, size)`` tuples. Raises as
        :meth:`mochi.yokan.collection.Collection.list_docs_packed`."""
        ids, sizes, _ = await _Pending(
            _with_layout(self._native.list_start, 1, (buffer,)),
            _id(start_id),
            filter,
            int(count),
            int(mode),
            timeout_ms=timeout_ms,
        ).result()
        return list(zip(ids, sizes))

    async def scan(
        self,
        from_id: int = 0,
        filter: Data = "",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> AsyncIterator[Tuple[int, bytes]]:
        """Yields ``(id, bytes)`` in id order, ``batch_size`` (default 256) per
        round trip, the next page requested before the current one is handed
        out. Raises as :meth:`mochi.yokan.collection.Collection.scan`."""
        page = int(batch_size) if batch_size > 0 else 256
        remaining = int(count) if count > 0 else None
        n = page if remaining is None else min(page, remaining)
        pending: Optional[_Pending] = _Pending(
            self._native.list_start, _id(from_id), filter, n, int(mode), timeout_ms=timeout_ms
        )
        try:
            while pending is not None:
                ids, _, docs = await pending.result()
                pending = None
                if remaining is not None:
                    remaining -= len(ids)
                more = (
                    len(ids) == n
                    and ids[-1] < _UINT64_MAX - 1
                    and (remaining is None or remaining > 0)
                )
                if more:
                    n = page if remaining is None else min(page, remaining)
                    pending = _Pending(
                        self._native.list_start,
                        ids[-1] + 1,
                        filter,
                        n,
                        int(mode),
                        timeout_ms=timeout_ms,
                    )
                for doc_id, doc in zip(ids, docs):
                    yield doc_id, doc
        finally:
            if pending is not None:
                pending.cancel()

    async def iter(
        self,
        callback: DocCallback,
        from_id: int = 0,
        filter: Data = "",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Calls ``callback(index, id, doc)`` (awaited if awaitable) in id
        order; returns None. A callback returning ``False`` stops. Raises as
        :meth:`scan`."""
        index = 0
        async for doc_id, doc in self.scan(from_id, filter, count, mode, batch_size, timeout_ms):
            if await _callback(callback(index, doc_id, memoryview(doc))) is False:
                return
            index += 1

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._documents()

    async def _documents(self) -> AsyncIterator[bytes]:
        async for _, doc in self.scan():
            yield doc

    async def find(
        self,
        query: Dict[str, Any],
        limit: Optional[int] = None,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, Dict[str, Any]]]:
        """Returns ``(id, document)`` pairs of the JSON documents that match
        ``query``. Raises as :meth:`mochi.yokan.collection.Collection.find`."""
        code = query_to_lua(query)
        if limit is not None and limit <= 0:
            return []
        found = self.scan(0, code, limit or 0, _LUA_FILTER, batch_size, timeout_ms)
        return _json_objects([item async for item in found])
