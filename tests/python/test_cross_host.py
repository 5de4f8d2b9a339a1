"""Across hosts: a provider in one network namespace, clients in another
(two namespaces on one kernel are what two hosts look like to the engine,
plus the trap of shared memory that UCX believes reachable), and the
precedence of the user's UCX settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

from netns_helpers import star

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "cross_host_client.py"
SHARED_MEMORY = ("sysv/", "posix/", "cma/", "xpmem/", "knem/")


def lanes(info):
    return [line for line in info.splitlines() if "lane[" in line] or info.splitlines()


def token_file(tmp_path):
    """A token file as an operator makes one (mode 0600)."""
    path = tmp_path / "token"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


def start_server(net, ns, host, tmp_path):
    """A yokan-server on `host` (not loopback: protected mode wants a token,
    tmp_path/token, which every client of it passes too)."""
    config = tmp_path / "server.json"
    config.write_text(
        json.dumps(
            {
                "engine": {"auth": {"token_file": str(token_file(tmp_path))}},
                "providers": [
                    {"name": "kv", "provider_id": 1, "config": {"database": {"type": "map"}}}
                ],
            }
        )
    )
    proc = subprocess.Popen(
        net.argv(
            ns, [sys.executable, "-m", "mochi.yokan.server", f"tcp://{host}", "-c", str(config)]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("yokan-server running at"), proc.stderr.read()
    return proc, line.split()[-1]


def stop_server(proc):
    proc.terminate()
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def run_client(argv):
    """Runs the client; a hang fails the test (generous bound, not a timing check)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_report(report):
    assert report["get"] == "hello across"
    assert report["get_multi_ok"] and report["big_ok"]
    assert report["count"] == 502


def test_a_client_in_another_namespace_reaches_the_provider(tmp_path):
    with star(1) as net:
        server, address = start_server(net, net.servers[0], net.server_ip(0), tmp_path)
        try:
            report = run_client(
                net.argv(
                    net.client, [sys.executable, str(CLIENT), address, str(tmp_path / "token")]
                )
            )
        finally:
            stop_server(server)
    check_report(report)
    used = "\n".join(lanes(report["transports"]))
    # Over the veth pair, never shared memory (which would hang: its wake-up
    # goes through an abstract unix socket, private to a network namespace).
    assert "tcp/" in used, report["transports"]
    assert not any(t in used for t in SHARED_MEMORY), report["transports"]
    print(f"cross-namespace make_database_handle: {report['handle_s'] * 1000:.0f} ms")


def test_a_client_in_the_same_namespace_still_uses_shared_memory(tmp_path):
    # The provider listens on a real (veth) address; a client next to it, in
    # its namespace, keeps shared memory.
    with star(1) as net:
        ns = net.servers[0]
        server, address = start_server(net, ns, net.server_ip(0), tmp_path)
        try:
            report = run_client(
                net.argv(ns, [sys.executable, str(CLIENT), address, str(tmp_path / "token")])
            )
        finally:
            stop_server(server)
    check_report(report)
    used = "\n".join(lanes(report["transports"]))
    assert any(t in used for t in SHARED_MEMORY), report["transports"]
    assert "tcp/" not in used, report["transports"]


SM_CLIENT = """
import sys
from mochi.margo import Engine, client
from mochi.yokan.client import Client
with Engine("na+sm", mode=client, config={"auth": {"token_file": sys.argv[2]}}) as e:
    try:
        Client(e).make_database_handle(sys.argv[1], 1)
    except Exception as err:
        print(err)
"""


def test_a_shared_memory_client_is_refused_across_namespaces_not_hung(tmp_path):
    with star(1) as net:
        server, address = start_server(net, net.servers[0], net.server_ip(0), tmp_path)
        try:
            done = subprocess.run(
                net.argv(
                    net.client,
                    [sys.executable, "-c", SM_CLIENT, address, str(tmp_path / "token")],
                ),
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            stop_server(server)
    assert done.returncode == 0, done.stderr
    assert "another network namespace" in done.stdout and address in done.stdout, done.stdout


# -- the user's UCX settings --------------------------------------------------

PROBE = """
import json, sys
from mochi.margo import Engine, client
from mochi.yokan.client import Client
config = json.loads(sys.argv[2])
with Engine("tcp", mode=client, config=config) as e:
    info = Client(e).make_database_handle(sys.argv[1], 42).transport_info()
    print(json.dumps({"engine": e.config, "info": info}))
"""


def probe(address, env, config=None):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, address, json.dumps(config or {})],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ucx_tls_and_net_devices_from_the_environment_win(remote):
    server = remote("tcp")
    # Left alone, a same-host client uses shared memory ...
    default = probe(server.address, {})
    assert any(t in default["info"] for t in SHARED_MEMORY), default["info"]
    # ... the user's UCX_TLS says TCP only, and it is obeyed.
    got = probe(server.address, {"UCX_TLS": "tcp,self", "UCX_NET_DEVICES": "lo"})
    assert got["engine"]["transports"] == "tcp,self"
    assert got["engine"]["net_device"] == "lo"
    used = "\n".join(lanes(got["info"]))
    assert "tcp/lo" in used and not any(t in used for t in SHARED_MEMORY), got["info"]


def test_the_engine_config_beats_the_environment(remote):
    server = remote("tcp")
    got = probe(server.address, {"UCX_TLS": "tcp,self"}, {"ucx": {"TLS": "sm,self"}})
    assert got["engine"]["transports"] == "sm,self"
    used = "\n".join(lanes(got["info"]))
    assert "tcp/" not in used and any(t in used for t in SHARED_MEMORY), got["info"]
