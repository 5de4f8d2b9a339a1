"""A group across network namespaces: 4 providers (ids 1 and 2) in 2 servers
in each of 2 namespaces, a client (the README's engine form) in a third that
runs every API call through the group, then SIGKILLs one member: the calls
routed to it fail naming it, never hang, and the rest keep working."""

import json
import signal
import subprocess
import sys
from pathlib import Path

from netns_helpers import star

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "netns_group_client.py"
SERVERS_PER_NAMESPACE = 2


def start_server(net, ns, host, rank, size, group_file, tmp_path):
    config = tmp_path / f"server-{rank}.json"
    config.write_text(
        json.dumps(
            {
                # Listening beyond loopback needs a token or this explicit
                # opt-out (protected mode); test_cross_host.py covers tokens.
                "engine": {"auth": {"allow_anonymous": True}},
                "providers": [
                    {"name": "kv", "provider_id": 1, "config": {"database": {"type": "map"}}},
                    {"name": "side", "provider_id": 2, "config": {"database": {"type": "map"}}},
                ],
            }
        )
    )
    argv = [sys.executable, "-m", "mochi.yokan.server", f"tcp://{host}", "-c", str(config)]
    argv += ["--group-file", str(group_file), "--group-size", str(size)]
    argv += ["--group-rank", str(rank)]
    return subprocess.Popen(
        net.argv(ns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_group_across_namespaces(tmp_path):
    group_file = tmp_path / "group.json"
    size = 2 * SERVERS_PER_NAMESPACE
    with star(2) as net:
        procs = []
        try:
            for rank in range(size):
                side = rank // SERVERS_PER_NAMESPACE
                procs.append(
                    start_server(
                        net,
                        net.servers[side],
                        net.server_ip(side),
                        rank,
                        size,
                        group_file,
                        tmp_path,
                    )
                )
            for p in procs:
                line = p.stdout.readline()
                assert line.startswith("yokan-server running at tcp://10."), p.stderr.read()
            members = json.loads(group_file.read_text())["members"]
            assert sorted(m["pid"] for m in members) == sorted(p.pid for p in procs)
            done = subprocess.run(
                net.argv(net.client, [sys.executable, str(CLIENT), str(group_file)]),
                capture_output=True,
                text=True,
                timeout=150,
                cwd=HERE,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.count(": ok") == 2, done.stdout
            # The client killed one member; the others stop cleanly.
            codes = []
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                codes.append(p.wait(timeout=60))
            assert sorted(codes) == [-signal.SIGKILL, 0, 0, 0], codes
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stdout.close()
                p.stderr.close()
