#!/usr/bin/env python3
"""1000 concurrent gets with asyncio.gather: mochi.yokan.aio vs the blocking
loop vs redis.asyncio, in one run.

    python3 bench/aio_bench.py [--runs N] [--count N] [--json PATH]

Starts its own redis-server and a Yokan provider (map backend, na+sm) the
way bench/run_bench.py does, pinned to the first CPU; this process (the
client) pins itself to the second one. Each row is the median over --runs
runs (after a warm-up) of the time to get --count 64-byte values by 16-byte
keys, as ops/s; every loop is bounded in time. Rows: Yokan's blocking
``get`` in a loop; ``asyncio.gather`` of ``await adb.get(k)`` on the default
loop and on uvloop (if installed); redis.asyncio ``gather`` of ``GET``
(a warmed BlockingConnectionPool of 100 connections) on the same loops;
and redis-py's blocking loop.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run_bench import PROVIDER_ID, RedisServer, YokanServer  # noqa: E402

BUDGET_S = 120.0  # the whole measurement, whatever the machine does
REDIS_POOL = 100  # redis.asyncio connections for the gather rows


def keys_values(count):
    keys = [f"aio-key-{i:08d}".encode() for i in range(count)]
    return keys, [bytes([65 + i % 26]) * 64 for i in range(count)]


def median_rate(times, count):
    return count / statistics.median(times) if times else None


def timed_runs(fn, runs, warmup, deadline):
    """Seconds of each of `runs` calls of fn() after `warmup` ones, fewer if
    the deadline passes."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


async def async_runs(make_coro, runs, warmup, deadline):
    for _ in range(warmup):
        await make_coro()
    out = []
    for _ in range(runs):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        await make_coro()
        out.append(time.perf_counter() - start)
    return out


def loops():
    yield "asyncio", asyncio.run
    try:
        import uvloop
    except ImportError:
        return
    yield "uvloop", uvloop.run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from mochi.margo import Engine
    from mochi.yokan import aio
    from mochi.yokan.client import Client

    cpus = sorted(os.sched_getaffinity(0))
    srv_cpu, cli_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    keys, values = keys_values(args.count)
    rows = {}
    deadline = time.monotonic() + BUDGET_S
    redis = RedisServer([srv_cpu])
    yokan = YokanServer("na+sm", [srv_cpu])
    os.sched_setaffinity(0, {cli_cpu})
    try:
        with Engine("na+sm", mode=0) as engine:
            db = Client(engine).make_database_handle(yokan.address, PROVIDER_ID)
            db.put_multi(list(zip(keys, values)))
            assert db.get(keys[0]) == values[0]

            def blocking():
                for k in keys:
                    db.get(k)

            rows["yokan blocking loop"] = timed_runs(blocking, args.runs, 2, deadline)
            adb = aio.AsyncDatabase(db)
            for name, run in loops():

                async def yokan_gather():
                    got = await asyncio.gather(*(adb.get(k) for k in keys))
                    assert got[-1] == values[-1]

                async def measure():
                    peak0 = aio.in_flight()
                    times = await async_runs(yokan_gather, args.runs, 2, deadline)
                    return times, aio.in_flight()[1], peak0

                times, peak, _ = run(measure())
                rows[f"yokan aio gather ({name})"] = times
                rows[f"yokan aio gather ({name}) peak in flight"] = peak

                async def yokan_sequential():
                    for k in keys:
                        await adb.get(k)

                async def measure_seq():
                    return await async_runs(yokan_sequential, args.runs, 1, deadline)

                rows[f"yokan aio sequential awaits ({name})"] = run(measure_seq())

        import redis as redis_py
        import redis.asyncio as aredis

        r = redis_py.Redis(port=redis.port)
        r.mset(dict(zip(keys, values)))

        def redis_blocking():
            for k in keys:
                r.get(k)

        rows["redis-py blocking loop"] = timed_runs(redis_blocking, args.runs, 2, deadline)
        r.close()
        for name, run in loops():

            async def measure_redis():
                # A gather of 1000 needs a pool that waits for a free
                # connection (the default one refuses past its maximum).
                pool = aredis.BlockingConnectionPool(port=redis.port, max_connections=REDIS_POOL)
                client = aredis.Redis(connection_pool=pool)

                async def redis_gather():
                    got = await asyncio.gather(*(client.get(k) for k in keys))
                    assert got[-1] == values[-1]

                try:
                    return await async_runs(redis_gather, args.runs, 2, deadline)
                finally:
                    await client.aclose()

            rows[f"redis.asyncio gather ({name}, {REDIS_POOL} conns)"] = run(measure_redis())
    finally:
        yokan.close()
        redis.close()

    truncated = time.monotonic() > deadline
    print(
        f"{args.count} gets of 64-byte values, median of up to {args.runs} runs "
        f"(server CPU {srv_cpu}, client CPU {cli_cpu}){' TRUNCATED' if truncated else ''}"
    )
    base = median_rate(rows["yokan blocking loop"], args.count)
    result = {}
    for label, times in rows.items():
        if label.endswith("peak in flight"):
            print(f"  {label:<44} {times}")
            result[label] = times
            continue
        rate = median_rate(times, args.count)
        result[label] = {"ops_s": rate, "runs": times}
        ratio = f"{rate / base:5.2f}x the blocking loop" if rate and base else ""
        print(f"  {label:<44} {rate:>12,.0f} ops/s  {ratio}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"count": args.count, "truncated": truncated, "rows": result}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
