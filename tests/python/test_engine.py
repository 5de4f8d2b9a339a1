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


def test_engine_released_last_by_its_own_handler():
    """The last reference to an engine can be dropped on the engine's own
    thread: a handler still running (a Lua filter spinning to its time limit)
    holds the provider, which holds the engine, after the program let go of
    both. The engine must then be torn down elsewhere, not join itself."""
    import subprocess
    import sys

    code = (
        "import threading, time\n"
        "from mochi.margo import Engine\n"
        "from mochi.yokan.client import Client\n"
        "from mochi.yokan.mode import Mode\n"
        "from mochi.yokan.server import Provider\n"
        "e = Engine('na+sm')\n"
        'p = Provider(engine=e, provider_id=1, config=\'{"database": {"type": "map"}}\')\n'
        "c = Engine('na+sm', mode=0)\n"
        "db = Client(c).make_database_handle(str(e.addr()), 1)\n"
        "db.put('k', 'v')\n"
        "out = []\n"
        "def slow():\n"
        "    try:\n"
        "        db.list_keys([bytearray(8)], '', 'while true do end', Mode.LUA_FILTER)\n"
        "        out.append('answered')\n"
        "    except Exception as err:\n"
        "        out.append(type(err).__name__)\n"
        "t = threading.Thread(target=slow)\n"
        "t.start()\n"
        "time.sleep(0.3)\n"
        "del p, e\n"
        "t.join(60)\n"
        "time.sleep(1)  # the handler returns just after its reply\n"
        "print('done', out, flush=True)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("done")
