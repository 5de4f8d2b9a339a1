"""Persistent backends keep every acknowledged write: across a provider's
destruction, an engine's finalization and a SIGKILL of the server process."""

import json
import signal

import pytest
from conftest import DOC_ONLY, PERSISTENT, backend_config
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.exception import YOKAN_ERR_PERMISSION
from mochi.yokan.server import Exception as ServerError
from mochi.yokan.server import Provider

BACKENDS = [b for b in available_backends if b in PERSISTENT and b not in DOC_ONLY]
N = 300


def pairs(tag):
    return [(f"{tag}:{i:05d}", f"value {tag} {i}" * (1 + i % 5)) for i in range(N)]


def check_all(db, expected):
    assert db.count() == len(expected)
    values = db.get_multi([k for k, _ in expected])
    assert values == [v.encode() for _, v in expected]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reopen_after_provider_destroyed(tmp_path, backend):
    config = json.dumps(backend_config(backend, tmp_path))
    data = pairs("a")
    with Engine("tcp") as e:
        p = Provider(engine=e, provider_id=1, config=config)
        db = Client(e).make_database_handle(e.addr(), 1)
        db.put_multi(data[:100])
        for k, v in data[100:]:
            db.put(k, v)
        del db, p  # destroying a provider never deletes data
        p = Provider(engine=e, provider_id=1, config=config)
        db = Client(e).make_database_handle(e.addr(), 1)
        check_all(db, data)
        del db, p


@pytest.mark.parametrize("backend", BACKENDS)
def test_reopen_after_engine_finalized(tmp_path, backend):
    config = json.dumps(backend_config(backend, tmp_path))
    with Engine("tcp") as e:
        p = Provider(engine=e, provider_id=1, config=config)
        Client(e).make_database_handle(e.addr(), 1).put("survivor", "yes")
    del p
    with Engine("tcp") as e:
        p = Provider(engine=e, provider_id=1, config=config)
        assert Client(e).make_database_handle(e.addr(), 1).get("survivor") == b"yes"
        del p


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_providers_cannot_open_one_path(tmp_path, backend):
    config = json.dumps(backend_config(backend, tmp_path))
    with Engine("tcp") as e:
        p = Provider(engine=e, provider_id=1, config=config)
        with pytest.raises(ServerError) as err:
            Provider(engine=e, provider_id=2, config=config)
        assert err.value.code == YOKAN_ERR_PERMISSION
        assert "already open" in str(err.value)
        del p


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_after_ack_loses_nothing(remote, tmp_path, backend):
    config = backend_config(backend, tmp_path)
    server = remote("na+sm", config)
    data = pairs("k")
    with Engine("na+sm", mode=0) as e:
        db = Client(e).make_database_handle(server.address, 42)
        for k, v in data[:150]:
            db.put(k, v)  # each put returned: acknowledged
        db.put_multi(data[150:])
        db.erase(data[0][0])
        server.stop(signal.SIGKILL)
    server = remote("na+sm", config)
    with Engine("na+sm", mode=0) as e:
        db = Client(e).make_database_handle(server.address, 42)
        check_all(db, data[1:])
        assert not db.exists(data[0][0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reopen_at_once_while_a_client_is_busy(tmp_path, backend):
    """Closing a provider releases its database before returning, even with
    a request in the middle of being handled: the same path opens right after
    (it used to fail now and then with "already open by another provider",
    the last handler still holding the old database)."""
    import threading

    config = json.dumps(backend_config(backend, tmp_path))
    with Engine("tcp") as e:
        stop = threading.Event()
        errors = []

        def hammer(db):
            i = 0
            while not stop.is_set():
                try:
                    # Batches big enough that the close lands mid-request.
                    db.put_multi([(f"k{i % 4}-{j}", "v" * 512) for j in range(500)])
                except Exception as exc:  # the provider went away: expected
                    errors.append(exc)
                    return
                i += 1

        for _ in range(20):
            p = Provider(engine=e, provider_id=1, config=config)
            db = Client(e).make_database_handle(e.addr(), 1)
            t = threading.Thread(target=hammer, args=(db,))
            t.start()
            while t.is_alive() and not errors and db.count() == 0:
                pass
            p.close()
            p = Provider(engine=e, provider_id=2, config=config)  # must not be "already open"
            p.close()
            stop.set()
            t.join(10)
            stop.clear()
            errors.clear()
            del db
