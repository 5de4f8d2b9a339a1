"""What gdbm's crash safety costs: put, put_multi and get_multi throughput on
one gdbm provider (in-process, na+sm), with "sync" on and off.

    PYTHONPATH=STAGE python3 bench/gdbm_durability.py [--dir DIR] [--n N] [--sync true|false]

Run it once against a build without the journal and once with it to compare;
each line is the median of --runs runs. The database lives in a fresh
temporary directory under --dir (default: the system's temporary directory),
so the file system matters: pass a directory on the disk you care about.
"""

import argparse
import json
import statistics
import tempfile
import time

from mochi.margo import Engine
from mochi.yokan.client import Client
from mochi.yokan.server import Provider

VALUE = b"v" * 100
BATCH = 64


def measure(engine, directory, sync, n):
    """ops/s of (put, put_multi, get_multi) on a new database."""
    with tempfile.TemporaryDirectory(dir=directory) as d:
        config = {"database": {"type": "gdbm", "config": {"path": f"{d}/db", "sync": sync}}}
        provider = Provider(engine=engine, provider_id=7, config=json.dumps(config))
        db = Client(engine).make_database_handle(engine.addr(), 7)
        keys = [f"key:{i:08d}".encode() for i in range(n)]

        start = time.perf_counter()
        for k in keys:
            db.put(k, VALUE)
        put = n / (time.perf_counter() - start)

        start = time.perf_counter()
        for i in range(0, n, BATCH):
            db.put_multi([(k, VALUE) for k in keys[i : i + BATCH]])
        put_multi = n / (time.perf_counter() - start)

        start = time.perf_counter()
        for i in range(0, n, BATCH):
            got = db.get_multi(keys[i : i + BATCH])
            assert all(v == VALUE for v in got)
        get_multi = n / (time.perf_counter() - start)
        del db, provider
    return put, put_multi, get_multi


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where the database goes")
    ap.add_argument("--n", type=int, default=5000, help="keys per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sync", choices=["both", "true", "false"], default="both")
    args = ap.parse_args()
    modes = {"both": (True, False), "true": (True,), "false": (False,)}[args.sync]
    with Engine("na+sm") as engine:
        for sync in modes:
            runs = [measure(engine, args.dir, sync, args.n) for _ in range(args.runs)]
            put, put_multi, get_multi = (statistics.median(r[i] for r in runs) for i in range(3))
            print(
                f"sync={str(sync).lower():5}  put {put:9.0f}/s  "
                f"put_multi({BATCH}) {put_multi:9.0f} keys/s  "
                f"get_multi({BATCH}) {get_multi:9.0f} keys/s"
            )


if __name__ == "__main__":
    main()
