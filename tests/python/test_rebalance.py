"""Growing a group by one member while clients keep writing
(mochi.yokan.rebalance, docs/design/rebalance.md): nothing is lost, every
key ends on the shard its hash names, and the reads, erases and conditional
puts of a key being moved are right while it moves."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mochi.yokan import _client
from mochi.yokan.backends import available_backends
from mochi.yokan.exception import YOKAN_ERR_KEY_EXISTS, YOKAN_ERR_MIGRATED
from mochi.yokan.group import Group, ShardedDatabase, _locked, shard_of, write_group_file
from mochi.yokan.mode import Mode
from mochi.yokan.rebalance import migrate

HERE = Path(__file__).resolve().parent
# The core test runs on the in-memory map and the cheap persistent backends.
GROW_BACKENDS = [
    b
    for b in ("map", "rocksdb", "lmdb", "leveldb", "berkeleydb", "tkrzw")
    if b in available_backends
]
BASE_KEYS = 100_000
WRITERS = 3
WRITER_KEYS = 1500


def start_server(tmp_path, name, backend, *group_args):
    database = {"type": backend, "config": {}}
    if backend != "map":
        database["config"]["path"] = str(tmp_path / f"db-{name}")
    config = tmp_path / f"server-{name}.json"
    config.write_text(
        json.dumps(
            {"providers": [{"name": "kv", "provider_id": 1, "config": {"database": database}}]}
        )
    )
    log = open(tmp_path / f"server-{name}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mochi.yokan.server", "tcp", "-c", str(config), *group_args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()
    line = proc.stdout.readline()
    assert line.startswith("yokan-server running at"), (tmp_path / f"server-{name}.log").read_text()
    return proc, line.split()[-1]


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=60) for p in procs]
    for p in procs:
        if p.stdout:
            p.stdout.close()
    return codes


def start_group(tmp_path, backend, size=2):
    group_file = tmp_path / "group.json"
    procs = [
        start_server(
            tmp_path,
            str(i),
            backend,
            "--group-file",
            str(group_file),
            "--group-size",
            str(size),
            "--group-rank",
            str(i),
        )[0]
        for i in range(size)
    ]
    return group_file, procs


def read_doc(path):
    return json.loads(Path(path).read_text())


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", GROW_BACKENDS)
def test_grow_by_one_member_under_concurrent_writers(tmp_path, backend):
    group_file, procs = start_group(tmp_path, backend)
    writers = []
    try:
        with Group.from_file(str(group_file), wait_s=30) as g:
            db = g.database(1)
            for start in range(0, BASE_KEYS, 5000):
                db.put_multi(
                    [(f"base-{i:06d}", f"v{i}") for i in range(start, min(start + 5000, BASE_KEYS))]
                )
            assert db.count() == BASE_KEYS
        stop_file = tmp_path / "stop"
        for w in range(WRITERS):
            writers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "rebalance_writer.py"),
                        str(group_file),
                        str(w),
                        str(WRITER_KEYS),
                        str(BASE_KEYS),
                        str(tmp_path / f"writer-{w}.json"),
                        str(stop_file),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for w in writers:
            assert w.stdout.readline().strip() == "ready", w.stderr.read()

        # The third member joins: the group grows while the writers write.
        t0 = time.monotonic()
        joined, address = start_server(
            tmp_path, "new", backend, "--group-file", str(group_file), "--join"
        )
        procs.append(joined)
        wait_for(lambda: read_doc(group_file).get("state") == "moving", "the move to start")
        wait_for(
            lambda: read_doc(group_file).get("state") == "stable" or joined.poll() is not None,
            "the move to end",
        )
        grow_s = time.monotonic() - t0
        assert joined.poll() is None, (tmp_path / "server-new.log").read_text()
        time.sleep(1.0)  # the writers go on with the new routing
        stop_file.touch()
        results = []
        for w in writers:
            out, err = w.communicate(timeout=60)
            assert w.returncode == 0, err
            results.append(json.loads((tmp_path / f"writer-{writers.index(w)}.json").read_text()))
        log = (tmp_path / "server-new.log").read_text()
        assert "is stable at version 2" in log, log

        doc = read_doc(group_file)
        assert doc["version"] == 2 and doc["state"] == "stable" and "moving_from" not in doc
        assert [m["address"] for m in doc["members"]][-1] == address
        assert [m.get("rank") for m in doc["members"]] == [0, 1, 2]
        # Every writer worked during the move, and saw the three versions.
        assert all(r["moving_ops"] > 0 for r in results), [r["moving_ops"] for r in results]
        assert all(r["versions"] == [0, 1, 2] for r in results), [r["versions"] for r in results]

        expected = {f"base-{i:06d}": f"v{i}" for i in range(BASE_KEYS)}
        for r in results:
            expected.update(r["expected"])
        present = {k: v.encode() for k, v in expected.items() if v is not None}
        with Group.from_file(str(group_file), wait_s=30) as g:
            db = g.database(1)
            assert len(db.shards) == 3 and not db.moving
            assert db.count() == len(present)
            names = sorted(expected)
            for start in range(0, len(names), 5000):
                chunk = names[start : start + 5000]
                assert db.get_multi(chunk) == [present.get(k) for k in chunk]
            # Each shard holds exactly the keys that route to it, and the new
            # one about a third of them.
            on_shard = []
            for s, shard in enumerate(db.shards):
                keys = [k for k, _ in shard.scan(ignore_values=True)]
                assert all(shard_of(k, 3) == s for k in keys), f"shard {s} has misplaced keys"
                on_shard.append(len(keys))
            assert sum(on_shard) == len(present)
            assert 0.25 < on_shard[2] / len(present) < 0.42, on_shard
        print(
            f"\n{backend}: grow took {grow_s:.1f} s, shards {on_shard}, "
            f"writer ops {[r['ops'] for r in results]}"
        )
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)
        assert stop(procs) == [0] * len(procs)


# -- a move's routing, step by step, on three map members --------------------


@pytest.fixture
def three(tmp_path):
    """Three members: a 2-member view, a 3-member moving view over the same
    handles, and a key of each kind (moving to member 2, staying)."""
    group_file, procs = start_group(tmp_path, "map", size=2)
    new, address = start_server(tmp_path, "new", "map")
    procs.append(new)
    with Group.from_file(str(group_file), wait_s=30) as g:
        old_db = g.database(1)
        new_shard = g._client.make_database_handle(address, 1)
        shards = old_db.shards + [new_shard]
        moving = ShardedDatabase(shards, moving_from=2)
        keys = [f"k{i}" for i in range(200)]
        movers = [k for k in keys if shard_of(k, 3) == 2]
        stayers = [k for k in keys if shard_of(k, 3) != 2]
        yield old_db, moving, movers, stayers, group_file
    assert stop(procs) == [0, 0, 0]


def test_reads_fall_back_to_the_old_shard(three):
    old_db, db, movers, stayers, _ = three
    old_db.put_multi([(k, f"old-{k}") for k in movers + stayers])
    assert db.moving and len(db.shards) == 3
    k = movers[0]
    assert db.get(k) == f"old-{k}".encode()
    assert db.exists(k) and db.length(k) == len(f"old-{k}")
    buf = bytearray(32)
    assert db.get(k, buf) == len(f"old-{k}")
    probe = movers[:5] + stayers[:5] + ["absent"]
    want = [f"old-{x}".encode() for x in probe[:-1]] + [None]
    assert db.get_multi(probe) == want
    assert db.exists_multi(probe) == [True] * 10 + [False]
    packed = b"".join(x.encode() for x in probe)
    out = bytearray(200)
    sizes = db.get_packed(packed, [len(x) for x in probe], out)
    assert sizes == [len(w) for w in want[:-1]] + [None]
    assert bytes(out[: sum(sizes[:-1])]) == b"".join(want[:-1])
    # A write goes to the new shard; the old copy is hidden behind it, and
    # listed once.
    db.put(k, "new")
    assert db.get(k) == b"new" and old_db.get(k) == f"old-{k}".encode()
    listed = dict(db.scan())
    assert listed[k.encode()] == b"new" and len(listed) == len(movers) + len(stayers)
    # An erase during the move clears both copies.
    db.erase(k)
    assert not db.exists(k) and not old_db.exists(k)
    db.erase_multi(movers[1:3])
    assert db.get_multi(movers[1:3]) == [None, None]


def test_conditional_puts_see_the_old_copy(three):
    old_db, db, movers, _, _ = three
    a, b, c, d = movers[:4]
    old_db.put_multi([(a, "A"), (b, "B"), (c, "C")])
    with pytest.raises(Exception) as e:
        db.put(a, "again", Mode.NEW_ONLY)
    assert e.value.code == YOKAN_ERR_KEY_EXISTS
    assert db.get(a) == b"A"
    db.put(b, "+b", Mode.APPEND)
    assert db.get(b) == b"B+b"
    db.put(c, "C2", Mode.EXIST_ONLY)
    assert db.get(c) == b"C2"
    db.put_multi([(a, "x"), (d, "D")], Mode.NEW_ONLY)
    assert db.get_multi([a, d]) == [b"A", b"D"]


def test_the_copy_does_not_bring_back_an_erase(three):
    old_db, db, movers, _, _ = three
    # Three keys that move from old shard 0 to the new shard 2.
    a, b, c = [k for k in movers if shard_of(k, 2) == 0][:3]
    old_db.put_multi([(a, "A"), (b, "B"), (c, "C")])
    old, new = db.shards[0], db.shards[2]
    # The mover has read a, b and c; then a client erases a, and erases b and
    # writes it anew; only then is the copy made.
    pairs = [(k, old.get(k)) for k in (a, b, c)]
    db.erase(a)
    db.erase(b)
    db.put(b, "B2")
    moved = migrate(old._db, new._db, [k for k, _ in pairs], [v for _, v in pairs])
    assert moved == 1  # c; a and b were no longer on the old shard
    assert not db.exists(a) and not new.exists(a) and not old.exists(a)
    assert db.get(b) == b"B2" and not old.exists(b)
    assert new.get(c) == b"C" and not old.exists(c)


def test_handles_follow_the_group_file(three):
    old_db, _, _, _, group_file = three
    old_db.put("key", "v")
    with Group.from_file(str(group_file)) as g:
        auto = g.database(1)
        manual = g.database(1, refresh="manual")
        assert auto.get("key") == manual.get("key") == b"v"
        # In a stable group the calls run on the native object (no router).
        assert isinstance(auto._view.db, _client.ShardedDatabase)
        with _locked(str(group_file)):
            doc = read_doc(group_file)
            doc["version"] = 5
            doc["refresh_ms"] = 50
            write_group_file(str(group_file), doc)
        time.sleep(0.6)  # more than the period the handles read at creation
        assert auto.get("key") == b"v" and auto.version == 5
        with pytest.raises(Exception) as e:
            manual.get("key")
        assert e.value.code == YOKAN_ERR_MIGRATED and "call refresh()" in str(e.value)
        with pytest.raises(Exception) as e:
            manual.put_multi([("a", "b")])  # every call, until refresh()
        assert e.value.code == YOKAN_ERR_MIGRATED
        assert manual.refresh() == 5
        assert manual.get("key") == b"v"


def test_grow_from_the_command_line(tmp_path):
    group_file, procs = start_group(tmp_path, "map", size=2)
    try:
        with Group.from_file(str(group_file), wait_s=30) as g:
            g.database(1).put_multi([(f"c{i}", str(i)) for i in range(3000)])
        new, address = start_server(tmp_path, "new", "map")
        procs.append(new)
        cli = [sys.executable, "-m", "mochi.yokan.rebalance"]
        r = subprocess.run(
            cli + ["grow", str(group_file), address, "--grace", "0.2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert "stable at version 2" in r.stdout
        # A second grow to the same member is refused, naming it.
        r = subprocess.run(
            cli + ["grow", str(group_file), address], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 1 and address in r.stderr
        r = subprocess.run(cli + ["check", str(group_file)], capture_output=True, text=True)
        assert r.returncode == 0 and "3000 key(s), 0 misplaced" in r.stdout, r.stderr
        with Group.from_file(str(group_file)) as g:
            db = g.database(1)
            assert db.get_multi([f"c{i}" for i in range(3000)]) == [
                str(i).encode() for i in range(3000)
            ]
    finally:
        stop(procs)


def test_join_needs_a_group_file(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "providers": [
                    {"name": "kv", "provider_id": 1, "config": {"database": {"type": "map"}}}
                ]
            }
        )
    )
    r = subprocess.run(
        [sys.executable, "-m", "mochi.yokan.server", "tcp", "-c", str(config), "--join"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--join needs --group-file" in r.stderr


def test_a_moving_group_file_is_checked(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(
        json.dumps(
            {
                "members": [{"address": "tcp://127.0.0.1:1"}],
                "state": "moving",
                "moving_from": 1,
                "version": 1,
            }
        )
    )
    with pytest.raises(ValueError, match="moving_from"):
        Group.from_file(str(path))


def test_a_conditional_batch_acts_pair_by_pair(db):
    # The mover's NEW_ONLY pages are one backend batch now: the result must
    # stay that of applying the pairs one by one.
    db.put("a", "old")
    db.put_multi([("a", "x"), ("b", "1"), ("b", "2"), ("c", "3")], Mode.NEW_ONLY)
    assert db.get_multi(["a", "b", "c"]) == [b"old", b"1", b"3"]
    db.put_multi([("a", "y"), ("d", "4"), ("a", "z")], Mode.EXIST_ONLY)
    assert db.get_multi(["a", "d"]) == [b"z", None]
