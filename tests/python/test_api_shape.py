"""The manual's and upstream's call shapes: positional modes, ``mid=``,
the backend list, the one-call connect helper."""

import pytest
from mochi.margo import Engine
from mochi.yokan.backends import available_backends
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.connect import database
from mochi.yokan.exception import YOKAN_ERR_KEY_NOT_FOUND
from mochi.yokan.mode import YOKAN_MODE_CONSUME, Mode
from mochi.yokan.server import Provider

CONFIG = '{"database": {"type": "map"}}'


@pytest.mark.parametrize("consume", [Mode.CONSUME, YOKAN_MODE_CONSUME], ids=["Mode", "int"])
def test_get_takes_the_mode_in_place_of_the_buffer(consume):
    with database() as db:
        db.put("k", "v")
        assert db.get("k", consume) == b"v"
        with pytest.raises(ClientError) as e:
            db.get("k")
        assert e.value.code == YOKAN_ERR_KEY_NOT_FOUND


def test_get_refuses_a_mode_given_twice():
    with database() as db:
        db.put("k", "v")
        with pytest.raises(TypeError):
            db.get("k", Mode.CONSUME, mode=Mode.CONSUME)
        assert db.get("k") == b"v"  # nothing consumed


def test_get_into_a_buffer_still_works():
    with database() as db:
        db.put("k", "value")
        buf = bytearray(16)
        assert db.get("k", buf) == 5
        assert bytes(buf[:5]) == b"value"


def test_client_and_provider_take_mid_by_keyword():
    with Engine("tcp") as engine:
        provider = Provider(mid=engine.mid, provider_id=3, config=CONFIG)
        db = Client(mid=engine.mid).make_database_handle(engine.addr(), 3)
        db.put("a", "b")
        assert db.get("a") == b"b"
        del db, provider


def test_engine_given_twice_or_not_at_all_is_a_type_error():
    with Engine("tcp") as engine:
        with pytest.raises(TypeError):
            Client()
        with pytest.raises(TypeError):
            Client(engine, mid=engine.mid)
        with pytest.raises(TypeError):
            Provider(provider_id=1, config=CONFIG)
        with pytest.raises(TypeError):
            Provider(engine, 1, CONFIG, mid=engine.mid)


def test_every_listed_backend_opens_and_null_is_listed():
    assert "null" in available_backends
    assert {"map", "unordered_map", "set", "unordered_set", "array", "log"} <= set(
        available_backends
    )
    with Engine("tcp") as engine:
        provider = Provider(engine, 1, '{"database": {"type": "null"}}')
        db = Client(engine).make_database_handle(engine.addr(), 1)
        db.put("k", "v")  # accepted, and not stored
        assert db.count() == 0
        del db, provider


def test_connect_helper_reaches_a_running_provider():
    with Engine("tcp") as engine:
        provider = Provider(engine, 9, CONFIG)
        with database(str(engine.addr()), provider_id=9) as db:
            db.put("x", "y")
        own = Client(engine).make_database_handle(engine.addr(), 9)
        assert own.get("x") == b"y"
        del own, provider
