"""Growing a group while a client writes: two yokan-server processes share
the keys, a third joins (--join), and the keys that now route to it move
there while the client keeps putting and reading. Runs on this host only
(loopback)."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mochi.yokan.group import Group

work = Path(tempfile.mkdtemp(prefix="yokan-rebalance-"))
config = work / "yokan.json"
config.write_text(
    json.dumps(
        {
            "providers": [
                {
                    "name": "kv",
                    "type": "yokan",
                    "provider_id": 1,
                    "config": {"database": {"type": "map"}},
                }
            ]
        }
    )
)
group_file = str(work / "group.json")


def server(*group_args):
    """Starts a yokan-server in the group; returns once it serves."""
    p = subprocess.Popen(
        [sys.executable, "-m", "mochi.yokan.server", "tcp", "-c", str(config)]
        + ["--group-file", group_file, *group_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().startswith("yokan-server running at")
    return p


servers = [server("--group-size", "2", "--group-rank", str(i)) for i in range(2)]
try:
    with Group.from_file(group_file, wait_s=30) as group:
        db = group.database(1)
        db.put_multi([(f"key-{i:05d}", f"value-{i}") for i in range(10000)])
        print("2 members:", [s.count() for s in db.shards], "keys per shard")

        servers.append(server("--join"))
        writes = 0
        deadline = time.monotonic() + 60
        while json.loads(Path(group_file).read_text()).get("version") != 2:
            # The client goes on; while the group moves it reads a moving
            # key on its new member and falls back to the old one.
            db.put(f"live-{writes}", str(writes))
            assert db.get(f"key-{writes % 10000:05d}") == f"value-{writes % 10000}".encode()
            writes += 1
            assert time.monotonic() < deadline, "the group did not finish growing"
            time.sleep(0.01)

        db.refresh()  # the handle would also follow by itself within refresh_ms
        print("3 members:", [s.count() for s in db.shards], "keys per shard")
        assert db.count() == 10000 + writes
        assert db.get_multi([f"live-{i}" for i in range(writes)]) == [
            str(i).encode() for i in range(writes)
        ]
        print(f"{writes} writes during the move, none lost")
finally:
    for p in servers:
        p.terminate()
        p.wait(timeout=60)
    shutil.rmtree(work, ignore_errors=True)
