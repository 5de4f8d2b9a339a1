"""A provider in another process: same behaviour, shared-memory transport,
large values, dead peers and timeouts."""

import time

import numpy as np
import pytest
from conftest import DOC_ONLY, PERSISTENT, backend_config
from fault_helpers import stopped
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import YOKAN_ERR_FROM_MERCURY, YOKAN_ERR_TIMEOUT
from mochi.yokan.mode import Mode

MiB = 1 << 20


@pytest.fixture(params=["na+sm", "tcp"])
def protocol(request):
    return request.param


def connect(engine, server):
    return Client(engine).make_database_handle(server.address, 42)


def fails_with(code, within_s, action):
    """`action()` must raise a ClientError with `code` within `within_s` seconds."""
    start = time.monotonic()
    with pytest.raises(ClientError) as err:
        action()
    assert err.value.code == code
    assert time.monotonic() - start < within_s


def with_keys(engine, server, n):
    """A handle on `server` holding keys k0000 ... (n of them), values "v"."""
    db = connect(engine, server)
    db.put_multi([(f"k{i:04d}", "v") for i in range(n)])
    return db


def killed(server):
    server.proc.kill()
    server.proc.wait()


def drain(iterator):
    for _ in iterator:
        pass


def test_remote_operations(remote, protocol):
    server = remote(protocol)
    with Engine(protocol, mode=0) as e:
        db = connect(e, server)
        db.put("k", "v")
        db.put_multi([("a", "1"), ("b", "2")])
        assert db.get("k") == b"v"
        assert db.get_multi(["a", "b", "c"]) == [b"1", b"2", None]
        assert db.exists_multi(["a", "zz"]) == [True, False]
        assert db.length("b") == 1
        db.erase("k")
        assert db.count() == 2


def test_same_host_uses_shared_memory(remote, protocol):
    server = remote(protocol)
    with Engine(protocol, mode=0) as e:
        info = connect(e, server).transport_info()
        lanes = [line for line in info.splitlines() if "lane[" in line]
        assert lanes, info
        assert any(t in info for t in ("sysv/", "posix/")), info
        assert "tcp/" not in info, info


@pytest.mark.parametrize("mode", [Mode.DEFAULT, Mode.NO_RDMA])
def test_64mib_numpy(remote, protocol, mode):
    server = remote(protocol)
    with Engine(protocol, mode=0) as e:
        db = connect(e, server)
        a = np.random.default_rng(1).random(64 * MiB // 8)
        db.put("array", a, mode=mode)
        b = np.empty_like(a)
        assert db.get("array", b, mode=mode) == 64 * MiB
        assert np.array_equal(a, b)
        assert db.length("array") == 64 * MiB


@pytest.mark.parametrize("mode", [Mode.DEFAULT, Mode.NO_RDMA])
def test_64mib_numpy_in_process(map_db, mode):
    a = np.random.default_rng(2).random(64 * MiB // 8)
    map_db.put("array", a, mode=mode)
    b = np.empty_like(a)
    assert map_db.get("array", b, mode=mode) == 64 * MiB
    assert np.array_equal(a, b)
    c = np.frombuffer(map_db.get("array", mode=mode), dtype=a.dtype)
    assert np.array_equal(a, c)


@pytest.mark.parametrize(
    "backend", [b for b in available_backends if b in PERSISTENT and b not in DOC_ONLY]
)
def test_remote_persistent_backend(remote, tmp_path, backend):
    server = remote("na+sm", backend_config(backend, tmp_path))
    with Engine("na+sm", mode=0) as e:
        db = connect(e, server)
        db.put_multi([(f"k{i}", f"v{i}") for i in range(100)])
        assert db.get("k42") == b"v42"


def test_dead_server_fails_calls(remote):
    server = remote("na+sm")
    with Engine("na+sm", mode=0) as e:
        db = connect(e, server)
        db.put("k", "v")
        killed(server)

        def get_until_it_fails():
            for _ in range(100):  # the failure may be noticed between two calls
                db.get("k")
                time.sleep(0.01)

        fails_with(YOKAN_ERR_FROM_MERCURY, 10, get_until_it_fails)


def test_stopped_server_times_out(remote):
    server = remote("na+sm")
    with Engine("na+sm", mode=0) as e:
        db = connect(e, server)
        db.put("k", "v")
        with stopped(server):
            fails_with(YOKAN_ERR_TIMEOUT, 5, lambda: db.get("k", timeout_ms=300))
        assert db.get("k", timeout_ms=5000) == b"v"  # and it works again


def test_server_survives_dying_client(remote):
    server = remote("na+sm")
    import subprocess
    import sys

    code = (
        "from mochi.margo import Engine\n"
        "from mochi.yokan.client import Client\n"
        "import os\n"
        f"e = Engine('na+sm', mode=0)\n"
        f"db = Client(e).make_database_handle('{server.address}', 42)\n"
        "db.put('from-child', 'x')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with Engine("na+sm", mode=0) as e:
        db = connect(e, server)
        assert db.get("from-child") == b"x"


def test_scan_abandoned_midway_leaves_the_connection_usable(remote, protocol):
    # Each scan below has requested its next page when it is dropped: the
    # page is given up, and its late answer must not disturb later calls.
    server = remote(protocol)
    with Engine(protocol, mode=0) as e:
        db = connect(e, server)
        db.put_multi([(f"k{i:04d}", f"v{i}") for i in range(50)])
        for round_ in range(200):
            it = db.scan(batch_size=5)
            assert next(it) == (b"k0000", b"v0")
            del it
            if round_ % 50 == 0:
                assert db.get("k0042") == b"v42"
        pairs = list(db.scan(batch_size=7))
        assert len(pairs) == 50 and pairs[-1] == (b"k0049", b"v49")


def test_scan_fails_cleanly_when_the_provider_dies_between_pages(remote):
    server = remote("na+sm")
    with Engine("na+sm", mode=0) as e:
        db = with_keys(e, server, 100)
        it = db.scan(batch_size=10)
        assert next(it)[0] == b"k0000"  # page 2 has been requested
        killed(server)
        # Page 2 may have arrived before the kill; a later one cannot.
        fails_with(YOKAN_ERR_FROM_MERCURY, 10, lambda: drain(it))


def test_scan_page_times_out_on_a_stopped_provider(remote):
    server = remote("na+sm")
    with Engine("na+sm", mode=0) as e:
        db = with_keys(e, server, 100)
        it = db.scan(batch_size=10, timeout_ms=300)
        for _ in range(10):  # the whole first page: page 2 is in hand, page 3 requested
            next(it)
        with stopped(server):
            fails_with(YOKAN_ERR_TIMEOUT, 5, lambda: drain(it))
        assert len(list(db.scan(batch_size=10, timeout_ms=5000))) == 100


def test_scan_pending_page_fails_when_the_engine_is_finalized(remote):
    server = remote("na+sm")
    e = Engine("na+sm", mode=0)
    db = with_keys(e, server, 30)
    it = db.scan(batch_size=10)
    next(it)
    e.finalize()
    with pytest.raises(ClientError):
        list(it)
    del it, db


def test_scan_timeout_counts_while_waiting_not_while_the_caller_works(remote):
    server = remote("na+sm")
    with Engine("na+sm", mode=0) as e:
        db = with_keys(e, server, 9)
        it = db.scan(batch_size=3, timeout_ms=200)
        got = [next(it)]
        time.sleep(0.5)  # longer than the timeout, with page 2 requested
        got += list(it)
        assert [k for k, _ in got] == [f"k{i:04d}".encode() for i in range(9)]


def test_collection_scan_abandoned_midway_leaves_the_connection_usable(remote, protocol):
    server = remote(protocol)
    with Engine(protocol, mode=0) as e:
        db = connect(e, server)
        coll = db.create_collection("c")
        coll.store_multi([f"d{i}".encode() for i in range(40)])
        for _ in range(100):
            it = coll.scan(batch_size=4)
            assert next(it) == (0, b"d0")
            del it
        assert [d for _, d in coll.scan(batch_size=6)][-1] == b"d39"
        assert len(list(coll.scan(from_id=35, batch_size=2))) == 5
