"""Several Python threads on one database handle (the GIL is released)."""

import threading

import numpy as np
import pytest
from conftest import VALUED_BACKENDS, backend_config
from mochi.margo import Engine, client
from mochi.yokan.client import Client


def test_threads_share_a_handle(map_db):
    errors = []

    def worker(t):
        try:
            for i in range(300):
                key = f"t{t}:{i}"
                map_db.put(key, f"{t}-{i}")
                assert map_db.get(key) == f"{t}-{i}".encode()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert map_db.count() == 6 * 300


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
