"""Test helper: a client as the README writes it (Engine("tcp", mode=client),
no address of its own) that exercises provider 1 at ADDRESS and prints a
JSON report on stdout.

    python cross_host_client.py ADDRESS [TOKEN_FILE]
"""

import json
import sys
import time

import numpy as np
from mochi.margo import Engine, client
from mochi.yokan.client import Client

address = sys.argv[1]
config = {"auth": {"token_file": sys.argv[2]}} if len(sys.argv) > 2 else None
report = {}
start = time.monotonic()
with Engine("tcp", mode=client, config=config) as engine:
    db = Client(engine).make_database_handle(address, 1)
    report["handle_s"] = time.monotonic() - start
    db.put("greeting", "hello across")
    report["get"] = db.get("greeting").decode()
    db.put_multi([(f"k{i}", f"v{i}") for i in range(500)])
    report["get_multi_ok"] = db.get_multi([f"k{i}" for i in range(500)]) == [
        f"v{i}".encode() for i in range(500)
    ]
    big = np.arange(1 << 20, dtype=np.uint64)  # 8 MiB: rendezvous
    db.put("big", big)
    out = np.zeros_like(big)
    db.get("big", out)
    report["big_ok"] = bool((out == big).all())
    report["count"] = db.count()
    report["transports"] = db.transport_info()
    report["engine"] = engine.config
    del db
print(json.dumps(report), flush=True)
