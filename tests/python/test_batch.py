"""Batched operations: multi and packed forms, with their return conventions."""

import numpy as np
import pytest
from mochi.yokan.mode import Mode

KEYS = [f"key:{i:03d}" for i in range(50)]
VALUES = [f"value number {i}" * (i % 4 + 1) for i in range(50)]


def test_put_multi_keys_values_and_pairs(db):
    db.put_multi(KEYS[:25], VALUES[:25])
    db.put_multi(list(zip(KEYS[25:], VALUES[25:])))
    assert db.count() == 50
    assert db.get_multi(KEYS) == [v.encode() for v in VALUES]


def test_multi_mixed_item_sizes_and_layouts(db):
    # The client copies small items of a list into one block and sends large
    # ones (4 KiB and more) in place; every order of the two must round-trip.
    sizes = [10, 5000, 0, 20, 70000, 3, 4096, 4095, 1, 0, 9000]
    values = [bytes((i * 7 + j) % 256 for j in range(n)) for i, n in enumerate(sizes)]
    blob = b"".join(f"k{i:02d}".encode() for i in range(len(sizes)))
    keys = [memoryview(blob)[3 * i : 3 * i + 3] for i in range(len(sizes))]  # back to back
    keys[4] = b"k04"  # one key elsewhere in memory
    db.put_multi(keys, values)
    assert db.get_multi([bytes(k) for k in keys]) == values
    assert db.length_multi(keys) == sizes
    big = [b"x" * 5000, b"y" * 6000]  # large items only
    db.put_multi(["big0", "big1"], big)
    assert db.get_multi(["big0", "big1"]) == big
    db.put_multi(["e0", "big2", "e1"], [b"", b"z" * 5000, b""])  # no small bytes at all
    assert db.get_multi(["e0", "big2", "e1"]) == [b"", b"z" * 5000, b""]


def test_put_multi_positional_mode(db):
    db.put_multi([("a", "1")], Mode.NEW_ONLY)
    db.put_multi([("a", "2"), ("b", "3")], Mode.NEW_ONLY)  # 'a' skipped in a batch
    assert db.get_multi(["a", "b"]) == [b"1", b"3"]


def test_put_multi_length_mismatch(db):
    with pytest.raises(ValueError):
        db.put_multi(["a", "b"], ["1"])
    assert db.count() == 0


def test_get_multi_with_buffers(db):
    db.put_multi(KEYS[:3], ["short", "a longer value", "x"])
    buffers = [bytearray(10), bytearray(4), np.zeros(10, dtype=np.uint8), bytearray(10)]
    sizes = db.get_multi(list(zip(KEYS[:3] + ["absent"], buffers)))
    assert sizes == [5, -1, 1, None]
    assert bytes(buffers[0][:5]) == b"short"
    assert buffers[1] == bytearray(4)
    assert bytes(buffers[2][:1]) == b"x"


def test_get_multi_allocating(db):
    db.put_multi(["a", "c"], ["1", "3"])
    assert db.get_multi(["a", "b", "c"]) == [b"1", None, b"3"]


def test_exists_length_erase_multi(db):
    db.put_multi(KEYS[:5], VALUES[:5])
    assert db.exists_multi(KEYS[:5] + ["nope"]) == [True] * 5 + [False]
    assert db.length_multi(KEYS[:2] + ["nope"]) == [len(VALUES[0]), len(VALUES[1]), None]
    db.erase_multi(KEYS[:3])
    assert db.exists_multi(KEYS[:5]) == [False, False, False, True, True]


def packed(items):
    data = [x.encode() for x in items]
    return b"".join(data), [len(x) for x in data]


def test_packed_forms(db):
    keys, ksizes = packed(KEYS[:10])
    values, vsizes = packed(VALUES[:10])
    db.put_packed(keys, ksizes, values, vsizes)
    assert db.exists_packed(keys, ksizes) == [True] * 10
    assert db.length_packed(keys, ksizes) == vsizes
    out = bytearray(sum(vsizes))
    assert db.get_packed(keys, ksizes, out) == vsizes
    assert bytes(out) == values
    db.erase_packed(keys, ksizes)
    assert db.exists_packed(keys, ksizes) == [False] * 10


def test_items_adjacent_in_memory(db):
    # Separate items that happen to be neighbours in one buffer (the client
    # then sends them as one segment) still arrive as separate pairs, and
    # empty values between them change nothing.
    buf = memoryview(b"k1k22k333" + b"vv" + b"A" * 37 + b"BBB")
    keys = [buf[0:2], buf[2:5], buf[5:9]]
    values = [buf[9:11], buf[11:11], buf[11:51]]
    db.put_multi(keys, values)
    assert [bytes(v) for v in db.get_multi([b"k1", b"k22", b"k333"])] == [
        b"vv",
        b"",
        b"A" * 37 + b"BBB",
    ]
    out = bytearray(64)
    assert db.get_packed(bytes(buf[0:9]), [2, 3, 4], out) == [2, 0, 40]
    assert bytes(out[:42]) == b"vv" + b"A" * 37 + b"BBB"


def test_get_packed_too_small_and_absent(db):
    db.put_multi(["a", "b", "c"], ["1111", "22", "3"])
    keys, ksizes = packed(["a", "zz", "b", "c"])
    out = bytearray(5)
    # 'a' fits (4), 'zz' absent takes no space, 'b' (2) does not fit, so 'c' neither.
    assert db.get_packed(keys, ksizes, out) == [4, None, -1, -1]
    assert bytes(out[:4]) == b"1111"


def test_packed_size_mismatch(db):
    with pytest.raises(ValueError):
        db.put_packed(b"abc", [1, 2], b"xy", [1])
    with pytest.raises(ValueError):
        db.put_packed(b"abc", [2, 2], b"xy", [1, 1])
    with pytest.raises(ValueError):
        db.exists_packed(b"ab", [1, 5])
    assert db.count() == 0


def test_empty_batches_make_no_call(db):
    db.put_multi([], [])
    assert db.get_multi([]) == []
    assert db.exists_multi([]) == []
    assert db.length_multi([]) == []
    db.erase_multi([])


def test_numpy_keys_in_batch(db):
    keys = [np.array([i], dtype=np.int64) for i in range(20)]
    values = [np.full(8, i, dtype=np.float32) for i in range(20)]
    db.put_multi(keys, values)
    out = [np.empty(8, dtype=np.float32) for _ in range(20)]
    assert db.get_multi(list(zip(keys, out))) == [32] * 20
    assert all((o == i).all() for i, o in enumerate(out))
