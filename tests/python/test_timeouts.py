"""Every timeout_ms is a hard limit, whatever the peer does; infinite or huge
timeouts mean "no limit"; bad engine configs are refused, not fatal."""

import math
import os
import signal

import numpy as np
import pytest
from fault_helpers import Server, free_tcp_port, stopped, timed
from mochi.margo import Engine, MargoException
from mochi.yokan.client import Client
from mochi.yokan.client import Exception as ClientError
from mochi.yokan.exception import (
    YOKAN_ERR_INVALID_ARGS,
    YOKAN_ERR_INVALID_CONFIG,
    YOKAN_ERR_TIMEOUT,
)
from mochi.yokan.exception import Exception as YokanError
from mochi.yokan.mode import Mode

KiB = 1 << 10
MiB = 1 << 20
# Liveness bound asserted with a generous margin (the requirement is
# timeout + 0.5 s); the measured times are printed with -s.
MARGIN_S = 2.5


@pytest.fixture(params=["na+sm", "tcp"])
def protocol(request):
    return request.param


@pytest.fixture
def server(protocol):
    s = Server(protocol)
    yield s
    s.stop()


@pytest.fixture
def engine():
    with Engine("tcp") as e:
        yield e


def handle(engine, server):
    return Client(engine).make_database_handle(server.address, 42)


@pytest.mark.parametrize("size", [64 * KiB, MiB])
def test_put_to_stopped_provider_times_out_and_handle_recovers(engine, server, protocol, size):
    db = handle(engine, server)
    db.put("warm", b"x" * size)
    with stopped(server):
        err, took = timed(lambda: db.put("k", b"v" * size, timeout_ms=1000))
        print(f"put {size} B to a stopped provider: {took:.3f} s")
        assert isinstance(err, ClientError), err
        assert err.code == YOKAN_ERR_TIMEOUT
        assert "timed out after 1000 ms" in str(err)
        assert took < 1.0 + MARGIN_S
    db.put("k", b"w" * size, timeout_ms=10000)
    assert db.get("k") == b"w" * size


def test_get_of_large_value_from_stopped_provider(engine, server):
    db = handle(engine, server)
    db.put("big", b"b" * (4 * MiB))
    out = np.zeros(4 * MiB, dtype=np.uint8)
    with stopped(server):
        err, took = timed(lambda: db.get("big", value=out, timeout_ms=1000))
        print(f"get 4 MiB from a stopped provider: {took:.3f} s")
        assert isinstance(err, ClientError) and err.code == YOKAN_ERR_TIMEOUT, err
        assert took < 1.0 + MARGIN_S
    assert db.get("big", value=out, timeout_ms=10000) == 4 * MiB
    assert out.tobytes() == b"b" * (4 * MiB)


@pytest.mark.parametrize("timeout", [math.inf, 1e13, 2.0**32 + 5])
def test_huge_timeout_means_no_limit(engine, server, timeout):
    db = handle(engine, server)
    db.put("k", "v", timeout_ms=timeout)
    assert db.get("k", timeout_ms=timeout) == b"v"
    assert db.count(timeout_ms=timeout) == 1


def test_make_database_handle_to_stopped_provider_times_out(engine, server):
    # Bounded by the engine's connect_timeout_ms (7 s): the stopped provider's
    # kernel accepts the bootstrap connection, nobody answers on it.
    with stopped(server):
        err, took = timed(lambda: Client(engine).make_database_handle(server.address, 42))
        print(f"make_database_handle to a stopped provider: {took:.3f} s")
        assert isinstance(err, ClientError), err
        assert err.code == YOKAN_ERR_TIMEOUT, err
        assert server.address in str(err)
        assert took < 7.0 + MARGIN_S
        err, took = timed(lambda: engine.lookup(server.address))
        print(f"Engine.lookup of a stopped provider: {took:.3f} s")
        assert isinstance(err, MargoException) and "Timeout" in str(err), err
        assert took < 7.0 + MARGIN_S
    # Resumed: the same engine connects.
    db = Client(engine).make_database_handle(server.address, 42)
    db.put("k", "v", timeout_ms=10000)
    assert db.get("k") == b"v"


def test_reconnections_do_not_leak_sockets(engine):
    """Each reconnection (here: after the provider restarted on the same
    address) closes the old connection's bootstrap socket."""
    address = f"tcp://127.0.0.1:{free_tcp_port()}"
    s = Server(address)
    try:
        db = Client(engine).make_database_handle(s.address, 42)
        db.put("k", "v")
        counts = []
        for _ in range(20):
            s.stop(signal.SIGKILL)
            s = Server(address)
            db.put("k", "v", timeout_ms=10000)  # reconnects
            counts.append(len(os.listdir("/proc/self/fd")))
        print(f"open fds after each of 20 reconnections: {counts}")
        assert counts[-1] <= counts[0] + 2, counts
    finally:
        s.stop()


def test_too_many_rpc_threads_is_an_invalid_config():
    with pytest.raises(YokanError) as err:
        Engine("tcp", config={"num_rpc_threads": 1e5})
    assert err.value.code == YOKAN_ERR_INVALID_CONFIG
    with Engine("tcp") as e:  # the process is fine
        assert str(e.addr())


def test_no_rdma_cannot_get_around_max_message_size(engine):
    s = Server("tcp", {"max_message_size": 64 * KiB})
    try:
        db = handle(engine, s)
        for mode in (0, Mode.NO_RDMA):
            with pytest.raises(ClientError) as err:
                db.put("k", b"x" * (256 * KiB), mode=mode, timeout_ms=10000)
            assert err.value.code == YOKAN_ERR_INVALID_ARGS
        assert not db.exists("k")
    finally:
        s.stop()
