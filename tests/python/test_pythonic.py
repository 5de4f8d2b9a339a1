"""The pure-Python layer: context managers, the dict-like store, numpy helpers."""

import numpy as np
import pytest
from mochi.margo import Engine
from mochi.yokan.arrays import array_info, get_array, put_array
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.mapping import KeyValueStore
from mochi.yokan.server import Provider


def test_context_managers():
    with Engine("tcp") as e:
        with Provider(engine=e, provider_id=3, config={"database": {"type": "map"}}) as p:
            with Client(e) as c, c.make_database_handle(e.addr(), 3) as db:
                db.put("k", "v")
            assert p.config["database"]["type"] == "map"
        # the provider stopped serving when its block ended
        with pytest.raises(ClientError):
            Client(e).make_database_handle(e.addr(), 3)
    assert e.finalized


@pytest.mark.parametrize(
    "codec,value",
    [("bytes", b"\x00raw"), ("str", "text"), ("json", {"a": [1, 2]}), ("pickle", {1, 2, 3})],
)
def test_store_codecs(sorted_db, codec, value):
    store = KeyValueStore(sorted_db, prefix="ns/", codec=codec)
    store["x"] = value
    assert store["x"] == value
    assert "x" in store and "y" not in store
    assert list(store) == ["x"] and len(store) == 1
    del store["x"]
    with pytest.raises(KeyError):
        store["x"]
    with pytest.raises(KeyError):
        del store["x"]


def test_store_is_a_mutable_mapping(sorted_db):
    sorted_db.put("outside", "not in the view")
    store = KeyValueStore(sorted_db, prefix="cfg/", codec="json")
    store.update({"b": 2, "a": 1, "c": 3})
    assert dict(store) == {"a": 1, "b": 2, "c": 3}
    assert list(store.keys()) == ["a", "b", "c"]
    assert list(store.items()) == [("a", 1), ("b", 2), ("c", 3)]
    assert store.get("zz", "default") == "default"
    assert store.pop("b") == 2
    store.clear()
    assert len(store) == 0
    assert sorted_db.get("outside") == b"not in the view"


def test_store_many_keys_pages(map_db):
    store = KeyValueStore(map_db, prefix="p/", codec="str", page_size=7)
    for i in range(50):
        store[f"{i:02d}"] = str(i)
    assert list(store) == [f"{i:02d}" for i in range(50)]


@pytest.mark.parametrize("dtype", ["float64", "int16", "complex64", "uint8"])
def test_arrays_roundtrip(db, dtype):
    a = (np.arange(6 * 7 * 3) % 100).astype(dtype).reshape(6, 7, 3)
    put_array(db, "arr", a)
    assert array_info(db, "arr") == (np.dtype(dtype), (6, 7, 3))
    b = get_array(db, "arr")
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    out = np.zeros_like(a)
    assert get_array(db, "arr", out=out) is out
    assert np.array_equal(a, out)
    with pytest.raises(ClientError):
        get_array(db, "arr", out=np.zeros((2, 2), dtype=dtype))
    with pytest.raises(KeyError):
        get_array(db, "missing")


def test_arrays_non_contiguous_input(db):
    a = np.arange(100.0).reshape(10, 10)[:, ::2]
    put_array(db, "sliced", a)
    assert np.array_equal(get_array(db, "sliced"), a)
