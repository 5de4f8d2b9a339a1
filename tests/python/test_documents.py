"""Document collections (reference §1.6, §4, §5): ids, the _multi/_packed
forms, listing and iteration, Lua document filters and Collection.find."""

import json
import threading

import pytest
from conftest import (
    COLLECTION_BACKENDS,
    PERSISTENT,
    VALUED_BACKENDS,
    VALUELESS,
    backend_config,
    open_db,
    serving,
)
from mochi.margo import Engine
from mochi.yokan import _server
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.collection import Collection, query_to_lua
from mochi.yokan.exception import (
    YOKAN_ERR_BUFFER_SIZE,
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_INVALID_FILTER,
    YOKAN_ERR_INVALID_ID,
    YOKAN_ERR_KEY_EXISTS,
    YOKAN_ERR_KEY_NOT_FOUND,
    YOKAN_ERR_MODE,
    YOKAN_ERR_OP_UNSUPPORTED,
    YOKAN_ERR_READONLY,
)
from mochi.yokan.mode import Mode
from mochi.yokan.server import Provider

UPDATE_NEW = 32768
needs_lua = pytest.mark.skipif(not _server.has_lua, reason="built without Lua")


@pytest.fixture(params=COLLECTION_BACKENDS)
def docdb(request, engine, tmp_path):
    """(backend, Database) on every compiled backend that has collections."""
    with serving(engine, request.param, tmp_path) as handle:
        yield request.param, handle


@pytest.fixture(params=VALUED_BACKENDS)
def kv_docdb(request, engine, tmp_path):
    """(backend, Database) on the key/value backends that have collections."""
    with serving(engine, request.param, tmp_path) as handle:
        yield request.param, handle


@pytest.fixture
def coll(docdb):
    _, db = docdb
    return db.create_collection("people")


def code_of(excinfo):
    return excinfo.value.code


# -- collection level ----------------------------------------------------------


def test_create_exists_drop(docdb):
    _, db = docdb
    assert not db.collection_exists("c")
    c = db.create_collection("c")
    assert isinstance(c, Collection) and c.name == "c"
    assert db.collection_exists("c")
    assert c.size() == 0
    assert c.last_id() == -1
    with pytest.raises(ClientError) as e:
        db.create_collection("c")
    assert code_of(e) == YOKAN_ERR_KEY_EXISTS
    c.store_multi(["a", "b", "c"])
    db.drop_collection("c")
    assert not db.collection_exists("c")
    # The documents went with it: a new collection of that name starts afresh.
    c = db.create_collection("c")
    assert c.size() == 0 and c.last_id() == -1 and c.store("x") == 0
    assert c.load_multi([1, 2]) == [None, None]


def test_open_collection_makes_no_rpc_and_unknown_collection(docdb):
    _, db = docdb
    c = db.open_collection("missing")
    assert Collection("missing", db).name == "missing"
    for call in (
        c.size,
        c.last_id,
        lambda: c.store("x"),
        lambda: c.update(0, "x"),
        lambda: c.load(0),
        lambda: c.load_multi([0]),
        lambda: c.length(0),
        lambda: c.erase(0),
        lambda: c.list_docs(0, [bytearray(4)]),
        lambda: db.drop_collection("missing"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == YOKAN_ERR_KEY_NOT_FOUND
    assert not db.collection_exists("missing")


@pytest.mark.parametrize("name", ["", "a\0b"])
def test_bad_names(docdb, name):
    _, db = docdb
    for call in (
        lambda: db.create_collection(name),
        lambda: db.collection_exists(name),
        lambda: db.drop_collection(name),
        lambda: db.open_collection(name).store("x"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == YOKAN_ERR_INVALID_ARGS


def test_collections_are_independent(docdb):
    _, db = docdb
    a = db.create_collection("a")
    ab = db.create_collection("ab")
    assert a.store_multi(["1", "2"]) == [0, 1]
    assert ab.store("x") == 0
    assert a.size() == 2 and ab.size() == 1
    assert [d for _, d in a.scan()] == [b"1", b"2"]
    assert [d for _, d in ab.scan()] == [b"x"]
    db.drop_collection("a")
    assert ab.load(0) == b"x"


@pytest.mark.parametrize("backend", sorted(VALUELESS & set(available_backends)))
def test_valueless_backends_have_no_collections(engine, tmp_path, backend):
    provider, db = open_db(engine, backend, tmp_path)
    with pytest.raises(ClientError) as e:
        db.create_collection("c")
    assert code_of(e) == YOKAN_ERR_OP_UNSUPPORTED
    with pytest.raises(ClientError) as e:
        db.open_collection("c").size()
    assert code_of(e) == YOKAN_ERR_OP_UNSUPPORTED
    del db, provider


# -- store / load / update / erase ---------------------------------------------


def test_ids_are_consecutive_and_never_reused(coll):
    assert coll.store("zero") == 0
    assert coll.store(b"one") == 1
    assert coll.store(bytearray(b"two")) == 2
    assert coll.store_multi(["3", b"4", memoryview(b"5")]) == [3, 4, 5]
    assert coll.store("") == 6  # empty documents are allowed
    assert coll.size() == 7 and coll.last_id() == 6
    coll.erase(6)
    coll.erase(5)
    assert coll.size() == 5 and coll.last_id() == 6
    assert coll.store("seven") == 7
    assert coll.load(0) == b"zero"
    with pytest.raises(ClientError) as e:
        coll.load(6)
    assert code_of(e) == YOKAN_ERR_KEY_NOT_FOUND
    assert coll.length(5) is None and coll.length(0) == 4


def test_store_json_and_load_json(coll):
    i = coll.store({"name": "Ann", "tags": ["x", 1]})
    j = coll.store([1, 2, 3])
    assert coll.load_json(i) == {"name": "Ann", "tags": ["x", 1]}
    assert coll.load_json(j) == [1, 2, 3]


def test_store_packed(coll):
    ids = coll.store_packed(b"aaabbc", [3, 2, 1])
    assert type(ids) is list and ids == [0, 1, 2]
    ids.append(3)  # a real list
    assert coll.load_multi([0, 1, 2]) == [b"aaa", b"bb", b"c"]
    with pytest.raises(ValueError):
        coll.store_packed(b"ab", [2, 1])


def test_load_into_buffer(coll):
    coll.store("hello")
    buf = bytearray(10)
    assert coll.load(0, buf) == 5 and bytes(buf[:5]) == b"hello"
    view = memoryview(bytearray(8))[1:7]
    assert coll.load(0, view) == 5 and bytes(view[:5]) == b"hello"
    with pytest.raises(ClientError) as e:
        coll.load(0, bytearray(4))
    assert code_of(e) == YOKAN_ERR_BUFFER_SIZE
    with pytest.raises(ClientError) as e:
        coll.load(0, b"read-only buffer")
    assert code_of(e) == YOKAN_ERR_READONLY


def test_load_multi_and_packed_sentinels(coll):
    coll.store_multi(["a", "bbbb", "cc"])
    coll.erase(1)
    bufs = [bytearray(2), bytearray(8), bytearray(1), bytearray(4)]
    assert coll.load_multi((0, 1, 2, 9), bufs) == [1, None, -1, None]
    assert bytes(bufs[0][:1]) == b"a"
    with pytest.raises(ValueError):
        coll.load_multi([0, 2], [bytearray(2)])
    packed = bytearray(3)
    assert coll.load_packed([0, 1, 2], packed) == [1, None, 2]
    assert bytes(packed) == b"acc"
    # Too small is -1, never the raw 2**64 - 2; later documents are too small too.
    assert coll.load_packed([2, 0], bytearray(1)) == [-1, -1]
    assert coll.length_multi([0, 1, 2, 50]) == [1, None, 2, None]


def test_update_rules(coll):
    coll.store_multi(["a", "b"])
    coll.update(0, "A")
    assert coll.load(0) == b"A"
    with pytest.raises(ClientError) as e:
        coll.update(2, "never allocated")
    assert code_of(e) == YOKAN_ERR_INVALID_ID
    # A failed batch changes nothing.
    with pytest.raises(ClientError) as e:
        coll.update_multi([1, 5], ["B", "X"])
    assert code_of(e) == YOKAN_ERR_INVALID_ID
    assert coll.load(1) == b"b"
    # An erased id below the last one comes back (and counts again).
    coll.erase(1)
    assert coll.size() == 1
    coll.update(1, "again")
    assert coll.load(1) == b"again" and coll.size() == 2
    # UPDATE_NEW allows an id never allocated; next ids follow it.
    coll.update(5, "five", mode=UPDATE_NEW)
    assert coll.last_id() == 5 and coll.size() == 3
    assert coll.store("six") == 6
    assert [i for i, _ in coll.scan()] == [0, 1, 5, 6]
    with pytest.raises(ValueError):
        coll.update_multi([0, 1], ["x"])


def test_update_multi_and_packed(coll):
    coll.store_multi(["a", "b", "c"])
    coll.update_multi([2, 0], ["C", b"A"])
    ids = [1, 2]
    assert coll.update_packed(ids, b"BBcc", [2, 2]) is ids
    assert coll.load_multi([0, 1, 2]) == [b"A", b"BB", b"cc"]
    with pytest.raises(ValueError):
        coll.update_packed([0, 1], b"abc", [1])
    with pytest.raises(ValueError):
        coll.update_packed([0, 1], b"abc", [2, 2])


def test_store_and_update_multi_mixed_document_sizes(coll):
    # Small documents of a list are copied into one block, large ones
    # (4 KiB and more) sent in place, in any order.
    sizes = [3, 5000, 12, 4096, 70000, 1, 4095]
    docs = [bytes((i * 11 + j) % 256 for j in range(n)) for i, n in enumerate(sizes)]
    ids = coll.store_multi(docs)
    assert coll.load_multi(ids) == docs
    docs2 = [d[::-1] + b"!" for d in docs]
    coll.update_multi(ids, docs2)
    assert coll.load_multi(ids) == docs2


def test_erase(coll):
    coll.store_multi(["a", "b", "c"])
    coll.erase(1)
    coll.erase(1)  # absent: not an error
    coll.erase(99)
    assert coll.size() == 2
    coll.erase_multi([0, 1, 2, 0])
    assert coll.size() == 0 and coll.last_id() == 2
    assert list(coll.scan()) == []


def test_bad_ids(coll):
    with pytest.raises(TypeError):
        coll.load("0")
    with pytest.raises(ClientError):
        coll.erase(-1)


# -- fetch, listing, iteration -------------------------------------------------


def test_fetch(coll):
    coll.store_multi(["a", "bb"])
    coll.erase(0)
    seen = []
    coll.fetch(1, lambda i, id_, doc: seen.append((i, id_, bytes(doc), doc.readonly)))
    coll.fetch(0, lambda i, id_, doc: seen.append((i, id_, doc)))
    assert seen == [(0, 1, b"bb", True), (0, 0, None)]
    seen.clear()
    coll.fetch_multi([1, 0, 7], lambda i, id_, d: seen.append((i, id_, d and bytes(d))), 0, 2)
    assert seen == [(0, 1, b"bb"), (1, 0, None), (2, 7, None)]

    def boom(*args):
        raise KeyError("from callback")

    with pytest.raises(KeyError):
        coll.fetch(1, boom)


def test_list_docs(coll):
    coll.store_multi([f"doc{i}" for i in range(10)])
    coll.erase_multi([2, 3])
    bufs = [bytearray(8) for _ in range(4)]
    out = coll.list_docs(1, bufs)
    assert out == [(1, 4), (4, 4), (5, 4), (6, 4)]  # start_id included, erased skipped
    assert bytes(bufs[1][:4]) == b"doc4"
    assert coll.list_docs(8, [bytearray(8) for _ in range(5)]) == [(8, 4), (9, 4)]
    assert coll.list_docs(10, [bytearray(8)]) == []
    small = [bytearray(8), bytearray(2)]
    assert coll.list_docs(0, small) == [(0, 4), (1, -1)]
    packed = bytearray(10)
    assert coll.list_docs_packed(4, packed, 3) == [(4, 4), (5, 4), (6, -1)]
    assert bytes(packed[:8]) == b"doc4doc5"


def test_iter_order_count_and_stop(coll):
    coll.store_multi([f"d{i}" for i in range(25)])
    coll.erase(3)
    seen = []
    coll.iter(lambda i, id_, doc: seen.append((i, id_, bytes(doc))), batch_size=4)
    assert [s[1] for s in seen] == [i for i in range(25) if i != 3]
    assert [s[0] for s in seen] == list(range(24))
    assert seen[0][2] == b"d0"
    seen.clear()
    coll.iter(lambda i, id_, doc: seen.append(id_), from_id=20, count=3, batch_size=2)
    assert seen == [20, 21, 22]
    seen.clear()

    def stop_at_5(i, id_, doc):
        seen.append(id_)
        return id_ < 5

    coll.iter(stop_at_5, batch_size=3)
    assert seen == [0, 1, 2, 4, 5]

    def boom(i, id_, doc):
        raise RuntimeError("stop!")

    with pytest.raises(RuntimeError, match="stop!"):
        coll.iter(boom)


def test_many_documents_are_paged(coll):
    ids = coll.store_multi([str(i) for i in range(700)])
    assert ids == list(range(700))
    assert [i for i, _ in coll.scan(batch_size=64)] == ids
    assert len(coll) == 700


def test_kv_keys_do_not_leak_into_collections(kv_docdb):
    _, db = kv_docdb
    c = db.create_collection("mix")
    c.store("doc")
    db.put("mix\0x", "not a document key")
    db.put("mixx", "other")
    assert [d for _, d in c.scan()] == [b"doc"]
    db.drop_collection("mix")
    assert db.get("mix\0x") == b"not a document key"


# -- Lua document filters and find ----------------------------------------------


@needs_lua
def test_lua_document_filter_globals(coll):
    coll.store_multi(["apple", "banana", "cherry", "avocado"])
    code = 'return __collection__ == "people" and __doc__:sub(1, 1) == "a" and __id__ > 0'
    assert [i for i, _ in coll.scan(filter=code, mode=Mode.LUA_FILTER)] == [3]
    # Without LUA_FILTER the filter bytes are ignored.
    assert len(list(coll.scan(filter="garbage"))) == 4
    bufs = [bytearray(10) for _ in range(3)]
    assert coll.list_docs(0, bufs, "return #__doc__ == 6", Mode.LUA_FILTER) == [(1, 6), (2, 6)]


@needs_lua
def test_lua_document_filter_errors(coll):
    coll.store("x")
    with pytest.raises(ClientError) as e:
        list(coll.scan(filter="return (", mode=Mode.LUA_FILTER))
    assert code_of(e) == YOKAN_ERR_INVALID_FILTER
    with pytest.raises(ClientError) as e:
        list(coll.scan(filter="while true do end", mode=Mode.LUA_FILTER))
    assert code_of(e) == YOKAN_ERR_INVALID_FILTER
    # A runtime error in the script fails the request with Lua's message.
    with pytest.raises(ClientError) as e:
        list(coll.scan(filter="error('no such field')", mode=Mode.LUA_FILTER))
    assert code_of(e) == YOKAN_ERR_INVALID_FILTER
    assert "no such field" in str(e.value)
    # So does a document that cjson cannot decode, unless the script catches it.
    coll.store('{"a": 1}')
    with pytest.raises(ClientError) as e:
        list(coll.scan(filter="return cjson.decode(__doc__).a == 1", mode=Mode.LUA_FILTER))
    assert code_of(e) == YOKAN_ERR_INVALID_FILTER
    code = "local ok, d = pcall(cjson.decode, __doc__) return ok and d.a == 1"
    assert [i for i, _ in coll.scan(filter=code, mode=Mode.LUA_FILTER)] == [1]
    # The memory budget applies to document filters too.
    hog = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end return true"
    with pytest.raises(ClientError) as e:
        list(coll.scan(filter=hog, mode=Mode.LUA_FILTER))
    assert code_of(e) == YOKAN_ERR_INVALID_FILTER
    with pytest.raises(ClientError) as e:
        coll.size(mode=Mode.WAIT)
    assert code_of(e) == YOKAN_ERR_MODE


PEOPLE = [
    {"name": "Ann", "age": 34, "city": "Boston", "address": {"zip": "02110"}, "tags": ["a"]},
    {"name": "Bob", "age": 28, "city": "Boston", "tags": ["b", "c"]},
    {"name": "Cid", "age": 45, "city": "Chicago", "address": {"zip": "60601"}},
    {"name": "Dee", "age": 31.5, "city": "Boston", "vip": None},
    {"name": 'Eve "quoted"\\]]', "age": "unknown", "city": "Denver"},
]


@pytest.fixture
def people(coll):
    coll.store_multi(PEOPLE[:2])
    coll.store("this is not JSON")
    coll.store_multi(PEOPLE[2:])
    coll.store("[1, 2, 3]")
    return coll


def names(result):
    return [doc["name"] for _, doc in result]


@needs_lua
def test_find_basic(people):
    r = people.find({"city": "Boston", "age": {"$gt": 30}})
    assert r == [(0, PEOPLE[0]), (4, PEOPLE[3])]
    assert names(people.find({})) == [p["name"] for p in PEOPLE]
    assert names(people.find({}, limit=2)) == ["Ann", "Bob"]
    assert people.find({}, limit=0) == []


@needs_lua
def test_find_operators(people):
    assert names(people.find({"age": {"$gte": 34}})) == ["Ann", "Cid"]
    assert names(people.find({"age": {"$lt": 31.5}})) == ["Bob"]
    assert names(people.find({"age": {"$lte": 31.5}})) == ["Bob", "Dee"]
    assert names(people.find({"age": {"$gt": 30, "$lt": 40}})) == ["Ann", "Dee"]
    assert names(people.find({"city": {"$ne": "Boston"}})) == ["Cid", PEOPLE[4]["name"]]
    assert names(people.find({"city": {"$eq": "Chicago"}})) == ["Cid"]
    assert names(people.find({"city": {"$in": ["Denver", "Chicago"]}})) == [
        "Cid",
        PEOPLE[4]["name"],
    ]
    assert names(people.find({"address": {"$exists": True}})) == ["Ann", "Cid"]
    assert names(people.find({"address": {"$exists": False}, "city": "Boston"})) == ["Bob", "Dee"]
    assert names(people.find({"vip": None})) == ["Dee"]
    assert names(people.find({"vip": {"$exists": True}})) == ["Dee"]
    assert names(people.find({"tags": "c"})) == ["Bob"]  # arrays match any element
    assert names(people.find({"age": "unknown"})) == [PEOPLE[4]["name"]]
    # Comparisons between different types never match.
    assert names(people.find({"age": {"$gt": "a"}})) == [PEOPLE[4]["name"]]
    assert names(people.find({"$or": [{"name": "Ann"}, {"city": "Chicago"}]})) == ["Ann", "Cid"]


@needs_lua
def test_find_dotted_paths_and_quoting(people):
    assert names(people.find({"address.zip": "60601"})) == ["Cid"]
    assert names(people.find({"address.zip": {"$gt": "0"}})) == ["Ann", "Cid"]
    assert names(people.find({"tags.1": "c"})) == ["Bob"]
    assert names(people.find({"name": 'Eve "quoted"\\]]'})) == ['Eve "quoted"\\]]']
    evil = '"]] or true --'
    assert people.find({"name": evil}) == []
    assert people.find({evil: {"$exists": True}}) == []


def test_query_translation_rejects_bad_queries():
    for bad in (
        {"age": {"$regex": "x"}},
        {"$where": "1"},
        {"age": {"$gt": 1, "plain": 2}},
        {"address": {"zip": "1"}},
        {"age": {"$in": 3}},
        {"age": {"$gt": float("nan")}},
        {"age": {"$eq": [1, 2]}},
        {"": 1},
        {"a..b": 1},
        "not a dict",
    ):
        with pytest.raises(ValueError):
            query_to_lua(bad)
    code = query_to_lua({"a\n]]": 'x"\n'})
    assert '"x\\034\\010"' in code


@needs_lua
def test_find_rejects_unknown_operators_before_any_rpc(people):
    with pytest.raises(ValueError):
        people.find({"age": {"$foo": 1}})


# -- persistence -------------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(PERSISTENT & set(available_backends)))
def test_collections_survive_reopen(tmp_path, backend):
    config = json.dumps(backend_config(backend, tmp_path))
    with Engine("tcp") as e:
        p = Provider(engine=e, provider_id=1, config=config)
        db = Client(e).make_database_handle(e.addr(), 1)
        c = db.create_collection("kept")
        assert c.store_multi(["a", "b", "c"]) == [0, 1, 2]
        c.erase(2)
        del c, db, p
        p = Provider(engine=e, provider_id=1, config=config)
        db = Client(e).make_database_handle(e.addr(), 1)
        assert db.collection_exists("kept")
        c = db.open_collection("kept")
        assert c.size() == 2 and c.last_id() == 2
        assert c.store("d") == 3  # the next id survived too
        assert [d for _, d in c.scan()] == [b"a", b"b", b"d"]
        del c, db, p


def test_collection_through_remote_provider(remote):
    server = remote("na+sm")
    with Engine("na+sm") as e:
        db = Client(e).make_database_handle(server.address, 42)
        c = db.create_collection("remote")
        c.store_multi([{"k": i} for i in range(5)])
        seen = []
        c.iter(lambda i, id_, doc: seen.append(json.loads(bytes(doc))["k"]))
        assert seen == list(range(5))
        if _server.has_lua:
            assert c.find({"k": {"$in": [1, 3]}}) == [(1, {"k": 1}), (3, {"k": 3})]
        del c, db


def test_sparse_ids_after_update_new(coll):
    coll.store_multi(["a", "b"])
    far = 10_000_000  # past the probing range of unsorted backends: they scan instead
    coll.update(far, "far", mode=UPDATE_NEW)
    assert coll.last_id() == far and coll.size() == 3
    assert [i for i, _ in coll.scan(batch_size=1)] == [0, 1, far]
    assert [i for i, _ in coll.scan(from_id=2)] == [far]
    assert coll.store("next") == far + 1
    coll.erase(far)
    assert coll.load_multi([far, far + 1]) == [None, b"next"]


def test_concurrent_stores_get_distinct_ids(coll):
    results = []
    lock = threading.Lock()

    def worker(n):
        mine = [coll.store(f"{n}-{i}") for i in range(30)]
        mine += coll.store_multi([f"{n}-m{i}" for i in range(10)])
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(160))
    assert coll.size() == 160 and coll.last_id() == 159


@pytest.mark.parametrize("backend", sorted(set(available_backends) & {"array", "log"}))
def test_document_stores_refuse_key_value_calls(engine, tmp_path, backend):
    provider, db = open_db(engine, backend, tmp_path)
    calls = [
        (db.put, ("k", "v")),
        (db.get, ("k",)),
        (db.count, ()),
        (db.exists, ("k",)),
        (db.erase_range, ("",)),
        (db.list_keys, ([bytearray(4)], "", "")),
    ]
    for call, args in calls:
        with pytest.raises(ClientError) as e:
            call(*args)
        assert e.value.code == YOKAN_ERR_OP_UNSUPPORTED
    coll = db.create_collection("c")
    assert coll.store("doc") == 0
    assert coll.load(0) == b"doc"
    del db, provider
