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
