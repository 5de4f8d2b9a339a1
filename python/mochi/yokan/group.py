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
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import os
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


class Group:
    """The members of a group; ``database(provider_id)`` shards over them.

    ``engine``: the ``mochi.margo.Engine`` to reach them with; without one,
    the group starts a client engine of the members' protocol and keeps it.
    """

    def __init__(self, members: Sequence[Member], engine: Any = None) -> None:
        if not members:
            raise ValueError("a group needs at least one member")
        self.members = list(members)
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
        then raises ``TimeoutError``. Raises ``ValueError`` for a malformed file
        and ``OSError`` when it cannot be read."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with open(path) as f:
                    doc = json.load(f)
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON: {e}") from None
            members = _parse_members(doc, path)
            size = doc.get("size")
            if not isinstance(size, int) or len(members) >= size:
                return cls(members, engine)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path}: {len(members)} of {size} members registered")
            time.sleep(0.05)

    def database(self, provider_id: int, check: bool = True) -> "ShardedDatabase":
        """A :class:`ShardedDatabase` over provider ``provider_id`` of every
        member that serves it, in file order.

        Returns the sharded handle. Raises ``ValueError`` if no member serves
        it, and the client's exception naming the member that cannot be
        reached (``check``: also if it has no such provider)."""
        shards = []
        for member in self.members:
            if provider_id not in member.provider_ids:
                continue
            try:
                shards.append(self._client.make_database_handle(member.address, provider_id, check))
            except Exception as e:
                raise Exception(f"member {member.address}: {e}", e.code) from e
        if not shards:
            raise ValueError(f"no member of the group serves provider {provider_id}")
        return ShardedDatabase(shards, self)

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
    """

    def __init__(self, shards: Sequence[Database], group: Optional[Group] = None) -> None:
        native = _client.ShardedDatabase([s._db for s in shards])
        # The batch calls of Database run unchanged on the sharded native
        # object, which binds the same key/value methods.
        super().__init__(cast(Any, native), None)
        self._sharded = native
        self.shards = list(shards)
        self._group = group  # keeps the engine alive

    @property
    def provider_id(self) -> int:
        """Returns the provider id the shards share. Raises nothing."""
        return self.shards[0].provider_id

    @property
    def address(self) -> str:
        """Returns the shards' addresses, comma-separated, in shard order.
        Raises nothing."""
        return ",".join(s.address for s in self.shards)

    def transport_info(self) -> str:
        """Returns, for each shard, which UCX transports its connection
        uses. Raises the client's exception if a connection is gone."""
        return "\n".join(
            f"[{self._sharded.describe(i)}]\n{s.transport_info()}"
            for i, s in enumerate(self.shards)
        )

    def shard_for(self, key: Any) -> Database:
        """Returns the shard (a Database) ``key`` routes to. Raises
        ``TypeError`` for a key that is neither str nor bytes-like."""
        return self.shards[self._sharded.shard_of(key)]

    # -- one key: straight to its shard --------------------------------------

    def put(self, key: Any, value: Any, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Stores ``value`` under ``key`` on the key's shard. Returns None.

        Raises the client's exception, naming the shard, if it fails or times out."""
        self._named(lambda: self.shard_for(key).put(key, value, mode, timeout_ms), key)

    def get(self, key: Any, value: Any = None, mode: int = 0, timeout_ms: float = 0.0) -> Any:
        """As :meth:`Database.get`, on the key's shard: returns the value as
        bytes, or its size when a buffer is given. Raises
        ``YOKAN_ERR_KEY_NOT_FOUND`` if absent.
        Raises the client's exception, naming the shard, if it fails or times out."""
        return self._named(lambda: self.shard_for(key).get(key, value, mode, timeout_ms), key)

    def exists(self, key: Any, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        """Returns whether ``key`` exists on its shard.
        Raises the client's exception, naming the shard, if it fails or times out."""
        return self._named(lambda: self.shard_for(key).exists(key, mode, timeout_ms), key)

    def length(self, key: Any, mode: int = 0, timeout_ms: float = 0.0) -> Optional[int]:
        """Returns the size of ``key``'s value, None if absent.
        Raises the client's exception, naming the shard, if it fails or times out."""
        return self._named(lambda: self.shard_for(key).length(key, mode, timeout_ms), key)

    def erase(self, key: Any, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases ``key`` from its shard. Returns None.
        Raises the client's exception, naming the shard, if it fails or times out."""
        self._named(lambda: self.shard_for(key).erase(key, mode, timeout_ms), key)

    def _named(self, call: Callable[[], _T], key: Any) -> _T:
        try:
            return call()
        except Exception as e:
            if _is_transport_failure(e.code):
                raise Exception(
                    f"{self._sharded.describe(self._sharded.shard_of(key))}: {e}", e.code
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
        per_shard = [
            s.scan(from_key, filter, count, mode, batch_size, ignore_values, timeout_ms)
            for s in self.shards
        ]
        merged = heapq.merge(*per_shard, key=itemgetter(0))
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
