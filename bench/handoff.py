"""Physical limit for large values: hand a buffer from one CPU to another
through shared memory, with neither Yokan nor UCX involved.

The producer (pinned to the server's CPU) copies its private array into a
shared region; the consumer (the client's CPU) copies it out into its own
array. Two copies and a flag per hand-off: the shape of UCX's shared-memory
path for a large reply (copy-in on the sender, copy-out on the receiver).
On a VM the speed of this path changes over time with where the host puts
the two vCPUs, so the per-run figures are kept next to the median.
"""

import mmap
import os
import signal
import time

import numpy as np

MIB = 1 << 20


def _wait(flag, value, deadline):
    spins = 0
    while flag[0] != value:
        spins += 1
        if (spins & 0xFFFF) == 0 and time.perf_counter() > deadline:
            raise TimeoutError("hand-off partner stopped answering")


def handoff_bandwidth(size_mib, reps, runs, producer_cpu, consumer_cpu, budget_s=20.0):
    """GB/s of hand-offs of size_mib MiB (median over runs, and every run)."""
    n = size_mib * MIB
    region = mmap.mmap(-1, n + 64)  # anonymous and shared: the child sees it after fork
    flag = np.ndarray((1,), np.int64, region, 0)
    shared = np.ndarray((n,), np.uint8, region, 64)
    flag[0] = 0
    total = runs * reps + 1  # one warm-up hand-off
    deadline = time.perf_counter() + budget_s
    pid = os.fork()
    if pid == 0:  # producer
        code = 0
        try:
            os.sched_setaffinity(0, {producer_cpu})
            src = np.ones(n, dtype=np.uint8)
            for i in range(total):
                _wait(flag, 2 * i, deadline)
                np.copyto(shared, src)
                flag[0] = 2 * i + 1
        except BaseException:
            code = 1
        os._exit(code)
    try:
        os.sched_setaffinity(0, {consumer_cpu})
        dst = np.empty(n, dtype=np.uint8)
        res = []
        i = 0
        for run in range(-1, runs):
            count = 1 if run < 0 else reps
            t = time.perf_counter()
            for _ in range(count):
                _wait(flag, 2 * i + 1, deadline)
                np.copyto(dst, shared)
                i += 1
                flag[0] = 2 * i
            if run >= 0:
                res.append(count * n / (time.perf_counter() - t) / 1e9)
        res_sorted = sorted(res)
        return {
            "GB_s": res_sorted[len(res_sorted) // 2],
            "runs": res,
            "size_mib": size_mib,
            "copies": 2,
        }
    except TimeoutError as e:
        return {"error": str(e)}
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        del flag, shared
        region.close()
