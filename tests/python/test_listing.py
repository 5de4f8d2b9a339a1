"""Listing, iteration, fetch and erase_range (reference §1.5, §2, §5)."""

import pytest
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_INVALID_FILTER,
    YOKAN_ERR_OP_UNSUPPORTED,
)
from mochi.yokan.mode import Mode

KEYS = [f"item:{i:03d}" for i in range(30)] + ["a", "ab", "abc", "b", "zzz"]


@pytest.fixture
def filled(sorted_db):
    sorted_db.put_multi([(k, "v" + k) for k in KEYS])
    return sorted_db


def slots(n, size=16):
    return [bytearray(size) for _ in range(n)]


def got(buffers, sizes):
    return [bytes(b[:s]).decode() for b, s in zip(buffers, sizes)]


def test_list_keys_order_and_from_key(filled):
    bufs = slots(5)
    sizes = filled.list_keys(bufs, "", "")
    assert got(bufs, sizes) == sorted(KEYS)[:5]
    sizes = filled.list_keys(bufs, "ab", "")
    assert got(bufs, sizes) == ["abc", "b"] + sorted(KEYS)[4:7]


def test_inclusive(filled):
    bufs = slots(2)
    assert got(bufs, filled.list_keys(bufs, "ab", "", mode=Mode.INCLUSIVE)) == ["ab", "abc"]


def test_prefix_filter_and_end(filled):
    bufs = slots(10)
    sizes = filled.list_keys(bufs, "item:025", "item:")
    assert got(bufs, sizes) == [f"item:{i:03d}" for i in range(26, 30)]  # cut short: the end
    assert len(sizes) == 4


def test_no_prefix_and_suffix(filled):
    bufs = slots(3)
    assert got(bufs, filled.list_keys(bufs, "", "item:", mode=Mode.NO_PREFIX)) == [
        "000",
        "001",
        "002",
    ]
    bufs = slots(10)
    assert got(bufs, filled.list_keys(bufs, "", "5", mode=Mode.SUFFIX)) == [
        "item:005",
        "item:015",
        "item:025",
    ]
    assert got(bufs, filled.list_keys(bufs, "", "5", mode=Mode.SUFFIX | Mode.NO_PREFIX)) == [
        "item:00",
        "item:01",
        "item:02",
    ]


def test_too_small_slot(filled):
    bufs = [bytearray(16), bytearray(1), bytearray(16)]
    assert filled.list_keys(bufs, "", "") == [1, -1, 3]


def test_empty_slot_is_invalid(filled):
    with pytest.raises(ClientError) as e:
        filled.list_keys([bytearray(8), bytearray(0)], "", "")
    assert e.value.code == YOKAN_ERR_INVALID_ARGS


def test_list_keyvals(filled):
    pairs = [(bytearray(16), bytearray(16)) for _ in range(3)]
    sizes = filled.list_keyvals(pairs, "a", "a")
    assert [(bytes(k[:ks]), bytes(v[:vs])) for (k, v), (ks, vs) in zip(pairs, sizes)] == [
        (b"ab", b"vab"),
        (b"abc", b"vabc"),
    ]


def test_packed_forms_and_overflow(filled):
    keys = bytearray(20)
    sizes = filled.list_keys_packed(keys, 4, "", "item:")
    assert sizes == [8, 8, -1, -1]  # the third does not fit; nothing after it does
    assert bytes(keys[:16]) == b"item:000item:001"
    keys, values = bytearray(64), bytearray(64)
    sizes = filled.list_keyvals_packed(keys, values, 2, "", "ab")
    assert sizes == [(2, 3), (3, 4)]
    assert bytes(keys[:5]) == b"ababc" and bytes(values[:7]) == b"vabvabc"


def test_ignore_keys_and_keep_last(filled):
    pairs = [(bytearray(16), bytearray(16)) for _ in range(3)]
    sizes = filled.list_keyvals(pairs, "", "item:", mode=Mode.IGNORE_KEYS)
    assert [s[0] for s in sizes] == [0, 0, 0] and [s[1] for s in sizes] == [9, 9, 9]
    bufs = slots(3)
    sizes = filled.list_keys(bufs, "", "item:", mode=Mode.KEEP_LAST)
    assert sizes == [0, 0, 8] and bytes(bufs[2][:8]) == b"item:002"
    bufs = slots(3)
    sizes = filled.list_keys(bufs, "", "zz", mode=Mode.KEEP_LAST)  # store ends after it
    assert sizes == [3] and bytes(bufs[0][:3]) == b"zzz"


def test_paging_returns_every_key_once(sorted_db):
    n = 3000
    sorted_db.put_multi([(f"p{i:06d}", "") for i in range(n)])
    seen, cursor = [], ""
    while True:
        bufs = slots(256)
        sizes = sorted_db.list_keys(bufs, cursor, "p")
        seen += got(bufs, sizes)
        if len(sizes) < len(bufs):
            break
        cursor = seen[-1]
    assert seen == [f"p{i:06d}" for i in range(n)]


def test_paging_100k_keys(map_db):
    n = 100_000
    keys = [f"k{i:07d}" for i in range(n)]
    for start in range(0, n, 10_000):
        map_db.put_multi(keys[start : start + 10_000], [b""] * 10_000)
    seen, cursor = [], ""
    while True:
        buf = bytearray(8 * 4096)
        sizes = map_db.list_keys_packed(buf, 4096, cursor, "k")
        total = 0
        for s in sizes:
            seen.append(bytes(buf[total : total + s]).decode())
            total += s
        if len(sizes) < 4096:
            break
        cursor = seen[-1]
    assert seen == keys


def test_unsorted_backends_cannot_list(unsorted_db):
    unsorted_db.put("k", "")
    with pytest.raises(ClientError) as e:
        unsorted_db.list_keys(slots(2), "", "")
    assert e.value.code == YOKAN_ERR_OP_UNSUPPORTED
    with pytest.raises(ClientError) as e:
        unsorted_db.iter(lambda *a: None)
    assert e.value.code == YOKAN_ERR_OP_UNSUPPORTED


def test_iter_callback_types_and_order(filled):
    seen = []
    filled.iter(lambda i, k, v: seen.append((i, bytes(k), bytes(v))), filter="a")
    assert seen == [(0, b"a", b"va"), (1, b"ab", b"vab"), (2, b"abc", b"vabc")]
    seen = []
    filled.iter(lambda i, k, v: seen.append((k, v)), from_key="", filter="a", ignore_values=True)
    assert seen == [("a", None), ("ab", None), ("abc", None)]


def test_iter_count_batch_and_stop(filled):
    seen = []
    filled.iter(lambda i, k, v: seen.append(i), filter="item:", count=7, batch_size=3)
    assert seen == list(range(7))
    seen = []
    filled.iter(lambda i, k, v: seen.append(i) or i < 4, filter="item:", batch_size=2)
    assert seen == [0, 1, 2, 3, 4]


def test_iter_no_prefix_pages_correctly(filled):
    seen = []
    filled.iter(lambda i, k, v: seen.append(k), "", "item:", mode=Mode.NO_PREFIX, batch_size=4)
    assert seen == [f"{i:03d}" for i in range(30)]


def test_scan_pages_pairs_in_order(filled):
    items = [f"item:{i:03d}" for i in range(30)]
    assert list(filled.scan(filter=b"item:", batch_size=4)) == [
        (k.encode(), b"v" + k.encode()) for k in items
    ]
    assert list(filled.scan(filter=b"item:", count=5, batch_size=2, ignore_values=True)) == [
        (k.encode(), None) for k in items[:5]
    ]
    assert list(filled.scan(b"item:027", b"item:", batch_size=2, mode=Mode.NO_PREFIX)) == [
        (b"028", b"vitem:028"),
        (b"029", b"vitem:029"),
    ]


def test_scan_fetches_pages_lazily(filled):
    pages = filled.scan(filter=b"item:", batch_size=10, ignore_values=True)
    assert next(pages) == (b"item:000", None)  # the first page is in hand
    # A key written now lands in a page that has not been fetched yet.
    filled.put("item:025x", "late")
    rest = [k for k, _ in pages]
    assert rest[-6:-4] == [b"item:025", b"item:025x"]
    assert len(rest) == 30


def test_iter_callback_exception_propagates(filled):
    class Boom(Exception):
        pass

    def cb(i, k, v):
        raise Boom("from the callback")

    with pytest.raises(Boom, match="from the callback"):
        filled.iter(cb)


def test_fetch_and_fetch_multi(db):
    db.put_multi([("a", "1"), ("b", "22")])
    got_ = []
    db.fetch("a", lambda i, k, v: got_.append((i, k, bytes(v))))
    db.fetch(b"zz", lambda i, k, v: got_.append((i, bytes(k), v)))
    assert got_ == [(0, "a", b"1"), (0, b"zz", None)]
    got_ = []
    db.fetch_multi(
        ["a", "nope", "b"], lambda i, k, v: got_.append((i, k, v and bytes(v))), batch_size=2
    )
    assert got_ == [(0, "a", b"1"), (1, "nope", None), (2, "b", b"22")]
    got_ = []
    db.fetch_packed(b"ab", [1, 1], lambda i, k, v: got_.append((i, bytes(k), bytes(v))))
    assert got_ == [(0, b"a", b"1"), (1, b"b", b"22")]

    def boom(i, k, v):
        raise KeyError("propagated")

    with pytest.raises(KeyError, match="propagated"):
        db.fetch("a", boom)


def test_fetch_consume(db):
    db.put("once", "x")
    db.fetch("once", lambda i, k, v: None, mode=Mode.CONSUME)
    assert not db.exists("once")


def test_erase_range(any_db):
    backend, db = any_db
    value = "" if "set" in backend else "v"
    db.put_multi([(k, value) for k in ["pre/1", "pre/2", "pre", "prf", "other"]])
    db.erase_range("pre/")
    assert db.exists_multi(["pre/1", "pre/2", "pre", "prf", "other"]) == [
        False,
        False,
        True,
        True,
        True,
    ]
    db.erase_range("")
    assert db.count() == 0


LUA = pytest.importorskip("mochi.yokan._server").has_lua


@pytest.mark.skipif(not LUA, reason="built without Lua")
class TestLua:
    def test_key_filter(self, filled):
        seen = []
        filled.iter(
            lambda i, k, v: seen.append(k),
            "",
            "return __key__:sub(1, 1) == 'a'",
            mode=Mode.LUA_FILTER,
        )
        assert seen == ["a", "ab", "abc"]

    def test_value_filter(self, filled):
        bufs = slots(5)
        code = "return __value__ == 'vb' or __value__ == 'vzzz'"
        sizes = filled.list_keys(bufs, "", code, mode=Mode.LUA_FILTER | Mode.FILTER_VALUE)
        assert got(bufs, sizes) == ["b", "zzz"]

    def test_script_error_is_reported(self, filled):
        # A runtime error fails the request with Lua's message (it used to
        # read as "no match", which hid bugs in scripts).
        with pytest.raises(ClientError) as e:
            filled.list_keys(slots(3), "", "error('nope')", mode=Mode.LUA_FILTER)
        assert e.value.code == YOKAN_ERR_INVALID_FILTER
        assert "nope" in str(e.value)

    def test_syntax_error(self, filled):
        with pytest.raises(ClientError) as e:
            filled.list_keys(slots(3), "", "return (", mode=Mode.LUA_FILTER)
        assert e.value.code == YOKAN_ERR_INVALID_FILTER

    @pytest.mark.parametrize(
        "code",
        [
            "while true do end",
            "while true do pcall(function() while true do end end) end",
            "local t = {} while true do t[#t + 1] = string.rep('x', 1000) end",
            "local s = 'x' while true do s = s .. s end",
        ],
    )
    def test_runaway_scripts_are_stopped(self, filled, code):
        with pytest.raises(ClientError) as e:
            filled.list_keys(slots(3), "", code, mode=Mode.LUA_FILTER)
        assert e.value.code == YOKAN_ERR_INVALID_FILTER
        assert "limit" in str(e.value)
        assert filled.get("a") == b"va"  # the provider is fine

    def test_no_os_access(self, filled):
        with pytest.raises(ClientError) as e:
            filled.list_keys(slots(3), "", "os.exit(1)", mode=Mode.LUA_FILTER)
        assert e.value.code == YOKAN_ERR_INVALID_FILTER
        assert "os" in str(e.value)  # indexing the absent global `os`
        assert filled.exists("a")


COMPARATOR_C = r"""
#include <stddef.h>
#include <string.h>
/* Reverse bytewise order. */
int reverse_less(const void* a, size_t an, const void* b, size_t bn) {
    size_t n = an < bn ? an : bn;
    int c = memcmp(a, b, n);
    if (c != 0) return c > 0;
    return an > bn;
}
"""


@pytest.fixture
def reverse_map(engine, tmp_path):
    import json
    import shutil
    import subprocess

    from mochi.yokan.client import Client
    from mochi.yokan.server import Provider

    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed to build the test comparator"
    src = tmp_path / "cmp.c"
    src.write_text(COMPARATOR_C)
    lib = tmp_path / "libcmp.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    config = {"database": {"type": "map", "config": {"comparator": f"{lib}:reverse_less"}}}
    provider = Provider(engine=engine, provider_id=9, config=json.dumps(config))
    db = Client(engine).make_database_handle(engine.addr(), 9)
    yield db
    del db, provider


def test_custom_comparator_orders_listing(reverse_map):
    reverse_map.put_multi([(k, "v" + k) for k in KEYS])
    bufs = slots(4)
    assert got(bufs, reverse_map.list_keys(bufs, "", "")) == sorted(KEYS, reverse=True)[:4]
    bufs = slots(40)
    sizes = reverse_map.list_keys(bufs, "", "item:01")
    assert got(bufs, sizes) == [f"item:{i:03d}" for i in range(19, 9, -1)]
    reverse_map.erase_range("item:")
    assert reverse_map.count() == 5
    coll = reverse_map.create_collection("docs")
    assert [coll.store(f"d{i}") for i in range(3)] == [0, 1, 2]
    assert [bytes(d) for _, d in coll.scan()] == [b"d0", b"d1", b"d2"]


def test_bad_comparator_names_the_key(engine):
    import json

    from mochi.yokan.server import Exception as ServerError
    from mochi.yokan.server import Provider

    for cmp in ("no_such_symbol_anywhere", "/nonexistent/lib.so:cmp"):
        config = {"database": {"type": "map", "config": {"comparator": cmp}}}
        with pytest.raises(ServerError) as e:
            Provider(engine=engine, provider_id=9, config=json.dumps(config))
        assert "comparator" in str(e.value)
