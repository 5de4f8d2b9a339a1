"""Single-key operations on every backend, with every kind of key and value."""

import numpy as np
import pytest
from conftest import KV_BACKENDS, VALUELESS, open_db
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_BUFFER_SIZE,
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_KEY_NOT_FOUND,
)


def as_kind(data: bytes, kind):
    if kind == "str":
        return data.decode()
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(b"__" + data + b"__")[2:-2]
    if kind == "numpy":
        return np.frombuffer(data, dtype=np.uint8).copy()
    raise AssertionError(kind)


KINDS = ["str", "bytes", "bytearray", "memoryview", "numpy"]


@pytest.mark.parametrize("kind", KINDS)
def test_put_get_roundtrip(db, kind):
    db.put(as_kind(b"key-one", kind), as_kind(b"value-one", kind))
    assert db.get(as_kind(b"key-one", kind)) == b"value-one"
    assert db.get(b"key-one") == b"value-one"
    assert db.exists(as_kind(b"key-one", kind)) is True
    assert db.length(as_kind(b"key-one", kind)) == 9
    assert db.count() == 1


def test_get_into_buffer_returns_size(db):
    db.put("k", "0123456789")
    for buf in (bytearray(32), np.zeros(32, dtype=np.uint8), memoryview(bytearray(40))[5:37]):
        assert db.get("k", buf) == 10
        assert bytes(buf[:10]) == b"0123456789"
        assert db.get("k", value=buf) == 10


def test_get_into_slice_writes_in_place(db):
    db.put("k", "abc")
    arena = bytearray(b"." * 10)
    assert db.get("k", memoryview(arena)[2:8]) == 3
    assert arena == b"..abc....."


def test_overwrite_and_empty_value(db):
    db.put("k", "first")
    db.put("k", "second!")
    assert db.get("k") == b"second!"
    db.put("empty", b"")
    assert db.get("empty") == b""
    assert db.length("empty") == 0
    assert db.exists("empty")


def test_binary_keys_and_values(db):
    key = bytes(range(256))
    value = bytes(reversed(range(256))) * 4
    db.put(key, value)
    assert db.get(key) == value
    assert not db.exists(key[:-1])


def test_missing_key(db):
    with pytest.raises(ClientError) as e:
        db.get("nope")
    assert e.value.code == YOKAN_ERR_KEY_NOT_FOUND
    with pytest.raises(ClientError) as e:
        db.get("nope", bytearray(8))
    assert e.value.code == YOKAN_ERR_KEY_NOT_FOUND
    assert db.exists("nope") is False
    assert db.length("nope") is None
    db.erase("nope")  # erasing an absent key is not an error


def test_buffer_too_small(db):
    db.put("k", "0123456789")
    buf = bytearray(4)
    with pytest.raises(ClientError) as e:
        db.get("k", buf)
    assert e.value.code == YOKAN_ERR_BUFFER_SIZE
    assert buf == bytearray(4)  # untouched
    assert db.get("k") == b"0123456789"  # nothing lost


def test_erase_and_count(any_db):
    backend, db = any_db
    value = "" if backend in ("set", "unordered_set") else "v"
    for i in range(10):
        db.put(f"key{i}", value)
    assert db.count() == 10
    db.erase("key3")
    assert not db.exists("key3")
    assert db.count() == 9


@pytest.mark.parametrize("backend", [b for b in KV_BACKENDS if b in VALUELESS])
def test_set_backends_reject_values(engine, tmp_path, backend):
    provider, db = open_db(engine, backend, tmp_path)
    db.put("member", b"")
    assert db.exists("member")
    assert db.length("member") == 0
    with pytest.raises(ClientError) as e:
        db.put("other", "not empty")
    assert e.value.code == YOKAN_ERR_INVALID_ARGS
    assert not db.exists("other")


def test_unicode_keys_are_utf8(db):
    db.put("clé-ü", "välue")
    assert db.get("clé-ü".encode()) == "välue".encode()
