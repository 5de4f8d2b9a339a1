"""Several Python threads on one database handle (the GIL is released)."""

import threading

import numpy as np


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
