"""The gdbm backend's journal and copy (<path>.journal, <path>.base): what a
clean close leaves, a torn journal tail, a missing copy, and a file damaged
behind the backend's back."""

import json
import signal

import pytest
from conftest import backend_config
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.exception import YOKAN_ERR_CORRUPTION
from mochi.yokan.server import Exception as ServerError
from mochi.yokan.server import Provider

pytestmark = pytest.mark.skipif("gdbm" not in available_backends, reason="gdbm not compiled in")


def files(tmp_path):
    path = tmp_path / "gdbm.db"
    return path, path.with_name("gdbm.db.journal"), path.with_name("gdbm.db.base")


def write_then_kill(remote, config, items):
    """Each item in its own put (one journal record each), then SIGKILL."""
    server = remote("na+sm", config)
    with Engine("na+sm", mode=0) as e:
        db = Client(e).make_database_handle(server.address, 42)
        for k, v in items:
            db.put(k, v)
        del db
    server.stop(signal.SIGKILL)


def read_all(remote, config, keys):
    server = remote("na+sm", config)
    with Engine("na+sm", mode=0) as e:
        db = Client(e).make_database_handle(server.address, 42)
        values = db.get_multi(keys)
        count = db.count()
        del db
    server.stop()
    return values, count


def test_clean_close_leaves_an_empty_journal_and_a_current_copy(tmp_path):
    path, journal, base = files(tmp_path)
    config = json.dumps(backend_config("gdbm", tmp_path))
    with Engine("na+sm") as e:
        p = Provider(engine=e, provider_id=1, config=config)
        db = Client(e).make_database_handle(e.addr(), 1)
        db.put_multi([(f"k{i}", f"v{i}") for i in range(100)])
        assert journal.stat().st_size > 0
        del db, p
    assert journal.stat().st_size == 0
    assert base.read_bytes() == path.read_bytes()


def test_torn_journal_tail_is_cut_off(remote, tmp_path):
    """A record cut short (the kill landed inside its write) was never
    acknowledged: the records before it replay, and the database opens."""
    _, journal, _ = files(tmp_path)
    config = backend_config("gdbm", tmp_path)
    items = [(f"k{i:03d}", f"value {i}" * 10) for i in range(50)]
    write_then_kill(remote, config, items)
    size = journal.stat().st_size
    assert size > 0, "the kill left no journal to replay"
    with open(journal, "r+b") as f:
        f.truncate(size - 7)  # tears the last put's record
    values, count = read_all(remote, config, [k for k, _ in items])
    assert values[:-1] == [v.encode() for _, v in items[:-1]]
    assert values[-1] is None
    assert count == len(items) - 1


def test_garbage_after_the_last_record_is_ignored(remote, tmp_path):
    _, journal, _ = files(tmp_path)
    config = backend_config("gdbm", tmp_path)
    items = [(f"k{i:03d}", f"value {i}") for i in range(20)]
    write_then_kill(remote, config, items)
    with open(journal, "ab") as f:
        f.write(b"\x59\x4b\x47\x4a" + b"\xff" * 40)  # a record magic, then noise
    values, count = read_all(remote, config, [k for k, _ in items])
    assert values == [v.encode() for _, v in items]
    assert count == len(items)


def test_missing_copy_is_refused_with_the_file_named(remote, tmp_path):
    _, _, base = files(tmp_path)
    config = backend_config("gdbm", tmp_path)
    write_then_kill(remote, config, [("a", "1"), ("b", "2")])
    base.unlink()
    with Engine("na+sm") as e:
        with pytest.raises(ServerError) as err:
            Provider(engine=e, provider_id=1, config=json.dumps(config))
    assert err.value.code == YOKAN_ERR_CORRUPTION
    assert str(base) in str(err.value)


def test_damaged_file_says_how_to_recover_and_the_copy_restores_it(tmp_path):
    """A file damaged behind the backend's back (a disk error, say): opening
    it names the copy to restore; copying the copy over it gives back
    everything written before the clean close."""
    path, _, base = files(tmp_path)
    config = json.dumps(backend_config("gdbm", tmp_path))
    items = [(f"k{i:03d}", f"value {i}") for i in range(200)]
    with Engine("na+sm") as e:
        p = Provider(engine=e, provider_id=1, config=config)
        Client(e).make_database_handle(e.addr(), 1).put_multi(items)
        del p
    path.write_bytes(b"\0" * path.stat().st_size)
    with Engine("na+sm") as e:
        with pytest.raises(ServerError) as err:
            Provider(engine=e, provider_id=1, config=config)
        assert str(base) in str(err.value), str(err.value)
        path.write_bytes(base.read_bytes())
        p = Provider(engine=e, provider_id=1, config=config)
        db = Client(e).make_database_handle(e.addr(), 1)
        assert db.get_multi([k for k, _ in items]) == [v.encode() for _, v in items]
        del db, p
