"""The py-mochi-margo compatible Engine."""

import threading

import pytest
from mochi.margo import Engine, MargoException, client, server


def test_tcp_listens_on_loopback():
    with Engine("tcp") as e:
        text = str(e.addr())
        assert text.startswith("tcp://127.0.0.1:")
        assert int(text.rsplit(":", 1)[1]) > 0
        assert e.listening
        assert e.config["net_device"] == "lo"


def test_explicit_port_and_interface():
    with Engine("tcp://127.0.0.1:0") as e:
        port = int(str(e.addr()).rsplit(":", 1)[1])
    with Engine(f"tcp://127.0.0.1:{port}") as e:
        assert str(e.addr()) == f"tcp://127.0.0.1:{port}"
    with Engine("tcp://lo") as e:
        assert str(e.addr()).startswith("tcp://127.0.0.1:")
        assert e.config["net_device"] == "lo"


def test_na_sm():
    with Engine("na+sm") as e:
        assert "na+sm" in str(e.addr())
        assert "tcp" not in e.config["transports"]


def test_client_mode():
    with Engine("tcp", mode=client) as e:
        assert not e.listening
    assert server == 1 and client == 0


def test_bad_protocol():
    with pytest.raises(RuntimeError, match="margo_init"):
        Engine("abc")
    with pytest.raises(RuntimeError):
        Engine("tcp://10.255.255.1:1234")  # not an address of this machine


def test_lookup_and_address_equality():
    with Engine("tcp") as a, Engine("tcp") as b:
        addr = b.lookup(str(a.addr()))
        assert addr == a.addr()
        assert str(addr.copy()) == str(a.addr())
        with pytest.raises(MargoException):
            b.lookup("tcp://127.0.0.1:1")


def test_wait_for_finalize_returns_after_finalize():
    e = Engine("tcp")
    done = threading.Event()

    def waiter():
        e.wait_for_finalize()
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not done.wait(0.3)
    e.finalize()
    assert done.wait(10)
    t.join()
    assert e.finalized


def test_context_manager_finalizes():
    with Engine("tcp") as e:
        pass
    assert e.finalized


def test_engine_config_validation():
    with Engine("tcp", config={"num_rpc_threads": 2, "rndv_threshold": 4096}) as e:
        assert e.config["num_rpc_threads"] == 2
    with pytest.raises(Exception) as err:
        Engine("tcp", config="{not json")
    assert getattr(err.value, "code", None) == 7
