"""Several Python threads on one database handle (the GIL is released)."""

import threading

import numpy as np
import pytest
from conftest import VALUED_BACKENDS, backend_config
from mochi.margo import Engine, client
from mochi.yokan.client import Client


def test_threads_share_a_handle(map_db):
    def worker(t):
        for i in range(300):
            key = f"t{t}:{i}"
            map_db.put(key, f"{t}-{i}")
            assert map_db.get(key) == f"{t}-{i}".encode()

    assert not run_threads(worker, 6)
    assert map_db.count() == 6 * 300


def run_threads(worker, n):
    """Runs worker(t) on n threads; the exceptions they raised."""
    errors = []

    def guarded(t):
        try:
            worker(t)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_threads_scan_one_handle_with_pages_in_flight(remote):
    # Each scan keeps a page request in flight while it hands out the one
    # before; several on one handle and one engine must not mix their pages.
    server = remote("na+sm")
    with Engine("na+sm", mode=0) as e:
        db = Client(e).make_database_handle(server.address, 42)
        keys = [f"k{i:05d}".encode() for i in range(3000)]
        db.put_multi([(k, k[::-1]) for k in keys])

        def worker(t):
            for round_ in range(5):
                page = 7 + t * 13 + round_
                got = list(db.scan(batch_size=page))
                assert got == [(k, k[::-1]) for k in keys]
                it = db.scan(b"k01", batch_size=page)  # dropped with a page in flight
                assert next(it)[0] > b"k01"

        assert not run_threads(worker, 4)


def test_gil_released_during_large_transfer(map_db):
    a = np.ones(16 << 20, dtype=np.uint8)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.0005)

    t = threading.Thread(target=ticker)
    t.start()
    for _ in range(5):
        map_db.put("big", a)
        map_db.get("big", np.empty_like(a))
    stop.set()
    t.join()
    assert len(ticks) > 5


@pytest.mark.parametrize("backend", VALUED_BACKENDS)
def test_large_values_read_whole_while_overwritten(remote, backend, tmp_path):
    """Readers of a large value see one whole version while writers replace
    it (in-memory stores lend the stored block to the transport: the provider
    must not write into a block a reply is still being sent from)."""
    server = remote("na+sm", backend_config(backend, tmp_path))
    size = 4 << 20
    versions = [np.full(size, c, dtype=np.uint8) for c in b"abc"]
    errors = []
    stop = threading.Event()
    with Engine("na+sm", mode=client) as engine:
        db = Client(engine).make_database_handle(server.address, 42)
        db.put("big", versions[0])

        def writer(db):
            try:
                i = 0
                while not stop.is_set():
                    i += 1
                    db.put("big", versions[i % 3])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def reader(db):
            try:
                out = np.empty(size, dtype=np.uint8)
                for _ in range(40):
                    assert db.get("big", out) == size
                    assert (out == out[0]).all(), "a read mixed two versions"
                    assert bytes(out[:1]) in (b"a", b"b", b"c")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        readers = [threading.Thread(target=reader, args=(db,)) for _ in range(2)]
        threads = [threading.Thread(target=writer, args=(db,)), *readers]
        for t in threads:
            t.start()
        for t in readers:
            t.join(120)
        stop.set()
        threads[0].join(120)
        del db, readers, threads
    assert not errors
