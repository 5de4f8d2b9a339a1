"""Database-less providers, snapshot and restore (docs/snapshot.rst), on every
compiled backend that stores data."""

import json
import os
import threading
import time

import pytest
from conftest import PERSISTENT, STORING_BACKENDS, backend_config
from mochi.margo import Engine
from mochi.yokan import exception as yexc
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.mode import Mode
from mochi.yokan.server import Exception as ServerError
from mochi.yokan.server import Provider
from snapshot_helpers import Items, empty_provider, key, provider

BACKENDS = STORING_BACKENDS


def storage_paths(backend, root):
    """The files of a `backend` database made by backend_config under root."""
    path = backend_config(backend, root)["database"]["config"].get("path")
    return [path] if path else []


# ---- 1. providers without a database ----


def test_provider_without_database_answers_invalid_database(engine):
    p, db = empty_provider(engine, 5)
    assert "database" not in p.config
    calls = [
        lambda: db.put("k", "v"),
        lambda: db.get("k"),
        lambda: db.exists("k"),
        lambda: db.length("k"),
        lambda: db.erase("k"),
        lambda: db.count(),
        lambda: db.iter(lambda *a: None),
        lambda: db.put_multi([("a", "1"), ("b", "2")]),
        lambda: db.create_collection("c"),
        # WAIT on a provider with no database answers, it does not park.
        lambda: db.get("k", mode=Mode.WAIT, timeout_ms=5000),
    ]
    for call in calls:
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.code == yexc.YOKAN_ERR_INVALID_DATABASE, info.value
        assert "has no database" in str(info.value)


def test_database_that_is_not_an_object_is_still_a_config_error(engine):
    with pytest.raises(ServerError) as info:
        Provider(engine=engine, provider_id=6, config='{"database": []}')
    assert info.value.code == yexc.YOKAN_ERR_INVALID_CONFIG


# ---- 2, 3. snapshot and restore, per backend ----


@pytest.mark.parametrize("backend", BACKENDS)
def test_snapshot_then_restore_elsewhere(engine, tmp_path, backend):
    src, db = provider(engine, backend, tmp_path / "src", 1)
    items = Items(backend, db)
    items.write_range(0, 150)
    if backend not in {"set", "unordered_set"}:
        items.write(150, big=True)  # one 1 MiB value among small ones
    else:
        items.write(150)
    snap = tmp_path / "snap"
    src.snapshot(str(snap))
    # Written after the snapshot: not in it.
    items.write_range(151, 160)

    manifest = json.loads((snap / "yokan-snapshot.json").read_text())
    assert manifest["yokan_snapshot_version"] == 1
    assert manifest["type"] == backend
    assert isinstance(manifest["db_config"], dict)
    assert manifest["files"] and all((snap / "data" / f).is_file() for f in manifest["files"])

    dst, restored = empty_provider(engine, 2)
    dst.restore(str(snap), str(tmp_path / "restored"))
    assert dst.config["database"]["type"] == backend
    assert Items(backend, restored).present(160) == list(range(151))
    # The source keeps serving everything, the restored copy takes writes.
    assert Items(backend, db).present(160) == list(range(160))
    Items(backend, restored).write(151)
    assert Items(backend, restored).present(160) == list(range(152))
    if backend in PERSISTENT:
        path = dst.config["database"]["config"]["path"]
        assert path.startswith(str(tmp_path / "restored")), path


@pytest.mark.parametrize("backend", BACKENDS)
def test_snapshot_remove_source_detaches_and_deletes(engine, tmp_path, backend):
    src, db = provider(engine, backend, tmp_path / "src", 1)
    Items(backend, db).write_range(0, 50)
    snap = tmp_path / "snap"
    src.snapshot(str(snap), remove_source=True)
    with pytest.raises(ClientError) as info:
        db.count() if backend not in {"array", "log"} else db.open_collection("c").size()
    assert info.value.code == yexc.YOKAN_ERR_INVALID_DATABASE
    assert "database" not in src.config
    for path in storage_paths(backend, tmp_path / "src"):
        assert not os.path.exists(path), path
    # Restoring it into the same provider serves it again.
    src.restore(str(snap), str(tmp_path / "back"))
    assert Items(backend, db).present(60) == list(range(50))


@pytest.mark.parametrize("backend", ["map", "rocksdb", "lmdb", "gdbm", "log"])
def test_failed_restore_keeps_the_current_database(engine, tmp_path, backend):
    from mochi.yokan.backends import available_backends

    if backend not in available_backends:
        pytest.skip(f"{backend} is not compiled in")
    src, db = provider(engine, backend, tmp_path / "src", 1)
    Items(backend, db).write_range(0, 20)
    good = tmp_path / "good"
    src.snapshot(str(good))
    Items(backend, db).write_range(20, 30)

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "someone-elses-file").write_text("x")

    def broken(name, edit):
        d = tmp_path / name
        src.snapshot(str(d))
        edit(d)
        return str(d)

    def set_manifest(d, change):
        m = json.loads((d / "yokan-snapshot.json").read_text())
        change(m)
        (d / "yokan-snapshot.json").write_text(json.dumps(m))

    def drop_files(d):
        for f in json.loads((d / "yokan-snapshot.json").read_text())["files"]:
            (d / "data" / f).unlink()

    def truncate_data(d):
        for f in json.loads((d / "yokan-snapshot.json").read_text())["files"]:
            p = d / "data" / f
            if p.stat().st_size > 16:
                with open(p, "r+b") as fh:
                    fh.truncate(p.stat().st_size - 7)

    cases = [
        (str(tmp_path / "nothing-here"), str(tmp_path / "r1"), None, yexc.YOKAN_ERR_INVALID_ARGS),
        (str(good), "", None, yexc.YOKAN_ERR_INVALID_ARGS),
        (
            broken("garbage", lambda d: (d / "yokan-snapshot.json").write_text("{not json")),
            str(tmp_path / "r2"),
            None,
            yexc.YOKAN_ERR_INVALID_CONFIG,
        ),
        (
            broken(
                "version", lambda d: set_manifest(d, lambda m: m.update(yokan_snapshot_version=7))
            ),
            str(tmp_path / "r3"),
            None,
            yexc.YOKAN_ERR_INVALID_CONFIG,
        ),
        (
            broken("type", lambda d: set_manifest(d, lambda m: m.update(type="no-such-backend"))),
            str(tmp_path / "r4"),
            None,
            yexc.YOKAN_ERR_INVALID_BACKEND,
        ),
        (broken("missing", drop_files), str(tmp_path / "r5"), None, yexc.YOKAN_ERR_CORRUPTION),
        (str(good), str(tmp_path / "r6"), "{bad json", yexc.YOKAN_ERR_INVALID_CONFIG),
        (str(good), str(occupied), None, yexc.YOKAN_ERR_INVALID_ARGS),  # not empty
    ]
    if backend in {"map", "gdbm", "log"}:  # a dump: truncated is detected
        cases.append(
            (
                broken("truncated", truncate_data),
                str(tmp_path / "r7"),
                None,
                yexc.YOKAN_ERR_CORRUPTION,
            )
        )
    for snap, root, extra, code in cases:
        with pytest.raises(ServerError) as info:
            src.restore(snap, root, extra)
        assert info.value.code == code, (snap, root, info.value)
        assert Items(backend, db).present(40) == list(range(30)), snap
        if root and root != str(occupied):
            assert not os.path.exists(root), root
    assert (occupied / "someone-elses-file").read_text() == "x"
    src.restore(str(good), str(tmp_path / "restored"))
    assert Items(backend, db).present(40) == list(range(20))


def test_restore_merges_extra_config(engine, tmp_path):
    src, db = provider(engine, "map", tmp_path, 1)
    db.put("a", "1")
    src.snapshot(str(tmp_path / "snap"))
    dst, restored = empty_provider(engine, 2)
    dst.restore(str(tmp_path / "snap"), str(tmp_path / "root"), {"use_lock": False})
    assert dst.config["database"]["config"]["use_lock"] is False
    assert restored.get("a") == b"1"


def test_snapshot_errors(engine, tmp_path):
    src, db = provider(engine, "map", tmp_path, 1)
    db.put("a", "1")
    src.snapshot(str(tmp_path / "snap"))
    with pytest.raises(ServerError) as info:
        src.snapshot(str(tmp_path / "snap"))  # already holds one
    assert info.value.code == yexc.YOKAN_ERR_INVALID_ARGS
    with pytest.raises(ServerError) as info:
        src.snapshot("")
    assert info.value.code == yexc.YOKAN_ERR_INVALID_ARGS
    none, _ = empty_provider(engine, 2)
    with pytest.raises(ServerError) as info:
        none.snapshot(str(tmp_path / "s2"))
    assert info.value.code == yexc.YOKAN_ERR_INVALID_DATABASE
    assert not (tmp_path / "s2" / "data").exists()
    ro = Provider(
        engine=engine, provider_id=3, config={"database": {"type": "map"}, "read_only": True}
    )
    ro.snapshot(str(tmp_path / "s3"))  # reading it is allowed
    with pytest.raises(ServerError) as info:
        ro.snapshot(str(tmp_path / "s4"), remove_source=True)
    assert info.value.code == yexc.YOKAN_ERR_PERMISSION


# ---- consistency under concurrent writes, swaps under concurrent reads ----


@pytest.mark.parametrize("backend", BACKENDS)
def test_snapshot_under_concurrent_writes_is_a_prefix(engine, tmp_path, backend):
    src, db = provider(engine, backend, tmp_path / "src", 1)
    items = Items(backend, db)
    acked = [0]
    stop = threading.Event()

    def writer():
        # One write at a time, each acknowledged before the next: any
        # consistent point of the database holds exactly a prefix of them.
        i = 0
        deadline = time.monotonic() + 20
        while not stop.is_set() and i < 20000 and time.monotonic() < deadline:
            items.write(i)
            i += 1
            acked[0] = i

    t = threading.Thread(target=writer)
    t.start()
    while acked[0] < 200 and t.is_alive():
        time.sleep(0.001)
    before = acked[0]
    src.snapshot(str(tmp_path / "snap"))
    after = acked[0]
    time.sleep(0.05)
    stop.set()
    t.join()
    dst, restored = empty_provider(engine, 2)
    dst.restore(str(tmp_path / "snap"), str(tmp_path / "restored"))
    present = Items(backend, restored).present(acked[0])
    k = len(present)
    assert present == list(range(k)), "not a prefix of the writes"
    assert before <= k <= after + 1, (before, k, after)


@pytest.mark.parametrize("backend", ["map", "rocksdb"])
def test_restore_while_clients_read(engine, tmp_path, backend):
    from mochi.yokan.backends import available_backends

    if backend not in available_backends:
        pytest.skip(f"{backend} is not compiled in")
    src, db = provider(engine, backend, tmp_path / "src", 1)
    db.put_multi([(key(i), b"old") for i in range(100)])
    src.snapshot(str(tmp_path / "old"))
    db.put_multi([(key(i), b"new") for i in range(100)])
    src.snapshot(str(tmp_path / "new"))
    errors = []
    stop = threading.Event()

    def reader():
        client_db = Client(engine).make_database_handle(engine.addr(), 1)
        n = 0
        while not stop.is_set() and n < 100000:
            n += 1
            try:
                assert client_db.get(key(n % 100)) in (b"old", b"new")
                if n % 10 == 0:
                    seen = []
                    client_db.iter(lambda *a, seen=seen: seen.append(1))
                    assert len(seen) == 100
                    assert client_db.count() == 100
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for round_ in range(6):
        which = "old" if round_ % 2 == 0 else "new"
        src.restore(str(tmp_path / which), str(tmp_path / f"root{round_}"))
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert db.get(key(5)) == b"new"


# ---- remote snapshot (admin RPC) ----


def test_remote_snapshot_needs_snapshot_dir(engine, tmp_path):
    p, db = provider(engine, "map", tmp_path, 1)
    db.put("a", "1")
    with pytest.raises(ClientError) as info:
        db.snapshot(str(tmp_path / "snap"))
    assert info.value.code == yexc.YOKAN_ERR_PERMISSION
    assert not (tmp_path / "snap").exists()


def test_remote_snapshot_stays_inside_snapshot_dir(engine, tmp_path):
    allowed = tmp_path / "snaps"
    allowed.mkdir()
    (allowed / "escape").symlink_to(tmp_path)
    p, db = provider(engine, "map", tmp_path / "db", 1, snapshot_dir=str(allowed))
    db.put("a", "1")
    for bad in ["../outside", str(tmp_path / "outside"), "escape/x", str(allowed), "."]:
        with pytest.raises(ClientError) as info:
            db.snapshot(bad)
        assert info.value.code == yexc.YOKAN_ERR_PERMISSION, bad
    assert not (tmp_path / "outside").exists() and not (tmp_path / "x").exists()
    db.snapshot("one")  # relative to snapshot_dir
    db.snapshot(str(allowed / "two"))
    for i, name in enumerate(("one", "two")):
        dst, restored = empty_provider(engine, 10 + i)
        dst.restore(str(allowed / name), str(tmp_path / f"r-{name}"))
        assert restored.get("a") == b"1"


def test_remote_snapshot_from_another_process(remote, tmp_path, engine):
    allowed = tmp_path / "snaps"
    server = remote(
        "tcp",
        {"database": {"type": "map"}, "snapshot_dir": str(allowed)},
    )
    db = Client(engine).make_database_handle(server.address, 42)
    db.put("k", "v")
    db.snapshot("s")
    manifest = json.loads((allowed / "s" / "yokan-snapshot.json").read_text())
    assert manifest["type"] == "map"


def test_snapshot_of_provider_on_other_engine(tmp_path):
    # Two engines in one process: the snapshot's provider answers remotely.
    with Engine("tcp") as e1, Engine("tcp") as e2:
        p = Provider(
            engine=e1,
            provider_id=1,
            config={"database": {"type": "map"}, "snapshot_dir": str(tmp_path)},
        )
        db = Client(e2).make_database_handle(e1.addr(), 1)
        db.put("x", "y")
        db.snapshot("snap")
        assert (tmp_path / "snap" / "yokan-snapshot.json").exists()
        del db, p


def test_yokan_server_snapshot_command(remote, tmp_path):
    import subprocess
    import sys

    allowed = tmp_path / "snaps"
    server = remote("tcp", {"database": {"type": "map"}, "snapshot_dir": str(allowed)})

    def command(*args):
        return subprocess.run(
            [sys.executable, "-m", "mochi.yokan.server", "snapshot", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = command(server.address, "42", "nightly")
    assert r.returncode == 0, r.stderr
    assert json.loads((allowed / "nightly" / "yokan-snapshot.json").read_text())["type"] == "map"
    r = command(server.address, "42", str(tmp_path / "outside"))
    assert r.returncode == 1 and "snapshot_dir" in r.stderr, r.stderr
    assert not (tmp_path / "outside").exists()
    assert command(server.address, "not-a-number", "x").returncode == 2
