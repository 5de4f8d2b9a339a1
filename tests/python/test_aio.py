"""mochi.yokan.aio: the coroutine twins of Database and Collection, on the
default event loop and on uvloop. Results and errors are compared with the
blocking API on the same provider; concurrency, cancellation and timeouts
are checked structurally (calls in flight, file descriptors, threads)."""

import asyncio
import gc
import os
import time
import weakref

import numpy as np
import pytest
from conftest import COLLECTION_BACKENDS, SORTED, VALUED_BACKENDS, serving
from fault_helpers import Server, stopped
from mochi.yokan import _server, aio
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_BUFFER_SIZE,
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_KEY_EXISTS,
    YOKAN_ERR_KEY_NOT_FOUND,
    YOKAN_ERR_MODE,
    YOKAN_ERR_TIMEOUT,
)
from mochi.yokan.mode import Mode

try:
    import uvloop
except ImportError:  # pragma: no cover - the test extra installs it
    uvloop = None

# A liveness bound, asserted with a margin; the measured times are printed (-s).
TIMEOUT_MARGIN_S = 1.0


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a coroutine to completion on a new loop of the given kind."""
    if request.param == "asyncio":
        return asyncio.run
    if uvloop is None:
        pytest.skip("uvloop is not installed (pip install uvloop)")
    return uvloop.run


@pytest.fixture(params=VALUED_BACKENDS)
def dbs(request, engine, tmp_path):
    """(backend, blocking Database, AsyncDatabase) on one provider."""
    with serving(engine, request.param, tmp_path) as db:
        yield request.param, db, aio.AsyncDatabase(db)


def error_of(fn):
    """The ClientError `fn()` raises (fails if it raises none)."""
    with pytest.raises(ClientError) as e:
        fn()
    return e.value


async def async_error_of(coro):
    with pytest.raises(ClientError) as e:
        await coro
    return e.value


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def threads():
    return len(os.listdir("/proc/self/task"))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_key_value_calls_match_the_blocking_api(dbs, run):
    backend, db, adb = dbs

    async def main():
        await adb.put("k", "value")
        await adb.put(b"b", b"\x00\x01")
        assert await adb.get("k") == b"value" == db.get("k")
        buf = bytearray(16)
        assert await adb.get("k", buf) == 5 and bytes(buf[:5]) == b"value"
        arr = np.zeros(8, dtype=np.uint8)
        assert await adb.get(b"b", arr) == 2 and arr[:2].tolist() == [0, 1]
        assert await adb.exists("k") and not await adb.exists("absent")
        assert await adb.length("k") == 5 and await adb.length("absent") is None
        assert await adb.count() == db.count() == 2
        await adb.put_multi([("a1", "x"), ("a2", "yy")])
        await adb.put_multi(["a3", "a4"], ["zzz", "w"])
        await adb.put_packed(b"p1p2", [2, 2], b"abc", [1, 2])
        assert await adb.get_multi(["a1", "a2", "nope"]) == db.get_multi(["a1", "a2", "nope"])
        bufs = [bytearray(4), bytearray(1)]
        assert await adb.get_multi([("a3", bufs[0]), ("a2", bufs[1])]) == [3, -1]
        assert bytes(bufs[0][:3]) == b"zzz"
        packed = bytearray(8)
        assert await adb.get_packed(b"p1p2", [2, 2], packed) == [1, 2]
        assert bytes(packed[:3]) == b"abc"
        assert await adb.exists_multi(["a1", "nope"]) == [True, False]
        assert await adb.exists_packed(b"a1zz", [2, 2]) == [True, False]
        assert await adb.length_multi(["a2", "nope"]) == [2, None]
        assert await adb.length_packed(b"a3", [2]) == [3]
        await adb.erase("a1")
        await adb.erase_multi(["a2"])
        await adb.erase_packed(b"a3", [2])
        assert db.exists_multi(["a1", "a2", "a3", "a4"]) == [False, False, False, True]
        seen = []
        await adb.fetch(b"a4", lambda i, k, v: seen.append((i, bytes(k), bytes(v))))
        await adb.fetch_multi(["a4", "nope"], lambda i, k, v: seen.append((i, k, v)))

        async def async_callback(i, k, v):
            seen.append(("async", i))

        await adb.fetch_packed(b"a4", [2], async_callback)
        assert seen == [(0, b"a4", b"w"), (0, "a4", seen[1][2]), (1, "nope", None), ("async", 0)]
        assert bytes(seen[1][2]) == b"w"
        # Empty batches send nothing and return at once, as the blocking ones.
        assert await adb.get_multi([]) == [] and await adb.exists_multi([]) == []
        await adb.put_multi([])
        await adb.erase_range("p")
        assert not db.exists("p1")
        await adb.erase_range("")
        assert db.count() == 0
        # The same handle and the blocking one side by side.
        async with adb as same:
            assert same is adb and adb.database is db and adb.provider_id == db.provider_id
            assert adb.address == db.address
            assert adb.transport_info() == db.transport_info()

    run(main())


def test_errors_are_the_blocking_apis(dbs, run):
    backend, db, adb = dbs
    db.put("k", "v")

    async def main():
        cases = [
            (lambda: db.get("absent"), adb.get("absent"), YOKAN_ERR_KEY_NOT_FOUND),
            (lambda: db.get("k", bytearray(0)), adb.get("k", bytearray(0)), YOKAN_ERR_BUFFER_SIZE),
            (lambda: db.put("", "v"), adb.put("", "v"), YOKAN_ERR_INVALID_ARGS),
            (
                lambda: db.put("k", "v", mode=Mode.NEW_ONLY),
                adb.put("k", "v", mode=Mode.NEW_ONLY),
                YOKAN_ERR_KEY_EXISTS,
            ),
            (
                lambda: db.put("k", "v", mode=Mode.NEW_ONLY | Mode.EXIST_ONLY),
                adb.put("k", "v", mode=Mode.NEW_ONLY | Mode.EXIST_ONLY),
                YOKAN_ERR_MODE,
            ),
        ]
        for blocking, coro, code in cases:
            expected = error_of(blocking)
            got = await async_error_of(coro)
            assert type(got) is type(expected)
            assert got.code == expected.code
            assert code is None or got.code == code
        with pytest.raises(TypeError):
            await adb.put(3, "v")
        with pytest.raises(ValueError):
            await adb.put_multi(["a"], ["b", "c"])

    run(main())


@pytest.fixture(params=[b for b in VALUED_BACKENDS if b in SORTED])
def sorted_dbs(request, engine, tmp_path):
    with serving(engine, request.param, tmp_path) as db:
        yield db, aio.AsyncDatabase(db)


def test_listing_and_scan(sorted_dbs, run):
    db, adb = sorted_dbs
    db.put_multi([(f"k{i:03d}", f"v{i}") for i in range(50)])
    db.put("other", "x")

    async def main():
        keys = [bytearray(8) for _ in range(3)]
        assert await adb.list_keys(keys, "k010", "k") == db.list_keys(
            [bytearray(8) for _ in range(3)], "k010", "k"
        )
        assert bytes(keys[0][:4]) == b"k011"
        pairs = [(bytearray(8), bytearray(8)) for _ in range(2)]
        assert await adb.list_keyvals(pairs, "", "k") == [(4, 2), (4, 2)]
        assert bytes(pairs[1][1][:2]) == b"v1"
        kbuf, vbuf = bytearray(64), bytearray(64)
        assert await adb.list_keys_packed(kbuf, 2, "k", "k", Mode.INCLUSIVE) == [4, 4]
        assert await adb.list_keyvals_packed(kbuf, vbuf, 2, "k048", "k") == [(4, 3)]
        assert bytes(kbuf[:4]) == b"k049" and bytes(vbuf[:3]) == b"v49"
        # Pages of 7: the same pairs as the blocking scan.
        got = [kv async for kv in adb.scan(filter="k", batch_size=7)]
        assert got == list(db.scan(filter="k", batch_size=7))
        assert len(got) == 50
        assert [k async for k, v in adb.scan("k044", "k", ignore_values=True)] == [
            f"k{i:03d}".encode() for i in range(45, 50)
        ]
        assert len([kv async for kv in adb.scan(filter="k", count=9, batch_size=4)]) == 9
        # Leaving early gives up the page requested ahead: nothing stays in flight.
        async for _ in adb.scan(filter="k", batch_size=5):
            break
        gc.collect()
        await asyncio.sleep(0.05)
        assert aio.in_flight()[0] == 0
        seen = []
        await adb.iter(lambda i, k, v: seen.append(k) if i < 3 else False, "k", "k")
        assert seen == ["k000", "k001", "k002"]

    run(main())


@pytest.fixture(params=COLLECTION_BACKENDS)
def colls(request, engine, tmp_path):
    with serving(engine, request.param, tmp_path) as db:
        yield db, aio.AsyncDatabase(db)


def test_collections(colls, run):
    db, adb = colls

    async def main():
        coll = await adb.create_collection("c")
        assert await adb.collection_exists("c") and db.collection_exists("c")
        assert (await async_error_of(adb.create_collection("c"))).code == YOKAN_ERR_KEY_EXISTS
        assert await coll.store({"a": 1}) == 0
        assert await coll.store_multi(["x", b"yy"]) == [1, 2]
        assert await coll.store_packed(b"abcd", [1, 3]) == [3, 4]
        assert await coll.size() == 5 and await coll.last_id() == 4
        assert await coll.load_json(0) == {"a": 1}
        assert await coll.load(2) == b"yy"
        buf = bytearray(8)
        assert await coll.load(4, buf) == 3 and bytes(buf[:3]) == b"bcd"
        assert (await async_error_of(coll.load(4, bytearray(1)))).code == YOKAN_ERR_BUFFER_SIZE
        assert await coll.load_multi([1, 9]) == [b"x", None]
        bufs = [bytearray(4), bytearray(4)]
        assert await coll.load_multi([1, 2], bufs) == [1, 2]
        packed = bytearray(8)
        assert await coll.load_packed([3, 4], packed) == [1, 3] and bytes(packed[:4]) == b"abcd"
        assert await coll.length(2) == 2 and await coll.length_multi([1, 9]) == [1, None]
        await coll.update(1, "X")
        await coll.update_multi([2], ["YY"])
        assert await coll.update_packed([3], b"Z", [1]) == [3]
        assert db.open_collection("c").load_multi([1, 2, 3]) == [b"X", b"YY", b"Z"]
        await coll.erase(3)
        await coll.erase_multi([4])
        assert [doc async for doc in coll] == [b'{"a":1}', b"X", b"YY"]
        assert [i async for i, _ in coll.scan(1, batch_size=1)] == [1, 2]
        assert await coll.list_docs(0, [bytearray(8), bytearray(8)]) == [(0, 7), (1, 1)]
        assert await coll.list_docs_packed(1, bytearray(8), 5) == [(1, 1), (2, 2)]
        seen = []
        await coll.fetch(2, lambda i, d, doc: seen.append(bytes(doc)))
        await coll.fetch_multi([0, 1], lambda i, d, doc: seen.append(d))
        await coll.iter(lambda i, d, doc: seen.append(-d) if i == 0 else False)
        assert seen == [b"YY", 0, 1, 0]
        if _server.has_lua:
            assert await coll.find({"a": 1}) == db.open_collection("c").find({"a": 1})
        await adb.drop_collection("c")
        assert not await adb.collection_exists("c")
        assert (await async_error_of(adb.open_collection("c").size())).code == (
            YOKAN_ERR_KEY_NOT_FOUND
        )

    run(main())


def test_a_gather_of_1000_gets_has_them_all_in_flight_at_once(engine, tmp_path, run):
    with serving(engine, "map", tmp_path) as db:
        db.put_multi([(f"key{i}", f"value{i}") for i in range(1000)])
        adb = aio.AsyncDatabase(db)

        async def main():
            aio.in_flight()  # resets the peak
            before = threads()
            values = await asyncio.gather(*(adb.get(f"key{i}") for i in range(1000)))
            assert values == [f"value{i}".encode() for i in range(1000)]
            now, peak = aio.in_flight()
            # All 1000 requests were sent before the first reply was collected
            # (the counter counts from the send to the collection)...
            assert peak == 1000 and now == 0
            # ... by the engine alone: no thread was started for them.
            assert threads() <= before

        run(main())


def test_cancelled_calls_leak_nothing_and_never_write_late(engine, tmp_path, run):
    with serving(engine, "map", tmp_path) as db:
        adb = aio.AsyncDatabase(db)

        async def cancel_round(i, n=100):
            # WAIT: the provider answers only once the key exists, so the
            # calls are surely in flight when they are cancelled.
            bufs = [bytearray(16) for _ in range(n)]
            tasks = [asyncio.ensure_future(adb.get(f"w{i}", b, mode=Mode.WAIT)) for b in bufs]
            await asyncio.sleep(0.02)
            assert aio.in_flight()[0] == n
            # A bytearray cannot change size while a call holds its buffer.
            with pytest.raises(BufferError):
                bufs[0].append(0)
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results)
            assert aio.in_flight()[0] == 0
            # The cancelled calls let go of their buffers ...
            for b in bufs:
                b.append(0)
                del b[-1]
            # ... and their replies, sent once the key exists, are dropped.
            db.put(f"w{i}", b"x" * 16)
            await asyncio.sleep(0.05)
            assert all(b == bytearray(16) for b in bufs)
            db.erase(f"w{i}")

        async def main():
            await cancel_round(0)
            await cancel_round(1)
            fds, rss = open_fds(), rss_bytes()
            for i in range(2, 12):
                await cancel_round(i)
            gc.collect()
            grown = rss_bytes() - rss
            print(f"1000 cancelled calls: fds {fds} -> {open_fds()}, RSS +{grown / 1024:.0f} KiB")
            assert open_fds() == fds
            assert grown < 8 * 1024 * 1024
            # The engine keeps working.
            await adb.put("after", "ok")
            assert await adb.get("after") == b"ok"

        run(main())


def test_an_awaited_get_keeps_its_buffer_alive(engine, tmp_path, run):
    with serving(engine, "map", tmp_path) as db:
        adb = aio.AsyncDatabase(db)

        async def main():
            arr = np.zeros(8, dtype=np.uint8)
            ref = weakref.ref(arr)
            task = asyncio.ensure_future(adb.get("later", arr, mode=Mode.WAIT))
            del arr
            await asyncio.sleep(0.02)
            gc.collect()
            assert ref() is not None  # held by the call, not by the caller
            await adb.put("later", b"\x07" * 8)
            assert await task == 8
            del task
            gc.collect()
            assert ref() is None  # ... and let go once it completed

        run(main())


@pytest.fixture
def remote():
    s = Server("tcp")
    yield s
    s.stop()


def test_timeout_to_a_stopped_provider(engine, remote, run):
    db = Client(engine).make_database_handle(remote.address, 42)
    db.put("k", "v")
    db.put("big", b"b" * (1 << 20))
    adb = aio.AsyncDatabase(db)

    async def timed(coro):
        start = time.monotonic()
        err = await async_error_of(coro)
        return err, time.monotonic() - start

    async def main():
        with stopped(remote):
            err, took = await timed(adb.get("k", timeout_ms=1000))
            print(f"async get from a stopped provider: {took:.3f} s")
            assert err.code == YOKAN_ERR_TIMEOUT and "timed out after 1000 ms" in str(err)
            assert took < 1.0 + TIMEOUT_MARGIN_S
            # 50 at once, and a 1 MiB put (a rendezvous the provider never takes).
            start = time.monotonic()
            results = await asyncio.gather(
                *(adb.get("k", timeout_ms=500) for _ in range(50)),
                adb.put("big", b"c" * (1 << 20), timeout_ms=500),
                return_exceptions=True,
            )
            took = time.monotonic() - start
            print(f"51 async calls to a stopped provider: {took:.3f} s")
            assert all(isinstance(r, ClientError) and r.code == YOKAN_ERR_TIMEOUT for r in results)
            assert took < 0.5 + TIMEOUT_MARGIN_S
            assert aio.in_flight()[0] == 0
        # Resumed: the same handle works again.
        assert await adb.get("k", timeout_ms=10000) == b"v"
        assert len(await adb.get("big", timeout_ms=10000)) == 1 << 20

    run(main())


def test_async_client(engine, tmp_path, run):
    with serving(engine, "map", tmp_path) as db:

        async def main():
            async with aio.AsyncClient(engine) as client:
                adb = await client.make_database_handle(engine.addr(), db.provider_id)
                await adb.put("k", "v")
                assert db.get("k") == b"v"
                with pytest.raises(ClientError):
                    await client.make_database_handle(engine.addr(), 999)

        run(main())
    with pytest.raises(TypeError):
        aio.AsyncDatabase("not a database")
