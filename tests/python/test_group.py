"""Groups: servers registering in a group file, and a database sharded over
them with the Database API (routing, fan-out, merged listings, failures)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import wait_stopped
from mochi.yokan.backends import available_backends
from mochi.yokan.exception import YOKAN_ERR_TIMEOUT
from mochi.yokan.group import Group, fnv1a_64, shard_of
from mochi.yokan.mode import Mode

MASK = (1 << 64) - 1


def reference_fnv1a_64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def reference_jump(key: int, buckets: int) -> int:
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & MASK
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def test_fnv1a_64_known_values():
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64("foobar") == 0x85944171F73967E8  # a str routes by its UTF-8 bytes


def test_routing_matches_the_documented_algorithm():
    rng = random.Random(7)
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(1, 40))
        n = rng.randrange(1, 300)
        assert fnv1a_64(key) == reference_fnv1a_64(key)
        assert shard_of(key, n) == reference_jump(reference_fnv1a_64(key), n)


def test_growing_a_group_moves_keys_only_to_the_new_shard():
    keys = [f"key-{i}".encode() for i in range(20000)]
    for n in (1, 3, 4, 7):
        moved = 0
        for k in keys:
            before, after = shard_of(k, n), shard_of(k, n + 1)
            if before != after:
                assert after == n
                moved += 1
        assert 0.5 / (n + 1) < moved / len(keys) < 1.5 / (n + 1)


def test_shard_of_rejects_zero_shards():
    with pytest.raises(ValueError):
        shard_of(b"k", 0)


# -- a group of servers ------------------------------------------------------

SERVERS = 4


def start_group(tmp_path, backend="map", size=SERVERS, start_order=None):
    group_file = tmp_path / "group.json"
    procs = []
    for i in start_order or range(size):
        database = {"type": backend, "config": {}}
        if backend != "map":
            database["config"]["path"] = str(tmp_path / f"db-{i}")
        config = tmp_path / f"server-{i}.json"
        config.write_text(
            json.dumps(
                {
                    "providers": [
                        {"name": "kv", "provider_id": 1, "config": {"database": database}},
                        {
                            "name": "side",
                            "provider_id": 2,
                            "config": {"database": {"type": "map"}},
                        },
                    ]
                }
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mochi.yokan.server",
                    "tcp",
                    "-c",
                    str(config),
                    "--group-file",
                    str(group_file),
                    "--group-size",
                    str(size),
                    "--group-rank",
                    str(i),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        line = p.stdout.readline()
        assert line.startswith("yokan-server running at"), p.stderr.read()
    return group_file, procs


def stop_group(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=60) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    return codes


@pytest.fixture
def group(tmp_path):
    group_file, procs = start_group(tmp_path)
    with Group.from_file(str(group_file), wait_s=30) as g:
        yield g, procs, group_file
    stop_group(procs)


def test_servers_register_and_unregister(tmp_path):
    group_file, procs = start_group(tmp_path, size=2)
    doc = json.loads(group_file.read_text())
    assert doc["size"] == 2 and len(doc["members"]) == 2
    assert all(m["provider_ids"] == [1, 2] for m in doc["members"])
    assert len({m["address"] for m in doc["members"]}) == 2
    assert stop_group(procs) == [0, 0]
    assert json.loads(group_file.read_text())["members"] == []


def test_from_file_waits_for_the_whole_group(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"members": [{"address": "tcp://127.0.0.1:1"}], "size": 2}))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="1 of 2"):
        Group.from_file(str(path), wait_s=0.3)
    assert time.monotonic() - t0 >= 0.3


@pytest.mark.parametrize(
    "doc",
    [
        "{",
        "[]",
        '{"members": 3}',
        '{"members": [{"provider_ids": [1]}]}',
        '{"members": [{"address": "tcp://x:1", "provider_ids": [-1]}]}',
    ],
)
def test_malformed_group_files(tmp_path, doc):
    path = tmp_path / "g.json"
    path.write_text(doc)
    with pytest.raises(ValueError):
        Group.from_file(str(path))


def test_every_call_through_the_group(group):
    g, _, _ = group
    db = g.database(1)
    assert len(db.shards) == SERVERS
    keys = [f"key-{i:05d}" for i in range(2000)]
    values = [f"value-{i}".encode() * (1 + i % 5) for i in range(2000)]
    expected = dict(zip((k.encode() for k in keys), values))

    db.put_multi(list(zip(keys, values)))
    assert db.count() == len(keys)
    # Every shard got its keys, by the documented routing.
    for i, shard in enumerate(db.shards):
        mine = [k for k in keys if shard_of(k, SERVERS) == i]
        assert shard.count() == len(mine) > 0
        assert shard.exists_multi(mine[:50]) == [True] * min(50, len(mine))

    # single-key calls
    db.put("single", "one")
    assert db.get("single") == b"one"
    assert db.exists("single") and db.length("single") == 3
    buf = bytearray(8)
    assert db.get("single", buf) == 3 and bytes(buf[:3]) == b"one"
    db.erase("single")
    assert not db.exists("single") and db.length("single") is None

    # batches, results in key order
    probe = keys[::7] + ["absent-1", "absent-2"]
    assert db.get_multi(probe) == [expected.get(k.encode()) for k in probe]
    assert db.exists_multi(probe) == [k.encode() in expected for k in probe]
    assert db.length_multi(probe) == [
        len(expected[k.encode()]) if k.encode() in expected else None for k in probe
    ]
    bufs = [bytearray(16) for _ in probe]
    sizes = db.get_multi(list(zip(probe, bufs)))
    for k, b, n in zip(probe, bufs, sizes):
        v = expected.get(k.encode())
        if v is None:
            assert n is None
        elif len(v) > 16:
            assert n == -1
        else:
            assert n == len(v) and bytes(b[:n]) == v

    packed_keys = b"".join(k.encode() for k in probe)
    ksizes = [len(k) for k in probe]
    out = bytearray(sum(len(v) for v in expected.values()))
    vsizes = db.get_packed(packed_keys, ksizes, out)
    at = 0
    for k, n in zip(probe, vsizes):
        v = expected.get(k.encode())
        assert n == (None if v is None else len(v))
        if v is not None:
            assert bytes(out[at : at + n]) == v
            at += n
    # A packed buffer too small: from the first value that does not fit on,
    # every found value is -1, in key order across the shards.
    small = bytearray(100)
    vsizes = db.get_packed(packed_keys, ksizes, small)
    first = next(i for i, n in enumerate(vsizes) if n == -1)
    assert all(n in (-1, None) for n in vsizes[first:])
    assert sum(n for n in vsizes[:first] if n) <= 100

    assert db.exists_packed(packed_keys, ksizes) == [k.encode() in expected for k in probe]
    assert db.length_packed(packed_keys, ksizes) == db.length_multi(probe)

    seen = {}
    db.fetch_multi(keys[:20], lambda i, k, v: seen.__setitem__(i, bytes(v)), batch_size=7)
    assert [seen[i] for i in range(20)] == values[:20]

    # listings merge the shards in key order
    all_keys = sorted(expected)
    assert [k for k, _ in db.scan(ignore_values=True)] == all_keys
    assert [k for k, _ in db.scan(from_key="key-01000", count=10, ignore_values=True)] == (
        [k for k in all_keys if k > b"key-01000"][:10]
    )
    assert list(db.scan(filter="key-0001", batch_size=3)) == [
        (k, expected[k]) for k in all_keys if k.startswith(b"key-0001")
    ]
    kbufs = [bytearray(16) for _ in range(5)]
    assert db.list_keys(kbufs, "key-00100", "") == [9] * 5
    assert [bytes(b[:9]) for b in kbufs] == all_keys[101:106]
    pairs = [(bytearray(16), bytearray(64)) for _ in range(3)]
    got = db.list_keyvals(pairs, "", "key-0002", Mode.INCLUSIVE)
    assert got == [(9, len(expected[k])) for k in all_keys if k.startswith(b"key-0002")][:3]
    kp = bytearray(9 * 4)
    assert db.list_keys_packed(kp, 4, "", "") == [9] * 4
    assert bytes(kp) == b"".join(all_keys[:4])
    kp, vp = bytearray(64), bytearray(200)
    got = db.list_keyvals_packed(kp, vp, 3, "key-00500", "")
    assert [k for k, _ in got] == [9, 9, 9]
    order = []
    db.iter(lambda i, k, v: order.append(bytes(k)), count=25, ignore_values=True)
    assert order == all_keys[:25]

    # collections live whole on the shard their name routes to
    coll = db.create_collection("runs")
    ids = coll.store_multi([{"n": i} for i in range(10)])
    assert list(ids) == list(range(10))
    assert db.collection_exists("runs")
    home = db.shards[shard_of("runs", SERVERS)]
    assert home.collection_exists("runs")
    assert db.open_collection("runs").size() == 10
    db.drop_collection("runs")
    assert not db.collection_exists("runs")

    # erase: batch, range on every shard
    db.erase_multi(keys[:100])
    assert db.count() == len(keys) - 100
    db.erase_range("key-01")
    assert db.count() == len([k for k in keys[100:] if not k.startswith("key-01")])
    db.erase_range("")
    assert db.count() == 0
    assert all(s.count() == 0 for s in db.shards)


def test_another_provider_id_of_the_same_members(group):
    g, _, _ = group
    side = g.database(2)
    side.put("only-in-2", "x")
    assert not g.database(1).exists("only-in-2")
    with pytest.raises(ValueError, match="provider 9"):
        g.database(9)


def failing_shard(db, victim):
    """Keys that route to shard `victim`, and keys that route elsewhere."""
    keys = [f"k{i}" for i in range(400)]
    mine = [k for k in keys if shard_of(k, len(db.shards)) == victim]
    others = [k for k in keys if shard_of(k, len(db.shards)) != victim]
    return mine, others


def test_a_dead_member_fails_only_its_calls_naming_it(group):
    g, procs, group_file = group
    db = g.database(1)
    keys = [f"k{i}" for i in range(400)]
    db.put_multi([(k, k) for k in keys])
    victim = 2
    address = db.shards[victim].address
    # The process serving the victim's address, through its pid.
    members = json.loads(group_file.read_text())["members"]
    pid = next(m["pid"] for m in members if m["address"] == address)
    victim_proc = next(p for p in procs if p.pid == pid)
    victim_proc.kill()
    victim_proc.wait(timeout=30)
    mine, others = failing_shard(db, victim)
    t0 = time.monotonic()
    with pytest.raises(Exception) as e:
        db.get(mine[0], timeout_ms=5000)
    assert address in str(e.value)
    with pytest.raises(Exception) as e:
        db.get_multi(keys, timeout_ms=5000)
    assert f"shard {victim} of {SERVERS}" in str(e.value) and address in str(e.value)
    assert time.monotonic() - t0 < 20  # failed, did not hang
    # the rest of the group keeps working
    assert db.get_multi(others[:50]) == [k.encode() for k in others[:50]]
    db.put(others[0], "again")
    assert db.get(others[0]) == b"again"


def test_a_stopped_member_times_out_naming_it(group):
    g, procs, group_file = group
    db = g.database(1)
    members = json.loads(group_file.read_text())["members"]
    victim = 1
    address = db.shards[victim].address
    pid = next(m["pid"] for m in members if m["address"] == address)
    os.kill(pid, signal.SIGSTOP)
    wait_stopped(pid)
    try:
        mine, others = failing_shard(db, victim)
        with pytest.raises(Exception) as e:
            db.exists_multi(mine[:3] + others[:3], timeout_ms=500)
        assert e.value.code == YOKAN_ERR_TIMEOUT
        assert f"shard {victim} of {SERVERS}" in str(e.value)
        assert db.exists_multi(others[:20], timeout_ms=5000) == [False] * 20
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.skipif("rocksdb" not in available_backends, reason="rocksdb not built")
def test_a_persistent_group_keeps_its_data_across_restarts(tmp_path):
    group_file, procs = start_group(tmp_path, backend="rocksdb", size=2)
    with Group.from_file(str(group_file), wait_s=30) as g:
        g.database(1).put_multi([(f"p{i}", str(i)) for i in range(300)])
    assert stop_group(procs) == [0, 0]
    # Restarted on new ports and in the other order: each member keeps its
    # rank, so every key is still on the shard its routing names.
    group_file, procs = start_group(tmp_path, backend="rocksdb", size=2, start_order=[1, 0])
    try:
        with Group.from_file(str(group_file), wait_s=30) as g:
            db = g.database(1)
            assert db.count() == 300
            assert db.get_multi([f"p{i}" for i in range(300)]) == [
                str(i).encode() for i in range(300)
            ]
    finally:
        stop_group(procs)


def test_a_rank_taken_over_replaces_the_dead_member(tmp_path):
    group_file, procs = start_group(tmp_path, size=2)
    first = json.loads(group_file.read_text())["members"]
    procs[0].kill()  # no clean stop: its entry stays
    procs[0].wait(timeout=30)
    again, more = start_group(tmp_path, size=2, start_order=[0])
    try:
        members = json.loads(group_file.read_text())["members"]
        assert [m["rank"] for m in members] == [0, 1]
        assert members[0]["address"] != first[0]["address"]
        assert members[1]["address"] == first[1]["address"]
    finally:
        stop_group(procs[1:] + more)
