"""Connections heal: a handle made before a provider restart works after it."""

import signal

import pytest
from fault_helpers import Server, free_tcp_port
from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError


@pytest.fixture
def engine():
    with Engine("tcp") as e:
        yield e


def test_handle_works_after_provider_restart_on_same_address(engine):
    address = f"tcp://127.0.0.1:{free_tcp_port()}"
    first = Server(address)
    try:
        db = Client(engine).make_database_handle(first.address, 42)
        db.put("k", "v")
    finally:
        first.stop(signal.SIGKILL)
    with pytest.raises(ClientError) as err:
        db.put("k", "v", timeout_ms=5000)
    assert "connection to" in str(err.value)
    second = Server(address)
    try:
        db.put("k2", "v2", timeout_ms=10000)  # reconnects in place
        assert db.get("k2") == b"v2"
    finally:
        second.stop()
