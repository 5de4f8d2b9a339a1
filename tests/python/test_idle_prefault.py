"""A provider's idle time prepares memory for the next records of an
in-memory store (src/backends/memory_arena.hpp): the process's resident size
grows by about a MiB after the first writes, without further calls."""

import json
import time

import pytest
from conftest import KV_BACKENDS, VALUELESS
from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.server import Provider

MEMORY_BACKENDS = [b for b in ("map", "unordered_map", "set", "unordered_set") if b in KV_BACKENDS]


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def open_memory_db(engine, backend, extra=None):
    config = {"database": {"type": backend, "config": extra or {}}}
    provider = Provider(engine=engine, provider_id=7, config=json.dumps(config))
    return provider, Client(engine).make_database_handle(engine.addr(), 7)


def fill(db, backend, n, tag):
    keys = [b"%s%08d" % (tag, i) for i in range(n)]
    value = b"" if backend in VALUELESS else b"v" * 64
    db.put_multi(keys, [value] * n)
    return keys, value


def growth_while_idle(before, want, limit_s=2.0):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if resident_bytes() - before >= want:
            break
        time.sleep(0.01)
    return resident_bytes() - before


@pytest.mark.parametrize("backend", MEMORY_BACKENDS)
def test_idle_provider_prepares_memory(engine, backend):
    check_prepares_memory(engine, backend)


def test_provider_that_never_spins_prepares_memory():
    # spin_us 0: the progress thread sleeps as soon as it finds nothing to do.
    with Engine("tcp", config={"spin_us": 0}) as engine:
        check_prepares_memory(engine, "map")


def check_prepares_memory(engine, backend):
    provider, db = open_memory_db(engine, backend)
    # Measured from before the first records: the provider starts on the
    # memory ahead as soon as the put is answered, faster than /proc is read.
    before = resident_bytes()
    keys, value = fill(db, backend, 100, b"a")
    grown = growth_while_idle(before, 900 << 10)
    assert grown >= 900 << 10
    # The prepared memory holds correct records afterwards.
    more, _ = fill(db, backend, 5000, b"b")
    assert db.count() == 5100
    assert [bytes(v) for v in db.get_multi(keys[:3] + more[-3:])] == [value] * 6
    del provider


@pytest.mark.parametrize("backend", MEMORY_BACKENDS)
def test_prefault_off(engine, backend):
    provider, db = open_memory_db(engine, backend, {"prefault_max_bytes": 0})
    before = resident_bytes()
    fill(db, backend, 100, b"a")
    time.sleep(0.3)
    assert resident_bytes() - before < 512 << 10
    assert provider.config["database"]["config"]["prefault_max_bytes"] == 0
    del provider


def test_provider_closed_while_preparing_memory(engine):
    # Each provider goes away while its idle work is likely under way; the
    # engine must stop calling into a closed backend.
    for round_ in range(20):
        provider, db = open_memory_db(engine, "map")
        keys, value = fill(db, "map", 2000, b"r%02d" % round_)
        assert bytes(db.get(keys[-1])) == value
        del provider, db
