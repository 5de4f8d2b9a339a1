#!/usr/bin/env python3
"""Snapshot, restore and migration throughput, with the disk's own speed, in one run.

    python3 bench/snapshot_bench.py [--size-mb 1024] [--backends rocksdb,lmdb]
                                    [--pause-backends map,leveldb] [--dir DIR]
                                    [--budget-s 900] [--json PATH]

For each backend: fills a database with SIZE MiB (1 MiB values), then times
  snapshot  provider.snapshot(dest)                 (GB/s = SIZE / time)
  restore   empty provider .restore(dest, new_root)
  migrate   provider.migrate() to a provider on a second engine, over loopback
and, while each snapshot runs, a writer doing small puts records the longest
wait of one put: the writer pause. First it measures the disk with dd
(write with fdatasync, then read with the page cache dropped when allowed),
so the numbers can be read against what the disk itself does.
Everything happens under DIR (default: the system's temporary directory;
its file system is printed). The run stops starting new steps after
--budget-s seconds.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

GB = 1e9


def fs_of(path):
    """(device, type) of the file system holding `path`."""
    best = ("?", "?", "")
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, kind = line.split()[:3]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[2]):
                best = (dev, kind, mnt)
    return best[0], best[1]


def dd_speed(directory, size_mb):
    """Write (fdatasync) and read speed of the disk in bytes/s, by dd."""
    path = os.path.join(directory, "dd-test")
    out = {}
    r = subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size_mb}", "conv=fdatasync"],
        capture_output=True,
        text=True,
    )
    out["dd_write_Bps"] = parse_dd(r.stderr)
    dropped = False
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        dropped = True
    except OSError:
        pass
    r = subprocess.run(
        ["dd", f"if={path}", "of=/dev/null", "bs=1M"], capture_output=True, text=True
    )
    out["dd_read_Bps"] = parse_dd(r.stderr)
    out["dd_read_cold"] = dropped
    os.unlink(path)
    return out


def parse_dd(text):
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", text)
    return int(m.group(1)) / float(m.group(2)) if m else None


def backend_config(backend, root):
    if backend in {"rocksdb", "leveldb", "lmdb", "log"}:
        return {"path": os.path.join(root, backend)}
    if backend in {"gdbm", "tkrzw", "berkeleydb"}:
        return {"path": os.path.join(root, backend + ".db")}
    return {}


class PauseProbe:
    """A writer doing small puts in a loop; records the longest put."""

    def __init__(self, db):
        self.db = db
        self.longest = 0.0
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        i = 0
        while not self.stop.is_set() and i < 10_000_000:
            t0 = time.perf_counter()
            self.db.put(f"probe{i % 1000}", b"x")
            self.longest = max(self.longest, time.perf_counter() - t0)
            i += 1
        self.count = i

    def __enter__(self):
        self.thread.start()
        time.sleep(0.2)
        self.longest = 0.0  # the warm-up does not count
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        return False


def fill(db, size_mb):
    value = os.urandom(1 << 20)
    for i in range(size_mb):
        db.put(f"key{i:08d}", value[i % 256 :] + value[: i % 256])


def run_backend(backend, size_mb, root, do_all, deadline):
    from mochi.margo import Engine
    from mochi.yokan.client import Client
    from mochi.yokan.server import Provider

    row = {"backend": backend, "size_MiB": size_mb}
    size = size_mb << 20
    os.makedirs(root, exist_ok=True)
    with Engine("tcp") as a, Engine("tcp") as b:
        cfg = {"database": {"type": backend, "config": backend_config(backend, root)}}
        src = Provider(engine=a, provider_id=1, config=cfg)
        db = Client(a).make_database_handle(a.addr(), 1)
        t0 = time.perf_counter()
        fill(db, size_mb)
        row["fill_s"] = round(time.perf_counter() - t0, 2)
        snap = os.path.join(root, "snap")
        with PauseProbe(db) as probe:
            t0 = time.perf_counter()
            src.snapshot(snap)
            row["snapshot_s"] = round(time.perf_counter() - t0, 3)
        row["writer_pause_ms"] = round(probe.longest * 1000, 1)
        row["snapshot_GBps"] = round(size / GB / row["snapshot_s"], 2)
        manifest = json.load(open(os.path.join(snap, "yokan-snapshot.json")))
        row["snapshot_format"] = manifest.get("format")
        if do_all and time.monotonic() < deadline:
            dst = Provider(engine=a, provider_id=2, config={})
            t0 = time.perf_counter()
            dst.restore(snap, os.path.join(root, "restored"))
            row["restore_s"] = round(time.perf_counter() - t0, 3)
            row["restore_GBps"] = round(size / GB / row["restore_s"], 2)
            del dst
        if do_all and time.monotonic() < deadline:
            shutil.rmtree(snap, ignore_errors=True)
            far = Provider(engine=b, provider_id=3, config={})
            t0 = time.perf_counter()
            src.migrate(str(b.addr()), 3, os.path.join(root, "migrated"))
            row["migrate_s"] = round(time.perf_counter() - t0, 3)
            row["migrate_GBps"] = round(size / GB / row["migrate_s"], 2)
            moved = Client(a).make_database_handle(b.addr(), 3)
            assert moved.exists(f"key{size_mb - 1:08d}")
            del moved, far
        del db, src
    shutil.rmtree(root, ignore_errors=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--backends", default="rocksdb,lmdb")
    ap.add_argument("--pause-backends", default="map,leveldb")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--budget-s", type=float, default=900)
    ap.add_argument("--json")
    args = ap.parse_args()
    from mochi.yokan.backends import available_backends

    deadline = time.monotonic() + args.budget_s
    base = tempfile.mkdtemp(prefix="yokan-snapbench-", dir=args.dir)
    dev, kind = fs_of(base)
    report = {"dir": base, "device": dev, "fs": kind, "rows": []}
    try:
        report.update(dd_speed(base, args.size_mb))
        print(
            f"disk {dev} ({kind}): dd write {report['dd_write_Bps'] / GB:.2f} GB/s (fdatasync), "
            f"read {report['dd_read_Bps'] / GB:.2f} GB/s "
            f"({'cold' if report['dd_read_cold'] else 'page cache not dropped'})"
        )
        jobs = [(b, True) for b in args.backends.split(",") if b]
        jobs += [(b, False) for b in args.pause_backends.split(",") if b]
        for backend, do_all in jobs:
            if backend not in available_backends:
                print(f"{backend}: not compiled in, skipped")
                continue
            if time.monotonic() > deadline:
                print(f"{backend}: budget spent, skipped")
                continue
            row = run_backend(backend, args.size_mb, os.path.join(base, backend), do_all, deadline)
            report["rows"].append(row)
            print(json.dumps(row))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
