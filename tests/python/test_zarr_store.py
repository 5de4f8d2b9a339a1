"""mochi.yokan.zarr.YokanStore: Zarr's own store test suite
(zarr.testing.store.StoreTests) on the map, rocksdb and lmdb backends and on a
database sharded over two providers, then what that suite does not look at:
prefix isolation, the zero-copy paths, byte ranges and listings against Zarr's
MemoryStore, read-only stores and providers, unsorted backends, sharded
databases, pickling into another process, and compressed chunked arrays."""

import functools
import inspect
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import UNSORTED, serving
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_PERMISSION

zarr = pytest.importorskip(
    "zarr", minversion="3.1", reason="zarr-python 3.1+ is not installed (pip install '.[zarr]')"
)
pytest.importorskip(
    "pytest_asyncio", reason="pytest-asyncio is not installed (pip install '.[test]')"
)

from mochi.yokan.group import ShardedDatabase  # noqa: E402
from mochi.yokan.zarr import YokanStore  # noqa: E402
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest  # noqa: E402
from zarr.core.buffer import cpu, default_buffer_prototype  # noqa: E402
from zarr.core.sync import sync  # noqa: E402
from zarr.storage import MemoryStore  # noqa: E402
from zarr.testing.store import StoreTests  # noqa: E402

STORE_BACKENDS = ["map", "rocksdb", "lmdb"]
PREFIX = "tests/zarr"
# Keys next to the store's prefix (before it, after it, sharing its first
# characters): every test of the suite checks at teardown that they are intact.
NEIGHBOURS = {
    "tests/zar": b"before",
    "tests/zarr0": b"after the prefix",
    "tests/zarr-sibling/zarr.json": b"a sibling",
    "tests/zarr": b"the prefix itself, without the slash",
    "zarr.json": b"the database root",
}
PROTO = default_buffer_prototype()


def _asyncio_tests(cls):
    """Marks the coroutine tests of `cls` (inherited ones included) for
    pytest-asyncio, leaving the plain ones unmarked: a class-wide mark would
    warn on each of those. The inherited functions are wrapped, not marked in
    place, so that zarr's own class is left as it is."""
    for name in dir(cls):
        fn = getattr(cls, name)
        if name.startswith("test_") and inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run(*args, _fn=fn, **kwargs):
                return await _fn(*args, **kwargs)

            setattr(cls, name, pytest.mark.asyncio(run))
    return cls


@pytest.fixture(params=STORE_BACKENDS)
def store_db(request, engine, tmp_path):
    """A Database on each of the suite's backends, with NEIGHBOURS stored."""
    if request.param not in available_backends:
        pytest.skip(f"{request.param} is not compiled into this build")
    with serving(engine, request.param, tmp_path) as db:
        db.put_multi(list(NEIGHBOURS.items()))
        yield db
        assert db.get_multi(list(NEIGHBOURS)) == list(NEIGHBOURS.values()), (
            "the store touched keys outside its prefix"
        )


@_asyncio_tests
class TestYokanStore(StoreTests[YokanStore, cpu.Buffer]):
    """Zarr's store test suite, run as written."""

    store_cls = YokanStore
    buffer_cls = cpu.Buffer

    @pytest.fixture
    def store_kwargs(self, store_db):
        return {"db": store_db, "prefix": PREFIX}

    # The suite's own `store` fixtures are coroutines, which pytest-asyncio's
    # strict mode does not run for a plain fixture request: open it here.
    @pytest.fixture
    def store(self, open_kwargs):
        return sync(self.store_cls.open(**open_kwargs))

    @pytest.fixture
    def store_not_open(self, store_kwargs):
        return self.store_cls(**store_kwargs)

    # The suite's back door: read and write the database, not the store.
    async def set(self, store, key, value):
        store.database.put(f"{PREFIX}/{key}", value.as_numpy_array())

    async def get(self, store, key):
        return self.buffer_cls.from_bytes(store.database.get(f"{PREFIX}/{key}"))

    def test_store_repr(self, store):
        address = store.database.address
        assert repr(store) == f"YokanStore('yokan://42@{address}/{PREFIX}/')"

    def test_store_supports_writes(self, store):
        assert store.supports_writes

    def test_store_supports_listing(self, store):
        assert store.supports_listing


@pytest.fixture
def sharded_db(engine):
    """A ShardedDatabase over two map providers, with NEIGHBOURS stored."""
    from mochi.yokan.server import Provider

    providers = [
        Provider(engine=engine, provider_id=pid, config={"database": {"type": "map"}})
        for pid in (1, 2)
    ]
    client = Client(engine)
    db = ShardedDatabase([client.make_database_handle(engine.addr(), pid) for pid in (1, 2)])
    db.put_multi(list(NEIGHBOURS.items()))
    yield db
    assert db.get_multi(list(NEIGHBOURS)) == list(NEIGHBOURS.values())
    del db, providers


class TestYokanStoreSharded(TestYokanStore):
    """The same suite over a database sharded on two providers (the async
    tests inherited from TestYokanStore are marked already)."""

    @pytest.fixture
    def store_kwargs(self, sharded_db):
        return {"db": sharded_db, "prefix": PREFIX}

    def test_store_repr(self, store):
        where = ",".join(f"{s.provider_id}@{s.address}" for s in store.database.shards)
        assert repr(store) == f"YokanStore('yokan://{where}/{PREFIX}/')"


# ---------------------------------------------------------------------------
# Helpers


def spy_on(db):
    """A Database on the same connection as `db` that records the buffers
    handed to put, get_multi and the calls to length and get_range."""
    from mochi.yokan.client import Database

    class Spy(Database):
        def __init__(self):
            super().__init__(db._db, db._client)
            self.puts, self.gets, self.lengths, self.ranges = [], [], 0, []

        def put(self, key, value, *args, **kwargs):
            self.puts.append(value)
            return super().put(key, value, *args, **kwargs)

        def get_multi(self, pairs, *args, **kwargs):
            pairs = list(pairs)
            self.gets.append([buf for _, buf in pairs])
            return super().get_multi(pairs, *args, **kwargs)

        def length(self, *args, **kwargs):
            self.lengths += 1
            return super().length(*args, **kwargs)

        def get_range(self, key, *args, **kwargs):
            self.ranges.append(key)
            return super().get_range(key, *args, **kwargs)

    return Spy()


class CountingNative:
    """Stands in for a native database handle and adds up the value bytes
    that each reply delivered to the client (what crossed the wire as
    values), by call name."""

    def __init__(self, native):
        self._native = native
        self.received = {}

    def __getattr__(self, name):
        call = getattr(self._native, name)
        if not callable(call):
            return call

        def counted(*args, **kwargs):
            result = call(*args, **kwargs)
            if name in ("get", "get_packed"):  # sizes: None absent, -1 too small
                n = sum(s for s in result if s is not None and s >= 0)
            elif name == "get_alloc":
                n = sum(len(v) for v in result if v is not None)
            elif name == "get_range":
                n = len(result[1])
            else:
                return result  # carries no values
            self.received[name] = self.received.get(name, 0) + n
            return result

        return counted


def counting(db):
    """(a Database on `db`'s connection whose replies are counted, the counter)."""
    from mochi.yokan.client import Database

    native = CountingNative(db._db)
    return Database(native, db._client), native


def fill(store, keys):
    sync(store._set_many((k, cpu.Buffer.from_bytes(k.encode())) for k in keys))


def collect(aiter):
    async def run():
        return [x async for x in aiter]

    return sync(run())


# ---------------------------------------------------------------------------
# Keys and prefixes


def test_keys_are_stored_under_the_prefix(map_db):
    store = YokanStore(map_db, "/runs/42/")
    assert store.prefix == "runs/42/"
    assert store == YokanStore(map_db, "runs/42")
    sync(store.set("zarr.json", cpu.Buffer.from_bytes(b"{}")))
    assert map_db.get("runs/42/zarr.json") == b"{}"
    assert YokanStore(map_db).prefix == ""


def test_stores_with_neighbouring_prefixes_are_isolated(map_db):
    a, b = YokanStore(map_db, "exp"), YokanStore(map_db, "exp2")
    za = zarr.create_array(a, shape=(10,), chunks=(4,), dtype="i4")
    zb = zarr.create_array(b, shape=(6,), chunks=(3,), dtype="f8")
    za[:] = np.arange(10)
    zb[:] = np.ones(6)
    assert sorted(collect(a.list())) == ["c/0", "c/1", "c/2", "zarr.json"]
    assert sorted(collect(b.list())) == ["c/0", "c/1", "zarr.json"]
    sync(a.clear())
    assert collect(a.list()) == []
    np.testing.assert_array_equal(zarr.open_array(b, mode="r")[:], np.ones(6))


def test_the_empty_key_is_refused_without_a_prefix(map_db):
    store = YokanStore(map_db)
    with pytest.raises(ValueError, match="empty key"):
        sync(store.set("", cpu.Buffer.from_bytes(b"x")))
    assert sync(store.get("", PROTO)) is None
    assert not sync(store.exists(""))


# ---------------------------------------------------------------------------
# Zero copy


def test_a_write_sends_the_buffers_own_memory(map_db):
    spy = spy_on(map_db)
    store = YokanStore(spy, "z")
    data = np.arange(1 << 20, dtype=np.uint8)
    sync(store.set("c/0", cpu.Buffer.from_array_like(data)))
    assert spy.puts[-1] is data  # no copy on the way to the client
    assert map_db.get("z/c/0") == data.tobytes()


def test_a_read_lands_in_the_returned_buffer(map_db):
    spy = spy_on(map_db)
    store = YokanStore(spy, "z")
    big = np.random.default_rng(1).integers(0, 256, 4 << 20, dtype=np.uint8)
    map_db.put_multi([("z/big0", big), ("z/big1", big[::-1].copy()), ("z/small", b"tiny")])

    # First read: the first guess of the size is short, so the size is asked
    # and the value read again into a buffer of its size.
    got = sync(store.get("big0", PROTO)).as_numpy_array()
    np.testing.assert_array_equal(got, big)
    assert spy.lengths == 1 and len(spy.gets) == 2
    assert np.shares_memory(got, spy.gets[-1][0])  # the destination is the result

    # Later reads of values that size take one round trip, still zero copy.
    got = sync(store.get("big1", PROTO)).as_numpy_array()
    np.testing.assert_array_equal(got, big[::-1])
    assert spy.lengths == 1 and len(spy.gets) == 3
    assert np.shares_memory(got, spy.gets[-1][0])

    # A small value is copied out of the large destination rather than pinning it.
    got = sync(store.get("small", PROTO)).as_numpy_array()
    assert got.tobytes() == b"tiny"
    assert not np.shares_memory(got, spy.gets[-1][0])


def test_partial_values_read_whole_values_in_one_batch_and_ranges_apart(map_db):
    spy = spy_on(map_db)
    store = YokanStore(spy, "z")
    fill(store, [f"c/{i}" for i in range(8)])
    ranges = [(f"c/{i}", None) for i in range(8)] + [("c/2", None)]
    ranges += [("c/3", SuffixByteRequest(1)), ("absent", None), ("c/5", RangeByteRequest(0, 2))]
    ranges += [("gone", OffsetByteRequest(1))]
    got = sync(store.get_partial_values(PROTO, ranges))
    assert [g.to_bytes() if g else None for g in got] == [f"c/{i}".encode() for i in range(8)] + [
        b"c/2",
        b"3",
        None,
        b"c/",
        None,
    ]
    assert len(spy.gets) == 1 and len(spy.gets[0]) == 9  # distinct whole keys, one call
    assert spy.ranges == ["z/c/3", "z/c/5", "z/gone"]  # one get_range per range


def test_a_byte_range_of_a_1_mib_chunk_moves_only_the_range(db):
    db_counted, native = counting(db)
    store = YokanStore(db_counted, "z")
    chunk = np.random.default_rng(7).integers(0, 256, 1 << 20, dtype=np.uint8)
    sync(store.set("c/0", cpu.Buffer.from_array_like(chunk)))

    got = sync(store.get("c/0", PROTO, RangeByteRequest(1000, 5096))).as_numpy_array()
    np.testing.assert_array_equal(got, chunk[1000:5096])
    assert native.received == {"get_range": 4096}

    got = sync(store.get("c/0", PROTO, OffsetByteRequest((1 << 20) - 100))).as_numpy_array()
    np.testing.assert_array_equal(got, chunk[-100:])
    got = sync(store.get("c/0", PROTO, SuffixByteRequest(10))).as_numpy_array()
    np.testing.assert_array_equal(got, chunk[-10:])
    parts = sync(
        store.get_partial_values(
            PROTO, [("c/0", RangeByteRequest(0, 8)), ("c/0", RangeByteRequest(1 << 19, 1 << 30))]
        )
    )
    np.testing.assert_array_equal(parts[0].as_numpy_array(), chunk[:8])
    np.testing.assert_array_equal(parts[1].as_numpy_array(), chunk[1 << 19 :])
    assert native.received == {"get_range": 4096 + 100 + 10 + 8 + (1 << 19)}

    # The counter does see whole values: a plain read moves the whole chunk.
    np.testing.assert_array_equal(sync(store.get("c/0", PROTO)).as_numpy_array(), chunk)
    assert sum(native.received.values()) == 4096 + 100 + 10 + 8 + (1 << 19) + (1 << 20)


# ---------------------------------------------------------------------------
# Byte ranges and listings, with Zarr's MemoryStore as the reference


def test_byte_ranges_match_memory_store(map_db):
    ours, ref = YokanStore(map_db, "z"), MemoryStore()
    value = cpu.Buffer.from_bytes(bytes(range(256)) * 3)
    for store in (ours, ref):
        sync(store.set("v", value))
        sync(store.set("empty", cpu.Buffer.from_bytes(b"")))
    requests = [None, OffsetByteRequest(0), OffsetByteRequest(700), OffsetByteRequest(5000)]
    requests += [RangeByteRequest(0, 1), RangeByteRequest(100, 700), RangeByteRequest(700, 9000)]
    requests += [RangeByteRequest(10, 5), RangeByteRequest(5000, 6000)]
    requests += [SuffixByteRequest(0), SuffixByteRequest(10), SuffixByteRequest(5000)]
    for key in ("v", "empty"):
        for r in requests:
            expected = sync(ref.get(key, PROTO, r)).to_bytes()
            assert sync(ours.get(key, PROTO, r)).to_bytes() == expected, (key, r)
    for bad in (RangeByteRequest(-1, 4), OffsetByteRequest(-2), SuffixByteRequest(-3)):
        with pytest.raises(ValueError, match="negative"):
            sync(ours.get("v", PROTO, bad))
    with pytest.raises(TypeError, match="Unexpected byte_range"):
        sync(ours.get("v", PROTO, (0, 4)))


LISTING_KEYS = (
    ["zarr.json", "a/zarr.json", "a/c/0/0", "a/c/0/1", "a/c0", "a/c-x", "a/b"]
    + [f"a/c/1/{i}" for i in range(1500)]
    + ["a/d/zarr.json", "a/d/c/0", "ab/zarr.json", "b", "\u00e9t\u00e9/zarr.json"]
)


@pytest.mark.parametrize("backend", ["map", "rocksdb", "lmdb"])
def test_listings_match_memory_store(backend, engine, tmp_path):
    if backend not in available_backends:
        pytest.skip(f"{backend} is not compiled into this build")
    with serving(engine, backend, tmp_path) as db:
        db.put("outside", b"x")
        ours, ref = YokanStore(db, "p"), MemoryStore()
        fill(ours, LISTING_KEYS)
        fill(ref, LISTING_KEYS)
        listed = collect(ours.list())
        assert listed == sorted(listed, key=str.encode)  # key order
        assert sorted(listed) == sorted(collect(ref.list()))
        for prefix in ("", "a", "a/", "a/c", "a/c/1/", "ab", "zz", "\u00e9t\u00e9"):
            got = collect(ours.list_prefix(prefix))
            assert got == sorted(got, key=str.encode)  # key order
            assert sorted(got) == sorted(collect(ref.list_prefix(prefix))), prefix
        for prefix in ("", "a", "a/", "a/c", "a/c/1", "a/d", "b", "zz", "\u00e9t\u00e9"):
            got = collect(ours.list_dir(prefix))
            assert sorted(got) == sorted(collect(ref.list_dir(prefix))), prefix
            assert len(got) == len(set(got)), prefix
        assert sync(ours.getsize_prefix("a/c/1")) == sum(
            len(k) for k in LISTING_KEYS if k.startswith("a/c/1")
        )
        assert not sync(ours.is_empty("a/d")) and sync(ours.is_empty("a/e"))
        sync(ours.delete_dir("a/c"))
        sync(ref.delete_dir("a/c"))
        assert sorted(collect(ours.list())) == sorted(collect(ref.list()))
        assert db.get("outside") == b"x"


def test_list_dir_skips_past_directories(map_db):
    from mochi.yokan.client import Database

    class Counting(Database):
        """Counts the keys the store's listings take from the provider."""

        listed = 0

        def scan(self, *args, **kwargs):
            for item in super().scan(*args, **kwargs):
                Counting.listed += 1
                yield item

    store = YokanStore(Counting(map_db._db, map_db._client), "p")
    keys = ["a/zarr.json", "a/c0", "b"] + [f"a/c/{i}/{j}" for i in range(40) for j in range(50)]
    fill(store, keys)
    assert sorted(collect(store.list_dir("a"))) == ["c", "c0", "zarr.json"]
    # 2000 keys under a/c/: a listing that walked them would take them all.
    assert Counting.listed < 3 * 64, Counting.listed


# ---------------------------------------------------------------------------
# Read-only


def test_a_read_only_store_refuses_every_write(map_db):
    writer = YokanStore(map_db, "ro")
    z = zarr.create_array(writer, shape=(8,), chunks=(4,), dtype="i8")
    z[:] = np.arange(8)
    before = sorted(collect(writer.list()))
    reader = writer.with_read_only(True)
    assert reader.read_only and not writer.read_only and reader != writer
    one = cpu.Buffer.from_bytes(b"1")
    for write in (
        lambda: reader.set("c/0", one),
        lambda: reader.set_if_not_exists("new", one),
        lambda: reader._set_many([("new", one)]),
        lambda: reader.delete("c/0"),
        lambda: reader.delete_dir(""),
        lambda: reader.clear(),
    ):
        with pytest.raises(ValueError, match="read-only"):
            sync(write())
    assert sorted(collect(writer.list())) == before
    np.testing.assert_array_equal(zarr.open_array(reader, mode="r")[:], np.arange(8))
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_array(reader, mode="r+")[:] = 0
    np.testing.assert_array_equal(zarr.open_array(reader, mode="r")[:], np.arange(8))


def test_a_read_only_provider_refuses_writes_with_permission(engine, tmp_path):
    from mochi.yokan.server import Provider

    provider = Provider(
        engine=engine,
        provider_id=9,
        config={"database": {"type": "map"}, "read_only": True},
    )
    db = Client(engine).make_database_handle(engine.addr(), 9)
    store = YokanStore(db, "x")
    assert sync(store.get("zarr.json", PROTO)) is None
    with pytest.raises(ClientError) as info:
        sync(store.set("zarr.json", cpu.Buffer.from_bytes(b"{}")))
    assert info.value.code == YOKAN_ERR_PERMISSION
    del db, provider


# ---------------------------------------------------------------------------
# Unsorted backends, sharded databases, pickling


@pytest.mark.skipif(not UNSORTED, reason="no unsorted key/value backend in this build")
def test_unsorted_backend_reads_and_writes_but_cannot_list(engine, tmp_path):
    backend = UNSORTED[0]
    with serving(engine, backend, tmp_path) as db:
        store = YokanStore(db, "u")
        assert not store.supports_listing
        with pytest.raises(NotImplementedError, match="sorted backend"):
            collect(store.list_dir(""))
        with pytest.raises(NotImplementedError, match="sorted backend"):
            collect(store.list())
        z = zarr.create_array(store, shape=(20,), chunks=(8,), dtype="f4")
        z[:] = np.linspace(0, 1, 20)
        np.testing.assert_array_equal(
            zarr.open_array(store, mode="r")[:], np.linspace(0, 1, 20, dtype="f4")
        )
        sync(store.delete_dir(""))  # one erase_range: no listing needed
        assert not sync(store.exists("zarr.json")) and not sync(store.exists("c/0"))


def test_sharded_database(engine, tmp_path):
    from mochi.yokan.server import Provider

    providers = [
        Provider(engine=engine, provider_id=pid, config={"database": {"type": "map"}})
        for pid in (1, 2)
    ]
    client = Client(engine)
    shards = [client.make_database_handle(engine.addr(), pid) for pid in (1, 2)]
    db = ShardedDatabase(shards)
    store = YokanStore(db, "sh")
    root = zarr.open_group(store, mode="w")
    a = root.create_array("a", shape=(64, 64), chunks=(8, 8), dtype="u2")
    data = np.arange(64 * 64, dtype="u2").reshape(64, 64)
    a[:] = data
    root.create_array("b", shape=(3,), chunks=(3,), dtype="u1")
    assert sorted(root.array_keys()) == ["a", "b"]
    assert sorted(collect(store.list_dir("a"))) == ["c", "zarr.json"]
    per_shard = [sum(1 for _ in s.scan("sh/a/c/", "sh/a/c/", ignore_values=True)) for s in shards]
    assert sum(per_shard) == 64 and min(per_shard) > 0  # the chunks are spread
    copy = pickle.loads(pickle.dumps(store))
    assert copy == store and copy.database is db  # the live handle is reused
    np.testing.assert_array_equal(zarr.open_array(copy, path="a", mode="r")[:], data)
    del root, a, store, copy, db, shards, providers


CHILD = """
import pickle, sys
import numpy as np
import zarr
store = pickle.loads(sys.stdin.buffer.read())
z = zarr.open_array(store, mode="r+")
print(float(z[:].sum()))
z[0] = -1.0
"""


def test_a_pickled_store_connects_from_another_process(remote, tmp_path):
    server = remote("na+sm")
    store = YokanStore.from_address(server.address, 42, "shared")
    z = zarr.create_array(store, shape=(1000,), chunks=(100,), dtype="f8")
    z[:] = np.arange(1000.0)
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=pickle.dumps(store),
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr.decode()
    assert float(child.stdout.decode().split()[-1]) == float(np.arange(1000.0).sum())
    assert zarr.open_array(store, mode="r")[0] == -1.0  # the child's write is there


def test_timeout_ms_bounds_every_call_of_the_store(remote):
    from fault_helpers import stopped, timed
    from mochi.yokan.exception import YOKAN_ERR_TIMEOUT

    server = remote("na+sm")
    store = YokanStore.from_address(server.address, 42, "slow", timeout_ms=300)
    sync(store.set("c/0", cpu.Buffer.from_bytes(b"x" * 100)))
    with stopped(server):
        for call in (
            lambda: sync(store.get("c/0", PROTO)),
            lambda: sync(store.set("c/1", cpu.Buffer.from_bytes(b"y"))),
            lambda: collect(store.list()),
        ):
            error, seconds = timed(call)
            assert isinstance(error, ClientError) and error.code == YOKAN_ERR_TIMEOUT, error
            assert seconds < 0.3 + 5.0  # the budget, with a generous margin for a loaded host
    assert sync(store.get("c/0", PROTO)).to_bytes() == b"x" * 100  # and it recovers


# ---------------------------------------------------------------------------
# Arrays


@pytest.mark.parametrize("backend", ["map", "rocksdb", "lmdb"])
def test_compressed_chunked_array_round_trip(backend, engine, tmp_path):
    if backend not in available_backends:
        pytest.skip(f"{backend} is not compiled into this build")
    with serving(engine, backend, tmp_path) as db:
        store = YokanStore(db, "arrays")
        shape, chunks = (300, 257), (64, 64)  # edge chunks are partial
        z = zarr.create_array(
            store,
            name="temperature",
            shape=shape,
            chunks=chunks,
            dtype="f8",
            compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
        )
        rows, cols = np.indices(shape)
        data = np.sin(rows / 17.0) + np.cos(cols / 23.0)
        z[:] = data
        reopened = zarr.open_array(YokanStore(db, "arrays"), path="temperature", mode="r")
        np.testing.assert_array_equal(reopened[:], data)
        np.testing.assert_array_equal(reopened[100:199, 31:250], data[100:199, 31:250])
        chunk_keys = collect(store.list_prefix("temperature/c/"))
        assert len(chunk_keys) == 5 * 5
        stored = sync(store.getsize_prefix("temperature/c/"))
        assert 0 < stored < data.nbytes  # compressed
        assert db.length("arrays/temperature/c/0/0") < 64 * 64 * 8
        assert sorted(collect(store.list_dir("temperature"))) == ["c", "zarr.json"]
