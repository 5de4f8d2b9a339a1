"""Groups of providers and a database sharded over them.

A *group file* lists the members of a group (what ``yokan-server
--group-file`` writes)::

    {"members": [{"address": "tcp://10.0.0.1:7700", "provider_ids": [1, 2]},
                 {"address": "tcp://10.0.0.2:7700", "provider_ids": [1, 2]}],
     "size": 2}

(other keys are allowed and ignored; ``size``, when present, is the number of
members the group will have once every server registered).
``Group.from_file(path).database(1)`` gives a :class:`ShardedDatabase` over
provider 1 of every member that has it, in file order, with the
:class:`~mochi.yokan.client.Database` API.

Routing is stable and documented, so that another language can route the
same way: key ``k`` goes to shard ``jump_consistent_hash(fnv1a_64(k), n)``
(``n`` shards in file order; see ``include/yokan/sharded.hpp``). A
collection lives whole on the shard its name routes to.

A group can grow by one member while clients keep working
(:mod:`mochi.yokan.rebalance`, ``docs/design/rebalance.md``): the file then
also carries ``version`` (bumped at every change of routing), ``state``
(``"stable"`` or ``"moving"``), ``moving_from`` (while moving: how many of the
first members were the group before the move) and ``refresh_ms``. A
:class:`ShardedDatabase` made from a file looks at it again at most every
``refresh_ms`` (a clock read per call; a ``stat`` per period) and follows a new
version before routing the call.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import heapq
import json
import math
import os
import threading
import time
from itertools import islice
from operator import itemgetter
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    cast,
)

from mochi.yokan import _client
from mochi.yokan._types import Buffer, Data
from mochi.yokan.client import Client, Database
from mochi.yokan.collection import Collection
from mochi.yokan.exception import YOKAN_ERR_KEY_NOT_FOUND, YOKAN_ERR_MIGRATED
from mochi.yokan.exception import ClientException as Exception  # noqa: A004

_T = TypeVar("_T")

__all__ = ["Group", "Member", "ShardedDatabase", "shard_of", "fnv1a_64"]


def shard_of(key: Any, shards: int) -> int:
    """Returns the shard (0 .. ``shards`` - 1) that ``key`` (str or
    bytes-like) routes to. Raises ``ValueError`` for ``shards`` < 1."""
    return _client.shard_of(key, shards)


def fnv1a_64(key: Any) -> int:
    """Returns the 64-bit FNV-1a hash of the key's bytes (routing's first
    step). Raises ``TypeError`` for a key that is neither str nor bytes-like."""
    return _client.fnv1a_64(key)


class Member:
    """One server of a group: its address and the provider ids it serves."""

    def __init__(self, address: str, provider_ids: Sequence[int]) -> None:
        self.address = address
        self.provider_ids = list(provider_ids)

    def __repr__(self) -> str:
        return f"Member({self.address!r}, {self.provider_ids!r})"


DEFAULT_REFRESH_MS = 500


def _parse_members(doc: Any, source: str) -> List[Member]:
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), list):
        raise ValueError(f"{source}: a group file is an object with a 'members' list")
    members = []
    for i, item in enumerate(doc["members"]):
        where = f"{source}: members[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            raise ValueError(f"{where} needs an 'address' string")
        ids = item.get("provider_ids", [])
        if not isinstance(ids, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 0xFFFF for p in ids
        ):
            raise ValueError(f"{where}.provider_ids must be a list of integers in [0, 65535]")
        members.append(Member(item["address"], ids))
    return members


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_routing(
    doc: Dict[str, Any], members: int, source: str
) -> Tuple[int, Optional[int], float]:
    """(version, moving_from or None, refresh_ms) of a parsed group file."""
    version = doc.get("version", 0)
    if not _is_int(version) or version < 0:
        raise ValueError(f"{source}: 'version' must be an integer >= 0, not {version!r}")
    state = doc.get("state", "stable")
    if state not in ("stable", "moving"):
        raise ValueError(f"{source}: 'state' must be 'stable' or 'moving', not {state!r}")
    moving_from: Optional[int] = None
    if state == "moving":
        value = doc.get("moving_from")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < members:
            raise ValueError(
                f"{source}: a moving group needs 'moving_from' in [1, {members - 1}], not {value!r}"
            )
        moving_from = value
    refresh_ms = doc.get("refresh_ms", DEFAULT_REFRESH_MS)
    if not isinstance(refresh_ms, (int, float)) or isinstance(refresh_ms, bool) or refresh_ms <= 0:
        raise ValueError(f"{source}: 'refresh_ms' must be a positive number, not {refresh_ms!r}")
    return version, moving_from, float(refresh_ms)


def _read_doc(path: str) -> Tuple[Any, Tuple[int, int, int]]:
    """The parsed file and the (inode, mtime, size) it was read with. Raises
    ``OSError``, and ``ValueError`` for a file that is not JSON."""
    with open(path) as f:
        st = os.fstat(f.fileno())
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
    return doc, (st.st_ino, st.st_mtime_ns, st.st_size)


class Group:
    """The members of a group; ``database(provider_id)`` shards over them.

    ``engine``: the ``mochi.margo.Engine`` to reach them with; without one,
    the group starts a client engine of the members' protocol and keeps it.
    ``version``, ``moving_from`` and ``refresh_ms`` are the group file's (see
    the module's documentation); ``path``: the file, when the group was read
    from one (its databases then follow its changes).
    """

    def __init__(
        self,
        members: Sequence[Member],
        engine: Any = None,
        *,
        version: int = 0,
        moving_from: Optional[int] = None,
        refresh_ms: float = DEFAULT_REFRESH_MS,
        path: Optional[str] = None,
    ) -> None:
        if not members:
            raise ValueError("a group needs at least one member")
        self.members = list(members)
        self.version = version
        self.moving_from = moving_from
        self.refresh_ms = refresh_ms
        self.path = path
        self._signature: Optional[Tuple[int, int, int]] = None
        # Guards the routing fields above (reload() replaces them together)
        # and the handle cache; taken only when the file changed or a
        # database is made, never on a call's path.
        self._lock = threading.Lock()
        self._handles: Dict[Tuple[str, int], Database] = {}
        self._own_engine = None
        if engine is None:
            from mochi.margo import Engine, client

            protocol = self.members[0].address.split("://")[0]
            engine = self._own_engine = Engine(protocol, mode=client)
        self._engine = engine
        self._client = Client(engine)

    @classmethod
    def from_file(cls, path: str, engine: Any = None, wait_s: float = 0.0) -> "Group":
        """Reads a group file. When it says how many members the group has
        (``size``), waits up to ``wait_s`` seconds for all of them to register,
        then raises ``TimeoutError``. Returns the group. Raises ``ValueError``
        for a malformed file and ``OSError`` when it cannot be read."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                doc, signature = _read_doc(path)
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            members = _parse_members(doc, path)
            size = doc.get("size")
            if not isinstance(size, int) or len(members) >= size:
                version, moving_from, refresh_ms = _parse_routing(doc, len(members), path)
                group = cls(
                    members,
                    engine,
                    version=version,
                    moving_from=moving_from,
                    refresh_ms=refresh_ms,
                    path=path,
                )
                group._signature = signature
                return group
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path}: {len(members)} of {size} members registered")
            time.sleep(0.05)

    def reload(self) -> bool:
        """Reads the group file again if it changed since the last read, and
        takes its members and routing when its ``version`` differs (a change
        of members without a new version, such as servers registering or
        stopping, does not change routing). Returns whether the routing
        changed. Raises ``OSError`` and ``ValueError`` as :meth:`from_file`;
        a group not read from a file returns False."""
        if self.path is None:
            return False
        with self._lock:
            st = os.stat(self.path)
            if (st.st_ino, st.st_mtime_ns, st.st_size) == self._signature:
                return False
            doc, signature = _read_doc(self.path)
            members = _parse_members(doc, self.path)
            version, moving_from, refresh_ms = _parse_routing(doc, len(members), self.path)
            self._signature = signature
            self.refresh_ms = refresh_ms
            if version == self.version or not members:
                return False
            self.members, self.version, self.moving_from = members, version, moving_from
            return True

    def _handle(self, address: str, provider_id: int, check: bool) -> Database:
        """The cached handle on one member's provider (refreshes reuse the
        connections of the members that stay)."""
        with self._lock:
            known = self._handles.get((address, provider_id))
        if known is not None:
            return known
        try:
            handle = self._client.make_database_handle(address, provider_id, check)
        except Exception as e:
            raise Exception(f"member {address}: {e}", e.code) from e
        with self._lock:
            return self._handles.setdefault((address, provider_id), handle)

    def _routing(self, provider_id: int, check: bool) -> Tuple[int, List[Database], Optional[int]]:
        """(version, shards, how many of them are the shards before a move
        or None) for ``provider_id``, from one consistent reading."""
        with self._lock:
            version, members, moving_from = self.version, list(self.members), self.moving_from
        shards: List[Database] = []
        before = 0
        for i, member in enumerate(members):
            if provider_id not in member.provider_ids:
                continue
            shards.append(self._handle(member.address, provider_id, check))
            if moving_from is not None and i < moving_from:
                before += 1
        if not shards:
            raise ValueError(f"no member of the group serves provider {provider_id}")
        moving = moving_from is not None and 0 < before < len(shards)
        return version, shards, before if moving else None

    def database(
        self, provider_id: int, check: bool = True, refresh: str = "auto"
    ) -> "ShardedDatabase":
        """A :class:`ShardedDatabase` over provider ``provider_id`` of every
        member that serves it, in file order.

        ``refresh``: what the handle does when the group file (if the group
        was read from one) gets a new version: ``"auto"`` follows it before
        routing the next call; ``"manual"`` fails every call with
        ``YOKAN_ERR_MIGRATED`` until :meth:`ShardedDatabase.refresh` is called.
        Returns the sharded handle. Raises ``ValueError`` if no member serves
        it or ``refresh`` is neither, and the client's exception naming the
        member that cannot be reached (``check``: also if it has no such
        provider)."""
        version, shards, moving_from = self._routing(provider_id, check)
        return ShardedDatabase(
            shards,
            self,
            version=version,
            moving_from=moving_from,
            refresh=refresh,
            check=check,
        )

    def close(self) -> None:
        """Finalizes the engine the group started, if it started one.
        Returns None; raises nothing."""
        if self._own_engine is not None:
            self._own_engine.finalize()
            self._own_engine = None

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.close()
        return False


class _View:
    """One routing of a ShardedDatabase, never changed: a refresh replaces it
    whole (one attribute store, so a call sees the old view or the new one)."""

    __slots__ = ("version", "shards", "native", "moving_from", "db")

    def __init__(
        self, version: int, shards: Sequence[Database], moving_from: Optional[int]
    ) -> None:
        self.version = version
        self.shards = list(shards)
        self.native = _client.ShardedDatabase([s._db for s in self.shards])
        self.moving_from = (
            moving_from if moving_from is not None and 0 < moving_from < len(self.shards) else None
        )
        # What Database's calls run on: the native object itself when stable
        # (the same path as before groups could grow), a router that reads
        # the new shard then the old one while moving.
        self.db: Any = self.native
        if self.moving_from is not None:
            from mochi.yokan.rebalance import MovingRouter

            old = _client.ShardedDatabase([s._db for s in self.shards[: self.moving_from]])
            self.db = MovingRouter(self.native, old, len(self.shards), self.moving_from)


class ShardedDatabase(Database):
    """The :class:`~mochi.yokan.client.Database` API over a group's shards.

    Single-key calls go to the key's shard. ``_multi``/``_packed`` calls are
    split by shard in C++, every shard's request is sent before any reply is
    awaited (the GIL released), and the results come back in key order; a
    batch is not atomic across shards. ``count`` sums the shards and
    ``erase_range`` runs on each. Listings (``list_keys``, ``list_keyvals``,
    their packed forms, ``scan``, ``iter``) merge the shards in key order.
    A failed shard fails the calls that need it with an error naming it; the
    others keep working.

    Made by :meth:`Group.database` from a group file, it follows the file:
    see :meth:`refresh`. While the group grows (``moving_from``: the number
    of shards before the move), writes go to the new routing, reads fall
    back to a key's old shard, erases clear both, and ``count`` may count a
    key being moved twice (``docs/design/rebalance.md``).
    """

    def __init__(
        self,
        shards: Sequence[Database],
        group: Optional[Group] = None,
        *,
        version: int = 0,
        moving_from: Optional[int] = None,
        refresh: str = "auto",
        check: bool = True,
    ) -> None:
        if refresh not in ("auto", "manual"):
            raise ValueError(f"refresh must be 'auto' or 'manual', not {refresh!r}")
        self._client = None
        self._group = group  # keeps the engine alive; the file to follow
        self._view = _View(version, shards, moving_from)
        self._provider = self._view.shards[0].provider_id
        self._refresh = refresh
        self._check = check
        self._refresh_lock = threading.Lock()
        # When to look at the group file next (time.monotonic()); never
        # without one. Looking costs a clock read per call, a stat per period.
        watched = group is not None and group.path is not None
        self._next_check = 0.0 if watched else math.inf

    @property
    def _db(self) -> Any:
        # Every Database call goes through here: the current view's router.
        if time.monotonic() >= self._next_check:
            self._follow()
        return self._view.db

    @_db.setter
    def _db(self, value: Any) -> None:
        raise AttributeError("a ShardedDatabase's routing changes only by refresh()")

    def _current(self) -> _View:
        if time.monotonic() >= self._next_check:
            self._follow()
        return self._view

    def _follow(self) -> None:
        """Looks at the group file (once per ``refresh_ms``) and follows a
        new version, or fails the call if this handle refreshes manually."""
        group = cast(Group, self._group)
        with self._refresh_lock:
            now = time.monotonic()
            if now < self._next_check:
                return  # another thread just looked
            try:
                group.reload()
            except (OSError, ValueError):
                # A file being replaced or removed (the whole group stopped):
                # keep routing as before and look again next period.
                pass
            self._next_check = now + group.refresh_ms / 1000.0
            if group.version == self._view.version:
                return
            if self._refresh == "manual":
                self._next_check = 0.0  # every call fails until refresh()
                raise Exception(
                    f"group file {group.path} is at version {group.version} but this handle "
                    f"routes by version {self._view.version}: call refresh()",
                    YOKAN_ERR_MIGRATED,
                )
            self._install()

    def _install(self) -> None:
        group = cast(Group, self._group)
        try:
            version, shards, moving_from = group._routing(self._provider, self._check)
            self._view = _View(version, shards, moving_from)
        except BaseException:
            # Not routed by the new version: every call tries again (and
            # fails loudly) rather than route by the old one.
            self._next_check = 0.0
            raise

    def refresh(self) -> int:
        """Reads the group file now and follows its version. Returns the
        version this handle routes by. Raises ``OSError`` or ``ValueError``
        for a group file that cannot be read or is malformed, and the
        client's exception naming a new member that cannot be reached."""
        group = self._group
        if group is None or group.path is None:
            return self._view.version
        with self._refresh_lock:
            group.reload()
            if group.version != self._view.version:
                self._install()
            self._next_check = time.monotonic() + group.refresh_ms / 1000.0
        return self._view.version

    @property
    def version(self) -> int:
        """Returns the group file version this handle routes by (0 without
        a file); never raises."""
        return self._view.version

    @property
    def moving(self) -> bool:
        """Returns whether this handle routes as during a move (new shard
        first, old shard as fallback); never raises."""
        return self._view.moving_from is not None

    @property
    def shards(self) -> List[Database]:
        """Returns the shards (one Database per member), in routing order;
        never raises."""
        return self._view.shards

    @property
    def _sharded(self) -> Any:
        return self._view.native

    @property
    def provider_id(self) -> int:
        """Returns the provider id the shards share. Raises nothing."""
        return self._provider

    @property
    def address(self) -> str:
        """Returns the shards' addresses, comma-separated, in shard order.
        Raises nothing."""
        return ",".join(s.address for s in self.shards)

    def transport_info(self) -> str:
        """Returns, for each shard, which UCX transports its connection
        uses. Raises the client's exception if a connection is gone."""
        view = self._view
        return "\n".join(
            f"[{view.native.describe(i)}]\n{s.transport_info()}" for i, s in enumerate(view.shards)
        )

    def shard_for(self, key: Any) -> Database:
        """Returns the shard (a Database) ``key`` routes to (during a move:
        its new shard). Raises ``TypeError`` for a key that is neither str nor
        bytes-like, and ``YOKAN_ERR_MIGRATED`` as :meth:`refresh` explains."""
        view = self._current()
        return view.shards[view.native.shard_of(key)]

    # -- one key: straight to its shard --------------------------------------

    def put(self, key: Any, value: Any, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Stores ``value`` under ``key`` on the key's shard. Returns None.

        Raises the client's exception, naming the shard, if it fails or times out."""
        view = self._current()
        if view.moving_from is not None:
            return Database.put(self, key, value, mode, timeout_ms)
        self._named(
            view,
            lambda: view.shards[view.native.shard_of(key)].put(key, value, mode, timeout_ms),
            key,
        )

    def get(self, key: Any, value: Any = None, mode: int = 0, timeout_ms: float = 0.0) -> Any:
        """As :meth:`Database.get`, on the key's shard: returns the value as
        bytes, or its size when a buffer is given. Raises
        ``YOKAN_ERR_KEY_NOT_FOUND`` if absent.
        Raises the client's exception, naming the shard, if it fails or times out."""
        view = self._current()
        if view.moving_from is not None:
            return Database.get(self, key, value, mode, timeout_ms)
        return self._named(
            view,
            lambda: view.shards[view.native.shard_of(key)].get(key, value, mode, timeout_ms),
            key,
        )

    def get_range(
        self,
        key: Any,
        offset: int = 0,
        length: Optional[int] = None,
        *,
        suffix: Optional[int] = None,
        buffer: Any = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> Any:
        """As :meth:`Database.get_range`, on the key's shard: returns the
        range as bytes, or its size when a ``buffer`` is given; only the range
        crosses the wire. While shards are being added, a key absent from its
        new shard is read from its old one, then the new one again (the mover
        copies before it erases, as the other reads do). Raises ``YOKAN_ERR_KEY_NOT_FOUND`` if
        absent, and the client's exception, naming the shard, if it fails or
        times out."""
        view = self._current()

        def read(shard: Database) -> Any:
            return shard.get_range(
                key,
                offset,
                length,
                suffix=suffix,
                buffer=buffer,
                mode=mode,
                timeout_ms=timeout_ms,
            )

        new = view.shards[view.native.shard_of(key)]
        old = new if view.moving_from is None else view.shards[shard_of(key, view.moving_from)]
        if old is new:
            return self._named(view, lambda: read(new), key)
        for shard in (new, old):
            try:
                return self._named(view, functools.partial(read, shard), key)
            except Exception as e:
                if e.code != YOKAN_ERR_KEY_NOT_FOUND:
                    raise
        return self._named(view, lambda: read(new), key)

    def exists(self, key: Any, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        """Returns whether ``key`` exists on its shard.
        Raises the client's exception, naming the shard, if it fails or times out."""
        view = self._current()
        if view.moving_from is not None:
            return Database.exists(self, key, mode, timeout_ms)
        return self._named(
            view, lambda: view.shards[view.native.shard_of(key)].exists(key, mode, timeout_ms), key
        )

    def length(self, key: Any, mode: int = 0, timeout_ms: float = 0.0) -> Optional[int]:
        """Returns the size of ``key``'s value, None if absent.
        Raises the client's exception, naming the shard, if it fails or times out."""
        view = self._current()
        if view.moving_from is not None:
            return Database.length(self, key, mode, timeout_ms)
        return self._named(
            view, lambda: view.shards[view.native.shard_of(key)].length(key, mode, timeout_ms), key
        )

    def erase(self, key: Any, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases ``key`` from its shard. Returns None.
        Raises the client's exception, naming the shard, if it fails or times out."""
        view = self._current()
        if view.moving_from is not None:
            return Database.erase(self, key, mode, timeout_ms)
        self._named(
            view, lambda: view.shards[view.native.shard_of(key)].erase(key, mode, timeout_ms), key
        )

    def _named(self, view: _View, call: Callable[[], _T], key: Any) -> _T:
        try:
            return call()
        except Exception as e:
            if _is_transport_failure(e.code):
                raise Exception(
                    f"{view.native.describe(view.native.shard_of(key))}: {e}", e.code
                ) from e
            raise

    # -- listings: the shards merged in key order -----------------------------

    def scan(
        self,
        from_key: Any = b"",
        filter: Any = b"",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        ignore_values: bool = False,
        timeout_ms: float = 0.0,
    ) -> Iterator[Any]:
        """Returns an iterator of ``(key, value)`` pairs in key order, merged
        from every shard (as :meth:`Database.scan`). Raises
        ``YOKAN_ERR_OP_UNSUPPORTED`` on unsorted backends.
        Raises the client's exception, naming the shard, if it fails or times out."""
        view = self._current()
        per_shard = [
            s.scan(from_key, filter, count, mode, batch_size, ignore_values, timeout_ms)
            for s in view.shards
        ]
        merged: Iterator[Any]
        if view.moving_from is None:
            merged = heapq.merge(*per_shard, key=itemgetter(0))
        else:
            merged = _newest_first(per_shard, view.moving_from)
        return islice(merged, count) if count > 0 else merged

    def _first(
        self, n: int, from_key: Any, filter: Any, mode: int, with_values: bool, timeout_ms: float
    ) -> List[Any]:
        return (
            list(self.scan(from_key, filter, n, mode, n, not with_values, timeout_ms))
            if n > 0
            else []
        )

    def list_keys(
        self,
        keys: Iterable[Buffer],
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Fills the buffers in ``keys`` with the first keys in merged key
        order; returns their sizes (-1: too small).
        Raises the client's exception, naming the shard, if it fails or times out."""
        keys = list(keys)
        found = self._first(len(keys), from_key, filter, int(mode), False, timeout_ms)
        return [_place(buf, k) for buf, (k, _) in zip(keys, found)]

    def list_keyvals(
        self,
        pairs: Iterable[Tuple[Buffer, Buffer]],
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Fills (key buffer, value buffer) pairs in merged key order;
        returns (key size, value size) tuples.
        Raises the client's exception, naming the shard, if it fails or times out."""
        pairs = list(pairs)
        found = self._first(len(pairs), from_key, filter, int(mode), True, timeout_ms)
        return [(_place(kb, k), _place(vb, v)) for (kb, vb), (k, v) in zip(pairs, found)]

    def list_keys_packed(
        self,
        keys: Buffer,
        count: int,
        from_key: Data,
        filter: Data,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Up to ``count`` keys back to back in ``keys``; returns
        their sizes (-1 from the first that does not fit).
        Raises the client's exception, naming the shard, if it fails or times out."""
        found = self._first(int(count), from_key, filter, int(mode), False, timeout_ms)
        return _pack(keys, [k for k, _ in found])

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
        """Keys back to back in ``keys``, values in ``values``;
        returns (key size, value size) tuples.
        Raises the client's exception, naming the shard, if it fails or times out."""
        found = self._first(int(count), from_key, filter, int(mode), True, timeout_ms)
        ksizes = _pack(keys, [k for k, _ in found])
        vsizes = _pack(values, [v for _, v in found])
        return list(zip(ksizes, vsizes))

    # -- collections: each lives whole on the shard its name routes to --------

    def create_collection(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> Collection:
        """Creates the collection on the shard its name routes to
        and returns it. Raises ``YOKAN_ERR_KEY_EXISTS`` if it exists."""
        return self.shard_for(name).create_collection(name, mode, timeout_ms)

    def drop_collection(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases the collection and its documents. Returns None.
        Raises ``YOKAN_ERR_KEY_NOT_FOUND`` if it does not exist."""
        return self.shard_for(name).drop_collection(name, mode, timeout_ms)

    def collection_exists(self, name: str, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        """Returns whether the collection exists on its shard.
        Raises the client's exception if that shard fails."""
        return self.shard_for(name).collection_exists(name, mode, timeout_ms)

    def open_collection(self, name: str) -> Collection:
        """Returns the collection ``name`` on its shard, without any
        RPC. Raises nothing."""
        return self.shard_for(name).open_collection(name)


def _newest_first(per_shard: List[Iterator[Any]], moving_from: int) -> Iterator[Any]:
    """The shards' listings merged in key order during a move: a key being
    moved may be on its old shard and its new one at once; the new one's
    value is the current one, and the key is listed once."""

    def tagged(items: Iterator[Any], rank: int) -> Iterator[Tuple[Any, int, Any]]:
        for k, v in items:
            yield k, rank, v

    streams = [tagged(it, 0 if i >= moving_from else 1) for i, it in enumerate(per_shard)]
    last: Any = None
    for k, _, v in heapq.merge(*streams, key=itemgetter(0, 1)):
        if k != last:
            last = k
            yield k, v


def _is_transport_failure(code: Optional[int]) -> bool:
    from mochi.yokan.exception import YOKAN_ERR_FROM_MERCURY, YOKAN_ERR_TIMEOUT

    return code in (YOKAN_ERR_FROM_MERCURY, YOKAN_ERR_TIMEOUT)


def _place(buffer: Any, data: Optional[bytes]) -> int:
    """Copies ``data`` into ``buffer``: its size, or -1 if it does not fit."""
    if data is None:
        return 0
    view = memoryview(buffer).cast("B")
    if len(data) > len(view):
        return -1
    view[: len(data)] = data
    return len(data)


def _pack(buffer: Any, items: List[bytes]) -> List[int]:
    """Items back to back in ``buffer``; once one does not fit, it and every
    later one are -1 (as a provider's packed listing reports them)."""
    view = memoryview(buffer).cast("B")
    sizes, at, overflowed = [], 0, False
    for item in items:
        if overflowed or at + len(item) > len(view):
            overflowed = True
            sizes.append(-1)
            continue
        view[at : at + len(item)] = item
        at += len(item)
        sizes.append(len(item))
    return sizes


def write_group_file(path: str, doc: Dict[str, Any]) -> None:
    """Writes a group file atomically: readers see the old one or all of the
    new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Holds an exclusive lock on ``PATH.lock`` (several servers register in
    one group file; on a shared file system, flock must reach every node)."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_members(path: str) -> Dict[str, Any]:
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {"members": []}
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), list):
        raise ValueError(f"{path}: not a group file (an object with a 'members' list)")
    return doc


def register_member(
    path: str,
    address: str,
    provider_ids: Sequence[int],
    size: Optional[int] = None,
    rank: Optional[int] = None,
) -> int:
    """Adds this member to the group file, atomically and under a lock,
    keeping any other keys the file has; returns how many members it lists.

    A member with a ``rank`` takes the place of an earlier entry of that rank
    (a server restarted after a crash, on a new port), and the members are
    kept in rank order: a shard is its rank, so data stays routable across
    restarts. Members without a rank follow, in the order they registered.
    """
    with _locked(path):
        doc = _read_members(path)
        members = [
            m
            for m in doc["members"]
            if m.get("address") != address and (rank is None or m.get("rank") != rank)
        ]
        entry: Dict[str, Any] = {
            "address": address,
            "provider_ids": list(provider_ids),
            "pid": os.getpid(),
        }
        if rank is not None:
            entry["rank"] = rank
        members.append(entry)
        ranked = sorted(
            (m for m in members if isinstance(m.get("rank"), int)), key=lambda m: m["rank"]
        )
        doc["members"] = ranked + [m for m in members if not isinstance(m.get("rank"), int)]
        members = doc["members"]
        if size is not None:
            doc["size"] = size
        write_group_file(path, doc)
        return len(members)


def unregister_member(path: str, address: str) -> None:
    """Removes this member from the group file (a clean stop)."""
    with _locked(path):
        doc = _read_members(path)
        doc["members"] = [m for m in doc["members"] if m.get("address") != address]
        write_group_file(path, doc)
