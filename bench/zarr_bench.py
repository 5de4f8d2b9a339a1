#!/usr/bin/env python3
"""Zarr through YokanStore vs Zarr's LocalStore and MemoryStore, in one run.

    python3 bench/zarr_bench.py [--size-mib 1024] [--chunk-mib 1] [--runs 3]
                                [--dir DIR] [--budget-s 600] [--json PATH]

Writes a float64 array (1 GiB by default, 1-D, 1 MiB chunks, no compression
so that the stores are measured, not the codec) with ``z[:] = data`` and
reads it back with ``z[:]``, through each store in turn:

* ``YokanStore``: a ``map`` provider in another process
  (``bench/yokan_server.py na+sm``, shared memory), pinned to CPU0;
* ``LocalStore``: a fresh directory under ``--dir`` (default: the system's
  temporary directory, same disk as the rest); the files are not fsynced and
  the reads come from the page cache, as a second read of a local file would;
* ``MemoryStore``: a dict in this process.

This process (the Zarr client) runs on CPU1. Every run is checked (the array
read back equals what was written) outside the timed part; the median of
``--runs`` runs is reported as GB/s (10^9 bytes/s), with ratios to YokanStore.
The same chunks moved by the bare client (``put``/``get`` of 1 MiB numpy
arrays, no Zarr) give the row that bounds what the store can reach. Each
phase is bounded by ``--budget-s`` overall: later runs are skipped, and
flagged, once it is spent. Needs ``pip install 'mochi-yokan[zarr]'``.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import zarr
from mochi.margo import Engine
from mochi.margo import client as client_mode
from mochi.yokan.client import Client
from mochi.yokan.zarr import YokanStore
from zarr.storage import LocalStore, MemoryStore

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "yokan_server.py")
PROVIDER_ID = 42


def pin(cpus):
    """preexec_fn pinning a child to cpus (None: leave it)."""
    return None if cpus is None else (lambda: os.sched_setaffinity(0, set(cpus)))


class YokanServer:
    """bench/yokan_server.py in a child process: a map provider."""

    def __init__(self, protocol, cpus):
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, protocol, str(PROVIDER_ID)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=pin(cpus),
        )
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            self.stop()
            raise RuntimeError("yokan server printed no address: " + self.proc.stderr.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def gbps(nbytes, seconds):
    return nbytes / seconds / 1e9


class Deadline:
    def __init__(self, budget_s):
        self.end = time.monotonic() + budget_s
        self.truncated = []

    def allows(self, what):
        if time.monotonic() < self.end:
            return True
        self.truncated.append(what)
        return False


def zarr_runs(name, make_store, cleanup, data, chunk_elems, runs, deadline):
    """Median write and read GB/s of `runs` rounds of z[:] = data; z[:]."""
    writes, reads = [], []
    for i in range(runs):
        if i and not deadline.allows(f"{name} run {i + 1}"):
            break
        store = make_store()
        z = zarr.create_array(
            store,
            name="bench",
            shape=data.shape,
            chunks=(chunk_elems,),
            dtype=data.dtype,
            compressors=None,
            filters=None,
            fill_value=0.0,
            overwrite=True,
        )
        t = time.perf_counter()
        z[:] = data
        writes.append(gbps(data.nbytes, time.perf_counter() - t))
        t = time.perf_counter()
        back = z[:]
        reads.append(gbps(data.nbytes, time.perf_counter() - t))
        if not np.array_equal(back, data):
            raise SystemExit(f"{name}: the array read back differs from the one written")
        del back, z
        cleanup(store)
    return {
        "write_gbps": statistics.median(writes),
        "read_gbps": statistics.median(reads),
        "write_runs": writes,
        "read_runs": reads,
    }


def raw_runs(db, data, chunk_elems, runs, deadline):
    """The same chunks through the bare client: put of each numpy slice, get
    into a preallocated array (no Zarr, no codec pipeline)."""
    chunks = [data[i : i + chunk_elems] for i in range(0, data.size, chunk_elems)]
    keys = [f"raw/c/{i}" for i in range(len(chunks))]
    out = np.empty_like(data)
    dests = [out[i : i + chunk_elems] for i in range(0, data.size, chunk_elems)]
    writes, reads = [], []
    for i in range(runs):
        if i and not deadline.allows(f"raw client run {i + 1}"):
            break
        t = time.perf_counter()
        for k, c in zip(keys, chunks):
            db.put(k, c)
        writes.append(gbps(data.nbytes, time.perf_counter() - t))
        t = time.perf_counter()
        for k, d in zip(keys, dests):
            db.get(k, d)
        reads.append(gbps(data.nbytes, time.perf_counter() - t))
        if not np.array_equal(out, data):
            raise SystemExit("raw client: the chunks read back differ")
        db.erase_range("raw/")
    return {
        "write_gbps": statistics.median(writes),
        "read_gbps": statistics.median(reads),
        "write_runs": writes,
        "read_runs": reads,
    }


def yokan_runs(engine, address, data, chunk_elems, runs, deadline):
    """YokanStore and the bare client, on the provider at `address`."""
    db = Client(engine).make_database_handle(address, PROVIDER_ID)
    return {
        "YokanStore": zarr_runs(
            "YokanStore",
            lambda: YokanStore(db, "bench"),
            lambda store: db.erase_range("bench/"),
            data,
            chunk_elems,
            runs,
            deadline,
        ),
        "raw client": raw_runs(db, data, chunk_elems, runs, deadline),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where LocalStore writes")
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--protocol", default="na+sm", help="engine protocol (na+sm or tcp)")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "zarr_latest.json"))
    args = parser.parse_args()

    two_cpus = len(os.sched_getaffinity(0)) >= 2
    server_cpus, client_cpus = ([0], [1]) if two_cpus else (None, None)
    if client_cpus:
        os.sched_setaffinity(0, set(client_cpus))
    n = args.size_mib * (1 << 20) // 8
    chunk_elems = int(args.chunk_mib * (1 << 20)) // 8
    data = np.random.default_rng(0).standard_normal(n)
    deadline = Deadline(args.budget_s)
    results = {}

    server = YokanServer(args.protocol, server_cpus)
    engine = Engine(args.protocol, mode=client_mode)
    try:
        results.update(yokan_runs(engine, server.address, data, chunk_elems, args.runs, deadline))
    finally:
        engine.finalize()
        server.stop()

    local_root = tempfile.mkdtemp(prefix="zarr-bench-", dir=args.dir)
    try:
        results["LocalStore"] = zarr_runs(
            "LocalStore",
            lambda: LocalStore(os.path.join(local_root, "store")),
            lambda store: shutil.rmtree(os.path.join(local_root, "store")),
            data,
            chunk_elems,
            args.runs,
            deadline,
        )
    finally:
        shutil.rmtree(local_root, ignore_errors=True)

    results["MemoryStore"] = zarr_runs(
        "MemoryStore", MemoryStore, lambda store: None, data, chunk_elems, args.runs, deadline
    )

    nchunks = -(-n // chunk_elems)
    print(
        f"Zarr {zarr.__version__}: {args.size_mib} MiB float64, {args.chunk_mib:g} MiB chunks "
        f"({nchunks}), no compression; median of {args.runs} runs; client CPU "
        f"{client_cpus}, provider CPU {server_cpus} ({args.protocol}, map backend)"
    )
    labels = {
        "YokanStore": f"YokanStore ({args.protocol}, other process)",
        "raw client": "bare client put/get (no Zarr)",
        "LocalStore": f"LocalStore ({args.dir}, page cache)",
        "MemoryStore": "MemoryStore",
    }
    print(f"{'store':42} {'write GB/s':>10} {'read GB/s':>10}")
    for key, label in labels.items():
        r = results[key]
        print(f"{label:42} {r['write_gbps']:10.2f} {r['read_gbps']:10.2f}")
    yk = results["YokanStore"]
    for other in ("LocalStore", "MemoryStore"):
        r = results[other]
        print(
            f"YokanStore / {other}: write {yk['write_gbps'] / r['write_gbps']:.2f}x, "
            f"read {yk['read_gbps'] / r['read_gbps']:.2f}x"
        )
    load = os.getloadavg()
    print(f"load average during the run (1/5/15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if deadline.truncated:
        print("budget spent, skipped:", ", ".join(deadline.truncated))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(
            {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "zarr": zarr.__version__,
                "size_mib": args.size_mib,
                "chunk_mib": args.chunk_mib,
                "runs": args.runs,
                "protocol": args.protocol,
                "results": results,
                "truncated": deadline.truncated,
                "loadavg": load,
            },
            f,
            indent=1,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
