"""A read-only provider ({"database": ..., "read_only": true}) serves every read
and refuses every write with YOKAN_ERR_PERMISSION, on every compiled backend.

Persistent backends are first written through a read-write provider, which is
then destroyed; the read-only provider reopened on the same files must show
that data and keep it unchanged whatever is sent to it. In-memory backends start
empty and stay so."""

import json

import pytest
from conftest import COLLECTION_BACKENDS, DOC_ONLY, PERSISTENT, SORTED, VALUELESS, backend_config
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_INVALID_CONFIG,
    YOKAN_ERR_OP_UNSUPPORTED,
    YOKAN_ERR_PERMISSION,
)
from mochi.yokan.mode import Mode
from mochi.yokan.server import Exception as ServerError
from mochi.yokan.server import Provider

KEYS = [f"key{i:03d}" for i in range(20)]
DOCS = [f'{{"n": {i}}}' for i in range(5)]


def value_of(backend, key):
    return b"" if backend in VALUELESS else f"value of {key}".encode()


def config_of(backend, tmp_path, read_only):
    config = backend_config(backend, tmp_path)
    config["read_only"] = read_only
    return json.dumps(config)


def write_data(engine, backend, tmp_path):
    """Fills a persistent backend through a read-write provider, then closes it."""
    p = Provider(engine=engine, provider_id=7, config=config_of(backend, tmp_path, False))
    db = Client(engine).make_database_handle(engine.addr(), 7)
    if backend not in DOC_ONLY:
        db.put_multi([(k, value_of(backend, k)) for k in KEYS])
    if backend in COLLECTION_BACKENDS:
        db.create_collection("docs").store_multi(DOCS)
    del db, p


def refused(call, code=YOKAN_ERR_PERMISSION):
    with pytest.raises(ClientError) as info:
        call()
    assert info.value.code == code, str(info.value)
    if code == YOKAN_ERR_PERMISSION:
        assert "read-only" in str(info.value)


def check_reads(db, backend, expect_data):
    """Every read answers, and shows exactly what was written (or nothing)."""
    if backend not in DOC_ONLY:
        keys = KEYS if expect_data else []
        # Collections live in the same key space: metadata + one key per document.
        with_docs = expect_data and backend in COLLECTION_BACKENDS
        assert db.count() == len(keys) + (1 + len(DOCS) if with_docs else 0)
        assert db.exists_multi(KEYS) == [expect_data] * len(KEYS)
        if expect_data:
            assert db.get(KEYS[3]) == value_of(backend, KEYS[3])
            assert db.get_multi(KEYS) == [value_of(backend, k) for k in KEYS]
            assert db.length(KEYS[5]) == len(value_of(backend, KEYS[5]))
        if backend in SORTED:
            listed = [k for k, _ in db.scan(filter=b"key")]
            assert listed == [k.encode() for k in keys]
    if backend in COLLECTION_BACKENDS:
        assert db.collection_exists("docs") == expect_data
        if expect_data:
            coll = db.open_collection("docs")
            assert coll.size() == len(DOCS)
            assert [coll.load(i) for i in range(len(DOCS))] == [d.encode() for d in DOCS]
            assert [doc for _, doc in coll.scan()] == [d.encode() for d in DOCS]


def check_writes_refused(db, backend):
    kv = YOKAN_ERR_OP_UNSUPPORTED if backend in DOC_ONLY else YOKAN_ERR_PERMISSION
    refused(lambda: db.put("new", value_of(backend, "new")), kv)
    refused(lambda: db.put_multi([("n1", value_of(backend, "n1"))]), kv)
    refused(lambda: db.erase(KEYS[0]), kv)
    refused(lambda: db.erase_multi(KEYS[:3]), kv)
    refused(lambda: db.erase_range(""), kv)
    # A CONSUME read erases what it reads, so it is a write; WAIT|CONSUME is
    # refused at once rather than parked.
    refused(lambda: db.get(KEYS[1], mode=Mode.CONSUME), kv)
    refused(lambda: db.get_multi(KEYS[:2], mode=Mode.CONSUME), kv)
    refused(lambda: db.get("absent", mode=Mode.WAIT | Mode.CONSUME, timeout_ms=5000), kv)
    # Collection and document writes: refused before the backend is asked, on
    # every backend (including those that have no collections at all).
    refused(lambda: db.create_collection("other"))
    refused(lambda: db.drop_collection("docs"))
    coll = db.open_collection("docs")
    refused(lambda: coll.store('{"new": 1}'))
    refused(lambda: coll.store_multi(['{"a": 1}', '{"b": 2}']))
    refused(lambda: coll.update(0, '{"changed": true}'))
    refused(lambda: coll.erase(1))


@pytest.mark.parametrize("backend", available_backends)
def test_read_only_serves_reads_and_refuses_writes(tmp_path, backend):
    persistent = backend in PERSISTENT
    with Engine("tcp") as engine:
        if persistent:
            write_data(engine, backend, tmp_path)
        p = Provider(engine=engine, provider_id=7, config=config_of(backend, tmp_path, True))
        db = Client(engine).make_database_handle(engine.addr(), 7)
        assert p.config["read_only"] is True
        check_reads(db, backend, expect_data=persistent)
        check_writes_refused(db, backend)
        # Nothing changed, and reads still answer after the refusals.
        check_reads(db, backend, expect_data=persistent)
        del db, p


@pytest.mark.parametrize("backend", sorted(set(available_backends) & PERSISTENT))
def test_read_only_leaves_files_writable_later(tmp_path, backend):
    """Read-only is a property of the provider, not of the files: a read-write
    provider reopened afterwards writes as usual."""
    with Engine("tcp") as engine:
        write_data(engine, backend, tmp_path)
        p = Provider(engine=engine, provider_id=7, config=config_of(backend, tmp_path, True))
        del p
        p = Provider(engine=engine, provider_id=7, config=config_of(backend, tmp_path, False))
        db = Client(engine).make_database_handle(engine.addr(), 7)
        if backend in COLLECTION_BACKENDS:
            assert db.open_collection("docs").store('{"later": 1}') == len(DOCS)
        if backend not in DOC_ONLY:
            db.put("later", value_of(backend, "later"))
            assert db.exists("later")
        del db, p


def test_read_only_false_is_read_write(tmp_path):
    with Engine("tcp") as engine:
        p = Provider(engine=engine, provider_id=7, config=config_of("map", tmp_path, False))
        db = Client(engine).make_database_handle(engine.addr(), 7)
        db.put("a", "1")
        assert db.get("a", mode=Mode.CONSUME) == b"1"
        assert db.count() == 0
        del db, p


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, [], {}])
def test_read_only_must_be_boolean(tmp_path, bad):
    config = {"database": {"type": "map"}, "read_only": bad}
    with Engine("tcp") as engine:
        with pytest.raises(ServerError) as info:
            Provider(engine=engine, provider_id=7, config=json.dumps(config))
        assert info.value.code == YOKAN_ERR_INVALID_CONFIG
        assert "read_only" in str(info.value)
