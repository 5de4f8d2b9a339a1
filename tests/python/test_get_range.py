"""Database.get_range: a byte range of one value, cut by the provider."""

import json

import pytest
from conftest import DOC_ONLY, VALUED_BACKENDS, available_backends, backend_config, serving
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_BUFFER_SIZE,
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_KEY_NOT_FOUND,
    YOKAN_ERR_MODE,
    YOKAN_ERR_OP_UNSUPPORTED,
    YOKAN_ERR_PERMISSION,
)
from mochi.yokan.mode import Mode
from mochi.yokan.server import Provider

VALUE = bytes(range(256)) * 4  # 1024 bytes, every position distinct mod 256


def test_ranges_of_a_value(db):
    db.put("k", VALUE)
    assert db.get_range("k", 10, 20) == VALUE[10:30]  # inside
    assert db.get_range("k", 0) == VALUE  # whole (length=None)
    assert db.get_range("k", 1000) == VALUE[1000:]  # to the end
    assert db.get_range("k", 1000, 100) == VALUE[1000:]  # straddling the end
    assert db.get_range("k", 1024, 10) == b""  # at the end
    assert db.get_range("k", 5000, 10) == b""  # past the end
    assert db.get_range("k", 10, 0) == b""  # empty
    assert db.get_range("k", suffix=24) == VALUE[-24:]
    assert db.get_range("k", suffix=5000) == VALUE  # larger than the value
    assert db.get_range("k", suffix=0) == b""


def test_huge_offsets_and_lengths_are_clipped(db):
    db.put("k", VALUE)
    top = (1 << 64) - 1
    assert db.get_range("k", top, top) == b""  # offset + length would wrap
    assert db.get_range("k", 1020, top) == VALUE[1020:]
    assert db.get_range("k", suffix=top) == VALUE


def test_out_of_range_arguments_are_refused_before_any_rpc(db):
    db.put("k", VALUE)
    for kwargs in (
        {"offset": -1},
        {"offset": 0, "length": -5},
        {"offset": 1 << 64},
        {"offset": 0, "length": 1 << 64},
        {"suffix": -1},
        {"suffix": 1 << 70},
    ):
        with pytest.raises(ValueError):
            db.get_range("k", **kwargs)
    with pytest.raises(ValueError, match="either suffix or offset"):
        db.get_range("k", 3, suffix=2)
    assert db.get_range("k", 1, 2) == VALUE[1:3]  # the handle still works


def test_missing_and_empty_keys(db):
    with pytest.raises(ClientError) as info:
        db.get_range("absent", 0, 4)
    assert info.value.code == YOKAN_ERR_KEY_NOT_FOUND
    with pytest.raises(ClientError) as info:
        db.get_range("absent", suffix=4)
    assert info.value.code == YOKAN_ERR_KEY_NOT_FOUND
    with pytest.raises(ClientError) as info:
        db.get_range("", 0, 4)
    assert info.value.code == YOKAN_ERR_INVALID_ARGS


def test_an_empty_value(db):
    db.put("e", b"")
    assert db.get_range("e", 0, 10) == b""
    assert db.get_range("e", suffix=10) == b""


def test_into_a_buffer(db):
    db.put("k", VALUE)
    out = bytearray(64)
    assert db.get_range("k", 100, 16, buffer=out) == 16
    assert out[:16] == VALUE[100:116] and out[16:] == bytes(48)
    assert db.get_range("k", 2000, 16, buffer=out) == 0
    with pytest.raises(ClientError) as info:
        db.get_range("k", 0, 65, buffer=out)
    assert info.value.code == YOKAN_ERR_BUFFER_SIZE


def test_consume_is_refused_and_erases_nothing(db):
    db.put("k", VALUE)
    with pytest.raises(ClientError) as info:
        db.get_range("k", 0, 4, mode=Mode.CONSUME)
    assert info.value.code == YOKAN_ERR_MODE
    assert db.get("k") == VALUE


@pytest.mark.parametrize("backend", VALUED_BACKENDS)
def test_a_read_only_provider_serves_ranges(engine, tmp_path, backend):
    with serving(engine, backend, tmp_path) as db:
        db.put("k", VALUE)
    config = {**backend_config(backend, tmp_path), "read_only": True}
    provider = Provider(engine=engine, provider_id=43, config=json.dumps(config))
    ro = Client(engine).make_database_handle(engine.addr(), 43)
    try:
        with pytest.raises(ClientError) as info:
            ro.put("k2", "v")
        assert info.value.code == YOKAN_ERR_PERMISSION
        if backend in {"rocksdb", "leveldb", "lmdb", "berkeleydb", "gdbm", "tkrzw"}:
            # Persistent: the value written before is there to read.
            assert ro.get_range("k", 4, 4) == VALUE[4:8]
        else:
            with pytest.raises(ClientError) as info:
                ro.get_range("k", 4, 4)
            assert info.value.code == YOKAN_ERR_KEY_NOT_FOUND
    finally:
        del ro, provider


def test_a_sharded_database_reads_the_range_on_the_keys_shard(engine):
    from mochi.yokan.group import ShardedDatabase, shard_of

    providers = [
        Provider(engine=engine, provider_id=pid, config={"database": {"type": "map"}})
        for pid in (1, 2, 3)
    ]
    client = Client(engine)
    shards = [client.make_database_handle(engine.addr(), pid) for pid in (1, 2, 3)]
    stable = ShardedDatabase(shards[:2])
    keys = [f"k{i}" for i in range(16)]
    for k in keys:
        stable.put(k, k.encode() * 4)
    for k in keys:
        assert stable.get_range(k, 1, 3) == (k.encode() * 4)[1:4]
        assert stable.get_range(k, suffix=2) == (k.encode() * 4)[-2:]
    with pytest.raises(ClientError) as info:
        stable.get_range("absent", 0, 1)
    assert info.value.code == YOKAN_ERR_KEY_NOT_FOUND

    # Growing to 3 shards: keys whose new shard is the third are still on
    # their old shard, and read from there.
    moving = ShardedDatabase(shards, moving_from=2)
    movers = [k for k in keys if shard_of(k, 3) == 2]
    assert movers  # with 16 keys some move
    for k in movers:
        assert not shards[2].exists(k)
        assert moving.get_range(k, 0, 2) == k.encode()[:2]
    with pytest.raises(ClientError) as info:
        moving.get_range(movers[0] + "x", 0, 1)
    assert info.value.code == YOKAN_ERR_KEY_NOT_FOUND
    del stable, moving, shards, providers


def test_the_asyncio_twin(db):
    import asyncio

    from mochi.yokan import aio

    db.put("k", VALUE)
    adb = aio.AsyncDatabase(db)

    async def run():
        assert await adb.get_range("k", 10, 20) == VALUE[10:30]
        assert await adb.get_range("k", suffix=3) == VALUE[-3:]
        out = bytearray(8)
        assert await adb.get_range("k", 1020, buffer=out) == 4
        assert out[:4] == VALUE[1020:]
        many = await asyncio.gather(*(adb.get_range("k", i, 1) for i in range(0, 1024, 97)))
        assert many == [VALUE[i : i + 1] for i in range(0, 1024, 97)]
        with pytest.raises(ClientError) as info:
            await adb.get_range("absent", 0, 1)
        assert info.value.code == YOKAN_ERR_KEY_NOT_FOUND
        with pytest.raises(ValueError):
            await adb.get_range("k", -1)

    asyncio.run(run())


def test_wait_parks_until_the_key_appears(map_db):
    import threading

    writer = threading.Timer(0.2, lambda: map_db.put("late", VALUE))
    writer.start()
    try:
        assert map_db.get_range("late", 3, 2, mode=Mode.WAIT, timeout_ms=20000) == VALUE[3:5]
    finally:
        writer.join()


@pytest.mark.parametrize("backend", sorted(DOC_ONLY & set(available_backends)))
def test_document_only_backends_refuse_it_as_they_refuse_get(engine, tmp_path, backend):
    with serving(engine, backend, tmp_path) as db:
        for call in (lambda: db.get("k"), lambda: db.get_range("k", 0, 1)):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.code == YOKAN_ERR_OP_UNSUPPORTED
