"""Growing a group by one member while its clients keep working.

    yokan-group grow GROUP_FILE ADDRESS [--provider-ids 1,2] [--grace S]
    yokan-group check GROUP_FILE [--provider-id P]

(also ``python -m mochi.yokan.rebalance``; ``yokan-server ... --group-file F
--join`` runs ``grow`` for the server it starts). The protocol, in short (the
whole of it, with its limits, is ``docs/design/rebalance.md``):

1. ``grow`` appends the member to the group file with a new ``version``,
   ``state: "moving"`` and ``moving_from`` (how many members there were).
2. It waits ``refresh_ms`` plus a grace period: every client that calls
   looks at the file at least once per ``refresh_ms`` before routing, so
   from then on every call routes as during a move: writes to the key's new
   shard, reads from the new shard then the old one, erases on both.
3. It copies each old shard's keys that now route to the new member with
   ``NEW_ONLY`` (a client's newer write is never overwritten), then erases
   them from the old shard; a second pass over the old shards' keys catches
   any stray write.
4. It writes ``state: "stable"`` with a new version: clients drop the
   fallback reads.

An interrupted ``grow`` leaves the group moving (clients keep working): run
it again with the same address to finish.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mochi.yokan import _client
from mochi.yokan.client import Database, _split_packed
from mochi.yokan.exception import YOKAN_ERR_KEY_EXISTS
from mochi.yokan.exception import ClientException as Exception  # noqa: A004
from mochi.yokan.group import (
    DEFAULT_REFRESH_MS,
    Group,
    _locked,
    _parse_members,
    _parse_routing,
    _read_members,
    write_group_file,
)
from mochi.yokan.mode import Mode

__all__ = ["MovingRouter", "grow", "check", "main"]

_NEW_ONLY = int(Mode.NEW_ONLY)
# Puts whose result depends on what the key holds: during a move the key's
# value is brought to its new shard first, so that they see it.
_CONDITIONAL = int(Mode.NEW_ONLY | Mode.EXIST_ONLY | Mode.APPEND)
DEFAULT_GRACE_S = 2.0
DEFAULT_BATCH = 1000


def _items(keys: Any) -> List[Any]:
    """A batch's keys (or values) one by one: a list as given, or the slices
    of a packed (buffer, sizes) pair."""
    if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[1], list):
        return list(_split_packed(keys[0], keys[1], "keys"))
    return list(keys)


def home(key: Any, shards: int) -> int:
    """Returns the shard a stored key belongs to: a document's key (its
    collection's name, a 0 byte, an 8-byte id) goes with its collection's
    name, every other key by itself (:func:`mochi.yokan.group.shard_of`).
    Raises ``TypeError`` for a key that is neither str nor bytes-like."""
    if not isinstance(key, str):
        b = memoryview(key).cast("B")
        if len(b) >= 10 and b[-9] == 0:
            return _client.shard_of(b[:-9], shards)
    return _client.shard_of(key, shards)


class MovingRouter:
    """What a :class:`~mochi.yokan.group.ShardedDatabase` runs its calls on
    while its group grows: the native call interface (``put(keys, values,
    mode, timeout_ms)`` ...) over the new routing (``new``, ``shards``
    shards) and the old one (``old``, its first ``moving_from`` shards).

    Writes go to the new routing. Reads of the keys that move (those whose
    new shard is not an old one) that find nothing on the new shard try the
    old shard, then the new shard again (the mover copies before it erases:
    a key moved between the first two reads is found by the third). Erases
    of moving keys go to the old shard, then the new. Conditional puts
    (NEW_ONLY, EXIST_ONLY, APPEND) first copy the moving keys' old values to
    the new shard (with NEW_ONLY), so that they see them. Thread-safe as the
    native objects are.
    """

    def __init__(self, new: Any, old: Any, shards: int, moving_from: int) -> None:
        self._new = new
        self._old = old
        self._shards = shards
        self._moving_from = moving_from

    def _moving(self, keys: List[Any]) -> List[int]:
        n, first_new = self._shards, self._moving_from
        return [i for i, k in enumerate(keys) if _client.shard_of(k, n) >= first_new]

    def count(self, mode: int, timeout_ms: float) -> int:
        """Returns the sum of every shard's count (a key caught between its
        copy and its erase counts twice). Raises as the native call does."""
        return int(self._new.count(mode, timeout_ms))

    def put(self, keys: Any, values: Any, mode: int, timeout_ms: float) -> None:
        """Stores the pairs by the new routing. Returns None; raises as the
        native call does."""
        if mode & _CONDITIONAL:
            ks = _items(keys)
            self._pull([ks[i] for i in self._moving(ks)], timeout_ms)
        self._new.put(keys, values, mode, timeout_ms)

    def _pull(self, keys: List[Any], timeout_ms: float) -> None:
        """Copies what the old shards hold of ``keys`` to their new shards,
        without overwriting (the mover erases the old copies)."""
        if not keys:
            return
        values = self._old.get_alloc(keys, 0, timeout_ms)
        found = [(k, v) for k, v in zip(keys, values) if v is not None]
        if found:
            _put_new_only(self._new, [k for k, _ in found], [v for _, v in found], timeout_ms)

    def _read(
        self, name: str, keys: Any, per_key: Optional[List[Any]], mode: int, timeout_ms: float
    ) -> List[Any]:
        """The native read ``name`` on the new routing, then for moving keys
        it did not find, on the old one, then on the new one again."""
        ks = _items(keys)
        first = (
            getattr(self._new, name)(keys, mode, timeout_ms)
            if per_key is None
            else getattr(self._new, name)(keys, per_key, mode, timeout_ms)
        )
        out = list(first)
        absent = False if name == "exists" else None
        missing = [i for i in self._moving(ks) if out[i] is absent]
        for db in (self._old, self._new):
            if not missing:
                break
            subset = [ks[i] for i in missing]
            got = (
                getattr(db, name)(subset, mode, timeout_ms)
                if per_key is None
                else getattr(db, name)(subset, [per_key[i] for i in missing], mode, timeout_ms)
            )
            still = []
            for i, r in zip(missing, got):
                if r is absent:
                    still.append(i)
                else:
                    out[i] = r
            missing = still
        return out

    def get(self, keys: Any, buffers: Any, mode: int, timeout_ms: float) -> List[Any]:
        """Fills the buffers; returns sizes (None: absent, -1: too small).
        Raises as the native call does."""
        return self._read("get", keys, list(buffers), mode, timeout_ms)

    def get_alloc(self, keys: Any, mode: int, timeout_ms: float) -> List[Any]:
        """Returns the values (None: absent). Raises as the native call does."""
        return self._read("get_alloc", keys, None, mode, timeout_ms)

    def get_packed(self, keys: Any, buffer: Any, mode: int, timeout_ms: float) -> List[Any]:
        """Writes the values back to back in ``buffer``; returns their sizes
        (None: absent; -1 from the first that does not fit). Raises as the
        native call does."""
        values = self.get_alloc(keys, mode, timeout_ms)
        view = memoryview(buffer).cast("B")
        sizes: List[Any] = []
        at, overflowed = 0, False
        for v in values:
            if v is None:
                sizes.append(None)
            elif overflowed or at + len(v) > len(view):
                overflowed = True
                sizes.append(-1)
            else:
                view[at : at + len(v)] = v
                at += len(v)
                sizes.append(len(v))
        return sizes

    def exists(self, keys: Any, mode: int, timeout_ms: float) -> List[bool]:
        """Returns whether each key is stored. Raises as the native call does."""
        return self._read("exists", keys, None, mode, timeout_ms)

    def length(self, keys: Any, mode: int, timeout_ms: float) -> List[Any]:
        """Returns the value sizes (None: absent). Raises as the native call does."""
        return self._read("length", keys, None, mode, timeout_ms)

    def erase(self, keys: Any, mode: int, timeout_ms: float) -> None:
        """Erases the keys: moving ones from the old shard first, then every
        key by the new routing. Returns None; raises as the native call does."""
        ks = _items(keys)
        moving = [ks[i] for i in self._moving(ks)]
        if moving:
            self._old.erase(moving, mode, timeout_ms)
        self._new.erase(keys, mode, timeout_ms)

    def erase_range(self, prefix: Any, mode: int, timeout_ms: float) -> None:
        """Erases the keys with ``prefix`` on every shard. Returns None;
        raises as the native call does."""
        self._new.erase_range(prefix, mode, timeout_ms)


def _put_new_only(db: Any, keys: List[Any], values: List[Any], timeout_ms: float) -> None:
    """Puts the pairs that are not there yet. A batch skips the keys that
    exist, but a request that reaches a shard with one pair fails on it:
    then one pair at a time, an existing key being the expected case."""
    try:
        db.put(keys, values, _NEW_ONLY, timeout_ms)
        return
    except Exception as e:
        if e.code != YOKAN_ERR_KEY_EXISTS:
            raise
    for k, v in zip(keys, values):
        try:
            db.put((k,), (v,), _NEW_ONLY, timeout_ms)
        except Exception as e:
            if e.code != YOKAN_ERR_KEY_EXISTS:
                raise


def migrate(old: Any, new: Any, keys: List[Any], values: List[Any], timeout_ms: float = 0.0) -> int:
    """Moves pairs just read from the old shard ``old`` to ``new`` (native
    handles): copied without overwriting, then erased from ``old``.

    A client may have erased a key between the read and the copy (during a
    move a client erases a moving key on its old shard, then on its new
    one): the copy would bring it back. Such a key is no longer on ``old``;
    if its new shard holds exactly the copied value, the copy is undone.
    Returns how many keys were still on ``old`` (moved). Raises the client's
    exception if a shard fails; nothing is erased from ``old`` before its
    copy is on ``new``."""
    if not keys:
        return 0
    _put_new_only(new, keys, values, timeout_ms)
    still = old.exists(keys, 0, timeout_ms)
    gone = [i for i, present in enumerate(still) if not present]
    if gone:
        now = new.get_alloc([keys[i] for i in gone], 0, timeout_ms)
        undo = [
            keys[i]
            for i, v in zip(gone, now)
            if v is not None and bytes(v) == bytes(memoryview(values[i]))
        ]
        if undo:
            new.erase(undo, 0, timeout_ms)
    moved = [k for k, present in zip(keys, still) if present]
    if moved:
        old.erase(moved, 0, timeout_ms)
    return len(moved)


def _publish(
    path: str, address: str, provider_ids: Sequence[int], refresh_ms: float, pid: Optional[int]
) -> Tuple[Dict[str, Any], bool]:
    """Puts the group in the moving state with the new member last, under
    the file's lock. Returns the file's content and whether it was already
    moving to this member (a resumed grow)."""
    with _locked(path):
        doc = _read_members(path)
        members = doc["members"]
        if doc.get("state", "stable") == "moving":
            start = doc.get("moving_from")
            joining = [m.get("address") for m in members[start:]] if isinstance(start, int) else []
            if address not in joining:
                raise RuntimeError(
                    f"{path}: the group is already growing to {', '.join(map(str, joining))}: "
                    "finish that first (grow again with that address)"
                )
            return doc, True
        if any(m.get("address") == address for m in members):
            raise ValueError(f"{path}: {address} is already a member")
        if not members:
            raise RuntimeError(f"{path}: the group has no members to grow from")
        size = doc.get("size")
        if isinstance(size, int) and len(members) < size:
            raise RuntimeError(f"{path}: the group is not complete ({len(members)} of {size})")
        entry: Dict[str, Any] = {"address": address, "provider_ids": list(provider_ids)}
        if pid is not None:
            entry["pid"] = pid
        ranks = [m.get("rank") for m in members]
        if all(isinstance(r, int) for r in ranks):
            # Ranked members are kept in rank order: the new one goes last.
            entry["rank"] = max(ranks) + 1
        doc["moving_from"] = len(members)
        members.append(entry)
        doc["version"] = int(doc.get("version", 0)) + 1
        doc["state"] = "moving"
        doc["size"] = len(members)
        doc.setdefault("refresh_ms", refresh_ms)
        write_group_file(path, doc)
        return doc, False


def _finish(path: str, address: str) -> int:
    """Writes the stable state with a new version; returns that version."""
    with _locked(path):
        doc = _read_members(path)
        if doc.get("state") != "moving":
            raise RuntimeError(f"{path}: the group is no longer moving (was it edited?)")
        doc["version"] = int(doc.get("version", 0)) + 1
        doc["state"] = "stable"
        doc.pop("moving_from", None)
        write_group_file(path, doc)
        return int(doc["version"])


def _move_provider(
    group: Group,
    members: List[Any],
    moving_from: int,
    provider_id: int,
    batch: int,
    keys_only: bool,
    say: Callable[[str], None],
) -> int:
    """Moves provider ``provider_id``'s keys that route to the new members;
    ``keys_only``: the second pass (lists keys, reads the values of the few
    it moves). Returns how many keys moved."""
    serving = [(i, m) for i, m in enumerate(members) if provider_id in m.provider_ids]
    before = sum(1 for i, _ in serving if i < moving_from)
    n = len(serving)
    if before == 0 or before == n:
        return 0
    shards: List[Database] = [group._handle(m.address, provider_id, True) for _, m in serving]
    moved = 0
    for s in range(before):
        source = shards[s]._db
        pending: Dict[int, Tuple[List[Any], List[Any]]] = {}
        for key, value in shards[s].scan(batch_size=batch, ignore_values=keys_only):
            dest = home(key, n)
            if dest < before:
                continue
            keys, values = pending.setdefault(dest, ([], []))
            keys.append(key)
            values.append(value)
            if len(keys) >= batch:
                moved += _copy(source, shards[dest]._db, *pending.pop(dest), keys_only)
        for dest, (keys, values) in pending.items():
            moved += _copy(source, shards[dest]._db, keys, values, keys_only)
        say(f"provider {provider_id}: shard {s} ({shards[s].address}) done, {moved} key(s) moved")
    return moved


def _copy(old: Any, new: Any, keys: List[Any], values: List[Any], keys_only: bool) -> int:
    """migrate() of a page; ``keys_only``: the values are read first (the
    keys that vanished meanwhile are left out)."""
    if keys_only:
        got = old.get_alloc(keys, 0, 0.0)
        found = [(k, v) for k, v in zip(keys, got) if v is not None]
        keys, values = [k for k, _ in found], [v for _, v in found]
    return migrate(old, new, keys, values)


def grow(
    path: str,
    address: str,
    provider_ids: Sequence[int],
    *,
    engine: Any = None,
    grace_s: float = DEFAULT_GRACE_S,
    refresh_ms: float = DEFAULT_REFRESH_MS,
    batch: int = DEFAULT_BATCH,
    pid: Optional[int] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Adds the member at ``address`` (serving ``provider_ids``) to the group
    in the file ``path`` and moves to it, for each of those providers, the
    keys that now route to it, while clients keep working (see the module's
    documentation). Only one grow runs at a time per file (``PATH.grow.lock``);
    a grow of a group already moving to ``address`` resumes it.

    ``grace_s``: how long past ``refresh_ms`` to wait for calls routed by the
    old version to finish before copying. ``engine``: the engine to reach the
    members with (default: one of their protocol). ``pid``: recorded in the
    member's entry. Returns ``{"version", "moved", "strays", "seconds"}``
    (``strays``: keys the second pass found written by the old routing).
    Raises ``ValueError`` if ``address`` is already a member, ``RuntimeError``
    if the group is incomplete or growing to another member, the client's
    exception if a member fails (the group then stays moving: run it again),
    ``OSError`` if the file cannot be written."""
    say = log or (lambda message: None)
    t0 = time.monotonic()
    with _locked(f"{path}.grow"):
        doc, resumed = _publish(path, address, provider_ids, refresh_ms, pid)
        members = _parse_members(doc, path)
        _, moving_from, wait_ms = _parse_routing(doc, len(members), path)
        assert moving_from is not None
        say(
            f"{'resuming the move' if resumed else 'moving'} to {address} "
            f"(version {doc['version']}); waiting {wait_ms / 1000 + grace_s:.1f} s for clients"
        )
        # Every call that starts from now routes as during a move; the grace
        # lets the calls routed by the old version before that finish.
        time.sleep(wait_ms / 1000.0 + grace_s)
        group = Group(members, engine)
        try:
            new = members[moving_from:]
            ids = sorted({p for m in new for p in m.provider_ids})
            moved = sum(
                _move_provider(group, members, moving_from, p, batch, False, say) for p in ids
            )
            # Keys written by a client that still routed by the old version:
            # found by a pass over the keys only.
            strays = sum(
                _move_provider(group, members, moving_from, p, batch, True, say) for p in ids
            )
        finally:
            group.close()
        version = _finish(path, address)
    seconds = time.monotonic() - t0
    say(
        f"the group in {path} is stable at version {version}: {moved} key(s) moved, "
        f"{strays} stray(s), {seconds:.1f} s"
    )
    return {"version": version, "moved": moved, "strays": strays, "seconds": seconds}


def check(path: str, provider_id: int, engine: Any = None) -> Dict[str, int]:
    """Lists every key of provider ``provider_id`` on every member and checks
    that it is on the shard it routes to. Returns ``{"keys", "misplaced"}``.
    Raises ``ValueError`` for a malformed file or a group that is moving,
    ``OSError`` if it cannot be read, the client's exception if a member
    fails (``YOKAN_ERR_OP_UNSUPPORTED`` on an unsorted backend)."""
    with Group.from_file(path, engine) as group:
        if group.moving_from is not None:
            raise ValueError(f"{path}: the group is moving; check it once it is stable")
        db = group.database(provider_id)
        n = len(db.shards)
        keys = misplaced = 0
        for s, shard in enumerate(db.shards):
            for key, _ in shard.scan(ignore_values=True):
                keys += 1
                if home(key, n) != s:
                    misplaced += 1
        return {"keys": keys, "misplaced": misplaced}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``yokan-group``: runs ``grow`` or ``check``. Returns the exit code (0:
    done; 1: a failure, reported on standard error, or misplaced keys);
    raises nothing."""
    parser = argparse.ArgumentParser(prog="yokan-group", description="Grow or check a group.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grow", help="add a member and move the keys that now route to it")
    g.add_argument("group_file")
    g.add_argument("address", help="the new member's address (a running yokan-server)")
    g.add_argument(
        "--provider-ids",
        default=None,
        help="comma-separated provider ids it serves (default: those of the first member)",
    )
    g.add_argument("--grace", type=float, default=DEFAULT_GRACE_S, help="seconds (default 2)")
    g.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="keys per copy (default 1000)")
    c = sub.add_parser("check", help="check that every key is on the shard it routes to")
    c.add_argument("group_file")
    c.add_argument("--provider-id", type=int, default=None, help="default: every provider")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        doc = _read_members(args.group_file)
        members = _parse_members(doc, args.group_file)
        if args.command == "grow":
            if args.provider_ids:
                ids = [int(p) for p in args.provider_ids.split(",")]
            elif members:
                ids = members[0].provider_ids
            else:
                raise ValueError(f"{args.group_file}: no member to take provider ids from")
            grow(
                args.group_file,
                args.address,
                ids,
                grace_s=args.grace,
                batch=args.batch,
                log=say,
            )
            return 0
        ids = (
            [args.provider_id]
            if args.provider_id is not None
            else sorted({p for m in members for p in m.provider_ids})
        )
        bad = 0
        for p in ids:
            result = check(args.group_file, p)
            say(f"provider {p}: {result['keys']} key(s), {result['misplaced']} misplaced")
            bad += result["misplaced"]
        return 1 if bad else 0
    except (OSError, ValueError, RuntimeError, Exception) as e:
        print(f"yokan-group: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
