"""One benchmark client process (started, pinned and bounded by run_bench.py).

    python client_worker.py SPEC_JSON

SPEC_JSON holds ``target`` (see ``targets.make_target``), ``mode`` and the
workload parameters. In mode ``"run"`` the worker runs ``workloads`` in order
and prints one JSON object on its last stdout line. In mode ``"window"`` it
prepares, prints ``ready``, then for each ``go`` line on stdin runs one timed
window of single gets and prints its JSON; ``quit`` (or EOF) ends it.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads  # noqa: E402
from targets import make_target  # noqa: E402


def run_workloads(spec):
    p = spec["params"]
    result = {"pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0))}
    if "memcpy" in spec["workloads"]:
        result["memcpy"] = workloads.memcpy_bandwidth(p["memcpy_mib"], p["memcpy_reps"], p["runs"])
    if "pace" in spec["workloads"]:
        result["pace"] = workloads.python_pace()
    targets = [w for w in spec["workloads"] if w not in ("memcpy", "pace")]
    if not targets:
        return result
    t = time.perf_counter()
    target = make_target(spec["target"])
    result["connect_s"] = time.perf_counter() - t
    try:
        for w in targets:
            t = time.perf_counter()
            c = time.process_time()
            if w == "single":
                result[w] = workloads.single_ops(
                    target, p["single_count"], p["runs"], p["single_warmup"], p["loop_budget_s"]
                )
            elif w == "batch":
                result[w] = workloads.batches(
                    target, p["batches_per_run"], p["runs"], p["batch_warmup"], p["loop_budget_s"]
                )
            elif w == "large":
                result[w] = workloads.large_values(
                    target, p["large_mib"], p["large_reps"], p["runs"], p["loop_budget_s"]
                )
            elif w == "list":
                result[w] = workloads.listing(
                    target, p["list_keys"], p["list_page"], p["loop_budget_s"]
                )
            else:
                raise ValueError(f"unknown workload {w!r}")
            result[w]["wall_s"] = time.perf_counter() - t
            result[w]["cpu_s"] = time.process_time() - c
    finally:
        target.close()
    return result


def run_windows(spec):
    p = spec["params"]
    target = make_target(spec["target"])
    keys = workloads.get_window_setup(target, p["window_keys"], spec.get("tag", "m"))
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() != "go":
                break
            res = workloads.get_window(target, keys, p["window_s"], p["window_max_ops"])
            res["cpus"] = sorted(os.sched_getaffinity(0))
            print(json.dumps(res), flush=True)
    finally:
        target.close()


def main():
    spec = json.loads(sys.argv[1])
    if spec.get("mode", "run") == "window":
        run_windows(spec)
    else:
        print(json.dumps(run_workloads(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
