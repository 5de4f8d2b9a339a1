"""WAIT/NOTIFY: blocking reads that wake when a write makes the key exist."""

import threading
import time

import pytest
from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_TIMEOUT
from mochi.yokan.mode import Mode


def later(fn, delay=0.2):
    t = threading.Timer(delay, fn)
    t.start()
    return t


@pytest.mark.parametrize("op", ["get", "exists", "length", "erase", "fetch"])
def test_wait_until_key_exists(db, op):
    later(lambda: db.put("late", "value"))
    start = time.monotonic()
    if op == "get":
        assert db.get("late", mode=Mode.WAIT, timeout_ms=20000) == b"value"
    elif op == "exists":
        assert db.exists("late", mode=Mode.WAIT, timeout_ms=20000)
    elif op == "length":
        assert db.length("late", mode=Mode.WAIT, timeout_ms=20000) == 5
    elif op == "erase":
        db.erase("late", mode=Mode.WAIT, timeout_ms=20000)
        assert not db.exists("late")
    else:
        seen = []
        db.fetch("late", lambda i, k, v: seen.append(bytes(v)), mode=Mode.WAIT, timeout_ms=20000)
        assert seen == [b"value"]
    assert time.monotonic() - start >= 0.15


def test_any_write_wakes_waiters(map_db):
    later(lambda: map_db.put_multi([("x", "1"), ("late", "2")]))  # no NOTIFY flag needed
    assert map_db.get("late", mode=Mode.WAIT, timeout_ms=20000) == b"2"
    later(lambda: map_db.put("late2", "a", mode=Mode.APPEND))
    assert map_db.get("late2", mode=Mode.WAIT, timeout_ms=20000) == b"a"


def test_many_waiters_all_wake(map_db):
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(map_db.get("k", mode=Mode.WAIT, timeout_ms=20000))
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    map_db.put("k", "v")
    for t in threads:
        t.join(30)
    assert results == [b"v"] * 8


def test_wait_consume_only_one_winner(map_db):
    results = []

    def consume():
        try:
            results.append(map_db.get("job", mode=Mode.WAIT | Mode.CONSUME, timeout_ms=1500))
        except ClientError as e:
            results.append(e.code)

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    map_db.put("job", "work")
    for t in threads:
        t.join(30)
    assert sorted(results, key=str) == sorted(
        [b"work", YOKAN_ERR_TIMEOUT, YOKAN_ERR_TIMEOUT], key=str
    )
    assert not map_db.exists("job")


def test_batch_waits_for_every_key(map_db):
    later(lambda: map_db.put("a", "1"), 0.1)
    later(lambda: map_db.put("b", "2"), 0.3)
    assert map_db.exists_multi(["a", "b"], mode=Mode.WAIT, timeout_ms=20000) == [True, True]


def test_wait_timeout(db):
    start = time.monotonic()
    with pytest.raises(ClientError) as e:
        db.get("never", mode=Mode.WAIT, timeout_ms=300)
    assert e.value.code == YOKAN_ERR_TIMEOUT
    assert 0.25 < time.monotonic() - start < 10
    db.put("never", "now")  # the expired waiter is gone: nothing breaks
    assert db.get("never") == b"now"


def test_waits_hold_no_handler_thread(engine):
    """More waiters than handler threads: the provider still serves others."""
    from mochi.yokan.server import Provider

    with Engine("tcp", config={"num_rpc_threads": 2}) as e:
        p = Provider(engine=e, provider_id=1, config='{"database": {"type": "map"}}')
        db = Client(e).make_database_handle(e.addr(), 1)

        def wait_for(handle, i):
            handle.get(f"w{i}", mode=Mode.WAIT, timeout_ms=20000)

        waiters = [threading.Thread(target=wait_for, args=(db, i)) for i in range(6)]
        for t in waiters:
            t.start()
        time.sleep(0.3)
        db.put("other", "x")  # served although 6 requests wait
        assert db.get("other") == b"x"
        db.put_multi([(f"w{i}", "") for i in range(6)])
        for t in waiters:
            t.join(30)
            assert not t.is_alive()
        del db, p


def test_waiting_client_killed_leaves_nothing_stuck(remote):
    import subprocess
    import sys

    server = remote("na+sm")
    code = (
        "from mochi.margo import Engine\n"
        "from mochi.yokan.client import Client\n"
        "from mochi.yokan.mode import Mode\n"
        "e = Engine('na+sm', mode=0)\n"
        f"db = Client(e).make_database_handle('{server.address}', 42)\n"
        "print('ready', flush=True)\n"
        "db.get('never', mode=Mode.WAIT)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    child.kill()
    child.wait()
    child.stdout.close()
    with Engine("na+sm", mode=0) as e:
        db = Client(e).make_database_handle(server.address, 42)
        db.put("never", "x")  # the dead waiter's request is dropped, not answered late
        assert db.get("never", mode=Mode.WAIT, timeout_ms=5000) == b"x"


def test_provider_dropped_while_woken_waiters_are_queued():
    """A write wakes waiters (their retries queue on the handler pool) and the
    provider is destroyed at once: each retry finds the provider gone and
    answers an error instead of touching freed memory."""
    from mochi.yokan.exception import YOKAN_ERR_INVALID_PROVIDER
    from mochi.yokan.server import Provider

    def wait_for(db, i, outcomes):
        try:
            outcomes.append(db.get(f"w{i}", mode=Mode.WAIT, timeout_ms=20000))
        except ClientError as err:
            outcomes.append(err.code)

    for _ in range(10):
        with Engine("na+sm", config={"num_rpc_threads": 1}) as e:
            p = Provider(engine=e, provider_id=1, config='{"database": {"type": "map"}}')
            db = Client(e).make_database_handle(e.addr(), 1)
            outcomes = []
            waiters = [threading.Thread(target=wait_for, args=(db, i, outcomes)) for i in range(8)]
            for t in waiters:
                t.start()
            time.sleep(0.3)  # all parked
            db.put_multi([(f"w{i}", "v") for i in range(8)])
            del p
            for t in waiters:
                t.join(30)
                assert not t.is_alive()
            assert len(outcomes) == 8
            assert all(o in (b"v", YOKAN_ERR_INVALID_PROVIDER) for o in outcomes), outcomes
            del db


def test_large_waiting_request_held_while_others_flow(remote):
    # With a high rendezvous threshold, a 2000-key request (~32 KiB) travels
    # eagerly, and the provider reads its body in UCX's receive buffer: the
    # parked request keeps that buffer while other requests come and go.
    server = remote("na+sm")
    keys = [b"held-%011d" % i for i in range(2000)]
    with Engine("na+sm", mode=0, config={"rndv_threshold": 1 << 20}) as e:
        db = Client(e).make_database_handle(server.address, 42)
        db.put_multi([(k, b"v" + k) for k in keys[1:]])
        got = {}

        def waiter():
            got["exists"] = db.exists_multi(keys, mode=Mode.WAIT, timeout_ms=20000)

        t = threading.Thread(target=waiter)
        t.start()
        with Engine("na+sm", mode=0, config={"rndv_threshold": 1 << 20}) as e2:
            other = Client(e2).make_database_handle(server.address, 42)
            for i in range(200):  # eager ~28 KiB puts: held and released meanwhile
                other.put_multi([(b"flow-%03d-%06d" % (i, j), b"x" * 40) for j in range(500)])
            assert t.is_alive()
            other.put(keys[0], b"first")
        t.join(20)
        assert not t.is_alive()
        assert got["exists"] == [True] * len(keys)
        assert db.get(keys[0]) == b"first"
        assert db.get(keys[-1]) == b"v" + keys[-1]
