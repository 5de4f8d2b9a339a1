"""The write and read modes the provider implements above every backend."""

import threading

import pytest
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_KEY_EXISTS,
    YOKAN_ERR_KEY_NOT_FOUND,
    YOKAN_ERR_MODE,
)
from mochi.yokan.mode import INCOMPATIBLE_PAIRS, Mode


def test_new_only(db):
    db.put("k", "1", mode=Mode.NEW_ONLY)
    with pytest.raises(ClientError) as e:
        db.put("k", "2", mode=Mode.NEW_ONLY)
    assert e.value.code == YOKAN_ERR_KEY_EXISTS
    assert db.get("k") == b"1"


def test_exist_only(db):
    with pytest.raises(ClientError) as e:
        db.put("k", "1", mode=Mode.EXIST_ONLY)
    assert e.value.code == YOKAN_ERR_KEY_NOT_FOUND
    assert not db.exists("k")
    db.put("k", "1")
    db.put("k", "2", mode=Mode.EXIST_ONLY)
    assert db.get("k") == b"2"
    db.put_multi([("k", "3"), ("other", "x")], mode=Mode.EXIST_ONLY)
    assert db.get("k") == b"3"
    assert not db.exists("other")


def test_append(db):
    db.put("k", "abc", mode=Mode.APPEND)  # creates
    db.put("k", "def", mode=Mode.APPEND)
    assert db.get("k") == b"abcdef"
    with pytest.raises(ClientError) as e:
        db.put("missing", "x", mode=Mode.APPEND | Mode.EXIST_ONLY)
    assert e.value.code == YOKAN_ERR_KEY_NOT_FOUND
    db.put_multi([("missing", "x"), ("k", "g")], mode=Mode.APPEND | Mode.EXIST_ONLY)
    assert not db.exists("missing")
    assert db.get("k") == b"abcdefg"


def test_consume(db):
    db.put("k", "value")
    assert db.get("k", mode=Mode.CONSUME) == b"value"
    assert not db.exists("k")


def test_consume_is_atomic_between_consumers(map_db):
    db = map_db
    rounds = 200
    wins = []
    for i in range(rounds):
        db.put(f"job{i}", f"payload{i}")

    def consumer():
        for i in range(rounds):
            try:
                wins.append(db.get(f"job{i}", mode=Mode.CONSUME))
            except ClientError as e:
                assert e.code == YOKAN_ERR_KEY_NOT_FOUND

    threads = [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == sorted(f"payload{i}".encode() for i in range(rounds))


@pytest.mark.parametrize("a,b", INCOMPATIBLE_PAIRS)
def test_incompatible_modes_rejected_before_any_rpc(db, a, b):
    with pytest.raises(ClientError) as e:
        db.put("k", "v", mode=a | b)
    assert e.value.code == YOKAN_ERR_MODE
    assert not db.exists("k")


def test_mode_values_match_upstream():
    from mochi.yokan import mode

    assert mode.YOKAN_MODE_WAIT == mode.YOKAN_MODE_NOTIFY == 8
    assert mode.YOKAN_MODE_KEEP_LAST == 384
    assert mode.YOKAN_MODE_NO_RDMA == 16384
    assert Mode.KEEP_LAST & Mode.IGNORE_KEYS
    assert [int(getattr(Mode, n)) for n in ("DEFAULT", "INCLUSIVE", "APPEND", "CONSUME")] == [
        0,
        1,
        2,
        4,
    ]
    for name in (
        "NEW_ONLY",
        "EXIST_ONLY",
        "NO_PREFIX",
        "IGNORE_KEYS",
        "SUFFIX",
        "LUA_FILTER",
        "IGNORE_DOCS",
        "FILTER_VALUE",
        "LIB_FILTER",
    ):
        assert int(getattr(Mode, name)) == getattr(mode, f"YOKAN_MODE_{name}")
