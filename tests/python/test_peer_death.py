"""A peer that dies in the middle of a large transfer over TCP never takes
the other process with it.

With UCX 1.13's newer protocol selection (PROTO_ENABLE=y), a TCP endpoint
that fails while rendezvous data is queued on it trips a UCX assertion and
aborts the process: any client could kill a provider by exiting mid-get, and
a provider dying mid-put killed its client. The engine now turns that
protocol on only for shared-memory-only engines (src/engine/engine_setup.cpp).
The client here forces TCP on itself (`"ucx": {"TLS": "tcp,self"}`), as a
remote client's traffic would be, against a provider with default settings.
"""

import subprocess
import sys
import time

import pytest

SERVER = """
import sys, time
from mochi.margo import Engine
from mochi.yokan.server import Provider
e = Engine("tcp://127.0.0.1")
p = Provider(e, 1, '{"database": {"type": "map"}}')
print(e.addr(), flush=True)
time.sleep(300)
"""

CLIENT = """
import sys, numpy as np
from mochi.margo import Engine, client
from mochi.yokan.client import Client
with Engine("tcp", mode=client, config={"ucx": {"TLS": "tcp,self"}}) as e:
    db = Client(e).make_database_handle(sys.argv[1], 1)
    big = np.ones(256 << 20, dtype=np.uint8)
    if sys.argv[2] == "put":
        db.put("big", big)
        print("stored", flush=True)
    else:
        out = np.zeros_like(big)
        print("getting", flush=True)
        while True:
            db.get("big", out)
"""

KILLS = 4


def spawn(code, *args):
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def provider():
    srv = spawn(SERVER)
    address = srv.stdout.readline().strip()
    assert address.startswith("tcp://"), srv.stderr.read()
    yield srv, address
    srv.kill()
    srv.wait()
    srv.stdout.close()
    srv.stderr.close()


def test_clients_killed_mid_get_over_tcp_never_kill_the_provider(provider):
    srv, address = provider
    put = subprocess.run(
        [sys.executable, "-c", CLIENT, address, "put"], capture_output=True, text=True, timeout=120
    )
    assert put.stdout.strip() == "stored", put.stderr[-2000:]
    for i in range(KILLS):
        c = spawn(CLIENT, address, "get")
        assert c.stdout.readline().strip() == "getting", c.stderr.read()[-2000:]
        time.sleep(0.3 + 0.1 * i)  # mid-transfer: a 256 MiB get takes longer
        c.kill()
        c.wait()
        c.stdout.close()
        c.stderr.close()
        time.sleep(0.5)
        assert srv.poll() is None, f"provider died (exit {srv.returncode}) after kill {i + 1}"
    # Still serving: a new client reads the value back whole.
    check = CLIENT.replace(
        'print("getting", flush=True)\n        while True:\n            db.get("big", out)',
        'db.get("big", out)\n        print("ok" if (out == 1).all() else "bad", flush=True)',
    )
    got = subprocess.run(
        [sys.executable, "-c", check, address, "get"], capture_output=True, text=True, timeout=120
    )
    assert got.stdout.strip().splitlines()[-1] == "ok", got.stderr[-2000:]


def test_a_provider_killed_mid_put_over_tcp_never_kills_the_client(provider):
    srv, address = provider
    putter = CLIENT.replace(
        '        db.put("big", big)\n        print("stored", flush=True)',
        '        print("putting", flush=True)\n'
        "        try:\n"
        "            while True:\n"
        '                db.put("big", big, timeout_ms=5000)\n'
        "        except Exception as err:\n"
        '            print("error:", err, flush=True)',
    )
    c = spawn(putter, address, "put")
    try:
        assert c.stdout.readline().strip() == "putting", c.stderr.read()[-2000:]
        time.sleep(0.5)
        srv.kill()
        srv.wait()
        out, err = c.communicate(timeout=60)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()
    assert c.returncode == 0, err[-2000:]
    # (UCX may log a line of its own on stdout first.)
    assert out.strip().splitlines()[-1].startswith("error:"), out + err[-2000:]
    assert "lost" in out or "timed out" in out, out
    assert "Mercury error: Mercury error" not in out, out  # the status is said once
