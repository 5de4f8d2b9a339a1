"""Migration of a database to another provider over the engine
(docs/snapshot.rst), on every compiled backend that stores data."""

import glob
import os
import signal
import threading
import time

import pytest
from conftest import (
    DOC_ONLY,
    PERSISTENT,
    STORING_BACKENDS,
    VALUELESS,
    backend_config,
    wait_stopped,
)
from mochi.margo import Engine
from mochi.yokan import exception as yexc
from mochi.yokan.client import Client, migration_target
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.server import Exception as ServerError
from snapshot_helpers import Items, empty_provider, key, provider

BACKENDS = STORING_BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrate_and_follow(tmp_path, backend):
    with Engine("tcp") as e1, Engine("tcp") as e2:
        src, db = provider(e1, backend, tmp_path / "src", 1)
        Items(backend, db).write_range(0, 100)
        dst = empty_provider(e2, 2)[0]
        src.migrate(str(e2.addr()), 2, str(tmp_path / "dst"))
        # The source answers MIGRATED, naming where the data went.
        with pytest.raises(ClientError) as info:
            db.count() if backend not in DOC_ONLY else db.open_collection("c").size()
        assert info.value.code == yexc.YOKAN_ERR_MIGRATED
        assert migration_target(info.value) == (str(e2.addr()), 2)
        with pytest.raises(ClientError) as info:
            Items(backend, db).write(100)
        assert info.value.code == yexc.YOKAN_ERR_MIGRATED
        moved = db.follow_migration(info.value)
        assert moved.provider_id == 2
        assert Items(backend, moved).present(120) == list(range(100))
        Items(backend, moved).write(100)
        assert dst.config["database"]["type"] == backend
        assert "database" not in src.config
        if backend in PERSISTENT:
            source_path = backend_config(backend, tmp_path / "src")["database"]["config"]["path"]
            assert not os.path.exists(source_path), source_path
            assert dst.config["database"]["config"]["path"].startswith(str(tmp_path / "dst"))
        assert not glob.glob(str(tmp_path / "**" / "*.yokan-incoming"), recursive=True)
        assert not glob.glob(str(tmp_path / "**" / ".yokan-migrate-*"), recursive=True)
        del moved, db, src, dst


def test_migrate_refused_by_a_destination_with_a_database(engine, tmp_path):
    src, db = provider(engine, "map", tmp_path, 1)
    db.put("a", "1")
    occupied = provider(engine, "map", tmp_path / "other", 2)  # noqa: F841 (kept alive)
    with pytest.raises(ServerError) as info:
        src.migrate(str(engine.addr()), 2)
    assert info.value.code == yexc.YOKAN_ERR_INVALID_DATABASE
    db.put("b", "2")  # writes are accepted again
    assert db.get("a") == b"1" and db.get("b") == b"2"


def test_migrate_to_nowhere_leaves_the_source_serving(engine, tmp_path):
    src, db = provider(engine, "map", tmp_path, 1)
    db.put("a", "1")
    with pytest.raises(ServerError) as info:
        src.migrate(str(engine.addr()), 77)  # no such provider
    assert info.value.code == yexc.YOKAN_ERR_INVALID_PROVIDER
    none = empty_provider(engine, 3)[0]
    with pytest.raises(ServerError) as info:
        none.migrate(str(engine.addr()), 1)  # nothing to migrate
    assert info.value.code == yexc.YOKAN_ERR_INVALID_DATABASE
    db.put("b", "2")
    assert db.get("a") == b"1" and db.get("b") == b"2"


# About 48 MiB: several 8 MiB chunks, so that the destination can be stopped
# with part of the data received.
N_BIG = 48


def write_big(backend, db):
    if backend in VALUELESS:
        db.put_multi([(key(i) + "x" * 1000, b"") for i in range(N_BIG * 1000)])
    elif backend in DOC_ONLY:
        coll = db.create_collection("c")
        for i in range(N_BIG):
            coll.store(bytes([i]) * (1 << 20))
    else:
        for i in range(N_BIG):
            db.put(key(i), bytes([i]) * (1 << 20))


def check_big(backend, db):
    if backend in VALUELESS:
        assert db.count() == N_BIG * 1000
        assert all(db.exists_multi([key(i) + "x" * 1000 for i in range(0, N_BIG * 1000, 97)]))
    elif backend in DOC_ONLY:
        coll = db.open_collection("c")
        assert coll.size() == N_BIG
        for i in range(N_BIG):
            assert coll.load(i) == bytes([i]) * (1 << 20)
    else:
        for i in range(N_BIG):
            assert db.get(key(i)) == bytes([i]) * (1 << 20)


def staged_bytes(root):
    total = 0
    for path in glob.glob(str(root) + ".yokan-incoming/data/**", recursive=True):
        if os.path.isfile(path):
            total += os.path.getsize(path)
    return total


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_destination_mid_migration(engine, remote, tmp_path, backend):
    src, db = provider(engine, backend, tmp_path / "src", 1)
    write_big(backend, db)
    # No database: a truthy config without a "database" section.
    dest = remote("tcp", {"buffer_cache": {"type": "lru"}}, provider_id=5)
    root = tmp_path / "dst"
    result = {}

    def run():
        try:
            src.migrate(dest.address, 5, str(root))
            result["ok"] = True
        except ServerError as e:
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    # Stop the destination as soon as the transfer has begun, then let it run
    # in slices of about a millisecond until a first chunk has landed: it is
    # then stopped mid-transfer whatever the speed of the machine.
    deadline = time.monotonic() + 60
    staging = str(root) + ".yokan-incoming"
    while not os.path.isdir(staging) and t.is_alive() and time.monotonic() < deadline:
        pass
    os.kill(dest.proc.pid, signal.SIGSTOP)
    wait_stopped(dest.proc.pid)
    while staged_bytes(root) == 0 and t.is_alive() and time.monotonic() < deadline:
        os.kill(dest.proc.pid, signal.SIGCONT)
        time.sleep(0.001)
        os.kill(dest.proc.pid, signal.SIGSTOP)
        wait_stopped(dest.proc.pid)
    staged = staged_bytes(root)
    assert 0 < staged < N_BIG << 20, f"not mid-transfer: {staged} bytes staged"
    # Meanwhile reads are served and writes refused (BUSY), not lost.
    with pytest.raises(ClientError) as info:
        if backend in DOC_ONLY:
            db.open_collection("c").store(b"late")
        else:
            db.put("late", b"")
    assert info.value.code == yexc.YOKAN_ERR_BUSY
    assert "migrating" in str(info.value)
    if backend not in DOC_ONLY:
        assert db.exists(key(0) + ("x" * 1000 if backend in VALUELESS else ""))
    os.kill(dest.proc.pid, signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive(), "migrate() did not return after the destination died"
    assert "error" in result, result
    assert result["error"].code in (yexc.YOKAN_ERR_FROM_MERCURY, yexc.YOKAN_ERR_TIMEOUT)
    # The source serves everything, writes included.
    check_big(backend, db)
    if backend in DOC_ONLY:
        db.open_collection("c").store(b"after")
    else:
        db.put("after", b"")
        assert db.exists("after")
    assert not glob.glob(str(tmp_path / "src" / ".yokan-migrate-*"))
    assert Client(engine).make_database_handle(engine.addr(), 1)
