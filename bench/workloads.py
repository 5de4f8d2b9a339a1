"""The benchmark workloads, identical for every target adapter.

Every loop is bounded twice: by a fixed count and by a deadline. A loop cut by
its deadline marks its result ``"truncated": true`` and reports what it did.
Each workload does a warm-up, then ``runs`` measured repetitions, and reports
the median over runs of each per-run statistic (plus the per-run values).
"""

import os
import statistics
import time

import numpy as np

KEY_SIZE = 16
VALUE_SIZE = 64
BATCH = 1000
MIB = 1 << 20


def make_key(tag, run, i):
    """A 16-byte key: one tag letter, 3 digits of run, 12 digits of index."""
    key = b"%c%03d%012d" % (ord(tag), run % 1000, i)
    assert len(key) == KEY_SIZE
    return key


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[idx]


def _median(values):
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def _timed_calls(fn, args, deadline):
    """Calls fn(a) for each a; per-call latencies in ns, total elapsed in ns."""
    lat = []
    clock = time.perf_counter_ns
    start = clock()
    for a in args:
        t = clock()
        fn(a)
        lat.append(clock() - t)
        if t > deadline:
            break
    return lat, clock() - start


# ---------------------------------------------------------------------------
# 1. Single operations


def single_ops(target, count, runs, warmup, loop_budget_s):
    """put/get/exists/erase of 16-byte keys and 64-byte values, one at a time."""
    value = os.urandom(VALUE_SIZE)
    ops = {
        "put": lambda k: target.put(k, value),
        "get": target.get,
        "exists": target.exists,
        "erase": target.erase,
    }
    # Warm-up: the same sequence on its own keys.
    wkeys = [make_key("w", 0, i) for i in range(warmup)]
    deadline = time.perf_counter_ns() + int(loop_budget_s * 1e9)
    for name in ops:
        _timed_calls(ops[name], wkeys, deadline)
    per_run = {name: [] for name in ops}
    truncated = False
    for run in range(runs):
        keys = [make_key("s", run, i) for i in range(count)]
        for name, fn in ops.items():
            deadline = time.perf_counter_ns() + int(loop_budget_s * 1e9)
            lat, elapsed = _timed_calls(fn, keys, deadline)
            if len(lat) < count:
                truncated = True
                keys = keys[: len(lat)]  # later ops only touch keys that were put
            lat.sort()
            per_run[name].append(
                {
                    "n": len(lat),
                    "p50_us": percentile(lat, 50) / 1e3,
                    "p99_us": percentile(lat, 99) / 1e3,
                    "ops_s": len(lat) / (elapsed / 1e9),
                }
            )
        if run == 0:
            _check_single(target, value)
    out = {}
    for name, rows in per_run.items():
        out[name] = {
            "p50_us": _median([r["p50_us"] for r in rows]),
            "p99_us": _median([r["p99_us"] for r in rows]),
            "ops_s": _median([r["ops_s"] for r in rows]),
            "samples_per_run": [r["n"] for r in rows],
            "runs": rows,
        }
    out["truncated"] = truncated
    return out


def _check_single(target, value):
    key = make_key("c", 0, 0)
    target.put(key, value)
    got = target.get(key)
    if bytes(got) != value or not target.exists(key):
        raise RuntimeError(f"{target.name}: single-op correctness check failed")
    target.erase(key)
    if target.exists(key):
        raise RuntimeError(f"{target.name}: erase did not erase")


# ---------------------------------------------------------------------------
# 2. Batches


def batches(target, batches_per_run, runs, warmup_batches, budget_s):
    """Batches of 1000 pairs: keys/s for the put of new keys, the get, and a
    second put of the same batches (overwrites) of each variant."""
    value_pool = [os.urandom(VALUE_SIZE) for _ in range(BATCH)]
    sample = [make_key("b", 999, i) for i in range(BATCH)]
    labels = [v[0] for v in target.batch_variants(sample, value_pool)]
    out = {}
    truncated = False
    for vi, label in enumerate(labels):
        results = {"put": [], "get": [], "overwrite": []}
        for run in range(-1, runs):  # run -1 is the warm-up
            nb = warmup_batches if run < 0 else batches_per_run
            tag_run = 100 * vi + run + 1
            prepared = [
                target.batch_variants(
                    [make_key("b", tag_run, b * BATCH + i) for i in range(BATCH)], value_pool
                )[vi]
                for b in range(nb)
            ]
            # New keys, then reads, then the same batches again (overwrites).
            done, put_elapsed, _ = _timed_batches([p[1] for p in prepared], budget_s)
            got, get_elapsed, last = _timed_batches([p[2] for p in prepared[:done]], budget_s)
            if not prepared[got - 1][3](last):
                raise RuntimeError(f"{target.name} {label}: batch get returned wrong values")
            again, again_elapsed, _ = _timed_batches([p[1] for p in prepared[:done]], budget_s)
            truncated |= got < done or again < done or done < len(prepared)
            if run >= 0:
                results["put"].append(done * BATCH / put_elapsed)
                results["get"].append(got * BATCH / get_elapsed)
                results["overwrite"].append(again * BATCH / again_elapsed)
        out[label] = {
            "put_keys_s": _median(results["put"]),
            "get_keys_s": _median(results["get"]),
            "overwrite_keys_s": _median(results["overwrite"]),
            "runs": results,
        }
    out["truncated"] = truncated
    return out


def _timed_batches(calls, budget_s):
    """Runs the calls in turn until done or budget_s is over: (how many ran,
    elapsed seconds, the last result)."""
    deadline = time.perf_counter() + budget_s
    t = time.perf_counter()
    n, last = 0, None
    for call in calls:
        last = call()
        n += 1
        if time.perf_counter() > deadline:
            break
    return n, time.perf_counter() - t, last


# ---------------------------------------------------------------------------
# 3. Large values (numpy arrays)


def large_values(target, sizes_mib, reps, runs, budget_s):
    """put of a numpy array, get into a preallocated one (Redis: bytes). GB/s."""
    out = {}
    truncated = False
    rng = np.random.default_rng(1234)
    for size_mib, nrep in zip(sizes_mib, reps):
        nbytes = size_mib * MIB
        src = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
        dst = np.empty_like(src)
        key = b"L%015d" % nbytes
        # Warm-up and correctness check.
        target.put_large(key, src)
        size, data = target.get_large(key, dst)
        if size != nbytes or not np.array_equal(np.frombuffer(data, dtype=np.uint8), src):
            raise RuntimeError(f"{target.name}: {size_mib} MiB round trip is wrong")
        res = {"put": [], "get": []}
        for _ in range(runs):
            for op in ("put", "get"):
                deadline = time.perf_counter() + budget_s
                t = time.perf_counter()
                done = 0
                for _ in range(nrep):
                    if op == "put":
                        target.put_large(key, src)
                    else:
                        target.get_large(key, dst)
                    done += 1
                    if time.perf_counter() > deadline:
                        truncated = True
                        break
                res[op].append(done * nbytes / (time.perf_counter() - t) / 1e9)
        target.erase(key)
        out[f"{size_mib}MiB"] = {
            "put_GB_s": _median(res["put"]),
            "get_GB_s": _median(res["get"]),
            "runs": res,
        }
    out["truncated"] = truncated
    return out


# ---------------------------------------------------------------------------
# 4. Listing (only when the Yokan Database has list_keys)


def listing(target, nkeys, page, budget_s):
    """Pages through nkeys keys under a prefix; keys/s. Redis: SCAN MATCH.

    Yokan is measured three ways: ``list_keys`` into one buffer per key
    (``keys_s``), ``list_keys_packed`` into one buffer (``packed_keys_s``) and
    the ``scan`` iterator (``scan_keys_s``)."""
    if not target.has_listing():
        return {"skipped": "Database has no list_keys"}
    prefix = b"P"
    value = os.urandom(VALUE_SIZE)
    keys = [make_key("P", 0, i) for i in range(nkeys)]
    for i in range(0, nkeys, BATCH):
        chunk = keys[i : i + BATCH]
        target.put_many(chunk, [value] * len(chunk))
    if target.name == "redis":
        forms = {"keys_s": _redis_scan}
    else:
        forms = {
            "keys_s": _list_slots,
            "packed_keys_s": _list_packed,
            "scan_keys_s": _list_scan,
        }
    out = {"expected": nkeys, "truncated": False}
    try:
        for name, form in forms.items():
            deadline = time.perf_counter() + budget_s
            t = time.perf_counter()
            seen = form(target, prefix, page, nkeys, deadline)
            out[name] = seen / (time.perf_counter() - t)
            out[name.replace("keys_s", "seen")] = seen
            out["truncated"] |= seen < nkeys
    except Exception as e:  # noqa: BLE001 - report, do not abort the whole run
        return {"skipped": f"listing call failed: {e!r}"}
    for i in range(0, nkeys, BATCH):
        for k in keys[i : i + BATCH]:
            target.erase(k)
    return out


def _redis_scan(target, prefix, page, nkeys, deadline):
    cursor, seen = 0, 0
    while True:
        cursor, batch = target.scan(cursor, prefix + b"*", page)
        seen += len(batch)
        if cursor == 0 or time.perf_counter() > deadline:
            return seen


def _list_slots(target, prefix, page, nkeys, deadline):
    # Database.list_keys(key_buffers, from_key, filter) -> sizes (exclusive from_key).
    buffers = [bytearray(KEY_SIZE) for _ in range(page)]
    last, seen = b"", 0
    while seen < nkeys and time.perf_counter() < deadline:
        sizes = target.list_keys(buffers, last, prefix)
        if not sizes:
            break
        seen += len(sizes)
        last = bytes(buffers[len(sizes) - 1][: sizes[-1]])
    return seen


def _list_packed(target, prefix, page, nkeys, deadline):
    buffer = bytearray(KEY_SIZE * page)
    last, seen = b"", 0
    while seen < nkeys and time.perf_counter() < deadline:
        sizes = target.list_keys_packed(buffer, page, last, prefix)
        if not sizes:
            break
        seen += len(sizes)
        end = sum(sizes)
        last = bytes(buffer[end - sizes[-1] : end])
    return seen


def _list_scan(target, prefix, page, nkeys, deadline):
    seen = 0
    for _ in target.scan_keys(prefix, page):
        seen += 1
        if (seen & 1023) == 0 and time.perf_counter() > deadline:
            break
    return seen


# ---------------------------------------------------------------------------
# Physical limit: memcpy


def memcpy_bandwidth(size_mib, reps, runs):
    """numpy copy into a preallocated array, GB/s (median over runs)."""
    src = np.ones(size_mib * MIB, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    res = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(reps):
            np.copyto(dst, src)
        res.append(reps * src.nbytes / (time.perf_counter() - t) / 1e9)
    return {"GB_s": _median(res), "runs": res, "size_mib": size_mib}


# ---------------------------------------------------------------------------
# The VM's pace


def python_pace(n=1_000_000, runs=5):
    """ns per turn of a bare Python loop (the shape of the listing consumer).

    On a shared VM this moves by up to 2x from one minute to the next; every
    Python-driven row moves with it, so the report shows it at both ends of
    the run."""
    items = [None] * n
    res = []
    for _ in range(runs):
        seen = 0
        t = time.perf_counter()
        for _ in items:
            seen += 1
        res.append((time.perf_counter() - t) / n * 1e9)
    return {"ns_per_turn": min(res), "runs": res}


# ---------------------------------------------------------------------------
# 5. Concurrent clients: one window of single gets


def get_window_setup(target, nkeys, tag):
    value = os.urandom(VALUE_SIZE)
    keys = [make_key(tag, 0, i) for i in range(nkeys)]
    for k in keys:
        target.put(k, value)
    for k in keys * 5:  # warm-up
        target.get(k)
    return keys


def get_window(target, keys, duration_s, max_ops):
    """Single gets cycling over keys for duration_s (or max_ops); ops/s."""
    get = target.get
    n = 0
    nkeys = len(keys)
    t = time.perf_counter()
    end = t + duration_s
    while n < max_ops:
        get(keys[n % nkeys])
        n += 1
        if (n & 63) == 0 and time.perf_counter() > end:
            break
    elapsed = time.perf_counter() - t
    return {"ops": n, "elapsed_s": elapsed, "ops_s": n / elapsed, "t_start": t}
