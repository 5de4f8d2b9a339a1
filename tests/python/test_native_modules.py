"""The compiled layer is four pybind11 modules over the one core library:
``_common`` (the Engine and the error table, shared), ``_mode``, ``_client``
and ``_server``, wrapped by ``mochi.yokan.mode``, ``mochi.yokan.client`` and
``mochi.yokan.server``. Each class is bound in exactly one of them; the
others use it (an Engine made by ``_common`` is what ``_client`` and
``_server`` take), and errors raised in each module reach Python as the
package's exception classes."""

import importlib
import json

import mochi.yokan.client
import mochi.yokan.mode
import mochi.yokan.server
import pytest
from mochi.margo import Engine
from mochi.yokan import _client, _common, _mode, _server
from mochi.yokan.exception import (
    YOKAN_ERR_INVALID_CONFIG,
    YOKAN_ERR_KEY_EXISTS,
    ClientException,
    ServerException,
)

NATIVE = {"_common": _common, "_mode": _mode, "_client": _client, "_server": _server}

# Where each bound name lives (the product's shape).
EXPECTED = {
    "_common": {"Engine", "errors"},
    "_mode": {"modes", "mode_is_compatible"},
    "_client": {
        "Client",
        "Database",
        "ShardedDatabase",
        "Collection",
        "PendingCall",
        "CompletionQueue",
    },
    "_server": {"Provider", "available_backends", "has_lua"},
}


def _public(module):
    return {n for n in dir(module) if not n.startswith("_")}


def test_the_single_private_module_is_gone():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mochi.yokan._yokan")


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_each_module_binds_its_part(name):
    assert EXPECTED[name] <= _public(NATIVE[name])


def test_no_class_or_function_is_bound_in_two_modules():
    """A type bound twice would be two distinct Python types (an Engine from
    one module refused by another): every bound object is in one module."""
    owner = {}
    for name, module in NATIVE.items():
        for attr in _public(module):
            obj = getattr(module, attr)
            if not (isinstance(obj, type) or callable(obj)):
                continue
            assert attr not in owner, f"{attr} is bound in {owner[attr]} and {name}"
            assert id(obj) not in {id(getattr(NATIVE[o], a)) for a, o in owner.items()}
            owner[attr] = name


def test_the_engine_from_common_is_what_client_and_server_take():
    with Engine("tcp") as engine:
        native = engine.get_internal_mid()
        assert type(native) is _common.Engine
        provider = _server.Provider(native, 7, json.dumps({"database": {"type": "map"}}))
        db = _client.Client(native).make_database_handle(str(engine.addr()), provider.provider_id)
        assert isinstance(db, _client.Database)
        assert db.count(0, 5000.0) == 0


def test_the_public_modules_wrap_the_native_ones():
    assert mochi.yokan.server.Provider is not _server.Provider  # a Python wrapper
    assert issubclass(mochi.yokan.server.Exception, Exception)
    with Engine("tcp") as engine:
        provider = mochi.yokan.server.Provider(engine, 3, {"database": {"type": "map"}})
        assert isinstance(provider._native, _server.Provider)
        db = mochi.yokan.client.Client(engine).make_database_handle(engine.addr(), 3)
        assert isinstance(db._db, _client.Database)
    assert {n: int(getattr(mochi.yokan.mode.Mode, n)) for n, _ in _mode.modes} == dict(_mode.modes)


def test_errors_of_each_module_reach_python_as_the_package_classes():
    with Engine("tcp") as engine:
        native = engine.get_internal_mid()
        # _server: a bad configuration is a server-side error.
        with pytest.raises(ServerException) as bad:
            _server.Provider(native, 9, '{"database": {"type": "no-such-backend"}}')
        assert bad.value.code == YOKAN_ERR_INVALID_CONFIG
        # _client: a refused call is a client-side error with its code.
        provider = _server.Provider(native, 10, json.dumps({"database": {"type": "map"}}))
        db = _client.Client(native).make_database_handle(str(engine.addr()), 10)
        new_only = dict(_mode.modes)["NEW_ONLY"]
        db.put(["k"], ["v"], new_only, 5000.0)
        with pytest.raises(ClientException) as exists:
            db.put(["k"], ["v"], new_only, 5000.0)
        assert exists.value.code == YOKAN_ERR_KEY_EXISTS
        del db, provider
    # _common: an engine that cannot start raises the package's class too.
    with pytest.raises(ClientException):
        _common.Engine("no-such-protocol://", True, "")
