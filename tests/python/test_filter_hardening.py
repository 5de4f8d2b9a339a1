"""Lua filters cannot escape their budget nor stall other clients.

Every test runs the provider in a child process (serve.py), so a provider
that crashes or wedges fails the test instead of the test run, and its peak
memory can be read from /proc. See docs/design/lua-filters.md."""

import ctypes
import ctypes.util
import statistics
import threading
import time

import pytest
from conftest import KV_BACKENDS, PERSISTENT, SORTED, VALUELESS, backend_config
from mochi.margo import Engine
from mochi.yokan import _server
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_INVALID_FILTER
from mochi.yokan.mode import Mode

pytestmark = pytest.mark.skipif(not _server.has_lua, reason="built without Lua")

BUDGET_S = 1.0  # the provider's default Lua time budget per request
MARGIN_S = 10.0  # generous: the machine is shared; the requirement is budget + 1 s
CALL_TIMEOUT_MS = 30000  # a wedged provider fails the test instead of hanging it

LISTING = sorted(b for b in SORTED & set(KV_BACKENDS))
# `map` (inline handlers) and one persistent backend (handler pool).
TWO = ["map"] + sorted(b for b in LISTING if b in PERSISTENT)[:1]


@pytest.fixture
def served(remote, tmp_path):
    """Factory: (server, database) for a backend, with a few keys stored."""
    engines = []

    def start(backend):
        server = remote("na+sm", backend_config(backend, tmp_path))
        engine = Engine("na+sm")
        engines.append(engine)
        db = Client(engine).make_database_handle(server.address, 42)
        db.valueless = backend in VALUELESS
        for k in ("a", "b", "c"):
            db.put(k, "" if db.valueless else "v" + k)
        return server, db

    yield start
    for engine in engines:
        engine.finalize()


def list_with(db, code, mode=Mode.LUA_FILTER):
    return db.list_keys([bytearray(16) for _ in range(4)], "", code, mode, CALL_TIMEOUT_MS)


def refused(db, code, mode=Mode.LUA_FILTER):
    """The error of a filtered listing, and how long it took."""
    t0 = time.monotonic()
    with pytest.raises(ClientError) as e:
        list_with(db, code, mode)
    return e.value, time.monotonic() - t0


def expected(db):
    return b"" if db.valueless else b"va"


def assert_alive(server, db):
    assert server.proc.poll() is None, "the provider died"
    assert db.get("a", timeout_ms=5000) == expected(db)


def peak_rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# -- bytecode ------------------------------------------------------------------


def lua_bytecode(source):
    """`source` compiled by the system's Lua 5.4 library (what string.dump gives)."""
    name = ctypes.util.find_library("lua5.4") or "liblua5.4.so.0"
    try:
        lua = ctypes.CDLL(name)
    except OSError:
        pytest.skip("the Lua 5.4 shared library is not installed")
    lua.luaL_newstate.restype = ctypes.c_void_p
    lua.luaL_loadstring.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    writer_t = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p
    )
    lua.lua_dump.argtypes = [ctypes.c_void_p, writer_t, ctypes.c_void_p, ctypes.c_int]
    lua.lua_close.argtypes = [ctypes.c_void_p]
    out = bytearray()

    @writer_t
    def write(_L, p, size, _ud):
        out.extend(ctypes.string_at(p, size))
        return 0

    state = lua.luaL_newstate()
    assert lua.luaL_loadstring(state, source.encode()) == 0
    assert lua.lua_dump(state, write, None, 1) == 0
    lua.lua_close(state)
    return bytes(out)


def patched_constant_index(chunk):
    """The chunk with its LOADK (opcode 3, A=0, Bx=0) pointing far past its constants."""
    loadk = bytes([3, 0, 0, 0])
    at = chunk.index(loadk, 12)
    return chunk[:at] + bytes([3, 0, 0xFF, 0x7F]) + chunk[at + 4 :]


@pytest.mark.parametrize("backend", TWO)
def test_bytecode_is_refused(served, backend):
    server, db = served(backend)
    chunk = lua_bytecode("local s = 'keep-this-constant' return s ~= __key__")
    assert chunk.startswith(b"\x1bLua")
    for code in (chunk, patched_constant_index(chunk), b"\x1bLua garbage"):
        err, _ = refused(db, code)
        assert err.code == YOKAN_ERR_INVALID_FILTER
        assert "binary" in str(err)  # Lua: "attempt to load a binary chunk"
        assert_alive(server, db)


# -- escapes from the time budget ----------------------------------------------

ESCAPES = {
    "gc_finalizer": "setmetatable({}, {__gc = function() while true do end end}) return true",
    "gc_via_collect": (
        "for i = 1, 100 do setmetatable({}, {__gc = function() while true do end end}) end "
        "local t = {} for i = 1, 1e6 do t[i % 1000] = {} end return true"
    ),
    "find_bomb": "return string.find(string.rep('a', 5000), string.rep('a-', 25) .. 'b') ~= nil",
    "gsub_bomb": "local s = string.rep('a', 100000) return s:gsub('.-.-.-.-.-.-.-.-b', '') ~= ''",
    # C loops that allocate nothing, so the memory cap does not stop them.
    "rep_empty": "string.rep('', math.maxinteger) while true do end",
    "move_nils": "table.move({}, 1, math.maxinteger - 1, 2) return true",
    "gmatch_bomb": (
        "for w in string.gmatch(string.rep('x', 20000), '(x*)(x*)(x*)y') do end return true"
    ),
}


@pytest.mark.parametrize("backend", TWO)
@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_no_escape_from_the_time_budget(served, backend, escape):
    server, db = served(backend)
    err, took = refused(db, ESCAPES[escape])
    print(f"{escape} on {backend}: {err} after {took:.3f} s")
    assert err.code == YOKAN_ERR_INVALID_FILTER
    assert "budget" in str(err) or "limit" in str(err) or "not allowed" in str(err)
    assert took < BUDGET_S + MARGIN_S
    # The provider still answers everyone, repeatedly.
    for _ in range(10):
        assert_alive(server, db)


def test_cheap_patterns_still_work(served):
    _, db = served("map")
    code = "return __key__:find('^[ab]') ~= nil and __value__:match('^v(%a+)$') == __key__"
    assert list_with(db, code, Mode.LUA_FILTER | Mode.FILTER_VALUE) == [1, 1]


def test_runtime_error_is_reported(served):
    server, db = served("map")
    err, _ = refused(db, "local t = nil return t.field")
    assert err.code == YOKAN_ERR_INVALID_FILTER
    assert "attempt to index a nil value" in str(err)
    assert_alive(server, db)


# -- other clients stay answered -----------------------------------------------

BUSY = "while true do end"


def gets_during(db, seconds, stop):
    """(latency, completion time) of gets issued until `stop` is set or `seconds` pass."""
    latencies, want = [], expected(db)
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline and len(latencies) < 200000:
        t0 = time.monotonic()
        assert db.get("a", timeout_ms=5000) == want
        t1 = time.monotonic()
        latencies.append((t1 - t0, t1))
    return latencies


def run_slow_filters(server, db, other, count):
    errors, times, done = [], [], []

    def slow():
        err, took = refused(db, BUSY)
        errors.append(err)
        times.append(took)
        done.append(time.monotonic())

    threads = [threading.Thread(target=slow) for _ in range(count)]
    stop = threading.Event()
    for t in threads:
        t.start()
    time.sleep(0.05)  # let the filters arrive first
    waiter = threading.Thread(target=lambda: ([t.join() for t in threads], stop.set()))
    waiter.start()
    gets = gets_during(other, (BUDGET_S + MARGIN_S) * count, stop)
    waiter.join()
    # Only the gets answered while a filter was still running count.
    latencies = [lat for lat, end in gets if end < max(done)]
    assert len(errors) == count
    for err in errors:
        assert err.code == YOKAN_ERR_INVALID_FILTER
        assert "time limit" in str(err)
    return latencies, times


@pytest.mark.parametrize("backend", LISTING)
def test_slow_filter_does_not_stall_other_clients(served, backend):
    server, db = served(backend)
    with Engine("na+sm") as engine:
        other = Client(engine).make_database_handle(server.address, 42)
        other.valueless = db.valueless
        latencies, times = run_slow_filters(server, db, other, 1)
        assert len(latencies) >= 10, "gets were not answered while the filter ran"
        p50 = statistics.median(latencies)
        print(
            f"{backend}: {len(latencies)} gets during a {BUDGET_S} s filter, "
            f"p50 {p50 * 1e3:.2f} ms, max {max(latencies) * 1e3:.1f} ms; "
            f"filter error after {times[0]:.3f} s"
        )
        assert times[0] < BUDGET_S + MARGIN_S
        assert p50 < 0.1  # requirement: 5 ms; generous here, see the report
        del other


@pytest.mark.parametrize("backend", TWO)
def test_many_slow_filters_leave_gets_answered(served, backend):
    server, db = served(backend)
    count = 6  # more than the filter pool and the engine's handler threads
    with Engine("na+sm") as engine:
        other = Client(engine).make_database_handle(server.address, 42)
        other.valueless = db.valueless
        latencies, times = run_slow_filters(server, db, other, count)
        assert len(latencies) >= 10, "gets were not answered while the filters ran"
        p50 = statistics.median(latencies)
        print(
            f"{backend}: {count} slow filters, {len(latencies)} gets, p50 {p50 * 1e3:.2f} ms, "
            f"max {max(latencies) * 1e3:.1f} ms; errors after "
            + ", ".join(f"{t:.2f}" for t in sorted(times))
            + " s"
        )
        # The budget counts from arrival, so queued filters are not later.
        assert max(times) < BUDGET_S + MARGIN_S
        assert p50 < 0.1
        del other


# -- memory --------------------------------------------------------------------

CAP = 128 << 20  # the provider's default Lua memory budget


# 1 MiB referenced 600 times: ~600 MiB of JSON from 1 MiB of Lua memory.
CJSON_BOMBS = {
    "shared_string": "local t = {} for i = 1, 600 do t[i] = s end",
    # __pairs must not hide from the size check what cjson (raw next) encodes
    "hidden_by_pairs": (
        "local t = setmetatable({}, {__pairs = function() return function() end end}) "
        "for i = 1, 600 do t[i] = s end"
    ),
}


@pytest.mark.parametrize("backend", TWO)
@pytest.mark.parametrize("bomb", sorted(CJSON_BOMBS))
def test_cjson_cannot_allocate_past_the_cap(served, backend, bomb):
    server, db = served(backend)
    coll = db.create_collection("docs")
    coll.store('{"k": 1}')
    code = (
        "local s = string.rep('x', 1 << 20) " + CJSON_BOMBS[bomb] + " return #cjson.encode(t) > 0"
    )
    before = peak_rss_bytes(server.proc.pid)
    with pytest.raises(ClientError) as e:
        list(coll.scan(filter=code, mode=Mode.LUA_FILTER, timeout_ms=CALL_TIMEOUT_MS))
    assert e.value.code == YOKAN_ERR_INVALID_FILTER
    assert "memory" in str(e.value)
    peak = peak_rss_bytes(server.proc.pid)
    print(
        f"{bomb} on {backend}: provider peak RSS {before >> 20} MiB before, {peak >> 20} MiB after"
    )
    assert peak - before < CAP + (64 << 20)
    # A small document still encodes.
    ok = "return cjson.encode(cjson.decode(__doc__)) == '{\"k\":1}'"
    assert [i for i, _ in coll.scan(filter=ok, mode=Mode.LUA_FILTER)] == [0]
    assert_alive(server, db)
    del coll
